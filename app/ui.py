"""The Gradio app: layout and thin adapters between components and `app.service.VideoQAService`.

Nothing here computes anything a script could not get from the service: the adapters turn component
values into service arguments (a candidates text into a list, empty numbers into None), service results
into component values (a `gr.Label` dict, gallery captions), and `ServiceError`s into `gr.Error`s.

Named API endpoints (callable with `gradio_client`), each returning a `gr.Label` value:
    /answer (video, question)              the top-5 open-ended answers (or the count)
    /choose (video, question, candidates)  candidates one per line, all ranked
    /search (query)                        the example clips and this session's clips, ranked

Files: the app writes no files of its own. Uploads, webcam recordings and the frame strip's images live
in Gradio's cache, which `delete_cache` prunes hourly and Gradio removes at shutdown.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from app.service import Answer, ServiceError, VideoQAService
from app.settings import Settings
from clover.inference import DEFAULT_CHECKPOINT

logger = logging.getLogger(__name__)

MAX_SESSION_CLIPS = 20  # clips a session may add to its search set
DEMO_NOTE = (
    "The demo checkpoint was trained only on synthetic clips of coloured shapes that move, rotate, blink "
    "and jump; on real videos its answers mean little. Fine-tune on your data and point `CLOVER_CHECKPOINT` at it."
)


class ServiceHolder:
    """Loads the service on first use (not at import), once; a failure is remembered and re-raised."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: VideoQAService | None = None
        self._error: ServiceError | None = None
        self._lock = threading.Lock()

    def get(self) -> VideoQAService:
        with self._lock:
            if self._service is None and self._error is None:
                try:
                    self._service = self._load()
                except ServiceError as error:
                    self._error = error
            if self._error is not None:
                raise ServiceError(str(self._error))
            return self._service

    def _load(self) -> VideoQAService:
        s = self.settings
        if s.threads:
            import torch

            torch.set_num_threads(s.threads)
        return VideoQAService(
            s.checkpoint,
            device=s.device,
            num_frames=s.num_frames,
            max_upload_mb=s.max_upload_mb,
            max_duration_sec=s.max_duration_sec,
            cache_entries=s.cache_entries,
            cache_mb=s.cache_mb,
            quantize_int8=s.int8,
        )


# ------------------------------------------------------------------------------------ examples
def load_examples(directory: str | Path) -> list[dict[str, Any]]:
    """Entries of `directory/examples.json` whose clip exists, with `video` made absolute.

    The file is a list of {"video": path relative to the directory, "question", "answer",
    "candidates" (optional list)}; an absent file means no examples.
    """
    directory = Path(directory)
    index = directory / "examples.json"
    if not index.is_file():
        return []
    examples = []
    for entry in json.loads(index.read_text(encoding="utf-8")):
        video = (directory / entry["video"]).resolve()
        if video.is_file():
            examples.append({**entry, "video": str(video)})
        else:
            logger.warning("examples.json names %s, which does not exist; skipped", video)
    return examples


# ------------------------------------------------------------------------------------ adapters
def label_value(answers: list[tuple[str, float]]) -> dict[str, float]:
    """Service answers -> a `gr.Label` value (answer -> confidence)."""
    return {text: float(probability) for text, probability in answers}


def frame_strip(answer: Answer) -> list[tuple[Any, str]]:
    """The sampled frames with captions "t=1.2 s · relevance 0.31" for a `gr.Gallery`."""
    return [
        (frame, f"t={time:.1f} s · relevance {relevance:.2f}")
        for frame, time, relevance in zip(answer.frames, answer.timestamps, answer.relevance)
    ]


def parse_candidates(text: str | None) -> list[str]:
    """One candidate per non-blank line."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def optional_seconds(value: float | None) -> float | None:
    """A number box's seconds as a window bound: empty or 0 (what an untouched box sends) means none."""
    return None if value is None or float(value) == 0 else float(value)


