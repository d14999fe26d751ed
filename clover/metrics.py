"""Question-answering metrics shared by fine-tuning, evaluation and the benchmark scripts.

Predictions are compared with the records as read by `clover.data.annotations.load_annotations`, so
the denominator is always every question of the split: a question whose clip could not be read, or
whose answer is outside the open-ended vocabulary, still counts, as wrong. That is how the published
accuracies are computed.

- open-ended and multiple choice: accuracy overall and per question type (FrameQA types, MSVD
  question words), the number of out-of-vocabulary answers (open) and of unanswered questions;
- count: the MSE of the prediction rounded and clamped to the answer range (TGIF-QA's metric), the
  MSE of the raw prediction, and the accuracy of the rounded prediction.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clover.data.annotations import question_type

# Metric used to pick the best checkpoint of a task kind, and whether higher is better.
SELECTION_METRIC: dict[str, tuple[str, bool]] = {"open": ("accuracy", True), "mc": ("accuracy", True), "count": ("mse", False)}


@dataclass
class Prediction:
    """One model answer: `value` is the answer text (open), the candidate index (mc) or the rounded,
    clamped count; `raw` is the count head's unrounded output (None for the other kinds)."""

    value: Any
    raw: float | None = None


def round_count(raw: float, count_min: int, count_max: int) -> int:
    """The count answer of a raw regression output: rounded, then clamped to [count_min, count_max]."""
    return int(min(max(round(raw), count_min), count_max))


def is_correct(kind: str, prediction: Prediction | None, answer: Any) -> bool:
    """Whether a prediction answers the record right; no prediction (unreadable clip) is wrong."""
    if prediction is None:
        return False
    if kind == "open":
        return str(prediction.value) == str(answer)
    return int(prediction.value) == int(answer)


def qa_metrics(
    kind: str,
    records: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, Prediction],
    *,
    task: str | None = None,
    vocab: Sequence[str] | None = None,
    count_range: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Metrics of `predictions` (by record id) over every record of a split.

    Args:
        kind: "open", "mc" or "count".
        records: the split's records (all of them: the denominator).
        predictions: record id -> Prediction; missing ids (unreadable clips) count as wrong.
        task: the task name, so question types come out right (FrameQA codes, MSVD first words).
        vocab: the open-ended answer vocabulary, to count out-of-vocabulary answers.
        count_range: (min, max) used for the "no prediction" MSE of count questions: a missing count
            prediction is scored as the range's midpoint.
    """
    correct = [is_correct(kind, predictions.get(str(r["id"])), r["answer"]) for r in records]
    metrics: dict[str, Any] = {
        "num_questions": len(records),
        "num_unanswered": sum(str(r["id"]) not in predictions for r in records),
        "accuracy": _mean(correct),
        "per_type": _per_type_accuracy(records, correct, task),
    }
    if kind == "open" and vocab is not None:
        known = set(vocab)
        metrics["num_out_of_vocab"] = sum(str(r["answer"]) not in known for r in records)
    if kind == "count":
        metrics.update(_count_errors(records, predictions, count_range or (0, 10)))
    return metrics


def _mean(values: Sequence[float | bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _per_type_accuracy(records: Sequence[Mapping[str, Any]], correct: Sequence[bool], task: str | None) -> dict[str, dict[str, float]]:
    """{type: {"accuracy", "num_questions"}}, types in first-seen order; empty when records have none."""
    by_type: dict[str, list[bool]] = defaultdict(list)
    for record, ok in zip(records, correct):
        kind = question_type(record, task)
        if kind is not None:
            by_type[kind].append(ok)
    return {name: {"accuracy": _mean(values), "num_questions": len(values)} for name, values in by_type.items()}


def _count_errors(
    records: Sequence[Mapping[str, Any]], predictions: Mapping[str, Prediction], count_range: tuple[int, int]
) -> dict[str, float]:
    """MSE of the rounded, clamped prediction (the metric) and of the raw output."""
    midpoint = (count_range[0] + count_range[1]) / 2
    rounded, raw = [], []
    for record in records:
        prediction = predictions.get(str(record["id"]))
        answer = float(record["answer"])
        value = float(prediction.value) if prediction is not None else midpoint
        raw_value = prediction.raw if prediction is not None and prediction.raw is not None else value
        rounded.append((value - answer) ** 2)
        raw.append((raw_value - answer) ** 2)
    return {"mse": _mean(rounded), "raw_mse": _mean(raw)}


def selection_score(kind: str, metrics: Mapping[str, Any]) -> float:
    """A number where higher is better, used to keep the best checkpoint: accuracy, or -MSE for count."""
    name, higher_is_better = SELECTION_METRIC[kind]
    value = float(metrics[name])
    if math.isnan(value):
        return -math.inf
    return value if higher_is_better else -value


def metrics_markdown(results: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, str]) -> str:
    """A Markdown report: one overall table (a row per task) and a per-type table per task that has types."""
    lines = ["| task | questions | accuracy | MSE (count) | out of vocabulary | unanswered |", "| --- | --- | --- | --- | --- | --- |"]
    for task, metrics in results.items():
        mse = f"{metrics['mse']:.3f}" if kinds[task] == "count" else "-"
        oov = str(metrics.get("num_out_of_vocab", "-"))
        lines.append(
            f"| {task} | {metrics['num_questions']} | {_pct(metrics['accuracy'])} | {mse} | {oov} | {metrics['num_unanswered']} |"
        )
    for task, metrics in results.items():
        if metrics.get("per_type"):
            lines += ["", f"**{task}** by question type", "", "| type | questions | accuracy |", "| --- | --- | --- |"]
            lines += [f"| {name} | {row['num_questions']} | {_pct(row['accuracy'])} |" for name, row in metrics["per_type"].items()]
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


__all__ = ["Prediction", "SELECTION_METRIC", "is_correct", "metrics_markdown", "qa_metrics", "round_count", "selection_score"]
