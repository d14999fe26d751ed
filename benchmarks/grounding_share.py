"""Where a fine-tuned model's question pooling looks: the share of its attention on the object each
question names, by the number of objects in the clip, on the synthetic benchmark.

    python benchmarks/grounding_share.py --model examples/checkpoint --data data/synthetic --split test

`train_qa --grounding_weight` trains this share up on the training questions (`clover.grounding`); this
tool measures it on held-out questions, the same way: the named object's video tokens are those its box
covers (`clover.grounding.token_mask`, the evaluation's centre crop), and the share is the pooling's
attention summed over them. It tells whether the pooling finds the named object among several, and how
much of it goes to the object when the clip has only one (docs/results.md, "The grounding term on clips
of several objects only, and without it").

One JSON object is printed (and written to `--output`): per task, one row per number of objects with
the number of questions that name an object, the mean share and its geometric mean (exp of the mean
log share, which is exp(-the grounding term)). Needs a model with the question pooling
(`qa_pooling="cls+max+query"` or `"cls+max+query+time"`) and a benchmark with `grounding.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from clover.data.datasets import VideoQADataset  # noqa: E402
from clover.grounding import GroundingError, attach_grounding, load_grounding, token_mask  # noqa: E402
from finetune.common import add_split_arguments, load_finetuned, load_task, model_inputs, write_json  # noqa: E402
from finetune.make_demo import TASKS  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="examples/checkpoint", help="a fine-tuned Clover model directory")
    parser.add_argument("--data", default="data/synthetic", help="the benchmark folder (with grounding.json files)")
    add_split_arguments(parser)
    parser.add_argument("--tasks", nargs="+", choices=[task for task, _, _ in TASKS], help="default: all five")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--output", help="also write the JSON here")
    return parser.parse_args(argv)


def summarize(shares: Mapping[int, Sequence[float]]) -> list[dict[str, Any]]:
    """One row per number of objects: questions, mean share, geometric mean share (shares floored at
    1e-6, as the grounding term does)."""
    rows = []
    for objects in sorted(shares):
        values = shares[objects]
        log_mean = sum(math.log(max(value, 1e-6)) for value in values) / len(values)
        rows.append({
            "objects": objects, "questions": len(values), "mean_share": round(sum(values) / len(values), 4),
            "geometric_mean_share": round(math.exp(log_mean), 4),
        })  # fmt: skip
    return rows


@torch.inference_mode()
def task_shares(model: torch.nn.Module, processor: Any, dataset: VideoQADataset, kind: str, batch_size: int) -> list[float | None]:
    """The pooling's attention share on the named object for each of `dataset`'s questions, in order
    (None for a clip that cannot be read)."""
    shares: list[float | None] = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="batches", leave=False):
        items = [dataset[index] for index in range(start, min(start + batch_size, len(dataset)))]
        readable = [item for item in items if item is not None]
        if not readable:
            shares.extend([None] * len(items))
            continue
        batch = processor.collate(readable)
        outputs = model(**model_inputs(batch, kind, with_labels=False), output_question_attention=True)
        mask = token_mask(batch["grounding_boxes"], model.config.video_grid)  # (B, t*h*w)
        mass = iter((outputs.question_attention * mask).sum(-1).tolist())  # (B,)
        shares.extend(next(mass) if item is not None else None for item in items)
    return shares


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    data = Path(args.data)
    model, processor = load_finetuned(args.model)
    model.eval()
    if "question_pooling" not in model.heads:
        raise SystemExit(
            f"{args.model} has no question pooling (qa_pooling={model.config.qa_pooling!r}): this tool measures "
            "the attention of `cls+max+query` or `cls+max+query+time` models"
        )
    specs = [spec for spec in TASKS if spec[0] in (args.tasks or [task for task, _, _ in TASKS])]
    result: dict[str, Any] = {"model": str(args.model), "data": str(data), "split": args.split, "tasks": {}}
    for task, folder, videos in tqdm(specs, desc="tasks"):
        task_data = load_task(task, data / folder, data / videos, splits=(args.split,), val_fraction=args.val_fraction, seed=args.seed)
        try:
            grounding = load_grounding(data / folder)
            records = [dict(record) for record in task_data.splits[args.split]]
            attach_grounding(records, grounding, task)
        except GroundingError as error:
            raise SystemExit(f"{task}: {error}") from error
        named = [record for record in records if "grounding" in record]
        dataset = VideoQADataset(
            named, task_data.videos, processor, kind=task_data.kind, answer_to_label={} if task_data.kind == "open" else None
        )
        by_objects: dict[int, list[float]] = defaultdict(list)
        for record, share in zip(named, task_shares(model, processor, dataset, task_data.kind, args.batch_size), strict=True):
            if share is not None:
                by_objects[len(grounding["boxes"][record["video"]])].append(share)
        result["tasks"][task] = summarize(by_objects)
    print(json.dumps(result, indent=1))
    if args.output:
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
