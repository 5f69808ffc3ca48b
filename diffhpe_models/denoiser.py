"""The DiffHPE noise predictor: a graph-convolutional network over (joints x frames).

Reference structure (DiffHPE, after CSDI/DePOSit): a 1x1 input projection, `blocks` gated residual
blocks with skip connections, a zero-initialised head. Each block adds a projection of the
timestep embedding, then mixes frames (temporal graph conv, per-joint L x L weights), channels
(feature graph conv, per-joint C x C weights) and body parts (grouped graph non-local block).
Graph convs are "decoupled pre-aggregation": W[0] for the joint itself, W[1] for its neighbours,
aggregated with the row-normalised (A + I) of the kinematic tree.

Layout: internally (J, B, L, C) so that every per-joint weight is one batched matmul with the
joint as the batch dimension, with no transposes in the hot path. Everything is matmul/elementwise
(no Python loops over joints, frames or hypotheses) so it exports to ONNX as a flat graph.

Conditioning. The input projection of [x_t, condition] is split in two: the condition part is
computed once per window (`encode_condition`) and reused by every denoising step and hypothesis;
only the x_t part runs per step.
- DiffHPE-2D: condition = [u_n, v_n, mask] (3 channels; the mask tells the model which zeros are
  missing keypoints).
- DiffHPE-Wrapper: condition = frozen MixSTE features E2D; x_t is embedded by E3D = Linear(3 -> D3)
  first, as in the reference ([E3D, E2D] concatenated, then the 1x1 projection).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import DenoiserConfig
from .skeleton import BODY_PARTS, NUM_JOINTS, adjacency


class AxisBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the channel axis `axis` of a tensor of any rank.

    In eval mode it is the folded per-channel affine (one Mul and one Add in an exported graph,
    no transposes); in training it normalises with batch statistics like nn.BatchNorm1d.
    """

    def __init__(self, num_features: int, axis: int):
        super().__init__(num_features)
        self.axis = axis

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"AxisBatchNorm expects >= 2 dims, got {input.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x.movedim(self.axis, 1)).movedim(1, self.axis)
        shape = [1] * x.dim()
        shape[self.axis] = -1
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.view(shape) + shift.view(shape)


