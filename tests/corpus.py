"""A corpus of bad (and awkward but valid) inputs, generated in seconds, never committed.

Each `Case` is one input the layers of the project may meet: a clip file (truncated, random bytes, a
valid header followed by garbage, audio only, empty, a huge frame size, ten hours long, odd GIFs, a
hostile file name) and/or a question with candidates (10,000 characters, control characters, emoji,
empty or duplicated candidates). `make_corpus(directory)` writes every clip and returns the cases.

`expect` says, per layer, what a correct program does with the case: "ok" (an answer) or "error" (a
clear message). Layers: "read" (`clover.video.read_frames`), "processor" (`CloverProcessor` on the
frames read), "service" (`app.service.VideoQAService`), "app" (the Gradio endpoints), "predict" (the
`clover.predict` command line) and "check_data" (`finetune.check_data` on a dataset holding the clip).
A layer missing from `expect` does not apply to the case (text cases are not clips for `read`).

The runners (`run_read`, `run_processor`, ...) put one case through one layer and return an
`Outcome`; `tests/test_reliability.py` and `benchmarks/reliability_report.py` both use them.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.launch import free_port
from tests.media import audio_only_mp4, index_clip, truncated_copy, zero_byte

LAYERS = ("read", "processor", "service", "app", "predict", "check_data")
CASE_TIMEOUT_SEC = 20  # no case may take longer than this in any layer
GOOD_QUESTION = "what does the red circle do ?"
# A small upload limit for the app and service under test, so that "too large" costs little disk.
TEST_UPLOAD_MB = 2
TEST_DURATION_SEC = 120

_FILE_LAYERS = {"read", "processor", "service", "app", "predict", "check_data"}
_TEXT_LAYERS = {"processor", "service", "app", "predict"}


@dataclass(frozen=True)
class Case:
    """One input: a clip (`video`, None = the corpus's good clip), a question and optional candidates.

    expect: layer -> "ok" or "error"; why: what the case is, for the report.
    """

    name: str
    why: str
    expect: dict[str, str]
    video: Path | None = None
    question: str = GOOD_QUESTION
    candidates: list[str] | None = None


@dataclass
class Outcome:
    """What a layer did with a case: "ok" with a short answer, "error" with its message, or "crash" /
    "hang" (both failures) with the exception; `seconds` it took."""

    status: str
    message: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- generators
def random_bytes(path: Path, size: int = 64 * 1024, seed: int = 0) -> Path:
    """`size` random bytes under `path`'s (video) extension."""
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def header_then_garbage(src: Path, dst: Path, keep: int = 64, seed: int = 1) -> Path:
    """The first `keep` bytes of a real clip (its container header) followed by random bytes, same size."""
    data = src.read_bytes()
    noise = np.random.default_rng(seed).integers(0, 256, len(data) - keep, dtype=np.uint8).tobytes()
    dst.write_bytes(data[:keep] + noise)
    return dst


def huge_frame_gif(path: Path, side: int = 8000) -> Path:
    """A one-frame GIF of `side` x `side` pixels of one colour: 50 KB on disk, 190 MB per decoded frame."""
    image = Image.new("P", (side, side), 0)
    image.putpalette([255, 0, 0] * 256)
    image.save(path)
    return path


def ten_hour_clip(path: Path, hours: float = 10, size: int = 16) -> Path:
    """A real 1 fps H.264 clip `hours` long at `size` x `size` (36,000 frames; about 2 s to write)."""
    import av

    frame = np.zeros((size, size, 3), np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        stream.codec_context.gop_size = 600
        for i in range(int(hours * 3600)):
            frame[:] = i % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def long_timestamps_clip(path: Path, seconds: int = 3600, frames: int = 5, size: int = 16) -> Path:
    """A clip of `frames` frames spread over `seconds` by their timestamps (an hour in a few KB)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1)
        step = seconds // (frames - 1)
        for i in range(frames):
            video_frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 40 * i, np.uint8), format="rgb24")
            video_frame.pts, video_frame.time_base = i * step, Fraction(1, 1)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def one_frame_gif(path: Path) -> Path:
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(path)
    return path


def zero_delay_gif(path: Path, frames: int = 6) -> Path:
    """Frames with a 0 ms delay each (browsers and FFmpeg show them at 10 fps)."""
    images = [Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=0, loop=0)
    return path


WEIRD_NAME = "we'ird \"name\" ünï <b>..&amp; 🎬 clip.mp4"


def weird_name_clip(directory: Path, good: Path) -> Path:
    """A copy of the good clip under a name with spaces, quotes, unicode, HTML and `..`, reached through a
    path with `..` components (`sub/../<name>`)."""
    (directory / "sub").mkdir(exist_ok=True)
    (directory / WEIRD_NAME).write_bytes(good.read_bytes())
    return directory / "sub" / ".." / WEIRD_NAME


# ------------------------------------------------------------------------------------------ corpus
def _expect(default: str, layers: set[str] = _FILE_LAYERS, **overrides: str) -> dict[str, str]:
    return {layer: overrides.get(layer, default) for layer in layers}


def make_good_clip(directory: Path) -> Path:
    """The corpus's good clip: 2 s of a 64x64 index clip at 25 fps (H.264 in mp4)."""
    return index_clip(directory / "good.mp4", num_frames=50, size=(64, 64))


def _mkv(directory: Path) -> Path:
    """A 2 s index clip in Matroska (its index comes first, so a cut-off copy still opens)."""
    path = directory / "good.mkv"
    return path if path.is_file() else index_clip(path, num_frames=50, size=(64, 64))


def _header_only(directory: Path) -> Path:
    path = directory / "header_only.mp4"
    path.write_bytes((directory / "good.mp4").read_bytes()[:48])
    return path


def _renamed_long(directory: Path) -> Path:
    path = directory / "ten_hours_renamed.txt"
    path.write_bytes(ten_hour_clip(directory / "ten_hours_src.mp4").read_bytes())
    return path


Maker = Callable[[Path], Path]


def _truncations() -> list[tuple[str, str, dict[str, str], Maker]]:
    cases = []
    for fraction in (0.1, 0.5, 0.9):
        percent = int(fraction * 100)
        cases.append((f"mp4 truncated at {percent}%", "a download cut off (mp4 index at the end)", _expect("error"),
                      lambda d, f=fraction, p=percent: truncated_copy(d / "good.mp4", d / f"truncated_{p}.mp4", f)))
        # Matroska indexes first: 90% of it still holds 90% of the frames, within the reader's tolerance.
        mkv = _expect("ok") if percent == 90 else _expect("error")
        cases.append((f"mkv truncated at {percent}%", "a download cut off (mkv index first)", mkv,
                      lambda d, f=fraction, p=percent: truncated_copy(_mkv(d), d / f"truncated_{p}.mkv", f)))
    return cases  # fmt: skip


# name, why, what each layer should do, how to make the clip (from the corpus directory)
CLIP_CASES: list[tuple[str, str, dict[str, str], Maker]] = [
    ("good clip", "a 2 s 64x64 H.264 mp4", _expect("ok"), lambda d: d / "good.mp4"),
    *_truncations(),
    ("mp4 header only", "the first 48 bytes", _expect("error"), _header_only),
    *[(f"random bytes {suffix}", "64 KB of noise with a video extension", _expect("error"),
       lambda d, s=suffix, i=i: random_bytes(d / f"random{s}", seed=i))
      for i, suffix in enumerate((".mp4", ".avi", ".gif", ".webm", ".mov"))],
    ("mp4 header + garbage", "a real ftyp box, then noise", _expect("error"),
     lambda d: header_then_garbage(d / "good.mp4", d / "header_garbage.mp4")),
    ("mkv header + garbage", "a real EBML header, then noise", _expect("error"),
     lambda d: header_then_garbage(_mkv(d), d / "header_garbage.mkv", keep=200)),
    ("audio-only mp4", "AAC, no video stream", _expect("error"), lambda d: audio_only_mp4(d / "audio_only.mp4")),
    ("zero bytes", "an empty .mp4", _expect("error"), lambda d: zero_byte(d / "empty.mp4")),
    ("8000x8000 GIF", "one 64-megapixel frame in 50 KB", _expect("error"), lambda d: huge_frame_gif(d / "huge.gif")),
    ("10 hours at 1 fps", "36,000 frames of 16x16 H.264", _expect("ok", service="error", app="error"),
     lambda d: ten_hour_clip(d / "ten_hours.mp4")),
    ("1 hour in 5 frames", "timestamps 15 minutes apart", _expect("ok", service="error", app="error"),
     lambda d: long_timestamps_clip(d / "sparse_hour.mkv")),
    ("long clip named .txt", "the 10-hour clip renamed: limits must not trust the extension",
     _expect("ok", service="error", app="error"), _renamed_long),
    ("one-frame GIF", "a still image", _expect("ok"), lambda d: one_frame_gif(d / "one_frame.gif")),
    ("zero-delay GIF", "6 frames, 0 ms each", _expect("ok"), lambda d: zero_delay_gif(d / "zero_delay.gif")),
    ("hostile file name", "quotes, unicode, HTML, `..`, emoji; reached via sub/../", _expect("ok"),
     lambda d: weird_name_clip(d, d / "good.mp4")),
]  # fmt: skip


def text_cases() -> list[Case]:
    """Questions and candidates about the good clip."""
    control = "what\x00 does\x1b[31m the\u202e red\x07 circle\r\n do ?\x7f"
    return [
        Case("question of 10,000 characters", "refused, never silently cut (the processor truncates by contract)",
             _expect("error", _TEXT_LAYERS, processor="ok"), question="what " * 2000),
        Case("control characters in question", "NUL, ESC, BEL, RLO, CR LF, DEL", _expect("ok", _TEXT_LAYERS), question=control),
        Case("emoji in question", "🔴 and 🤔", _expect("ok", _TEXT_LAYERS), question="what does the 🔴 circle do ? 🤔"),
        Case("empty question", "blank", _expect("error", _TEXT_LAYERS), question="   "),
        Case("empty candidates", "two blank candidates", _expect("error", _TEXT_LAYERS), candidates=["", "  "]),
        Case("duplicated candidates", "jump, Jump, jump : one distinct", _expect("error", _TEXT_LAYERS, processor="ok"),
             candidates=["jump", "Jump", "jump "]),
        Case("partly duplicated candidates", "jump, blink, JUMP: two distinct", _expect("ok", _TEXT_LAYERS),
             candidates=["jump", "blink", "JUMP"]),
    ]  # fmt: skip


def all_cases() -> list[Case]:
    """Every case, clips first (their `video` is None until `make_corpus` writes them)."""
    return [Case(name, why, expect) for name, why, expect, _ in CLIP_CASES] + text_cases()


def make_corpus(directory: Path) -> list[Case]:
    """Write every clip of the corpus into `directory` (about 5 s) and return all cases with their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    make_good_clip(directory)
    clips = [Case(name, why, expect, make(directory)) for name, why, expect, make in CLIP_CASES]
    good = directory / "good.mp4"
    return clips + [Case(c.name, c.why, c.expect, good, c.question, c.candidates) for c in text_cases()]


def video_of(case: Case, good: Path) -> Path:
    return case.video if case.video is not None else good


# ------------------------------------------------------------------------------------------ bounds
class CaseTimeout(Exception):
    """A case ran past CASE_TIMEOUT_SEC."""


@contextmanager
def time_limit(seconds: float = CASE_TIMEOUT_SEC) -> Iterator[None]:
    """Raise CaseTimeout in the main thread after `seconds` (SIGALRM); elsewhere, only measure."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"no result within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bounded(call: Callable[[], str], expected_errors: tuple[type[BaseException], ...]) -> Outcome:
    """Run `call` (returning a short answer) within the time limit, classifying what happens."""
    started = time.perf_counter()
    try:
        with time_limit():
            answer = call()
        return Outcome("ok", answer, time.perf_counter() - started)
    except CaseTimeout as error:
        return Outcome("hang", str(error), time.perf_counter() - started)
    except expected_errors as error:
        return Outcome("error", str(error), time.perf_counter() - started)
    except Exception as error:  # anything else is a crash: the layer let an unexpected error escape
        return Outcome("crash", f"{type(error).__name__}: {error}", time.perf_counter() - started)


# ------------------------------------------------------------------------------------------ layers
def run_read(case: Case, good: Path) -> Outcome:
    from clover.video import VideoReadError, read_frames

    return bounded(lambda: _shape(read_frames(video_of(case, good), 8)), (VideoReadError,))


def run_processor(case: Case, good: Path, processor: Any) -> Outcome:
    """The frames `read_frames` gives (its error if none) with the case's text through the processor."""
    from clover.video import VideoReadError, read_frames

    def call() -> str:
        frames = read_frames(video_of(case, good), processor.num_frames)
        batch = processor(frames, case.question, case.candidates)
        return ", ".join(f"{name} {tuple(value.shape)}" for name, value in batch.items())

    return bounded(call, (VideoReadError, ValueError))


def run_service(case: Case, good: Path, service: Any) -> Outcome:
    from app.service import ServiceError

    def call() -> str:
        video = video_of(case, good)
        if case.candidates is not None:
            answer = service.choose(video, case.question, case.candidates)
        else:
            answer = service.answer(video, case.question)
        return _best(answer.answers)

    return bounded(call, (ServiceError,))


def run_app(case: Case, good: Path, client: Any) -> Outcome:
    """The case through /answer or /choose of a running app (gradio_client), bounded in time."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    def call() -> str:
        video = handle_file(str(video_of(case, good)))
        if case.candidates is not None:
            job = client.submit(video, case.question, "\n".join(case.candidates), api_name="/choose")
        else:
            job = client.submit(video, case.question, api_name="/answer")
        value = job.result(timeout=CASE_TIMEOUT_SEC)
        return f"{value['label']} ({value['confidences'][0]['confidence']:.2f})"

    return bounded(call, (AppError,))


def run_predict(case: Case, good: Path, checkpoint: Path) -> Outcome:
    """`clover.predict.main([VIDEO, QUESTION, (--candidates ...), --json])` in this process, its stdout
    and stderr captured: "ok" is exit 0 with the JSON answers, "error" exit 1 with one `error:` line.
    (One test runs the real process; here the interpreter start would cost 3 s a case.)"""
    import contextlib
    import io

    from clover import predict

    argv = [str(video_of(case, good)), case.question, "--checkpoint", str(checkpoint), "--json"]
    if case.candidates is not None:
        argv += ["--candidates", *case.candidates]
    out, err = io.StringIO(), io.StringIO()

    def call() -> str:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = predict.main(argv)
        stderr = err.getvalue().strip()
        if code == 0:
            answers = json.loads(out.getvalue())["answers"]
            return f"{answers[0]['answer']} ({answers[0]['probability']:.2f})"
        if code == 1 and stderr.startswith("error: ") and len(stderr.splitlines()) == 1:
            raise _CliError(stderr.removeprefix("error: "))
        raise RuntimeError(f"exit {code}: {stderr[-500:]}")

    return bounded(call, (_CliError,))


class _CliError(Exception):
    """The command line's one-line error."""


def run_check_data(case: Case, good: Path, directory: Path) -> Outcome:
    """`finetune.check_data` on a generic CSV dataset of the good clip and the case's clip (train)
    plus the good clip (val, test). "ok": the clip counted readable; "error": counted unreadable, with
    its reason, while the report still says the dataset is usable."""
    import contextlib
    import csv
    import io
    import shutil

    from finetune import check_data

    video = video_of(case, good)
    folder = directory / f"check_{abs(hash(case.name))}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(good, folder / "good.mp4")
    rows = [("good.mp4", "train"), (str(Path(video).resolve()), "train"), ("good.mp4", "val"), ("good.mp4", "test")]
    with open(folder / "qa.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "question", "answer", "split"])
        writer.writerows((clip, case.question, "jump", split) for clip, split in rows)

    def call() -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = check_data.main(["--task", "generic", "--annotations", str(folder / "qa.csv"), "--videos", str(folder)])
        report = json.loads(out.getvalue())
        if code != 0:
            raise RuntimeError(f"check_data exit {code}: {err.getvalue()[-300:]}")
        if report["unreadable_clips"]:
            raise _Unreadable("; ".join(report["unreadable_examples"].values()))
        return f"{report['clips']} clips, all readable"

    return bounded(call, (_Unreadable,))


class _Unreadable(Exception):
    """check_data counted the case's clip unreadable (its reason is the message)."""


# --------------------------------------------------------------------------------------------- app
class AppProcess:
    """`python app.py` on `checkpoint` in a subprocess, on a free loopback port, with the test limits.

    Its Gradio temp dir is `directory/gradio` (so tests can count its files) and its examples folder an
    empty one. Use as a context manager; leaving it sends SIGTERM and waits (kill after 20 s).
    """

    def __init__(self, checkpoint: Path, directory: Path, *flags: str) -> None:
        self.checkpoint, self.directory = Path(checkpoint), Path(directory)
        self.temp_dir = self.directory / "gradio"
        self.flags = flags or ("--max-upload-mb", str(TEST_UPLOAD_MB), "--max-duration", str(TEST_DURATION_SEC))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: Any = None
        self.returncode: int | None = None

    def __enter__(self) -> "AppProcess":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        import os
        import subprocess
        import sys
        import urllib.request

        self.temp_dir.mkdir(parents=True, exist_ok=True)
        (self.directory / "no_examples").mkdir(exist_ok=True)
        env = {**os.environ, "GRADIO_TEMP_DIR": str(self.temp_dir), "GRADIO_ANALYTICS_ENABLED": "False"}
        command = [sys.executable, "app.py", "--checkpoint", str(self.checkpoint), "--port", str(self.port),
                   "--examples", str(self.directory / "no_examples"), *self.flags]  # fmt: skip
        self.log = self.directory / "app.log"
        with open(self.log, "wb") as output:
            root = Path(__file__).resolve().parents[1]
            self.process = subprocess.Popen(command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    raise RuntimeError(f"app.py did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)

    def stop(self) -> None:
        import subprocess

        if self.process is None or self.process.poll() is not None:
            self.returncode = None if self.process is None else self.process.returncode
            return
        self.process.terminate()
        try:
            self.returncode = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()

    def files(self) -> list[Path]:
        """Every file under the app's Gradio temp dir."""
        return sorted(path for path in self.temp_dir.rglob("*") if path.is_file()) if self.temp_dir.exists() else []


def _shape(frames: np.ndarray) -> str:
    return f"frames {tuple(frames.shape)} {frames.dtype}"


def _best(answers: list[tuple[str, float]]) -> str:
    return f"{answers[0][0]} ({answers[0][1]:.2f})"
