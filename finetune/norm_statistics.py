"""Set a saved checkpoint's retrieval-head BatchNorm statistics from caption pairs, and measure retrieval.

    python -m finetune.norm_statistics --model runs/pretrain \\
        --train_csv data/synthetic/webvid/results.csv --video_root data/synthetic/webvid/videos \\
        --val_csv data/synthetic/webvid/results_val.csv

`finetune/pretrain.py` does this itself at the end of every epoch (`--norm_statistics_pairs`). This
command does it for a checkpoint made before it did (a fine-tuned model, whose encoders have moved since
its pre-training, needs its heads fitted again: `finetune.fit_retrieval_heads`). The running averages
that BatchNorm keeps in training trail the training and add one offset to every embedding, which costs
zero-shot retrieval up to half its R@1 (docs/pretraining.md); this sets them to the exact mean and
variance over `--pairs` training pairs read as evaluation reads them (`CloverModel.
recompute_embedding_statistics`). Only those buffers change: the question-answering heads do not use
the retrieval heads, so the answers stay the same.

The model's weights file is rewritten in place. With `--val_csv`, zero-shot retrieval on the val pairs
is measured before and after and printed; the checkpoint's `metrics.json`, where it has a "retrieval"
entry (a pre-training run's), gets the new figures, the old ones under "retrieval_before_norm_statistics"
and the settings under "norm_statistics", and the model card a section with the new figures. Checkpoints whose heads end in LayerNorm have no statistics:
the command says so and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python finetune/norm_statistics.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from accelerate import Accelerator

from clover.configuration_clover import CloverConfig
from clover.modeling_clover import CloverForPretraining, CloverForVideoQA, CloverModel
from clover.processing_clover import CloverProcessor
from clover.retrieval import retrieval_markdown
from finetune import training
from finetune.common import end_distributed, write_json
from finetune.pretrain import load_pairs, measure_retrieval, norm_statistics_loader, set_norm_statistics, val_loader

logger = logging.getLogger("norm_statistics")

SAVED_CLASSES = {"CloverModel": CloverModel, "CloverForVideoQA": CloverForVideoQA, "CloverForPretraining": CloverForPretraining}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m finetune.norm_statistics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved Clover checkpoint directory (pre-training, video stage or plain QA fine-tuning)")
    parser.add_argument("--train_csv", required=True, help="caption pairs the statistics come from (WebVid CSV or video, caption CSV)")
    parser.add_argument("--video_root", required=True, help="folder the CSV's clips are relative to")
    parser.add_argument("--pairs", type=int, default=512, help="pairs of --train_csv, evenly spread over it (as pretrain's --norm_statistics_pairs)")
    parser.add_argument("--val_csv", help="held-out pairs: zero-shot retrieval before and after")
    parser.add_argument("--val_video_root", help="folder of the val clips (defaults to --video_root)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=0)
    training.add_clip_cache_argument(parser)
    parser.set_defaults(clip_cache_gb=1.0)  # the val clips are read twice, before and after: decode them once
    args = parser.parse_args(argv)
    if args.pairs < 2:
        parser.error(f"--pairs must be at least 2 (a variance needs two values), got {args.pairs}")
    args.val_video_root = args.val_video_root or args.video_root
    return args


def load_model(directory: Path) -> torch.nn.Module:
    """The checkpoint as the class it was saved as (so that its every weight is saved back)."""
    if (directory / "adapter_config.json").is_file():
        raise SystemExit(f"{directory} is a LoRA adapter; this command needs a plain model (train_qa.py --merge_lora saves one)")
    config = CloverConfig.from_pretrained(directory)
    name = (config.architectures or ["CloverModel"])[0]
    if name not in SAVED_CLASSES:
        raise SystemExit(f"{directory}: a {name} checkpoint; expected one of {', '.join(SAVED_CLASSES)}")
    return SAVED_CLASSES[name].from_pretrained(directory).eval()


def update_metrics(directory: Path, before: dict[str, Any], after: dict[str, Any], settings: dict[str, Any]) -> None:
    """A pre-training run's metrics.json gets the new retrieval, keeping the old one beside it."""
    path = directory / "metrics.json"
    if not path.is_file():
        return
    metrics = json.loads(path.read_text(encoding="utf-8"))
    if "retrieval" not in metrics:
        return
    metrics.setdefault("retrieval_before_norm_statistics", before or metrics["retrieval"])
    metrics["retrieval"], metrics["norm_statistics"] = after, settings
    write_json(path, metrics)


def note_in_model_card(directory: Path, after: dict[str, Any], settings: dict[str, Any]) -> None:
    """The model card (README.md) gets a section with the retrieval measured after the change."""
    card = directory / "README.md"
    if not card.is_file() or not after:
        return
    pairs = next(iter(after.values()))["num_pairs"]
    section = (
        "\n## Retrieval heads' BatchNorm statistics re-estimated\n\n"
        f"`python -m finetune.norm_statistics` set them from {settings['pairs']} pairs of `{settings['train_csv']}`. "
        f"Zero-shot retrieval on the val pairs ({pairs} pairs, R@K in %) is now:\n\n" + retrieval_markdown(after)
    )
    card.write_text(card.read_text(encoding="utf-8").rstrip("\n") + "\n" + section, encoding="utf-8")


def save_weights(model: torch.nn.Module, directory: Path) -> None:
    """Rewrite the checkpoint's model files (weights and config) in place, each file moved atomically."""
    temp = directory / ".tmp_model_files"
    shutil.rmtree(temp, ignore_errors=True)
    model.save_pretrained(temp)
    training.replace_model_files(temp, directory)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    directory = Path(args.model)
    model, processor = load_model(directory), CloverProcessor.from_pretrained(directory)
    clover = model.base_model
    if not isinstance(clover.video_proj[-1], torch.nn.BatchNorm1d):
        logger.info(f"{directory}: the retrieval heads end in LayerNorm, which keeps no statistics; nothing to do")
        return {}
    accelerator = Accelerator()
    model.to(accelerator.device)
    cache, val = training.clip_cache(args), None
    if args.val_csv:  # prepared: its batches come on the model's device
        val = accelerator.prepare(val_loader(load_pairs(args.val_csv, args.val_video_root), processor, args.batch_size, args.num_workers, cache))
    before = measure_retrieval(accelerator, clover, val) if val else {}
    loader = norm_statistics_loader(load_pairs(args.train_csv, args.video_root), processor, args.pairs, args.batch_size, args.num_workers, cache)
    pairs = set_norm_statistics(accelerator, clover, loader)
    logger.info(f"retrieval heads' BatchNorm statistics set from {pairs} pairs of {args.train_csv}")
    after = measure_retrieval(accelerator, clover, val) if val else {}
    save_weights(model.cpu(), directory)
    settings = {"pairs": pairs, "train_csv": str(args.train_csv)}
    update_metrics(directory, before, after, settings)
    note_in_model_card(directory, after, settings)
    end_distributed(accelerator)
    if val:
        print("Before:\n" + retrieval_markdown(before) + "\nAfter:\n" + retrieval_markdown(after))
    return {"before": before, "after": after, **settings}


if __name__ == "__main__":
    main()
