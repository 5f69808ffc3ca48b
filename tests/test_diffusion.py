"""The cosine schedule's published facts, q_sample and the training loss."""
import math

import pytest
import torch

from diffhpe_models.diffusion import cosine_schedule, diffusion_loss, q_sample


def test_cosine_schedule_facts():
    s = cosine_schedule(50, max_beta=0.5)
    assert s.timesteps == 50
    assert s.alphas_cumprod[-1].item() == pytest.approx(1.1e-3, rel=0.05)
    clipped = (s.betas == 0.5).nonzero().flatten().tolist()
    assert clipped == [47, 48, 49]                   # the last 3 betas hit the clip
    assert torch.all(s.betas[:-3] < 0.5)
    assert torch.all(torch.diff(s.betas) >= 0)
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(s.alphas, 0))
    # Unclipped steps follow alpha_bar(t) = cos^2(((t/T)+0.008)/1.008 * pi/2) / alpha_bar(0).
    f = lambda x: math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert s.alphas_cumprod[9].item() == pytest.approx(f(10 / 50) / f(0), rel=1e-9)
    assert s.alphas_cumprod[0].item() == pytest.approx(0.99825, abs=1e-5)


def test_q_sample_moments():
    s = cosine_schedule(50)
    x0 = torch.full((20000, 3), 0.5, dtype=torch.float64)
    noise = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.full((20000,), 25)
    xt = q_sample(s, x0, t, noise)
    abar = s.alphas_cumprod[25]
    assert xt.mean().item() == pytest.approx(0.5 * abar.sqrt().item(), abs=0.02)
    assert xt.std().item() == pytest.approx((1 - abar).sqrt().item(), rel=0.03)
    # t = 0 keeps almost all signal; t = T-1 almost none.
    x_first = q_sample(s, x0[:1], torch.tensor([0]), noise[:1])
    x_last = q_sample(s, x0[:1], torch.tensor([49]), noise[:1])
    assert torch.allclose(x_first, x0[:1], atol=0.2)
    assert torch.allclose(x_last, noise[:1], atol=0.05)


@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_loss_is_zero_for_the_exact_predictor_only(prediction):
    s = cosine_schedule(50)
    x0 = torch.randn(64, 27, 17, 3) * 0.3

    def oracle(x_t, t):
        abar = s.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        return eps if prediction == "epsilon" else x0

    g = torch.Generator().manual_seed(0)
    assert diffusion_loss(oracle, s, x0, prediction, generator=g).item() < 1e-8
    zero = diffusion_loss(lambda x_t, t: torch.zeros_like(x_t), s, x0, prediction)
    expected = 1.0 if prediction == "epsilon" else 0.09
    assert zero.item() == pytest.approx(expected, rel=0.1)
    with pytest.raises(ValueError, match="prediction"):
        diffusion_loss(oracle, s, x0, "v")
