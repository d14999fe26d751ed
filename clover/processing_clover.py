"""CloverProcessor: frames and text in, model inputs out, saved next to the model.

One object holds everything the model needs besides its weights: how frames are cropped, resized and
normalised (`image_size`, `image_mean`, `image_std`), how many frames a clip has (`num_frames`), and how
questions, multiple-choice candidates and captions are tokenised (`max_text_length`,
`max_mc_text_length` and the tokenizer). `save_pretrained(dir)` writes `processor_config.json` and the
tokenizer files into the model's directory, so a directory saved by this library loads offline.

It follows transformers' processor conventions (`__call__` returns a `BatchFeature`, `from_pretrained` /
`save_pretrained`) without subclassing `ProcessorMixin`, whose attribute plumbing buys nothing here.

Frames are processed with torch ops on the whole clip at once (one crop and one antialiased resize of
a `(T, 3, h, w)` tensor), not frame by frame through PIL. Training crops are random but the same for
every frame of a clip, and never flipped: "does the circle move left?" must keep its answer.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from clover.configuration_clover import IMAGENET_MEAN, IMAGENET_STD, CloverConfig

PROCESSOR_CONFIG_NAME = "processor_config.json"
MIN_CANDIDATES, MAX_CANDIDATES = 2, 10
# Keys of a collated batch that `CloverForVideoQA.forward` takes; the rest is for evaluation.
MODEL_INPUT_KEYS = ("pixel_values", "input_ids", "attention_mask", "candidate_mask", "candidate_token_mask", "labels")

# Area fraction and aspect ratio of the training crop. Milder than ImageNet's (0.08, 1.0): questions ask
# where things are and how many there are, and a small crop can cut the object asked about out of view.
TRAIN_CROP_SCALE = (0.8, 1.0)
TRAIN_CROP_RATIO = (3 / 4, 4 / 3)

Clip = np.ndarray | torch.Tensor


class CloverProcessor:
    """Turns clips and questions (or captions) into `CloverForVideoQA` / `CloverForPretraining` inputs.

    Args:
        tokenizer: a BERT-style tokenizer ([CLS] text [SEP]).
        num_frames: frames per clip; every clip must have exactly this many (`read_frames` samples them).
        image_size: side S of the square frames the model sees.
        image_mean, image_std: per-channel normalisation of RGB values in [0, 1] (ImageNet's by default).
        max_text_length: tokens of a question or caption, [CLS] and [SEP] included (truncated beyond).
        max_mc_text_length: tokens of a multiple-choice text (question, all candidates, the scored one).
        train_crop_scale: (min, max) area fraction of the random training crop.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        num_frames: int = 8,
        image_size: int = 224,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        max_text_length: int = 40,
        max_mc_text_length: int = 100,
        train_crop_scale: Sequence[float] = TRAIN_CROP_SCALE,
    ) -> None:
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values (RGB), got {list(image_mean)} and {list(image_std)}")
        if any(value <= 0 for value in image_std):
            raise ValueError(f"image_std must be positive, got {list(image_std)}")
        low, high = train_crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"train_crop_scale must satisfy 0 < min <= max <= 1, got {tuple(train_crop_scale)}")
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs [CLS], [SEP] and [PAD] tokens (a BERT-style tokenizer)")
        self.tokenizer = tokenizer
        self.num_frames = int(num_frames)
        self.image_size = int(image_size)
        self.image_mean = [float(value) for value in image_mean]
        self.image_std = [float(value) for value in image_std]
        self.max_text_length = int(max_text_length)
        self.max_mc_text_length = int(max_mc_text_length)
        self.train_crop_scale = (float(low), float(high))

    # ----------------------------------------------------------------------------------------------
    # Construction, saving and loading
    # ----------------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: CloverConfig, tokenizer: PreTrainedTokenizerBase) -> "CloverProcessor":
        """The processor matching a model config (frames, image size, normalisation, text lengths)."""
        return cls(
            tokenizer,
            num_frames=config.num_frames,
            image_size=config.image_size,
            image_mean=config.image_mean,
            image_std=config.image_std,
            max_text_length=config.max_text_length,
            max_mc_text_length=config.max_mc_text_length,
        )

    @classmethod
    def from_preset(cls, name: str) -> "CloverProcessor":
        """The processor of a named preset: "clover-tiny" (bundled tokenizer, offline) or "clover-base"
        (bert-base-uncased's tokenizer, downloaded on first use)."""
        config = CloverConfig.from_preset(name)
        if name == "clover-tiny":
            from clover.tokenization import tiny_tokenizer

            tokenizer = tiny_tokenizer()
        else:
            tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")
        return cls.from_config(config, tokenizer)

    def to_dict(self) -> dict[str, Any]:
        """The settings written to `processor_config.json` (everything but the tokenizer)."""
        return {
            "processor_class": type(self).__name__,
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
            "max_text_length": self.max_text_length,
            "max_mc_text_length": self.max_mc_text_length,
            "train_crop_scale": list(self.train_crop_scale),
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        """Write `processor_config.json` and the tokenizer files into `save_directory` (the model's)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        config_path = directory / PROCESSOR_CONFIG_NAME
        config_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        # A fast tokenizer keeps the padding and truncation of its last call on its backend, and saves
        # them into tokenizer.json as if they were settings (then a model saved after training in the
        # loader's process differs from one trained with loader workers). Every call sets its own.
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            backend.no_truncation()
            backend.no_padding()
        return [str(config_path), *self.tokenizer.save_pretrained(str(directory))]

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload processor", **kwargs: Any) -> Any:
        """Upload `processor_config.json` and the tokenizer files to a Hub repository (next to the model
        that `model.push_to_hub(repo_id)` uploads); `kwargs` go to `huggingface_hub.upload_folder`."""
        import tempfile

        from huggingface_hub import create_repo, upload_folder

        create_repo(repo_id, exist_ok=True, private=kwargs.pop("private", None), token=kwargs.get("token"))
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "CloverProcessor":
        """Load a processor saved by `save_pretrained`: a local directory, or a Hub repo id.

        `kwargs` go to `AutoTokenizer.from_pretrained` (e.g. `revision`, `local_files_only`).
        """
        directory = Path(name_or_path)
        if directory.is_dir():
            config_path = directory / PROCESSOR_CONFIG_NAME
            if not config_path.is_file():
                raise FileNotFoundError(
                    f"{directory} has no {PROCESSOR_CONFIG_NAME}; was it saved by CloverProcessor.save_pretrained?"
                )
        else:
            from huggingface_hub import hf_hub_download

            config_path = Path(hf_hub_download(str(name_or_path), PROCESSOR_CONFIG_NAME, revision=kwargs.get("revision")))
        settings = json.loads(config_path.read_text(encoding="utf-8"))
        settings.pop("processor_class", None)
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **kwargs)
        return cls(tokenizer, **settings)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value}" for key, value in self.to_dict().items() if key != "processor_class")
        return f"{type(self).__name__}({settings}, tokenizer={type(self.tokenizer).__name__})"

    # ----------------------------------------------------------------------------------------------
    # Frames
    # ----------------------------------------------------------------------------------------------

    def preprocess_frames(
        self,
        frames: Clip,
        *,
        training: bool = False,
        generator: torch.Generator | None = None,
        crop_box: tuple[int, int, int, int] | None = None,
    ) -> torch.Tensor:
        """uint8 RGB frames `(T, H, W, 3)` -> normalised float `(T, 3, S, S)`.

        Test: the centre square of side min(H, W), resized to S (the same as resizing the short side to
        S and centre-cropping). Training: one random crop for the whole clip (area `train_crop_scale`,
        aspect ratio 3/4..4/3), resized to S; no flip. Then /255 and per-channel normalisation.
        `crop_box` (top, left, h, w), e.g. from `CloverProcessor.crop_box`, replaces the crop drawn here.
        """
        clip = self._check_frames(frames)  # (T, H, W, 3) uint8
        height, width = clip.shape[1:3]
        top, left, crop_h, crop_w = crop_box or self.crop_box(height, width, training=training, generator=generator)
        crop = clip[:, top : top + crop_h, left : left + crop_w]  # (T, h, w, 3)
        pixels = crop.permute(0, 3, 1, 2).float()  # (T, 3, h, w)
        if (crop_h, crop_w) != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)  # (T, 3, S, S)
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return (pixels.div(255.0).clamp(0.0, 1.0) - mean) / std  # (T, 3, S, S)

    def crop_box(
        self, height: int, width: int, *, training: bool = False, generator: torch.Generator | None = None
    ) -> tuple[int, int, int, int]:
        """(top, left, h, w) of the crop `preprocess_frames` takes from frames of `height` x `width`
        (for callers that must know where the pixels came from, e.g. to move boxes with them)."""
        return self._random_crop_box(height, width, generator) if training else _centre_square_box(height, width)

    def _check_frames(self, frames: Clip) -> torch.Tensor:
        """The frames as a uint8 torch tensor `(T, H, W, 3)`, or a ValueError saying what is wrong."""
        clip = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if not isinstance(clip, torch.Tensor):
            raise TypeError(f"frames must be a numpy array or a torch tensor, got {type(frames).__name__}")
        if clip.ndim != 4 or clip.shape[-1] != 3:
            raise ValueError(f"frames must have shape (T, H, W, 3) (RGB, channels last), got {tuple(clip.shape)}")
        if clip.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 (0..255), got {clip.dtype}; clover.video.read_frames returns uint8")
        if clip.shape[0] != self.num_frames:
            raise ValueError(f"expected {self.num_frames} frames per clip, got {clip.shape[0]}")
        if clip.shape[1] < 1 or clip.shape[2] < 1:
            raise ValueError(f"frames must be at least 1x1 pixels, got {clip.shape[1]}x{clip.shape[2]}")
        return clip

    def _random_crop_box(self, height: int, width: int, generator: torch.Generator | None) -> tuple[int, int, int, int]:
        """(top, left, h, w) of a random crop with area in `train_crop_scale` and aspect ratio 3/4..4/3.

        torchvision's RandomResizedCrop sampling: up to 10 tries, then the largest centre crop whose
        aspect ratio is in range.
        """
        area = height * width
        log_low, log_high = math.log(TRAIN_CROP_RATIO[0]), math.log(TRAIN_CROP_RATIO[1])
        low, high = self.train_crop_scale
        for _ in range(10):
            scale, log_ratio = torch.rand(2, generator=generator).tolist()
            target_area = area * (low + (high - low) * scale)
            ratio = math.exp(log_low + (log_high - log_low) * log_ratio)
            crop_w = round(math.sqrt(target_area * ratio))
            crop_h = round(math.sqrt(target_area / ratio))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
                return top, left, crop_h, crop_w
        return _centre_box_within_ratio(height, width)

    # ----------------------------------------------------------------------------------------------
    # Batches
    # ----------------------------------------------------------------------------------------------

    def __call__(
        self,
        videos: Clip | Sequence[Clip] | None = None,
        text: str | Sequence[str] | None = None,
        candidates: Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        training: bool = False,
        generator: torch.Generator | None = None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """Model inputs for a batch of clips and questions (or captions).

        videos: one clip `(T, H, W, 3)` uint8 or a list of clips; clips already preprocessed to float
            `(T, 3, S, S)` (or a float batch `(B, T, 3, S, S)`) pass through.
        text: a question or caption, or a list of them (one per clip).
        candidates: None, or per question a list of 2..10 candidate answers (a single question may
            take a flat list); the count may differ across the batch.

        Returns `pixel_values` (B, T, 3, S, S); `input_ids`, `attention_mask` (B, L) padded to the
        longest text, at most `max_text_length`; with candidates (B, K_max, L) up to
        `max_mc_text_length`, `candidate_mask` (B, K_max) bool and `candidate_token_mask` (B, K_max, L)
        bool (see `encode_multiple_choice`).
        """
        if return_tensors != "pt":
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        if videos is None and text is None:
            raise ValueError("pass videos, text or both")
        data: dict[str, torch.Tensor] = {}
        if videos is not None:
            data["pixel_values"] = self._pixel_values(videos, training, generator)  # (B, T, 3, S, S)
        if text is not None:
            questions = [text] if isinstance(text, str) else list(text)
            if candidates is None:
                data.update(self.encode_text(questions))
            else:
                data.update(self.encode_multiple_choice(questions, _per_question(candidates, isinstance(text, str))))
        if "pixel_values" in data and "input_ids" in data and len(data["pixel_values"]) != len(data["input_ids"]):
            raise ValueError(f"got {len(data['pixel_values'])} clips but {len(data['input_ids'])} texts; pass one text per clip")
        return BatchFeature(data=data)

    def _pixel_values(self, videos: Clip | Sequence[Clip], training: bool, generator: torch.Generator | None) -> torch.Tensor:
        """Stack clips into `(B, T, 3, S, S)`, preprocessing raw uint8 clips and passing processed ones."""
        expected = (self.num_frames, 3, self.image_size, self.image_size)
        if isinstance(videos, torch.Tensor) and videos.is_floating_point() and videos.ndim == 5:
            if tuple(videos.shape[1:]) != expected:
                shape = ", ".join(map(str, expected))
                raise ValueError(f"preprocessed videos must have shape (B, {shape}), got {tuple(videos.shape)}")
            return videos
        clips = [videos] if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 4 else list(videos)
        if not clips:
            raise ValueError("videos is an empty list")
        processed = []
        for clip in clips:
            if isinstance(clip, torch.Tensor) and clip.is_floating_point():
                if tuple(clip.shape) != expected:
                    raise ValueError(f"a preprocessed clip must have shape {expected}, got {tuple(clip.shape)}")
                processed.append(clip)
            else:
                processed.append(self.preprocess_frames(clip, training=training, generator=generator))
        return torch.stack(processed)  # (B, T, 3, S, S)

    def encode_text(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Questions or captions -> `input_ids`, `attention_mask` (B, L), L <= max_text_length."""
        for text in texts:
            _check_text(text, "question")
        encoded = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.max_text_length,
            return_token_type_ids=False,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}  # (B, L) each

    def encode_multiple_choice(self, questions: Sequence[str], candidates: Sequence[Sequence[str]]) -> dict[str, torch.Tensor]:
        """One text per (question, candidate) in the method's template, padded to (B, K_max, L).

        Text: "<question> Options: <all candidates> Answer: <candidate>". When it is longer than
        `max_mc_text_length`, the question-and-options part is cut, never the scored candidate (each
        pair must still say which answer it scores). A missing candidate slot (a question with fewer
        than K_max candidates) holds "[CLS] [SEP]", attended, so no row is all padding; `candidate_mask`
        marks it False and the model masks its score. `candidate_token_mask` (B, K, L) marks the tokens
        of the scored candidate in each text (what `mc_scoring="concat+match"` matches the answer with).
        """
        if len(questions) != len(candidates):
            raise ValueError(f"got {len(questions)} questions but candidates for {len(candidates)}")
        rows = [self._candidate_ids(question, options) for question, options in zip(questions, candidates)]
        num_slots = max(len(row) for row in rows)
        length = max(len(ids) for row in rows for ids, _ in row)
        empty = [self.tokenizer.cls_token_id, self.tokenizer.sep_token_id]
        input_ids = torch.full((len(rows), num_slots, length), self.tokenizer.pad_token_id, dtype=torch.long)  # (B, K, L)
        attention_mask = torch.zeros(len(rows), num_slots, length, dtype=torch.long)  # (B, K, L)
        candidate_mask = torch.zeros(len(rows), num_slots, dtype=torch.bool)  # (B, K)
        candidate_token_mask = torch.zeros(len(rows), num_slots, length, dtype=torch.bool)  # (B, K, L)
        for b, row in enumerate(rows):
            candidate_mask[b, : len(row)] = True
            for k in range(num_slots):
                ids, span = row[k] if k < len(row) else (empty, range(0))
                input_ids[b, k, : len(ids)] = torch.tensor(ids)
                attention_mask[b, k, : len(ids)] = 1
                candidate_token_mask[b, k, span.start : span.stop] = True
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "candidate_mask": candidate_mask,
            "candidate_token_mask": candidate_token_mask,
        }

    def _candidate_ids(self, question: str, options: Sequence[str]) -> list[tuple[list[int], range]]:
        """Per candidate: the token ids ([CLS] ... [SEP]) of its template text, at most
        max_mc_text_length, and the positions of the candidate's own tokens in them."""
        _check_text(question, "question")
        if not MIN_CANDIDATES <= len(options) <= MAX_CANDIDATES:
            raise ValueError(
                f"a multiple-choice question needs {MIN_CANDIDATES} to {MAX_CANDIDATES} candidates, "
                f"got {len(options)} for {question!r}"
            )
        for option in options:
            _check_text(option, "candidate")
        prefix = self._tokenize(f"{question.strip()} Options: {' '.join(option.strip() for option in options)}")
        answer_word, rows = self._tokenize("Answer:"), []
        for option in options:
            suffix = answer_word + self._tokenize(option.strip())
            budget = self.max_mc_text_length - 2 - len(suffix)  # room left for the prefix after [CLS], [SEP]
            if budget < 0:
                suffix, budget = suffix[: self.max_mc_text_length - 2], 0
            kept = prefix[:budget]
            ids = [self.tokenizer.cls_token_id, *kept, *suffix, self.tokenizer.sep_token_id]
            rows.append((ids, range(1 + len(kept) + min(len(answer_word), len(suffix)), len(ids) - 1)))
        return rows

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ----------------------------------------------------------------------------------------------
    # DataLoader batches
    # ----------------------------------------------------------------------------------------------

    def collate(self, examples: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
        """Collate items of `VideoQADataset` or `VideoCaptionDataset` into a batch (a DataLoader's `collate_fn`).

        None items (clips that could not be read) are dropped and counted in `batch["skipped"]`, which
        the training loop sums (a dataset's own counter lives in its worker process). QA batches have
        `pixel_values`, `input_ids`, `attention_mask` (+ `candidate_mask` and `candidate_token_mask` for
        multiple choice), `labels` (long for open/mc, float for count; only when the items have
        labels), `grounding_boxes` (B, T, 4) and `grounding_objects` (B,) when any item has them (NaN
        rows and 0 for the others), and the lists `ids`, `questions`, `types`, `answers` (+
        `candidates`). Caption batches have `pixel_values`, `input_ids`, `attention_mask`, `ids`,
        `captions`. A batch whose clips were all unreadable holds only `skipped` and an empty `ids` list.
        """
        kept = [example for example in examples if example is not None]
        skipped = len(examples) - len(kept)
        if not kept:
            return {"skipped": skipped, "ids": []}
        pixel_values = torch.stack([example["pixel_values"] for example in kept])  # (B, T, 3, S, S)
        batch: dict[str, Any] = {"pixel_values": pixel_values}
        if "caption" in kept[0]:
            captions = [example["caption"] for example in kept]
            batch.update(self.encode_text(captions))
            batch.update(ids=[example["id"] for example in kept], captions=captions)
        else:
            batch.update(self._collate_questions(kept))
        batch["skipped"] = skipped
        return batch

    def _collate_questions(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Text tensors, labels and evaluation lists of QA items."""
        questions = [example["question"] for example in examples]
        has_candidates = examples[0].get("candidates") is not None
        candidates = [example["candidates"] for example in examples] if has_candidates else None
        batch: dict[str, Any] = dict(
            self.encode_text(questions) if candidates is None else self.encode_multiple_choice(questions, candidates)
        )
        if "label" in examples[0]:
            labels = [example["label"] for example in examples]
            dtype = torch.float32 if any(isinstance(label, float) for label in labels) else torch.long
            batch["labels"] = torch.tensor(labels, dtype=dtype)  # (B,)
        batch.update(
            ids=[example["id"] for example in examples],
            questions=questions,
            types=[example.get("type") for example in examples],
            answers=[example.get("answer") for example in examples],
        )
        if candidates is not None:
            batch["candidates"] = candidates
        if any("grounding_boxes" in example for example in examples):  # NaN rows: no named object
            num_frames = examples[0]["pixel_values"].shape[0]
            blank = torch.full((num_frames, 4), float("nan"))
            batch["grounding_boxes"] = torch.stack([example.get("grounding_boxes", blank) for example in examples])  # (B, T, 4)
            batch["grounding_objects"] = torch.tensor([example.get("grounding_objects", 0) for example in examples])  # (B,)
        return batch


def _check_text(text: Any, what: str) -> None:
    """Refuse non-strings and empty or blank texts, naming what was expected."""
    if not isinstance(text, str):
        raise ValueError(f"a {what} must be a string, got {type(text).__name__}: {text!r}")
    if not text.strip():
        raise ValueError(f"empty {what}: {text!r}")


def _per_question(candidates: Sequence[Any], single_question: bool) -> list[list[str]]:
    """Candidates as one list per question; a single question may pass a flat list of strings."""
    if isinstance(candidates, str):
        raise ValueError("candidates must be a list of strings per question, got one string")
    candidates = list(candidates)
    if single_question and candidates and all(isinstance(option, str) for option in candidates):
        return [candidates]
    for options in candidates:
        if isinstance(options, str):
            raise ValueError("candidates for a batch of questions must be one list of strings per question")
    return [list(options) for options in candidates]


def _centre_square_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the centred square of side min(height, width)."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def _centre_box_within_ratio(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the largest centred box with aspect ratio (w/h) within 3/4..4/3."""
    low, high = TRAIN_CROP_RATIO
    crop_h, crop_w = height, width
    if width / height < low:
        crop_h = min(height, round(width / low))
    elif width / height > high:
        crop_w = min(width, round(height * high))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


__all__ = ["CloverProcessor", "MODEL_INPUT_KEYS", "PROCESSOR_CONFIG_NAME"]
