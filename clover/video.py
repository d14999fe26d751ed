"""Reading and writing video clips.

Writing (`write_video`) serves the synthetic benchmark, the tests and the benchmarks, which all make
their own clips; reading (`read_frames`) is what the model, the training scripts and the app use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

# Container -> (PyAV codec, pixel format) used by `write_video` when no codec is named.
_DEFAULT_CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: float = 25.0,
    *,
    codec: str | None = None,
    keyframe_interval: int | None = None,
    gif_durations_ms: Sequence[int] | None = None,
    crf: int = 23,
) -> Path:
    """Write RGB uint8 frames `(num_frames, H, W, 3)` to `path`; the extension picks the container.

    `.gif` is written with Pillow (`gif_durations_ms` gives per-frame delays, default 1000/fps);
    other containers with PyAV (H.264 for mp4/mov/mkv, MPEG-4 Part 2 for avi, VP9 for webm).
    `keyframe_interval` sets the encoder's GOP size. The H.264 encoder uses frame threading, so each
    frame is one slice, as in real files.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 of shape (num_frames, H, W, 3), got {frames.dtype} {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        _write_gif(path, frames, fps, gif_durations_ms)
        return path
    if suffix not in _DEFAULT_CODECS and codec is None:
        raise ValueError(f"no default codec for {suffix!r}; pass codec=")
    codec_name, pix_fmt = _DEFAULT_CODECS.get(suffix, (codec, "yuv420p"))
    codec_name = codec or codec_name
    _write_with_pyav(path, frames, fps, codec_name, pix_fmt, keyframe_interval, crf)
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float, durations_ms: Sequence[int] | None) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    durations = list(durations_ms) if durations_ms is not None else [round(1000 / fps)] * len(images)
    if len(durations) != len(images):
        raise ValueError(f"{len(durations)} GIF durations for {len(images)} frames")
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)


def _write_with_pyav(
    path: Path,
    frames: np.ndarray,
    fps: float,
    codec_name: str,
    pix_fmt: str,
    keyframe_interval: int | None,
    crf: int,
) -> None:
    import av

    height, width = frames.shape[1:3]
    if codec_name in ("libx264", "mpeg4", "libvpx-vp9") and (height % 2 or width % 2):
        raise ValueError(f"{codec_name} needs even frame sizes, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec_name, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if keyframe_interval is not None:
            stream.codec_context.gop_size = keyframe_interval
        if codec_name == "libx264":
            stream.thread_type = "FRAME"
            options = {"crf": str(crf), "preset": "veryfast"}
            if keyframe_interval is not None:
                # Fixed GOP: no scene-cut keyframes, so the keyframe interval is what the caller asked.
                options.update({"sc_threshold": "0", "keyint_min": str(keyframe_interval)})
            stream.options = options
        elif codec_name == "mpeg4":
            stream.options = {"qscale": "3"}
            stream.codec_context.qmin, stream.codec_context.qmax = 2, 5
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
