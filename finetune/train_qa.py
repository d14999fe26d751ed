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
import json
import logging
import math
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python finetune/train_qa.py` / `accelerate launch finetune/train_qa.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch.utils.data import ConcatDataset, DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from clover.configuration_clover import QA_HEADS, CloverConfig
from clover.data.annotations import TASKS
from clover.data.datasets import VideoQADataset
from clover.metrics import metrics_markdown, selection_score
from clover.modeling_clover import CloverForVideoQA
from clover.processing_clover import CloverProcessor
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

COMPLETE_MARKER = "COMPLETE"
TRAINER_STATE = "trainer_state.json"


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
    data.add_argument("--skip_test", action="store_true", help="do not evaluate on the test split at the end")
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="a Clover checkpoint directory or hub name (pre-training or QA)")
    model.add_argument("--preset", choices=["clover-tiny", "clover-base"], help="a new model of this size (instead of --model)")
    model.add_argument("--text_backbone", help="BERT name or directory the text and fusion encoders start from (with --preset)")
    model.add_argument("--video_swin_checkpoint", help="official Video Swin .pth the video encoder starts from (with --preset)")
    model.add_argument("--video_backbone", help="a transformers video backbone (VideoMAE, TimeSformer) (with --preset)")
    model.add_argument("--num_frames", type=int, help="frames per clip (with --preset; a checkpoint keeps its own)")
    model.add_argument("--train", choices=["all", "heads", "lora"], default="all", help="which parameters train")
    model.add_argument("--lora_rank", type=int, default=8)
    model.add_argument("--lora_alpha", type=int, default=16)
    model.add_argument("--merge_lora", action="store_true", help="save LoRA runs as a plain merged model")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--learning_rate", type=float, default=1.2e-5)
    optim.add_argument("--head_lr_multiplier", type=float, default=10.0)
    optim.add_argument("--weight_decay", type=float, default=0.005)
    optim.add_argument("--warmup_ratio", type=float, default=0.1)
    optim.add_argument("--max_grad_norm", type=float, default=15.0)
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optim.add_argument("--per_device_train_batch_size", type=int, default=8)
    optim.add_argument("--per_device_eval_batch_size", type=int, default=None, help="defaults to the train batch size")
    optim.add_argument("--num_train_epochs", type=int, default=20)
    optim.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    optim.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None, help="else the Accelerate config's")
    optim.add_argument("--seed", type=int, default=42)
    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", required=True)
    run.add_argument("--eval_steps", type=int, default=None, help="also evaluate every N optimisation steps")
    run.add_argument("--checkpointing_steps", type=int, default=None, help="save a checkpoint every N steps (and each epoch)")
    run.add_argument("--checkpoints_total_limit", type=int, default=2)
    run.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint folder")
    run.add_argument("--with_tracking", action="store_true")
    run.add_argument("--report_to", default="tensorboard", help="Accelerate tracker(s) used with --with_tracking")
    run.add_argument("--stop_after_step", type=int, default=None, help=argparse.SUPPRESS)  # debug: stop like a crash
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Cross-argument checks, reported like argparse's own errors."""
    if (args.model is None) == (args.preset is None):
        parser.error("pass exactly one of --model (a checkpoint) and --preset (a new model)")
    if args.model and (args.text_backbone or args.video_swin_checkpoint or args.video_backbone or args.num_frames):
        parser.error("--text_backbone, --video_swin_checkpoint, --video_backbone and --num_frames go with --preset")
    for name in ("annotations", "videos"):
        if len(getattr(args, name)) not in (1, len(args.task)):
            parser.error(f"--{name} takes one value or one per task ({len(args.task)})")
    if len(set(args.task)) != len(args.task):
        parser.error(f"a task is repeated: {args.task}")
    if args.merge_lora and args.train != "lora":
        parser.error("--merge_lora goes with --train lora")
    args.per_device_eval_batch_size = args.per_device_eval_batch_size or args.per_device_train_batch_size


# --------------------------------------------------------------------------------------------------
# Accelerator, logging, seed
# --------------------------------------------------------------------------------------------------


