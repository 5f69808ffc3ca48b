"""launch/lifter.launch.py and rviz/skeleton.rviz. `launch`/`launch_ros` are not installable
without a ROS install, so the launch file is compiled and read as a syntax tree: every executable
it starts must exist, every file it names must exist and be installed."""
import ast
import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from diffhpe_ros import params
from diffhpe_ros.lifter_node import DEFAULT_FRAME_ID

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "lifter.launch.py"
RVIZ = REPO / "rviz" / "skeleton.rviz"


def calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def keywords(call):
    return {k.arg: k.value for k in call.keywords}


def console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for call in calls(tree, "setup"):
        entry_points = ast.literal_eval(keywords(call)["entry_points"])
        return dict(s.replace(" ", "").split("=") for s in entry_points["console_scripts"])
    raise AssertionError("setup.py has no setup() call")


def installed_globs() -> list[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    return [c.args[0].value for c in calls(tree, "glob")]


def exec_depends() -> set[str]:
    return set(re.findall(r"<exec_depend>([\w-]+)</exec_depend>", (REPO / "package.xml").read_text()))


def constant(node, tree):
    """A string given literally or through a module-level NAME = "..." assignment."""
    if isinstance(node, ast.Name):
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(t.id == node.id for t in stmt.targets):
                return ast.literal_eval(stmt.value)
        raise AssertionError(f"{node.id} is not a module-level constant")
    return ast.literal_eval(node)


def launch_tree():
    source = LAUNCH.read_text()
    compile(source, str(LAUNCH), "exec")
    return ast.parse(source)


ARGUMENTS = {"detector", "video", "loop", "scale", "rviz", "model"}


def test_launch_file_compiles_and_declares_its_arguments():
    tree = launch_tree()
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in tree.body)
    args = {c.args[0].value for c in calls(tree, "DeclareLaunchArgument")}
    assert args == ARGUMENTS
    used = {c.args[0].value for c in calls(tree, "LaunchConfiguration") + calls(tree, "is_true")
            if isinstance(c.args[0], ast.Constant)}
    assert used == args  # each argument does something
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"launch", "launch.actions", "launch.conditions", "launch.substitutions",
                        "launch_ros.actions", "launch_ros.parameter_descriptions",
                        "launch_ros.substitutions", "ament_index_python.packages", "diffhpe_ros"}


def test_launch_description_loads_with_the_real_launch_package():
    """Where `launch` is importable (the workspace of .ci/ros2_workspace.sh sourced, as in CI,
    or a ROS 2 install), the description itself: its arguments and their defaults."""
    sources = pytest.importorskip("launch.launch_description_sources",
                                  reason="launch is not importable (no ROS 2 workspace sourced)")
    description = sources.get_launch_description_from_python_launch_file(str(LAUNCH))
    defaults = {a.name: "".join(s.perform(None) for s in a.default_value)
                for a in description.get_launch_arguments()}
    assert defaults == {"detector": "true", "video": "", "loop": "false", "scale": "1.0",
                        "rviz": "false", "model": ""}


def test_launch_file_starts_existing_executables():
    scripts = console_scripts()
    tree = launch_tree()
    nodes = [keywords(c) for c in calls(tree, "Node")]
    started = {(constant(k["package"], tree), constant(k["executable"], tree)) for k in nodes}
    assert started == {("diffhpe_ros", "video_source"), ("diffhpe_ros", "detector_node"),
                       ("diffhpe_ros", "lifter_node"), ("rviz2", "rviz2")}
    for package, executable in started:
        if package != "diffhpe_ros":
            assert package in exec_depends(), f"{package} missing from package.xml"
            continue
        module, func = scripts[executable].split(":")
        source = (REPO / (module.replace(".", "/") + ".py")).read_text()
        assert f"def {func}(" in source, f"{executable}: {scripts[executable]} not defined"
    lifter = next(k for k in nodes if constant(k["executable"], tree) == "lifter_node")
    assert ast.unparse(lifter["name"]) == "params.NODE_NAME"  # the params file's section


