"""Loaders that turn public recordings into sessions (see ``../shared/data/README.md``).

- DAD centre-out reaching (Dyer et al. 2017): :func:`load_dad` -> one session per recording.
- Widefield calcium imaging (Higley lab): :func:`load_widefield` -> one session of windows.
- NLB MC_Maze_Small fixture (Pei et al. 2021): :func:`load_nlb_fixture` -> two sessions.
- NWB files (units + trials tables): :func:`load_nwb`, with ``pynwb`` as an optional extra.

The recordings are never copied into the repository; the functions take a path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .session import Session, SessionError, make_session


def _loadmat(path) -> dict:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.exists():
        raise SessionError(f"{path}: no such file")
    if path.is_dir():
        raise SessionError(f"{path}: is a folder, expected a MATLAB .mat file")
    try:
        return _Fields(path, loadmat(path))
    except (ValueError, OSError, NotImplementedError, MatReadError, TypeError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SessionError(f"{path}: not a readable MATLAB file ({detail})") from None


class _Fields(dict):
    """The arrays of a file; a missing key is a :class:`SessionError` naming file and key."""

    def __init__(self, path, arrays):
        super().__init__(arrays)
        self.path = path

    def __missing__(self, key):
        have = ", ".join(sorted(k for k in self if not str(k).startswith("__")))
        raise SessionError(
            f"{self.path}: no array {key!r} (has {have or 'none'}); is it the right kind of file?"
        )


def _shape_check(ok: bool, path, message: str) -> None:
    if not ok:
        raise SessionError(f"{path}: {message}; is it the right kind of file?")


def runs_of(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Maximal runs of equal consecutive labels as (start, stop, label)."""
    labels = np.asarray(labels).ravel()
    starts = np.r_[0, np.flatnonzero(np.diff(labels)) + 1]
    stops = np.r_[starts[1:], len(labels)]
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, stops, strict=True)]


def split_runs(runs, typical: int | None = None) -> list[tuple[int, int, int]]:
    """Split runs that are about a multiple of the typical trial length into that many trials
    (two reaches to the same target in a row form one run of twice the length)."""
    lengths = np.array([b - a for a, b, _ in runs])
    typical = typical or int(np.median(lengths))
    out = []
    for a, b, label in runs:
        pieces = max(1, int(round((b - a) / typical)))
        edges = np.linspace(a, b, pieces + 1).round().astype(int)
        out.extend((int(s), int(e), label) for s, e in zip(edges[:-1], edges[1:], strict=True))
    return out


def _trials_from_bins(y, behavior, runs, name, dt, meta, likelihood):
    """Cut (bins, N) arrays into ragged trials, padded at the end and masked."""
    T = max(b - a for a, b, _ in runs)
    R, N = len(runs), y.shape[1]
    Y = np.zeros((R, T, N), np.float32)
    B = np.zeros((R, T, behavior.shape[1]), np.float32)
    mask = np.zeros((R, T), bool)
    for i, (a, b, _) in enumerate(runs):
        Y[i, : b - a], B[i, : b - a], mask[i, : b - a] = y[a:b], behavior[a:b], True
    meta = {**meta, "trial_label": [int(label) for _, _, label in runs]}
    return make_session(Y, mask, behavior=B, dt=dt, name=name, meta=meta, likelihood=likelihood)


# DAD demo files: which arrays form which recording. Chewie's train and test parts are one
# session (71 units); Mihi's are two different sessions (174 and 187 units).
DAD_RECORDINGS = {
    "chewie": ("dad_chewie_demo.mat", ("tr", "te")),
    "mihi-a": ("dad_mihi_demo.mat", ("tr",)),
    "mihi-b": ("dad_mihi_demo.mat", ("te",)),
}
MIHI_RATE_UNIT = 5.0  # Mihi's files hold counts / bin width: rates in multiples of 5


