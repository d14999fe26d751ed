"""Fine-tune Clover for video question answering with Accelerate (one or several tasks, one model).

    accelerate launch --config_file finetune/configs/single_gpu.yaml finetune/train_qa.py \\
        --task tgif-frameqa --annotations data/tgif --videos data/tgif/gifs \\
        --model checkpoints/pretrain --output_dir runs/frameqa

The script follows transformers' `run_*_no_trainer.py` order, one short function per stage:
arguments, Accelerator and logging, seed, data, model and processor, optimizer and scheduler,
`prepare`, resume, the training loop (`accelerator.accumulate`), evaluation (`gather_for_metrics`)
and saving. See docs/finetuning.md for every command.

Exact resume: the data order is a function of (seed, epoch) alone (`TaskBatchSampler`), each item's
random frames and crop of (seed, epoch, index) (`VideoQADataset`), and checkpoints hold the model,
optimizer, scheduler and RNG states plus `trainer_state.json` (epoch, batches seen in it, counters).
A checkpoint is written into a temporary folder, renamed, and gets its `COMPLETE` marker last.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python finetune/train_qa.py` / `accelerate launch finetune/train_qa.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from torch.utils.data import ConcatDataset, DataLoader

from clover.configuration_clover import QA_HEADS, QA_POOLINGS, CloverConfig
from clover.data.annotations import TASKS, Record
from clover.data.datasets import VIDEO_INPUTS, ClipCache, VideoQADataset
from clover.grounding import GroundingError, attach_grounding, grounding_loss, load_grounding, target_shares, token_mask
from clover.metrics import metrics_markdown, selection_score
from clover.modeling_clover import CloverForVideoQA
from clover.processing_clover import CloverProcessor
from finetune import training
from finetune.common import (
    ADAPTER_DIR,
    BASE_DIR,
    Collator,
    IndexedDataset,
    TaskData,
    count_limits_of,
    count_range,
    evaluate_task,
    load_task,
    model_inputs,
    open_vocabulary,
    write_json,
)

logger = get_logger(__name__)


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see docs/finetuning.md); `--task` may be given several times."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--task", action="extend", nargs="+", required=True, choices=sorted(TASKS), help="one or more tasks")
    data.add_argument("--annotations", action="extend", nargs="+", required=True, help="one path, or one per task")
    data.add_argument("--videos", action="extend", nargs="+", required=True, help="one folder, or one per task")
    data.add_argument("--val_fraction", type=float, default=0.1, help="TGIF val carved from Train, by clip")
    data.add_argument("--num_workers", type=int, default=2)
    training.add_clip_cache_argument(data)
    data.add_argument("--skip_test", action="store_true", help="do not evaluate on the test split at the end")
    data.add_argument("--skip_val", action="store_true", help="no validation (and no best/ checkpoint): fixed-budget comparisons")
    data.add_argument("--task_sampling_alpha", type=float, default=1.0,
                      help="a task's share of the training batches is proportional to its size to this power: "
                      "1 as many batches as its data fills, 0 the same share for every task (small tasks repeat)")
    data.add_argument("--train_fraction", type=float, default=1.0, help="train on this fraction of each task's training questions (seeded)")
    data.add_argument("--video_input", choices=VIDEO_INPUTS, default="full",
                      help="baselines: 'middle' shows only the middle frame, 'none' a blank clip (text only), in training and evaluation")
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="a Clover checkpoint directory or hub name (pre-training or QA)")
    model.add_argument("--preset", choices=["clover-tiny", "clover-base"], help="a new model of this size (instead of --model)")
    model.add_argument("--text_backbone", help="BERT name or directory the text and fusion encoders start from (with --preset)")
    model.add_argument("--video_swin_checkpoint", help="official Video Swin .pth the video encoder starts from (with --preset)")
    model.add_argument("--video_backbone", help="a transformers video backbone (VideoMAE, TimeSformer) (with --preset)")
    model.add_argument("--num_frames", type=int, help="frames per clip (with --preset; a checkpoint keeps its own)")
    model.add_argument("--config_overrides", help="with --preset: config fields to change, e.g. \"text_config.initializer_range=0.05,num_fusion_layers=3\"")
    model.add_argument("--qa_pooling", choices=QA_POOLINGS,
                       help="what the answer heads read (CloverConfig.qa_pooling); default: the checkpoint's or the preset's")
    add_grounding_arguments(model)
    model.add_argument("--train", choices=["all", "heads", "lora"], default="all", help="which parameters train")
    model.add_argument("--lora_rank", type=int, default=8)
    model.add_argument("--lora_alpha", type=int, default=16)
    model.add_argument("--merge_lora", action="store_true", help="save LoRA runs as a plain merged model")
    optim = training.add_optimisation_arguments(parser, learning_rate=1.2e-5, num_train_epochs=20)
    optim.add_argument("--head_lr_multiplier", type=float, default=10.0, help="the answer heads' learning rate, x --learning_rate")
    run = training.add_run_arguments(parser)
    run.add_argument("--eval_steps", type=int, default=None, help="also evaluate every N optimisation steps")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Cross-argument checks, reported like argparse's own errors."""
    training.check_model_arguments(parser, args, ["--text_backbone", "--video_swin_checkpoint", "--video_backbone", "--num_frames", "--config_overrides"])
    for name in ("annotations", "videos"):
        if len(getattr(args, name)) not in (1, len(args.task)):
            parser.error(f"--{name} takes one value or one per task ({len(args.task)})")
    if len(set(args.task)) != len(args.task):
        parser.error(f"a task is repeated: {args.task}")
    if args.merge_lora and args.train != "lora":
        parser.error("--merge_lora goes with --train lora")
    check_grounding_arguments(parser, args)


