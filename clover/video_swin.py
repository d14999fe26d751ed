"""Video Swin Transformer (Liu et al., CVPR 2022), the video encoder of Clover.

A 3D patch embedding, stages of shifted 3D-window attention with a relative position bias, and patch
merging between stages. Parameter names follow the original release (`patch_embed.proj`,
`layers.{i}.blocks.{j}.attn.relative_position_bias_table`, `layers.{i}.downsample.reduction`, `norm`),
so an official checkpoint loads through `load_video_swin_checkpoint`, which reports missing and
unexpected keys and refuses a tensor whose shape does not fit.

Clover adds one thing: a learned `mask_token` that replaces masked cells of the token grid right after
the patch embedding (pre-training masks about 10 of the 49 cells of the output grid, in every frame).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial

import torch
import torch.nn.functional as F
from torch import nn


def _window_and_shift(grid: tuple[int, int, int], window: tuple[int, ...], shift: tuple[int, ...]):
    """A window never exceeds the grid; where the grid fits in one window there is nothing to shift."""
    window_used = tuple(min(w, g) for w, g in zip(window, grid))
    shift_used = tuple(0 if g <= w else s for w, g, s in zip(window, grid, shift))
    return window_used, shift_used


def _partition_windows(x: torch.Tensor, window: tuple[int, int, int]) -> torch.Tensor:
    """(B, D, H, W, C) -> (B * num_windows, wd * wh * ww, C); D, H, W divisible by the window."""
    batch, depth, height, width, channels = x.shape
    wd, wh, ww = window
    x = x.view(batch, depth // wd, wd, height // wh, wh, width // ww, ww, channels)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)  # (B, D/wd, H/wh, W/ww, wd, wh, ww, C)
    return x.reshape(-1, wd * wh * ww, channels)


def _merge_windows(windows: torch.Tensor, window: tuple[int, int, int], shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Inverse of `_partition_windows`: (B * num_windows, wd * wh * ww, C) -> (B, D, H, W, C)."""
    batch, depth, height, width = shape
    wd, wh, ww = window
    x = windows.view(batch, depth // wd, height // wh, width // ww, wd, wh, ww, -1)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)  # (B, D/wd, wd, H/wh, wh, W/ww, ww, C)
    return x.reshape(batch, depth, height, width, -1)


@lru_cache(maxsize=32)
def _relative_position_index(window: tuple[int, int, int]) -> torch.Tensor:
    """(N, N) index into the bias table for every pair of positions of a window, N = wd * wh * ww."""
    wd, wh, ww = window
    coords = torch.stack(torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij"))
    coords = coords.flatten(1)  # (3, N)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 3)
    relative += torch.tensor([wd - 1, wh - 1, ww - 1])
    return relative[..., 0] * (2 * wh - 1) * (2 * ww - 1) + relative[..., 1] * (2 * ww - 1) + relative[..., 2]


@lru_cache(maxsize=32)
def _shift_attention_mask(padded: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int]):
    """Additive mask (num_windows, N, N) that stops attention across the seams of a cyclic shift."""
    region = torch.zeros(1, *padded, 1)
    label = 0
    slices = [(slice(0, -w), slice(-w, -s), slice(-s, None)) if s else (slice(None),) for w, s in zip(window, shift)]
    for d in slices[0]:
        for h in slices[1]:
            for w in slices[2]:
                region[:, d, h, w, :] = label
                label += 1
    windows = _partition_windows(region, window).squeeze(-1)  # (num_windows, N)
    different = windows[:, None, :] != windows[:, :, None]  # (num_windows, N, N)
    return torch.zeros(different.shape).masked_fill(different, float("-inf"))


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample while training."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.rate)
        return x * keep / (1 - self.rate)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside a 3D window, with a learned relative position bias."""

    def __init__(self, dim: int, window: tuple[int, int, int], num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        table_size = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_size, num_heads))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, window: tuple[int, int, int]) -> torch.Tensor:
        """(heads, N, N) bias for a window no larger than the configured one (smaller at small grids)."""
        index = _relative_position_index(self.window)
        if window != self.window:  # keep the sub-window of positions the smaller window covers
            keep = torch.zeros(self.window, dtype=torch.bool)
            keep[: window[0], : window[1], : window[2]] = True
            keep = keep.flatten()
            index = index[keep][:, keep]
        bias = self.relative_position_bias_table[index.to(self.relative_position_bias_table.device)]  # (N, N, heads)
        return bias.permute(2, 0, 1)

    def forward(self, x: torch.Tensor, window: tuple[int, int, int], mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B * num_windows, N, C); mask: (num_windows, N, N) additive, or None."""
        windows_batch, tokens, channels = x.shape
        qkv = self.qkv(x).view(windows_batch, tokens, 3, self.num_heads, channels // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (B * nW, heads, N, head_dim)
        bias = self.position_bias(window).to(x.dtype)[None]  # (1, heads, N, N)
        if mask is not None:
            num_windows = mask.shape[0]
            bias = bias + mask.to(x.dtype)[:, None]  # (nW, heads, N, N)
            bias = bias.repeat(windows_batch // num_windows, 1, 1, 1)  # (B * nW, heads, N, N)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)  # (B * nW, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(windows_batch, tokens, channels))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock3D(nn.Module):
    """Pre-norm block: (shifted) window attention, then an MLP, each with a residual connection."""

    def __init__(self, dim, num_heads, window, shift, mlp_ratio, drop_path) -> None:
        super().__init__()
        self.window, self.shift = tuple(window), tuple(shift)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, self.window, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, D, H, W, C) -> same shape."""
        x = x + self.drop_path(self._attend(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        batch, depth, height, width, _ = x.shape
        window, shift = _window_and_shift((depth, height, width), self.window, self.shift)
        pad = [(-size) % w for size, w in zip((depth, height, width), window)]
        x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))  # (B, Dp, Hp, Wp, C)
        padded = tuple(x.shape[1:4])
        mask = None
        if any(shift):
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
            mask = _shift_attention_mask(padded, window, shift).to(x.device)
        windows = _partition_windows(x, window)  # (B * nW, N, C)
        windows = self.attn(windows, window, mask)
        x = _merge_windows(windows, window, (batch, *padded))  # (B, Dp, Hp, Wp, C)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2, 3))
        return x[:, :depth, :height, :width].contiguous()


class PatchMerging(nn.Module):
    """Halves height and width, doubles channels: concatenate 2x2 neighbours, norm, project 4C -> 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> (B, D, ceil(H/2), ceil(W/2), 2C)."""
        height, width = x.shape[2:4]
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        parts = [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))  # (B, D, H/2, W/2, 2C)


class BasicLayer(nn.Module):
    """One stage: `depth` blocks alternating plain and shifted windows, then an optional patch merging."""

    def __init__(self, dim, depth, num_heads, window, mlp_ratio, drop_paths, downsample: bool) -> None:
        super().__init__()
        shift = tuple(w // 2 for w in window)
        self.blocks = nn.ModuleList(
            SwinTransformerBlock3D(dim, num_heads, window, (0, 0, 0) if i % 2 == 0 else shift, mlp_ratio, drop_paths[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed3D(nn.Module):
    """Non-overlapping 3D patches (2x4x4) projected to `dim` channels by a strided Conv3d, then LayerNorm."""

    def __init__(self, patch_size: tuple[int, int, int], dim: int) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(3, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, T/2, H/4, W/4, C), padding T, H, W up to multiples of the patch."""
        pad = [(-size) % p for size, p in zip(x.shape[2:], self.patch_size)]
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        x = self.proj(x).permute(0, 2, 3, 4, 1)  # (B, T', H', W', C)
        return self.norm(x)


class ConvPatchEmbed3D(nn.Module):
    """Early convolutions in place of the patchify layer (Xiao et al., "Early Convolutions Help
    Transformers See Better", 2021): on each frame, one 3x3 convolution of stride 2 (BatchNorm, ReLU)
    per halving of the patch's side, the channels doubling up to `dim` (16, 32, 64 for an 8-pixel
    patch and `dim` 64; at least 8); then the `patch_size[0]` frames of a patch concatenated and mapped to `dim`
    channels by a linear layer, then LayerNorm. The output grid is the patchify layer's.

    `extra_convs` more 3x3 convolutions of stride 1 (BatchNorm, ReLU) at the token resolution widen what
    one token sees: 15 pixels after the stride-2 layers of an 8-pixel patch, 31 after one more, so that
    a token covers a whole object of the synthetic benchmark (18 to 26 pixels across) and its shape.

    Why: trained from nothing, clover-tiny's Swin with the patchify layer tells the benchmark's six
    shapes apart slowly (62 % balanced accuracy after 3,000 probe steps); with this stem, at a quarter
    more step time, 77 % (docs/results.md), and with one stride-1 layer more, 83 % after 1,500 steps
    where the stem without it had 73. Official Video Swin checkpoints have no weights for it.

    `frame_difference` gives the first convolution each frame's change since the frame before as three
    more channels (zero for the first frame), as TSN's RGB-difference stream does (Wang et al., 2016):
    a motion that moves few pixels (a small object shrinking, the marker of a turning symmetric shape)
    is a bright, signed edge in the difference at full resolution, where the stride-2 layers blur it
    within one frame. The change is computed before the clip is padded to the temporal patch.
    """

    def __init__(self, patch_size: tuple[int, int, int], dim: int, extra_convs: int = 0, frame_difference: bool = False) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.frame_difference = frame_difference
        halvings = self.patch_size[1].bit_length() - 1  # log2 of the patch side
        widths = [max(dim // 2 ** (halvings - 1 - index), 8) for index in range(halvings)]
        layers, channels = [], 6 if frame_difference else 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        for _ in range(extra_convs):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.merge = nn.Linear(self.patch_size[0] * channels, dim)
        self.norm = nn.LayerNorm(dim)
        for layer in (*self.convs, self.merge):  # measured with PyTorch's init, not transformers' N(0, 0.02)
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.keeps_torch_init = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, T/pt, H/p, W/p, C), padding T, H, W up to multiples of the patch."""
        if self.frame_difference:
            x = torch.cat([x, frame_changes(x)], dim=1)  # (B, 6, T, H, W)
        pad = [(-size) % p for size, p in zip(x.shape[2:], self.patch_size)]
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        batch, _, frames = x.shape[:3]
        maps = self.convs(x.transpose(1, 2).flatten(0, 1))  # (B*T, C', H/p, W/p)
        maps = maps.unflatten(0, (batch, frames // self.patch_size[0], self.patch_size[0]))  # (B, T/pt, pt, C', h, w)
        maps = maps.permute(0, 1, 4, 5, 2, 3).flatten(4)  # (B, T/pt, h, w, pt*C')
        return self.norm(self.merge(maps))  # (B, T/pt, h, w, C)


def frame_changes(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, T, H, W): each frame less the frame before it, zeros for the first."""
    return torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:] - x[:, :, :-1]], dim=2)


