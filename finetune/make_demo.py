"""Make the bundled demo checkpoint, end to end, on a CPU.

    python -m finetune.make_demo                    # about 70 minutes on a fast pair of CPU cores (docs/results.md)

1. generate the synthetic moving-shapes benchmark (`clover.data.synthetic`) unless it is there;
2. pre-train clover-tiny's video encoder to name the actions, colours and shapes of fresh scenes of
   the benchmark's kind, rendered in memory (`finetune.pretrain_video`: our analogue of the paper's
   Kinetics-trained Video Swin, without which the motion questions stay at chance: docs/results.md),
   with the early-convolution stem and one stride-1 layer more (`--video_stem deep_conv`:
   docs/results.md, "Early convolutions, measured for longer"): 3,000 steps with the shape labels'
   loss weighted 4 times (`--video_shape_weight`), then 1,500 unweighted (`--video_unweighted_steps`),
   so that the encoder knows shapes as well as motion (docs/results.md, "Shapes in the answers", "The
   shape-trained video stage bundled"), these last also regressing how many times the objects blink
   and jump (`--video_count_weight 0.25`: docs/results.md, "Counting in the video stage");
3. pre-train the model on the benchmark's captions with the Clover objective (`finetune.pretrain`),
   the video encoder at a tenth of the learning rate so that it keeps the motion it has learnt;
4. fine-tune one model for 3,000 steps on all five question sets at once (TGIF-Action, -Transition,
   -FrameQA, -Count and MSVD-style open-ended questions), each task's share of the batches ~ the square
   root of its size, so that it answers open-ended, multiple-choice and count questions
   (`finetune.train_qa`), its question pooling told to put a share 0.6 of its attention on the object
   each question names (`--grounding_weight 1 --grounding_target_share 0.6`, from the benchmark's
   grounding.json; docs/results.md, "Telling the question pooling where to look", "A share of the
   attention: a second seed"), and evaluate it on the test split (`--open_ended_first_steps N` puts N steps
   on the open-ended sets alone before it: location improves, the motion questions lose more;
   docs/results.md, "Open-ended questions first");
5. fit the retrieval heads, which the app's search uses and the fine-tuning leaves behind its moving
   encoders, to the fine-tuned encoders on the benchmark's training captions, the encoders frozen
   (`finetune.fit_retrieval_heads`; the answers do not change), and measure retrieval on the val
   captions (recipe.json, "search");
6. copy it with its processor and model card into `examples/checkpoint/`, and pick example clips from
   the test split (clips no model saw in training), as MP4 and GIF, with their questions and true
   answers, into `examples/` and `examples/examples.json`.

Every step is an ordinary command of the project with its own flags; this script only chains them
with settings that fit the time budget, and records them in `examples/checkpoint/recipe.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clover.configuration_clover import QA_POOLINGS, VIDEO_STEMS
from clover.data.annotations import TASKS as TASK_SPECS, load_annotations
from clover.inference import CloverInference
from clover.data.synthetic import add_grounding, generate_benchmark, update_clips
from clover.video import probe_video, read_frames, write_video
from finetune import fit_retrieval_heads
from finetune import pretrain as pretraining
from finetune import pretrain_video, train_qa

logger = logging.getLogger("make_demo")

# Files of the fine-tuning run that stay in the run folder: the per-step log (700 KB) is not part of the model.
RUN_ONLY_FILES = {"train_log.jsonl"}

# The five question sets: task name, annotation folder and video folder inside the benchmark.
TASKS = [
    ("tgif-action", "tgif", "tgif/gifs"),
    ("tgif-transition", "tgif", "tgif/gifs"),
    ("tgif-frameqa", "tgif", "tgif/gifs"),
    ("tgif-count", "tgif", "tgif/gifs"),
    ("msvd-qa", "msvd", "msvd"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Make the demo checkpoint: data, pre-training, fine-tuning, examples.")
    parser.add_argument("--data", default="data/synthetic", help="benchmark folder (generated when missing)")
    parser.add_argument("--work_dir", default="runs/demo", help="pre-training and fine-tuning runs")
    parser.add_argument("--output", default="examples/checkpoint", help="where the demo checkpoint goes")
    parser.add_argument("--examples_dir", default="examples", help="where example clips and examples.json go")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of every training stage (1 made the bundled checkpoint; docs/results.md reports 0 too)")
    parser.add_argument("--benchmark_seed", type=int, default=0, help="seed of the benchmark, when it is generated")
    parser.add_argument("--video_pretrain_steps", type=int, default=3000, help="steps of the video encoder's supervised pre-training (0: none)")
    parser.add_argument("--video_pretrained", help="reuse this video pre-training run (e.g. runs/demo/video) instead of running the stage")
    parser.add_argument("--video_shape_weight", type=float, default=4.0,
                        help="the video stage's weight of each shape label against the other labels' 1 (pretrain_video's "
                             "--shape_weight; docs/results.md, \"Shapes in the answers\"); 1: unweighted")
    parser.add_argument("--video_unweighted_steps", type=int, default=1500,
                        help="after the video stage, this many steps more with every label weighted 1, from its encoder "
                             "(a fresh linear layer); the shapes learnt stay and the actions come back. When reusing a "
                             "stage made so, --video_pretrained is this second part's folder (e.g. runs/demo/video)")
    parser.add_argument("--video_count_weight", type=float, default=0.25,
                        help="the video stage's last part (the unweighted one, when there are two) also regresses how many "
                             "times the objects blink and jump, this loss weighted so (pretrain_video's --count_weight; 0: "
                             "not; docs/results.md, \"Counting in the video stage\")")
    parser.add_argument("--video_count_target", choices=tuple(pretrain_video.COUNT_TARGETS), default="totals",
                        help="what that count output regresses (pretrain_video's --count_target): totals, the clip's blink "
                             "and jump repetitions; bound, every repeatable action's per colour and per shape")
    parser.add_argument("--video_stem", choices=VIDEO_STEMS, default="deep_conv",
                        help="clover-tiny's video stem in the video stage: deep_conv, the early convolutions with one "
                             "stride-1 layer more (the bundled checkpoint), deep_conv_diff, deep_conv that also sees each "
                             "frame's change since the one before, conv, the early convolutions (docs/results.md, "
                             "\"Early convolutions\"), or patchify, the preset's and the paper's")
    parser.add_argument("--pretrain_epochs", type=int, default=3)
    parser.add_argument("--pretrain_lr", type=float, default=5e-4)
    parser.add_argument("--pretrain_video_lr_multiplier", type=float, default=0.1,
                        help="caption pre-training: the video encoder's learning rate, x --pretrain_lr (pretrain's --video_lr_multiplier)")
    parser.add_argument("--finetune_steps", type=int, default=3000,
                        help="fine-tuning optimiser steps (train_qa's --max_train_steps); 0: whole --finetune_epochs")
    parser.add_argument("--finetune_epochs", type=int, default=2, help="with --finetune_steps 0")
    parser.add_argument("--open_ended_first_steps", type=int, default=0,
                        help="before the five-task fine-tuning, this many steps on the open-ended sets alone (FrameQA, MSVD-style); "
                        "0 in the bundled recipe (docs/results.md)")
    parser.add_argument("--open_ended_first_lr", type=float, default=5e-4, help="the learning rate of those steps")
    parser.add_argument("--finetune_lr", type=float, default=2e-4)
    parser.add_argument("--min_video_spread", type=float, default=0.1,
                        help="fine-tune from scratch if pre-training left the video tokens less spread across clips than this")
    parser.add_argument("--head_lr_multiplier", type=float, default=5.0)
    parser.add_argument("--qa_pooling", choices=QA_POOLINGS, default="cls+max+query",
                        help="what the answer heads read (train_qa's flag): cls+max+query adds to clover-tiny's cls+max "
                             "the question-guided pooling (docs/results.md, \"Binding sooner\")")
    # Fine-tuning; the bundled recipe: weight 1, every clip, a share 0.6 of the attention (docs/results.md,
    # "A share of the attention: a second seed, and the demo remade with it").
    train_qa.add_grounding_arguments(parser, default_weight=1.0, default_target_share=0.6)
    parser.add_argument("--task_sampling_alpha", type=float, default=0.5,
                        help="fine-tuning: each task's share of the batches ~ its size to this power (train_qa's flag)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=0,
                        help="loader processes; 0 (the default) reads in the training process, the fastest on 2 cores: a worker competes with the training step's threads")
    parser.add_argument("--clip_cache_gb", type=float, default=4.0,
                        help="decoded benchmark clips kept in memory by each pre-training and fine-tuning run (the benchmark's 3,400 question clips take 3.8 GiB decoded; 0: decode every read)")
    parser.add_argument("--skip_pretraining", action="store_true", help="no caption pre-training: fine-tune from the video pre-training (from scratch with --video_pretrain_steps 0)")
    parser.add_argument("--num_examples", type=int, default=8)
    args = parser.parse_args(argv)
    train_qa.check_grounding_arguments(parser, args)  # before the half-hour video stage, not after it
    return args


def ensure_benchmark(data: Path, seed: int) -> None:
    """Generate the benchmark with its default sizes unless a complete one is already there (one made
    before the grounding files existed gets them: `clover.data.synthetic.add_grounding`; one whose MP4s
    an older generator encoded gets them written again: `update_clips`)."""
    if (data / "metadata.json").exists():
        logger.info("using the benchmark in %s", data)
        if add_grounding(data):
            logger.info("wrote the grounding files the benchmark in %s was made without (tgif/ and msvd/grounding.json)", data)
        if written := update_clips(data):
            logger.info("wrote again the %d caption clips (MP4) an older generator encoded in %s, not reproducibly", written, data)
        return
    logger.info("generating the synthetic benchmark into %s", data)
    generate_benchmark(data, seed=seed, workers=2)


def pretrain_arguments(
    data: Path, out: Path, *, objective: str, learning_rate: float, epochs: int, batch_size: int, num_workers: int, seed: int,
    start: Path | None = None, clip_cache_gb: float = 0.0,
) -> list[str]:  # fmt: skip
    """`finetune.pretrain`'s arguments for clover-tiny (new, or the model in `start`) on the benchmark's
    captions in `data` (also what `benchmarks/synthetic_qa.py` pre-trains its arms with)."""
    return [
        *(["--model", str(start)] if start is not None else ["--preset", "clover-tiny"]), "--objective", objective,
        "--train_csv", str(data / "webvid/results.csv"), "--val_csv", str(data / "webvid/results_val.csv"),
        "--video_root", str(data / "webvid/videos"), "--output_dir", str(out),
        "--learning_rate", str(learning_rate), "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", str(batch_size), "--num_workers", str(num_workers), "--seed", str(seed),
        "--clip_cache_gb", str(clip_cache_gb),
    ]  # fmt: skip


def video_pretrain_arguments(
    out: Path, *, steps: int, batch_size: int, seed: int, video_stem: str = "patchify", shape_weight: float = 1.0,
    count_weight: float = 0.0, count_target: str = "totals", start: Path | None = None,
) -> list[str]:  # fmt: skip
    """`finetune.pretrain_video`'s arguments for the recipe's first stage: a new clover-tiny's video
    encoder trained to name the actions, colours and shapes of rendered scenes, saved in `out` (also
    the video encoder every pre-trained arm of `benchmarks/synthetic_qa.py` starts from, with the
    preset's patchify stem); `video_stem` other than the preset's is set through `--config_overrides`.
    With `start`, the encoder saved there trains on (its stem is its own), with a fresh linear layer;
    `count_weight` > 0 adds repetition counts (`count_target`) to what it learns."""
    if start is not None:
        origin = ["--checkpoint", str(start)]
    else:
        origin = [] if video_stem == "patchify" else ["--config_overrides", f"video_stem={video_stem}"]
    weight = [] if shape_weight == 1 else ["--shape_weight", str(shape_weight)]
    counts = [] if count_weight == 0 else ["--count_weight", str(count_weight)]
    if count_weight > 0 and count_target != "totals":
        counts += ["--count_target", count_target]
    return [
        "--target", "scene", "--steps", str(steps), "--batch_size", str(batch_size),
        "--seed", str(seed), "--eval_every", "500", "--output_dir", str(out), *origin, *weight, *counts,
    ]  # fmt: skip


def pretrain_video_encoder(args: argparse.Namespace, out: Path) -> Path | None:
    """The recipe's first stage: `--video_pretrained` reused (checked against `--video_pretrain_steps`,
    or `--video_unweighted_steps` for a two-part stage, which recipe.json records), or trained into
    `out` (with `--video_unweighted_steps`, its first part into `out`_weighted), or none with
    `--video_pretrain_steps 0`. `--video_count_weight` goes to the part saved in `out`, and a reused
    stage must have been trained with it, and with the part's shape weight."""
    if args.video_pretrained:
        logger.info("reusing the video pre-training in %s", args.video_pretrained)
        record = pretrain_video.saved_record(args.video_pretrained) or {}  # none for a run saved before the record
        if args.video_unweighted_steps > 0:  # a two-part stage: the folder of its second part
            if record and not record.get("arguments", {}).get("checkpoint"):
                raise SystemExit(
                    f"{args.video_pretrained} is a one-part video stage (trained from a new encoder for {record['steps']} steps): "
                    f"pass --video_unweighted_steps 0 --video_pretrain_steps {record['steps']} to reuse it"
                )
            run = pretrain_video.reusable_run(args.video_pretrained, args.video_unweighted_steps, "--video_unweighted_steps")
        else:
            run = pretrain_video.reusable_run(args.video_pretrained, args.video_pretrain_steps)
        check_shape_weight(run, record, args.video_shape_weight, second_part=args.video_unweighted_steps > 0)
        check_count_settings(run, record, args.video_count_weight, args.video_count_target)
        saved_stem = json.loads((run / "config.json").read_text()).get("video_stem", "patchify")
        if saved_stem != args.video_stem:
            raise SystemExit(
                f"{run} was trained with video_stem={saved_stem}, and this recipe asks for {args.video_stem}: "
                f"pass --video_stem {saved_stem} to reuse it, or leave out --video_pretrained for a new video stage"
            )
        return run
    if args.video_pretrain_steps <= 0:
        return None
    common = {"batch_size": args.batch_size, "seed": args.seed}
    first = out.with_name(out.name + "_weighted") if args.video_unweighted_steps > 0 else out
    first_counts = args.video_count_weight if first == out else 0.0
    pretrain_video.main(video_pretrain_arguments(
        first, steps=args.video_pretrain_steps, video_stem=args.video_stem, shape_weight=args.video_shape_weight,
        count_weight=first_counts, count_target=args.video_count_target, **common,
    ))  # fmt: skip
    if first != out:
        pretrain_video.main(video_pretrain_arguments(
            out, steps=args.video_unweighted_steps, start=first, count_weight=args.video_count_weight,
            count_target=args.video_count_target, **common,
        ))  # fmt: skip
    return out


