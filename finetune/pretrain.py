"""Pre-train Clover on video-caption pairs (WebVid-style CSV) with Accelerate.

    accelerate launch finetune/pretrain.py \\
        --train_csv data/webvid/results_2M_train.csv --video_root data/webvid/videos \\
        --val_csv data/webvid/results_2M_val.csv --preset clover-base \\
        --text_backbone bert-base-uncased --video_swin_checkpoint swin_base_patch244_window877_kinetics400_22k.pth \\
        --output_dir runs/pretrain

Also runs as `python finetune/pretrain.py ...` and `python -m finetune.pretrain ...` (one process).
The script follows the order and the flag names of `finetune/train_qa.py`: arguments, Accelerator and
logging, seed, data, model and processor, optimizer and scheduler, `prepare`, resume, the training loop
(`accelerator.accumulate`), evaluation (`gather_for_metrics`) and saving. See docs/pretraining.md.

Objectives (`--objective`, written into the saved config): "clover" sums masked language modelling,
tri-modal alignment with video and with text as anchor, and pair-wise ranking (`--no_ranking_loss`,
`--no_masked_positives` switch parts off for ablations); "pairwise" is the baseline of plain
video-text InfoNCE plus MLM. The model computes the losses and masks the inputs itself, with a
torch.Generator this script seeds from (seed, process index, optimisation step, micro-batch), so the
masks are reproducible and a resumed run draws the same ones.

Exact resume: the data order is a function of (seed, epoch) alone (`PairBatchSampler`), each item's
random frames and crop of (seed, epoch, index) (`VideoCaptionDataset`), masks of the step, and
checkpoints hold model, optimizer, scheduler and RNG states plus `trainer_state.json`. A checkpoint is
written into a temporary folder, renamed, and gets its `COMPLETE` marker last.

The output directory is a `CloverForPretraining` checkpoint with its processor, `metrics.json` and a
model card; `CloverForVideoQA.from_pretrained(output_dir)` loads it (answer heads newly initialised),
and `finetune/train_qa.py --model output_dir` fine-tunes from it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python finetune/pretrain.py` / `accelerate launch finetune/pretrain.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from torch.utils.data import DataLoader

from clover.configuration_clover import CloverConfig
from clover.data.annotations import load_caption_pairs
from clover.data.datasets import VideoCaptionDataset
from clover.modeling_clover import CloverForPretraining, CloverForVideoQA, CloverModel
from clover.processing_clover import CloverProcessor
from clover.retrieval import paired_retrieval, retrieval_markdown
from finetune import training
from finetune.common import Collator, IndexedDataset, write_json

logger = get_logger(__name__)


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pre-train Clover on video-caption pairs.")
    data = parser.add_argument_group("data")
    data.add_argument("--train_csv", required=True, help="WebVid CSV (videoid, ..., page_dir, name) or a video, caption CSV")
    data.add_argument("--video_root", required=True, help="folder the CSV's clips are relative to")
    data.add_argument("--val_csv", help="held-out pairs for zero-shot retrieval after each epoch")
    data.add_argument("--val_video_root", help="folder of the val clips (defaults to --video_root)")
    data.add_argument("--num_workers", type=int, default=2)
    data.add_argument(
        "--norm_statistics_pairs", type=int, default=512,
        help="at the end of each epoch, before the retrieval evaluation and the checkpoint, set the retrieval "
             "heads' BatchNorm statistics to those of this many training pairs, spread over the CSV and read as "
             "evaluation reads them (0: keep the running averages; LayerNorm heads have none; docs/pretraining.md)",
    )  # fmt: skip
    training.add_clip_cache_argument(data)
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="a Clover checkpoint directory to continue from")
    model.add_argument("--preset", choices=["clover-tiny", "clover-base"], help="a new model of this size (instead of --model)")
    model.add_argument("--text_backbone", help="BERT name or directory the text and fusion encoders start from (with --preset)")
    model.add_argument("--video_swin_checkpoint", help="official Video Swin .pth the video encoder starts from (with --preset)")
    model.add_argument("--num_frames", type=int, help="frames per clip (with --preset; a checkpoint keeps its own)")
    model.add_argument("--config_overrides", help="with --preset: config fields to change, e.g. \"text_config.initializer_range=0.05,num_fusion_layers=3\"")
    model.add_argument("--objective", choices=["clover", "pairwise"], default="clover", help="Clover's objectives or the pair-wise baseline")
    model.add_argument("--no_ranking_loss", action="store_true", help="ablation: drop the pair-wise ranking terms")
    model.add_argument("--no_masked_positives", action="store_true", help="ablation: no masked caption/video positives")
    training.add_optimisation_arguments(parser, learning_rate=5e-5, num_train_epochs=40)
    training.add_run_arguments(parser)
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Cross-argument checks, reported like argparse's own errors."""
    training.check_model_arguments(parser, args, ["--text_backbone", "--video_swin_checkpoint", "--num_frames", "--config_overrides"])
    if args.objective == "pairwise" and (args.no_ranking_loss or args.no_masked_positives):
        parser.error("--no_ranking_loss and --no_masked_positives are ablations of --objective clover")
    args.val_video_root = args.val_video_root or args.video_root


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass
class PairData:
    """Caption pairs of one CSV with the clips that exist under the root (`missing`: rows without a clip)."""

    csv: str
    video_root: str
    pairs: list[dict[str, str]]
    missing: int


