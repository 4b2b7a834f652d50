"""Importance-sampled per-trial log-likelihood against exact values: a linear-Gaussian model
(closed form, as a Kalman filter gives it) and a hidden Markov model (forward algorithm)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from neurodyn.inference import hmm
from neurodyn.inference.importance import heldout_metrics, summarize, trial_log_weights

D, N, SIGMA = 2, 5, 0.5
rng = np.random.default_rng(0)
C = rng.normal(size=(N, D)).astype(np.float32)
Y = (rng.normal(size=(6, D)) @ C.T + SIGMA * rng.normal(size=(6, N))).astype(np.float32)


def model(batch, *, num_trials):
    with numpyro.plate("trials", num_trials):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([D]).to_event(1))
        numpyro.sample("y", dist.Normal(z @ C.T, SIGMA).to_event(1), obs=batch["y"])


def exact_posterior(y):
    precision = np.eye(D) + C.T @ C / SIGMA**2
    cov = np.linalg.inv(precision)
    return y @ (C @ cov) / SIGMA**2, cov


def make_guide(inflate):
    """The exact posterior with its scale multiplied by ``inflate`` (1 = exact)."""

    def guide(batch, *, num_trials):
        mean, cov = exact_posterior(np.asarray(batch["y"]))
        chol = np.linalg.cholesky(cov) * inflate
        with numpyro.plate("trials", num_trials):
            numpyro.sample("z", dist.MultivariateNormal(jnp.asarray(mean), scale_tril=chol))

    return guide


def exact_log_marginal():
    cov = C @ C.T + SIGMA**2 * np.eye(N)
    return multivariate_normal(np.zeros(N), cov).logpdf(Y)


def estimate(inflate, num_samples, seed=0):
    lw = trial_log_weights(
        model,
        make_guide(inflate),
        {},
        {"y": Y},
        key=jax.random.PRNGKey(seed),
        num_samples=num_samples,
        model_kwargs={"num_trials": len(Y)},
    )
    assert lw.shape == (num_samples, len(Y))
    return summarize(lw)


def test_exact_guide_gives_the_exact_marginal_with_zero_variance():
    est = estimate(1.0, 32)
    np.testing.assert_allclose(est.log_marginal, exact_log_marginal(), atol=1e-3)
    np.testing.assert_allclose(np.ptp(est.log_weights, axis=0), 0, atol=1e-3)


def test_wider_guide_is_unbiased_within_monte_carlo_error_and_tightens():
    truth = exact_log_marginal()
    errors = []
    for num_samples in (16, 1024):
        runs = np.stack([estimate(1.6, num_samples, seed).log_marginal for seed in range(4)])
        errors.append(np.abs(runs - truth).mean())
    assert errors[1] < 0.05
    assert errors[1] < errors[0]


def test_narrow_guide_is_flagged_by_khat():
    good, bad = estimate(1.3, 400), estimate(0.3, 400)
    assert good.khat.max() < 0.7 < bad.khat.max()
    metrics = heldout_metrics(bad, num_observed_bins=len(Y))
    assert metrics["psis_khat"]["share_above_0.7"] > 0


def test_psis_estimate_agrees_with_raw_when_weights_are_tame():
    est = estimate(1.3, 400)
    np.testing.assert_allclose(est.log_marginal_psis, est.log_marginal, atol=0.02)


# ---------------------------------------------------------------------------------------------
# A hidden Markov model whose state path is sampled by the proposal: the forward algorithm
# (neurodyn.inference.hmm.log_marginal) gives log p(y) exactly.
# ---------------------------------------------------------------------------------------------

K_HMM, T_HMM, SIGMA_HMM = 3, 10, 0.8
MU_HMM = np.array([-1.5, 0.0, 1.5], np.float32)
INIT_HMM = np.array([0.5, 0.3, 0.2], np.float32)
TRANS_HMM = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]], np.float32)


class MarkovChain(dist.Distribution):
    """A whole state path s [T] of a homogeneous Markov chain as one event (written here, apart
    from the package's core, so that the check is independent of it)."""

    support = dist.constraints.integer_interval(0, K_HMM - 1)

    def __init__(self, init, trans, num_steps, batch_shape=()):
        self.init, self.trans = jnp.asarray(init), jnp.asarray(trans)
        super().__init__(batch_shape=batch_shape, event_shape=(num_steps,))

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        keys = jax.random.split(key, self.event_shape[0])
        first = jax.random.categorical(keys[0], jnp.log(self.init), shape=shape)

        def step(s, k):
            nxt = jax.random.categorical(k, jnp.log(self.trans[s]))
            return nxt, nxt

        _, rest = jax.lax.scan(step, first, keys[1:])
        return jnp.concatenate([first[..., None], jnp.moveaxis(rest, 0, -1)], -1)

    def log_prob(self, value):
        log_p = jnp.log(self.init)[value[..., 0]]
        return log_p + jnp.log(self.trans)[value[..., :-1], value[..., 1:]].sum(-1)


def hmm_data(num_trials=4, seed=0):
    rng = np.random.default_rng(seed)
    s = np.empty((num_trials, T_HMM), int)
    s[:, 0] = rng.choice(K_HMM, num_trials, p=INIT_HMM)
    for t in range(1, T_HMM):
        s[:, t] = [rng.choice(K_HMM, p=TRANS_HMM[i]) for i in s[:, t - 1]]
    return (MU_HMM[s] + SIGMA_HMM * rng.normal(size=s.shape)).astype(np.float32)


Y_HMM = hmm_data()


def hmm_model(batch, *, num_trials):
    with numpyro.plate("trials", num_trials):
        s = numpyro.sample("s", MarkovChain(INIT_HMM, TRANS_HMM, T_HMM, (num_trials,)))
        numpyro.sample(
            "y", dist.Normal(jnp.asarray(MU_HMM)[s], SIGMA_HMM).to_event(1), obs=batch["y"]
        )


def hmm_log_lik(y):
    """log p(y_t | s_t = k): float (trials, T, K)."""
    return dist.Normal(MU_HMM, SIGMA_HMM).log_prob(jnp.asarray(y)[..., None])


def exact_hmm_log_marginal():
    log_marginal = jax.vmap(hmm.log_marginal, (None, None, 0))
    return np.asarray(log_marginal(jnp.log(INIT_HMM), jnp.log(TRANS_HMM), hmm_log_lik(Y_HMM)))


def hmm_proposal(mix=0.1):
    """Independent categoricals per bin: the smoothed state marginals mixed with uniform. The
    proposal misses the chain's correlations between bins (the weights vary) but covers every
    path (the weights are bounded)."""
    smooth = jax.vmap(hmm.smooth, (None, None, 0))
    post = smooth(jnp.log(INIT_HMM), jnp.log(TRANS_HMM), hmm_log_lik(Y_HMM))
    return np.asarray((1 - mix) * post.marginals + mix / K_HMM)


Q_HMM = hmm_proposal()


def hmm_guide(batch, *, num_trials):
    with numpyro.plate("trials", num_trials):
        numpyro.sample("s", dist.Categorical(probs=Q_HMM).to_event(1))


def hmm_estimate(num_samples, seed):
    lw = trial_log_weights(
        hmm_model,
        hmm_guide,
        {},
        {"y": Y_HMM},
        key=jax.random.PRNGKey(seed),
        num_samples=num_samples,
        model_kwargs={"num_trials": len(Y_HMM)},
        chunk=256,
    )
    assert lw.shape == (num_samples, len(Y_HMM))
    return summarize(lw)


def monte_carlo_se(log_weights):
    """Delta-method SE of log-mean-exp: sd(w) / (sqrt(S) mean(w)), per trial."""
    w = np.exp(log_weights - log_weights.max(0))
    return w.std(0) / (np.sqrt(len(w)) * w.mean(0))


def test_importance_sampling_matches_the_forward_algorithm_within_monte_carlo_error():
    truth = exact_hmm_log_marginal()
    est = hmm_estimate(1000, seed=0)
    se = monte_carlo_se(est.log_weights)
    assert np.all(se > 0.01)  # the proposal is not exact: there is Monte Carlo error to test
    assert np.all(np.abs(est.log_marginal - truth) < 4 * se)
    # Paths drawn twice have tied weights; Pareto smoothing must not break the estimate.
    assert np.all(np.isfinite(est.log_marginal_psis))


def test_importance_sampling_on_the_hmm_tightens_as_samples_grow():
    truth = exact_hmm_log_marginal()
    # One call, split into 4 independent replicates per sample size (one compilation).
    lw = hmm_estimate(40_000, seed=1).log_weights.reshape(4, 10_000, len(Y_HMM))
    errors, spreads = [], []
    for num_samples in (100, 10_000):
        runs = logsumexp(lw[:, :num_samples], axis=1) - np.log(num_samples)
        errors.append(np.abs(runs - truth).mean())
        spreads.append(runs.std(0).mean())
    assert errors[1] < errors[0] and spreads[1] < spreads[0]
    assert errors[1] < 0.05


def test_the_test_model_marginal_is_the_forward_algorithm():
    # Brute force over all K^T paths with the test's own chain density: the exact value used
    # above is the marginal of the very model the importance sampler sees.
    paths = np.stack(np.meshgrid(*[np.arange(K_HMM)] * T_HMM, indexing="ij"), -1)
    paths = jnp.asarray(paths.reshape(-1, T_HMM))
    log_prior = MarkovChain(INIT_HMM, TRANS_HMM, T_HMM).log_prob(paths)
    log_lik = dist.Normal(jnp.asarray(MU_HMM)[paths], SIGMA_HMM).log_prob(Y_HMM[:, None])
    brute = jax.nn.logsumexp(log_prior + log_lik.sum(-1), axis=-1)
    np.testing.assert_allclose(brute, exact_hmm_log_marginal(), rtol=1e-5)


def test_summarize_survives_tied_top_weights():
    # A discrete latent drawn by the proposal repeats its likeliest paths, so with few draws the
    # largest weights tie and arviz_stats' Pareto fit raises "All tail values are the same".
    lw = np.concatenate([np.zeros(40), -1.0 - np.arange(60) / 10])[:, None]  # 40 ties on top
    rng = np.random.default_rng(0)
    heavy = rng.standard_t(1.5, size=(100, 1)) * 3  # a real tail beside it
    est = summarize(np.concatenate([lw, heavy], axis=1))
    np.testing.assert_allclose(est.log_marginal_psis[0], est.log_marginal[0], atol=0.1)
    assert est.khat[0] == -np.inf and np.isfinite(est.khat[1])
