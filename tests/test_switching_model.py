"""The switching model against oracles: brute-force sums over state paths, and Kalman."""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from scipy.stats import multivariate_normal

from neurodyn.data import make_session
from neurodyn.families import switching as family
from neurodyn.families.switching.predict import Fitted
from neurodyn.models.switching import SwitchingTrajectory


def tiny_session(trials=2, T=4, N=3, seed=0, poisson=False):
    rng = np.random.default_rng(seed)
    y = rng.poisson(2.0, (trials, T, N)) if poisson else rng.normal(size=(trials, T, N))
    return make_session(y.astype(np.float32))


def randomized(config, seed=0, scale=0.3):
    """A param set of ``config`` with random values (so that states differ)."""
    params = family.param_template(config)
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    out = []
    for x in leaves:
        x = np.asarray(x, np.float32)
        out.append(x + scale * rng.normal(size=x.shape).astype(np.float32))
    params = jax.tree_util.tree_unflatten(tree, out)
    K = config["spec"]["num_states"]
    if K > 1:
        params["init_probs_map"] = rng.dirichlet(np.ones(K)).astype(np.float32)
        params["transition_map"] = rng.dirichlet(np.ones(K), K).astype(np.float32)
    for site in ("process_scale_map", "obs_scale_map"):
        if site in params:
            params[site] = np.abs(params[site]) + 0.2
    return params


def model_site_log_prob(fitted, batch, site, h=None):
    """log prob of a model site with the guide's global values (and h) substituted."""
    values = _guide_globals(fitted, batch)
    if h is not None:
        values["h"] = h
    with handlers.trace() as tr, handlers.seed(rng_seed=1):
        with handlers.substitute(data={**fitted.params, **values}):
            fitted.model(batch, num_trials=batch["y"].shape[0])
    return tr[site]["fn"].log_prob(tr[site]["value"])


def _guide_globals(fitted, batch):
    with handlers.trace() as tr, handlers.seed(rng_seed=0), handlers.substitute(data=fitted.params):
        fitted.guide(batch, num_trials=batch["y"].shape[0])
    return {k: v["value"] for k, v in tr.items() if v["type"] == "sample" and k != "h"}


def brute_force_log_p_h(g, h, recurrent):
    """log sum over all K^T paths of p(s, h), by explicit enumeration. h: [T, D]."""
    K = g.log_init.shape[0]
    T = h.shape[0]
    means = np.asarray(jax.vmap(g.dynamics)(jnp.asarray(h[:-1])))  # [T-1, K, D]
    q = np.asarray(g.process_scale)
    log_A = np.asarray(g.log_A, np.float64)
    first = float(np.asarray(g.initial.log_prob(jnp.asarray(h[0]))).sum())
    total = []
    for path in itertools.product(range(K), repeat=T):
        lp = float(g.log_init[path[0]]) + first
        for t in range(1, T):
            logits = log_A[path[t - 1]].copy()
            if recurrent:
                logits = logits + h[t - 1] @ np.asarray(g.R) + np.asarray(g.r)
                logits = logits - np.logaddexp.reduce(logits)
            lp += logits[path[t]]
            k = path[t]
            lp += multivariate_normal.logpdf(h[t], means[t - 1, k], np.diag(q[k] ** 2))
        total.append(lp)
    return np.logaddexp.reduce(total)


