"""Evaluation: metrics over windows, the occlusion matrix, the report CLI.

Real parts throughout: real mocap (bvhtools' test3.bvh, read from the pip cache), a dataset file
written with dataset.save_dataset, small untrained checkpoints (random weights, so outputs depend
on the input), the real LiftingPipeline.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffhpe_models import evaluation as ev
from diffhpe_models import metrics, mocap
from diffhpe_models.dataset import save_dataset
from diffhpe_models.evaluation_report import to_jsonable
from diffhpe_models.fetch import fetch_package

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import evaluate as evaluate_cli  # noqa: E402
import occlusion_matrix as matrix_cli  # noqa: E402
from conftest import make_untrained_checkpoint  # noqa: E402

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "packages"
WINDOW = 9
SMALL = {
    "data": {"window": WINDOW, "window_mode": "causal", "occlusion": "none"},
    "model": {"mixste": {"embed_dim": 16, "depth": 1, "heads": 2},
              "denoiser": {"channels": 16, "blocks": 1, "nonlocal_channels": 8,
                           "time_embedding_dim": 16, "pose_embedding_dim": 8}},
    "diffusion": {"steps": 2, "hypotheses": 3, "aggregation": "mean"},
}


def small_config(variant: str, occlusion: str = "none", mode: str = "causal") -> dict:
    c = copy.deepcopy(SMALL)
    c["name"] = f"{variant}_{occlusion}"
    c["model"]["variant"] = variant
    c["data"].update(occlusion=occlusion, window_mode=mode)
    return c


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory) -> Path:
    """Short chunks of a real BVH take (24 fps) as train / validation / two test sequences."""
    archive = fetch_package(*mocap.BVHTOOLS, CACHE, sdist=True)  # the one source needed here
    src = next(s for s in mocap.BVH_SOURCES if s.file == "test3.bvh")
    pose, fps, member, _ = mocap.load_bvh_source(archive, src)
    chunks = {"rigify/train": (0, 120, "train"), "rigify/val": (400, 460, "validation"),
              "rigify/test_a": (2500, 2548, "test"), "rigify/test_b": (2900, 2950, "test")}
    sequences = {k: pose[a:b] for k, (a, b, _) in chunks.items()}
    meta = {k: {"fps": fps, "source": f"bvhtools==1.6.0:{member}", "split": split}
            for k, (_, _, split) in chunks.items()}
    return save_dataset(tmp_path_factory.mktemp("data") / "tiny.npz", sequences, meta)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    return {v: make_untrained_checkpoint(d / f"{v}.pt", small_config(v), seed=i)
            for i, v in enumerate(("mixste", "diffhpe_2d", "diffhpe_wrapper"))}


@pytest.fixture(scope="module")
def matrix_runs(tmp_path_factory) -> Path:
    """runs/<pattern>/<model>/best.pt for 2 patterns, as training/occlusion_matrix.py lays out."""
    runs = tmp_path_factory.mktemp("occlusion")
    for i, pattern in enumerate(("none", "structured_frame")):
        for kind in ev.MATRIX_MODELS:
            path = ev.matrix_checkpoint(runs, pattern, kind)
            path.parent.mkdir(parents=True)
            make_untrained_checkpoint(path, small_config(kind, pattern), seed=10 + i)
    return runs


# --- metrics over windows ------------------------------------------------------------------


def test_window_metrics_use_the_target_frame_and_equal_metrics_module():
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 0.3, (6, WINDOW, 17, 3))
    pred = gt + rng.normal(0, 0.05, gt.shape)
    for mode, t in (("causal", WINDOW - 1), ("centred", WINDOW // 2)):
        m = ev.window_metrics(pred, gt, mode)
        assert m["mpjpe_mm"] == pytest.approx(metrics.mpjpe(pred[:, t], gt[:, t]), rel=1e-12)
        assert m["p_mpjpe_mm"] == pytest.approx(metrics.p_mpjpe(pred[:, t], gt[:, t]), rel=1e-12)
        assert m["mpjve_mm"] == pytest.approx(metrics.mpjve(pred, gt), rel=1e-12)
        assert m["accel_error_mm"] == pytest.approx(metrics.accel_error(pred, gt), rel=1e-12)
        assert m["segment_std_mm"] == pytest.approx(metrics.segment_std(pred), rel=1e-12)
        assert m["sagittal_symmetry_gap_mm"] == pytest.approx(
            metrics.sagittal_symmetry_gap(pred), rel=1e-12)
    # The target frame matters: an error only on the last frame shows in causal, not centred.
    pred2 = gt.copy()
    pred2[:, -1] += 0.1
    assert ev.window_metrics(pred2, gt, "causal")["mpjpe_mm"] == pytest.approx(100 * np.sqrt(3))
    assert ev.window_metrics(pred2, gt, "centred")["mpjpe_mm"] == 0.0
    with pytest.raises(ValueError, match="window mode"):
        ev.window_metrics(pred, gt, "middle")


def test_mean_over_uneven_batches_equals_mean_over_all_windows():
    rng = np.random.default_rng(1)
    gt = rng.normal(0, 0.3, (11, WINDOW, 17, 3))
    pred = gt + rng.normal(0, 0.05, gt.shape)
    acc = ev.MeanOverWindows()
    for lo, hi in ((0, 4), (4, 5), (5, 11)):
        acc.add(ev.window_metrics(pred[lo:hi], gt[lo:hi], "causal"), hi - lo)
    whole = ev.window_metrics(pred, gt, "causal")
    for k, v in acc.result().items():
        assert v == pytest.approx(whole[k], rel=1e-10), k
    with pytest.raises(ValueError, match="no windows"):
        ev.MeanOverWindows().result()


def test_degradation_of_a_matrix():
    d = ev.degradation(np.array([[10.0, 30.0], [50.0, 20.0]]))
    assert d["diagonal_mm"] == 15.0 and d["off_diagonal_mm"] == 40.0
    assert d["degradation_mm"] == 25.0 and d["relative"] == pytest.approx(25 / 15)
    d = ev.degradation(np.array([[10.0, np.nan], [50.0, np.nan]]))  # a row not trained
    assert d["diagonal_mm"] == 10.0 and d["off_diagonal_mm"] == 50.0
    with pytest.raises(ValueError, match="square"):
        ev.degradation(np.zeros((2, 3)))


# --- models on real windows ----------------------------------------------------------------


def test_evaluation_equals_direct_computation_whatever_the_batch(dataset_file, checkpoints):
    subset = ev.split_sequences(dataset_file, "test")
    models = {k: ev.load_model(k, checkpoints[k], "cpu") for k in ("mixste", "diffhpe_wrapper")}
    windows = ev.make_windows(subset, ev.WindowProtocol.of(models.values()), "causal", "random",
                              seed=3)
    indices = ev.strided(len(windows), 4)
    got = ev.evaluate_windows(models, windows, indices, "causal", "cpu", batch_size=5, seed=7)
    again = ev.evaluate_windows(models, windows, indices, "causal", "cpu", batch_size=5, seed=7)
    assert got == again  # deterministic

    batch = ev._stack([windows[i] for i in indices])  # all windows in one batch, by hand
    for name, model in models.items():
        noise = np.random.default_rng(7).standard_normal(
            (len(indices), model.hypotheses, WINDOW, 17, 3), dtype=np.float32)
        pred, _ = ev.lift(model, batch, noise, "cpu")
        t = WINDOW - 1
        assert got[name]["mpjpe_mm"] == pytest.approx(
            metrics.mpjpe(pred[:, t], batch["pose3d_m"][:, t]), rel=1e-5)
        assert got[name]["segment_std_mm"] == pytest.approx(metrics.segment_std(pred), rel=1e-5)
    assert got["ground_truth"]["segment_std_mm"] == pytest.approx(
        metrics.segment_std(batch["pose3d_m"]), rel=1e-6)
    # A different noise seed changes the diffusion model, not the deterministic one.
    other = ev.evaluate_windows(models, windows, indices, "causal", "cpu", batch_size=5, seed=8)
    assert other["mixste"] == got["mixste"]
    assert other["diffhpe_wrapper"]["mpjpe_mm"] != got["diffhpe_wrapper"]["mpjpe_mm"]


def test_a_rays_model_is_fed_the_windows_camera(dataset_file, tmp_path):
    """A camera-aware checkpoint gets each window's intrinsics (`camera`), a screen one its image
    size: the same `lift` call serves both."""
    config = small_config("diffhpe_2d")
    config["data"]["input_normalisation"] = "rays"
    path = make_untrained_checkpoint(tmp_path / "rays.pt", config)
    model = ev.load_model("rays", path, "cpu")
    windows = ev.make_windows(ev.split_sequences(dataset_file, "test"),
                              ev.WindowProtocol.of([model]), "causal", "none", seed=1)
    batch = ev._stack([windows[i] for i in range(4)])
    noise = np.random.default_rng(0).standard_normal((4, 3, WINDOW, 17, 3), dtype=np.float32)
    pose, _ = ev.lift(model, batch, noise, "cpu")
    with torch.inference_mode():
        want, _ = model.pipeline(*(torch.from_numpy(np.asarray(a, np.float32)) for a in
                                   (batch["keypoints_px"], batch["mask"], batch["camera"], noise)))
    np.testing.assert_allclose(pose, want.numpy(), atol=1e-6)
    assert batch["camera"].shape == (4, 4)


def test_bad_inputs_name_the_problem(dataset_file, checkpoints, tmp_path):
    subset = ev.split_sequences(dataset_file, "test")
    with pytest.raises(ValueError, match="stride"):
        ev.strided(10, 0)
    with pytest.raises(ValueError, match="occlusion pattern 'elbow'"):
        ev.make_windows(subset, ev.WindowProtocol(WINDOW, 30.0, 0.01, 0.0), "causal", "elbow", 0)
    with pytest.raises(ValueError, match="split"):
        ev.split_sequences(dataset_file, "dev")
    with pytest.raises(ValueError, match="missing.pt"):
        ev.load_model("x", tmp_path / "missing.pt", "cpu")
    with pytest.raises(ValueError, match="diffusion checkpoint"):
        ev.sampler_tradeoff("mixste", checkpoints["mixste"], subset, "cpu")
    longer = small_config("mixste")
    longer["data"]["window"] = WINDOW + 2
    other = make_untrained_checkpoint(tmp_path / "w11.pt", longer)
    models = [ev.load_model("a", checkpoints["mixste"], "cpu"), ev.load_model("b", other, "cpu")]
    with pytest.raises(ValueError, match="differ in data.window"):
        ev.WindowProtocol.of(models)


def test_occlusion_matrix_on_two_patterns(dataset_file, matrix_runs):
    subset = ev.split_sequences(dataset_file, "test")
    patterns = ("none", "structured_frame")
    res = ev.occlusion_matrix(matrix_runs, subset, "cpu", patterns, stride=6, batch_size=64)
    assert res["patterns"] == list(patterns) and res["missing"] == []
    for kind in ev.MATRIX_MODELS:
        m = np.array(res["models"][kind]["matrix_mm"], dtype=float)
        assert m.shape == (2, 2) and np.isfinite(m).all() and (m > 0).all()
        assert m[0, 0] != m[0, 1]  # the test pattern reaches the input
        assert res["models"][kind]["degradation_mm"] == pytest.approx(
            (m[0, 1] + m[1, 0]) / 2 - (m[0, 0] + m[1, 1]) / 2)
    # A cell of the matrix is the plain evaluation of that checkpoint on that test pattern.
    model = ev.load_model("m", ev.matrix_checkpoint(matrix_runs, "none", "mixste"), "cpu")
    windows = ev.make_windows(subset, ev.WindowProtocol.of([model]), "causal",
                              "structured_frame", 0)
    direct = ev.evaluate_windows({"m": model}, windows, ev.strided(len(windows), 6), "causal",
                                 "cpu")
    assert res["models"]["mixste"]["matrix_mm"][0][1] == pytest.approx(direct["m"]["mpjpe_mm"])


def test_occlusion_matrix_leaves_untrained_rows_empty(dataset_file, matrix_runs, tmp_path):
    runs = tmp_path / "runs"
    src = ev.matrix_checkpoint(matrix_runs, "none", "mixste")
    dst = ev.matrix_checkpoint(runs, "none", "mixste")
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    subset = ev.split_sequences(dataset_file, "test")
    res = ev.occlusion_matrix(runs, subset, "cpu", ("none", "random"), stride=12)
    m = res["models"]["mixste"]["matrix_mm"]
    assert m[1] == [None, None] and all(v is not None for v in m[0])
    assert "diffhpe_wrapper" not in res["models"]
    assert str(ev.matrix_checkpoint(runs, "random", "mixste")) in res["missing"]
    with pytest.raises(FileNotFoundError, match="no occlusion-matrix checkpoints"):
        ev.occlusion_matrix(tmp_path / "empty", subset, "cpu", ("none",))


def test_derived_configs_of_the_matrix(tmp_path):
    from diffhpe_models.config import from_dict, save_config

    base = tmp_path / "wrapper.yaml"
    save_config(from_dict(small_config("diffhpe_wrapper", "random")), base)
    c = matrix_cli.derived_config(base, "diffhpe_wrapper", "structured_joint", tmp_path / "runs")
    assert c.data.occlusion == "structured_joint"
    assert c.model.conditioner_checkpoint == str(
        ev.matrix_checkpoint(tmp_path / "runs", "structured_joint", "mixste"))
    assert c.name.endswith("structured_joint")
    with pytest.raises(ValueError, match="expected 'mixste'"):
        matrix_cli.derived_config(base, "mixste", "none", tmp_path / "runs")


# --- the report ----------------------------------------------------------------------------


def test_evaluate_cli_writes_the_report(dataset_file, checkpoints, matrix_runs, tmp_path):
    out = tmp_path / "docs"
    argv = ["--checkpoints"] + [f"{k}={v}" for k, v in checkpoints.items()] + [
        "--dataset", str(dataset_file), "--occlusion-runs", str(matrix_runs),
        "--patterns", "none", "structured_frame", "--stride", "6", "--sampler-stride", "12",
        "--sampler-steps", "1", "2", "--sampler-hypotheses", "1", "2", "--timing-threads", "1",
        "--timing-seconds", "0.02", "--examples", "2", "--stream-frames", "40", "--out", str(out),
        "--mirror", "diffhpe_wrapper"]
    assert evaluate_cli.main(argv) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["split"] == "test" and report["stride"] == 6
    assert report["models"]["diffhpe_wrapper+mirror"]["mirror"] is True
    assert report["models"]["diffhpe_wrapper"]["mirror"] is False
    assert "| diffhpe_wrapper+mirror | diffhpe_wrapper |" in (out / "evaluation.md").read_text()
    assert "with its mirror image (mean)" in (out / "evaluation.md").read_text()
    for mode in ev.MODES:
        res = report["comparison"][mode]["metrics"]
        assert set(res) == {*checkpoints, "diffhpe_wrapper+mirror", "ground_truth"}
        # Mirroring changes the answer (the untrained model is far from mirror-symmetric).
        assert res["diffhpe_wrapper+mirror"]["mpjpe_mm"] != res["diffhpe_wrapper"]["mpjpe_mm"]
        for name in [*checkpoints, "diffhpe_wrapper+mirror"]:
            assert set(res[name]) == set(ev.METRICS)
            assert all(np.isfinite(v) for v in res[name].values()), (mode, name)
    occ = report["occlusion"]["models"]
    assert set(occ) == set(ev.MATRIX_MODELS)
    assert all(np.isfinite(occ[k]["degradation_mm"]) for k in occ)
    grid = report["sampler"]["grid"]
    # The grid, plus the checkpoint's default (2 steps, H = 3) that is always measured.
    assert {(r["steps"], r["hypotheses"]) for r in grid} == {(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)}
    assert all(r["ms_per_window"] > 0 and np.isfinite(r["mpjpe_mm"]) for r in grid)
    # Every aggregation the (non-residual) checkpoint can run: 'conditioner' needs a residual one.
    assert [a["aggregation"] for a in report["sampler"]["aggregations"]] == ["mean", "median", "reproj"]
    assert len(report["claims"]) == 6
    assert all(c["holds"] in (True, False) for c in report["claims"])
    streams = report["streams"]
    assert streams["streams"] == 2 and streams["frames"] == 80
    for name in checkpoints:
        overall = streams["models"][name]["overall"]
        assert overall["frames"] == 80 and all(np.isfinite(v) for v in overall.values())
        assert set(streams["models"][name]["by_content"]) == {"rigify"}
    assert "calibration" not in streams["models"]["mixste"]
    cal = streams["models"]["diffhpe_wrapper"]["calibration"]
    assert cal["spread_visible_mm"] > 0 and -1 <= cal["rank_correlation"] <= 1
    assert streams["models"]["diffhpe_wrapper+mirror"]["calibration"]["spread_visible_mm"] > 0
    md = (out / "evaluation.md").read_text()
    assert report["command"] in md and "**Split: test**" in md
    assert "## Published streams" in md and "### Calibration of the spread" in md
    for name in ("eval_metrics", "eval_occlusion_matrix", "eval_sampler_tradeoff", "eval_examples",
                 "eval_reliability"):
        png = out / "img" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"img/{name}.png" in md


def test_claims_follow_the_numbers():
    def results(wrapper_mpjpe, deg_wrapper):
        base = dict.fromkeys(ev.METRICS, 50.0)
        return {"comparison": {"causal": {"metrics": {
                    "mixste": base, "diffhpe_wrapper": {**base, "mpjpe_mm": wrapper_mpjpe,
                                                        "p_mpjpe_mm": 40.0,
                                                        "segment_std_mm": 60.0}}}},
                "occlusion": {"models": {"mixste": {"degradation_mm": 10.0},
                                         "diffhpe_wrapper": {"degradation_mm": deg_wrapper}}}}
    accuracy, coherence, robustness, *streams = ev.state_claims(results(45.0, 5.0))
    assert accuracy["holds"] and robustness["holds"] and not coherence["holds"]
    assert "45.0 mm vs mixste 50.0 mm" in accuracy["evidence"]
    assert [c["holds"] for c in streams] == [None, None]   # no stream study in these results
    accuracy, _, robustness, *_ = ev.state_claims(results(55.0, 12.0))
    assert not accuracy["holds"] and not robustness["holds"]
    r = results(45.0, 5.0)
    del r["occlusion"]
    assert ev.state_claims(r)[2]["holds"] is None
    # The stream claims: spread ratio, rank correlation, jitter against the baseline.
    cal = {"hidden_visible_ratio": 2.5, "spread_hidden_mm": 50.0, "spread_visible_mm": 20.0,
           "rank_correlation": 0.2, "coverage_k1": 0.3, "coverage_k2": 0.7, "coverage_k3": 0.9}
    overall = {"jitter_mm": 5.0, "accel_error_mm": 6.0, "gt_jitter_mm": 4.0}
    streams = {"models": {"diffhpe_wrapper": {"calibration": cal, "overall": overall},
                          "mixste": {"overall": {**overall, "jitter_mm": 5.5}}}}
    ratio, rank, jitter = ev.stream_claims(streams, "diffhpe_wrapper", "mixste")
    assert ratio["holds"] is True and rank["holds"] is False and jitter["holds"] is True
    assert "ratio 2.50" in ratio["evidence"] and "Spearman 0.20" in rank["evidence"]


def test_json_conversion_drops_nan_and_numpy():
    out = to_jsonable({"a": np.float32(1.5), "b": np.array([[np.nan, 2.0]]),
                       "c": (1, float("inf"))})
    assert out == {"a": 1.5, "b": [[None, 2.0]], "c": [1, None]}
    json.dumps(out, allow_nan=False)


def _training_yaml(path: Path, variant: str, dataset: Path) -> Path:
    from diffhpe_models.config import from_dict, save_config

    c = small_config(variant, "random")
    c["data"]["dataset"] = str(dataset)
    c["train"] = {"epochs": 1, "batch_size": 16, "samples_per_epoch": 32, "val_samples": 16,
                  "workers": 0}
    if variant == "diffhpe_wrapper":
        c["model"]["conditioner_checkpoint"] = "set/by/the/matrix.pt"
    save_config(from_dict(c), path)
    return path


@pytest.mark.slow
def test_occlusion_matrix_script_trains_then_evaluates(dataset_file, tmp_path):
    """Two patterns: 4 real training runs through training/train.py, then the 2 x 2 matrix."""
    runs = tmp_path / "runs"
    configs = [f"{v}={_training_yaml(tmp_path / f'{v}.yaml', v, dataset_file)}"
               for v in ev.MATRIX_MODELS]
    argv = ["--runs", str(runs), "--configs", *configs, "--patterns", "none", "structured_joint",
            "--stride", "8", "--dataset", str(dataset_file)]
    assert matrix_cli.main(argv) == 0
    for pattern in ("none", "structured_joint"):
        for kind in ev.MATRIX_MODELS:
            derived = matrix_cli.load_config(runs / pattern / kind / "derived.yaml")
            assert derived.data.occlusion == pattern
            assert matrix_cli.epochs_done(runs / pattern / kind) == 1
        wrapper = ev.checkpoint_config(ev.matrix_checkpoint(runs, pattern, "diffhpe_wrapper"))
        assert wrapper.model.conditioner_checkpoint == str(
            ev.matrix_checkpoint(runs, pattern, "mixste"))
    result = json.loads((runs / "occlusion_matrix.json").read_text())
    for kind in ev.MATRIX_MODELS:
        m = np.array(result["models"][kind]["matrix_mm"], dtype=float)
        assert m.shape == (2, 2) and np.isfinite(m).all()
    assert (runs / "occlusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # Run again: every run is complete, nothing is retrained (the checkpoints stay as they are).
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("best.pt")}
    assert matrix_cli.main(argv + ["--skip-training"]) == 0
    assert matrix_cli.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("best.pt")} == before


def test_models_are_fed_only_the_windows_they_were_trained_with(dataset_file, checkpoints,
                                                               tmp_path):
    centred = make_untrained_checkpoint(tmp_path / "c.pt", small_config("mixste", mode="centred"))
    models = {"causal_model": ev.load_model("causal_model", checkpoints["mixste"], "cpu"),
              "centred_model": ev.load_model("centred_model", centred, "cpu")}
    subset = ev.split_sequences(dataset_file, "test")
    res = ev.compare_models(models, subset, "cpu", stride=8)
    assert res["centred"]["evaluated_mode"] == {"causal_model": "causal",
                                                "centred_model": "centred"}
    assert res["causal"]["evaluated_mode"] == res["centred"]["evaluated_mode"]
    for name in models:  # the same numbers in both tables: one evaluation per model
        assert res["centred"]["metrics"][name] == res["causal"]["metrics"][name]
    # ... and they are the evaluation on the model's own windows.
    protocol = ev.WindowProtocol.of(models.values())
    windows = ev.make_windows(subset, protocol, "centred", "none", 0)
    direct = ev.evaluate_windows({"centred_model": models["centred_model"]}, windows,
                                 ev.strided(len(windows), 8), "centred", "cpu")
    assert res["causal"]["metrics"]["centred_model"] == direct["centred_model"]
    # Ground truth rows differ per mode (target and window frames differ).
    assert res["centred"]["metrics"]["ground_truth"] != res["causal"]["metrics"]["ground_truth"]
    from diffhpe_models.evaluation_report import render_markdown
    md = render_markdown({"split": "test", "sequences": 2, "dataset": "d", "stride": 8, "seed": 0,
                          "device": "cpu", "torch": "t", "batch_size": 256, "claims": [],
                          "protocol": ev.asdict(protocol), "comparison": res,
                          "models": {n: m.describe() for n, m in models.items()}})
    assert "| causal_model † |" in md and "| centred_model † |" in md
    assert "Trained with causal windows only" in md


def test_evaluate_cli_refuses_bad_input_with_a_clear_message(dataset_file, tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert evaluate_cli.main(["--checkpoints", f"mixste={missing}", "--dataset",
                              str(dataset_file), "--out", str(tmp_path / "docs")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()
    with pytest.raises(SystemExit):
        evaluate_cli.main(["--checkpoints", "mixste"])  # NAME=PATH expected
    assert evaluate_cli.main(["--checkpoints", f"mixste={missing}", "--mirror", "wrapper",
                              "--dataset", str(dataset_file), "--out", str(tmp_path / "docs")]) == 2
    assert "mirror: ['wrapper'] are not among the checkpoints" in capsys.readouterr().err
