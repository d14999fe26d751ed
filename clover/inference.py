"""Inference core shared by the command line (`clover.predict`) and the app (`app/service.py`).

`CloverInference` holds one `CloverForVideoQA` and its `CloverProcessor`, loaded once, and answers
questions about clip files:

1. A clip is read (`read_frames_with_timestamps`), preprocessed and encoded once; the video tokens, the
   retrieval embedding and small preview frames go into a `FeatureCache` keyed by the sha256 of the
   file's bytes (plus the frame count and the time window), so a follow-up question on the same clip
   costs only the text and fusion encoders.
2. `answer` (open-ended, or the count head), `choose` (multiple choice) and `similarities` (text to
   video retrieval) take the cached `ClipFeatures` and return answers with probabilities, best first,
   and a per-frame relevance from the question-guided pooling's attention (`qa_pooling="cls+max+query"`),
   or the fusion encoder's [CLS] attention for a model without it.

Nothing here knows about uploads, size limits or user interfaces; every per-request value (question,
candidates, window, top-k) is an argument, never state on the shared model. Input errors raise
`InputError` (a `ValueError`) whose message can be shown to a user as is.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clover.video import VideoReadError, read_frames_with_timestamps

DEFAULT_CHECKPOINT = "examples/checkpoint"
MAX_QUESTION_CHARS = 300
MIN_CANDIDATES, MAX_CANDIDATES = 2, 10
PREVIEW_SIDE = 256  # long side of the preview frames kept with a clip's features
# Questions routed to the count head by `head="auto"` (TGIF-QA's repetition-count task).
COUNT_QUESTION = re.compile(r"^\s*how\s+many\s+times\b", re.IGNORECASE)


class InputError(ValueError):
    """A question, candidate list or checkpoint the model cannot take; the message is for the user."""


# --------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ClipFeatures:
    """Everything kept about one clip (one window of it): computed once, reused for every question.

    tokens: (1, t, h, w, Cv) video tokens; embedding: (1, E) normalised retrieval embedding;
    frames: (T, h', w', 3) uint8 previews of the sampled frames (long side <= PREVIEW_SIDE);
    timestamps: (T,) seconds of the sampled frames; read_seconds / encode_seconds: what making it cost.
    """

    key: str
    tokens: torch.Tensor
    embedding: torch.Tensor
    frames: np.ndarray
    timestamps: np.ndarray
    read_seconds: float
    encode_seconds: float

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors and arrays of this entry."""
        tensors = self.tokens.element_size() * self.tokens.nelement() + self.embedding.element_size() * self.embedding.nelement()
        return tensors + self.frames.nbytes + self.timestamps.nbytes


@dataclass(frozen=True)
class Prediction:
    """answers: (text, probability) best first; relevance: (T,) per sampled frame, summing to 1."""

    head: str
    answers: list[tuple[str, float]]
    relevance: np.ndarray
    seconds: float


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0