def check_shape_weight(run: Path, record: dict[str, Any], video_shape_weight: float, second_part: bool) -> None:
    """A SystemExit when the reused stage in `run` (its saved `record`) weighted the shapes otherwise than
    the recipe's part saved there: 1 for the second part of a two-part stage, else `--video_shape_weight`
    (recipe.json would record a stage that was not run). A record without the field is from before it: 1."""
    saved = record.get("arguments", {}).get("shape_weight", 1.0)
    expected = 1.0 if second_part else video_shape_weight
    if saved == expected:
        return
    if second_part:
        raise SystemExit(
            f"{run} was trained with --shape_weight {saved:g}, and the second part of this recipe's video stage is unweighted: "
            "leave out --video_pretrained for a new video stage"
        )
    raise SystemExit(
        f"{run} was trained with --shape_weight {saved:g}, and this recipe asks for --video_shape_weight {expected:g}: "
        f"pass --video_shape_weight {saved:g} to reuse it, or leave out --video_pretrained for a new video stage"
    )


def check_count_settings(run: Path, record: dict[str, Any], count_weight: float, count_target: str) -> None:
    """A SystemExit when the reused stage in `run` (its saved `record`) was trained with another
    `--count_weight` than the recipe's `--video_count_weight`, or (with counts) another `--count_target`
    than its `--video_count_target` (recipe.json would record a stage that was not run)."""
    arguments = record.get("arguments", {})
    saved = arguments.get("count_weight", 0.0)
    if saved != count_weight:
        raise SystemExit(
            f"{run} was trained with --count_weight {saved:g}, and this recipe asks for --video_count_weight {count_weight:g}: "
            f"pass --video_count_weight {saved:g} to reuse it, or leave out --video_pretrained for a new video stage"
        )
    saved_target = arguments.get("count_target", "totals")  # a stage recorded before the option counted totals
    if count_weight > 0 and saved_target != count_target:
        raise SystemExit(
            f"{run} was trained with --count_target {saved_target}, and this recipe asks for --video_count_target {count_target}: "
            f"pass --video_count_target {saved_target} to reuse it, or leave out --video_pretrained for a new video stage"
        )


