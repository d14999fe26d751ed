"""Clover's pre-training losses, each a small module that returns a dict of named scalar losses.

The trainer sums the values of the dicts (all Clover losses have equal weight). Modelled on
open_clip's ``loss.py``: every contrastive loss is split into ``gather`` (embeddings of the whole
global batch, with gradients), ``logits`` and ``targets``, and ``forward`` puts them together.

Distributed semantics ("local loss", as open_clip's ``local_loss=True``): each process computes the
loss of its *local* anchors against the candidates of the *global* batch. The gather carries
gradients back to the process that produced each embedding, so after DDP averages the parameter
gradients across processes, both the mean of the per-process losses and the gradients equal those of
one process computing the loss on the global batch. This requires the same local batch size on every
process (``torch.distributed.all_gather`` needs equal shapes); ``tests/test_losses.py`` checks it with a
2-process run.

Losses:
    * :class:`TriModalAlignmentLoss`  - Clover's "exclusive" InfoNCE with three positives per anchor.
    * :class:`PairwiseRankingLoss`    - complete partner must beat the semantically masked partner.
    * :class:`MaskedLanguageModelingLoss` - cross-entropy or focal loss over masked tokens.
    * :class:`PairwiseInfoNCELoss`    - plain symmetric video-text InfoNCE (the baseline).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


# --------------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------------


def _world_size_and_rank() -> tuple[int, int]:
    """(world size, rank) of the default process group, (1, 0) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather whose backward returns to each process the gradient of its own slice, summed over
    the losses of *all* processes (all-reduce of the gathered gradient, then this rank's slice).

    A plain ``dist.all_gather`` returns tensors without a graph: the other processes' losses would then
    contribute nothing to this process's embeddings, and the averaged gradient would be too small.
    An all-reduce is used rather than a reduce-scatter because gloo (CPU) has no reduce-scatter.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world_size, rank = _world_size_and_rank()
        ctx.rank, ctx.local_batch = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)  # (world * B_local, ...)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad_output.contiguous().clone()  # (world * B_local, ...)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local_batch
        return grad[start : start + ctx.local_batch]  # (B_local, ...)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B_local, ...) from every process along dim 0, keeping gradients.

    Returns ``(world_size * B_local, ...)`` with this rank's rows at ``rank * B_local``. Identity when
    torch.distributed is not initialised or the world has one process. Every process must pass the
    same shape.
    """
    world_size, _ = _world_size_and_rank()
    if world_size == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def _global_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over processes, without gradient (used for normalising counts)."""
    world_size, _ = _world_size_and_rank()
    if world_size == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


class _ContrastiveLoss(nn.Module):
    """Shared parts of the InfoNCE losses: a fixed temperature, the gather and the local targets."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    @staticmethod
    def gather(embeddings: torch.Tensor) -> torch.Tensor:
        """(B_local, D) -> (B_global, D), gradients flowing back to every process."""
        return gather_with_grad(embeddings)

    @staticmethod
    def targets(local_batch: int, device: torch.device) -> torch.Tensor:
        """Global index of each local sample: ``rank * B_local + i``, shape (B_local,)."""
        _, rank = _world_size_and_rank()
        return torch.arange(local_batch, device=device) + rank * local_batch  # (B_local,)

    def similarity(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled cosine similarity, (Q, D) x (K, D) -> (Q, K)."""
        return F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T / self.temperature


# --------------------------------------------------------------------------------------------------
# Plain video-text InfoNCE (baseline)
# --------------------------------------------------------------------------------------------------


