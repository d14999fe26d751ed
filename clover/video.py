"""Reading and writing video clips.

Writing (`write_video`) serves the synthetic benchmark, the tests and the benchmarks, which all make
their own clips; reading (`read_frames`) is what the model, the training scripts and the app use.

Reading works in three steps, each cheap:

1. *Index scan.* Demux the video stream's packets once without decoding them, keeping each packet's
   presentation timestamp and keyframe flag. This gives the true frame count and frame times even when
   the container's metadata is missing or wrong (variable frame rate, real-world GIFs).
2. *Sampling.* Cut the clip (or the `start_sec..end_sec` window) into `num_frames` equal segments of
   frames and pick one frame per segment: the centre at test time, a random one in training, or the
   keyframe nearest the centre in keyframe mode.
3. *Smart seek.* Decode only what the picked frames need: seek to a keyframe only when the next target
   lies in a later GOP than the decoder's position, otherwise decode forward. Only the picked frames
   are kept, so memory does not grow with the clip's length.
"""

from __future__ import annotations

import os
import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

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
    frames: np.ndarray | Sequence[np.ndarray] | Iterable[np.ndarray],
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
    frame is one slice, as in real files, and runs without x264's macroblock-tree rate control: with it,
    the same frames gave a different stream now and then (26 of 150 encodes of one 112-pixel synthetic
    clip), and the synthetic benchmark must be the same bytes for the same seed. The price: streams
    about 45 % larger at the same crf (the benchmark's caption clips: 17.7 MB against 12.2).

    `frames` may also be an iterator of `(H, W, 3)` frames (not for GIF): they are encoded as they
    come, so long clips (the benchmarks' 5-minute 720p clip) never sit in memory at once.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if isinstance(frames, (np.ndarray, Sequence)) or suffix == ".gif":
        frames = np.asarray(list(frames) if not isinstance(frames, (np.ndarray, Sequence)) else frames)
        _check_frame(frames, ndim=4)
        first, stream_frames = frames[0], iter(frames)
    else:
        stream_frames = iter(frames)
        first = next(stream_frames, None)
        if first is None:
            raise ValueError("frames is empty")
        stream_frames = itertools.chain([first], stream_frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        _write_gif(path, frames, fps, gif_durations_ms)
        return path
    if suffix not in _DEFAULT_CODECS and codec is None:
        raise ValueError(f"no default codec for {suffix!r}; pass codec=")
    codec_name, pix_fmt = _DEFAULT_CODECS.get(suffix, (codec, "yuv420p"))
    codec_name = codec or codec_name
    _write_with_pyav(path, first.shape[:2], stream_frames, fps, codec_name, pix_fmt, keyframe_interval, crf)
    return path


def _check_frame(frames: np.ndarray, ndim: int) -> None:
    """Raise ValueError unless `frames` is uint8 RGB with `ndim` dimensions (4: a clip, 3: one frame)."""
    shape = "(num_frames, H, W, 3)" if ndim == 4 else "(H, W, 3)"
    if frames.ndim != ndim or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 of shape {shape}, got {frames.dtype} {frames.shape}")
    if ndim == 4 and len(frames) == 0:
        raise ValueError("frames is empty")


def _write_gif(path: Path, frames: np.ndarray, fps: float, durations_ms: Sequence[int] | None) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    durations = list(durations_ms) if durations_ms is not None else [round(1000 / fps)] * len(images)
    if len(durations) != len(images):
        raise ValueError(f"{len(durations)} GIF durations for {len(images)} frames")
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)


def _write_with_pyav(
    path: Path,
    size: tuple[int, int],
    frames: Iterator[np.ndarray],
    fps: float,
    codec_name: str,
    pix_fmt: str,
    keyframe_interval: int | None,
    crf: int,
) -> None:
    import av

    height, width = size
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
            options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"}  # mbtree: not reproducible
            if keyframe_interval is not None:
                # Fixed GOP: no scene-cut keyframes, so the keyframe interval is what the caller asked.
                options.update({"sc_threshold": "0", "keyint_min": str(keyframe_interval)})
            stream.options = options
        elif codec_name == "mpeg4":
            stream.options = {"qscale": "3"}
            stream.codec_context.qmin, stream.codec_context.qmax = 2, 5
        for frame in frames:
            frame = np.asarray(frame)
            _check_frame(frame, ndim=3)
            if frame.shape[:2] != (height, width):
                raise ValueError(f"frame of size {frame.shape[1]}x{frame.shape[0]} in a {width}x{height} clip")
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ================================================================================================
# Reading
# ================================================================================================

SEEK_MODES = ("auto", "exact", "keyframe")
BACKENDS = ("pyav", "decord")
# `seek="auto"` reads exactly up to this span (seconds) and uses keyframes beyond it.
AUTO_EXACT_MAX_SECONDS = 30.0
DECODE_THREADS = 2
# Upper bound on one decord read; decord has been seen to hang on damaged files.
DECORD_TIMEOUT_SECONDS = 60.0
# Upper bound on one blocking FFmpeg call (open, or reading one packet): a stuck read fails, never hangs.
IO_TIMEOUT_SECONDS = 30.0
# Largest frame accepted (pixels): DCI 4K. A few sampled frames of a larger one would take gigabytes
# (8 RGB frames of 8000x8000 are 1.5 GB, from a 50 KB GIF), so such a clip is refused before decoding.
MAX_FRAME_PIXELS = 4096 * 2160

# First bytes of the containers we know: a file that starts like a video but cannot be opened is
# reported as truncated or corrupt rather than as "not a video".
_MAGIC = (b"RIFF", b"\x1a\x45\xdf\xa3", b"GIF87a", b"GIF89a", b"OggS", b"FLV")
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
# Decoded pixel formats that carry transparency (FFmpeg's GIF decoder gives bgra).
_ALPHA_FORMATS = frozenset({"bgra", "rgba", "argb", "abgr", "pal8", "yuva420p", "yuva444p"})


class VideoReadError(ValueError):
    """A clip could not be read. The message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot read video {str(path)!r}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` learns from a clip's header (and, if the header is silent, its packets)."""

    duration: float  # seconds, first frame to end of last frame
    num_frames: int | None  # None when neither the header nor a packet scan could tell
    fps: float | None  # average frame rate
    width: int
    height: int


@dataclass(frozen=True)
class _FrameIndex:
    """Every frame of the video stream in presentation order, from the packet scan."""

    pts: np.ndarray  # int64 (N,), sorted, stream time base
    keyframe: np.ndarray  # bool (N,)
    time_base: Fraction
    end_pts: int  # pts just after the last frame (its pts plus its duration)

    def __len__(self) -> int:
        return len(self.pts)

    def seconds(self, pts: np.ndarray | int) -> np.ndarray | float:
        """Seconds from the first frame (so a clip always starts at 0.0)."""
        return (np.asarray(pts, dtype=np.float64) - float(self.pts[0])) * float(self.time_base)

    @property
    def times(self) -> np.ndarray:
        return self.seconds(self.pts)

    @property
    def duration(self) -> float:
        return float(self.seconds(self.end_pts))

    def position(self, pts: int) -> int:
        """Index of the last frame whose pts is at or before `pts` (0 if `pts` precedes them all)."""
        return max(int(np.searchsorted(self.pts, pts, side="right")) - 1, 0)


# ------------------------------------------------------------------------------------ public API
def read_frames(
    path: str | os.PathLike,
    num_frames: int = 8,
    *,
    training: bool = False,
    start_sec: float | None = None,
    end_sec: float | None = None,
    seek: str = "auto",
    generator: np.random.Generator | None = None,
    backend: str = "pyav",
) -> np.ndarray:
    """Sample `num_frames` frames from a clip: uint8 RGB `(num_frames, H, W, 3)`.

    The clip, or its `start_sec..end_sec` window (seconds from the first frame), is cut into
    `num_frames` equal segments of frames. At test time the centre frame of each segment is taken;
    with `training=True` a random frame of each segment (drawn from `generator`). Clips with fewer
    frames than asked give repeated frames.

    `seek`: "exact" decodes the chosen frames exactly; "keyframe" takes, per segment, the keyframe
    nearest the segment centre (the exact centre where no keyframe falls inside the segment), which
    costs one keyframe decode per frame on long clips; "auto" is exact up to 30 s and keyframe beyond.
    Training always reads exactly. `backend="decord"` decodes with decord (not for GIFs, which always
    go through PyAV). Raises `VideoReadError` for anything unreadable.
    """
    frames, _ = read_frames_with_timestamps(
        path,
        num_frames,
        training=training,
        start_sec=start_sec,
        end_sec=end_sec,
        seek=seek,
        generator=generator,
        backend=backend,
    )
    return frames


def read_frames_with_timestamps(
    path: str | os.PathLike,
    num_frames: int = 8,
    *,
    training: bool = False,
    start_sec: float | None = None,
    end_sec: float | None = None,
    seek: str = "auto",
    generator: np.random.Generator | None = None,
    backend: str = "pyav",
) -> tuple[np.ndarray, np.ndarray]:
    """`read_frames`, plus the float64 timestamps (seconds from the first frame) of the frames taken."""
    _check_sampling(num_frames, seek)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    path = _check_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        index = _scan_index(container, stream, path)
        positions = _sample_positions(index, num_frames, training, start_sec, end_sec, seek, generator, path)
        if backend == "decord" and not _is_gif(path):
            frames = _decode_with_decord(path, positions, len(index))
        else:
            frames = _decode_positions(container, stream, index, positions, path)
    return frames, index.times[positions]


@dataclass(frozen=True)
class DecodedVideo:
    """Every frame of a clip, decoded once (`decode_video`), to sample from many times (`sample_frames`).

    For datasets whose clips are short and read again and again (the synthetic benchmark: a training
    step otherwise spends a third of its time re-decoding GIFs on two CPU cores)."""

    path: Path
    frames: np.ndarray  # uint8 (N, H, W, 3): every frame of the stream, in presentation order
    index: _FrameIndex

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)


def decode_video(path: str | os.PathLike, max_bytes: int | None = None) -> DecodedVideo | None:
    """Decode every frame of a clip, or None (having decoded nothing) when they would take more than
    `max_bytes` of memory. Raises `VideoReadError` for anything unreadable, as `read_frames` does."""
    path = _check_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        index = _scan_index(container, stream, path)
        width, height = stream.codec_context.width, stream.codec_context.height
        if max_bytes is not None and len(index) * width * height * 3 > max_bytes:
            return None
        frames = _decode_positions(container, stream, index, np.arange(len(index)), path)  # (N, H, W, 3)
    return DecodedVideo(path=path, frames=frames, index=index)


def sample_frames(
    video: DecodedVideo,
    num_frames: int = 8,
    *,
    training: bool = False,
    start_sec: float | None = None,
    end_sec: float | None = None,
    seek: str = "auto",
    generator: np.random.Generator | None = None,
) -> np.ndarray:
    """`read_frames` on a decoded clip: the same frames, drawn the same way, without decoding again."""
    _check_sampling(num_frames, seek)
    positions = _sample_positions(video.index, num_frames, training, start_sec, end_sec, seek, generator, video.path)
    return video.frames[positions]  # (num_frames, H, W, 3)


def _check_sampling(num_frames: int, seek: str) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if seek not in SEEK_MODES:
        raise ValueError(f"seek must be one of {SEEK_MODES}, got {seek!r}")


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Duration, frame count, frame rate and size of a clip, from its header.

    Nothing is decoded. When the header lacks the duration or the frame count (WebM, Matroska, many
    GIFs) the packets are scanned once, which reads the file but decodes nothing.
    """
    path = _check_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        width, height = stream.codec_context.width, stream.codec_context.height
        num_frames = stream.frames or None
        duration = _header_duration(container, stream)
        fps = float(stream.average_rate) if stream.average_rate else None
        if num_frames is None or duration is None or _is_gif(path):
            index = _scan_index(container, stream, path)
            num_frames, duration = len(index), index.duration
            fps = (num_frames / duration) if duration > 0 else fps
    return VideoInfo(duration=float(duration), num_frames=num_frames, fps=fps, width=width, height=height)


# ------------------------------------------------------------------------------ opening and errors
def _check_file(path: str | os.PathLike) -> Path:
    """Reject what is not a non-empty regular file, before FFmpeg sees it."""
    path = Path(path)
    if not path.exists():
        raise VideoReadError(path, "file not found")
    if not path.is_file():
        raise VideoReadError(path, "not a regular file (a directory?)")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "empty file (0 bytes)")
    return path


def _is_gif(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) in (b"GIF87a", b"GIF89a")


def _looks_like_video(path: Path) -> bool:
    """Whether the first bytes are those of a container we know (then a failure means damage)."""
    with open(path, "rb") as f:
        head = f.read(12)
    return head.startswith(_MAGIC) or head[4:8] in _MP4_BOXES


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    """Open `path` with PyAV, turning FFmpeg's errors into a VideoReadError; always closes it."""
    import av

    try:
        container = av.open(str(path), mode="r", timeout=IO_TIMEOUT_SECONDS)
    except av.FFmpegError as error:
        reason = "truncated or corrupt" if _looks_like_video(path) else "not a video or unsupported format"
        raise VideoReadError(path, f"{reason} (FFmpeg: {error.strerror or error})") from error
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: Any, path: Path) -> Any:
    """The first video stream, set up for frame-threaded decoding."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoReadError(path, f"no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # the header was cut off before the stream's codec parameters
        raise VideoReadError(path, "truncated or corrupt: its video stream has no codec parameters")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > MAX_FRAME_PIXELS:
        raise VideoReadError(
            path,
            f"frames are {width}x{height} ({width * height / 1e6:.0f} megapixels), larger than the limit of "
            f"{MAX_FRAME_PIXELS / 1e6:.1f} megapixels (4096x2160); downscale the clip first "
            "(e.g. ffmpeg -i IN -vf scale=1280:-2 OUT)",
        )
    stream.thread_type = "FRAME"
    stream.codec_context.thread_count = DECODE_THREADS
    return stream


def _header_duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


# ------------------------------------------------------------------------------------ index scan
def _scan_index(container: Any, stream: Any, path: Path) -> _FrameIndex:
    """Demux every packet of the video stream (no decoding) to learn the frames' pts and keyframes."""
    import av

    pts_list: list[int] = []
    key_list: list[bool] = []
    last = None
    try:
        for packet in container.demux(stream):  # the hot loop of a read: read each attribute once
            if not packet.size:  # the flush packet at the end; AVI's empty "dropped frame" packets
                continue
            pts = packet.pts
            if pts is None:
                pts = packet.dts
                if pts is None:  # no timestamps at all: number the frames
                    pts = pts_list[-1] + 1 if pts_list else 0
            pts_list.append(pts)
            key_list.append(packet.is_keyframe)
            last = packet
    except av.FFmpegError as error:
        raise VideoReadError(path, f"truncated or corrupt (FFmpeg while scanning packets: {error})") from error
    last_duration = (last.duration or 0) if last is not None else 0
    if not pts_list:
        raise VideoReadError(path, "zero frames in the video stream")
    order = np.argsort(np.asarray(pts_list, dtype=np.int64), kind="stable")
    pts = np.asarray(pts_list, dtype=np.int64)[order]
    keyframe = np.asarray(key_list, dtype=bool)[order]
    keyframe[0] = True  # decoding starts somewhere: the first frame is reachable by seeking to 0
    if len(pts) > 1 and not last_duration:
        last_duration = int(np.median(np.diff(pts))) or 1
    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
    index = _FrameIndex(pts=pts, keyframe=keyframe, time_base=time_base, end_pts=int(pts[-1]) + max(last_duration, 1))
    _check_complete(container, stream, index, path)
    return index  # the container is now at its end: decoding starts with a seek


