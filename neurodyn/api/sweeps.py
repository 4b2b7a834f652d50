"""Model selection by held-out likelihood: fit one run per setting, score all on the same trials.

- :func:`sweep_states`: the number of discrete states K of a switching model;
- :func:`sweep_meta`: the hypernetwork rank and embedding dimension d_e of a meta model;
- :func:`sweep`: any named set of (model, options), e.g. ``rslds`` against ``slds``.

Each run is fitted on the training sessions with its family's ``fit`` and scored on the test
sessions by importance sampling with its guide as proposal
(:func:`neurodyn.inference.workflow.heldout`): the held-out elpd is the sum over test trials of
log p(y_i), with its standard error over trials and each trial's Pareto k. The runs are ranked
by ``arviz_stats.compare`` (:func:`neurodyn.inference.comparison.compare`), whose ``elpd_diff``
and ``dse`` say whether a difference exceeds its standard error.

:func:`approximate_loo` is ArviZ's PSIS-LOO corrected for a variational posterior
(``arviz_stats.loo_approximate_posterior``), for the models where it applies (no per-trial
latent sampled by the guide).

Example::

    from neurodyn.api.sweeps import sweep_states

    result = sweep_states("rslds", [train], [test], states=(2, 3, 4, 5),
                          options={"latent_dim": 2, "steps": 2000}, out_dir="sweep")
    print(result.table[["rank", "elpd", "se", "elpd_diff", "dse", "weight", "khat_max"]])
    print(result.summary)  # one row per K, in sweep order
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..families import family_of
from ..inference import comparison, runs, workflow
from ..inference.diagnostics import elbo_convergence
from ..inference.svi import FitResult
from .fitting import fit

ESTIMATORS = ("importance", "smc")
SUMMARY_COLUMNS = (
    "elpd",
    "se",
    "elpd_diff",
    "dse",
    "weight",
    "khat_max",
    "khat_share_above_0.7",
    "heldout_loglik_per_bin",
    "fit_steps",
    "fit_seconds",
)


class Fitted(NamedTuple):
    """One fitted setting of a sweep.

    Attributes:
        model: model name (e.g. ``"rslds"``).
        config: the family's JSON-able config.
        params: fitted parameters.
        fit: the :class:`~neurodyn.inference.svi.FitResult` (losses, steps, seconds).
        heldout: ``heldout_loglik_per_bin`` and ``psis_khat`` on the test sessions.
        elpd: ``arviz_stats.ELPDData`` of the test trials (``elpd_i``, ``pareto_k`` per trial).
        folder: the run folder, when the sweep was given ``out_dir``.
    """

    model: str
    config: dict
    params: Any
    fit: FitResult
    heldout: dict
    elpd: Any
    folder: Path | None


class SweepResult(NamedTuple):
    """What the sweep functions return.

    Attributes:
        table: ``arviz_stats.compare`` table indexed by run name, ranked best first (columns
            rank, elpd_diff, dse, p_worse, diag_diff, diag_elpd, p, elpd, se, weight, and the
            package's khat_max, khat_share_above_0.7).
        summary: one row per run in sweep order: the setting's options (``states``, or
            ``rank`` and ``embedding_dim``) and :data:`SUMMARY_COLUMNS`.
        runs: name -> :class:`Fitted`.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    runs: dict[str, Fitted]

    def best(self) -> str:
        """Name of the run ranked first (highest held-out elpd)."""
        return str(self.table.index[0])

    def within_one_se_of_best(self, name: str) -> bool:
        """True when ``name`` is best or its elpd is within one SE of the difference (dse)."""
        row = self.table.loc[name]
        return bool(row["rank"] == 0 or abs(row["elpd_diff"]) <= row["dse"])


