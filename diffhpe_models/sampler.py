"""Reverse-process samplers: respaced DDIM and ancestral DDPM, one implementation.

The sampler owns no network but owns its settings (`SamplerSettings`: sampler, steps, hypotheses,
eta, aggregation; one validated object, recorded by the export as it runs). `sample(predict,
x_T)` calls `predict(x_t, t)` for a FIXED list of step indices, so the step loop is a plain Python
loop that unrolls into a flat graph when traced (ONNX export), and the per-step coefficients are
Python floats (graph constants).
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

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .config import AGGREGATIONS, SAMPLERS, ConfigError, DiffusionConfig
from .diffusion import PREDICTIONS, NoiseSchedule

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# The run-time sampler settings, in the order manifests and logs show them.
SETTINGS_FIELDS = ("sampler", "steps", "hypotheses", "eta", "aggregation")


def respaced_timesteps(timesteps: int, steps: int) -> tuple[int, ...]:
    """`steps` step indices out of 0..timesteps-1, descending, evenly spaced, always starting at
    timesteps-1 (pure noise; "trailing" spacing): e.g. T=50, steps=2 -> (49, 24)."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be in 1..{timesteps}, got {steps}")
    return tuple(int(round(timesteps - i * timesteps / steps)) - 1 for i in range(steps))


@dataclass(frozen=True)
class SamplerSettings:
    """What the sampler runs, chosen at run time (diffusers-style: the trained schedule and the
    prediction type belong to the checkpoint, these to the caller). One validated object: the
    Sampler owns it, the export records it, the runtime and the node report it.

    sampler: "ddim" (respaced `steps`, noise scale `eta`: 0 = deterministic given x_T) or
    "ddpm" (ancestral over all T trained steps: steps = T and eta = 1 by definition);
    hypotheses: H samples per window, folded into the batch; aggregation: how the H become one
    pose (aggregation.aggregate). Every value is what actually runs: a "ddpm" object says
    steps = T, never a DDIM default.
    """

    sampler: str = "ddim"
    steps: int = 2
    hypotheses: int = 5
    eta: float = 0.0
    aggregation: str = "reproj"

    def __post_init__(self):
        problems = []
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        for name in ("steps", "hypotheses"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(self.eta, bool) or not isinstance(self.eta, (int, float)) \
                or not 0.0 <= self.eta <= 1.0:
            problems.append(f"eta must be in [0, 1], got {self.eta!r}")
        elif self.sampler == "ddpm" and self.eta != 1.0:
            problems.append(f"sampler 'ddpm' is ancestral (eta = 1), got eta = {self.eta}")
        if self.aggregation not in AGGREGATIONS:
            problems.append(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if problems:
            raise ConfigError("sampler settings: " + "; ".join(problems))
        object.__setattr__(self, "eta", float(self.eta))

    def check(self, timesteps: int) -> "SamplerSettings":
        """Raise ConfigError unless these settings run on a schedule of `timesteps` steps."""
        if self.steps > timesteps:
            raise ConfigError(f"sampler settings: steps must be in 1..{timesteps} (the "
                              f"checkpoint's diffusion.timesteps), got {self.steps}")
        if self.sampler == "ddpm" and self.steps != timesteps:
            raise ConfigError(f"sampler settings: sampler 'ddpm' visits all {timesteps} trained "
                              f"steps, got steps = {self.steps} (for fewer steps use 'ddim', "
                              "with eta = 1 for ancestral noise)")
        return self

    @classmethod
    def from_config(cls, diffusion: DiffusionConfig, sampler: str | None = None,
                    steps: int | None = None, hypotheses: int | None = None,
                    eta: float | None = None, aggregation: str | None = None
                    ) -> "SamplerSettings":
        """The settings of a checkpoint's `diffusion` config with run-time overrides (None =
        the config's value), checked against its schedule.

        "ddpm" fixes steps = T and eta = 1: the config's `steps` and `eta` are DDIM parameters
        and do not apply to it, and an explicit `steps` or `eta` override that contradicts it is
        refused (not silently ignored)."""
        kind = sampler if sampler is not None else diffusion.sampler
        if kind == "ddpm":
            t = diffusion.timesteps
            wrong = [f"{name} = {value}" for name, value, want in (("steps", steps, t),
                                                                  ("eta", eta, 1.0))
                     if value is not None and value != want]
            if wrong:
                raise ConfigError(f"sampler settings: sampler 'ddpm' runs all {t} trained steps "
                                  f"with eta = 1; {' and '.join(wrong)} contradicts it (use "
                                  "sampler 'ddim' to choose steps and eta)")
            steps, eta = t, 1.0
        settings = cls(
            sampler=kind,
            steps=steps if steps is not None else diffusion.steps,
            hypotheses=hypotheses if hypotheses is not None else diffusion.hypotheses,
            eta=eta if eta is not None else diffusion.eta,
            aggregation=aggregation if aggregation is not None else diffusion.aggregation)
        return settings.check(diffusion.timesteps)

    def replace(self, **changes) -> "SamplerSettings":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTINGS_FIELDS}

    @property
    def deterministic(self) -> bool:
        """True when the output is a function of the input and the initial noise x_T."""
        return self.eta == 0.0


class Sampler:
    """Reverse diffusion with the settings it owns (`settings`, a SamplerSettings).

    schedule: the training schedule (the checkpoint's); prediction: what the network outputs,
    "epsilon" or "x0" (also the checkpoint's). The step indices follow from the settings: DDIM
    visits `respaced_timesteps(T, steps)`, DDPM all T. Hypotheses and aggregation are recorded
    here (one object, one truth) and applied by the caller, which folds the H hypotheses into
    the batch of x_T.
    """

    def __init__(self, schedule: NoiseSchedule, settings: SamplerSettings,
                 prediction: str = "epsilon"):
        if not isinstance(settings, SamplerSettings):
            raise TypeError(f"settings must be a SamplerSettings, got {type(settings).__name__}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.settings = settings.check(schedule.timesteps)
        self.prediction = prediction
        self.timesteps = respaced_timesteps(schedule.timesteps, settings.steps)
        eta = settings.eta
        abar = schedule.alphas_cumprod.tolist()
        # Per step: (t, sqrt(abar_t), sqrt(1-abar_t), sqrt(abar_p), eps coefficient, sigma).
        self.coefficients = []
        for i, t in enumerate(self.timesteps):
            a_t = abar[t]
            a_p = abar[self.timesteps[i + 1]] if i + 1 < len(self.timesteps) else 1.0
            sigma = eta * math.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
            self.coefficients.append((t, math.sqrt(a_t), math.sqrt(1 - a_t), math.sqrt(a_p),
                                      math.sqrt(max(1 - a_p - sigma ** 2, 0.0)), sigma))

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def eta(self) -> float:
        return self.settings.eta

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
                 prediction: str = "epsilon", hypotheses: int = 1,
                 aggregation: str = "mean") -> Sampler:
    """DDIM on `steps` respaced steps (deterministic for eta = 0)."""
    return Sampler(schedule, SamplerSettings("ddim", steps, hypotheses, eta, aggregation),
                   prediction)


def ddpm_sampler(schedule: NoiseSchedule, prediction: str = "epsilon", hypotheses: int = 1,
                 aggregation: str = "mean") -> Sampler:
    """Ancestral DDPM over all T steps (the reference sampler)."""
    return Sampler(schedule, SamplerSettings("ddpm", schedule.timesteps, hypotheses, 1.0,
                                             aggregation), prediction)
