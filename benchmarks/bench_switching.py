"""SVI step time of each model, NumPyro program vs a hand-written pure-JAX loss of the same ELBO.

The probabilistic-programming overhead (goal: <= 1.3x), measured for

* every switching configuration, ``srnn``, ``slds``, ``rslds``, ``hmm`` (K = 2) and ``lds``
  (K = 1), on the Lorenz case: 12 trials x 200 bins x 10 Gaussian neurons (``simulate_lorenz``),
  D = 3, ``dkf`` guide, one ELBO particle, Adam;
* ``meta-dssm`` on limit cycles: M = 5 recordings (``simulate_limit_cycles``, 20-100 neurons),
  16 trials x 100 bins each, 8 trials per recording drawn per step by the package's
  ``recording_sampler`` (on both sides), default sizes (d_e = 2, rank 2, D = 2).

Both sides compute the same ELBO with the same building blocks (the core's forward algorithm,
the models' dynamics/readout/hypernetwork modules, the guides' encoders and trajectory
distributions, ``numpyro.distributions`` log densities as plain functions); the hand-written
side calls them directly with the unconstrained parameterisation written out (log scales,
softmax simplices) and no handlers, so the ratio measures what the NumPyro program costs on
top (tracing, effect handlers, constraint transforms, the ELBO's bookkeeping).

Before timing, each hand-written loss is evaluated at the NumPyro program's initial parameters
and with the random keys its guide draws with, and compared with ``Trace_ELBO().loss`` (max abs
difference printed; relative to |loss| it should be ~1e-6). Steady-state step times alternate
between the two sides in rounds (the median round is reported) so that load on a shared machine
hits both alike; compile time (first call) is reported apart.

Run: ``python benchmarks/bench_switching.py [--quick] [--models srnn hmm meta-dssm]``.

``--device`` (accelerator preset, see ``benchmarks/gpu.sh``) times instead the NumPyro ``srnn``
step (K = 2, D = 3, ``dkf`` guide) with each form of the discrete-state core in the model's
forward pass, sequential and parallel-in-time, side by side: at the Lorenz shape (12 trials x
200 bins) and at 4 trials x 10000 bins (Lorenz trajectories, 10 Gaussian neurons). The model
always calls ``hmm.log_marginal`` with its default (``method="sequential"``) and neither the
family nor the SVI engine has a switch for it, so the benchmark swaps the core's default while
each step is traced (:func:`core_method`); the package is unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO
from numpyro.optim import optax_to_numpyro

from neurodyn.data import split_trials
from neurodyn.data.simulators.switching import simulate_lorenz
from neurodyn.families import switching as family
from neurodyn.families.switching.warm_start import initial_values
from neurodyn.guides.switching import trajectory_dist
from neurodyn.inference import hmm
from neurodyn.models.switching import (
    Globals,
    default_priors,
    observation_dist,
    trajectory_log_prob,
)

SWITCHING = ("srnn", "slds", "rslds", "hmm", "lds")
MODELS = (*SWITCHING, "meta-dssm")


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------


def guide_keys(guide, params, rng_key, *args, **kwargs) -> dict:
    """The PRNG key each sample site of ``guide`` draws with inside ``Trace_ELBO().loss(rng_key,
    params, ...)`` (one particle: the guide is seeded with the second half of ``split(rng_key)``).
    """
    _, guide_seed = jax.random.split(rng_key)
    tr = handlers.trace(
        handlers.substitute(handlers.seed(guide, guide_seed), data=params)
    ).get_trace(*args, **kwargs)
    return {
        name: site["kwargs"]["rng_key"]
        for name, site in tr.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def module(params: dict, name: str, template):
    """The Equinox module ``name`` with its arrays taken from a NumPyro params dict."""
    _, static = eqx.partition(template, eqx.is_inexact_array)
    return eqx.combine(params[f"{name}$params"], static)


def adam_update(loss, sample_batch=None, learning_rate=1e-3):
    """A jitted Adam step of a hand-written ``loss(params, key[, batch])``: (state, key) ->
    (state, loss); with ``sample_batch`` the batch is drawn from the key first (as SVI does)."""
    opt = optax.adam(learning_rate)

    @jax.jit
    def update(state, key):
        params, opt_state = state
        if sample_batch is None:
            value, grads = jax.value_and_grad(loss)(params, key)
        else:
            k_batch, k_loss = jax.random.split(key)
            value, grads = jax.value_and_grad(loss)(params, k_loss, sample_batch(k_batch))
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), value

    return update, opt.init


def timed_pair(sides: dict, steps: int, rounds: int) -> dict:
    """Compile time and median per-step time of each side, alternating ``rounds`` rounds of
    ``steps`` steps. ``sides``: name -> (update(state, key) -> (state, out), state)."""
    result, states = {}, {}
    for name, (update, state) in sides.items():
        t = time.perf_counter()
        state, out = update(state, jax.random.PRNGKey(0))
        jax.block_until_ready(out)
        result[name] = dict(compile_s=time.perf_counter() - t, rounds_s=[], first_loss=float(out))
        states[name] = state
    for r in range(rounds):
        for name, (update, _) in sides.items():
            state = states[name]
            t = time.perf_counter()
            for i in range(steps):
                state, out = update(state, jax.random.PRNGKey(1 + r * steps + i))
            jax.block_until_ready(out)
            result[name]["rounds_s"].append((time.perf_counter() - t) / steps)
            states[name] = state
    for res in result.values():
        res["step_s"] = statistics.median(res["rounds_s"])
    return result


# ----------------------------------------------------------------------------------------------
# Switching family
# ----------------------------------------------------------------------------------------------


def switching_setup(model: str, warm: bool = True, num_trials: int = 12, num_timesteps: int = 200):
    """Config, spec, bound model and guide, and the full batch of the Lorenz case; ``warm``:
    start from the package's warm start (as ``fit`` does), else from random modules. The
    first ``num_trials`` of ``num_trials + 4`` simulated trials of ``num_timesteps`` bins are
    used (by default the Lorenz case's 12 of 16 trials of 200 bins)."""
    lorenz = simulate_lorenz(seed=0, num_trials=num_trials + 4, num_timesteps=num_timesteps)
    train, _ = split_trials(lorenz, num_trials)
    options = dict(latent_dim=3) if model != "hmm" else {}
    if model not in ("lds", "rnn"):
        options["states"] = 2
    config = family.make_config(model, [train], options=options)
    spec = family.spec_of(config)
    init = initial_values(spec, train, 0)[1] if warm else None
    model_fn, guide_fn, _, _ = family.build(config, init)
    return config, spec, model_fn, guide_fn, family.batch_of(train)


def handwritten_switching(spec, model_fn, batch, np_params, guide_kind: str):
    """Hand-written ELBO of a switching configuration: ``(loss(params, key), params)`` with the
    params the unconstrained image of the NumPyro program's ``np_params``.

    ``key`` is the key the guide draws the trajectory with (site ``h``).
    """
    modules = model_fn.keywords["modules"]
    priors = default_priors(spec)
    K, D = spec.num_states, spec.latent_dim
    recurrent = K > 1 and spec.transitions == "recurrent"
    gaussian = spec.likelihood == "gaussian"
    y, mask = batch["y"], batch["mask"]
    B = y.shape[0]
    params = {}
    if K > 1:
        params["logit_init"] = jnp.log(np_params["init_probs_map"])
        params["logit_trans"] = jnp.log(np_params["transition_map"])
    if recurrent:
        params["R"] = np_params["transition_weights"]
        params["r"] = np_params["transition_bias"]
    if gaussian:
        params["log_sigma"] = jnp.log(np_params["obs_scale_map"])
    statics = {}
    if spec.has_latent:
        params["log_q"] = jnp.log(np_params["process_scale_map"])
        for name in ("dynamics", "readout", "encoder"):
            params[name] = np_params[f"{name}$params"]
            statics[name] = eqx.partition(modules[name], eqx.is_inexact_array)[1]
    else:
        params["emission"] = np_params["emission_drive"]

    def loss(params, key, num_trials=B):
        log_prior = 0.0
        log_init, log_A = jnp.zeros(K), jnp.zeros((K, K))
        if K > 1:
            pi = jax.nn.softmax(params["logit_init"])
            A = jax.nn.softmax(params["logit_trans"], -1)
            log_init, log_A = jnp.log(pi), jnp.log(A)
            log_prior += priors["init_probs"].log_prob(pi) + priors["transition"].log_prob(A).sum()
        sigma = None
        if gaussian:
            sigma = jnp.exp(params["log_sigma"])
            log_prior += priors["obs_scale"].log_prob(sigma).sum()
        if not spec.has_latent:  # hmm: per-state emissions, y summed out by the core
            lp = observation_dist(spec, params["emission"], sigma).log_prob(y[..., None, :])
            log_lik = jnp.where(mask[..., None, :], lp, 0.0).sum(-1)  # [B, T, K]
            log_py = jax.vmap(hmm.log_marginal, (None, None, 0, 0))(
                log_init, log_A, log_lik, mask.any(-1)
            )
            return -(log_prior + num_trials / B * log_py.sum())
        q = jnp.exp(params["log_q"])
        log_prior += priors["process_scale"].log_prob(q).sum()
        g = Globals(
            log_init,
            log_A,
            params["R"] if recurrent else None,
            params["r"] if recurrent else None,
            eqx.combine(params["dynamics"], statics["dynamics"]),
            q,
            priors["initial_state"],
            eqx.combine(params["readout"], statics["readout"]),
            sigma,
        )
        encoder = eqx.combine(params["encoder"], statics["encoder"])
        qh = trajectory_dist(guide_kind, encoder, y, mask, D)
        h = qh.sample(key)
        drive = jax.vmap(jax.vmap(g.readout))(h)
        log_y = observation_dist(spec, drive, sigma).mask(mask).to_event(2).log_prob(y)
        local = trajectory_log_prob(g, h) + log_y - qh.log_prob(h)
        return -(log_prior + num_trials / B * local.sum())

    return loss, params


def switching_case(model: str, steps: int, rounds: int) -> dict:
    """Check and time one switching configuration."""
    config, spec, model_fn, guide_fn, batch = switching_setup(model)
    num_trials = batch["y"].shape[0]
    svi = SVI(model_fn, guide_fn, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), batch, num_trials=num_trials)
    np_params = svi.get_params(state)
    loss, params = handwritten_switching(spec, model_fn, batch, np_params, config["guide"])

    key = jax.random.PRNGKey(42)
    np_loss = Trace_ELBO().loss(key, np_params, model_fn, guide_fn, batch, num_trials=num_trials)
    keys = guide_keys(guide_fn, np_params, key, batch, num_trials=num_trials)
    hw_loss = loss(params, keys.get("h", key))
    check = dict(numpyro=float(np_loss), hand=float(hw_loss), diff=float(abs(np_loss - hw_loss)))

    np_update = jax.jit(lambda state, key: svi.update(state, batch, num_trials=num_trials))
    hw_update, opt_init = adam_update(loss)
    timing = timed_pair(
        {"numpyro": (np_update, state), "hand": (hw_update, (params, opt_init(params)))},
        steps,
        rounds,
    )
    return dict(model=model, K=spec.num_states, check=check, **timing)


