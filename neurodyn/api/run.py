"""``neurodyn.load`` and :class:`Run`: a fitted run folder and what can be done with it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..data import concat_trials
from ..errors import UsageError
from ..families import family_of, require
from ..families.protocol import ADAPT, CHECK, STATES
from ..inference import arviz_export, arviz_figures, runs, workflow
from ..inference.diagnostics import ppc_figure, rank_histogram_figure
from ..inference.metrics import R2_UNDEFINED
from ..inference.run_folder import INCOMPLETE, check_out, remove_run_files, staged_files
from .cosmoothing import co_smoothing, heldout_indices
from .sessions import as_sessions

HORIZONS = (1, 5, 10)
PPC_VALUES = 1_000_000  # values of y per draw in report's posterior predictive check


@dataclass
class Run:
    """A fitted run: its folder, family, config and parameters.

    Attributes:
        path: the run folder.
        family: the family module (:class:`neurodyn.families.protocol.Family`).
        config: the run's ``config.json``.
        params: the fitted parameters (dict of arrays).
    """

    path: Path
    family: Any
    config: dict
    params: dict

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def metrics(self) -> dict:
        """The run's ``metrics.json`` (training metrics and the fit summary)."""
        return runs.read_json(self.path / runs.METRICS)

    def sessions(self, data) -> list:
        """``data`` (paths, sessions or arrays) loaded as this run's recordings."""
        return as_sessions(data, self.config.get("likelihood"))

    def evaluate(
        self,
        data,
        *,
        horizons=HORIZONS,
        num_samples: int = 64,
        seed: int = 0,
        estimator: str = "auto",
        particles: int | None = None,
        replicates: int | None = None,
        heldout_neurons=None,
        warn: bool = True,
    ) -> dict:
        """Held-out metrics of the run on ``data``: the keys of ``neurodyn evaluate --json``
        (strict-JSON-able: a metric that cannot be computed is None with a ``*_note``).

        ``heldout_neurons`` (a fraction, an index file or a list of indices; default: those the
        run chose at fit time, if any) adds co-smoothing: ``co_bps`` and ``co_bps_neurons``
        (:mod:`neurodyn.api.cosmoothing`)."""
        sessions = self.sessions(data)
        if heldout_neurons is None:
            heldout_neurons = self.config.get("heldout_neurons")
        indices = None  # checked before any work
        if heldout_neurons is not None:
            indices = heldout_indices(heldout_neurons, sessions[0].num_neurons, seed)
        horizons, note = scorable_horizons(tuple(horizons), sessions)
        metrics = evaluate_run(
            self.family,
            self.config,
            self.params,
            sessions,
            horizons=horizons,
            num_samples=num_samples,
            seed=seed,
            warn=warn,
            estimator=estimator,
            particles=particles,
            replicates=replicates,
        )
        if note:
            metrics["forecast_r2_note"] = note
        if indices is not None:
            metrics.update(
                co_smoothing(self, sessions, indices, num_samples=num_samples, seed=seed)
            )
        return metrics

    def infer(
        self, data, *, num_samples: int = 50, seed: int = 0, out=None, overwrite: bool = False
    ) -> xr.DataTree:
        """The posterior of ``data`` under the run: an ``xarray.DataTree`` with named dims
        (``trial``, ``time``, ``latent``, ``neuron``, ``state``, ``recording``); written to
        ``out`` (``.nc``) when given."""
        if out is not None:
            out = check_out(out, "nc", overwrite=overwrite)
        tree = self.family.posterior(
            self.config, self.params, self.sessions(data), num_samples=num_samples, seed=seed
        )
        tree.attrs["model"] = self.model
        tree.attrs["run"] = str(self.path)
        if out is not None:
            arviz_export.save(tree, out)
        return tree

    def report(self, data, out) -> list[Path]:
        """PNG figures of the run on ``data`` written into the folder ``out``: the family's own
        (state rasters, flow fields, reconstructions, embeddings) and, drawn with arviz-plots
        on the posterior of ``data``, the posterior predictive check (``ppc.png``: a rootogram
        for counts), the Pareto k of each trial (``khat.png``) and the fit's ELBO trace
        (``elbo.png``). Padded bins are never drawn as data."""
        out = check_out(out, "report")
        sessions = self.sessions(data)
        problem = self.family.problem(self.config, self.params, sessions, max_values=PPC_VALUES)
        tree = workflow.posterior_tree(problem, num_samples=50)
        mask = np.asarray(problem.batch["mask"])
        with staged_files(out) as tmp:
            figures = self.family.report(self.config, self.params, sessions, tmp)
            figures.append(arviz_figures.plot_ppc(tree, tmp / "ppc.png", var_name="y", mask=mask))
            figures.append(arviz_figures.plot_khat(tree, tmp / "khat.png", var_name="y"))
            figures.append(self._ppc_statistics(sessions, problem, tree, tmp))
            trace = self._elbo_trace()
            if trace is not None:
                figures.append(arviz_figures.plot_elbo(trace, tmp / "elbo.png"))
        return [out / Path(f).name for f in figures]

    def _ppc_statistics(self, sessions, problem, tree, folder: Path) -> Path:
        """Statistics of the data against the posterior predictive draws' (mean rate and Fano
        factor per neuron, autocorrelation, and the states' dwell times): arviz-plots has no
        such figure (``ppc_statistics.png``)."""
        y, mask = np.asarray(problem.batch["y"]), np.asarray(problem.batch["mask"])
        predictive = tree["posterior_predictive"]["y"].values[0]
        session = concat_trials(sessions) if len({s.num_neurons for s in sessions}) == 1 else None
        states = session.states if session is not None and y.ndim == 3 else None
        predicted = None
        if STATES in self.family.CAPABILITIES and self.config["spec"]["num_states"] > 1:
            predicted = self.family.most_likely_states(self.config, self.params, sessions)
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
            folder / "ppc_statistics.png",
            states=states,
            predicted_states=predicted,
            likelihood=self.config.get("likelihood", "gaussian"),
        )

    def _elbo_trace(self) -> xr.DataTree | None:
        """The fit's ELBO by step (from ``loss.csv``), as a tree for :func:`plot_elbo`."""
        path = self.path / "loss.csv"
        if not path.exists():
            return None
        losses = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)[:, 1]
        stats = xr.Dataset({"elbo": ("step", -losses)})
        return xr.DataTree.from_dict({"sample_stats": stats})

    def adapt(
        self,
        data,
        trials: int,
        out,
        *,
        steps: int | None = None,
        seed: int = 0,
        refine_embedding: bool = False,
        overwrite: bool = False,
    ) -> Run:
        """Few-shot adaptation (meta family) to one new recording, on its first ``trials``
        trials; writes and returns the new run ``out``."""
        out = check_out(out, "run", overwrite=overwrite)
        require(self.family, ADAPT, self.model)
        if out.resolve() == self.path.resolve():
            raise UsageError("--out must differ from the run being adapted")
        sessions = self.sessions(data)
        if len(sessions) != 1:
            raise UsageError(f"adapt takes one recording, got {len(sessions)}")
        session = sessions[0]
        if not 1 <= trials <= session.num_trials:
            raise UsageError(f"--trials {trials}: {session.name} has {session.num_trials} trials")
        with staged_files(out) as tmp:
            config, params, result = self.family.adapt(
                self.config,
                self.params,
                session,
                trials=trials,
                steps=steps,
                seed=seed,
                out_dir=tmp,
                refine_embedding=refine_embedding,
            )
            runs.write_json(tmp / runs.CONFIG, config)
            runs.save_params(tmp / runs.PARAMS, params)
            runs.write_json(
                tmp / "embeddings.json", self.family.embeddings(config, params, [session])
            )
            runs.write_json(
                tmp / runs.METRICS,
                {"adapt": {"seconds": round(float(result.seconds), 2), "trials": trials}},
            )
            if overwrite:  # the earlier run's files go; the new ones are moved in next
                remove_run_files(out)
        return load(out)

    def check(
        self,
        *,
        simulations: int = 100,
        timesteps: int | None = None,
        draws: int = 99,
        thin: int | None = None,
        seed: int = 0,
        out=None,
    ) -> dict:
        """Simulation-based calibration of the run's guide (``neurodyn check``): trials are
        simulated from the fitted model and the guide's posterior ranks the true latents.
        ``out``: a folder for ``rank_histograms.png``."""
        if out is not None:
            out = check_out(out, "report")
        require(self.family, CHECK, self.model)
        summary = self.family.check(
            self.config,
            self.params,
            num_trials=simulations,
            num_timesteps=timesteps or self.fitted_timesteps() or 100,
            num_samples=draws,
            every=thin,
            seed=seed,
        )
        if out is not None:
            with staged_files(out) as tmp:
                rank_histogram_figure(summary, tmp / "rank_histograms.png")
        return summary

    def fitted_timesteps(self) -> int | None:
        """Bins per trial of the data the run was fitted to (from posterior.nc), or None."""
        try:
            with xr.open_datatree(self.path / runs.POSTERIOR) as tree:
                return int(tree["observed_data"]["y"].shape[-2])
        except Exception:  # no or unreadable posterior.nc: the caller's default
            return None


