"""Answer questions about clips from the command line.

    python -m clover.predict VIDEO "QUESTION" [--candidates A B ...] [--checkpoint DIR] [--top-k 5] [--json]
    python -m clover.predict --videos DIR --questions Q.csv --output A.csv [--checkpoint DIR]

One clip: the answers best first, one per line ("answer<TAB>probability"), or with `--json` exactly one
JSON object `{"answers": [{"answer": ..., "probability": ...}, ...]}`. With `--candidates` the question
is multiple choice and every distinct candidate is ranked. "How many times ..." questions go to the count
head when the checkpoint has one (`--head` overrides). An unreadable clip or a bad question prints one
line on stderr and exits with status 1.

Many clips: Q.csv has columns `video` (relative to DIR), `question` and optionally `candidates`
(separated by "|"); A.csv gets `video, question, answer, probability, error` with the best answer per
row. A row that fails gets its message in `error`, the others are still answered; the exit status is 1
when any row failed. Each clip is read and encoded once however many questions it has.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from clover.inference import DEFAULT_CHECKPOINT, CloverInference, Prediction


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clover.predict", description="Answer questions about video clips with Clover.")
    parser.add_argument("video", nargs="?", help="the clip")
    parser.add_argument("question", nargs="?", help="the question about it")
    parser.add_argument("--candidates", nargs="+", metavar="ANSWER", help="multiple choice: the candidate answers")
    parser.add_argument(
        "--checkpoint",
        default=os.environ.get("CLOVER_CHECKPOINT") or DEFAULT_CHECKPOINT,
        help=f"model directory or Hub repo id (default: $CLOVER_CHECKPOINT, else {DEFAULT_CHECKPOINT})",
    )
    parser.add_argument("--top-k", type=int, default=5, help="open-ended answers to print (default 5)")
    parser.add_argument("--head", choices=["auto", "open", "count"], default="auto", help="answer head for open questions")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--start", type=float, help="window start in seconds")
    parser.add_argument("--end", type=float, help="window end in seconds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--allow-pickle", action="store_true", help="also load pickle weights (pytorch_model.bin) you trust")
    parser.add_argument("--videos", type=Path, help="batch mode: directory the CSV's video paths are relative to")
    parser.add_argument("--questions", type=Path, help="batch mode: CSV with video, question[, candidates]")
    parser.add_argument("--output", type=Path, help="batch mode: CSV to write")
    return parser


def predict_one(inference: CloverInference, video: str | Path, question: str, candidates: Sequence[str] | None,
                *, top_k: int = 5, head: str = "auto", start_sec: float | None = None,
                end_sec: float | None = None) -> Prediction:  # fmt: skip
    """Answer one question about one clip (its features cached for the next question)."""
    clip, _ = inference.clip_features(video, start_sec=start_sec, end_sec=end_sec)
    if candidates:
        return inference.choose(clip, question, candidates)
    return inference.answer(clip, question, head=head, top_k=top_k)


def format_answers(prediction: Prediction, as_json: bool) -> str:
    """The answers as one JSON object, or as "answer<TAB>probability" lines."""
    if as_json:
        answers = [{"answer": text, "probability": round(probability, 6)} for text, probability in prediction.answers]
        return json.dumps({"answers": answers})
    return "\n".join(f"{text}\t{probability:.4f}" for text, probability in prediction.answers)


def run_batch(inference: CloverInference, videos: Path, questions: Path, output: Path, head: str) -> int:
    """Answer every row of the questions CSV into the output CSV; returns the number of failed rows."""
    with open(questions, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"video", "question"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{questions} lacks the column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    failed = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "question", "answer", "probability", "error"])
        for row in rows:
            candidates = [c for c in (row.get("candidates") or "").split("|") if c.strip()] or None
            try:
                prediction = predict_one(inference, videos / row["video"], row["question"], candidates, top_k=1, head=head)
                text, probability = prediction.answers[0]
                writer.writerow([row["video"], row["question"], text, f"{probability:.6f}", ""])
            except ValueError as error:  # VideoReadError and InputError are ValueErrors
                failed += 1
                writer.writerow([row["video"], row["question"], "", "", str(error)])
    return failed


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Whether this is batch mode; exits with a usage error for a mix of the two modes."""
    batch = [args.videos, args.questions, args.output]
    if any(value is not None for value in batch):
        if not all(value is not None for value in batch) or args.video or args.question:
            parser.error("batch mode takes --videos, --questions and --output (and no VIDEO or QUESTION)")
        return True
    if not args.video or args.question is None:
        parser.error("give VIDEO and QUESTION, or --videos, --questions and --output")
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    batch = check_arguments(parser, args)
    _quiet_libraries()
    try:
        inference = CloverInference.from_pretrained(args.checkpoint, device=args.device, allow_pickle=args.allow_pickle)
        if batch:
            failed = run_batch(inference, args.videos, args.questions, args.output, args.head)
            print(f"wrote {args.output}" + (f"; {failed} row(s) failed (see the error column)" if failed else ""), file=sys.stderr)
            return 1 if failed else 0
        prediction = predict_one(inference, args.video, args.question, args.candidates, top_k=args.top_k,
                                 head=args.head, start_sec=args.start, end_sec=args.end)  # fmt: skip
    except (ValueError, OSError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    print(format_answers(prediction, args.json))
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _quiet_libraries() -> None:
    """No progress bars or warnings from transformers on stderr: it is for our error line."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
