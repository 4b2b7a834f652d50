"""The ``neurodyn`` command's arguments (argparse); :mod:`neurodyn.cli` runs them."""

from __future__ import annotations

import argparse

import numpy as np

from .errors import UsageError

MODELS_HELP = (
    "srnn, slds, rslds, hmm, lds, rnn, meta-dssm, single-session, shared-dynamics, "
    "embedding-input, linear-adapter"
)
HELDOUT_HELP = (
    "co-smoothing: hold out this fraction of neurons (or the indices in FILE), infer the "
    "latents from the others and report co_bps (NLB bits per spike) for them"
)
CONVERTERS_HELP = "dad-chewie, dad-mihi-a, dad-mihi-b, widefield, nlb, nwb"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message}")


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

    v = sub.add_parser("convert", help="turn a public recording into session files")
    v.add_argument("kind", help=CONVERTERS_HELP)
    v.add_argument("source", nargs="?", help="file or folder (default: ../shared/data)")
    v.add_argument("--out", required=True, help="a .npz file (a folder for nlb)")
    v.add_argument("--window", type=_positive, default=100, help="frames per widefield window")
    v.add_argument("--bin-size", type=_positive_float, help="seconds per bin (nwb)")
    v.add_argument("--overwrite", action="store_true", help="replace existing session files")

    f = sub.add_parser("fit", help="fit a model to session files; writes a run folder")
    f.add_argument("model", help=MODELS_HELP)
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
    f.add_argument("--heldout-neurons", metavar="FRACTION|FILE", help=HELDOUT_HELP)
    f.add_argument("--quiet", action="store_true", help="no progress bar")

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
    e.add_argument("--heldout-neurons", metavar="FRACTION|FILE", help=HELDOUT_HELP)
    _heldout_arguments(e)

    i = sub.add_parser("infer", help="posterior of recordings under a run, as a DataTree (.nc)")
    i.add_argument("run")
    i.add_argument("data", nargs="+")
    i.add_argument("--out", required=True, help="the .nc file to write (NetCDF, ArviZ groups)")
    i.add_argument("--samples", type=_positive, default=50, help="posterior draws (default 50)")
    i.add_argument("--seed", type=_seed, default=0)
    i.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

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
    c.add_argument("--plot", help="also draw the table (arviz-plots' plot_compare) to this .png")
    _heldout_arguments(c)

    w = sub.add_parser("sweep", help="fit a grid of settings and rank them by held-out elpd")
    w.add_argument("model", help=MODELS_HELP)
    w.add_argument("data", nargs="+", help="training session files or folders")
    w.add_argument("--test", required=True, nargs="+", help="held-out session files")
    w.add_argument("--out", required=True, help="folder for the runs, compare.json, elpd.png")
    w.add_argument("--states", type=_positive, nargs="+", help="values of K to try")
    w.add_argument("--latent-dim", type=_positive, nargs="+", help="values of D to try")
    w.add_argument("--rank", type=_positive, nargs="+", help="hypernetwork ranks (meta)")
    w.add_argument("--embedding-dim", type=_positive, nargs="+", help="embedding sizes (meta)")
    w.add_argument("--steps", type=_positive, help="maximum SVI steps per fit")
    w.add_argument("--likelihood", choices=("gaussian", "poisson"))
    w.add_argument("--seed", type=_seed, default=0)
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    _heldout_arguments(w)

    r = sub.add_parser("report", help="PNG figures of a run on session files")
    r.add_argument("run")
    r.add_argument("data", nargs="+")
    r.add_argument("--out", required=True)

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

    d = sub.add_parser("demo", help="simulate Lorenz, fit srnn, evaluate, write figures")
    d.add_argument("--out", default="demo_run")
    d.add_argument("--seed", type=_seed, default=0)
    d.add_argument("--quiet", action="store_true")
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
