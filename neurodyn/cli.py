"""The ``neurodyn`` command: simulate, fit, adapt, evaluate, compare, report, demo.

Error contract (DESIGN.md): bad input ends with one line naming the problem, exit status 2, no
traceback, and nothing half-written in the output folder (set NEURODYN_DEBUG=1 to see the
traceback instead). Heavy imports (JAX) happen inside the
commands so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

EXIT_USAGE = 2
POSTERIOR_VALUES = 1_000_000  # values of y per draw kept in a run's posterior.nc
FIT_DEFAULTS = dict(states=None, latent_dim=None, embedding_dim=None, rank=None, guide=None)


class UsageError(Exception):
    """Bad input from the user: reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message}")


def _user_errors():
    """The exception types that mean bad input rather than a bug."""
    from .data import SessionError
    from .inference.runs import RunError
    from .models.priors import PriorError

    return (SessionError, RunError, PriorError, UsageError, ValueError, FileNotFoundError)


# ----------------------------------------------------------------------------- commands


def cmd_simulate(args) -> None:
    from .data import save_session, split_trials
    from .data.simulators import get_simulator

    try:
        simulate = get_simulator(args.name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    options = {
        k: v
        for k, v in dict(
            num_trials=args.trials,
            num_timesteps=args.timesteps,
            num_neurons=args.neurons,
            num_recordings=args.recordings,
        ).items()
        if v is not None
    }
    try:
        result = simulate(seed=args.seed, likelihood=args.likelihood, **options)
    except TypeError as e:
        raise UsageError(f"simulate {args.name}: {e}") from None
    out = Path(args.out)
    if isinstance(result, list):  # one file per recording, in a folder
        if out.suffix == ".npz":
            raise UsageError(
                f"simulate {args.name} writes several recordings: --out must be a folder"
            )
        if args.test_out:
            raise UsageError(f"--test-out applies to single-recording simulators, not {args.name}")
        from .inference.runs import staged_folder

        with staged_folder(out) as tmp:
            for session in result:
                save_session(tmp / f"{session.name}.npz", session)
        print(f"wrote {len(result)} recordings to {out}/")
        return
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")
    if args.test_out:
        train, test = split_trials(result, result.num_trials - args.test_trials)
        save_session(out, train)
        save_session(args.test_out, test)
        print(
            f"wrote {out} ({train.num_trials} trials) "
            f"and {args.test_out} ({test.num_trials} trials)"
        )
    else:
        save_session(out, result)
        print(
            f"wrote {out} ({result.num_trials} trials x {result.num_timesteps} bins x "
            f"{result.num_neurons} neurons)"
        )


CONVERTERS = ("dad-chewie", "dad-mihi-a", "dad-mihi-b", "widefield", "nlb", "nwb")
DEFAULT_DATA = Path("../shared/data")


def cmd_convert(args) -> None:
    """Turn a public recording into session files."""
    from .data import loaders, save_session

    kind, source = args.kind, Path(args.source) if args.source else None
    if kind not in CONVERTERS:
        raise UsageError(f"unknown recording kind {kind!r}; choose one of {', '.join(CONVERTERS)}")
    if kind.startswith("dad-"):
        sessions = [loaders.load_dad(source or DEFAULT_DATA, kind.removeprefix("dad-"))]
    elif kind == "widefield":
        path = source or DEFAULT_DATA / "widefield_higley_animal1.mat"
        sessions = [loaders.load_widefield(path, window=args.window)]
    elif kind == "nlb":
        sessions = list(
            loaders.load_nlb_fixture(source or DEFAULT_DATA / "nlb_mc_maze_small_20_fixture.npz")
        )
    else:
        if source is None or args.bin_size is None:
            raise UsageError("convert nwb needs the .nwb file and --bin-size SECONDS")
        sessions = [loaders.load_nwb(source, args.bin_size)]
    out = Path(args.out)
    if len(sessions) == 1:
        path = save_session(out if out.suffix == ".npz" else out.with_suffix(".npz"), sessions[0])
        print(f"wrote {path}")
    else:
        from .inference.runs import staged_folder

        with staged_folder(out) as tmp:
            for session in sessions:
                save_session(tmp / f"{session.name}.npz", session)
        print(f"wrote {', '.join(f'{out}/{x.name}.npz' for x in sessions)}")


def _fit_options(args) -> dict:
    from .models.priors import parse_assignments

    return dict(
        states=args.states,
        latent_dim=args.latent_dim,
        embedding_dim=getattr(args, "embedding_dim", None),
        rank=getattr(args, "rank", None),
        likelihood=args.likelihood,
        guide=args.guide,
        priors=parse_assignments(args.prior),
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
    )


def fit_run(model: str, data, out, options: dict, *, resume=False, progress=True) -> dict:
    """Fit ``model`` to the sessions in ``data`` and write the run folder ``out``.

    Returns the training metrics. Bad input raises before anything is written.
    """
    from .data import load_sessions
    from .families import MODEL_NAMES, family_of
    from .inference import runs

    if model not in MODEL_NAMES:  # before reading data, so a typo is named first
        family_of(model)
    sessions = load_sessions(data, options.get("likelihood"))
    family = family_of(model)
    out = Path(out)
    if resume:
        config = runs.read_config(out)
        if config.get("model") != model:
            raise UsageError(f"{out}: the run is a {config.get('model')!r} fit, not {model!r}")
        if options.get("steps"):  # --steps with --resume raises the run's step budget
            config["steps"] = options["steps"]
        metrics = _fit_into(family, config, sessions, out, resume=True, progress=progress)
    else:
        config = family.make_config(model, sessions, options=options)
        with runs.staged_folder(out) as tmp:
            metrics = _fit_into(family, config, sessions, tmp, resume=False, progress=progress)
    if metrics is None:  # Ctrl-C: the folder keeps config, loss.csv and the checkpoint
        raise KeyboardInterrupt
    return metrics


def _fit_into(family, config, sessions, folder: Path, *, resume, progress) -> dict | None:
    """Fit into ``folder``; None when Ctrl-C stopped the fit (after its checkpoint)."""
    import warnings

    from .inference import runs
    from .inference.diagnostics import FitWarning, convergence_warning, elbo_convergence

    runs.write_json(folder / runs.CONFIG, config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        params, result = family.fit(
            config, sessions, out_dir=folder, progress=progress, resume=resume
        )
    if result.interrupted:
        return None
    lines = [str(w.message) for w in caught if issubclass(w.category, FitWarning)]
    for w in caught:  # other warnings as they would have been shown
        if not issubclass(w.category, FitWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    convergence = elbo_convergence(result.losses)
    said = any("did not converge" in line for line in lines)
    if not convergence["converged"] and not said:  # families that do not warn themselves
        lines.append(convergence_warning(result.losses, f"{config.get('model', 'the')} fit"))
    for line in lines:  # one line each: reasons not to compare this fit as it is
        print(f"warning: {line}", file=sys.stderr)
    runs.save_params(folder / runs.PARAMS, params)
    metrics = evaluate_run(
        family, config, params, sessions, horizons=(), num_samples=32, seed=0, warn=False
    )
    from .inference import arviz_export, workflow

    # posterior.nc holds 50 draws of y: at most POSTERIOR_VALUES values of y per draw.
    exported = family.problem(config, params, sessions, max_values=POSTERIOR_VALUES)
    tree = workflow.posterior_tree(exported, num_samples=50, losses=result.losses)
    tree.attrs["trials_exported"] = int(np.prod(np.shape(exported.batch["y"])[:-2]))
    arviz_export.save(tree, folder / runs.POSTERIOR)
    metrics["fit"] = {
        "steps": int(result.steps_run),
        "final_loss": float(result.losses[-20:].mean()),
        "stopped_early": bool(result.stopped_early),
        "seconds": round(float(result.seconds), 2),
        "converged": bool(convergence["converged"]),
        "convergence": convergence,
    }
    if getattr(result, "state_occupancy", None) is not None:
        metrics["fit"]["state_occupancy"] = result.state_occupancy
    runs.write_json(folder / runs.METRICS, metrics)
    if hasattr(family, "embeddings"):
        runs.write_json(folder / "embeddings.json", family.embeddings(config, params, sessions))
    return metrics


def evaluate_run(
    family, config, params, sessions, *, horizons, num_samples, seed, warn=True
) -> dict:
    """The family's metrics plus the held-out log-likelihood per bin and its Pareto k
    (printing a warning when k > 0.7, if ``warn``)."""
    import warnings

    from .inference import workflow

    metrics = family.evaluate(
        config, params, sessions, horizons=horizons, num_samples=num_samples, seed=seed
    )
    problem = family.problem(config, params, sessions)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        heldout, _ = workflow.heldout(problem, num_samples=max(num_samples, 32), seed=seed)
    metrics.update(heldout)
    if family.supports_smc(config):
        metrics.update(family.heldout_smc(config, params, sessions, seed=seed)[0])
    for w in caught if warn else ():
        if issubclass(w.category, UserWarning) and "Pareto k" in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)
    return metrics


def cmd_fit(args) -> None:
    options = _fit_options(args)
    metrics = fit_run(
        args.model, args.data, args.out, options, resume=args.resume, progress=not args.quiet
    )
    fit = metrics["fit"]
    print(
        f"fitted {args.model} in {fit['seconds']:.1f} s ({fit['steps']} steps); run in {args.out}/"
    )


def load_run(run_dir):
    """(family, config, params) of a run folder."""
    from .families import family_of
    from .inference import runs

    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    family = family_of(config.get("model", "?"))
    if not (run_dir / runs.PARAMS).exists():
        raise UsageError(f"{run_dir}: has no {runs.PARAMS} (an interrupted fit? resume it)")
    params = runs.load_params(run_dir / runs.PARAMS, family.param_template(config))
    return family, config, params


def cmd_evaluate(args) -> None:
    from .data import load_sessions
    from .inference import runs

    family, config, params = load_run(args.run)
    sessions = load_sessions(args.data, config.get("likelihood"))
    horizons = tuple(args.horizon) if args.horizon else (1, 5, 10)
    metrics = evaluate_run(
        family,
        config,
        params,
        sessions,
        horizons=horizons,
        num_samples=args.samples,
        seed=args.seed,
    )
    text = json.dumps(metrics, indent=2, default=float)
    if args.json:
        runs.write_json(args.json, metrics)
    print(text)


def cmd_report(args) -> None:
    from .data import load_sessions
    from .inference.runs import staged_folder

    family, config, params = load_run(args.run)
    sessions = load_sessions(args.data, config.get("likelihood"))
    with staged_folder(args.out) as tmp:
        figures = family.report(config, params, sessions, tmp)
        figures.append(_ppc(family, config, params, sessions, tmp))
    for f in figures:
        print(Path(args.out) / Path(f).name)


def _ppc(family, config, params, sessions, folder: Path) -> Path:
    """Posterior predictive checks of a run on ``sessions`` (``ppc.png``)."""
    from .data import concat_trials
    from .inference import workflow
    from .inference.diagnostics import ppc_figure

    problem = family.problem(config, params, sessions, max_values=POSTERIOR_VALUES)
    tree = workflow.posterior_tree(problem, num_samples=50)
    y, mask = np.asarray(problem.batch["y"]), np.asarray(problem.batch["mask"])
    predictive = tree["posterior_predictive"]["y"].values[0]
    session = concat_trials(sessions) if len({s.num_neurons for s in sessions}) == 1 else None
    states = session.states if session is not None and y.ndim == 3 else None
    predicted = None
    if hasattr(family, "most_likely_states") and config.get("spec", {}).get("num_states", 1) > 1:
        predicted = family.most_likely_states(config, params, sessions)
    if states is not None:  # the export may keep only the first trials
        states = states[: y.shape[0]]
    if predicted is not None:
        predicted = predicted[: y.shape[0]]
    if y.ndim != 3:  # recordings x trials: pool the recordings' trials
        y, mask = y.reshape(-1, *y.shape[-2:]), mask.reshape(-1, *mask.shape[-2:])
        predictive = predictive.reshape(len(predictive), -1, *predictive.shape[-2:])
    return ppc_figure(
        y,
        mask,
        predictive,
        folder / "ppc.png",
        states=states,
        predicted_states=predicted,
        likelihood=config.get("likelihood", "gaussian"),
    )


def cmd_adapt(args) -> None:
    from .data import load_session
    from .inference import runs

    family, config, params = load_run(args.run)
    if not hasattr(family, "adapt"):
        raise UsageError(f"adapt applies to the meta-dynamical family, not {config['model']!r}")
    session = load_session(args.data, config.get("likelihood"))
    if args.trials < 1 or args.trials > session.num_trials:
        raise UsageError(f"--trials {args.trials}: {args.data} has {session.num_trials} trials")
    with runs.staged_folder(args.out) as tmp:
        new_config, new_params, result = family.adapt(
            config,
            params,
            session,
            trials=args.trials,
            steps=args.steps,
            seed=args.seed,
            out_dir=tmp,
            refine_embedding=args.refine_embedding,
        )
        runs.write_json(tmp / runs.CONFIG, new_config)
        runs.save_params(tmp / runs.PARAMS, new_params)
        runs.write_json(
            tmp / "embeddings.json", family.embeddings(new_config, new_params, [session])
        )
        runs.write_json(
            tmp / runs.METRICS,
            {"adapt": {"seconds": round(float(result.seconds), 2), "trials": args.trials}},
        )
    print(
        f"adapted to {session.name} on {args.trials} trials in {result.seconds:.1f} s; "
        f"run in {args.out}/"
    )


def cmd_compare(args) -> None:
    """Held-out elpd of each run on the same data, ranked by arviz_stats.compare."""
    from .data import load_sessions
    from .inference import comparison, runs, workflow

    loaded = {}  # name -> (family, config, params, sessions)
    for run in args.runs:
        family, config, params = load_run(run)
        sessions = load_sessions(args.data, config.get("likelihood"))
        name = Path(run).name
        if name in loaded:
            raise UsageError(f"two runs are named {name!r}; give the run folders distinct names")
        loaded[name] = (family, config, params, sessions)
    if len(loaded) < 2:
        raise UsageError("compare needs at least two runs")
    if args.estimator == "smc":
        elpds = {}
        for name, (family, config, params, sessions) in loaded.items():
            if not family.supports_smc(config):
                raise UsageError(
                    f"{name}: --estimator smc needs a meta run or a switching run with a dkf "
                    "or meanfield guide"
                )
            _, log_marginals = family.heldout_smc(
                config, params, sessions, num_particles=args.particles, seed=args.seed
            )
            elpds[name] = comparison.smc_elpd(log_marginals, args.particles)
        table = comparison.compare(elpds)
    else:
        problems = {n: f.problem(c, p, s) for n, (f, c, p, s) in loaded.items()}
        table = workflow.compare_runs(problems, num_samples=args.samples, seed=args.seed)
    columns = ["rank", "elpd", "se", "elpd_diff", "dse", "weight", "khat_max"]
    columns.append("khat_share_above_0.7")
    print(table[columns].to_string(float_format=lambda x: f"{x:.2f}"))
    if (table["khat_max"] > 0.7).any():
        print(
            "warning: Pareto k > 0.7 for some runs: their elpd estimates are unreliable",
            file=sys.stderr,
        )
    if args.json:
        runs.write_json(args.json, table[columns].to_dict(orient="index"))


def cmd_demo(args) -> None:
    """Simulate Lorenz, fit srnn, evaluate on held-out trials, write figures, print metrics."""
    from .data import load_session

    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    sim = argparse.Namespace(
        name="lorenz",
        out=str(data / "train.npz"),
        seed=args.seed,
        likelihood="gaussian",
        trials=None,
        timesteps=None,
        neurons=None,
        recordings=None,
        test_out=str(data / "test.npz"),
        test_trials=4,
    )
    cmd_simulate(sim)
    options = dict(
        FIT_DEFAULTS,
        states=2,
        latent_dim=3,
        likelihood="gaussian",
        priors={},
        steps=None,
        seed=args.seed,
        batch_size=None,
    )
    fit_run("srnn", [data / "train.npz"], out / "run", options, progress=not args.quiet)
    family, config, params = load_run(out / "run")
    test = [load_session(data / "test.npz")]
    metrics = evaluate_run(
        family, config, params, test, horizons=(1, 5, 10), num_samples=32, seed=0
    )
    from .inference import runs

    runs.write_json(out / "test_metrics.json", metrics)
    figures = family.report(config, params, test, out / "figures")
    print(json.dumps(metrics, indent=2, default=float))
    print(f"figures: {', '.join(str(f) for f in figures)}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s; everything is in {out}/")


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="neurodyn", description="Latent neural population dynamics with NumPyro.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("simulate", help="write simulated session files")
    s.add_argument("name", help="lorenz, nascar, limit-cycle, duffing or hopf")
    s.add_argument("--out", required=True, help="a .npz file, or a folder for multi-recording sims")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--likelihood", choices=("gaussian", "poisson"), default="gaussian")
    s.add_argument("--trials", type=_positive, help="trials per recording")
    s.add_argument("--timesteps", type=_positive, help="bins per trial")
    s.add_argument("--neurons", type=_positive, help="neurons (single-recording simulators)")
    s.add_argument("--recordings", type=_positive, help="recordings (multi-recording simulators)")
    s.add_argument("--test-out", help="also write held-out trials to this .npz (same neurons)")
    s.add_argument("--test-trials", type=_positive, default=4, help="trials for --test-out")
    s.set_defaults(handler=cmd_simulate)

    v = sub.add_parser("convert", help="turn a public recording into session files")
    v.add_argument("kind", help=", ".join(CONVERTERS))
    v.add_argument("source", nargs="?", help="file or folder (default: ../shared/data)")
    v.add_argument("--out", required=True, help="a .npz file (a folder for nlb)")
    v.add_argument("--window", type=_positive, default=100, help="frames per widefield window")
    v.add_argument("--bin-size", type=float, help="seconds per bin (nwb)")
    v.set_defaults(handler=cmd_convert)

    f = sub.add_parser("fit", help="fit a model to session files; writes a run folder")
    f.add_argument(
        "model",
        help="srnn, slds, rslds, hmm, lds, rnn, meta-dssm, single-session, "
        "shared-dynamics, embedding-input, linear-adapter",
    )
    f.add_argument("data", nargs="+", help="session .npz files or folders of them")
    f.add_argument("--out", required=True, help="run folder to write")
    f.add_argument("--states", type=_positive, help="discrete states K (switching family)")
    f.add_argument("--latent-dim", type=_positive, help="continuous latent dimension D")
    f.add_argument("--embedding-dim", type=_positive, help="embedding dimension (meta family)")
    f.add_argument("--rank", type=_positive, help="rank of the hypernetwork change (meta family)")
    f.add_argument("--steps", type=_positive, help="maximum SVI steps")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--likelihood", choices=("gaussian", "poisson"))
    f.add_argument(
        "--guide", help="guide name (see the model's family) or a user guide as module:function"
    )
    f.add_argument(
        "--prior",
        action="append",
        metavar="SITE=SPEC",
        help="e.g. embedding=StudentT(3,0,1), transition_stickiness=100 (a number fixes a "
        "hyperparameter), dynamics_weights=Normal(0,1) (repeatable)",
    )
    f.add_argument("--batch-size", type=_positive, help="trials per SVI step")
    f.add_argument(
        "--resume",
        action="store_true",
        help="continue the fit in --out (after Ctrl-C or a crash; with --steps, to a new budget)",
    )
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(handler=cmd_fit)

    a = sub.add_parser("adapt", help="few-shot adaptation of a meta-family run to a new recording")
    a.add_argument("run")
    a.add_argument("data")
    a.add_argument("--trials", type=_positive, required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--steps", type=_positive)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument(
        "--refine-embedding",
        action="store_true",
        help="also fit a shift of the encoder's embedding for this recording (amortized guide)",
    )
    a.set_defaults(handler=cmd_adapt)

    e = sub.add_parser("evaluate", help="metrics of a run on session files")
    e.add_argument("run")
    e.add_argument("data", nargs="+")
    e.add_argument(
        "--horizon", type=_positive, action="append", help="forecast horizon (repeatable)"
    )
    e.add_argument("--samples", type=_positive, default=64, help="Monte Carlo samples")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", help="also write the metrics to this file")
    e.set_defaults(handler=cmd_evaluate)

    c = sub.add_parser("compare", help="compare runs by held-out elpd")
    c.add_argument("runs", nargs="+")
    c.add_argument("--data", required=True, nargs="+")
    c.add_argument("--samples", type=_positive, default=200, help="importance samples per trial")
    c.add_argument(
        "--estimator",
        choices=("importance", "smc"),
        default="importance",
        help="held-out log p(y) per trial by PSIS importance sampling (any run, with Pareto k) "
        "or by sequential Monte Carlo (switching runs with a dkf or meanfield guide; far less "
        "variance on long trials)",
    )
    c.add_argument("--particles", type=_positive, default=256, help="SMC particles per trial")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", help="also write the table to this file")
    c.set_defaults(handler=cmd_compare)

    r = sub.add_parser("report", help="PNG figures of a run on session files")
    r.add_argument("run")
    r.add_argument("data", nargs="+")
    r.add_argument("--out", required=True)
    r.set_defaults(handler=cmd_report)

    d = sub.add_parser("demo", help="simulate Lorenz, fit srnn, evaluate, write figures")
    d.add_argument("--out", default="demo_run")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(handler=cmd_demo)
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print(
            "interrupted; a checkpoint was kept where possible (neurodyn fit ... --resume)",
            file=sys.stderr,
        )
        return 130
    except _user_errors() as e:
        if os.environ.get("NEURODYN_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