def _graph_weights(num_joints: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-normalised (A + I): its diagonal (J,) weighs the joint, its off-diagonal (J, J) the
    neighbours."""
    a = torch.from_numpy(adjacency(self_loops=True)[:num_joints, :num_joints])
    a = a / a.sum(dim=1, keepdim=True)
    eye = torch.eye(num_joints)
    return torch.diagonal(a).clone(), a * (1 - eye)


def _init_decoupled(weight: nn.Parameter, bias: nn.Parameter, fan_in: int, fan_out: int) -> None:
    bound = 1.414 * math.sqrt(6.0 / (fan_in + fan_out))   # xavier-uniform, gain sqrt(2)
    nn.init.uniform_(weight, -bound, bound)
    nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))


class TemporalGraphConv(nn.Module):
    """Per-joint mixing of the L frames, W[2, J, L, L] (self / neighbours), + BN, ReLU, Dropout.

    Causal: W[:, :, l_in, l_out] is zero for l_in > l_out, so output frame i only reads frames
    <= i.
    """

    def __init__(self, num_joints: int, window: int, causal: bool, dropout: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2, num_joints, window, window))
        self.bias = nn.Parameter(torch.empty(window))
        _init_decoupled(self.weight, self.bias, window, window)
        self_w, neighbour_w = _graph_weights(num_joints)
        self.register_buffer("self_w", self_w.view(-1, 1, 1, 1), persistent=False)
        self.register_buffer("neighbour_w", neighbour_w, persistent=False)
        allowed = torch.triu(torch.ones(window, window)) if causal else torch.ones(window, window)
        self.register_buffer("allowed", allowed, persistent=False)
        self.norm = AxisBatchNorm(window, axis=2)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(J, B, L, C) -> (J, B, L, C)."""
        j, b, l, c = x.shape
        w = self.weight * self.allowed                               # (2, J, L_in, L_out)
        w = torch.cat([w[0], w[1]], dim=2).transpose(1, 2)          # (J, 2 L_out, L_in)
        h = torch.matmul(w.unsqueeze(1), x)                          # (J, B, 2 L, C)
        h_self, h_nb = h[:, :, :l], h[:, :, l:]
        mixed = torch.matmul(self.neighbour_w, h_nb.reshape(j, -1)).reshape(j, b, l, c)
        y = self.self_w * h_self + mixed + self.bias.view(1, 1, -1, 1)
        return self.drop(F.relu(self.norm(y)))


class FeatureGraphConv(nn.Module):
    """Per-joint mixing of the C channels, W[2, J, C, C] (self / neighbours), + BN, ReLU, Dropout."""

    def __init__(self, num_joints: int, channels: int, dropout: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2, num_joints, channels, channels))
        self.bias = nn.Parameter(torch.empty(channels))
        _init_decoupled(self.weight, self.bias, channels, channels)
        self_w, neighbour_w = _graph_weights(num_joints)
        self.register_buffer("self_w", self_w.view(-1, 1, 1), persistent=False)
        self.register_buffer("neighbour_w", neighbour_w, persistent=False)
        self.norm = AxisBatchNorm(channels, axis=3)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(J, B, L, C) -> (J, B, L, C)."""
        j, b, l, c = x.shape
        w = torch.cat([self.weight[0], self.weight[1]], dim=2)      # (J, C_in, 2 C_out)
        h = torch.matmul(x.reshape(j, b * l, c), w)                  # (J, B L, 2 C)
        h_self, h_nb = h[..., :c], h[..., c:]
        mixed = torch.matmul(self.neighbour_w, h_nb.reshape(j, -1)).reshape(j, b * l, c)
        y = (self.self_w * h_self + mixed + self.bias).reshape(j, b, l, c)
        return self.drop(F.relu(self.norm(y)))


def _group_index(num_joints: int) -> torch.Tensor:
    """(G, S) joint indices per body part, shorter parts padded by repeating their first joint
    (max-pooling is unchanged by duplicates), so pooling is one gather and one max."""
    parts = [p for p in BODY_PARTS.values() if all(j < num_joints for j in p)]
    size = max(len(p) for p in parts)
    return torch.tensor([list(p) + [p[0]] * (size - len(p)) for p in parts], dtype=torch.long)


class GroupedNonLocal(nn.Module):
    """Graph non-local block: every joint attends to the body parts (keys and values max-pooled
    per part), concatenation-style pairwise function relu(w_q.theta_i + w_k.phi_g) / G.

    Residual output; the output BatchNorm starts at zero so the block starts as the identity.
    """

    def __init__(self, channels: int, inner: int, num_joints: int):
        super().__init__()
        self.theta = nn.Linear(channels, inner)
        self.phi = nn.Linear(channels, inner)
        self.g = nn.Linear(channels, inner)
        self.score_q = nn.Parameter(torch.randn(inner) * math.sqrt(2.0 / (2 * inner)))
        self.score_k = nn.Parameter(torch.randn(inner) * math.sqrt(2.0 / (2 * inner)))
        self.out = nn.Linear(inner, channels)
        self.out_norm = AxisBatchNorm(channels, axis=3)
        nn.init.zeros_(self.out_norm.weight)
        self.register_buffer("groups", _group_index(num_joints), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(J, B, L, C) -> (J, B, L, C)."""
        num_groups = self.groups.shape[0]
        phi = self.phi(x)[self.groups].amax(dim=1)                  # (G, B, L, I)
        g = self.g(x)[self.groups].amax(dim=1)                      # (G, B, L, I)
        q = torch.matmul(self.theta(x), self.score_q)               # (J, B, L)
        k = torch.matmul(phi, self.score_k)                         # (G, B, L)
        f = F.relu(q.unsqueeze(1) + k.unsqueeze(0)) / num_groups     # (J, G, B, L)
        y = (f.unsqueeze(-1) * g.unsqueeze(0)).sum(dim=1)           # (J, B, L, I)
        return x + self.out_norm(self.out(y))


