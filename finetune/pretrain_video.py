"""Supervised pre-training of the video encoder on the synthetic benchmark's scenes: our Kinetics.

    python -m finetune.pretrain_video --target scene --output_dir runs/video --steps 3000   # 11-29 minutes on 2 CPU cores, by machine (docs/results.md)
    python -m finetune.pretrain_video --target colors --steps 200                   # no --output_dir: a probe

The paper starts Clover pre-training from a Video Swin trained to classify the actions of Kinetics-400;
no such weights exist for clover-tiny, and its encoder learns motion from the QA questions far too
slowly (docs/results.md: colours in 100 steps, motion in thousands, and a multiple-choice head from a
random encoder at chance). This is the analogue on our own data: clover-tiny's Video Swin with one
linear layer on its max-pooled output tokens, trained to say which of the benchmark's nine repeatable
actions (`--target actions`; stay still, in most clips, is left out), seven colours (`--target
colors`) or all of those and the six shapes (`--target scene`, the demo's) occur anywhere in a clip
(multi-label, one logistic output per label). The clips are fresh
scenes of the benchmark's distribution rendered in memory at the model's frame size and count
(`--train_clips` for training, `--val_clips` others for validation; none is a benchmark clip, and no
file is written). Every `--eval_every` steps one JSON line gives the val score per label as balanced
accuracy ((true-positive rate + true-negative rate) / 2, so 50 is chance whatever the label's
frequency), their mean, and the share of val clips whose whole label set is right.

`--count_weight W` (W > 0) adds a second output: how many times the clip's objects blink and how many
times they jump, in all (the repetitions the Count questions ask about), regressed by one linear layer
on the mean of the output tokens, its squared error weighted W against the labels' loss. The mean,
not the max: a mean of per-token contributions can only count if each token marks what happens in its
own stretch of time, which is what a question's attention pooling reads when it counts. Its val
figures are the squared error and the share rounded to the true count, per action.
`--count_target bound` regresses instead, for each colour and each shape, how many times the objects
of that colour (shape) do each of the nine repeatable actions: the count bound to the object, which
is what "how many times does the red object blink ?" and "what does the circle do 3 times ?" ask. Its
val figures add, per naming, the share of the counts that are not 0 rounded right, and of those that
are 0 rounded to 0 (`bound_counts`); `counts` there are the clip's totals summed from it.

`--slot_weight W` (W > 0) adds a third output, read off each time slot of the token grid (the
maximum over its tokens): for each colour and each shape, which of the nine repeatable actions the
objects of that colour (shape) do during the slot's segments (multi-label, one logistic output per
naming and action), its loss weighted W. The labels above say what happens somewhere in the clip, and
`--count_target bound` how often each object does it; this says *when*: the Action and Transition
questions ask about one object's step ("the one it does 3 times", "after grow"), and the question's
attention pooling can only find that step if each slot's tokens say which object does what then. Its
val figure is the balanced accuracy over the slots, per naming (`slots`).

`--output_dir` saves the Clover model (the trained video encoder, the rest as initialised) with its
processor, for `finetune/pretrain.py --model` or `finetune/train_qa.py --model`, and its arguments,
step count and last evaluation in `video_pretraining.json`. `--checkpoint` starts
from a saved Clover model, and `--freeze` trains the linear layer alone, which measures what that
encoder already knows (`benchmarks/video_probe.py` is this module as a measuring tool).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from clover import CloverConfig, CloverProcessor
from clover.configuration_clover import PRESETS
from clover.data import synthetic
from clover.modeling_clover import CloverModel
from clover.tokenization import tiny_tokenizer
from finetune.training import parse_config_overrides

# What a saved run records of its training, beside the model.
RECORD_FILE = "video_pretraining.json"
logger = logging.getLogger(__name__)

TARGETS = {
    "actions": synthetic.REPEATED_ACTIONS,
    "colors": tuple(synthetic.COLORS),
    "shapes": synthetic.SHAPES,
    # Everything a clip shows: actions, colours and shapes (the demo's setting: actions alone teach the
    # encoder to drop colour, and the FrameQA colour questions fell from 61 to 16 %: docs/results.md).
    "scene": (*synthetic.REPEATED_ACTIONS, *synthetic.COLORS, *synthetic.SHAPES),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="actions")
    parser.add_argument("--pool", choices=("max", "mean"), default="max", help="how the probe pools the encoder's tokens")
    parser.add_argument("--checkpoint", help="start the encoder from this Clover model directory (default: random clover-tiny)")
    parser.add_argument("--config_overrides", help='with a random encoder: clover-tiny fields to change, e.g. "patch_size=[2,4,4]"')
    parser.add_argument("--freeze", action="store_true", help="train the linear layer only")
    parser.add_argument("--train_clips", type=int, default=8000)
    parser.add_argument("--val_clips", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--shape_weight", type=float, default=1.0,
                        help="weight of each shape label's loss term against the others' 1, the weights then scaled to a mean "
                             "of 1 (--target scene: 4 brought the shapes from 60 to 87 %% in 3,000 steps, docs/results.md)")
    parser.add_argument("--count_weight", type=float, default=0.0,
                        help="also regress how many times the objects blink and jump, on the mean-pooled tokens, "
                             "this loss weighted so against the labels' (0: no count output)")
    parser.add_argument("--count_target", choices=COUNT_TARGETS, default="totals",
                        help="with --count_weight, what the count output regresses: the blink and jump repetitions of the "
                             "whole clip (totals), or every repeatable action's repetitions per colour and per shape (bound)")
    parser.add_argument("--slot_weight", type=float, default=0.0,
                        help="also say, per time slot, which actions the objects of each colour and each shape do in it, "
                             "this loss weighted so against the labels' (0: no per-slot output)")
    parser.add_argument("--eval_every", type=int, default=100)
    parser.add_argument("--time_limit", type=float, help="stop (and save) at the first evaluation after this many seconds of training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes rendering the clips")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output_dir", "--save", dest="output_dir", help="save the trained Clover model and its processor here")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# Clips and labels
# --------------------------------------------------------------------------------------------------


def scene_labels(scene: synthetic.Scene, target: str) -> list[int]:
    """1 for each label of `target` that occurs in the scene: an action any object does, a colour or
    a shape any object has (the three sets of names are disjoint)."""
    present = {step.action for obj in scene.objects for step in obj.core_steps()}
    present |= {obj.color for obj in scene.objects} | {obj.shape for obj in scene.objects}
    return [int(label in present) for label in TARGETS[target]]


def scene_counts(scene: synthetic.Scene) -> list[int]:
    """How many times the scene's objects do each counted action (blink, jump), summed over objects:
    the repetitions a Count question asks about, for the whole clip."""
    return [sum(obj.reps_of(action) for obj in scene.objects) for action in synthetic.COUNTED_ACTIONS]


# The objects a bound count is kept for: each colour, then each shape (the two sets of names are disjoint).
COUNT_NAMES = (*synthetic.COLORS, *synthetic.SHAPES)


def bound_counts(scene: synthetic.Scene) -> list[int]:
    """For each colour, then each shape (`COUNT_NAMES`), and each repeatable action (`REPEATED_ACTIONS`,
    the inner order): how many times the objects of that colour (or shape) do the action. This is what
    "how many times does the red object blink ?" and "what does the circle do 3 times ?" ask: the count
    bound to the object, where `scene_counts` sums over objects."""
    return [
        sum(obj.reps_of(action) for obj in scene.objects if name in (obj.color, obj.shape))
        for name in COUNT_NAMES
        for action in synthetic.REPEATED_ACTIONS
    ]


def bound_totals(counts: torch.Tensor) -> torch.Tensor:
    """Bound counts (N, names x actions) -> the clip's blink and jump totals (N, 2), summed over the
    colours (every object has exactly one colour), comparable with `scene_counts`."""
    per_color = counts.unflatten(1, (len(COUNT_NAMES), len(synthetic.REPEATED_ACTIONS)))[:, : len(synthetic.COLORS)]
    columns = [synthetic.REPEATED_ACTIONS.index(action) for action in synthetic.COUNTED_ACTIONS]
    return per_color[:, :, columns].sum(1)  # (N, 2)


COUNT_TARGETS = {"totals": scene_counts, "bound": bound_counts}
COUNT_SIZES = {"totals": len(synthetic.COUNTED_ACTIONS), "bound": len(COUNT_NAMES) * len(synthetic.REPEATED_ACTIONS)}


def count_loss(predicted: torch.Tensor, counts: torch.Tensor, count_target: str) -> torch.Tensor:
    """The count output's squared error. Totals: the mean over blink and jump. Bound: summed over the
    colours and over the shapes, then averaged over the actions and the two namings; most bound counts
    are 0 (an absent colour), and a plain mean would make the loss, and so its weight, about 13 times
    smaller than the totals' for the same mistakes about one object."""
    if count_target == "totals":
        return F.mse_loss(predicted, counts)
    squared = (predicted - counts) ** 2  # (B, names x actions)
    return squared.sum(1).mean() / (2 * len(synthetic.REPEATED_ACTIONS))


