"""The one CPU thread policy for every pool we create: ONNX Runtime sessions and torch.

Why (measured on the 2-core CPU, where MediaPipe and the lifter share the cores):
- ONNX Runtime at 2 intra-op threads with spinning on was ~2x slower than at 1 thread when the
  other core was busy; the same 2 threads with `session.intra_op.allow_spinning` off were
  2-3.6x faster than with it on. A spinning worker burns the core another stage needs.
- torch with OpenMP's default (active) wait policy collapsed ~11x next to other busy threads;
  OMP_WAIT_POLICY=PASSIVE fixes it. OpenMP reads that variable once, when torch loads its
  runtime, so it is set here, at import: import this module (or `runtime`, which imports it)
  before anything imports torch. A value the user exported is kept.
Default: 1 intra-op thread (the node's `intra_op_threads: 1`); 0 means one per core.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

DEFAULT_INTRA_OP_THREADS = 1
ORT_SPINNING = False  # busy-waiting workers steal the core the detector runs on
OMP_WAIT_POLICY = "PASSIVE"

# Too late for a torch already loaded without the variable: remembered, to warn.
_TORCH_STARTED_ACTIVE = "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)


def intra_op_threads(requested: int | None = None) -> int:
    """Threads for one model: None -> DEFAULT_INTRA_OP_THREADS, 0 -> one per core, n -> n."""
    if requested is None:
        return DEFAULT_INTRA_OP_THREADS
    if requested < 0:
        raise ValueError(f"intra_op_threads must be >= 0 (0: one per core), got {requested}")
    return int(requested) or (os.cpu_count() or 1)


def configure_ort_session(options, threads: int | None = None):
    """Set the thread policy on an onnxruntime.SessionOptions; returns it.

    intra-op threads from `intra_op_threads(threads)`, one inter-op thread (the graph runs
    sequentially), intra-op spinning off (ORT_SPINNING)."""
    options.intra_op_num_threads = intra_op_threads(threads)
    options.inter_op_num_threads = 1
    spin = "1" if ORT_SPINNING else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options


def configure_torch(threads: int | None = None) -> int:
    """torch intra-op threads from `intra_op_threads(threads)` (process-wide); returns them.
    Warns once when torch was loaded before the wait policy was set (then it spins)."""
    import torch

    n = intra_op_threads(threads)
    torch.set_num_threads(n)
    check_torch_wait_policy()
    return n


_warned = False


def check_torch_wait_policy() -> bool:
    """True when torch runs (or will run) with the passive OpenMP wait policy."""
    global _warned
    ok = (os.environ.get("OMP_WAIT_POLICY", "").upper() == OMP_WAIT_POLICY
          and not _TORCH_STARTED_ACTIVE)
    if not ok and "torch" in sys.modules and not _warned:
        _warned = True
        log.warning("torch's OpenMP threads busy-wait (OMP_WAIT_POLICY was not PASSIVE when "
                    "torch loaded) and can run ~11x slower next to other busy threads; export "
                    "OMP_WAIT_POLICY=PASSIVE or import diffhpe_models.threads before torch")
    return ok
