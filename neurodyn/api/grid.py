"""``neurodyn.sweep`` / ``neurodyn sweep``: fit a grid of settings, rank them by held-out elpd.

Each setting is a run folder ``OUT/<name>`` written by :func:`neurodyn.fit`; a finished one is
loaded, not refitted, and an interrupted one is resumed, so re-running a sweep only does what
is left. The table (``OUT/compare.json``) and a figure of elpd with its standard error and
Monte Carlo error against the setting (``OUT/elpd.png``) are written beside them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ..errors import UsageError
from ..inference import runs
from ..inference.arviz_figures import plot_compare
from ..inference.run_folder import INCOMPLETE, is_run
from .compare import compare, table_records
from .fitting import fit
from .run import Run, load
from .sessions import as_sessions

GRID = {"states": "K", "latent_dim": "D", "rank": "rank", "embedding_dim": "de"}


class SweepTable(NamedTuple):
    """What :func:`sweep` returns: the compare table (best first, one row per setting, with
    the setting's values as columns) and the runs by name."""

    table: pd.DataFrame
    runs: dict[str, Run]


def settings_of(**grid) -> list[dict]:
    """Every combination of the grid's given values, as fit options."""
    given = {k: list(v) for k, v in grid.items() if v is not None}
    for key, values in given.items():
        if not values or len(set(values)) != len(values):
            raise UsageError(f"--{key.replace('_', '-')}: give distinct values")
    combos = [
        dict(zip(given, values, strict=True)) for values in itertools.product(*given.values())
    ]
    if len(combos) < 2:
        raise UsageError("a sweep needs at least two settings (e.g. --states 2 3)")
    return combos


def name_of(setting: dict) -> str:
    """A folder name for a setting, e.g. ``K3`` or ``K3_D2``."""
    return "_".join(f"{GRID[k]}{v}" for k, v in setting.items())


def sweep(
    model: str,
    data,
    *,
    test,
    out,
    states: Sequence[int] | None = None,
    latent_dim: Sequence[int] | None = None,
    rank: Sequence[int] | None = None,
    embedding_dim: Sequence[int] | None = None,
    estimator: str = "auto",
    seed: int = 0,
    particles: int | None = None,
    replicates: int | None = None,
    progress: bool = True,
    **options,
) -> SweepTable:
    """Fit ``model`` to ``data`` at every combination of the given ``states``,
    ``latent_dim``, ``rank`` and ``embedding_dim`` values (other fit ``options`` are shared),
    score each on ``test`` by held-out elpd with its Monte Carlo error, and rank them.

    Runs go to ``out/<name>`` (:func:`name_of`); finished ones are not refitted.
    """
    settings = settings_of(
        states=states, latent_dim=latent_dim, rank=rank, embedding_dim=embedding_dim
    )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is an existing file, not a folder")
    sessions = as_sessions(data)  # read once; every fit gets the same recordings
    test_sessions = as_sessions(test)
    fitted = {}
    for setting in settings:
        name = name_of(setting)
        folder = out / name
        if is_run(folder) and not (folder / INCOMPLETE).exists():
            fitted[name] = load(folder)
            print(f"{name}: already fitted in {folder}/")
            continue
        resume = is_run(folder)  # an interrupted fit of this setting continues
        run = fit(
            model, sessions, out=folder, resume=resume, progress=progress, **{**options, **setting}
        )
        fitted[name] = run
        print(f"{name}: fitted in {run.metrics['fit']['seconds']:.1f} s")
    table = compare(
        list(fitted.values()),
        test_sessions,
        names=list(fitted),
        estimator=estimator,
        seed=seed,
        particles=particles,
        replicates=replicates,
    )
    by_name = {name_of(s): s for s in settings}
    for key in reversed(list(settings[0])):  # the setting's values as the first columns
        table.insert(0, key, [by_name[name][key] for name in table.index])
    runs.write_json(out / "compare.json", table_records(table))
    _elpd_figure(table, settings, out / "elpd.png")
    plot_compare(table, out / "compare.png")
    return SweepTable(table, fitted)


def _elpd_figure(table: pd.DataFrame, settings: list[dict], path: Path) -> Path:
    """elpd (+- se, and +- 2 mcse as a thicker bar) of each setting, in sweep order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name_of(s) for s in settings]
    rows = table.loc[names]
    fig, ax = plt.subplots(figsize=(max(3.5, 0.8 * len(names) + 1.5), 3.2))
    x = range(len(names))
    ax.errorbar(
        x, rows["elpd"], yerr=rows["se"], fmt="o", color="C0", capsize=4, label="elpd +- se"
    )
    ax.errorbar(
        x,
        rows["elpd"],
        yerr=2 * rows["mcse"],
        fmt="none",
        color="C3",
        lw=4,
        alpha=0.6,
        label="+- 2 Monte Carlo error",
    )
    best = table.index[0]
    ax.plot(
        [names.index(best)],
        [rows.loc[best, "elpd"]],
        "*",
        ms=14,
        color="gold",
        mec="k",
        label="best",
    )
    ax.set_xticks(list(x), names)
    ax.set_xlabel("setting")
    ax.set_ylabel("held-out elpd (nats)")
    ax.set_title("Held-out elpd by setting")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
