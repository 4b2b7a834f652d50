"""One SVI engine for every model/guide pair.

``fit(model, guide, data, ...)`` runs stochastic variational inference with an optax optimizer
(Adam with gradient clipping by default) on trial minibatches. Model and guide are plain NumPyro
functions called as ``fn(batch, **kwargs)``, where ``batch`` holds the minibatch's arrays and the
keyword arguments include ``num_trials`` (the full data size, for the plate's ELBO scaling) and,
if the function accepts it, ``step`` (a traced int, for annealing schedules).

Why a loop of our own rather than ``SVI.run``: we need chunked, jitted steps (``lax.scan`` over
a chunk amortises Python dispatch), checkpoints that resume bit-for-bit, a plateau stop, and
minibatch keys that depend only on (seed, step) so that a resumed run retraces the same curve.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.optim import optax_to_numpyro

from .run_folder import pause_for_tests

CHECKPOINT = "checkpoint.npz"
OLD_CHECKPOINT = "checkpoint.pkl"  # pickles of older versions: refused, never loaded
LOSS_CSV = "loss.csv"
CHECKPOINT_EVERY = 250  # steps between checkpoints when a fit writes into a folder


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
        params: constrained parameters (pytree of numpy arrays).
        losses: float (steps_run,) loss (negative ELBO, full-data scale) per step.
        steps_run: number of optimisation steps taken in total (including resumed ones).
        stopped_early: True if the plateau rule or the ``stop`` rule ended the run.
        interrupted: True if Ctrl-C ended the run (a checkpoint was written if out_dir is set).
        seconds: wall time of this call (compilation included).
        compile_seconds: the part of it spent compiling the SVI step (XLA).
    """

    params: Any
    losses: np.ndarray
    steps_run: int
    stopped_early: bool
    interrupted: bool
    seconds: float
    compile_seconds: float = 0.0


class OrderedTrace_ELBO(Trace_ELBO):
    """``Trace_ELBO`` with its sites summed in sorted name order.

    NumPyro sums the per-site terms in the order of a ``set`` of site names, which changes with
    Python's hash seed from one process to the next: the loss (not its gradient, whose terms
    are independent of the order) then differs in the last bits between two identical fits.
    Summed in a fixed order, the same seed gives a bit-equal loss curve.
    """

    def __init__(self, num_particles: int = 1, **kwargs):
        super().__init__(num_particles=num_particles, sum_sites=False, **kwargs)

    def loss_with_mutable_state(self, *args, **kwargs):
        out = super().loss_with_mutable_state(*args, **kwargs)
        loss = out["loss"]
        if isinstance(loss, dict):
            loss = sum((loss[k] for k in sorted(loss)), start=jnp.array(0.0))
        return {**out, "loss": loss}


def default_optimizer(learning_rate=1e-2, clip_norm: float | None = 10.0):
    """Adam with gradient clipping by global norm; ``learning_rate`` may be an optax schedule."""
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    return optax.chain(*parts, optax.adam(learning_rate))


def trial_sampler(num_trials: int, batch_size: int | None):
    """Minibatch rule for data whose arrays share a leading trial axis.

    Returns ``sample(key, data) -> batch``, a pure function that draws ``batch_size`` trials
    without replacement (all trials, in order, when ``batch_size`` is None or >= num_trials).
    """
    if batch_size is None or batch_size >= num_trials:
        return lambda key, data: data

    def sample(key, data):
        idx = jax.random.choice(key, num_trials, (batch_size,), replace=False)
        return jax.tree_util.tree_map(lambda x: x[idx], data)

    return sample


def _mesh(devices):
    return jax.sharding.Mesh(np.asarray(devices), ("trials",))


def _replicated(devices):
    return jax.sharding.NamedSharding(_mesh(devices), jax.sharding.PartitionSpec())


def _sharded(sampler, devices):
    """Wrap ``sampler`` so that its minibatch is split along the trial axis across ``devices``."""
    by_trial = jax.sharding.NamedSharding(_mesh(devices), jax.sharding.PartitionSpec("trials"))

    def sample(key, data):
        batch = sampler(key, data)
        sizes = {np.shape(x)[0] for x in jax.tree_util.tree_leaves(batch)}
        if any(size % len(devices) for size in sizes):
            raise ValueError(
                f"a minibatch of {sorted(sizes)} trials does not split evenly across "
                f"{len(devices)} devices; choose a batch size that is a multiple of it"
            )
        return jax.lax.with_sharding_constraint(batch, by_trial)

    return sample


