"""The motor-cortex states case study (Chewie, srnn and rslds): phase labels and a quick run."""

import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import CASE_STUDIES, load_case_study

SCRIPT = CASE_STUDIES / "motor_cortex_states.py"


def _module():
    return load_case_study("motor_cortex_states")


def test_reach_phases_and_split():
    mcs = _module()
    # One trial: hold at speed 1, then speed rises to a peak of 10 at the last bin.
    speed = np.array([1.0, 1.0, 1.0, 1.5, 3.0, 4.0, 6.0, 8.0, 10.0, 0.0])
    velocity = np.stack([speed, np.zeros_like(speed)], -1)[None]
    observed = np.arange(10)[None] < 9  # the last bin is padding
    labels, onset = mcs.reach_phases(velocity, observed)
    # onset: after the last bin below 0.2 * 10; late reach from the first bin >= 5.
    assert onset.tolist() == [4]
    assert labels[0, :9].tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    train, test = mcs.stratified_split(np.repeat(np.arange(4), 8), 0.25, seed=0)
    assert len(test) == 8 and len(np.intersect1d(train, test)) == 0
    assert np.bincount(np.repeat(np.arange(4), 8)[test]).tolist() == [2, 2, 2, 2]


@pytest.mark.slow
def test_motor_cortex_states_quick(shared_data, tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--data", str(shared_data), "--out", str(tmp_path)]
    subprocess.run([*cmd, "--quick"], check=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"data", "comparison", "chosen_K", "fits", "baselines", "wall_seconds"}
    assert metrics["data"]["trials"] == metrics["data"]["train_trials"] + 25
    assert set(metrics["chosen_K"]) == {"srnn", "rslds"}
    assert all(k in (2, 3) for k in metrics["chosen_K"].values())
    runs = {f"{m}_K{k}" for m in ("srnn", "rslds") for k in (2, 3)}
    assert set(metrics["comparison"]["all"]) == runs
    for fit in metrics["fits"].values():
        for key in ("state_accuracy", "accuracy_many_to_one", "hold_vs_reach_accuracy"):
            assert 0.0 <= fit[key] <= 1.0
        assert np.isfinite(fit["heldout_loglik_per_bin"])
        assert np.isfinite(fit["co_bps"]) and len(fit["co_bps_neurons"]) == 14  # 20% of 71
    assert np.isfinite(metrics["baselines"]["co_bps_smoothing"])
    for name in ("state_rasters", "flow_fields_srnn", "flow_fields_rslds", "elpd_vs_k"):
        assert (tmp_path / f"{name}.png").exists()
