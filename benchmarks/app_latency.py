"""Latency of the app's service (no browser, no HTTP): file to answer, follow-ups, throughput, int8.

    python benchmarks/app_latency.py [--checkpoint DIR | --random-tiny] [--threads N] [--clips DIR]

Makes a 10 s and a 60 s 720p H.264 clip (25 fps, keyframe interval 250) with `clover.video.write_video`
(kept in `--clips` for the next run), starts `app.service.VideoQAService` on the demo checkpoint (or
`--checkpoint`; `--random-tiny` uses a randomly initialised clover-tiny, which costs the same), and prints
one JSON object:

- per clip, the first answer's time from file to answer, split into hashing, reading (decode and
  preprocessing), encoding the clip and answering; then a follow-up question on the same clip;
- requests per second with 4 client threads, on a cached clip and with the cache off (every request
  reads and encodes the 10 s clip);
- int8 against fp32: model time (encode + answer) and agreement of the best answers over a set of
  questions;
- the issue's targets (first answer on the 60 s clip within 1 s, follow-up within 50 ms) checked.

Benchmarks report figures; the script exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from app.service import VideoQAService  # noqa: E402
from clover.inference import DEFAULT_CHECKPOINT  # noqa: E402
from clover.video import write_video  # noqa: E402
from video_read import moving_texture  # noqa: E402

FPS = 25
SIZE = (1280, 720)
KEYFRAME_INTERVAL = 250
QUESTIONS = [
    "what color is the circle ?",
    "what does the red square do ?",
    "where does the star move ?",
    "what shape is blue ?",
    "how many times does the triangle jump ?",
]
CANDIDATES = ["jump", "blink", "rotate", "move left", "stay still"]


def make_clip(directory: Path, seconds: int) -> Path:
    """The benchmark clip of `seconds` (reused when already written)."""
    path = directory / f"app_h264_720p_{seconds}s_k{KEYFRAME_INTERVAL}.mp4"
    if not path.is_file():
        partial = path.with_suffix(".partial.mp4")
        write_video(partial, moving_texture(*SIZE, seconds * FPS, seed=seconds), FPS, keyframe_interval=KEYFRAME_INTERVAL)
        partial.rename(path)
    return path


def first_and_follow_up(service: VideoQAService, clip: Path) -> dict:
    """A new clip's first answer (cache miss) and a follow-up question (cache hit), in seconds."""
    started = time.perf_counter()
    first = service.answer(clip, QUESTIONS[0])
    total = time.perf_counter() - started
    follow_ups = []
    for question in QUESTIONS[1:4]:
        started = time.perf_counter()
        answer = service.answer(clip, question)
        follow_ups.append(time.perf_counter() - started)
        assert answer.cached
    return {
        "first_answer_s": round(total, 4),
        "first_answer_split_s": {name: round(value, 4) for name, value in first.timings.items()},
        "reading_s": round(first.timings["hash"] + first.timings["read"], 4),
        "model_s": round(first.timings["encode"] + first.timings["answer"], 4),
        "follow_up_s": round(statistics.median(follow_ups), 4),
    }


def throughput(service: VideoQAService, clip: Path, clients: int = 4, per_client: int = 8) -> float:
    """Requests per second with `clients` threads each asking `per_client` questions about `clip`."""
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            for i in range(per_client):
                service.answer(clip, QUESTIONS[(index + i) % len(QUESTIONS)])
        except BaseException as error:  # reported, not swallowed
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return round(clients * per_client / elapsed, 2)


def int8_comparison(checkpoint: str, clips: list[Path], repeats: int = 3) -> dict:
    """Model time (encode + answer, median over repeats) and top-1 agreement of int8 with fp32."""
    results = {}
    best: dict[str, list[str]] = {}
    for name, int8 in (("fp32", False), ("int8", True)):
        service = VideoQAService(checkpoint, quantize_int8=int8, cache_entries=0)  # every call encodes
        times, answers = [], []
        for clip in clips:
            for _ in range(repeats):
                answer = service.answer(clip, QUESTIONS[0])
                times.append(answer.timings["encode"] + answer.timings["answer"])
            answers += [service.answer(clip, question).answers[0][0] for question in QUESTIONS]
            answers.append(service.choose(clip, QUESTIONS[1], CANDIDATES).answers[0][0])
        results[f"{name}_model_s"] = round(statistics.median(times), 4)
        best[name] = answers
    agree = sum(a == b for a, b in zip(best["fp32"], best["int8"]))
    results["top1_agreement"] = f"{agree}/{len(best['fp32'])}"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=os.environ.get("CLOVER_CHECKPOINT") or DEFAULT_CHECKPOINT)
    parser.add_argument("--random-tiny", action="store_true", help="time a randomly initialised clover-tiny instead")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "clover_bench_clips")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint
    if args.random_tiny:
        from tests.conftest import save_tiny_checkpoint

        checkpoint = str(save_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="clover_tiny_"))))
    args.clips.mkdir(parents=True, exist_ok=True)
    clips = {"10s": make_clip(args.clips, 10), "60s": make_clip(args.clips, 60)}

    service = VideoQAService(checkpoint)
    warm_up = make_clip(args.clips, 2)  # first-call costs (allocators, codec set-up) are not a clip's
    service.answer(warm_up, QUESTIONS[0])
    report: dict = {
        "checkpoint": "random clover-tiny" if args.random_tiny else checkpoint,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "clips": {name: {"path": str(path), "mb": round(path.stat().st_size / 2**20, 2)} for name, path in clips.items()},
    }
    for name, clip in clips.items():
        report["clips"][name].update(first_and_follow_up(service, clip))
    report["requests_per_s_4_clients"] = {
        "cached_clip": throughput(service, clips["10s"]),
        "uncached_10s_clip": throughput(VideoQAService(checkpoint, cache_entries=0), clips["10s"], per_client=2),
    }
    report["int8_vs_fp32"] = int8_comparison(checkpoint, list(clips.values()))
    report["targets"] = {
        "first_answer_60s_within_1s": report["clips"]["60s"]["first_answer_s"] <= 1.0,
        "follow_up_within_50ms": max(c["follow_up_s"] for c in report["clips"].values()) <= 0.05,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
