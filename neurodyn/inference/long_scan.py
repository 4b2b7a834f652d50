"""``lax.scan`` that trades compute for memory on long sequences.

Reverse-mode autodiff of a scan keeps every step's intermediate values for the backward pass:
for a GRU cell or a forward recursion that is several vectors per bin, and at T = 10^4 bins,
64 trials, it is what fills memory. Above :data:`REMAT_FROM` steps the step function is wrapped
in ``jax.checkpoint``: the backward pass keeps only the carries and recomputes each step's
inside (about one more forward pass of the step). Shorter scans, the usual case, run as they
are: there the memory is small and the recomputation would only cost time.
"""

from __future__ import annotations

import jax
from jax import lax

REMAT_FROM = 2048  # steps; a static shape, so the choice is made once per compilation


def scan(step, init, xs, *, length=None, reverse=False):
    """``lax.scan(step, init, xs, ...)``, with ``step`` checkpointed for long sequences."""
    num_steps = length if length is not None else _length(xs)
    if num_steps is not None and num_steps >= REMAT_FROM:
        step = jax.checkpoint(step)
    return lax.scan(step, init, xs, length=length, reverse=reverse)


def _length(xs):
    leaves = jax.tree_util.tree_leaves(xs)
    return leaves[0].shape[0] if leaves else None