def _check_complete(container: Any, stream: Any, index: _FrameIndex, path: Path) -> None:
    """Raise if the packets stop well short of what the header promises (a cut-off download)."""
    if stream.codec_context.name == "gif":
        return  # GIF headers carry no trustworthy length
    if stream.frames and len(index) < 0.9 * stream.frames:
        raise VideoReadError(path, f"truncated: {len(index)} of {stream.frames} frames present")
    expected = _header_duration(container, stream)
    if expected and expected > 1.0 and index.duration < 0.9 * expected - 0.5:
        raise VideoReadError(path, f"truncated: frames stop at {index.duration:.2f} s of {expected:.2f} s")


# -------------------------------------------------------------------------------------- sampling
def _sample_positions(
    index: _FrameIndex,
    num_frames: int,
    training: bool,
    start_sec: float | None,
    end_sec: float | None,
    seek: str,
    generator: np.random.Generator | None,
    path: Path,
) -> np.ndarray:
    """Frame positions (into `index`) to take: one per segment of the window, in time order."""
    first, count = _window(index, start_sec, end_sec, path)
    bounds = first + (np.arange(num_frames + 1) * count) // num_frames  # segment k: [bounds[k], bounds[k+1])
    lows, highs = bounds[:-1], np.maximum(bounds[1:], bounds[:-1] + 1)  # a segment holds at least 1 frame
    highs = np.minimum(highs, first + count)
    lows = np.minimum(lows, highs - 1)
    if training:
        rng = generator if generator is not None else np.random.default_rng()
        return rng.integers(lows, highs)  # high is exclusive: each draw stays inside its segment
    centres = first + ((2 * np.arange(num_frames) + 1) * count) // (2 * num_frames)
    span = float(index.seconds(index.pts[first + count - 1])) - float(index.seconds(index.pts[first]))
    if seek == "keyframe" or (seek == "auto" and span > AUTO_EXACT_MAX_SECONDS):
        return _nearest_keyframes(index, centres, lows, highs)
    return centres


