"""BVH reader and forward kinematics: hand-computed edge cases, errors, and the real files
cross-checked against bvhtools' own forward kinematics."""
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from diffhpe_models.bvh import BVHError, parse_bvh
from diffhpe_models.fetch import fetch_package

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "packages"


def chain(root_channels="Xposition Yposition Zposition Zrotation Yrotation Xrotation",
          child_channels="Zrotation Yrotation Xrotation", frames=("0 0 0 0 0 0 0 0 0",),
          frame_time="0.04"):
    n_root = len(root_channels.split())
    n_child = len(child_channels.split())
    return f"""HIERARCHY
ROOT hips
{{
  OFFSET 0 1 0
  CHANNELS {n_root} {root_channels}
  JOINT knee
  {{
    OFFSET 0 -2 0
    CHANNELS {n_child} {child_channels}
    End Site
    {{
      OFFSET 1 0 0
    }}
  }}
}}
MOTION
Frames: {len(frames)}
Frame Time: {frame_time}
""" + "\n".join(frames) + "\n"


def test_hierarchy_end_sites_and_rest_pose():
    b = parse_bvh(chain(frames=("5 6 7 0 0 0 0 0 0",)))
    assert b.names == ["hips", "knee", "knee_End"]
    assert b.parents.tolist() == [-1, 0, 1]
    assert b.fps == pytest.approx(25.0)
    pos, _ = b.forward_kinematics()
    # Root position channels replace the root OFFSET (0 1 0).
    np.testing.assert_allclose(pos[0], [[5, 6, 7], [5, 4, 7], [6, 4, 7]])


def test_rotations_compose_in_channel_order():
    # knee: Z 90 then X 90 (intrinsic, R = Rz @ Rx) applied to the End Site offset (1, 0, 0):
    # Rx leaves x alone, Rz(90) maps x -> y.  Reversed order (R = Rx @ Rz): x -> y -> z.
    zx = parse_bvh(chain(child_channels="Zrotation Xrotation", frames=("0 0 0 0 0 0 90 90",)))
    xz = parse_bvh(chain(child_channels="Xrotation Zrotation", frames=("0 0 0 0 0 0 90 90",)))
    np.testing.assert_allclose(zx.forward_kinematics()[0][0, 2] - zx.forward_kinematics()[0][0, 1],
                               [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(xz.forward_kinematics()[0][0, 2] - xz.forward_kinematics()[0][0, 1],
                               [0, 0, 1], atol=1e-12)
    # A root rotation moves the child offset: Yrotation 90 maps (0,-2,0) to itself, Zrotation 90
    # maps it to (2, 0, 0).
    b = parse_bvh(chain(frames=("0 0 0 90 0 0 0 0 0",)))
    np.testing.assert_allclose(b.forward_kinematics()[0][0, 1], [2, 0, 0], atol=1e-12)


def test_per_joint_position_channels_are_honoured():
    # Only Yposition on the knee: it replaces the offset's y (-2 -> -3); x and z keep the offset.
    b = parse_bvh(chain(child_channels="Yposition Zrotation",
                        frames=("0 0 0 0 0 0 -3 0", "0 0 0 0 0 0 -1.5 90")))
    pos, _ = b.forward_kinematics()
    np.testing.assert_allclose(pos[0, 1], [0, -3, 0])
    np.testing.assert_allclose(pos[1, 1], [0, -1.5, 0])
    np.testing.assert_allclose(pos[1, 2], [0, -0.5, 0], atol=1e-12)  # End Site rotated by Z 90
    # A root without position channels stays at its OFFSET.
    b = parse_bvh(chain(root_channels="Zrotation", frames=("0 0 0 0",)))
    np.testing.assert_allclose(b.forward_kinematics()[0][0, 0], [0, 1, 0])


@pytest.mark.parametrize("text, message", [
    (chain(child_channels="Zrotation Wrotation", frames=("0 0 0 0 0 0 0 0",)), "unknown channel 'Wrotation'"),
    (chain(frames=("0 0 0 0 0 0 0 0",)), "frame 0 has 8 values, the hierarchy declares 9"),
    (chain(frames=("0 0 0 0 0 0 0 0 0",)).replace("Frames: 1", "Frames: 3"),
     "truncated file: header says 3 frames, found 1"),
    (chain(frames=("0 0 0 0 nan 0 0 0 0",)), "channel 4 (hips Yrotation) is nan"),
    (chain(frames=("0 0 0 0 0 0 0 0 x1",)), "could not convert"),
    (chain().split("MOTION")[0], "no MOTION section"),
    (chain().replace("    End Site\n    {\n      OFFSET 1 0 0\n    }\n  }\n}\n", ""), "truncated file"),
    (chain(frame_time="0"), "Frame Time > 0"),
    (chain().replace("OFFSET 0 -2 0", "OFFSET 0 inf 0"), "not finite"),
])
def test_malformed_files_raise_clear_errors(text, message):
    with pytest.raises(BVHError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_bvh(text, source="bad.bvh")


def test_error_names_source_and_line():
    text = chain(frames=("0 0 0 0 0 0 0 0 0", "0 0 0 0 0 0 0 0"))
    with pytest.raises(BVHError, match=r"^walk\.bvh:\d+: frame 1 has 8 values"):
        parse_bvh(text, source="walk.bvh")


@pytest.fixture(scope="module")
def bvhtools_src(tmp_path_factory):
    """The bvhtools sdist: its test files and, unpacked in a temp dir, its own FK as a reference."""
    archive = fetch_package("bvhtools", "1.6.0", CACHE, sdist=True)
    out = tmp_path_factory.mktemp("bvhtools")
    with tarfile.open(archive) as t:
        members = [m for m in t.getmembers()
                   if "/src/bvhTools/" in m.name or "/testBvhFiles/" in m.name]
        t.extractall(out, members=members, filter="data")
    return out / "bvhtools-1.6.0"


def test_real_lafan_file_matches_bvhtools_fk(bvhtools_src):
    sys.path.insert(0, str(bvhtools_src / "src"))
    try:
        from bvhTools.bvhIO import readBvh
    finally:
        sys.path.pop(0)
    path = bvhtools_src / "testBvhFiles" / "test.bvh"
    ours = parse_bvh(path.read_text(), source=str(path))
    assert ours.num_frames == 7184 and len(ours.names) == 27
    assert ours.fps == pytest.approx(30.0, abs=1e-3)
    pos, _ = ours.forward_kinematics()
    ref = readBvh(str(path))
    for frame in (0, 1234, 7183):
        fk = ref.getFKAtFrame(frame)
        for name, (_, p) in fk.items():
            name = name.replace("_EndSite", "_End")
            np.testing.assert_allclose(pos[frame, ours.index(name)], p, atol=1e-9, err_msg=name)
