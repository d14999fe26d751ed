"""The synthetic video QA report: does the video matter, and does Clover pre-training help?

    python benchmarks/synthetic_qa.py                       # writes docs/results.json and docs/results.md (~1 h for seed 0, 2 CPU cores)
    python benchmarks/synthetic_qa.py --arms "scratch, 100%"   # reruns one arm; the other rows are kept
    python benchmarks/synthetic_qa.py --table_only          # rewrites docs/results.md from docs/results.json
    python benchmarks/synthetic_qa.py --arms "scratch, 10%" --seeds 1 2   # more seeds of one arm
    python benchmarks/synthetic_qa.py --video_pretrained runs/report/video   # reuse a video stage trained as the rows' (steps, seed and stem are checked)
    python benchmarks/synthetic_qa.py --work_dir runs/report_vlr --output runs/report_vlr/results.md \
        --arms "Clover pre-training, 10%" --pretrain_video_lr_multiplier 0.1   # a variant, on its own page

On the synthetic benchmark's test split, one table with accuracy per task (Action, Transition, FrameQA
per type, MSVD-style per question word) and Count MSE, for:

1. the demo checkpoint (`examples/checkpoint`, its own longer recipe: `python -m finetune.make_demo`);
2. baselines that see no video (a blank clip: text only) or one frame (the middle frame in every slot);
3. fine-tuning from scratch (random weights), from the video encoder's pre-training alone, and after
   pair-wise contrastive or Clover pre-training on the benchmark's captions (both starting from that
   video encoder, as the paper's start from a Kinetics-trained Video Swin), each with the same
   fine-tuning budget (`--steps`), on 100% and on 10% of the QA training questions.

The video encoder's pre-training (`finetune.pretrain_video --target scene`: make_demo's first stage,
with the preset's patchify stem and every label weighted alike) runs once (`--video_pretrain_seed`)
into `--work_dir/video` and is shared by every arm and seed, as the paper's one Kinetics checkpoint
is (`--video_pretrained DIR` reuses one).

The baselines and the comparison share one budget, so their rows compare with each other; the demo
row had a larger budget. Each arm runs once per seed of `--seeds` (the seed of its pre-training and of
its fine-tuning); a row with several seeds shows their mean and standard deviation, which is how large
a difference between rows must be to mean anything. Every number is measured by `finetune.train_qa`
(test split, every question counted) and written as measured.

The measured rows live next to the page, in `--results` (the page's path with `.json`: docs/results.json,
committed with it): per row and seed the cells, the minutes of each run, the caption pre-training's
retrieval, and the settings every row was measured with. Each finished arm is saved there at once, so
a report can be remade an arm at a time, across sessions and machines: a run of some arms or seeds
replaces those and keeps the others, and `--table_only` renders the page from the file alone. A run
whose settings (`--steps`, the learning rates, the video stage's steps, seed and stem, the benchmark) differ
from the rows' stops before training and says which: one table holds one set of settings, and a
variant goes to its own page (`--output`).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune import pretrain, pretrain_video, train_qa  # noqa: E402
from finetune.make_demo import ensure_benchmark, pretrain_arguments, task_arguments, video_pretrain_arguments  # noqa: E402

logger = logging.getLogger("synthetic_qa")

# Arms of the comparison: name -> (start, train fraction, video input). Starts: "scratch" (random
# clover-tiny), "video" (the video encoder's pre-training alone), "pairwise" and "clover" (caption
# pre-training with that objective, from the video encoder).
ARMS: dict[str, tuple[str, float, str]] = {
    "text only (blank clip)": ("clover", 1.0, "none"),
    "single middle frame": ("clover", 1.0, "middle"),
    "scratch, 100%": ("scratch", 1.0, "full"),
    "video pre-training only, 100%": ("video", 1.0, "full"),
    "pair-wise pre-training, 100%": ("pairwise", 1.0, "full"),
    "Clover pre-training, 100%": ("clover", 1.0, "full"),
    "scratch, 10%": ("scratch", 0.1, "full"),
    "video pre-training only, 10%": ("video", 0.1, "full"),
    "pair-wise pre-training, 10%": ("pairwise", 0.1, "full"),
    "Clover pre-training, 10%": ("clover", 0.1, "full"),
}


def parse_args(argv: list[str] | None = None, kept_settings: dict[str, Any] | None = None) -> argparse.Namespace:
    """The command line; the settings flags (SETTING_FLAGS) default to `kept_settings` where given,
    so that rerunning an arm of a kept table measures it as the table's other rows were."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="The settings (--seed, --steps, --batch_size, the learning rates, the video stage's steps and seed, "
        "--pretrain_epochs) default to those of the rows kept in --results, where it has any.",
    )
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--demo", default="examples/checkpoint", help="the demo checkpoint (its metrics.json is read)")
    parser.add_argument("--work_dir", default="runs/report")
    parser.add_argument("--output", default="docs/results.md")
    parser.add_argument("--results", help="the measured rows, kept between runs (default: --output with .json, e.g. docs/results.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated benchmark")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds: each arm (and its pre-training) runs once per seed")
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps of every arm")
    parser.add_argument("--video_pretrain_steps", type=int, default=1500, help="steps of the shared video encoder pre-training (as make_demo)")
    parser.add_argument("--video_pretrain_seed", type=int, default=0, help="seed of the shared video stage when it is trained here")
    parser.add_argument("--video_pretrained", help="reuse this video encoder pre-training (e.g. runs/demo/video)")
    parser.add_argument("--pretrain_epochs", type=int, default=3)
    parser.add_argument("--pretrain_lr", type=float, default=5e-4, help="as make_demo")
    parser.add_argument("--pretrain_video_lr_multiplier", type=float, default=1.0,
                        help="the video encoder's learning rate in the caption pre-training, x --pretrain_lr")
    parser.add_argument("--clover_pretrained", help="reuse this Clover pre-training run (e.g. runs/demo/pretrain)")
    parser.add_argument("--pairwise_pretrained", help="reuse this pair-wise pre-training run")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM", help="a subset of the arms, by name")
    parser.add_argument("--table_only", action="store_true", help="train nothing: rewrite --output from --results")
    settings = {key: value for key, value in (kept_settings or {}).items() if key in SETTING_FLAGS}
    parser.set_defaults(**settings)
    return parser.parse_args(argv)


