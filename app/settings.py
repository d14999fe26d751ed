"""The app's configuration: command-line flags, each with an environment variable behind it.

A flag wins over its environment variable, which wins over the default. Hugging Face Spaces runs
`python app.py` with no flags, so everything a Space needs can be set as a variable in its settings
(`CLOVER_CHECKPOINT`, `CLOVER_MAX_UPLOAD_MB`, ...; `GRADIO_SERVER_NAME` and `GRADIO_SERVER_PORT` are
set by Spaces itself).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from clover.inference import DEFAULT_CHECKPOINT


@dataclass(frozen=True)
class Settings:
    """Everything `app.py` needs to build and launch the demo (defaults as in `docs/app.md`)."""

    checkpoint: str = DEFAULT_CHECKPOINT  # model directory or Hub repo id
    examples: str = "examples"  # directory holding examples.json and its clips
    device: str = "cpu"
    num_frames: int | None = None  # None: the checkpoint's
    max_upload_mb: float = 50.0
    max_duration_sec: float = 600.0
    cache_entries: int = 64
    cache_mb: float = 256.0
    threads: int | None = None  # torch intra-op threads; None: torch's default
    concurrency: int = 2  # requests worked on at once
    queue_size: int = 32  # requests waiting at most; more are refused
    int8: bool = False
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False


# flag -> (field, environment variable or None, type)
_OPTIONS: dict[str, tuple[str, str | None, type]] = {
    "--checkpoint": ("checkpoint", "CLOVER_CHECKPOINT", str),
    "--examples": ("examples", "CLOVER_EXAMPLES", str),
    "--device": ("device", "CLOVER_DEVICE", str),
    "--num-frames": ("num_frames", "CLOVER_NUM_FRAMES", int),
    "--max-upload-mb": ("max_upload_mb", "CLOVER_MAX_UPLOAD_MB", float),
    "--max-duration": ("max_duration_sec", "CLOVER_MAX_DURATION_SEC", float),
    "--cache-entries": ("cache_entries", "CLOVER_CACHE_ENTRIES", int),
    "--cache-mb": ("cache_mb", "CLOVER_CACHE_MB", float),
    "--threads": ("threads", "CLOVER_THREADS", int),
    "--concurrency": ("concurrency", "CLOVER_CONCURRENCY", int),
    "--queue-size": ("queue_size", "CLOVER_QUEUE_SIZE", int),
    "--host": ("host", "GRADIO_SERVER_NAME", str),
    "--port": ("port", "GRADIO_SERVER_PORT", int),
}
_SWITCHES: dict[str, tuple[str, str | None]] = {"--int8": ("int8", "CLOVER_INT8"), "--share": ("share", "GRADIO_SHARE")}
_TRUE = {"1", "true", "yes", "on"}


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `argv` (flags; None: no flags) over `environ` (default `os.environ`) over defaults.

    A malformed value (e.g. `CLOVER_MAX_UPLOAD_MB=lots`) exits with argparse's usage message.
    """
    environ = os.environ if environ is None else environ
    parser = build_parser()
    defaults = {field.name: field.default for field in fields(Settings)}
    for flag, (name, variable, kind) in _OPTIONS.items():
        if variable and environ.get(variable, "").strip():
            try:
                defaults[name] = kind(environ[variable])
            except ValueError:
                parser.error(f"environment variable {variable}={environ[variable]!r} is not a valid {kind.__name__}")
    for flag, (name, variable) in _SWITCHES.items():
        if variable and variable in environ:
            defaults[name] = environ[variable].strip().lower() in _TRUE
    parser.set_defaults(**defaults)
    return Settings(**vars(parser.parse_args(list(argv or []))))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="Clover VideoQA demo (Gradio).")
    helps = {
        "checkpoint": "model directory or Hub repo id",
        "examples": "directory with examples.json and the example clips",
        "device": "cpu or cuda",
        "num_frames": "frames per clip (must match the checkpoint)",
        "max_upload_mb": "largest accepted upload in MB",
        "max_duration_sec": "longest accepted clip in seconds",
        "cache_entries": "clips whose features are kept",
        "cache_mb": "memory for kept clip features, MB",
        "threads": "torch CPU threads",
        "concurrency": "requests worked on at once",
        "queue_size": "requests that may wait; more are refused",
        "host": "address to listen on (0.0.0.0 for all)",
        "port": "port to listen on",
    }
    for flag, (name, variable, kind) in _OPTIONS.items():
        env = f" (env {variable})" if variable else ""
        parser.add_argument(flag, dest=name, type=kind, metavar=name.upper(), help=f"{helps[name]}{env}")
    parser.add_argument("--int8", dest="int8", action="store_true", help="int8 dynamic quantisation of Linear layers (env CLOVER_INT8=1)")
    parser.add_argument("--share", dest="share", action="store_true", help="also serve on a public gradio.live link (env GRADIO_SHARE=1)")
    return parser
