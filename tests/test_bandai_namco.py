"""The Bandai Namco source: clip names, the content/style split, archive checks, and (when the
archives are present in ../shared) the conversion of real clips. make test needs no shared data."""
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from diffhpe_models import bandai_namco as bn
from diffhpe_models.skeleton import JOINT_NAMES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bandai-namco"


def test_clip_names_parse_and_other_members_are_skipped():
    c = bn.parse_clip_name("Bandai-Namco-Research-Motiondataset-2/data/dataset-2_walk-turn-left_active_012.bvh")
    assert (c.dataset, c.content, c.style, c.take) == ("2", "walk-turn-left", "active", "012")
    assert c.name == "walk-turn-left_active_012"
    for other in ("Bandai-Namco-Research-Motiondataset-1/README.md",
                  "Bandai-Namco-Research-Motiondataset-1/data/dataset-1_walk_happy_001.json",
                  "elsewhere/dataset-1_walk_happy_001.bvh"):
        assert bn.parse_clip_name(other) is None


def test_split_holds_out_whole_styles_and_contents():
    def split(d, content, style):
        return bn.split_of(bn.Clip(d, content, style, "001", ""))

    assert split("1", "walk", "normal") == "train"
    assert split("1", "walk", "happy") == split("1", "punch", "normal") == "validation"
    assert split("1", "walk", "tired") == split("1", "slash", "normal") == "test"
    assert split("1", "punch", "tired") == "test"          # test wins a clip both would claim
    assert split("2", "run", "youthful") == "validation" and split("2", "run", "elderly") == "test"
    assert split("2", "run", "normal") == "train"
    # No style or content is held out for both splits.
    for d in ("1", "2"):
        v, t = bn.HELD_OUT["validation"][d], bn.HELD_OUT["test"][d]
        assert not (v["styles"] & t["styles"]) and not (v["contents"] & t["contents"])


def test_archives_are_checked_by_name_and_sha256(tmp_path):
    with pytest.raises(ValueError, match="not a Bandai Namco archive"):
        bn.check_archive(tmp_path / "other.tar.xz")
    with pytest.raises(FileNotFoundError, match="public repository"):
        bn.find_archives(tmp_path)
    fake = tmp_path / "bandai-namco-motion-1.tar.xz"
    fake.write_bytes(b"not the archive")
    with pytest.raises(ValueError, match="does not match the pinned"):
        bn.check_archive(fake)


def test_iter_clips_streams_clips_and_collects_labels(tmp_path):
    archive = tmp_path / "a.tar.xz"
    files = {"X-1/data/dataset-1_bow_sad_003.bvh": b"HIERARCHY ...",
             "X-1/data/dataset-1_bow_sad_003.json": b'{"content": 6, "style": 2}',
             "X-1/cfg/style_label.txt": b"dataset-1_normal"}
    with tarfile.open(archive, "w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    labels = {}
    clips = list(bn.iter_clips(archive, labels))
    assert [(c.name, text) for c, text in clips] == [("bow_sad_003", "HIERARCHY ...")]
    assert labels == {"X-1/data/dataset-1_bow_sad_003.bvh": {"content": 6, "style": 2}}


@pytest.mark.skipif(not SHARED.is_dir(), reason="the Bandai Namco archives are not in ../shared")
def test_real_clips_map_onto_a_plausible_h36m_skeleton():
    archive = bn.check_archive(SHARED / "bandai-namco-motion-1.tar.xz")
    j = {n: i for i, n in enumerate(JOINT_NAMES)}
    for k, (clip, text) in enumerate(bn.iter_clips(archive, {})):
        if k == 3:
            break
        pose, notes = bn.clip_to_h36m(text, clip.member)
        assert pose.shape[1:] == (17, 3) and np.isfinite(pose).all() and notes["unit_m"] == 0.01

        def bone(a, b):
            return np.median(np.linalg.norm(pose[:, j[a]] - pose[:, j[b]], axis=-1))

        assert 0.35 < bone("left_hip", "left_knee") < 0.45 and 0.35 < bone("right_knee", "right_foot") < 0.45
        assert 0.2 < bone("left_shoulder", "left_elbow") < 0.3
        assert abs(bone("left_hip", "left_knee") - bone("right_hip", "right_knee")) < 0.01
        # Standing people: head top 1.5-1.8 m above the floor, above the nose, above the thorax.
        assert 1.5 < np.median(pose[:, j["head"], 2]) < 1.8
        assert (pose[:, j["head"], 2] > pose[:, j["neck_nose"], 2]).mean() > 0.9
        # Left is left: forward = (right hip -> left hip) x up, and the nose is in front of the
        # thorax (a mirrored mapping would put it behind).
        forward = np.cross(pose[:, j["left_hip"]] - pose[:, j["right_hip"]], [0, 0, 1.0])
        to_nose = pose[:, j["neck_nose"]] - pose[:, j["thorax"]]
        assert (np.sum(forward * to_nose, axis=-1) > 0).mean() > 0.9