# ----------------------------------------------------------------------------------------- cache
class FeatureCache:
    """A thread-safe LRU cache of `ClipFeatures`, bounded in entries and in bytes.

    `get_or_compute(key, compute)` runs `compute` at most once per key at a time: a second request for
    a clip being encoded waits for the first instead of decoding the same file again. An entry larger
    than the whole byte budget is returned but not kept.
    """

    def __init__(self, max_entries: int = 32, max_bytes: int = 256 * 2**20) -> None:
        if max_entries < 0 or max_bytes < 0:
            raise ValueError(f"cache bounds must be non-negative, got {max_entries} entries and {max_bytes} bytes")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[str, ClipFeatures] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def get(self, key: str) -> ClipFeatures | None:
        """The entry for `key` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, entry: ClipFeatures) -> None:
        """Keep `entry`, then evict least recently used entries until both bounds hold."""
        with self._lock:
            if entry.nbytes > self.max_bytes or self.max_entries == 0:
                return
            if entry.key in self._entries:
                self.stats.bytes -= self._entries.pop(entry.key).nbytes
            self._entries[entry.key] = entry
            self.stats.bytes += entry.nbytes
            while len(self._entries) > self.max_entries or self.stats.bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.stats.bytes -= evicted.nbytes
                self.stats.evictions += 1
            self.stats.entries = len(self._entries)

    def get_or_compute(self, key: str, compute: Callable[[], ClipFeatures]) -> tuple[ClipFeatures, bool]:
        """(entry, True) from the cache, or (compute(), False) after storing it."""
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            entry = self.get(key)
            with self._lock:
                if entry is not None:
                    self.stats.hits += 1
                else:
                    self.stats.misses += 1
            if entry is not None:
                return entry, True
            try:
                entry = compute()
                self.put(entry)
            finally:
                with self._lock:
                    self._key_locks.pop(key, None)
            return entry, False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.stats.bytes = self.stats.entries = 0


class FileDigests:
    """sha256 of files' bytes, remembered per (path, size, mtime, inode) so a follow-up question about
    an unchanged file does not hash it again."""

    def __init__(self, max_entries: int = 1024) -> None:
        self._known: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def __call__(self, path: str | os.PathLike) -> str:
        path = Path(path)
        stat = path.stat()
        identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            if identity in self._known:
                return self._known[identity]
        digest = sha256_file(path)
        with self._lock:
            self._known[identity] = digest
            while len(self._known) > self.max_entries:
                self._known.popitem(last=False)
        return digest


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------- inference
class CloverInference:
    """One loaded model and processor answering questions about clip files (see the module docstring).

    Thread-safe: the cache has its own lock, and model calls are serialised by `_model_lock` (on a
    few CPU cores, parallel forward passes only fight for the same cores), while clips are read and
    decoded in parallel outside it.
    """

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu", cache: FeatureCache | None = None,
                 checkpoint: str | None = None) -> None:  # fmt: skip
        self.model = model.eval().to(device)
        self.processor = processor
        self.device = torch.device(device)
        self.cache = cache if cache is not None else FeatureCache()
        self.checkpoint = checkpoint
        self.digests = FileDigests()
        self._model_lock = threading.Lock()
        if processor.num_frames != model.config.num_frames:
            raise InputError(f"the processor samples {processor.num_frames} frames but the model encodes {model.config.num_frames}")

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT,
        *,
        device: str = "cpu",
        quantize_int8: bool = False,
        cache_entries: int = 32,
        cache_mb: float = 256,
        allow_pickle: bool = False,
    ) -> "CloverInference":
        """Load a directory (or Hub repo id) saved by `CloverForVideoQA.save_pretrained` and
        `CloverProcessor.save_pretrained`. `quantize_int8` makes every Linear layer int8 (dynamic
        quantisation, CPU only): smaller and often faster, with slightly different scores. Weights load
        only from safetensors unless `allow_pickle` (a pickle file can run code when loaded)."""
        from clover.modeling_clover import CloverForVideoQA
        from clover.processing_clover import CloverProcessor

        location = _checkpoint_location(checkpoint)
        try:
            model = CloverForVideoQA.from_pretrained(location, allow_pickle=allow_pickle)
            processor = CloverProcessor.from_pretrained(location)
        except (OSError, ValueError) as error:
            raise InputError(f"cannot load checkpoint {str(checkpoint)!r}: {error}") from error
        model.eval()
        if quantize_int8:
            model = quantize_linear_int8(model)
        cache = FeatureCache(max_entries=cache_entries, max_bytes=int(cache_mb * 2**20))
        return cls(model, processor, device=device, cache=cache, checkpoint=str(checkpoint))

    @property
    def heads(self) -> list[str]:
        """The answer heads of the loaded model ("open", "mc", "count")."""
        return self.model.answer_heads

    @property
    def num_frames(self) -> int:
        return self.processor.num_frames

    def describe(self) -> str:
        """What is loaded: the model card's first paragraph (checkpoint README.md) and the config."""
        config = self.model.config
        facts = (
            f"{config.num_frames} frames at {config.image_size}x{config.image_size}, heads {', '.join(self.heads)}, "
            f"{config.num_labels if 'open' in self.heads else 0} open-ended answers"
        )
        card = _model_card_summary(self.checkpoint)
        return f"{card}\n\n({facts})" if card else f"({facts})"

    # -- clips ------------------------------------------------------------------------------------
    def clip_features(
        self,
        path: str | os.PathLike,
        *,
        start_sec: float | None = None,
        end_sec: float | None = None,
        before_read: Callable[[Path], None] | None = None,
    ) -> tuple[ClipFeatures, bool]:
        """The clip's features from the cache, or read and encoded now; and whether it was cached.

        `before_read(path)` runs only when the clip must be read (a cache miss), before any decoding:
        the place for checks that a cached clip has already passed (the app's duration limit).
        Raises `clover.video.VideoReadError` (a ValueError naming the file) for unreadable files.
        """
        try:
            digest = self.digests(path)
        except OSError as error:  # the same error as the reader's for a file that is not there
            reason = "file not found" if isinstance(error, FileNotFoundError) else error.strerror or str(error)
            raise VideoReadError(path, reason) from error
        key = f"{digest}:{self.num_frames}:{start_sec}:{end_sec}"

        def compute() -> ClipFeatures:
            if before_read is not None:
                before_read(Path(path))
            return self._encode_clip(key, path, start_sec, end_sec)

        return self.cache.get_or_compute(key, compute)

    def _encode_clip(self, key: str, path: str | os.PathLike, start_sec: float | None, end_sec: float | None) -> ClipFeatures:
        started = time.perf_counter()
        frames, timestamps = read_frames_with_timestamps(path, self.num_frames, start_sec=start_sec, end_sec=end_sec)
        pixel_values = self.processor.preprocess_frames(frames).unsqueeze(0).to(self.device)  # (1, T, 3, S, S)
        read_seconds = time.perf_counter() - started
        with self._model_lock, torch.inference_mode():
            tokens = self.model.encode_video(pixel_values).tokens  # (1, t, h, w, Cv)
            embedding = self.model.clover.video_embedding(tokens)  # (1, E)
        return ClipFeatures(
            key=key,
            tokens=tokens,
            embedding=embedding,
            frames=preview_frames(frames),
            timestamps=np.asarray(timestamps, dtype=np.float64),
            read_seconds=read_seconds,
            encode_seconds=time.perf_counter() - started - read_seconds,
        )

    # -- questions --------------------------------------------------------------------------------
    def head_for(self, question: str) -> str:
        """The head `head="auto"` picks: "count" for "how many times ..." when the model has a count
        head, else "open"."""
        if "count" in self.heads and COUNT_QUESTION.match(question):
            return "count"
        if "open" not in self.heads:
            raise InputError(f"this model has no open-ended head (it has {', '.join(self.heads)}); give candidates")
        return "open"

    def answer(self, clip: ClipFeatures, question: str, *, head: str = "auto", top_k: int = 5) -> Prediction:
        """The `top_k` best open-ended answers (or the count) to `question` about `clip`."""
        question = self.check_question(question)
        head = self.head_for(question) if head == "auto" else head
        if head not in self.heads or head == "mc":
            raise InputError(f"answer() takes the 'open' or 'count' head of {self.heads}, not {head!r}")
        if top_k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        text = self.processor.encode_text([question])
        return self._predict(clip, head, text, top_k, None)

    def choose(self, clip: ClipFeatures, question: str, candidates: Sequence[str]) -> Prediction:
        """Every candidate ranked by probability (summing to 1 over the distinct candidates)."""
        question = self.check_question(question)
        if "mc" not in self.heads:
            raise InputError(f"this model has no multiple-choice head (it has {', '.join(self.heads)})")
        options = clean_candidates(candidates)
        text = self.processor.encode_multiple_choice([question], [options])
        return self._predict(clip, "mc", text, len(options), [options])

    def _predict(self, clip: ClipFeatures, head: str, text: dict, top_k: int, candidates: list[list[str]] | None) -> Prediction:
        started = time.perf_counter()
        text = {name: tensor.to(self.device) for name, tensor in text.items()}
        with self._model_lock, torch.inference_mode():
            out = self.model(
                video_features=_features(clip), head=head, output_cls_attention=True, output_question_attention=True, **text
            )  # fmt: skip
            answers = self.model.top_answers(out.logits, head, k=top_k, candidates=candidates)[0]
        # The question pooling's attention where the model has one, the fused [CLS]'s otherwise: both are
        # weak hints, the pooling's closer to the asked-about frames in 8 of 9 measured cases (docs/app.md).
        attention = out.question_attention if out.question_attention is not None else out.cls_attention
        relevance = frame_relevance(attention[0], self.model.config.video_grid[0], len(clip.timestamps))
        return Prediction(head, answers, relevance, time.perf_counter() - started)

    def similarities(self, query: str, clips: Sequence[ClipFeatures]) -> list[float]:
        """Cosine similarity of the query's retrieval embedding with each clip's, in the clips' order."""
        query = self.check_question(query, what="query")
        if not clips:
            return []
        text = {name: tensor.to(self.device) for name, tensor in self.processor.encode_text([query]).items()}
        with self._model_lock, torch.inference_mode():
            text_embedding = self.model.clover.get_text_features(**text)  # (1, E)
        videos = torch.cat([clip.embedding for clip in clips])  # (N, E)
        return (videos @ text_embedding[0]).float().tolist()  # (N,)

    def check_question(self, question: Any, what: str = "question") -> str:
        """The question stripped, or an InputError: not a string, empty, too long in characters or tokens.

        Over-long questions are refused rather than silently cut, which could change what they ask.
        """
        if not isinstance(question, str):
            raise InputError(f"{what} must be text, got {type(question).__name__}")
        question = question.strip()
        if not question:
            raise InputError(f"{what} is empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise InputError(f"{what} is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}")
        tokens = len(self.processor.tokenizer(question)["input_ids"])
        if tokens > self.processor.max_text_length:
            raise InputError(f"{what} is {tokens} tokens long; the limit is {self.processor.max_text_length}")
        return question


