"""A fit killed (SIGKILL) or interrupted (SIGINT, i.e. Ctrl-C) in its warm start, its SVI loop
or its post-fit evaluation: ``fit --resume`` completes the run with ``params.npz`` and the
loss curve bit-equal to an uninterrupted fit's, and the Ctrl-C message says what is true."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neurodyn.cli import main
from neurodyn.inference import run_folder, runs

ROOT = Path(__file__).resolve().parents[1]
# 300 steps: a checkpoint at step 250 (the switching family's default interval)
FIT = ["--steps", "300", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Tiny data and the uninterrupted fit (in this process)."""
    root = tmp_path_factory.mktemp("kill")
    data = root / "train.npz"
    argv = ["simulate", "lorenz", "--out", data, "--trials", "4", "--timesteps", "10"]
    assert main([str(a) for a in [*argv, "--neurons", "2"]]) == 0
    assert main(["fit", "hmm", str(data), "--out", str(root / "ref"), *FIT]) == 0
    return data, root / "ref"


def interrupted_fit(data, out: Path, phase: str, sig) -> tuple[int, str]:
    """Run the fit in a subprocess, send ``sig`` when it pauses at ``phase``; (status,
    stderr)."""
    flag = out.parent / f"{out.name}.paused"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        run_folder.PAUSE_ENV: phase,
        "NEURODYN_TEST_PAUSE_FILE": str(flag),
    }
    argv = [sys.executable, "-m", "neurodyn.cli", "fit", "hmm", str(data), "--out", str(out)]
    proc = subprocess.Popen(
        [*argv, *FIT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the fit never paused at {phase}: {proc.communicate()[1]}")
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def loss_column(run: Path) -> list[str]:
    """The step and loss columns of ``loss.csv`` (the seconds column is wall time)."""
    return [",".join(r.split(",")[:2]) for r in (run / "loss.csv").read_text().splitlines()]


def assert_resumes_to_the_reference(data, run, ref):
    assert main(["fit", "hmm", str(data), "--out", str(run), "--resume", *FIT]) == 0
    saved, want = runs.read_npz(run / runs.PARAMS), runs.read_npz(ref / runs.PARAMS)
    assert sorted(saved) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(saved[key], want[key])
    assert loss_column(run) == loss_column(ref)
    assert not (run / run_folder.INCOMPLETE).exists() and not (run / run_folder.LOCK).exists()
    assert (run / runs.METRICS).exists() and (run / runs.POSTERIOR).exists()


@pytest.mark.parametrize("phase", ["warm_start", "svi", "evaluation"])
def test_sigkill_then_resume(reference, tmp_path, phase):
    data, ref = reference
    run = tmp_path / "run"
    status, _ = interrupted_fit(data, run, phase, signal.SIGKILL)
    assert status == -signal.SIGKILL
    # the partial run is in place, visible, marked incomplete
    assert (run / runs.CONFIG).exists() and (run / run_folder.INCOMPLETE).exists()
    assert (run / "checkpoint.npz").exists() == (phase != "warm_start")
    assert (run / runs.PARAMS).exists() == (phase == "evaluation")
    assert main(["evaluate", str(run), str(data)]) == 2  # not a finished run yet
    assert_resumes_to_the_reference(data, run, ref)


@pytest.mark.parametrize(
    "phase, says",
    [
        ("warm_start", "nothing to resume"),
        ("svi", "the checkpoint is kept"),
        ("evaluation", "finishes the evaluation without refitting"),
    ],
)
def test_ctrl_c_says_what_is_true_then_resume(reference, tmp_path, phase, says):
    data, ref = reference
    run = tmp_path / "run"
    status, err = interrupted_fit(data, run, phase, signal.SIGINT)
    assert status == 130
    message = err.strip().splitlines()[-1]
    assert says in message and "Traceback" not in err, err
    if phase == "warm_start":  # nothing was fitted: the folder it made is gone
        assert not run.exists() and "was removed" in message
        assert main(["fit", "hmm", str(data), "--out", str(run), "--resume"]) == 2
        shutil.copytree(ref, run)  # (the fresh fit is the reference)
        return
    assert "--resume" in message and str(run) in message
    assert (run / "checkpoint.npz").exists() and (run / run_folder.INCOMPLETE).exists()
    assert (run / runs.PARAMS).exists() == (phase == "evaluation")
    assert_resumes_to_the_reference(data, run, ref)
