"""Can a QA model learn which colour goes with which shape? Training on the questions that need it
alone, with the video encoder frozen, in minutes.

    python benchmarks/binding_training.py --model runs/demo/checkpoint --steps 3000
    python benchmarks/binding_training.py --model runs/demo/checkpoint --qa_pooling cls+max+query --steps 3000

`binding_probe.py` shows single video tokens holding both the colour and the shape of the object under
them while the fused [CLS] does not look at the object a question names. This tool measures whether
training can fix that, and how fast, apart from everything else the demo recipe trains: it renders
probe scenes of the benchmark's distribution (`binding_probe.probe_scene`), encodes them once with the
model's video encoder (frozen, so the tokens are cached), asks about every object the FrameQA questions
that name it by its other attribute ("what shape is the red object ?", "what color is the star ?"),
and trains the rest of the model (text encoder, fusion, answer heads) on those questions alone with
AdamW at constant rates (`--learning_rate`, heads x `--head_lr_multiplier`, as the demo recipe's
fine-tuning, in `finetune.training`'s parameter groups: no weight decay on biases and norms).
`--qa_pooling` changes what the answer heads read, as train_qa's flag does.

Every `--eval_every` steps it scores the open-ended answers on the questions of `--test_clips` held-out
scenes, by kind and number of objects (chance with 2 and 3 objects: 50 and 33 %). One JSON object is
printed (and written to `--output`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from binding_probe import NamingQuestion, emit_json, naming_questions, probe_scene  # noqa: E402
from clover import CloverProcessor  # noqa: E402
from clover.configuration_clover import QA_POOLINGS  # noqa: E402
from clover.data import synthetic  # noqa: E402
from clover.modeling_clover import CloverForVideoQA, VideoFeatures, VideoQAOutput  # noqa: E402
from finetune import training  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="examples/checkpoint", help="a fine-tuned Clover QA model with an open-ended head")
    parser.add_argument("--qa_pooling", choices=QA_POOLINGS, help="what the answer heads read; default: the model's")
    parser.add_argument("--clips", type=int, default=2500, help="training scenes")
    parser.add_argument("--test_clips", type=int, default=400, help="held-out scenes")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--head_lr_multiplier", type=float, default=5.0)
    parser.add_argument("--eval_every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=5, help="seeds the scenes (binding_probe uses 0 and 1) and the batches")
    parser.add_argument("--output", help="also write the JSON here")
    return parser.parse_args(argv)


def check_vocabulary(model: CloverForVideoQA) -> None:
    """The open-ended head must be able to say every colour and shape."""
    if "open" not in model.answer_heads:
        raise SystemExit(f"{model.name_or_path} has no open-ended head; this tool trains and scores one")
    missing = sorted((set(synthetic.COLORS) | set(synthetic.SHAPES)) - set(model.config.id2label.values()))
    if missing:
        raise SystemExit(f"the open-ended head of {model.name_or_path} cannot answer {', '.join(missing)}: use a model fine-tuned on the synthetic benchmark")


def encode_scenes(model: CloverForVideoQA, processor: CloverProcessor, count: int, seed: int) -> tuple[torch.Tensor, list[tuple[int, int, NamingQuestion]]]:
    """Video tokens (N, t, h, w, Cv) of `count` probe scenes and their naming questions, each as
    (scene index, objects in the scene, question)."""
    size, num_frames = model.config.image_size, model.config.num_frames
    tokens, rows = [], []
    for index in tqdm(range(count), desc="encoding scenes", unit="clip"):
        scene = probe_scene(seed, index)
        frames = torch.from_numpy(synthetic.render_clip(scene, size, num_frames))
        with torch.inference_mode():
            tokens.append(model.encode_video(processor.preprocess_frames(frames)[None]).tokens[0])
        rows += [(index, len(scene.objects), question) for question in naming_questions(scene)]
    return torch.stack(tokens), rows


def ask(
    model: CloverForVideoQA, processor: CloverProcessor, tokens: torch.Tensor, rows: list[tuple[int, int, NamingQuestion]],
    answer_ids: dict[str, int] | None = None,
) -> VideoQAOutput:  # fmt: skip
    """The open-ended head's output for `rows`' questions about their scenes' cached video tokens, with
    the loss when `answer_ids` (answer -> class id) is given."""
    text = processor.encode_text([question.question for _, _, question in rows])
    labels = torch.tensor([answer_ids[question.answer] for _, _, question in rows]) if answer_ids else None
    features = VideoFeatures(tokens=tokens[[scene for scene, _, _ in rows]])
    return model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], video_features=features, labels=labels, head="open")


def evaluate(model: CloverForVideoQA, processor: CloverProcessor, tokens: torch.Tensor, rows: list[tuple[int, int, NamingQuestion]]) -> dict[str, float]:
    """% right by "{kind}@{objects}" ("shape@2": the shape questions in clips of two objects)."""
    model.eval()
    right: dict[str, list[bool]] = defaultdict(list)
    with torch.inference_mode():
        for start in range(0, len(rows), 64):
            batch = rows[start : start + 64]
            for (_, objects, question), answer in zip(batch, ask(model, processor, tokens, batch).logits.argmax(-1).tolist()):
                right[f"{question.kind}@{objects}"].append(model.config.id2label[answer] == question.answer)
    model.train()
    return {key: round(100 * sum(hits) / len(hits), 1) for key, hits in sorted(right.items())}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    settings = {"qa_pooling": args.qa_pooling} if args.qa_pooling else {}
    model = CloverForVideoQA.from_pretrained(args.model, **settings).eval()
    processor = CloverProcessor.from_pretrained(args.model)
    check_vocabulary(model)
    tokens, rows = encode_scenes(model, processor, args.clips + args.test_clips, args.seed)
    train, test = [row for row in rows if row[0] < args.clips], [row for row in rows if row[0] >= args.clips]
    for parameter in model.clover.video_encoder.parameters():
        parameter.requires_grad = False
    optimizer = torch.optim.AdamW(training.parameter_groups(model, args.learning_rate, 0.01, args.head_lr_multiplier))
    generator = torch.Generator().manual_seed(args.seed)
    answer_ids = {answer: int(index) for index, answer in model.config.id2label.items()}
    result: dict[str, Any] = {
        "model": str(args.model), "qa_pooling": model.config.qa_pooling,
        "settings": {k: v for k, v in vars(args).items() if k not in ("model", "output", "qa_pooling")},
        "train_questions": len(train), "test_questions": len(test), "curve": [{"step": 0, **evaluate(model, processor, tokens, test)}],
    }  # fmt: skip
    model.train()
    progress = tqdm(range(1, args.steps + 1), desc="steps")
    for step in progress:
        batch = [train[i] for i in torch.randint(len(train), (args.batch_size,), generator=generator).tolist()]
        loss = ask(model, processor, tokens, batch, answer_ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.eval_every == 0 or step == args.steps:
            result["curve"].append({"step": step, "loss": round(loss.item(), 3), **evaluate(model, processor, tokens, test)})
            tqdm.write(json.dumps(result["curve"][-1]))
    emit_json(result, args.output)
    return result


if __name__ == "__main__":
    main()
