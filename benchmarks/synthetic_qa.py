"""The synthetic video QA report: does the video matter, and does Clover pre-training help?

    python benchmarks/synthetic_qa.py                       # writes docs/results.md and runs/report/results.json
    python benchmarks/synthetic_qa.py --arms "scratch, 100%"   # reruns one arm; the other rows are kept
    python benchmarks/synthetic_qa.py --table_only          # rewrites docs/results.md from results.json

On the synthetic benchmark's test split, one table with accuracy per task (Action, Transition, FrameQA
per type, MSVD-style per question word) and Count MSE, for:

1. the demo checkpoint (`examples/checkpoint`, its own longer recipe: `python -m finetune.make_demo`);
2. baselines that see no video (a blank clip: text only) or one frame (the middle frame in every slot);
3. fine-tuning from scratch, after pair-wise contrastive pre-training, and after Clover pre-training,
   each with the same fine-tuning budget (`--steps`), on 100% and on 10% of the QA training questions.

The baselines and the comparison share one budget and one seed, so their rows compare with each other;
the demo row had a larger budget. Every number is measured by `finetune.train_qa` (test split, every
question counted) and written as measured. Rows and minutes are kept in `--work_dir`
(`results.json`, `minutes.json`), so a run of some arms updates those rows and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune import pretrain, train_qa  # noqa: E402
from finetune.make_demo import ensure_benchmark, pretrain_arguments, task_arguments  # noqa: E402

logger = logging.getLogger("synthetic_qa")

# Arms of the comparison: name -> (start, train fraction, video input).
ARMS: dict[str, tuple[str, float, str]] = {
    "text only (blank clip)": ("clover", 1.0, "none"),
    "single middle frame": ("clover", 1.0, "middle"),
    "scratch, 100%": ("scratch", 1.0, "full"),
    "pair-wise pre-training, 100%": ("pairwise", 1.0, "full"),
    "Clover pre-training, 100%": ("clover", 1.0, "full"),
    "scratch, 10%": ("scratch", 0.1, "full"),
    "pair-wise pre-training, 10%": ("pairwise", 0.1, "full"),
    "Clover pre-training, 10%": ("clover", 0.1, "full"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--demo", default="examples/checkpoint", help="the demo checkpoint (its metrics.json is read)")
    parser.add_argument("--work_dir", default="runs/report")
    parser.add_argument("--output", default="docs/results.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps of every arm")
    parser.add_argument("--pretrain_epochs", type=int, default=3)
    parser.add_argument("--pretrain_lr", type=float, default=5e-4, help="as make_demo")
    parser.add_argument("--clover_pretrained", help="reuse this Clover pre-training run (e.g. runs/demo/pretrain)")
    parser.add_argument("--pairwise_pretrained", help="reuse this pair-wise pre-training run")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM", help="a subset of the arms, by name")
    parser.add_argument("--table_only", action="store_true", help="train nothing: rewrite --output from the kept rows")
    return parser.parse_args(argv)


def pretrained(args: argparse.Namespace, objective: str, data: Path) -> Path:
    """A pre-training run with `objective`, reused when given or already complete."""
    given = args.clover_pretrained if objective == "clover" else args.pairwise_pretrained
    out = Path(given) if given else Path(args.work_dir) / f"pretrain-{objective}"
    if (out / "config.json").exists():
        return out
    pretrain.main(pretrain_arguments(
        data, out, objective=objective, learning_rate=args.pretrain_lr, epochs=args.pretrain_epochs,
        batch_size=args.batch_size, num_workers=1, seed=args.seed,
    ))  # fmt: skip
    return out


def finetune(args: argparse.Namespace, data: Path, name: str, start: Path | None, fraction: float, video_input: str) -> dict[str, Any]:
    """One arm: fixed steps on all five question sets, then the test split."""
    out = Path(args.work_dir) / name.replace(" ", "_").replace(",", "").replace("%", "pc").replace("(", "").replace(")", "")
    return train_qa.main([
        *task_arguments(data, start),
        "--output_dir", str(out), "--skip_val",
        "--train_fraction", str(fraction), "--video_input", video_input,
        "--max_train_steps", str(args.steps), "--learning_rate", str(args.learning_rate), "--head_lr_multiplier", "5",
        "--per_device_train_batch_size", str(args.batch_size), "--num_workers", "1", "--seed", str(args.seed),
    ])


def summarise(test: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The table's cells from a run's test metrics: accuracy per task (and per type) and Count MSE."""
    row: dict[str, Any] = {}
    for task, metrics in test.items():
        if "mse" in metrics:
            row[task] = {"mse": metrics["mse"]}
        else:
            row[task] = {"accuracy": metrics["accuracy"], "per_type": metrics.get("per_type", {})}
    return row


def cell(row: dict[str, Any], task: str) -> str:
    values = row.get(task)
    if not values:
        return "-"
    if "mse" in values:
        return f"{values['mse']:.2f}"
    return f"{100 * values['accuracy']:.1f}"


