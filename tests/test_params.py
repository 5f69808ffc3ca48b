"""The lifter's parameter table: one source of truth for the node, config/lifter.yaml and docs."""
from pathlib import Path

import pytest
from rcl_interfaces.msg import ParameterType

from diffhpe_ros import params
from diffhpe_ros.lifter_core import Settings

REPO = Path(__file__).resolve().parents[1]


def test_config_file_sets_every_parameter_to_its_default():
    text = (REPO / "config" / "lifter.yaml").read_text()
    values = params.load_params_file(REPO / "config" / "lifter.yaml")
    assert values == params.DEFAULTS
    for name in params.SPECS:  # written out, so that the file documents every parameter
        assert f"    {name}:" in text, name


def test_settings_mirror_the_parameters():
    assert list(Settings.__dataclass_fields__) == [p.name for p in params.PARAMETERS]


@pytest.mark.parametrize("name, value, text", [
    ("confidence_threshold", 1.5, "in [0.0, 1.0]"),
    ("confidence_threshold", float("inf"), "finite"),
    ("confidence_threshold", "high", "must be a float"),
    ("max_persons", True, "must be an integer"),
    ("keypoint_format", "openpose25", "one of mediapipe33, coco17, h36m17"),
    ("backend", "cuda", "one of auto"),
    ("model_path", "  ", "model_path is empty"),
    ("device", "gpu0", "cpu, cuda or cuda:N"),
    ("max_gap_s", 0.0, "s, got 0.0"),
    ("nonsense", 1, "unknown parameter"),
])
def test_validate_refuses_with_a_reason(name, value, text):
    reason = params.validate(name, value)
    assert reason is not None and text in reason, reason


def test_validate_accepts_good_values():
    for spec in params.PARAMETERS:
        assert params.validate(spec.name, spec.default) is None, spec.name
    assert params.validate("max_gap_s", 1) is None  # an int is a fine float
    assert params.validate("device", "cuda:1") is None


def test_params_file_errors_name_the_file_and_the_parameter(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lifter_node:\n  ros__parameters:\n    max_persons: 0\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: max_persons must be in \[1, 64\]"):
        params.load_params_file(bad)
    bad.write_text("other_node:\n  ros__parameters: {}\n")
    with pytest.raises(ValueError, match="no 'lifter_node: ros__parameters:' section"):
        params.load_params_file(bad)
    bad.write_text("lifter_node:\n  ros__parameters:\n    windw: 27\n")
    with pytest.raises(ValueError, match="unknown parameter 'windw'"):
        params.load_params_file(bad)


def test_descriptors_carry_type_description_and_range():
    d = params.descriptor(params.SPECS["max_persons"])
    assert d.type == ParameterType.PARAMETER_INTEGER and "persons" in d.description
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 64)
    d = params.descriptor(params.SPECS["keypoint_format"])
    assert d.type == ParameterType.PARAMETER_STRING and "mediapipe33" in d.additional_constraints
    d = params.descriptor(params.SPECS["fixed_noise"])
    assert d.type == ParameterType.PARAMETER_BOOL and "read-only" in d.description


def test_resolve_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_text("x")
    assert params.resolve_path("m.onnx") == tmp_path / "m.onnx"
    assert params.resolve_path("config/lifter.yaml") == REPO / "config" / "lifter.yaml"
    with pytest.raises(FileNotFoundError, match="looked in"):
        params.resolve_path("models/nothing_here.onnx")


def test_markdown_table_lists_every_parameter():
    table = params.markdown_table()
    assert table.count("\n") == len(params.PARAMETERS) + 1
    for spec in params.PARAMETERS:
        assert f"| `{spec.name}`" in table


def test_docs_parameter_table_is_current():
    doc = (REPO / "docs" / "lifter_node.md").read_text()
    assert params.markdown_table() in doc, "regenerate the table with params.markdown_table()"


def test_params_file_sections_match_as_ros_does(tmp_path):
    for key in ("lifter_node", "/lifter_node", "/**/lifter_node", "/**"):
        f = tmp_path / "p.yaml"
        f.write_text(f"{key}:\n  ros__parameters:\n    max_persons: 3\n")
        assert params.load_params_file(f)["max_persons"] == 3, key


def test_mirror_auto_is_on_where_the_lifter_runs_on_a_gpu():
    assert params.DEFAULTS["mirror"] == "auto"
    assert not params.mirror_enabled("auto", "cpu", "models/mixste_lifter.onnx")
    assert params.mirror_enabled("auto", "cuda", "models/mixste_lifter.onnx")
    assert params.mirror_enabled("auto", "cuda:1", "models/mixste_lifter.onnx")
    assert params.mirror_enabled("auto", "cpu", "models/diffhpe_lifter.fp16.engine")
    assert params.mirror_enabled("always", "cpu", "models/mixste_lifter.onnx")
    assert not params.mirror_enabled("never", "cuda", "models/diffhpe_lifter.fp16.engine")
    assert "must be one of" in params.validate("mirror", "yes")
    with pytest.raises(ValueError, match="mirror must be one of"):
        params.mirror_enabled("true", "cpu", "m.onnx")


@pytest.mark.parametrize("value", params.MIRROR_CHOICES)
def test_mirror_values_stay_strings_in_a_params_file(tmp_path, value):
    # YAML (and so `-p mirror:=...` and parameter files) reads on/off/true/false as bools: the
    # choices must not be among them.
    path = tmp_path / "p.yaml"
    path.write_text(f"lifter_node:\n  ros__parameters:\n    mirror: {value}\n")
    assert params.load_params_file(path)["mirror"] == value
