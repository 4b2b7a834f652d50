"""The ``neurodyn`` command: simulate, fit, adapt, evaluate, compare, report, check, demo.

Error contract (DESIGN.md): bad input ends with one line naming the problem, exit status 2, no
traceback, and nothing half-written in the output folder (set NEURODYN_DEBUG=1 to see the
traceback instead). Heavy imports (JAX) happen inside the
commands so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
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
    import inspect

    from .data import save_session, split_trials
    from .data.simulators import get_simulator
    from .inference.run_folder import check_out

    try:
        simulate = get_simulator(args.name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    accepted = inspect.signature(simulate).parameters
    multi = "num_recordings" in accepted
    for option, value, applies in (
        ("--recordings", args.recordings, multi),
        ("--test-out", args.test_out, not multi),
    ):
        if value is not None and not applies:
            kind = "multi" if not multi else "single"
            raise UsageError(
                f"{option} does not apply to simulate {args.name} (it applies to "
                f"{kind}-recording simulators)"
            )
    overwrite = getattr(args, "overwrite", False)
    out = Path(args.out)
    if multi:
        if out.suffix == ".npz":
            raise UsageError(
                f"simulate {args.name} writes several recordings: --out must be a folder"
            )
        check_out(out, "recordings", overwrite=overwrite)
    else:
        if out.suffix != ".npz":
            out = out.with_suffix(".npz")
        check_out(out, "npz", overwrite=overwrite)
        if args.test_out:
            check_out(args.test_out, "npz", option="--test-out", overwrite=overwrite)
            if Path(args.test_out).resolve() == out.resolve():
                raise UsageError("--test-out must differ from --out")
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
    if isinstance(result, list):  # one file per recording, in a folder
        from .inference.runs import staged_folder

        with staged_folder(out) as tmp:
            for session in result:
                save_session(tmp / f"{session.name}.npz", session)
        print(f"wrote {len(result)} recordings to {out}/")
        return
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
    from .inference.run_folder import check_out

    kind, source = args.kind, Path(args.source) if args.source else None
    if kind not in CONVERTERS:
        raise UsageError(f"unknown recording kind {kind!r}; choose one of {', '.join(CONVERTERS)}")
    out, overwrite = Path(args.out), getattr(args, "overwrite", False)
    if kind == "nlb":  # two recordings: a folder
        if out.suffix == ".npz":
            raise UsageError("convert nlb writes two recordings: --out must be a folder")
        check_out(out, "recordings", overwrite=overwrite)
    else:
        out = out if out.suffix == ".npz" else out.with_suffix(".npz")
        check_out(out, "npz", overwrite=overwrite)
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
    if len(sessions) == 1:
        path = save_session(out, sessions[0])
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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a message that says what was kept and how to continue."""