def per_type_cells(row: dict[str, Any], task: str) -> str:
    per_type = (row.get(task) or {}).get("per_type") or {}
    return ", ".join(f"{name} {100 * (v['accuracy'] if isinstance(v, dict) else v):.0f}" for name, v in sorted(per_type.items())) or "-"


COLUMNS = ["tgif-action", "tgif-transition", "tgif-frameqa", "msvd-qa", "tgif-count"]


def markdown(rows: dict[str, dict[str, Any]], args: argparse.Namespace, minutes: dict[str, float]) -> str:
    tasks = COLUMNS
    sizes = json.loads((Path(args.data) / "metadata.json").read_text()).get("clips", {})
    header = "| | Action | Transition | FrameQA | MSVD-style | Count MSE (lower is better) |\n| --- | --- | --- | --- | --- | --- |\n"
    lines = [f"| {name} | " + " | ".join(cell(row, task) for task in tasks) + " |" for name, row in rows.items()]
    types = [f"| {name} | {per_type_cells(row, 'tgif-frameqa')} | {per_type_cells(row, 'msvd-qa')} |" for name, row in rows.items()]
    return "\n".join([
        "Measured by `python benchmarks/synthetic_qa.py` (this section is its output) on the test split of the",
        f"benchmark that `python -m clover.data.synthetic` generates with seed {args.seed} (train / val / test clips: "
        f"{sizes.get('train', '?')} / {sizes.get('val', '?')} / {sizes.get('test', '?')}).",
        "Accuracy in %, every test question counted; Count is the MSE of the rounded, clamped prediction.",
        f"Every row but the demo's fine-tunes clover-tiny for {args.steps} steps of {args.batch_size} questions",
        f"(learning rate {args.learning_rate}, heads x5, seed {args.seed}) on all five question sets at once,",
        "after the named pre-training (Clover or pair-wise: clover-tiny on the benchmark's captions,",
        f"{args.pretrain_epochs} epochs at lr {args.pretrain_lr}) or none. The demo checkpoint had its own longer recipe (`python -m finetune.make_demo`).",
        "",
        header + "\n".join(lines),
        "",
        "Per question type (FrameQA: object, number, color, location; MSVD-style: question word):",
        "",
        "| | FrameQA | MSVD-style |\n| --- | --- | --- |\n" + "\n".join(types),
        "",
        "Minutes per run on this machine (2 CPU cores): " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()),
        "",
    ])


START, END = "<!-- results:start -->", "<!-- results:end -->"


def write_report(path: Path, table: str) -> None:
    """Write the measured part between the START/END markers, keeping the prose around it."""
    block = f"{START}\n{table}\n{END}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = block + "\n" + text
    path.write_text(text, encoding="utf-8")


def kept(work_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """The rows and minutes of earlier runs in `work_dir` (empty when there are none)."""
    rows_file, minutes_file = work_dir / "results.json", work_dir / "minutes.json"
    rows = json.loads(rows_file.read_text()) if rows_file.exists() else {}
    minutes = json.loads(minutes_file.read_text()) if minutes_file.exists() else {}
    return rows, minutes


def ordered(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The demo row, then the arms in ARMS order."""
    names = ["demo checkpoint", *ARMS]
    return {name: rows[name] for name in names if name in rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    data, work_dir = Path(args.data), Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rows, minutes = kept(work_dir)
    demo_metrics = Path(args.demo) / "metrics.json"
    if demo_metrics.exists():
        rows["demo checkpoint"] = summarise(json.loads(demo_metrics.read_text())["test"])
    if not args.table_only:
        ensure_benchmark(data, args.seed)
        run_arms(args, data, rows, minutes)
    rows = ordered(rows)
    write_report(Path(args.output), markdown(rows, args, minutes))
    print(json.dumps(rows, indent=2))
    return rows


def run_arms(args: argparse.Namespace, data: Path, rows: dict[str, dict[str, Any]], minutes: dict[str, float]) -> None:
    """Train and test each arm of `args.arms`, saving rows and minutes after each."""
    starts: dict[str, Path | None] = {"scratch": None}
    for name in args.arms:
        start, fraction, video_input = ARMS[name]
        if start not in starts:
            began = time.time()
            starts[start] = pretrained(args, start, data)
            reused = time.time() - began < 5
            minutes[f"pre-training ({start}{', reused' if reused else ''})"] = (time.time() - began) / 60
        began = time.time()
        metrics = finetune(args, data, name, starts[start], fraction, video_input)
        minutes[name] = (time.time() - began) / 60
        rows[name] = summarise(metrics["test"])
        Path(args.work_dir, "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        Path(args.work_dir, "minutes.json").write_text(json.dumps(minutes, indent=2) + "\n")


if __name__ == "__main__":
    main()
