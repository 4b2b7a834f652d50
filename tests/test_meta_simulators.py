"""Simulators of dynamical-system families (limit cycles, Duffing, Hopf)."""

import numpy as np
import pytest

from neurodyn.data.simulators import get_simulator
from neurodyn.data.simulators.families import (
    rollout_true,
    simulate_duffing,
    simulate_hopf,
    simulate_limit_cycles,
)


@pytest.mark.parametrize(
    "fn, keys",
    [
        (simulate_limit_cycles, ("omega",)),
        (simulate_duffing, ("a", "b", "c")),
        (simulate_hopf, ("mu",)),
    ],
)
@pytest.mark.parametrize("likelihood", ["gaussian", "poisson"])
def test_shapes_and_metadata(fn, keys, likelihood):
    sessions = fn(seed=1, likelihood=likelihood, num_recordings=4, num_trials=3, num_timesteps=20)
    assert len(sessions) == 4
    assert len({s.name for s in sessions}) == 4
    for s in sessions:
        assert s.y.shape[:2] == (3, 20) and 20 <= s.num_neurons <= 100
        assert s.y.dtype == np.float32 and s.mask.all()
        assert s.latents.shape == (3, 20, 2) and np.isfinite(s.latents).all()
        assert all(isinstance(s.meta[k], float) for k in keys)
        if likelihood == "poisson":
            assert (s.y >= 0).all() and np.allclose(s.y, np.round(s.y))


def test_limit_cycles_default_family():
    sessions = simulate_limit_cycles(seed=0, num_trials=2, num_timesteps=10)
    assert len(sessions) == 20
    omega = np.array([s.meta["omega"] for s in sessions])
    assert (omega > 0).any() and (omega < 0).any()  # both directions
    assert len(set(np.round(np.abs(omega), 6))) == 20  # distinct speeds


def test_registered_and_seeded():
    sim = get_simulator("hopf")
    a = sim(seed=3, num_recordings=2, num_trials=2, num_timesteps=5)
    b = sim(seed=3, num_recordings=2, num_trials=2, num_timesteps=5)
    assert all(np.array_equal(x.y, y.y) for x, y in zip(a, b, strict=True))
    assert [s.meta["mu"] for s in a] == [-1.0, 1.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="likelihood"):
        simulate_duffing(seed=0, likelihood="gamma")
    with pytest.raises(ValueError, match="num_timesteps"):
        simulate_hopf(seed=0, num_timesteps=1)


def test_lightly_damped_duffing_stays_bounded():
    # Explicit Euler pumps energy into the oscillation faster than weak damping removes it
    # (the paper-scale case study hit NaN at T = 300); the RK4 drift step keeps it bounded.
    sessions = simulate_duffing(
        seed=0, num_recordings=2, num_trials=8, num_timesteps=300, a_range=(-0.02, -0.01)
    )
    for s in sessions:
        assert np.isfinite(s.y).all() and np.abs(s.latents).max() < 4.0


@pytest.mark.parametrize("fn", [simulate_duffing, simulate_hopf])
def test_rollout_true_reproduces_noise_free_latents(fn):
    s = fn(seed=2, num_recordings=2, num_trials=3, num_timesteps=30, process_noise=0.0)[1]
    z = rollout_true(s.meta, s.latents[:, 9], 6, s.dt)
    assert z.shape == (3, 6, 2)
    np.testing.assert_allclose(z, s.latents[:, 10:16], atol=1e-4)  # latents stored as float32


def test_rollout_true_mean_follows_the_drift_of_a_linear_system():
    # For a linear SDE, E[z_{t+k} | z_t] is the noise-free path: the Monte Carlo mean of the
    # noisy paths must match it within its standard error.
    meta = dict(system="duffing", a=-0.1, b=1.0, c=0.0)  # c = 0: a damped linear oscillator
    z0 = np.array([[1.0, 0.0], [-0.5, 1.5]])
    exact = rollout_true(meta, z0, 20, 0.1)
    mean = rollout_true(meta, z0, 20, 0.1, process_noise=0.3, num_samples=4000)
    assert mean.shape == exact.shape == (2, 20, 2)
    # the spread of a path after 2 time units is at most 0.3 * sqrt(2); 4000 samples: s.e. 0.007
    np.testing.assert_allclose(mean, exact, atol=0.035)


def test_rollout_true_mean_shrinks_a_noisy_limit_cycle():
    # On a limit cycle the phase diffuses, so the mean of the noisy paths falls inside the
    # cycle, where the noise-free path stays on it.
    meta = dict(system="hopf", mu=1.0, omega=1.0)
    z0 = np.array([[1.0, 0.0]])
    exact = rollout_true(meta, z0, 100, 0.1)
    mean = rollout_true(meta, z0, 100, 0.1, process_noise=0.5, num_samples=2000)
    assert abs(np.linalg.norm(exact[0, -1]) - 1.0) < 0.01
    assert np.linalg.norm(mean[0, -1]) < 0.95