def user_errors(fn: Callable) -> Callable:
    """Show ServiceError messages as `gr.Error`; log anything else and show a short message instead
    of a stack trace."""

    @functools.wraps(fn)  # Gradio reads the signature (through __wrapped__) for the API's parameters
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except ServiceError as error:
            # gr.Error renders HTML; file names come from users, so <, > and & are escaped.
            raise gr.Error(html.escape(str(error), quote=False), print_exception=False) from None
        except gr.Error:
            raise
        except Exception:
            logger.exception("request failed")
            raise gr.Error("the request failed on the server; see its log", print_exception=False) from None

    return wrapped


def remember_clip(clips: list[str], video: str | None) -> list[str]:
    """The session's search clips with `video` added (newest kept, at most MAX_SESSION_CLIPS)."""
    if not video or video in clips:
        return clips
    return [*clips, video][-MAX_SESSION_CLIPS:]


def clip_names(paths: list[str]) -> list[str]:
    """File names for the search results, made unique with " (2)", " (3)" ... where they repeat."""
    names, seen = [], {}
    for path in paths:
        name = Path(path).name
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


class Handlers:
    """The event functions, bound to one service holder and the example clips."""

    def __init__(self, holder: ServiceHolder, example_clips: list[str]) -> None:
        self.holder = holder
        self.example_clips = example_clips

    def note(self) -> str:
        """The checkpoint note shown under the title."""
        try:
            text = self.holder.get().describe()
        except ServiceError as error:
            return f"**The model could not be loaded:** {error}"
        if Path(self.holder.settings.checkpoint) == Path(DEFAULT_CHECKPOINT):
            text += "\n\n" + DEMO_NOTE
        return text

    def ask(self, video, question, candidates_text, start, end, clips):
        """Ask tab: open-ended when the candidates box is empty, multiple choice otherwise."""
        service = self.holder.get()
        candidates = parse_candidates(candidates_text)
        window = {"start_sec": optional_seconds(start), "end_sec": optional_seconds(end)}
        if candidates:
            answer = service.choose(video, question, candidates, **window)
        else:
            answer = service.answer(video, question, **window)
        return label_value(answer.answers), frame_strip(answer), remember_clip(clips, video)

    def answer(self, video: str, question: str, clips: list[str]):
        """The top-5 answers to an open question about the clip (the count for "how many times ...")."""
        answer = self.holder.get().answer(video, question)
        return label_value(answer.answers), remember_clip(clips, video)

    def choose(self, video: str, question: str, candidates: str, clips: list[str]):
        """The candidates (one per line) ranked by probability."""
        answer = self.holder.get().choose(video, question, parse_candidates(candidates))
        return label_value(answer.answers), remember_clip(clips, video)

    def search(self, query: str, clips: list[str]) -> dict[str, float]:
        """The example clips and this session's clips ranked by how well they match the query."""
        paths = [*self.example_clips, *(clip for clip in clips if clip not in self.example_clips)]
        if not paths:
            raise ServiceError("no clips to search: add some, or ask about one first")
        hits = self.holder.get().search(query, paths)
        names = dict(zip(paths, clip_names(paths)))
        return {names[hit.video]: hit.probability for hit in hits}

    def add_clips(self, files, clips):
        """Search tab: add uploaded files to this session's clips."""
        for path in files or []:
            clips = remember_clip(clips, path)
        return clips, self.describe_clips(clips)

    def describe_clips(self, clips: list[str]) -> str:
        names = clip_names([*self.example_clips, *clips])
        return f"Searching {len(names)} clips: " + ", ".join(names) if names else "No clips yet."