def test_launch_file_names_existing_installed_files_and_parameters():
    tree = launch_tree()
    globs = installed_globs()
    named = [[e.value for e in c.args[0].elts if isinstance(e, ast.Constant)]
             for c in calls(tree, "PathJoinSubstitution")]
    assert sorted(named) == [["config", "lifter.yaml"], ["rviz", "skeleton.rviz"]]
    for parts in named:
        rel = "/".join(parts)
        assert (REPO / rel).is_file(), rel
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not installed by setup.py"
    assert any(fnmatch.fnmatch("launch/lifter.launch.py", g) for g in globs)
    # Parameters given inline exist on the nodes they go to.
    dicts = [d for d in ast.walk(tree) if isinstance(d, ast.Dict)]
    keys = {k.value for d in dicts for k in d.keys}
    assert keys == {"video_path", "loop", "scale", "model_path"}
    assert "model_path" in params.SPECS
    video_source = (REPO / "diffhpe_ros" / "video_source.py").read_text()
    assert all(f'("{name}", ' in video_source for name in ("video_path", "loop", "scale"))
    # The lifter's node name is the section name of its parameters file (in any namespace).
    doc = yaml.safe_load((REPO / "config" / "lifter.yaml").read_text())
    assert list(doc) == [f"/**/{params.NODE_NAME}"]


def test_model_argument_overrides_the_params_file_only_when_given():
    # An always-applied {"model_path": model} would replace config/lifter.yaml's model_path
    # with the argument's default: the default must be empty, and the override conditional.
    tree = launch_tree()
    model_arg = next(c for c in calls(tree, "DeclareLaunchArgument") if c.args[0].value == "model")
    default = keywords(model_arg)["default_value"]
    assert isinstance(default, ast.Constant) and default.value == "", ast.unparse(default)
    opaque = calls(tree, "OpaqueFunction")
    assert len(opaque) == 1
    func_name = keywords(opaque[0])["function"].id
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func_name)
    override = next(d for d in ast.walk(func) if isinstance(d, ast.Dict)
                    and [k.value for k in d.keys] == ["model_path"])
    guards = [n for n in ast.walk(func) if isinstance(n, ast.If)
              and any(d is override for d in ast.walk(n))]
    assert guards, "the model_path override is applied unconditionally"
    guard_names = {n.id for g in guards for n in ast.walk(g.test) if isinstance(n, ast.Name)}
    performed = [a.targets[0].id for a in ast.walk(func) if isinstance(a, ast.Assign)
                 and "LaunchConfiguration('model').perform" in ast.unparse(a.value)]
    assert performed and set(performed) & guard_names, "the guard does not test the model argument"
    # ... and the lifter is started (with its params file) from that function.
    started = [constant(keywords(c)["executable"], tree) for c in calls(func, "Node")]
    assert "lifter_node" in started
    assert "lifter.yaml" in ast.unparse(func)


def test_every_node_starts_after_the_rviz_check():
    # rviz:=true without rviz2 used to fail after the lifter had started, leaving it running:
    # the check comes first, and every node is created in the same function after it.
    tree = launch_tree()
    (opaque,) = calls(tree, "OpaqueFunction")
    func_name = keywords(opaque)["function"].id
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func_name)
    assert {n.lineno for n in calls(tree, "Node")} == {n.lineno for n in calls(func, "Node")}
    (check,) = calls(func, "check_rviz_installed")
    assert all(check.lineno < n.lineno for n in calls(func, "Node"))
    checker = next(n for n in tree.body if isinstance(n, ast.FunctionDef)
                   and n.name == "check_rviz_installed")
    assert calls(checker, "get_package_prefix") and "raise" in ast.unparse(checker)


def test_rviz_config_shows_the_lifter_topics_in_the_camera_frame():
    doc = yaml.safe_load(RVIZ.read_text())
    manager = doc["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == DEFAULT_FRAME_ID
    video_source = (REPO / "diffhpe_ros" / "video_source.py").read_text()
    assert f'("frame_id", "{DEFAULT_FRAME_ID}")' in video_source  # the frame the video plays in
    displays = {d["Name"]: d for d in manager["Displays"]}
    assert all(d["Class"].startswith("rviz_default_plugins/") for d in displays.values())
    topics = {d["Class"]: d["Topic"]["Value"] for d in displays.values() if "Topic" in d}
    assert topics == {"rviz_default_plugins/MarkerArray": "/pose3d/markers",
                      "rviz_default_plugins/PointCloud2": "/pose3d/points"}
    assert displays["Joint spread"]["Channel Name"] == "spread"
    assert set(displays["Skeletons"]["Namespaces"]) == {"diffhpe/joints", "diffhpe/bones"}
    # the tracked persons' tf frames (diffhpe_ros/body_frames.py names them body_<id>...)
    tf = displays["Body frames"]
    assert tf["Class"] == "rviz_default_plugins/TF" and tf["Enabled"] and tf["Frames"]["All Enabled"]
    assert tf["Filter (whitelist)"] == "body_"
    from diffhpe_ros.body_frames import frame_ids
    assert all(name.startswith(tf["Filter (whitelist)"]) for name in frame_ids("1"))
    view = manager["Views"]["Current"]
    assert view["Class"] == "rviz_default_plugins/Orbit" and view["Focal Point"]["Z"] > 0