def fit_run(
    model: str, data, out, options: dict, *, resume=False, overwrite=False, progress=True
) -> dict:
    """Fit ``model`` to the sessions in ``data`` and write the run folder ``out``.

    Returns the training metrics. Bad input raises before anything is written. The folder is
    locked while it is written and holds ``.incomplete`` until the fit and its evaluation are
    done; a killed fit is continued by ``resume`` (from its checkpoint, or from step 0 when it
    has none yet). ``overwrite`` replaces an existing run's files (other files are kept).
    """
    from .data import load_sessions
    from .families import MODEL_NAMES, family_of
    from .inference import run_folder, runs, svi

    if model not in MODEL_NAMES:  # before reading data, so a typo is named first
        family_of(model)
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    out = run_folder.check_out(out, "run", resume=resume, overwrite=overwrite)
    sessions = load_sessions(data, options.get("likelihood"))
    family = family_of(model)
    check = run_folder.fingerprint(sessions, options)
    if resume:
        config = runs.read_config(out)
        if config.get("model") != model:
            raise UsageError(f"{out}: the run is a {config.get('model')!r} fit, not {model!r}")
        _check_same_problem(family, config, sessions, options, check, out)
        if options.get("steps"):  # --steps with --resume raises the run's step budget
            config["steps"] = options["steps"]
    else:
        config = family.make_config(model, sessions, options=options)
        config[run_folder.FINGERPRINT] = check
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    again = f"neurodyn fit {model} {' '.join(map(str, data))} --out {out} --resume"
    phase = {"name": "warm_start"}
    wrote = False  # nothing of this fit is in the folder yet: an error here removes nothing
    try:
        with run_folder.lock(out):
            # again, now that no one else writes: another fit may have finished here meanwhile
            run_folder.check_out(out, "run", resume=resume, overwrite=overwrite)
            from_checkpoint = resume and (out / svi.CHECKPOINT).exists()
            if resume and not from_checkpoint and (out / svi.OLD_CHECKPOINT).exists():
                svi._load_checkpoint(out, None)  # refuses the pickle in one line
            wrote = True
            if overwrite:
                run_folder.remove_run_files(out)
            (out / run_folder.INCOMPLETE).touch()
            runs.write_json(out / runs.CONFIG, config)  # a killed fit is a run to resume
            if resume and not from_checkpoint:
                print(
                    f"note: {out} has no checkpoint yet: the fit starts at step 0", file=sys.stderr
                )
            run_folder.pause_for_tests("warm_start")
            metrics = _fit_into(
                family,
                config,
                sessions,
                out,
                resume=from_checkpoint,
                progress=progress,
                phase=phase,
            )
            if metrics is None:  # Ctrl-C in the SVI loop, after its checkpoint
                raise KeyboardInterrupt
            (out / run_folder.INCOMPLETE).unlink()
    except KeyboardInterrupt:
        if not wrote:
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only when empty
            raise Interrupted(f"interrupted before anything was written into {out}") from None
        if phase["name"] == "warm_start" and not resume and (out / svi.CHECKPOINT).exists():
            phase["name"] = "svi"  # stopped just after the SVI loop, its checkpoint written
        if phase["name"] == "warm_start":
            if resume:
                raise Interrupted(
                    f"interrupted before the fit resumed: nothing in {out} was lost; resume with "
                    f"{again}"
                ) from None
            run_folder.remove_run_files(out)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
            where = (
                f"{out} was removed" if created else f"the files written into {out} were removed"
            )
            raise Interrupted(
                f"interrupted during the warm start, before any SVI step: nothing to resume; "
                f"{where}"
            ) from None
        if phase["name"] == "svi":
            raise Interrupted(
                f"interrupted during SVI: the checkpoint is kept in {out}; continue with {again}"
            ) from None
        raise Interrupted(
            f"interrupted during the post-fit evaluation: params.npz and the checkpoint are kept "
            f"in {out}; {again} finishes the evaluation without refitting"
        ) from None
    except BaseException:
        if created and not wrote:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty
        if wrote and not resume and phase["name"] != "evaluation":  # nothing worth keeping yet
            run_folder.remove_run_files(out)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
        raise
    return metrics


def _check_same_problem(family, config, sessions, options, check, out: Path) -> None:
    """Refuse ``--resume`` with other data or other model options than the run's (the step
    budget may change); the message names what differs."""
    from .inference import run_folder

    stored = config.get(run_folder.FINGERPRINT)
    if not isinstance(stored, dict):
        return  # a run of an older version: nothing to compare with
    if stored.get("data_sha256") != check["data_sha256"]:
        raise UsageError(
            f"{out}: --resume with other data than the run was fitted to (their sha256 of y and "
            "mask differ); fit into a new --out"
        )
    before = dict(stored.get("options") or {})
    for key, value in check["options"].items():
        if before.get(key) == value:
            continue
        trial = family.make_config(config["model"], sessions, options={**before, key: value})
        base = family.make_config(config["model"], sessions, options=before)
        for c in (trial, base):
            c.pop("steps", None)
        if json.dumps(trial, sort_keys=True, default=str) != json.dumps(
            base, sort_keys=True, default=str
        ):
            option = f"--{key.replace('_', '-')}"
            was = before.get(key, "the default")
            raise UsageError(
                f"{out}: --resume with {option} {value} but the run was fitted with {was}; "
                "fit into a new --out"
            )