def _window(index: _FrameIndex, start_sec: float | None, end_sec: float | None, path: Path) -> tuple[int, int]:
    """First frame and number of frames whose time lies in `[start_sec, end_sec)`."""
    times = index.times
    start = 0 if start_sec is None else int(np.searchsorted(times, start_sec, side="left"))
    stop = len(index) if end_sec is None else int(np.searchsorted(times, end_sec, side="left"))
    if start_sec is not None and end_sec is not None and end_sec <= start_sec:
        raise ValueError(f"end_sec ({end_sec}) must be after start_sec ({start_sec})")
    if stop <= start:
        raise VideoReadError(
            path, f"no frames between {start_sec} s and {end_sec} s (the clip lasts {index.duration:.2f} s)"
        )
    return start, stop - start


def _nearest_keyframes(index: _FrameIndex, centres: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Per segment, the keyframe nearest its centre inside the segment, else the centre itself."""
    keyframes = np.flatnonzero(index.keyframe)
    picked = centres.copy()
    for k, (centre, low, high) in enumerate(zip(centres, lows, highs)):
        inside = keyframes[(keyframes >= low) & (keyframes < high)]
        if len(inside):
            picked[k] = inside[np.argmin(np.abs(inside - centre))]
    return picked


# ------------------------------------------------------------------------------- PyAV decoding
def _decode_positions(
    container: Any, stream: Any, index: _FrameIndex, positions: np.ndarray, path: Path
) -> np.ndarray:
    """Decode the frames at `positions` (sorted, repeats allowed) with the smart seek."""
    import av

    wanted = np.unique(positions)
    gop_start = np.maximum.accumulate(np.where(index.keyframe, np.arange(len(index)), 0))  # keyframe of each frame
    can_seek = stream.codec_context.name != "gif"  # GIFs are small, and their demuxer seeks poorly
    decoded: dict[int, np.ndarray] = {}
    frames: Iterator[Any] | None = None
    current = -1  # position of the last decoded frame
    try:
        for target in wanted:
            target = int(target)
            behind = current >= target
            later_gop = current < 0 or gop_start[target] > gop_start[current]
            if frames is None or behind or (can_seek and later_gop):
                keyframe_pts = int(index.pts[gop_start[target]]) if can_seek else int(index.pts[0])
                container.seek(keyframe_pts, stream=stream, backward=True, any_frame=False)
                frames, current = _decode_stream(container, stream), -1
            frame, current = _decode_until(frames, index, target)
            if frame is None:
                raise VideoReadError(path, f"truncated or corrupt: frame {target} of {len(index)} could not be decoded")
            decoded[target] = _to_rgb(frame)
    except av.FFmpegError as error:
        raise VideoReadError(path, f"truncated or corrupt (FFmpeg while decoding: {error})") from error
    return np.stack([decoded[int(p)] for p in positions])


def _to_rgb(frame: Any) -> np.ndarray:
    """The frame as RGB uint8 `(H, W, 3)`; pixels with an alpha channel are composited onto black.

    GIFs decode to BGRA: pixels that stay transparent (never painted by any frame so far) would
    otherwise come out with whatever colour the converter picks (white). Black is what Pillow shows
    for the usual transparent palette entry, and it is the same in every frame.
    """
    if frame.format.name not in _ALPHA_FORMATS:
        return frame.to_ndarray(format="rgb24")
    rgba = frame.to_ndarray(format="rgba")
    return np.where(rgba[..., 3:] >= 128, rgba[..., :3], 0).astype(np.uint8)


def _decode_stream(container: Any, stream: Any) -> Iterator[Any]:
    """Frames of `stream` from the container's current position, in presentation order."""
    for packet in container.demux(stream):
        yield from packet.decode()


def _decode_until(frames: Iterator[Any], index: _FrameIndex, target: int) -> tuple[Any | None, int]:
    """Decode forward to the first frame at or after position `target`; return it and its position."""
    target_pts = int(index.pts[target])
    for frame in frames:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None or pts < target_pts:
            continue
        return frame, index.position(pts)
    return None, len(index)


# ----------------------------------------------------------------------------------------- decord
def _decode_with_decord(path: Path, positions: np.ndarray, num_frames: int) -> np.ndarray:
    """Decode `positions` with decord, in a worker thread with a time bound.

    decord's own frame count can be wrong and it has been seen to hang or crash on damaged files, so
    indices are checked against the packet scan's count and the read is abandoned after a timeout.
    """
    if positions.max() >= num_frames:
        raise VideoReadError(path, f"frame {positions.max()} asked of a clip with {num_frames} frames")
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            import decord

            reader = decord.VideoReader(str(path), num_threads=DECODE_THREADS)
            if len(reader) < num_frames:
                raise VideoReadError(path, f"decord sees {len(reader)} frames, the packets {num_frames}")
            outcome["frames"] = reader.get_batch(positions.tolist()).asnumpy()
            del reader
        except VideoReadError as error:
            outcome["error"] = error
        except Exception as error:  # decord raises its own DECORDError and RuntimeError
            outcome["error"] = VideoReadError(path, f"decord failed: {error}")

    worker = threading.Thread(target=work, name="clover-decord", daemon=True)
    worker.start()
    worker.join(DECORD_TIMEOUT_SECONDS)
    if worker.is_alive():
        raise VideoReadError(path, f"decord did not finish within {DECORD_TIMEOUT_SECONDS:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["frames"]


__all__ = [
    "VideoReadError",
    "VideoInfo",
    "read_frames",
    "read_frames_with_timestamps",
    "DecodedVideo",
    "decode_video",
    "sample_frames",
    "probe_video",
    "write_video",
]
