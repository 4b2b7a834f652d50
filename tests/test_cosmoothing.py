"""Co-smoothing bits per spike (Neural Latents Benchmark definition) and held-out neuron choice."""

import json

import numpy as np
import pytest
from scipy.stats import poisson

from neurodyn.inference.cosmoothing import (
    choose_heldout_neurons,
    co_bps,
    read_neuron_indices,
    smoothing_baseline,
)

# 2 trials x 3 bins x 2 neurons.
SPIKES = np.array(
    [
        [[1, 0], [0, 0], [2, 0]],
        [[1, 0], [1, 2], [1, 1]],
    ],
    float,
)
RATES = np.array(
    [
        [[1, 0.5], [1, 0.5], [1, 0.5]],
        [[1, 0.5], [1, 2.0], [1, 1.0]],
    ]
)


def test_hand_computed_example():
    # Neuron 0: 6 spikes in 6 bins, null rate 1 = predicted rate 1 everywhere: contributes 0.
    # Neuron 1: 3 spikes in 6 bins, null rate 0.5. Per bin, log p(n | r) - log p(n | 0.5) =
    # n log(r / 0.5) - (r - 0.5): 0 where r = 0.5; trial 2 bin 2 (n=2, r=2): 2 log 4 - 1.5;
    # trial 2 bin 3 (n=1, r=1): log 2 - 0.5. Sum: 5 log 2 - 2 nats over 9 spikes in all:
    # (5 log 2 - 2) / 9 / log 2 = 5/9 - 2 / (9 log 2) = 0.234957 bits per spike.
    expected = 5 / 9 - 2 / (9 * np.log(2))
    assert co_bps(SPIKES, RATES) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.234957, abs=1e-6)


def test_null_rates_score_zero_and_better_rates_score_higher():
    null = np.broadcast_to(SPIKES.mean((0, 1)), SPIKES.shape)
    assert co_bps(SPIKES, null) == pytest.approx(0.0, abs=1e-12)
    assert co_bps(SPIKES, SPIKES + 0.1) > co_bps(SPIKES, RATES) > 0


def test_masked_bins_equal_nan_spikes_and_are_left_out_of_the_null_rate():
    mask = np.ones((2, 3), bool)
    mask[0, 2] = False  # hides neuron 0's two spikes there
    nan_spikes = SPIKES.copy()
    nan_spikes[0, 2] = np.nan
    garbage = RATES.copy()
    garbage[0, 2] = np.nan  # never read: the bin is masked
    assert co_bps(SPIKES, garbage, mask) == pytest.approx(co_bps(nan_spikes, RATES))
    # Neuron 0: 4 spikes in 5 bins, null 0.8, rate 1: 4 log(1 / 0.8) - 5 * 0.2.
    # Neuron 1: 3 spikes in 5 bins, null 0.6: 2 log(2 / 0.6) + log(1 / 0.6) - sum(r - 0.6)
    # with sum(r) = 0.5 + 0.5 + 0.5 + 2 + 1 = 4.5 over 5 bins: 4.5 - 3.0.
    nats = 4 * np.log(1.25) - 1.0 + 2 * np.log(2 / 0.6) + np.log(1 / 0.6) - 1.5
    assert co_bps(SPIKES, RATES, mask) == pytest.approx(nats / 7 / np.log(2), rel=1e-12)


def test_zero_rates_are_replaced_like_nlb_tools():
    rates = RATES.copy()
    rates[0, 0, 0] = 0.0  # a spike there: log(1e-9) makes the score very negative, not -inf
    score = co_bps(SPIKES, rates)
    assert np.isfinite(score) and score < -1


@pytest.mark.parametrize(
    "spikes, rates, mask, message",
    [
        (SPIKES[0], RATES[0], None, r"spikes must be \(trials, T, N_heldout\)"),
        (SPIKES, RATES[:, :2], None, "rates shape .* differs from spikes shape"),
        (SPIKES, -RATES, None, "rates have negative entries"),
        (SPIKES, RATES * np.nan, None, "rates have NaN/Inf entries in observed bins"),
        (SPIKES, RATES, np.ones((2, 4), bool), "mask shape"),
    ],
)
def test_bad_input_one_line(spikes, rates, mask, message):
    with pytest.raises(ValueError, match=message) as err:
        co_bps(spikes, rates, mask)
    assert "\n" not in str(err.value)


def test_no_spikes_gives_nan():
    assert np.isnan(co_bps(np.zeros((1, 2, 1)), np.ones((1, 2, 1))))


def _straightforward(spikes, rates, mask):
    """Per neuron, per observed bin, with scipy's Poisson pmf: an independent implementation."""
    total_nats, total_spikes = 0.0, 0.0
    for n in range(spikes.shape[2]):
        counts = spikes[:, :, n][mask]
        pred = np.maximum(rates[:, :, n][mask], 1e-9)
        null = max(counts.mean(), 1e-9)
        total_nats += poisson.logpmf(counts, pred).sum() - poisson.logpmf(counts, null).sum()
        total_spikes += counts.sum()
    return total_nats / total_spikes / np.log(2)


