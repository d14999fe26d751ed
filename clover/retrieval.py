"""Zero-shot retrieval metrics: how well the aligned embeddings find a caption's clip (and back).

The pre-training script reports them on held-out video-caption pairs after each epoch; they say
whether the alignment objectives are learning anything transferable, which the losses alone do not.

Conventions:
- Metrics are fractions in [0, 1] (R@K) and 1-based ranks (median_rank, mean_rank), as in the
  retrieval literature (which prints R@K as a percentage; `retrieval_markdown` does too).
- Ties are ranked pessimistically: a candidate scoring exactly as high as the correct one is counted
  as ranked above it. A model whose embeddings collapse to one point then gets the worst rank, not a
  lucky R@1 of 1.0 from an arbitrary tie-break.
- A NaN similarity of the correct candidate ranks it last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

RECALL_AT = (1, 5, 10)
METRIC_KEYS = tuple(f"R@{k}" for k in RECALL_AT) + ("median_rank", "mean_rank")


def ranks_of_ground_truth(similarity: torch.Tensor, ground_truth: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each query's correct candidate, ties counted against it.

    Args:
        similarity: (num_queries, num_candidates) scores, higher is more similar.
        ground_truth: (num_queries,) index of each query's correct candidate; None for the diagonal
            (query i matches candidate i, which needs num_candidates >= num_queries).

    Returns: (num_queries,) long tensor of ranks in [1, num_candidates].
    """
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be (num_queries, num_candidates), got shape {tuple(similarity.shape)}")
    num_queries, num_candidates = similarity.shape
    truth = _ground_truth(ground_truth, num_queries, num_candidates, similarity.device)  # (Q,)
    scores = similarity.float()
    correct = scores.gather(1, truth[:, None])  # (Q, 1)
    at_least_as_good = (scores >= correct) | scores.isnan()  # (Q, C), the correct one itself included
    ranks = at_least_as_good.sum(dim=1)  # (Q,)
    return torch.where(correct[:, 0].isnan(), torch.full_like(ranks, num_candidates), ranks)


def _ground_truth(ground_truth: Sequence[int] | torch.Tensor | None, num_queries: int, num_candidates: int, device: torch.device) -> torch.Tensor:
    """The ground-truth indices as a (num_queries,) long tensor, checked against the matrix's size."""
    if ground_truth is None:
        if num_candidates < num_queries:
            raise ValueError(f"the diagonal needs as many candidates as queries: got {num_queries} queries, {num_candidates} candidates")
        return torch.arange(num_queries, device=device)
    truth = torch.as_tensor(ground_truth, dtype=torch.long, device=device)
    if truth.shape != (num_queries,):
        raise ValueError(f"ground_truth must have one index per query ({num_queries}), got shape {tuple(truth.shape)}")
    if num_queries and (truth.min() < 0 or truth.max() >= num_candidates):
        raise ValueError(f"ground_truth indices must lie in [0, {num_candidates}), got {truth.min().item()}..{truth.max().item()}")
    return truth


def metrics_from_ranks(ranks: torch.Tensor) -> dict[str, float]:
    """R@1/5/10 (fraction of queries whose correct candidate ranks within K), median and mean rank.

    The median of an even number of ranks is the mean of the two middle ones (numpy's convention).
    Empty input gives NaN everywhere.
    """
    if ranks.numel() == 0:
        return {key: float("nan") for key in METRIC_KEYS}
    ranks = ranks.double()
    metrics = {f"R@{k}": (ranks <= k).double().mean().item() for k in RECALL_AT}
    metrics["median_rank"] = ranks.quantile(0.5).item()
    metrics["mean_rank"] = ranks.mean().item()
    return metrics


def retrieval_metrics(similarity: torch.Tensor, ground_truth: Sequence[int] | torch.Tensor | None = None) -> dict[str, float]:
    """Text-to-video retrieval metrics of a (num_texts, num_videos) similarity matrix.

    `ground_truth[i]` is the index of text i's video (None: the diagonal, text i is video i). Returns
    {"R@1", "R@5", "R@10", "median_rank", "mean_rank"}; see the module docstring for ties.
    """
    return metrics_from_ranks(ranks_of_ground_truth(similarity, ground_truth))


def video_to_text_metrics(similarity: torch.Tensor, ground_truth: Sequence[int] | torch.Tensor | None = None) -> dict[str, float]:
    """Video-to-text retrieval metrics from the same (num_texts, num_videos) matrix.

    Each video is a query over all texts; its correct texts are those whose `ground_truth` points at
    it, and the best-ranked of them counts (a video with several captions is found if any one is).
    Videos no text points at are left out.
    """
    num_texts, num_videos = similarity.shape
    truth = _ground_truth(ground_truth, num_texts, num_videos, similarity.device)  # (T,)
    scores = similarity.float().t()  # (V, T)
    is_correct = truth[None, :] == torch.arange(num_videos, device=similarity.device)[:, None]  # (V, T)
    has_text = is_correct.any(dim=1)  # (V,)
    scores, is_correct = scores[has_text], is_correct[has_text]
    best_correct = scores.masked_fill(~is_correct, float("-inf")).nan_to_num(nan=float("-inf")).amax(dim=1, keepdim=True)  # (V', 1)
    ranks = ((scores >= best_correct) | scores.isnan()).sum(dim=1)  # (V',)
    return metrics_from_ranks(ranks)


def paired_retrieval(similarity: torch.Tensor) -> dict[str, dict[str, float]]:
    """Both directions of a (N texts, N videos) matrix whose pair i is text i and video i:
    {"text_to_video": metrics, "video_to_text": metrics}, each with "num_pairs" N."""
    count = {"num_pairs": similarity.shape[0]}
    return {"text_to_video": {**retrieval_metrics(similarity), **count}, "video_to_text": {**video_to_text_metrics(similarity), **count}}


def retrieval_markdown(results: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table with a row per direction (e.g. {"text-to-video": metrics, ...}), R@K in %."""
    lines = ["| direction | R@1 | R@5 | R@10 | median rank | mean rank |", "| --- | --- | --- | --- | --- | --- |"]
    for name, metrics in results.items():
        recalls = " | ".join(f"{100 * metrics[f'R@{k}']:.1f}" for k in RECALL_AT)
        lines.append(f"| {name} | {recalls} | {metrics['median_rank']:.1f} | {metrics['mean_rank']:.1f} |")
    return "\n".join(lines) + "\n"


__all__ = ["METRIC_KEYS", "metrics_from_ranks", "paired_retrieval", "ranks_of_ground_truth", "retrieval_markdown", "retrieval_metrics", "video_to_text_metrics"]
