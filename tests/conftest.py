"""Fixtures shared by the test modules.

`tiny_checkpoint`: a randomly initialised clover-tiny `CloverForVideoQA` (heads open, mc and count) and
its processor, saved once per test session into a temporary directory, as `from_pretrained` expects.
It stands in for the demo checkpoint wherever a test needs a real model directory: the weights are
random, so tests check shapes, orderings and plumbing, never which answer is right.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# A small answer vocabulary in the synthetic benchmark's words.
TINY_ANSWERS = [
    "circle", "square", "triangle", "star", "red", "green", "blue", "yellow",
    "left", "right", "up", "down", "rotate", "blink", "jump", "0", "1", "2", "3", "4",
]  # fmt: skip

TINY_MODEL_CARD = """---
library_name: clover
---
# Random clover-tiny (tests)

Randomly initialised clover-tiny with open, multiple-choice and count heads; trained on nothing.
"""


def save_tiny_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Save a random clover-tiny CloverForVideoQA, its processor and a model card into `directory`."""
    import torch

    from clover.configuration_clover import CloverConfig
    from clover.modeling_clover import CloverForVideoQA
    from clover.processing_clover import CloverProcessor

    torch.manual_seed(seed)
    id2label = dict(enumerate(TINY_ANSWERS))
    config = CloverConfig.from_preset("clover-tiny", qa_heads=["open", "mc", "count"], id2label=id2label)
    CloverForVideoQA(config).save_pretrained(directory)
    CloverProcessor.from_preset("clover-tiny").save_pretrained(directory)
    (directory / "README.md").write_text(TINY_MODEL_CARD, encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a random clover-tiny video QA model with its processor (made once per session)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint"))


@pytest.fixture(scope="session")
def demo_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An examples directory as the app expects: two short clips and examples.json naming them."""
    import json

    from tests.media import random_clip

    directory = tmp_path_factory.mktemp("examples")
    random_clip(directory / "clips" / "noise_a.mp4", num_frames=30, size=(160, 120), seed=1)
    random_clip(directory / "clips" / "noise_b.mp4", num_frames=30, size=(160, 120), seed=2)
    entries = [
        {"video": "clips/noise_a.mp4", "question": "what color is the circle ?", "answer": "red"},
        {"video": "clips/noise_b.mp4", "question": "what does the star do ?", "answer": "jump",
         "candidates": ["jump", "blink", "rotate"]},
    ]  # fmt: skip
    (directory / "examples.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def app_url(tiny_checkpoint: Path, demo_examples: Path, tmp_path_factory: pytest.TempPathFactory):
    """`python app.py` serving the tiny checkpoint and the example clips on a free port; its URL.

    A real server process, as users and Spaces run it; stopped (and its Gradio cache removed, since the
    cache lives in a session temp directory) at the end of the session.
    """
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.launch import free_port

    root = Path(__file__).resolve().parents[1]
    port = free_port()
    log = tmp_path_factory.mktemp("app_log") / "app.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio")), "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "app.py", "--checkpoint", str(tiny_checkpoint), "--examples", str(demo_examples), "--port", str(port)]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"app.py did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
