"""What `train_qa.py`, `evaluate.py` and `check_data.py` share: reading a task's splits the same way,
the open-ended answer vocabulary, batches that remember which records they hold, evaluation with
`accelerator.gather_for_metrics`, and loading a fine-tuned output directory (plain or LoRA).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from clover.data.annotations import (
    DEFAULT_TOP_K,
    Record,
    _carve_val_clips,
    build_answer_vocab,
    get_task,
    infer_generic_kind,
    load_annotations,
    tgif_val_clips,
)
from clover.metrics import Prediction, qa_metrics, round_count

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"  # LoRA output: PEFT adapter files
BASE_DIR = "base"  # LoRA output: the model the adapter applies to


# --------------------------------------------------------------------------------------------------
# Tasks and their splits
# --------------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    """One task's annotations as training and evaluation read them.

    kind: "open", "mc" or "count" (a generic file's kind comes from its rows); splits: split -> records
    (each with `video_path`); val_clips: the clips of the validation split (recorded in the output dir).
    """

    name: str
    kind: str
    annotations: str
    videos: str
    splits: dict[str, list[Record]] = field(default_factory=dict)
    val_clips: list[str] = field(default_factory=list)


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """--split, and how training carved TGIF's val clips from Train (--val_fraction, --seed, training's
    defaults), for the scripts that score one split of a fine-tuned model: with them `--split val` scores
    the clips that training held out, through `load_task`."""
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--val_fraction", type=float, default=0.1, help="as in training, for --split val on TGIF")
    parser.add_argument("--seed", type=int, default=42, help="as in training, for --split val on TGIF")


def load_task(
    task: str,
    annotations: str | os.PathLike,
    videos: str | os.PathLike,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    val_fraction: float = 0.1,
    seed: int = 0,
) -> TaskData:
    """Read `splits` of a task. TGIF's val is carved from Train by clip (`tgif_val_clips`); a generic
    file without its own val rows gets a val carved from train by video the same way. Errors
    (`DatasetFormatError`) name the file and what was wrong."""
    spec = get_task(task)
    data = TaskData(task, spec.kind, str(annotations), str(videos))
    for split in splits:
        data.splits[split] = load_annotations(task, annotations, split, val_fraction=val_fraction, seed=seed, videos_dir=videos)
    if task == "generic":
        _carve_generic_val(data, val_fraction, seed)
        data.kind = infer_generic_kind(data.splits.get("train") or data.splits.get("test") or [])
    data.val_clips = _val_clips(data, val_fraction, seed)
    return data


def _carve_generic_val(data: TaskData, val_fraction: float, seed: int) -> None:
    """A generic file with no `split` column returns the whole file for every split: carve val and
    train apart by video (test stays the whole file, as the user asked for it)."""
    train, val = data.splits.get("train", []), data.splits.get("val", [])
    if not train or (val and [r["id"] for r in val] != [r["id"] for r in train]):
        return
    val_videos = set(_carve_val_clips((r["video"] for r in train), val_fraction, seed))
    data.splits["val"] = [r for r in train if r["video"] in val_videos]
    data.splits["train"] = [r for r in train if r["video"] not in val_videos]


def _val_clips(data: TaskData, val_fraction: float, seed: int) -> list[str]:
    """The validation clip names (TGIF: as `tgif_val_clips` carves them; others: from the val records)."""
    if data.name.startswith("tgif-"):
        return tgif_val_clips(data.annotations, val_fraction, seed, task=data.name)
    return sorted({record["video"] for record in data.splits.get("val", [])})


def open_vocabulary(tasks: Iterable[TaskData]) -> list[str]:
    """The union of the open-ended tasks' vocabularies: per task the K most frequent training answers
    (`DEFAULT_TOP_K`, all answers where K is None), in task order, first occurrence kept."""
    vocab: dict[str, None] = {}
    for data in tasks:
        if data.kind == "open":
            top_k = DEFAULT_TOP_K.get(data.name)
            vocab.update(dict.fromkeys(build_answer_vocab(data.splits["train"], top_k)))
    return list(vocab)


def count_range(tasks: Iterable[TaskData]) -> tuple[int, int] | None:
    """(min, max) of the count tasks' training answers, the range predictions are clamped to."""
    answers = [int(r["answer"]) for data in tasks if data.kind == "count" for r in data.splits["train"]]
    return (min(answers), max(answers)) if answers else None


