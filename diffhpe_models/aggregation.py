"""Aggregating H pose hypotheses into one pose, and their spread.

All functions take hypotheses (P, H, L, J, 3) root-relative camera-frame metres and are written
with batched tensor ops only (sort, argmin, gather), so they trace into an ONNX graph.

`reproj` (per-joint reprojection selection, like D3DP's J-Agg) needs no ground truth: each
hypothesis is fitted per frame to the visible 2D with a weak-perspective camera
(camera.weak_perspective_fit: scale and 2D offset, so no root position is needed), and for every
visible joint the hypothesis whose projection lands closest to the observed keypoint is kept.
A missing joint has nothing to compare with, so it takes the mean of the hypotheses.
"""
from __future__ import annotations

import torch

from .camera import weak_perspective_fit
from .config import AGGREGATIONS


def aggregate_mean(hypotheses: torch.Tensor) -> torch.Tensor:
    """(P, H, L, J, 3) -> (P, L, J, 3) average over hypotheses (the reference's "average")."""
    return hypotheses.mean(dim=1)


def aggregate_median(hypotheses: torch.Tensor) -> torch.Tensor:
    """(P, H, L, J, 3) -> (P, L, J, 3) coordinate-wise median (mean of the 2 middle values for
    even H).

    Computed from ranks (pairwise comparisons, ties broken by hypothesis index) instead of a
    sort: H is small, and the graph keeps static shapes (an exported sort becomes a TopK whose
    output shape ONNX shape inference cannot resolve).
    """
    h = hypotheses.shape[1]
    x_i, x_j = hypotheses.unsqueeze(2), hypotheses.unsqueeze(1)       # (P, H, 1, ...), (P, 1, H, ...)
    earlier = torch.tril(torch.ones(h, h, dtype=torch.bool, device=hypotheses.device), diagonal=-1)
    earlier = earlier.view(1, h, h, *([1] * (hypotheses.dim() - 2)))
    below = (x_j < x_i) | ((x_j == x_i) & earlier)                      # [i, j]: j ranks below i
    rank = below.to(hypotheses.dtype).sum(dim=2)                        # (P, H, ...) in 0..H-1
    middle = [(h - 1) // 2, h // 2]                                      # equal for odd H
    picked = sum(((rank == k).to(hypotheses.dtype) * hypotheses).sum(dim=1) for k in middle)
    return 0.5 * picked


def reprojection_errors(hypotheses: torch.Tensor, uv_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(P, H, L, J) squared distance, in normalised screen units, between each hypothesis' joint
    under its own per-frame weak-perspective fit and the observed 2D.

    uv_n: (P, L, J, 2) normalised 2D (camera.normalize_screen); mask: (P, L, J), 1 = observed.
    """
    uv = uv_n.unsqueeze(1)
    m = mask.unsqueeze(1).to(hypotheses.dtype).expand(hypotheses.shape[:-1])
    scale, offset = weak_perspective_fit(hypotheses, uv, m)     # (P, H, L), (P, H, L, 2)
    projected = scale[..., None, None] * hypotheses[..., :2] + offset.unsqueeze(-2)
    return ((projected - uv) ** 2).sum(-1)


def aggregate_reproj(hypotheses: torch.Tensor, uv_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(P, H, L, J, 3) -> (P, L, J, 3): per visible (frame, joint), the hypothesis that reprojects
    closest to the input 2D; per missing joint, the mean of the hypotheses."""
    errors = reprojection_errors(hypotheses, uv_n, mask)        # (P, H, L, J)
    best = errors.argmin(dim=1, keepdim=True)                    # (P, 1, L, J)
    index = best.unsqueeze(-1).expand(-1, -1, -1, -1, 3)
    chosen = torch.gather(hypotheses, 1, index).squeeze(1)       # (P, L, J, 3)
    visible = mask.to(hypotheses.dtype).unsqueeze(-1)
    return visible * chosen + (1 - visible) * hypotheses.mean(dim=1)


def spread(hypotheses: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """(P, H, L, J, 3), (P, L, J, 3) -> (P, L, J) metres: root-mean-square distance of the
    hypotheses from the aggregated pose (0 for H = 1 with any aggregation here)."""
    return ((hypotheses - pose.unsqueeze(1)) ** 2).sum(-1).mean(dim=1).sqrt()


def aggregate(hypotheses: torch.Tensor, uv_n: torch.Tensor, mask: torch.Tensor,
              method: str, anchor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, H, L, J, 3) hypotheses -> (pose (P, L, J, 3), spread_m (P, L, J)) by `method`.

    "conditioner": the pose is `anchor` (P, L, J, 3), the residual Wrapper's MixSTE pose, and
    the spread is the hypotheses' RMS distance from it: for posterior samples its expected square
    equals the expected squared error of the anchor (bias and variance both count)."""
    if method == "conditioner":
        if anchor is None:
            raise ValueError("aggregation 'conditioner' needs the conditioner's pose (a residual "
                             "Wrapper)")
        pose = anchor
    elif method == "mean":
        pose = aggregate_mean(hypotheses)
    elif method == "median":
        pose = aggregate_median(hypotheses)
    elif method == "reproj":
        pose = aggregate_reproj(hypotheses, uv_n, mask)
    else:
        raise ValueError(f"unknown aggregation {method!r}; expected one of {AGGREGATIONS}")
    return pose, spread(hypotheses, pose)
