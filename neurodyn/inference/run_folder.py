"""Output paths, locks and in-place staging: nothing of the user's is ever deleted.

- :func:`check_out` validates an output path before any work (an existing file, a folder that
  holds other files, an unwritable place, a missing parent of a ``--json`` file), raising
  :class:`~neurodyn.inference.runs.RunError` with a one-line message naming the option.
- :func:`lock` holds ``FOLDER/.lock`` (created with ``O_EXCL``, holding the pid) while a command
  writes into a folder; a second writer is refused, the lock of a dead process is taken over.
- :func:`staged_files` stages files in ``FOLDER/.staging/`` and moves them in when complete.
- A run folder being fitted holds ``.incomplete`` until its last file is written, so that a
  killed fit is found by ``--resume`` (the folder, its ``config.json`` and checkpoint are in
  place).
- :func:`fingerprint` is what ``--resume`` compares: a sha256 of the data and the options.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .runs import CONFIG, METRICS, PARAMS, POSTERIOR, RunError

LOCK = ".lock"
INCOMPLETE = ".incomplete"
STAGING = ".staging"
FINGERPRINT = "resume_check"  # config.json key: {"data_sha256": str, "options": {...}}
PAUSE_ENV = "NEURODYN_TEST_PAUSE_AT"  # tests only: warm_start | svi | evaluation
KINDS = ("run", "report", "recordings", "npz", "nc", "json", "png")
# the files a fit writes into a run folder (all that --overwrite or a failed fit removes)
RUN_FILES = (
    CONFIG,
    PARAMS,
    METRICS,
    POSTERIOR,
    "loss.csv",
    "checkpoint.npz",
    "checkpoint.pkl",
    "embeddings.json",
    ".checkpoint.tmp.npz",
    ".params.tmp.npz",
    INCOMPLETE,
)


def is_run(folder: Path) -> bool:
    """True for a folder holding a run's ``config.json``."""
    return (Path(folder) / CONFIG).is_file()


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name not in (LOCK, STAGING, INCOMPLETE)]


