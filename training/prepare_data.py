#!/usr/bin/env python3
"""Build the mocap dataset file from the pinned registry packages.

Fetches holosoma-retargeting 0.1.0 (wheel) and bvhtools 1.6.0 (sdist) with pip into the cache
(once), reads the motion straight from the archives, maps it onto H36M-17 (metres, Z up) and
writes data/mocap_h36m17.npz atomically, then prints a summary. Safe to re-run: the cache is
reused and the output is rewritten with the same content. See docs/data.md.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from diffhpe_models import mocap
from diffhpe_models.dataset import SPLITS, load_dataset, save_dataset
from diffhpe_models.fetch import FetchError


def _label(source: str) -> str:
    """'pkg==ver:long/path/file' -> 'pkg==ver:file'; the 5 climb files share one label."""
    package, member = source.split(":", 1)
    if "/climb/" in member:
        return f"{package}:climb/mocap_climb_seq_*"
    return f"{package}:{member.rsplit('/', 1)[-1]}"


def summary_rows(dataset) -> list[tuple[str, str, int, int, str]]:
    """(source, split, sequences, frames, fps) grouped by source file and split."""
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for key, seq in dataset.sequences.items():
        fps = f"{dataset.fps[key]:g}" + (" (assumed)" if dataset.info[key].get("fps_assumed") else "")
        g = groups[(_label(dataset.source[key]), dataset.split[key], fps)]
        g[0] += 1
        g[1] += len(seq)
    order = sorted(groups, key=lambda k: (k[0], SPLITS.index(k[1])))
    return [(src, split, groups[(src, split, fps)][0], groups[(src, split, fps)][1], fps)
            for src, split, fps in order]


def format_table(dataset) -> str:
    rows = summary_rows(dataset)
    header = ("source", "split", "sequences", "frames", "fps")
    body = [tuple(str(c) for c in r) for r in rows]
    for split in SPLITS:
        sub = dataset.subset(split)
        body.append(("total", split, str(len(sub)), str(sub.num_frames()), ""))
    body.append(("total", "all", str(len(dataset)), str(dataset.num_frames()), ""))
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path(".cache/packages"),
                   help="where pip downloads the source packages (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("data/mocap_h36m17.npz"),
                   help="the dataset file to write (default: %(default)s)")
    args = p.parse_args(argv)

    try:
        archives = mocap.fetch_sources(args.cache)
    except FetchError as e:
        print(f"prepare_data: cannot get a source package: {e}\n"
              f"(the archives live in {args.cache}; a corrupt one is re-downloaded automatically, "
              "a failing download needs access to the package registry)", file=sys.stderr)
        return 1
    sequences = []
    try:
        for label, task in tqdm(mocap.source_tasks(archives), desc="converting", unit="file"):
            sequences.extend(task())
    except (FetchError, ValueError) as e:
        print(f"prepare_data: conversion failed: {e}", file=sys.stderr)
        return 1
    arrays, meta = mocap.dataset_inputs(sequences)
    extra = {"packages": {name: version for name, (version, _) in mocap.PACKAGES.items()},
             "created_by": "training/prepare_data.py"}
    save_dataset(args.out, arrays, meta, extra=extra)
    dataset = load_dataset(args.out)  # read back what was written: the summary is of the file
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    print(format_table(dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