class TimestepEmbedding(nn.Module):
    """Sinusoid of the step index (frequencies 10^(4k/(n-1)), sines then cosines) + 2 x
    (Linear, SiLU). t: (B,) or (1,) int64 in [0, T) -> (B or 1, dim)."""

    def __init__(self, timesteps: int, dim: int):
        super().__init__()
        half = dim // 2
        freqs = 10.0 ** (torch.arange(half, dtype=torch.float64) / max(half - 1, 1) * 4.0)
        angles = torch.arange(timesteps, dtype=torch.float64).unsqueeze(1) * freqs
        table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()
        self.register_buffer("table", table, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.table[t])


class ResidualBlock(nn.Module):
    def __init__(self, config: DenoiserConfig, window: int, causal: bool, num_joints: int):
        super().__init__()
        c = config.channels
        self.time_proj = nn.Linear(config.time_embedding_dim, c)
        self.temporal = TemporalGraphConv(num_joints, window, causal, config.dropout)
        self.feature = FeatureGraphConv(num_joints, c, config.dropout)
        self.non_local = (GroupedNonLocal(c, config.nonlocal_channels, num_joints)
                          if config.nonlocal_channels > 0 else nn.Identity())
        self.mid = nn.Linear(c, 2 * c)
        self.out = nn.Linear(c, 2 * c)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (J, B, L, C), temb (B or 1, E) -> (residual output, skip), both (J, B, L, C)."""
        y = x + self.time_proj(temb).unsqueeze(1)                   # (B, 1, C) broadcasts
        y = self.non_local(self.feature(self.temporal(y)))
        gate, filt = self.mid(y).chunk(2, dim=-1)
        residual, skip = self.out(torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=-1)
        return (x + residual) * (1.0 / math.sqrt(2.0)), skip


class Denoiser(nn.Module):
    """Predicts the noise eps added to a root-relative 3D pose window.

    condition_channels: channels of the per-(frame, joint) condition (3 for DiffHPE-2D, the
    MixSTE feature width for the Wrapper). embed_pose: apply E3D = Linear(3 -> pose_embedding_dim)
    to x_t before the input projection (Wrapper).
    """

    def __init__(self, config: DenoiserConfig, window: int, causal: bool, timesteps: int,
                 condition_channels: int, embed_pose: bool, num_joints: int = NUM_JOINTS):
        super().__init__()
        c = config.channels
        self.window = window
        self.num_joints = num_joints
        self.pose_embed = nn.Linear(3, config.pose_embedding_dim) if embed_pose else nn.Identity()
        pose_channels = config.pose_embedding_dim if embed_pose else 3
        # The input 1x1 projection of [pose, condition], split: the bias lives on the condition
        # part, which is computed once per window.
        self.pose_proj = nn.Linear(pose_channels, c, bias=False)
        self.cond_proj = nn.Linear(condition_channels, c)
        self.time_embed = TimestepEmbedding(timesteps, config.time_embedding_dim)
        self.blocks = nn.ModuleList(
            ResidualBlock(config, window, causal, num_joints) for _ in range(config.blocks))
        self.head1 = nn.Linear(c, c)
        self.head2 = nn.Linear(c, 3)
        nn.init.zeros_(self.head2.weight)
        nn.init.zeros_(self.head2.bias)

    def encode_condition(self, condition: torch.Tensor) -> torch.Tensor:
        """(B, L, J, Dc) condition -> (J, B, L, C) encoded condition, reused at every step."""
        if condition.dim() != 4 or condition.shape[1:3] != (self.window, self.num_joints):
            raise ValueError(f"Denoiser: condition must be (B, {self.window}, {self.num_joints}, "
                             f"{self.cond_proj.in_features}), got {tuple(condition.shape)}")
        return self.cond_proj(condition).permute(2, 0, 1, 3)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        """x_t (B, L, J, 3) noisy pose; t (B,) or (1,) int64 step index; encoded (J, B, L, C)
        from `encode_condition` -> predicted noise (B, L, J, 3)."""
        h = self.pose_proj(self.pose_embed(x_t)).permute(2, 0, 1, 3)
        h = F.relu(h + encoded)
        temb = self.time_embed(t)
        skips = None
        for block in self.blocks:
            h, skip = block(h, temb)
            skips = skip if skips is None else skips + skip
        y = skips * (1.0 / math.sqrt(len(self.blocks)))
        y = self.head2(F.relu(self.head1(y)))                       # (J, B, L, 3)
        return y.permute(1, 2, 0, 3)
