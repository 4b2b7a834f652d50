"""``neurodyn.compare``: rank fitted runs by held-out elpd on the same recordings."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import UsageError
from ..inference import comparison, workflow
from .run import Run, load

COLUMNS = ("rank", "elpd", "se", "elpd_diff", "dse", "weight", "mcse", "estimator")
OPTIONAL_COLUMNS = ("khat_max", "khat_share_above_0.7", "ess_fraction_min")


def compare(
    runs: Sequence,
    data,
    *,
    estimator: str = "auto",
    seed: int = 0,
    particles: int | None = None,
    replicates: int | None = None,
    samples: int | None = None,
    names: Sequence[str] | None = None,
    warn: bool = True,
) -> pd.DataFrame:
    """The compare table of ``runs`` (run folders or :class:`Run` objects, at least two) on
    ``data``: one row per run, best first, with ``elpd``, ``se``, ``elpd_diff``, ``dse``,
    ``weight``, ``mcse`` (Monte Carlo error of the elpd), ``mcse_diff`` and the estimator's
    diagnostics. One warning line per reason to distrust it (printed when ``warn``)."""
    loaded = [run if isinstance(run, Run) else load(run) for run in runs]
    if len(loaded) < 2:
        raise UsageError("compare needs at least two runs")
    names = list(names) if names is not None else [Path(run.path).name for run in loaded]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"two runs are named {twice!r}; give the run folders distinct names")
    scores = {}
    for name, run in zip(names, loaded, strict=True):
        try:
            heldout, scores[name] = workflow.heldout_score(
                run.family,
                run.config,
                run.params,
                run.sessions(data),
                estimator=estimator,
                seed=seed,
                num_particles=particles,
                num_replicates=replicates,
                num_samples=samples or workflow.HELDOUT_SAMPLES,
            )
        except ValueError as e:
            raise UsageError(f"{name}: {e}") from None
        for line in workflow.heldout_warnings(heldout) if warn else ():
            print(f"warning: {name}: {line}", file=sys.stderr)
    table = comparison.compare(scores)
    imprecise = comparison.imprecise_differences(table)
    if imprecise and warn:
        print(
            f"warning: the Monte Carlo error of elpd_diff exceeds a quarter of its dse for "
            f"{', '.join(imprecise)}: use more particles or replicates before trusting the order",
            file=sys.stderr,
        )
    columns = [*COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in table), "mcse_diff"]
    return table[columns]


def table_text(table: pd.DataFrame) -> str:
    """The compare table as printed by ``neurodyn compare``."""
    shown = table.drop(columns=["mcse_diff"], errors="ignore")
    return shown.to_string(float_format=lambda x: f"{x:.2f}", na_rep="-")


def table_records(table: pd.DataFrame) -> dict:
    """The table as {run name: {column: value}} of plain Python values (for JSON)."""
    return {
        str(name): {c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}
        for name, row in table.iterrows()
    }