# ---------------------------------------------------------------------------------------- helpers
def clean_candidates(candidates: Sequence[str]) -> list[str]:
    """Candidates stripped, duplicates (ignoring case) removed keeping the first; 2..10 must remain."""
    if isinstance(candidates, str):
        raise InputError("candidates must be a list of answers, one per item")
    options: list[str] = []
    seen: set[str] = set()
    for number, candidate in enumerate(candidates, start=1):
        if not isinstance(candidate, str) or not candidate.strip():
            raise InputError(f"candidate {number} is empty")
        if candidate.strip().lower() not in seen:
            seen.add(candidate.strip().lower())
            options.append(candidate.strip())
    if not MIN_CANDIDATES <= len(options) <= MAX_CANDIDATES:
        raise InputError(
            f"multiple choice needs {MIN_CANDIDATES} to {MAX_CANDIDATES} different candidates; got {len(options)}"
        )
    return options


def frame_relevance(attention: torch.Tensor, temporal_slots: int, num_frames: int) -> np.ndarray:
    """Per-frame relevance (num_frames,) summing to 1, from an attention (t*h*w,) over the video tokens.

    The attention over each temporal slot's tokens is summed; a slot covers num_frames / t consecutive
    frames (slot i of 4 covers frames 2i and 2i+1 of 8) and its mass is shared equally among them.
    """
    slots = attention.detach().float().cpu().view(temporal_slots, -1).sum(-1)  # (t,)
    owner = torch.arange(num_frames) * temporal_slots // num_frames  # (T,) slot of each frame
    per_frame = slots[owner] / torch.bincount(owner, minlength=temporal_slots)[owner]  # (T,)
    total = float(per_frame.sum())
    return (per_frame / total).numpy() if total > 0 else np.full(num_frames, 1.0 / num_frames)