# ----------------------------------------------------------------------------------------------
# Meta-dynamical family
# ----------------------------------------------------------------------------------------------

POSITIVE = ("process_scale", "obs_scale", "process_scale_per_recording", "embedding_scale")


def meta_setup(num_recordings=5, trials=16, timesteps=100, batch_size=8):
    """Config, model, guide, spec, nets, stacked data and sampler of the limit-cycle case."""
    from neurodyn.data.simulators.families import simulate_limit_cycles
    from neurodyn.families import meta

    sessions = simulate_limit_cycles(
        seed=0, num_recordings=num_recordings, num_trials=trials, num_timesteps=timesteps
    )
    config = meta.make_config("meta-dssm", sessions, options=dict(batch_size=batch_size))
    model_fn, guide_fn, spec, nets = meta.build(config)
    data = jax.tree_util.tree_map(jnp.asarray, meta.stack_sessions(config, sessions))
    return config, model_fn, guide_fn, spec, nets, data, meta.recording_sampler(batch_size)


def handwritten_meta(spec, nets, np_params):
    """Hand-written ELBO of ``meta-dssm`` (amortized guide, shared process noise, Gaussian):
    ``(loss(params, keys, batch), params)``; ``keys`` holds the keys of the guide's sites
    ``embedding`` and ``z`` (a single key is split in two)."""
    from neurodyn.models import meta as models

    priors = models.default_priors(spec)
    params = {
        name: jnp.log(value) if name in POSITIVE else value for name, value in np_params.items()
    }
    templates = dict(
        dynamics=nets.dynamics,
        adapter=nets.adapter,
        embed_encoder=nets.embed_encoder,
        latent_encoder=nets.latent_encoder,
    )

    def loss(params, keys, batch):
        if not isinstance(keys, dict):
            keys = dict(zip(("embedding", "z"), jax.random.split(keys), strict=True))
        p = {name: jnp.exp(v) if name in POSITIVE else v for name, v in params.items()}
        net = {name: module(p, name, t) for name, t in templates.items() if t is not None}
        y, mask, rec = batch["y"], batch["mask"], batch["rec"]
        M, B, T, N = y.shape
        D = spec.latent_dim
        weight = jnp.where(batch["trial_mask"], batch["scale"][:, None], 0.0)  # (M, B)
        # guide: read-in, q(e_i), q(z_ij | y_ij, e_i)
        W, b = p["readin_weight"][rec], p["readin_bias"][rec]
        x = jnp.tanh(jnp.einsum("mbtn,mnp->mbtp", jnp.where(mask, y, 0.0), W) + b[:, None, None])
        e_loc, e_scale = net["embed_encoder"](x, batch["trial_mask"])
        q_e = dist.Normal(e_loc[:, None], e_scale[:, None]).to_event(1)
        e3 = q_e.sample(keys["embedding"])
        e = e3[:, 0]
        z_loc, z_scale = net["latent_encoder"](x, e)
        q_z = dist.Normal(z_loc, z_scale).to_event(2)
        z = q_z.sample(keys["z"])
        # model: p(e_i), p(z_ij | e_i), p(y_ij | z_ij)
        p_e = priors["embedding"].expand((M, 1, spec.embedding_dim)).to_event(1)
        f = models.recording_dynamics(spec, net["dynamics"], net.get("adapter"), e, rec)
        q = jnp.broadcast_to(p["process_scale"], (M, 1, D))
        p_z = models.MarkovGaussian(priors["initial"], f, q, (M, B, T, D))
        mean = models.readout_mean(spec, z, p["readout_weight"][rec], p["readout_bias"][rec])
        p_y = dist.Normal(mean, p["obs_scale"][rec][:, None, None, :]).mask(mask).to_event(2)
        local = p_z.log_prob(z) + p_y.log_prob(y) - q_z.log_prob(z)  # (M, B)
        elbo = (p_e.log_prob(e3) - q_e.log_prob(e3)).sum() + (weight * local).sum()
        return -elbo

    return loss, params


