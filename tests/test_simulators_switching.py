"""Switching simulators: shapes, labels consistent with the latents, likelihoods."""

import numpy as np
import pytest

from neurodyn.cli import main
from neurodyn.data import load_session
from neurodyn.data.simulators import get_simulator
from neurodyn.data.simulators.switching import (
    _rotation,
    lorenz_lobes,
    simulate_input_switching,
    simulate_lorenz,
    simulate_nascar,
)


def test_lorenz_states_are_the_lobes_and_switch():
    s = simulate_lorenz(seed=1, num_trials=4, num_timesteps=150, num_neurons=6)
    assert s.y.shape == (4, 150, 6) and s.latents.shape == (4, 150, 3)
    np.testing.assert_array_equal(s.states, lorenz_lobes(s.latents))  # standardising keeps sign
    switches = (np.diff(s.states, axis=1) != 0).sum()
    assert switches >= 4 and 0.2 < s.states.mean() < 0.8


def test_lorenz_poisson_counts():
    s = simulate_lorenz(seed=0, likelihood="poisson", num_trials=2, num_neurons=30)
    assert s.num_neurons == 30 and (s.y >= 0).all() and np.array_equal(s.y, np.round(s.y))


def test_nascar_visits_the_four_regimes_in_track_order():
    s = simulate_nascar(seed=0, num_trials=2, num_timesteps=300)
    assert set(np.unique(s.states)) == {0, 1, 2, 3}
    # Around the oval: bottom straight (3) -> right turn (0) -> top straight (2) -> left turn (1).
    order = {3: 0, 0: 2, 2: 1, 1: 3}
    for trial in s.states:
        changes = trial[1:][trial[1:] != trial[:-1]]
        before = trial[:-1][trial[1:] != trial[:-1]]
        assert all(order[b] == a for b, a in zip(before, changes, strict=True))
    assert np.abs(s.latents).max() < 3  # stays on the track


def test_registry_knows_the_names():
    assert get_simulator("lorenz") is simulate_lorenz
    with pytest.raises(ValueError, match="unknown simulator"):
        get_simulator("nope")


def test_input_switching_shapes_and_one_pulse_per_trial():
    s = simulate_input_switching(seed=0, num_trials=12, num_timesteps=50, num_neurons=20)
    assert s.y.shape == (12, 50, 20) and s.latents.shape == (12, 50, 2)
    assert s.inputs.shape == (12, 50, 1) and s.states.shape == (12, 50)
    assert ((s.inputs != 0).sum(axis=(1, 2)) == 1).all() and set(np.unique(s.inputs)) == {0, 1}
    pulse = s.inputs[..., 0].argmax(1)
    assert (pulse >= 10).all() and (pulse <= 40).all() and len(set(pulse)) > 3
    assert pulse.tolist() == s.meta["pulse_bins"]


def test_input_switching_switch_follows_the_pulse():
    s = simulate_input_switching(seed=1, num_trials=8, num_timesteps=60)
    # s_t = 1 exactly when a pulse came at bin t or earlier: the state is a function of the input.
    expected = np.cumsum(s.inputs[..., 0], axis=1) > 0
    np.testing.assert_array_equal(s.states, expected.astype(np.int32))
    assert ((np.diff(s.states, axis=1) == 1).sum(1) == 1).all()  # one 0 -> 1 switch per trial


def test_input_switching_states_have_different_dynamics():
    s = simulate_input_switching(seed=2, num_trials=16, num_timesteps=80, process_noise=0.05)
    centres = np.array([[-1.0, 0.0], [1.0, 0.0]])
    A = np.stack([0.98 * _rotation(0.15), 0.95 * _rotation(-0.3)])
    prev, now, k = s.latents[:, :-1], s.latents[:, 1:], s.states[:, 1:]

    def residual(state):
        pred = centres[state] + np.einsum("...ij,...j->...i", A[state], prev - centres[state])
        return np.linalg.norm(now - pred, axis=-1)

    labelled, swapped = residual(k), residual(1 - k)
    assert np.sqrt((labelled**2).mean()) < 0.1  # process noise 0.05 per axis
    assert np.median(swapped) > 3 * np.median(labelled)


def test_input_switching_poisson_and_bad_window():
    s = simulate_input_switching(seed=0, likelihood="poisson", num_trials=2, num_timesteps=30)
    assert (s.y >= 0).all() and np.array_equal(s.y, np.round(s.y))
    with pytest.raises(ValueError, match="pulse_window"):
        simulate_input_switching(pulse_window=(0.5, 1.0))
    with pytest.raises(ValueError, match="too short"):
        simulate_input_switching(num_timesteps=2)


def test_simulate_input_switching_from_the_command_line(tmp_path):
    assert get_simulator("input-switching") is simulate_input_switching
    out = tmp_path / "x.npz"
    code = main(
        ["simulate", "input-switching", "--out", str(out), "--trials", "3", "--timesteps", "20"]
    )
    assert code == 0
    s = load_session(out)
    assert s.inputs.shape == (3, 20, 1) and s.states.shape == (3, 20) and s.num_neurons == 20
