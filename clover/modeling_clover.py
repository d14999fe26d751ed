"""Clover: video encoder, text encoder, fusion encoder, alignment heads and answer heads.

Read top to bottom: outputs, the fusion encoder, the video encoders, the base model (`CloverModel`),
the task models (`CloverForVideoQA`, `CloverForPretraining`), and the Auto-class registration.

Shapes: B batch, T frames, K candidates, L text tokens, t/h/w the video token grid (4x7x7 for both
presets), Cv video width, D text width, E the aligned embedding width.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.models.bert.modeling_bert import BertLMPredictionHead, BertOnlyMLMHead
from transformers.utils import ModelOutput

from .configuration_clover import QA_HEADS, CloverConfig
from .video_swin import SwinTransformer3D, WindowAttention3D, load_video_swin_checkpoint

# ---------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------


@dataclass
class VideoFeatures(ModelOutput):
    """The video encoder's output for a batch of clips: compute once, answer many questions.

    tokens: (B, t, h, w, Cv) output token grid of the video encoder.
    """

    tokens: torch.FloatTensor | None = None


@dataclass
class FusionOutput(ModelOutput):
    """last_hidden_state: (B, t*h*w + L, D); pooled: (B, D), the state at the text's [CLS];
    cls_attention: (B, t*h*w), last-layer attention of [CLS] over the video tokens, averaged over heads;
    with `output_layers`, hidden_states: one (B, t*h*w + L, D) per fusion layer, its output, and
    text_attentions: (B, layers, heads, L, t*h*w), every layer's and head's attention of each text token
    over the video tokens, [CLS]'s first (what `benchmarks/binding_probe.py` reads)."""

    last_hidden_state: torch.FloatTensor | None = None
    pooled: torch.FloatTensor | None = None
    cls_attention: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: torch.FloatTensor | None = None


@dataclass
class CloverModelOutput(ModelOutput):
    """Normalised embeddings (B, E) for retrieval, and the fused [CLS] state (B, D)."""

    video_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    fused_pooled: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None


@dataclass
class VideoQAOutput(ModelOutput):
    """loss: present only when labels are given.
    logits: open (B, num_answers); mc (B, K), masked candidates at the dtype's minimum; count (B,), the
    predicted count before rounding.
    cls_attention: (B, t*h*w) when asked for, from the fusion encoder's last layer.
    question_attention: (B, t*h*w) when asked for and the heads read the question-guided pooling
    (`qa_pooling="cls+max+query"`): where the question's words read (`QuestionGuidedPooling.attention`).
    For multiple choice both are the mean over the candidates."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cls_attention: torch.FloatTensor | None = None
    question_attention: torch.FloatTensor | None = None


@dataclass
class PretrainingOutput(ModelOutput):
    """loss: the sum of the named terms in `losses` (each a scalar tensor)."""

    loss: torch.FloatTensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    video_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


# ---------------------------------------------------------------------------------------------------
# Fusion encoder
# ---------------------------------------------------------------------------------------------------


class FusionEmbeddings(nn.Module):
    """Video tokens projected to the text width plus spatial, temporal and modality embeddings, then
    LayerNorm; text states plus the other modality embedding."""

    def __init__(self, video_width: int, hidden_size: int, grid: tuple[int, int, int], eps: float, dropout: float):
        super().__init__()
        frames, height, width = grid
        self.video_proj = nn.Linear(video_width, hidden_size)
        self.spatial_position_embeddings = nn.Embedding(height * width, hidden_size)
        self.temporal_position_embeddings = nn.Embedding(frames, hidden_size)
        self.modality_type_embeddings = nn.Embedding(2, hidden_size)  # 0 video, 1 text
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, video_tokens: torch.Tensor, text_states: torch.Tensor) -> torch.Tensor:
        """video_tokens (B, t, h, w, Cv), text_states (B, L, D) -> (B, t*h*w + L, D)."""
        batch, frames, height, width, _ = video_tokens.shape
        if frames * height * width > 0 and (
            frames > self.temporal_position_embeddings.num_embeddings
            or height * width != self.spatial_position_embeddings.num_embeddings
        ):
            raise ValueError(
                f"video grid {frames}x{height}x{width} does not fit the fusion embeddings "
                f"({self.temporal_position_embeddings.num_embeddings} x {self.spatial_position_embeddings.num_embeddings} cells)"
            )
        video = self.video_proj(video_tokens)  # (B, t, h, w, D)
        spatial = self.spatial_position_embeddings.weight.view(1, 1, height, width, -1)  # (1, 1, h, w, D)
        temporal = self.temporal_position_embeddings.weight[:frames].view(1, frames, 1, 1, -1)  # (1, t, 1, 1, D)
        video = video + spatial + temporal + self.modality_type_embeddings.weight[0]
        video = self.LayerNorm(video.flatten(1, 3))  # (B, t*h*w, D)
        text = text_states + self.modality_type_embeddings.weight[1]  # (B, L, D)
        return self.dropout(torch.cat([video, text], dim=1))  # (B, t*h*w + L, D)


class FusionSelfAttention(nn.Module):
    """BERT's self-attention (same parameter names, so BERT layers load into it) through SDPA."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, -1).transpose(1, 2)  # (B, heads, N, head_dim)

    def forward(self, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, N, D); key_mask bool (B, 1, 1, N), True where a token may be attended to."""
        query, key, value = self._heads(self.query(hidden)), self._heads(self.key(hidden)), self._heads(self.value(hidden))
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, dropout_p=dropout)  # (B, heads, N, hd)
        return out.transpose(1, 2).flatten(2)  # (B, N, D)

    def attention_weights(self, hidden: torch.Tensor, key_mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Attention weights (B, heads, stop - start, N) of the tokens at positions [start, stop) over all
        tokens (for relevance maps and `output_layers`)."""
        query = self._heads(self.query(hidden[:, start:stop]))  # (B, heads, Q, hd)
        key = self._heads(self.key(hidden))  # (B, heads, N, hd)
        scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])  # (B, heads, Q, N)
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
        return scores.softmax(dim=-1)


class FusionDenseOutput(nn.Module):
    """dense -> dropout -> residual -> LayerNorm, as BERT's `*Output` modules."""

    def __init__(self, in_size: int, hidden_size: int, eps: float, dropout: float):
        super().__init__()
        self.dense = nn.Linear(in_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class FusionAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, eps: float, dropout: float, attention_dropout: float):
        super().__init__()
        self.self = FusionSelfAttention(hidden_size, num_heads, attention_dropout)
        self.output = FusionDenseOutput(hidden_size, hidden_size, eps, dropout)


class FusionIntermediate(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden))


