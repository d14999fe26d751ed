"""The training machinery `finetune/train_qa.py` and `finetune/pretrain.py` share.

Each script keeps what is its own (arguments, data, model, loss, evaluation, outputs); this module holds
the stages that are the same in both, in the order the scripts run them: the shared flags, the
Accelerator, the processor, the (seed, epoch) batch order, the optimizer and schedule, `prepare`,
resume, the training loop (the script passes in its micro-step, step log, end of epoch and evaluation),
atomic checkpoints, and the shared parts of the summary log and model card.

Exact resume rests on three things kept here: checkpoints are written into a temporary folder,
renamed, and get their `COMPLETE` marker last (a half-written one is never resumed from); the
`TrainState` saved with them says how many batches of the epoch were already trained on, and
`epoch_batches` skips exactly those; and `set_epoch` makes the data order and per-item draws a
function of (seed, epoch) alone, also in a resumed run whose loader has not counted the earlier epochs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from clover.configuration_clover import CloverConfig
from clover.data.datasets import ClipCache
from clover.processing_clover import CloverProcessor
from finetune.common import end_distributed, write_json

logger = get_logger(__name__)

COMPLETE_MARKER = "COMPLETE"
TRAINER_STATE = "trainer_state.json"


# --------------------------------------------------------------------------------------------------
# Arguments both scripts take
# --------------------------------------------------------------------------------------------------


def add_optimisation_arguments(parser: argparse.ArgumentParser, learning_rate: float, num_train_epochs: int) -> argparse._ArgumentGroup:
    """The "optimisation" flags, with the script's own default learning rate and epochs; returns the
    group so that a script can add its own flags to it."""
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--learning_rate", type=float, default=learning_rate)
    optim.add_argument("--weight_decay", type=float, default=0.005, help="on tensors of rank >= 2 only")
    optim.add_argument("--video_lr_multiplier", type=float, default=1.0,
                       help="the video encoder's learning rate, x --learning_rate (below 1 keeps more of what it learnt before)")
    optim.add_argument("--warmup_ratio", type=float, default=0.1, help="fraction of the optimisation steps spent warming up")
    optim.add_argument("--max_grad_norm", type=float, default=15.0)
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optim.add_argument("--per_device_train_batch_size", type=int, default=8)
    optim.add_argument("--per_device_eval_batch_size", type=int, default=None, help="defaults to the train batch size")
    optim.add_argument("--num_train_epochs", type=int, default=num_train_epochs)
    optim.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    optim.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None, help="else the Accelerate config's")
    optim.add_argument("--seed", type=int, default=42)
    return optim


def parse_config_overrides(text: str | None) -> dict[str, Any]:
    """`--config_overrides` ("key=value,text_config.key=value") as keyword arguments for
    `CloverConfig.from_preset`: values are read as JSON where they parse (numbers, true, null,
    lists) and kept as strings otherwise; `text_config.` keys are gathered into one dict."""
    overrides: dict[str, Any] = {}
    pairs = re.split(r",(?![^\[]*\])", text or "")  # commas inside a [list] belong to its value
    for item in filter(None, (part.strip() for part in pairs)):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--config_overrides expects key=value pairs separated by commas, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        key = key.strip()
        if key.startswith("text_config."):
            overrides.setdefault("text_config", {})[key.removeprefix("text_config.")] = value
        else:
            overrides[key] = value
    return overrides


def add_clip_cache_argument(data: argparse._ArgumentGroup) -> None:
    """`--clip_cache_gb`: decoded clips kept in memory (`ClipCache`), shared by the run's datasets."""
    data.add_argument(
        "--clip_cache_gb", type=float, default=0.0,
        help="keep up to this many GiB of decoded clips in memory (per loader process), for small sets of "
             "short clips read many times such as the synthetic benchmark; best with --num_workers 0 on a "
             "CPU (0: decode every read)",
    )  # fmt: skip


def clip_cache(args: argparse.Namespace) -> ClipCache | None:
    """The run's clip cache (one for all its datasets), or None without `--clip_cache_gb`."""
    if args.clip_cache_gb < 0:
        raise ValueError(f"--clip_cache_gb must be at least 0, got {args.clip_cache_gb}")
    return ClipCache(int(args.clip_cache_gb * 2**30)) if args.clip_cache_gb > 0 else None


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The "run" flags: output, checkpoints and resume, tracking; returns the group for the script's own."""
    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", required=True)
    run.add_argument("--checkpointing_steps", type=int, default=None, help="save a checkpoint every N steps (and each epoch)")
    run.add_argument("--checkpoints_total_limit", type=int, default=2)
    run.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint folder")
    run.add_argument("--with_tracking", action="store_true")
    run.add_argument("--report_to", default="tensorboard", help="Accelerate tracker(s) used with --with_tracking")
    run.add_argument("--stop_after_step", type=int, default=None, help=argparse.SUPPRESS)  # debug: stop like a crash
    return run


