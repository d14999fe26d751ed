"""Load test of the real app: N concurrent gradio_client clients on loopback, bounded in count and time.

    python benchmarks/app_load.py [--checkpoint DIR] [--clients 8] [--questions 10] [--time-limit 300]

Starts `python app.py` (the demo checkpoint `examples/checkpoint` if it exists, else `--checkpoint`, else a
random clover-tiny saved into a temp dir) on a free 127.0.0.1 port. Each client uploads its own clip
(distinct bytes, so each is read and encoded once) and asks `--questions` questions about it, open-ended
and multiple choice, plus one unreadable upload to check errors under load. The server's RSS is sampled
every 50 ms (psutil). Prints one JSON object: requests served, errors (expected and unexpected), p50/p95
latency, server RSS at baseline (after one warm-up request), at its peak, after each round of the load
(`--rounds`: a leak grows every round, an allocator's high-water mark does not) and after a settle pause,
the feature cache's bound, and the files left in the temp dir after shutdown.

Benchmarks report figures; the script exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.corpus import AppProcess  # noqa: E402
from tests.media import random_clip, text_as_video  # noqa: E402

QUESTIONS = ["what does the red circle do ?", "what color is the square ?", "where does the star move ?"]
CANDIDATES = "jump\nblink\nrotate\nmove left"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="model directory (default: examples/checkpoint, else a random clover-tiny)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--questions", type=int, default=10, help="questions per client")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds after which no new request starts")
    parser.add_argument("--cache-mb", type=float, default=64, help="the app's feature cache bound")
    parser.add_argument("--rounds", type=int, default=2, help="times the whole load is repeated (a leak grows per round)")
    return parser.parse_args(argv)


def pick_checkpoint(args: argparse.Namespace, scratch: Path) -> tuple[Path, str]:
    demo = ROOT / "examples" / "checkpoint"
    if demo.is_dir():
        return demo, "examples/checkpoint (demo)"
    if args.checkpoint:
        return Path(args.checkpoint), args.checkpoint
    from tests.conftest import save_tiny_checkpoint

    return save_tiny_checkpoint(scratch / "tiny"), "random clover-tiny (examples/checkpoint absent)"


class RssSampler(threading.Thread):
    """Samples a process's resident memory every `interval` seconds; `peak` and `last` in MB."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.process, self.interval = psutil.Process(pid), interval
        self.peak = self.last = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.last = self.process.memory_info().rss / 2**20
            except psutil.Error:
                return
            self.peak = max(self.peak, self.last)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def client_session(url: str, clip: Path, bad: Path, questions: int, deadline: float) -> dict:
    """One client: its clip, `questions` questions (every third multiple choice), one bad upload."""
    latencies, errors, unexpected = [], 0, []
    with closing(Client(url, verbose=False, download_files=False)) as client:
        for i in range(questions):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            try:
                if i % 3 == 2:
                    client.predict(handle_file(clip), QUESTIONS[i % 3], CANDIDATES, api_name="/choose")
                else:
                    client.predict(handle_file(clip), QUESTIONS[i % 3], api_name="/answer")
                latencies.append(time.perf_counter() - started)
            except Exception as error:  # every request should be answered under load
                unexpected.append(f"{type(error).__name__}: {error}"[:200])
        try:
            client.predict(handle_file(bad), QUESTIONS[0], api_name="/answer")
            unexpected.append("an unreadable upload was answered")
        except AppError:
            errors += 1
    return {"latencies": latencies, "expected_errors": errors, "unexpected": unexpected}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clover_load_") as scratch_name:
        scratch = Path(scratch_name)
        checkpoint, described = pick_checkpoint(args, scratch)
        clips = [random_clip(scratch / f"client_{i}.mp4", num_frames=50, size=(160, 120), seed=100 + i) for i in range(args.clients)]
        bad = text_as_video(scratch / "notes.mp4")
        app = AppProcess(checkpoint, scratch / "app", "--cache-mb", str(args.cache_mb), "--concurrency", "2")
        app.start()
        try:
            result = load(app, args, clips, bad)
        finally:
            app.stop()
        result.update(checkpoint=described, files_left_after_shutdown=len(app.files()))
    print(json.dumps(result, indent=1))
    return result


def load(app: AppProcess, args: argparse.Namespace, clips: list[Path], bad: Path) -> dict:
    """Warm up, measure the baseline, run the clients, and measure after."""
    sampler = RssSampler(app.process.pid)
    sampler.start()
    with closing(Client(app.url, verbose=False, download_files=False)) as warm:
        warm.predict(handle_file(clips[0]), QUESTIONS[0], api_name="/answer")
    time.sleep(1.0)
    baseline = sampler.last
    started = time.monotonic()
    deadline = started + args.time_limit
    sessions, rss_per_round = [], []
    for _ in range(args.rounds):  # the same clips again: cached features, fresh uploads of the same bytes
        with ThreadPoolExecutor(args.clients) as pool:
            sessions += pool.map(lambda clip: client_session(app.url, clip, bad, args.questions, deadline), clips)
        rss_per_round.append(round(sampler.last, 1))
    wall = time.monotonic() - started
    after = sampler.last
    time.sleep(3.0)
    settled = sampler.last
    sampler.stop()
    latencies = sorted(value for session in sessions for value in session["latencies"])
    unexpected = [message for session in sessions for message in session["unexpected"]]
    return {
        "clients": args.clients,
        "questions_per_client": args.questions,
        "rounds": args.rounds,
        "requests_served": len(latencies),
        "expected_errors": sum(session["expected_errors"] for session in sessions),
        "unexpected_errors": len(unexpected),
        "unexpected_examples": unexpected[:3],
        "wall_seconds": round(wall, 2),
        "requests_per_second": round(len(latencies) / wall, 2) if wall else None,
        "latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
        "rss_baseline_mb": round(baseline, 1),
        "rss_peak_mb": round(sampler.peak, 1),
        "rss_after_each_round_mb": rss_per_round,
        "rss_after_mb": round(after, 1),
        "rss_after_settle_mb": round(settled, 1),
        "feature_cache_bound_mb": args.cache_mb,
        "temp_files_during": len(app.files()),
    }


if __name__ == "__main__":
    main()
