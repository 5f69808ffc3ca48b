"""Atomic writes: complete file or old file, never a partial one, no temp files left behind."""
import json
import os

import numpy as np
import pytest

from diffhpe_models.atomic import (
    atomic_open,
    atomic_save_npz,
    atomic_save_npz_compressed,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def test_roundtrips_and_creates_parent(tmp_path):
    p = atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_json(tmp_path / "j.json", {"x": [1, 2.5]})
    assert json.loads((tmp_path / "j.json").read_text()) == {"x": [1, 2.5]}


def test_npz_keeps_exact_name_and_arrays(tmp_path):
    target = tmp_path / "data.bin"  # no .npz suffix: np.savez on a path would append one
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic_save_npz(target, **{"positions_3d/S1/walk": a, "metadata": np.array("{}")})
    assert sorted(os.listdir(tmp_path)) == ["data.bin"]
    with np.load(target, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["positions_3d/S1/walk"], a)
    atomic_save_npz_compressed(tmp_path / "c.npz", a=a)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["a"], a)


def test_failure_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write(b"partial new content")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]
    # Serialisation errors happen before the file is touched: no file, no temp file.
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "bad.json", {"x": float("nan")})
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_new_files_get_umask_mode_and_replaced_files_keep_theirs(tmp_path):
    mask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "new.txt", "x")
        assert p.stat().st_mode & 0o777 == 0o644
        os.chmod(p, 0o600)
        atomic_write_text(p, "y")
        assert p.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(mask)


def test_replace_section_keeps_the_hand_written_text(tmp_path):
    from diffhpe_models.atomic import atomic_replace_section

    doc = tmp_path / "bench.md"
    atomic_replace_section(doc, "a", "first A", title="# Title")
    atomic_replace_section(doc, "b", "first B")
    text = doc.read_text()
    doc.write_text(text.replace("# Title", "# Title\n\nhand-written intro"))
    atomic_replace_section(doc, "a", "second A")
    text = doc.read_text()
    assert text.startswith("# Title\n\nhand-written intro")
    assert "second A" in text and "first A" not in text and "first B" in text
    assert text.index("second A") < text.index("first B")  # replaced in place
    assert text.count("<!-- a:begin") == 1 and text.count("<!-- a:end -->") == 1


def test_a_writer_killed_outright_leaves_no_temporary_file_behind(tmp_path):
    # kill -9 during a write leaves its temporary file (nothing can remove it then); the next
    # write of the same file removes it, and never a live writer's.
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "data.npz"
    code = ("import sys, time; from diffhpe_models.atomic import atomic_open\n"
            "with atomic_open(sys.argv[1]) as f:\n"
            "    f.write(b'partial'); f.flush(); print('writing', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    live = list(tmp_path.glob(".data.npz.*.tmp"))
    assert len(live) == 1
    from diffhpe_models.atomic import atomic_write_bytes, remove_stale_temporaries

    assert remove_stale_temporaries(target) == []          # its writer is alive: kept
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.05)
    assert list(tmp_path.glob(".data.npz.*.tmp")) == live and not target.exists()
    atomic_write_bytes(target, b"complete")
    assert target.read_bytes() == b"complete"
    assert list(tmp_path.glob(".data.npz.*.tmp")) == []