def plateaued(losses: np.ndarray, patience: int, min_delta: float = 1e-3) -> bool:
    """True when the mean loss of the last ``patience`` steps is not below the mean of the
    ``patience`` steps before by more than ``min_delta`` (relative). A pure function of the loss
    history, so a resumed run stops exactly where the uninterrupted one would."""
    if patience <= 0 or len(losses) < 2 * patience:
        return False
    recent = float(np.mean(losses[-patience:]))
    before = float(np.mean(losses[-2 * patience : -patience]))
    return before - recent <= min_delta * max(abs(before), 1.0)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def fit(
    model: Callable,
    guide: Callable,
    data: Mapping[str, Any],
    *,
    num_steps: int,
    seed: int = 0,
    batch_size: int | None = None,
    num_trials: int | None = None,
    sampler: Callable | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate=1e-2,
    clip_norm: float | None = 10.0,
    loss=None,
    model_kwargs: Mapping[str, Any] | None = None,
    patience: int | None = None,
    min_delta: float = 1e-3,
    min_steps: int = 0,
    stop: Callable[[np.ndarray], bool] | None = None,
    checkpoint_every: int | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    chunk_size: int = 25,
    progress: bool = True,
    init_params: Mapping[str, Any] | None = None,
    devices: Sequence | None = None,
) -> FitResult:
    """Fit ``guide`` to ``model``'s posterior by SVI.

    Args:
        model, guide: NumPyro functions ``fn(batch, *, num_trials, [step], **model_kwargs)``.
        data: mapping of arrays with a leading trial axis (default sampler), or anything the
            custom ``sampler`` understands.
        num_steps: total number of steps (a resumed run continues up to this number).
        seed: seed of everything random (initialisation, minibatches, ELBO estimates).
        batch_size: trials per step (None = all); the plate scales the ELBO to ``num_trials``.
        num_trials: full data size; default the leading axis of the first array in ``data``.
        sampler: ``sample(key, data) -> batch``; default :func:`trial_sampler`.
        optimizer: an optax transformation; default :func:`default_optimizer`.
        loss: a NumPyro ELBO; default :class:`OrderedTrace_ELBO` (``Trace_ELBO`` summed in a
            fixed order, so that the same seed gives a bit-equal loss curve in any process).
        patience: stop when :func:`plateaued` says so (checked every chunk); None = never.
        min_steps: never stop on a plateau before this step (e.g. while an annealed term is on).
        stop: ``stop(losses) -> bool`` on the float (steps_run,) loss history, checked every
            chunk from ``min_steps`` on (e.g. a convergence check); True ends the run. Being a
            function of the loss history alone, it stops a resumed run where the uninterrupted
            one would stop.
        checkpoint_every: write a checkpoint every this many steps (rounded up to a chunk);
            default :data:`CHECKPOINT_EVERY` when ``out_dir`` is set. A checkpoint is also
            written on Ctrl-C and at the end (so that ``resume`` of a finished fit refits
            nothing).
        out_dir: folder for ``loss.csv`` and checkpoints (None = keep nothing on disk).
        resume: continue from ``out_dir``'s checkpoint; the curve equals the uninterrupted one.
        chunk_size: steps per jitted ``lax.scan`` chunk.
        init_params: values for some param sites at initialisation (e.g. a warm start).
        devices: data parallelism: the trials of each minibatch are split across these devices
            (``jax.devices()`` for all), parameters are replicated and XLA reduces the
            gradients. The default sampler's minibatch size must divide evenly.
    """
    start_time = time.perf_counter()
    model_kwargs = dict(model_kwargs or {})
    if num_trials is None:
        num_trials = int(np.shape(next(iter(jax.tree_util.tree_leaves(data))))[0])
    model_kwargs.setdefault("num_trials", num_trials)
    sampler = sampler or trial_sampler(num_trials, batch_size)
    if devices is not None and len(devices) > 1:
        sampler = _sharded(sampler, devices)
    optimizer = optimizer or default_optimizer(learning_rate, clip_norm)
    svi = SVI(model, guide, optax_to_numpyro(optimizer), loss or OrderedTrace_ELBO())
    pass_step = _accepts(model, "step") and _accepts(guide, "step")
    data = jax.tree_util.tree_map(jnp.asarray, data)
    out_dir = Path(out_dir) if out_dir is not None else None
    if checkpoint_every is None and out_dir is not None:
        checkpoint_every = CHECKPOINT_EVERY
    if checkpoint_every:
        chunk_size = min(chunk_size, checkpoint_every)

    init_key, batch_key = jax.random.split(jax.random.PRNGKey(seed))

    def kwargs_at(step):
        return {**model_kwargs, "step": step} if pass_step else model_kwargs

    def one_step(state, step):
        batch = sampler(jax.random.fold_in(batch_key, step), data)
        return svi.update(state, batch, **kwargs_at(step))

    @jax.jit
    def run_chunk(state, steps):
        return jax.lax.scan(one_step, state, steps)

    # init always runs: it also sets up the SVI object's constraint transforms.
    sample_key, svi_key = jax.random.split(init_key)
    state = svi.init(
        svi_key, sampler(sample_key, data), init_params=init_params, **kwargs_at(jnp.asarray(0))
    )
    losses = np.zeros((0,), np.float32)
    done = False
    if resume:
        state, losses, saved = _load_checkpoint(out_dir, state)
        # a fit that ended by its plateau rule with this budget is not continued
        done = bool(saved.get("stopped_early")) and saved.get("num_steps") == num_steps
    stopped_early = done
    if devices is not None and len(devices) > 1:
        state = jax.device_put(state, _replicated(devices))
    step0 = len(losses)
    writer = _LossWriter(out_dir, step0, resume) if out_dir is not None else None
    bar = _progress_bar(progress, num_steps, step0)
    interrupted = False
    last_checkpoint = step0
    # Compile the full-length chunk ahead of time, so that its cost is known apart.
    compile_start = time.perf_counter()
    compiled = run_chunk.lower(state, jnp.arange(chunk_size)).compile() if not done else None
    compile_seconds = time.perf_counter() - compile_start
    try:
        step = step0
        while step < num_steps and not done:
            n = min(chunk_size - step % chunk_size, num_steps - step)
            chunk = compiled if n == chunk_size else run_chunk
            state, chunk_losses = chunk(state, jnp.arange(step, step + n))
            chunk_losses = np.asarray(chunk_losses)
            losses = np.concatenate([losses, chunk_losses])
            step += n
            if writer:
                writer.write(chunk_losses, time.perf_counter() - start_time)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(loss=f"{np.mean(chunk_losses):.4g}")
            if not np.isfinite(chunk_losses).all():
                first_bad = step - n + int(np.argmin(np.isfinite(chunk_losses)))
                raise FloatingPointError(f"the loss became NaN/Inf at step {first_bad}")
            if out_dir and checkpoint_every and step - last_checkpoint >= checkpoint_every:
                _save_checkpoint(out_dir, state, losses)
                last_checkpoint = step
                pause_for_tests("svi")
            if step >= min_steps and (
                (patience and plateaued(losses, patience, min_delta)) or (stop and stop(losses))
            ):
                stopped_early = True
                break
    except KeyboardInterrupt:
        interrupted = True
        if out_dir is not None:
            _save_checkpoint(out_dir, state, losses)
    finally:
        if bar is not None:
            bar.close()
        if writer:
            writer.close()
    if out_dir is not None and not interrupted:  # the final state: --resume need not refit
        _save_checkpoint(out_dir, state, losses, stopped_early=stopped_early, num_steps=num_steps)
    params = jax.device_get(svi.get_params(state))
    return FitResult(
        params=params,
        losses=losses,
        steps_run=len(losses),
        stopped_early=stopped_early,
        interrupted=interrupted,
        seconds=time.perf_counter() - start_time,
        compile_seconds=compile_seconds,
    )


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="SVI", unit="step", dynamic_ncols=True)


