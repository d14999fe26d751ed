"""Run by ``tests/test_losses.py`` under ``torchrun --nproc_per_node 2`` (gloo, CPU).

Every rank builds the same small linear layer and the same global batch (fixed seed), computes the
single-process reference on the global batch *before* joining the process group, then joins it,
computes every loss on its half of the batch, takes the gradient of each loss with respect to the
layer, all-reduce-averages the gradients (as DDP would) and the loss values. Rank 0 writes a JSON file
with the largest differences to the reference: ``{"value_diff": {name: float}, "grad_diff": {name:
float}, "names": [...], "control_grad_diff": float}``. The control repeats the pair-wise InfoNCE
with a gather that keeps only the local rows' gradients (open_clip's gather without
``gather_with_grad``): its gradients must *differ* from the reference, which shows that the
comparison can fail.

Usage: ``torchrun --nproc_per_node 2 --master_port PORT tests/dist_losses_worker.py OUT.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clover.losses  # noqa: E402
from clover.losses import (  # noqa: E402
    MaskedLanguageModelingLoss,
    PairwiseInfoNCELoss,
    PairwiseRankingLoss,
    TriModalAlignmentLoss,
)

GLOBAL_BATCH, IN_DIM, DIM, LENGTH = 8, 6, 5, 3
KINDS = ("video", "text", "masked_text", "fused_v", "masked_video", "fused_t", "tokens")


def make_inputs() -> tuple[nn.Linear, dict[str, torch.Tensor], torch.Tensor]:
    """The layer, its global inputs per kind and the MLM labels; identical on every rank."""
    torch.manual_seed(0)
    layer = nn.Linear(IN_DIM, DIM).double()
    inputs = {kind: torch.randn(GLOBAL_BATCH, IN_DIM, dtype=torch.float64) for kind in KINDS[:-1]}
    inputs["tokens"] = torch.randn(GLOBAL_BATCH, LENGTH, IN_DIM, dtype=torch.float64)
    labels = torch.randint(DIM, (GLOBAL_BATCH, LENGTH))  # (B, L), vocabulary = DIM
    labels[: GLOBAL_BATCH // 2, 0] = -100  # first half: 8 masked tokens ...
    labels[GLOBAL_BATCH // 2 :, :2] = -100  # ... second half: 4, so per-rank counts differ
    return layer, inputs, labels


def all_losses(layer: nn.Linear, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict:
    """Every Clover loss on the given (local or global) batch."""
    e = {kind: layer(x) for kind, x in inputs.items()}  # (B, D) each; tokens (B, L, D)
    video_anchored = TriModalAlignmentLoss(prefix="align_v")(
        e["video"], {"text": e["text"], "masked_text": e["masked_text"], "fused": e["fused_v"]}
    )
    text_anchored = TriModalAlignmentLoss(prefix="align_t")(
        e["text"], {"video": e["video"], "masked_video": e["masked_video"], "fused": e["fused_t"]}
    )
    ranking = PairwiseRankingLoss(margin=5.0)(e["video"], e["text"], e["masked_video"], e["masked_text"])
    mlm = MaskedLanguageModelingLoss(focal_gamma=2.0)(e["tokens"], labels)
    itc = PairwiseInfoNCELoss()(e["video"], e["text"])
    return {**video_anchored, **text_anchored, **ranking, **mlm, **itc}


def gradients(losses: dict, layer: nn.Linear) -> dict[str, torch.Tensor]:
    """Gradient of each loss with respect to all of the layer's parameters, flattened."""
    params = list(layer.parameters())
    result = {}
    for name in sorted(losses):  # same order on every rank: the backward runs collectives
        grads = torch.autograd.grad(losses[name], params, retain_graph=True)
        result[name] = torch.cat([g.flatten() for g in grads])
    return result


def gather_local_grad_only(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather in which only this rank's rows carry gradients (the other ranks' are constants)."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts, dim=0)  # (world * B_local, D)


def control_grad_diff(layer: nn.Linear, inputs: dict, reference_grads: dict, local: slice) -> float:
    """Largest difference of the averaged itc_v2t gradient to the reference without the gradient
    gather; expected to be far above the tolerance."""
    original = clover.losses.gather_with_grad
    clover.losses.gather_with_grad = gather_local_grad_only
    try:
        loss = PairwiseInfoNCELoss()(layer(inputs["video"][local]), layer(inputs["text"][local]))
    finally:
        clover.losses.gather_with_grad = original
    grad = torch.cat([g.flatten() for g in torch.autograd.grad(loss["itc_v2t"], list(layer.parameters()))])
    dist.all_reduce(grad)
    return (grad / dist.get_world_size() - reference_grads["itc_v2t"]).abs().max().item()


def main(out_path: str) -> None:
    layer, inputs, labels = make_inputs()
    reference = all_losses(layer, inputs, labels)  # process group not initialised yet
    reference_grads = gradients(reference, layer)

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    losses = all_losses(layer, {k: v[local] for k, v in inputs.items()}, labels[local])
    grads = gradients(losses, layer)
    value_diff, grad_diff = {}, {}
    for name in sorted(losses):
        value = losses[name].detach().clone()
        dist.all_reduce(value)  # mean over ranks, as a logger would report it
        dist.all_reduce(grads[name])  # DDP: average of the ranks' gradients
        value_diff[name] = abs(value.item() / world - reference[name].item())
        grad_diff[name] = (grads[name] / world - reference_grads[name]).abs().max().item()
    control = control_grad_diff(layer, inputs, reference_grads, local)
    if rank == 0:
        result = {
            "names": sorted(losses),
            "value_diff": value_diff,
            "grad_diff": grad_diff,
            "control_grad_diff": control,
        }
        Path(out_path).write_text(json.dumps(result, indent=2))
    last = dist.barrier(async_op=True)  # held past the group's end: see finetune.common.end_distributed
    last.wait()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
