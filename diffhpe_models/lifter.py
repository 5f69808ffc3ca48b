"""Model construction and the whole run-time lifting computation as one nn.Module.

`build_model(config)` builds the network of a variant:
- `mixste`: the deterministic MixSTE lifter;
- `diffhpe_2d`: denoiser conditioned on [u_n, v_n, mask];
- `diffhpe_wrapper`: denoiser conditioned on the features of a frozen MixSTE.

`LiftingPipeline` is THE run-time computation (what the node runs, what is exported to ONNX):
normalise the 2D (by image size or by intrinsics, per `data.input_normalisation`), zero missing
keypoints, compute the condition once, run the few-step sampler
with the H hypotheses folded into the batch, aggregate. No data-dependent control flow.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .aggregation import aggregate
from .camera import normalize_input
from .config import ConfigError, ExperimentConfig
from .contract import input_names
from .denoiser import Denoiser
from .diffusion import cosine_schedule
from .mixste import MixSTE
from .sampler import Sampler, SamplerSettings
from .skeleton import NUM_JOINTS, ROOT


class Conditioning(NamedTuple):
    """What a window's 2D gives every denoising step: the encoded condition (J, L, B, C) and,
    for a residual Wrapper, the frozen MixSTE's own pose in diffusion units (B, L, J, 3)."""

    encoded: torch.Tensor
    base: torch.Tensor | None

    def repeat(self, h: int) -> "Conditioning":
        """Each window's conditioning repeated for its H hypotheses (batch B -> B H, hypothesis
        fastest, as the noise is folded)."""
        j, l, b, c = self.encoded.shape
        encoded = self.encoded.unsqueeze(3).expand(-1, -1, -1, h, -1).reshape(j, l, b * h, c)
        base = None if self.base is None else self.base.unsqueeze(1).expand(
            -1, h, -1, -1, -1).reshape(b * h, *self.base.shape[1:])
        return Conditioning(encoded, base)


class DiffHPE(nn.Module):
    """Conditioner + denoiser of a DiffHPE variant ('diffhpe_2d' or 'diffhpe_wrapper').

    The Wrapper's MixSTE is frozen: no gradients, always in eval mode (its dropout/drop-path
    stay off even while the denoiser trains). A residual Wrapper (model.residual) predicts
    x0 = MixSTE's pose + the denoiser's output.
    """

    def __init__(self, config: ExperimentConfig):
        super().__init__()
        m = config.model
        self.variant = m.variant
        window = config.data.window
        if m.variant == "diffhpe_wrapper":
            self.mixste = MixSTE(m.mixste, window, m.causal)
            self.mixste.requires_grad_(False)
            condition_channels = m.mixste.embed_dim
        elif m.variant == "diffhpe_2d":
            self.mixste = None
            condition_channels = 3
        else:
            raise ValueError(f"DiffHPE: variant must be diffhpe_2d or diffhpe_wrapper, got {m.variant!r}")
        self.denoiser = Denoiser(m.denoiser, window, m.causal, config.diffusion.timesteps,
                                 condition_channels, embed_pose=self.mixste is not None)
        self.residual = m.residual
        self.pose_scale_m = config.diffusion.pose_scale_m

    def train(self, mode: bool = True) -> "DiffHPE":
        super().train(mode)
        if self.mixste is not None:
            self.mixste.eval()
        return self

    def encode(self, uv_n: torch.Tensor, mask: torch.Tensor) -> Conditioning:
        """(B, L, J, 2) normalised 2D, (B, L, J) mask -> the Conditioning, once per window."""
        base = None
        if self.mixste is not None:
            features = self.mixste.features(uv_n, mask)             # (B, L, J, Dc)
            if self.residual:
                pose = self.mixste.head(features)
                base = (pose - pose[..., ROOT:ROOT + 1, :]) * (1.0 / self.pose_scale_m)
        else:
            m = mask.to(uv_n.dtype).unsqueeze(-1)
            features = torch.cat([uv_n * m, m], dim=-1)
        return Conditioning(self.denoiser.encode_condition(features), base)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        """The network output for x_t (B, L, J, 3) at step t: eps or x0 in diffusion units."""
        out = self.denoiser(x_t, t, conditioning.encoded)
        return out if conditioning.base is None else out + conditioning.base


def build_model(config: ExperimentConfig) -> nn.Module:
    """The network of `config.model.variant` (MixSTE or DiffHPE), freshly initialised."""
    if config.model.variant == "mixste":
        return MixSTE(config.model.mixste, config.data.window, config.model.causal)
    return DiffHPE(config)