def _writable_ancestor(path: Path, option: str) -> None:
    """Raise unless the nearest existing ancestor of ``path`` (or ``path``) is a writable
    folder."""
    probe = path
    if probe.is_file():  # replaced by a rename in its folder
        if not os.access(probe, os.W_OK):
            raise RunError(f"{option} {path}: is not writable")
        probe = probe.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise RunError(f"{option} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunError(f"{option} {path}: {probe} is not writable")


def check_out(path, kind: str, *, option: str = "--out", resume=False, overwrite=False) -> Path:
    """Check an output path before any work; returns it as a ``Path``.

    Args:
        kind: ``run`` (a run folder: new, empty, or an existing run with ``resume`` or
            ``overwrite``), ``report`` (a folder: new, empty, or one holding only PNG figures),
            ``recordings`` (a folder of session files; existing ones need ``overwrite``),
            ``npz`` / ``nc`` (one session / NetCDF file; an existing one needs ``overwrite``)
            ``png`` (a figure file whose folder exists; an existing one must be a PNG) or
            ``json`` (a file
            whose folder exists; an existing file must be JSON, i.e. an earlier output).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    path = Path(path)
    if str(path) == "":
        raise RunError(f"{option}: empty path")
    if kind == "json":
        if path.is_dir():
            raise RunError(f"{option} {path}: is a folder; give a file name")
        if not path.parent.is_dir():
            raise RunError(f"{option} {path}: folder {path.parent} does not exist")
        if path.exists() and not _is_json(path):
            raise RunError(f"{option} {path}: exists and is not a JSON file; it is not replaced")
        if path.name in RUN_FILES and is_run(path.parent):
            raise RunError(f"{option} {path}: is a file of the run in {path.parent}")
        _writable_ancestor(path, option)
        return path
    if kind == "png":
        if path.suffix.lower() != ".png":
            raise RunError(f"{option} {path}: give a .png file name")
        if path.is_dir() or not path.parent.is_dir():
            raise RunError(f"{option} {path}: is a folder, or its folder does not exist")
        _writable_ancestor(path, option)
        return path
    if kind in ("npz", "nc"):
        if path.is_dir():
            raise RunError(f"{option} {path}: is a folder; give a .{kind} file name")
        if kind == "nc" and not path.parent.is_dir():
            raise RunError(f"{option} {path}: folder {path.parent} does not exist")
        if path.exists() and not overwrite:
            raise RunError(f"{option} {path}: file exists; add --overwrite to replace it")
        _writable_ancestor(path, option)
        return path
    if path.exists() and not path.is_dir():
        raise RunError(f"{option} {path}: is an existing file, not a folder; it is not replaced")
    _writable_ancestor(path, option)
    if kind == "run" and resume:
        if not path.is_dir():
            raise RunError(f"{option} {path}: no such run folder to resume")
        if not is_run(path):
            raise RunError(f"{option} {path}: not a run folder (no {CONFIG}); nothing to resume")
        return path
    if not path.is_dir():
        return path
    files = _visible(path)
    if not files:
        return path
    if kind == "run":
        if not is_run(path):
            raise RunError(
                f"{option} {path}: folder holds other files and is not a run folder; "
                "choose a new or empty folder"
            )
        if not overwrite:
            raise RunError(
                f"{option} {path}: is an existing run; add --resume to continue it or "
                "--overwrite to replace it"
            )
    elif kind == "report":
        if any(p.suffix != ".png" or not p.is_file() for p in files):
            raise RunError(
                f"{option} {path}: folder holds files other than report figures; choose a new "
                "or empty folder"
            )
    elif kind == "recordings":
        if any(p.suffix != ".npz" or not p.is_file() for p in files):
            raise RunError(
                f"{option} {path}: folder holds files other than session files; choose a new "
                "or empty folder"
            )
        if not overwrite:
            raise RunError(f"{option} {path}: folder holds session files; add --overwrite")
    return path


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def lock(folder):
    """Hold ``folder/.lock`` (holding this pid) while writing; ``RunError`` if a live process
    holds it. A lock left by a dead process is taken over, with a note on stderr."""
    path = Path(folder) / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise RunError(
                    f"{folder}: another neurodyn process (pid {pid}) is writing this folder"
                ) from None
            if pid == 0 and time.time() - _mtime(path) < 5:  # being written just now
                raise RunError(
                    f"{folder}: another neurodyn process is writing this folder"
                ) from None
            print(
                f"note: {path}: taking over the lock of process {pid}, which ended", file=sys.stderr
            )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    else:
        raise RunError(f"{folder}: another neurodyn process is writing this folder")
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@contextlib.contextmanager
def staged_files(out_dir):
    """Yield ``out_dir/.staging``; on success its files are moved into ``out_dir`` (replacing
    files of the same names only), on any error it is removed, and so is ``out_dir`` if this
    call created it. Other files in ``out_dir`` are never touched. ``out_dir`` is locked."""
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with lock(out_dir):
            tmp = out_dir / STAGING
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                yield tmp
                for f in sorted(tmp.iterdir()):
                    os.replace(f, out_dir / f.name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when empty
        raise


def remove_run_files(folder: Path) -> None:
    """Remove the files a fit writes (:data:`RUN_FILES`) from ``folder``; nothing else."""
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (Path(folder) / name).unlink()


def data_sha256(sessions) -> str:
    """sha256 of each session's ``y`` (float32) and ``mask`` with their shapes, in order."""
    import numpy as np

    h = hashlib.sha256()
    for s in sessions:
        for a in (np.asarray(s.y, np.float32), np.asarray(s.mask, bool)):
            h.update(repr(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


RESUME_OPTIONS = (
    "states",
    "latent_dim",
    "embedding_dim",
    "rank",
    "likelihood",
    "guide",
    "priors",
    "seed",
    "batch_size",
)


def given_options(options: dict) -> dict:
    """The model options the user gave (None and empty ones left out), JSON-normalised."""
    given = {k: options.get(k) for k in RESUME_OPTIONS}
    given = {k: v for k, v in given.items() if v is not None and v != {}}
    return json.loads(json.dumps(given, default=str))


def fingerprint(sessions, options: dict) -> dict:
    """What ``--resume`` checks: the data's sha256 and the options given at fit time."""
    return {"data_sha256": data_sha256(sessions), "options": given_options(options)}


def pause_for_tests(phase: str) -> None:
    """Tests only: when ``NEURODYN_TEST_PAUSE_AT`` is ``phase``, touch the file named by
    ``NEURODYN_TEST_PAUSE_FILE`` and sleep (so that a test can send a signal in that phase)."""
    if os.environ.get(PAUSE_ENV) != phase:
        return
    Path(os.environ["NEURODYN_TEST_PAUSE_FILE"]).write_text(phase)
    time.sleep(float(os.environ.get("NEURODYN_TEST_PAUSE_SECONDS", "60")))
