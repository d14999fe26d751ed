"""How fast does clover-tiny's video encoder learn what happens in a clip? A probe, trained with the encoder.

    python benchmarks/video_probe.py --target actions --steps 800
    python benchmarks/video_probe.py --target colors --pool mean
    python benchmarks/video_probe.py --target shapes \
        --config_overrides "patch_size=[2,4,4],video_embed_dim=32,video_depths=[2,2,2],video_num_heads=[1,2,4]"
    python benchmarks/video_probe.py --checkpoint runs/demo/pretrain --freeze   # what pre-training taught it
    python benchmarks/video_probe.py --steps 2000 --save runs/probe/actions2000  # then: qa_learning_curve.py --model

The synthetic benchmark's questions about motion (Action, Transition, Count) stayed at chance in every
fine-tuning run, while the questions about what a clip shows did not. This tool separates the video
encoder from the rest: a linear layer on the pooled output tokens of clover-tiny's Video Swin says which
of the benchmark's labels occur anywhere in a clip, and encoder and layer train together with direct
supervision, so nothing but the encoder's own learning can be slow. `--checkpoint` starts the encoder
from a saved Clover model (e.g. a pre-training run) and `--freeze` trains the layer alone, which
measures what that encoder already knows.

It is `finetune/pretrain_video.py` (the demo recipe's supervised video pre-training, our Kinetics) run
as a measuring tool: the same clips, labels, score and options; see its docstring for the details.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune.pretrain_video import TARGETS, balanced_accuracy, main, render_set, scene_counts, scene_labels  # noqa: E402

__all__ = ["TARGETS", "balanced_accuracy", "main", "render_set", "scene_counts", "scene_labels"]

if __name__ == "__main__":
    main()
