"""SRNN SVI step time on the Lorenz case, NumPyro program vs a hand-written JAX loss.

Setting: 12 trials x 200 bins x 10 Gaussian neurons (``simulate_lorenz``), ``srnn`` with K = 2,
D = 3, ``dkf`` guide, one ELBO particle, Adam. Both sides compute the same ELBO with the same
building blocks (the core's forward algorithm, the model's dynamics/readout modules, the guide's
encoder and DKF distribution); the hand-written side calls them directly, with the unconstrained
parameterisation written out (log scales, softmax simplices), so the ratio measures what the
NumPyro program costs on top (tracing, handlers, transforms). Compile time is reported apart.

Run: ``python benchmarks/bench_switching.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.optim import optax_to_numpyro

from neurodyn.data import split_trials
from neurodyn.data.simulators.switching import simulate_lorenz
from neurodyn.families import switching as family
from neurodyn.guides.switching import trajectory_dist
from neurodyn.models.switching import Globals, default_priors, trajectory_log_prob


def setup():
    train, _ = split_trials(simulate_lorenz(seed=0), 12)
    config = family.make_config("srnn", [train], options=dict(states=2, latent_dim=3))
    spec = family.spec_of(config)
    labels, init = family._initial_values(spec, train, 0)
    _, model, guide = family.build(config, init)
    return config, spec, model, guide, family.batch_of(train)


def numpyro_step(model, guide, batch):
    svi = SVI(model, guide, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), batch, num_trials=12)
    update = jax.jit(lambda state: svi.update(state, batch, num_trials=12))
    return update, state


def handwritten_step(spec, model, batch):
    """The same ELBO as a plain JAX function of an unconstrained parameter pytree."""
    modules = model.keywords["modules"]
    priors = default_priors(spec)
    K, D = spec.num_states, spec.latent_dim
    gi = modules["global_init"]
    part = lambda m: eqx.partition(m, eqx.is_inexact_array)  # noqa: E731
    (dyn, dyn_s), (ro, ro_s), (enc, enc_s) = (
        part(modules[k]) for k in ("dynamics", "readout", "encoder")
    )
    params = {
        "dynamics": dyn,
        "readout": ro,
        "encoder": enc,
        "logit_init": jnp.zeros(K),
        "logit_trans": jnp.log(0.9 * jnp.eye(K) + 0.1 / K),
        "log_q": jnp.log(gi["process_scale"]),
        "log_sigma": jnp.log(gi["obs_scale"]),
        "R": jnp.zeros((D, K)),
        "r": jnp.zeros(K),
    }

    def loss(params, key):
        pi = jax.nn.softmax(params["logit_init"])
        A = jax.nn.softmax(params["logit_trans"], -1)
        q, sigma = jnp.exp(params["log_q"]), jnp.exp(params["log_sigma"])
        g = Globals(
            jnp.log(pi),
            jnp.log(A),
            params["R"],
            params["r"],
            eqx.combine(params["dynamics"], dyn_s),
            q,
            priors["initial_state"],
            eqx.combine(params["readout"], ro_s),
            sigma,
        )
        encoder = eqx.combine(params["encoder"], enc_s)
        qh = trajectory_dist("dkf", encoder, batch["y"], batch["mask"], D)
        h = qh.sample(key)
        drive = jax.vmap(jax.vmap(g.readout))(h)
        log_y = jnp.where(batch["mask"], dist.Normal(drive, sigma).log_prob(batch["y"]), 0.0)
        log_prior = (
            priors["init_probs"].log_prob(pi)
            + priors["transition"].log_prob(A).sum()
            + priors["process_scale"].log_prob(q).sum()
            + priors["obs_scale"].log_prob(sigma).sum()
        )
        elbo = trajectory_log_prob(g, h).sum() + log_y.sum() - qh.log_prob(h).sum() + log_prior
        return -elbo

    opt = optax.adam(1e-3)

    @jax.jit
    def update(state, key):
        params, opt_state = state
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), value

    return update, (params, opt.init(params))


def timed(fn, state, steps, with_key):
    t = time.perf_counter()
    state, out = fn(state, jax.random.PRNGKey(0)) if with_key else fn(state)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(steps):
        state, out = fn(state, jax.random.PRNGKey(i)) if with_key else fn(state)
    jax.block_until_ready(out)
    return compile_s, (time.perf_counter() - t) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    args = parser.parse_args(argv)
    steps = 20 if args.quick else 100
    config, spec, model, guide, batch = setup()
    np_update, np_state = numpyro_step(model, guide, batch)
    hw_update, hw_state = handwritten_step(spec, model, batch)
    np_compile, np_step = timed(np_update, np_state, steps, with_key=False)
    hw_compile, hw_step = timed(hw_update, hw_state, steps, with_key=True)
    print(
        f"SRNN SVI step, Lorenz 12 x 200 x 10, K=2, D=3, dkf guide ({steps} steps, "
        f"{jax.devices()[0].platform})"
    )
    print(f"{'':<22}{'compile s':>10}{'step ms':>10}")
    print(f"{'numpyro program':<22}{np_compile:>10.2f}{1e3 * np_step:>10.2f}")
    print(f"{'hand-written JAX':<22}{hw_compile:>10.2f}{1e3 * hw_step:>10.2f}")
    print(f"{'ratio':<22}{'':>10}{np_step / hw_step:>10.2f}x")


if __name__ == "__main__":
    main()
