"""Where a fine-tuned model's answers on the synthetic benchmark go wrong: its scores by question form
and by the number of objects in the clip.

    python benchmarks/synthetic_breakdown.py --model examples/checkpoint --data data/synthetic --split test

The benchmark's files say which task and question type a question is; this tool adds what the
generator knows besides (`scenes.json`): how many objects the clip holds, and for the questions about
one object (Action, Transition, Count) how the question names it: by its colour ("the red object"), its
shape ("the circle"), both, or its size as well. A question that names its object by shape alone in a
clip of several objects needs the shapes told apart; the same question about the only object does not.
So the table separates what the model cannot see (shapes, places) from what it cannot yet relate
(which object a question is about).

Each task is evaluated as `finetune.evaluate` does (the same loaders, model code and metrics); one
JSON object is printed (and written to `--output`): per task, one row per (question form, objects in
the clip), one per number of objects, and the overall score, each with the number of questions, the
accuracy in % and, for Count, the MSE of the rounded, clamped prediction.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelerate import Accelerator  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from clover.data import synthetic  # noqa: E402
from clover.data.annotations import TASKS as TASK_SPECS  # noqa: E402
from clover.metrics import Prediction, qa_metrics  # noqa: E402
from finetune.common import add_split_arguments, count_limits_of, end_distributed, evaluate_task, load_finetuned, load_task  # noqa: E402
from finetune.evaluate import build_loader, check_heads  # noqa: E402
from finetune.make_demo import TASKS  # noqa: E402

# The tasks whose questions name one object of the clip (TGIF-QA's "What does the {ref} do ...").
REFERRING_TASKS = ("tgif-action", "tgif-transition", "tgif-count")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="examples/checkpoint", help="a fine-tuned Clover model directory")
    parser.add_argument("--data", default="data/synthetic", help="the benchmark folder (with scenes.json)")
    add_split_arguments(parser)
    parser.add_argument("--tasks", nargs="+", choices=[task for task, _, _ in TASKS], help="default: every task the model has a head for")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--output", help="also write the JSON here")
    return parser.parse_args(argv)


def reference_form(question: str) -> str:
    """How a question names its object: "colour", "shape", "colour and shape", "size, colour and shape",
    or "none" (the generator's `reference()` picks one of the first four)."""
    words = set(question.lower().split())
    has_colour, has_shape = bool(words & set(synthetic.COLORS)), bool(words & set(synthetic.SHAPES))
    if words & set(synthetic.SIZES):
        return "size, colour and shape"
    if has_colour and has_shape:
        return "colour and shape"
    return "shape" if has_shape else "colour" if has_colour else "none"


def question_form(question: str) -> str:
    """An open-ended question's template by its first words: "what shape", "where is", "how many objects"..."""
    words = question.lower().split()
    return " ".join(words[:3] if words[1:2] == ["many"] else words[:2])


def scene_name(video: str) -> str:
    """The clip's name in scenes.json from any of its files: "syn01400.gif", "YouTubeClips/syn01400_0_4.avi"."""
    return Path(video).stem.split("_")[0]


def question_group(task: str, record: Mapping[str, Any]) -> str:
    """The row a question is counted in, besides its clip's number of objects."""
    if task in REFERRING_TASKS:
        return f"named by {reference_form(record['question'])}"
    if task == "tgif-frameqa":
        return str(record["type"])
    return question_form(record["question"])


def breakdown(
    task: str,
    records: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, Prediction],
    objects: Mapping[str, int],
    count_range: tuple[int, int],
) -> dict[str, Any]:
    """The task's rows, sorted by group then number of objects; the same summed over the groups
    (`by_objects`); and its overall score. Each is `clover.metrics.qa_metrics` of its questions, so an
    unanswered question is scored as evaluation scores it (wrong; for Count, the midpoint of `count_range`).

    `objects`: number of objects per scene name."""
    kind = TASK_SPECS[task].kind
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    by_objects: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        count = objects[scene_name(record["video"])]
        groups[question_group(task, record), count].append(record)
        by_objects[count].append(record)

    def row(questions: Sequence[Mapping[str, Any]], **labels: Any) -> dict[str, Any]:
        metrics = qa_metrics(kind, questions, predictions, count_range=count_range)
        scores = {"questions": metrics["num_questions"], "accuracy": round(100 * metrics["accuracy"], 1)}
        return {**labels, **scores, **({"mse": round(metrics["mse"], 3)} if kind == "count" else {})}

    return {
        "rows": [row(groups[key], group=key[0], objects=key[1]) for key in sorted(groups)],
        "by_objects": [row(by_objects[count], group="all", objects=count) for count in sorted(by_objects)],
        "overall": row(records, group="all"),
    }


def scene_objects(data: Path) -> dict[str, int]:
    """Number of objects per clip, from the benchmark's scenes.json."""
    path = data / "scenes.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --data must be a folder written by `python -m clover.data.synthetic`")
    return {name: len(scene["objects"]) for name, scene in json.loads(path.read_text(encoding="utf-8")).items()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    data = Path(args.data)
    objects = scene_objects(data)
    accelerator = Accelerator()
    model, processor = load_finetuned(args.model)
    config = model.config
    specs = [spec for spec in TASKS if spec[0] in (args.tasks or [task for task, _, _ in TASKS])]
    result: dict[str, Any] = {"model": str(args.model), "data": str(data), "split": args.split, "tasks": {}}
    model, count_range = accelerator.prepare(model), count_limits_of(config)
    for task, folder, videos in tqdm(specs, desc="tasks", disable=not accelerator.is_main_process):
        task_data = load_task(task, data / folder, data / videos, splits=(args.split,), val_fraction=args.val_fraction, seed=args.seed)
        if task_data.kind not in config.qa_heads and not args.tasks:
            continue  # a task the model has no head for, not asked for by name
        check_heads(config, task_data)
        loader = accelerator.prepare(build_loader(task_data, args.split, processor, config, args))
        _, predictions = evaluate_task(
            accelerator, model, loader, task_data, args.split, id2label=config.id2label, count_limits=count_range
        )
        result["tasks"][task] = breakdown(task, task_data.splits[args.split], predictions, objects, count_range)
    text = json.dumps(result, indent=1)
    if accelerator.is_main_process:
        print(text)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(text + "\n", encoding="utf-8")
    end_distributed(accelerator)
    return result


if __name__ == "__main__":
    main()
