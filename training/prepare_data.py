#!/usr/bin/env python3
"""Build the mocap dataset file from the pinned registry packages and the Bandai Namco archives.

Fetches holosoma-retargeting 0.1.0 (wheel) and bvhtools 1.6.0 (sdist) with pip into the cache
(once), reads the Bandai Namco Research Motion Dataset 1+2 archives (`--bandai-namco DIR`, default
../shared/datasets/bandai-namco when present; sha256-checked), reads the motion straight from the
archives, maps it onto H36M-17 (metres, Z up) and writes the dataset atomically, then prints a
summary. `--registry-only` leaves Bandai Namco out (the small dataset the tests use). Safe to
re-run: the cache is reused and the output is rewritten with the same content. See docs/data.md.

    python training/prepare_data.py --registry-only --out data/mocap_h36m17.npz   # tests (make data)
    python training/prepare_data.py --out data/mocap_h36m17_full.npz              # training (make data-full)
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from diffhpe_models import bandai_namco, mocap
from diffhpe_models.dataset import SPLITS, load_dataset, save_dataset
from diffhpe_models.fetch import FetchError


def _label(source: str) -> str:
    """'pkg==ver:long/path/file' -> 'pkg==ver:file'; the 5 climb files share one label."""
    package, member = source.split(":", 1)
    if "/climb/" in member:
        return f"{package}:climb/mocap_climb_seq_*"
    if package in bandai_namco.ARCHIVES:  # one row per archive and split
        return f"{package.split('.')[0]}:*.bvh"
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
    p.add_argument("--bandai-namco", type=Path, default=None, metavar="DIR",
                   help=f"folder with the two Bandai Namco archives (default: {bandai_namco.DEFAULT_DIR} "
                        "when present)")
    p.add_argument("--registry-only", action="store_true",
                   help="only the registry packages (the small dataset the tests use)")
    args = p.parse_args(argv)
    bn_dir = args.bandai_namco
    if args.registry_only and bn_dir is not None:
        p.error("--registry-only and --bandai-namco exclude each other")
    if bn_dir is None and not args.registry_only and bandai_namco.DEFAULT_DIR.is_dir():
        bn_dir = bandai_namco.DEFAULT_DIR
    if bn_dir is None and not args.registry_only:
        print(f"prepare_data: no Bandai Namco archives at {bandai_namco.DEFAULT_DIR}: registry "
              "packages only (pass --bandai-namco DIR)", file=sys.stderr)

    try:
        archives = mocap.fetch_sources(args.cache)
    except FetchError as e:
        print(f"prepare_data: cannot get a source package: {e}\n"
              f"(the archives live in {args.cache}; a corrupt one is re-downloaded automatically, "
              "a failing download needs access to the package registry)", file=sys.stderr)
        return 1
    sequences = []
    try:
        tasks = mocap.source_tasks(archives)
        if bn_dir is not None:
            tasks += bandai_namco.source_tasks(bn_dir)
        for _label, task in tqdm(tasks, desc="converting", unit="file"):
            sequences.extend(task())
    except (FetchError, ValueError, OSError) as e:
        print(f"prepare_data: conversion failed: {e}", file=sys.stderr)
        return 1
    arrays, meta = mocap.dataset_inputs(sequences)
    extra = {"packages": {name: version for name, (version, _) in mocap.PACKAGES.items()},
             "created_by": "training/prepare_data.py"}
    if bn_dir is not None:
        extra["bandai_namco"] = {"archives": bandai_namco.ARCHIVES, "licence": bandai_namco.LICENCE}
    save_dataset(args.out, arrays, meta, extra=extra)
    dataset = load_dataset(args.out)  # read back what was written: the summary is of the file
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    print(format_table(dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
