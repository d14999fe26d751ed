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
