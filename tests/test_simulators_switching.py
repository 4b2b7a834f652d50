"""Switching simulators: shapes, labels consistent with the latents, likelihoods."""

import numpy as np
import pytest

from neurodyn.data.simulators import get_simulator
from neurodyn.data.simulators.switching import lorenz_lobes, simulate_lorenz, simulate_nascar


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
