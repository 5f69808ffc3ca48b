#!/usr/bin/env python3
"""Carry a dataset file to a training machine that cannot build it (a lent GPU box without the
mocap sources): whole millimetres, chosen splits, compressed; and back into the dataset format.

    python training/pack_dataset.py pack data/mocap_h36m17_full.npz packed.npz [--splits train validation]
    python training/pack_dataset.py unpack packed.npz data/mocap_h36m17_full.npz   # on the other machine

`pack` stores each sequence as int16 millimetres around its own mean position (a float32 offset),
so the rounding error is at most 0.5 mm per coordinate: the full mocap's training and validation
splits go from 94 MB to 25 MB. By default the test split stays behind (it is never trained on).
`unpack` writes an ordinary dataset file (diffhpe_models.dataset) with the same keys, frame rates,
splits, sources and notes. Both write atomically. Exit codes: 0 written, 2 bad input (nothing
written).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from diffhpe_models.atomic import atomic_save_npz_compressed
from diffhpe_models.dataset import SPLITS, DatasetError, load_dataset, save_dataset

FORMAT = "diffhpe-mocap-packed-v1"
MM_LIMIT = 32767  # int16: a sequence may span +-32.7 m around its mean


def pack(source: str, out: str, splits=("train", "validation")) -> int:
    """Write `out`; returns the number of sequences packed. Raises DatasetError."""
    ds = load_dataset(source)
    meta, arrays = {}, {}
    for i, key in enumerate(k for k in sorted(ds.sequences) if ds.split[k] in splits):
        seq = ds.sequences[key].astype(np.float64)
        offset = seq.reshape(-1, 3).mean(axis=0).astype(np.float32)
        mm = np.round((seq - offset) * 1000.0)
        if np.abs(mm).max() > MM_LIMIT:
            raise DatasetError(f"{source}: {key} spans more than +-{MM_LIMIT / 1000:.1f} m around "
                               "its mean; it does not fit int16 millimetres")
        arrays[f"mm_{i}"], arrays[f"offset_{i}"] = mm.astype(np.int16), offset
        meta[str(i)] = {"key": key, "fps": ds.fps[key], "split": ds.split[key],
                        "source": ds.source[key], **ds.info[key]}
    if not meta:
        raise DatasetError(f"{source}: no sequence of the splits {list(splits)}")
    doc = {"format": FORMAT, "from": str(source), "sequences": meta}
    atomic_save_npz_compressed(out, metadata=np.array(json.dumps(doc)), **arrays)
    return len(meta)


def unpack(packed: str, out: str) -> int:
    """Write the dataset file `out` from a packed file; returns the number of sequences."""
    try:
        z = np.load(packed, allow_pickle=False)
        doc = json.loads(str(z["metadata"]))
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{packed}: not a packed dataset ({e})") from e
    if doc.get("format") != FORMAT:
        raise DatasetError(f"{packed}: format {doc.get('format')!r}, expected {FORMAT!r}")
    sequences, meta = {}, {}
    for i, info in doc["sequences"].items():
        info = dict(info)
        key = info.pop("key")
        try:
            mm, offset = z[f"mm_{i}"], z[f"offset_{i}"]
        except (KeyError, ValueError) as e:
            raise DatasetError(f"{packed}: sequence {key!r} has no readable arrays ({e})") from e
        sequences[key] = (mm.astype(np.float64) / 1000.0 + offset).astype(np.float32)
        meta[key] = info
    save_dataset(out, sequences, meta, extra={"unpacked_from": str(doc.get("from", packed))})
    return len(sequences)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="dataset file -> packed file")
    a.add_argument("dataset")
    a.add_argument("out")
    a.add_argument("--splits", nargs="+", choices=SPLITS, default=["train", "validation"])
    b = sub.add_parser("unpack", help="packed file -> dataset file")
    b.add_argument("packed")
    b.add_argument("out")
    args = p.parse_args(argv)
    try:
        if args.command == "pack":
            n = pack(args.dataset, args.out, tuple(args.splits))
        else:
            n = unpack(args.packed, args.out)
    except DatasetError as e:
        print(f"pack_dataset.py: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({n} sequences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
