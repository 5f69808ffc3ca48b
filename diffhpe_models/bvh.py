"""A BVH (Biovision hierarchy) reader and forward kinematics.

Conventions (the common reading of the format, as in Blender's importer and bvhtools):
- A joint's local translation is its OFFSET, except for components that have a position channel:
  those REPLACE the offset component (they are the joint's translation in its parent's frame).
  This holds for the root and for any other joint with position channels (Blender/rigify exports
  put position channels on every joint).
- Rotation channels compose in the order listed, intrinsically: 'Zrotation Yrotation Xrotation'
  means R = Rz @ Ry @ Rx (scipy's upper-case 'ZYX'), angles in degrees.
- global_R(j) = global_R(parent) @ R_local(j); global_p(j) = global_p(parent) + global_R(parent) @ t(j).
End Sites become joints named '<parent>_End' without channels (they carry a real end point, e.g.
a wrist or a toe tip, in some rigs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")


class BVHError(ValueError):
    """A malformed BVH file; the message names the file and the line."""


@dataclass
class BVH:
    """A parsed BVH file.

    names: joint names in file order (End Sites included as '<parent>_End').
    parents: (J,) parent index per joint, -1 for the root.
    offsets: (J, 3) rest offsets in the file's unit.
    channels: per joint, the channel names in file order (empty for End Sites).
    motion: (T, C) float64 channel values, C = total channel count.
    frame_time_s: seconds per frame.
    """
    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    motion: np.ndarray
    frame_time_s: float
    source: str = "<string>"
    channel_start: list[int] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time_s

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.source}: no joint named {name!r}; joints: {self.names}") from None

    def local_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame local rotations and translations.

        Returns (rotations (T, J, 3, 3), translations (T, J, 3)) in the file's unit.
        """
        t_count, j_count = self.num_frames, len(self.names)
        rots = np.broadcast_to(np.eye(3), (t_count, j_count, 3, 3)).copy()
        trans = np.broadcast_to(self.offsets, (t_count, j_count, 3)).copy()
        for j, chans in enumerate(self.channels):
            start = self.channel_start[j]
            order, angle_cols = "", []
            for k, ch in enumerate(chans):
                col = self.motion[:, start + k]
                if ch in POSITION_CHANNELS:
                    trans[:, j, POSITION_CHANNELS.index(ch)] = col
                else:
                    order += ch[0]
                    angle_cols.append(col)
            if order:
                angles = np.stack(angle_cols, axis=1)
                rots[:, j] = Rotation.from_euler(order, angles, degrees=True).as_matrix()
        return rots, trans

    def forward_kinematics(self) -> tuple[np.ndarray, np.ndarray]:
        """Global joint positions (T, J, 3) in the file's unit and global rotations (T, J, 3, 3)."""
        rots, trans = self.local_transforms()
        g_rot = np.empty_like(rots)
        g_pos = np.empty_like(trans)
        for j, p in enumerate(self.parents):  # parents precede children in file order
            if p < 0:
                g_rot[:, j] = rots[:, j]
                g_pos[:, j] = trans[:, j]
            else:
                g_rot[:, j] = g_rot[:, p] @ rots[:, j]
                g_pos[:, j] = g_pos[:, p] + np.einsum("tab,tb->ta", g_rot[:, p], trans[:, j])
        return g_pos, g_rot


class _Tokens:
    """Whitespace tokens with their line numbers, for error messages."""

    def __init__(self, lines: list[str], source: str):
        self.items = [(tok, n + 1) for n, line in enumerate(lines) for tok in line.split()]
        self.pos = 0
        self.source = source

    def peek(self) -> str | None:
        return self.items[self.pos][0] if self.pos < len(self.items) else None

    def line(self) -> int:
        if self.pos < len(self.items):
            return self.items[self.pos][1]
        return self.items[-1][1] if self.items else 0

    def next(self, what: str) -> str:
        if self.pos >= len(self.items):
            raise BVHError(f"{self.source}: truncated file: expected {what} after line {self.line()}")
        tok = self.items[self.pos][0]
        self.pos += 1
        return tok

    def expect(self, word: str) -> None:
        line = self.line()
        tok = self.next(repr(word))
        if tok != word:
            raise BVHError(f"{self.source}:{line}: expected {word!r}, got {tok!r}")

    def number(self, what: str) -> float:
        line = self.line()
        tok = self.next(what)
        try:
            value = float(tok)
        except ValueError:
            raise BVHError(f"{self.source}:{line}: {what}: {tok!r} is not a number") from None
        if not math.isfinite(value):
            raise BVHError(f"{self.source}:{line}: {what} is {tok!r} (not finite)")
        return value


