"""How fast does a model setting learn the synthetic benchmark? Val accuracy against training steps.

    python benchmarks/qa_learning_curve.py --tasks tgif-frameqa --steps 3000 --learning_rate 5e-4
    python benchmarks/qa_learning_curve.py --config_overrides num_fusion_layers=3 --bf16   # on a GPU
    python benchmarks/qa_learning_curve.py --model runs/probe/actions2000   # from a trained video encoder

A tool for finding a recipe, not a recipe: the clips of the train and val splits are decoded once (the
segment-centre frames and centre crop that evaluation uses, no augmentation) into one tensor cached in
`--cache`, and `CloverForVideoQA` then trains from that tensor, so no step waits for a decoder and a
GPU is kept busy by one process. Each step takes a batch of one task, the task drawn with probability
proportional to its number of training questions to the power `--task_sampling_alpha` (the expected
shares of `finetune.train_qa`'s flag of the same name; 1, the default, is its proportional order).
Every `--eval_every` steps it prints one JSON line: the mean training loss per task over the last 50
steps of it, and val accuracy per task (FrameQA also per question type; Count: MSE of the rounded prediction).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clover import CloverConfig, CloverForVideoQA, CloverProcessor  # noqa: E402
from clover.tokenization import tiny_tokenizer  # noqa: E402
from finetune import training  # noqa: E402
from finetune.common import TaskData, count_limits_of, load_task, predict_batch  # noqa: E402
from finetune.make_demo import TASKS, ensure_benchmark  # noqa: E402
from finetune.train_qa import _dataset, head_settings, subsample  # noqa: E402

SPLITS = ("train", "val")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic", help="the benchmark (generated with seed 0 when missing)")
    parser.add_argument("--cache", default="runs/learning_curve/clips.pt", help="decoded clips and questions (built when missing)")
    parser.add_argument("--tasks", nargs="+", default=[task for task, _, _ in TASKS], choices=[task for task, _, _ in TASKS])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--head_lr_multiplier", type=float, default=5.0)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--task_sampling_alpha", type=float, default=1.0,
                        help="each step's task drawn with probability ~ its number of training questions to this power")
    parser.add_argument("--train_fraction", type=float, default=1.0,
                        help="train on this seeded fraction of each task's training questions (as finetune.train_qa's flag)")
    parser.add_argument("--warmup_steps", type=int, default=100, help="linear warm-up, then a constant rate")
    parser.add_argument("--config_overrides", help='clover-tiny settings to change, e.g. "num_fusion_layers=3"')
    parser.add_argument("--model", help="start from this Clover model directory (e.g. `video_probe.py --save`'s) instead of random clover-tiny")
    parser.add_argument("--eval_every", type=int, default=250)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (on a GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes for building the cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time_limit", type=float, help="stop at the first evaluation after this many seconds")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# The decoded cache
# --------------------------------------------------------------------------------------------------


def load_tasks(data: Path) -> list[TaskData]:
    """The benchmark's five question sets, train and val splits, as the real loaders read them."""
    return [load_task(task, data / folder, data / videos, splits=SPLITS) for task, folder, videos in TASKS]


def build_cache(data: Path, workers: int) -> dict[str, Any]:
    """Every question of the train and val splits as tensors, and each distinct clip decoded once.

    Returns {"settings": the heads' config fields, "clips": (N, T, 3, S, S) float16,
    "tasks": {task: {"kind", split: {"clip" (Q,), "input_ids", "attention_mask", "labels", ...}}}}.
    """
    tasks = load_tasks(data)
    settings = head_settings(tasks)
    processor = CloverProcessor.from_config(CloverConfig.from_preset("clover-tiny", **settings), tiny_tokenizer())
    clip_index: dict[str, int] = {}
    clips: list[torch.Tensor] = []
    cache: dict[str, Any] = {"settings": settings, "tasks": {}}
    for task in tasks:
        cache["tasks"][task.name] = {"kind": task.kind}
        for split in SPLITS:
            items = decode_split(task, split, processor, settings.get("label2id", {}), workers, clip_index, clips)
            batch = processor.collate(items)  # text tensors and labels of every question; pixel_values dropped below
            entry = {name: value for name, value in batch.items() if torch.is_tensor(value) and name != "pixel_values"}
            entry["clip"] = torch.tensor([item["clip"] for item in items])  # (Q,) rows of `clips`
            entry["types"] = batch["types"]
            cache["tasks"][task.name][split] = entry
    cache["clips"] = torch.stack(clips)  # (N, T, 3, S, S)
    return cache


