"""Priors as arguments: defaults per model, overridden by the user without editing the model.

A model takes ``priors: Mapping[str, Distribution]``; :func:`resolve` merges the user's choices
over the model's documented defaults and rejects names the model does not have. On the command
line a prior is ``SITE=SPEC`` where SPEC is a small expression in NumPyro distribution names and
numbers, e.g. ``embedding=StudentT(3, 0, 1)`` or ``transition_stickiness=Gamma(10, 1)``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numpy as np
import numpyro.distributions as dist

# Distributions allowed in a spec: the ones a user of these models plausibly wants.
_ALLOWED = (
    "Normal",
    "StudentT",
    "Laplace",
    "Cauchy",
    "HalfNormal",
    "HalfCauchy",
    "LogNormal",
    "Gamma",
    "InverseGamma",
    "Exponential",
    "Beta",
    "Uniform",
    "Dirichlet",
)


class PriorError(ValueError):
    """A prior spec or site name that cannot be used; the message names the problem."""


def parse(spec: str) -> dist.Distribution:
    """``"StudentT(3, 0, 1)"`` -> ``dist.StudentT(3.0, 0.0, 1.0)``; numbers and lists of numbers
    only, as positional or keyword arguments."""
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise PriorError(f"cannot parse prior {spec!r}; write e.g. Normal(0, 1)") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise PriorError(f"prior {spec!r} must be a call like Normal(0, 1)")
    name = node.func.id
    if name not in _ALLOWED:
        raise PriorError(f"unknown distribution {name!r} in {spec!r}; known: {', '.join(_ALLOWED)}")
    try:
        args = [_number(a) for a in node.args]
        kwargs = {k.arg: _number(k.value) for k in node.keywords}
    except ValueError:
        raise PriorError(f"prior {spec!r}: arguments must be numbers or lists of numbers") from None
    try:
        return getattr(dist, name)(*args, **kwargs, validate_args=True)
    except (TypeError, ValueError) as e:
        raise PriorError(f"prior {spec!r}: {e}") from None


def _number(node):
    value = ast.literal_eval(node)
    ok = isinstance(value, int | float) or (
        isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value)
    )
    if not ok or isinstance(value, bool):
        raise ValueError(node)
    return np.asarray(value, np.float32) if isinstance(value, list | tuple) else float(value)


def parse_assignments(items) -> dict[str, str]:
    """``["a=Normal(0,1)", ...]`` -> ``{"a": "Normal(0,1)"}``; each spec is checked."""
    out = {}
    for item in items or ():
        site, sep, spec = item.partition("=")
        if not sep or not site.strip():
            raise PriorError(f"--prior {item!r}: expected SITE=SPEC, e.g. embedding=Normal(0, 1)")
        parse(spec)
        out[site.strip()] = spec.strip()
    return out


def resolve(defaults: Mapping[str, dist.Distribution], user: Mapping | None) -> dict:
    """Defaults overridden by ``user`` (distributions or spec strings); unknown sites are errors."""
    user = dict(user or {})
    unknown = sorted(set(user) - set(defaults))
    if unknown:
        raise PriorError(
            f"no prior site named {', '.join(map(repr, unknown))}; this model has "
            f"{', '.join(sorted(defaults))}"
        )
    return {**defaults, **{k: parse(v) if isinstance(v, str) else v for k, v in user.items()}}