def check_model_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, preset_flags: Sequence[str]) -> None:
    """Checks both scripts make, reported like argparse's own errors: exactly one of --model and
    --preset, and `preset_flags` (how a new model is built) only with --preset. Also fills in the
    default eval batch size (the train batch size)."""
    if (args.model is None) == (args.preset is None):
        parser.error("pass exactly one of --model (a checkpoint) and --preset (a new model)")
    if args.model and any(getattr(args, flag.removeprefix("--")) for flag in preset_flags):
        parser.error(f"{', '.join(preset_flags[:-1])} and {preset_flags[-1]} go with --preset")
    args.per_device_eval_batch_size = args.per_device_eval_batch_size or args.per_device_train_batch_size


# --------------------------------------------------------------------------------------------------
# Accelerator, logging, seed, tracking
# --------------------------------------------------------------------------------------------------


def setup_accelerator(args: argparse.Namespace) -> Accelerator:
    """The Accelerator (mixed precision from the Accelerate config unless --mixed_precision), logging
    (INFO on the main process only), the seed and the output directory. Some parameters get no
    gradient on a step (the unused heads of a multi-task model, the fusion projections under the
    pairwise objective), hence find_unused_parameters."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=args.output_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    quiet_checkpoint_logs()
    logger.info(accelerator.state, main_process_only=False)
    if not accelerator.is_local_main_process:
        logging.getLogger().setLevel(logging.ERROR)
    set_seed(args.seed)
    if accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return accelerator


class _DropTiedTensorNotice(logging.Filter):
    """Drops Accelerate's warning, at every checkpoint of a pre-training run, that it "Removed shared
    tensor {mlm_head.predictions.decoder.weight, ...} while saving": those are the MLM head's weights
    tied to the word embeddings and to the head's bias, saved once and tied again when the checkpoint
    loads (the resume tests compare a resumed run with an uninterrupted one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


def quiet_checkpoint_logs() -> None:
    """One line per checkpoint ("saved checkpoint ..."/"resumed from ...", ours) instead of Accelerate's
    line per file saved or loaded (a dozen or more), and no tied-tensor notice (`_DropTiedTensorNotice`).
    Accelerate's other warnings and its errors still show."""
    for name in ("accelerate.accelerator", "accelerate.checkpointing"):
        logging.getLogger(name).setLevel(logging.WARNING)
    other = logging.getLogger("accelerate.utils.other")
    if not any(isinstance(existing, _DropTiedTensorNotice) for existing in other.filters):
        other.addFilter(_DropTiedTensorNotice())


def init_tracking(accelerator: Accelerator, args: argparse.Namespace, project: str) -> None:
    """Start the `--report_to` trackers (with `--with_tracking`), the arguments as their config."""
    if args.with_tracking:
        config = {key: str(value) if isinstance(value, list) else value for key, value in vars(args).items() if value is not None}
        accelerator.init_trackers(project, config=config)


# --------------------------------------------------------------------------------------------------
# Processor
# --------------------------------------------------------------------------------------------------


def build_processor(args: argparse.Namespace, config: CloverConfig) -> CloverProcessor:
    """The checkpoint's own processor when it has one; else one made from the config with the text
    backbone's tokenizer, the clover-tiny tokenizer (tiny vocabulary) or bert-base-uncased's."""
    if args.model:
        try:
            return CloverProcessor.from_pretrained(args.model)
        except (OSError, ValueError):
            logger.info(f"{args.model} has no processor; building one from its config")
    from transformers import AutoTokenizer

    if config.text_backbone:
        tokenizer = AutoTokenizer.from_pretrained(config.text_backbone)
    elif args.preset == "clover-tiny" or config.text_config.vocab_size == 1024:
        from clover.tokenization import tiny_tokenizer

        tokenizer = tiny_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")
    return CloverProcessor.from_config(config, tokenizer)


# --------------------------------------------------------------------------------------------------
# Batch order
# --------------------------------------------------------------------------------------------------


class EpochBatchSampler:
    """Batches in an order that depends only on (seed, epoch), so that a resumed run sees the same data.

    A subclass cuts the epoch into *global* batches of `batch_size * num_replicas` indices
    (`global_batches`); each is yielded as `num_replicas` consecutive per-device batches: Accelerate
    hands batch r of each group to process r, so together the processes see exactly that global batch.
    `sizes` are the lengths of the parts the global batches are cut from (the tasks of a multi-task
    run); the last batch of a part is filled up by wrapping around, so every batch is full.
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, num_replicas: int = 1, seed: int = 0) -> None:
        self.sizes, self.batch_size, self.num_replicas, self.seed = list(sizes), batch_size, num_replicas, seed
        self.drop_last = False  # read by Accelerate's prepare
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self) -> np.random.Generator:
        """The epoch's generator, the only source of randomness of the order."""
        return np.random.default_rng([self.seed, self.epoch])

    def full_batches(self, order: np.ndarray) -> list[list[int]]:
        """`order` cut into global batches, the last one filled up by wrapping around to the start."""
        size = self.batch_size * self.num_replicas
        order = np.resize(order, math.ceil(len(order) / size) * size)
        return [order[i : i + size].tolist() for i in range(0, len(order), size)]

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches, in training order."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            for r in range(self.num_replicas):
                yield batch[r * self.batch_size : (r + 1) * self.batch_size]

    def __len__(self) -> int:
        """Per-device batches of all processes together."""
        size = self.batch_size * self.num_replicas
        return sum(math.ceil(n / size) for n in self.sizes) * self.num_replicas


# --------------------------------------------------------------------------------------------------
# Optimizer, scheduler, training length
# --------------------------------------------------------------------------------------------------


def parameter_groups(
    model: torch.nn.Module, learning_rate: float, weight_decay: float, head_lr_multiplier: float = 1.0,
    video_lr_multiplier: float = 1.0,
) -> list[dict[str, Any]]:  # fmt: skip
    """AdamW groups of the trainable parameters: no weight decay on tensors of rank < 2 (norms, biases,
    the video mask token's scalars), decided by rank as in nanoGPT, not by name; the answer heads
    (modules under `heads.`) at `head_lr_multiplier` x the learning rate and the video encoder (modules
    under `video_encoder.`) at `video_lr_multiplier` x, so that a later stage can keep what an earlier
    one taught the encoder. Tied weights appear once."""
    multiplier = {"heads": head_lr_multiplier, "video_encoder": video_lr_multiplier, "rest": 1.0}
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            parts = name.split(".")
            part = "heads" if "heads" in parts else "video_encoder" if "video_encoder" in parts else "rest"
            groups.setdefault((part, parameter.ndim >= 2), []).append(parameter)
    return [
        {"params": params, "lr": learning_rate * multiplier[part], "weight_decay": weight_decay if decay else 0.0}
        for (part, decay), params in sorted(groups.items())
    ]


def build_optimizer(model: torch.nn.Module, args: argparse.Namespace, num_processes: int, max_train_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (0.9, 0.98) and a cosine schedule with `warmup_ratio` warm-up; heads at
    `--head_lr_multiplier` x and the video encoder at `--video_lr_multiplier` x the learning rate where
    the script has those flags. Accelerate steps a
    prepared scheduler once per process per optimisation step, hence the `* num_processes` (as the
    transformers no_trainer scripts do)."""
    groups = parameter_groups(
        model, args.learning_rate, args.weight_decay,
        getattr(args, "head_lr_multiplier", 1.0), getattr(args, "video_lr_multiplier", 1.0),
    )  # fmt: skip
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.98))
    warmup = math.ceil(args.warmup_ratio * max_train_steps)
    scheduler = get_scheduler(
        "cosine", optimizer, num_warmup_steps=warmup * num_processes, num_training_steps=max_train_steps * num_processes
    )
    return optimizer, scheduler


def training_length(args: argparse.Namespace, sampler: EpochBatchSampler) -> tuple[int, int, int]:
    """(steps per epoch, epochs, total optimisation steps); `--max_train_steps` wins over epochs."""
    batches_per_process = len(sampler) // sampler.num_replicas
    steps_per_epoch = math.ceil(batches_per_process / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    return steps_per_epoch, math.ceil(max_steps / steps_per_epoch), max_steps


# --------------------------------------------------------------------------------------------------
# The run and the loop's shared steps
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything the loop needs, prepared; each script adds what its loss and evaluation need."""

    args: argparse.Namespace
    accelerator: Accelerator
    model: torch.nn.Module
    processor: CloverProcessor
    optimizer: Any
    scheduler: Any
    data: Any  # the script's TrainData; `data.loader` is the prepared training loader
    steps_per_epoch: int
    num_epochs: int
    max_steps: int


RunType = TypeVar("RunType", bound=Run)


def prepare_run(
    run_type: type[RunType], args: argparse.Namespace, accelerator: Accelerator, model: torch.nn.Module,
    processor: CloverProcessor, data: Any, project: str, **extra: Any,
) -> RunType:
    """The no_trainer stages between the data and the loop: the optimizer and schedule for the run's
    length, `accelerator.prepare` of the model, optimizer, training loader (put back into `data.loader`)
    and scheduler, and the trackers. Returns the script's `run_type`, given its own fields in `extra`."""
    steps_per_epoch, num_epochs, max_steps = training_length(args, data.sampler)
    optimizer, scheduler = build_optimizer(model, args, accelerator.num_processes, max_steps)
    model, optimizer, data.loader, scheduler = accelerator.prepare(model, optimizer, data.loader, scheduler)
    init_tracking(accelerator, args, project)
    return run_type(
        args=args, accelerator=accelerator, model=model, processor=processor, optimizer=optimizer, scheduler=scheduler,
        data=data, steps_per_epoch=steps_per_epoch, num_epochs=num_epochs, max_steps=max_steps, **extra,
    )


@dataclass
class TrainState:
    """Where training is, saved in every checkpoint as `trainer_state.json`; each script subclasses it
    with its own counters (best score, loss sums...)."""

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # batches of `epoch` already trained on (this process's loader)
    skipped_clips: int = 0  # unreadable training clips met so far, all processes


State = TypeVar("State", bound=TrainState)


class EpochSeeded(Protocol):
    """A batch sampler or dataset whose random draws are a function of (seed, epoch)."""

    def set_epoch(self, epoch: int) -> None: ...


def set_epoch(loader: Any, epoch: int, seeded: Iterable[EpochSeeded]) -> None:
    """Data order and per-item random draws of `epoch` (a pure function of seed and epoch) for the batch
    sampler and datasets in `seeded`. The prepared loader is told too: Accelerate re-applies its own
    epoch counter to the sampler on each iteration, and that counter starts at 0 in a resumed run."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    for item in seeded:
        item.set_epoch(epoch)


def epoch_batches(accelerator: Accelerator, loader: Any, state: TrainState) -> Any:
    """This epoch's loader, skipping the batches a resumed run already trained on.

    The skipping loader keeps the prepared loader's epoch and its own `torch.Generator` (the scripts
    give every training loader one), so starting it draws nothing from the global RNG that dropout
    uses, and a resumed run trains exactly as an uninterrupted one."""
    if not state.batches_in_epoch:
        return loader
    logger.info(f"skipping the first {state.batches_in_epoch} batches of epoch {state.epoch} (already trained on)")
    skipping = accelerator.skip_first_batches(loader, state.batches_in_epoch)
    if hasattr(skipping, "set_epoch"):
        skipping.set_epoch(state.epoch)
    return skipping


def zero_loss(model: torch.nn.Module) -> torch.Tensor:
    """The loss of a batch whose clips were all unreadable: zero, but touching every trainable
    parameter, so that all processes take part in the gradient all-reduce and stay in step."""
    return sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)


def optimisation_step(run: Run, loss: torch.Tensor) -> None:
    """Backward, clip (on the step's last micro-batch) and step, inside the caller's
    `accelerator.accumulate(model)`, which makes the optimizer step only on sync."""
    run.accelerator.backward(loss)
    if run.accelerator.sync_gradients and run.args.max_grad_norm:
        run.accelerator.clip_grad_norm_(run.model.parameters(), run.args.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad()


def count_skipped(accelerator: Accelerator, batch: dict[str, Any]) -> int:
    """Unreadable clips of this batch, summed over processes."""
    skipped = torch.tensor(int(batch.get("skipped", 0)), device=accelerator.device)
    return int(accelerator.reduce(skipped, reduction="sum").item())


def train_loop(
    run: RunType,
    state: State,
    *,
    set_epoch: Callable[[RunType, int], None],
    micro_step: Callable[[RunType, State, dict[str, Any]], Any],
    step_done: Callable[[RunType, State, list[Any], dict[str, Any]], float | None],
    end_epoch: Callable[[RunType, State, int | None], None],
    evaluate: Callable[[RunType, State], None] | None = None,
) -> bool:
    """The training loop of both scripts, from `state` (fresh or resumed) to `run.max_steps`; False if
    `--stop_after_step` stopped it (a simulated crash). The script supplies its parts:

    - `set_epoch(run, epoch)`: seed the data for the epoch (see `set_epoch` here);
    - `micro_step(run, state, batch)`: train on one micro-batch, return what the step's log needs;
    - `step_done(run, state, outputs, batch)`: an optimisation step finished (`outputs` of its
      micro-batches, `batch` the last one): log it, return its loss for the progress bar;
    - `end_epoch(run, state, saved_at)`: move `state` to the next epoch and checkpoint it
      (`save_epoch_checkpoint`; `saved_at` is the step last checkpointed in this epoch);
    - `evaluate(run, state)`: every `--eval_steps` steps, after that step's checkpoint.
    """
    progress = tqdm(range(run.max_steps), initial=state.completed_steps, disable=not run.accelerator.is_local_main_process, desc="steps")
    run.model.train()
    while state.epoch < run.num_epochs and state.completed_steps < run.max_steps:
        set_epoch(run, state.epoch)
        outputs: list[Any] = []
        saved_at = None
        for batch in epoch_batches(run.accelerator, run.data.loader, state):
            outputs.append(micro_step(run, state, batch))
            state.batches_in_epoch += 1
            state.skipped_clips += count_skipped(run.accelerator, batch)
            if not run.accelerator.sync_gradients:
                continue
            state.completed_steps += 1
            progress.update(1)
            loss = step_done(run, state, outputs, batch)
            progress.set_postfix(loss="-" if loss is None else f"{loss:.3f}")
            outputs = []
            if checkpoint_if_due(run.accelerator, run.args, state):
                saved_at = state.completed_steps
            eval_steps = getattr(run.args, "eval_steps", None)
            if evaluate is not None and eval_steps and state.completed_steps % eval_steps == 0:
                evaluate(run, state)
            if stop_requested(run.args, state):
                return False
            if state.completed_steps >= run.max_steps:
                break
        end_epoch(run, state, saved_at)
    progress.close()
    return True


def stop_requested(args: argparse.Namespace, state: TrainState) -> bool:
    """`--stop_after_step` (debug) reached: the loop stops there without saving, like a crash."""
    if args.stop_after_step and state.completed_steps >= args.stop_after_step:
        logger.info(f"--stop_after_step {args.stop_after_step}: stopping without saving")
        return True
    return False


def resume_and_train(
    run: RunType, state_type: type[State], train: Callable[[RunType, State], bool], save_outputs: Callable[[RunType, State], dict[str, Any]]
) -> dict[str, Any] | None:
    """The no_trainer stages after `prepare`: resume (with `--resume_from_checkpoint`), the script's
    loop, its outputs unless `--stop_after_step` stopped the loop (as a crash would, leaving only
    checkpoints), and closing the trackers. Returns the final metrics, or None when stopped."""
    state = resume(run.accelerator, run.args, state_type)
    finished = train(run, state)
    metrics = save_outputs(run, state) if finished else None
    end_distributed(run.accelerator)
    return metrics


def append_train_log(args: argparse.Namespace, entry: dict[str, Any]) -> None:
    """One line of `train_log.jsonl` in the output directory (main process only)."""
    with (Path(args.output_dir) / "train_log.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def log_summary(run: Run, title: str, details: list[str]) -> None:
    """The no_trainer scripts' "***** Running training *****" block: `details` (what is trained on),
    then epochs, batch sizes and steps."""
    args, accelerator = run.args, run.accelerator
    total_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(f"***** {title} *****")
    for line in details:
        logger.info(f"  {line}")
    logger.info(f"  Num epochs = {run.num_epochs}")
    logger.info(f"  Instantaneous batch size per device = {args.per_device_train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch}")
    logger.info(f"  Gradient accumulation steps = {args.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {run.max_steps}")


# --------------------------------------------------------------------------------------------------
# Checkpoints: atomic save, rotation, resume
# --------------------------------------------------------------------------------------------------


def checkpoint_root(args: argparse.Namespace) -> Path:
    """`output_dir/checkpoints`, which holds one `step_N` folder per checkpoint."""
    return Path(args.output_dir) / "checkpoints"


def _step_of(path: Path) -> int:
    """N of a `step_N` folder; -1 for any other name."""
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
    accelerator.wait_for_everyone()  # every process has written its random states into temp before the rename
    if accelerator.is_main_process:
        write_json(temp / TRAINER_STATE, asdict(state))
        shutil.rmtree(final, ignore_errors=True)
        temp.rename(final)
        (final / COMPLETE_MARKER).write_text(f"step {state.completed_steps}\n", encoding="utf-8")
        _rotate_checkpoints(root, args.checkpoints_total_limit)
        logger.info(f"saved checkpoint {final}")
    accelerator.wait_for_everyone()
    return final


def checkpoint_if_due(accelerator: Accelerator, args: argparse.Namespace, state: TrainState) -> bool:
    """Save a checkpoint every `--checkpointing_steps` optimisation steps; True when one was saved."""
    if args.checkpointing_steps and state.completed_steps % args.checkpointing_steps == 0:
        save_checkpoint(accelerator, args, state)
        return True
    return False


def save_epoch_checkpoint(accelerator: Accelerator, args: argparse.Namespace, state: TrainState, saved_at: int | None) -> None:
    """The checkpoint at an epoch's end (`state` already counts the new epoch). When this very step was
    just saved by `--checkpointing_steps`, that checkpoint's trainer state predates the epoch change
    and is rewritten instead of saving the same weights again."""
    if saved_at != state.completed_steps or args.checkpointing_steps is None:
        save_checkpoint(accelerator, args, state)
    elif accelerator.is_main_process:
        write_json(checkpoint_root(args) / f"step_{state.completed_steps}" / TRAINER_STATE, asdict(state))


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


def resume(accelerator: Accelerator, args: argparse.Namespace, state_type: type[State]) -> State:
    """Restore model, optimizer, scheduler and RNG states and the `state_type` state of the checkpoint
    `--resume_from_checkpoint` names; a fresh state without that flag or without a complete checkpoint."""
    path = find_checkpoint(args) if args.resume_from_checkpoint else None
    if path is None:
        return state_type()
    accelerator.load_state(str(path))
    state = state_type(**json.loads((path / TRAINER_STATE).read_text(encoding="utf-8")))
    logger.info(f"resumed from {path}: step {state.completed_steps}, epoch {state.epoch}, {state.batches_in_epoch} batches into it")
    return state


# --------------------------------------------------------------------------------------------------
# Saving models and model cards
# --------------------------------------------------------------------------------------------------


def replace_model_files(temp: Path, directory: Path) -> None:
    """Move `temp`'s files into `directory` (each move atomic) and remove `temp`, keeping the
    directory's other contents (checkpoints/, logs, metrics)."""
    directory.mkdir(parents=True, exist_ok=True)
    for item in temp.iterdir():
        target = directory / item.name
        if target.is_dir():
            shutil.rmtree(target)
        item.replace(target)
    temp.rmdir()


def is_synthetic(path: Path) -> bool:
    """Whether `path` (a file or folder) is the synthetic benchmark's: it writes scenes.json next to its
    tgif/, msvd/ and webvid/ folders."""
    folder = path if path.is_dir() else path.parent
    return (folder / "scenes.json").is_file() or (folder.parent / "scenes.json").is_file()


def synthetic_warning(what: str) -> list[str]:
    """Model-card lines saying the model saw only `clover.data.synthetic`'s `what`."""
    return ["", f"**Trained on synthetic data** (the procedurally generated moving-shapes {what} of "
            "`clover.data.synthetic`): its numbers say nothing about real videos."]


def run_settings(run: Run, metrics: dict[str, Any]) -> dict[str, Any]:
    """The model card's settings both scripts report, after their own learning-rate and weight-decay
    rows: warm-up, clipping, batch sizes, steps, epochs, precision and seed."""
    args, accelerator = run.args, run.accelerator
    return {
        "warm-up ratio": args.warmup_ratio, "max grad norm": args.max_grad_norm,
        "batch (per device x processes x accumulation)": f"{args.per_device_train_batch_size} x {accelerator.num_processes} x {args.gradient_accumulation_steps}",
        "steps": metrics["completed_steps"], "epochs": metrics["epochs"], "mixed precision": accelerator.mixed_precision,
        "seed": args.seed,
    }


def settings_table(settings: dict[str, Any]) -> list[str]:
    """The model card's "Settings" section."""
    return ["", "## Settings", "", "| setting | value |", "| --- | --- |", *[f"| {key} | {value} |" for key, value in settings.items()]]

