#!/usr/bin/env python3
"""Draw real frames of every mocap source as H36M-17 skeletons -> docs/img/data_sources.png.

Each panel shows one frame: the source's own joints as small grey dots, the mapped H36M-17
skeleton on top (left side blue, right side red, centre black; derived nose and head top as
hollow markers), seen from the person's front-left. A reader can check that the mapping picks the
right joints and sides and that the derived head points sit where a head is.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffhpe_models import bandai_namco, mocap  # noqa: E402
from diffhpe_models.atomic import atomic_write_bytes  # noqa: E402
from diffhpe_models.bvh import parse_bvh  # noqa: E402
from diffhpe_models.fetch import read_archive_member, read_archive_text  # noqa: E402
from diffhpe_models.skeleton import BONES, JOINT_NAMES, side_of  # noqa: E402

COLOURS = {"left": "tab:blue", "right": "tab:red", "centre": "black"}
DERIVED = (JOINT_NAMES.index("neck_nose"), JOINT_NAMES.index("head"))
FRAMES_PER_ROW = 4


def bandai_namco_rows(directory: Path, clips=("dataset-1_kick_normal_001", "dataset-2_wave-both-hands_normal_001")):
    """Rows of Bandai Namco clips (its head top is extrapolated: the Head joint's end site has a
    zero offset)."""
    rows = []
    for archive in bandai_namco.find_archives(directory):
        for clip, text in bandai_namco.iter_clips(archive, {}):
            if Path(clip.member).stem in clips:
                bvh = parse_bvh(text, source=clip.member)
                src = mocap.BVHSource(clip.member, "bandai", "bandai", 0.01, bandai_namco.BANDAI_TO_H36M)
                raw, _, _ = mocap.bvh_world_points(bvh, src)
                pose, _ = mocap.bvh_to_h36m(bvh, src)
                rows.append((f"Bandai Namco {Path(clip.member).stem} (30 fps)", raw, pose, bvh.fps))
                break
    return rows


def raw_and_mapped(archives: dict[str, Path]):
    """Rows of (title, raw source points (T, K, 3), mapped (T, 17, 3), fps), metres, Z up."""
    holo = archives[mocap.HOLOSOMA[0]]
    names = mocap.holosoma_joint_names(holo)
    members = mocap.holosoma_climb_members(holo)
    rows = []
    for i in (0, 4):
        raw = np.load(io.BytesIO(read_archive_member(holo, members[i])), allow_pickle=False)
        seq = mocap.load_holosoma_climb(holo, members[i], names)
        rows.append((f"holosoma climb seq {i} (30 fps assumed)", raw, seq.positions_m, seq.fps))
    bvht = archives[mocap.BVHTOOLS[0]]
    for src in (mocap.BVH_SOURCES[0], mocap.BVH_SOURCES[2]):
        bvh = parse_bvh(read_archive_text(bvht, f"{mocap.BVH_DIR}/{src.file}"), source=src.file)
        raw, _, _ = mocap.bvh_world_points(bvh, src)
        pose, _ = mocap.bvh_to_h36m(bvh, src)
        rows.append((f"bvhtools {src.file} ({src.skeleton}, {bvh.fps:.0f} fps)", raw, pose, bvh.fps))
    return rows


def draw(ax, raw: np.ndarray, pose: np.ndarray) -> None:
    """One frame: source joints (grey), H36M-17 bones by side, derived joints hollow."""
    centre = pose[0].copy()  # pelvis at the middle of the panel, floor kept at z = 0
    centre[2] = 0.0
    r, p = raw - centre, pose - centre
    ax.scatter(*r.T, s=4, c="0.55", depthshade=False)
    for child, parent in BONES:
        ax.plot(*p[[child, parent]].T, c=COLOURS[side_of(child)], lw=2.2)
    for j in range(len(p)):
        hollow = j in DERIVED
        ax.scatter(*p[j], s=30 if hollow else 14, depthshade=False,
                   c="white" if hollow else COLOURS[side_of(j)], edgecolors=COLOURS[side_of(j)],
                   linewidths=1.2, zorder=5)
    # View from the body's front-left: forward = left x up.
    left = p[JOINT_NAMES.index("left_hip")] - p[JOINT_NAMES.index("right_hip")]
    fwd = np.cross(left, [0.0, 0.0, 1.0])
    view = fwd / np.linalg.norm(fwd) + 0.6 * left / np.linalg.norm(left)
    ax.view_init(elev=10, azim=np.degrees(np.arctan2(view[1], view[0])))
    half = 0.85
    z0 = min(0.0, p[:, 2].min() - 0.05)
    z1 = max(z0 + 2 * half, p[:, 2].max() + 0.3)
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_zlim(z0, z1)
    ax.set_box_aspect((2 * half, 2 * half, z1 - z0), zoom=1.25)
    xx, yy = np.meshgrid([-half, half], [-half, half])
    ax.plot_surface(xx, yy, np.zeros_like(xx), color="0.85", alpha=0.5, shade=False)
    ax.set_axis_off()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path(".cache/packages"))
    p.add_argument("--out", type=Path, default=Path("docs/img/data_sources.png"))
    p.add_argument("--bandai-namco", type=Path, default=bandai_namco.DEFAULT_DIR,
                   help="folder of the Bandai Namco archives (rows left out when absent)")
    args = p.parse_args(argv)
    rows = raw_and_mapped(mocap.fetch_sources(args.cache))
    if args.bandai_namco.is_dir():
        rows += bandai_namco_rows(args.bandai_namco)
    fig = plt.figure(figsize=(2.6 * FRAMES_PER_ROW, 3.3 * len(rows) + 0.4))
    subfigs = fig.subfigures(len(rows), 1)
    for sub, (title, raw, pose, fps) in zip(subfigs, rows):
        sub.suptitle(title, fontsize=11, weight="bold", x=0.02, ha="left")
        frames = (np.linspace(0.1, 0.9, FRAMES_PER_ROW) * (len(pose) - 1)).astype(int)
        for c, f in enumerate(frames):
            ax = sub.add_subplot(1, FRAMES_PER_ROW, c + 1, projection="3d")
            draw(ax, raw[f], pose[f])
            ax.set_title(f"frame {f} ({f / fps:.1f} s)", fontsize=9, y=0.95)
        sub.subplots_adjust(left=0, right=1, bottom=0, top=0.9, wspace=0)
    handles = [plt.Line2D([], [], c=COLOURS[s], lw=2, label=s) for s in ("left", "right", "centre")]
    handles += [plt.Line2D([], [], ls="", marker="o", mfc="white", mec="black", label="derived (nose, head top)"),
                plt.Line2D([], [], ls="", marker="o", ms=3, c="0.55", label="source joints")]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