def pretrain(args: argparse.Namespace, data: Path, out: Path, start: Path | None) -> Path:
    pretraining.main([
        *pretrain_arguments(
            data, out, objective="clover", learning_rate=args.pretrain_lr, epochs=args.pretrain_epochs,
            batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed, start=start, clip_cache_gb=args.clip_cache_gb,
        ),
        "--video_lr_multiplier", str(args.pretrain_video_lr_multiplier),
        "--checkpointing_steps", "100",
    ])  # fmt: skip
    return out


def video_token_spread(checkpoint: Path, clips: list[Path]) -> float:
    """Mean standard deviation, across clips, of the video encoder's output tokens.

    A pre-training run that collapsed the video encoder (every clip encoded alike: the contrastive
    terms stuck at ln(batch)) shows as a spread near 0; a random encoder has about 0.3.
    """
    import torch

    from clover.modeling_clover import CloverModel
    from clover.processing_clover import CloverProcessor

    model, processor = CloverModel.from_pretrained(checkpoint).eval(), CloverProcessor.from_pretrained(checkpoint)
    pixel_values = torch.stack([processor.preprocess_frames(read_frames(clip, processor.num_frames)) for clip in clips])
    with torch.inference_mode():
        tokens = model.encode_video(pixel_values).tokens  # (N, t, h, w, C)
    return float(tokens.std(0).mean())


