"""Check a question-answering dataset the way training will read it, before spending GPU hours on it.

    python -m finetune.check_data --task tgif-frameqa --annotations data/tgif --videos data/tgif/gifs

Reads the train, val and test splits with the same loader and val carving as `train_qa.py`, checks
that every clip exists, decodes each one with `read_frames` (unless `--no-decode`), builds the
open-ended answer vocabulary and measures how much of the test set it covers. Prints ONE JSON object
on stdout (the progress bar and any problem go to stderr). Exits 0 when training could run on the
data, 1 with the reasons on stderr when it could not (no train questions, no readable clip, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from clover.data.annotations import DEFAULT_TOP_K, TASKS, DatasetFormatError, build_answer_vocab, vocab_coverage
from clover.video import VideoReadError, read_frames
from finetune.common import TaskData, load_task


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m finetune.check_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--annotations", required=True, help="the TGIF-QA / MSVD-QA folder or a generic file")
    parser.add_argument("--videos", required=True, help="the folder the clips are in")
    parser.add_argument("--no-decode", dest="decode", action="store_false", help="only check that clip files exist")
    parser.add_argument("--num_frames", type=int, default=8, help="frames decoded per clip (as training reads them)")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def clip_paths(data: TaskData) -> list[Path]:
    """Every distinct clip the splits refer to, sorted."""
    return sorted({Path(record["video_path"]) for records in data.splits.values() for record in records})


def check_clips(paths: Sequence[Path], decode: bool, num_frames: int) -> tuple[list[str], dict[str, str]]:
    """(missing clips, {unreadable clip: reason}); decoding shows a progress bar on stderr."""
    missing = [str(path) for path in paths if not path.is_file()]
    unreadable: dict[str, str] = {}
    if decode:
        present = [path for path in paths if path.is_file()]
        for path in tqdm(present, desc="decoding clips", unit="clip", file=sys.stderr):
            try:
                read_frames(path, num_frames)
            except VideoReadError as error:
                unreadable[str(path)] = error.reason
    return missing, unreadable


def vocabulary_report(data: TaskData) -> dict[str, Any]:
    """Answer vocabulary size and test coverage (open-ended tasks; None for multiple choice and count)."""
    if data.kind != "open":
        return {"answer_vocab_size": None, "test_answer_coverage": None}
    vocab = build_answer_vocab(data.splits["train"], DEFAULT_TOP_K.get(data.name))
    coverage = vocab_coverage(data.splits["test"], vocab)
    return {"answer_vocab_size": len(vocab), "test_answer_coverage": None if coverage != coverage else round(coverage, 4)}


def problems_of(report: dict[str, Any]) -> list[str]:
    """The reasons training could not use the data (empty when it can)."""
    problems = []
    if report["splits"]["train"] == 0:
        problems.append("no train questions")
    if report["clips"] and report["missing_clips"] == report["clips"]:
        problems.append(f"all {report['clips']} clips are missing from the videos folder")
    elif report["clips"] and report["missing_clips"] + report["unreadable_clips"] == report["clips"]:
        problems.append("no clip can be decoded")
    if report["answer_vocab_size"] == 0:
        problems.append("the answer vocabulary is empty")
    return problems


def check(args: argparse.Namespace) -> dict[str, Any]:
    """The report of the dataset named by `args` (see the module docstring)."""
    data = load_task(args.task, args.annotations, args.videos, val_fraction=args.val_fraction, seed=args.seed)
    paths = clip_paths(data)
    missing, unreadable = check_clips(paths, args.decode, args.num_frames)
    report: dict[str, Any] = {
        "task": data.name,
        "kind": data.kind,
        "splits": {split: len(records) for split, records in data.splits.items()},
        "clips": len(paths),
        "missing_clips": len(missing),
        "unreadable_clips": len(unreadable),
        "decoded": args.decode,
        "val_clips": len(data.val_clips),
        **vocabulary_report(data),
        "missing_examples": missing[:5],
        "unreadable_examples": dict(list(unreadable.items())[:5]),
    }
    report["problems"] = problems_of(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = check(args)
    except (DatasetFormatError, ValueError) as error:
        print(f"check_data: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))
    for problem in report["problems"]:
        print(f"check_data: unusable dataset: {problem}", file=sys.stderr)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
