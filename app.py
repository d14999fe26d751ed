"""Clover VideoQA demo: `python app.py [--checkpoint DIR] [--port N] ...` (see docs/app.md).

This is also the Hugging Face Spaces entry point (`app_file: app.py`): Spaces runs `python app.py`
without flags, so every setting can come from an environment variable (`CLOVER_CHECKPOINT`, ...).
Importing this module builds the layout only; the model is loaded by `__main__` before serving, or on
the first request when something else (Gradio's reload mode, a test) imports `demo`.
"""

from __future__ import annotations

import sys

from app.service import ServiceError
from app.settings import Settings, parse_settings
from app.ui import ServiceHolder, build_demo, serve

settings: Settings = parse_settings(sys.argv[1:] if __name__ == "__main__" else None)
holder = ServiceHolder(settings)
demo = build_demo(settings, holder)


def main() -> None:
    """Load the model (a clear one-line error if it cannot be), then serve until interrupted (Ctrl-C or
    SIGTERM), removing the cached uploads on the way out."""
    try:
        holder.get()
    except ServiceError as error:
        sys.exit(f"error: {error}")
    serve(
        demo,
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        max_file_size=f"{settings.max_upload_mb:g}mb",
    )


if __name__ == "__main__":
    main()
