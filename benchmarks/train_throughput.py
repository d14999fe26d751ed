"""Training throughput of `finetune/train_qa.py`'s data path and model: prints one JSON object.

    python benchmarks/train_throughput.py                       # clover-tiny on the CPU
    python benchmarks/train_throughput.py --task tgif-action --batch_size 16 --num_workers 1   # five candidates a question
    python benchmarks/train_throughput.py --batch_size 16 --num_workers 0 --clip_cache_gb 1      # the demo recipe's loading
    python benchmarks/train_throughput.py --config_overrides text_config.attention_probs_dropout_prob=0.1
    python benchmarks/train_throughput.py --preset clover-base --bf16 --batch_size 16   # on a GPU
        [--text_backbone DIR]     # BERT-base from a local directory (offline machines)

Generates a few synthetic TGIF clips (real GIF decoding), then measures (1) the data loader alone
(`--num_workers`, default 2, as training uses) in samples/s, and (2) full training steps (load,
forward, backward, AdamW step) in samples/s, and their ratio: a ratio near 1 means training waits
for decoding. On a GPU it also reports the peak memory. Figures only, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from clover.data.synthetic import generate_benchmark  # noqa: E402
from finetune import train_qa  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="clover-tiny", choices=["clover-tiny", "clover-base"])
    parser.add_argument("--task", default="tgif-frameqa")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--clip_cache_gb", type=float, default=0.0, help="train_qa's decoded-clip cache (0: decode every read)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after one warm-up step)")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--config_overrides", help='preset fields to change, as train_qa takes them ("key=value,text_config.key=value")')
    parser.add_argument("--text_backbone", help="a local BERT directory (clover-base offline: its tokenizer comes from there)")
    return parser.parse_args()


def make_run(args: argparse.Namespace, bench: Path, out: Path) -> train_qa.Run:
    argv = [
        "--task", args.task, "--annotations", str(bench / "tgif"), "--videos", str(bench / "tgif" / "gifs"),
        "--preset", args.preset, "--output_dir", str(out), "--per_device_train_batch_size", str(args.batch_size),
        "--num_workers", str(args.num_workers), "--clip_cache_gb", str(args.clip_cache_gb), "--skip_test", "--max_train_steps", "1000",
        "--mixed_precision", "bf16" if args.bf16 else "no",
    ]  # fmt: skip
    if args.text_backbone:
        argv += ["--text_backbone", args.text_backbone]
    if args.config_overrides:
        argv += ["--config_overrides", args.config_overrides]
    return train_qa.setup(train_qa.parse_args(argv))


def batches(run: train_qa.Run, count: int):
    """`count` batches, cycling over epochs."""
    epoch, done = 0, 0
    while True:
        train_qa.set_epoch(run, epoch)
        for batch in run.data.loader:
            yield batch
            done += 1
            if done >= count:
                return
        epoch += 1


def loader_rate(run: train_qa.Run, steps: int) -> float:
    start, samples = time.perf_counter(), 0
    for batch in batches(run, steps + 1):
        samples += len(batch["ids"])
    return samples / (time.perf_counter() - start)


def train_rate(run: train_qa.Run, steps: int) -> float:
    run.model.train()
    samples, start = 0, None
    for i, batch in enumerate(batches(run, steps + 1)):
        train_qa.train_step(run, batch)
        if i == 0:  # warm-up step not timed
            start = time.perf_counter()
            continue
        samples += len(batch["ids"])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return samples / (time.perf_counter() - start)


def main() -> dict[str, Any]:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        size = 224 if args.preset == "clover-base" else 112
        generate_benchmark(Path(tmp) / "bench", seed=0, train_clips=args.clips, val_clips=1, test_clips=1, size=size, num_frames=16, progress=False)
        run = make_run(args, Path(tmp) / "bench", Path(tmp) / "out")
        data_rate = loader_rate(run, args.steps)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        step_rate = train_rate(run, args.steps)
    result = {
        "preset": args.preset, "config_overrides": args.config_overrides, "task": args.task, "device": str(run.accelerator.device), "batch_size": args.batch_size,
        "num_workers": args.num_workers, "clip_cache_gb": args.clip_cache_gb, "mixed_precision": run.accelerator.mixed_precision, "torch_threads": torch.get_num_threads(),
        "train_samples_per_s": round(step_rate, 2), "loader_samples_per_s": round(data_rate, 2),
        "train_over_loader": round(step_rate / data_rate, 3),
    }  # fmt: skip
    if torch.cuda.is_available():
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