class _LossWriter:
    """Appends ``step,loss,seconds`` rows to ``loss.csv``; on resume, keeps the first rows."""

    def __init__(self, out_dir: Path, step0: int, resume: bool):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / LOSS_CSV
        rows = []
        if resume and path.exists():
            with open(path, newline="") as f:
                rows = list(csv.reader(f))[1 : step0 + 1]
        self.offset = float(rows[-1][2]) if rows else 0.0
        self.step = step0
        self.file = open(path, "w", newline="")
        self.csv = csv.writer(self.file)
        self.csv.writerow(["step", "loss", "seconds"])
        self.csv.writerows(rows)

    def write(self, losses, seconds):
        for loss in losses:
            self.csv.writerow([self.step, f"{loss:.6g}", f"{self.offset + seconds:.3f}"])
            self.step += 1
        self.file.flush()

    def close(self):
        self.file.close()


def _save_checkpoint(out_dir: Path, state, losses, **info) -> None:
    """Write ``checkpoint.npz``: the SVI state's leaves keyed by pytree path, ``losses`` and a
    JSON string ``info`` (plain arrays only: loading it can run no code)."""
    from .runs import save_tree

    out_dir.mkdir(parents=True, exist_ok=True)
    save_tree(
        out_dir / CHECKPOINT,
        jax.device_get(state),
        losses=np.asarray(losses),
        info=np.str_(json.dumps(info)),
    )


def _load_checkpoint(out_dir: Path | None, template):
    """(state, losses, info) from ``checkpoint.npz``, put into ``template`` (the state that
    ``svi.init`` builds: same paths, shapes and dtypes). An old ``checkpoint.pkl`` is refused
    without being read."""
    from .runs import RunError, load_tree, read_npz

    path = (out_dir or Path(".")) / CHECKPOINT
    if out_dir is not None and not path.exists() and (out_dir / OLD_CHECKPOINT).exists():
        raise RunError(
            f"{out_dir / OLD_CHECKPOINT}: a pickled checkpoint of an older version is not loaded "
            "(unpickling can run code); refit with --overwrite"
        )
    if out_dir is None or not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    saved = read_npz(path)
    for key in ("losses", "info"):
        if key not in saved:
            raise RunError(f"{path}: not a checkpoint (no {key!r})")
    try:
        info = json.loads(str(saved.pop("info")))
    except ValueError:
        raise RunError(f"{path}: 'info' is not a JSON string") from None
    losses = saved.pop("losses")
    if losses.ndim != 1 or not np.isfinite(losses).all():
        raise RunError(f"{path}: 'losses' is not a finite 1-d array")
    state = load_tree(path, jax.device_get(template), saved, what="state leaf")
    state = jax.tree_util.tree_map(jnp.asarray, state)
    return state, losses, info if isinstance(info, dict) else {}