def _parse_joint(tok: _Tokens, name: str, parent: int, out: dict) -> None:
    j = len(out["names"])
    out["names"].append(name)
    out["parents"].append(parent)
    tok.expect("{")
    tok.expect("OFFSET")
    out["offsets"].append([tok.number(f"OFFSET of {name}") for _ in range(3)])
    chans: tuple[str, ...] = ()
    if tok.peek() == "CHANNELS":
        tok.next("CHANNELS")
        line = tok.line()
        count_tok = tok.next("channel count")
        if not count_tok.isdigit():
            raise BVHError(f"{tok.source}:{line}: channel count of {name} is {count_tok!r}")
        chans = tuple(tok.next(f"channel names of {name}") for _ in range(int(count_tok)))
        for ch in chans:
            if ch not in POSITION_CHANNELS + ROTATION_CHANNELS:
                raise BVHError(f"{tok.source}:{line}: unknown channel {ch!r} on joint {name!r}; "
                               f"expected {POSITION_CHANNELS + ROTATION_CHANNELS}")
        if len(set(chans)) != len(chans):
            raise BVHError(f"{tok.source}:{line}: repeated channel on joint {name!r}: {chans}")
    out["channels"].append(chans)
    while True:
        line = tok.line()
        word = tok.next(f"JOINT, End Site or '}}' in {name}")
        if word == "}":
            return
        if word == "JOINT":
            _parse_joint(tok, tok.next("joint name"), j, out)
        elif word == "End":
            tok.expect("Site")
            out["names"].append(f"{name}_End")
            out["parents"].append(j)
            out["channels"].append(())
            tok.expect("{")
            tok.expect("OFFSET")
            out["offsets"].append([tok.number(f"End Site OFFSET of {name}") for _ in range(3)])
            tok.expect("}")
        else:
            raise BVHError(f"{tok.source}:{line}: unexpected {word!r} in joint {name!r}")


def parse_bvh(text: str, source: str = "<string>") -> BVH:
    """Parse BVH text. Raises BVHError naming `source` and the line on any malformed input."""
    lines = text.splitlines()
    motion_at = next((i for i, ln in enumerate(lines) if ln.strip() == "MOTION"), None)
    if motion_at is None:
        raise BVHError(f"{source}: no MOTION section (truncated file?)")
    tok = _Tokens(lines[:motion_at], source)
    tok.expect("HIERARCHY")
    tok.expect("ROOT")
    out: dict = {"names": [], "parents": [], "offsets": [], "channels": []}
    _parse_joint(tok, tok.next("root name"), -1, out)
    if tok.peek() is not None:
        raise BVHError(f"{source}:{tok.line()}: unexpected {tok.peek()!r} after the hierarchy "
                       "(only one ROOT is supported)")

    header = [ln.strip() for ln in lines[motion_at + 1: motion_at + 3]]
    if len(header) < 2 or not header[0].startswith("Frames:") or not header[1].startswith("Frame Time:"):
        raise BVHError(f"{source}:{motion_at + 2}: expected 'Frames: N' and 'Frame Time: S' after MOTION")
    try:
        n_frames = int(header[0].split(":", 1)[1])
        frame_time = float(header[1].split(":", 1)[1])
    except ValueError:
        raise BVHError(f"{source}:{motion_at + 2}: bad Frames / Frame Time values: {header}") from None
    if n_frames <= 0 or not (math.isfinite(frame_time) and frame_time > 0):
        raise BVHError(f"{source}:{motion_at + 2}: need Frames > 0 and Frame Time > 0, got {header}")

    counts = [len(c) for c in out["channels"]]
    starts = list(np.cumsum([0] + counts[:-1]))
    n_chan = int(sum(counts))
    first_data = motion_at + 3
    data_lines = [(first_data + i + 1, ln) for i, ln in enumerate(lines[first_data:]) if ln.strip()]
    if len(data_lines) < n_frames:
        raise BVHError(f"{source}: truncated file: header says {n_frames} frames, found {len(data_lines)}")
    if len(data_lines) > n_frames:
        raise BVHError(f"{source}:{data_lines[n_frames][0]}: {len(data_lines) - n_frames} frame lines "
                       f"beyond the {n_frames} frames the header declares")
    motion = np.empty((n_frames, n_chan), dtype=np.float64)
    for f, (line_no, ln) in enumerate(data_lines):
        values = ln.split()
        if len(values) != n_chan:
            raise BVHError(f"{source}:{line_no}: frame {f} has {len(values)} values, "
                           f"the hierarchy declares {n_chan} channels")
        try:
            motion[f] = [float(v) for v in values]
        except ValueError as e:
            raise BVHError(f"{source}:{line_no}: frame {f}: {e}") from None
    bad = ~np.isfinite(motion)
    if bad.any():
        f, c = np.argwhere(bad)[0]
        joint = int(np.searchsorted(np.cumsum(counts), c, side="right"))
        raise BVHError(f"{source}:{data_lines[f][0]}: frame {f} channel {c} "
                       f"({out['names'][joint]} {out['channels'][joint][c - starts[joint]]}) is "
                       f"{motion[f, c]} (not finite)")
    return BVH(names=out["names"], parents=np.array(out["parents"]),
               offsets=np.array(out["offsets"], dtype=np.float64), channels=out["channels"],
               motion=motion, frame_time_s=frame_time, source=source,
               channel_start=[int(s) for s in starts])


def read_bvh(path: str | Path) -> BVH:
    """Parse a BVH file on disk."""
    path = Path(path)
    return parse_bvh(path.read_text(encoding="utf-8"), source=str(path))