def seed_dir(args: argparse.Namespace, seed: int) -> Path:
    """Where one seed's runs go: `--work_dir` itself for seed 0 (as before seeds existed), else `seedN/`."""
    return Path(args.work_dir) if seed == 0 else Path(args.work_dir) / f"seed{seed}"


def video_stage_dir(args: argparse.Namespace) -> Path:
    """Where the shared video encoder pre-training is: `--video_pretrained`, or `--work_dir/video`."""
    return Path(args.video_pretrained or Path(args.work_dir) / "video")


def video_pretrained(args: argparse.Namespace) -> Path:
    """The shared video encoder pre-training: `--video_pretrained`, or `--work_dir/video` (trained
    with `--video_pretrain_seed` unless already complete)."""
    out = video_stage_dir(args)
    if (out / "config.json").exists():
        return pretrain_video.reusable_run(out, args.video_pretrain_steps)  # the page says how the encoder was trained
    pretrain_video.main(video_pretrain_arguments(out, steps=args.video_pretrain_steps, batch_size=args.batch_size, seed=args.video_pretrain_seed))
    return out


# Every run reads in its own process from decoded clips kept in memory (as make_demo does: on 2 cores a
# loader worker slows the training step down more than it saves).
CLIP_CACHE_GB = 4.0


def given_pretraining(args: argparse.Namespace, objective: str) -> str | None:
    """The caption pre-training run of `objective` given by flag (one for every seed), or None."""
    return args.clover_pretrained if objective == "clover" else args.pairwise_pretrained


def pretrained(args: argparse.Namespace, objective: str, data: Path, seed: int) -> Path:
    """A caption pre-training run with `objective` and `seed` from the shared video encoder, reused when
    given (for every seed) or already complete."""
    given = given_pretraining(args, objective)
    out = Path(given) if given else seed_dir(args, seed) / f"pretrain-{objective}"
    if (out / "config.json").exists():
        return out
    pretrain.main([
        *pretrain_arguments(
            data, out, objective=objective, learning_rate=args.pretrain_lr, epochs=args.pretrain_epochs,
            batch_size=args.batch_size, num_workers=0, seed=seed, start=video_pretrained(args), clip_cache_gb=CLIP_CACHE_GB,
        ),
        "--video_lr_multiplier", str(args.pretrain_video_lr_multiplier),
    ])  # fmt: skip
    return out


def start_of(args: argparse.Namespace, start: str, data: Path, seed: int) -> Path | None:
    """The checkpoint an arm fine-tunes from (None: a random clover-tiny)."""
    if start == "scratch":
        return None
    if start == "video":
        return video_pretrained(args)
    return pretrained(args, start, data, seed)


