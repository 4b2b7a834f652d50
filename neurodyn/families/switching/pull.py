"""The warm start's annealed pull, an effect handler of the fitting code (not of the model).

During the first ``steps`` SVI steps the bins' state likelihoods get a soft evidence term
``w(step) * onehot(label_t)``, ``w`` decaying linearly from ``weight`` to 0, at every site whose
distribution marginalizes the discrete chain (it has ``potentials(value)``: the model's
trajectory ``h``, or hmm's ``y``). With the evidence, the site's log prob becomes
``log sum_s p(s, h) exp(w sum_t [s_t = label_t])``, the log probability that noisy labels would
be seen under the state posterior; by Jensen it bounds the (negative) cross-entropy between the
core's smoothed marginals and the warm-start labels. Only the gradient is pulled: the site's
value stays the exact ``log p(h)``, so reported losses are exact ELBO estimates (and a plateau
or convergence stop stays meaningful). A label of -1 (an unobserved bin) gets no evidence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.primitives import Messenger

from ...inference import hmm


def pull_evidence(labels, step, weight: float, steps: int, num_states: int):
    """Annealed log soft evidence [B, T, K] towards ``labels`` int [B, T] at SVI ``step``."""
    w = weight * jnp.clip(1.0 - step / steps, 0.0, 1.0)
    return w * jax.nn.one_hot(labels, num_states)


def pulled_log_marginal(log_init, log_trans, log_lik, evidence=None, mask=None):
    """The core's log marginal; with ``evidence`` [T, K], its value is unchanged but its
    gradient is that of the log marginal with the evidence added to ``log_lik`` (the pull)."""
    exact = hmm.log_marginal(log_init, log_trans, log_lik, mask)
    if evidence is None:
        return exact
    pulled = hmm.log_marginal(log_init, log_trans, log_lik + evidence, mask)
    return pulled + jax.lax.stop_gradient(exact - pulled)


class Pulled(dist.Distribution):
    """``base`` (a chain-marginalizing distribution, batch (B,)) whose ``log_prob`` has the
    value of ``base.log_prob`` and the gradient of the pulled log marginal."""

    arg_constraints = {}

    def __init__(self, base, evidence):
        """evidence: [B, T, K] log soft evidence on the bins' state likelihoods."""
        self.base, self.evidence = base, evidence
        super().__init__(batch_shape=base.batch_shape, event_shape=base.event_shape)

    @property
    def support(self):
        return self.base.support

    def log_prob(self, value):
        log_init, log_trans, log_lik, mask = self.base.potentials(value)
        return jax.vmap(pulled_log_marginal)(log_init, log_trans, log_lik, self.evidence, mask)

    def sample(self, key, sample_shape=()):
        return self.base.sample(key, sample_shape)


class pull(Messenger):
    """Effect handler: every sample site whose distribution has ``potentials`` gets the soft
    evidence [B, T, K] (see the module docstring); ``evidence`` None changes nothing.

    ``with pull(evidence): model(batch, num_trials=...)``
    """

    def __init__(self, fn=None, evidence=None):
        self.evidence = evidence
        super().__init__(fn)

    def process_message(self, msg):
        if (
            self.evidence is not None
            and msg["type"] == "sample"
            and hasattr(msg["fn"], "potentials")
        ):
            msg["fn"] = Pulled(msg["fn"], self.evidence)


def pulled_program(model, guide, labels_key: str, weight: float, steps: int, num_states: int):
    """(model, guide) taking ``step``, for :func:`neurodyn.inference.svi.fit`: the model runs
    under :class:`pull` with the evidence of ``batch[labels_key]`` (int [B, T]) at that step;
    neither ``model`` nor ``guide`` sees the labels or the step."""

    def without_labels(batch):
        return {k: v for k, v in batch.items() if k != labels_key}

    def pulled_model(batch, *, num_trials, step):
        evidence = pull_evidence(batch[labels_key], step, weight, steps, num_states)
        with pull(evidence=evidence):
            return model(without_labels(batch), num_trials=num_trials)

    def plain_guide(batch, *, num_trials, step):
        return guide(without_labels(batch), num_trials=num_trials)

    return pulled_model, plain_guide
