"""Small clips for the tests, made on the fly: index clips, GIFs, and broken files.

An *index clip* shows its own frame number: frame i is a 4x4 grid of black or white blocks spelling
i in binary (16 bits, most significant bit top left). The blocks are big enough to survive lossy
compression in every codec we write, so `decode_index` reads back which frame a reader returned.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from clover.video import write_video

GRID = 4  # 4x4 blocks = 16 bits
MAX_INDEX = 2 ** (GRID * GRID) - 1


def index_frame(index: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """An RGB uint8 `(H, W, 3)` frame spelling `index` in 16 black/white blocks; `size` is (W, H)."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index must be in [0, {MAX_INDEX}], got {index}")
    width, height = size
    bits = (index >> np.arange(GRID * GRID)[::-1]) & 1  # MSB first
    grid = (bits.reshape(GRID, GRID) * 255).astype(np.uint8)
    rows = np.repeat(grid, -(-height // GRID), axis=0)[:height]
    plane = np.repeat(rows, -(-width // GRID), axis=1)[:, :width]
    return np.repeat(plane[:, :, None], 3, axis=2)


def decode_index(frame: np.ndarray) -> int:
    """The index an `index_frame` spells, read from the centre of each block (robust to compression)."""
    height, width = frame.shape[:2]
    luma = np.asarray(frame, dtype=np.float32).mean(axis=2)
    value = 0
    for r in range(GRID):
        for c in range(GRID):
            y0, y1 = (4 * r + 1) * height // (4 * GRID), (4 * r + 3) * height // (4 * GRID)
            x0, x1 = (4 * c + 1) * width // (4 * GRID), (4 * c + 3) * width // (4 * GRID)
            value = (value << 1) | int(luma[y0:y1, x0:x1].mean() > 127)
    return value


def index_clip(
    path: str | os.PathLike,
    num_frames: int = 50,
    size: tuple[int, int] = (64, 64),
    fps: float = 25,
    keyframe_interval: int | None = None,
) -> Path:
    """Write a clip whose frame i spells i (see `decode_index`); the extension picks the container."""
    frames = np.stack([index_frame(i, size) for i in range(num_frames)])
    return write_video(path, frames, fps, keyframe_interval=keyframe_interval)


def animated_gif(
    path: str | os.PathLike,
    num_frames: int = 12,
    size: tuple[int, int] = (64, 48),
    durations_ms: list[int] | None = None,
) -> tuple[Path, list[int]]:
    """An index GIF made by Pillow with irregular delays and partial-frame updates.

    Consecutive indices differ in a few blocks only, and `optimize=True` makes Pillow store just the
    changed rectangle of each frame; disposal methods alternate between "leave" (1) and "restore to
    background" (2), so a reader must composite frames to get them right. Returns the path and the
    per-frame delays in milliseconds (multiples of 10: GIF stores centiseconds).
    """
    if durations_ms is None:
        durations_ms = [[30, 100, 50, 200, 20, 70][i % 6] for i in range(num_frames)]
    images = [Image.fromarray(index_frame(i, size)) for i in range(num_frames)]
    disposal = [1 if i % 3 else 2 for i in range(num_frames)]
    path = Path(path)
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=durations_ms, loop=0, optimize=True, disposal=disposal
    )
    return path, list(durations_ms)


def random_clip(
    path: str | os.PathLike,
    num_frames: int = 10,
    size: tuple[int, int] = (64, 64),
    fps: float = 25,
    seed: int = 0,
) -> Path:
    """A clip of random noise frames (`size` is (W, H))."""
    rng = np.random.default_rng(seed)
    width, height = size
    frames = rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)
    return write_video(path, frames, fps)


def truncated_copy(src: str | os.PathLike, dst: str | os.PathLike, fraction: float = 0.5) -> Path:
    """Copy the first `fraction` of `src`'s bytes to `dst`: a download cut off midway."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def zero_byte(path: str | os.PathLike) -> Path:
    """An empty file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def text_as_video(path: str | os.PathLike) -> Path:
    """A text file under a video name (e.g. `notes.mp4`)."""
    path = Path(path)
    path.write_text("This is not a video, only some text with a video's file name.\n" * 20)
    return path


def audio_only_mp4(path: str | os.PathLike, seconds: float = 0.5, rate: int = 16000) -> Path:
    """An mp4 holding one AAC audio stream and no video."""
    import av

    path = Path(path)
    samples = int(seconds * rate)
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame_size = 1024
        for start in range(0, samples, frame_size):
            chunk = tone[start : start + frame_size][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def vfr_index_clip(path: str | os.PathLike, times_sec: list[float], size: tuple[int, int] = (64, 64)) -> Path:
    """A variable-frame-rate index clip (H.264 in mkv): frame i spells i and is shown at `times_sec[i]`.

    The container's nominal rate says nothing true about these times; only the packets' pts do.
    """
    import av

    path = Path(path)
    time_base = Fraction(1, 1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        for i, seconds in enumerate(times_sec):
            frame = av.VideoFrame.from_ndarray(index_frame(i, size), format="rgb24")
            frame.pts, frame.time_base = round(seconds * 1000), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def transparent_gif(path: str | os.PathLike, num_frames: int = 4, size: int = 32) -> Path:
    """A palette GIF whose frames paint one more vertical band each over a transparent start.

    Palette entry 0 (black) is transparent, delays include 0 ms (shown as 100 ms by browsers and
    FFmpeg), and each frame is kept under the next (disposal 1), so unpainted pixels stay transparent.
    """
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12)
    band = size // num_frames
    images = []
    for i in range(num_frames):
        pixels = np.zeros((size, size), dtype=np.uint8)
        pixels[:, band * i : band * (i + 1)] = 1 + i % 3
        image = Image.fromarray(pixels, mode="P")
        image.putpalette(palette)
        images.append(image)
    durations = [0 if i % 2 == 0 else 50 for i in range(num_frames)]
    path = Path(path)
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=durations, loop=0, transparency=0, disposal=1
    )
    return path
