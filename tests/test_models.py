"""MixSTE, the GCN denoiser and the whole LiftingPipeline: shapes, causality, conditioning."""
import dataclasses

import pytest
import torch

from diffhpe_models.config import ConfigError, DenoiserConfig, MixSTEConfig, from_dict, load_config
from diffhpe_models.denoiser import Denoiser
from diffhpe_models.lifter import LiftingPipeline, build_model
from diffhpe_models.mixste import MixSTE

L, J = 27, 17


def _inputs(p=2, h=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(p, L, J, 2, generator=g) * torch.tensor([640.0, 480.0])
    mask = (torch.rand(p, L, J, generator=g) > 0.2).float()
    wh = torch.tensor([[640.0, 480.0]]).repeat(p, 1)
    noise = torch.randn(p, h, L, J, 3, generator=g)
    return kp, mask, wh, noise


def _trained_like(module, seed=1):
    """Random non-zero weights everywhere (the zero-initialised heads would hide dependencies)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module.eval()


def test_mixste_shapes_and_features():
    m = MixSTE(MixSTEConfig(embed_dim=16, depth=2, heads=2), L, causal=True).eval()
    x = torch.randn(3, L, J, 2)
    mask = torch.ones(3, L, J)
    assert m(x, mask).shape == (3, L, J, 3)
    assert m.features(x, mask).shape == (3, L, J, 16)
    with pytest.raises(ValueError, match="x2d_n must be"):
        m(torch.randn(3, L + 1, J, 2), torch.ones(3, L + 1, J))


@pytest.mark.parametrize("causal", [True, False])
def test_mixste_causal_mask(causal):
    m = _trained_like(MixSTE(MixSTEConfig(embed_dim=16, depth=2, heads=2, drop_path=0.0), L, causal))
    x = torch.randn(1, L, J, 2)
    mask = torch.ones(1, L, J)
    x2 = x.clone()
    x2[:, 20:] += 1.0                      # change the future of frame 19
    y1, y2 = m(x, mask), m(x2, mask)
    unchanged = torch.allclose(y1[:, :20], y2[:, :20], atol=1e-5)
    assert unchanged == causal
    assert not torch.allclose(y1[:, 20:], y2[:, 20:])


def test_missing_keypoints_are_zeroed_inside():
    """A missing keypoint's coordinates must not matter (only mask = 0 does)."""
    m = _trained_like(MixSTE(MixSTEConfig(embed_dim=16, depth=2, heads=2), L, True))
    x = torch.randn(1, L, J, 2)
    mask = torch.ones(1, L, J)
    mask[0, 5, 3] = 0
    x2 = x.clone()
    x2[0, 5, 3] = 100.0
    assert torch.allclose(m(x, mask), m(x2, mask), atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_denoiser_causal_and_shapes(causal):
    cfg = DenoiserConfig(channels=16, blocks=2, nonlocal_channels=8, time_embedding_dim=16)
    d = _trained_like(Denoiser(cfg, L, causal, timesteps=50, condition_channels=3, embed_pose=False))
    cond = torch.randn(2, L, J, 3)
    x = torch.randn(2, L, J, 3)
    t = torch.tensor([3, 40])
    enc = d.encode_condition(cond)
    assert enc.shape == (J, L, 2, 16)
    y1 = d(x, t, enc)
    assert y1.shape == (2, L, J, 3)
    x2 = x.clone()
    x2[:, 15:] += 1.0
    y2 = d(x2, t, enc)
    assert torch.allclose(y1[:, :15], y2[:, :15], atol=1e-5) == causal
    # The timestep and the condition both change the output.
    assert not torch.allclose(d(x, torch.tensor([10, 10]), enc), d(x, torch.tensor([20, 20]), enc))
    assert not torch.allclose(y1, d(x, t, d.encode_condition(cond + 1)))


def test_denoiser_batch_is_independent():
    """BatchNorm in eval and the grouped non-local block must not mix samples of a batch."""
    cfg = DenoiserConfig(channels=16, blocks=2, nonlocal_channels=8, time_embedding_dim=16)
    d = _trained_like(Denoiser(cfg, L, True, 50, 3, False))
    x = torch.randn(4, L, J, 3)
    cond = torch.randn(4, L, J, 3)
    full = d(x, torch.tensor([7]), d.encode_condition(cond))
    one = d(x[2:3], torch.tensor([7]), d.encode_condition(cond[2:3]))
    assert torch.allclose(full[2:3], one, atol=1e-5)


def test_reference_sizes():
    """The reference config reproduces the published sizes (~3.2 M denoiser, ~0.54 M MixSTE)."""
    cfg = load_config("training/configs/diffhpe_wrapper_reference.yaml")
    model = build_model(cfg)
    n_den = sum(p.numel() for p in model.denoiser.parameters())
    n_mix = sum(p.numel() for p in model.mixste.parameters())
    assert 3.1e6 < n_den < 3.3e6
    assert 0.52e6 < n_mix < 0.56e6
    assert cfg.model.denoiser.channels == 64 and cfg.model.denoiser.blocks == 16


def test_shipped_default_is_small():
    """The CPU default must be several times smaller than the reference."""
    ref = build_model(load_config("training/configs/diffhpe_wrapper_reference.yaml"))
    default = build_model(load_config("training/configs/diffhpe_wrapper.yaml"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(default) * 4 < count(ref)


def test_wrapper_mixste_is_frozen_and_stays_in_eval():
    model = build_model(from_dict({"model": {"variant": "diffhpe_wrapper"}}))
    model.train()
    assert not model.mixste.training and model.denoiser.training
    assert not any(p.requires_grad for p in model.mixste.parameters())
    assert all(p.requires_grad for p in model.denoiser.parameters())


@pytest.mark.parametrize("variant", ["mixste", "diffhpe_2d", "diffhpe_wrapper"])
def test_pipeline_shapes_and_root(variant):
    cfg = from_dict({"model": {"variant": variant}, "diffusion": {"steps": 2, "hypotheses": 3}})
    pipe = LiftingPipeline(_trained_like(build_model(cfg)), cfg)
    kp, mask, wh, noise = _inputs(p=2, h=3)
    pose, spread = pipe(kp, mask, wh, noise)
    assert pose.shape == (2, L, J, 3) and spread.shape == (2, L, J)
    assert torch.all(pose[..., 0, :] == 0)          # root-relative
    assert torch.isfinite(pose).all()
    if variant == "mixste":
        assert torch.all(spread == 0)
    else:
        assert torch.all(spread[..., 1:] > 0)


def test_pipeline_people_are_independent_and_deterministic():
    cfg = from_dict({"model": {"variant": "diffhpe_2d"}, "diffusion": {"steps": 3, "hypotheses": 4}})
    pipe = LiftingPipeline(_trained_like(build_model(cfg)), cfg, aggregation="reproj")
    kp, mask, wh, noise = _inputs(p=3, h=4)
    pose, spread = pipe(kp, mask, wh, noise)
    pose_b, _ = pipe(kp, mask, wh, noise)
    assert torch.equal(pose, pose_b)                 # DDIM eta=0: a function of the noise
    one, one_spread = pipe(kp[1:2], mask[1:2], wh[1:2], noise[1:2])
    assert torch.allclose(one, pose[1:2], atol=1e-5)
    assert torch.allclose(one_spread, spread[1:2], atol=1e-5)
    other, _ = pipe(kp, mask, wh, torch.randn_like(noise))
    assert not torch.allclose(other, pose)


def test_pipeline_wrapper_computes_features_once_per_window():
    cfg = from_dict({"model": {"variant": "diffhpe_wrapper"}, "diffusion": {"steps": 4, "hypotheses": 5}})
    model = _trained_like(build_model(cfg))
    calls = []
    orig = model.mixste.features

    def counted(*a):
        calls.append(1)
        return orig(*a)
    model.mixste.features = counted
    LiftingPipeline(model, cfg)(*_inputs(p=2, h=5))
    assert len(calls) == 1


def test_pipeline_refuses_bad_shapes_and_settings():
    cfg = from_dict({"model": {"variant": "diffhpe_2d"}, "diffusion": {"hypotheses": 2}})
    pipe = LiftingPipeline(build_model(cfg), cfg)
    kp, mask, wh, noise = _inputs(p=1, h=3)
    with pytest.raises(ValueError, match="noise must be"):
        pipe(kp, mask, wh, noise)
    with pytest.raises(ValueError, match="mask must be"):
        pipe(kp, mask[:, :-1], wh, noise[:, :2])
    with pytest.raises(ConfigError, match="aggregation must be one of"):
        LiftingPipeline(build_model(cfg), cfg, aggregation="best")
    with pytest.raises(ConfigError, match="steps must be an int >= 1"):
        LiftingPipeline(build_model(cfg), cfg, steps=0)
    with pytest.raises(ValueError, match=r"image_wh must be \(P, 2\) for a 'screen' model"):
        pipe(kp, mask, torch.ones(1, 4), noise[:, :2])
    mixste = from_dict({"model": {"variant": "mixste"}})
    with pytest.raises(ConfigError, match="'mixste' model is deterministic"):
        LiftingPipeline(build_model(mixste), mixste, steps=2)


def test_pipeline_settings_are_what_the_sampler_runs():
    """One source of truth: sampler="ddpm" runs (and reports) all T steps with eta 1."""
    cfg = from_dict({"model": {"variant": "diffhpe_2d"},
                     "diffusion": {"timesteps": 20, "steps": 2, "hypotheses": 2}})
    pipe = LiftingPipeline(build_model(cfg), cfg, sampler="ddpm")
    assert pipe.settings is pipe.sampler.settings
    assert (pipe.settings.steps, pipe.settings.eta) == (20, 1.0)
    assert len(pipe.sampler.timesteps) == 20 and pipe.sampler.eta == 1.0
    assert cfg.diffusion.steps == 2                  # the checkpoint config is not rewritten
    calls = []
    denoiser = pipe.model.denoiser
    denoiser.register_forward_hook(lambda *a: calls.append(1))
    pipe(*_inputs(p=1, h=2))
    assert len(calls) == 20


def test_rays_pipeline_normalises_by_the_intrinsics():
    """A "rays" model sees (u - cx) / fx: the same rays from two cameras give the same pose;
    the image size is not an input."""
    cfg = from_dict({"data": {"input_normalisation": "rays"}, "model": {"variant": "diffhpe_2d"},
                     "diffusion": {"steps": 2, "hypotheses": 2}})
    pipe = LiftingPipeline(_trained_like(build_model(cfg)), cfg)
    assert pipe.input_names == ("keypoints_px", "mask", "intrinsics", "noise")
    kp, mask, _, noise = _inputs(p=2, h=2)
    k = torch.tensor([[500.0, 500.0, 320.0, 240.0]]).repeat(2, 1)
    pose, _ = pipe(kp, mask, k, noise)
    # Another camera (focal x2, shifted principal point) seeing the same rays.
    k2 = torch.tensor([[1000.0, 1000.0, 700.0, 500.0]]).repeat(2, 1)
    kp2 = (kp - k[:, None, None, 2:]) / k[:, None, None, :2] * k2[:, None, None, :2] + k2[:, None, None, 2:]
    pose2, _ = pipe(kp2, mask, k2, noise)
    assert torch.allclose(pose, pose2, atol=1e-5)
    # Not vacuous: other intrinsics for the same pixels change the pose.
    pose3, _ = pipe(kp, mask, k2, noise)
    assert not torch.allclose(pose, pose3, atol=1e-3)
    with pytest.raises(ValueError, match=r"intrinsics must be \(P, 4\) for a 'rays' model"):
        pipe(kp, mask, torch.ones(2, 2), noise)


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  denoiser:\n    blocks: four\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: model.denoiser.blocks: expected int, got str"):
        load_config(bad)
    bad.write_text("model:\n  denoiser:\n    blockz: 4\n")
    with pytest.raises(ConfigError, match=r"unknown field model.denoiser.blockz"):
        load_config(bad)
    bad.write_text("train: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"train: expected a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    cfg = from_dict({"train": {"lr": 1}})
    assert isinstance(cfg.train.lr, float)
    with pytest.raises(ConfigError, match="model.variant"):
        dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, variant="vit"))
    with pytest.raises(ConfigError, match=r"data.noise_sigma_frac_max: must be 0 \(off\) or >="):
        from_dict({"data": {"noise_sigma_frac": 0.01, "noise_sigma_frac_max": 0.005}})
    assert from_dict({"data": {"noise_sigma_frac_max": 0.04}}).data.noise_sigma_frac_max == 0.04
    with pytest.raises(ConfigError, match=r"data.keypoint_bias_frac: must be in \[0, 0.2\]"):
        from_dict({"data": {"keypoint_bias_frac": -0.01}})


@pytest.mark.parametrize("variant,aggregation,steps,normalisation", [
    ("mixste", "mean", 1, "screen"), ("diffhpe_2d", "median", 3, "screen"),
    ("diffhpe_2d", "reproj", 1, "rays"), ("diffhpe_wrapper", "reproj", 2, "screen"),
    ("diffhpe_wrapper", "mean", 1, "rays")])
def test_pipeline_exports_to_onnx_opset17(tmp_path, variant, aggregation, steps, normalisation):
    """The whole pipeline traces into one ONNX graph (the project's exporter and checks: opset
    17, TensorRT op set, static shapes but persons) that onnxruntime runs like PyTorch."""
    from diffhpe_models.export import export_pipeline_onnx, onnx_parity

    cfg = from_dict({"data": {"window": 9, "input_normalisation": normalisation},
                     "model": {"variant": variant, "mixste": {"embed_dim": 16, "depth": 1, "heads": 2},
                               "denoiser": {"channels": 16, "blocks": 2, "nonlocal_channels": 8,
                                            "time_embedding_dim": 16, "pose_embedding_dim": 8}},
                     "diffusion": {"steps": steps, "hypotheses": 4, "aggregation": aggregation}})
    pipe = LiftingPipeline(_trained_like(build_model(cfg)), cfg)
    path = tmp_path / "lifter.onnx"
    model = export_pipeline_onnx(pipe, path)
    assert [i.name for i in model.graph.input][2] == ("image_wh" if normalisation == "screen"
                                                      else "intrinsics")
    assert onnx_parity(pipe, path) < 1e-4


def test_pose_scale_runs_the_diffusion_in_scaled_units():
    # The same network in a config with pose_scale_m = s returns s x the metres-as-is output:
    # the sampler works on pose / s and the pipeline multiplies back (mean aggregation is linear).
    import copy

    from conftest import TINY_CONFIG

    from diffhpe_models.config import from_dict
    from diffhpe_models.lifter import LiftingPipeline, build_model

    base = copy.deepcopy(TINY_CONFIG)
    base["diffusion"]["aggregation"] = "mean"
    scaled = copy.deepcopy(base)
    scaled["diffusion"]["pose_scale_m"] = 0.25
    torch.manual_seed(0)
    model = build_model(from_dict(base))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.1)
    scaled_model = build_model(from_dict(scaled))          # the scale is the model's (its config)
    scaled_model.load_state_dict(model.state_dict())
    a = LiftingPipeline(model, from_dict(base))
    b = LiftingPipeline(scaled_model, from_dict(scaled))
    l, h = a.window, a.hypotheses
    kp = torch.rand(2, l, 17, 2) * 500
    mask = torch.ones(2, l, 17)
    wh = torch.tensor([[640.0, 480.0]] * 2)
    noise = torch.randn(2, h, l, 17, 3)
    with torch.no_grad():
        pose_a, spread_a = a(kp, mask, wh, noise)
        pose_b, spread_b = b(kp, mask, wh, noise)
    assert pose_a.abs().max() > 1e-3
    torch.testing.assert_close(pose_b, 0.25 * pose_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(spread_b, 0.25 * spread_a, rtol=1e-4, atol=1e-6)
