"""`python -m finetune.train_qa` killed with SIGKILL at seeded random moments and resumed with
`--resume_from_checkpoint latest` ends with the weights and metrics of an uninterrupted run.

The script is a black box here: a real process on a tiny generated dataset (clover-tiny, 4 training
clips at 64 px, batch 2, a checkpoint every step), killed three times: at a random step, sometimes
while a checkpoint is being written. Before the last resume a newer checkpoint is planted half-written
(no COMPLETE marker and a truncated model file), as a kill mid-save leaves one: it must be skipped with
a message.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clover.data.synthetic import generate_benchmark

ROOT = Path(__file__).resolve().parents[1]
MAX_STEPS = 8
KILLS = 3
RUN_TIMEOUT_SEC = 120


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kill_bench")
    generate_benchmark(out, seed=3, train_clips=4, val_clips=1, test_clips=1, size=64, num_frames=8, fps=8, progress=False)
    return out


def train_command(bench: Path, output: Path, *extra: str) -> list[str]:
    tgif = bench / "tgif"
    return [
        sys.executable, "-m", "finetune.train_qa", "--task", "tgif-frameqa", "--annotations", str(tgif),
        "--videos", str(tgif / "gifs"), "--preset", "clover-tiny", "--output_dir", str(output),
        "--num_workers", "0", "--per_device_train_batch_size", "2", "--max_train_steps", str(MAX_STEPS),
        "--checkpointing_steps", "1", "--checkpoints_total_limit", "3", "--learning_rate", "1e-3",
        "--warmup_ratio", "0", "--seed", "0", "--skip_test", *extra,
    ]  # fmt: skip


def run_to_end(command: list[str], log: Path) -> None:
    with open(log, "ab") as output:
        done = subprocess.run(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_SEC, env=_env())
    assert done.returncode == 0, log.read_text(errors="replace")[-3000:]


def run_and_kill(command: list[str], output_dir: Path, log: Path, rng: random.Random) -> str:
    """Start the run and SIGKILL it once it has logged 1 to 3 more steps (plus a random
    few milliseconds, so the kill lands sometimes in a step and sometimes in a checkpoint save).
    Returns where it was killed."""
    train_log = output_dir / "train_log.jsonl"
    start = _steps_logged(train_log)  # a resumed run appends to the log of the runs before it
    kill_after = min(start + rng.randint(1, 3), start + MAX_STEPS - 2)
    delay = rng.choice([0.0, 0.02, 0.1, 0.3])
    with open(log, "ab") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + RUN_TIMEOUT_SEC
    try:
        while _steps_logged(train_log) < kill_after:
            if process.poll() is not None:
                return f"finished before step {kill_after} (exit {process.returncode})"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.01)
        time.sleep(delay)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
    return f"after {_steps_logged(train_log) - start} logged step(s) (+{delay * 1000:.0f} ms)"


def plant_half_written_checkpoint(output_dir: Path) -> Path:
    """A copy of the newest complete checkpoint as a later step, without COMPLETE, its model truncated."""
    import shutil

    root = output_dir / "checkpoints"
    complete = sorted((p for p in root.glob("step_*") if (p / "COMPLETE").is_file()), key=lambda p: int(p.name[5:]))
    fake = root / "step_90"
    shutil.copytree(complete[-1], fake)
    (fake / "COMPLETE").unlink()
    for weights in fake.glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    return fake


def test_killed_and_resumed_run_equals_an_uninterrupted_one(bench: Path, tmp_path: Path) -> None:
    reference, resumed, log = tmp_path / "reference", tmp_path / "resumed", tmp_path / "runs.log"
    run_to_end(train_command(bench, reference), log)

    rng = random.Random(8)
    kills = []
    for attempt in range(KILLS):
        extra = ("--resume_from_checkpoint", "latest") if attempt else ()
        kills.append(run_and_kill(train_command(bench, resumed, *extra), resumed, log, rng))
    fake = plant_half_written_checkpoint(resumed)
    before = log.read_text(errors="replace")
    run_to_end(train_command(bench, resumed, "--resume_from_checkpoint", "latest"), log)
    last_run = log.read_text(errors="replace")[len(before) :]
    assert f"skipping half-written checkpoint {fake}" in last_run, last_run[-2000:]
    assert "resumed from" in last_run

    expected, got = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == got.keys()
    write_summary(kills, log.read_text(errors="replace"), expected, got, _metrics(resumed) == _metrics(reference))
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=f"{name} after kills at {kills}")
    assert _metrics(resumed) == _metrics(reference), f"kills at {kills}"


def write_summary(kills: list[str], log: str, expected: dict, got: dict, metrics_equal: bool) -> None:
    """For `benchmarks/reliability_report.py`: where the runs were killed, what they resumed from, and
    how far the weights are from the uninterrupted run's (written when CLOVER_KILL_RESUME_SUMMARY names a file)."""
    target = os.environ.get("CLOVER_KILL_RESUME_SUMMARY")
    if not target:
        return
    resumed_from = [line.split("resumed from ", 1)[1].split(":")[0] for line in log.splitlines() if "resumed from " in line]
    skipped = [line.split("skipping ", 1)[1] for line in log.splitlines() if "skipping half-written" in line]
    difference = max(float((got[name] - expected[name]).abs().max()) for name in expected)
    summary = {"max_steps": MAX_STEPS, "kills": kills, "resumed_from": [Path(p).name for p in resumed_from],
               "skipped": skipped, "max_abs_weight_difference": difference, "metrics_equal": metrics_equal}  # fmt: skip
    Path(target).write_text(json.dumps(summary, indent=1), encoding="utf-8")


def _metrics(output_dir: Path) -> dict:
    """metrics.json without what depends on the wall clock."""
    metrics = json.loads((output_dir / "metrics.json").read_text())
    return _drop_timing(metrics)


def _drop_timing(value):
    if isinstance(value, dict):
        return {k: _drop_timing(v) for k, v in value.items() if not any(t in k for t in ("time", "second", "per_s", "runtime"))}
    return value


def _steps_logged(train_log: Path) -> int:
    try:
        return sum(1 for line in train_log.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