def decode_split(
    task: TaskData, split: str, processor: CloverProcessor, label2id: dict[str, int], workers: int,
    clip_index: dict[str, int], clips: list[torch.Tensor],
) -> list[dict[str, Any]]:  # fmt: skip
    """The split's items, each with `clip` (its row in `clips`, appended to when new) and a placeholder
    for its pixels. Each clip is decoded once, however many questions ask about it (FrameQA and the
    MSVD-style set have several per clip). Unreadable clips are an error here: a benchmark the tool
    measures must be whole."""
    texts = _dataset(task, split, processor, label2id, seed=0, train=False, video_input="none")
    videos = _dataset(task, split, processor, label2id, seed=0, train=False, video_input="full")
    keys = [str(record["video_path"]) for record in texts.records]
    first_asked: dict[str, int] = {}  # each new clip -> the first question that asks about it
    for index, key in enumerate(keys):
        if key not in clip_index:
            first_asked.setdefault(key, index)
    loader = DataLoader(Subset(videos, list(first_asked.values())), batch_size=64, num_workers=workers, collate_fn=list)
    decoded = (item for chunk in tqdm(loader, desc=f"decoding {task.name} {split}", leave=False) for item in chunk)
    for index, item in zip(first_asked.values(), decoded, strict=True):  # the loader keeps the subset's order
        if item is None:
            raise SystemExit(f"{keys[index]}: unreadable (run python -m finetune.check_data)")
        clip_index[keys[index]] = len(clips)
        clips.append(item["pixel_values"].half())  # (T, 3, S, S)
    return [{**texts[index], "clip": clip_index[key], "pixel_values": torch.zeros(0)} for index, key in enumerate(keys)]