def _fit_into(
    family, config, sessions, folder: Path, *, resume, progress, phase=None
) -> dict | None:
    """Fit into ``folder``; None when Ctrl-C stopped the fit (after its checkpoint).
    ``phase["name"]`` follows the fit: warm_start, svi (SVI ran), evaluation (params saved)."""
    import warnings

    from .inference import runs
    from .inference.diagnostics import FitWarning, convergence_warning, elbo_convergence
    from .inference.run_folder import pause_for_tests

    phase = {} if phase is None else phase
    runs.write_json(folder / runs.CONFIG, config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        params, result = family.fit(
            config, sessions, out_dir=folder, progress=progress, resume=resume
        )
    phase["name"] = "svi"
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
    phase["name"] = "evaluation"
    pause_for_tests("evaluation")
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
    family,
    config,
    params,
    sessions,
    *,
    horizons,
    num_samples,
    seed,
    warn=True,
    estimator="auto",
    particles=None,
    replicates=None,
) -> dict:
    """The family's metrics plus the held-out log-likelihood per bin, its Monte Carlo error and
    its estimator's diagnostics (:func:`neurodyn.inference.workflow.heldout_score`, the same
    numbers ``compare`` ranks), printing one warning line per reason to distrust them if
    ``warn``."""
    from .inference import workflow

    metrics = family.evaluate(
        config, params, sessions, horizons=horizons, num_samples=num_samples, seed=seed
    )
    heldout, _ = workflow.heldout_score(
        family,
        config,
        params,
        sessions,
        estimator=estimator,
        seed=seed,
        num_particles=particles,
        num_replicates=replicates,
    )
    metrics.update(heldout)
    _note_undefined_r2(metrics)
    for line in workflow.heldout_warnings(heldout) if warn else ():
        print(f"warning: {line}", file=sys.stderr)
    return metrics


def _note_undefined_r2(metrics: dict) -> None:
    """Put the reason beside each r^2 that is NaN (``<key>_note``), for the strict JSON."""
    from .inference.metrics import R2_UNDEFINED

    def undefined(value):
        return isinstance(value, float) and not np.isfinite(value)

    for key, value in list(metrics.items()):
        if key.endswith("r2") and undefined(value):
            metrics[f"{key}_note"] = R2_UNDEFINED
    forecast = metrics.get("forecast_r2")
    for horizon, value in list(forecast.items()) if isinstance(forecast, dict) else ():
        if undefined(value):
            forecast[f"{horizon}_note"] = R2_UNDEFINED


