"""Priors as arguments: defaults per model, overridden by the user without editing the model.

A model takes ``priors: Mapping[str, Distribution]``; :func:`resolve` merges the user's choices
over the model's documented defaults and rejects names the model does not have. On the command
line a prior is ``SITE=SPEC`` where SPEC is a small expression in NumPyro distribution names and
numbers, e.g. ``embedding=StudentT(3, 0, 1)`` or ``transition_stickiness=Gamma(10, 1)``.

A bare number, e.g. ``transition_stickiness=100``, is a point mass (``dist.Delta``): it fixes a
hyperparameter instead of giving it a hyperprior. Only sites whose default is itself a point mass
(fixed hyperparameters such as the switching family's ``transition_stickiness``) accept one; a
model's random variables need a distribution.
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
    only, as positional or keyword arguments. A bare number ``"100"`` -> ``dist.Delta(100.0)``."""
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise PriorError(f"cannot parse prior {spec!r}; write e.g. Normal(0, 1)") from None
    if _is_number(node):
        return point_mass(_number(node))
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise PriorError(f"prior {spec!r} must be a call like Normal(0, 1) or a number")
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


def point_mass(value: float) -> dist.Delta:
    """A fixed value as a (scalar) prior."""
    if not np.isfinite(value):
        raise PriorError(f"a fixed prior value must be finite, got {value!r}")
    return dist.Delta(np.float32(value))  # numpy: stays concrete under jit


def _is_number(node) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


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


def resolve(defaults: Mapping[str, dist.Distribution | None], user: Mapping | None) -> dict:
    """Defaults overridden by ``user`` (distributions, spec strings or numbers); unknown sites
    are errors, and so is a fixed number for a site whose default is not a point mass."""
    user = dict(user or {})
    unknown = sorted(set(user) - set(defaults))
    if unknown:
        raise PriorError(
            f"no prior site named {', '.join(map(repr, unknown))}; this model has "
            f"{', '.join(sorted(defaults))}"
        )
    out = dict(defaults)
    for site, value in user.items():
        if isinstance(value, int | float | np.number) and not isinstance(value, bool):
            value = point_mass(float(value))
        elif isinstance(value, str):
            value = parse(value)
        if isinstance(value, dist.Delta) and not isinstance(defaults[site], dist.Delta):
            raise PriorError(
                f"prior of {site!r} must be a distribution, e.g. Normal(0, 1); a bare number "
                "fixes only hyperparameters"
            )
        out[site] = value
    return out