def meta_case(steps: int, rounds: int) -> dict:
    """Check and time ``meta-dssm``."""
    config, model_fn, guide_fn, spec, nets, data, sample = meta_setup()
    if spec.guide != "amortized" or spec.process_noise != "shared" or spec.likelihood != "gaussian":
        raise RuntimeError("the hand-written meta loss covers the default meta-dssm settings only")
    svi = SVI(model_fn, guide_fn, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), sample(jax.random.PRNGKey(0), data))
    np_params = svi.get_params(state)
    loss, params = handwritten_meta(spec, nets, np_params)

    batch = sample(jax.random.PRNGKey(7), data)
    key = jax.random.PRNGKey(42)
    np_loss = Trace_ELBO().loss(key, np_params, model_fn, guide_fn, batch)
    hw_loss = loss(params, guide_keys(guide_fn, np_params, key, batch), batch)
    check = dict(numpyro=float(np_loss), hand=float(hw_loss), diff=float(abs(np_loss - hw_loss)))

    @jax.jit
    def np_update(state, key):
        return svi.update(state, sample(key, data))

    hw_update, opt_init = adam_update(loss, sample_batch=lambda k: sample(k, data))
    timing = timed_pair(
        {"numpyro": (np_update, state), "hand": (hw_update, (params, opt_init(params)))},
        steps,
        rounds,
    )
    M, B = batch["trial_mask"].shape
    return dict(model="meta-dssm", K=f"M={M}, {B} trials/rec", check=check, **timing)