def preview_frames(frames: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """(T, H, W, 3) uint8 frames shrunk so the long side is at most `side` (for display)."""
    height, width = frames.shape[1:3]
    scale = side / max(height, width)
    if scale >= 1:
        return np.ascontiguousarray(frames)
    from PIL import Image

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR)) for frame in frames])


def quantize_linear_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every `nn.Linear` (weights int8, activations quantised per batch)."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _features(clip: ClipFeatures) -> Any:
    from clover.modeling_clover import VideoFeatures

    return VideoFeatures(tokens=clip.tokens)


def _checkpoint_location(checkpoint: str | os.PathLike) -> str:
    """A local directory, or a Hub repo id ("owner/name") when no local directory "owner" exists."""
    path = Path(checkpoint)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"checkpoint directory {str(checkpoint)!r} has no config.json; is it a saved Clover model?")
        return str(path)
    looks_like_repo = re.fullmatch(r"[\w.-]+/[\w.-]+", str(checkpoint)) and not str(checkpoint).startswith((".", "/"))
    if looks_like_repo and not Path(str(checkpoint).split("/")[0]).exists():  # "examples/checkpoint" is local
        return str(checkpoint)
    hint = " Make the demo checkpoint with `python -m finetune.make_demo`, or point" if str(checkpoint) == DEFAULT_CHECKPOINT else " Point"
    raise InputError(
        f"checkpoint {str(checkpoint)!r} not found.{hint} --checkpoint (or CLOVER_CHECKPOINT) at a directory "
        "saved by CloverForVideoQA.save_pretrained and CloverProcessor.save_pretrained, or at a Hub repo id."
    )


def _model_card_summary(checkpoint: str | None, max_chars: int = 600) -> str:
    """The first paragraph of text after the title of the checkpoint's README.md ('' when none)."""
    if checkpoint is None or not (Path(checkpoint) / "README.md").is_file():
        return ""
    text = (Path(checkpoint) / "README.md").read_text(encoding="utf-8", errors="replace")
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.DOTALL)  # YAML front matter
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))  # headings
    paragraphs = [block.strip() for block in text.split("\n\n") if block.strip()]
    summary = paragraphs[0] if paragraphs else ""
    return summary[:max_chars].rstrip() + ("…" if len(summary) > max_chars else "")


__all__ = [
    "CloverInference",
    "ClipFeatures",
    "FeatureCache",
    "InputError",
    "Prediction",
    "clean_candidates",
    "frame_relevance",
    "sha256_file",
]