def setup_accelerator(args: argparse.Namespace) -> Accelerator:
    """The Accelerator (mixed precision from the Accelerate config unless --mixed_precision), logging
    (INFO on the main process only) and the seed. Unused heads of a multi-task model (and the
    pre-training projections) get no gradient on a step, hence find_unused_parameters."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=args.output_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    if not accelerator.is_local_main_process:
        logging.getLogger().setLevel(logging.ERROR)
    set_seed(args.seed)
    if accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return accelerator


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def load_tasks(args: argparse.Namespace) -> list[TaskData]:
    """Each task's train, val (and test) records; `--annotations`/`--videos` are shared or per task."""
    splits = ("train", "val") if args.skip_test else ("train", "val", "test")
    tasks = []
    for i, task in enumerate(args.task):
        annotations = args.annotations[i if len(args.annotations) > 1 else 0]
        videos = args.videos[i if len(args.videos) > 1 else 0]
        data = load_task(task, annotations, videos, splits=splits, val_fraction=args.val_fraction, seed=args.seed)
        if not data.splits["train"]:
            raise SystemExit(f"{task}: no train questions in {annotations} (run python -m finetune.check_data)")
        tasks.append(data)
    return tasks


class TaskBatchSampler:
    """Batches of one task each, in an order that depends only on (seed, epoch).

    Per epoch, each task's examples are shuffled and cut into *global* batches of
    `batch_size * num_replicas` (the last one filled up by wrapping around, so every batch is full),
    the global batches of all tasks are shuffled together, and each is yielded as `num_replicas`
    consecutive per-device batches: Accelerate hands batch r of each group to process r, so on every
    step all processes train the same task and together see exactly that global batch.
    Indices are global indices of a ConcatDataset of the tasks' datasets (`sizes` in order).
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, num_replicas: int = 1, seed: int = 0) -> None:
        self.sizes, self.batch_size, self.num_replicas, self.seed = list(sizes), batch_size, num_replicas, seed
        self.offsets = np.cumsum([0, *self.sizes[:-1]]).tolist()
        self.drop_last = False
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches, in training order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        size = self.batch_size * self.num_replicas
        batches = []
        for offset, n in zip(self.offsets, self.sizes):
            order = rng.permutation(n)
            order = np.resize(order, math.ceil(n / size) * size) + offset  # wrap around to fill the last batch
            batches += [order[i : i + size].tolist() for i in range(0, len(order), size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            for r in range(self.num_replicas):
                yield batch[r * self.batch_size : (r + 1) * self.batch_size]

    def __len__(self) -> int:
        size = self.batch_size * self.num_replicas
        return sum(math.ceil(n / size) for n in self.sizes) * self.num_replicas


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
    datasets = [_dataset(data, "train", processor, label2id, args.seed, training=True) for data in tasks]
    sampler = TaskBatchSampler([len(d) for d in datasets], args.per_device_train_batch_size, accelerator.num_processes, args.seed)
    loader = DataLoader(
        IndexedDataset(ConcatDataset(datasets)),
        batch_sampler=sampler,
        collate_fn=Collator(processor, sampler.offsets, [d.name for d in tasks]),
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),  # keeps the global RNG untouched by the loader
    )
    eval_loaders = {d.name: _eval_loader(args, d, "val", processor, label2id) for d in tasks if d.splits.get("val")}
    test_loaders = {d.name: _eval_loader(args, d, "test", processor, label2id) for d in tasks if d.splits.get("test")}
    return TrainData(loader, sampler, datasets, eval_loaders, test_loaders)


def _dataset(data: TaskData, split: str, processor: CloverProcessor, label2id: dict[str, int], seed: int, training: bool) -> VideoQADataset:
    return VideoQADataset(
        data.splits[split], data.videos, processor, kind=data.kind,
        answer_to_label=label2id if data.kind == "open" else None, training=training, seed=seed,
    )


def _eval_loader(args: argparse.Namespace, data: TaskData, split: str, processor: CloverProcessor, label2id: dict[str, int]) -> DataLoader:
    dataset = _dataset(data, split, processor, label2id, args.seed, training=False)
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
    if args.model:
        return CloverForVideoQA.from_pretrained(args.model, ignore_mismatched_sizes=True, **settings)
    if args.num_frames:
        settings["num_frames"] = args.num_frames
    config = CloverConfig.from_preset(args.preset, **settings)
    return CloverForVideoQA.from_backbones(
        config, text_backbone=args.text_backbone, video_swin_checkpoint=args.video_swin_checkpoint, video_backbone=args.video_backbone
    )


def build_processor(args: argparse.Namespace, config: CloverConfig) -> CloverProcessor:
    """The checkpoint's own processor when it has one; else one made from the config with the text
    backbone's tokenizer, the clover-tiny tokenizer (tiny vocabulary) or bert-base-uncased's."""
    if args.model:
        try:
            return CloverProcessor.from_pretrained(args.model)
        except (OSError, ValueError):
            logger.info(f"{args.model} has no processor; building one from its config")
    if config.text_backbone:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(config.text_backbone)
    elif args.preset == "clover-tiny" or config.text_config.vocab_size == 1024:
        from clover.tokenization import tiny_tokenizer

        tokenizer = tiny_tokenizer()
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")
    return CloverProcessor.from_config(config, tokenizer)


def apply_training_mode(model: CloverForVideoQA, args: argparse.Namespace) -> torch.nn.Module:
    """`all`: every parameter trains; `heads`: only the answer heads; `lora`: LoRA adapters on the
    encoders' attention projections (query/key/value in BERT and fusion, qkv in Swin) and the heads
    fully trained (PEFT `modules_to_save`)."""
    if args.train == "heads":
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("heads.")
        return model
    if args.train == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=args.lora_rank, lora_alpha=args.lora_alpha, lora_dropout=0.0,
            target_modules=r".*\.(query|key|value|qkv)", modules_to_save=list(model.config.qa_heads),
        )
        return get_peft_model(model, lora)
    return model


# --------------------------------------------------------------------------------------------------
# Optimizer and scheduler
# --------------------------------------------------------------------------------------------------


def parameter_groups(model: torch.nn.Module, args: argparse.Namespace) -> list[dict[str, Any]]:
    """AdamW groups: heads at `head_lr_multiplier` x the learning rate; no weight decay on tensors of
    rank < 2 (norms, biases, embeddings' scalars), decided by rank as in nanoGPT, not by name."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            is_head = "heads" in name.split(".")
            groups.setdefault((is_head, parameter.ndim >= 2), []).append(parameter)
    return [
        {
            "params": params,
            "lr": args.learning_rate * (args.head_lr_multiplier if is_head else 1.0),
            "weight_decay": args.weight_decay if decay else 0.0,
        }
        for (is_head, decay), params in sorted(groups.items())
    ]


def build_optimizer(model: torch.nn.Module, args: argparse.Namespace, num_processes: int, max_train_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (0.9, 0.98) and a cosine schedule with `warmup_ratio` warm-up. Accelerate steps a prepared
    scheduler once per process per optimisation step, hence the `* num_processes` (as the
    transformers no_trainer scripts do)."""
    optimizer = torch.optim.AdamW(parameter_groups(model, args), lr=args.learning_rate, betas=(0.9, 0.98))
    warmup = math.ceil(args.warmup_ratio * max_train_steps)
    scheduler = get_scheduler(
        "cosine", optimizer, num_warmup_steps=warmup * num_processes, num_training_steps=max_train_steps * num_processes
    )
    return optimizer, scheduler


def training_length(args: argparse.Namespace, sampler: TaskBatchSampler) -> tuple[int, int, int]:
    """(steps per epoch, epochs, total optimisation steps); `--max_train_steps` wins over epochs."""
    batches_per_process = len(sampler) // sampler.num_replicas
    steps_per_epoch = math.ceil(batches_per_process / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    return steps_per_epoch, math.ceil(max_steps / steps_per_epoch), max_steps


# --------------------------------------------------------------------------------------------------
# Checkpoints: atomic save, rotation, resume
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Where training is, saved in every checkpoint as `trainer_state.json`."""

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # batches of `epoch` already trained on (this process's loader)
    skipped_clips: int = 0  # unreadable training clips met so far, all processes
    best_score: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)


def checkpoint_root(args: argparse.Namespace) -> Path:
    return Path(args.output_dir) / "checkpoints"


def _step_of(path: Path) -> int:
    return int(path.name.removeprefix("step_")) if path.name.removeprefix("step_").isdigit() else -1


def is_complete(path: Path) -> bool:
    """A checkpoint counts only once its COMPLETE marker (written last) exists."""
    return (path / COMPLETE_MARKER).is_file()


def save_checkpoint(accelerator: Accelerator, args: argparse.Namespace, state: TrainState) -> Path:
    """`accelerator.save_state` into `checkpoints/.tmp_step_N`, then rename to `step_N` and write
    `COMPLETE`: a run killed at any moment leaves every earlier checkpoint intact and this one
    either absent or without its marker (ignored on resume). Keeps the last `checkpoints_total_limit`."""
    root = checkpoint_root(args)
    final, temp = root / f"step_{state.completed_steps}", root / f".tmp_step_{state.completed_steps}"
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temp))
    if accelerator.is_main_process:
        write_json(temp / TRAINER_STATE, asdict(state))
        shutil.rmtree(final, ignore_errors=True)
        temp.rename(final)
        (final / COMPLETE_MARKER).write_text(f"step {state.completed_steps}\n", encoding="utf-8")
        _rotate_checkpoints(root, args.checkpoints_total_limit)
        logger.info(f"saved checkpoint {final}")
    accelerator.wait_for_everyone()
    return final