# ----------------------------------------------------------------------------------------------
# Sequential vs parallel core in the srnn step (accelerator preset)
# ----------------------------------------------------------------------------------------------

CORE_METHODS = {"seq": "sequential", "par": "parallel"}
DEVICE_SHAPES = ((12, 200), (4, 10000))  # (trials, bins): the Lorenz case, and long trials
QUICK_DEVICE_SHAPES = ((2, 50),)


@contextlib.contextmanager
def core_method(method: str):
    """Within the block, ``hmm.log_marginal`` runs with ``method`` unless told otherwise.

    The models call the core with its default form; a step traced (jitted) inside the block
    keeps the form it was traced with. Benchmark use only: the package has no such switch.
    """
    original = hmm.log_marginal
    hmm.log_marginal = functools.partial(original, method=method)
    try:
        yield
    finally:
        hmm.log_marginal = original


def core_case(
    model: str = "srnn",
    num_trials: int = 12,
    num_timesteps: int = 200,
    steps: int = 10,
    rounds: int = 3,
    methods=tuple(CORE_METHODS),
) -> dict:
    """Time the NumPyro SVI step of ``model`` on Lorenz data with each form of the core in
    its forward pass (random modules, no warm start: the step's cost is what is measured)."""
    _, spec, model_fn, guide_fn, batch = switching_setup(
        model, warm=False, num_trials=num_trials, num_timesteps=num_timesteps
    )
    n = batch["y"].shape[0]
    svi = SVI(model_fn, guide_fn, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), batch, num_trials=n)

    def stepper(method):
        def step(state, key):
            with core_method(method):  # active while the step is traced
                return svi.update(state, batch, num_trials=n)

        return jax.jit(step)

    sides = {name: (stepper(CORE_METHODS[name]), state) for name in methods}
    timing = timed_pair(sides, steps, rounds)
    row = dict(
        model=model,
        K=spec.num_states,
        D=spec.latent_dim,
        trials=n,
        T=num_timesteps,
        neurons=int(batch["y"].shape[-1]),
        steps=steps,
        rounds=rounds,
        **timing,
    )
    if "seq" in timing and "par" in timing:
        row["par/seq"] = timing["par"]["step_s"] / timing["seq"]["step_s"]
        seq_loss = timing["seq"]["first_loss"]
        row["loss_rel_diff"] = abs(timing["par"]["first_loss"] - seq_loss) / max(1.0, abs(seq_loss))
    return row