def _folder_name(name: str) -> str:
    """A file-system-safe folder name for a run name ("K=3" -> "K3", "rank=2,d_e=1" ...)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace("=", "")).strip("_") or "run"


def _fit_summary(result: FitResult) -> dict:
    return {
        "steps": int(result.steps_run),
        "final_loss": float(np.mean(result.losses[-20:])),
        "stopped_early": bool(result.stopped_early),
        "seconds": round(float(result.seconds), 2),
        "convergence": elbo_convergence(result.losses),
    }


def fit_and_score(
    model: str,
    train_sessions: Sequence,
    test_sessions: Sequence,
    *,
    options: Mapping | None = None,
    folder=None,
    num_samples: int = 200,
    seed: int = 0,
    progress: bool = False,
    estimator: str = "importance",
    num_particles: int = 256,
) -> Fitted:
    """Fit ``model`` with ``options`` on ``train_sessions`` and score it on ``test_sessions``.

    With ``folder``, the run is written by :func:`neurodyn.fit` (an earlier run there is
    replaced) and ``metrics.json`` also holds the held-out scores on the test sessions.
    ``num_samples`` importance samples per test trial, drawn with ``seed``.

    ``estimator`` picks what ``Run.elpd`` holds: ``"importance"`` (PSIS-smoothed importance
    sampling, with Pareto k) or ``"smc"`` (sequential Monte Carlo with ``num_particles``
    particles per trial, switching models with a ``dkf`` or ``meanfield`` guide; much less
    variance on long trials). Both are reported in ``Run.heldout`` then.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    options = dict(options or {})
    if folder is None:
        family = family_of(model)
        config = family.make_config(model, list(train_sessions), options=options)
        params, result = family.fit(config, list(train_sessions), out_dir=None, progress=progress)
        if result.interrupted:
            raise KeyboardInterrupt
    else:  # the run folder as `neurodyn fit` writes it (a new folder or an earlier run)
        run = fit(
            model, list(train_sessions), out=folder, overwrite=True, progress=progress, **options
        )
        family, config, params = run.family, run.config, run.params
        result = _fit_result(run)
    problem = family.problem(config, params, list(test_sessions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k is reported in the table instead
        heldout, estimate = workflow.heldout(problem, num_samples=num_samples, seed=seed)
    elpd = comparison.heldout_elpd(estimate)
    heldout["psis_khat_per_trial"] = [float(k) for k in np.ravel(estimate.khat)]
    if estimator == "smc":
        smc, log_marginals, _ = family.heldout_smc(
            config, params, list(test_sessions), num_particles=num_particles, seed=seed
        )
        heldout = {**heldout, **smc}
        elpd = comparison.smc_elpd(log_marginals, num_particles)
    if folder is not None:  # the held-out scores beside the fit's own metrics
        metrics = run.metrics
        metrics["heldout"] = {**heldout, "elpd": elpd.elpd, "elpd_se": elpd.se}
        runs.write_json(Path(folder) / runs.METRICS, metrics)
        folder = Path(folder)
    return Fitted(model, config, params, result, heldout, elpd, folder)


def _fit_result(run) -> FitResult:
    """The :class:`FitResult` of a run folder (its loss curve from ``loss.csv``)."""
    fit_summary = run.metrics["fit"]
    losses = np.loadtxt(run.path / "loss.csv", delimiter=",", skiprows=1, ndmin=2)[:, 1]
    return FitResult(
        run.params,
        losses,
        int(fit_summary["steps"]),
        bool(fit_summary["stopped_early"]),
        False,
        float(fit_summary["seconds"]),
        float(fit_summary.get("compile_seconds", 0.0)),
    )


def sweep(
    settings: Mapping[str, tuple[str, Mapping | None]],
    train_sessions: Sequence,
    test_sessions: Sequence,
    *,
    out_dir=None,
    num_samples: int = 200,
    seed: int = 0,
    progress: bool = False,
    estimator: str = "importance",
    num_particles: int = 256,
) -> SweepResult:
    """Fit every setting and rank them by held-out elpd on the same test trials.

    Args:
        settings: run name -> (model, options); at least two. Options as in the family's
            ``make_config`` (e.g. ``{"states": 4, "latent_dim": 2, "steps": 2000}``).
        train_sessions, test_sessions: lists of :class:`~neurodyn.data.Session`; the test
            sessions must have the training sessions' neurons (same recordings, other trials).
        out_dir: optional folder; each run goes to ``out_dir/<name>`` (see
            :func:`fit_and_score`) and the table to ``out_dir/compare.json``.
        num_samples: importance samples per test trial; seed: their PRNG seed (the same for
            every run).
        estimator, num_particles: what the ranking uses (see :func:`fit_and_score`).
        progress: show each fit's progress bar.

    Returns:
        :class:`SweepResult`.
    """
    if len(settings) < 2:
        raise ValueError("a sweep needs at least two settings")
    fitted = {}
    for name, (model, options) in settings.items():
        folder = None if out_dir is None else Path(out_dir) / _folder_name(name)
        fitted[name] = fit_and_score(
            model,
            train_sessions,
            test_sessions,
            options=options,
            folder=folder,
            num_samples=num_samples,
            seed=seed,
            progress=progress,
            estimator=estimator,
            num_particles=num_particles,
        )
    table = comparison.compare({name: run.elpd for name, run in fitted.items()})
    summary = _summary(fitted, table)
    if out_dir is not None:
        runs.write_json(Path(out_dir) / "compare.json", _records(table))
    return SweepResult(table, summary, fitted)


def _summary(fitted: Mapping[str, Fitted], table: pd.DataFrame) -> pd.DataFrame:
    rows = {}
    for name, run in fitted.items():
        setting = {key: run.config.get(key) for key in ("rank", "embedding_dim")}
        if run.config["family"] == "switching":
            setting = {"states": run.config["spec"]["num_states"]}
        rows[name] = {
            "model": run.model,
            **setting,
            **{c: table.loc[name, c] for c in SUMMARY_COLUMNS[:7] if c in table},
            "heldout_loglik_per_bin": run.heldout["heldout_loglik_per_bin"],
            **{k: run.heldout[k] for k in ("heldout_loglik_per_bin_smc",) if k in run.heldout},
            "fit_steps": int(run.fit.steps_run),
            "fit_seconds": float(run.fit.seconds),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _records(table: pd.DataFrame) -> dict:
    """The compare table as {name: {column: value}} of plain Python numbers."""
    return {
        str(name): {c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}
        for name, row in table.iterrows()
    }


def sweep_states(
    model: str,
    train_sessions: Sequence,
    test_sessions: Sequence,
    states: Iterable[int] = (2, 3, 4, 5, 6),
    options: Mapping | None = None,
    **kwargs,
) -> SweepResult:
    """Sweep the number of discrete states K of a switching model (``srnn``, ``slds``,
    ``rslds``, ``hmm``); runs are named ``"K=<k>"``. Other ``options`` (latent_dim, steps,
    seed, ...) are shared by every run; ``kwargs`` go to :func:`sweep`."""
    if not family_of(model).__name__.endswith(".switching"):
        raise ValueError(f"sweep_states needs a switching model, not {model!r}")
    base = {k: v for k, v in dict(options or {}).items() if k != "states"}
    settings = {f"K={int(k)}": (model, {**base, "states": int(k)}) for k in states}
    return sweep(settings, train_sessions, test_sessions, **kwargs)


def sweep_meta(
    model: str,
    train_sessions: Sequence,
    test_sessions: Sequence,
    ranks: Iterable[int] = (1, 2, 4),
    embedding_dims: Iterable[int] = (1, 2),
    options: Mapping | None = None,
    **kwargs,
) -> SweepResult:
    """Grid over the hypernetwork rank d_r and embedding dimension d_e of a meta model
    (``meta-dssm``); runs are named ``"rank=<r>,d_e=<e>"``. The test sessions are other trials
    of the training recordings (same names and neurons). Other ``options`` are shared by every
    run; ``kwargs`` go to :func:`sweep`."""
    if not family_of(model).__name__.endswith(".meta"):
        raise ValueError(f"sweep_meta needs a meta-family model, not {model!r}")
    base = {k: v for k, v in dict(options or {}).items() if k not in ("rank", "embedding_dim")}
    settings = {
        f"rank={int(r)},d_e={int(e)}": (model, {**base, "rank": int(r), "embedding_dim": int(e)})
        for r in ranks
        for e in embedding_dims
    }
    return sweep(settings, train_sessions, test_sessions, **kwargs)


def approximate_loo(problem: workflow.Problem, *, num_samples: int = 200, seed: int = 0):
    """PSIS-LOO over trials corrected for a variational posterior
    (``arviz_stats.loo_approximate_posterior``, Magnusson et al. 2019).

    It applies when each trial's log-likelihood depends on global latents only, i.e. the
    guide draws no latent inside the trial plate (an ``hmm`` fit, whose discrete states are
    summed out exactly, or a user model whose global sites have a non-degenerate guide; the
    package's own guides fit global sites as MAP point estimates, which leaves nothing to
    reweight and raises ``ValueError``). With
    per-trial latents (every continuous-latent model of the package), leaving a trial out
    would need log p(y_i | globals) with the trial's latent integrated out, which the draws do
    not hold: score held-out trials with :func:`neurodyn.inference.workflow.heldout` or
    :func:`sweep` instead. ``ValueError`` in that case.

    Args:
        problem: a family's ``problem(config, params, sessions)`` (the training sessions).
        num_samples: draws from the guide; seed: their PRNG seed.

    Returns:
        ``arviz_stats.ELPDDataLOO`` with per-trial ``elpd_i`` and ``pareto_k``.
    """
    import arviz_stats

    local = _local_latents(problem)
    if local:
        raise ValueError(
            f"PSIS-LOO over trials does not apply: the guide samples per-trial latents "
            f"{', '.join(local)}; compare held-out trials instead (sweep, workflow.heldout)"
        )
    tree = workflow.posterior_tree(problem, num_samples=num_samples, seed=seed)
    loglik = np.stack([np.asarray(v) for v in tree["log_likelihood"].data_vars.values()])
    if np.ptp(loglik, axis=2).max() < 1e-6:  # axes: site, chain, draw, trial
        raise ValueError(
            "PSIS-LOO needs posterior draws of the global sites, but every draw of the guide is "
            "the same (MAP point estimates); give the global sites a non-degenerate guide"
        )
    stats = tree["sample_stats"]
    return arviz_stats.loo_approximate_posterior(
        tree, stats["log_p"], stats["log_q"], pointwise=True
    )


def _local_latents(problem: workflow.Problem) -> list[str]:
    """Latent sites of the guide that sit in one of the problem's local (trial) plates."""
    from numpyro import handlers

    guide = handlers.substitute(problem.guide, data=problem.params)
    with handlers.seed(rng_seed=0):
        trace = handlers.trace(guide).get_trace(problem.batch, **problem.model_kwargs)
    return [
        name
        for name, site in trace.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and any(f.name in problem.local_plates for f in site["cond_indep_stack"])
    ]