def add_grounding_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default_weight: float = 0.0,
                            default_target_share: float = 1.0) -> None:
    """The grounding term's flags (clover.grounding), here and in make_demo, which passes them on with
    its own defaults (the demo recipe's); `check_grounding_arguments` checks their ranges."""
    parser.add_argument("--grounding_weight", type=float, default=default_weight,
                        help="add W x -log(the question pooling's attention on the object the question names), from the "
                        "grounding.json the synthetic benchmark writes beside its annotations (clover.grounding; needs "
                        "--qa_pooling cls+max+query or cls+max+query+time; docs/results.md, \"Telling the question "
                        "pooling where to look\"); 0: off; default %(default)s")
    parser.add_argument("--grounding_min_objects", type=int, default=1,
                        help="with --grounding_weight: only the questions about clips of at least this many objects "
                        "get the term (2: not the clips of one object, where there is nothing to tell the named one from)")
    parser.add_argument("--grounding_target_share", type=float, default=default_target_share,
                        help="with --grounding_weight: the term asks for this share of the pooling's attention on the "
                        "named object, -log(min(share / S, 1)), and no more (1: all of it); default %(default)s")
    parser.add_argument("--grounding_target_share_several", type=float, default=None,
                        help="with --grounding_weight: the share asked on clips of two or more objects, where "
                        "--grounding_target_share is then the one asked on clips of one object (docs/results.md, \"A "
                        "share by the number of objects\"); default: --grounding_target_share on every clip")
    parser.add_argument("--grounding_time", choices=("clip", "step"), default="clip",
                        help="with --grounding_weight: the named object's tokens in every time slot of the clip (clip), "
                        "or, on the Action, Transition and Count questions, only in the time slots of the step the "
                        "question asks about (step: where and when to look; docs/results.md, \"When to look: the step "
                        "asked about\"); default %(default)s")