def load_pairs(csv: str, video_root: str) -> PairData:
    """The CSV's pairs whose clip exists; missing clips are counted (and logged), never fatal."""
    every = load_caption_pairs(csv)
    kept = [pair for pair in every if (Path(video_root) / pair["video"]).is_file()]
    if len(kept) < len(every):
        logger.warning(f"{csv}: {len(every) - len(kept)} of {len(every)} clips are missing under {video_root}; skipped")
    if not kept:
        raise SystemExit(f"{csv}: no clip found under {video_root} (is --video_root right?)")
    return PairData(str(csv), str(video_root), kept, len(every) - len(kept))


class PairBatchSampler(training.EpochBatchSampler):
    """Batches whose order depends only on (seed, epoch): per epoch the pairs are shuffled and cut into
    global batches (`finetune.training.EpochBatchSampler`), each contrastive batch full."""

    def __init__(self, size: int, batch_size: int, num_replicas: int = 1, seed: int = 0) -> None:
        super().__init__([size], batch_size, num_replicas, seed)

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches, in training order."""
        return self.full_batches(self.rng().permutation(self.sizes[0]))


@dataclass
class TrainData:
    """The training loader with its sampler and dataset (for set_epoch), and the val loader (or None)."""

    loader: DataLoader
    sampler: PairBatchSampler
    dataset: VideoCaptionDataset
    eval_loader: DataLoader | None
    train: PairData
    val: PairData | None
    statistics_loader: DataLoader | None = None  # training pairs read for evaluation, for the BatchNorm statistics


def build_dataloaders(args: argparse.Namespace, accelerator: Accelerator, processor: CloverProcessor) -> TrainData:
    """Training loader (random frames and crops) and val loader (segment centres, centre crop)."""
    train = load_pairs(args.train_csv, args.video_root)
    cache = training.clip_cache(args)
    dataset = VideoCaptionDataset(train.pairs, train.video_root, processor, training=True, seed=args.seed, clip_cache=cache)
    sampler = PairBatchSampler(len(dataset), args.per_device_train_batch_size, accelerator.num_processes, args.seed)
    loader = DataLoader(
        IndexedDataset(dataset),
        batch_sampler=sampler,
        collate_fn=Collator(processor),
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),  # keeps the global RNG untouched by the loader
    )
    val, eval_loader = None, None
    if args.val_csv:
        val = load_pairs(args.val_csv, args.val_video_root)
        eval_loader = val_loader(val, processor, args.per_device_eval_batch_size, args.num_workers, cache)
    statistics_loader = norm_statistics_loader(
        train, processor, args.norm_statistics_pairs, args.per_device_eval_batch_size, args.num_workers, cache
    )
    return TrainData(loader, sampler, dataset, eval_loader, train, val, statistics_loader)


def norm_statistics_loader(
    pairs: PairData, processor: CloverProcessor, count: int, batch_size: int, num_workers: int = 0, cache: Any = None
) -> DataLoader | None:
    """`count` of the pairs, evenly spread over the CSV, with evaluation's frames and crop (None for
    fewer than 2). Not prepared: every process reads all of them and so computes the same statistics."""
    count = min(count, len(pairs.pairs))
    if count < 2:
        return None
    chosen = sorted({int(i) for i in np.linspace(0, len(pairs.pairs) - 1, count).round()})
    dataset = VideoCaptionDataset([pairs.pairs[i] for i in chosen], pairs.video_root, processor, training=False, clip_cache=cache)
    return DataLoader(IndexedDataset(dataset), batch_size=batch_size, shuffle=False, collate_fn=Collator(processor), num_workers=num_workers)


def val_loader(pairs: PairData, processor: CloverProcessor, batch_size: int, num_workers: int = 0, cache: Any = None) -> DataLoader:
    """The val pairs in order, with evaluation's frames and crop (segment centres, centre crop)."""
    dataset = VideoCaptionDataset(pairs.pairs, pairs.video_root, processor, training=False, clip_cache=cache)
    return DataLoader(IndexedDataset(dataset), batch_size=batch_size, shuffle=False, collate_fn=Collator(processor), num_workers=num_workers)


