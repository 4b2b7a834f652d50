"""Session files: one recording as trials x time bins x neurons.

The on-disk contract: an ``.npz`` with

- ``y``: (trials, T, N) float (Gaussian) or non-negative integer counts (Poisson). Required.
- ``mask``: bool (trials, T) or (trials, T, N); False = missing / padding. Optional.
- ``states``: int (trials, T) reference labels; ``behavior``: float (trials, T, B);
  ``latents``: float (trials, T, D); ``dt``: seconds per bin; ``name``: a string.
- ``inputs``: float (trials, T, U) known external inputs (stimuli, task events) per bin.
- ``meta``: optional JSON string with anything else (e.g. a simulator's generating parameters).

In memory the mask is always (trials, T, N); masked entries of ``y`` are set to 0 so that no
NaN reaches a likelihood or a gradient.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

LIKELIHOODS = ("gaussian", "poisson")


class SessionError(ValueError):
    """A session file or array that breaks the session contract; the message names the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class Session:
    """One recording.

    Attributes:
        y: float32 (trials, T, N) observations; 0 where ``mask`` is False.
        mask: bool (trials, T, N); False = missing bin / neuron / padding.
        states: optional int32 (trials, T) reference labels (evaluation only).
        behavior: optional float32 (trials, T, B) (evaluation only).
        latents: optional float32 (trials, T, D) true latents (simulations only).
        inputs: optional float32 (trials, T, U) known external inputs per bin.
        dt: seconds per bin.
        name: a label for the recording.
        meta: JSON-serialisable extras (e.g. generating parameters of a simulation).
    """

    y: np.ndarray
    mask: np.ndarray
    states: np.ndarray | None = None
    behavior: np.ndarray | None = None
    latents: np.ndarray | None = None
    inputs: np.ndarray | None = None
    dt: float = 1.0
    name: str = "session"
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def num_trials(self) -> int:
        return self.y.shape[0]

    @property
    def num_timesteps(self) -> int:
        return self.y.shape[1]

    @property
    def num_neurons(self) -> int:
        return self.y.shape[2]

    @property
    def bin_mask(self) -> np.ndarray:
        """bool (trials, T): True where at least one neuron is observed in the bin."""
        return self.mask.any(axis=-1)

    def select(self, trials) -> Session:
        """A new session holding only the given trials (indices, slice or boolean array)."""
        picked = {k: getattr(self, k)[trials] for k in _PER_TRIAL if getattr(self, k) is not None}
        out = dataclasses.replace(self, **picked)
        if out.num_trials == 0:
            raise SessionError(f"{self.name}: selecting trials {trials!r} leaves no trials")
        return out


_PER_TRIAL = ("y", "mask", "states", "behavior", "latents", "inputs")


def make_session(
    y,
    mask=None,
    *,
    states=None,
    behavior=None,
    latents=None,
    inputs=None,
    dt: float = 1.0,
    name: str = "session",
    meta: dict | None = None,
    likelihood: str | None = None,
) -> Session:
    """Validate arrays and build a :class:`Session`; raises :class:`SessionError` on bad input.

    Args:
        y: (trials, T, N) observations. NaN entries are an error unless masked out.
        mask: None, bool (trials, T) or (trials, T, N).
        inputs: None or float (trials, T, U), finite everywhere (padded bins included).
        likelihood: if "poisson", counts must be non-negative integers (on observed entries).
    """
    where = name
    y = np.asarray(y)
    if y.size == 0:
        raise SessionError(f"{where}: 'y' is empty (shape {y.shape})")
    if y.ndim != 3:
        raise SessionError(
            f"{where}: 'y' must have shape (trials, T, N), got rank {y.ndim} {y.shape}"
        )
    if np.iscomplexobj(y):
        raise SessionError(f"{where}: 'y' is complex ({y.dtype}); give real values")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise SessionError(f"{where}: 'y' must be numeric, got dtype {y.dtype}")
    y = y.astype(np.float64)
    mask = _full_mask(mask, y.shape, where)
    if not mask.any():
        raise SessionError(f"{where}: every entry of 'y' is masked out; nothing to fit")
    bad = ~np.isfinite(y) & mask
    if bad.any():
        t = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SessionError(
            f"{where}: 'y' has {int(bad.sum())} NaN/Inf entries that are not masked (first at {t})"
        )
    y = np.where(mask, y, 0.0)
    if likelihood is not None and likelihood not in LIKELIHOODS:
        raise SessionError(
            f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}"
        )
    if likelihood == "poisson":
        if (y < 0).any():
            raise SessionError(
                f"{where}: Poisson likelihood needs counts >= 0, 'y' has negative values"
            )
        if not np.allclose(y, np.round(y)):
            raise SessionError(
                f"{where}: Poisson likelihood needs integer counts, 'y' has non-integers"
            )
    observed = y[mask]
    if observed.size > 1 and (observed == observed[0]).all():
        raise SessionError(
            f"{where}: every observed entry of 'y' equals {observed[0]:g}; a constant recording "
            "carries no dynamics to fit"
        )
    trials, T, _ = y.shape
    states = _optional(states, "states", (trials, T), where, np.int32)
    behavior = _optional(behavior, "behavior", (trials, T, None), where, np.float32)
    latents = _optional(latents, "latents", (trials, T, None), where, np.float32)
    inputs = _inputs(inputs, (trials, T), where)
    dt = _seconds(dt, where)
    return Session(
        y=y.astype(np.float32),
        mask=mask,
        states=states,
        behavior=behavior,
        latents=latents,
        inputs=inputs,
        dt=dt,
        name=str(name),
        meta=dict(meta or {}),
    )


