"""The motor-cortex few-shot case study (DAD recordings, meta family): helpers and a quick run."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from .conftest import CASE_STUDIES, load_case_study

SCRIPT = CASE_STUDIES / "motor_cortex_fewshot.py"


def _module():
    return load_case_study("motor_cortex_fewshot")


def test_decoder_split_and_forecast_cut():
    from neurodyn.data import make_session
    from neurodyn.inference.metrics import r2_variance_weighted, ridge_decode_r2

    mcf = _module()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 6, 5))
    Y = X[..., :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]]) + 0.1 * rng.normal(size=(10, 6, 2))
    # The local decoder fitted on the first 8 trials equals ridge_decode_r2 with 80%.
    decode = mcf.ridge_fit(X[:8].reshape(-1, 5), Y[:8].reshape(-1, 2))
    ours = r2_variance_weighted(Y[8:], decode(X[8:]))
    assert ours == pytest.approx(ridge_decode_r2(X, Y, train_fraction=0.8), abs=1e-12)

    mask = np.arange(9)[None] < np.array([9, 7, 6, 4, 9, 9, 8, 9, 9, 9])[:, None]
    s = make_session(rng.poisson(1.0, (10, 9, 3)), mask, likelihood="poisson")
    pool, test = mcf.split_recording(s)
    assert (pool.num_trials, test.num_trials) == (7, 3)
    last, valid = mcf.forecast_cut(s, 5)
    assert valid.tolist() == [True, True, True, False] + [True] * 6
    assert last[:3].tolist() == [3, 1, 0]  # the guide sees bins 0..L-6


def _finite(x):
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, list):
        return all(_finite(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)


@pytest.mark.slow
def test_motor_cortex_fewshot_quick(shared_data, tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--data", str(shared_data), "--out", str(tmp_path)]
    subprocess.run([*cmd, "--quick"], check=True)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m) >= {"results", "mean", "meta_beats_single_session", "reference", "wall_seconds"}
    entry = m["results"]["mihi-a"]["meta-dssm"]["4"]
    assert set(entry) >= {
        "heldout_loglik_per_bin",
        "psis_khat",
        "recon_r2",
        "forecast_r2",
        "velocity_r2_recon",
        "velocity_r2_forecast",
        "embedding_test",
        "co_bps",
        "co_bps_neurons",
    }
    assert "co_bps_smoothing" in m["reference"]["mihi-a"]
    assert set(entry["forecast_r2"]) == set(entry["velocity_r2_forecast"]) == {"1", "3", "5"}
    assert set(m["mean"]) == {"meta-dssm", "single-session", "shared-dynamics"}
    assert set(m["mean"]["single-session"]) == {"4", "16"}
    assert set(m["meta_beats_single_session"]) == {"4", "16"}
    assert all(isinstance(v, bool) for v in m["meta_beats_single_session"].values())
    assert _finite(m["results"]) and _finite(m["mean"]) and _finite(m["reference"])
    for name in ("embeddings.png", "velocity_decoding.png", "fewshot_metrics.png"):
        assert (tmp_path / name).stat().st_size > 0
