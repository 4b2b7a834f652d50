"""Inputs (covariates): session files with ``inputs`` fit, evaluate and infer; the switching
models use them in the dynamics and, with recurrent transitions, in the transition logits."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from numpyro import handlers

import neurodyn
from neurodyn.cli import main
from neurodyn.data import load_session, save_session
from neurodyn.data.simulators.switching import simulate_input_switching
from neurodyn.families.switching import build
from neurodyn.families.switching.predict import Fitted, forecast
from neurodyn.models.switching import log_transitions


@pytest.fixture(scope="module")
def input_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    argv = [
        "simulate",
        "input-switching",
        "--out",
        str(root / "train.npz"),
        "--test-out",
        str(root / "test.npz"),
        "--trials",
        "10",
        "--timesteps",
        "30",
        "--neurons",
        "6",
    ]
    assert main(argv) == 0
    assert (
        main(
            [
                "fit",
                "srnn",
                str(root / "train.npz"),
                "--out",
                str(root / "run"),
                "--states",
                "2",
                "--latent-dim",
                "2",
                "--steps",
                "30",
                "--quiet",
            ]
        )
        == 0
    )
    return root


def test_a_session_with_inputs_fits_evaluates_and_infers(input_run, capsys, tmp_path):
    run = neurodyn.load(input_run / "run")
    assert run.config["spec"]["input_dim"] == 1
    assert run.params["transition_weights"].shape == (2 + 1, 2)  # latent and input -> logits
    capsys.readouterr()
    argv = [
        "evaluate",
        str(input_run / "run"),
        str(input_run / "test.npz"),
        "--samples",
        "4",
        "--particles",
        "16",
        "--replicates",
        "2",
    ]
    assert main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert np.isfinite(metrics["heldout_loglik_per_bin"]) and "state_accuracy" in metrics
    out = tmp_path / "post.nc"
    assert (
        main(
            [
                "infer",
                str(input_run / "run"),
                str(input_run / "test.npz"),
                "--out",
                str(out),
                "--samples",
                "3",
            ]
        )
        == 0
    )
    assert xr.open_datatree(out)["posterior"]["states"].shape[:2] == (1, 3)


def test_data_without_the_fitted_inputs_is_one_line(input_run, tmp_path, capsys):
    test = load_session(input_run / "test.npz")
    save_session(tmp_path / "bare.npz", dataclasses.replace(test, inputs=None))
    for command in (["evaluate"], ["infer"]):
        extra = ["--out", str(tmp_path / "p.nc")] if command == ["infer"] else []
        assert main([*command, str(input_run / "run"), str(tmp_path / "bare.npz"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "0 input channel(s)" in err and "fitted with 1" in err


def test_inputs_drive_transitions_and_forecasts(input_run):
    run = neurodyn.load(input_run / "run")
    fitted = Fitted(run.config, run.params)
    g = fitted.g
    g = g._replace(R=g.R.at[-1].set(jnp.asarray([-3.0, 3.0])))  # the input favours state 1
    h = np.zeros((4, 2), np.float32)
    no_input = np.asarray(log_transitions(g, h, np.zeros((4, 1), np.float32)))
    pulse = np.asarray(log_transitions(g, h, np.ones((4, 1), np.float32)))
    assert (pulse[:, :, 1] > no_input[:, :, 1]).all()
    assert (pulse[:, 0, 1] > no_input[:, 0, 1] + 1).all()  # 0 -> 1 much likelier
    # a forecast sees the inputs of the bins it predicts
    test = load_session(input_run / "test.npz")
    y, mask = test.y[:, :20], test.mask[:, :20]
    args = (fitted, y, mask, (5,), 8, jax.random.PRNGKey(0))
    quiet = forecast(*args, u=np.zeros_like(test.inputs))[5]
    driven = forecast(*args, u=10 * np.ones_like(test.inputs))[5]
    assert not np.allclose(np.asarray(quiet), np.asarray(driven))


def test_model_requires_inputs_of_the_fitted_width(input_run):
    run = neurodyn.load(input_run / "run")
    program = build(run.config)
    batch = {"y": np.zeros((2, 5, 6), np.float32), "mask": np.ones((2, 5, 6), bool)}
    with pytest.raises(ValueError, match=r"batch\['u'\] must be \[B, T, 1\]"):
        with handlers.seed(rng_seed=0), handlers.substitute(data=run.params):
            program.model(batch, num_trials=2)


def test_the_simulator_switches_at_the_pulse():
    s = simulate_input_switching(seed=3, num_trials=5, num_timesteps=40)
    pulse = s.inputs[..., 0].argmax(1)
    assert (s.states[np.arange(5), pulse] == 1).all()
    assert (s.states[np.arange(5), pulse - 1] == 0).all()


@pytest.mark.slow
def test_inputs_make_srnn_forecast_the_switch(tmp_path):
    """On the input-switching simulation, trials whose pulse falls in the forecast window:
    srnn with the inputs forecasts them better and scores a higher held-out likelihood than
    srnn without (measured in docs/results/inputs.md: forecast_r2 at 10 bins 0.86 against
    -2.9; 2.80 against 2.71 nats per bin)."""
    sim = simulate_input_switching(
        seed=0, num_trials=72, num_timesteps=60, pulse_window=(0.2, 0.95)
    )
    late = np.asarray(sim.meta["pulse_bins"]) >= 50  # the switch comes after the forecast origin
    train, test = sim.select(~late), sim.select(late)
    scores = {}
    for name, strip in (("with", False), ("without", True)):
        tr, te = (dataclasses.replace(s, inputs=None) if strip else s for s in (train, test))
        run = neurodyn.fit(
            "srnn", [tr], out=tmp_path / name, states=2, latent_dim=2, progress=False
        )
        assert run.metrics["fit"]["converged"]
        scores[name] = run.evaluate(te, num_samples=16, particles=256, replicates=4)
    with_, without = scores["with"], scores["without"]
    for k in ("5", "10"):
        assert with_["forecast_r2"][k] > without["forecast_r2"][k] + 0.5
    gain = with_["heldout_loglik_per_bin"] - without["heldout_loglik_per_bin"]
    assert gain > 10 * (with_["heldout_loglik_mcse"] + without["heldout_loglik_mcse"])