def task_arguments(data: Path, start: Path | None, tasks: list[tuple[str, str, str]] = TASKS) -> list[str]:
    """train_qa's arguments for the question sets `tasks` (default: all five) of the benchmark in
    `data`, starting from `start` (a checkpoint) or from a new clover-tiny."""
    start_args = ["--model", str(start)] if start is not None else ["--preset", "clover-tiny"]
    return [
        *start_args,
        "--task", *[task for task, _, _ in tasks],
        "--annotations", *[str(data / folder) for _, folder, _ in tasks],
        "--videos", *[str(data / videos) for _, _, videos in tasks],
    ]


def run_arguments(args: argparse.Namespace, out: Path, learning_rate: float) -> list[str]:
    """train_qa's arguments that both fine-tuning runs share: output, rates, task shares, batches, seed."""
    return [
        "--output_dir", str(out),
        "--learning_rate", str(learning_rate),
        "--head_lr_multiplier", str(args.head_lr_multiplier),
        "--qa_pooling", args.qa_pooling,
        "--grounding_weight", str(args.grounding_weight),
        "--grounding_min_objects", str(args.grounding_min_objects),
        "--grounding_target_share", str(args.grounding_target_share),
        *(["--grounding_target_share_several", str(args.grounding_target_share_several)] if args.grounding_target_share_several is not None else []),
        "--grounding_time", args.grounding_time,
        "--task_sampling_alpha", str(args.task_sampling_alpha),
        "--per_device_train_batch_size", str(args.batch_size),
        "--num_workers", str(args.num_workers),
        "--clip_cache_gb", str(args.clip_cache_gb),
        "--seed", str(args.seed),
    ]  # fmt: skip