@pytest.mark.parametrize("model", ["srnn", "slds", "rslds"])
def test_trajectory_log_prob_matches_brute_force(model):
    session = tiny_session()
    config = family.make_config(model, [session], options=dict(states=2, latent_dim=2))
    fitted = Fitted(config, randomized(config))
    h = np.random.default_rng(3).normal(size=(2, 4, 2)).astype(np.float32)
    batch = family.batch_of(session)
    got = np.asarray(model_site_log_prob(fitted, batch, "h", jnp.asarray(h)))
    want = [brute_force_log_p_h(fitted.g, h[i], model != "slds") for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("likelihood", ["gaussian", "poisson"])
def test_hmm_log_marginal_matches_brute_force(likelihood):
    session = tiny_session(poisson=likelihood == "poisson")
    config = family.make_config("hmm", [session], options=dict(states=3, likelihood=likelihood))
    fitted = Fitted(config, randomized(config))
    batch = family.batch_of(session)
    values = _guide_globals(fitted, batch)
    with handlers.trace() as tr, handlers.seed(rng_seed=0):
        with handlers.substitute(data={**fitted.params, **values}):
            fitted.model(batch, num_trials=2)
    got = np.asarray(tr["y"]["fn"].log_prob(tr["y"]["value"]))  # a factor: Unit distribution
    from neurodyn.models.switching import hmm_log_lik

    lik = np.asarray(hmm_log_lik(fitted.spec, fitted.g, batch["y"], batch["mask"]), np.float64)
    log_init, log_A = np.asarray(fitted.g.log_init), np.asarray(fitted.g.log_A)
    want = []
    for i in range(2):
        paths = [
            log_init[p[0]]
            + sum(log_A[a, b] for a, b in itertools.pairwise(p))
            + sum(lik[i, t, k] for t, k in enumerate(p))
            for p in itertools.product(range(3), repeat=4)
        ]
        want.append(np.logaddexp.reduce(paths))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_sample_generates_trajectories_with_finite_log_prob():
    session = tiny_session()
    config = family.make_config("srnn", [session], options=dict(states=2, latent_dim=2))
    fitted = Fitted(config, randomized(config))
    d = SwitchingTrajectory(fitted.g, num_trials=3, num_timesteps=6)
    h = d.sample(jax.random.PRNGKey(0), (2,))
    assert h.shape == (2, 3, 6, 2)
    assert np.isfinite(np.asarray(d.log_prob(h[0]))).all()


# ---------------------------------------------------------------------------------- Kalman


def kalman_log_lik_and_means(y, A, b, q, C, d, r):
    """Kalman filter log p(y) and RTS smoother means (float64). y: [T, N]; h_1 ~ N(0, I)."""
    T, D = y.shape[0], A.shape[0]
    Q, Rn = np.diag(q**2), np.diag(r**2)
    m, P = np.zeros(D), np.eye(D)
    ms, Ps, mp, Pp, ll = [], [], [], [], 0.0
    for t in range(T):
        if t > 0:
            m, P = A @ m + b, A @ P @ A.T + Q
        mp.append(m)
        Pp.append(P)
        S = C.T @ P @ C + Rn
        ll += multivariate_normal.logpdf(y[t], C.T @ m + d, S)
        K = P @ C @ np.linalg.inv(S)
        m, P = m + K @ (y[t] - C.T @ m - d), P - K @ C.T @ P
        ms.append(m)
        Ps.append(P)
    smooth = [ms[-1]]
    for t in range(T - 2, -1, -1):
        J = Ps[t] @ A.T @ np.linalg.inv(Pp[t + 1])
        smooth.insert(0, ms[t] + J @ (smooth[0] - mp[t + 1]))
    return ll, np.array(smooth)


def exact_posterior(y, A, b, q, C, d, r):
    """Dense Gaussian p(h | y) over the stacked trajectory: (mean [T*D], cov)."""
    T, D = y.shape[0], A.shape[0]
    # h = M (stacked noise) + mu, with M the lower-triangular propagation of each step's noise.
    M = np.zeros((T * D, T * D))
    M[:D, :D] = np.eye(D)
    for t in range(1, T):
        M[t * D : (t + 1) * D] = A @ M[(t - 1) * D : t * D]
        M[t * D : (t + 1) * D, t * D : (t + 1) * D] += np.eye(D)
    noise = np.diag(np.concatenate([np.ones(D)] + [q**2] * (T - 1)))
    mu = np.zeros(T * D)
    for t in range(1, T):
        mu[t * D : (t + 1) * D] = A @ mu[(t - 1) * D : t * D] + b
    S = M @ noise @ M.T
    H = np.kron(np.eye(T), C.T)
    Sy = H @ S @ H.T + np.kron(np.eye(T), np.diag(r**2))
    G = S @ H.T @ np.linalg.inv(Sy)
    post_mean = mu + G @ (y.ravel() - H @ mu - np.tile(d, T))
    return post_mean, S - G @ H @ S


def lds_problem(seed=0, T=6, D=2, N=3):
    rng = np.random.default_rng(seed)
    theta = 0.3
    A = 0.95 * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    b = np.array([0.1, -0.05])
    q, r = np.array([0.3, 0.2]), np.full(N, 0.4)
    C, d = rng.normal(size=(D, N)), rng.normal(size=N) * 0.3
    return A, b, q, C, d, r


def lds_fitted(session, A, b, q, C, d, r, guide="dkf"):
    config = family.make_config(
        "lds", [session], options=dict(latent_dim=2, guide=guide, likelihood="gaussian")
    )
    params = family.param_template(config)
    params["dynamics$params"] = _replace(params["dynamics$params"], W=A[None], b=b[None])
    readout = params["readout$params"]
    params["readout$params"] = _replace(readout, C=C, d=d)
    params["process_scale_map"] = q[None].astype(np.float32)
    params["obs_scale_map"] = r.astype(np.float32)
    return config, params


def _replace(module, **values):
    import equinox as eqx

    for k, v in values.items():
        module = eqx.tree_at(lambda m, k=k: getattr(m, k), module, jnp.asarray(v, jnp.float32))
    return module


def test_lds_elbo_under_exact_posterior_equals_kalman_log_likelihood():
    A, b, q, C, d, r = lds_problem()
    rng = np.random.default_rng(1)
    y = rng.normal(size=(1, 6, 3))
    session = make_session(y)
    config, params = lds_fitted(session, A, b, q, C, d, r)
    fitted = Fitted(config, params)
    ll, _ = kalman_log_lik_and_means(y[0].astype(np.float64), A, b, q, C, d, r)
    mean, cov = exact_posterior(y[0].astype(np.float64), A, b, q, C, d, r)
    batch = family.batch_of(session)
    for _ in range(3):  # log p(y, h) - log q(h) is log p(y) for every h when q is exact
        h = rng.multivariate_normal(mean, cov).reshape(1, 6, 2).astype(np.float32)
        log_joint = float(model_site_log_prob(fitted, batch, "h", jnp.asarray(h))[0])
        log_joint += float(_y_log_prob(fitted, batch, jnp.asarray(h)))
        elbo_term = log_joint - multivariate_normal.logpdf(h.ravel(), mean, cov)
        np.testing.assert_allclose(elbo_term, ll, rtol=1e-4, atol=2e-3)


def _y_log_prob(fitted, batch, h):
    globals_ = _guide_globals(fitted, batch)
    with handlers.trace() as tr, handlers.seed(rng_seed=1):
        with handlers.substitute(data={**fitted.params, **globals_, "h": h}):
            fitted.model(batch, num_trials=1)
    return tr["y"]["fn"].log_prob(tr["y"]["value"]).sum()


@pytest.fixture(scope="module")
def trained_lds():
    """A dkf guide trained on a simulated LDS whose parameters are fixed at the truth."""
    import optax
    from numpyro.infer import Trace_ELBO

    A, b, q, C, d, r = lds_problem(T=25)
    rng = np.random.default_rng(2)
    trials, T = 16, 25
    h = np.zeros((trials, T, 2))
    h[:, 0] = rng.normal(size=(trials, 2))
    for t in range(1, T):
        h[:, t] = h[:, t - 1] @ A.T + b + q * rng.normal(size=(trials, 2))
    y = h @ C + d + r * rng.normal(size=(trials, T, 3))
    session = make_session(y)
    config, params = lds_fitted(session, A, b, q, C, d, r, guide="dkf")
    fitted = Fitted(config, params)
    batch = family.batch_of(session)
    fixed = {k: v for k, v in fitted.params.items() if k != "encoder$params"}

    def loss(enc, key):
        return Trace_ELBO(num_particles=2).loss(
            key,
            {**fixed, "encoder$params": enc},
            fitted.model,
            fitted.guide,
            batch,
            num_trials=trials,
        )

    opt = optax.adam(1e-2)
    enc = fitted.params["encoder$params"]
    state = opt.init(enc)

    @jax.jit
    def step(enc, state, key):
        g = jax.grad(loss)(enc, key)
        updates, state = opt.update(g, state)
        return optax.apply_updates(enc, updates), state

    for i in range(600):
        enc, state = step(enc, state, jax.random.PRNGKey(i))
    params = {**fitted.params, "encoder$params": enc}
    return dict(config=config, params=params, session=session, h=h, y=y, lds=(A, b, q, C, d, r))


def test_dkf_guide_learns_kalman_smoother_means(trained_lds):
    from neurodyn.families.switching.predict import trajectory_samples

    t = trained_lds
    A, b, q, C, d, r = t["lds"]
    fitted = Fitted(t["config"], t["params"])
    batch = family.batch_of(t["session"])
    y, trials = t["y"], t["y"].shape[0]

    h_q = np.asarray(
        trajectory_samples(fitted, batch["y"], batch["mask"], 64, jax.random.PRNGKey(0)).mean(0)
    )
    smooth = np.array([kalman_log_lik_and_means(y[i], A, b, q, C, d, r)[1] for i in range(trials)])
    rmse = np.sqrt(np.mean((h_q - smooth) ** 2))
    assert rmse < 0.2 * smooth.std(), (rmse, smooth.std())


def test_importance_sampled_log_likelihood_matches_the_kalman_filter(trained_lds):
    """Per-trial log p(y_i) by importance sampling with the dkf guide as proposal, against the
    exact Kalman-filter value: within Monte Carlo error, tighter with more samples."""
    from neurodyn.inference import workflow

    t = trained_lds
    exact = np.array([kalman_log_lik_and_means(yi, *t["lds"])[0] for yi in t["y"]])
    problem = family.problem(t["config"], t["params"], [t["session"]])
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k > 0.7 for some trials: this guide is no exact posterior
        for num_samples in (8, 4096):
            runs = [workflow.heldout(problem, num_samples=num_samples, seed=s)[1] for s in range(2)]
            errors.append(np.mean([np.abs(e.log_marginal_psis - exact).mean() for e in runs]))
    assert errors[1] < 0.2, errors  # nats per 25-bin trial (about 1.1 nats with 8 samples)
    assert errors[1] < errors[0], errors


def test_dkf_posterior_intervals_cover_the_true_latents(trained_lds):
    """90% intervals of q(h | y) contain the simulated latents 80-97% of the time."""
    from neurodyn.families.switching.predict import trajectory_samples

    t = trained_lds
    fitted = Fitted(t["config"], t["params"])
    batch = family.batch_of(t["session"])
    draws = np.asarray(
        trajectory_samples(fitted, batch["y"], batch["mask"], 400, jax.random.PRNGKey(3))
    )
    lo, hi = np.percentile(draws, [5, 95], axis=0)
    coverage = np.mean((t["h"] >= lo) & (t["h"] <= hi))
    assert 0.80 <= coverage <= 0.97, coverage


# ------------------------------------------------------------------------------------ SMC


def test_smc_log_likelihood_matches_the_kalman_filter(trained_lds):
    """SMC with the dkf guide's per-bin proposals: per-trial log p(y_i) within Monte Carlo error
    of the Kalman filter, and much closer than importance sampling with as many draws."""
    from neurodyn.families.switching.smc import smc_log_marginals
    from neurodyn.inference import workflow

    t = trained_lds
    exact = np.array([kalman_log_lik_and_means(yi, *t["lds"])[0] for yi in t["y"]])
    fitted = Fitted(t["config"], t["params"])
    batch = family.batch_of(t["session"])
    est = smc_log_marginals(fitted, batch["y"], batch["mask"], 1024, jax.random.PRNGKey(0))
    smc_error = np.asarray(est.log_marginal) - exact
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = family.problem(t["config"], t["params"], [t["session"]])
        is_error = workflow.heldout(problem, num_samples=1024, seed=0)[1].log_marginal_psis - exact
    # nats per 25-bin trial; about 0.12 (SMC) against 0.25 (importance sampling) here
    assert np.abs(smc_error).mean() < 0.2, smc_error
    assert abs(smc_error.mean()) < 0.1, smc_error  # unbiased: errors of both signs
    assert np.abs(smc_error).mean() < np.abs(is_error).mean(), (smc_error, is_error)
    assert np.all(np.asarray(est.ess) > 0)


def _path_kalman_log_lik(y, path, A, b, q, C, d, r):
    """log p(y | s = path) of a linear SLDS: the Kalman filter with state-indexed dynamics
    (state s_t moves h_{t-1} to h_t; h_1 ~ N(0, I)). float64."""
    D = A.shape[-1]
    m, P, ll = np.zeros(D), np.eye(D), 0.0
    for t, k in enumerate(path):
        if t > 0:
            m, P = A[k] @ m + b[k], A[k] @ P @ A[k].T + np.diag(q[k] ** 2)
        S = C.T @ P @ C + np.diag(r**2)
        ll += multivariate_normal.logpdf(y[t], C.T @ m + d, S)
        G = P @ C @ np.linalg.inv(S)
        m, P = m + G @ (y[t] - C.T @ m - d), P - G @ C.T @ P
    return ll


def test_smc_log_likelihood_of_an_slds_matches_a_sum_over_state_paths():
    """K = 2 linear states: exact log p(y) = logsumexp over all 2^T paths of log p(s) + the
    path's Kalman log-likelihood. SMC (untrained guide, many particles) recovers it: the
    particles' state filtering must be right for this to hold."""
    from neurodyn.families.switching.smc import smc_log_marginals

    T, D, N = 6, 2, 3
    rng = np.random.default_rng(4)
    A = np.stack([0.9 * np.eye(D), np.array([[0.6, -0.5], [0.5, 0.6]])])
    b = np.array([[0.4, 0.0], [-0.3, 0.2]])
    q = np.array([[0.3, 0.3], [0.5, 0.4]])
    C, d, r = rng.normal(size=(D, N)), np.zeros(N), np.full(N, 0.5)
    pi, trans = np.array([0.6, 0.4]), np.array([[0.8, 0.2], [0.3, 0.7]])
    y = rng.normal(size=(2, T, N))
    session = make_session(y)
    config = family.make_config(
        "slds", [session], options=dict(states=2, latent_dim=D, likelihood="gaussian")
    )
    params = family.param_template(config)
    params["dynamics$params"] = _replace(params["dynamics$params"], W=A, b=b)
    params["readout$params"] = _replace(params["readout$params"], C=C, d=d)
    params["process_scale_map"] = q.astype(np.float32)
    params["obs_scale_map"] = r.astype(np.float32)
    params["init_probs_map"] = pi.astype(np.float32)
    params["transition_map"] = trans.astype(np.float32)
    exact = []
    for yi in y:
        terms = []
        for path in itertools.product(range(2), repeat=T):
            log_prior = np.log(pi[path[0]]) + sum(
                np.log(trans[i, j]) for i, j in zip(path[:-1], path[1:], strict=True)
            )
            terms.append(log_prior + _path_kalman_log_lik(yi, path, A, b, q, C, d, r))
        exact.append(np.logaddexp.reduce(terms))
    # A broad proposal: the guide's DKF head gives loc 0 and scale ~1 whatever it sees.
    import equinox as eqx

    last = lambda enc: enc.combiner.layers[-1]  # noqa: E731
    head = last(params["encoder$params"])
    head = eqx.tree_at(lambda m: (m.weight, m.bias), head, (
        jnp.zeros_like(head.weight), jnp.concatenate([jnp.zeros(D), jnp.full(D, 3.5)])
    ))  # fmt: skip
    params["encoder$params"] = eqx.tree_at(last, params["encoder$params"], head)
    fitted = Fitted(config, params)
    batch = family.batch_of(session)
    runs = [
        smc_log_marginals(fitted, batch["y"], batch["mask"], 10_000, jax.random.PRNGKey(i))
        for i in range(4)
    ]
    estimates = np.stack([np.asarray(r.log_marginal) for r in runs])  # [runs, trials]
    # the mean of 4 runs within 4 standard errors of the runs' spread (and 0.1 nats)
    se = estimates.std(0, ddof=1) / 2
    assert np.all(np.abs(estimates.mean(0) - exact) < np.maximum(4 * se, 0.02)), (estimates, exact)
    assert np.all(np.abs(estimates.mean(0) - exact) < 0.1)