def _rotate_checkpoints(root: Path, limit: int | None) -> None:
    """Delete complete checkpoints beyond the newest `limit`, and incomplete ones older than those kept."""
    if not limit:
        return
    complete = sorted((p for p in root.glob("step_*") if is_complete(p)), key=_step_of)
    kept = complete[-limit:]
    oldest_kept = _step_of(kept[0]) if kept else -1
    for path in root.glob("step_*"):
        if path not in kept and (is_complete(path) or _step_of(path) < oldest_kept):
            shutil.rmtree(path, ignore_errors=True)


def find_checkpoint(args: argparse.Namespace) -> Path | None:
    """The checkpoint to resume from: `latest` = the newest complete one under `output_dir/checkpoints`;
    a path = that one, or, if it has no COMPLETE marker, the newest complete one before it."""
    if args.resume_from_checkpoint == "latest":
        root, limit = checkpoint_root(args), math.inf
    else:
        wanted = Path(args.resume_from_checkpoint)
        if is_complete(wanted):
            return wanted
        root, limit = wanted.parent, _step_of(wanted) if _step_of(wanted) >= 0 else math.inf
    for path in sorted(root.glob("step_*"), key=_step_of, reverse=True):
        if _step_of(path) > limit:
            continue
        if is_complete(path):
            return path
        logger.warning(f"skipping half-written checkpoint {path} (no {COMPLETE_MARKER} marker)")
    logger.warning(f"no complete checkpoint under {root}: starting from scratch")
    return None