CORE_HEADER = (
    "| model | K | D | trials x bins | seq compile (s) | par compile (s) | seq step (ms) "
    "| par step (ms) | par / seq | loss rel. diff |\n"
    "|:--|--:|--:|:--|--:|--:|--:|--:|--:|--:|"
)


def format_core_row(row: dict) -> str:
    """One Markdown row of the core comparison."""
    seq, par = row["seq"], row["par"]
    return (
        f"| {row['model']} | {row['K']} | {row['D']} | {row['trials']} x {row['T']} "
        f"| {seq['compile_s']:.2f} | {par['compile_s']:.2f} | {1e3 * seq['step_s']:.2f} "
        f"| {1e3 * par['step_s']:.2f} | **{row['par/seq']:.2f}x** | {row['loss_rel_diff']:.1e} |"
    )


def device_run(shapes, steps: int, rounds: int, deadline=None, on_row=None) -> list[dict]:
    """:func:`core_case` of ``srnn`` at each (trials, bins) shape (``steps`` per round, 1 from
    2048 bins on, where a step takes seconds); shapes not started by ``deadline`` (a
    ``time.perf_counter()`` value) are listed as skipped (the first one always runs)."""
    rows = []
    print(CORE_HEADER, flush=True)
    for trials, bins in shapes:
        if deadline is not None and rows and time.perf_counter() > deadline:
            row = dict(model="srnn", trials=trials, T=bins, skipped="the time budget was spent")
            print(f"# srnn {trials} x {bins}: skipped ({row['skipped']})", flush=True)
        else:
            row = core_case("srnn", trials, bins, steps if bins < 2048 else 1, rounds)
            print(format_core_row(row), flush=True)
        rows.append(row)
        if on_row is not None:
            on_row(rows)
    return rows


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def run(models=MODELS, steps: int = 20, rounds: int = 5, verbose: bool = True) -> list[dict]:
    """Check and time each model; returns one row per model."""
    rows = []
    if verbose:
        print(HEADER, flush=True)
    for name in models:
        row = (
            meta_case(steps, rounds) if name == "meta-dssm" else switching_case(name, steps, rounds)
        )
        row["ratio"] = row["numpyro"]["step_s"] / row["hand"]["step_s"]
        rows.append(row)
        if verbose:
            print(format_row(row), flush=True)
    return rows