# ---------------------------------------------------------------------------------------- serving
def serve(demo: gr.Blocks, **launch_kwargs: Any) -> None:
    """`demo.launch(**launch_kwargs)` until Ctrl-C or SIGTERM, then delete the uploads it holds.

    Gradio deletes its cached files in its server's shutdown hook, which does not run when the main
    thread is interrupted (Ctrl-C) and not at all on SIGTERM (what `docker stop` and Spaces send): the
    uploads stayed on disk. Here SIGTERM stops the server like Ctrl-C, and the files are removed after.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt, as Ctrl-C does
    try:
        demo.launch(**launch_kwargs)
    except KeyboardInterrupt:
        demo.close()
    finally:
        removed = delete_uploads(demo)
        logger.info("removed %d cached upload(s) at shutdown", removed)


def delete_uploads(demo: gr.Blocks) -> int:
    """Delete every file Gradio cached for `demo` (uploads, webcam recordings, gallery images) and the
    per-file folders that held them; returns how many files were removed."""
    removed = 0
    for file_set in demo.temp_file_sets:
        for name in list(file_set):
            path = Path(name)
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # Gradio's <sha256> folder, once empty
            file_set.discard(name)
    return removed


# -------------------------------------------------------------------------------------- layout
def build_demo(settings: Settings, holder: ServiceHolder | None = None) -> gr.Blocks:
    """The Blocks app; the model is loaded on the first request (or by `holder.get()` beforehand)."""
    holder = holder or ServiceHolder(settings)
    examples = load_examples(settings.examples)
    handlers = Handlers(holder, sorted({example["video"] for example in examples}))
    with gr.Blocks(title="Clover VideoQA", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Clover VideoQA\nAsk a question about a short clip; the model samples 8 frames from it.")
        note = gr.Markdown()
        clips = gr.State([])  # this session's clips for search
        with gr.Tab("Ask"):
            ask_layout(handlers, examples, clips)
        with gr.Tab("Search"):
            search_layout(handlers, clips)
        demo.load(handlers.note, outputs=note, api_visibility="private")
    return demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)


def ask_layout(handlers: Handlers, examples: list[dict[str, Any]], clips: gr.State) -> None:
    with gr.Row():
        with gr.Column():
            video = gr.Video(sources=["upload", "webcam"], label="Clip", elem_id="clip")
            question = gr.Textbox(label="Question", placeholder="what does the red circle do ?", elem_id="question")
            candidates = gr.Textbox(
                label="Candidates (multiple choice: one per line; leave empty for an open answer)", lines=3
            )
            with gr.Row():
                start = gr.Number(label="Start (s; 0 = start of the clip)", value=0, minimum=0)
                end = gr.Number(label="End (s; 0 = end of the clip)", value=0, minimum=0)
            ask = gr.Button("Ask", variant="primary", elem_id="ask")
        with gr.Column():
            answers = gr.Label(num_top_classes=10, label="Answers", elem_id="answers")
    strip = gr.Gallery(label="Sampled frames and their relevance to the question", columns=4, height="auto", elem_id="frames")
    if examples:
        gr.Examples(
            [[e["video"], e["question"], "\n".join(e.get("candidates") or [])] for e in examples],
            inputs=[video, question, candidates],
            label="Examples",
        )
    inputs = [video, question, candidates, start, end, clips]
    for trigger in (ask.click, question.submit):
        trigger(user_errors(handlers.ask), inputs, [answers, strip, clips], api_visibility="private")
    # The API endpoints: hidden buttons whose events take the same components and return the Label.
    api_answer, api_choose = gr.Button(visible=False), gr.Button(visible=False)
    api_answer.click(user_errors(handlers.answer), [video, question, clips], [answers, clips], api_name="answer")
    api_choose.click(user_errors(handlers.choose), [video, question, candidates, clips], [answers, clips], api_name="choose")


def search_layout(handlers: Handlers, clips: gr.State) -> None:
    gr.Markdown("Rank the example clips and the clips of this session (asked about or added here) by a text.")
    with gr.Row():
        query = gr.Textbox(label="Query", placeholder="a red circle jumps", scale=4)
        go = gr.Button("Search", variant="primary", scale=1)
    results = gr.Label(num_top_classes=10, label="Best matching clips")
    with gr.Accordion("Add clips", open=False):
        files = gr.File(file_count="multiple", file_types=["video", ".gif"], label="Clips", type="filepath")
        listing = gr.Markdown(handlers.describe_clips([]))
    files.upload(handlers.add_clips, [files, clips], [clips, listing], api_visibility="private")
    go.click(user_errors(handlers.search), [query, clips], results, api_name="search")
    query.submit(user_errors(handlers.search), [query, clips], results, api_visibility="private")