def load(path) -> Run:
    """The run in folder ``path`` (written by ``neurodyn fit`` or :func:`neurodyn.fit`)."""
    path = Path(path)
    config = runs.read_config(path)
    try:
        family = family_of(config["model"])
    except ValueError as e:
        raise runs.RunError(f"{path / runs.CONFIG}: {e}") from None
    if not (path / runs.PARAMS).exists() or (path / INCOMPLETE).exists():
        raise UsageError(
            f"{path}: the fit did not finish (an interrupted fit? continue it with "
            f"neurodyn fit ... --out {path} --resume)"
        )
    try:
        template = family.param_template(config)
    except KeyError as e:  # a config.json edited by hand or of another version
        raise runs.RunError(f"{path / runs.CONFIG}: missing key {e}") from None
    params = runs.load_params(path / runs.PARAMS, template)
    return Run(path, family, config, params)


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

    def undefined(value):
        return isinstance(value, float) and not np.isfinite(value)

    for key, value in list(metrics.items()):
        if key.endswith("r2") and undefined(value):
            metrics[f"{key}_note"] = R2_UNDEFINED
    forecast = metrics.get("forecast_r2")
    for horizon, value in list(forecast.items()) if isinstance(forecast, dict) else ():
        if undefined(value):
            forecast[f"{horizon}_note"] = R2_UNDEFINED


def scorable_horizons(horizons, sessions) -> tuple[tuple, str | None]:
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