def resume(accelerator: Accelerator, args: argparse.Namespace) -> TrainState:
    """Restore model, optimizer, scheduler and RNG states and the TrainState of the chosen checkpoint."""
    path = find_checkpoint(args) if args.resume_from_checkpoint else None
    if path is None:
        return TrainState()
    accelerator.load_state(str(path))
    state = TrainState(**json.loads((path / TRAINER_STATE).read_text(encoding="utf-8")))
    logger.info(f"resumed from {path}: step {state.completed_steps}, epoch {state.epoch}, {state.batches_in_epoch} batches into it")
    return state


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
        _replace_model_files(temp, directory)
    accelerator.wait_for_everyone()


def _replace_model_files(temp: Path, directory: Path) -> None:
    """Move `temp`'s files into `directory` (each move atomic), keeping the directory's other contents
    (checkpoints/, logs, metrics)."""
    directory.mkdir(parents=True, exist_ok=True)
    for item in temp.iterdir():
        target = directory / item.name
        if target.is_dir():
            shutil.rmtree(target)
        item.replace(target)
    temp.rmdir()


# --------------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything the loop needs, prepared."""

    args: argparse.Namespace
    accelerator: Accelerator
    model: torch.nn.Module
    processor: CloverProcessor
    optimizer: Any
    scheduler: Any
    data: TrainData
    tasks: dict[str, TaskData]
    steps_per_epoch: int
    num_epochs: int
    max_steps: int


def training_loss(run: Run, batch: dict[str, Any]) -> torch.Tensor:
    """The batch's loss with its task's head; a batch whose clips were all unreadable gives a zero
    loss that still touches every trainable parameter, so all processes stay in step."""
    if not batch["ids"]:
        return sum(p.sum() * 0.0 for p in run.model.parameters() if p.requires_grad)
    kind = run.tasks[batch["task"]].kind
    return run.model(**model_inputs(batch, kind)).loss


def train_step(run: Run, batch: dict[str, Any]) -> torch.Tensor:
    """Forward, backward, clip, step inside `accelerator.accumulate` (steps only on sync)."""
    accelerator, model = run.accelerator, run.model
    with accelerator.accumulate(model):
        loss = training_loss(run, batch)
        accelerator.backward(loss)
        if accelerator.sync_gradients and run.args.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), run.args.max_grad_norm)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad()
    return loss.detach()