HEADER = (
    "| model | K | loss (NumPyro) | max abs diff hand-written | NumPyro compile (s) "
    "| hand compile (s) | NumPyro step (ms) | hand step (ms) | NumPyro / hand |\n"
    "|:--|:--|--:|--:|--:|--:|--:|--:|--:|"
)


def format_row(row: dict) -> str:
    """One Markdown table row."""
    c, n, h = row["check"], row["numpyro"], row["hand"]
    return (
        f"| {row['model']} | {row['K']} | {c['numpyro']:.2f} | {c['diff']:.1e} "
        f"| {n['compile_s']:.2f} | {h['compile_s']:.2f} | {1e3 * n['step_s']:.2f} "
        f"| {1e3 * h['step_s']:.2f} | **{row['ratio']:.2f}x** |"
    )


def main(argv=None):
    """Command line: see the module docstring."""
    from bench_hmm import machine, machine_line

    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument(
        "--device",
        action="store_true",
        help="srnn step with the sequential vs the parallel core, at 12 x 200 and 4 x 10000 "
        "(trials x bins); with --quick at 2 x 50",
    )
    parser.add_argument(
        "--shapes", nargs="+", help="--device: override the shapes, e.g. 12x200 4x10000"
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, help="steps per round (default 20; quick 10)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 7; quick 3)")
    parser.add_argument("--budget-s", type=float, help="--device: start no shape after this")
    parser.add_argument("--out", help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    if args.device:
        steps = args.steps or (1 if args.quick else 5)
        rounds = args.rounds or (1 if args.quick else 3)
    else:
        steps = args.steps or (10 if args.quick else 20)
        rounds = args.rounds or (3 if args.quick else 7)
    info = machine()
    print(machine_line(info), flush=True)
    if args.device:
        print(
            f"# NumPyro srnn SVI step (loss + gradient + Adam) with the sequential (seq) or the "
            f"parallel (par) core in the model, {rounds} alternating rounds of {steps} steps, "
            "median round; compile = first call; loss rel. diff: first step's losses",
            flush=True,
        )

        def write(rows):
            if args.out:
                result = dict(machine=info, preset="quick" if args.quick else "device", rows=rows)
                result["seconds"] = time.perf_counter() - start
                with open(args.out, "w") as f:
                    json.dump(result, f, indent=2)

        shapes = QUICK_DEVICE_SHAPES if args.quick else DEVICE_SHAPES
        if args.shapes:
            shapes = [tuple(int(x) for x in shape.split("x")) for shape in args.shapes]
        deadline = None if args.budget_s is None else start + args.budget_s
        return device_run(shapes, steps, rounds, deadline, on_row=write)
    print(
        f"# SVI step (loss + gradient + Adam), {rounds} alternating rounds of {steps} steps, "
        "median round; the check compares the losses at the same parameters and keys",
        flush=True,
    )
    rows = run(args.models, steps, rounds)
    worst = max(rows, key=lambda r: r["ratio"])
    print(
        f"# worst overhead: {worst['model']} {worst['ratio']:.2f}x "
        f"(goal <= 1.3x: {'met' if worst['ratio'] <= 1.3 else 'not met'})"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
