"""Where a Clover model loses which colour goes with which shape: linear probes on single video tokens,
and where the fused [CLS] looks when a question names one object.

    python benchmarks/binding_probe.py --model runs/demo/checkpoint --output runs/binding.json

The synthetic benchmark's breakdown (`synthetic_breakdown.py`) shows models that name the shape of
the only object in a clip but not the shape of "the red object" among two or three. This tool says
where that is lost, on scenes of the benchmark's distribution rendered here (seeded, not the
benchmark's clips), in two measurements:

1. **Tokens.** Each token of the video encoder's (t, h, w) grid is labelled with the object that
   covers it alone (at least `--min_cover` of its pixels, over its frames, and the other objects at
   most `--max_other`); then one linear layer per stage is fitted on the tokens of the first `--clips`
   clips to say the colour and the shape of that object, and scored on the next `--test_clips`.
   Stages: the token's own pixels (a control: colour yes, shape hardly), the video encoder's output,
   and each fusion layer's output for the video tokens, fused with a question that names no object
   ("how many objects are there ?"). "both" is the share of tokens whose colour and shape are both
   right: if it is high in clips of several objects, single tokens hold the binding.
2. **Routing.** For each object of each clip of two or three objects, the FrameQA questions that name
   it ("what shape is the red object ?", "what color is the star ?"): every fusion layer's and head's
   attention of [CLS], and of the word that names the object ("red", "star"), on the named object's
   tokens, per unit of the area it covers, over the same on the other objects; with
   `qa_pooling="cls+max+query"` also the attention of its question-guided pooling. 1.0 means the
   attention does not go to the object the question is about more than to the others. With an
   open-ended head, the answers' accuracy on these questions is reported too.

One JSON object is printed (and written to `--output`); tables in Markdown go to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from clover import CloverProcessor  # noqa: E402
from clover.data import synthetic  # noqa: E402
from clover.modeling_clover import CloverForVideoQA, CloverModel  # noqa: E402
from finetune.common import load_finetuned  # noqa: E402

NEUTRAL_QUESTION = synthetic.FRAMEQA_TEMPLATES["number"]  # names no object
TARGETS = {"color": list(synthetic.COLORS), "shape": list(synthetic.SHAPES)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="examples/checkpoint", help="a Clover checkpoint (QA or pre-training)")
    parser.add_argument("--clips", type=int, default=2000, help="clips whose tokens fit the probes")
    parser.add_argument("--test_clips", type=int, default=600, help="clips whose tokens score them")
    parser.add_argument("--routing_clips", type=int, default=300, help="clips drawn for the routing measure (those of 2-3 objects count)")
    parser.add_argument("--min_cover", type=float, default=0.4, help="a token belongs to an object covering at least this share of it ...")
    parser.add_argument("--max_other", type=float, default=0.05, help="... while the other objects cover at most this share")
    parser.add_argument("--probe_steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seeds the scenes and the probes")
    parser.add_argument("--output", help="also write the JSON here")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# Which object is under which token
# --------------------------------------------------------------------------------------------------


def object_masks(scene: synthetic.Scene, size: int, num_frames: int) -> np.ndarray:
    """(O, T, S, S) bool: the pixels where each object is seen in each frame, as `render_clip` draws
    them (in list order, so a later object hides an earlier one; a blinked-off object is not seen)."""
    masks = np.zeros((len(scene.objects), num_frames, size, size), dtype=bool)
    for frame in range(num_frames):
        time = synthetic.frame_time(frame, num_frames)
        for index, obj in enumerate(scene.objects):
            state = synthetic.object_state(obj, time)
            if state.visible:
                image = Image.new("RGB", (size, size))  # black: every colour and the marker differ from it
                synthetic.draw_object(ImageDraw.Draw(image), obj, state, size)
                masks[index, frame] = np.asarray(image).any(axis=-1)
    for index in range(len(scene.objects) - 1, 0, -1):
        masks[:index] &= ~masks[index]  # hidden by a later object
    return masks


def token_cover(masks: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """(O, T, S, S) object masks -> (O, t*h*w): the share of each token's pixels (over its frames)
    each object covers, tokens in the encoder's (t, h, w) order."""
    objects, frames, size, _ = masks.shape
    t, h, w = grid
    blocks = masks.reshape(objects, t, frames // t, h, size // h, w, size // w)
    return blocks.mean(axis=(2, 4, 6)).reshape(objects, t * h * w)


def token_owners(cover: np.ndarray, min_cover: float, max_other: float) -> np.ndarray:
    """(O, n) cover -> (n,) the object each token belongs to, -1 where none covers it alone."""
    best, top = cover.argmax(0), cover.max(0)
    others = cover.sum(0) - top
    return np.where((top >= min_cover) & (others <= max_other), best, -1)


# --------------------------------------------------------------------------------------------------
# Tokens of each stage
# --------------------------------------------------------------------------------------------------


def load_model(path: str) -> tuple[CloverModel, CloverForVideoQA | None, CloverProcessor]:
    """The Clover encoders of a pre-training or QA checkpoint, the QA model when there is one (loaded as
    `finetune.evaluate` loads it, LoRA directories too), the processor."""
    config = Path(path) / "config.json"
    architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures", []) if config.is_file() else []
    if "CloverForPretraining" in architectures or "CloverModel" in architectures:
        return CloverModel.from_pretrained(path).eval(), None, CloverProcessor.from_pretrained(path)
    qa, processor = load_finetuned(path)
    return qa.clover, qa.eval(), processor


def stage_tokens(
    clover: CloverModel, processor: CloverProcessor, frames: torch.Tensor
) -> tuple[dict[str, torch.Tensor], tuple[int, int, int]]:
    """frames (B, T, S, S, 3) uint8 -> ({stage: (B, t*h*w, C)}, the token grid (t, h, w)); stages:
    pixels, video, fusion 1 ... fusion k."""
    pixels = torch.stack([processor.preprocess_frames(clip) for clip in frames])  # (B, T, 3, S, S)
    tokens = clover.encode_video(pixels).tokens  # (B, t, h, w, Cv)
    batch, t, h, w, _ = tokens.shape
    frames_per_token, side = pixels.shape[1] // t, pixels.shape[-1]
    patches = pixels.view(batch, t, frames_per_token, 3, h, side // h, w, side // w)
    patches = patches.permute(0, 1, 4, 6, 2, 3, 5, 7).reshape(batch, t * h * w, -1)  # (B, t*h*w, T/t*3*p*p)
    text = processor.encode_text([NEUTRAL_QUESTION] * batch)
    text_states = clover.encode_text(text["input_ids"], text["attention_mask"])  # (B, L, D)
    fused = clover.fuse(tokens, text_states, text["attention_mask"], output_layers=True)
    stages = {"pixels": patches, "video": tokens.flatten(1, 3)}
    for index, hidden in enumerate(fused.hidden_states, start=1):
        stages[f"fusion {index}"] = hidden[:, : t * h * w]  # (B, t*h*w, D)
    return stages, (t, h, w)


def probe_scene(seed: int, index: int) -> synthetic.Scene:
    """The `index`-th probe scene: the benchmark's distribution, its own seeds."""
    name = f"{seed}:binding:{index}"
    return synthetic.sample_scene(random.Random(name), name, index, "probe")


def collect_tokens(clover: CloverModel, processor: CloverProcessor, args: argparse.Namespace) -> dict[str, Any]:
    """Every owned token of `--clips + --test_clips` scenes: features per stage, labels, clip and object count."""
    size, num_frames = clover.config.image_size, clover.config.num_frames
    features: dict[str, list[torch.Tensor]] = {}
    rows: list[tuple[int, int, int, int]] = []  # (clip, objects in it, colour id, shape id)
    total = args.clips + args.test_clips
    for start in tqdm(range(0, total, args.batch_size), desc="probe clips", unit="batch"):
        scenes = [probe_scene(args.seed, index) for index in range(start, min(start + args.batch_size, total))]
        frames = torch.stack([torch.from_numpy(synthetic.render_clip(scene, size, num_frames)) for scene in scenes])
        with torch.inference_mode():
            stages, grid = stage_tokens(clover, processor, frames)
        for offset, scene in enumerate(scenes):
            owners = token_owners(token_cover(object_masks(scene, size, num_frames), grid), args.min_cover, args.max_other)
            keep = torch.from_numpy(owners >= 0)
            for stage, values in stages.items():
                features.setdefault(stage, []).append(values[offset][keep].float())
            for owner in owners[owners >= 0]:
                obj = scene.objects[owner]
                rows.append((start + offset, len(scene.objects), TARGETS["color"].index(obj.color), TARGETS["shape"].index(obj.shape)))
    table = torch.tensor(rows).view(-1, 4)
    return {
        "features": {stage: torch.cat(parts) for stage, parts in features.items()},
        "clip": table[:, 0], "objects": table[:, 1], "labels": {"color": table[:, 2], "shape": table[:, 3]},
    }  # fmt: skip


def fit_probe(x_train: torch.Tensor, y_train: torch.Tensor, num_classes: int, steps: int, seed: int) -> torch.nn.Linear:
    """A linear classifier on standardised features, full-batch Adam; the standardisation is folded in."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    layer = torch.nn.Linear(x_train.shape[1], num_classes)
    torch.nn.init.normal_(layer.weight, std=0.01, generator=generator)
    torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2, weight_decay=1e-4)
    standardised = (x_train - mean) / std
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(layer(standardised), y_train).backward()
        optimizer.step()
    with torch.no_grad():  # layer((x - mean) / std) as one linear map of x
        layer.weight.div_(std)
        layer.bias.sub_(layer.weight @ mean)
    return layer


def token_probes(collected: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    """Per stage and per number of objects in the clip: % of test tokens whose colour, shape, both are right."""
    train = collected["clip"] < args.clips
    objects = collected["objects"][~train]
    result: dict[str, dict[str, dict[str, float]]] = {}
    for stage, features in collected["features"].items():
        right = {}
        for target, labels in collected["labels"].items():
            probe = fit_probe(features[train], labels[train], len(TARGETS[target]), args.probe_steps, args.seed)
            with torch.no_grad():
                right[target] = probe(features[~train]).argmax(1) == labels[~train]
        right["both"] = right["color"] & right["shape"]
        result[stage] = {}
        for count in ("1", "2", "3", "all"):
            chosen = objects == int(count) if count != "all" else torch.ones_like(objects, dtype=torch.bool)
            scores = {target: round(100 * float(hits[chosen].float().mean()), 1) if chosen.any() else None for target, hits in right.items()}
            result[stage][count] = {**scores, "tokens": int(chosen.sum())}
    return result


# --------------------------------------------------------------------------------------------------
# Routing: does the [CLS] look at the named object?
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamingQuestion:
    """A FrameQA question about one object of a clip, named by its other attribute."""

    named: int  # the object's index in the scene
    kind: str  # what is asked: "shape" or "color"
    question: str
    answer: str
    naming_word: str  # the word of the question that names the object ("red" in "... the red object ?")


def naming_questions(scene: synthetic.Scene) -> list[NamingQuestion]:
    """The FrameQA questions that name one object of the scene: its shape by its colour, its colour by its shape."""
    questions = []
    for index, obj in enumerate(scene.objects):
        questions.append(NamingQuestion(index, "shape", synthetic.FRAMEQA_TEMPLATES["object"].format(color=obj.color), obj.shape, obj.color))
        questions.append(NamingQuestion(index, "color", synthetic.FRAMEQA_TEMPLATES["color"].format(shape=obj.shape), obj.color, obj.shape))
    return questions


def attention_preference(attention: np.ndarray, cover: np.ndarray, named: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """attention (..., n) on the video tokens, cover (O, n) -> (mass on the named object (...), mass on
    the others (...), area of the named object, area of the others), areas in tokens."""
    others = np.delete(cover, named, axis=0).sum(0)  # (n,)
    return attention @ cover[named], attention @ others, float(cover[named].sum()), float(others.sum())


class RoutingTotals:
    """Sums over questions of the attention mass on the named object and on the others, and their areas."""

    def __init__(self) -> None:
        self.named: np.ndarray | float = 0.0
        self.others: np.ndarray | float = 0.0
        self.named_area = self.others_area = 0.0
        self.questions = 0

    def add(self, attention: np.ndarray, cover: np.ndarray, named: int) -> None:
        on_named, on_others, named_area, others_area = attention_preference(attention, cover, named)
        self.named, self.others = self.named + on_named, self.others + on_others
        self.named_area, self.others_area = self.named_area + named_area, self.others_area + others_area
        self.questions += 1

    def summary(self) -> dict[str, Any]:
        """preference: attention per unit area on the named object over the same on the others
        (layers, heads); mass_on_objects: the mean attention on all objects' tokens (layers, heads)."""
        preference = (self.named / self.named_area) / (self.others / self.others_area)
        mass = (self.named + self.others) / self.questions
        return {"preference": np.round(preference, 3).tolist(), "mass_on_objects": np.round(mass, 3).tolist()}


def routing(clover: CloverModel, qa: CloverForVideoQA | None, processor: CloverProcessor, args: argparse.Namespace) -> dict[str, Any]:
    """Per question kind: how much the [CLS] and the naming word attend to the named object, per fusion
    layer and head, and the open-ended head's accuracy on these questions."""
    size, num_frames = clover.config.image_size, clover.config.num_frames
    totals: dict[str, dict[str, RoutingTotals]] = {}
    right: dict[str, int] = {}
    for index in tqdm(range(args.routing_clips), desc="routing clips", unit="clip"):
        scene = probe_scene(args.seed + 1, index)
        if len(scene.objects) < 2:
            continue
        frames = torch.from_numpy(synthetic.render_clip(scene, size, num_frames))
        questions = naming_questions(scene)
        with torch.inference_mode():
            tokens = clover.encode_video(processor.preprocess_frames(frames)[None]).tokens  # (1, t, h, w, Cv)
            text = processor.encode_text([question.question for question in questions])
            text_states = clover.encode_text(text["input_ids"], text["attention_mask"])  # (Q, L, D)
            fused = clover.fuse(tokens, text_states, text["attention_mask"], output_layers=True)
            answers = [""] * len(questions)
            if qa is not None and "open" in qa.answer_heads:
                features = qa.answer_features(fused, tokens, text_states, text["attention_mask"])
                answers = [qa.config.id2label[int(i)] for i in qa.heads["open"](features).argmax(-1)]
            pooling = None
            if qa is not None and "question_pooling" in qa.heads:  # qa_pooling="cls+max+query": one layer, one head
                many = tokens.expand(len(questions), -1, -1, -1, -1)
                pooling = qa.heads["question_pooling"].attention(text_states, text["attention_mask"], many)[:, None, None].numpy()
        cover = token_cover(object_masks(scene, size, num_frames), tuple(tokens.shape[1:4]))  # (O, n)
        attentions = fused.text_attentions.numpy()  # (Q, layers, heads, L, n)
        for row, question in enumerate(questions):
            word_ids = text["input_ids"][row].tolist()
            word = word_ids.index(processor.tokenizer.convert_tokens_to_ids(question.naming_word))
            kind = totals.setdefault(question.kind, {"[CLS]": RoutingTotals(), "naming word": RoutingTotals()})
            kind["[CLS]"].add(attentions[row, :, :, 0], cover, question.named)
            kind["naming word"].add(attentions[row, :, :, word], cover, question.named)
            if pooling is not None:
                kind.setdefault("question pooling", RoutingTotals()).add(pooling[row], cover, question.named)
            right[question.kind] = right.get(question.kind, 0) + int(answers[row] == question.answer)
    result = {}
    for kind, by_query in totals.items():
        questions = by_query["[CLS]"].questions
        result[kind] = {
            "questions": questions,
            "accuracy": round(100 * right[kind] / questions, 1) if qa is not None else None,
            **{query: summed.summary() for query, summed in by_query.items()},
        }
    return result


# --------------------------------------------------------------------------------------------------


def emit_json(result: dict[str, Any], output: str | None) -> None:
    """Print `result` as indented JSON, and write it to `output` too when given (the benchmarks' report)."""
    text = json.dumps(result, indent=1)
    print(text)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n", encoding="utf-8")


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def markdown(result: dict[str, Any]) -> str:
    """The two tables of the JSON result."""
    lines = ["| stage | colour (1 / 2 / 3 objects) | shape | both |", "| --- | --- | --- | --- |"]
    for stage, rows in result["tokens"].items():
        cells = [" / ".join(_percent(rows[count][target]) for count in ("1", "2", "3")) for target in ("color", "shape", "both")]
        lines.append(f"| {stage} | {' | '.join(cells)} |")
    lines += ["", "| question | accuracy | attention from | preference for the named object, per layer (heads) |", "| --- | --- | --- | --- |"]
    for kind, row in result["routing"].items():
        for query in ("[CLS]", "naming word", "question pooling"):
            if query not in row:
                continue
            layers = "; ".join(" ".join(f"{value:.2f}" for value in heads) for heads in row[query]["preference"])
            lines.append(f"| what {kind} ... ({row['questions']}) | {row['accuracy']} | {query} | {layers} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    clover, qa, processor = load_model(args.model)
    result = {"model": str(args.model), "settings": {k: v for k, v in vars(args).items() if k not in ("model", "output")}}
    result["tokens"] = token_probes(collect_tokens(clover, processor, args), args)
    result["routing"] = routing(clover, qa, processor, args)
    emit_json(result, args.output)
    print(markdown(result), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