def finetune_open_ended_first(args: argparse.Namespace, data: Path, start: Path | None, out: Path) -> Path:
    """`--open_ended_first_steps` steps on FrameQA and the MSVD-style questions alone, no validation:
    in the five-task mixture location is learnt slowly (docs/results.md). Their answer vocabulary is
    the five tasks' (only these two are open-ended), so the open head carries over; the other heads
    start in the next stage."""
    open_tasks = [task for task in TASKS if TASK_SPECS[task[0]].kind == "open"]
    train_qa.main([
        *task_arguments(data, start, open_tasks),
        *run_arguments(args, out, args.open_ended_first_lr),
        "--max_train_steps", str(args.open_ended_first_steps),
        "--skip_val", "--skip_test",
    ])  # fmt: skip
    return out


def finetune(args: argparse.Namespace, data: Path, start: Path | None, out: Path) -> dict[str, Any]:
    """The five-task fine-tuning from `start` (after the open-ended phase, with `--open_ended_first_steps`)."""
    if args.open_ended_first_steps > 0:
        start = finetune_open_ended_first(args, data, start, out.with_name(out.name + "_open_ended"))
    return train_qa.main([
        *task_arguments(data, start),
        *run_arguments(args, out, args.finetune_lr),
        "--num_train_epochs", str(args.finetune_epochs),
        *(["--max_train_steps", str(args.finetune_steps)] if args.finetune_steps else []),
        "--checkpointing_steps", "200",
    ])  # fmt: skip


