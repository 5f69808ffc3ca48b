"""Samplers (DDIM respaced, ancestral DDPM) and the aggregation of hypotheses."""
import dataclasses
import math

import pytest
import torch

from diffhpe_models.aggregation import aggregate, aggregate_median, reprojection_errors
from diffhpe_models.camera import normalize_screen
from diffhpe_models.config import ConfigError, from_dict
from diffhpe_models.diffusion import cosine_schedule
from diffhpe_models.sampler import Sampler, SamplerSettings, ddim_sampler, ddpm_sampler, respaced_timesteps

S = cosine_schedule(50)


def _oracle(x0, prediction):
    """A perfect denoiser for a single known clean sample x0."""
    def predict(x_t, t):
        abar = S.alphas_cumprod[t].float()
        if prediction == "x0":
            return x0.expand_as(x_t)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    return predict


def test_respaced_timesteps():
    assert respaced_timesteps(50, 1) == (49,)
    assert respaced_timesteps(50, 2) == (49, 24)
    assert respaced_timesteps(50, 50) == tuple(range(49, -1, -1))
    for n in range(1, 51):
        ts = respaced_timesteps(50, n)
        assert len(ts) == n and ts[0] == 49 and list(ts) == sorted(set(ts), reverse=True)
    with pytest.raises(ValueError):
        respaced_timesteps(50, 51)


@pytest.mark.parametrize("steps", [1, 2, 5, 17, 50])
@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_ddim_recovers_x0_with_a_perfect_denoiser(steps, prediction):
    x0 = torch.randn(1, 27, 17, 3) * 0.3
    x_T = torch.randn(6, 27, 17, 3)              # 6 hypotheses in the batch
    out = ddim_sampler(S, steps, prediction=prediction).sample(_oracle(x0, prediction), x_T)
    assert out.shape == x_T.shape
    assert torch.allclose(out, x0.expand_as(out), atol=1e-4)


def test_ddim_calls_the_network_once_per_step_with_the_whole_batch():
    seen = []

    def predict(x_t, t):
        seen.append((x_t.shape[0], int(t)))
        return torch.zeros_like(x_t)
    ddim_sampler(S, 3).sample(predict, torch.randn(10, 4))
    assert seen == [(10, 49), (10, 32), (10, 16)]


def test_ddim_eta0_is_deterministic_and_eta1_is_not():
    x_T = torch.randn(4, 27, 17, 3)
    net = lambda x, t: 0.1 * x  # noqa: E731
    a = ddim_sampler(S, 5).sample(net, x_T)
    assert torch.equal(a, ddim_sampler(S, 5).sample(net, x_T))
    b1 = ddim_sampler(S, 5, eta=1.0).sample(net, x_T, torch.Generator().manual_seed(1))
    b2 = ddim_sampler(S, 5, eta=1.0).sample(net, x_T, torch.Generator().manual_seed(2))
    assert not torch.allclose(b1, b2)