class FusionLayer(nn.Module):
    """A post-norm BERT layer whose state dict is a `BertLayer`'s, so BERT's first layers load into it."""

    def __init__(self, text_config):
        super().__init__()
        size, eps = text_config.hidden_size, text_config.layer_norm_eps
        self.attention = FusionAttention(
            size, text_config.num_attention_heads, eps, text_config.hidden_dropout_prob, text_config.attention_probs_dropout_prob
        )
        self.intermediate = FusionIntermediate(size, text_config.intermediate_size)
        self.output = FusionDenseOutput(text_config.intermediate_size, size, eps, text_config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, N, D) -> (B, N, D)."""
        attended = self.attention.output(self.attention.self(hidden, key_mask), hidden)
        return self.output(self.intermediate(attended), attended)


class FusionEncoder(nn.Module):
    """Full self-attention over [video tokens; text states] through `num_fusion_layers` BERT layers."""

    def __init__(self, config: CloverConfig, grid: tuple[int, int, int]):
        super().__init__()
        text = config.text_config
        self.embeddings = FusionEmbeddings(config.video_width, text.hidden_size, grid, text.layer_norm_eps, text.hidden_dropout_prob)
        self.layer = nn.ModuleList(FusionLayer(text) for _ in range(config.num_fusion_layers))

    def forward(
        self,
        video_tokens: torch.Tensor,
        text_states: torch.Tensor,
        attention_mask: torch.Tensor,
        output_cls_attention: bool = False,
        output_layers: bool = False,
    ) -> FusionOutput:
        """video_tokens (B, t, h, w, Cv); text_states (B, L, D); attention_mask (B, L), 1 for real tokens.
        `output_layers` also returns every layer's output and text-to-video attention (see `FusionOutput`)."""
        num_video = video_tokens.shape[1] * video_tokens.shape[2] * video_tokens.shape[3]
        hidden = self.embeddings(video_tokens, text_states)  # (B, N, D), N = t*h*w + L
        video_keep = attention_mask.new_ones(attention_mask.shape[0], num_video)
        key_mask = torch.cat([video_keep, attention_mask], dim=1).bool()[:, None, None, :]  # (B, 1, 1, N)
        queries = hidden.shape[1] if output_layers else num_video + 1  # every text token, or [CLS] alone
        states, attentions = [], []
        for index, layer in enumerate(self.layer):
            if output_layers or (output_cls_attention and index == len(self.layer) - 1):
                weights = layer.attention.self.attention_weights(hidden, key_mask, num_video, queries)  # (B, heads, Q, N)
                attentions.append(weights[..., :num_video])  # (B, heads, Q, t*h*w)
            hidden = layer(hidden, key_mask)
            if output_layers:
                states.append(hidden)
        return FusionOutput(
            last_hidden_state=hidden,
            pooled=hidden[:, num_video],
            cls_attention=attentions[-1][:, :, 0].mean(1) if output_cls_attention else None,  # (B, t*h*w)
            hidden_states=tuple(states) if output_layers else None,
            text_attentions=torch.stack(attentions, dim=1) if output_layers else None,  # (B, layers, heads, L, t*h*w)
        )


# ---------------------------------------------------------------------------------------------------
# Video encoders
# ---------------------------------------------------------------------------------------------------


