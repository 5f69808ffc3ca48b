"""Scoring rules for training a sampler whose hypotheses are samples, not copies of the mean.

The denoising loss (mean squared error of x0 at a random step) makes an x0-predicting network
output E[x0 | x_t, 2D]; run with 2 deterministic DDIM steps, every hypothesis then lands near the
posterior mean and the spread says nothing about the error (DiffHPE's x0 variant collapsed to a
regressor here: spread ~4 mm, rank correlation with the error ~0). The energy score
(Gneiting & Raftery 2007) is strictly proper: its expectation is minimised only by the true
distribution, so a sampler trained on it through its own steps (as in "Distributional Diffusion
Models with Scoring Rules", De Bortoli et al. 2025) spreads where the pose is ambiguous.
"""
from __future__ import annotations

import torch


def energy_score(samples: torch.Tensor, target: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Per-joint energy score, averaged over everything but the samples.

    samples (B, m, ..., D) m >= 2 draws per target; target (B, ..., D) -> scalar
        mean_i |x_i - y| - 1/2 mean_{i != k} |x_i - x_k|
    with Euclidean distances over the last axis (a joint's 3D position, in the units given).
    The first term is each sample's MPJPE; the second rewards diversity, exactly enough that
    matching the conditional distribution is optimal (unbiased estimator for m samples).
    `eps` keeps the gradient of |.| finite where two samples coincide.
    """
    m = samples.shape[1]
    if m < 2:
        raise ValueError(f"energy_score needs >= 2 samples per target, got {m}")
    if samples.shape[:1] + samples.shape[2:] != target.shape:
        raise ValueError(f"samples {tuple(samples.shape)} do not match target {tuple(target.shape)}")

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(((a - b) ** 2).sum(-1) + eps)

    accuracy = distance(samples, target.unsqueeze(1)).mean(dim=1)          # (B, ...)
    i, k = torch.triu_indices(m, m, offset=1, device=samples.device)
    diversity = distance(samples[:, i], samples[:, k]).mean(dim=1)         # mean over pairs
    return (accuracy - 0.5 * diversity).mean()
