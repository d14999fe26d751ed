"""Torch datasets that read clips for fine-tuning (question answering) and pre-training (captions).

Items are plain dicts of one preprocessed clip and its text; `CloverProcessor.collate` batches them
(tokenising the texts per batch, so padding follows the batch's longest text). A clip that cannot be
read gives None instead of crashing the epoch: real corpora have broken and missing files. It is
logged once per file, counted in the dataset's `skipped` (in the process that read it), and dropped
and counted again by `collate` as `batch["skipped"]`, the number a training loop with worker
processes can actually sum.

Random choices (which frame of each segment, where to crop) come from a generator derived from
(seed, epoch, index), so an item is the same whichever worker reads it and in whatever order;
call `set_epoch` at the start of each epoch to get new draws. Datasets hold only paths, records and
the processor (no open files), so they work with `DataLoader(num_workers>0)`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from clover.data.annotations import IGNORE_INDEX
from clover.grounding import boxes_in_crop
from clover.processing_clover import CloverProcessor
from clover.video import DecodedVideo, VideoReadError, decode_video, read_frames, sample_frames

logger = logging.getLogger(__name__)

TaskKind = Literal["open", "mc", "count"]
KINDS = ("open", "mc", "count")


VIDEO_INPUTS = ("full", "middle", "none")


class ClipCache:
    """Decoded clips kept in memory, up to `max_bytes` in all, for datasets that read the same short clips
    over and over (the synthetic benchmark: each clip is read by four TGIF tasks, every epoch).

    A clip is decoded whole the first time it is read, while it fits in what is left of the budget, and
    its frames are then drawn from memory by `sample_frames`: the same frames `read_frames` would give.
    Once the budget is spent, other clips are read from disk as usual (no eviction: under shuffled
    reading every clip is as likely to come next). Share one cache between datasets over the same files.
    Each DataLoader worker process fills its own copy, so the memory is `max_bytes` per process; it pays
    most with `num_workers=0`, where no worker decodes on the cores the training step uses. Real corpora
    (long clips, tens of thousands of them) gain little: leave it off there.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._videos: dict[str, DecodedVideo] = {}
        self._uncached: set[str] = set()  # clips read from disk every time: over the budget, or damaged

    def __len__(self) -> int:
        return len(self._videos)

    def read(self, path: Path, num_frames: int, *, training: bool, generator: np.random.Generator) -> np.ndarray:
        """`read_frames(path, num_frames, training=..., generator=...)`, from memory where possible."""
        key = str(path)
        video = self._videos.get(key)
        if video is None and key not in self._uncached and self.nbytes < self.max_bytes:
            # A clip damaged somewhere is left to read_frames, as without a cache: it may not need the
            # damaged frames, or it raises the same error.
            try:
                video = decode_video(path, max_bytes=self.max_bytes - self.nbytes)
            except VideoReadError:
                video = None
            if video is None:
                self._uncached.add(key)
            else:
                self._videos[key] = video
                self.nbytes += video.nbytes
        if video is None:
            return read_frames(path, num_frames, training=training, generator=generator)
        return sample_frames(video, num_frames, training=training, generator=generator)  # (T, H, W, 3)


