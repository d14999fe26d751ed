"""Configuration of the Clover video-language model.

The defaults are the paper's model (`clover-base`): a Video Swin-B encoder over 8 frames at 224x224,
a BERT-base text encoder and 3 fusion layers. `clover-tiny` keeps the same architecture at a size that
trains in minutes on two CPU cores; the tests and the bundled demo checkpoint use it.
"""

from __future__ import annotations

import difflib
from dataclasses import fields
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import BertConfig, PreTrainedConfig

from clover.video_swin import STEMS

QA_HEADS = ("open", "mc", "count")
QA_POOLINGS = ("cls", "cls+max", "cls+max+regions", "cls+max+query", "cls+max+query+time")
VIDEO_STEMS = tuple(STEMS)  # "patchify" (the paper's), "conv", "deep_conv", "deep_conv_diff"
RETRIEVAL_TEXT_POOLINGS = ("cls", "mean")

# Keys that transformers itself may pass to a config (when loading a config.json, or from
# `from_pretrained(..., attn_implementation=...)`). Anything else unknown is a user's typo.
_TRANSFORMERS_EXTRA_KEYS = {
    "num_labels",
    "name_or_path",
    "torch_dtype",
    "output_attentions",
    "attn_implementation",
    "experts_implementation",
    "_commit_hash",
    "_name_or_path",
    "model_type",
    "auto_map",
    "_attn_implementation_internal",
    "_experts_implementation_internal",
    "per_layer_config",
}

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

PRESETS: dict[str, dict[str, Any]] = {
    # The paper: Video Swin-B (patch 2x4x4, window 8x7x7, dim 128, depths 2-2-18-2), BERT-base, 3 fusion layers.
    "clover-base": {},
    # Same architecture, small: 8 frames at 112x112 in 2x8x8 patches, two Swin stages (so the output grid
    # is still 4x7x7, 128 channels), a 2-layer 128-wide BERT and 2 fusion layers. About 1.5M parameters;
    # a training step on 8 clips takes a fraction of a second on one CPU core.
    "clover-tiny": {
        "image_size": 112,
        "patch_size": [2, 8, 8],
        "video_embed_dim": 64,
        "video_depths": [2, 2],
        "video_num_heads": [2, 4],
        "video_drop_path_rate": 0.0,
        "num_fusion_layers": 2,
        "embed_dim": 128,
        # Trained from scratch, the alignment embeddings of every clip start nearly equal (mean-pooled random
        # tokens) and the contrastive terms collapse them; BatchNorm keeps them apart (docs/results.md).
        "alignment_head_norm": "batchnorm",
        # Trained from scratch, the fused [CLS] attends evenly over 196 video tokens for thousands of steps,
        # and an average of mostly background tokens does not carry the objects; the maximum does.
        # ("cls+max+regions" learns where objects are, but in the demo recipe, at lr 2e-4 or 4e-4, it did not
        # help yet: docs/results.md.)
        "qa_pooling": "cls+max",
        # Trained from scratch, the paper's multiple-choice score (the fused [CLS] of question + candidate)
        # stays at chance even for a question one frame answers; a bilinear match with the candidate's
        # own tokens learns it as fast as the open-ended head does (docs/results.md).
        "mc_scoring": "concat+match",
        "open_head_hidden_size": 128,
        "mc_head_hidden_size": 64,
        # No dropout anywhere (see also the text config): trained from scratch for a few thousand steps the
        # model underfits (its training loss stays far from zero on every task), and without dropout
        # the demo recipe learns faster: Action +3 and Transition +8 points on test (docs/results.md).
        "head_dropout": 0.0,
        "text_config": {
            "vocab_size": 1024,
            "hidden_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 256,
            "max_position_embeddings": 128,
            # No dropout on the attention weights: with it, PyTorch's fused CPU attention cannot run and
            # the (B*K, heads, N, N) weights of every multiple-choice candidate are materialised, so a
            # 5-candidate training step took 1.0 s instead of 0.6 s on 2 cores (docs/results.md).
            "attention_probs_dropout_prob": 0.0,
            # Nor on the hidden states (BERT's 0.1), in the text encoder and the fusion layers.
            "hidden_dropout_prob": 0.0,
        },
    },
}


