"""The Equinox networks a switching program closes over (model dynamics and readout, the
guide's encoder), random or warm-started."""

from __future__ import annotations

from collections.abc import Mapping

import jax

from ...guides.encoders import TrajectoryEncoder
from ...models.dynamics import Readout, StateDynamics
from ...models.switching import Spec


def nets(spec: Spec, hidden: int, seed: int, init: Mapping | None = None) -> dict:
    """{"dynamics", "readout", "encoder", "global_init"} (hmm: "global_init" only).

    ``init`` (from :func:`~.warm_start.initial_values`): W [K, D, D], b [K, D] of the dynamics,
    C [D, N], d [N] of the readout, center, scale [N] of the encoder's input, and
    ``global_init`` {site: initial MAP value}. Missing entries start at random.
    """
    init = dict(init or {})
    if not spec.has_latent:
        return {"global_init": init.get("global_init")}
    kd, kr, ke = jax.random.split(jax.random.PRNGKey(seed), 3)
    K, D, N = spec.num_states, spec.latent_dim, spec.num_neurons
    return {
        "dynamics": StateDynamics(
            spec.dynamics, K, D, spec.input_dim, key=kd, W=init.get("W"), b=init.get("b")
        ),
        "readout": Readout(spec.readout, D, N, key=kr, C=init.get("C"), d=init.get("d")),
        "encoder": TrajectoryEncoder(
            N, D, key=ke, hidden_size=hidden, center=init.get("center"), scale=init.get("scale")
        ),
        "global_init": init.get("global_init"),
    }