def check_grounding_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The grounding flags' ranges; make_demo, which passes them on, checks them too before its stages."""
    if args.grounding_weight < 0:
        parser.error(f"--grounding_weight must be 0 or more, got {args.grounding_weight}")
    if args.grounding_min_objects < 1:
        parser.error(f"--grounding_min_objects must be 1 or more, got {args.grounding_min_objects}")
    for flag in ("grounding_target_share", "grounding_target_share_several"):
        share = getattr(args, flag)
        if share is not None and not 0 < share <= 1:
            parser.error(f"--{flag} must be above 0 and at most 1, got {share}")


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def load_tasks(args: argparse.Namespace) -> list[TaskData]:
    """Each task's train, val (and test) records; `--annotations`/`--videos` are shared or per task."""
    splits = ("train",) + (() if args.skip_val else ("val",)) + (() if args.skip_test else ("test",))
    tasks = []
    groundings: dict[str, dict[str, Any]] = {}  # per annotation folder: TGIF's four tasks share one file
    for i, task in enumerate(args.task):
        annotations = args.annotations[i if len(args.annotations) > 1 else 0]
        videos = args.videos[i if len(args.videos) > 1 else 0]
        data = load_task(task, annotations, videos, splits=splits, val_fraction=args.val_fraction, seed=args.seed)
        data.splits["train"] = subsample(data.splits["train"], args.train_fraction, args.seed)
        if not data.splits["train"]:
            raise SystemExit(f"{task}: no train questions in {annotations} (run python -m finetune.check_data)")
        if args.grounding_weight:
            _attach_grounding(data, groundings, args.grounding_min_objects, args.grounding_time == "step")
        tasks.append(data)
    return tasks


def _attach_grounding(data: TaskData, groundings: dict[str, dict[str, Any]], min_objects: int = 1,
                      asked_step_only: bool = False) -> None:
    """Give the training questions that name an object, in clips of at least `min_objects` objects, that
    object's boxes (`--grounding_weight`, `--grounding_min_objects`; with `asked_step_only`, `--grounding_time
    step`, only in the segments of the step asked about); `groundings` keeps the files already read, by folder."""
    try:
        if data.annotations not in groundings:
            groundings[data.annotations] = load_grounding(data.annotations)
        grounding = groundings[data.annotations]
        records = [dict(record) for record in data.splits["train"]]  # the other splits keep theirs untouched
        attached = attach_grounding(records, grounding, data.name, min_objects, asked_step_only)
    except GroundingError as error:
        raise SystemExit(f"{data.name}: {error}") from error
    data.splits["train"] = records
    clips = f" in clips of {min_objects} or more objects" if min_objects > 1 else ""
    when = ", in the time of the step asked about where there is one" if asked_step_only else ""
    logger.info(f"{data.name}: {attached} of {len(records)} training questions name an object{clips} and are grounded{when}")


