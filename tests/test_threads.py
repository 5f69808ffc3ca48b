"""The one thread policy: ONNX Runtime sessions and torch get it from diffhpe_models.threads."""
import os
import subprocess
import sys

import onnxruntime as ort
import pytest

from diffhpe_models import threads
from diffhpe_models.runtime import load_lifter


def test_thread_counts_and_bad_values():
    assert threads.intra_op_threads(None) == threads.DEFAULT_INTRA_OP_THREADS == 1
    assert threads.intra_op_threads(0) == (os.cpu_count() or 1)
    assert threads.intra_op_threads(3) == 3
    with pytest.raises(ValueError, match="intra_op_threads"):
        threads.intra_op_threads(-1)


def test_load_lifter_sessions_follow_the_policy(tiny_onnx):
    for requested, expected in ((None, 1), (2, 2)):
        options = load_lifter(tiny_onnx, intra_op_threads=requested).backend.session.get_session_options()
        assert options.intra_op_num_threads == expected and options.inter_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    fresh = threads.configure_ort_session(ort.SessionOptions())
    assert fresh.get_session_config_entry("session.inter_op.allow_spinning") == "0"


@pytest.mark.parametrize("exported", [None, "ACTIVE"])
def test_wait_policy_is_set_before_torch_loads(exported):
    # A fresh process: loading the runtime sets the policy torch's OpenMP reads when it loads;
    # a value the user exported wins (and the policy check says so).
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if exported:
        env["OMP_WAIT_POLICY"] = exported
    code = ("import os, diffhpe_models.runtime, torch\n"
            "from diffhpe_models.threads import configure_torch, check_torch_wait_policy\n"
            "print(os.environ['OMP_WAIT_POLICY'], configure_torch(None), torch.get_num_threads(),"
            " check_torch_wait_policy())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ([exported, "1", "1", "False"] if exported else ["PASSIVE", "1", "1", "True"])