class LiftingPipeline(nn.Module):
    """The whole run-time computation, one forward.

    forward(keypoints_px (P, L, 17, 2), mask (P, L, 17), calibration, noise (P, H, L, 17, 3))
    -> (pose3d_m (P, L, 17, 3) root-relative camera frame, spread_m (P, L, 17)).
    `calibration` is what the model's `data.input_normalisation` needs (camera.normalize_input):
    image_wh (P, 2) pixels for "screen", intrinsics (P, 4) = fx, fy, cx, cy pixels for "rays";
    `input_names` names the four inputs. `noise` is the initial sample x_T of each hypothesis (an
    input, so runs are reproducible); the MixSTE variant accepts and ignores it and returns
    spread 0.

    Sampler settings: `settings` (a SamplerSettings) or the keyword overrides of the checkpoint
    config's (SamplerSettings.from_config: "ddpm" means all T steps with eta 1). The sampler owns
    the resolved object (`self.settings is self.sampler.settings`); nothing else holds a copy.
    A deterministic model (MixSTE) has no sampler and refuses sampler settings.
    """

    def __init__(self, model: nn.Module, config: ExperimentConfig,
                 settings: SamplerSettings | None = None, *, steps: int | None = None,
                 hypotheses: int | None = None, aggregation: str | None = None,
                 sampler: str | None = None, eta: float | None = None):
        super().__init__()
        overrides = {k: v for k, v in dict(sampler=sampler, steps=steps, hypotheses=hypotheses,
                                           eta=eta, aggregation=aggregation).items()
                     if v is not None}
        self.config = config                 # the checkpoint's (training) config, unchanged
        self.model = model.eval()
        self.variant = config.model.variant
        self.window = config.data.window
        self.window_mode = config.data.window_mode
        self.causal = config.model.causal
        self.input_normalisation = config.data.input_normalisation
        self.input_names = input_names(self.input_normalisation)
        self.is_diffusion = isinstance(model, DiffHPE)
        self.spread_scale = (1.0, 1.0)                       # (observed, missing) joints
        self.spread_scale_joint: tuple[float, ...] = ()     # x per joint (empty: 1.0 each)
        if not self.is_diffusion:
            if settings is not None or overrides:
                given = settings.as_dict() if settings is not None else overrides
                raise ConfigError(f"sampler settings: a {self.variant!r} model is deterministic "
                                  f"and runs no sampler, got {given}")
            self.sampler = None
            return
        d = config.diffusion
        if settings is None:
            settings = SamplerSettings.from_config(d, **overrides)
        elif overrides:
            raise ConfigError(f"sampler settings: give a SamplerSettings or overrides, not both "
                              f"(got {sorted(overrides)})")
        if settings.aggregation == "conditioner" and not config.model.residual:
            raise ConfigError("sampler settings: aggregation 'conditioner' needs a residual "
                              "Wrapper (model.residual), this model has no conditioner pose")
        self.spread_scale = (d.spread_scale_visible, d.spread_scale_hidden)
        self.spread_scale_joint = tuple(d.spread_scale_joint)
        schedule = cosine_schedule(d.timesteps, d.max_beta, d.cosine_offset)
        self.sampler = Sampler(schedule, settings, d.prediction)

    @property
    def settings(self) -> SamplerSettings | None:
        """What the sampler runs (None for a deterministic model)."""
        return self.sampler.settings if self.sampler is not None else None

    @property
    def hypotheses(self) -> int:
        return self.sampler.settings.hypotheses if self.sampler is not None else 1

    def _check(self, keypoints_px, mask, calibration, noise) -> None:
        shape = (self.window, NUM_JOINTS)
        if keypoints_px.dim() != 4 or tuple(keypoints_px.shape[1:]) != (*shape, 2):
            raise ValueError(f"keypoints_px must be (P, {self.window}, {NUM_JOINTS}, 2), "
                             f"got {tuple(keypoints_px.shape)}")
        if tuple(mask.shape) != tuple(keypoints_px.shape[:3]):
            raise ValueError(f"mask must be {tuple(keypoints_px.shape[:3])}, got {tuple(mask.shape)}")
        width = 2 if self.input_normalisation == "screen" else 4
        if tuple(calibration.shape) != (keypoints_px.shape[0], width):
            raise ValueError(f"{self.input_names[2]} must be (P, {width}) for a "
                             f"{self.input_normalisation!r} model, got {tuple(calibration.shape)}")
        if noise.dim() != 5 or tuple(noise.shape[2:]) != (*shape, 3) or (
                self.is_diffusion and noise.shape[1] != self.hypotheses):
            raise ValueError(f"noise must be (P, {self.hypotheses}, {self.window}, {NUM_JOINTS}, 3), "
                             f"got {tuple(noise.shape)}")

    def forward(self, keypoints_px: torch.Tensor, mask: torch.Tensor, calibration: torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pose, spread, _ = self.lift_with_hypotheses(keypoints_px, mask, calibration, noise)
        return pose, spread

    def lift_with_hypotheses(self, keypoints_px: torch.Tensor, mask: torch.Tensor,
                             calibration: torch.Tensor, noise: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward's (pose, spread) and the hypotheses they came from (P, H, L, J, 3) metres
        (the pose itself, H = 1, for a deterministic model): what validation scores."""
        self._check(keypoints_px, mask, calibration, noise)
        mask = mask.to(keypoints_px.dtype)
        uv_n = normalize_input(keypoints_px, calibration, self.input_normalisation)
        uv_n = uv_n * mask.unsqueeze(-1)
        if not self.is_diffusion:
            pose = self.model(uv_n, mask)
            pose = pose - pose[..., ROOT:ROOT + 1, :]
            # Spread 0, written as 0 * noise so that an exported graph keeps the `noise` input
            # (exporters drop unused inputs, and every variant must share one interface).
            return pose, 0.0 * noise[:, 0, :, :, 0], pose.unsqueeze(1)
        hyps, anchor = sample_hypotheses(self.model, self.sampler, uv_n, mask, noise)
        pose, spread = aggregate(hyps, uv_n, mask, self.settings.aggregation, anchor)
        visible, hidden = self.spread_scale
        if (visible, hidden) != (1.0, 1.0):                  # the validation-fitted calibration
            spread = spread * (mask * visible + (1.0 - mask) * hidden)
        if self.spread_scale_joint:
            spread = spread * spread.new_tensor(self.spread_scale_joint)
        return pose, spread, hyps


def sample_hypotheses(model: DiffHPE, sampler: Sampler, uv_n: torch.Tensor, mask: torch.Tensor,
                      noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sampler's H hypotheses of each window: (P, L, J, 2) normalised 2D, (P, L, J) mask,
    noise (P, H, L, J, 3) -> (hypotheses (P, H, L, J, 3), the conditioner's pose (P, L, J, 3) or
    None), root-relative metres. What runs at run time and what the energy objective trains
    through (gradients flow when the caller allows them)."""
    p, h, l, j, _ = noise.shape
    window = model.encode(uv_n, mask)                                 # once per window
    conditioning = window.repeat(h)
    x0 = sampler.sample(lambda x_t, t: model.predict(x_t, t, conditioning), noise.reshape(-1, l, j, 3))
    hyps = x0.reshape(p, h, l, j, 3) * model.pose_scale_m              # back to metres
    anchor = None if window.base is None else window.base * model.pose_scale_m
    return hyps - hyps[..., ROOT:ROOT + 1, :], anchor


def window_calibration(window: dict, normalisation: str):
    """The calibration input a model of `normalisation` takes, from a dataset window or batch
    (windows.WindowDataset items carry both): "screen" -> window["image_wh"] (..., 2),
    "rays" -> window["camera"] (..., 4) = fx, fy, cx, cy pixels."""
    if normalisation == "screen":
        return window["image_wh"]
    if normalisation == "rays":
        return window["camera"]
    raise ValueError(f"input normalisation must be 'screen' or 'rays', got {normalisation!r}")


def build_pipeline(checkpoint_path, settings: SamplerSettings | None = None, *,
                   steps: int | None = None, hypotheses: int | None = None,
                   aggregation: str | None = None, sampler: str | None = None,
                   eta: float | None = None) -> LiftingPipeline:
    """The run-time pipeline of a checkpoint (eval mode, CPU). Sampler settings as in
    LiftingPipeline: a SamplerSettings, or overrides of the checkpoint config's (None = the
    config's value)."""
    from .checkpoint import load_checkpoint  # checkpoint.py imports this module

    model, config, _ = load_checkpoint(checkpoint_path)
    return LiftingPipeline(model, config, settings, steps=steps, hypotheses=hypotheses,
                           aggregation=aggregation, sampler=sampler, eta=eta)
