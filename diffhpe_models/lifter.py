"""Model construction and the whole run-time lifting computation as one nn.Module.

`build_model(config)` builds the network of a variant:
- `mixste`: the deterministic MixSTE lifter;
- `diffhpe_2d`: denoiser conditioned on [u_n, v_n, mask];
- `diffhpe_wrapper`: denoiser conditioned on the features of a frozen MixSTE.

`LiftingPipeline` is THE run-time computation (what the node runs, what is exported to ONNX):
normalise the 2D, zero missing keypoints, compute the condition once, run the few-step sampler
with the H hypotheses folded into the batch, aggregate. No data-dependent control flow.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .aggregation import aggregate
from .camera import normalize_screen
from .config import ExperimentConfig
from .denoiser import Denoiser
from .diffusion import cosine_schedule
from .mixste import MixSTE
from .sampler import make_sampler
from .skeleton import NUM_JOINTS, ROOT


class DiffHPE(nn.Module):
    """Conditioner + denoiser of a DiffHPE variant ('diffhpe_2d' or 'diffhpe_wrapper').

    The Wrapper's MixSTE is frozen: no gradients, always in eval mode (its dropout/drop-path
    stay off even while the denoiser trains).
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

    def train(self, mode: bool = True) -> "DiffHPE":
        super().train(mode)
        if self.mixste is not None:
            self.mixste.eval()
        return self

    def condition(self, uv_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, J, 2) normalised 2D, (B, L, J) mask -> (B, L, J, Dc) condition."""
        if self.mixste is not None:
            return self.mixste.features(uv_n, mask)
        m = mask.to(uv_n.dtype).unsqueeze(-1)
        return torch.cat([uv_n * m, m], dim=-1)

    def encode(self, uv_n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoded condition (J, L, B, C), computed once per window."""
        return self.denoiser.encode_condition(self.condition(uv_n, mask))


def build_model(config: ExperimentConfig) -> nn.Module:
    """The network of `config.model.variant` (MixSTE or DiffHPE), freshly initialised."""
    if config.model.variant == "mixste":
        return MixSTE(config.model.mixste, config.data.window, config.model.causal)
    return DiffHPE(config)


class LiftingPipeline(nn.Module):
    """The whole run-time computation, one forward.

    forward(keypoints_px (P, L, 17, 2), mask (P, L, 17), image_wh (P, 2), noise (P, H, L, 17, 3))
    -> (pose3d_m (P, L, 17, 3) root-relative camera frame, spread_m (P, L, 17)).
    `noise` is the initial sample x_T of each hypothesis (an input, so runs are reproducible);
    the MixSTE variant accepts and ignores it and returns spread 0.
    """

    def __init__(self, model: nn.Module, config: ExperimentConfig, steps: int | None = None,
                 hypotheses: int | None = None, aggregation: str | None = None,
                 sampler: str | None = None, eta: float | None = None):
        super().__init__()
        overrides = {k: v for k, v in dict(steps=steps, hypotheses=hypotheses, aggregation=aggregation,
                                           sampler=sampler, eta=eta).items() if v is not None}
        # dataclasses.replace re-runs the config validation on the run-time choices.
        self.config = dataclasses.replace(
            config, diffusion=dataclasses.replace(config.diffusion, **overrides))
        d = self.diffusion = self.config.diffusion
        self.model = model.eval()
        self.window = config.data.window
        self.is_diffusion = isinstance(model, DiffHPE)
        self.hypotheses = self.diffusion.hypotheses if self.is_diffusion else 1
        schedule = cosine_schedule(d.timesteps, d.max_beta, d.cosine_offset)
        self.sampler = make_sampler(schedule, d.sampler, d.steps, d.eta, d.prediction)

    def _check(self, keypoints_px, mask, image_wh, noise) -> None:
        shape = (self.window, NUM_JOINTS)
        if keypoints_px.dim() != 4 or tuple(keypoints_px.shape[1:]) != (*shape, 2):
            raise ValueError(f"keypoints_px must be (P, {self.window}, {NUM_JOINTS}, 2), "
                             f"got {tuple(keypoints_px.shape)}")
        if tuple(mask.shape) != tuple(keypoints_px.shape[:3]):
            raise ValueError(f"mask must be {tuple(keypoints_px.shape[:3])}, got {tuple(mask.shape)}")
        if tuple(image_wh.shape) != (keypoints_px.shape[0], 2):
            raise ValueError(f"image_wh must be (P, 2), got {tuple(image_wh.shape)}")
        if noise.dim() != 5 or tuple(noise.shape[2:]) != (*shape, 3) or (
                self.is_diffusion and noise.shape[1] != self.hypotheses):
            raise ValueError(f"noise must be (P, {self.hypotheses}, {self.window}, {NUM_JOINTS}, 3), "
                             f"got {tuple(noise.shape)}")

    def forward(self, keypoints_px: torch.Tensor, mask: torch.Tensor, image_wh: torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(keypoints_px, mask, image_wh, noise)
        mask = mask.to(keypoints_px.dtype)
        uv_n = normalize_screen(keypoints_px, image_wh) * mask.unsqueeze(-1)
        if not self.is_diffusion:
            pose = self.model(uv_n, mask)
            pose = pose - pose[..., ROOT:ROOT + 1, :]
            # Spread 0, written as 0 * noise so that an exported graph keeps the `noise` input
            # (exporters drop unused inputs, and every variant must share one interface).
            return pose, 0.0 * noise[:, 0, :, :, 0]
        l, j, h = self.window, NUM_JOINTS, self.hypotheses
        encoded = self.model.encode(uv_n, mask)                          # (J, L, P, C), once
        c = encoded.shape[-1]
        encoded = encoded.unsqueeze(3).expand(-1, -1, -1, h, -1).reshape(j, l, -1, c)  # (J, L, P H, C)
        denoiser = self.model.denoiser
        x0 = self.sampler.sample(lambda x_t, t: denoiser(x_t, t, encoded), noise.reshape(-1, l, j, 3))
        hyps = x0.reshape(-1, h, l, j, 3)
        hyps = hyps - hyps[..., ROOT:ROOT + 1, :]
        return aggregate(hyps, uv_n, mask, self.diffusion.aggregation)


def build_pipeline(checkpoint_path, steps: int | None = None, hypotheses: int | None = None,
                   aggregation: str | None = None, sampler: str | None = None,
                   eta: float | None = None) -> LiftingPipeline:
    """The run-time pipeline of a checkpoint (eval mode, CPU); None = the checkpoint config's
    value. For a MixSTE checkpoint the sampler settings are validated but unused (H = 1)."""
    from .checkpoint import load_checkpoint  # checkpoint.py imports this module

    model, config, _ = load_checkpoint(checkpoint_path)
    return LiftingPipeline(model, config, steps=steps, hypotheses=hypotheses,
                           aggregation=aggregation, sampler=sampler, eta=eta)
