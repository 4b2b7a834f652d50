"""The held-out workflow on the SRNN paper's Lorenz data, as a user runs it (slow): default fits
converge, ``compare`` ranks the same way for two seeds with a small Monte Carlo error, and
``evaluate --json`` is strict JSON whose SMC kept enough particles alive."""

import numpy as np
import pytest

from neurodyn.cli import main
from neurodyn.data import make_session, save_session, split_trials
from neurodyn.families import switching
from neurodyn.inference import smc

from .conftest import strict_json


@pytest.mark.slow
def test_lorenz_fits_converge_and_score_precisely(shared_data, tmp_path, capsys):
    x = np.load(shared_data / "srnn_lorenz.npy").astype(np.float32)
    labels = switching.kmeans(x.reshape(-1, x.shape[-1]), 2, 0, restarts=10).reshape(x.shape[:2])
    train, test = split_trials(make_session(x, states=labels, name="srnn_lorenz"), 12)
    save_session(tmp_path / "train.npz", train)
    save_session(tmp_path / "test.npz", test)
    models = ("srnn", "slds")
    for model in models:
        argv = ["fit", model, str(tmp_path / "train.npz"), "--out", str(tmp_path / model)]
        assert main(argv + ["--states", "2", "--latent-dim", "3", "--quiet"]) == 0
        summary = strict_json((tmp_path / model / "metrics.json").read_text())
        assert summary["fit"]["converged"] is True, (model, summary["fit"])
    rankings = []
    for seed in (0, 1):
        out = tmp_path / f"compare{seed}.json"
        runs = [str(tmp_path / model) for model in models]
        argv = ["compare", *runs, "--data", str(tmp_path / "test.npz"), "--seed", str(seed)]
        assert main(argv + ["--json", str(out)]) == 0
        table = strict_json(out.read_text())
        for model in models:
            assert table[model]["estimator"] == "smc"
            assert table[model]["mcse"] < 2.0, (seed, model, table[model])
            assert table[model]["ess_fraction_min"] >= smc.MIN_ESS_FRACTION, (seed, table[model])
        rankings.append(sorted(models, key=lambda model: table[model]["rank"]))
    assert rankings[0] == rankings[1], rankings
    out = tmp_path / "evaluate.json"
    assert (
        main(["evaluate", str(tmp_path / "srnn"), str(tmp_path / "test.npz"), "--json", str(out)])
        == 0
    )
    metrics = strict_json(out.read_text())
    assert metrics["heldout_estimator"] == "smc"
    assert metrics["smc_min_ess_fraction"] >= smc.MIN_ESS_FRACTION, metrics
    assert "warning" not in capsys.readouterr().err