@strict(accept_kwargs=True)
class CloverConfig(PreTrainedConfig):
    r"""Configuration of a Clover model; every field below is saved in `config.json`.

    Video encoder (Video Swin Transformer, parameter names of the original release):
        video_backbone: `None` for the built-in 3D Swin, or the name or local directory of a transformers
            video backbone (VideoMAE, TimeSformer) loaded through `AutoModel` (recorded for the model card).
        video_backbone_config: that backbone's config as a dict, saved here so a Clover directory rebuilds
            the backbone without the network; filled in by `from_backbones`.
        num_frames: frames sampled per clip (8 in the paper).
        image_size: side of the square frames the encoder sees (224 in the paper).
        image_mean, image_std: per-channel normalisation of RGB values in [0, 1] (ImageNet's).
        patch_size: (time, height, width) of a 3D patch (2x4x4).
        video_stem: how frames become patch tokens: "patchify" (the paper's Video Swin: one linear map of
            each 3D patch, a strided Conv3d; official checkpoints load into it) or "conv" (stride-2 3x3
            convolutions on each frame, one per halving of the patch's side, then a linear map of the
            patch's frames: the early convolutions of Xiao et al. 2021, with which clover-tiny's
            encoder learns shapes faster from nothing: docs/results.md) or "deep_conv" ("conv" with one
            3x3 convolution of stride 1 more at the token resolution, so one token sees a whole object of
            the synthetic benchmark: faster again on shapes) or "deep_conv_diff" ("deep_conv" whose first
            convolution also sees each frame's change since the frame before, so motions that move few
            pixels show).
        window_size: (time, height, width) of an attention window (8x7x7); clipped to the token grid.
        video_embed_dim: channels after patch embedding (128); doubled by each patch merging.
        video_depths: Swin blocks per stage (2-2-18-2); `len(video_depths)` stages.
        video_num_heads: attention heads per stage.
        video_mlp_ratio: MLP width over channels in a Swin block.
        video_drop_path_rate: stochastic depth rate, increasing linearly over the blocks.
    Text encoder:
        text_config: a `BertConfig` (or its dict); BERT-base by default.
        text_backbone: name or directory of a pretrained BERT the text encoder (and the fusion layers)
            start from, recorded for the model card; `None` when built from `text_config` alone.
    Fusion encoder:
        num_fusion_layers: BERT-shaped layers over [video tokens; text states] (3).
    Heads:
        embed_dim: width of the aligned embedding space (768).
        qa_heads: which answer heads `CloverForVideoQA` builds: any of "open", "mc", "count".
        qa_pooling: what the answer heads read: "cls" (the paper: the fused [CLS] state), "cls+max"
            (the fused [CLS] plus the element-wise maximum of the fused video tokens, so an object that
            covers a few of the tokens reaches the heads before the [CLS] has learnt to attend to it:
            what lets a QA model trained from random encoders use the video), or "cls+max+regions"
            (also a linear map of the maxima over each cell of a 3x3 split of the frame, as spatial
            pyramid pooling, so the heads learn where an object is: "where is the red circle ?"), or
            "cls+max+query" (also an attention over the video encoder's tokens queried by each of the
            question's words, so the heads read the object a question names, "what shape is the red
            object ?" among several, and which cell of a 3x3 split of the frame it is in;
            `QuestionGuidedPooling`), or "cls+max+query+time" (that pooling with what it reads, and
            where, kept apart for each time slot of the video grid, so the heads see the order of what
            the named object does: "what does the square do after grow ?"); clover-tiny uses "cls+max",
            the demo recipe (`make_demo`) "cls+max+query".
        mc_scoring: how a multiple-choice candidate is scored: "concat" (the paper: a head on the answer
            features of question + candidate) or "concat+match" (plus the dot product of a projection of
            those features with a projection of the mean text state of the candidate's own tokens, a
            bilinear term whose gradient reaches both factors from the first step: what lets a
            multiple-choice head trained from random encoders leave chance; clover-tiny's setting).
        head_dropout: dropout before each answer head.
        open_head_hidden_size: hidden width of the open-ended head (384).
        mc_head_hidden_size: hidden width of the multiple-choice head, and of the match projections (256).
        count_min, count_max: the answer range of the count head (predictions are clamped to it).
        id2label / label2id: the open-ended answer vocabulary.
        alignment_head_norm: "layernorm" (the paper: the video head ends in LayerNorm, the text heads in
            a linear layer) or "batchnorm" (every alignment head ends in BatchNorm, which centres and scales
            each embedding dimension over the batch, so the embeddings cannot all become the same: what
            lets contrastive pre-training start from random encoders; clover-tiny's setting).
        retrieval_text_pooling: what the text retrieval head reads: "cls" (the paper: the [CLS] state) or
            "mean" (the mean of the text states over the attention mask). Question-answering fine-tuning
            makes the [CLS] state about the question asked, while the tokens keep a caption's content:
            `finetune.fit_retrieval_heads` sets "mean" on a fine-tuned model for its search
            (docs/finetuning.md).
    Text lengths:
        max_text_length: tokens for a question or caption (40).
        max_mc_text_length: tokens for a question with its candidates (100).
    Pre-training:
        temperature: of the contrastive losses (0.05).
        ranking_margin: margin of the pair-wise ranking loss, on temperature-scaled similarities (5).
        mlm_focal_gamma: focal-loss gamma of masked language modelling (2; 0 is plain cross-entropy).
        text_mask_ratio: fraction of semantic words masked (0.3).
        video_mask_cells: masked cells of a 7x7 token grid (10), scaled to other grids.
        pretrain_objective: "clover" (tri-modal alignment, ranking, MLM) or "pairwise" (plain video-text
            InfoNCE and MLM, the baseline the paper argues against).
        use_ranking_loss: the pair-wise ranking terms (ablation switch; "clover" only).
        use_masked_positives: the masked caption / masked video as extra positives (ablation switch).
        tie_word_embeddings: the MLM head's decoder shares the text encoder's word embeddings (as BERT).
    """

    model_type = "clover"
    sub_configs_defaults = {"text_config": BertConfig}

    video_backbone: str | None = None
    video_backbone_config: dict | None = None
    num_frames: int = 8
    image_size: int = 224
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    patch_size: list[int] | None = None
    video_stem: str = "patchify"
    window_size: list[int] | None = None
    video_embed_dim: int = 128
    video_depths: list[int] | None = None
    video_num_heads: list[int] | None = None
    video_mlp_ratio: float = 4.0
    video_drop_path_rate: float = 0.1

    text_config: dict | BertConfig | None = None
    text_backbone: str | None = None

    num_fusion_layers: int = 3

    embed_dim: int = 768
    alignment_head_norm: str = "layernorm"
    retrieval_text_pooling: str = "cls"
    qa_pooling: str = "cls"
    mc_scoring: str = "concat"
    qa_heads: list[str] | None = None
    head_dropout: float = 0.1
    open_head_hidden_size: int = 384
    mc_head_hidden_size: int = 256
    count_min: int = 0
    count_max: int = 10

    max_text_length: int = 40
    max_mc_text_length: int = 100

    temperature: float = 0.05
    ranking_margin: float = 5.0
    mlm_focal_gamma: float = 2.0
    text_mask_ratio: float = 0.3
    video_mask_cells: int = 10
    pretrain_objective: str = "clover"
    use_ranking_loss: bool = True
    use_masked_positives: bool = True
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - _TRANSFORMERS_EXTRA_KEYS
        if unknown:
            known = [f.name for f in fields(self)]
            hints = {key: difflib.get_close_matches(key, known, n=1) for key in sorted(unknown)}
            message = ", ".join(f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for key, hint in hints.items())
            raise TypeError(f"CloverConfig got unknown keys: {message}")
        self.image_mean = list(self.image_mean or IMAGENET_MEAN)
        self.image_std = list(self.image_std or IMAGENET_STD)
        self.patch_size = list(self.patch_size or [2, 4, 4])
        self.window_size = list(self.window_size or [8, 7, 7])
        self.video_depths = list(self.video_depths or [2, 2, 18, 2])
        self.video_num_heads = list(self.video_num_heads or [4, 8, 16, 32])
        self.qa_heads = list(self.qa_heads or ["open"])
        super().__post_init__(**kwargs)
        self._check()

    def _check(self) -> None:
        if len(self.video_depths) != len(self.video_num_heads):
            raise ValueError(f"video_depths {self.video_depths} and video_num_heads {self.video_num_heads} differ in length")
        if self.video_stem not in VIDEO_STEMS:
            raise ValueError(f"video_stem must be one of {', '.join(map(repr, VIDEO_STEMS))}, got {self.video_stem!r}")
        if self.alignment_head_norm not in ("layernorm", "batchnorm"):
            raise ValueError(f"alignment_head_norm must be 'layernorm' or 'batchnorm', got {self.alignment_head_norm!r}")
        if self.retrieval_text_pooling not in RETRIEVAL_TEXT_POOLINGS:
            raise ValueError(f"retrieval_text_pooling must be 'cls' or 'mean', got {self.retrieval_text_pooling!r}")
        if self.qa_pooling not in QA_POOLINGS:
            raise ValueError(f"qa_pooling must be one of {', '.join(map(repr, QA_POOLINGS))}, got {self.qa_pooling!r}")
        if self.mc_scoring not in ("concat", "concat+match"):
            raise ValueError(f"mc_scoring must be 'concat' or 'concat+match', got {self.mc_scoring!r}")
        if self.pretrain_objective not in ("clover", "pairwise"):
            raise ValueError(f"pretrain_objective must be 'clover' or 'pairwise', got {self.pretrain_objective!r}")
        bad_heads = [head for head in self.qa_heads if head not in QA_HEADS]
        if bad_heads:
            raise ValueError(f"unknown qa_heads {bad_heads}; choose from {list(QA_HEADS)}")
        patch_t, patch_h, _ = self.patch_size
        downsample = patch_h * 2 ** (len(self.video_depths) - 1)
        if self.video_backbone is None and self.image_size % downsample:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by {downsample} "
                f"(patch {patch_h} x 2^{len(self.video_depths) - 1} merges)"
            )
        if self.video_stem != "patchify" and not (patch_h == self.patch_size[2] and patch_h >= 2 and patch_h & (patch_h - 1) == 0):
            raise ValueError(
                f"video_stem={self.video_stem!r} halves the frame once per stride-2 convolution, so the patch's height and width must be "
                f"the same power of two (2, 4, 8, ...), got patch_size {self.patch_size}"
            )
        if self.num_frames % patch_t:
            raise ValueError(f"num_frames {self.num_frames} must be divisible by the temporal patch size {patch_t}")
        if self.num_fusion_layers > self.text_config.num_hidden_layers and self.text_backbone:
            raise ValueError("num_fusion_layers cannot exceed the text encoder's layers when initialised from it")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "CloverConfig":
        """The config of a named preset (`clover-base`, `clover-tiny`), with `overrides` applied on top.

        `text_config` overrides are merged into the preset's text config key by key.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        settings = {key: (dict(value) if isinstance(value, dict) else value) for key, value in PRESETS[name].items()}
        text_overrides = overrides.pop("text_config", None) or {}
        if isinstance(text_overrides, BertConfig):
            text_overrides = text_overrides.to_dict()
        settings["text_config"] = {**settings.get("text_config", {}), **text_overrides}
        settings.update(overrides)
        return cls(**settings)

    # Derived sizes, used by the model and the processor.
    @property
    def video_width(self) -> int:
        """Channels of the video encoder's output tokens (1024 for Swin-B)."""
        if self.video_backbone_config is not None:
            return self.video_backbone_config["hidden_size"]
        return self.video_embed_dim * 2 ** (len(self.video_depths) - 1)

    @property
    def video_grid(self) -> tuple[int, int, int]:
        """(time, height, width) of the video encoder's output token grid: (4, 7, 7) for both presets."""
        if self.video_backbone_config is not None:
            backbone = self.video_backbone_config
            side = backbone["image_size"] // backbone["patch_size"]
            return (backbone["num_frames"] // backbone.get("tubelet_size", 1), side, side)
        patch_t, patch_h, patch_w = self.patch_size
        merges = 2 ** (len(self.video_depths) - 1)
        return (self.num_frames // patch_t, self.image_size // patch_h // merges, self.image_size // patch_w // merges)


__all__ = ["CloverConfig", "PRESETS", "QA_HEADS"]
