"""Co-smoothing through the Run API and the command line (``--heldout-neurons``)."""

import dataclasses
import json

import numpy as np
import pytest

import neurodyn
from neurodyn.cli import main
from neurodyn.data import load_session
from neurodyn.inference.cosmoothing import co_bps


@pytest.fixture(scope="module")
def poisson_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cosmooth")
    neurodyn.api.simulate(
        "lorenz",
        root / "train.npz",
        test_out=root / "test.npz",
        trials=10,
        timesteps=30,
        neurons=8,
        test_trials=3,
        likelihood="poisson",
    )
    argv = [
        "fit",
        "slds",
        str(root / "train.npz"),
        "--out",
        str(root / "run"),
        "--states",
        "2",
        "--latent-dim",
        "2",
        "--steps",
        "40",
        "--heldout-neurons",
        "0.25",
        "--quiet",
    ]
    assert main(argv) == 0
    return root


def test_fit_records_the_neurons_and_evaluate_reports_co_bps(poisson_run, capsys):
    run = neurodyn.load(poisson_run / "run")
    assert run.config["likelihood"] == "poisson"
    chosen = run.config["heldout_neurons"]
    assert len(chosen) == 2 and all(0 <= i < 8 for i in chosen)
    capsys.readouterr()
    argv = [
        "evaluate",
        str(poisson_run / "run"),
        str(poisson_run / "test.npz"),
        "--samples",
        "4",
        "--particles",
        "16",
        "--replicates",
        "2",
        "--horizon",
        "1",
    ]
    assert main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["co_bps_neurons"] == chosen
    assert isinstance(metrics["co_bps"], float) and np.isfinite(metrics["co_bps"])


def test_co_bps_predicts_the_heldout_neurons_from_the_others_only(poisson_run, tmp_path):
    run = neurodyn.load(poisson_run / "run")
    test = load_session(poisson_run / "test.npz")
    index_file = tmp_path / "neurons.txt"
    index_file.write_text("1, 5\n")
    metrics = run.evaluate(
        test, horizons=(1,), num_samples=4, particles=16, replicates=2, heldout_neurons=index_file
    )
    assert metrics["co_bps_neurons"] == [1, 5]
    held_in = dataclasses.replace(test, mask=test.mask & ~np.isin(np.arange(8), [1, 5]))
    (rates,) = run.family.predicted_means(run.config, run.params, [held_in], num_samples=4, seed=0)
    expected = co_bps(test.y[..., [1, 5]], rates[..., [1, 5]], test.bin_mask)
    assert metrics["co_bps"] == pytest.approx(expected, rel=1e-6)
    (seen,) = run.family.predicted_means(run.config, run.params, [test], num_samples=4, seed=0)
    leaked = co_bps(test.y[..., [1, 5]], seen[..., [1, 5]], test.bin_mask)
    assert leaked != pytest.approx(expected, rel=1e-3)  # the mask hides the held-out spikes


def test_co_bps_is_null_with_a_reason_for_a_gaussian_run(tmp_path):
    neurodyn.api.simulate("lorenz", tmp_path / "g.npz", trials=6, timesteps=20, neurons=4)
    run = neurodyn.fit(
        "lds",
        [tmp_path / "g.npz"],
        out=tmp_path / "run",
        latent_dim=2,
        steps=5,
        progress=False,
        heldout_neurons=[0],
    )
    metrics = run.evaluate(
        tmp_path / "g.npz", horizons=(), num_samples=2, particles=8, replicates=2
    )
    assert metrics["co_bps"] is None and "gaussian" in metrics["co_bps_note"]


@pytest.mark.parametrize("value, message", [("1.5", "between 0 and 1"), ("missing.txt", "no such")])
def test_bad_heldout_neurons_is_one_line(poisson_run, capsys, value, message):
    argv = [
        "evaluate",
        str(poisson_run / "run"),
        str(poisson_run / "test.npz"),
        "--heldout-neurons",
        value,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