# How frames become patch tokens, by `CloverConfig.video_stem` (the paper's patchify layer first): each
# builds the stem from (patch_size, embed_dim).
STEMS: dict[str, Callable[[tuple[int, int, int], int], nn.Module]] = {
    "patchify": PatchEmbed3D,
    "conv": ConvPatchEmbed3D,
    "deep_conv": partial(ConvPatchEmbed3D, extra_convs=1),
    "deep_conv_diff": partial(ConvPatchEmbed3D, extra_convs=1, frame_difference=True),
}


class SwinTransformer3D(nn.Module):
    """The Video Swin backbone. Input frames (B, T, 3, H, W); output tokens (B, T/2, H/32, W/32, C_out)."""

    def __init__(
        self,
        patch_size=(2, 4, 4),
        embed_dim: int = 128,
        depths=(2, 2, 18, 2),
        num_heads=(4, 8, 16, 32),
        window_size=(8, 7, 7),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        stem: str = "patchify",
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(map(repr, STEMS))}, got {stem!r}")
        self.patch_embed = STEMS[stem](tuple(patch_size), embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:stage])
            self.layers.append(
                BasicLayer(
                    dim=embed_dim * 2**stage,
                    depth=depth,
                    num_heads=heads,
                    window=tuple(window_size),
                    mlp_ratio=mlp_ratio,
                    drop_paths=rates[start : start + depth],
                    downsample=stage < len(depths) - 1,
                )
            )
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)

    def forward(self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values (B, T, 3, H, W); video_mask bool (B, h * w) over the *output* grid's spatial cells.

        A masked output cell covers a block of patches (2^(stages-1) on a side) in every frame; those
        patches are replaced by the mask token before the first stage.
        """
        x = self.patch_embed(pixel_values.transpose(1, 2))  # (B, T', H', W', C)
        if video_mask is not None:
            x = self._apply_mask(x, video_mask)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)  # (B, T', H'/2^(s-1), W'/2^(s-1), C_out)

    def _apply_mask(self, x: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        batch, _, height, width, _ = x.shape
        scale = 2 ** (len(self.layers) - 1)
        grid_h, grid_w = -(-height // scale), -(-width // scale)
        if video_mask.shape != (batch, grid_h * grid_w):
            raise ValueError(f"video_mask must have shape ({batch}, {grid_h * grid_w}), got {tuple(video_mask.shape)}")
        cells = video_mask.view(batch, grid_h, grid_w).to(x.dtype)
        patches = cells.repeat_interleave(scale, 1).repeat_interleave(scale, 2)[:, :height, :width]  # (B, H', W')
        patches = patches[:, None, :, :, None]  # (B, 1, H', W', 1): the same cells in every frame
        return x * (1 - patches) + self.mask_token.to(x.dtype) * patches


@dataclass
class CheckpointReport:
    """What `load_video_swin_checkpoint` did: keys loaded, keys the model has but the checkpoint lacks
    (kept at their initial values), and checkpoint keys the model does not use (ignored)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}: {self.missing[:10]}; "
            f"unexpected {len(self.unexpected)}: {self.unexpected[:10]}"
        )


