"""The run folder: ``config.json``, ``params.npz``, ``loss.csv``, ``metrics.json``,
``posterior.nc``.

Parameters are stored leaf by leaf under their pytree paths, so that files stay plain arrays
(no pickled code); loading puts them back into a template with the same structure, which a
family rebuilds from ``config.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

CONFIG = "config.json"
PARAMS = "params.npz"
METRICS = "metrics.json"
POSTERIOR = "posterior.nc"


class RunError(ValueError):
    """A run folder that is missing or unreadable; the message names the problem."""


def save_params(path, params) -> None:
    """Write a params pytree as an ``.npz`` keyed by pytree paths."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    arrays = {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}
    np.savez(path, **arrays)


def load_params(path, template):
    """Read ``params.npz`` into the structure of ``template`` (same paths and shapes)."""
    with np.load(path) as f:
        saved = {k: f[k] for k in f.files}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    values = []
    for p, v in leaves:
        key = jax.tree_util.keystr(p)
        if key not in saved:
            raise RunError(
                f"{path}: parameter {key} is missing; was the run made by another version?"
            )
        if saved[key].shape != np.shape(v):
            raise RunError(
                f"{path}: parameter {key} has shape {saved[key].shape}, expected {np.shape(v)}"
            )
        values.append(saved[key])
    return jax.tree_util.tree_unflatten(treedef, values)


def write_json(path, obj) -> None:
    """Write ``obj`` as strict JSON (see :func:`json_text`)."""
    Path(path).write_text(json_text(obj) + "\n")


def json_text(obj) -> str:
    """``obj`` as strict JSON (no ``NaN`` or ``Infinity``, which JSON does not have): every
    non-finite number becomes ``null`` and, inside a mapping, gets a note under ``<key>_note``
    beside it unless the producer already wrote one there (a precise reason)."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False)


def _finite(x):
    """A JSON-ready copy of ``x``: numbers finite or None (see :func:`json_text`)."""
    if isinstance(x, np.ndarray | np.generic):
        x = x.tolist()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        out = {}
        for key, value in x.items():
            out[key] = _finite(value)
            note = f"{key}_note"
            if note not in x and _lost_numbers(value):
                out[note] = f"not computable: the value was {_describe(value)}"
        return out
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if x is None or isinstance(x, str | bool | int):
        return x
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _lost_numbers(x) -> bool:
    """Whether ``x`` is, or is a list holding, a non-finite number (nested mappings carry
    their own notes)."""
    if isinstance(x, np.ndarray | np.generic):
        x = x.tolist()
    if isinstance(x, float):
        return not np.isfinite(x)
    if isinstance(x, list | tuple):
        return any(_lost_numbers(v) for v in x)
    return False


def _describe(x) -> str:
    if isinstance(x, np.ndarray | np.generic):
        x = x.tolist()
    if isinstance(x, list | tuple):
        return "partly " + "/".join(sorted({_describe(v) for v in x if _lost_numbers(v)}))
    return str(x)


def read_config(run_dir) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if not path.exists():
        raise RunError(f"{run_dir}: not a run folder (no {CONFIG})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise RunError(f"{path}: not valid JSON") from None


@contextlib.contextmanager
def staged_folder(out_dir):
    """Yield a temporary folder beside ``out_dir``; on success it replaces ``out_dir``'s
    contents, on any error it is removed, so nothing half-written is left behind."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        backup = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(out_dir, backup)
        os.replace(tmp, out_dir)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
