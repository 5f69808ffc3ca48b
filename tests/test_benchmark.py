"""training/benchmark.py on a deterministic (MixSTE) checkpoint: it benchmarks the one setting
there is (no steps / H sweep), labels it, and writes its own section of the --out file, keeping
the others. A behaviour test on a tiny untrained model: no timing is asserted."""
from pathlib import Path

import pytest
from conftest import load_training_script, make_untrained_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY_MIXSTE = {
    "name": "tiny_mixste",
    "data": {"window": 27, "window_mode": "causal"},
    "model": {"variant": "mixste", "mixste": {"embed_dim": 16, "depth": 2, "heads": 2}},
}
OTHER_SECTIONS = ("# Benchmarks\n\n"
                  "<!-- lifting-benchmark-diffhpe_wrapper:begin (generated; edits are overwritten) -->\n"
                  "## Lifting: diffhpe_wrapper\n\n| steps | p50 ms |\n|---|---|\n| 2 | 7.53 |\n"
                  "<!-- lifting-benchmark-diffhpe_wrapper:end -->\n\n"
                  "<!-- e2e-benchmark:begin (generated; edits are overwritten) -->\n"
                  "## End-to-end\n<!-- e2e-benchmark:end -->\n")
FAST = ["--iterations", "2", "--warmup", "1", "--max-seconds", "0.05", "--threads", "1"]


def _script():
    return load_training_script("benchmark")


@pytest.fixture(scope="module")
def mixste(tmp_path_factory):
    """A tiny untrained MixSTE checkpoint with its exported graph beside it."""
    from diffhpe_models.export import export_checkpoint

    folder = tmp_path_factory.mktemp("tiny_mixste")
    checkpoint = make_untrained_checkpoint(folder / "mixste.pt", TINY_MIXSTE)
    graph = export_checkpoint(checkpoint, folder / "mixste_lifter.onnx").path
    return checkpoint, graph


def _table(markdown: str, first_header: str) -> list[list[str]]:
    """The rows (cells) of the table whose first column is `first_header`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_deterministic_checkpoint_benchmarks_its_one_setting(mixste, tmp_path, monkeypatch):
    checkpoint, graph = mixste
    bench = _script()
    used = {}

    def detector_stand_in(models, args, results):  # MediaPipe and the demo video: not here
        used["graph"] = models.default_graph()
        results[("lift_per_detect", 1)] = results[("lift_per_detect_cpu", 1)] = 0.1
        return "### Lifter next to the detector (stand-in)"

    monkeypatch.setattr(bench, "section_lifter_vs_detector", detector_stand_in)
    out = tmp_path / "benchmarks.md"
    out.write_text(OTHER_SECTIONS)
    assert bench.main(["--checkpoint", str(checkpoint), "--rss-windows", "10", "--out", str(out),
                       *FAST]) == 0
    assert used["graph"] == graph  # the graph beside the checkpoint that names it (no --onnx)

    text = out.read_text()
    # The other sections are kept as they were; this model's comes after them.
    assert text.startswith(OTHER_SECTIONS.rstrip("\n"))
    begin = "<!-- lifting-benchmark-mixste:begin"
    assert text.count(begin) == 1 and text.count("<!-- lifting-benchmark-mixste:end -->") == 1
    section = text[text.index(begin):]
    assert "## Lifting: mixste, deterministic" in section
    assert "deterministic (no sampler: no steps, 1 hypothesis), L=27 (causal)" in section
    assert "### Backends side by side (cpu, deterministic (no sampler), L=27, 1 threads" in section
    assert "### Scaling (onnxruntime, one factor at a time around deterministic (no sampler), L=27" \
        in section

    # No sampler sweep: the one deterministic setting instead, then the window.
    assert "| steps |" not in section and "| hypotheses |" not in section
    (sampler_row,) = _table(section, "sampler")
    assert sampler_row[0] == "deterministic (no steps, H=1, L=27)"
    assert float(sampler_row[1]) > 0 and float(sampler_row[5]) > 0  # p50 ms, GFLOP/call
    assert [r[0] for r in _table(section, "window")] == ["27", "81 (untrained)"]
    assert [r[0] for r in _table(section, "persons")] == ["1", "2", "4", "8", "16"]
    backends = _table(section, "backend")
    assert [(r[0], r[1]) for r in backends] == [
        (b, p) for b in ("torch", "torch (1 thread)", "onnxruntime", "onnxruntime (1 thread)")
        for p in ("1", "4")]
    assert all(float(r[2]) > 0 for r in backends)
    # Each table states the machine load; the memory run used the graph; goals are stated.
    assert section.count("Machine load: 1-min load average") == 4
    assert f"on {graph.name}, 10 single-person windows" in section
    goals = dict((r[0], r[2]) for r in _table(section, "goal"))
    assert goals["lift per person-frame / MediaPipe per frame (1 person, demo video, wall p50)"] \
        .startswith("met")
    assert all(verdict != "-" for verdict in goals.values())


def test_graph_of_another_variant_is_refused(mixste, tiny_onnx, tmp_path):
    checkpoint, _ = mixste
    bench = _script()
    args = bench.parse_args(["--checkpoint", str(checkpoint), "--onnx", str(tiny_onnx)])
    with pytest.raises(SystemExit, match="'diffhpe_wrapper' graph but .* is a 'mixste' model"):
        bench.Models(args, tmp_path)


def test_diffusion_checkpoint_keeps_its_sampler_settings(tiny_checkpoint, tiny_onnx, tmp_path):
    bench = _script()
    models = bench.Models(bench.parse_args(["--checkpoint", str(tiny_checkpoint),
                                            "--onnx", str(tiny_onnx)]), tmp_path)
    assert not models.deterministic and models.shipped == tiny_onnx
    assert models.setting() == "steps=2, H=3, L=27"
    assert models.sampler_kw(5, 1) == {"steps": 5, "hypotheses": 1, "aggregation": "mean"}
    assert bench.section_key(models) == "lifting-benchmark-diffhpe_wrapper"


def test_skipped_backends_leave_the_table(tiny_checkpoint, tiny_onnx, tmp_path):
    """--skip drops rows of the side-by-side table (torch.compile's autotuning takes minutes on a
    GPU); an unknown backend name is refused."""
    bench = _script()
    args = bench.parse_args(["--checkpoint", str(tiny_checkpoint), "--onnx", str(tiny_onnx),
                             "--skip", "torch", "torch-1thread", "onnxruntime-1thread", *FAST])
    markdown = bench.section_backends(bench.Models(args, tmp_path), args, {})
    assert [row[0] for row in _table(markdown, "backend")] == ["onnxruntime"] * 2
    with pytest.raises(SystemExit):
        bench.parse_args(["--skip", "tensorrt"])
