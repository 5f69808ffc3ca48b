"""The DiffHPE noise predictor: a graph-convolutional network over (joints x frames).

Reference structure (DiffHPE, after CSDI/DePOSit): a 1x1 input projection, `blocks` gated residual
blocks with skip connections, a zero-initialised head. Each block adds a projection of the
timestep embedding, then mixes frames (temporal graph conv, per-joint L x L weights), channels
(feature graph conv, per-joint C x C weights) and body parts (grouped graph non-local block).
Graph convs have separate weights for the joint itself (W[0]) and its neighbours (W[1]), with the
row-normalised (A + I) of the kinematic tree as aggregation weights. We aggregate the neighbours
first and then apply the receiving joint's W[1] (the reference applies the sending joint's
weights, then aggregates): the same parameter count, but one matmul per weight instead of a
matmul, a split and three element-wise passes, which dominated the CPU run time.

Layout: internally (J, L, B, C), so that every per-joint weight is one batched matmul with the
joint as the batch dimension and (B, C) or (L, B) contiguous behind it, with no transposes in
the hot path. In eval mode every BatchNorm is folded into the weights of the conv before it.
Everything is matmul/elementwise (no Python loops over joints, frames or hypotheses) so it
exports to ONNX as a flat graph.

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


def linear_rows(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` computed on x flattened to rows, so that it exports as one Gemm (bias fused)
    rather than MatMul + a broadcast Add."""
    return F.linear(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias).reshape(
        *x.shape[:-1], layer.out_features)


class AxisBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the channel axis `axis` of a tensor of any rank (training statistics like
    nn.BatchNorm1d). In eval mode the convs fold it into their weights (`folded()`)."""

    def __init__(self, num_features: int, axis: int):
        super().__init__(num_features)
        self.axis = axis

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"AxisBatchNorm expects >= 2 dims, got {input.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            scale, shift = self.folded()
            shape = [1] * x.dim()
            shape[self.axis] = -1
            return x * scale.view(shape) + shift.view(shape)
        return super().forward(x.movedim(self.axis, 1)).movedim(1, self.axis)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode BN as y = x * scale + shift per channel."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale


def _graph_weights(num_joints: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-normalised (A + I): its diagonal (J,) weighs the joint, its off-diagonal (J, J) the
    neighbours."""
    a = torch.from_numpy(adjacency(self_loops=True)[:num_joints, :num_joints])
    a = a / a.sum(dim=1, keepdim=True)
    eye = torch.eye(num_joints)
    return torch.diagonal(a).clone(), a * (1 - eye)


class _GraphConv(nn.Module):
    """Shared parts of the two graph convs: W[2, J, n_in, n_out], bias, BN, ReLU, Dropout.

    y[j] = a_jj W[0, j]^T x[j] + W[1, j]^T sum_k a_jk x[k] (+ bias), then BN over the output
    axis; `weights()` returns the two per-joint matrices with a_jj and, in eval, BN folded in.
    """

    def __init__(self, num_joints: int, size: int, bn_axis: int, dropout: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2, num_joints, size, size))
        self.bias = nn.Parameter(torch.empty(size))
        bound = 1.414 * math.sqrt(6.0 / (2 * size))        # xavier-uniform, gain sqrt(2)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -1 / math.sqrt(size), 1 / math.sqrt(size))
        self_w, neighbour_w = _graph_weights(num_joints)
        self.register_buffer("self_w", self_w.view(-1, 1, 1), persistent=False)
        self.register_buffer("neighbour_w", neighbour_w, persistent=False)
        self.norm = AxisBatchNorm(size, axis=bn_axis)
        self.drop = nn.Dropout(dropout)

    def weights(self, allowed: torch.Tensor | None = None):
        """-> (W_self (J, in, out), W_neighbour (J, in, out), bias (out,), needs_norm): in eval
        the BN is already folded in (needs_norm False); in training it runs after the conv."""
        w_self, w_nb = self.weight[0] * self.self_w, self.weight[1]
        if allowed is not None:
            w_self, w_nb = w_self * allowed, w_nb * allowed
        if self.training:
            return w_self, w_nb, self.bias, True
        scale, shift = self.norm.folded()
        return w_self * scale, w_nb * scale, self.bias * scale + shift, False

    def neighbours(self, x: torch.Tensor) -> torch.Tensor:
        """sum_k a_jk x[k] for every joint j: (J, ...) -> (J, ...)."""
        return torch.matmul(self.neighbour_w, x.reshape(x.shape[0], -1)).reshape(x.shape)

    def finish(self, y: torch.Tensor, needs_norm: bool) -> torch.Tensor:
        if needs_norm:
            y = self.norm(y)
        return self.drop(F.relu(y))


