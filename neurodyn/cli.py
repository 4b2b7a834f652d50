"""The ``neurodyn`` command: argument parsing over the Run API (:mod:`neurodyn.api`).

Commands: simulate, convert, fit, adapt, evaluate, infer, compare, sweep, report, check, demo.
Error contract: bad input ends with one line naming the problem, exit status 2, no traceback,
and nothing half-written in the output folder (set NEURODYN_DEBUG=1 to see the traceback
instead). The API (and JAX with it) is imported inside the commands so that ``--help`` stays
instant.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .cli_parser import build_parser
from .errors import Interrupted, UsageError

EXIT_USAGE = 2


def _user_errors():
    """The exception types that mean bad input rather than a bug."""
    from .data import SessionError
    from .inference.runs import RunError
    from .models.priors import PriorError

    return (
        SessionError,
        RunError,
        PriorError,
        UsageError,
        ValueError,
        FileNotFoundError,
        PermissionError,
        IsADirectoryError,
        NotADirectoryError,
    )


# ----------------------------------------------------------------------------- commands


def cmd_simulate(args) -> None:
    from . import api

    print(
        api.simulate(
            args.name,
            args.out,
            seed=args.seed,
            likelihood=args.likelihood,
            trials=args.trials,
            timesteps=args.timesteps,
            neurons=args.neurons,
            recordings=args.recordings,
            test_out=args.test_out,
            test_trials=args.test_trials,
            overwrite=args.overwrite,
        )
    )


def cmd_convert(args) -> None:
    from . import api

    print(
        api.convert(
            args.kind,
            args.source,
            args.out,
            window=args.window,
            bin_size=args.bin_size,
            overwrite=args.overwrite,
        )
    )


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
        heldout_neurons=getattr(args, "heldout_neurons", None),
    )


def _fitted_line(run) -> str:
    fit = run.metrics["fit"]
    compiling = fit.get("compile_seconds")
    compile_note = f"; compilation {compiling:.1f} s" if compiling is not None else ""
    return (
        f"fitted {run.model} in {fit['seconds']:.1f} s ({fit['steps']} steps{compile_note}); "
        f"run in {run.path}/"
    )


def cmd_fit(args) -> None:
    from . import api

    run = api.fit(
        args.model,
        args.data,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        **_fit_options(args),
    )
    print(_fitted_line(run))


def _heldout_options(args) -> dict:
    return dict(estimator=args.estimator, particles=args.particles, replicates=args.replicates)


def cmd_evaluate(args) -> None:
    from . import api
    from .inference import runs

    run = api.load(args.run)
    metrics = run.evaluate(
        args.data,
        horizons=tuple(args.horizon or api.run.HORIZONS),
        num_samples=args.samples,
        seed=args.seed,
        heldout_neurons=args.heldout_neurons,
        **_heldout_options(args),
    )
    if args.json:
        runs.write_json(args.json, metrics)
    print(runs.json_text(metrics))


def cmd_infer(args) -> None:
    from . import api

    run = api.load(args.run)
    tree = run.infer(
        args.data, num_samples=args.samples, seed=args.seed, out=args.out, overwrite=args.overwrite
    )
    groups = ", ".join(
        f"{node.name} ({', '.join(node.data_vars)})"
        for node in tree.subtree
        if node.name and node.data_vars
    )
    print(f"wrote {args.out}: {groups}")


def cmd_sweep(args) -> None:
    from . import api
    from .api.compare import table_text

    result = api.sweep(
        args.model,
        args.data,
        test=args.test,
        out=args.out,
        states=args.states,
        latent_dim=args.latent_dim,
        rank=args.rank,
        embedding_dim=args.embedding_dim,
        steps=args.steps,
        likelihood=args.likelihood,
        seed=args.seed,
        progress=not args.quiet,
        **_heldout_options(args),
    )
    print(table_text(result.table))
    print(f"table in {args.out}/compare.json, figures {args.out}/elpd.png and compare.png")


def cmd_report(args) -> None:
    from . import api

    run = api.load(args.run)
    for figure in run.report(args.data, out=args.out):
        print(figure)


def cmd_adapt(args) -> None:
    from . import api

    run = api.load(args.run)
    adapted = run.adapt(
        args.data,
        args.trials,
        args.out,
        steps=args.steps,
        seed=args.seed,
        refine_embedding=args.refine_embedding,
        overwrite=args.overwrite,
    )
    seconds = adapted.metrics["adapt"]["seconds"]
    print(f"adapted to {args.data} on {args.trials} trials in {seconds:.1f} s; run in {args.out}/")


def cmd_compare(args) -> None:
    """Held-out elpd of each run on the same data, ranked by arviz_stats.compare."""
    from . import api
    from .api.compare import table_records, table_text
    from .inference import runs
    from .inference.arviz_figures import plot_compare

    table = api.compare(
        args.runs, args.data, seed=args.seed, samples=args.samples, **_heldout_options(args)
    )
    print(table_text(table))
    if args.json:
        runs.write_json(args.json, table_records(table))
    if args.plot:
        print(plot_compare(table, args.plot))


def cmd_check(args) -> None:
    """Simulation-based calibration of a run's guide on trials simulated from the run."""
    from . import api
    from .inference import calibration, runs

    run = api.load(args.run)
    summary = run.check(
        simulations=args.simulations,
        timesteps=args.timesteps,
        draws=args.draws,
        thin=args.thin,
        seed=args.seed,
        out=args.out,
    )
    print(calibration.describe(summary))
    if args.json:
        runs.write_json(args.json, calibration.jsonable(summary))
    if args.out:
        print(Path(args.out) / "rank_histograms.png")


