"""Data parallelism: trials split across 4 (forced host) devices give the one-device loss."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from neurodyn.inference.svi import fit
    from tests.test_svi import Y, guide, model

    assert jax.device_count() == 4, jax.devices()
    kw = dict(num_steps=50, batch_size=16, seed=2, progress=False)
    one = fit(model, guide, {"y": Y}, **kw)
    four = fit(model, guide, {"y": Y}, devices=jax.devices(), **kw)
    json.dump({"one": one.losses.tolist(), "four": four.losses.tolist()}, sys.stdout)
    """
)


def test_four_devices_match_one():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    import numpy as np

    np.testing.assert_allclose(out["four"], out["one"], rtol=1e-5)