def subsample(records: list[Record], fraction: float, seed: int) -> list[Record]:
    """A seeded random `fraction` of the records, in their original order (all of them at 1.0)."""
    if not 0 < fraction <= 1:
        raise SystemExit(f"--train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), max(1, round(fraction * len(records)))))
    return [records[i] for i in keep]


class TaskBatchSampler(training.EpochBatchSampler):
    """Batches of one task each, in an order that depends only on (seed, epoch).

    Per epoch, each task's examples are shuffled and cut into global batches, and the global batches of
    all tasks are shuffled together (`finetune.training.EpochBatchSampler` hands them out to the
    processes), so on every step all processes train the same task. Indices are global indices of a
    ConcatDataset of the tasks' datasets (`sizes` in order).

    `alpha` sets each task's share of an epoch's batches: proportional to its size to the power alpha
    (the temperature sampling of multi-task and multilingual training). With 1 (the default) a task
    gets the batches its data fills; below 1 small tasks get more and repeat their examples (in fresh
    shuffles), large ones fewer; the epoch keeps its length.
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, num_replicas: int = 1, seed: int = 0, alpha: float = 1.0) -> None:
        super().__init__(sizes, batch_size, num_replicas, seed)
        self.offsets = np.cumsum([0, *self.sizes[:-1]]).tolist()
        self.alpha = alpha

    def batches_per_task(self) -> list[int]:
        """Global batches of each task per epoch: shares of the epoch's length by size**alpha, rounded
        by largest remainder (so they add up), at least one for a task with data."""
        natural = [math.ceil(n / (self.batch_size * self.num_replicas)) for n in self.sizes]
        if self.alpha == 1.0:
            return natural
        weights = np.array([n**self.alpha if n else 0.0 for n in self.sizes])
        exact = sum(natural) * weights / weights.sum()
        counts = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - counts), kind="stable")[: sum(natural) - counts.sum()]:
            counts[i] += 1
        return [max(int(c), 1) if n else 0 for c, n in zip(counts, self.sizes)]

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches, in training order."""
        rng = self.rng()
        batches = []
        for offset, n, count in zip(self.offsets, self.sizes, self.batches_per_task()):
            task_batches: list[list[int]] = []
            while len(task_batches) < count:  # one shuffle at alpha 1; fresh ones while a task repeats
                task_batches += self.full_batches(rng.permutation(n) + offset)
            batches += task_batches[:count]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return sum(self.batches_per_task()) * self.num_replicas


@dataclass
class TrainData:
    """The training loader with its sampler and datasets (for set_epoch), and one val loader per task."""

    loader: DataLoader
    sampler: TaskBatchSampler
    datasets: list[VideoQADataset]
    eval_loaders: dict[str, DataLoader]
    test_loaders: dict[str, DataLoader]


def build_dataloaders(args: argparse.Namespace, accelerator: Accelerator, tasks: list[TaskData], processor: CloverProcessor, label2id: dict[str, int]) -> TrainData:
    """A VideoQADataset per task and split; one training loader over all tasks (batches of one task)."""
    cache = training.clip_cache(args)
    datasets = [_dataset(data, "train", processor, label2id, args.seed, train=True, video_input=args.video_input, clip_cache=cache) for data in tasks]
    sampler = TaskBatchSampler(
        [len(d) for d in datasets], args.per_device_train_batch_size, accelerator.num_processes, args.seed, args.task_sampling_alpha
    )
    loader = DataLoader(
        IndexedDataset(ConcatDataset(datasets)),
        batch_sampler=sampler,
        collate_fn=Collator(processor, sampler.offsets, [d.name for d in tasks]),
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),  # keeps the global RNG untouched by the loader
    )
    eval_loaders = {d.name: _eval_loader(args, d, "val", processor, label2id, cache) for d in tasks if d.splits.get("val")}
    test_loaders = {d.name: _eval_loader(args, d, "test", processor, label2id, cache) for d in tasks if d.splits.get("test")}
    return TrainData(loader, sampler, datasets, eval_loaders, test_loaders)


def _dataset(
    data: TaskData, split: str, processor: CloverProcessor, label2id: dict[str, int], seed: int, train: bool, video_input: str,
    clip_cache: ClipCache | None = None,
) -> VideoQADataset:  # fmt: skip
    return VideoQADataset(
        data.splits[split], data.videos, processor, kind=data.kind, answer_to_label=label2id if data.kind == "open" else None,
        training=train, seed=seed, video_input=video_input, clip_cache=clip_cache,
    )


def _eval_loader(
    args: argparse.Namespace, data: TaskData, split: str, processor: CloverProcessor, label2id: dict[str, int], cache: ClipCache | None
) -> DataLoader:
    dataset = _dataset(data, split, processor, label2id, args.seed, train=False, video_input=args.video_input, clip_cache=cache)
    return DataLoader(
        IndexedDataset(dataset), batch_size=args.per_device_eval_batch_size, shuffle=False,
        collate_fn=Collator(processor, [0], [data.name]), num_workers=args.num_workers,
        generator=torch.Generator(),  # evaluating must not draw from the global RNG (exact resume)
    )


# --------------------------------------------------------------------------------------------------
# Model and processor
# --------------------------------------------------------------------------------------------------


def head_settings(tasks: Sequence[TaskData]) -> dict[str, Any]:
    """Config fields the tasks need: the union of heads, the open vocabulary, the count range."""
    kinds = {data.kind for data in tasks}
    settings: dict[str, Any] = {"qa_heads": [head for head in QA_HEADS if head in kinds]}
    vocab = open_vocabulary(tasks)
    if vocab:
        settings["id2label"] = dict(enumerate(vocab))
        settings["label2id"] = {answer: i for i, answer in enumerate(vocab)}
    limits = count_range(tasks)
    if limits:
        settings["count_min"], settings["count_max"] = limits
    return settings