class PairwiseInfoNCELoss(_ContrastiveLoss):
    """Symmetric video-text InfoNCE (CLIP's loss with a fixed temperature), the baseline objective.

    ``forward(video, text)`` with embeddings (B_local, D), L2-normalised inside. Returns
    ``{"itc_v2t": ..., "itc_t2v": ...}``: each local video against all texts of the global batch, and
    each local text against all videos.
    """

    def logits(
        self, video: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local rows against global columns: (B_local, B_global) for v2t and t2v."""
        all_video, all_text = self.gather(video), self.gather(text)  # (B_global, D) each
        return self.similarity(video, all_text), self.similarity(text, all_video)

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        if video.shape != text.shape:
            raise ValueError(f"video {tuple(video.shape)} and text {tuple(text.shape)} must match")
        logits_v2t, logits_t2v = self.logits(video, text)  # (B_local, B_global) each
        targets = self.targets(video.shape[0], video.device)  # (B_local,)
        return {
            "itc_v2t": F.cross_entropy(logits_v2t, targets),
            "itc_t2v": F.cross_entropy(logits_t2v, targets),
        }


# --------------------------------------------------------------------------------------------------
# Tri-modal "exclusive" InfoNCE
# --------------------------------------------------------------------------------------------------


class TriModalAlignmentLoss(_ContrastiveLoss):
    """Clover's tri-modal alignment: an anchor with three kinds of positives, "exclusive" InfoNCE.

    Video-anchored use: anchor ``v``, positives ``{"text": t, "masked_text": t_m, "fused": f_V}``.
    Text-anchored use: anchor ``t``, positives ``{"video": v, "masked_video": v_m, "fused": f_T}``.
    (Any number K >= 1 of kinds works; Clover uses K = 3.)

    * Anchor to positives (``{prefix}_a2p``): for anchor i and kind k, a softmax over all K * B_global
      candidates (every kind of every sample) from which the *other* K - 1 positives of sample i are
      left out, so that the positives do not compete with each other; the target is the kind-k
      positive of sample i. Averaged over kinds and anchors.
    * Positives to anchor (``{prefix}_p2a``): each candidate of kind k of sample i against all
      B_global anchors, target anchor i (standard InfoNCE per kind). Averaged over kinds and samples.

    The key prefix is set at construction (e.g. ``"align_v"`` and ``"align_t"`` for the two uses)
    and can be overridden per call.
    """

    def __init__(self, temperature: float = 0.05, prefix: str = "align") -> None:
        super().__init__(temperature)
        self.prefix = prefix

    def candidates(self, positives: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """All kinds of all samples of the global batch, kind-major: row ``k * B_global + j``."""
        return torch.cat([self.gather(p) for p in positives.values()], dim=0)  # (K*B_global, D)

    def exclusion_mask(
        self, num_kinds: int, local_batch: int, global_batch: int, device: torch.device
    ) -> torch.Tensor:
        """Bool (K, B_local, K*B_global): True where kind-k logits of anchor i must be left out,
        i.e. at the positives of sample i of every kind other than k."""
        own = self.targets(local_batch, device)  # (B_local,) global index of each anchor
        kinds = torch.arange(num_kinds, device=device)  # (K,)
        columns = kinds[:, None] * global_batch + own[None, :]  # (K', B_local): kind-k' positive
        positive = torch.zeros(local_batch, num_kinds * global_batch, dtype=torch.bool, device=device)
        positive.scatter_(1, columns.T, True)  # (B_local, K*B_global): all K positives of anchor i
        mask = positive[None].expand(num_kinds, -1, -1).clone()  # (K, B_local, K*B_global)
        mask.scatter_(2, columns[:, :, None], False)  # keep the kind-k positive itself
        return mask

    def logits(
        self, anchor: torch.Tensor, positives: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (anchor-to-candidates logits (K, B_local, K*B_global) with the excluded entries
        at -inf, candidates-to-anchor logits (K, B_local, B_global))."""
        num_kinds, local_batch = len(positives), anchor.shape[0]
        all_candidates = self.candidates(positives)  # (K*B_global, D)
        global_batch = all_candidates.shape[0] // num_kinds
        a2p = self.similarity(anchor, all_candidates)  # (B_local, K*B_global)
        mask = self.exclusion_mask(num_kinds, local_batch, global_batch, anchor.device)
        a2p = a2p[None].expand(num_kinds, -1, -1).masked_fill(mask, float("-inf"))  # (K, B_l, K*B_g)
        all_anchors = self.gather(anchor)  # (B_global, D)
        p2a = torch.stack([self.similarity(p, all_anchors) for p in positives.values()])  # (K, B_l, B_g)
        return a2p, p2a

    def forward(
        self,
        anchor: torch.Tensor,
        positives: Mapping[str, torch.Tensor],
        prefix: str | None = None,
    ) -> dict[str, torch.Tensor]:
        self._check_shapes(anchor, positives)
        prefix = self.prefix if prefix is None else prefix
        num_kinds, local_batch = len(positives), anchor.shape[0]
        a2p, p2a = self.logits(anchor, positives)
        global_batch = p2a.shape[-1]
        own = self.targets(local_batch, anchor.device)  # (B_local,)
        kinds = torch.arange(num_kinds, device=anchor.device)  # (K,)
        a2p_targets = kinds[:, None] * global_batch + own[None, :]  # (K, B_local)
        p2a_targets = own[None, :].expand(num_kinds, -1)  # (K, B_local)
        return {
            f"{prefix}_a2p": F.cross_entropy(a2p.flatten(0, 1), a2p_targets.flatten()),
            f"{prefix}_p2a": F.cross_entropy(p2a.flatten(0, 1), p2a_targets.flatten()),
        }

    @staticmethod
    def _check_shapes(anchor: torch.Tensor, positives: Mapping[str, torch.Tensor]) -> None:
        if not positives:
            raise ValueError("positives must hold at least one kind of embedding")
        for name, value in positives.items():
            if value.shape != anchor.shape:
                raise ValueError(
                    f"positive {name!r} has shape {tuple(value.shape)}, anchor {tuple(anchor.shape)}"
                )


# --------------------------------------------------------------------------------------------------
# Pair-wise ranking
# --------------------------------------------------------------------------------------------------


class PairwiseRankingLoss(nn.Module):
    """A sample must match its complete partner better than its semantically masked partner.

    With ``s(a, b) = cos(a, b) / temperature``:
    ``rank_v = mean_i max(0, margin - (s(v_i, t_i) - s(v_i, t^m_i)))`` and
    ``rank_t = mean_i max(0, margin - (s(t_i, v_i) - s(t_i, v^m_i)))``
    (``nn.MarginRankingLoss`` with target 1). The terms are per sample, so no gather is needed: the mean
    over processes of the local values is the global value.
    """

    def __init__(self, margin: float = 5.0, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.margin = margin
        self.temperature = temperature

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Row-wise temperature-scaled cosine similarity, (B, D) x (B, D) -> (B,)."""
        return F.cosine_similarity(a, b, dim=-1) / self.temperature  # (B,)

    def hinge(self, anchor: torch.Tensor, full: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Mean of max(0, margin - s(anchor, full) + s(anchor, masked))."""
        positive = self.similarity(anchor, full)  # (B,)
        negative = self.similarity(anchor, masked)  # (B,)
        return F.relu(self.margin - positive + negative).mean()

    def forward(
        self,
        video: torch.Tensor,
        text: torch.Tensor,
        masked_video: torch.Tensor,
        masked_text: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        return {
            "rank_v": self.hinge(video, text, masked_text),
            "rank_t": self.hinge(text, video, masked_video),
        }


# --------------------------------------------------------------------------------------------------
# Masked language modelling
# --------------------------------------------------------------------------------------------------


class MaskedLanguageModelingLoss(nn.Module):
    """Cross-entropy (``focal_gamma=0``) or focal loss over the positions whose label is not -100.

    Focal loss: ``-(1 - p)^gamma * log p`` of the true token, which down-weights tokens the model
    already predicts well (the published Clover config uses gamma 2).

    The mean is taken over the masked tokens of the *global* batch: when distributed, the local sum is
    divided by the global count of masked tokens times the world size, so that the mean over
    processes (and DDP's averaged gradients) equal the single-process loss even when processes have
    different numbers of masked tokens. With no masked token anywhere the loss is 0 and still part of
    the graph (never NaN). Returns ``{"mlm": ...}``.
    """

    def __init__(self, focal_gamma: float = 0.0) -> None:
        super().__init__()
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        self.focal_gamma = focal_gamma

    def token_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of each masked token: (N, V) logits, (N,) labels -> (N,)."""
        compute_dtype = torch.promote_types(logits.dtype, torch.float32)  # fp16/bf16 -> fp32
        log_probs = F.log_softmax(logits.to(compute_dtype), dim=-1)  # (N, V)
        true_log_prob = log_probs.gather(1, labels[:, None]).squeeze(1)  # (N,)
        if self.focal_gamma == 0:
            return -true_log_prob
        weight = (1 - true_log_prob.exp()).clamp(min=0) ** self.focal_gamma  # (N,)
        return -weight * true_log_prob

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if logits.shape[:-1] != labels.shape:
            raise ValueError(f"logits {tuple(logits.shape)} do not fit labels {tuple(labels.shape)}")
        selected = labels != IGNORE_INDEX  # (B, L)
        token_losses = self.token_losses(logits[selected], labels[selected])  # (N,)
        world_size, _ = _world_size_and_rank()
        count = _global_sum(selected.sum().to(token_losses.dtype))  # scalar, all processes
        if count == 0:
            return {"mlm": logits.sum() * 0.0}
        return {"mlm": token_losses.sum() * world_size / count}
