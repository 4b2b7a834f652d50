"""The guide of network weights that have a prior (see :mod:`neurodyn.models.weights`).

An ``AutoNormal`` over exactly the weight sample sites: parameters ``"<site>_auto_loc"`` and
``"<site>_auto_scale"`` (e.g. ``"dynamics.weights[0]_auto_loc"``), started at the modules'
initial weights with scale 0.01, so the weights get a Gaussian posterior rather than a point
estimate. It combines with any amortized local guide: call it inside that guide.
"""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
from numpyro import handlers
from numpyro.contrib.module import eqx_to_dict
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.initialization import init_to_value

from ..models.weights import bind_network


def weight_guide(modules: Mapping, priors: Mapping) -> AutoNormal | None:
    """``AutoNormal`` over the weight sites that ``priors`` ({module name: prior or None})
    create for ``modules`` ({module name: Equinox module}); None when no prior is given.

    Its structure is set up here, outside any trace, so one instance can serve every call of
    the guide (jitted or not).
    """
    chosen = {name: prior for name, prior in priors.items() if prior is not None}
    if not chosen:
        return None

    def weights():
        for name, prior in chosen.items():
            bind_network(name, modules[name], prior)

    start = {
        f"{name}.{path}": x
        for name in chosen
        for path, x in eqx_to_dict(modules[name]).items()
        if eqx.is_inexact_array(x)
    }
    auto = AutoNormal(weights, init_loc_fn=init_to_value(values=start), init_scale=0.01)
    with handlers.block(), handlers.seed(rng_seed=0):
        auto()  # builds the prototype eagerly: concrete initial values, no leaked tracers
    return auto
