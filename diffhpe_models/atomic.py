"""Atomic file writes: write to a temporary name in the target directory, then `os.replace`.

A reader (or a crashed writer) never sees a partial file: either the old file or the complete new
one exists. The temporary file lives in the same directory so that `os.replace` is a rename on
one file system; it is removed if anything fails before the rename. A writer killed outright
(kill -9) cannot remove its own: the temporary name carries the writer's pid, and the next write
of the same file removes those of writers that are no longer alive.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np


def _target_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of `path` left by writers that died before their rename
    (`.<name>.<pid>.<random>.tmp` with a pid that is no longer alive). Returns what was removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass
    return removed


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary binary file next to `path`; on a clean exit it replaces `path`.

    Parent directories are created. On an exception the temporary file is deleted and `path` is
    left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (or the old file's).
        os.chmod(tmp, _target_mode(path))
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Serialise `obj` as JSON (strict: no NaN/Infinity) and write it atomically.

    Serialisation happens before the file is touched, so an unserialisable object leaves no trace.
    """
    text = json.dumps(obj, indent=indent, allow_nan=False, sort_keys=False)
    return atomic_write_text(path, text + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """`np.savez(path, **arrays)` atomically; returns the path.

    The name is kept exactly: np.savez appends '.npz' to a bare file name, but not to an open file
    object, which is what it gets here.
    """
    with atomic_open(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def atomic_save_npz_compressed(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """`np.savez_compressed(path, **arrays)` atomically; returns the path."""
    with atomic_open(path) as f:
        np.savez_compressed(f, **arrays)
    return Path(path)


def atomic_replace_section(path: str | os.PathLike, key: str, body: str, title: str = "") -> None:
    """Write `body` between the markers `<!-- key:begin ... -->` and `<!-- key:end -->` of a text
    file (a generated part of a hand-written document), keeping the rest; appends the block (or
    creates the file with `title`) when the markers are absent. Atomic like the other writers."""
    begin_prefix, end = f"<!-- {key}:begin", f"<!-- {key}:end -->"
    block = f"{begin_prefix} (generated; edits are overwritten) -->\n{body.rstrip()}\n{end}"
    p = Path(path)
    text = p.read_text(encoding="utf-8") if p.is_file() else (f"{title}\n\n" if title else "")
    i = text.find(begin_prefix)
    j = text.find(end, i) if i >= 0 else -1  # the end marker after this begin marker
    if j >= 0:
        text = text[:i] + block + text[j + len(end):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"
    atomic_write_text(p, text)
