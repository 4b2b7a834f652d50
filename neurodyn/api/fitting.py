"""``neurodyn.fit``: fit a model and write its run folder — the one writer of run folders.

A run folder holds ``config.json``, ``params.npz``, ``loss.csv``, ``metrics.json``,
``posterior.nc`` and the SVI checkpoint. It is locked while written and holds ``.incomplete``
until the fit and its evaluation are done, so a killed fit is found and continued by
``resume=True``; nothing the user had in the folder is ever deleted.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import Interrupted, UsageError
from ..families import MODEL_NAMES, family_of
from ..families.protocol import EMBEDDINGS, STATES
from ..inference import arviz_export, run_folder, runs, svi, workflow
from ..inference.diagnostics import FitWarning, convergence_warning, elbo_convergence
from ..models.priors import parse_assignments
from .cosmoothing import heldout_indices
from .run import Run, evaluate_run, load
from .sessions import as_sessions, describe

POSTERIOR_VALUES = 200_000  # values of y per draw kept in a run's posterior.nc (first trials)
POSTERIOR_DRAWS = 20  # draws kept in a run's posterior.nc
OPTIONS = (*run_folder.RESUME_OPTIONS, "steps")  # the options every family takes


def fit(
    model: str,
    data,
    *,
    out=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    heldout_neurons=None,
    **options,
) -> Run:
    """Fit ``model`` to ``data`` and write the run folder ``out``; returns the :class:`Run`.

    Args:
        model: a model name (``srnn``, ``slds``, ``rslds``, ``hmm``, ``lds``, ``rnn``,
            ``meta-dssm``, ...; ``neurodyn.families.MODEL_NAMES``).
        data: session files or folders, :class:`~neurodyn.data.Session` objects or arrays
            (trials, T, N) — see :func:`neurodyn.api.sessions.as_sessions`.
        out: the run folder; None writes into a new temporary folder (``run.path``).
        resume: continue an interrupted fit in ``out`` (same data and options only).
        overwrite: replace an existing run in ``out`` (other files in it are kept).
        heldout_neurons: neurons for co-smoothing (a fraction, an index file or indices),
            chosen now (with the fit's seed) and recorded in the run, so that ``evaluate``
            reports ``co_bps`` for them; the fit itself sees every neuron (as in the NLB).
        options: ``states``, ``latent_dim``, ``embedding_dim``, ``rank``, ``likelihood``,
            ``guide``, ``priors`` (``{"site": "Normal(0, 1)"}`` or a list of ``"site=spec"``),
            ``steps``, ``seed``, ``batch_size``, and a family's advanced options (see its
            ``make_config``).

    Bad input raises ``ValueError`` (one line) before anything is written. An existing run
    folder is refused unless ``resume`` or ``overwrite`` is given.
    """
    # The family's make_config checks every option (and knows its advanced ones).
    options = {**dict.fromkeys(OPTIONS), **options}
    priors = options["priors"]
    options["priors"] = (
        parse_assignments(priors) if isinstance(priors, (list, tuple)) else (dict(priors or {}))
    )
    if model not in MODEL_NAMES:  # before reading data, so a typo is named first
        family_of(model)
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if out is None:
        out = Path(tempfile.mkdtemp(prefix=f"neurodyn-{model}-")) / "run"
    out = run_folder.check_out(out, "run", resume=resume, overwrite=overwrite)
    sessions = as_sessions(data, options.get("likelihood"))
    family = family_of(model)
    check = run_folder.fingerprint(sessions, options)
    if resume:
        config = runs.read_config(out)
        if config.get("model") != model:
            raise UsageError(f"{out}: the run is a {config.get('model')!r} fit, not {model!r}")
        _check_same_problem(family, config, sessions, check, out)
        if options.get("steps"):  # steps with resume raise the run's step budget
            config["steps"] = options["steps"]
    else:
        config = family.make_config(model, sessions, options=options)
        config[run_folder.FINGERPRINT] = check
        if heldout_neurons is not None:
            config["heldout_neurons"] = heldout_indices(
                heldout_neurons, sessions[0].num_neurons, options.get("seed") or 0
            )
    args = describe(data)
    again = (
        f"neurodyn fit {model} {args} --out {out} --resume"
        if args
        else f"neurodyn.fit({model!r}, ..., out={str(out)!r}, resume=True)"
    )
    _write_run(
        family,
        config,
        sessions,
        out,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        again=again,
    )
    return load(out)


def _write_run(family, config, sessions, out: Path, *, resume, overwrite, progress, again):
    """Fit into ``out`` under its lock; on Ctrl-C say truly what was kept (per phase)."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
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