def _seconds(dt, where) -> float:
    """``dt`` as a positive finite float; :class:`SessionError` naming 'dt' otherwise."""
    value = np.asarray(dt)
    if value.ndim != 0:
        raise SessionError(
            f"{where}: 'dt' must be a scalar (seconds per bin), got shape {value.shape}"
        )
    if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
        raise SessionError(f"{where}: 'dt' must be a number of seconds, got {value.item()!r}")
    dt = float(value)
    if not np.isfinite(dt) or dt <= 0:
        raise SessionError(f"{where}: 'dt' must be a positive number of seconds, got {dt}")
    return dt


def _full_mask(mask, shape, where) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise SessionError(f"{where}: 'mask' must be boolean (or 0/1), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    if mask.shape == shape[:2]:
        return np.broadcast_to(mask[..., None], shape).copy()
    if mask.shape == shape:
        return mask.copy()
    raise SessionError(
        f"{where}: 'mask' shape {mask.shape} matches neither (trials, T) {shape[:2]} "
        f"nor (trials, T, N) {shape} of 'y'"
    )


def _optional(x, key, shape, where, dtype):
    if x is None:
        return None
    x = np.asarray(x)
    ok = x.ndim == len(shape) and all(
        s is None or s == d for s, d in zip(shape, x.shape, strict=False)
    )
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise SessionError(f"{where}: '{key}' has shape {x.shape}, expected {want}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise SessionError(f"{where}: '{key}' has NaN/Inf entries")
    return x.astype(dtype)


def _inputs(x, trials_T, where):
    """``inputs`` as float32 (trials, T, U) or None; :class:`SessionError` naming 'inputs'."""
    if x is None:
        return None
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[:2] != trials_T:
        raise SessionError(
            f"{where}: 'inputs' has shape {x.shape}, expected (trials, T, U) = "
            f"({trials_T[0]}, {trials_T[1]}, U) like 'y'"
        )
    if x.shape[2] == 0:
        raise SessionError(f"{where}: 'inputs' has no input channels (shape {x.shape})")
    if x.dtype == bool or not (
        np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    ):
        raise SessionError(f"{where}: 'inputs' must be real numbers, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        t = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise SessionError(
            f"{where}: 'inputs' has {int((~np.isfinite(x)).sum())} NaN/Inf entries "
            f"(first at {t}); give 0 at padded bins"
        )
    return x.astype(np.float32)


def load_session(path, likelihood: str | None = None) -> Session:
    """Read and validate a session ``.npz``; raises :class:`SessionError` naming the problem."""
    path = Path(path)
    if not path.exists():
        raise SessionError(f"{path}: no such file")
    if path.is_dir():
        raise SessionError(f"{path}: is a folder, expected a session .npz file")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise SessionError(f"{path}: a single .npy array, expected a session .npz file")
        with f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        if isinstance(e, SessionError):
            raise
        raise SessionError(f"{path}: not a readable .npz file ({e.__class__.__name__})") from None
    if not arrays:
        raise SessionError(f"{path}: empty file (no arrays)")
    if "y" not in arrays:
        raise SessionError(f"{path}: missing required array 'y' (has {', '.join(sorted(arrays))})")
    meta = {}
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError:
            raise SessionError(f"{path}: 'meta' is not a JSON string") from None
        if not isinstance(meta, dict):
            raise SessionError(f"{path}: 'meta' is not a JSON object")
    if "name" in arrays and arrays["name"].ndim != 0:
        raise SessionError(f"{path}: 'name' must be a string, got shape {arrays['name'].shape}")
    name = str(arrays["name"]) if "name" in arrays else path.stem
    try:
        return make_session(
            arrays["y"],
            arrays.get("mask"),
            states=arrays.get("states"),
            behavior=arrays.get("behavior"),
            latents=arrays.get("latents"),
            inputs=arrays.get("inputs"),
            dt=arrays["dt"] if "dt" in arrays else 1.0,
            name=name,
            meta=meta,
            likelihood=likelihood,
        )
    except SessionError as e:
        raise SessionError(f"{path}: {e}".replace(f"{path}: {name}: ", f"{path}: ")) from None


def save_session(path, session: Session) -> Path:
    """Write ``session`` as an ``.npz`` atomically (no half-written file on failure)."""
    path = Path(path)
    arrays = {"y": session.y, "dt": np.float64(session.dt), "name": np.str_(session.name)}
    if not session.mask.all():
        # Store the compact (trials, T) mask when it is the same for every neuron.
        per_bin = session.mask.all(-1)
        compact = (session.mask == per_bin[..., None]).all()
        arrays["mask"] = per_bin if compact else session.mask
    for key in ("states", "behavior", "latents", "inputs"):
        if getattr(session, key) is not None:
            arrays[key] = getattr(session, key)
    if session.meta:
        arrays["meta"] = np.str_(json.dumps(session.meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_sessions(paths, likelihood: str | None = None) -> list[Session]:
    """Load several session files; a folder stands for all ``*.npz`` files in it (sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.npz"))
            if not found:
                raise SessionError(f"{p}: folder holds no .npz session files")
            files.extend(found)
        else:
            files.append(p)
    return [load_session(f, likelihood) for f in files]


def split_trials(session: Session, num_train: int) -> tuple[Session, Session]:
    """First ``num_train`` trials and the rest, as two sessions."""
    if not 0 < num_train < session.num_trials:
        raise SessionError(
            f"{session.name}: cannot split {session.num_trials} trials "
            f"into {num_train} and the rest"
        )
    return session.select(slice(0, num_train)), session.select(slice(num_train, None))
