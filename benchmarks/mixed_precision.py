"""Mixed precision on a GPU: does bf16 / fp16 autocast agree with fp32, and what does it buy? Prints JSON.

    python benchmarks/mixed_precision.py                         # clover-base and clover-tiny, on CUDA
    python benchmarks/mixed_precision.py --presets clover-tiny --device cpu   # bf16 on the CPU

For each preset and precision it builds a `CloverForVideoQA` (open, mc and count heads) with fixed
random weights and random inputs, and reports: the largest difference of its logits from fp32
(relative to the fp32 logits' scale); whether the losses are finite and on how many steps the
gradients overflowed; training steps per second (forward, backward, AdamW) and, on CUDA, peak
memory; and inference clips per second for `encode_video` (the app's expensive step). fp16 training
uses a gradient scaler, as Accelerate does. Figures only, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from clover import CloverConfig, CloverForVideoQA  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["clover-base", "clover-tiny"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"], choices=list(DTYPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    return parser.parse_args()


def build(preset: str, device: str) -> tuple[CloverForVideoQA, CloverConfig]:
    config = CloverConfig.from_preset(preset, qa_heads=["open", "mc", "count"], id2label={i: f"answer{i}" for i in range(100)})
    torch.manual_seed(0)
    model = CloverForVideoQA(config).to(device)
    return model, config


def inputs(config: CloverConfig, batch: int, device: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    size, frames, vocab = config.image_size, config.num_frames, config.text_config.vocab_size
    return {
        "pixel_values": torch.randn(batch, frames, 3, size, size, generator=generator).to(device),  # (B, T, 3, S, S)
        "input_ids": torch.randint(5, vocab, (batch, 20), generator=generator).to(device),  # (B, L), past the special tokens
        "labels": torch.randint(0, 100, (batch,), generator=generator).to(device),  # (B,)
    }


def autocast(device: str, dtype: torch.dtype | None):
    return torch.autocast(device_type=device, dtype=dtype) if dtype is not None else nullcontext()


def agreement(model: CloverForVideoQA, batch: dict[str, torch.Tensor], dtype: torch.dtype | None, device: str) -> float:
    """max |logits - fp32 logits| / max |fp32 logits|, in eval mode (no dropout)."""
    model.eval()
    with torch.no_grad():
        reference = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"]).logits.float()
        with autocast(device, dtype):
            logits = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"]).logits.float()
    return float((logits - reference).abs().max() / reference.abs().max())


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def training(model: CloverForVideoQA, batch: dict[str, torch.Tensor], dtype: torch.dtype | None, device: str, steps: int) -> dict[str, Any]:
    """Timed AdamW steps under autocast: whether every loss was finite, and on how many steps the
    gradients overflowed (fp16's scaler then skips the step and lowers its scale, as it should early on)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler(device, enabled=dtype is torch.float16)
    losses_finite, overflow_steps, start = True, 0, None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 2):
        if step == 2:
            synchronize(device)
            start = time.perf_counter()
        with autocast(device, dtype):
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        losses_finite &= bool(torch.isfinite(loss))
        overflow_steps += not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        scaler.step(optimizer)
        scaler.update()
    synchronize(device)
    result = {
        "losses_finite": losses_finite, "overflow_steps": f"{overflow_steps}/{steps + 2}",
        "train_steps_per_s": round(steps / (time.perf_counter() - start), 2),
    }
    if device.startswith("cuda"):
        result["train_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def inference_rate(model: CloverForVideoQA, pixel_values: torch.Tensor, dtype: torch.dtype | None, device: str) -> float:
    """encode_video clips per second (the app encodes each upload once)."""
    model.eval()
    with torch.inference_mode(), autocast(device, dtype):
        for _ in range(2):
            model.encode_video(pixel_values)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(5):
            model.encode_video(pixel_values)
        synchronize(device)
    return round(5 * len(pixel_values) / (time.perf_counter() - start), 1)


def main() -> list[dict[str, Any]]:
    args = parse_args()
    results = []
    for preset in args.presets:
        model, config = build(preset, args.device)
        batch = inputs(config, args.batch_size, args.device)
        initial = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        for precision in args.precisions:
            model.load_state_dict(initial)  # every precision starts from the same weights
            dtype = DTYPES[precision]
            row = {"preset": preset, "precision": precision, "device": args.device, "batch_size": args.batch_size}
            row["logits_rel_diff_vs_fp32"] = round(agreement(model, batch, dtype, args.device), 5)
            row.update(training(model, batch, dtype, args.device, args.steps))
            row["encode_video_clips_per_s"] = inference_rate(model, batch["pixel_values"], dtype, args.device)
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


if __name__ == "__main__":
    main()