def set_epoch(run: Run, epoch: int) -> None:
    """Data order and per-item random draws of `epoch` (a pure function of seed and epoch). The prepared
    loader is told too: Accelerate re-applies its own epoch counter to the sampler on each iteration,
    and that counter starts at 0 in a resumed run."""
    if hasattr(run.data.loader, "set_epoch"):
        run.data.loader.set_epoch(epoch)
    run.data.sampler.set_epoch(epoch)
    for dataset in run.data.datasets:
        dataset.set_epoch(epoch)


def epoch_batches(run: Run, state: TrainState) -> Any:
    """This epoch's loader, skipping the batches a resumed run already trained on."""
    if state.batches_in_epoch:
        logger.info(f"skipping the first {state.batches_in_epoch} batches of epoch {state.epoch} (already trained on)")
        loader = run.accelerator.skip_first_batches(run.data.loader, state.batches_in_epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(state.epoch)
        return loader
    return run.data.loader


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


def log_step(run: Run, state: TrainState, losses: list[torch.Tensor], batch: dict[str, Any]) -> None:
    """Log the optimisation step's mean loss (averaged over processes) to the trackers and train_log.jsonl
    (with the main process's last batch of record ids, to check the data order)."""
    loss = run.accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
    lr = run.scheduler.get_last_lr()[0]
    run.accelerator.log({"train_loss": loss, "lr": lr}, step=state.completed_steps)
    if run.accelerator.is_main_process:
        entry = {"step": state.completed_steps, "epoch": state.epoch, "task": batch["task"], "loss": loss, "lr": lr, "ids": batch["ids"]}
        with (Path(run.args.output_dir) / "train_log.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def count_skipped(run: Run, batch: dict[str, Any]) -> int:
    """Unreadable clips of this batch, summed over processes."""
    skipped = torch.tensor(int(batch.get("skipped", 0)), device=run.accelerator.device)
    return int(run.accelerator.reduce(skipped, reduction="sum").item())


def train(run: Run, state: TrainState) -> bool:
    """The training loop; returns False if stopped early by `--stop_after_step` (a simulated crash)."""
    args, accelerator = run.args, run.accelerator
    progress = tqdm(range(run.max_steps), initial=state.completed_steps, disable=not accelerator.is_local_main_process, desc="steps")
    run.model.train()
    while state.epoch < run.num_epochs and state.completed_steps < run.max_steps:
        set_epoch(run, state.epoch)
        losses: list[torch.Tensor] = []
        saved_at = None
        for batch in epoch_batches(run, state):
            losses.append(train_step(run, batch))
            state.batches_in_epoch += 1
            state.skipped_clips += count_skipped(run, batch)
            if not accelerator.sync_gradients:
                continue
            state.completed_steps += 1
            progress.update(1)
            log_step(run, state, losses, batch)
            losses = []
            if args.checkpointing_steps and state.completed_steps % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, args, state)
                saved_at = state.completed_steps
            if args.eval_steps and state.completed_steps % args.eval_steps == 0:
                evaluate_and_keep_best(run, state)
            if args.stop_after_step and state.completed_steps >= args.stop_after_step:
                logger.info(f"--stop_after_step {args.stop_after_step}: stopping without saving")
                return False
            if state.completed_steps >= run.max_steps:
                break
        end_epoch(run, state, saved_at)
    progress.close()
    return True


def end_epoch(run: Run, state: TrainState, saved_at: int | None) -> None:
    """Log the epoch's skipped clips, evaluate, and checkpoint (unless this step was just saved)."""
    logger.info(f"epoch {state.epoch} done at step {state.completed_steps}; unreadable training clips so far: {state.skipped_clips}")
    run.accelerator.log({"skipped_clips": state.skipped_clips}, step=state.completed_steps)
    state.epoch += 1
    state.batches_in_epoch = 0
    evaluate_and_keep_best(run, state)
    if saved_at != state.completed_steps or run.args.checkpointing_steps is None:
        save_checkpoint(run.accelerator, run.args, state)
    elif run.accelerator.is_main_process:  # the step's checkpoint predates the epoch change: record it
        write_json(checkpoint_root(run.args) / f"step_{state.completed_steps}" / TRAINER_STATE, asdict(state))


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
    synthetic = any(_is_synthetic(Path(d.annotations)) for d in run.tasks.values())
    start = args.model or f"{args.preset} (new{', text from ' + args.text_backbone if args.text_backbone else ''})"
    lines = [
        "---", "library_name: transformers", "tags: [video-question-answering, clover]", "---", "",
        f"# Clover fine-tuned on {', '.join(run.tasks)}", "",
        f"Started from `{start}`; trained with `finetune/train_qa.py` ({args.train} parameters).",
    ]
    if synthetic:
        lines += ["", "**Trained on synthetic data** (the procedurally generated moving-shapes benchmark of "
                  "`clover.data.synthetic`): its numbers say nothing about real videos."]
    lines += ["", "## Data", "", "| task | kind | annotations | videos | train | val | test |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for d in run.tasks.values():
        sizes = [len(d.splits.get(split, [])) for split in ("train", "val", "test")]
        lines.append(f"| {d.name} | {d.kind} | `{d.annotations}` | `{d.videos}` | " + " | ".join(map(str, sizes)) + " |")
    settings = {
        "learning rate (heads x)": f"{args.learning_rate} (x{args.head_lr_multiplier})", "weight decay": args.weight_decay,
        "warm-up ratio": args.warmup_ratio, "max grad norm": args.max_grad_norm,
        "batch (per device x processes x accumulation)": f"{args.per_device_train_batch_size} x {run.accelerator.num_processes} x {args.gradient_accumulation_steps}",
        "steps": metrics["completed_steps"], "epochs": metrics["epochs"], "mixed precision": run.accelerator.mixed_precision,
        "seed": args.seed, "val fraction (TGIF)": args.val_fraction, "unreadable training clips": metrics["skipped_training_clips"],
    }
    lines += ["", "## Settings", "", "| setting | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in settings.items()]]
    for split in ("val", "test"):
        if metrics.get(split):
            lines += ["", f"## {split.capitalize()} metrics", "", metrics_markdown(metrics[split], metrics["tasks"]).rstrip()]
    return "\n".join(lines) + "\n"


def _is_synthetic(path: Path) -> bool:
    """The synthetic benchmark writes scenes.json next to its tgif/ and msvd/ folders."""
    folder = path if path.is_dir() else path.parent
    return (folder / "scenes.json").is_file() or (folder.parent / "scenes.json").is_file()


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
    args, accelerator = run.args, run.accelerator
    total_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    examples = sum(len(d.splits["train"]) for d in run.tasks.values())
    logger.info("***** Running training *****")
    logger.info(f"  Tasks = {', '.join(f'{n} ({d.kind})' for n, d in run.tasks.items())}")
    logger.info(f"  Num examples = {examples}")
    logger.info(f"  Num epochs = {run.num_epochs}")
    logger.info(f"  Instantaneous batch size per device = {args.per_device_train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch}")
    logger.info(f"  Gradient accumulation steps = {args.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {run.max_steps}")


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def setup(args: argparse.Namespace) -> Run:
    """Every stage before the loop, in the no_trainer order, ending with `prepare`."""
    accelerator = setup_accelerator(args)
    task_list = load_tasks(args)
    write_run_files(accelerator, args, task_list)
    model = build_model(args, task_list)
    processor = build_processor(args, model.config)
    data = build_dataloaders(args, accelerator, task_list, processor, dict(model.config.label2id))
    model = apply_training_mode(model, args)
    steps_per_epoch, num_epochs, max_steps = training_length(args, data.sampler)
    optimizer, scheduler = build_optimizer(model, args, accelerator.num_processes, max_steps)
    model, optimizer, data.loader, scheduler = accelerator.prepare(model, optimizer, data.loader, scheduler)
    data.eval_loaders = {name: accelerator.prepare(loader) for name, loader in data.eval_loaders.items()}
    data.test_loaders = {name: accelerator.prepare(loader) for name, loader in data.test_loaders.items()}
    if args.with_tracking:
        accelerator.init_trackers("clover_qa", config={k: str(v) if isinstance(v, list) else v for k, v in vars(args).items() if v is not None})
    tasks = {d.name: d for d in task_list}
    return Run(args, accelerator, model, processor, optimizer, scheduler, data, tasks, steps_per_epoch, num_epochs, max_steps)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train, evaluate and save; returns the final metrics (None when stopped by --stop_after_step)."""
    args = parse_args(argv)
    run = setup(args)
    state = resume(run.accelerator, args)
    log_summary(run)
    finished = train(run, state)
    metrics = save_outputs(run, state) if finished else None
    run.accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
