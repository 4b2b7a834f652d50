"""ELBO convergence check and posterior predictive statistics against direct computations."""

import numpy as np

from neurodyn.inference.diagnostics import dwell_times, elbo_convergence, ppc_figure, ppc_statistics


def test_convergence_flags_a_falling_curve_and_accepts_a_flat_noisy_one():
    rng = np.random.default_rng(0)
    falling = np.linspace(100, 10, 1000) + rng.normal(0, 0.1, 1000)
    flat = np.r_[np.linspace(100, 10, 500), np.full(500, 10.0)] + rng.normal(0, 1.0, 1000)
    assert not elbo_convergence(falling)["converged"]
    assert elbo_convergence(flat)["converged"]
    assert not elbo_convergence(np.ones(10))["converged"]  # too short to tell


def test_dwell_times_per_trial_and_masked():
    states = np.array([[0, 0, 1, 1, 1, 0], [2, 2, 2, 2, 2, 2]])
    np.testing.assert_array_equal(dwell_times(states), [2, 3, 1, 6])
    mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], bool)
    np.testing.assert_array_equal(dwell_times(states, mask), [2, 3, 3])


def test_ppc_statistics_match_numpy():
    rng = np.random.default_rng(1)
    y = rng.poisson(3.0, (5, 40, 4)).astype(float)
    mask = np.ones(y.shape, bool)
    stats = ppc_statistics(y, mask)
    np.testing.assert_allclose(stats["mean"], y.reshape(-1, 4).mean(0))
    np.testing.assert_allclose(stats["variance"], y.reshape(-1, 4).var(0))
    assert stats["autocorrelation"][0] == 1.0 and abs(stats["autocorrelation"][5]) < 0.2


def test_ppc_figure_is_written(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.normal(size=(3, 20, 2))
    out = ppc_figure(
        y,
        np.ones(y.shape, bool),
        rng.normal(size=(10, 3, 20, 2)),
        tmp_path / "p.png",
        states=rng.integers(0, 2, (3, 20)),
    )
    assert out.exists() and out.stat().st_size > 10_000


def test_convergence_warning_is_one_line_when_the_loss_still_falls():
    from neurodyn.inference.diagnostics import convergence_warning

    rng = np.random.default_rng(0)
    falling = np.linspace(1000.0, 0.0, 2000) + rng.normal(0, 1, 2000)
    line = convergence_warning(falling, "srnn fit")
    assert line.startswith("srnn fit did not converge in 2000 steps") and "\n" not in line
    assert convergence_warning(rng.normal(0, 1, 2000)) is None
    short = convergence_warning(falling[:10], "hmm fit")  # no NaN in the message
    assert "10 steps are too few to check" in short and "nan" not in short