def test_nlb_fixture_against_a_straightforward_formula(shared_data):
    path = shared_data / "nlb_mc_maze_small_20_fixture.npz"
    if not path.exists():
        pytest.skip(f"{path.name} not in {shared_data}")
    with np.load(path) as f:
        source, target = f["source_neural"], f["target_neural"]
    # Predict the odd trials' held-out spikes by the even trials' PSTH (zero in some bins).
    rates = np.broadcast_to(source.mean(0), target.shape)
    assert (rates == 0).any()
    mask = np.ones(target.shape[:2], bool)
    mask[::3, 30:] = False  # padding at the end of every third trial
    score = co_bps(target, rates, mask)
    assert score == pytest.approx(_straightforward(target, rates, mask), rel=1e-9)
    # nlb_tools 0.0.4's evaluation.bits_per_spike on the same rates, with NaN spikes at the
    # masked bins (installed with --no-deps: its pandas<=1.3.4 pin has no Python 3.13 build).
    assert score == pytest.approx(-1.8898009115032555, rel=1e-9)
    smoothed = np.broadcast_to(0.9 * source.mean(0) + 0.1 * source.mean(), target.shape)
    assert co_bps(target, smoothed, mask) > score  # no near-zero rates where spikes occur


def test_choose_heldout_neurons():
    picked = choose_heldout_neurons(20, 0.25, seed=3)
    assert picked.dtype.kind == "i" and len(picked) == 5 and len(set(picked)) == 5
    assert (np.diff(picked) > 0).all() and picked.min() >= 0 and picked.max() < 20
    np.testing.assert_array_equal(picked, choose_heldout_neurons(20, 0.25, seed=3))
    assert not np.array_equal(picked, choose_heldout_neurons(20, 0.25, seed=4))
    assert len(choose_heldout_neurons(2, 0.5)) == 1


@pytest.mark.parametrize(
    "num, fraction, message",
    [
        (10, 0.0, "between 0 and 1"),
        (10, 1.0, "between 0 and 1"),
        (10, 0.01, "gives 0; need between 1 and 9"),
        (10, 0.99, "gives 10; need between 1 and 9"),
        (1, 0.5, "need between 1 and 0"),
    ],
)
def test_choose_heldout_neurons_bad_fraction(num, fraction, message):
    with pytest.raises(ValueError, match=message) as err:
        choose_heldout_neurons(num, fraction)
    assert "\n" not in str(err.value)


def test_read_neuron_indices_from_text_json_and_npy(tmp_path):
    (tmp_path / "a.txt").write_text("4, 1\n7\n")
    (tmp_path / "b.json").write_text(json.dumps([7, 4, 1]))
    np.save(tmp_path / "c.npy", np.array([1, 7, 4]))
    for name in ("a.txt", "b.json", "c.npy"):
        got = read_neuron_indices(tmp_path / name, 10)
        np.testing.assert_array_equal(got, [1, 4, 7])


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("x.txt", "1 two 3", "not a list of neuron indices"),
        ("x.txt", "1.5 2", "must be integers"),
        ("x.txt", "", "non-empty flat list"),
        ("x.json", "{oops", "not a list of neuron indices"),
        ("x.json", '{"a": 1}', "non-empty flat list"),
        ("x.json", '["1", "2"]', "must be integers"),
        ("x.json", "[[1, 2]]", "non-empty flat list"),
        ("x.txt", "1 10", r"must lie in 0\.\.9, got 1\.\.10"),
        ("x.txt", "-1 2", r"must lie in 0\.\.9"),
        ("x.txt", "2 2", "repeat"),
        ("x.txt", " ".join(map(str, range(10))), "holds out all 10 neurons"),
    ],
)
def test_read_neuron_indices_bad_content_names_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        read_neuron_indices(path, 10)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_read_neuron_indices_missing_or_unreadable_npy(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_neuron_indices(tmp_path / "none.txt", 10)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"bad\.npy: not a list of neuron indices"):
        read_neuron_indices(tmp_path / "bad.npy", 10)


def test_smoothing_baseline_recovers_a_shared_rate():
    """Held-out neurons that fire with the held-in ones: the baseline scores above their mean."""
    rng = np.random.default_rng(0)
    rate = np.exp(1.5 * np.sin(np.linspace(0, 6, 40)))[None, :, None] * rng.uniform(
        0.5, 1.5, (30, 1, 1)
    )
    spikes = rng.poisson(np.broadcast_to(rate, (30, 40, 8)))
    train, test = spikes[:20], spikes[20:]
    rates = smoothing_baseline(train[..., :6], train[..., 6:], test[..., :6])
    assert rates.shape == (10, 40, 2) and (rates > 0).all()
    assert co_bps(test[..., 6:], rates) > 0.1