def run_posterior(family, config, params, sessions, losses) -> xr.DataTree:
    """The run folder's ``posterior.nc``: :data:`POSTERIOR_DRAWS` draws from the guide of the
    first trials (at most :data:`POSTERIOR_VALUES` values of y per draw) with their predictive
    draws, log-likelihoods and the ELBO trace, and for switching runs the ``state_posterior``
    of the same trials (smoothed state probabilities and the Viterbi path), with the named dims
    of ``neurodyn infer``; the meta family's embeddings are in ``embeddings.json``."""
    exported = family.problem(config, params, sessions, max_values=POSTERIOR_VALUES)
    tree = workflow.posterior_tree(exported, num_samples=POSTERIOR_DRAWS, losses=losses)
    kept = int(np.prod(np.shape(exported.batch["y"])[:-2]))
    if STATES in family.CAPABILITIES:  # the discrete states of the exported trials
        first = _first_trials(sessions, kept)
        states = family.posterior(config, params, first, num_samples=POSTERIOR_DRAWS, seed=0)
        tree["state_posterior"] = states["state_posterior"].to_dataset()
    tree.attrs.update(trials_exported=kept, draws_kept=POSTERIOR_DRAWS, model=config["model"])
    return tree


def _first_trials(sessions, count: int) -> list:
    """The sessions cut to their first ``count`` trials in all (for the export's trials)."""
    out = []
    for s in sessions:
        if count <= 0:
            break
        out.append(s if s.num_trials <= count else s.select(slice(0, count)))
        count -= s.num_trials
    return out


def _check_same_problem(family, config, sessions, check, out: Path) -> None:
    """Refuse ``resume`` with other data or other model options than the run's (the step
    budget may change); the message names what differs."""
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


def _fit_into(family, config, sessions, folder: Path, *, resume, progress, phase) -> dict | None:
    """Fit into ``folder``; None when Ctrl-C stopped the fit (after its checkpoint).
    ``phase["name"]`` follows the fit: warm_start, svi (SVI ran), evaluation (params saved)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        params, result = family.fit(
            config, sessions, out_dir=folder, progress=progress, resume=resume
        )
    wall = time.perf_counter() - start  # warm start, compilation and SVI
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
    run_folder.pause_for_tests("evaluation")
    metrics = evaluate_run(
        family, config, params, sessions, horizons=(), num_samples=32, seed=0, warn=False
    )
    arviz_export.save(
        run_posterior(family, config, params, sessions, result.losses), folder / runs.POSTERIOR
    )
    metrics["fit"] = {
        "steps": int(result.steps_run),
        "final_loss": float(result.losses[-20:].mean()),
        "stopped_early": bool(result.stopped_early),
        "seconds": round(wall, 2),
        "compile_seconds": round(float(result.compile_seconds), 2),
        "svi_seconds": round(float(result.seconds), 2),
        "converged": bool(convergence["converged"]),
        "convergence": convergence,
    }
    if getattr(result, "state_occupancy", None) is not None:
        metrics["fit"]["state_occupancy"] = result.state_occupancy
    runs.write_json(folder / runs.METRICS, metrics)
    if EMBEDDINGS in family.CAPABILITIES:
        runs.write_json(folder / "embeddings.json", family.embeddings(config, params, sessions))
    return metrics