# --------------------------------------------------------------------------------------------------
# Batches that know which records they hold
# --------------------------------------------------------------------------------------------------


class IndexedDataset(Dataset):
    """Wraps a `VideoQADataset` so each item is `(index, item)`: a batch then knows which records it
    held even when unreadable clips (None items) were dropped, which evaluation needs to line up the
    gathered predictions with the records. It has no `set_epoch` on purpose: Accelerate's loader
    would call it with its own iteration count; the training loop sets epochs itself."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class Collator:
    """A collate function over `(index, item)` pairs: `processor.collate` of the readable items, plus
    `indices` (N,) of every slot, `kept` (N,) bool, `task` (the task of the batch, found from the
    global index and the datasets' `offsets` in a ConcatDataset) and `skipped` (unreadable clips).
    A class rather than a closure so that DataLoader workers started with "spawn" can pickle it."""

    def __init__(self, processor: Any, offsets: Sequence[int] = (0,), tasks: Sequence[str] = ("",)) -> None:
        self.processor, self.offsets, self.tasks = processor, list(offsets), list(tasks)

    def __call__(self, pairs: list[tuple[int, Any]]) -> dict[str, Any]:
        indices = [index for index, _ in pairs]
        batch = self.processor.collate([item for _, item in pairs])
        batch["indices"] = torch.tensor(indices, dtype=torch.long)  # (N,)
        batch["kept"] = torch.tensor([item is not None for _, item in pairs])  # (N,)
        task_index = max(i for i, offset in enumerate(self.offsets) if offset <= indices[0])
        batch["task"] = self.tasks[task_index]
        return batch


def model_inputs(batch: Mapping[str, Any], kind: str, with_labels: bool = True) -> dict[str, Any]:
    """The keyword arguments of `CloverForVideoQA.forward` for a collated batch of one task."""
    names = ["pixel_values", "input_ids", "attention_mask"] + (["candidate_mask", "candidate_token_mask"] if kind == "mc" else [])
    inputs = {name: batch[name] for name in names}
    if with_labels:
        inputs["labels"] = batch["labels"]
    inputs["head"] = kind
    return inputs


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def predict_batch(model: torch.nn.Module, batch: Mapping[str, Any], kind: str, count_limits: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per slot of the batch (unreadable slots included): `(value (N,) long, raw (N,) float)` where
    value is the class id (open), candidate index (mc) or rounded, clamped count; raw is the count
    head's output (0 for other kinds and for unreadable slots)."""
    kept = batch["kept"]
    values = torch.zeros(kept.shape[0], dtype=torch.long, device=kept.device)  # (N,)
    raw = torch.zeros(kept.shape[0], dtype=torch.float32, device=kept.device)  # (N,)
    if not batch["ids"]:
        return values, raw
    with torch.no_grad():
        logits = model(**model_inputs(batch, kind, with_labels=False)).logits  # (B, C) | (B, K) | (B,)
    if kind == "count":
        raw[kept] = logits.float()
        values[kept] = logits.float().round().clamp(*count_limits).long()
    else:
        values[kept] = logits.argmax(dim=-1)
    return values, raw


def evaluate_task(
    accelerator: Any,
    model: torch.nn.Module,
    dataloader: Iterable[Mapping[str, Any]],
    data: TaskData,
    split: str,
    *,
    id2label: Mapping[int, str] | None,
    count_limits: tuple[int, int],
    vocab: Sequence[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Prediction]]:
    """Predict every question of `data.splits[split]` on all processes, gather with
    `gather_for_metrics` and compute the metrics (on every process, from the same gathered values).

    Returns (metrics, predictions by record id). Unreadable clips have no prediction and count wrong.
    """
    records = data.splits[split]
    model.eval()
    gathered: dict[str, list[torch.Tensor]] = {"indices": [], "kept": [], "values": [], "raw": []}
    for batch in dataloader:
        values, raw = predict_batch(model, batch, data.kind, count_limits)
        step = accelerator.gather_for_metrics({"indices": batch["indices"], "kept": batch["kept"], "values": values, "raw": raw})
        for name, tensor in step.items():
            gathered[name].append(tensor.cpu())
    predictions = _predictions(data.kind, {name: torch.cat(parts) if parts else torch.zeros(0) for name, parts in gathered.items()}, records, id2label)
    metrics = qa_metrics(data.kind, records, predictions, task=data.name, vocab=vocab, count_range=count_limits)
    return metrics, predictions


def _predictions(kind: str, gathered: Mapping[str, torch.Tensor], records: Sequence[Record], id2label: Mapping[int, str] | None) -> dict[str, Prediction]:
    """Record id -> Prediction from the gathered slots (unreadable slots left out)."""
    predictions = {}
    for index, kept, value, raw in zip(*(gathered[name].tolist() for name in ("indices", "kept", "values", "raw"))):
        if not kept:
            continue
        if kind == "open":
            predictions[str(records[index]["id"])] = Prediction(id2label[int(value)])
        elif kind == "count":
            predictions[str(records[index]["id"])] = Prediction(int(value), float(raw))
        else:
            predictions[str(records[index]["id"])] = Prediction(int(value))
    return predictions


def count_limits_of(config: Any) -> tuple[int, int]:
    """(count_min, count_max) of a model config."""
    return int(config.count_min), int(config.count_max)


def rounded_count(raw: float, config: Any) -> int:
    """A raw count output as the model's answer (rounded, clamped to the config's range)."""
    return round_count(raw, *count_limits_of(config))


# --------------------------------------------------------------------------------------------------
# Leaving the process group
# --------------------------------------------------------------------------------------------------

_LAST_BARRIERS: list[Any] = []  # kept until the interpreter exits; see end_distributed


def end_distributed(accelerator: Any) -> None:
    """End a script's part in the process group (`accelerator.end_training`) without gloo's exit hang.

    PyTorch's gloo backend runs each collective on a worker thread, which lets go of the collective's
    tensors after the caller's `wait()` has returned and needs the GIL to free them. The process
    group's destructor (when the DDP model or the interpreter drops the group) joins those threads
    while holding the GIL, so a thread still letting go of a finished collective waits for the GIL
    forever: one two-process CPU run in a few hung at exit after writing all its outputs. The last
    collective is therefore a barrier whose work is kept here until the interpreter exits: it holds
    every collective still on a worker thread when it was queued, so no worker thread frees the last
    reference to anything and the join returns. One process: just `end_training`."""
    if accelerator.num_processes > 1 and torch.distributed.is_initialized():
        barrier = torch.distributed.barrier(async_op=True)
        barrier.wait()
        _LAST_BARRIERS.append(barrier)
    accelerator.end_training()


# --------------------------------------------------------------------------------------------------
# Output directories
# --------------------------------------------------------------------------------------------------


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON (NaN written as null so other tools can read it), atomically:
    into a temporary file that then replaces `path`, so a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(_nan_to_none(data), indent=2) + "\n", encoding="utf-8")
    os.replace(temp, path)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    return value


def load_finetuned(model_dir: str | os.PathLike) -> tuple[torch.nn.Module, Any]:
    """The model and processor of a `train_qa.py` output directory.

    A plain (or LoRA-merged) directory loads with `CloverForVideoQA.from_pretrained`; an unmerged LoRA
    directory holds `base/` (the model the adapter applies to) and `adapter/` (PEFT files), merged here.
    """
    from clover.modeling_clover import CloverForVideoQA
    from clover.processing_clover import CloverProcessor

    directory = Path(model_dir)
    if (directory / ADAPTER_DIR / "adapter_config.json").is_file():
        from peft import PeftModel

        base = CloverForVideoQA.from_pretrained(directory / BASE_DIR)
        model = PeftModel.from_pretrained(base, directory / ADAPTER_DIR).merge_and_unload()
    else:
        model = CloverForVideoQA.from_pretrained(directory)
    return model, CloverProcessor.from_pretrained(directory)