def build_model(args: argparse.Namespace, tasks: Sequence[TaskData]) -> CloverForVideoQA:
    """From a checkpoint (`--model`; heads that do not fit the tasks start new) or a preset with
    optional pretrained backbones (`CloverForVideoQA.from_backbones`)."""
    settings = head_settings(tasks)
    if args.qa_pooling:  # a pooling with weights of its own starts them new, as a new head does
        settings["qa_pooling"] = args.qa_pooling
    if args.model:
        return CloverForVideoQA.from_pretrained(args.model, ignore_mismatched_sizes=True, **settings)
    if args.num_frames:
        settings["num_frames"] = args.num_frames
    config = CloverConfig.from_preset(args.preset, **{**settings, **training.parse_config_overrides(args.config_overrides)})
    return CloverForVideoQA.from_backbones(
        config, text_backbone=args.text_backbone, video_swin_checkpoint=args.video_swin_checkpoint, video_backbone=args.video_backbone
    )


def apply_training_mode(model: CloverForVideoQA, args: argparse.Namespace) -> torch.nn.Module:
    """`all`: every parameter trains; `heads`: only the answer heads (with the region map of
    `qa_pooling="cls+max+regions"`); `lora`: LoRA adapters on the encoders' attention projections
    (query/key/value in BERT and fusion, qkv in Swin) and those modules fully trained (PEFT
    `modules_to_save`)."""
    beside_heads = ["region_proj"] if hasattr(model, "region_proj") else []  # new for QA, as the heads are
    if args.train == "heads":
        trained = tuple(f"{module}." for module in ("heads", *beside_heads))
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith(trained)
        return model
    if args.train == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(  # modules_to_save: the answer heads (with the multiple-choice match term), the region map
            r=args.lora_rank, lora_alpha=args.lora_alpha, lora_dropout=0.0,
            target_modules=r".*\.(query|key|value|qkv)", modules_to_save=[*model.heads, *beside_heads],
        )
        return get_peft_model(model, lora)
    return model


# --------------------------------------------------------------------------------------------------
# Saving models
# --------------------------------------------------------------------------------------------------


def save_model(accelerator: Accelerator, model: torch.nn.Module, processor: CloverProcessor, directory: Path, merge_lora: bool) -> None:
    """The one place a model is saved (best/ and the final output): safetensors and the processor,
    written into a temporary folder and renamed. A LoRA model is saved merged (`--merge_lora`) or as
    `base/` + `adapter/` (see `finetune.common.load_finetuned`)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        temp = directory.with_name(f".tmp_{directory.name}")
        shutil.rmtree(temp, ignore_errors=True)
        if hasattr(unwrapped, "peft_config") and not merge_lora:
            unwrapped.save_pretrained(temp / ADAPTER_DIR)
            copy.deepcopy(unwrapped).unload().save_pretrained(temp / BASE_DIR)
        elif hasattr(unwrapped, "peft_config"):
            copy.deepcopy(unwrapped).merge_and_unload().save_pretrained(temp)
        else:
            unwrapped.save_pretrained(temp)
        processor.save_pretrained(temp)
        training.replace_model_files(temp, directory)
    accelerator.wait_for_everyone()


# --------------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------------


@dataclass
class Run(training.Run):
    """Everything the loop needs, prepared (`finetune.training.Run`), and the tasks by name."""

    data: TrainData
    tasks: dict[str, TaskData]
    grounding_terms: list[torch.Tensor] = field(default_factory=list)  # this step's grounding losses, for the log


@dataclass
class TrainState(training.TrainState):
    """`finetune.training.TrainState` and the best val score so far, with its step and metrics."""

    best_score: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)


def training_loss(run: Run, batch: dict[str, Any]) -> torch.Tensor:
    """The batch's loss with its task's head (a zero loss when all its clips were unreadable), plus
    `--grounding_weight` x `grounding_loss` on its questions that name an object."""
    if not batch["ids"]:
        return training.zero_loss(run.model)
    kind = run.tasks[batch["task"]].kind
    grounded = run.args.grounding_weight > 0 and "grounding_boxes" in batch
    outputs = run.model(**model_inputs(batch, kind), output_question_attention=grounded)
    if not grounded:
        return outputs.loss
    grid = run.accelerator.unwrap_model(run.model).config.video_grid
    mask = token_mask(batch["grounding_boxes"], grid).to(outputs.question_attention.device)  # (B, t*h*w)
    share: float | torch.Tensor = run.args.grounding_target_share
    if run.args.grounding_target_share_several is not None:  # one share per question, by its clip's objects
        share = target_shares(batch["grounding_objects"], share, run.args.grounding_target_share_several)  # (B,)
    term = grounding_loss(outputs.question_attention, mask, share)
    run.grounding_terms.append(term.detach())
    return outputs.loss + run.args.grounding_weight * term


def train_step(run: Run, batch: dict[str, Any]) -> torch.Tensor:
    """Forward, backward, clip, step inside `accelerator.accumulate` (steps only on sync)."""
    with run.accelerator.accumulate(run.model):
        loss = training_loss(run, batch)
        training.optimisation_step(run, loss)
    return loss.detach()


def set_epoch(run: Run, epoch: int) -> None:
    """Seed the training sampler and every task's dataset for `epoch` (`finetune.training.set_epoch`)."""
    training.set_epoch(run.data.loader, epoch, [run.data.sampler, *run.data.datasets])


