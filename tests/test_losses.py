"""Clover's losses against hand computations on tiny tensors, and a 2-process run against one process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clover.losses import (
    MaskedLanguageModelingLoss,
    PairwiseInfoNCELoss,
    PairwiseRankingLoss,
    TriModalAlignmentLoss,
    gather_with_grad,
)
from tests.launch import torchrun

KINDS = ("text", "masked_text", "fused")


def cosine(u: list[float], v: list[float]) -> float:
    """Cosine similarity in plain Python, independent of the module under test."""
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def tensors(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# --------------------------------------------------------------------------------------------------
# gather_with_grad
# --------------------------------------------------------------------------------------------------


def test_gather_is_identity_without_process_group() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x


# --------------------------------------------------------------------------------------------------
# Tri-modal exclusive InfoNCE
# --------------------------------------------------------------------------------------------------


def test_trimodal_orthogonal_closed_form() -> None:
    """Sample 0 lies on (1, 0), sample 1 on (0, 1), every positive equal to its anchor (up to scale).
    Anchor i, kind k keeps its own kind-k positive (cos 1) and the 3 positives of the other sample
    (cos 0): loss log(1 + 3 e^{-1/tau}). The other two positives of sample i (cos 1 too) are left out,
    otherwise the loss would be log(1 + 2 + 3 e^{-1/tau}) / ... Reverse: log(1 + e^{-1/tau})."""
    tau = 1.0
    anchor = tensors([[1, 0], [0, 1]])
    positives = {"text": 2 * anchor, "masked_text": 3 * anchor, "fused": 0.5 * anchor}
    losses = TriModalAlignmentLoss(temperature=tau, prefix="align_v")(anchor, positives)
    assert set(losses) == {"align_v_a2p", "align_v_p2a"}
    assert losses["align_v_a2p"].item() == pytest.approx(math.log(1 + 3 * math.exp(-1 / tau)), abs=1e-12)
    assert losses["align_v_p2a"].item() == pytest.approx(math.log(1 + math.exp(-1 / tau)), abs=1e-12)


def test_trimodal_single_sample_has_no_competitor() -> None:
    """With B = 1 every kind-k softmax holds only its target (the other two are left out): loss 0."""
    anchor = tensors([[0.3, -1.0]])
    positives = {"text": tensors([[1.0, 0.2]]), "masked_text": tensors([[-1.0, 0.5]]), "fused": tensors([[0.0, 1.0]])}
    losses = TriModalAlignmentLoss(temperature=0.05)(anchor, positives)
    assert losses["align_a2p"].item() == pytest.approx(0.0, abs=1e-12)
    assert losses["align_p2a"].item() == pytest.approx(0.0, abs=1e-12)


def expected_trimodal(anchor: list, positives: dict[str, list], tau: float) -> tuple[float, float]:
    """The exclusive InfoNCE written out with loops: candidate (k', j) is left out of the softmax of
    (anchor i, kind k) exactly when j == i and k' != k."""
    kinds, batch = list(positives), len(anchor)
    a2p = []
    for k in kinds:
        for i in range(batch):
            kept = [(kk, j) for kk in kinds for j in range(batch) if not (j == i and kk != k)]
            log_denominator = math.log(sum(math.exp(cosine(anchor[i], positives[kk][j]) / tau) for kk, j in kept))
            a2p.append(log_denominator - cosine(anchor[i], positives[k][i]) / tau)
    p2a = []
    for k in kinds:
        for i in range(batch):
            log_denominator = math.log(sum(math.exp(cosine(positives[k][i], anchor[j]) / tau) for j in range(batch)))
            p2a.append(log_denominator - cosine(positives[k][i], anchor[i]) / tau)
    return sum(a2p) / len(a2p), sum(p2a) / len(p2a)


def test_trimodal_matches_loops_on_chosen_vectors() -> None:
    anchor = [[1.0, 0.0], [0.6, 0.8]]
    positives = {
        "text": [[0.9, 0.1], [0.5, 0.9]],
        "masked_text": [[0.2, 1.0], [1.0, -0.3]],
        "fused": [[-0.4, 0.7], [0.8, 0.8]],
    }
    tau = 0.5
    losses = TriModalAlignmentLoss(temperature=tau)(tensors(anchor), {k: tensors(v) for k, v in positives.items()})
    expected_a2p, expected_p2a = expected_trimodal(anchor, positives, tau)
    assert losses["align_a2p"].item() == pytest.approx(expected_a2p, abs=1e-10)
    assert losses["align_p2a"].item() == pytest.approx(expected_p2a, abs=1e-10)


def test_trimodal_left_out_entries_are_exactly_the_other_positives() -> None:
    """Logits of (kind k, anchor i) are -inf at the other kinds' positives of sample i, and the
    temperature-scaled cosine everywhere else."""
    torch.manual_seed(0)
    batch, tau = 3, 0.05
    anchor = torch.randn(batch, 4, dtype=torch.float64)
    positives = {k: torch.randn(batch, 4, dtype=torch.float64) for k in KINDS}
    a2p, p2a = TriModalAlignmentLoss(temperature=tau).logits(anchor, positives)
    assert a2p.shape == (3, batch, 3 * batch) and p2a.shape == (3, batch, batch)
    candidates = torch.cat(list(positives.values()))  # (3B, D)
    cos = F.normalize(anchor, dim=-1) @ F.normalize(candidates, dim=-1).T / tau  # (B, 3B)
    for k in range(3):
        for i in range(batch):
            for column in range(3 * batch):
                other_kind, sample = divmod(column, batch)
                if sample == i and other_kind != k:
                    assert a2p[k, i, column] == float("-inf")
                else:
                    assert a2p[k, i, column].item() == pytest.approx(cos[i, column].item())


def test_trimodal_left_out_candidate_does_not_matter_but_kept_negative_does() -> None:
    """Row (kind "text", anchor 0) leaves out the masked_text and fused positives of sample 0: moving
    masked_text[0] leaves that row's loss unchanged, while it changes row (kind "text", anchor 1),
    where it is a kept negative."""
    torch.manual_seed(1)
    loss = TriModalAlignmentLoss(temperature=0.1)
    anchor = torch.randn(2, 3, dtype=torch.float64)
    positives = {k: torch.randn(2, 3, dtype=torch.float64) for k in KINDS}
    targets = torch.tensor([[0, 1], [2, 3], [4, 5]])  # kind-major column of each positive

    def row_losses(positives: dict[str, torch.Tensor]) -> torch.Tensor:
        a2p, _ = loss.logits(anchor, positives)  # (3, 2, 6)
        return F.cross_entropy(a2p.flatten(0, 1), targets.flatten(), reduction="none").view(3, 2)

    base = row_losses(positives)
    assert base.mean().item() == pytest.approx(loss(anchor, positives)["align_a2p"].item())
    moved = dict(positives, masked_text=positives["masked_text"].clone())
    moved["masked_text"][0] = 5 * anchor[0]  # now the best-matching candidate of anchor 0
    after = row_losses(moved)
    assert after[0, 0].item() == pytest.approx(base[0, 0].item(), abs=1e-12)  # left out
    assert after[2, 0].item() == pytest.approx(base[2, 0].item(), abs=1e-12)  # left out (fused row)
    assert after[0, 1].item() != pytest.approx(base[0, 1].item(), abs=1e-6)  # kept negative


def test_trimodal_moving_a_left_out_positive_leaves_that_row_unchanged() -> None:
    """With B = 1 every row's only competitors are left out: moving the masked-text positive anywhere
    leaves the anchor-to-positives loss at exactly 0, while a non-exclusive softmax would change."""
    anchor = tensors([[1.0, 0.0]])
    for masked_text in ([[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.2]]):
        positives = {"text": tensors([[0.7, 0.7]]), "masked_text": tensors(masked_text), "fused": tensors([[1.0, 0.1]])}
        assert TriModalAlignmentLoss()(anchor, positives)["align_a2p"].item() == pytest.approx(0.0, abs=1e-12)


def test_trimodal_prefix_override_and_shape_error() -> None:
    anchor = torch.randn(2, 4)
    positives = {k: torch.randn(2, 4) for k in KINDS}
    assert set(TriModalAlignmentLoss(prefix="align_v")(anchor, positives, prefix="align_t")) == {
        "align_t_a2p",
        "align_t_p2a",
    }
    with pytest.raises(ValueError, match="fused"):
        TriModalAlignmentLoss()(anchor, {**positives, "fused": torch.randn(3, 4)})


# --------------------------------------------------------------------------------------------------
# Pair-wise InfoNCE
# --------------------------------------------------------------------------------------------------


def test_pairwise_infonce_hand_computation() -> None:
    video = [[1.0, 0.0], [0.6, 0.8]]
    text = [[0.8, 0.6], [0.0, 2.0]]
    tau = 0.5
    losses = PairwiseInfoNCELoss(temperature=tau)(tensors(video), tensors(text))
    assert set(losses) == {"itc_v2t", "itc_t2v"}

    def infonce(queries: list, keys: list) -> float:
        terms = []
        for i, q in enumerate(queries):
            scores = [cosine(q, k) / tau for k in keys]
            terms.append(math.log(sum(math.exp(s) for s in scores)) - scores[i])
        return sum(terms) / len(terms)

    assert losses["itc_v2t"].item() == pytest.approx(infonce(video, text), abs=1e-10)
    assert losses["itc_t2v"].item() == pytest.approx(infonce(text, video), abs=1e-10)
    # Orthogonal closed form: log(1 + e^{-1/tau}).
    eye = tensors([[1, 0], [0, 1]])
    closed = math.log(1 + math.exp(-1 / tau))
    assert PairwiseInfoNCELoss(temperature=tau)(eye, eye)["itc_v2t"].item() == pytest.approx(closed)


# --------------------------------------------------------------------------------------------------
# Pair-wise ranking
# --------------------------------------------------------------------------------------------------


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_ranking_hand_computation() -> None:
    """s = cos / 0.05. Sample 0: cos(v, t) = 1, cos(v, t_m) = 0.9 -> 5 - (20 - 18) = 3.
    Sample 1: cos(v, t_m) = cos 60 = 0.5 -> 20 - 10 = 10 > 5, loss 0. rank_v = 1.5."""
    video = tensors([[1, 0], [0, 1]])
    text = tensors([[2, 0], [0, 1]])
    masked_text = tensors([[0.9, math.sqrt(1 - 0.81)], unit(90 - 60)])
    masked_video = tensors([[1, 0], [0, 1]])  # identical to the video: hinge = margin
    losses = PairwiseRankingLoss(margin=5.0, temperature=0.05)(video, text, masked_video, masked_text)
    assert set(losses) == {"rank_v", "rank_t"}
    assert losses["rank_v"].item() == pytest.approx(1.5, abs=1e-9)
    assert losses["rank_t"].item() == pytest.approx(5.0, abs=1e-9)


def test_ranking_is_zero_when_margins_hold() -> None:
    video, text = tensors([[1, 0], [0, 1]]), tensors([[1, 0], [0, 1]])
    far = tensors([unit(90), unit(180)])  # cos 0 with its anchor: difference 20 > 5
    losses = PairwiseRankingLoss()(video.requires_grad_(), text, far, far)
    assert losses["rank_v"].item() == 0.0 and losses["rank_t"].item() == 0.0
    (losses["rank_v"] + losses["rank_t"]).backward()
    assert torch.all(video.grad == 0)


def test_ranking_gradient_step_lowers_similarity_to_masked_partner() -> None:
    torch.manual_seed(0)
    video, text = torch.randn(4, 8), torch.randn(4, 8)
    masked_text = (text + 0.1 * torch.randn(4, 8)).requires_grad_()  # close: the hinge is active
    masked_video = (video + 0.1 * torch.randn(4, 8)).requires_grad_()
    ranking = PairwiseRankingLoss()
    losses = ranking(video, text, masked_video, masked_text)
    (losses["rank_v"] + losses["rank_t"]).backward()
    with torch.no_grad():
        before_t = ranking.similarity(video, masked_text)
        before_v = ranking.similarity(text, masked_video)
        after_t = ranking.similarity(video, masked_text - 0.01 * masked_text.grad)
        after_v = ranking.similarity(text, masked_video - 0.01 * masked_video.grad)
    assert torch.all(after_t < before_t) and torch.all(after_v < before_v)


# --------------------------------------------------------------------------------------------------
# Masked language modelling
# --------------------------------------------------------------------------------------------------


def test_mlm_ignores_unlabelled_positions_and_gamma_zero_is_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[3, -100, -100, 1], [-100, 6, -100, -100]])
    loss = MaskedLanguageModelingLoss(focal_gamma=0.0)(logits, labels)["mlm"]
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    garbage = logits.clone()
    garbage[labels == -100] = 1e3 * torch.randn(5, 7)  # unlabelled positions do not matter
    assert MaskedLanguageModelingLoss()(garbage, labels)["mlm"].item() == pytest.approx(loss.item(), abs=1e-6)


