"""Network weights as parameters or as random variables, for every model family.

A weight-prior site (e.g. ``dynamics_weights``) is ``None`` by default: the weights of its
Equinox module are parameters (``eqx_module``, point estimates). Given a scalar distribution on
the real line, every entry of every inexact array of the module gets that prior
(``random_eqx_module``) and the weights become global sample sites named
``"<module>.<array path>"`` (e.g. ``"dynamics.weights[0]"``), which a guide of their own
(:func:`neurodyn.guides.weights.weight_guide`) fits. The scope divider "." keeps the names valid
variable names in ``posterior.nc``.
"""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
from numpyro.contrib.module import eqx_from_dict, eqx_module, eqx_to_dict, random_eqx_module
from numpyro.distributions import constraints

from .priors import PriorError


def check_scalar_on(prior, site: str, where: str) -> None:
    """``PriorError`` unless ``prior`` is a scalar distribution (``where`` names its support)."""
    if prior.batch_shape or prior.event_shape:
        raise PriorError(f"the prior of {site} must be a scalar distribution on {where}")


def check_weight_prior(prior, site: str) -> None:
    """A weight prior must be ``None`` or a scalar distribution on the real line."""
    if prior is None:
        return
    check_scalar_on(prior, site, "the real line, e.g. Normal(0, 1)")
    if prior.support is not constraints.real:
        raise PriorError(
            f"the prior of {site} must live on the real line, e.g. Normal(0, 1); "
            f"{type(prior).__name__} has support {prior.support}"
        )


def array_priors(module, prior) -> dict:
    """{array path: prior} for every non-empty inexact array of an Equinox module."""
    arrays = eqx_to_dict(eqx.filter(module, eqx.is_inexact_array))
    return {path: prior for path, x in arrays.items() if x.size}


def weight_sites(modules: Mapping, priors: Mapping) -> list[str]:
    """Names of the sample sites that ``priors`` ({module name: prior or None}) create for
    ``modules`` ({module name: Equinox module})."""
    return [
        f"{name}.{path}"
        for name, prior in priors.items()
        if prior is not None
        for path in array_priors(modules[name], prior)
    ]


def bind_network(name: str, module, prior=None):
    """The module inside the program: its weights are parameters (``prior`` None) or sample
    sites ``name.<path>`` with ``prior`` on each entry."""
    if prior is None:
        return eqx_module(name, module)
    return random_eqx_module(name, module, array_priors(module, prior), scope_divider=".")


def posterior_median_weights(params: Mapping, names) -> dict:
    """``params`` with each module's ``"<name>$params"`` replaced by the weights' posterior
    median under their ``AutoNormal`` (its loc: the priors live on the real line), so that code
    reading the module's parameters (predictions, vector fields) sees the fitted weights."""
    params = dict(params)
    for name in names:
        tree = params[f"{name}$params"]
        median = {
            path: params.get(f"{name}.{path}_auto_loc", x) for path, x in eqx_to_dict(tree).items()
        }
        params[f"{name}$params"] = eqx_from_dict(median, tree)
    return params