def evaluate(run: Run, split: str = "val") -> dict[str, dict[str, Any]]:
    """Metrics of every task on `split` (val during training, test at the end), all processes."""
    loaders = run.data.eval_loaders if split == "val" else run.data.test_loaders
    config = run.accelerator.unwrap_model(run.model).config
    results = {}
    for name, loader in loaders.items():
        data = run.tasks[name]
        vocab = list(config.id2label.values()) if data.kind == "open" else None
        metrics, _ = evaluate_task(
            run.accelerator, run.model, loader, data, split, id2label=config.id2label, count_limits=count_limits_of(config), vocab=vocab
        )
        results[name] = metrics
    run.model.train()
    return results


def combined_score(run: Run, results: dict[str, dict[str, Any]]) -> float:
    """The number the best checkpoint is chosen by: the task's metric (accuracy, or -MSE for count);
    with several tasks, the mean accuracy over them (count: accuracy of the rounded prediction)."""
    if len(results) == 1:
        (name, metrics), = results.items()
        return selection_score(run.tasks[name].kind, metrics)
    return float(np.mean([metrics["accuracy"] for metrics in results.values()]))


def evaluate_and_keep_best(run: Run, state: TrainState) -> None:
    """Evaluate on val, log, and save `best/` when the score improves."""
    if not run.data.eval_loaders:
        return
    results = evaluate(run, "val")
    score = combined_score(run, results)
    summary = {f"val_{task}_{key}": value for task, m in results.items() for key, value in m.items() if key in ("accuracy", "mse")}
    logger.info(f"step {state.completed_steps} val: {summary}")
    run.accelerator.log({**summary, "val_score": score}, step=state.completed_steps)
    if state.best_score is None or score > state.best_score:
        state.best_score, state.best_step, state.best_metrics = score, state.completed_steps, results
        save_model(run.accelerator, run.model, run.processor, Path(run.args.output_dir) / "best", run.args.merge_lora)


def log_step(run: Run, state: TrainState, losses: list[torch.Tensor], batch: dict[str, Any]) -> float:
    """Log the optimisation step's mean loss (averaged over processes) to the trackers and train_log.jsonl
    (with the main process's last batch of record ids, to check the data order); return that loss."""
    loss = run.accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
    lr = run.scheduler.get_last_lr()[0]
    grounding = {}  # the unweighted grounding term, part of the loss above (this process's)
    if run.grounding_terms:
        grounding["grounding_loss"] = torch.stack(run.grounding_terms).mean().item()
        run.grounding_terms.clear()
    run.accelerator.log({"train_loss": loss, "lr": lr, **grounding}, step=state.completed_steps)
    if run.accelerator.is_main_process:
        training.append_train_log(run.args, {
            "step": state.completed_steps, "epoch": state.epoch, "task": batch["task"], "loss": loss, **grounding, "lr": lr,
            "ids": batch["ids"],
        })
    return loss