def finetune(args: argparse.Namespace, data: Path, name: str, start: Path | None, fraction: float, video_input: str, seed: int) -> dict[str, Any]:
    """One arm: fixed steps on all five question sets, then the test split."""
    out = seed_dir(args, seed) / name.replace(" ", "_").replace(",", "").replace("%", "pc").replace("(", "").replace(")", "")
    return train_qa.main([
        *task_arguments(data, start),
        "--output_dir", str(out), "--skip_val",
        "--train_fraction", str(fraction), "--video_input", video_input,
        "--max_train_steps", str(args.steps), "--learning_rate", str(args.learning_rate), "--head_lr_multiplier", "5",
        "--per_device_train_batch_size", str(args.batch_size), "--num_workers", "0", "--seed", str(seed),
        "--clip_cache_gb", str(CLIP_CACHE_GB),
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


# --------------------------------------------------------------------------------------------------
# The kept results: docs/results.json
# --------------------------------------------------------------------------------------------------

# The settings a row is measured with, by the flag that sets them; "clips" (the benchmark's split sizes),
# "video_stem" (the shared video stage's, the preset's when trained here) and the stage's seed (from its
# record, or the flag it will be trained with) are added.
SETTING_FLAGS = (
    "seed", "steps", "batch_size", "learning_rate", "video_pretrain_steps", "video_pretrain_seed", "pretrain_epochs", "pretrain_lr",
    "pretrain_video_lr_multiplier",
)  # fmt: skip


def results_path(args: argparse.Namespace) -> Path:
    """Where the measured rows are kept: `--results`, or the page's path with `.json`."""
    return Path(args.results) if args.results else Path(args.output).with_suffix(".json")


def load_results(path: Path) -> dict[str, Any]:
    """The kept results ({"settings", "rows", "minutes", "retrieval"}), empty parts where there is no file.
    rows: {name: {"seeds": {seed: cells}}}; minutes: {run: minutes};
    retrieval: {objective: {seed: the pre-training run's retrieval metrics}}."""
    stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {"settings": {}, "rows": {}, "minutes": {}, "retrieval": {}, **stored}


def save_results(path: Path, results: dict[str, Any]) -> None:
    """Write the kept results (the demo row, read from the checkpoint each time, is not kept)."""
    rows = {name: row for name, row in results["rows"].items() if name != "demo checkpoint"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "rows": rows}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def current_settings(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """This run's settings: the flags of SETTING_FLAGS, the benchmark's split sizes and the video stage's
    stem and seed."""
    settings: dict[str, Any] = {flag: getattr(args, flag) for flag in SETTING_FLAGS}
    metadata = data / "metadata.json"
    if metadata.exists():
        settings["clips"] = json.loads(metadata.read_text())["clips"]
    stage = video_stage_dir(args)
    config = stage / "config.json"
    settings["video_stem"] = json.loads(config.read_text()).get("video_stem", "patchify") if config.exists() else "patchify"
    record = pretrain_video.saved_record(stage)  # a stage already there has its own seed; else it is trained with this one
    settings["video_pretrain_seed"] = record["arguments"]["seed"] if record else args.video_pretrain_seed
    return settings


def check_settings(results: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Stop (SystemExit) when the kept rows were measured with other settings than `current`: one
    table holds one set of settings, so a variant needs its own page."""
    if not results["rows"]:
        return
    stored = results["settings"]
    differ = [f"{key} {stored[key]!r} (this run: {current[key]!r})" for key in stored if key in current and stored[key] != current[key]]
    if differ:
        raise SystemExit(
            f"{path} holds rows measured with other settings: {'; '.join(differ)}. Run with the rows' settings, "
            "or write this variant to its own page and results (--output runs/NAME/results.md)"
        )


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


def cell(row: dict[str, Any], task: str) -> str:
    """One table cell over a row's seeds: accuracy in % (or Count MSE), as "mean ± sd" with several seeds."""
    values = [cells[task] for cells in row["seeds"].values() if cells.get(task)]
    if not values:
        return "-"
    is_mse = "mse" in values[0]
    numbers = [v["mse"] if is_mse else 100 * v["accuracy"] for v in values]
    digits = 2 if is_mse else 1
    spread = f" ± {statistics.stdev(numbers):.{digits}f}" if len(numbers) > 1 else ""  # sample standard deviation
    return f"{statistics.mean(numbers):.{digits}f}{spread}"


def seeds_cell(row: dict[str, Any]) -> str:
    """The seeds a row ran with, "0, 1, 2"."""
    return ", ".join(sorted(row["seeds"], key=int))


def per_type_cells(row: dict[str, Any], task: str) -> str:
    """"type accuracy" pairs, each the mean over the row's seeds."""
    scores: dict[str, list[float]] = {}
    for cells in row["seeds"].values():
        for name, v in ((cells.get(task) or {}).get("per_type") or {}).items():
            scores.setdefault(name, []).append(100 * (v["accuracy"] if isinstance(v, dict) else v))
    return ", ".join(f"{name} {statistics.mean(values):.0f}" for name, values in sorted(scores.items())) or "-"


def keep_retrieval(results: dict[str, Any], objective: str, seed: str, run: Path) -> None:
    """Keep a caption pre-training run's zero-shot retrieval (its metrics.json), when it measured one."""
    metrics = run / "metrics.json"
    if metrics.exists() and "retrieval" in (measured := json.loads(metrics.read_text())):
        kept = {"retrieval": measured["retrieval"], "norm_statistics": measured.get("norm_statistics", {})}
        results["retrieval"].setdefault(objective, {})[seed] = kept


def retrieval_lines(retrieval: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """A table of the caption pre-training runs' zero-shot retrieval, both ways, on the benchmark's
    held-out caption pairs, one row per objective and seed, with where the retrieval heads' BatchNorm
    statistics came from."""
    names = {"clover": "Clover", "pairwise": "pair-wise"}
    found = [(names[o], seed, m) for o in names for seed, m in sorted(retrieval.get(o, {}).items())]
    if not found:
        return []
    lines = [
        "Zero-shot retrieval after the caption pre-training (200 held-out caption pairs of the benchmark,",
        "chance R@1 0.5 %, R@10 5 %), the same pre-training the rows above fine-tune from; the retrieval",
        "heads' BatchNorm statistics are those of the training pairs named (`--norm_statistics_pairs`,",
        "docs/pretraining.md), or training's running averages:",
        "",
        "| pre-training | seed | text to video R@1 | R@5 | R@10 | median rank | video to text R@1 | R@10 | BatchNorm statistics |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {name} | {seed} | {retrieval_cells(m)} |" for name, seed, m in found]
    return [*lines, ""]


def retrieval_cells(metrics: dict[str, Any]) -> str:
    """One run's cells of the retrieval table, R@K in %."""
    t2v, v2t = metrics["retrieval"]["text_to_video"], metrics["retrieval"].get("video_to_text")
    cells = [f"{100 * t2v[k]:.1f}" for k in ("R@1", "R@5", "R@10")] + [f"{t2v['median_rank']:g}"]
    cells += [f"{100 * v2t[k]:.1f}" for k in ("R@1", "R@10")] if v2t else ["-", "-"]
    pairs = metrics.get("norm_statistics", {}).get("pairs")
    return " | ".join([*cells, f"{pairs} training pairs" if pairs else "running averages"])


COLUMNS = ["tgif-action", "tgif-transition", "tgif-frameqa", "msvd-qa", "tgif-count"]


def markdown(results: dict[str, Any]) -> str:
    """The measured section of the page, from the kept results (and the demo row)."""
    settings, rows = results["settings"], ordered(results["rows"])
    sizes = settings.get("clips", {})
    header = "| | seeds | Action | Transition | FrameQA | MSVD-style | Count MSE (lower is better) |\n| --- | --- | --- | --- | --- | --- | --- |\n"
    lines = [f"| {name} | {seeds_cell(row)} | " + " | ".join(cell(row, task) for task in COLUMNS) + " |" for name, row in rows.items()]
    types = [f"| {name} | {per_type_cells(row, 'tgif-frameqa')} | {per_type_cells(row, 'msvd-qa')} |" for name, row in rows.items()]
    stage_seed = f", seed {settings['video_pretrain_seed']}" if "video_pretrain_seed" in settings else ""
    minutes = results["minutes"]
    return "\n".join([
        "Measured by `python benchmarks/synthetic_qa.py` (this section is its output) on the test split of the",
        f"benchmark that `python -m clover.data.synthetic` generates with seed {settings['seed']} (train / val / test clips: "
        f"{sizes.get('train', '?')} / {sizes.get('val', '?')} / {sizes.get('test', '?')}).",
        "Accuracy in %, every test question counted; Count is the MSE of the rounded, clamped prediction.",
        f"Every row but the demo's fine-tunes clover-tiny for {settings['steps']} steps of {settings['batch_size']} questions",
        f"(learning rate {settings['learning_rate']}, heads x5) on all five question sets at once,",
        "from random weights (scratch), from the video encoder's pre-training alone (`finetune.pretrain_video",
        f"--target scene`, {settings['video_pretrain_steps']} steps{stage_seed}, one run shared by every row and seed), or after Clover or",
        "pair-wise pre-training on the benchmark's captions from that video encoder",
        f"({settings['pretrain_epochs']} epochs at lr {settings['pretrain_lr']}{video_lr_note(settings)}); the baselines start from the Clover pre-training.",
        "Each row runs once per seed listed (the seed of both the caption pre-training and the fine-tuning);",
        "with several seeds a cell is the mean ± the standard deviation over them.",
        "The demo checkpoint had its own longer recipe (`python -m finetune.make_demo`).",
        "",
        header + "\n".join(lines),
        "",
        "Per question type (FrameQA: object, number, color, location; MSVD-style: question word):",
        "",
        "| | FrameQA | MSVD-style |\n| --- | --- | --- |\n" + "\n".join(types),
        "",
        *retrieval_lines(results["retrieval"]),
        "Minutes per run on this machine (2 CPU cores): " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()),
        "",
    ])  # fmt: skip


def video_lr_note(settings: dict[str, Any]) -> str:
    """How the caption pre-training treated the video encoder, where not as the rest of the model."""
    multiplier = settings.get("pretrain_video_lr_multiplier", 1.0)
    return "" if multiplier == 1.0 else f", the video encoder at x{multiplier:g} of it"


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


def ordered(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The demo row, then the arms in ARMS order."""
    names = ["demo checkpoint", *ARMS]
    return {name: rows[name] for name in names if name in rows}


def demo_seed(checkpoint: Path) -> str:
    """The training seed in the demo checkpoint's `recipe.json` (what make_demo ran), "0" without one."""
    recipe = checkpoint / "recipe.json"
    return str(json.loads(recipe.read_text())["arguments"]["seed"]) if recipe.exists() else "0"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    path = results_path(parse_args(argv))
    results = load_results(path)
    args = parse_args(argv, results["settings"] if results["rows"] else None)  # the kept rows' settings by default
    data = Path(args.data)
    if not args.table_only:
        check_settings(results, current_settings(args, data), path)  # before generating a benchmark for nothing
        ensure_benchmark(data, args.seed)
        run_arms(args, data, results, path)
    if not results["settings"]:  # nothing measured yet: the page describes this run's settings
        results["settings"] = current_settings(args, data)
    demo_metrics = Path(args.demo) / "metrics.json"
    if demo_metrics.exists():
        results["rows"]["demo checkpoint"] = {"seeds": {demo_seed(Path(args.demo)): summarise(json.loads(demo_metrics.read_text())["test"])}}
    write_report(Path(args.output), markdown(results))
    rows = ordered(results["rows"])
    print(json.dumps(rows, indent=2, ensure_ascii=False))
    return rows


def run_arms(args: argparse.Namespace, data: Path, results: dict[str, Any], path: Path) -> None:
    """Train and test each arm of `args.arms` once per seed, keeping each row, its minutes and the
    pre-training's retrieval in `path` as soon as it is measured."""
    minutes = results["minutes"]
    check_settings(results, current_settings(args, data), path)  # the benchmark's split sizes, now that it exists
    if any(ARMS[name][0] != "scratch" for name in args.arms):  # the shared video stage first, timed on its own
        began = time.time()
        video_pretrained(args)
        if time.time() - began > 5:  # not a reused run
            minutes["video pre-training"] = (time.time() - began) / 60
    settings = current_settings(args, data)  # with the seed of the stage found
    check_settings(results, settings, path)
    results["settings"] = {**results["settings"], **settings}
    for seed in args.seeds:
        suffix = "" if seed == 0 else f", seed {seed}"
        starts: dict[str, Path | None] = {}
        for name in args.arms:
            start, fraction, video_input = ARMS[name]
            if start not in starts:
                began = time.time()
                starts[start] = start_of(args, start, data, seed)
                if time.time() - began > 5:  # not a reused run
                    minutes[f"pre-training ({start}{suffix})"] = (time.time() - began) / 60
                if start in ("clover", "pairwise"):
                    keep_retrieval(results, start, "given" if given_pretraining(args, start) else str(seed), starts[start])
            began = time.time()
            metrics = finetune(args, data, name, starts[start], fraction, video_input, seed)
            minutes[name + suffix] = (time.time() - began) / 60
            results["rows"].setdefault(name, {"seeds": {}})["seeds"][str(seed)] = summarise(metrics["test"])
            save_results(path, results)


if __name__ == "__main__":
    main()
