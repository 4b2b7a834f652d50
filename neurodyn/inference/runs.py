"""The run folder: ``config.json``, ``params.npz``, ``loss.csv``, ``metrics.json``,
``posterior.nc``.

Parameters are stored leaf by leaf under their pytree paths, so that files stay plain arrays
(no pickled code); loading puts them back into a template with the same structure, which a
family rebuilds from ``config.json``.
"""

from __future__ import annotations

import json
import os
import zipfile
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
    """Write a params pytree as an ``.npz`` keyed by pytree paths (atomically: a temporary file
    renamed into place)."""
    save_tree(path, params)


def save_tree(path, tree, **extra) -> None:
    """Write a pytree's leaves (and ``extra`` arrays) as an ``.npz`` keyed by pytree paths,
    atomically."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays, **extra)
    os.replace(tmp, path)


def read_npz(path) -> dict:
    """The arrays of an ``.npz`` (never unpickling anything); ``RunError`` naming the file."""
    path = Path(path)
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise RunError(f"{path}: a single .npy array, not an .npz file")
        with f:
            return {k: f[k] for k in f.files}
    except RunError:
        raise
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise RunError(f"{path}: not a readable .npz file ({type(e).__name__})") from None


def load_tree(path, template, saved=None, *, what="parameter"):
    """Read an ``.npz`` written by :func:`save_tree` into the structure of ``template`` (same
    paths, shapes and dtypes kinds); ``RunError`` naming the file and key otherwise."""
    saved = read_npz(path) if saved is None else saved
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    values = []
    for p, v in leaves:
        key = jax.tree_util.keystr(p)
        if key not in saved:
            raise RunError(f"{path}: {what} {key} is missing; was it made by another version?")
        if saved[key].shape != np.shape(v):
            raise RunError(
                f"{path}: {what} {key} has shape {saved[key].shape}, expected {np.shape(v)}"
            )
        want = np.asarray(v).dtype
        if saved[key].dtype.kind != want.kind and not (
            saved[key].dtype.kind in "iu" and want.kind in "iu"
        ):
            raise RunError(f"{path}: {what} {key} has dtype {saved[key].dtype}, expected {want}")
        if saved[key].dtype.kind in "fc" and not np.isfinite(saved[key]).all():
            raise RunError(f"{path}: {what} {key} holds NaN/Inf values")
        values.append(saved[key].astype(want, copy=False))
    return jax.tree_util.tree_unflatten(treedef, values)


def load_params(path, template):
    """Read ``params.npz`` into the structure of ``template`` (same paths and shapes); NaN/Inf
    values, a missing key or an unreadable file raise :class:`RunError` naming the file."""
    return load_tree(path, template)


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


def read_json(path) -> dict:
    """A JSON object written by the package (e.g. ``metrics.json``); {} when absent."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunError(f"{path}: not valid JSON") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: not a JSON object")
    return value


def read_config(run_dir) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if not path.exists():
        raise RunError(f"{run_dir}: not a run folder (no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunError(f"{path}: not valid JSON") from None
    except OSError as e:
        raise RunError(f"{path}: cannot be read ({e.strerror})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise RunError(f"{path}: not a run config (a JSON object with a 'model' name)")
    return config