def fit_search_heads(data: Path, model: Path) -> dict[str, Any]:
    """The app's search uses the retrieval heads, which the fine-tuning does not train while it moves
    the encoders under them: they are fitted again to the frozen encoders on the benchmark's training
    captions (`finetune.fit_retrieval_heads`; the answers do not change), and retrieval on the val
    captions measured before and after."""
    webvid = data / "webvid"
    return fit_retrieval_heads.main([
        "--model", str(model), "--train_csv", str(webvid / "results.csv"), "--video_root", str(webvid / "videos"),
        "--val_csv", str(webvid / "results_val.csv"),
    ])  # fmt: skip


def export_checkpoint(run_dir: Path, output: Path, recipe: dict[str, Any]) -> None:
    """Copy the fine-tuned model, its processor, model card and metrics; record the recipe."""
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    for item in run_dir.iterdir():
        if item.is_file() and item.name not in RUN_ONLY_FILES:
            shutil.copy2(item, output / item.name)
    (output / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    card = output / "README.md"
    title, _, rest = card.read_text(encoding="utf-8").partition("\n# ")
    heading, _, body = rest.partition("\n")
    card.write_text(f"{title}\n# Clover VideoQA demo checkpoint\n\n{demo_summary(output)}\n\n## {heading}\n{body}", encoding="utf-8")


def demo_summary(checkpoint: Path) -> str:
    """The card's first paragraph (the app shows it): what the model knows and how well it does."""
    metrics = json.loads((checkpoint / "metrics.json").read_text())
    scores = ", ".join(
        f"{task} MSE {m['mse']:.2f}" if "mse" in m else f"{task} {100 * m['accuracy']:.0f}%" for task, m in metrics["test"].items()
    )
    search = metrics.get("retrieval_heads", {}).get("after", {}).get("text_to_video")
    search_note = (
        f" Text-to-video search on its {search['num_pairs']} held-out captions: R@1 {100 * search['R@1']:.1f}%, "
        f"R@10 {100 * search['R@10']:.1f}%." if search else ""
    )
    return (
        "clover-tiny trained by `python -m finetune.make_demo` on 2 CPU cores, on synthetic clips of moving "
        "coloured shapes only: it knows nothing of real videos. Test accuracy on its own benchmark: "
        f"{scores}.{search_note} See docs/results.md."
    )


def pick_examples(data: Path, checkpoint: Path, examples_dir: Path, count: int) -> list[dict[str, Any]]:
    """Test-split questions the demo model answers correctly, one or two per task, as MP4 and GIF clips.

    The gallery shows what the model can do; the full test accuracy is in the model card and in
    docs/results.md. Clips are copied (GIF) or re-encoded (MP4, from the GIF's frames) into
    `examples/clips/`, and each question is checked on the clip as written, since a re-encoded clip's
    frames differ a little from the source's.
    """
    engine = CloverInference.from_pretrained(checkpoint)
    clips_dir = examples_dir / "clips"
    if clips_dir.exists():
        shutil.rmtree(clips_dir)
    clips_dir.mkdir(parents=True)
    chosen: list[dict[str, Any]] = []
    per_task = max(1, count // len(TASKS))
    for index, (task, folder, videos) in enumerate(TASKS):
        found = 0
        for record in load_annotations(task, data / folder, "test"):
            if found == per_task + (1 if index < count % len(TASKS) else 0):
                break
            source = data / videos / record["video"]
            as_mp4 = len(chosen) % 2 == 0
            target = clips_dir / (Path(record["video"]).stem + (".mp4" if as_mp4 else source.suffix))
            example = _example(record, target.relative_to(examples_dir))
            if not target.exists():
                _copy_clip(source, target)
            if not _answers_correctly(engine, target, example):  # the clip as the gallery shows it: MP4 re-encodes
                continue
            chosen.append(example)
            found += 1
    used = {examples_dir / example["video"] for example in chosen}
    for clip in clips_dir.iterdir():
        if clip not in used:
            clip.unlink()
    (examples_dir / "examples.json").write_text(json.dumps(chosen, indent=2) + "\n")
    return chosen


def _copy_clip(source: Path, target: Path) -> None:
    """GIFs and AVIs are copied; MP4s are re-encoded from the source's frames."""
    if target.suffix == ".mp4":
        write_video(target, read_frames(source, num_frames=_frame_count(source)), fps=8)
    else:
        shutil.copy2(source, target)


def _example(record: dict[str, Any], video: Path) -> dict[str, Any]:
    example = {"video": str(video), "question": record["question"]}
    if record.get("candidates"):
        example["candidates"] = record["candidates"]
        example["answer"] = record["candidates"][record["answer"]]
    else:
        example["answer"] = str(record["answer"])
    return example


def _answers_correctly(engine: Any, clip_path: Path, example: dict[str, Any]) -> bool:
    clip, _ = engine.clip_features(clip_path)
    if "candidates" in example:
        prediction = engine.choose(clip, example["question"], example["candidates"])
    else:
        prediction = engine.answer(clip, example["question"])
    return prediction.answers[0][0] == example["answer"]


def _frame_count(path: Path) -> int:
    return probe_video(path).num_frames or 32


@contextmanager
def stage_timer(minutes: dict[str, float], stage: str) -> Iterator[None]:
    """Record the stage's wall-clock minutes in `minutes[stage]` (recipe.json keeps them: machines of
    the same core count differ 2.5 times in speed, docs/results.md, so the stage times say which)."""
    began = time.time()
    yield
    minutes[stage] = round((time.time() - began) / 60, 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    started = time.time()
    data, work = Path(args.data), Path(args.work_dir)
    stage_minutes: dict[str, float] = {}
    with stage_timer(stage_minutes, "benchmark"):
        ensure_benchmark(data, args.benchmark_seed)
    with stage_timer(stage_minutes, "video pre-training"):
        video = pretrain_video_encoder(args, work / "video")
    start, spread = video, None
    if not args.skip_pretraining:
        with stage_timer(stage_minutes, "caption pre-training"):
            start = pretrain(args, data, work / "pretrain", video)
            spread = video_token_spread(start, sorted((data / "tgif/gifs").glob("*.gif"))[:16])
        if not spread >= args.min_video_spread:  # NaN too
            logger.warning(
                "pre-training collapsed the video encoder (token spread %.3f < %.2f): fine-tuning from %s",
                spread, args.min_video_spread, video or "scratch",
            )  # fmt: skip
            start = video
    with stage_timer(stage_minutes, "fine-tuning and evaluation"):
        metrics = finetune(args, data, start, work / "finetune")
    with stage_timer(stage_minutes, "search heads"):
        search = fit_search_heads(data, work / "finetune")
    recipe = {
        "command": "python -m finetune.make_demo",
        "arguments": vars(args),
        "pretrained_video_token_spread": spread,
        "started_from": str(start) if start else "clover-tiny, random initialisation",
        "minutes": round((time.time() - started) / 60, 1),
        "stage_minutes": stage_minutes,
        "search": search,
    }
    export_checkpoint(work / "finetune", Path(args.output), recipe)
    examples = pick_examples(data, Path(args.output), Path(args.examples_dir), args.num_examples)
    logger.info("demo checkpoint in %s after %.1f minutes; %d examples", args.output, recipe["minutes"], len(examples))
    return {"metrics": metrics, "examples": examples, "minutes": recipe["minutes"]}


if __name__ == "__main__":
    main()