def test_mlm_focal_hand_computation() -> None:
    """Two labelled tokens with uniform-ish logits: -(1 - p)^2 log p averaged."""
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])  # p(1) = 3/4; p = 1/2
    labels = torch.tensor([[1, 0]])
    loss = MaskedLanguageModelingLoss(focal_gamma=2.0)(logits, labels)["mlm"]
    expected = (-(0.25**2) * math.log(0.75) - (0.5**2) * math.log(0.5)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_mlm_without_masked_tokens_is_zero_with_graph() -> None:
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = MaskedLanguageModelingLoss(focal_gamma=2.0)(logits, torch.full((2, 3), -100))["mlm"]
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)


# --------------------------------------------------------------------------------------------------
# Two processes against one
# --------------------------------------------------------------------------------------------------


def test_two_processes_match_one_process(tmp_path: Path) -> None:
    """Local losses on 2 gloo processes, gradients averaged as DDP does, equal the global-batch loss.
    A gather without gradients (the control) must not."""
    worker = Path(__file__).with_name("dist_losses_worker.py")
    out = tmp_path / "result.json"
    run = torchrun(2, [str(worker), str(out)], cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["names"]) == 9
    for name in result["names"]:
        assert result["value_diff"][name] < 1e-5, (name, result["value_diff"][name])
        assert result["grad_diff"][name] < 1e-5, (name, result["grad_diff"][name])
    assert result["control_grad_diff"] > 1e-3
