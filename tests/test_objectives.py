"""The energy score and the 'energy' training objective (a sampler trained to sample)."""
import pytest
import torch

from diffhpe_models.config import ConfigError, from_dict
from diffhpe_models.lifter import LiftingPipeline, build_model
from diffhpe_models.objectives import energy_score
from diffhpe_models.training import TrainingObjective

L, J = 27, 17


def test_energy_score_of_identical_samples_is_their_mean_distance():
    target = torch.zeros(2, 3, 3)
    samples = torch.tensor([3.0, 4.0, 0.0]).expand(2, 4, 3, 3)          # all 5 away, no spread
    assert energy_score(samples, target).item() == pytest.approx(5.0, abs=1e-4)


def test_energy_score_prefers_the_true_distribution_to_its_mean():
    """Proper: samples from the distribution the targets come from score better than m copies
    of its mean (what a regressor outputs), and better than a too-wide distribution."""
    g = torch.Generator().manual_seed(0)
    n, m, sigma = 20000, 4, 0.3
    target = torch.randn(n, 1, 3, generator=g) * sigma
    mean = torch.zeros(n, m, 1, 3)
    true = torch.randn(n, m, 1, 3, generator=g) * sigma
    wide = torch.randn(n, m, 1, 3, generator=g) * sigma * 3
    scores = [energy_score(s, target).item() for s in (mean, true, wide)]
    assert scores[1] < scores[0] - 0.02 and scores[1] < scores[2] - 0.02


def test_energy_score_refuses_bad_shapes():
    with pytest.raises(ValueError, match=">= 2 samples"):
        energy_score(torch.zeros(2, 1, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="do not match target"):
        energy_score(torch.zeros(2, 4, 5, 3), torch.zeros(2, 6, 3))


def _wrapper_config(**train):
    return from_dict({"data": {"input_normalisation": "rays"},
                      "model": {"variant": "diffhpe_wrapper", "residual": True},
                      "diffusion": {"steps": 2, "hypotheses": 3, "aggregation": "mean",
                                    "pose_scale_m": 0.25},
                      "train": {"objective": "energy", "energy_samples": 3, **train}})


def _batch(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, L, J, 2, generator=g) * 500
    mask = (torch.rand(b, L, J, generator=g) > 0.2).float()
    k = torch.tensor([[600.0, 600.0, 250.0, 250.0]]).repeat(b, 1)
    gt = torch.randn(b, L, J, 3, generator=g) * 0.25
    return kp, mask, k, gt - gt[..., :1, :]


def test_untrained_residual_wrapper_is_its_mixste():
    """The denoiser's head starts at zero: an untrained residual Wrapper returns exactly its
    frozen MixSTE's pose, whatever the noise, with zero spread."""
    cfg = _wrapper_config()
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.mixste.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    pipe = LiftingPipeline(model, cfg)
    kp, mask, k, _ = _batch()
    noise = torch.randn(2, 3, L, J, 3)
    pose, spread = pipe(kp, mask, k, noise)
    mixste_cfg = from_dict({"data": {"input_normalisation": "rays"}, "model": {"variant": "mixste"}})
    mixste_pose, _ = LiftingPipeline(model.mixste, mixste_cfg)(kp, mask, k, noise)
    assert torch.allclose(pose, mixste_pose, atol=1e-5)
    assert spread.abs().max().item() < 1e-5


def test_energy_objective_trains_the_denoiser_through_the_sampler():
    cfg = _wrapper_config()
    torch.manual_seed(0)
    model = build_model(cfg).train()
    objective = TrainingObjective(model, cfg, torch.device("cpu"))
    assert objective.sampler.settings.hypotheses == 3 and objective.sampler.steps == 2
    loss = objective(*_batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert model.denoiser.head2.weight.grad.abs().sum() > 0          # reaches the zero head
    assert all(p.grad is None for p in model.mixste.parameters())     # the conditioner stays


@pytest.mark.parametrize("change, message", [
    ({"model": {"variant": "diffhpe_2d", "residual": True}}, "model.residual: only the Wrapper"),
    ({"model": {"variant": "diffhpe_wrapper", "residual": True},
      "diffusion": {"prediction": "epsilon"}}, "model.residual needs prediction 'x0'"),
    ({"model": {"variant": "mixste"}, "train": {"objective": "energy"}},
     "train.objective: 'energy' trains a diffusion sampler"),
    ({"train": {"objective": "energy", "energy_samples": 1}}, "train.energy_samples: must be >= 2"),
    ({"train": {"objective": "sharpness"}}, "train.objective: expected one of"),
])
def test_config_refuses_inconsistent_objectives(change, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(change)


def test_conditioner_aggregation_publishes_the_mixste_pose_with_the_hypotheses_spread():
    cfg = _wrapper_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)            # a denoiser that moves the hypotheses
    kp, mask, k, _ = _batch()
    noise = torch.randn(2, 3, L, J, 3)
    anchored = LiftingPipeline(model, cfg, aggregation="conditioner")
    mean = LiftingPipeline(model, cfg, aggregation="mean")
    pose, spread = anchored(kp, mask, k, noise)
    mixste_cfg = from_dict({"data": {"input_normalisation": "rays"}, "model": {"variant": "mixste"}})
    mixste_pose, _ = LiftingPipeline(model.mixste, mixste_cfg)(kp, mask, k, noise)
    assert torch.allclose(pose, mixste_pose, atol=1e-5)
    # The spread is measured from the published pose: at least the hypotheses' own spread.
    mean_pose, mean_spread = mean(kp, mask, k, noise)
    assert not torch.allclose(mean_pose, pose, atol=1e-4)
    assert (spread >= mean_spread - 1e-6).all() and spread[..., 1:].min() > 0


def test_conditioner_aggregation_is_refused_without_a_conditioner_pose():
    plain = from_dict({"model": {"variant": "diffhpe_wrapper"}})
    with pytest.raises(ConfigError, match="'conditioner' needs a residual Wrapper"):
        LiftingPipeline(build_model(plain), plain, aggregation="conditioner")
    with pytest.raises(ConfigError, match="diffusion.aggregation: 'conditioner' needs a residual"):
        from_dict({"model": {"variant": "diffhpe_wrapper"},
                   "diffusion": {"aggregation": "conditioner"}})
