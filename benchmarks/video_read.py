"""Benchmark `clover.video.read_frames` against decode-everything and the keyframe floor.

Makes its own clips with `write_video` (H.264 640x360 and 1280x720 at 25 fps, 10 s, 60 s and 300 s,
keyframe interval 250 and 25, plus a 300-frame animated GIF) in a cache folder, then times
`read_frames(num_frames=8)` for each backend and seek mode. Each case runs in its own subprocess so
that its peak RSS (C allocations included, which tracemalloc cannot see) is measured alone.

    python benchmarks/video_read.py [--quick] [--repeats 3] [--out DIR]

Prints one JSON object: medians, ratios and the issue's targets checked (pass/fail fields; the
script always exits 0, since benchmarks report figures and never fail a build).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clover.video import write_video  # noqa: E402

FPS = 25
SIZES = {"360p": (640, 360), "720p": (1280, 720)}
DURATIONS_FULL = (10, 60, 300)
DURATIONS_QUICK = (10, 60)
KEYFRAME_INTERVALS = (250, 25)
GIF_FRAMES = 300
NUM_FRAMES = 8


# ----------------------------------------------------------------------------------------- clips
def clip_name(size: str, seconds: int, keyframe_interval: int) -> str:
    return f"h264_{size}_{seconds}s_k{keyframe_interval}.mp4"


def moving_texture(width: int, height: int, num_frames: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield frames of a blocky random texture that pans and drifts: cheap to make, real work to encode."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)  # twice the frame size, 16-px blocks
    for i in range(num_frames):
        dx, dy = (3 * i) % width, (i // 2) % height
        frame = texture[dy : dy + height, dx : dx + width]
        yield np.ascontiguousarray(frame + np.uint8(i % 64))  # brightness drift: no two frames alike


def make_clips(out: Path, durations: tuple[int, ...]) -> dict[str, Path]:
    """Write (or reuse from `out`) every benchmark clip; return name -> path."""
    clips: dict[str, Path] = {}
    for size, (width, height) in SIZES.items():
        for seconds in durations:
            for interval in KEYFRAME_INTERVALS:
                path = out / clip_name(size, seconds, interval)
                if not path.exists():
                    tmp = path.with_suffix(".part.mp4")
                    write_video(tmp, moving_texture(width, height, seconds * FPS), FPS, keyframe_interval=interval)
                    tmp.rename(path)
                clips[path.stem] = path
    gif = out / f"animated_{GIF_FRAMES}.gif"
    if not gif.exists():
        rng = np.random.default_rng(1)
        frames = np.stack(list(moving_texture(240, 180, GIF_FRAMES)))
        durations_ms = rng.choice([20, 40, 60, 100], size=GIF_FRAMES).tolist()  # irregular delays
        tmp = gif.with_suffix(".part.gif")
        write_video(tmp, frames, gif_durations_ms=durations_ms)
        tmp.rename(gif)
    clips[gif.stem] = gif
    return clips


# ----------------------------------------------------------------------------------------- cases
def run_case(method: str, path: str, repeats: int) -> dict:
    """Time `method` on `path` `repeats` times in this process; report peak RSS.

    One untimed warm-up read comes first (codec set-up, page cache), except for decode-everything,
    whose minute-long reads on the long clips would double the run for nothing: the cases before it
    have already brought the file into the page cache.
    """
    import resource

    import av  # noqa: F401  (libraries load before the baseline RSS, so it counts only the reading)

    reader = _reader(method)
    baseline_kb = _current_rss_kb()
    if method != "decode_all":
        reader(Path(path))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reader(Path(path))
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"median_s": statistics.median(times), "times_s": times, "peak_rss_mb": peak_kb / 1024,
            "peak_over_import_mb": (peak_kb - baseline_kb) / 1024}


def _current_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _reader(method: str):
    """The function a case times: `read_frames` with a backend and seek mode, or a baseline."""
    from clover.video import read_frames

    kind, _, option = method.partition(":")
    if kind in ("pyav", "decord"):
        import decord  # noqa: F401  (imported before the RSS baseline, like av)
        return lambda path: read_frames(path, NUM_FRAMES, seek=option, backend=kind)
    if kind == "torchcodec":
        return _torchcodec_reader(option)
    if kind == "decode_all":
        return decode_everything_then_pick
    if kind == "keyframe_floor":
        return keyframe_floor
    raise ValueError(f"unknown method {method!r}")


def _open_threaded(path: Path):
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type, stream.codec_context.thread_count = "FRAME", 2
    return container, stream


def decode_everything_then_pick(path: Path) -> np.ndarray:
    """Baseline: decode every frame in order and keep the 8 segment centres (as RGB).

    Frames are dropped as they go (holding all of a 5-minute 720p clip would need 20 GB), so this
    baseline measures the decoding work of reading everything, not its memory.
    """
    container, stream = _open_threaded(path)
    with container:
        total = stream.frames or sum(1 for _ in container.demux(stream)) - 1  # minus the flush packet
        container.seek(0)
        centres = {((2 * k + 1) * total) // (2 * NUM_FRAMES) for k in range(NUM_FRAMES)}
        picked = [frame.to_ndarray(format="rgb24") for i, frame in enumerate(container.decode(stream)) if i in centres]
    return np.stack(picked)


def keyframe_floor(path: Path) -> np.ndarray:
    """The least any reader can do: open, seek to the keyframe at or before each segment centre, decode it."""
    container, stream = _open_threaded(path)
    with container:
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        frames = []
        for k in range(NUM_FRAMES):
            centre = (k + 0.5) * duration / NUM_FRAMES
            container.seek(int(centre / stream.time_base), stream=stream, backward=True, any_frame=False)
            frames.append(next(container.decode(stream)).to_ndarray(format="rgb24"))
    return np.stack(frames)


def _torchcodec_reader(option: str):
    from torchcodec.decoders import VideoDecoder

    def read(path: Path) -> np.ndarray:
        decoder = VideoDecoder(str(path), seek_mode="exact" if option == "exact" else "approximate")
        count = len(decoder)
        indices = [((2 * k + 1) * count) // (2 * NUM_FRAMES) for k in range(NUM_FRAMES)]
        return decoder.get_frames_at(indices).data.numpy()

    return read


def methods(is_gif: bool) -> list[str]:
    """Every method timed on a clip: our reader per backend and seek mode, then the two baselines."""
    names = [f"pyav:{seek}" for seek in ("auto", "exact", "keyframe")]
    if not is_gif:
        names += [f"decord:{seek}" for seek in ("auto", "exact", "keyframe")]
        try:
            import torchcodec  # noqa: F401

            names += ["torchcodec:exact", "torchcodec:approximate"]
        except ImportError:
            pass
    return names + ["decode_all", "keyframe_floor"]


def measure(path: Path, method: str, repeats: int) -> dict:
    """Run one case in a fresh subprocess, so its peak RSS is its own."""
    command = [sys.executable, __file__, "--case", method, str(path), str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout)


# --------------------------------------------------------------------------------------- targets
def check_targets(results: dict[str, dict[str, dict]], full: bool) -> dict:
    """The issue's targets for the default seek (`pyav:auto`), per keyframe interval, at 720p."""

    def time_of(name: str, method: str = "pyav:auto") -> float | None:
        return results.get(name, {}).get(method, {}).get("median_s")

    checks = {}
    for interval in KEYFRAME_INTERVALS:
        tag = f"k{interval}"
        clip = {s: clip_name("720p", s, interval).removesuffix(".mp4") for s in DURATIONS_FULL}
        rows = {
            f"720p_60s_speedup_vs_decode_all_{tag}": (_ratio(time_of(clip[60], "decode_all"), time_of(clip[60])), ">=", 5),
            f"720p_60s_over_keyframe_floor_{tag}": (_ratio(time_of(clip[60]), time_of(clip[60], "keyframe_floor")), "<=", 1.3),
        }
        if full:
            mem = {s: results.get(clip[s], {}).get("pyav:auto", {}).get("peak_rss_mb") for s in (10, 300)}
            rows |= {
                f"720p_300s_speedup_vs_decode_all_{tag}": (_ratio(time_of(clip[300], "decode_all"), time_of(clip[300])), ">=", 20),
                f"720p_300s_over_10s_time_{tag}": (_ratio(time_of(clip[300]), time_of(clip[10])), "<=", 2),
                f"720p_300s_over_keyframe_floor_{tag}": (_ratio(time_of(clip[300]), time_of(clip[300], "keyframe_floor")), "<=", 1.3),
                f"720p_300s_over_10s_peak_rss_{tag}": (_ratio(mem[300], mem[10]), "<=", 1.5),
            }
        for name, (value, op, bound) in rows.items():
            ok = value is not None and (value >= bound if op == ">=" else value <= bound)
            checks[name] = {"value": value, "target": f"{op} {bound}", "pass": ok}
    return checks


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="clip cache folder (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="only the 10 s and 60 s clips")
    parser.add_argument("--repeats", type=int, default=3, help="timed reads per case (after one warm-up)")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="timed reads of decode-everything")
    parser.add_argument("--case", nargs=3, metavar=("METHOD", "PATH", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process: one case
        method, path, repeats = args.case
        print(json.dumps(run_case(method, path, int(repeats))))
        return
    with tempfile.TemporaryDirectory(prefix="clover-bench-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        clips = make_clips(out, DURATIONS_QUICK if args.quick else DURATIONS_FULL)
        made_s = time.perf_counter() - started
        results: dict[str, dict[str, dict]] = {}
        for name, path in clips.items():
            results[name] = {}
            for method in methods(path.suffix == ".gif"):
                repeats = args.baseline_repeats if method == "decode_all" else args.repeats
                results[name][method] = measure(path, method, repeats)
            _add_ratios(results[name])
            print(f"{name}: done", file=sys.stderr)
        report = {
            "machine": {"cpus": os.cpu_count(), "note": "shared machine: timings are noisy"},
            "num_frames": NUM_FRAMES,
            "clips_made_or_reused_s": round(made_s, 1),
            "results": results,
            "targets": check_targets(results, full=not args.quick),
        }
        print(json.dumps(report, indent=1))


def _add_ratios(cases: dict[str, dict]) -> None:
    """Per method: speed-up over decode-everything and time over the keyframe floor."""
    full = cases.get("decode_all", {}).get("median_s")
    floor = cases.get("keyframe_floor", {}).get("median_s")
    for method, case in cases.items():
        if "median_s" in case and method not in ("decode_all", "keyframe_floor"):
            case["speedup_vs_decode_all"] = _ratio(full, case["median_s"])
            case["over_keyframe_floor"] = _ratio(case["median_s"], floor)


if __name__ == "__main__":
    main()
