"""Long scans are checkpointed: same values and gradients, residuals recomputed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurodyn.inference import hmm, long_scan


def _loss(xs):
    def step(c, x):
        c = jnp.tanh(0.9 * c + x)
        return c, c

    return long_scan.scan(step, jnp.zeros(3), xs)[1].sum()


@pytest.fixture
def remat_from(monkeypatch):
    def set_(n):
        monkeypatch.setattr(long_scan, "REMAT_FROM", n)

    return set_


def test_checkpointed_scan_matches_the_plain_one(remat_from):
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(64, 3)), jnp.float32)
    remat_from(10**9)
    plain = jax.value_and_grad(_loss)(xs)
    assert "remat" not in str(jax.make_jaxpr(jax.grad(_loss))(xs))
    remat_from(16)
    checkpointed = jax.value_and_grad(_loss)(xs)
    assert "remat" in str(jax.make_jaxpr(jax.grad(_loss))(xs))
    np.testing.assert_allclose(checkpointed[0], plain[0], rtol=1e-6)
    np.testing.assert_allclose(checkpointed[1], plain[1], rtol=1e-5, atol=1e-6)


def test_core_smoothing_is_unchanged_by_checkpointing(remat_from):
    rng = np.random.default_rng(1)
    log_lik = jnp.asarray(rng.normal(size=(40, 3)), jnp.float32)
    log_trans = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(39, 3, 3)), jnp.float32), -1)
    log_init = jnp.log(jnp.ones(3) / 3)
    remat_from(10**9)
    plain = hmm.smooth(log_init, log_trans, log_lik)
    remat_from(8)
    checkpointed = hmm.smooth(log_init, log_trans, log_lik)
    for a, b in zip(checkpointed, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