class HFVideoEncoder(nn.Module):
    """A transformers video backbone (VideoMAE, TimeSformer, ...) whose token sequence is reshaped to the
    (B, t, h, w, C) grid the fusion encoder expects. Built from the backbone's config dict stored in
    the Clover config, so a saved Clover directory needs no network."""

    def __init__(self, backbone_config: dict[str, Any]):
        super().__init__()
        settings = dict(backbone_config)
        self.backbone = AutoModel.from_config(AutoConfig.for_model(settings.pop("model_type"), **settings))
        side = backbone_config["image_size"] // backbone_config["patch_size"]
        self.grid = (backbone_config["num_frames"] // backbone_config.get("tubelet_size", 1), side, side)

    def forward(self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values (B, T, 3, H, W) -> (B, t, h, w, C)."""
        if video_mask is not None:
            raise ValueError("video_mask needs the built-in Video Swin encoder (video_backbone=None)")
        states = self.backbone(pixel_values=pixel_values).last_hidden_state  # (B, [1 +] t*h*w, C)
        cells = self.grid[0] * self.grid[1] * self.grid[2]
        states = states[:, -cells:]  # drop a leading [CLS] where the backbone has one
        return states.reshape(states.shape[0], *self.grid, states.shape[-1])


def build_video_encoder(config: CloverConfig) -> nn.Module:
    if config.video_backbone_config is not None:
        return HFVideoEncoder(config.video_backbone_config)
    return SwinTransformer3D(
        patch_size=config.patch_size,
        embed_dim=config.video_embed_dim,
        depths=config.video_depths,
        num_heads=config.video_num_heads,
        window_size=config.window_size,
        mlp_ratio=config.video_mlp_ratio,
        drop_path_rate=config.video_drop_path_rate,
        stem=config.video_stem,
    )


# ---------------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------------


def _embedding_norm(embed_dim: int, norm: str) -> nn.Module:
    """The last layer of an alignment head: LayerNorm (the paper's video head) or BatchNorm (see
    `CloverConfig.alignment_head_norm`)."""
    return nn.BatchNorm1d(embed_dim) if norm == "batchnorm" else nn.LayerNorm(embed_dim)


def video_projection(video_width: int, embed_dim: int, norm: str = "layernorm") -> nn.Sequential:
    """Mean-pooled video tokens -> embedding: Cv -> 1.5 Cv -> LN -> GELU -> E -> LN (1024-1536-768);
    the last norm is a BatchNorm with `norm="batchnorm"`."""
    hidden = video_width * 3 // 2
    return nn.Sequential(
        nn.Linear(video_width, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, embed_dim), _embedding_norm(embed_dim, norm)
    )


def text_projection(hidden_size: int, embed_dim: int, norm: str = "layernorm") -> nn.Sequential:
    """A [CLS] state -> embedding: D -> D -> GELU -> E (768-768-768), plus a BatchNorm with
    `norm="batchnorm"` (the paper's text heads end in the linear layer)."""
    layers = [nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, embed_dim)]
    if norm == "batchnorm":
        layers.append(nn.BatchNorm1d(embed_dim))
    return nn.Sequential(*layers)


class AnswerHead(nn.Module):
    """dropout -> Linear -> LayerNorm -> GELU -> Linear, the method's answer heads."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(in_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.out = nn.Linear(hidden_size, out_size)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.norm(self.dense(self.dropout(pooled)))))


class QuestionGuidedPooling(nn.Module):
    """`qa_pooling="cls+max+query"`: what the question asks about, and where it is, read from the video
    encoder's tokens by the question's own words. (B, L, D) text states and (B, t, h, w, Cv) video tokens
    -> (B, D).

    Every real text token queries the layer-normed video tokens with `num_heads` heads; a learnt score per
    token (`word_score`, softmax over the question) weighs what each word read, and the weighted read is
    projected to the fusion width and scaled by `output_scale`. The same weights sum the attention over
    time into a 3x3 split of the frame (REGION_GRID); how much more than uniform each cell got, projected
    (`where`), is added too: the video encoder's tokens are given no absolute position, and "where is
    the X ?" stayed at chance even with one object without it.

    With `time_slots` (`qa_pooling="cls+max+query+time"`, one per time slot of the token grid) the same
    attention's read and cells are also kept per time slot (the attention still sums to 1 over the whole
    clip), and two more layers map them (`time_read`, `time_where`, added to the pooling's output).
    Both start at zero, so the pooling starts as the time-summed one. Why: the summed read is a bag of
    the named object's tokens, the same whichever order they come in, and the video encoder's tokens
    carry no absolute time; a Transition question ("what does the square do after grow ?") has the
    object's own other actions among its candidates, so only the order tells them apart.

    Why: "what shape is the red object ?" needs the tokens of the red object, and single video tokens
    hold both an object's colour and its shape (`benchmarks/binding_probe.py`). But the fusion's [CLS]
    neither knows which word names the object (the text encoder's [CLS] state hardly depends on it) nor
    attends to that object more than to the others: it spreads its attention over the 196 video tokens,
    and 3,000 steps on these questions alone barely start it. Attention queried by the words themselves
    learns it (docs/results.md, "Where binding is lost"). Why the details (`benchmarks/binding_training.py`,
    docs/results.md "Binding sooner"): at PyTorch's init (kept, not BERT's std 0.02) the attention is
    near uniform and the read adds a feature of norm ~3 next to the [CLS] and maxima's ~11 and ~21; scaled
    x10, the colours start within 250-500 steps instead of 600-750 (x30 holds the shapes back; a
    LayerNorm, or subtracting the uniform read, stalls it). Each word querying, rather than one query
    pooled from the words, started the shapes sooner in the two comparisons made (single runs).
    """

    output_scale = 10.0

    def __init__(
        self, video_width: int, hidden_size: int, attention_size: int = 64, num_heads: int = 4, time_slots: int = 0
    ):
        super().__init__()
        if attention_size % num_heads:
            raise ValueError(f"attention_size {attention_size} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.time_slots = time_slots
        self.word_score = nn.Linear(hidden_size, 1)
        self.query = nn.Linear(hidden_size, attention_size)
        self.video_norm = nn.LayerNorm(video_width)
        self.key = nn.Linear(video_width, attention_size)
        self.value = nn.Linear(video_width, attention_size)
        self.output = nn.Linear(attention_size, hidden_size)
        self.where = nn.Linear(REGION_GRID**2, hidden_size)
        for layer in (self.word_score, self.query, self.key, self.value, self.output, self.where):
            layer.keeps_torch_init = True
        if time_slots:  # "cls+max+query+time": what the read and the where hold in each time slot, kept apart
            self.time_read = nn.Linear(time_slots * attention_size, hidden_size)
            self.time_where = nn.Linear(time_slots * REGION_GRID**2, hidden_size)
            for layer in (self.time_read, self.time_where):
                layer.starts_at_zero = True  # the pooling starts as the time-summed one and learns what differs

    def forward(self, text_states: torch.Tensor, attention_mask: torch.Tensor, video_tokens: torch.Tensor) -> torch.Tensor:
        """text_states (B, L, D), attention_mask (B, L), video_tokens (B, t, h, w, Cv) -> (B, D)."""
        frames, height, width = video_tokens.shape[1:4]
        video = self.video_norm(video_tokens.flatten(1, 3))  # (B, n, Cv), n = t*h*w
        word_weights = self._word_weights(text_states, attention_mask)  # (B, L)
        attention = self._word_attention(text_states, video)  # (B, heads, L, n)
        values = self.value(video).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (B, heads, n, a)
        read = (attention @ values).transpose(1, 2).flatten(2)  # (B, L, A)
        read = (word_weights.unsqueeze(-1) * read).sum(1)  # (B, A)
        slot_grid = self._pooled(attention, word_weights).unflatten(1, (frames, height, width))  # (B, t, h, w)
        cells = F.adaptive_avg_pool2d(slot_grid.sum(1, keepdim=True), REGION_GRID).flatten(1) * height * width  # (B, 9), 1 = uniform
        pooled = self.output_scale * self.output(read) + self.where(cells - 1)  # (B, D)
        if self.time_slots:
            pooled = pooled + self._time_terms(attention, values, word_weights, slot_grid)
        return pooled

    def _time_terms(
        self, attention: torch.Tensor, values: torch.Tensor, word_weights: torch.Tensor, slot_grid: torch.Tensor
    ) -> torch.Tensor:
        """What the read and the cells hold in each time slot, kept apart: (B, heads, L, n) attention,
        (B, heads, n, a) values, (B, L) word weights, (B, t, h, w) pooled attention -> (B, D), added to
        the time-summed pooling."""
        frames, height, width = slot_grid.shape[1:]
        if frames != self.time_slots:
            raise ValueError(f"video tokens have {frames} time slots; this pooling was built for {self.time_slots}")
        by_slot = attention.unflatten(-1, (frames, height * width))  # (B, heads, L, t, hw)
        slot_values = values.unflatten(2, (frames, height * width))  # (B, heads, t, hw, a)
        slot_reads = torch.einsum("bhltp,bhtpa->bltha", by_slot, slot_values).flatten(3)  # (B, L, t, A)
        slot_reads = (word_weights[:, :, None, None] * slot_reads).sum(1)  # (B, t, A)
        slot_cells = F.adaptive_avg_pool2d(slot_grid, REGION_GRID).flatten(2) * height * width * frames  # (B, t, 9), 1 = uniform
        return self.output_scale * self.time_read(slot_reads.flatten(1)) + self.time_where(slot_cells.flatten(1) - 1)  # (B, D)

    def attention(self, text_states: torch.Tensor, attention_mask: torch.Tensor, video_tokens: torch.Tensor) -> torch.Tensor:
        """Where the question reads (B, t*h*w): each word's attention, averaged over heads, weighed by its
        word score; sums to 1 over the video tokens (for relevance maps and `binding_probe`)."""
        video = self.video_norm(video_tokens.flatten(1, 3))  # (B, n, Cv)
        return self._pooled(self._word_attention(text_states, video), self._word_weights(text_states, attention_mask))

    def _word_weights(self, text_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """How much each real token's read counts (B, L), softmax over the question."""
        scores = self.word_score(text_states).squeeze(-1)  # (B, L)
        return scores.masked_fill(~attention_mask.bool(), torch.finfo(scores.dtype).min).softmax(-1)

    def _word_attention(self, text_states: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """Each token's softmax over the normed video tokens, per head: (B, L, D), (B, n, Cv) -> (B, heads, L, n)."""
        queries = self.query(text_states).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (B, heads, L, a)
        keys = self.key(video).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (B, heads, n, a)
        return (queries @ keys.transpose(-1, -2) / math.sqrt(queries.shape[-1])).softmax(-1)  # (B, heads, L, n)

    @staticmethod
    def _pooled(attention: torch.Tensor, word_weights: torch.Tensor) -> torch.Tensor:
        """(B, heads, L, n) attention, (B, L) word weights -> (B, n): the heads' mean, weighed over words."""
        return (word_weights.unsqueeze(-1) * attention.mean(1)).sum(1)


class CandidateMatch(nn.Module):
    """The bilinear term of `mc_scoring="concat+match"`: how well the answer features of a question +
    candidate text fit the candidate's own tokens, `<W_a answer, W_c mean(candidate states)> / sqrt(d)`.

    Why: the paper's score is a head on the fused [CLS] of question + candidate, so a candidate changes
    its score only through attention between its words and the video, which a model trained from
    random weights does not find (a colour question stayed at chance for 400 steps). A dot product of
    two projections has a gradient for each factor from the first step, as an open-ended head's class
    weights do, and its "classes" are whatever text the candidates are.
    """

    def __init__(self, hidden_size: int, match_size: int):
        super().__init__()
        self.answer_proj = nn.Linear(hidden_size, match_size)
        self.candidate_proj = nn.Linear(hidden_size, match_size)

    def forward(self, answer: torch.Tensor, text_states: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """answer (N, D), text_states (N, L, D), token_mask (N, L) bool -> scores (N, 1)."""
        weights = token_mask.to(text_states.dtype).unsqueeze(-1)  # (N, L, 1)
        candidate = (text_states * weights).sum(1) / weights.sum(1).clamp(min=1)  # (N, D)
        product = self.answer_proj(answer) * self.candidate_proj(candidate)  # (N, d)
        return product.sum(-1, keepdim=True) / math.sqrt(product.shape[-1])  # (N, 1)


# ---------------------------------------------------------------------------------------------------
# Base model
# ---------------------------------------------------------------------------------------------------


class CloverPreTrainedModel(PreTrainedModel):
    config_class = CloverConfig
    config: CloverConfig
    base_model_prefix = "clover"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _no_split_modules = ["SwinTransformerBlock3D", "FusionLayer", "BertLayer"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, allow_pickle: bool = False, **kwargs: Any):
        """transformers' `from_pretrained`, loading weights only from safetensors unless `allow_pickle=True`.

        A pickle checkpoint (`pytorch_model.bin`) can run code when it is unpickled, so a directory that
        holds only one is refused with a message saying what to do; `allow_pickle=True` is the explicit
        opt-in for a checkpoint you trust (it restores transformers' own choice of file).
        """
        if not allow_pickle:
            if kwargs.get("use_safetensors") is False:
                raise ValueError("use_safetensors=False loads pickle weights; pass allow_pickle=True as well if you trust them")
            kwargs["use_safetensors"] = True
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except OSError as error:
            if not allow_pickle and _has_pickle_weights(pretrained_model_name_or_path):
                raise OSError(
                    f"{pretrained_model_name_or_path} holds pickle weights (pytorch_model.bin) and no model.safetensors; "
                    "pickle files can run code when loaded, so they are refused. Convert the checkpoint to safetensors "
                    "(load it once with allow_pickle=True and save_pretrained it), or pass allow_pickle=True "
                    "(--allow-pickle on the command line) if you trust where it came from."
                ) from error
            raise

    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, "keeps_torch_init", False):
            _torch_default_init(module)
            return
        if getattr(module, "starts_at_zero", False):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
            return
        super()._init_weights(module)
        std = self.config.text_config.initializer_range
        if isinstance(module, WindowAttention3D):
            init.trunc_normal_(module.relative_position_bias_table, std=std)
        elif isinstance(module, SwinTransformer3D):
            init.normal_(module.mask_token, std=std)
        elif isinstance(module, BertLMPredictionHead):  # as BERT: a new MLM head's bias is not left uninitialised
            init.zeros_(module.bias)


def _torch_default_init(layer: nn.Module) -> None:
    """PyTorch's own init of a Linear or Conv layer (Kaiming-uniform weights, uniform bias), through
    `init`, which leaves weights loaded from a checkpoint alone (`reset_parameters` would not)."""
    init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
    if layer.bias is not None:
        bound = 1 / math.sqrt(layer.weight[0].numel())
        init.uniform_(layer.bias, -bound, bound)


def _has_pickle_weights(location: str | os.PathLike) -> bool:
    """Whether a local checkpoint directory holds pickle weights (`pytorch_model*.bin`)."""
    directory = os.fspath(location)
    return os.path.isdir(directory) and any(
        name.startswith("pytorch_model") and name.endswith(".bin") for name in os.listdir(directory)
    )


class _BackboneLoading:
    """`from_backbones`: a new Clover model whose encoders start from pretrained backbones."""

    @classmethod
    def from_backbones(
        cls,
        config: CloverConfig | None = None,
        *,
        text_backbone: str | os.PathLike | None = None,
        video_swin_checkpoint: str | os.PathLike | dict | None = None,
        video_backbone: str | os.PathLike | None = None,
        **config_overrides: Any,
    ):
        """Build a model whose text encoder (and fusion layers, and MLM head where the model has one)
        start from a pretrained BERT (`bert-base-uncased` in the paper: a hub name or a local
        directory), and whose video encoder starts from an official Video Swin checkpoint
        (`video_swin_checkpoint`, a `.pth` path) or is a transformers video backbone (`video_backbone`).

        The fusion layers are initialised from the BERT's first `num_fusion_layers` layers.
        """
        config = config or CloverConfig(**config_overrides)
        if text_backbone is not None:
            config.text_config = AutoConfig.from_pretrained(text_backbone)
            config.text_backbone = str(text_backbone)
        if video_backbone is not None:
            backbone_config = AutoConfig.from_pretrained(video_backbone)
            config.video_backbone = str(video_backbone)
            config.video_backbone_config = backbone_config.to_dict()
            config.num_frames = backbone_config.num_frames
            config.image_size = backbone_config.image_size
            if getattr(backbone_config, "image_mean", None):
                config.image_mean, config.image_std = list(backbone_config.image_mean), list(backbone_config.image_std)
        model = cls(config)
        clover = model.base_model  # the CloverModel inside a task model, or the model itself
        if text_backbone is not None:
            model._load_text_backbone(text_backbone)
        if video_backbone is not None:
            clover.video_encoder.backbone.load_state_dict(AutoModel.from_pretrained(video_backbone).state_dict())
        if video_swin_checkpoint is not None:
            model.video_checkpoint_report = load_video_swin_checkpoint(clover.video_encoder, video_swin_checkpoint)
        return model

    def _load_text_backbone(self, text_backbone: str | os.PathLike) -> None:
        clover = self.base_model
        bert = AutoModel.from_pretrained(text_backbone)
        missing, unexpected = clover.text_encoder.load_state_dict(bert.state_dict(), strict=False)
        missing = [key for key in missing if "position_ids" not in key]
        unexpected = [key for key in unexpected if not key.startswith("pooler.")]
        if missing or unexpected:
            raise ValueError(f"{text_backbone} is not a BERT the text encoder can load: missing {missing}, unexpected {unexpected}")
        bert_layers = clover.text_encoder.encoder.layer
        if len(bert_layers) < len(clover.fusion.layer):
            raise ValueError(f"{text_backbone} has {len(bert_layers)} layers, fewer than the {len(clover.fusion.layer)} fusion layers")
        for fusion_layer, bert_layer in zip(clover.fusion.layer, bert_layers):
            fusion_layer.load_state_dict(bert_layer.state_dict())


class CloverModel(_BackboneLoading, CloverPreTrainedModel):
    """The backbone: video, text and fusion encoders with the alignment heads of the method.

    Retrieval: `get_video_features` / `get_text_features` give normalised embeddings whose dot product
    ranks clips for a text. Question answering builds on `encode_video`, `encode_text` and `fuse`.
    """

    # A task checkpoint's heads are expected extras when the backbone alone is loaded from it.
    _keys_to_ignore_on_load_unexpected = [r"^heads\.", r"^mlm_head\."]

    def __init__(self, config: CloverConfig):
        super().__init__(config)
        text = config.text_config
        text._attn_implementation = text._attn_implementation or "sdpa"
        self.video_encoder = build_video_encoder(config)
        self.text_encoder = BertModel(text, add_pooling_layer=False)
        self.fusion = FusionEncoder(config, config.video_grid)
        norm = config.alignment_head_norm
        self.video_proj = video_projection(config.video_width, config.embed_dim, norm)
        self.text_proj = text_projection(text.hidden_size, config.embed_dim, norm)
        self.fused_video_proj = text_projection(text.hidden_size, config.embed_dim, norm)  # f^V = E_f(V^m, T)
        self.fused_text_proj = text_projection(text.hidden_size, config.embed_dim, norm)  # f^T = E_f(V, T^m)
        self.post_init()

    # -- encoders ---------------------------------------------------------------------------------
    def encode_video(self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None) -> VideoFeatures:
        """pixel_values (B, T, 3, H, W) -> VideoFeatures(tokens (B, t, h, w, Cv)).

        The result does not depend on any question: compute it once per clip and pass it as
        `video_features=` to `CloverForVideoQA` for every question about that clip.
        `video_mask` (bool (B, h*w)) replaces those spatial cells by the mask token in every frame.
        """
        expected = (self.config.num_frames, 3, self.config.image_size, self.config.image_size)
        if pixel_values.ndim != 5 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(f"pixel_values must have shape (batch, {', '.join(map(str, expected))}), got {tuple(pixel_values.shape)}")
        return VideoFeatures(tokens=self.video_encoder(pixel_values, video_mask))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, L) -> text states (B, L, D)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def fuse(
        self,
        video_tokens: torch.Tensor,
        text_states: torch.Tensor,
        attention_mask: torch.Tensor,
        output_cls_attention: bool = False,
        output_layers: bool = False,
    ) -> FusionOutput:
        """Fusion of (B, t, h, w, Cv) video tokens with (B, L, D) text states; a video batch of 1 is
        broadcast over the text batch (one clip, many questions). The flags are `FusionEncoder`'s."""
        if video_tokens.shape[0] == 1 and text_states.shape[0] > 1:
            video_tokens = video_tokens.expand(text_states.shape[0], *video_tokens.shape[1:])
        if video_tokens.shape[0] != text_states.shape[0]:
            raise ValueError(f"{video_tokens.shape[0]} clips for {text_states.shape[0]} texts")
        return self.fusion(video_tokens, text_states, attention_mask, output_cls_attention, output_layers)

    # -- embeddings -------------------------------------------------------------------------------
    def video_embedding(self, video_tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, t, h, w, Cv) -> (B, E): the MLP on mean-pooled tokens."""
        embeds = self.video_proj(video_tokens.flatten(1, 3).mean(1))
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def pool_text(self, text_states: torch.Tensor, attention_mask: torch.Tensor | None = None, pooling: str | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, D), what the text retrieval head reads: the [CLS] state, or with
        `retrieval_text_pooling="mean"` the mean of the states the attention mask keeps (`pooling`
        overrides the config's)."""
        if (pooling or self.config.retrieval_text_pooling) == "cls":
            return text_states[:, 0]
        if attention_mask is None:
            return text_states.mean(1)
        weights = attention_mask[..., None].to(text_states.dtype)  # (B, L, 1)
        return (text_states * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, D)

    def text_embedding(self, text_states: torch.Tensor, normalize: bool = True, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, E): the MLP on the pooled text states (`pool_text`)."""
        embeds = self.text_proj(self.pool_text(text_states, attention_mask))
        return F.normalize(embeds, dim=-1) if normalize else embeds

    def get_video_features(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Retrieval embeddings (B, E) of clips."""
        return self.video_embedding(self.encode_video(pixel_values).tokens, normalize)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, normalize: bool = True):
        """Retrieval embeddings (B, E) of texts."""
        return self.text_embedding(self.encode_text(input_ids, attention_mask), normalize, attention_mask)

    @torch.no_grad()
    def recompute_embedding_statistics(self, batches: Iterable[Mapping[str, torch.Tensor]]) -> int:
        """Set the running statistics of the retrieval heads' BatchNorms (`video_proj`, `text_proj`; with
        `alignment_head_norm="batchnorm"`) to the exact mean and unbiased variance of their inputs over
        `batches` of clips and captions (`pixel_values`, `input_ids`, `attention_mask`, as the processor
        gives them for evaluation). Returns the number of pairs seen; 0, changing nothing, for
        LayerNorm-ended heads or no pairs. The rest of the model is untouched.

        Why: in training each batch is normalised by its own statistics, while the running averages
        that evaluation uses trail a moving target (momentum 0.1 over the last ten or so calls, masked
        clips and captions among them). After the benchmark's caption pre-training they sat about one
        standard deviation per dimension away from the training pairs' statistics: every embedding got
        the same offset, and zero-shot retrieval lost half its R@1 (docs/results.md). Re-estimating
        them with the weights fixed is "precise BatchNorm" (Wu and Johnson, "Rethinking 'Batch' in
        BatchNorm", 2021).
        """
        if not self._has_embedding_batchnorms():
            return 0
        was_training = self.training
        self.eval()
        video, text = [], []
        device = self.video_proj[0].weight.device
        for batch in batches:
            tokens = self.encode_video(batch["pixel_values"].to(device)).tokens  # (B, t, h, w, Cv)
            mask = batch["attention_mask"].to(device)
            video.append(tokens.flatten(1, 3).mean(1))  # (B, Cv), what video_proj reads
            text.append(self.pool_text(self.encode_text(batch["input_ids"].to(device), mask), mask))  # (B, D)
        pairs = self.set_embedding_statistics(torch.cat(video), torch.cat(text)) if video else 0
        self.train(was_training)
        return pairs

    def _has_embedding_batchnorms(self) -> bool:
        return all(isinstance(head[-1], nn.BatchNorm1d) for head in (self.video_proj, self.text_proj))

    @torch.no_grad()
    def set_embedding_statistics(self, video_features: torch.Tensor, text_features: torch.Tensor) -> int:
        """The same from the heads' own inputs, pair i in row i: mean-pooled video tokens (N, Cv) and
        pooled text states (N, D, `pool_text`). Each head's BatchNorm gets the exact mean and unbiased
        variance (in float64) of what its layers before the norm make of them. Returns N; 0, changing
        nothing, for fewer than 2 pairs or LayerNorm-ended heads."""
        pairs = video_features.shape[0]
        if pairs < 2 or not self._has_embedding_batchnorms():
            return 0
        was_training = self.training
        self.eval()
        device = self.video_proj[0].weight.device
        for head, features in ((self.video_proj, video_features), (self.text_proj, text_features)):
            inputs = torch.cat([head[:-1](chunk.to(device)).double().cpu() for chunk in features.split(4096)])  # (N, E)
            head[-1].running_mean.copy_(inputs.mean(0).to(head[-1].running_mean))
            head[-1].running_var.copy_(inputs.var(0).to(head[-1].running_var))  # unbiased, as BatchNorm keeps
        self.train(was_training)
        return pairs

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CloverModelOutput:
        """Embeddings of both modalities, their similarity (texts x clips) and the fused [CLS] state."""
        video_tokens = self.encode_video(pixel_values).tokens
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        text_states = self.encode_text(input_ids, attention_mask)
        video_embeds = self.video_embedding(video_tokens)
        text_embeds = self.text_embedding(text_states, attention_mask=attention_mask)
        fused = self.fuse(video_tokens, text_states, attention_mask)
        return CloverModelOutput(
            video_embeds=video_embeds,
            text_embeds=text_embeds,
            fused_pooled=fused.pooled,
            logits_per_text=text_embeds @ video_embeds.T / self.config.temperature,  # (B_text, B_video)
        )


# ---------------------------------------------------------------------------------------------------
# Video question answering
# ---------------------------------------------------------------------------------------------------


# `qa_pooling="cls+max+regions"` also reads the maximum over each cell of a REGION_GRID x REGION_GRID split
# of the frame: left / centre / right by top / middle / bottom, as spatial pyramid pooling's coarse level.
REGION_GRID = 3


class CloverForVideoQA(_BackboneLoading, CloverPreTrainedModel):
    """Clover with answer heads on the fused [CLS]: open-ended (a class per answer of `config.id2label`),
    multiple choice (a score per question-candidate pair, softmax over the candidates) and count
    (scalar regression). `config.qa_heads` says which heads exist; `head=` picks one per call."""

    # Starting from a pre-training checkpoint: its MLM head is not needed for question answering.
    _keys_to_ignore_on_load_unexpected = [r"^mlm_head\."]

    def __init__(self, config: CloverConfig):
        super().__init__(config)
        self.clover = CloverModel(config)
        hidden, dropout = config.text_config.hidden_size, config.head_dropout
        heads = {}
        if "open" in config.qa_heads:
            heads["open"] = AnswerHead(hidden, config.open_head_hidden_size, config.num_labels, dropout)
        if "mc" in config.qa_heads:
            heads["mc"] = AnswerHead(hidden, config.mc_head_hidden_size, 1, dropout)
            if config.mc_scoring == "concat+match":
                heads["mc_match"] = CandidateMatch(hidden, config.mc_head_hidden_size)
        if "count" in config.qa_heads:
            heads["count"] = AnswerHead(hidden, config.open_head_hidden_size, 1, dropout)
        if config.qa_pooling.startswith("cls+max+query"):  # among the heads: new for question answering, at their rate
            time_slots = config.video_grid[0] if config.qa_pooling == "cls+max+query+time" else 0
            heads["question_pooling"] = QuestionGuidedPooling(config.video_width, hidden, time_slots=time_slots)
        self.heads = nn.ModuleDict(heads)
        if config.qa_pooling == "cls+max+regions":
            # Not among `heads`, so it trains at the encoders' learning rate: at the heads' (x5 in the demo
            # recipe) it disturbed every other open-ended answer (docs/results.md).
            self.region_proj = nn.Linear(REGION_GRID**2 * hidden, hidden)
        self.post_init()

    def encode_video(self, pixel_values: torch.Tensor) -> VideoFeatures:
        """Encode clips once; pass the result as `video_features=` for each question about them."""
        return self.clover.encode_video(pixel_values)

    @property
    def answer_heads(self) -> list[str]:
        """The heads a question can be asked with ("open", "mc", "count"); `heads` also holds the
        multiple-choice match term (`mc_match`), which is part of the "mc" head."""
        return [name for name in self.heads if name in QA_HEADS]

    def _pick_head(self, head: str | None, input_ids: torch.Tensor) -> str:
        if head is None:
            head = "mc" if input_ids.ndim == 3 else self.config.qa_heads[0]
        if head not in self.answer_heads:
            raise ValueError(f"this model has no {head!r} head; it has {self.answer_heads}")
        if (head == "mc") != (input_ids.ndim == 3):
            raise ValueError(f"the {head!r} head needs input_ids of shape {'(B, K, L)' if head == 'mc' else '(B, L)'}, got {tuple(input_ids.shape)}")
        return head

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        head: str | None = None,
        candidate_mask: torch.Tensor | None = None,
        candidate_token_mask: torch.Tensor | None = None,
        video_features: VideoFeatures | None = None,
        output_cls_attention: bool = False,
        output_question_attention: bool = False,
        **kwargs: Any,
    ) -> VideoQAOutput:
        """Answer questions about clips.

        pixel_values (B, T, 3, H, W), or `video_features` from `encode_video` (a batch of 1 clip is
        broadcast over B questions); input_ids / attention_mask (B, L), or (B, K, L) for multiple
        choice with `candidate_mask` (B, K) and, for `mc_scoring="concat+match"`, `candidate_token_mask`
        (B, K, L) (both from `CloverProcessor`); labels: open (B,) class ids (-100 ignored), mc (B,)
        candidate index, count (B,) numbers. The loss is computed only when labels are given.
        `output_cls_attention` / `output_question_attention`: also return where the fused [CLS] / the
        question-guided pooling attends over the video tokens (for relevance maps; `VideoQAOutput`).
        """
        if input_ids is None:
            raise ValueError("input_ids are required")
        head = self._pick_head(head, input_ids)
        if video_features is None:
            if pixel_values is None:
                raise ValueError("pass pixel_values or video_features")
            video_features = self.clover.encode_video(pixel_values)
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        video_tokens = video_features.tokens  # (B or 1, t, h, w, Cv)
        batch = input_ids.shape[0]
        if head == "mc":
            num_candidates = input_ids.shape[1]
            if video_tokens.shape[0] == 1:
                video_tokens = video_tokens.expand(batch, *video_tokens.shape[1:])
            video_tokens = video_tokens.repeat_interleave(num_candidates, dim=0)  # (B*K, t, h, w, Cv)
            input_ids, attention_mask = input_ids.flatten(0, 1), attention_mask.flatten(0, 1)  # (B*K, L)
        text_states = self.clover.encode_text(input_ids, attention_mask)  # (B or B*K, L, D)
        fused = self.clover.fuse(video_tokens, text_states, attention_mask, output_cls_attention)
        features = self.answer_features(fused, video_tokens, text_states, attention_mask)  # (B or B*K, D)
        logits = self.heads[head](features)  # (B, num_answers) | (B*K, 1) | (B, 1)
        if head == "mc" and "mc_match" in self.heads:
            logits = logits + self.heads["mc_match"](features, text_states, self._token_mask(candidate_token_mask, input_ids))
        cls_attention, question_attention = fused.cls_attention, None
        if output_question_attention and "question_pooling" in self.heads:  # one clip broadcasts over the questions
            question_attention = self.heads["question_pooling"].attention(text_states, attention_mask, video_tokens)  # (B or B*K, n)
        if head == "mc":
            logits = logits.view(batch, num_candidates)  # (B, K)
            if candidate_mask is not None:
                logits = logits.masked_fill(~candidate_mask.bool(), torch.finfo(logits.dtype).min)
            if cls_attention is not None:
                cls_attention = cls_attention.view(batch, num_candidates, -1).mean(1)  # (B, t*h*w)
            if question_attention is not None:
                question_attention = question_attention.view(batch, num_candidates, -1).mean(1)  # (B, t*h*w)
        elif head == "count":
            logits = logits.squeeze(-1)  # (B,)
        loss = self._loss(head, logits, labels) if labels is not None else None
        return VideoQAOutput(loss=loss, logits=logits, cls_attention=cls_attention, question_attention=question_attention)

    @staticmethod
    def _token_mask(candidate_token_mask: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
        """The candidate-token mask flattened to (B*K, L) like `input_ids`, checked."""
        if candidate_token_mask is None:
            raise ValueError(
                'this model scores candidates with mc_scoring="concat+match", which needs candidate_token_mask '
                "(B, K, L): pass the output of CloverProcessor(..., candidates=...) or encode_multiple_choice whole"
            )
        mask = candidate_token_mask.flatten(0, 1)  # (B*K, L)
        if mask.shape != input_ids.shape:
            raise ValueError(f"candidate_token_mask has shape {tuple(candidate_token_mask.shape)}; it must match input_ids")
        return mask.bool()

    def answer_features(
        self,
        fused: FusionOutput,
        video_tokens: torch.Tensor,
        text_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """What the answer heads read (B, D): the fused [CLS], plus with `qa_pooling="cls+max"` the
        element-wise maximum over the fused video tokens (the first t*h*w positions), plus with
        "cls+max+regions" a linear map of the maxima over each cell of a 3x3 split of the token grid
        (all time steps together), which keep where in the frame something is, or with "cls+max+query"
        the video tokens the question's words point to (`QuestionGuidedPooling`, which needs the text
        encoder's states (B, L, D) and their attention mask (B, L); "cls+max+query+time" keeps them
        apart per time slot)."""
        if self.config.qa_pooling == "cls":
            return fused.pooled
        frames, height, width = video_tokens.shape[1:4]
        video = fused.last_hidden_state[:, : frames * height * width]  # (B, t*h*w, D)
        features = fused.pooled + video.amax(dim=1)  # (B, D)
        if self.config.qa_pooling == "cls+max+regions":
            grid = video.unflatten(1, (frames, height, width)).amax(dim=1).permute(0, 3, 1, 2)  # (B, D, h, w)
            regions = F.adaptive_max_pool2d(grid, REGION_GRID)  # (B, D, 3, 3)
            features = features + self.region_proj(regions.flatten(1))  # (B, D)
        elif self.config.qa_pooling.startswith("cls+max+query"):
            if text_states is None or attention_mask is None:
                raise ValueError(f"qa_pooling={self.config.qa_pooling!r} reads the question: pass text_states and attention_mask")
            if video_tokens.shape[0] == 1 and text_states.shape[0] > 1:  # one clip, many questions
                video_tokens = video_tokens.expand(text_states.shape[0], *video_tokens.shape[1:])
            features = features + self.heads["question_pooling"](text_states, attention_mask, video_tokens)  # (B, D)
        return features

    @staticmethod
    def _loss(head: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if head == "count":
            return F.mse_loss(logits.float(), labels.float())
        return F.cross_entropy(logits.float(), labels.long(), ignore_index=-100)

    def top_answers(
        self, logits: torch.Tensor, head: str, k: int = 5, candidates: list[list[str]] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per example, the k best answers with their probabilities, best first.

        open: answers from `config.id2label`; mc: the candidates' texts (`candidates[b]`); count: the
        rounded prediction clamped to [count_min, count_max], with probability 1.
        """
        if head == "count":
            values = logits.detach().float().round().clamp(self.config.count_min, self.config.count_max)
            return [[(str(int(value)), 1.0)] for value in values.tolist()]
        probs = logits.detach().float().softmax(dim=-1)  # (B, C)
        top = probs.topk(min(k, probs.shape[-1]), dim=-1)
        results = []
        for row, (scores, indices) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            if head == "mc":
                if candidates is None:
                    raise ValueError("top_answers for multiple choice needs the candidates' texts")
                names = [candidates[row][i] if i < len(candidates[row]) else None for i in indices]
            else:
                names = [self.config.id2label[i] for i in indices]
            results.append([(name, score) for name, score in zip(names, scores) if name is not None])
        return results


# ---------------------------------------------------------------------------------------------------
# Pre-training
# ---------------------------------------------------------------------------------------------------


class CloverForPretraining(_BackboneLoading, CloverPreTrainedModel):
    """Clover with the masked language modelling head; `forward` computes the pre-training losses of
    the method (tri-modal alignment, pair-wise ranking, MLM) or the pair-wise baseline."""

    _tied_weights_keys = {
        "mlm_head.predictions.decoder.weight": "clover.text_encoder.embeddings.word_embeddings.weight",
        "mlm_head.predictions.decoder.bias": "mlm_head.predictions.bias",
    }

    def __init__(self, config: CloverConfig):
        super().__init__(config)
        self.clover = CloverModel(config)
        self.mlm_head = BertOnlyMLMHead(config.text_config)
        self.build_losses()
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.mlm_head.predictions.decoder

    def _load_text_backbone(self, text_backbone: str | os.PathLike) -> None:
        """Also start the MLM head from BERT's prediction head, when the checkpoint has one."""
        _BackboneLoading._load_text_backbone(self, text_backbone)
        from transformers import BertForMaskedLM

        try:
            bert = BertForMaskedLM.from_pretrained(text_backbone)
        except (OSError, ValueError):
            return
        self.mlm_head.load_state_dict(bert.cls.state_dict(), strict=False)

    def build_losses(self) -> None:
        """The loss modules of the method, from the config (called once, at construction)."""
        from .losses import MaskedLanguageModelingLoss, PairwiseInfoNCELoss, PairwiseRankingLoss, TriModalAlignmentLoss

        config = self.config
        self.alignment_loss = TriModalAlignmentLoss(temperature=config.temperature)
        self.ranking_loss = PairwiseRankingLoss(margin=config.ranking_margin, temperature=config.temperature)
        self.pairwise_loss = PairwiseInfoNCELoss(temperature=config.temperature)
        self.mlm_loss = MaskedLanguageModelingLoss(focal_gamma=config.mlm_focal_gamma)

    def make_masks(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer: Any, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Semantic text masking and block video masking: (masked_input_ids, mlm_labels, video_mask)."""
        from .masking import mask_text, mask_video_cells

        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
        masked_ids, labels = mask_text(
            input_ids.cpu(), attention_mask.cpu(), tokenizer, ratio=self.config.text_mask_ratio, generator=generator
        )
        _, height, width = self.config.video_grid
        num_masked = max(1, round(self.config.video_mask_cells / 49 * height * width))
        video_mask = mask_video_cells(input_ids.shape[0], (height, width), num_masked, generator=generator)
        device = input_ids.device
        return masked_ids.to(device), labels.to(device), video_mask.to(device)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        tokenizer: Any = None,
        generator: torch.Generator | None = None,
        masked_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        video_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> PretrainingOutput:
        """The pre-training losses for a batch of clips (B, T, 3, H, W) and captions (B, L).

        Masking is done here, with `tokenizer` (to find whole semantic words) and the caller's
        `generator` (for reproducible masks); or pass `masked_input_ids`, `mlm_labels` and `video_mask`
        made beforehand. `config.pretrain_objective` picks the Clover objective or the pair-wise
        baseline; `use_ranking_loss` and `use_masked_positives` switch parts off for ablations.
        """
        if self.training and self.config.alignment_head_norm == "batchnorm" and input_ids.shape[0] < 2:
            raise ValueError(
                "the alignment heads end in BatchNorm (config.alignment_head_norm='batchnorm'), which needs at least "
                f"2 pairs per batch in training; got {input_ids.shape[0]}. Use a per-device batch size of 2 or more."
            )
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if masked_input_ids is None or mlm_labels is None or video_mask is None:
            if tokenizer is None:
                raise ValueError("pass tokenizer= (to mask captions) or masked_input_ids, mlm_labels and video_mask")
            masked_input_ids, mlm_labels, video_mask = self.make_masks(input_ids, attention_mask, tokenizer, generator)
        out = self.forward_passes(pixel_values, input_ids, attention_mask, masked_input_ids, video_mask)
        losses = self.mlm_loss(out["mlm_logits"], mlm_labels)
        if self.config.pretrain_objective == "pairwise":
            losses.update(self.pairwise_loss(out["v"], out["t"]))
        else:
            losses.update(self._clover_alignment(out))
        return PretrainingOutput(loss=sum(losses.values()), losses=losses, video_embeds=out["v"], text_embeds=out["t"])

    def _clover_alignment(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tri-modal alignment with video and with text as anchor, and the ranking terms."""
        masked = self.config.use_masked_positives
        video_positives = {"t": out["t"], **({"t_m": out["t_m"]} if masked else {}), "f_v": out["f_v"]}
        text_positives = {"v": out["v"], **({"v_m": out["v_m"]} if masked else {}), "f_t": out["f_t"]}
        losses = self.alignment_loss(out["v"], video_positives, prefix="align_v")
        losses.update(self.alignment_loss(out["t"], text_positives, prefix="align_t"))
        if self.config.use_ranking_loss:
            losses.update(self.ranking_loss(out["v"], out["t"], out["v_m"], out["t_m"]))
        return losses

    def forward_passes(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        masked_input_ids: torch.Tensor,
        video_mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Every embedding the losses need, from full and masked inputs (all (B, E), normalised):
        v, t; v_m (masked video alone), t_m (masked caption alone); f_v = E_f(V^m, T), f_t = E_f(V, T^m);
        and mlm_logits (B, L, vocab) from E_f(V, T^m)."""
        clover = self.clover
        video = clover.encode_video(pixel_values).tokens  # (B, t, h, w, Cv)
        masked_video = clover.encode_video(pixel_values, video_mask).tokens
        text = clover.encode_text(input_ids, attention_mask)  # (B, L, D)
        masked_text = clover.encode_text(masked_input_ids, attention_mask)
        fused_video = clover.fuse(masked_video, text, attention_mask)  # E_f(V^m, T)
        fused_text = clover.fuse(video, masked_text, attention_mask)  # E_f(V, T^m)
        num_video = video.shape[1] * video.shape[2] * video.shape[3]
        return {
            "v": clover.video_embedding(video),
            "t": clover.text_embedding(text, attention_mask=attention_mask),
            "v_m": clover.video_embedding(masked_video),
            "t_m": clover.text_embedding(masked_text, attention_mask=attention_mask),
            "f_v": F.normalize(clover.fused_video_proj(fused_video.pooled), dim=-1),
            "f_t": F.normalize(clover.fused_text_proj(fused_text.pooled), dim=-1),
            "mlm_logits": self.mlm_head(fused_text.last_hidden_state[:, num_video:]),  # (B, L, vocab)
        }


# ---------------------------------------------------------------------------------------------------
# Auto classes
# ---------------------------------------------------------------------------------------------------

AutoConfig.register("clover", CloverConfig, exist_ok=True)
AutoModel.register(CloverConfig, CloverModel, exist_ok=True)

__all__ = [
    "CloverModel",
    "CloverForVideoQA",
    "CloverForPretraining",
    "CloverPreTrainedModel",
    "VideoFeatures",
    "VideoQAOutput",
    "PretrainingOutput",
]