class _ClipDataset(Dataset):
    """Shared by both datasets: clip reading with per-item random generators and skip accounting.

    `video_input` is for ablations and baselines: "full" (the sampled frames), "middle" (every frame
    replaced by the middle one: a single-frame model) or "none" (a blank clip: a text-only model).
    `clip_cache` keeps decoded clips in memory (`ClipCache`); None reads every item from disk.
    """

    def __init__(
        self,
        videos_dir: str | os.PathLike,
        processor: CloverProcessor,
        *,
        training: bool,
        seed: int,
        video_input: str = "full",
        clip_cache: ClipCache | None = None,
    ) -> None:
        if video_input not in VIDEO_INPUTS:
            raise ValueError(f"video_input must be one of {VIDEO_INPUTS}, got {video_input!r}")
        self.videos_dir = Path(videos_dir)
        self.processor = processor
        self.training = training
        self.video_input = video_input
        self.clip_cache = clip_cache
        self.seed = int(seed)
        self.epoch = 0
        self.skipped = 0  # unreadable clips met by this process (see the module docstring)
        self._warned: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        """Use the random draws of `epoch` (frames and crops differ between epochs, not between runs)."""
        self.epoch = int(epoch)

    def _generators(self, index: int) -> tuple[np.random.Generator, torch.Generator]:
        """Frame-sampling and crop generators determined by (seed, epoch, index) alone."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        crop = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        return rng, crop

    def _read_clip(self, video: str, index: int) -> torch.Tensor | None:
        """The preprocessed clip `(T, 3, S, S)` of `videos_dir / video`, or None if it cannot be read."""
        read = self._read_clip_and_crop(video, index)
        return None if read is None else read[0]

    def _read_clip_and_crop(self, video: str, index: int) -> tuple[torch.Tensor, tuple[float, float, float, float]] | None:
        """The preprocessed clip `(T, 3, S, S)` and the crop it shows, (x0, y0, x1, y1) as fractions of
        the frame; None if the clip cannot be read."""
        path = self.videos_dir / video
        if self.video_input == "none":  # zeros are the normalised mean colour: no visual information
            size = self.processor.image_size
            return torch.zeros(self.processor.num_frames, 3, size, size), (0.0, 0.0, 1.0, 1.0)
        rng, crop = self._generators(index)
        try:
            if not path.is_file():
                raise VideoReadError(path, "no such file")
            frames = self._frames(path, rng)  # (T, H, W, 3)
        except VideoReadError as error:
            self._skip(path, error.reason)
            return None
        if self.video_input == "middle":
            frames = np.repeat(frames[len(frames) // 2][None], len(frames), axis=0)  # (T, H, W, 3), one frame
        height, width = frames.shape[1:3]
        top, left, crop_h, crop_w = box = self.processor.crop_box(height, width, training=self.training, generator=crop)
        pixels = self.processor.preprocess_frames(frames, crop_box=box)  # (T, 3, S, S)
        return pixels, (left / width, top / height, (left + crop_w) / width, (top + crop_h) / height)

    def _frames(self, path: Path, rng: np.random.Generator) -> np.ndarray:
        if self.clip_cache is not None:
            return self.clip_cache.read(path, self.processor.num_frames, training=self.training, generator=rng)
        return read_frames(path, self.processor.num_frames, training=self.training, generator=rng)  # (T, H, W, 3)

    def _skip(self, path: Path, reason: str) -> None:
        """Count an unreadable clip and log it the first time this process meets it."""
        self.skipped += 1
        if str(path) not in self._warned:
            self._warned.add(str(path))
            logger.warning("skipping unreadable clip %s: %s", path, reason)


class VideoQADataset(_ClipDataset):
    """Question-answer records (as `load_annotations` returns them) with their clips.

    Args:
        records: dicts with `id`, `video` (relative to `videos_dir`), `question`, `answer`, `type`,
            and `candidates` for multiple choice.
        videos_dir: the folder the records' `video` paths are relative to.
        processor: gives the frame count and preprocessing (and later the collate function).
        kind: "open" (label = answer's class index, -100 outside the vocabulary), "mc" (label = the
            right candidate's index) or "count" (label = the number, as a float).
        answer_to_label: the open-ended answer vocabulary {answer: class index}; required for "open".
        training: random frame in each segment and random crop (else segment centres, centre crop).
        seed: base of the per-item random generators.
        video_input, clip_cache: see `_ClipDataset`.

    `dataset[i]` is {pixel_values (T, 3, S, S), question, candidates (mc only), label, id, type,
    answer, and grounding_boxes (T, 4) and grounding_objects (the clip's number of objects) for
    records given a "grounding" by `clover.grounding.attach_grounding`}, or None when the clip cannot
    be read.
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        videos_dir: str | os.PathLike,
        processor: CloverProcessor,
        *,
        kind: TaskKind,
        answer_to_label: Mapping[str, int] | None = None,
        training: bool = False,
        seed: int = 0,
        video_input: str = "full",
        clip_cache: ClipCache | None = None,
    ) -> None:
        super().__init__(videos_dir, processor, training=training, seed=seed, video_input=video_input, clip_cache=clip_cache)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        if kind == "open" and answer_to_label is None:
            raise ValueError("open-ended datasets need answer_to_label (the answer vocabulary as {answer: index})")
        if kind == "mc":
            missing = [record.get("id") for record in records if not record.get("candidates")]
            if missing:
                raise ValueError(f"multiple-choice records need candidates; {len(missing)} have none, e.g. {missing[:3]}")
        self.records = [dict(record) for record in records]
        self.kind = kind
        self.answer_to_label = dict(answer_to_label) if answer_to_label is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        record = self.records[index]
        read = self._read_clip_and_crop(record["video"], index)
        if read is None:
            return None
        pixel_values, crop = read  # (T, 3, S, S), the crop's (x0, y0, x1, y1) in the frame
        item = {
            "pixel_values": pixel_values,
            "question": record["question"],
            "label": self.label(record),
            "id": record["id"],
            "type": record.get("type"),
            "answer": record["answer"],
        }
        if self.kind == "mc":
            item["candidates"] = list(record["candidates"])
        if "grounding" in record:  # the named object's boxes in the frames the model sees (clover.grounding)
            num_frames = pixel_values.shape[0]
            item["grounding_boxes"] = boxes_in_crop(record["grounding"], record["grounding_segments"], num_frames, crop)  # (T, 4)
            item["grounding_objects"] = record.get("grounding_objects", 1)  # the clip's objects (1 if not said)
        return item

    def label(self, record: Mapping[str, Any]) -> int | float:
        """The training target of a record: class index (open), candidate index (mc) or number (count)."""
        if self.kind == "open":
            return self.answer_to_label.get(record["answer"], IGNORE_INDEX)
        if self.kind == "mc":
            return int(record["answer"])
        return float(record["answer"])


class VideoCaptionDataset(_ClipDataset):
    """Video-caption pairs for pre-training (`load_caption_pairs` output).

    Args:
        pairs: dicts with `video` (relative to `video_root`) and `caption`; an `id` if they have one
            (else the video path is the id).
        video_root: the folder the pairs' `video` paths are relative to.
        processor: frame count, preprocessing and the collate function (captions up to max_text_length).
        training: random frames and crops (the default: this dataset is for pre-training).
        seed: base of the per-item random generators.
        clip_cache: decoded clips kept in memory (`ClipCache`), or None.

    `dataset[i]` is {pixel_values (T, 3, S, S), caption, id}, or None when the clip cannot be read.
    """

    def __init__(
        self,
        pairs: Sequence[Mapping[str, Any]],
        video_root: str | os.PathLike,
        processor: CloverProcessor,
        *,
        training: bool = True,
        seed: int = 0,
        clip_cache: ClipCache | None = None,
    ) -> None:
        super().__init__(video_root, processor, training=training, seed=seed, clip_cache=clip_cache)
        self.pairs = [dict(pair) for pair in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        pair = self.pairs[index]
        pixel_values = self._read_clip(pair["video"], index)  # (T, 3, S, S) or None
        if pixel_values is None:
            return None
        return {"pixel_values": pixel_values, "caption": pair["caption"], "id": pair.get("id", pair["video"])}


__all__ = ["ClipCache", "VideoCaptionDataset", "VideoQADataset"]