def segment_labels(scene: synthetic.Scene) -> list[list[int]]:
    """Per segment of the clip (`synthetic.NUM_SEGMENTS`), for each colour, then each shape
    (`COUNT_NAMES`), and each repeatable action (the inner order): 1 if an object of that colour
    (shape) does the action during the segment. `slot_targets` merges segments into the encoder's
    time slots."""
    labels = [[0] * (len(COUNT_NAMES) * len(synthetic.REPEATED_ACTIONS)) for _ in range(synthetic.NUM_SEGMENTS)]
    for obj in scene.objects:
        for step in obj.core_steps():
            action = synthetic.REPEATED_ACTIONS.index(step.action)
            for name in (obj.color, obj.shape):
                column = COUNT_NAMES.index(name) * len(synthetic.REPEATED_ACTIONS) + action
                for segment in synthetic.step_segments([step]):
                    labels[segment][column] = 1
    return labels


def slot_targets(segments: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Per-segment labels (B, segments, L) -> per-slot labels (B, num_slots, L): a slot that spans
    several segments has the labels of any of them; a segment spread over several slots gives each
    its labels."""
    per_clip = segments.shape[1]
    if num_slots >= per_clip:
        return segments.repeat_interleave(num_slots // per_clip, dim=1)
    return segments.unflatten(1, (num_slots, per_clip // num_slots)).amax(dim=2)


def _render(job: tuple[str, int, str, int, int, str]) -> tuple[torch.Tensor, list[int], list[int], list[list[int]]]:
    name, index, target, size, num_frames, count_target = job
    scene = synthetic.sample_scene(random.Random(name), name, index, "probe")
    frames = torch.from_numpy(synthetic.render_clip(scene, size, num_frames))
    return frames, scene_labels(scene, target), COUNT_TARGETS[count_target](scene), segment_labels(scene)


def render_set(
    seed: int, split: str, count: int, target: str, workers: int, size: int = 112, num_frames: int = 8,
    count_target: str = "totals",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """`count` scenes of the benchmark's distribution: frames (N, T, S, S, 3) uint8, labels (N, L),
    counts: (N, 2) the repetitions of blink and jump (`scene_counts`), or with `count_target="bound"`
    (N, 13 x 9) those of every action per colour and shape (`bound_counts`), and the per-segment
    labels (N, 8, 13 x 9) uint8 (`segment_labels`)."""
    jobs = [(f"{seed}:probe:{split}:{index}", index, target, size, num_frames, count_target) for index in range(count)]
    if workers > 1:  # spawned, not forked: a worker forked from a process with torch's threads can hang
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            rendered = pool.map(_render, jobs, chunksize=64)
    else:
        rendered = [_render(job) for job in jobs]
    clips, labels, counts, segments = zip(*rendered)
    return (
        torch.stack(clips), torch.tensor(labels, dtype=torch.float), torch.tensor(counts, dtype=torch.float),
        torch.tensor(segments, dtype=torch.uint8),
    )


# --------------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------------


class VideoProbe(nn.Module):
    """A Clover video encoder and one linear layer on its max- or mean-pooled output tokens; frames
    are normalised by the model's own processor, as for question answering. With `num_counts` > 0, a
    second linear layer on the mean of the tokens regresses that many repetition counts; with
    `slot_labels`, a third one on each time slot's maximum gives the per-slot bound labels."""

    def __init__(
        self, clover: CloverModel, processor: CloverProcessor, num_labels: int, pool: str, num_counts: int = 0, slot_labels: bool = False
    ) -> None:  # fmt: skip
        super().__init__()
        self.clover, self.processor, self.pool = clover, processor, pool
        self.classifier = nn.Linear(clover.config.video_width, num_labels)
        self.counter = nn.Linear(clover.config.video_width, num_counts) if num_counts > 0 else None
        num_slot_labels = len(COUNT_NAMES) * len(synthetic.REPEATED_ACTIONS)
        self.slot_classifier = nn.Linear(clover.config.video_width, num_slot_labels) if slot_labels else None

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """frames (B, T, S, S, 3) uint8 -> logits (B, L), with the count head counts (B, num_counts), with
        the slot head per-slot logits (B, t, 13 x 9)."""
        pixels = torch.stack([self.processor.preprocess_frames(clip) for clip in frames])  # (B, T, 3, S, S)
        pixels = pixels.to(self.classifier.weight.device)
        grid = self.clover.encode_video(pixels).tokens  # (B, t, h, w, C)
        tokens = grid.flatten(1, 3)  # (B, t*h*w, C)
        pooled = tokens.amax(dim=1) if self.pool == "max" else tokens.mean(dim=1)  # (B, C)
        counts = self.counter(tokens.mean(dim=1)) if self.counter is not None else None  # (B, num_counts)
        slots = self.slot_classifier(grid.amax(dim=(2, 3))) if self.slot_classifier is not None else None  # (B, t, 13 x 9)
        return self.classifier(pooled), counts, slots


def balanced_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per label, in %: the mean of the true-positive and true-negative rates (50 = chance). A label that
    is always (or never) present counts only the rate it has."""
    positive, negative = labels.bool(), ~labels.bool()
    tpr = (predicted & positive).sum(0) / positive.sum(0).clamp(min=1)
    tnr = (~predicted & negative).sum(0) / negative.sum(0).clamp(min=1)
    both = (positive.sum(0) > 0) & (negative.sum(0) > 0)
    return 100 * torch.where(both, (tpr + tnr) / 2, torch.where(positive.sum(0) > 0, tpr, tnr))


def count_scores(predicted: torch.Tensor, counts: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per counted action: the squared error of the predicted counts (N, 2) against the true ones, and
    the share (%) that rounds to the true count."""
    errors = ((predicted - counts) ** 2).mean(0)  # (2,)
    exact = 100 * (predicted.round() == counts).float().mean(0)  # (2,)
    return {
        action: {"mse": round(float(error), 3), "exact": round(float(share), 1)}
        for action, error, share in zip(synthetic.COUNTED_ACTIONS, errors, exact)
    }


def bound_scores(predicted: torch.Tensor, counts: torch.Tensor) -> dict[str, dict[str, float]]:
    """Bound counts (N, names x actions), per naming (colour, shape): the share (%) of the counts
    that are not 0 (an object of that colour or shape does the action) rounded right, and of those
    that are 0 rounded to 0."""
    right = predicted.round() == counts  # (N, names x actions)
    naming = torch.tensor([name in synthetic.COLORS for name in COUNT_NAMES]).repeat_interleave(len(synthetic.REPEATED_ACTIONS))
    scores = {}
    for key, columns in (("color", naming), ("shape", ~naming)):
        done, cells = counts[:, columns] > 0, right[:, columns]
        scores[key] = {"exact_done": round(100 * float(cells[done].float().mean()), 1),
                       "exact_zero": round(100 * float(cells[~done].float().mean()), 1)}  # fmt: skip
    return scores


def slot_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Per-slot bound labels, logits and labels (N, t, names x actions): the mean balanced accuracy
    (%) over each (name, action) label, every slot of every clip one case, per naming (colour, shape)."""
    per_label = balanced_accuracy(logits.flatten(0, 1) > 0, labels.flatten(0, 1))  # (names x actions,)
    per_name = per_label.unflatten(0, (len(COUNT_NAMES), len(synthetic.REPEATED_ACTIONS)))  # (names, actions)
    colors = len(synthetic.COLORS)
    return {"color": round(float(per_name[:colors].mean()), 1), "shape": round(float(per_name[colors:].mean()), 1)}


@torch.no_grad()
def evaluate(
    probe: VideoProbe, frames: torch.Tensor, labels: torch.Tensor, names: Sequence[str], counts: torch.Tensor | None = None,
    count_target: str = "totals", segments: torch.Tensor | None = None,
) -> dict[str, Any]:  # fmt: skip
    probe.eval()
    outputs = [probe(frames[start : start + 64]) for start in range(0, len(frames), 64)]
    probe.train()
    predicted = torch.cat([logits.cpu() for logits, _, _ in outputs]) > 0
    per_label = balanced_accuracy(predicted, labels)
    scores = {
        "balanced_accuracy": round(float(per_label.mean()), 1),
        "exact_set": round(100 * float((predicted == labels.bool()).all(1).float().mean()), 1),
        "per_label": {name: round(float(value), 1) for name, value in zip(names, per_label)},
    }
    if probe.counter is not None and counts is not None:
        counted = torch.cat([counted.cpu() for _, counted, _ in outputs])
        if count_target == "bound":  # the clip's totals too, to compare with the totals' output
            scores["counts"] = count_scores(bound_totals(counted), bound_totals(counts))
            scores["bound_counts"] = bound_scores(counted, counts)
        else:
            scores["counts"] = count_scores(counted, counts)
    if probe.slot_classifier is not None and segments is not None:
        slot_logits = torch.cat([slots.cpu() for _, _, slots in outputs])  # (N, t, names x actions)
        scores["slots"] = slot_scores(slot_logits, slot_targets(segments.float(), slot_logits.shape[1]))
    return scores


def label_weights(names: Sequence[str], shape_weight: float) -> torch.Tensor:
    """(L,) weights of the labels' loss terms: `shape_weight` for the six shapes, 1 for the others, then
    scaled to a mean of 1, so that the loss keeps its scale and a learning rate its meaning.

    Why: in `--target scene` the shapes, learnt slowest, stay near chance while the actions and colours
    fill the encoder; weighted 4 times, they are learnt (docs/results.md, "Where the demo's answers go wrong").
    """
    weights = torch.tensor([shape_weight if name in synthetic.SHAPES else 1.0 for name in names])
    return weights * len(names) / weights.sum()


def build_probe(args: argparse.Namespace) -> VideoProbe:
    torch.manual_seed(args.seed)
    if args.checkpoint:
        clover, processor = CloverModel.from_pretrained(args.checkpoint), CloverProcessor.from_pretrained(args.checkpoint)
    else:
        config = CloverConfig.from_preset("clover-tiny", **parse_config_overrides(args.config_overrides))
        clover, processor = CloverModel(config), CloverProcessor.from_config(config, tiny_tokenizer())
    num_counts = COUNT_SIZES[args.count_target] if args.count_weight > 0 else 0
    probe = VideoProbe(clover, processor, len(TARGETS[args.target]), args.pool, num_counts, slot_labels=args.slot_weight > 0)
    if args.freeze:
        probe.clover.requires_grad_(False)
    return probe.to(args.device)


def train(args: argparse.Namespace) -> list[dict[str, Any]]:
    names = TARGETS[args.target]
    if args.shape_weight <= 0 or (args.shape_weight != 1 and not set(names) & set(synthetic.SHAPES)):
        raise SystemExit(f"--shape_weight must be positive and needs a target with shape labels (scene or shapes); "
                         f"got {args.shape_weight} with --target {args.target}")
    if args.count_weight < 0:
        raise SystemExit(f"--count_weight must be 0 (no count output) or positive, got {args.count_weight}")
    if args.slot_weight < 0:
        raise SystemExit(f"--slot_weight must be 0 (no per-slot output) or positive, got {args.slot_weight}")
    weights = label_weights(names, args.shape_weight).to(args.device)
    probe = build_probe(args)
    began, shape = time.time(), (probe.processor.image_size, probe.processor.num_frames)
    render = {"target": args.target, "workers": args.workers, "size": shape[0], "num_frames": shape[1], "count_target": args.count_target}
    train_frames, train_labels, train_counts, train_segments = render_set(args.seed, "train", args.train_clips, **render)
    val_frames, val_labels, val_counts, val_segments = render_set(args.seed, "val", args.val_clips, **render)
    rendered = round(time.time() - began, 1)
    optimizer = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=args.learning_rate)
    generator = torch.Generator().manual_seed(args.seed)
    curve, losses, began = [], [], time.time()
    for step in tqdm(range(1, args.steps + 1), desc="training"):
        index = torch.randint(0, len(train_frames), (args.batch_size,), generator=generator)
        logits, counts, slots = probe(train_frames[index])  # (B, L), (B, num_counts) or None, (B, t, 13 x 9) or None
        loss = F.binary_cross_entropy_with_logits(logits, train_labels[index].to(args.device), weight=weights)  # mean of w * term
        if counts is not None:
            loss = loss + args.count_weight * count_loss(counts, train_counts[index].to(args.device), args.count_target)
        if slots is not None:
            targets = slot_targets(train_segments[index].float(), slots.shape[1]).to(args.device)  # (B, t, 13 x 9)
            loss = loss + args.slot_weight * F.binary_cross_entropy_with_logits(slots, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            point = {"step": step, "seconds": round(time.time() - began), "render_seconds": rendered,
                     "train_loss": round(sum(losses[-50:]) / len(losses[-50:]), 3),
                     "val": evaluate(probe, val_frames, val_labels, names, val_counts, args.count_target, val_segments)}  # fmt: skip
            curve.append(point)
            tqdm.write(json.dumps(point))
            sys.stdout.flush()
            if args.time_limit is not None and time.time() - began > args.time_limit:
                break
    if args.output_dir:
        probe.clover.save_pretrained(args.output_dir)
        probe.processor.save_pretrained(args.output_dir)
        record = {"arguments": vars(args), "steps": curve[-1]["step"] if curve else 0, "last_evaluation": curve[-1] if curve else None}
        (Path(args.output_dir) / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return curve


def saved_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The record a run saved in `run_dir` (its `video_pretraining.json`: arguments, steps, last
    evaluation), or None for a run saved before the record existed."""
    record = Path(run_dir) / RECORD_FILE
    return json.loads(record.read_text()) if record.is_file() else None


def trained_steps(run_dir: str | Path) -> int | None:
    """How many steps the run saved in `run_dir` trained for, or None without a record."""
    record = saved_record(run_dir)
    return record["steps"] if record else None


def preset_differences(run_dir: str | Path) -> list[str]:
    """The clover-tiny preset's settings that the model saved in `run_dir` does not have, one
    "field: saved value (preset: value)" each; empty when it has them all. The runs that start from a
    saved model keep its config, so a stage saved before the preset changed carries the old settings."""
    saved = json.loads((Path(run_dir) / "config.json").read_text())
    pairs = [(key, saved.get(key), value) for key, value in PRESETS["clover-tiny"].items() if key != "text_config"]
    text, saved_text = PRESETS["clover-tiny"].get("text_config", {}), saved.get("text_config", {})
    pairs += [(f"text_config.{key}", saved_text.get(key), value) for key, value in text.items()]
    return [f"{name}: {old!r} (preset: {new!r})" for name, old, new in pairs if old != new]


def reusable_run(run_dir: str | Path, steps: int, flag: str = "--video_pretrain_steps") -> Path:
    """`run_dir` when it holds a saved run that trained for `steps` (or has no record of its steps, as
    runs saved before the record); otherwise a SystemExit that says what to pass (`flag`, the caller's
    flag that gave `steps`). Callers that reuse a run (make_demo, the report) record `steps` as the
    stage's length, so the two must agree. A run
    saved with other clover-tiny settings than the preset's (an older preset, or --config_overrides)
    is reused with a warning that names them: what starts from it keeps them."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise SystemExit(f"{run_dir}: no saved model there (config.json); give the --output_dir of a finetune.pretrain_video run")
    saved = trained_steps(run_dir)
    if saved is not None and saved != steps:
        raise SystemExit(
            f"{run_dir} was trained for {saved} steps, not {flag} {steps}: "
            f"pass {flag} {saved} to use it (or another folder to train a new one)"
        )
    differences = preset_differences(run_dir)
    if differences:
        logger.warning(
            "%s was saved with other settings than clover-tiny's preset, and what starts from it keeps them: %s. "
            "To train with the preset, give another folder (or leave out --video_pretrained) for a new video stage",
            run_dir, "; ".join(differences),
        )  # fmt: skip
    return run_dir


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