def load_dad(data_dir, recording: str, bin_seconds: float = 0.2) -> Session:
    """One DAD reaching recording as a session of trials.

    Trials are runs of bins with the same target (runs of about twice the typical length are
    two reaches and are split); ``behavior`` is the 2-D hand velocity; ``meta["trial_label"]``
    holds each trial's target. Mihi's rates are converted back to spike counts.

    Args:
        data_dir: folder holding ``dad_chewie_demo.mat`` and ``dad_mihi_demo.mat``.
        recording: ``chewie``, ``mihi-a`` or ``mihi-b``.
    """
    if recording not in DAD_RECORDINGS:
        raise SessionError(
            f"unknown DAD recording {recording!r}; choose one of {list(DAD_RECORDINGS)}"
        )
    filename, parts = DAD_RECORDINGS[recording]
    path = Path(data_dir) / filename if Path(data_dir).is_dir() else Path(data_dir)
    m = _loadmat(path)
    for p in parts:
        y_p, x_p, t_p = (np.asarray(m[k + p]) for k in "YXT")
        _shape_check(
            y_p.ndim == 2 and x_p.ndim == 2 and t_p.size == len(y_p) == len(x_p),
            path,
            f"arrays Y{p}, X{p}, T{p} must be (bins, units), (bins, 2), (bins,) of one length",
        )
    y = np.concatenate([m["Y" + p] for p in parts]).astype(np.float64)
    if recording.startswith("mihi"):
        y = np.round(y / MIHI_RATE_UNIT)
    velocity = np.concatenate([m["X" + p] for p in parts])
    # Runs never cross the boundary between the two parts of a recording.
    runs, offset = [], 0
    for p in parts:
        runs += [(a + offset, b + offset, t) for a, b, t in runs_of(m["T" + p])]
        offset += len(m["T" + p])
    typical = 31 if recording == "chewie" else None
    runs = split_runs(runs, typical)
    meta = {"source": f"DAD demo ({filename})", "citation": "Dyer et al. 2017, Nat. Biomed. Eng."}
    return _trials_from_bins(y, velocity, runs, recording, bin_seconds, meta, "poisson")


WIDEFIELD_STATES = ("quiet", "whisking", "running")


def widefield_states(wheel, whisking, run_mads: float = 5.0, whisk_quantile: float = 0.6):
    """Behavioural label per frame: 2 = running where the wheel trace exceeds its median by
    ``run_mads`` median absolute deviations; else 1 = whisking where the whisking trace exceeds
    its ``whisk_quantile`` quantile; else 0 = quiet."""
    wheel, whisking = np.asarray(wheel), np.asarray(whisking)
    mad = np.median(np.abs(wheel - np.median(wheel)))
    running = wheel > np.median(wheel) + run_mads * mad
    whisk = whisking > np.quantile(whisking, whisk_quantile)
    return np.where(running, 2, np.where(whisk, 1, 0)).astype(np.int32)


def load_widefield(path, window: int = 100, zscore: bool = True) -> Session:
    """The widefield recording cut into windows of ``window`` frames (10 Hz).

    Returns a Gaussian session (windows, window, 48 parcels), z-scored per parcel by default;
    ``behavior`` = (pupil, wheel, whisking); ``states`` = quiet / whisking / running from
    :func:`widefield_states` (names in ``meta["state_names"]``).
    """
    m = _loadmat(path)
    x, behavior = np.asarray(m["x"]), np.asarray(m["behavior_traces"])
    _shape_check(
        x.ndim == 2
        and behavior.ndim == 2
        and behavior.shape[0] == 3
        and behavior.shape[1] == x.shape[1],
        path,
        f"'x' {x.shape} and 'behavior_traces' {behavior.shape} must be (parcels, frames) and "
        "(3, frames)",
    )
    _shape_check(
        x.shape[1] >= window, path, f"{x.shape[1]} frames are fewer than --window {window}"
    )
    x = x.astype(np.float64).T  # (frames, parcels)
    if zscore:
        x = (x - x.mean(0)) / x.std(0)
    behavior = behavior.astype(np.float64).T  # (frames, 3)
    labels = widefield_states(behavior[:, 1], behavior[:, 2])
    n = x.shape[0] // window
    cut = slice(0, n * window)
    return make_session(
        x[cut].reshape(n, window, -1),
        states=labels[cut].reshape(n, window),
        behavior=behavior[cut].reshape(n, window, 3),
        dt=0.1,
        name="widefield-animal1",
        meta={
            "behavior_names": ["pupil", "wheel", "whisking"],
            "state_names": list(WIDEFIELD_STATES),
            "zscored": zscore,
            "source": "Higley lab widefield (ISFN workshop)",
        },
        likelihood="gaussian",
    )


