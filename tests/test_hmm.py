"""Tests for the discrete-state core against a brute-force enumeration of all K**T paths.

Shapes are fixed per parametrized case and hypothesis draws only values, so each jitted
function compiles once per case rather than once per example.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from neurodyn.inference import hmm

SETTINGS = settings(max_examples=30, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


# ----------------------------------------------------------------------------------------------
# Problems and the brute-force oracle (numpy, float64)
# ----------------------------------------------------------------------------------------------


def random_problem(seed, num_states, num_bins, stationary=False, forbid=0.0, mask_rate=0.3):
    """Random float32 potentials, with a fraction ``forbid`` of -inf transitions and likelihoods.

    The path that stays in state 0 always has a finite score, so ``log Z`` is finite.
    """
    rng = np.random.default_rng(seed)
    trans_shape = (num_states,) * 2 if stationary else (num_bins - 1, num_states, num_states)
    log_init = 1.5 * rng.normal(size=num_states)
    log_trans = 1.5 * rng.normal(size=trans_shape)
    log_lik = 2.0 * rng.normal(size=(num_bins, num_states))
    forbidden_trans = rng.random(trans_shape) < forbid
    forbidden_lik = rng.random(log_lik.shape) < forbid
    forbidden_trans[..., 0, 0] = forbidden_lik[:, 0] = False
    log_trans[forbidden_trans] = log_lik[forbidden_lik] = -np.inf
    mask = rng.random(num_bins) >= mask_rate
    return (
        log_init.astype(np.float32),
        log_trans.astype(np.float32),
        log_lik.astype(np.float32),
        mask,
    )


def brute_force(log_init, log_trans, log_lik, mask):
    """Enumerate every path. Returns a dict with ``log_z``, ``marginals``, ``pairwise``, the
    ``scores`` of all paths (in ``itertools.product`` order), ``best_path`` and the gradients
    of ``log_z`` w.r.t. the three potentials.

    ``log_z = logsumexp_s score(s)`` with ``score`` linear in the potentials, so its gradient
    is the posterior-weighted count of each potential's use along the path.
    """
    log_init, log_trans, log_lik = (
        np.asarray(x, np.float64) for x in (log_init, log_trans, log_lik)
    )
    num_bins, num_states = log_lik.shape
    trans = np.broadcast_to(log_trans, (num_bins - 1, num_states, num_states))
    lik = np.where(mask[:, None], log_lik, 0.0)
    paths = np.array(list(itertools.product(range(num_states), repeat=num_bins)))
    bins = np.arange(num_bins)
    scores = log_init[paths[:, 0]] + lik[bins, paths].sum(axis=1)
    scores += trans[bins[:-1], paths[:, :-1], paths[:, 1:]].sum(axis=1)
    log_z = logsumexp(scores)
    weights = np.exp(scores - log_z)

    marginals = np.zeros((num_bins, num_states))
    pairwise = np.zeros((num_bins - 1, num_states, num_states))
    for t in range(num_bins):
        np.add.at(marginals[t], paths[:, t], weights)
    for t in range(num_bins - 1):
        np.add.at(pairwise[t], (paths[:, t], paths[:, t + 1]), weights)

    grad_trans = pairwise.sum(axis=0) if log_trans.ndim == 2 else pairwise
    return dict(
        log_z=log_z,
        marginals=marginals,
        pairwise=pairwise,
        scores=scores,
        best_path=paths[np.argmax(scores)],
        grad_init=marginals[0],
        grad_trans=grad_trans,
        grad_lik=marginals * mask[:, None],
    )


def forward_backward_float64(log_init, log_trans, log_lik):
    """Independent normalized forward-backward in float64, for sequences too long to enumerate."""
    init, lik = np.exp(log_init.astype(np.float64)), log_lik.astype(np.float64)
    trans = np.exp(log_trans.astype(np.float64))
    num_bins, num_states = lik.shape
    peaks = lik.max(axis=1)
    emission = np.exp(lik - peaks[:, None])
    alpha, scale = np.zeros((num_bins, num_states)), np.zeros(num_bins)
    message = init * emission[0]
    for t in range(num_bins):
        if t > 0:
            message = (alpha[t - 1] @ trans) * emission[t]
        scale[t] = message.sum()
        alpha[t] = message / scale[t]
    beta = np.ones((num_bins, num_states))
    for t in range(num_bins - 2, -1, -1):
        beta[t] = trans @ (emission[t + 1] * beta[t + 1]) / scale[t + 1]
    return np.log(scale).sum() + peaks.sum(), alpha * beta


# ----------------------------------------------------------------------------------------------
# Everything the core computes, jitted once per shape
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="method")
def run_core(log_init, log_trans, log_lik, mask, method):
    value, grads = jax.value_and_grad(hmm.log_marginal, argnums=(0, 1, 2))(
        log_init, log_trans, log_lik, mask, method
    )
    posterior = hmm.smooth(log_init, log_trans, log_lik, mask, method)
    # the likelihoods alone: the sequential form then skips the transitions' gradient
    grad_lik_only = jax.grad(hmm.log_marginal, argnums=2)(
        log_init, log_trans, log_lik, mask, method
    )
    return dict(
        log_z=value,
        grad_init=grads[0],
        grad_trans=grads[1],
        grad_lik=grads[2],
        grad_lik_only=grad_lik_only,
        smoothed_log_z=posterior.log_marginal,
        marginals=posterior.marginals,
        pairwise=posterior.pairwise,
        path=hmm.viterbi(log_init, log_trans, log_lik, mask),
    )


def assert_close(actual, expected, atol=1e-5, rtol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol, rtol=rtol)


# ----------------------------------------------------------------------------------------------
# Exactness
# ----------------------------------------------------------------------------------------------

# (K, T, stationary): T = 1 and 2, K = 1, odd and even T for the associative scan, the largest.
SHAPES = [
    (2, 1, True),
    (1, 4, False),
    (3, 2, False),
    (2, 5, True),
    (3, 5, False),
    (4, 6, True),
    (4, 6, False),
]


@pytest.mark.parametrize("method", hmm.METHODS)
@pytest.mark.parametrize("num_states, num_bins, stationary", SHAPES)
@SETTINGS
@given(seed=SEEDS, forbid=st.sampled_from([0.0, 0.3]))
def test_matches_brute_force(num_states, num_bins, stationary, method, seed, forbid):
    problem = random_problem(seed, num_states, num_bins, stationary, forbid)
    expected = brute_force(*problem)
    actual = run_core(*problem, method=method)

    assert_close(actual["log_z"], expected["log_z"])
    assert_close(actual["smoothed_log_z"], expected["log_z"])
    for name in ("marginals", "pairwise", "grad_init", "grad_trans", "grad_lik"):
        assert_close(actual[name], expected[name], atol=2e-5)
    assert_close(actual["grad_lik_only"], expected["grad_lik"], atol=2e-5)
    assert actual["pairwise"].shape == (num_bins - 1, num_states, num_states)

    # Viterbi: the path scores the maximum; it is *the* argmax unless masked bins make a tie.
    path = np.asarray(actual["path"])
    assert path.dtype == np.int32
    scores = expected["scores"]
    path_score = scores[np.ravel_multi_index(path, (num_states,) * num_bins)]
    assert path_score >= scores.max() - 1e-5
    top_two = np.sort(scores)[-2:] if scores.size > 1 else np.array([-np.inf, scores[0]])
    if top_two[1] - top_two[0] > 1e-4:
        np.testing.assert_array_equal(path, expected["best_path"])


@pytest.mark.parametrize("num_bins, stationary", [(1, False), (7, True), (100, False)])
@SETTINGS
@given(seed=SEEDS)
def test_sequential_matches_parallel(num_bins, stationary, seed):
    problem = random_problem(seed, 3, num_bins, stationary, forbid=0.2)
    sequential = run_core(*problem, method="sequential")
    parallel = run_core(*problem, method="parallel")
    for name, value in sequential.items():
        assert_close(parallel[name], value, atol=2e-5)


@pytest.mark.parametrize("method", hmm.METHODS)
def test_long_sequence_matches_float64_forward_backward(method):
    """Peaked likelihoods over 2000 bins: log Z in the -1e5 range, marginals still exact."""
    rng = np.random.default_rng(0)
    num_bins, num_states = 2000, 3
    log_init = np.full(num_states, -np.log(num_states), np.float32)
    trans = 0.9 * np.eye(num_states) + 0.1 * rng.dirichlet(np.ones(num_states), num_states)
    log_trans = np.log(trans / trans.sum(axis=1, keepdims=True)).astype(np.float32)
    log_lik = (-50.0 - 10.0 * rng.random((num_bins, num_states))).astype(np.float32)
    log_z, marginals = forward_backward_float64(log_init, log_trans, log_lik)

    posterior = jax.jit(hmm.smooth, static_argnames="method")(
        log_init, log_trans, log_lik, method=method
    )
    assert_close(posterior.log_marginal, log_z, atol=0.0, rtol=1e-5)
    assert_close(posterior.marginals, marginals, atol=1e-4, rtol=0.0)


@pytest.mark.parametrize("method", hmm.METHODS)
def test_mask_none_equals_all_observed(method):
    log_init, log_trans, log_lik, _ = random_problem(0, 3, 5)
    observed = run_core(log_init, log_trans, log_lik, np.ones(5, bool), method)
    unmasked = run_core(log_init, log_trans, log_lik, None, method)
    for name, value in observed.items():
        assert_close(unmasked[name], value)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def test_samples_match_smoothed_marginals():
    num_samples, num_states, num_bins = 4000, 3, 5
    problem = random_problem(1, num_states, num_bins, forbid=0.3)
    sampler = jax.jit(hmm.sample, static_argnames="num_samples")
    paths = np.asarray(sampler(jax.random.key(0), *problem, num_samples=num_samples))
    posterior = run_core(*problem, method="sequential")
    assert paths.shape == (num_samples, num_bins) and paths.dtype == np.int32

    # Each indicator has Monte-Carlo standard error sqrt(p (1 - p) / n); allow 5 of them.
    def check(empirical, probability):
        probability = np.asarray(probability, np.float64)
        tolerance = 5 * np.sqrt(probability * (1 - probability) / num_samples) + 1e-3
        assert np.all(np.abs(empirical - probability) <= tolerance)

    counts = np.stack([np.bincount(path, minlength=num_states) for path in paths.T])
    check(counts / num_samples, posterior["marginals"])
    pairs = np.zeros((num_bins - 1, num_states, num_states))
    for t in range(num_bins - 1):
        np.add.at(pairs[t], (paths[:, t], paths[:, t + 1]), 1.0 / num_samples)
    check(pairs, posterior["pairwise"])

    # Forbidden moves and impossible states never appear.
    _, log_trans, log_lik, mask = problem
    bins = np.arange(num_bins)
    assert np.all(np.isfinite(log_trans[bins[:-1], paths[:, :-1], paths[:, 1:]]))
    assert np.all(np.isfinite(np.where(mask, log_lik[bins, paths], 0.0)))


def test_sample_single_bin():
    log_init, log_trans, log_lik, _ = random_problem(2, 4, 1, stationary=True)
    paths = hmm.sample(jax.random.key(1), log_init, log_trans, log_lik, num_samples=5)
    assert paths.shape == (5, 1) and paths.dtype == jnp.int32


# ----------------------------------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------------------------------


@jax.jit
def run_batch(keys, log_init, log_trans, log_lik, mask):
    outputs = {
        method: jax.vmap(functools.partial(run_core, method=method))(
            log_init, log_trans, log_lik, mask
        )
        for method in hmm.METHODS
    }
    sample = functools.partial(hmm.sample, num_samples=3)
    return outputs, jax.vmap(sample)(keys, log_init, log_trans, log_lik, mask)


def test_vmap_matches_loop():
    problems = [random_problem(seed, 3, 5, forbid=0.2) for seed in range(4)]
    batch = [np.stack(arrays) for arrays in zip(*problems, strict=True)]
    keys = jax.random.split(jax.random.key(3), len(problems))
    outputs, samples = run_batch(keys, *batch)

    for method in hmm.METHODS:
        for b, problem in enumerate(problems):
            for name, value in run_core(*problem, method=method).items():
                assert_close(outputs[method][name][b], value)
    for b, problem in enumerate(problems):
        single = hmm.sample(keys[b], *problem, num_samples=3)
        np.testing.assert_array_equal(samples[b], single)


# ----------------------------------------------------------------------------------------------
# -inf potentials and missing data
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", hmm.METHODS)
def test_forbidden_moves_give_finite_gradients(method):
    """Left-to-right chain that never reaches state 3: whole forward columns are -inf."""
    num_bins = 6
    allowed = np.eye(4, dtype=bool) | np.eye(4, k=1, dtype=bool)
    allowed[2, 3] = False
    log_trans = np.where(allowed, np.log(0.5), -np.inf).astype(np.float32)
    log_init = np.array([0.0, -np.inf, -np.inf, -np.inf], np.float32)
    log_lik = np.random.default_rng(0).normal(size=(num_bins, 4)).astype(np.float32)
    log_lik[2, 1] = -np.inf
    mask = np.ones(num_bins, bool)

    actual = run_core(log_init, log_trans, log_lik, mask, method)
    expected = brute_force(log_init, log_trans, log_lik, mask)
    assert_close(actual["log_z"], expected["log_z"])
    for name in ("grad_init", "grad_trans", "grad_lik", "marginals", "pairwise"):
        assert np.all(np.isfinite(actual[name]))
        assert_close(actual[name], expected[name])


@pytest.mark.parametrize("method", hmm.METHODS)
def test_impossible_data_gives_minus_inf_without_nan(method):
    log_init, log_trans, log_lik, mask = random_problem(4, 2, 5, stationary=True)
    log_lik[2], mask[2] = -np.inf, True
    actual = run_core(log_init, log_trans, log_lik, mask, method)
    assert actual["log_z"] == -np.inf
    for name in ("grad_init", "grad_trans", "grad_lik", "marginals", "pairwise"):
        assert np.all(actual[name] == 0)


@pytest.mark.parametrize("method", hmm.METHODS)
def test_missing_bins_ignore_their_likelihood(method):
    """Missing bins may hold anything, NaN included, without touching values or gradients."""
    log_init, log_trans, log_lik, mask = random_problem(5, 3, 5)
    mask[[1, 4]] = False
    garbage = log_lik.copy()
    garbage[1], garbage[4] = np.nan, np.inf
    clean = np.where(mask[:, None], log_lik, 0.0).astype(np.float32)
    actual = run_core(log_init, log_trans, garbage, mask, method)
    expected = run_core(log_init, log_trans, clean, np.ones_like(mask), method)
    for name in ("grad_lik", "grad_lik_only"):
        expected[name] = np.where(mask[:, None], expected[name], 0.0)
    for name, value in expected.items():
        assert_close(actual[name], value)


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------

K, T = 3, 5
GOOD = dict(log_init=np.zeros(K), log_trans=np.zeros((K, K)), log_lik=np.zeros((T, K)))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(log_init=np.zeros(K + 1)), "log_init"),
        (dict(log_trans=np.zeros((K, K + 1))), "log_trans"),
        (dict(log_trans=np.zeros((T, K, K))), "log_trans"),
        (dict(log_trans=np.zeros((K + 1, K + 1))), "log_trans"),
        (dict(log_lik=np.zeros(T)), "log_lik"),
        (dict(log_lik=np.zeros((0, K))), "log_lik"),
        (dict(mask=np.ones(T + 1, bool)), "mask"),
    ],
)
@pytest.mark.parametrize("function", [hmm.log_marginal, hmm.smooth, hmm.viterbi])
def test_bad_shapes_raise(function, change, message):
    with pytest.raises(ValueError, match=message):
        function(**(GOOD | change))
    with pytest.raises(ValueError, match=message):
        jax.jit(function)(**(GOOD | change))


def test_bad_shapes_raise_in_sample():
    with pytest.raises(ValueError, match="log_trans"):
        hmm.sample(jax.random.key(0), **(GOOD | dict(log_trans=np.zeros((T, K, K)))))


@pytest.mark.parametrize("function", [hmm.log_marginal, hmm.smooth])
def test_unknown_method_raises(function):
    with pytest.raises(ValueError, match="method"):
        function(**GOOD, method="fast")


def _sharp_switch_problem(log_switch):
    """Two states, a chain sure of state 0 for 3 bins, then data only state 1 explains: the
    path must take the (rare) switch 0 -> 1, whose log probability is ``log_switch``."""
    log_init = np.log([1.0 - 1e-6, 1e-6])
    log_trans = np.array([[np.log1p(-np.exp(log_switch)), log_switch], [-1.0, np.log1p(-0.37)]])
    log_lik = np.array([[0.0, -40.0], [0.0, -40.0], [0.0, -40.0], [-300.0, 0.0], [-300.0, 0.0]])
    return log_init, log_trans, log_lik


@pytest.mark.parametrize("method", hmm.METHODS)
def test_rare_transitions_are_exact_down_to_the_floor(method):
    # A switch of probability e^-70 after messages sharpened by e^-40 per bin: products of
    # weights and messages far below float32's range, which the matrix-vector form must keep.
    args = _sharp_switch_problem(-70.0)
    expected = brute_force(*args, np.ones(5, bool))["log_z"]
    actual = hmm.log_marginal(*(jnp.asarray(a, jnp.float32) for a in args), method=method)
    np.testing.assert_allclose(float(actual), expected, rtol=1e-5)


def test_transitions_below_the_floor_stay_possible():
    # A switch of probability e^-150 is taken at e^-80 relative to its column (the documented
    # floor): the value stays finite, within the 70 nats the floor adds, and has gradients.
    args = [jnp.asarray(a, jnp.float32) for a in _sharp_switch_problem(-150.0)]
    exact = brute_force(*_sharp_switch_problem(-150.0), np.ones(5, bool))["log_z"]
    value, grads = jax.value_and_grad(hmm.log_marginal, argnums=(1, 2))(*args)
    assert exact < float(value) <= exact + 70.0 + 1e-3
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


@pytest.mark.parametrize("method", hmm.METHODS)
def test_data_only_a_forbidden_state_explains_stay_possible(method):
    # The state the likelihoods favour (by 100 to 500 nats) is one the chain can never reach,
    # so every possible path runs through likelihoods far below the best one. A filter that
    # rescales by the largest likelihood alone underflows every such term to 0 (dynamax 1.0.3's
    # hmm_filter returns -0.69 here); the exact value is -602.
    with np.errstate(divide="ignore"):
        log_init = np.log([0.5, 0.5, 0.0])
        log_trans = np.log([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    log_lik = np.array([[0.0, -200.0, 0.0], [-300.0, -500.0, 0.0], [-300.0, -400.0, 0.0]])
    exact = brute_force(log_init, log_trans, log_lik, np.ones(3, bool))
    post = hmm.smooth(
        *(jnp.asarray(a, jnp.float32) for a in (log_init, log_trans, log_lik)), method=method
    )
    np.testing.assert_allclose(float(post.log_marginal), exact["log_z"], rtol=1e-6)
    np.testing.assert_allclose(post.marginals, exact["marginals"], atol=1e-5)


def test_parallel_form_is_exact_past_the_sequential_range():
    # The documented range limit of the sequential form: bin 1 favours state 1 by 176 nats,
    # but state 1 is a dead end, so every possible path starts in state 0, whose message
    # entry is below float32's range next to state 1's. The log-space parallel form keeps it.
    with np.errstate(divide="ignore"):
        log_init = np.log([0.05, 0.95])
        log_trans = np.log([[1.0, 0.0], [0.0, 0.0]])
    log_lik = np.array([[-95.0, 78.5], [91.5, -62.3], [10.0, -5.0]])
    exact = brute_force(log_init, log_trans, log_lik, np.ones(3, bool))
    post = hmm.smooth(
        *(jnp.asarray(a, jnp.float32) for a in (log_init, log_trans, log_lik)), method="parallel"
    )
    # float32 sums of potentials of ~100 nats: absolute error ~ 100 * 2^-23 per term
    np.testing.assert_allclose(float(post.log_marginal), exact["log_z"], atol=1e-4)
    np.testing.assert_allclose(post.marginals, exact["marginals"], atol=1e-5)


def test_second_derivatives_match_the_parallel_form():
    # The sequential form's derivatives are written out (a custom JVP); forward mode and
    # second derivatives must still work and agree with autodiff of the parallel form.
    log_init, log_trans, log_lik, mask = (
        jnp.asarray(x) for x in random_problem(3, 2, 4, stationary=False, mask_rate=0.0)
    )

    def hessian(method):
        def f(lik, trans):
            return hmm.log_marginal(log_init, trans, lik, mask, method=method)

        return jax.jit(jax.hessian(f, argnums=(0, 1)))(log_lik, log_trans)

    for seq, par in zip(
        jax.tree.leaves(hessian("sequential")), jax.tree.leaves(hessian("parallel")), strict=True
    ):
        np.testing.assert_allclose(seq, par, atol=2e-5)
