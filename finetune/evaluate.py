"""Evaluate a fine-tuned Clover model on one split of a task; runs on one or several processes.

    python -m finetune.evaluate --model runs/frameqa --task tgif-frameqa \\
        --annotations data/tgif --videos data/tgif/gifs --split test --output_dir runs/frameqa/test

Writes `predictions.csv` (id, question, prediction, answer, correct; `raw` too for count),
`metrics.json` and `metrics.md` (overall and per question type, out-of-vocabulary answers).
Every question of the split counts: an answer outside the model's vocabulary or an unreadable clip
is wrong. The metric code is `clover.metrics`, the same as `train_qa.py` uses.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python finetune/evaluate.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accelerate import Accelerator
from torch.utils.data import DataLoader

from clover.data.annotations import TASKS
from clover.data.datasets import VideoQADataset
from clover.metrics import Prediction, is_correct, metrics_markdown
from finetune.common import (
    Collator, IndexedDataset, TaskData, add_split_arguments, count_limits_of, end_distributed, evaluate_task, load_finetuned, load_task, write_json,
)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m finetune.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a train_qa.py output directory (plain or LoRA)")
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--videos", required=True)
    add_split_arguments(parser)
    parser.add_argument("--output_dir", help="where to write the files (default: <model>/eval_<task>_<split>)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=2)
    return parser.parse_args(argv)


def build_loader(data: TaskData, split: str, processor: Any, config: Any, args: argparse.Namespace) -> DataLoader:
    """Test-time clips (segment centres, centre crop) of every question of the split. Answers map to
    labels through `config.id2label`, the vocabulary the predictions are read with (a config may have
    been saved without `label2id`)."""
    label2id = {label: int(index) for index, label in config.id2label.items()} if data.kind == "open" else None
    dataset = VideoQADataset(data.splits[split], data.videos, processor, kind=data.kind, answer_to_label=label2id)
    return DataLoader(
        IndexedDataset(dataset), batch_size=args.batch_size, collate_fn=Collator(processor, [0], [data.name]), num_workers=args.num_workers
    )


def check_heads(config: Any, data: TaskData) -> None:
    """Refuse a task whose kind of head the model does not have, naming the heads it has."""
    if data.kind not in config.qa_heads:
        raise SystemExit(f"{data.name} needs the {data.kind!r} head; the model at hand has {config.qa_heads}")


def write_predictions(path: Path, data: TaskData, split: str, predictions: dict[str, Prediction]) -> None:
    """predictions.csv: one row per question; an unanswered question (unreadable clip) has an empty prediction."""
    columns = ["id", "question", "prediction", "answer", "correct"] + (["raw"] if data.kind == "count" else [])
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for record in data.splits[split]:
            prediction = predictions.get(str(record["id"]))
            row = [record["id"], record["question"], "" if prediction is None else prediction.value, record["answer"]]
            row.append(int(is_correct(data.kind, prediction, record["answer"])))
            if data.kind == "count":
                row.append("" if prediction is None else f"{prediction.raw:.4f}")
            writer.writerow(row)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    accelerator = Accelerator()
    model, processor = load_finetuned(args.model)
    data = load_task(args.task, args.annotations, args.videos, splits=(args.split,), val_fraction=args.val_fraction, seed=args.seed)
    check_heads(model.config, data)
    loader = build_loader(data, args.split, processor, model.config, args)
    model, loader = accelerator.prepare(model, loader)
    config = accelerator.unwrap_model(model).config
    vocab = list(config.id2label.values()) if data.kind == "open" else None
    metrics, predictions = evaluate_task(
        accelerator, model, loader, data, args.split, id2label=config.id2label, count_limits=count_limits_of(config), vocab=vocab
    )
    output = Path(args.output_dir or Path(args.model) / f"eval_{args.task}_{args.split}")
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        write_predictions(output / "predictions.csv", data, args.split, predictions)
        write_json(output / "metrics.json", {"task": args.task, "split": args.split, "model": str(args.model), **metrics})
        (output / "metrics.md").write_text(metrics_markdown({args.task: metrics}, {args.task: data.kind}), encoding="utf-8")
        print(metrics_markdown({args.task: metrics}, {args.task: data.kind}))
    end_distributed(accelerator)
    return metrics


if __name__ == "__main__":
    main()
