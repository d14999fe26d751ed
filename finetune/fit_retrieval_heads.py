"""Fit a fine-tuned checkpoint's retrieval heads to its encoders again, for text-to-video search.

    python -m finetune.fit_retrieval_heads --model examples/checkpoint \\
        --train_csv data/synthetic/webvid/results.csv --video_root data/synthetic/webvid/videos \\
        --val_csv data/synthetic/webvid/results_val.csv

Question-answering fine-tuning moves the video and text encoders, and none of its losses reaches the
retrieval heads on top of them (`video_proj` on the mean-pooled video tokens, `text_proj` on the text
[CLS] state), which the app's search uses: after the demo recipe's fine-tuning they still map the
pre-training's features, and text-to-video R@1 on the benchmark's val captions falls from 50.5 % to
1.0 % (docs/results.md). This command encodes the caption pairs once with the encoders frozen
(evaluation's frames and crop), trains only the two heads on those features with the pre-training's
symmetric InfoNCE (the config's temperature) for `--epochs`, starting from their weights, and sets
their BatchNorm statistics to the exact ones of the training pairs: seconds of training after a
minute or two of encoding.

By default the text head reads the mean of the caption's token states from then on
(`--text_pooling mean`, saved as the config's `retrieval_text_pooling`), not the [CLS] state: the
fine-tuning makes the [CLS] state about the question asked, while the tokens keep what a caption says.
On the 2,000-step demo checkpoint the fitted heads reach R@1 61.5 % with the mean and 14.5 % with the [CLS]
state. Only the two heads and that setting change, and the answers use neither, so they stay the same.

The model's files are rewritten in place. With `--val_csv`, zero-shot retrieval on the held-out pairs
is measured before and after; both go into `metrics.json` ("retrieval_heads") and the model card.
`finetune.make_demo` runs this last on the demo checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python finetune/fit_retrieval_heads.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from clover.configuration_clover import RETRIEVAL_TEXT_POOLINGS
from clover.modeling_clover import CloverModel
from clover.processing_clover import CloverProcessor
from clover.retrieval import paired_retrieval, retrieval_markdown
from finetune import training
from finetune.common import end_distributed, write_json
from finetune.norm_statistics import load_model, save_weights
from finetune.pretrain import load_pairs, norm_statistics_loader, val_loader

logger = logging.getLogger("fit_retrieval_heads")

POOLING_WORDS = {"cls": "the [CLS] state", "mean": "the mean of the caption's token states"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m finetune.fit_retrieval_heads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved Clover checkpoint directory (a QA fine-tuning's, or any plain model)")
    parser.add_argument("--train_csv", required=True, help="caption pairs to fit the heads on (WebVid CSV or video, caption CSV)")
    parser.add_argument("--video_root", required=True, help="folder the CSV's clips are relative to")
    parser.add_argument(
        "--pairs", type=int, default=20000,
        help="training pairs to fit on, evenly spread over --train_csv (all of a smaller CSV); each is encoded once and kept in memory",
    )  # fmt: skip
    parser.add_argument("--val_csv", help="held-out pairs: zero-shot retrieval before and after")
    parser.add_argument("--val_video_root", help="folder of the val clips (defaults to --video_root)")
    parser.add_argument(
        "--text_pooling", choices=RETRIEVAL_TEXT_POOLINGS, default="mean",
        help="what the text head reads from now on (saved in the config as retrieval_text_pooling): the mean of "
        "the caption's token states (the default: fine-tuning for questions gives the [CLS] state to the "
        "question) or the [CLS] state, as in pre-training",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=20, help="passes over the encoded training pairs")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="AdamW's, for the two heads")
    parser.add_argument("--weight_decay", type=float, default=0.05)
    parser.add_argument("--fit_batch_size", type=int, default=64, help="pairs per contrastive batch while fitting")
    parser.add_argument("--batch_size", type=int, default=16, help="clips per batch while encoding")
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="of the fitting's batch order")
    training.add_clip_cache_argument(parser)
    parser.set_defaults(clip_cache_gb=0.0)  # every clip is read once
    args = parser.parse_args(argv)
    if args.pairs < 2:
        parser.error(f"--pairs must be at least 2 (a contrastive batch needs negatives), got {args.pairs}")
    for name in ("epochs", "fit_batch_size", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.learning_rate <= 0:
        parser.error(f"--learning_rate must be positive, got {args.learning_rate}")
    args.val_video_root = args.val_video_root or args.video_root
    return args


@dataclass
class PooledPairs:
    """The heads' inputs for caption pairs: mean-pooled video tokens and pooled text states
    (`CloverModel.pool_text`), row i a pair."""

    video: torch.Tensor  # (N, Cv)
    text: torch.Tensor  # (N, D)

    def __len__(self) -> int:
        return self.video.shape[0]


@torch.no_grad()
def encode_pairs(accelerator: Accelerator, clover: CloverModel, loader: Any, description: str) -> dict[str, PooledPairs]:
    """The frozen encoders' pooled features of the loader's readable pairs, in float32 on the CPU, with
    the text pooled each way the config allows: {"cls": ..., "mean": ...}."""
    clover.eval()
    video: list[torch.Tensor] = []
    text: dict[str, list[torch.Tensor]] = {pooling: [] for pooling in RETRIEVAL_TEXT_POOLINGS}
    for batch in tqdm(loader, desc=description, disable=not accelerator.is_local_main_process):
        if not batch["ids"]:  # no readable clip in the batch
            continue
        device, mask = accelerator.device, batch["attention_mask"].to(accelerator.device)
        with accelerator.autocast():
            tokens = clover.encode_video(batch["pixel_values"].to(device)).tokens  # (B, t, h, w, Cv)
            states = clover.encode_text(batch["input_ids"].to(device), mask)  # (B, L, D)
        video.append(tokens.flatten(1, 3).mean(1).float().cpu())  # (B, Cv)
        for pooling, parts in text.items():
            parts.append(clover.pool_text(states, mask, pooling).float().cpu())  # (B, D)
    if not video:
        raise SystemExit(f"{description}: no readable clip")
    return {pooling: PooledPairs(torch.cat(video), torch.cat(parts)) for pooling, parts in text.items()}


def head_embeddings(clover: CloverModel, pairs: PooledPairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (video, text) embeddings (N, E) of pooled features, as `get_*_features` make them."""
    return F.normalize(clover.video_proj(pairs.video), dim=-1), F.normalize(clover.text_proj(pairs.text), dim=-1)


