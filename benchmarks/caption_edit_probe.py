"""What a caption alignment tells apart: each clip against its own caption and against the caption
edited one way.

    python benchmarks/caption_edit_probe.py --model runs/report/pretrain-clover [--fused] --output runs/edits.json

For every pair of a synthetic caption CSV (default: the benchmark's 200 held-out pairs), the clip is
scored against its own caption and against copies edited one way, and the tool counts the clips whose
own caption scores higher (chance 50 %). Five edits keep every word of the caption and move one:

- `swap colours`, `swap shapes`, `swap actions`: the first two objects' colours, shapes or verb
  sequences exchanged ("a big red circle grows twice while a small blue star blinks" becomes "a big red
  circle blinks while a small blue star grows twice");
- `reverse order`: one object's actions in reverse order;
- `change count`: one action's count changed ("twice" to "three times"; never "stays still").

Three bring in a word the caption lacks (`new colour`, `new shape`, `new action`: a colour, a shape
or a repeatable action that none of its objects has): the controls, which a bag of words passes. An
alignment that is right on the controls and at chance on the word-keeping edits knows which words a
caption holds and not which object does what, or in what order.

Scores: the retrieval embeddings' cosine s(v, t), as zero-shot retrieval ranks captions; with
`--fused`, the caption fused with the clip, E_f(V, T), through `fused_video_proj` and compared with the
clip's embedding (Clover's tri-modal positive of the video anchor). The edits are drawn with `--seed`,
the same for every model. Captions must be the synthetic generator's (`clover.data.synthetic.caption`).

One JSON object is printed (and written to `--output`); a Markdown table row goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from clover import CloverProcessor  # noqa: E402
from clover.data import synthetic  # noqa: E402
from clover.modeling_clover import CloverModel  # noqa: E402

WORD_KEEPING_EDITS = ("swap colours", "swap shapes", "swap actions", "reverse order", "change count")
NEW_WORD_EDITS = ("new colour", "new shape", "new action")
EDITS = WORD_KEEPING_EDITS + NEW_WORD_EDITS
VERBS = sorted(synthetic.THIRD_PERSON.values(), key=len, reverse=True)  # longest first: "moves left" before "moves"
COUNT_WORDS = list(synthetic.TIMES_WORDS.values())  # "" (once), "twice", "three times", "four times"
STILL = synthetic.THIRD_PERSON[synthetic.STILL]  # "stays still": never counted, never a new action
REPEATED_VERBS = [synthetic.THIRD_PERSON[action] for action in synthetic.REPEATED_ACTIONS]


@dataclass
class CaptionObject:
    """One object of a caption: "a {size} {color} {shape} {verb} [count] then {verb} [count] ..."."""

    size: str
    color: str
    shape: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (verb, count words; "" for once)


def parse_caption(caption: str) -> list[CaptionObject]:
    """The objects of a synthetic caption; ValueError for a caption the generator cannot have written."""
    objects = []
    for part in caption.replace(" while ", " and ").split(" and "):
        words = part.split(" ")
        if len(words) < 5 or words[0] != "a" or words[1] not in synthetic.SIZES or words[2] not in synthetic.COLORS or words[3] not in synthetic.SHAPES:
            raise _not_generated(caption)
        objects.append(CaptionObject(words[1], words[2], words[3], [_parse_step(step, caption) for step in " ".join(words[4:]).split(" then ")]))
    if render_caption(objects) != caption:
        raise _not_generated(caption)
    return objects


def _parse_step(step: str, caption: str) -> tuple[str, str]:
    for verb in VERBS:
        if step == verb or step.startswith(verb + " "):
            count = step[len(verb):].strip()
            if count in COUNT_WORDS:
                return verb, count
    raise _not_generated(caption)


def _not_generated(caption: str) -> ValueError:
    return ValueError(f"not a caption of the synthetic generator (clover.data.synthetic.caption): {caption!r}")


def render_caption(objects: Sequence[CaptionObject]) -> str:
    """The caption the generator writes for these objects (the inverse of `parse_caption`)."""
    return synthetic.join_object_phrases([synthetic.object_phrase(o.size, o.color, o.shape, o.steps) for o in objects])


def caption_edits(caption: str, rng: random.Random) -> dict[str, str]:
    """{edit name: edited caption} for every edit of `EDITS` that applies to this caption (the swaps need
    two objects that differ in what is swapped, the reversal an object with two different actions)."""
    objects = parse_caption(caption)
    first, second = objects[0], objects[1] if len(objects) > 1 else None
    edited: dict[str, list[CaptionObject]] = {}
    if second is not None:
        rest = objects[2:]
        if first.color != second.color:
            edited["swap colours"] = [replace(first, color=second.color), replace(second, color=first.color), *rest]
        if first.shape != second.shape:
            edited["swap shapes"] = [replace(first, shape=second.shape), replace(second, shape=first.shape), *rest]
        if first.steps != second.steps:
            edited["swap actions"] = [replace(first, steps=second.steps), replace(second, steps=first.steps), *rest]
    orderable = [i for i, o in enumerate(objects) if o.steps != o.steps[::-1]]
    if orderable:
        edited["reverse order"] = _with(objects, rng.choice(orderable), lambda o: replace(o, steps=o.steps[::-1]))
    counted = [(i, j) for i, o in enumerate(objects) for j, (verb, _) in enumerate(o.steps) if verb != STILL]
    if counted:
        i, j = rng.choice(counted)
        verb, count = objects[i].steps[j]
        new_count = rng.choice([c for c in COUNT_WORDS if c != count])
        edited["change count"] = _with(objects, i, lambda o: _with_step(o, j, (verb, new_count)))
    words = set(caption.split(" "))
    edited["new colour"] = _with(objects, rng.randrange(len(objects)), lambda o: replace(o, color=rng.choice([c for c in synthetic.COLORS if c not in words])))
    edited["new shape"] = _with(objects, rng.randrange(len(objects)), lambda o: replace(o, shape=rng.choice([s for s in synthetic.SHAPES if s not in words])))
    used = {v for o in objects for v, _ in o.steps}
    i = rng.randrange(len(objects))
    j = rng.randrange(len(objects[i].steps))
    new_verb = rng.choice([v for v in REPEATED_VERBS if v not in used])
    count = objects[i].steps[j][1] if objects[i].steps[j][0] != STILL else ""
    edited["new action"] = _with(objects, i, lambda o: _with_step(o, j, (new_verb, count)))
    return {name: render_caption(edited[name]) for name in EDITS if name in edited}


def _with(objects: Sequence[CaptionObject], index: int, change: Any) -> list[CaptionObject]:
    """The objects with `change` applied to the one at `index`."""
    return [change(o) if i == index else o for i, o in enumerate(objects)]


def _with_step(obj: CaptionObject, index: int, step: tuple[str, str]) -> CaptionObject:
    """The object with its step at `index` replaced."""
    return replace(obj, steps=[*obj.steps[:index], step, *obj.steps[index + 1:]])


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


@dataclass
class EditTotals:
    """How often each edit was scored and how often the clip's own caption scored higher."""

    right: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EDITS, 0))
    count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EDITS, 0))

    def add(self, true_score: float, edit_scores: dict[str, float]) -> None:
        for name, score in edit_scores.items():
            self.count[name] += 1
            self.right[name] += int(true_score > score)  # a tie counts against the caption

    def summary(self) -> dict[str, dict[str, float]]:
        return {n: {"clips": self.count[n], "accuracy": self.right[n] / self.count[n]} for n in EDITS if self.count[n]}