class TemporalGraphConv(_GraphConv):
    """Per-joint mixing of the L frames, W[2, J, L, L] (self / neighbours), + BN, ReLU, Dropout.

    Causal: W[:, :, l_in, l_out] is zero for l_in > l_out, so output frame i only reads frames
    <= i.
    """

    def __init__(self, num_joints: int, window: int, causal: bool, dropout: float):
        super().__init__(num_joints, window, bn_axis=1, dropout=dropout)
        allowed = torch.triu(torch.ones(window, window)) if causal else torch.ones(window, window)
        self.register_buffer("allowed", allowed, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(J, L, B, C) -> (J, L, B, C)."""
        j, l, b, c = x.shape
        w_self, w_nb, bias, needs_norm = self.weights(self.allowed)   # (J, L_in, L_out)
        flat = x.reshape(j, l, b * c)
        y = (torch.matmul(w_self.transpose(1, 2), flat)
             + torch.matmul(w_nb.transpose(1, 2), self.neighbours(flat)) + bias.view(1, -1, 1))
        return self.finish(y.reshape(j, l, b, c), needs_norm)


class FeatureGraphConv(_GraphConv):
    """Per-joint mixing of the C channels, W[2, J, C, C] (self / neighbours), + BN, ReLU, Dropout."""

    def __init__(self, num_joints: int, channels: int, dropout: float):
        super().__init__(num_joints, channels, bn_axis=3, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(J, L, B, C) -> (J, L, B, C)."""
        j, l, b, c = x.shape
        w_self, w_nb, bias, needs_norm = self.weights()                # (J, C_in, C_out)
        flat = x.reshape(j, l * b, c)
        y = torch.matmul(flat, w_self) + torch.matmul(self.neighbours(flat), w_nb) + bias
        return self.finish(y.reshape(j, l, b, c), needs_norm)


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
        """(J, L, B, C) -> (J, L, B, C)."""
        num_groups = self.groups.shape[0]
        phi = linear_rows(self.phi, x)[self.groups].amax(dim=1)      # (G, L, B, I)
        g = linear_rows(self.g, x)[self.groups].amax(dim=1)          # (G, L, B, I)
        # theta is only ever dotted with score_q: one C -> 1 projection (a Gemm, not a mat-vec).
        q_weight = (self.score_q @ self.theta.weight).unsqueeze(0)   # (1, C)
        q_bias = (self.score_q @ self.theta.bias).unsqueeze(0)
        q = F.linear(x.reshape(-1, x.shape[-1]), q_weight, q_bias).reshape(x.shape[:-1])   # (J, L, B)
        k = F.linear(phi.reshape(-1, phi.shape[-1]), self.score_k.unsqueeze(0)).reshape(phi.shape[:-1])
        f = F.relu(q.unsqueeze(1) + k.unsqueeze(0)) / num_groups      # (J, G, L, B)
        y = (f.unsqueeze(-1) * g.unsqueeze(0)).sum(dim=1)            # (J, L, B, I)
        if self.training:
            return x + self.out_norm(linear_rows(self.out, y))
        scale, shift = self.out_norm.folded()                        # fold BN into `out`
        return x + F.linear(y, self.out.weight * scale[:, None], self.out.bias * scale + shift)


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
    """One gated residual block. The last block has no residual output (only its skip is used),
    so it holds no parameters that would never receive a gradient."""

    def __init__(self, config: DenoiserConfig, window: int, causal: bool, num_joints: int,
                 last: bool = False):
        super().__init__()
        c = config.channels
        self.time_proj = nn.Linear(config.time_embedding_dim, c)
        self.temporal = TemporalGraphConv(num_joints, window, causal, config.dropout)
        self.feature = FeatureGraphConv(num_joints, c, config.dropout)
        self.non_local = (GroupedNonLocal(c, config.nonlocal_channels, num_joints)
                          if config.nonlocal_channels > 0 else nn.Identity())
        # The reference's Conv C->2C then split, as two C->C layers (no split copy at run time).
        self.gate = nn.Linear(c, c)
        self.filter = nn.Linear(c, c)
        self.residual = None if last else nn.Linear(c, c)
        self.skip = nn.Linear(c, c)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """x (J, L, B, C), temb (B or 1, E) -> (residual output or None for the last block,
        skip), both (J, L, B, C)."""
        y = x + self.time_proj(temb)                                 # (B, C) broadcasts
        y = self.non_local(self.feature(self.temporal(y)))
        y = torch.sigmoid(linear_rows(self.gate, y)) * torch.tanh(linear_rows(self.filter, y))
        skip = linear_rows(self.skip, y)
        if self.residual is None:
            return None, skip
        return (x + linear_rows(self.residual, y)) * (1.0 / math.sqrt(2.0)), skip


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
            ResidualBlock(config, window, causal, num_joints, last=i == config.blocks - 1)
            for i in range(config.blocks))
        self.head1 = nn.Linear(c, c)
        self.head2 = nn.Linear(c, 3)
        nn.init.zeros_(self.head2.weight)
        nn.init.zeros_(self.head2.bias)

    def encode_condition(self, condition: torch.Tensor) -> torch.Tensor:
        """(B, L, J, Dc) condition -> (J, L, B, C) encoded condition, reused at every step."""
        if condition.dim() != 4 or condition.shape[1:3] != (self.window, self.num_joints):
            raise ValueError(f"Denoiser: condition must be (B, {self.window}, {self.num_joints}, "
                             f"{self.cond_proj.in_features}), got {tuple(condition.shape)}")
        return linear_rows(self.cond_proj, condition).permute(2, 1, 0, 3)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        """x_t (B, L, J, 3) noisy pose; t (B,) or (1,) int64 step index; encoded (J, L, B, C)
        from `encode_condition` -> the network output (B, L, J, 3) (eps or x0)."""
        h = self.pose_proj(self.pose_embed(x_t.permute(2, 1, 0, 3)))
        h = F.relu(h + encoded)
        temb = self.time_embed(t)
        skips = None
        for block in self.blocks:
            h, skip = block(h, temb)
            skips = skip if skips is None else skips + skip
        y = skips * (1.0 / math.sqrt(len(self.blocks)))
        y = linear_rows(self.head2, F.relu(linear_rows(self.head1, y)))   # (J, L, B, 3)
        return y.permute(2, 1, 0, 3)