@torch.no_grad()
def heads_retrieval(clover: CloverModel, pairs: PooledPairs) -> dict[str, dict[str, float]]:
    """Text-to-video and video-to-text retrieval of the pairs through the heads in evaluation mode."""
    was_training = clover.training
    clover.eval()
    video, text = head_embeddings(clover, pairs)
    clover.train(was_training)
    return paired_retrieval(text @ video.T)  # (N texts, N videos); pair i's text matches pair i's video


def fit_heads(clover: CloverModel, pairs: PooledPairs, epochs: int, learning_rate: float, weight_decay: float, batch_size: int, seed: int) -> list[float]:
    """Train `video_proj` and `text_proj` on the pairs with the symmetric InfoNCE at the config's
    temperature (the pre-training's alignment loss), everything else untouched; the mean loss per epoch."""
    heads = nn.ModuleList([clover.video_proj, clover.text_proj])
    optimizer = torch.optim.AdamW(heads.parameters(), lr=learning_rate, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    heads.train()
    losses = []
    for _ in tqdm(range(epochs), desc="fitting the heads", leave=False):
        epoch_losses = []
        for indices in torch.randperm(len(pairs), generator=generator).split(batch_size):
            if len(indices) < 2:  # a contrastive batch needs negatives (and BatchNorm two values)
                continue
            video, text = head_embeddings(clover, PooledPairs(pairs.video[indices], pairs.text[indices]))  # (b, E) each
            logits = text @ video.T / clover.config.temperature  # (b texts, b videos)
            targets = torch.arange(len(indices))
            loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_losses.append(loss.item())
        losses.append(sum(epoch_losses) / max(len(epoch_losses), 1))
    heads.eval()
    return losses


def record(directory: Path, result: dict[str, Any]) -> None:
    """metrics.json (where there is one) gets "retrieval_heads"; the model card a section."""
    metrics_path = directory / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        metrics["retrieval_heads"] = result
        write_json(metrics_path, metrics)
    card = directory / "README.md"
    if card.is_file() and result["after"]:
        section = (
            "\n## Retrieval heads fitted to the fine-tuned encoders\n\n"
            f"`python -m finetune.fit_retrieval_heads` trained the two retrieval heads for {result['epochs']} epochs on "
            f"{result['pairs']} pairs of `{result['train_csv']}`, the encoders frozen (the answers are unchanged); the text "
            f"head reads {POOLING_WORDS[result['text_pooling']['after']]} (`retrieval_text_pooling`). "
            f"Retrieval on the val pairs ({result['after']['text_to_video']['num_pairs']} pairs, R@K in %), before:\n\n"
            + retrieval_markdown(result["before"])
            + "\nafter:\n\n"
            + retrieval_markdown(result["after"])
        )
        card.write_text(card.read_text(encoding="utf-8").rstrip("\n") + "\n" + section, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    directory = Path(args.model)
    model, processor = load_model(directory), CloverProcessor.from_pretrained(directory)
    clover = model.base_model
    pooling_before = clover.config.retrieval_text_pooling
    accelerator = Accelerator()  # every process fits the same heads on the same pairs; the main one saves
    clover.to(accelerator.device)
    cache = training.clip_cache(args)
    train_loader = norm_statistics_loader(load_pairs(args.train_csv, args.video_root), processor, args.pairs, args.batch_size, args.num_workers, cache)
    if train_loader is None:
        raise SystemExit(f"{args.train_csv}: fitting needs at least 2 pairs with a clip")
    train = encode_pairs(accelerator, clover, train_loader, "encoding the training pairs")[args.text_pooling]
    val, before = None, {}
    if args.val_csv:
        loader = val_loader(load_pairs(args.val_csv, args.val_video_root), processor, args.batch_size, args.num_workers, cache)
        encoded = encode_pairs(accelerator, clover, loader, "encoding the val pairs")
        before, val = heads_retrieval(clover, encoded[pooling_before]), encoded[args.text_pooling]
    clover.cpu()
    clover.config.retrieval_text_pooling = args.text_pooling
    losses = fit_heads(clover, train, args.epochs, args.learning_rate, args.weight_decay, args.fit_batch_size, args.seed)
    clover.set_embedding_statistics(train.video, train.text)
    after = heads_retrieval(clover, val) if val else {}
    logger.info(f"retrieval heads fitted on {len(train)} pairs of {args.train_csv}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    result = {
        "pairs": len(train), "train_csv": str(args.train_csv), "text_pooling": {"before": pooling_before, "after": args.text_pooling},
        "epochs": args.epochs, "learning_rate": args.learning_rate,
        "first_loss": round(losses[0], 4), "final_loss": round(losses[-1], 4), "before": before, "after": after,
    }  # fmt: skip
    if accelerator.is_main_process:
        save_weights(model.cpu(), directory)
        record(directory, result)
    end_distributed(accelerator)
    if val:
        print("Before:\n" + retrieval_markdown(before) + "\nAfter:\n" + retrieval_markdown(after))
    return result


if __name__ == "__main__":
    main()
