"""The switching program as a plain NumPyro program (Predictive with y=None, SVI with NumPyro's
own Trace_ELBO), the fitting code's pull handler, and the posterior DataTree."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.optim import optax_to_numpyro

from neurodyn.data import make_session
from neurodyn.families import switching as family
from neurodyn.families.switching.pull import pull, pull_evidence
from neurodyn.inference.metrics import state_scores


def two_state_session(trials=4, T=30, N=4, seed=0, lengths=None):
    """Well separated states (emission means -3 / +3, sd 0.5), sticky; trial i observed for its
    first lengths[i] bins (padding masked), all bins without ``lengths``."""
    rng = np.random.default_rng(seed)
    s = np.zeros((trials, T), int)
    s[:, 0] = rng.integers(2, size=trials)
    for t in range(1, T):
        s[:, t] = np.where(rng.random(trials) < 0.9, s[:, t - 1], 1 - s[:, t - 1])
    y = np.where(s[..., None] == 1, 3.0, -3.0) + 0.5 * rng.normal(size=(trials, T, N))
    bins = np.ones((trials, T), bool)
    if lengths is not None:
        bins = np.arange(T)[None] < np.asarray(lengths)[:, None]
        y = np.where(bins[..., None], y, 0.0)
    return make_session(y.astype(np.float32), bins, states=np.where(bins, s, 0))


CONFIGS = ["srnn", "slds", "rslds", "hmm", "lds"]


@pytest.mark.parametrize("model", CONFIGS)
def test_each_configuration_simulates_and_fits_as_a_plain_numpyro_program(model):
    session = two_state_session(trials=3, T=8)
    options = {"latent_dim": 2} if model != "hmm" else {}
    config = family.make_config(model, [session], options=options)
    program = family.build(config)
    B, T, N = 3, 8, session.num_neurons
    batch = {"y": None, "mask": jnp.ones((B, T, N), bool)}
    draws = Predictive(program.model, num_samples=2)(jax.random.PRNGKey(0), batch, num_trials=B)
    assert draws["y"].shape == (2, B, T, N) and np.isfinite(draws["y"]).all()
    if model != "hmm":
        assert draws["h"].shape == (2, B, T, 2)
    # a simulated batch is data the same program can be fitted to
    data = {"y": draws["y"][0], "mask": batch["mask"]}
    svi = SVI(program.model, program.guide, optax_to_numpyro(optax.adam(1e-2)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(1), data, num_trials=B)
    losses = []
    for _ in range(3):
        state, loss = svi.update(state, data, num_trials=B)
        losses.append(float(loss))
    assert np.isfinite(losses).all()


def test_simulating_without_a_mask_says_what_is_missing():
    session = two_state_session(trials=2, T=5)
    program = family.build(family.make_config("slds", [session], options={"latent_dim": 2}))
    with pytest.raises(ValueError, match=r"batch\['mask'\]"):
        Predictive(program.model, num_samples=1)(jax.random.PRNGKey(0), {"y": None}, num_trials=2)


@pytest.mark.parametrize("model", ["slds", "hmm"])
def test_the_pull_moves_the_gradient_but_not_the_loss(model):
    """Under the fitting code's pull handler the model's log joint keeps its exact value while
    its gradient is that of the pulled marginal."""
    rng = np.random.default_rng(0)
    session = make_session(rng.normal(size=(2, 10, 4)).astype(np.float32))  # states unclear
    config = family.make_config(
        model, [session], options={"latent_dim": 2} if model != "hmm" else {}
    )
    program = family.build(config)
    batch = family.batch_of(session)
    params = family.param_template(config)
    labels = jnp.asarray(np.arange(10)[None].repeat(2, 0) // 5)
    guide_trace = handlers.trace(handlers.seed(program.guide, 0)).get_trace(batch, num_trials=2)
    values = {k: v["value"] for k, v in guide_trace.items() if v["type"] == "sample"}
    params = jax.tree_util.tree_map(jnp.asarray, params)

    def log_joint(values, evidence):
        model = handlers.substitute(program.model, data={**params, **values})
        with pull(evidence=evidence):
            trace = handlers.trace(handlers.seed(model, 0)).get_trace(batch, num_trials=2)
        sites = [s for s in trace.values() if s["type"] == "sample"]
        return sum(s["fn"].log_prob(s["value"]).sum() for s in sites)

    evidence = pull_evidence(labels, 0, 2.0, 10, 2)
    plain, pulled = log_joint(values, None), log_joint(values, evidence)
    np.testing.assert_allclose(pulled, plain, rtol=1e-6)
    g_plain = jax.grad(log_joint)(values, None)["transition"]
    g_pulled = jax.grad(log_joint)(values, evidence)["transition"]
    assert np.abs(np.asarray(g_pulled) - np.asarray(g_plain)).max() > 1e-2
    # at the end of the schedule the evidence is gone
    assert float(jnp.abs(pull_evidence(labels, 10, 2.0, 10, 2)).max()) == 0.0


def test_posterior_tree_has_the_contract_dims_and_dtypes():
    session = two_state_session(trials=3, T=12)
    config = family.make_config("slds", [session], options={"latent_dim": 2})
    params = family.param_template(config)
    tree = family.posterior(config, params, [session], num_samples=4, seed=1)
    post, states = tree["posterior"], tree["state_posterior"]
    assert post["h"].dims == ("chain", "draw", "trial", "time", "latent")
    assert post["h"].shape == (1, 4, 3, 12, 2)
    assert post["states"].dims == ("chain", "draw", "trial", "time")
    assert np.issubdtype(post["states"].dtype, np.integer)
    assert set(np.unique(post["states"].values)) <= {0, 1}
    assert states["state_probability"].dims == ("trial", "time", "state")
    np.testing.assert_allclose(states["state_probability"].values.sum(-1), 1.0, rtol=1e-5)
    assert states["viterbi"].dims == ("trial", "time")
    assert np.issubdtype(states["viterbi"].dtype, np.integer)
    assert tree["observed_data"]["observed"].dtype == bool
    assert tree.attrs["draws_kept"] == 4
    for name in ("trial", "time", "latent", "state", "neuron"):
        assert name in tree["state_posterior"].coords or name in tree["posterior"].coords
    assert list(tree["posterior"].coords["recording"].values) == [session.name] * 3


def test_posterior_of_well_separated_states_and_padded_bins():
    """hmm on two well separated states: the tree's Viterbi path is most_likely_states' and
    recovers the truth; the state draws agree with it; padded bins are flagged not observed."""
    lengths = [30, 18, 24, 30]
    session = two_state_session(lengths=lengths)
    config = family.make_config("hmm", [session], options={"steps": 300, "learning_rate": 5e-2})
    params, _ = family.fit(config, [session], progress=False)
    tree = family.posterior(config, params, [session], num_samples=8)
    viterbi = tree["state_posterior"]["viterbi"].values
    np.testing.assert_array_equal(viterbi, family.most_likely_states(config, params, [session]))
    observed = tree["observed_data"]["observed"].values
    np.testing.assert_array_equal(observed, np.arange(30)[None] < np.array(lengths)[:, None])
    assert state_scores(viterbi, session.states, observed)["state_accuracy"] > 0.97
    draws = tree["posterior"]["states"].values[0]  # [S, B, T]
    assert (draws == viterbi[None])[:, observed].mean() > 0.95
