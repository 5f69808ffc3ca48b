"""Human3.6M (VideoPose3D's files) -> our dataset file, so the same training scripts run on it.

    python training/prepare_h36m.py --h36m /data/data_3d_h36m.npz [--trust-pickle] \
        --out data/h36m17.npz
    # then set data.dataset: data/h36m17.npz (and data.fps: 50) in a training config

Splits: S1, S5, S6, S7 train; S8 validation (model selection); S9, S11 test - the field's test
subjects, with a held-out validation subject instead of selecting on test as the reference did.
VideoPose3D's `data_3d_h36m.npz` is a pickle: loading it runs code from the file, so it needs
--trust-pickle (only for a file you made or trust); the pickle-free layout of
`diffhpe_models.h36m.save_h36m_npz` needs nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffhpe_models.dataset import DatasetError, save_dataset
from diffhpe_models.h36m import H36M_FPS, load_h36m_3d

SPLITS = {"S1": "train", "S5": "train", "S6": "train", "S7": "train", "S8": "validation",
          "S9": "test", "S11": "test"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--h36m", type=Path, required=True, help="data_3d_h36m.npz (VideoPose3D)")
    ap.add_argument("--out", type=Path, default=Path("data/h36m17.npz"))
    ap.add_argument("--trust-pickle", action="store_true",
                    help="allow loading a pickled file (runs code from it: trusted files only)")
    a = ap.parse_args(argv)
    try:
        ds = load_h36m_3d(a.h36m, trust_pickle=a.trust_pickle, splits=SPLITS)
        meta = {k: {"fps": ds.fps[k], "source": ds.source[k], "split": ds.split[k]} for k in ds.sequences}
        save_dataset(a.out, ds.sequences, meta, extra={"origin": "human3.6m", "fps": H36M_FPS})
    except (DatasetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts = {s: sum(len(v) for k, v in ds.sequences.items() if ds.split[k] == s) for s in set(SPLITS.values())}
    print(f"wrote {a.out}: {len(ds)} sequences; frames " +
          ", ".join(f"{s} {counts[s]}" for s in ("train", "validation", "test")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