def train(run: Run, state: TrainState) -> bool:
    """The training loop (`finetune.training.train_loop`); False if stopped by `--stop_after_step`."""
    return training.train_loop(
        run, state, set_epoch=set_epoch, micro_step=micro_step, step_done=log_step, end_epoch=end_epoch, evaluate=evaluate_and_keep_best
    )


def micro_step(run: Run, state: TrainState, batch: dict[str, Any]) -> torch.Tensor:
    """`train_step` in the loop: the micro-batch's loss, for the step's log."""
    return train_step(run, batch)


def end_epoch(run: Run, state: TrainState, saved_at: int | None) -> None:
    """Log the epoch's skipped clips, evaluate, and checkpoint (unless this step was just saved)."""
    logger.info(f"epoch {state.epoch} done at step {state.completed_steps}; unreadable training clips so far: {state.skipped_clips}")
    run.accelerator.log({"skipped_clips": state.skipped_clips}, step=state.completed_steps)
    state.epoch += 1
    state.batches_in_epoch = 0
    evaluate_and_keep_best(run, state)
    training.save_epoch_checkpoint(run.accelerator, run.args, state, saved_at)


# --------------------------------------------------------------------------------------------------
# Final outputs
# --------------------------------------------------------------------------------------------------


def final_metrics(run: Run, state: TrainState) -> dict[str, Any]:
    """Val metrics of the final model and of the best step, test metrics of the final model."""
    metrics: dict[str, Any] = {
        "tasks": {name: data.kind for name, data in run.tasks.items()},
        "completed_steps": state.completed_steps,
        "epochs": state.epoch,
        "skipped_training_clips": state.skipped_clips,
        "best_step": state.best_step,
        "best_val": state.best_metrics,
        "val": evaluate(run, "val") if run.data.eval_loaders else {},
    }
    if run.data.test_loaders:
        metrics["test"] = evaluate(run, "test")
    return metrics


def flat_results(metrics: dict[str, Any]) -> dict[str, Any]:
    """`all_results.json`: flat `<split>_<task>_<metric>` numbers, as the no_trainer scripts write."""
    flat = {"train_steps": metrics["completed_steps"], "skipped_training_clips": metrics["skipped_training_clips"]}
    for split in ("val", "test"):
        for task, values in metrics.get(split, {}).items():
            for key in ("accuracy", "mse", "num_questions", "num_out_of_vocab", "num_unanswered"):
                if key in values:
                    flat[f"{split}_{task}_{key}"] = values[key]
    return flat