def cmd_fit(args) -> None:
    options = _fit_options(args)
    metrics = fit_run(
        args.model,
        args.data,
        args.out,
        options,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    fit = metrics["fit"]
    print(
        f"fitted {args.model} in {fit['seconds']:.1f} s ({fit['steps']} steps); run in {args.out}/"
    )


def load_run(run_dir):
    """(family, config, params) of a run folder."""
    from .families import family_of
    from .inference import runs
    from .inference.run_folder import INCOMPLETE

    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    try:
        family = family_of(config["model"])
    except ValueError as e:
        raise runs.RunError(f"{run_dir / runs.CONFIG}: {e}") from None
    if not (run_dir / runs.PARAMS).exists() or (run_dir / INCOMPLETE).exists():
        raise UsageError(
            f"{run_dir}: the fit did not finish (an interrupted fit? continue it with "
            f"neurodyn fit ... --out {run_dir} --resume)"
        )
    try:
        template = family.param_template(config)
    except KeyError as e:  # a config.json edited by hand or of another version
        raise runs.RunError(f"{run_dir / runs.CONFIG}: missing key {e}") from None
    params = runs.load_params(run_dir / runs.PARAMS, template)
    return family, config, params


def _scorable_horizons(horizons, sessions) -> tuple[tuple, str | None]:
    """The forecast horizons shorter than every session's trials, and a note naming the others
    (a forecast needs at least one bin to start from)."""
    T = min(s.num_timesteps for s in sessions)
    kept = tuple(k for k in horizons if k < T)
    dropped = sorted(set(horizons) - set(kept))
    if not dropped:
        return kept, None
    return kept, (
        f"horizon(s) {', '.join(map(str, dropped))} not scored: the trials have {T} bins, and a "
        "forecast must start from at least one observed bin"
    )


def cmd_evaluate(args) -> None:
    from .data import load_sessions
    from .inference import runs

    family, config, params = load_run(args.run)
    sessions = load_sessions(args.data, config.get("likelihood"))
    horizons = tuple(args.horizon) if args.horizon else (1, 5, 10)
    horizons, horizon_note = _scorable_horizons(horizons, sessions)
    metrics = evaluate_run(
        family,
        config,
        params,
        sessions,
        horizons=horizons,
        num_samples=args.samples,
        seed=args.seed,
        estimator=args.estimator,
        particles=args.particles,
        replicates=args.replicates,
    )
    if horizon_note:
        metrics["forecast_r2_note"] = horizon_note
    text = runs.json_text(metrics)
    if args.json:
        runs.write_json(args.json, metrics)
    print(text)


def cmd_report(args) -> None:
    from .data import load_sessions
    from .inference.run_folder import check_out
    from .inference.runs import staged_folder

    check_out(args.out, "report")
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
    from .inference.run_folder import check_out, remove_run_files

    overwrite = getattr(args, "overwrite", False)
    check_out(args.out, "run", overwrite=overwrite)
    if Path(args.out).resolve() == Path(args.run).resolve():
        raise UsageError("--out must differ from the run being adapted")
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
        if overwrite:  # the earlier run's files go; the new ones are moved in next
            remove_run_files(args.out)
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
    scores = {}
    for name, (family, config, params, sessions) in loaded.items():
        try:
            heldout, scores[name] = workflow.heldout_score(
                family,
                config,
                params,
                sessions,
                estimator=args.estimator,
                seed=args.seed,
                num_particles=args.particles,
                num_replicates=args.replicates,
                num_samples=args.samples or workflow.HELDOUT_SAMPLES,
            )
        except ValueError as e:
            raise UsageError(f"{name}: {e}") from None
        for line in workflow.heldout_warnings(heldout):
            print(f"warning: {name}: {line}", file=sys.stderr)
    table = comparison.compare(scores)
    columns = ["rank", "elpd", "se", "elpd_diff", "dse", "weight", "mcse", "estimator"]
    columns += [c for c in ("khat_max", "khat_share_above_0.7", "ess_fraction_min") if c in table]
    print(table[columns].to_string(float_format=lambda x: f"{x:.2f}", na_rep="-"))
    imprecise = comparison.imprecise_differences(table)
    if imprecise:
        print(
            f"warning: the Monte Carlo error of elpd_diff exceeds a quarter of its dse for "
            f"{', '.join(imprecise)}: use more particles or replicates before trusting the order",
            file=sys.stderr,
        )
    if args.json:
        runs.write_json(args.json, table[columns + ["mcse_diff"]].to_dict(orient="index"))


def cmd_check(args) -> None:
    """Simulation-based calibration of a run's guide on trials simulated from the run."""
    from .inference import calibration, runs
    from .inference.diagnostics import rank_histogram_figure
    from .inference.run_folder import check_out

    if args.out:
        check_out(args.out, "report")
    family, config, params = load_run(args.run)
    if not hasattr(family, "check"):
        raise UsageError(f"check applies to the switching family, not {config['model']!r}")
    timesteps = args.timesteps or _fitted_timesteps(Path(args.run)) or 100
    summary = family.check(
        config,
        params,
        num_trials=args.simulations,
        num_timesteps=timesteps,
        num_samples=args.draws,
        every=args.thin,
        seed=args.seed,
    )
    print(calibration.describe(summary))
    if args.json:
        runs.write_json(args.json, calibration.jsonable(summary))
    if args.out:
        with runs.staged_folder(args.out) as tmp:
            figure = rank_histogram_figure(summary, tmp / "rank_histograms.png")
        print(Path(args.out) / figure.name)


def _fitted_timesteps(run: Path) -> int | None:
    """Bins per trial of the data a run was fitted to (its posterior.nc), or None."""
    from .inference import runs

    try:
        import xarray as xr

        with xr.open_datatree(run / runs.POSTERIOR) as tree:
            return int(tree["observed_data"]["y"].shape[-2])
    except Exception:  # no or unreadable posterior.nc: the caller's default
        return None


def cmd_demo(args) -> None:
    """Simulate Lorenz, fit srnn, evaluate on held-out trials, write figures, print metrics."""
    from .data import load_session
    from .inference.run_folder import check_out, is_run

    start = time.perf_counter()
    out = Path(args.out)
    again = is_run(out / "run")  # an earlier demo's folder: its files are replaced
    if not again:
        check_out(out, "report")
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
        overwrite=again,
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
    fit_run(
        "srnn", [data / "train.npz"], out / "run", options, overwrite=again, progress=not args.quiet
    )
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
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--likelihood", choices=("gaussian", "poisson"), default="gaussian")
    s.add_argument("--trials", type=_positive, help="trials per recording")
    s.add_argument("--timesteps", type=_positive, help="bins per trial")
    s.add_argument("--neurons", type=_positive, help="neurons (single-recording simulators)")
    s.add_argument("--recordings", type=_positive, help="recordings (multi-recording simulators)")
    s.add_argument("--test-out", help="also write held-out trials to this .npz (same neurons)")
    s.add_argument("--test-trials", type=_positive, default=4, help="trials for --test-out")
    s.add_argument("--overwrite", action="store_true", help="replace existing session files")
    s.set_defaults(handler=cmd_simulate)

    v = sub.add_parser("convert", help="turn a public recording into session files")
    v.add_argument("kind", help=", ".join(CONVERTERS))
    v.add_argument("source", nargs="?", help="file or folder (default: ../shared/data)")
    v.add_argument("--out", required=True, help="a .npz file (a folder for nlb)")
    v.add_argument("--window", type=_positive, default=100, help="frames per widefield window")
    v.add_argument("--bin-size", type=_positive_float, help="seconds per bin (nwb)")
    v.add_argument("--overwrite", action="store_true", help="replace existing session files")
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
    f.add_argument("--seed", type=_seed, help="random seed (default 0)")
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
    f.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (other files are kept)"
    )
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(handler=cmd_fit)

    a = sub.add_parser("adapt", help="few-shot adaptation of a meta-family run to a new recording")
    a.add_argument("run")
    a.add_argument("data")
    a.add_argument("--trials", type=_positive, required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--steps", type=_positive)
    a.add_argument("--seed", type=_seed, default=0)
    a.add_argument(
        "--refine-embedding",
        action="store_true",
        help="also fit a shift of the encoder's embedding for this recording (amortized guide)",
    )
    a.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    a.set_defaults(handler=cmd_adapt)

    e = sub.add_parser("evaluate", help="metrics of a run on session files")
    e.add_argument("run")
    e.add_argument("data", nargs="+")
    e.add_argument(
        "--horizon", type=_positive, action="append", help="forecast horizon (repeatable)"
    )
    e.add_argument(
        "--samples", type=_positive, default=64, help="Monte Carlo samples of the metrics"
    )
    e.add_argument("--seed", type=_seed, default=0)
    e.add_argument("--json", help="also write the metrics to this file")
    _heldout_arguments(e)
    e.set_defaults(handler=cmd_evaluate)

    c = sub.add_parser("compare", help="compare runs by held-out elpd")
    c.add_argument("runs", nargs="+")
    c.add_argument("--data", required=True, nargs="+")
    c.add_argument(
        "--samples",
        type=_positive,
        help="importance samples per trial, where importance sampling is used (default 200, "
        "as evaluate)",
    )
    c.add_argument("--seed", type=_seed, default=0)
    c.add_argument("--json", help="also write the table to this file")
    _heldout_arguments(c)
    c.set_defaults(handler=cmd_compare)

    r = sub.add_parser("report", help="PNG figures of a run on session files")
    r.add_argument("run")
    r.add_argument("data", nargs="+")
    r.add_argument("--out", required=True)
    r.set_defaults(handler=cmd_report)

    k = sub.add_parser("check", help="simulation-based calibration of a run's guide")
    k.add_argument("run")
    k.add_argument("--simulations", type=_positive, default=100, help="trials to simulate")
    k.add_argument(
        "--timesteps",
        type=_positive,
        help="bins per trial (default: the fitted data's, read from posterior.nc; else 100)",
    )
    k.add_argument("--draws", type=_positive, default=99, help="posterior draws per trial")
    k.add_argument("--thin", type=_positive, help="rank every THIN-th bin (default T // 20)")
    k.add_argument("--seed", type=_seed, default=0)
    k.add_argument("--json", help="also write the numbers to this file")
    k.add_argument("--out", help="folder for rank_histograms.png")
    k.set_defaults(handler=cmd_check)

    d = sub.add_parser("demo", help="simulate Lorenz, fit srnn, evaluate, write figures")
    d.add_argument("--out", default="demo_run")
    d.add_argument("--seed", type=_seed, default=0)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(handler=cmd_demo)
    return p


def _heldout_arguments(parser) -> None:
    """The held-out estimator's options, the same for evaluate and compare."""
    parser.add_argument(
        "--estimator",
        choices=("auto", "smc", "importance"),
        default="auto",
        help="held-out log p(y) per trial: auto (default) uses sequential Monte Carlo where it "
        "applies (switching runs with a latent; meta runs) and otherwise importance sampling "
        "(exact for hmm); the output names the estimator used",
    )
    parser.add_argument(
        "--particles", type=_positive, help="SMC particles per replicate (default 256)"
    )
    parser.add_argument(
        "--replicates",
        type=_positive,
        help="independent SMC runs per trial (default 4), pooled; their spread gives the Monte "
        "Carlo error",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer in [0, 2**32)")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _check_json_outputs(args) -> None:
    """``--json`` of evaluate, compare and check is checked before any work."""
    if getattr(args, "json", None) and args.command in ("evaluate", "compare", "check"):
        from .inference.run_folder import check_out

        check_out(args.json, "json", option="--json")


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        _check_json_outputs(args)
        args.handler(args)
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