# --------------------------------------------------------------------------------------------------
# Model and processor
# --------------------------------------------------------------------------------------------------


def objective_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the objective flags set (saved with the model, read by its forward)."""
    return {
        "pretrain_objective": args.objective,
        "use_ranking_loss": not args.no_ranking_loss,
        "use_masked_positives": not args.no_masked_positives,
    }


def load_pretraining_model(directory: str | Path, **settings: Any) -> CloverForPretraining:
    """A saved Clover model as a pre-training model, `settings` overriding its config. A checkpoint
    saved without the MLM head (a video stage's `CloverModel`, a `CloverForVideoQA`) keeps its
    encoders and gets a new head, initialised as BERT's. It is loaded as the class it was saved as:
    `CloverForPretraining.from_pretrained` would build the same model but warn that the checkpoint
    "seem[s] corrupted", because the head's tied bias is absent from it, which is expected here."""
    config = CloverConfig.from_pretrained(directory, **settings)
    saved_as = {"CloverModel": CloverModel, "CloverForVideoQA": CloverForVideoQA}.get((config.architectures or [""])[0])
    if saved_as is None:
        return CloverForPretraining.from_pretrained(directory, **settings)
    model = CloverForPretraining(config)
    model.clover.load_state_dict(saved_as.from_pretrained(directory).base_model.state_dict())
    logger.info(f"{directory} holds a {saved_as.__name__}: its encoders load, the MLM head starts new")
    return model


def build_model(args: argparse.Namespace) -> CloverForPretraining:
    """From a Clover checkpoint (`--model`; a QA checkpoint's MLM head starts new) or a preset with
    optional pretrained backbones (`CloverForPretraining.from_backbones`)."""
    settings = objective_settings(args)
    if args.model:
        return load_pretraining_model(args.model, **settings)
    if args.num_frames:
        settings["num_frames"] = args.num_frames
    config = CloverConfig.from_preset(args.preset, **{**settings, **training.parse_config_overrides(args.config_overrides)})
    return CloverForPretraining.from_backbones(config, text_backbone=args.text_backbone, video_swin_checkpoint=args.video_swin_checkpoint)


def loss_names(config: CloverConfig) -> list[str]:
    """The named loss terms `CloverForPretraining.forward` returns for this config, in log order."""
    if config.pretrain_objective == "pairwise":
        return ["mlm", "itc_v2t", "itc_t2v"]
    names = ["mlm", "align_v_a2p", "align_v_p2a", "align_t_a2p", "align_t_p2a"]
    return names + (["rank_v", "rank_t"] if config.use_ranking_loss else [])


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass
class Run(training.Run):
    """Everything the loop needs, prepared (`finetune.training.Run`), and the named loss terms."""

    data: TrainData
    loss_names: list[str]
    statistics_step: int | None = None  # the step the BatchNorm statistics were last re-estimated at
    statistics_pairs: int = 0  # and from how many pairs


@dataclass
class TrainState(training.TrainState):
    """`finetune.training.TrainState` and the masks' micro-batch counter, the epoch's loss sums and
    the finished epochs' entries."""

    micro_batch: int = 0  # micro-batches of the current optimisation step (0 at every checkpoint)
    loss_sums: dict[str, float] = field(default_factory=dict)  # this epoch so far, all processes
    loss_count: int = 0  # micro-batches summed in loss_sums, all processes
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per finished epoch


def mask_generator(seed: int, process_index: int, step: int, micro_batch: int) -> torch.Generator:
    """The generator the model masks a micro-batch with: a function of (seed, process, step, micro-batch)
    alone, so masks differ between processes and steps but are the same in a resumed run."""
    state = np.random.SeedSequence([seed, process_index, step, micro_batch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def training_losses(run: Run, batch: dict[str, Any], state: TrainState) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """(total loss, named terms) of a batch; a zero loss and no named terms when all its clips were
    unreadable."""
    if not batch["ids"]:
        return training.zero_loss(run.model), None
    generator = mask_generator(run.args.seed, run.accelerator.process_index, state.completed_steps, state.micro_batch)
    output = run.model(
        batch["pixel_values"], batch["input_ids"], batch["attention_mask"], tokenizer=run.processor.tokenizer, generator=generator
    )
    if sorted(output.losses) != sorted(run.loss_names):
        raise RuntimeError(f"the model returned losses {sorted(output.losses)}, expected {sorted(run.loss_names)}")
    return output.loss, output.losses


def train_step(run: Run, batch: dict[str, Any], state: TrainState) -> dict[str, torch.Tensor] | None:
    """Forward, backward, clip, step inside `accelerator.accumulate` (steps only on sync). Returns the
    named terms (detached) or None for an empty batch."""
    with run.accelerator.accumulate(run.model):
        loss, losses = training_losses(run, batch, state)
        training.optimisation_step(run, loss)
    return None if losses is None else {name: value.detach() for name, value in losses.items()}


def add_losses(run: Run, state: TrainState, losses: dict[str, torch.Tensor] | None) -> dict[str, float]:
    """Add a micro-batch's named terms, summed over processes, to the epoch's sums; return this
    micro-batch's means over the processes that had a readable batch (empty when none had)."""
    device = run.accelerator.device
    values = [losses[name].float().to(device) if losses else torch.zeros((), device=device) for name in run.loss_names]
    local = torch.stack([*values, torch.tensor(1.0 if losses else 0.0, device=device)])  # (K + 1,)
    total = run.accelerator.reduce(local, reduction="sum").tolist()
    count = int(total[-1])
    if not count:
        return {}
    for name, value in zip(run.loss_names, total):
        state.loss_sums[name] = state.loss_sums.get(name, 0.0) + value
    state.loss_count += count
    return {name: value / count for name, value in zip(run.loss_names, total)}


def log_step(run: Run, state: TrainState, step_losses: list[dict[str, float]]) -> float | None:
    """Log the optimisation step's mean named losses to the trackers and train_log.jsonl; return their
    sum (None when no process had a readable batch)."""
    step_losses = [losses for losses in step_losses if losses]
    if not step_losses:
        return None
    means = {name: float(np.mean([losses[name] for losses in step_losses])) for name in run.loss_names}
    entry = {"loss": sum(means.values()), **means, "lr": run.scheduler.get_last_lr()[0]}
    run.accelerator.log({f"train_{key}" if key != "lr" else key: value for key, value in entry.items()}, step=state.completed_steps)
    if run.accelerator.is_main_process:
        training.append_train_log(run.args, {"step": state.completed_steps, "epoch": state.epoch, **entry})
    return entry["loss"]


def set_epoch(run: Run, epoch: int) -> None:
    """Seed the training sampler and dataset for `epoch` (`finetune.training.set_epoch`)."""
    training.set_epoch(run.data.loader, epoch, [run.data.sampler, run.data.dataset])


def train(run: Run, state: TrainState) -> bool:
    """The training loop (`finetune.training.train_loop`); False if stopped by `--stop_after_step`."""
    return training.train_loop(run, state, set_epoch=set_epoch, micro_step=micro_step, step_done=step_done, end_epoch=end_epoch)


def micro_step(run: Run, state: TrainState, batch: dict[str, Any]) -> dict[str, float]:
    """`train_step`, its named losses added to the epoch's sums; counts the step's micro-batches (the masks' seed)."""
    losses = add_losses(run, state, train_step(run, batch, state))
    state.micro_batch += 1
    return losses


def step_done(run: Run, state: TrainState, step_losses: list[dict[str, float]], batch: dict[str, Any]) -> float | None:
    """Log the finished optimisation step and restart the micro-batch count; the step's total loss."""
    state.micro_batch = 0
    return log_step(run, state, step_losses)


def end_epoch(run: Run, state: TrainState, saved_at: int | None) -> None:
    """Log the epoch's mean losses, skipped clips and val retrieval; then checkpoint (unless this step
    was just saved, in which case its trainer state is brought up to date)."""
    losses = {name: value / state.loss_count for name, value in state.loss_sums.items()} if state.loss_count else {}
    entry: dict[str, Any] = {"epoch": state.epoch, "step": state.completed_steps, "losses": losses, "skipped_clips": state.skipped_clips}
    recompute_norm_statistics(run, state)
    retrieval = evaluate_retrieval(run)
    if retrieval:
        entry["retrieval"] = retrieval
    logger.info(_epoch_message(entry))
    flat = {f"epoch_{name}": value for name, value in losses.items()}
    flat.update({f"val_{direction}_{key}": value for direction, metrics in retrieval.items() for key, value in metrics.items() if key != "num_pairs"})
    run.accelerator.log({**flat, "skipped_clips": state.skipped_clips}, step=state.completed_steps)
    state.history.append(entry)
    state.epoch += 1
    state.batches_in_epoch, state.loss_sums, state.loss_count = 0, {}, 0
    training.save_epoch_checkpoint(run.accelerator, run.args, state, saved_at)


def _epoch_message(entry: dict[str, Any]) -> str:
    losses = ", ".join(f"{name} {value:.4f}" for name, value in entry["losses"].items())
    message = f"epoch {entry['epoch']} (step {entry['step']}): {losses or 'no readable batch'}; unreadable clips so far {entry['skipped_clips']}"
    t2v = entry.get("retrieval", {}).get("text_to_video")
    if t2v:
        message += (
            f"; val text-to-video R@1 {100 * t2v['R@1']:.1f} R@5 {100 * t2v['R@5']:.1f} "
            f"R@10 {100 * t2v['R@10']:.1f} median rank {t2v['median_rank']:.1f} ({t2v['num_pairs']} pairs)"
        )
    return message


# --------------------------------------------------------------------------------------------------
# Evaluation: zero-shot retrieval on the val pairs
# --------------------------------------------------------------------------------------------------


def recompute_norm_statistics(run: Run, state: TrainState) -> None:
    """Set the retrieval heads' BatchNorm statistics from `--norm_statistics_pairs` training pairs
    (`CloverModel.recompute_embedding_statistics`): the running averages trail training and put one
    offset into every embedding (docs/pretraining.md). Once per step at most."""
    if run.data.statistics_loader is None or run.statistics_step == state.completed_steps:
        return
    pairs = set_norm_statistics(run.accelerator, run.accelerator.unwrap_model(run.model).clover, run.data.statistics_loader)
    run.statistics_step, run.statistics_pairs = state.completed_steps, pairs
    if pairs:
        logger.info(f"retrieval heads' BatchNorm statistics set from {pairs} training pairs")


def set_norm_statistics(accelerator: Accelerator, clover: CloverModel, loader: DataLoader) -> int:
    """`CloverModel.recompute_embedding_statistics` over the loader's readable pairs; their number."""
    with accelerator.autocast():
        return clover.recompute_embedding_statistics(batch for batch in loader if batch["ids"])


def embed_batch(accelerator: Accelerator, clover: CloverModel, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (video, text) embeddings (N, E) for every slot of the batch (zeros where the clip was
    unreadable), so that all processes gather tensors of the same shape."""
    kept = batch["kept"]
    video = torch.zeros(kept.shape[0], clover.config.embed_dim, device=kept.device)  # (N, E)
    text = torch.zeros_like(video)
    if batch["ids"]:
        with torch.no_grad(), accelerator.autocast():
            video[kept] = clover.get_video_features(batch["pixel_values"]).float()  # (B, E)
            text[kept] = clover.get_text_features(batch["input_ids"], batch["attention_mask"]).float()  # (B, E)
    return video, text


def evaluate_retrieval(run: Run) -> dict[str, dict[str, float]]:
    """Text-to-video and video-to-text retrieval over the val pairs (`measure_retrieval`); {} without them."""
    if run.data.eval_loader is None:
        return {}
    run.model.eval()
    retrieval = measure_retrieval(run.accelerator, run.accelerator.unwrap_model(run.model).clover, run.data.eval_loader)
    run.model.train()
    return retrieval


def measure_retrieval(accelerator: Accelerator, clover: CloverModel, loader: DataLoader) -> dict[str, dict[str, float]]:
    """Text-to-video and video-to-text retrieval over the loader's pairs, embeddings gathered from all
    processes with `gather_for_metrics` (which drops the padding of the last batch). Pairs whose clip
    is unreadable are left out of both sides (their count is in `num_pairs`'s shortfall)."""
    parts: dict[str, list[torch.Tensor]] = {"indices": [], "kept": [], "video": [], "text": []}
    for batch in loader:
        video, text = embed_batch(accelerator, clover, batch)
        gathered = accelerator.gather_for_metrics({"indices": batch["indices"], "kept": batch["kept"], "video": video, "text": text})
        for name, tensor in gathered.items():
            parts[name].append(tensor.cpu())
    every = {name: torch.cat(tensors) for name, tensors in parts.items()}
    order = every["indices"].argsort()
    kept = every["kept"][order]
    video, text = every["video"][order][kept], every["text"][order][kept]  # (P, E) in pair order
    return paired_retrieval(text @ video.T)  # (P texts, P videos); pair i's text matches pair i's video


# --------------------------------------------------------------------------------------------------
# Final outputs
# --------------------------------------------------------------------------------------------------


def final_metrics(run: Run, state: TrainState) -> dict[str, Any]:
    """metrics.json: objective, data, the last epoch's losses and retrieval, and every epoch's entry."""
    config = run.accelerator.unwrap_model(run.model).config
    last = state.history[-1] if state.history else {}
    return {
        "objective": {key: getattr(config, key) for key in ("pretrain_objective", "use_ranking_loss", "use_masked_positives")},
        "completed_steps": state.completed_steps,
        "epochs": state.epoch,
        "train_pairs": len(run.data.train.pairs),
        "missing_training_clips": run.data.train.missing,
        "skipped_training_clips": state.skipped_clips,
        "val_pairs": len(run.data.val.pairs) if run.data.val else 0,
        "final_losses": last.get("losses", {}),
        "retrieval": last.get("retrieval", {}),
        **({"norm_statistics": {"pairs": run.statistics_pairs, "train_csv": run.args.train_csv}} if run.statistics_pairs else {}),
        "history": state.history,
    }


def model_card(run: Run, metrics: dict[str, Any]) -> str:
    """README.md of the output directory: objective, data, settings, final losses and retrieval."""
    args, data = run.args, run.data
    objective = metrics["objective"]
    start = args.model or f"{args.preset} (new{', text from ' + args.text_backbone if args.text_backbone else ''}" + (
        f", video from {Path(args.video_swin_checkpoint).name})" if args.video_swin_checkpoint else ")"
    )
    lines = [
        "---", "library_name: transformers", "tags: [video-text-retrieval, video-question-answering, clover]", "---", "",
        f"# Clover pre-trained ({objective['pretrain_objective']} objective)", "",
        f"Started from `{start}`; trained with `finetune/pretrain.py`. A `CloverForPretraining` checkpoint: "
        "`CloverForVideoQA.from_pretrained` loads it with new answer heads, and `finetune/train_qa.py --model` fine-tunes it.",
        "", "## Objective", "", _objective_text(objective),
    ]
    if training.is_synthetic(Path(data.train.csv)):
        lines += training.synthetic_warning("clips")
    lines += ["", "## Data", "", "| split | CSV | videos | pairs | missing clips |", "| --- | --- | --- | --- | --- |"]
    for name, pairs in (("train", data.train), ("val", data.val)):
        if pairs is not None:
            lines.append(f"| {name} | `{pairs.csv}` | `{pairs.video_root}` | {len(pairs.pairs)} | {pairs.missing} |")
    lines += training.settings_table({
        "learning rate": args.learning_rate, "weight decay (rank >= 2 only)": args.weight_decay,
        **training.run_settings(run, metrics), "unreadable training clips": metrics["skipped_training_clips"],
    })
    if metrics["final_losses"]:
        lines += ["", "## Final losses (mean over the last epoch)", "", "| loss | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in metrics["final_losses"].items()]
    if metrics["retrieval"]:
        num_pairs = metrics["retrieval"]["text_to_video"]["num_pairs"]
        lines += ["", f"## Zero-shot retrieval on the val pairs ({num_pairs} pairs, R@K in %)", "", retrieval_markdown(metrics["retrieval"]).rstrip()]
    if "norm_statistics" in metrics:
        lines += ["", f"The retrieval heads' BatchNorm statistics are those of {metrics['norm_statistics']['pairs']} training pairs (`--norm_statistics_pairs`)."]
    return "\n".join(lines) + "\n"


def _objective_text(objective: dict[str, Any]) -> str:
    if objective["pretrain_objective"] == "pairwise":
        return "Pair-wise baseline: video-text InfoNCE in both directions (`itc_v2t`, `itc_t2v`) and masked language modelling (`mlm`)."
    parts = ["masked language modelling (`mlm`)", "tri-modal alignment with video and with text as anchor (`align_*`)"]
    if objective["use_ranking_loss"]:
        parts.append("pair-wise ranking (`rank_v`, `rank_t`)")
    text = "Clover: " + ", ".join(parts) + ", summed with equal weight."
    if not objective["use_masked_positives"]:
        text += " Ablation: the masked caption and masked video are not used as extra positives."
    if not objective["use_ranking_loss"]:
        text += " Ablation: no ranking loss."
    return text


def save_outputs(run: Run, state: TrainState) -> dict[str, Any]:
    """metrics.json, README.md, then the model and processor, written into a temporary folder and moved
    into the output directory file by file (its checkpoints/ and logs stay)."""
    recompute_norm_statistics(run, state)  # done at the epoch's end, unless the run resumed after it
    metrics = final_metrics(run, state)
    output = Path(run.args.output_dir)
    run.accelerator.wait_for_everyone()
    if run.accelerator.is_main_process:
        temp = output / ".tmp_model"
        shutil.rmtree(temp, ignore_errors=True)
        run.accelerator.unwrap_model(run.model).save_pretrained(temp)
        run.processor.save_pretrained(temp)
        write_json(temp / "metrics.json", metrics)
        (temp / "README.md").write_text(model_card(run, metrics), encoding="utf-8")
        training.replace_model_files(temp, output)
        logger.info(f"saved the pre-trained model to {output}")
    run.accelerator.wait_for_everyone()
    return metrics


def log_summary(run: Run) -> None:
    """The objective and the pairs, then `finetune.training.log_summary`'s lines."""
    train, val = run.data.train, run.data.val
    training.log_summary(run, "Running pre-training", [
        f"Objective = {run.args.objective} (losses: {', '.join(run.loss_names)})",
        f"Num pairs = {len(train.pairs)} (missing clips skipped: {train.missing})",
        f"Num val pairs = {len(val.pairs) if val else 0}",
    ])


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def setup(args: argparse.Namespace) -> Run:
    """Every stage before the loop, in the no_trainer order, ending with `prepare` and the summary log."""
    accelerator = training.setup_accelerator(args)
    model = build_model(args)
    processor = training.build_processor(args, model.config)
    data = build_dataloaders(args, accelerator, processor)
    run = training.prepare_run(Run, args, accelerator, model, processor, data, "clover_pretrain", loss_names=loss_names(model.config))
    log_summary(run)
    if data.eval_loader is not None:
        data.eval_loader = accelerator.prepare(data.eval_loader)
    return run


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Pre-train, evaluate and save; returns the final metrics (None when stopped by --stop_after_step)."""
    return training.resume_and_train(setup(parse_args(argv)), TrainState, train, save_outputs)


if __name__ == "__main__":
    main()