def test_ddpm_is_the_textbook_ancestral_sampler():
    """eta=1 over all T steps equals mean = (x - beta/sqrt(1-abar) eps)/sqrt(alpha),
    x += sqrt(beta_tilde) z, with the same z."""
    torch.manual_seed(0)
    x_T = torch.randn(3, 8, dtype=torch.float64)
    net = lambda x, t: torch.tanh(x) * (1 + int(t) / 50)  # noqa: E731
    ours = ddpm_sampler(S).sample(net, x_T, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    x = x_T
    b, a, abar = S.betas, S.alphas, S.alphas_cumprod
    for t in range(49, -1, -1):
        eps = net(x, torch.tensor([t]))
        x = (x - b[t] / math.sqrt(1 - abar[t]) * eps) / math.sqrt(a[t])
        if t > 0:
            var = (1 - abar[t - 1]) / (1 - abar[t]) * b[t]
            x = x + math.sqrt(var) * torch.randn(x.shape, dtype=x.dtype, generator=g)
    assert torch.allclose(ours, x, atol=1e-8)


def test_sampler_refuses_bad_settings():
    for bad, message in ((dict(sampler="dpm"), "sampler must be one of"),
                         (dict(steps=0), "steps must be an int >= 1"),
                         (dict(hypotheses=2.0), "hypotheses must be an int"),
                         (dict(eta=1.5), r"eta must be in \[0, 1\]"),
                         (dict(sampler="ddpm", steps=50, eta=0.0), "'ddpm' is ancestral"),
                         (dict(aggregation="best"), "aggregation must be one of")):
        with pytest.raises(ConfigError, match=message):
            SamplerSettings(**bad)
    with pytest.raises(ConfigError, match="steps must be in 1..50"):
        Sampler(S, SamplerSettings(steps=51))
    with pytest.raises(ConfigError, match="'ddpm' visits all 50 trained steps, got steps = 2"):
        Sampler(S, SamplerSettings(sampler="ddpm", steps=2, eta=1.0))
    with pytest.raises(ValueError, match="prediction"):
        Sampler(S, SamplerSettings(), prediction="v")
    with pytest.raises(TypeError, match="SamplerSettings"):
        Sampler(S, (49, 24))


def test_the_sampler_owns_the_settings_it_runs():
    settings = SamplerSettings("ddim", 3, 4, 0.5, "median")
    sampler = Sampler(S, settings, "x0")
    assert sampler.settings is settings
    assert (sampler.steps, sampler.eta, sampler.timesteps) == (3, 0.5, (49, 32, 16))
    assert settings.as_dict() == {"sampler": "ddim", "steps": 3, "hypotheses": 4, "eta": 0.5,
                                  "aggregation": "median"}
    assert not settings.deterministic and SamplerSettings().deterministic
    with pytest.raises(dataclasses.FrozenInstanceError):   # one object, nobody edits it in place
        settings.steps = 5
    assert settings.replace(hypotheses=1).hypotheses == 1


def test_ddpm_means_all_trained_steps_with_eta_1():
    """`sampler="ddpm"` resolves to what it runs (all T steps, eta 1), never to the config's
    DDIM steps; an explicit contradiction is refused, not ignored."""
    diffusion = from_dict({"diffusion": {"steps": 2, "eta": 0.0, "hypotheses": 3}}).diffusion
    ddpm = SamplerSettings.from_config(diffusion, sampler="ddpm")
    assert ddpm.as_dict() == {"sampler": "ddpm", "steps": 50, "hypotheses": 3, "eta": 1.0,
                              "aggregation": "reproj"}
    assert Sampler(S, ddpm).timesteps == tuple(range(49, -1, -1))
    with pytest.raises(ConfigError, match="'ddpm' runs all 50 trained steps with eta = 1; "
                                          "steps = 2 contradicts it"):
        SamplerSettings.from_config(diffusion, sampler="ddpm", steps=2)
    with pytest.raises(ConfigError, match="eta = 0.0 contradicts it"):
        SamplerSettings.from_config(diffusion, sampler="ddpm", eta=0.0)
    assert SamplerSettings.from_config(diffusion, sampler="ddpm", steps=50).steps == 50
    ddim = SamplerSettings.from_config(diffusion, steps=5, eta=0.2)
    assert (ddim.sampler, ddim.steps, ddim.eta) == ("ddim", 5, 0.2)
    with pytest.raises(ConfigError, match="steps must be in 1..50"):
        SamplerSettings.from_config(diffusion, steps=60)


# --- aggregation --------------------------------------------------------------------------


def _scene(h=4, l=2, j=17, seed=0):
    """Random root-relative hypotheses (1, H, L, J, 3)."""
    g = torch.Generator().manual_seed(seed)
    hyps = torch.randn(1, h, l, j, 3, generator=g) * 0.3
    return hyps - hyps[..., :1, :]


def test_reproj_picks_the_hypothesis_that_reprojects_onto_the_2d():
    """Hypothesis h is the true pose with 0.15 m errors on the joints j % 3 == h and exact
    elsewhere; per joint, reproj must pick an exact one (so the output is the true pose)."""
    g = torch.Generator().manual_seed(0)
    true = _scene(h=1, seed=1)[:, 0]                    # (1, L, J, 3)
    hyps = true.unsqueeze(1).repeat(1, 3, 1, 1, 1)
    joints = torch.arange(17)
    for h in range(3):
        wrong = (joints % 3 == h) & (joints != 0)
        hyps[0, h, :, wrong] += 0.15 * torch.randn(2, int(wrong.sum()), 3, generator=g)
    # Observed 2D: the true pose under a weak-perspective camera (scale 0.8, offset (0.1, -0.2)).
    uv_n = 0.8 * true[..., :2] + torch.tensor([0.1, -0.2])
    mask = torch.ones(1, 2, 17)
    mask[0, 0, 7] = 0                                   # a missing joint takes the mean
    pose, spread = aggregate(hyps, uv_n, mask, "reproj")
    expected = true.clone()
    expected[0, 0, 7] = hyps[0, :, 0, 7].mean(0)
    assert torch.allclose(pose, expected, atol=1e-6)
    mean_pose, _ = aggregate(hyps, uv_n, mask, "mean")
    assert not torch.allclose(mean_pose, expected, atol=1e-3)   # the case is not trivial
    errors = reprojection_errors(hyps, uv_n, mask)
    assert errors.shape == (1, 3, 2, 17)
    assert spread.shape == (1, 2, 17) and torch.all(spread[..., 1:] > 0)


def test_reproj_ignores_a_missing_joints_coordinates():
    hyps = _scene(seed=3)
    uv_n = 0.5 * hyps[:, 1, ..., :2]
    mask = torch.ones(1, 2, 17)
    mask[0, :, 4] = 0
    a, _ = aggregate(hyps, uv_n, mask, "reproj")
    uv_n2 = uv_n.clone()
    uv_n2[0, :, 4] = 5.0
    b, _ = aggregate(hyps, uv_n2, mask, "reproj")
    assert torch.allclose(a, b)


def test_mean_median_spread():
    hyps = torch.zeros(1, 3, 1, 2, 3)
    hyps[0, :, 0, 1, 0] = torch.tensor([0.0, 0.1, 0.5])
    uv = torch.zeros(1, 1, 2, 2)
    mask = torch.ones(1, 1, 2)
    mean, spread = aggregate(hyps, uv, mask, "mean")
    assert mean[0, 0, 1, 0].item() == pytest.approx(0.2)
    assert spread[0, 0, 0].item() == 0.0
    assert spread[0, 0, 1].item() == pytest.approx(math.sqrt((0.04 + 0.01 + 0.09) / 3))
    median, _ = aggregate(hyps, uv, mask, "median")
    assert median[0, 0, 1, 0].item() == pytest.approx(0.1)
    even = aggregate_median(hyps[:, :2])
    assert even[0, 0, 1, 0].item() == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(hyps, uv, mask, "oracle")


def test_normalised_uv_of_reproj_matches_camera_module():
    """The pipeline hands normalize_screen's output to reproj: a sanity check of the units."""
    uv = normalize_screen(torch.tensor([[320.0, 240.0]]), torch.tensor([[640.0, 480.0]]))
    assert torch.allclose(uv, torch.zeros(1, 2))


@pytest.mark.parametrize("h", [1, 2, 3, 4, 5])
def test_median_matches_torch_with_ties(h):
    x = torch.randn(2, h, 3, 17, 3, generator=torch.Generator().manual_seed(h))
    x[:, :, 0] = 0.5                                   # every hypothesis ties on frame 0
    x[:, : h // 2, 1, 3] = -1.0                        # a partial tie
    want = x.median(dim=1).values if h % 2 else torch.sort(x, dim=1).values[:, h // 2 - 1:h // 2 + 1].mean(1)
    assert torch.allclose(aggregate_median(x), want)