def caption_scores(clover: CloverModel, processor: CloverProcessor, tokens: torch.Tensor, captions: Sequence[str], fused: bool) -> torch.Tensor:
    """(K,) scores of K captions against one clip's video tokens (1, t, h, w, Cv)."""
    encoded = processor.encode_text(captions)
    video = clover.video_embedding(tokens)  # (1, E)
    if fused:
        text = clover.encode_text(encoded["input_ids"], encoded["attention_mask"])  # (K, L, D)
        out = clover.fuse(tokens.expand(len(captions), -1, -1, -1, -1), text, encoded["attention_mask"])
        embeds = F.normalize(clover.fused_video_proj(out.pooled), dim=-1)  # (K, E)
    else:
        embeds = clover.get_text_features(encoded["input_ids"], encoded["attention_mask"])  # (K, E)
    return embeds @ video[0]  # (K,)


def load_model(model: str | Path) -> tuple[CloverModel, CloverProcessor]:
    """The Clover model of a checkpoint (pre-training or QA; `finetune.pretrain.load_pretraining_model`)
    in eval mode, and its processor."""
    from accelerate import PartialState

    from finetune.pretrain import load_pretraining_model

    PartialState(cpu=True)  # the loader logs through Accelerate; the probe runs on the CPU, in seconds for 200 clips
    return load_pretraining_model(model).clover.eval(), CloverProcessor.from_pretrained(model)


