"""The forward (noising) process: cosine schedule, q_sample, the training loss.

Naming (explicit, because the reference code swaps them): for step index t in 0..T-1,
`betas[t]` is the variance added at step t, `alphas[t] = 1 - betas[t]`, and
`alphas_cumprod[t] = prod_{s <= t} alphas[s]` (alpha-bar) is the signal fraction of x_t:
x_t = sqrt(alphas_cumprod[t]) x_0 + sqrt(1 - alphas_cumprod[t]) eps.

The network is trained to output either eps ("epsilon", the reference parametrisation) or x_0
itself ("x0", as D3DP does for few-step sampling); the sampler reads its output accordingly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .config import PREDICTIONS


@dataclass(frozen=True)
class NoiseSchedule:
    """The discretised schedule as float64 tensors of shape (T,)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @property
    def timesteps(self) -> int:
        return int(self.betas.shape[0])

    def to(self, device: str | torch.device) -> "NoiseSchedule":
        """The same schedule with its tensors on `device` (training moves it once)."""
        return NoiseSchedule(self.betas.to(device), self.alphas.to(device),
                             self.alphas_cumprod.to(device))


def cosine_schedule(timesteps: int = 50, max_beta: float = 0.5, offset: float = 0.008) -> NoiseSchedule:
    """Cosine schedule (Nichol & Dhariwal 2021) as DiffHPE uses it.

    alpha_bar(s) = cos^2((s + offset) / (1 + offset) * pi/2) for s in [0, 1];
    betas[t] = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta). With T = 50 and
    max_beta = 0.5 the last 3 betas are clipped and alphas_cumprod[T-1] ~ 1.1e-3.
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    s = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    alpha_bar = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = torch.clamp(1 - alpha_bar[1:] / alpha_bar[:-1], max=max_beta)
    alphas = 1 - betas
    return NoiseSchedule(betas=betas, alphas=alphas, alphas_cumprod=torch.cumprod(alphas, 0))


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] for t (B,), shaped (B, 1, ..., 1) to broadcast over `like`."""
    v = values.to(like.device)[t].to(like.dtype)
    return v.view(-1, *([1] * (like.dim() - 1)))


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
    """Noisy x_t = sqrt(alphas_cumprod[t]) x0 + sqrt(1 - alphas_cumprod[t]) noise.

    x0, noise: (B, ...); t: (B,) int64 step indices in [0, T).
    """
    abar = _per_sample(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def diffusion_loss(predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   schedule: NoiseSchedule, x0: torch.Tensor, prediction: str = "epsilon",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The training loss, t ~ U{0..T-1} per sample: mean((eps - out)^2) for "epsilon",
    mean((x0 - out)^2) for "x0".

    predict(x_t (B, ...), t (B,)) -> out (B, ...); x0: (B, ...) clean targets.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    b = x0.shape[0]
    t = torch.randint(0, schedule.timesteps, (b,), device=x0.device, generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    out = predict(q_sample(schedule, x0, t, noise), t)
    target = noise if prediction == "epsilon" else x0
    return torch.mean((target - out) ** 2)
