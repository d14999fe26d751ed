"""The app's inference service: limits and validation on top of `clover.inference` (never imports gradio).

`VideoQAService` is what the Gradio adapters (`app/ui.py`), the tests and the latency benchmark call.
It adds what a public demo needs and a library does not: limits on the upload's size (the real file on
disk) and the clip's duration (probed from the file), checks of the time window, and one error type,
`ServiceError`, whose message is safe and useful to show a user. The model, the feature cache and the
answer heads are `clover.inference.CloverInference`'s.

Routing: `answer` uses the count head for questions that start with "how many times" when the model
has one (TGIF-QA's repetition-count task, the only thing that head was trained for), and the open-ended
head otherwise; `head=` overrides it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clover.inference import DEFAULT_CHECKPOINT, ClipFeatures, CloverInference, InputError
from clover.video import VideoReadError, probe_video


class ServiceError(ValueError):
    """A request the service refuses or cannot serve; `str(error)` is the message for the user."""


@dataclass(frozen=True)
class Answer:
    """The reply to one question about one clip.

    answers: (text, probability) best first; head: "open", "mc" or "count";
    frames: (T, h, w, 3) uint8 previews of the sampled frames; timestamps: (T,) seconds;
    relevance: (T,) per-frame share of the question pooling's attention (the fused [CLS]'s for a model
    without it), summing to 1;
    cached: whether the clip's features came from the cache;
    timings: seconds spent hashing, reading (decode + preprocessing), encoding the clip, and answering.
    """

    answers: list[tuple[str, float]]
    head: str
    frames: np.ndarray
    timestamps: np.ndarray
    relevance: np.ndarray
    cached: bool
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    """One clip of a search: cosine similarity and softmax probability over the searched clips."""

    video: str
    similarity: float
    probability: float


class VideoQAService:
    """Answers questions about video files with one loaded Clover checkpoint.

    Args:
        checkpoint: a directory saved by `CloverForVideoQA.save_pretrained` + `CloverProcessor.save_pretrained`,
            or a Hub repo id.
        device: "cpu" or "cuda".
        num_frames: frames per clip; must match the checkpoint (None: the checkpoint's).
        max_upload_mb: largest file accepted, checked on disk.
        max_duration_sec: longest clip accepted, probed from the file.
        cache_entries, cache_mb: bounds of the clip feature cache (entries and memory).
        quantize_int8: int8 dynamic quantisation of the Linear layers (CPU).
        allow_pickle: also load pickle weights (`pytorch_model.bin`); off: safetensors only.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT,
        *,
        device: str = "cpu",
        num_frames: int | None = None,
        max_upload_mb: float = 50,
        max_duration_sec: float = 600,
        cache_entries: int = 64,
        cache_mb: float = 256,
        quantize_int8: bool = False,
        allow_pickle: bool = False,
    ) -> None:
        try:
            self.inference = CloverInference.from_pretrained(
                checkpoint, device=device, quantize_int8=quantize_int8, cache_entries=cache_entries, cache_mb=cache_mb,
                allow_pickle=allow_pickle,
            )
        except InputError as error:
            raise ServiceError(str(error)) from error
        if num_frames is not None and num_frames != self.inference.num_frames:
            raise ServiceError(f"this checkpoint encodes exactly {self.inference.num_frames} frames per clip, not {num_frames}")
        self.checkpoint = str(checkpoint)
        self.max_upload_mb = float(max_upload_mb)
        self.max_duration_sec = float(max_duration_sec)

    # -- facts --------------------------------------------------------------------------------------
    @property
    def heads(self) -> list[str]:
        return self.inference.heads

    @property
    def cache(self):
        """The clip feature cache (`stats` has hits, misses, evictions, entries, bytes)."""
        return self.inference.cache

    def describe(self) -> str:
        """Which checkpoint is loaded and what its model card says it was trained on."""
        return f"Checkpoint `{self.checkpoint}`: {self.inference.describe()}"

    # -- requests -----------------------------------------------------------------------------------
    def answer(
        self,
        video_path: str | os.PathLike,
        question: str,
        *,
        top_k: int = 5,
        start_sec: float | None = None,
        end_sec: float | None = None,
        head: str = "auto",
    ) -> Answer:
        """The `top_k` best answers to an open question (or the count for "how many times ...")."""
        clip, cached, timings = self._clip(video_path, start_sec, end_sec)
        prediction = self._guard(lambda: self.inference.answer(clip, question, head=head, top_k=top_k))
        return self._reply(clip, cached, timings, prediction)

    def choose(
        self,
        video_path: str | os.PathLike,
        question: str,
        candidates: list[str],
        *,
        start_sec: float | None = None,
        end_sec: float | None = None,
    ) -> Answer:
        """Every candidate ranked by probability; duplicates (ignoring case) are dropped first."""
        self._guard(lambda: self.inference.check_question(question))
        clip, cached, timings = self._clip(video_path, start_sec, end_sec)
        prediction = self._guard(lambda: self.inference.choose(clip, question, candidates))
        return self._reply(clip, cached, timings, prediction)

    def count(self, video_path: str | os.PathLike, question: str, **window: float | None) -> Answer:
        """The count head's answer (a whole number in the config's range, probability 1)."""
        if "count" not in self.heads:
            raise ServiceError(f"this model has no count head (it has {', '.join(self.heads)})")
        return self.answer(video_path, question, head="count", **window)

    def search(self, query: str, video_paths: list[str | os.PathLike]) -> list[SearchHit]:
        """Every clip ranked by how well it matches `query` (text-to-video retrieval), best first.

        Each clip's embedding comes from the same cache as its answers. Probabilities are the softmax
        of the similarities at the model's contrastive temperature.
        """
        self._guard(lambda: self.inference.check_question(query, what="query"))
        clips = [self._clip(path, None, None)[0] for path in video_paths]
        similarities = self._guard(lambda: self.inference.similarities(query, clips))
        if not similarities:
            return []
        logits = np.asarray(similarities) / self.inference.model.config.temperature
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        hits = [SearchHit(str(path), float(s), float(p)) for path, s, p in zip(video_paths, similarities, probabilities)]
        return sorted(hits, key=lambda hit: hit.similarity, reverse=True)

    # -- steps --------------------------------------------------------------------------------------
    def _clip(self, video_path: Any, start_sec: float | None, end_sec: float | None) -> tuple[ClipFeatures, bool, dict[str, float]]:
        """Check the file and window against the limits, then get the clip's features (cached or new)."""
        path = self._check_file(video_path)
        started = time.perf_counter()
        self._guard(lambda: self.inference.digests(path))  # remembered: clip_features does not hash again
        hashed = time.perf_counter() - started
        _check_window(start_sec, end_sec, None)
        clip, cached = self._guard(
            lambda: self.inference.clip_features(
                path, start_sec=start_sec, end_sec=end_sec, before_read=lambda p: self._check_clip(p, start_sec, end_sec)
            )
        )
        timings = {"hash": hashed, "read": 0.0 if cached else clip.read_seconds, "encode": 0.0 if cached else clip.encode_seconds}
        return clip, cached, timings

    def _check_file(self, video_path: Any) -> Path:
        """The path of an existing regular file no larger than the upload limit."""
        if video_path is None or (isinstance(video_path, str) and not video_path.strip()):
            raise ServiceError("no video given")
        path = Path(video_path)
        if not path.is_file():
            raise ServiceError(f"video file {path.name!r} not found")
        size_mb = path.stat().st_size / 2**20
        if size_mb > self.max_upload_mb:
            raise ServiceError(f"file is {size_mb:.0f} MB; the limit is {self.max_upload_mb:g} MB")
        return path

    def _check_clip(self, path: Path, start_sec: float | None, end_sec: float | None) -> None:
        """The probed duration within the limit, and the window inside the clip."""
        info = self._guard(lambda: probe_video(path))
        if info.duration > self.max_duration_sec:
            raise ServiceError(f"clip is {info.duration:.0f} s long; the limit is {self.max_duration_sec:g} s")
        _check_window(start_sec, end_sec, info.duration)

    @staticmethod
    def _guard(call):
        """Run `call`, turning the library's user-facing errors into ServiceError."""
        try:
            return call()
        except VideoReadError as error:  # the file's name only: the server's directories are not the user's business
            raise ServiceError(f"cannot read video {Path(error.path).name!r}: {error.reason}") from error
        except InputError as error:
            raise ServiceError(str(error)) from error
        except FileNotFoundError as error:
            raise ServiceError(f"video file {Path(error.filename or '').name!r} not found") from error

    @staticmethod
    def _reply(clip: ClipFeatures, cached: bool, timings: dict[str, float], prediction) -> Answer:
        return Answer(
            answers=prediction.answers,
            head=prediction.head,
            frames=clip.frames,
            timestamps=clip.timestamps,
            relevance=prediction.relevance,
            cached=cached,
            timings={**timings, "answer": prediction.seconds},
        )


def _check_window(start_sec: float | None, end_sec: float | None, duration: float | None) -> None:
    """start >= 0, start < end, and start inside the clip when its duration is known."""
    if start_sec is not None and start_sec < 0:
        raise ServiceError(f"start time {start_sec:g} s is negative")
    if start_sec is not None and end_sec is not None and end_sec <= start_sec:
        raise ServiceError(f"end time {end_sec:g} s is not after start time {start_sec:g} s")
    if duration is not None and start_sec is not None and start_sec >= duration:
        raise ServiceError(f"start time {start_sec:g} s is past the end of the clip ({duration:.1f} s)")