def probe(model: str, csv: str, video_root: str, fused: bool = False, seed: int = 0, batch_size: int = 16) -> dict[str, Any]:
    """Score every readable pair of the CSV (see the module's docstring); rows whose clip is missing or
    unreadable are skipped and counted."""
    from finetune.pretrain import load_pairs, val_loader

    clover, processor = load_model(model)
    pairs = load_pairs(csv, video_root)
    rng = random.Random(seed)
    edits = [caption_edits(pair["caption"], rng) for pair in pairs.pairs]  # drawn before any clip is read
    totals, skipped = EditTotals(), 0
    with torch.no_grad():
        for batch in tqdm(val_loader(pairs, processor, batch_size), desc="clips", unit="batch"):
            skipped += len(batch["indices"]) - len(batch["ids"])
            if not batch["ids"]:
                continue
            tokens = clover.encode_video(batch["pixel_values"]).tokens  # (B, t, h, w, Cv)
            for row, index in enumerate(batch["indices"][batch["kept"]].tolist()):
                names = list(edits[index])
                scores = caption_scores(clover, processor, tokens[row : row + 1], [pairs.pairs[index]["caption"], *edits[index].values()], fused)
                totals.add(scores[0].item(), dict(zip(names, scores[1:].tolist())))
    return {"model": str(model), "captions": str(csv), "score": "fused" if fused else "retrieval embeddings", "seed": seed,
            "pairs": len(pairs.pairs) - skipped, "unreadable_clips": skipped, "missing_clips": pairs.missing, "edits": totals.summary()}


def markdown_row(result: dict[str, Any]) -> str:
    cells = [f"{100 * result['edits'][n]['accuracy']:.1f}" if n in result["edits"] else "" for n in EDITS]
    return "| " + " | ".join([result["model"], *cells]) + " |"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a Clover checkpoint with trained retrieval heads (a caption pre-training's output)")
    parser.add_argument("--captions", default="data/synthetic/webvid/results_val.csv", help="a WebVid-style CSV of synthetic captions")
    parser.add_argument("--video_root", default="data/synthetic/webvid/videos", help="the directory the CSV's clips are under")
    parser.add_argument("--fused", action="store_true", help="score the fused caption and clip, not the retrieval embeddings")
    parser.add_argument("--seed", type=int, default=0, help="the seed the edits are drawn with")
    parser.add_argument("--batch_size", type=int, default=16, help="clips read and encoded at a time")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        result = probe(args.model, args.captions, args.video_root, args.fused, args.seed, args.batch_size)
    except ValueError as error:
        raise SystemExit(f"{args.captions}: {error}") from None
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
    print("| model | " + " | ".join(EDITS) + " |", file=sys.stderr)
    print(markdown_row(result), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
