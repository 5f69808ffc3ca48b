"""Reverse-process samplers: respaced DDIM and ancestral DDPM, one implementation.

The sampler owns no network: `sample(predict, x_T)` calls `predict(x_t, t)` for a FIXED list of step indices, so the step loop is a plain Python loop that unrolls into a flat graph
when traced (ONNX export), and the per-step coefficients are Python floats (graph constants).
Hypotheses are whatever the caller folded into the batch dimension of x_T. The network output is
read as the noise eps ("epsilon", the reference) or as the clean pose x0 ("x0", better behaved with
very few steps: an eps error at the first step is amplified by 1/sqrt(alphas_cumprod[T-1]) ~ 30
in x0_hat).

The generalised DDIM step (Song et al. 2021) from step t to the previous kept step p:
    x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
    sigma  = eta * sqrt((1 - abar_p) / (1 - abar_t)) * sqrt(1 - abar_t / abar_p)
    x_p    = sqrt(abar_p) x0_hat + sqrt(1 - abar_p - sigma^2) eps + sigma z
with abar_p = 1 after the last step. eta = 0 is deterministic given x_T; eta = 1 over all T steps
is exactly the ancestral DDPM sampler (posterior variance beta_tilde).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .diffusion import PREDICTIONS, NoiseSchedule

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def respaced_timesteps(timesteps: int, steps: int) -> tuple[int, ...]:
    """`steps` step indices out of 0..timesteps-1, descending, evenly spaced, always starting at
    timesteps-1 (pure noise; "trailing" spacing): e.g. T=50, steps=2 -> (49, 24)."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be in 1..{timesteps}, got {steps}")
    return tuple(int(round(timesteps - i * timesteps / steps)) - 1 for i in range(steps))


class Sampler:
    """Reverse diffusion over a fixed list of step indices.

    schedule: the training schedule; timesteps: descending step indices to visit; eta: 0 for
    deterministic DDIM, 1 for ancestral sampling; prediction: what the network outputs,
    "epsilon" or "x0".
    """

    def __init__(self, schedule: NoiseSchedule, timesteps: tuple[int, ...], eta: float = 0.0,
                 prediction: str = "epsilon"):
        if not timesteps or list(timesteps) != sorted(set(timesteps), reverse=True):
            raise ValueError(f"timesteps must be distinct and descending, got {timesteps}")
        if timesteps[0] >= schedule.timesteps or timesteps[-1] < 0:
            raise ValueError(f"timesteps must lie in 0..{schedule.timesteps - 1}, got {timesteps}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        self.timesteps = tuple(int(t) for t in timesteps)
        self.eta = float(eta)
        abar = schedule.alphas_cumprod.tolist()
        # Per step: (t, sqrt(abar_t), sqrt(1-abar_t), sqrt(abar_p), eps coefficient, sigma).
        self.coefficients = []
        for i, t in enumerate(self.timesteps):
            a_t = abar[t]
            a_p = abar[self.timesteps[i + 1]] if i + 1 < len(self.timesteps) else 1.0
            sigma = self.eta * math.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
            self.coefficients.append((t, math.sqrt(a_t), math.sqrt(1 - a_t), math.sqrt(a_p),
                                      math.sqrt(max(1 - a_p - sigma ** 2, 0.0)), sigma))

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def sample(self, predict: Predict, x_T: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T (B, ...) initial noise -> x_0 (B, ...). predict(x_t, t (1,) int64) -> the network
        output (eps or x0, per `prediction`).

        With eta > 0 the per-step noise comes from `generator` (or the global RNG).
        """
        x = x_T
        for t, sqrt_abar, sqrt_one_minus_abar, sqrt_abar_prev, eps_coef, sigma in self.coefficients:
            out = predict(x, torch.full((1,), t, dtype=torch.long, device=x.device))
            if self.prediction == "epsilon":
                eps = out
                x0 = (x - sqrt_one_minus_abar * eps) * (1.0 / sqrt_abar)
            else:
                x0 = out
                eps = (x - sqrt_abar * x0) * (1.0 / sqrt_one_minus_abar)
            x = sqrt_abar_prev * x0 + eps_coef * eps
            if sigma > 0:
                z = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
                x = x + sigma * z
        return x


def ddim_sampler(schedule: NoiseSchedule, steps: int, eta: float = 0.0,
                 prediction: str = "epsilon") -> Sampler:
    """DDIM on `steps` respaced steps (deterministic for eta = 0)."""
    return Sampler(schedule, respaced_timesteps(schedule.timesteps, steps), eta, prediction)


def ddpm_sampler(schedule: NoiseSchedule, prediction: str = "epsilon") -> Sampler:
    """Ancestral DDPM over all T steps (the reference sampler)."""
    return Sampler(schedule, tuple(range(schedule.timesteps - 1, -1, -1)), 1.0, prediction)


def make_sampler(schedule: NoiseSchedule, kind: str, steps: int, eta: float = 0.0,
                 prediction: str = "epsilon") -> Sampler:
    """kind 'ddim' (respaced `steps`, `eta`) or 'ddpm' (all T steps, ancestral)."""
    if kind == "ddim":
        return ddim_sampler(schedule, steps, eta, prediction)
    if kind == "ddpm":
        return ddpm_sampler(schedule, prediction)
    raise ValueError(f"unknown sampler {kind!r}; expected 'ddim' or 'ddpm'")