def load_cache(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.cache)
    if not path.exists():
        ensure_benchmark(Path(args.data), seed=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(build_cache(Path(args.data), args.workers), path)
    cache = torch.load(path, weights_only=False)
    if any("candidate_token_mask" not in task["train"] for task in cache["tasks"].values() if task["kind"] == "mc"):
        raise SystemExit(f"{path} was built by an older version of this tool (no candidate_token_mask): delete it to rebuild")
    return cache


# --------------------------------------------------------------------------------------------------
# Training from the cache
# --------------------------------------------------------------------------------------------------


def model_batch(clips: torch.Tensor, entry: dict[str, Any], index: torch.Tensor, kind: str) -> dict[str, Any]:
    """`CloverForVideoQA` inputs for the questions at `index` of a split's entry."""
    device = clips.device
    batch = {
        "pixel_values": clips[entry["clip"][index].to(device)].float(),  # (B, T, 3, S, S)
        "input_ids": entry["input_ids"][index].to(device),
        "attention_mask": entry["attention_mask"][index].to(device),
        "head": kind,
    }
    if kind == "mc":
        batch["candidate_mask"] = entry["candidate_mask"][index].to(device)
        batch["candidate_token_mask"] = entry["candidate_token_mask"][index].to(device)
    return batch


@torch.no_grad()
def evaluate(model: CloverForVideoQA, clips: torch.Tensor, tasks: dict[str, Any], bf16: bool) -> dict[str, float]:
    """Val accuracy in % per task (FrameQA also per type as `tgif-frameqa/<type>`), Count MSE."""
    model.eval()
    results: dict[str, float] = {}
    for name, task in tasks.items():
        entry, kind = task["val"], task["kind"]
        predictions = []
        for start in range(0, len(entry["labels"]), 128):
            index = torch.arange(start, min(len(entry["labels"]), start + 128))
            batch = {**model_batch(clips, entry, index, kind), "kept": torch.ones(len(index), dtype=torch.bool, device=clips.device), "ids": index.tolist()}
            with torch.autocast(clips.device.type, dtype=torch.bfloat16, enabled=bf16):
                values, _ = predict_batch(model, batch, kind, count_limits_of(model.config))  # (N,) class, candidate or count
            predictions.append(values.cpu())
        predicted, labels = torch.cat(predictions).float(), entry["labels"].float()
        if kind == "count":
            results[name] = round(float(((predicted - labels) ** 2).mean()), 3)
            continue
        correct = (predicted == labels).float()
        results[name] = round(100 * float(correct.mean()), 1)
        if name == "tgif-frameqa":
            for question_type in sorted(set(entry["types"])):
                chosen = torch.tensor([t == question_type for t in entry["types"]])
                results[f"{name}/{question_type}"] = round(100 * float(correct[chosen].mean()), 1)
    model.train()
    return results


def with_train_fraction(task: dict[str, Any], fraction: float, seed: int) -> dict[str, Any]:
    """The task with only a seeded `fraction` of its training questions, chosen as `finetune.train_qa` chooses."""
    entry = task["train"]
    keep = subsample(list(range(len(entry["labels"]))), fraction, seed)
    index = torch.tensor(keep)
    train = {key: value[index] if torch.is_tensor(value) else [value[i] for i in keep] for key, value in entry.items()}
    return {**task, "train": train}


def train(args: argparse.Namespace, cache: dict[str, Any]) -> list[dict[str, Any]]:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    clips = cache["clips"].to(device)
    tasks = {name: with_train_fraction(cache["tasks"][name], args.train_fraction, args.seed) for name in args.tasks}
    overrides = training.parse_config_overrides(args.config_overrides)
    if args.model:  # the heads the benchmark needs start new; overrides change the loaded config
        model = CloverForVideoQA.from_pretrained(args.model, ignore_mismatched_sizes=True, **cache["settings"], **overrides)
    else:
        model = CloverForVideoQA(CloverConfig.from_preset("clover-tiny", **{**cache["settings"], **overrides}))
    model = model.to(device)
    optimizer = torch.optim.AdamW(training.parameter_groups(model, args.learning_rate, args.weight_decay, args.head_lr_multiplier))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / args.warmup_steps))
    names = list(tasks)
    sizes = torch.tensor([len(tasks[name]["train"]["labels"]) for name in names], dtype=torch.float)
    shares = sizes**args.task_sampling_alpha  # (T,) unnormalised draw weights
    generator = torch.Generator().manual_seed(args.seed)
    losses: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    began, curve = time.time(), []
    for step in tqdm(range(1, args.steps + 1), desc="training"):
        name = names[int(torch.multinomial(shares, 1, generator=generator))]
        entry, kind = tasks[name]["train"], tasks[name]["kind"]
        index = torch.randint(0, len(entry["labels"]), (args.batch_size,), generator=generator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(**model_batch(clips, entry, index, kind), labels=entry["labels"][index].to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses[name].append(loss.detach())
        if step % args.eval_every == 0 or step == args.steps:
            point = {
                "step": step, "seconds": round(time.time() - began), "questions": step * args.batch_size,
                "train_loss": {n: round(float(torch.stack(v[-50:]).mean()), 3) for n, v in losses.items() if v},
                "val": evaluate(model, clips, tasks, args.bf16),
            }  # fmt: skip
            curve.append(point)
            tqdm.write(json.dumps(point))
            sys.stdout.flush()  # one line per evaluation, also when stdout is a file
            if args.time_limit is not None and time.time() - began > args.time_limit:
                break
    return curve


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    return train(args, load_cache(args))


if __name__ == "__main__":
    main()
