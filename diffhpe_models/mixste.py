"""MixSTE: a seq2seq 2D->3D lifter alternating spatial and temporal transformer blocks.

Used two ways: as the deterministic baseline lifter, and (frozen, head dropped) as the feature
extractor E2D that conditions DiffHPE-Wrapper. Structure after Zhang et al. 2022 (MixSTE): a
spatial block attends over the J joints of one frame, a temporal block over the L frames of one
joint; one LayerNorm shared by all spatial blocks and one by all temporal blocks.

Input per (frame, joint): the normalised (u, v) zeroed where the keypoint is missing, plus the
mask as a third channel, so "missing" is never confused with "at the image centre".
Causal mode masks temporal attention so that frame i only attends to frames <= i: the last frame
of a window never depends on anything later (the live node lifts causal windows).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import MixSTEConfig
from .skeleton import NUM_JOINTS

# Added to masked attention scores: exp() underflows to 0, and it stays finite in fp16.
_MASKED_SCORE = -1.0e4


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample during training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention with an optional additive score mask (N, N)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, score_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                      # (B, heads, N, c/heads)
        scores = (q @ k.transpose(-2, -1)) * self.scale
        if score_mask is not None:
            scores = scores + score_mask
        attn = self.drop(scores.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm transformer block: attention and MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, drop_path: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, score_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), score_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def causal_score_mask(length: int) -> torch.Tensor:
    """(L, L) additive mask: 0 where key frame <= query frame, a large negative value after."""
    later = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
    return torch.zeros(length, length).masked_fill(later, _MASKED_SCORE)


class MixSTE(nn.Module):
    """MixSTE lifter for windows of `window` frames.

    forward(x2d_n (B, L, J, 2), mask (B, L, J)) -> pose3d_m (B, L, J, 3), root-relative metres.
    features(x2d_n, mask) -> (B, L, J, embed_dim): the backbone and the head's LayerNorm, i.e.
    everything but the final Linear (the Wrapper's E2D).
    """

    def __init__(self, config: MixSTEConfig, window: int, causal: bool,
                 num_joints: int = NUM_JOINTS):
        super().__init__()
        dim = config.embed_dim
        self.window = window
        self.num_joints = num_joints
        self.causal = causal
        self.embed = nn.Linear(3, dim)                       # (u, v, mask)
        self.spatial_pos = nn.Parameter(torch.zeros(num_joints, dim))
        self.temporal_pos = nn.Parameter(torch.zeros(window, dim))
        nn.init.trunc_normal_(self.spatial_pos, std=0.02)
        nn.init.trunc_normal_(self.temporal_pos, std=0.02)
        self.pos_drop = nn.Dropout(config.dropout)
        rates = torch.linspace(0, config.drop_path, config.depth).tolist()
        self.spatial_blocks = nn.ModuleList(
            Block(dim, config.heads, config.mlp_ratio, config.dropout, r) for r in rates)
        self.temporal_blocks = nn.ModuleList(
            Block(dim, config.heads, config.mlp_ratio, config.dropout, r) for r in rates)
        self.spatial_norm = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)
        self.register_buffer("temporal_score_mask",
                             causal_score_mask(window) if causal else torch.zeros(window, window),
                             persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def _check(self, x2d_n: torch.Tensor, mask: torch.Tensor) -> None:
        if x2d_n.dim() != 4 or x2d_n.shape[1:] != (self.window, self.num_joints, 2):
            raise ValueError(f"MixSTE: x2d_n must be (B, {self.window}, {self.num_joints}, 2), "
                             f"got {tuple(x2d_n.shape)}")
        if mask.shape != x2d_n.shape[:3]:
            raise ValueError(f"MixSTE: mask must be {tuple(x2d_n.shape[:3])}, got {tuple(mask.shape)}")

    def features(self, x2d_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, J, 2) normalised 2D and (B, L, J) mask -> (B, L, J, embed_dim) features."""
        self._check(x2d_n, mask)
        b, l, j, _ = x2d_n.shape
        mask = mask.to(x2d_n.dtype)
        x = torch.cat([x2d_n * mask.unsqueeze(-1), mask.unsqueeze(-1)], dim=-1)
        x = self.pos_drop(self.embed(x) + self.spatial_pos)              # (B, L, J, C)
        c = x.shape[-1]
        score_mask = self.temporal_score_mask if self.causal else None
        for i, (sblock, tblock) in enumerate(zip(self.spatial_blocks, self.temporal_blocks)):
            x = self.spatial_norm(sblock(x.reshape(b * l, j, c)))       # joints of one frame
            x = x.reshape(b, l, j, c).transpose(1, 2)                     # (B, J, L, C)
            if i == 0:
                x = self.pos_drop(x + self.temporal_pos)
            x = self.temporal_norm(tblock(x.reshape(b * j, l, c), score_mask))
            x = x.reshape(b, j, l, c).transpose(1, 2)                     # (B, L, J, C)
        return self.head_norm(x)

    def forward(self, x2d_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, J, 2), (B, L, J) -> (B, L, J, 3) root-relative camera-frame metres."""
        return self.head(self.features(x2d_n, mask))
