"""How well the app's per-frame relevance points at the step a motion question asks about, on the
synthetic benchmark.

    python benchmarks/frame_relevance.py --model examples/checkpoint --data data/synthetic --split test

The app shows, beside each answer, a relevance per sampled frame (`clover.inference.frame_relevance`:
the question pooling's attention summed per time slot, or the fused [CLS]'s for a model without the
pooling; docs/app.md, "How a request is served"). The benchmark knows when each object does what
(scenes.json: every action spans whole segments of the clip), so for the Action, Transition and Count
questions it knows the frames of the step asked about: the named object's step done k times (Action),
the step after or before the anchor (Transition), the steps of the counted action (Count; questions
whose answer is 0 have none and are left out). This tool asks each question through
`clover.inference.CloverInference`, as the app does, and reports per task the relevance on those
frames over their share of the clip (1: no better than uniform), with its standard error, and the
mean relevance of the most relevant frame (uniform: 1 / frames).

One JSON object is printed (and written to `--output`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from clover.data.synthetic import NUM_SEGMENTS  # noqa: E402
from clover.grounding import GroundingError, load_grounding  # noqa: E402
from clover.inference import CloverInference  # noqa: E402
from finetune.common import add_split_arguments, load_task, write_json  # noqa: E402

MOTION_TASKS = ("tgif-action", "tgif-transition", "tgif-count")
_ACTION = re.compile(r" do (?:(once)|(\d+) times) \?$")
_TRANSITION = re.compile(r" do (after|before) (.+) \?$")
_COUNT = re.compile(r" (\w+) \?$")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="examples/checkpoint", help="a fine-tuned Clover model directory")
    parser.add_argument("--data", default="data/synthetic", help="the benchmark folder (with scenes.json)")
    add_split_arguments(parser)
    parser.add_argument("--tasks", nargs="+", choices=MOTION_TASKS, default=list(MOTION_TASKS))
    parser.add_argument("--output", help="also write the JSON here")
    return parser.parse_args(argv)


def asked_steps(task: str, question: str, answer: str | int, steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The named object's steps (scenes.json dicts: action, reps, start, length) that `question` asks
    about; `answer` is the right candidate's text (Action, Transition) or the count. Empty when there is
    none (a count of 0). Raises ValueError for a question this version of the generator does not write."""
    if task == "tgif-action":
        match = _ACTION.search(question)
        if match is None:
            raise ValueError(f"not an Action question of the synthetic benchmark: {question!r}")
        reps = 1 if match.group(1) else int(match.group(2))
        found = [step for step in steps if step["action"] == answer and step["reps"] == reps]
    elif task == "tgif-transition":
        match = _TRANSITION.search(question)
        if match is None:
            raise ValueError(f"not a Transition question of the synthetic benchmark: {question!r}")
        direction, anchor = match.groups()
        names = [step["action"] for step in steps]
        if names.count(anchor) != 1:
            raise ValueError(f"{question!r}: the object does {anchor!r} {names.count(anchor)} times in {names}; expected once")
        index = names.index(anchor) + (1 if direction == "after" else -1)
        found = [steps[index]] if 0 <= index < len(steps) and names[index] == answer else []
    elif task == "tgif-count":
        match = _COUNT.search(question)
        if match is None:
            raise ValueError(f"not a Count question of the synthetic benchmark: {question!r}")
        found = [step for step in steps if step["action"] == match.group(1)]
    else:
        raise ValueError(f"no steps for {task}: the motion tasks are {MOTION_TASKS}")
    if task != "tgif-count" and len(found) != 1:
        raise ValueError(f"{question!r} (answer {answer!r}) matches {len(found)} steps of {steps}; expected one")
    return found


def step_frames(steps: Sequence[dict[str, Any]], num_frames: int, num_segments: int = NUM_SEGMENTS) -> list[int]:
    """The sampled frames that fall in `steps`: frame i of `num_frames` lies in segment
    floor(i * num_segments / num_frames) (one frame per equal segment of the clip, at its centre)."""
    segments = {segment for step in steps for segment in range(step["start"], step["start"] + step["length"])}
    return [frame for frame in range(num_frames) if frame * num_segments // num_frames in segments]


def relevance_ratio(relevance: np.ndarray, frames: Sequence[int]) -> float:
    """The relevance on `frames` over their share of the clip: 1 is uniform, num_frames / len(frames) is all of it."""
    return float(relevance[list(frames)].sum()) / (len(frames) / len(relevance))


def summarize(ratios: Sequence[float], peaks: Sequence[float]) -> dict[str, Any]:
    """Questions, mean ratio and its standard error, mean relevance of the most relevant frame (None
    for the three without a question)."""
    count = len(ratios)
    if not count:
        return {"questions": 0, "ratio": None, "standard_error": None, "top_frame": None}
    mean = sum(ratios) / count
    spread = math.sqrt(sum((ratio - mean) ** 2 for ratio in ratios) / (count - 1) / count) if count > 1 else float("nan")
    return {"questions": count, "ratio": round(mean, 4), "standard_error": round(spread, 4), "top_frame": round(sum(peaks) / count, 4)}


def task_relevance(engine: CloverInference, task: str, records: Sequence[dict[str, Any]], videos: Path,
                   scenes: dict[str, Any], named: dict[str, int]) -> dict[str, Any]:
    """Ask each of a task's questions that names an object through the engine; summarize the ratios."""
    ratios, peaks = [], []
    for record in tqdm(records, desc=task, leave=False):
        if str(record["id"]) not in named:
            continue
        obj = scenes[Path(record["video"]).stem]["objects"][named[str(record["id"])]]
        answer = record["candidates"][record["answer"]] if "candidates" in record else record["answer"]
        steps = asked_steps(task, record["question"], answer, obj["steps"])
        clip, _ = engine.clip_features(videos / record["video"])
        frames = step_frames(steps, len(clip.timestamps))
        if not frames:
            continue
        if "candidates" in record:
            prediction = engine.choose(clip, record["question"], record["candidates"])
        else:
            prediction = engine.answer(clip, record["question"])
        ratios.append(relevance_ratio(prediction.relevance, frames))
        peaks.append(float(prediction.relevance.max()))
    return summarize(ratios, peaks)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    data = Path(args.data)
    engine = CloverInference.from_pretrained(args.model)
    scenes = json.loads((data / "scenes.json").read_text(encoding="utf-8"))
    try:
        grounding = load_grounding(data / "tgif")
    except GroundingError as error:
        raise SystemExit(str(error)) from error
    source = "question pooling" if "question_pooling" in engine.model.heads else "fused [CLS]"
    result: dict[str, Any] = {"model": str(args.model), "data": str(data), "split": args.split, "relevance_from": source, "tasks": {}}
    for task in args.tasks:
        task_data = load_task(task, data / "tgif", data / "tgif" / "gifs", splits=(args.split,), val_fraction=args.val_fraction, seed=args.seed)
        named = grounding["questions"].get(task, {})
        result["tasks"][task] = task_relevance(engine, task, task_data.splits[args.split], Path(task_data.videos), scenes, named)
    print(json.dumps(result, indent=1))
    if args.output:
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
