"""Run by ``tests/test_finetune.py`` under ``torch.distributed.run`` with 1 or 2 processes (gloo, CPU).

Builds the training run of ``finetune/train_qa.py`` (its own functions: arguments, Accelerator, data,
model, prepare), takes the first training batch of each process, and computes the gradient of the
loss with dropout off (model.eval()). Under DDP the gradients are averaged over the processes, so with
2 processes of 2 clips each they must equal 1 process with the 4 clips of the same global batch
(`TaskBatchSampler` hands out the same global batch whatever the process count). Rank 0 saves
``{name: grad}`` to OUT.pt.

Usage: ``python -m torch.distributed.run --nproc_per_node N tests/finetune_dist_worker.py OUT.pt BENCH PER_DEVICE_BATCH``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune import train_qa  # noqa: E402
from finetune.common import end_distributed  # noqa: E402


def main() -> None:
    out, bench, batch_size = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    args = train_qa.parse_args([
        "--task", "tgif-frameqa", "--annotations", str(bench / "tgif"), "--videos", str(bench / "tgif" / "gifs"),
        "--preset", "clover-tiny", "--output_dir", str(Path(out).parent / f"run_{Path(out).stem}"),
        "--per_device_train_batch_size", batch_size, "--num_workers", "0", "--skip_test", "--max_train_steps", "1",
    ])
    run = train_qa.setup(args)
    train_qa.set_epoch(run, 0)
    batch = next(iter(run.data.loader))
    run.model.eval()
    loss = train_qa.training_loss(run, batch)
    run.accelerator.backward(loss)
    if run.accelerator.is_main_process:
        model = run.accelerator.unwrap_model(run.model)
        grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
        torch.save({"grads": grads, "ids": batch["ids"]}, out)
    end_distributed(run.accelerator)  # as the scripts end: no gloo hang at exit


if __name__ == "__main__":
    main()