def model_card(run: Run, metrics: dict[str, Any]) -> str:
    """README.md of the output directory: what was trained on what, with which settings, and how well."""
    args = run.args
    synthetic = any(training.is_synthetic(Path(d.annotations)) for d in run.tasks.values())
    start = args.model or f"{args.preset} (new{', text from ' + args.text_backbone if args.text_backbone else ''})"
    lines = [
        "---", "library_name: transformers", "tags: [video-question-answering, clover]", "---", "",
        f"# Clover fine-tuned on {', '.join(run.tasks)}", "",
        f"Started from `{start}`; trained with `finetune/train_qa.py` ({args.train} parameters).",
    ]
    if synthetic:
        lines += training.synthetic_warning("benchmark")
    lines += ["", "## Data", "", "| task | kind | annotations | videos | train | val | test |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for d in run.tasks.values():
        sizes = [len(d.splits.get(split, [])) for split in ("train", "val", "test")]
        lines.append(f"| {d.name} | {d.kind} | `{d.annotations}` | `{d.videos}` | " + " | ".join(map(str, sizes)) + " |")
    lines += training.settings_table({
        "learning rate (heads x, video encoder x)": f"{args.learning_rate} (x{args.head_lr_multiplier}, x{args.video_lr_multiplier})",
        "weight decay": args.weight_decay, "task sampling (share ~ size^alpha)": args.task_sampling_alpha,
        **({"grounding weight (where the named object is)": args.grounding_weight} if args.grounding_weight else {}),
        **({"grounding: clips of at least (objects)": args.grounding_min_objects} if args.grounding_weight and args.grounding_min_objects > 1 else {}),
        **({"grounding: target share of the attention": args.grounding_target_share} if args.grounding_weight and args.grounding_target_share < 1 and args.grounding_target_share_several is None else {}),
        **({"grounding: target share of the attention (clips of one object, of several)": f"{args.grounding_target_share}, {args.grounding_target_share_several}"} if args.grounding_weight and args.grounding_target_share_several is not None else {}),
        **({"grounding: in time": "the step asked about (Action, Transition, Count)"} if args.grounding_weight and args.grounding_time == "step" else {}),
        **training.run_settings(run, metrics),
        "val fraction (TGIF)": args.val_fraction, "unreadable training clips": metrics["skipped_training_clips"],
    })
    for split in ("val", "test"):
        if metrics.get(split):
            lines += ["", f"## {split.capitalize()} metrics", "", metrics_markdown(metrics[split], metrics["tasks"]).rstrip()]
    return "\n".join(lines) + "\n"


def save_outputs(run: Run, state: TrainState) -> dict[str, Any]:
    """metrics.json, all_results.json, README.md, then the model and processor (save_model)."""
    metrics = final_metrics(run, state)
    output = Path(run.args.output_dir)
    if run.accelerator.is_main_process:
        write_json(output / "metrics.json", metrics)
        write_json(output / "all_results.json", flat_results(metrics))
        (output / "README.md").write_text(model_card(run, metrics), encoding="utf-8")
    save_model(run.accelerator, run.model, run.processor, output, run.args.merge_lora)
    return metrics


def write_run_files(accelerator: Accelerator, args: argparse.Namespace, tasks: Sequence[TaskData]) -> None:
    """val_clips.json (the validation clips of each task, so the carving can be checked and reused)."""
    if accelerator.is_main_process:
        write_json(Path(args.output_dir) / "val_clips.json", {
            "val_fraction": args.val_fraction, "seed": args.seed, "clips": {d.name: d.val_clips for d in tasks}
        })


def log_summary(run: Run) -> None:
    """The tasks and the number of training questions, then `finetune.training.log_summary`'s lines."""
    examples = sum(len(d.splits["train"]) for d in run.tasks.values())
    tasks = ", ".join(f"{n} ({d.kind})" for n, d in run.tasks.items())
    training.log_summary(run, "Running training", [f"Tasks = {tasks}", f"Num examples = {examples}"])


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def setup(args: argparse.Namespace) -> Run:
    """Every stage before the loop, in the no_trainer order, ending with `prepare` and the summary log."""
    accelerator = training.setup_accelerator(args)
    task_list = load_tasks(args)
    write_run_files(accelerator, args, task_list)
    model = build_model(args, task_list)
    if args.grounding_weight and "question_pooling" not in model.heads:
        raise SystemExit(
            f"--grounding_weight teaches the question pooling where to look, and this model's qa_pooling "
            f"{model.config.qa_pooling!r} has none: add --qa_pooling cls+max+query"
        )
    processor = training.build_processor(args, model.config)
    data = build_dataloaders(args, accelerator, task_list, processor, dict(model.config.label2id))
    model = apply_training_mode(model, args)
    run = training.prepare_run(Run, args, accelerator, model, processor, data, "clover_qa", tasks={d.name: d for d in task_list})
    data.eval_loaders = {name: accelerator.prepare(loader) for name, loader in data.eval_loaders.items()}
    data.test_loaders = {name: accelerator.prepare(loader) for name, loader in data.test_loaders.items()}
    log_summary(run)
    return run


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train, evaluate and save; returns the final metrics (None when stopped by --stop_after_step)."""
    return training.resume_and_train(setup(parse_args(argv)), TrainState, train, save_outputs)


if __name__ == "__main__":
    main()
