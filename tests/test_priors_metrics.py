"""Prior specs and the scoring functions, against direct formulas."""

import numpy as np
import numpyro.distributions as dist
import pytest

from neurodyn.inference.metrics import (
    match_labels,
    r2_variance_weighted,
    ridge_decode_r2,
    state_scores,
)
from neurodyn.models.priors import PriorError, parse, parse_assignments, resolve


def test_parse_builds_the_distribution():
    d = parse("StudentT(3, 0, 1)")
    assert isinstance(d, dist.StudentT) and float(d.df) == 3.0
    assert np.allclose(parse("Dirichlet([1, 2, 3])").concentration, [1, 2, 3])
    assert float(parse("Normal(loc=1, scale=2)").scale) == 2.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("Normal(0, ", "cannot parse"),
        ("os.system('x')", "must be a call"),
        ("Bogus(1)", "unknown distribution"),
        ("Normal(x, 1)", "numbers"),
        ("Normal(0, -1)", "Normal"),
    ],
)
def test_bad_specs_are_named(spec, message):
    with pytest.raises(PriorError, match=message):
        parse(spec)


def test_assignments_and_resolve():
    assert parse_assignments(["e = Normal(0, 2)"]) == {"e": "Normal(0, 2)"}
    with pytest.raises(PriorError, match="SITE=SPEC"):
        parse_assignments(["Normal(0, 2)"])
    defaults = {"e": dist.Normal(0, 1), "q": dist.HalfNormal(1)}
    out = resolve(defaults, {"e": "Laplace(0, 1)"})
    assert isinstance(out["e"], dist.Laplace) and out["q"] is defaults["q"]
    with pytest.raises(PriorError, match="no prior site named 'x'"):
        resolve(defaults, {"x": "Normal(0, 1)"})


def test_a_bare_number_is_a_point_mass():
    for spec, value in [("100", 100.0), ("-2.5", -2.5), ("1e4", 1e4), ("+0", 0.0)]:
        d = parse(spec)
        assert isinstance(d, dist.Delta) and float(d.v) == value
    with pytest.raises(PriorError, match="finite"):
        parse("1e999")
    assert parse_assignments(["kappa=100"]) == {"kappa": "100"}


def test_numbers_fix_only_sites_whose_default_is_a_point_mass():
    defaults = {"kappa": dist.Delta(10.0), "q": dist.HalfNormal(1)}
    for value in ("3", 3, 3.0):
        out = resolve(defaults, {"kappa": value})
        assert isinstance(out["kappa"], dist.Delta) and float(out["kappa"].v) == 3.0
    assert isinstance(resolve(defaults, {"kappa": "Gamma(2, 1)"})["kappa"], dist.Gamma)
    with pytest.raises(PriorError, match="'q' must be a distribution"):
        resolve(defaults, {"q": "0.5"})


def test_r2_matches_sklearn_formula():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 3)) * [1, 2, 3]
    pred = y + rng.normal(size=y.shape) * 0.5
    sst = ((y - y.mean(0)) ** 2).sum(0)
    sse = ((y - pred) ** 2).sum(0)
    weights = sst / sst.sum()
    expected = np.sum(weights * (1 - sse / sst))  # sklearn's variance_weighted definition
    assert np.isclose(r2_variance_weighted(y, pred), expected)
    assert r2_variance_weighted(y, y) == 1.0


def test_r2_ignores_masked_entries():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(4, 10, 2))
    pred = y.copy()
    pred[0, 0, 0] = 1e6
    mask = np.ones(y.shape, bool)
    mask[0, 0, 0] = False
    assert r2_variance_weighted(y, pred, mask) == 1.0


def test_label_matching_and_balanced_error():
    true = np.array([[0, 0, 0, 0, 0, 0, 1, 1]])
    pred = np.array([[1, 1, 1, 1, 1, 1, 0, 1]])
    np.testing.assert_array_equal(match_labels(pred, true), [[0, 0, 0, 0, 0, 0, 1, 0]])
    scores = state_scores(pred, true)
    assert scores["state_accuracy"] == 7 / 8
    assert np.isclose(scores["state_balanced_error"], 1 - (1.0 + 0.5) / 2)


def test_ridge_decoder_scores_a_linear_target_high():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 30, 5))
    target = x @ rng.normal(size=(5, 2))
    assert ridge_decode_r2(x, target, alpha=1e-3) > 0.99
    assert ridge_decode_r2(x, rng.normal(size=(20, 30, 2))) < 0.1
