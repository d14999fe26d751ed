"""Clover VideoQA: the Clover video-language model (CVPR 2023) for video question answering.

Attributes are imported on first use, so that `clover.video` works without importing the model.
`AutoConfig` / `AutoModel` know the "clover" model type once `clover.modeling_clover` is imported,
which any use of `clover.CloverModel` (or the other model classes) does.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CloverConfig": "clover.configuration_clover",
    "CloverModel": "clover.modeling_clover",
    "CloverForVideoQA": "clover.modeling_clover",
    "CloverForPretraining": "clover.modeling_clover",
    "CloverProcessor": "clover.processing_clover",
    "read_frames": "clover.video",
    "read_frames_with_timestamps": "clover.video",
    "VideoReadError": "clover.video",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clover' has no attribute {name!r}")