# Checkpoint keys that are derived buffers or belong to a classification head, never to the backbone.
_IGNORED_SUFFIXES = ("relative_position_index",)
_IGNORED_PREFIXES = ("cls_head.",)


def load_video_swin_checkpoint(
    encoder: SwinTransformer3D, checkpoint: str | os.PathLike | dict[str, torch.Tensor]
) -> CheckpointReport:
    """Load an official Video Swin checkpoint (a `.pth` file of the original release, or a state dict).

    Accepts the release's layouts: a bare state dict, `{"state_dict": ...}` or `{"model": ...}`, with or
    without the `backbone.` prefix of mmaction. The classification head and derived buffers are
    skipped. A tensor whose shape differs from the model's raises `ValueError` naming the tensor and
    both shapes; missing and unexpected keys are reported, not fatal (Clover's `mask_token` is never in
    an official checkpoint).
    """
    state = _read_state_dict(checkpoint)
    own = encoder.state_dict()
    report = CheckpointReport()
    to_load = {}
    for key, tensor in state.items():
        name = key.removeprefix("backbone.")
        if name.endswith(_IGNORED_SUFFIXES) or name.startswith(_IGNORED_PREFIXES):
            continue
        if name not in own:
            report.unexpected.append(key)
            continue
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise ValueError(
                f"shape mismatch for {name}: checkpoint has {tuple(tensor.shape)}, model expects {tuple(own[name].shape)}. "
                "Check that the checkpoint's size (embed dim, depths, heads, window) matches the config."
            )
        to_load[name] = tensor
    report.missing = sorted(set(own) - set(to_load))
    report.loaded = sorted(to_load)
    encoder.load_state_dict(to_load, strict=False)
    return report


def _read_state_dict(checkpoint: str | os.PathLike | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict):
        state = checkpoint
    elif str(checkpoint).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(checkpoint))
    else:
        # The official release is pickled; weights_only=True refuses arbitrary code in the pickle.
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    return state