def load_nlb_fixture(path) -> tuple[Session, Session]:
    """The NLB MC_Maze_Small fixture as (source, target) sessions of spike counts; the reach
    intent (2-D, per trial) is repeated over the trial's bins as ``behavior``."""
    import zipfile

    path = Path(path)
    if not path.exists():
        raise SessionError(f"{path}: no such file")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array")
        with npz:
            f = _Fields(path, {k: npz[k] for k in npz.files})
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise SessionError(f"{path}: not a readable .npz file ({type(e).__name__})") from None
    if True:  # the arrays are in memory: f is a dict of them
        out = []
        for part in ("source", "target"):
            y, intent = f[f"{part}_neural"], f[f"{part}_intent"]
            _shape_check(
                y.ndim == 3 and intent.shape == (len(y), 2),
                path,
                f"'{part}_neural' {y.shape} and '{part}_intent' {intent.shape} must be "
                "(trials, T, N) and (trials, 2)",
            )
            intent = np.broadcast_to(intent[:, None, :], y.shape[:2] + (2,))
            rate = float(f[f"{part}_sample_rate_hz"])
            out.append(
                make_session(
                    y,
                    behavior=intent,
                    dt=1.0 / rate,
                    name=f"nlb-{part}",
                    meta={
                        "session_id": str(f[f"{part}_session_id"]),
                        "source": "NLB MC_Maze_Small",
                    },
                    likelihood="poisson",
                )
            )
    return out[0], out[1]


def load_nwb(
    path,
    bin_size: float,
    *,
    start: str = "start_time",
    stop: str = "stop_time",
    name: str | None = None,
) -> Session:
    """Bin an NWB file's units (spike times) within its trials into a session of counts.

    Needs ``pynwb`` (``pip install neurodyn[nwb]``). Trials of different lengths are padded at
    the end and masked.

    Args:
        path: an ``.nwb`` file with a units table and a trials table.
        bin_size: seconds per bin.
        start, stop: the trials table's columns giving each trial's time window.
    """
    try:
        from pynwb import NWBHDF5IO
    except ImportError:
        raise SessionError("reading NWB needs pynwb: pip install 'neurodyn[nwb]'") from None
    path = Path(path)
    if not path.exists():
        raise SessionError(f"{path}: no such file")
    if path.is_dir():
        raise SessionError(f"{path}: is a folder, expected an .nwb file")
    try:
        with NWBHDF5IO(str(path), "r") as io:
            nwb = io.read()
            if nwb.units is None or nwb.trials is None:
                raise SessionError(f"{path}: needs both a units table and a trials table")
            trials = nwb.trials.to_dataframe()
            spikes = [np.asarray(nwb.units["spike_times"][i]) for i in range(len(nwb.units))]
            identifier = nwb.identifier
    except (OSError, ValueError, KeyError, TypeError) as e:
        if isinstance(e, SessionError):
            raise
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SessionError(f"{path}: not a readable NWB file ({detail})") from None
    for column in (start, stop):
        if column not in trials:
            raise SessionError(f"{path}: the trials table has no column {column!r}")
    starts, stops = trials[start].to_numpy(), trials[stop].to_numpy()
    bins = np.ceil((stops - starts) / bin_size - 1e-9).astype(int)
    T, R, N = int(bins.max()), len(starts), len(spikes)
    y = np.zeros((R, T, N))
    mask = np.zeros((R, T), bool)
    for r in range(R):
        edges = starts[r] + bin_size * np.arange(bins[r] + 1)
        for n, times in enumerate(spikes):
            y[r, : bins[r], n] = np.histogram(times, edges)[0]
        mask[r, : bins[r]] = True
    return make_session(
        y,
        mask,
        dt=bin_size,
        name=name or identifier,
        meta={"source": str(path)},
        likelihood="poisson",
    )