def cmd_demo(args) -> None:
    """Simulate Lorenz, fit srnn, evaluate on held-out trials, write figures, print metrics."""
    from . import api
    from .inference import runs
    from .inference.run_folder import check_out, is_run

    start = time.perf_counter()
    out = Path(args.out)
    again = is_run(out / "run")  # an earlier demo's folder: its files are replaced
    if not again:
        check_out(out, "report")
    out.mkdir(parents=True, exist_ok=True)
    train, test = out / "data" / "train.npz", out / "data" / "test.npz"
    print(api.simulate("lorenz", train, seed=args.seed, test_out=test, overwrite=again))
    run = api.fit(
        "srnn",
        [train],
        out=out / "run",
        overwrite=again,
        progress=not args.quiet,
        states=2,
        latent_dim=3,
        likelihood="gaussian",
        seed=args.seed,
    )
    print(_fitted_line(run))
    metrics = run.evaluate(test, num_samples=32)
    runs.write_json(out / "test_metrics.json", metrics)
    figures = run.family.report(run.config, run.params, run.sessions(test), out / "figures")
    print(runs.json_text(metrics))
    print(f"figures: {', '.join(str(f) for f in figures)}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s; everything is in {out}/")


def _check_json_outputs(args) -> None:
    """``--json`` of evaluate, compare and check (and compare's ``--plot``) is checked before
    any work."""
    from .inference.run_folder import check_out

    if getattr(args, "json", None) and args.command in ("evaluate", "compare", "check"):
        check_out(args.json, "json", option="--json")
    if getattr(args, "plot", None) and args.command == "compare":
        check_out(args.plot, "png", option="--plot")


COMMANDS = {
    "simulate": cmd_simulate,
    "convert": cmd_convert,
    "fit": cmd_fit,
    "adapt": cmd_adapt,
    "evaluate": cmd_evaluate,
    "infer": cmd_infer,
    "compare": cmd_compare,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "check": cmd_check,
    "demo": cmd_demo,
}


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        _check_json_outputs(args)
        COMMANDS[args.command](args)
    except KeyboardInterrupt as e:
        print(str(e) if isinstance(e, Interrupted) else "interrupted", file=sys.stderr)
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
