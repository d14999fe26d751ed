"""How well the app's per-frame relevance points at the step a motion question asks about, on the
synthetic benchmark.

    python benchmarks/frame_relevance.py --model examples/checkpoint --data data/synthetic --split test

The app shows, beside each answer, a relevance per sampled frame (`clover.inference.frame_relevance`:
the question pooling's attention summed per time slot, or the fused [CLS]'s for a model without the
pooling; docs/app.md, "How a request is served"). The benchmark knows when each object does what, and
its generator writes, for every Action, Transition and Count question, the segments of the clip the
step asked about spans (`grounding.json`'s `asked_segments`: the named object's step done k times, the
step after or before the anchor, the steps of the counted action; a count of 0 has none and is left
out). This tool asks each of those questions through `clover.inference.CloverInference`, as the app
does, and reports per task the relevance on the step's frames over their share of the clip (1: no
better than uniform), with its standard error, and the mean relevance of the most relevant frame
(uniform: 1 / frames).

One JSON object is printed (and written to `--output`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from clover.grounding import GroundingError, asked_segments, load_grounding  # noqa: E402
from clover.inference import CloverInference  # noqa: E402
from finetune.common import add_split_arguments, load_task, write_json  # noqa: E402

MOTION_TASKS = ("tgif-action", "tgif-transition", "tgif-count")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="examples/checkpoint", help="a fine-tuned Clover model directory")
    parser.add_argument("--data", default="data/synthetic", help="the benchmark folder (with tgif/grounding.json)")
    add_split_arguments(parser)
    parser.add_argument("--tasks", nargs="+", choices=MOTION_TASKS, default=list(MOTION_TASKS))
    parser.add_argument("--output", help="also write the JSON here")
    return parser.parse_args(argv)


def segment_frames(segments: Sequence[int], num_frames: int, num_segments: int) -> list[int]:
    """The sampled frames that fall in `segments`: frame i of `num_frames` lies in segment
    floor(i * num_segments / num_frames) (one frame per equal segment of the clip, at its centre)."""
    keep = set(segments)
    return [frame for frame in range(num_frames) if frame * num_segments // num_frames in keep]


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
                   asked: dict[str, list[int]], num_segments: int) -> dict[str, Any]:
    """Ask each of a task's questions that `asked` gives segments (of `num_segments`) through the engine;
    summarize the ratios."""
    ratios, peaks = [], []
    for record in tqdm(records, desc=task, leave=False):
        segments = asked.get(str(record["id"]))
        if not segments:
            continue
        clip, _ = engine.clip_features(videos / record["video"])
        frames = segment_frames(segments, len(clip.timestamps), num_segments)
        if not frames:  # a short step that fewer frames than segments do not sample
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
    try:
        grounding = load_grounding(data / "tgif")
        asked = {task: asked_segments(grounding, task) for task in args.tasks}
    except GroundingError as error:
        raise SystemExit(str(error)) from error
    source = "question pooling" if "question_pooling" in engine.model.heads else "fused [CLS]"
    result: dict[str, Any] = {"model": str(args.model), "data": str(data), "split": args.split, "relevance_from": source, "tasks": {}}
    for task in args.tasks:
        task_data = load_task(task, data / "tgif", data / "tgif" / "gifs", splits=(args.split,), val_fraction=args.val_fraction, seed=args.seed)
        result["tasks"][task] = task_relevance(engine, task, task_data.splits[args.split], Path(task_data.videos), asked[task],
                                                grounding["num_segments"])
    print(json.dumps(result, indent=1))
    if args.output:
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
