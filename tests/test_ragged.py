"""Padded, masked (ragged) trials: the warm start, the fits and the forecasts use observed bins
only, and every K > 1 configuration keeps two states in use on ragged two-state data."""

import numpy as np
import pytest

from neurodyn.data import make_session
from neurodyn.families import switching as family
from neurodyn.families.switching.pull import pull_evidence
from neurodyn.inference import metrics
from neurodyn.inference.diagnostics import collapse_warning, state_occupancy
from neurodyn.models.switching import Spec


def two_state_session(likelihood="gaussian", trials=8, T=64, N=8, seed=0, min_length=20):
    """A sticky two-state switching linear system (two damped rotations about (+2, 0) and
    (-2, 0)) seen through a random readout; trial i is observed for its first length_i bins
    (between min_length and T) and padded with masked zeros after them."""
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0.0], [-2.0, 0.0]])
    angle = 0.3
    rot = 0.95 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    s = np.zeros((trials, T), int)
    h = np.zeros((trials, T, 2))
    for i in range(trials):
        s[i, 0] = rng.integers(2)
        h[i, 0] = centres[s[i, 0]] + rng.normal(size=2)
        for t in range(1, T):
            s[i, t] = s[i, t - 1] if rng.random() < 0.95 else 1 - s[i, t - 1]
            c = centres[s[i, t]]
            h[i, t] = c + (h[i, t - 1] - c) @ rot.T + 0.1 * rng.normal(size=2)
    C = rng.normal(size=(2, N)) / np.sqrt(2)
    drive = h @ C
    if likelihood == "gaussian":
        y = drive + 0.2 * rng.normal(size=drive.shape)
    else:
        y = rng.poisson(2.0 * np.log1p(np.exp(drive))).astype(float)
    lengths = np.linspace(min_length, T, trials).astype(int)
    rng.shuffle(lengths)
    bins = np.arange(T)[None] < lengths[:, None]
    y = np.where(bins[..., None], y, 0.0)
    return make_session(y.astype(np.float32), bins, states=np.where(bins, s, 0))


def padded(session, extra: int):
    """The session with ``extra`` masked, zero bins appended to every trial."""
    R, T, N = session.y.shape
    y = np.concatenate([session.y, np.zeros((R, extra, N), np.float32)], 1)
    mask = np.concatenate([session.mask, np.zeros((R, extra, N), bool)], 1)
    states = np.concatenate([session.states, np.zeros((R, extra), int)], 1)
    return make_session(y, mask, states=states)


@pytest.mark.parametrize("likelihood", ["gaussian", "poisson"])
def test_warm_start_ignores_padded_bins(likelihood):
    session = two_state_session(likelihood)
    spec = Spec("rslds", 2, 2, session.num_neurons, 0, likelihood)
    labels, init = family.warm_start(spec, session, seed=0)
    longer, init_longer = family.warm_start(spec, padded(session, 40), seed=0)
    bins = session.bin_mask
    np.testing.assert_array_equal(longer[:, : session.num_timesteps], labels)
    assert (labels[~bins] == -1).all() and (labels[bins] >= 0).all()
    np.testing.assert_allclose(init_longer["W"], init["W"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(init_longer["C"], init["C"], rtol=1e-6, atol=1e-8)
    occupancy = state_occupancy(longer, padded(session, 40).bin_mask, 2)
    assert occupancy.min() > 0.05, occupancy


def test_pull_is_off_on_padded_bins():
    session = two_state_session()
    spec = Spec("slds", 2, 2, session.num_neurons, 0, "gaussian")
    labels, _ = family.warm_start(spec, session)
    batch = family.batch_of(session, labels)
    evidence = np.asarray(pull_evidence(batch["warm"], 0, 2.0, 10, spec.num_states))
    assert (evidence[~session.bin_mask] == 0).all()
    assert (evidence[session.bin_mask].sum(-1) == 2.0).all()


def test_forecast_counts_horizons_from_each_trials_last_observed_bin():
    bins = np.zeros((3, 20), bool)
    bins[0, :20], bins[1, :12], bins[2, :4] = True, True, True
    origins = metrics.forecast_origins(bins, (1, 5))
    np.testing.assert_array_equal(origins, [15, 7, 1])
    np.testing.assert_array_equal(metrics.forecast_targets(bins, origins, 5), [1, 1, 0])
    np.testing.assert_array_equal(metrics.forecast_targets(bins, origins, 1), [1, 1, 1])


def test_collapse_warning_names_the_occupancies():
    assert collapse_warning([0.5, 0.5]) is None
    line = collapse_warning([0.97, 0.03], "rslds fit")
    assert "\n" not in line and "0: 0.970" in line and "1: 0.030" in line


FAST = dict(steps=600, pull_steps=200, lr_half_life=100, learning_rate=2e-2)


def _fit_ragged(model, likelihood, **options):
    session = two_state_session(likelihood)
    options = {**FAST, "states": 2, "likelihood": likelihood, **options}
    if model != "hmm":
        options["latent_dim"] = 2
    config = family.make_config(model, [session], options=options)
    with _no_collapse_warning():
        params, result = family.fit(config, [session], progress=False)
    return session, config, params, result


class _no_collapse_warning:
    """Records the fit's warnings; fails if one says a state holds almost every bin."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.caught = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        collapsed = [str(w.message) for w in self.caught if "puts" in str(w.message)]
        assert not collapsed, collapsed
        return False


def _check_two_states(session, config, params, result):
    occupancy = np.asarray(result.state_occupancy)
    assert occupancy.shape == (2,) and occupancy.min() > 0.05, occupancy
    metrics = family.evaluate(config, params, [session], horizons=(1, 5, 10), num_samples=4)
    assert metrics["state_accuracy"] > 0.7, metrics
    scored = metrics["forecast_trials"]
    assert scored["1"] == session.num_trials and scored["10"] == session.num_trials
    assert all(np.isfinite(v) for v in metrics["forecast_r2"].values()), metrics


def test_rslds_keeps_two_states_on_ragged_poisson_trials():
    _check_two_states(*_fit_ragged("rslds", "poisson"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, likelihood",
    [
        ("srnn", "gaussian"),
        ("srnn", "poisson"),
        ("slds", "gaussian"),
        ("slds", "poisson"),
        ("rslds", "gaussian"),
        ("hmm", "gaussian"),
        ("hmm", "poisson"),
    ],
)
def test_every_switching_configuration_keeps_two_states_on_ragged_trials(model, likelihood):
    _check_two_states(*_fit_ragged(model, likelihood))


def test_report_draws_ragged_trials(tmp_path):
    session = two_state_session(trials=4, T=30, min_length=12)
    config = family.make_config("srnn", [session], options=dict(steps=6, latent_dim=2))
    params, _ = family.fit(config, [session], progress=False)
    figures = family.report(config, params, [session], tmp_path)
    assert {f.name for f in figures} == {"states.png", "reconstruction.png", "flow_fields.png"}
