"""Model recovery: ``neurodyn compare`` ranks the generating configuration first (slow), and the
stationary-transition SLDS simulator behind it."""

import numpy as np
import pytest

from neurodyn.data.simulators import get_simulator
from tests.conftest import load_case_study


def test_the_slds_simulator_switches_independently_of_the_latent():
    session = get_simulator("slds")(seed=0, num_trials=200, num_timesteps=100, num_states=3)
    assert session.y.shape == (200, 100, 10) and session.latents.shape == (200, 100, 2)
    s = session.states
    assert set(np.unique(s)) == {0, 1, 2}
    stay = s[:, 1:] == s[:, :-1]
    assert stay.mean() == pytest.approx(0.95, abs=0.01)
    # stationary: the switch rate does not depend on where the latent is (split by h[0])
    right = session.latents[:, :-1, 0] > np.median(session.latents[..., 0])
    assert abs(stay[right].mean() - stay[~right].mean()) < 0.01
    with pytest.raises(ValueError, match="num_states"):
        get_simulator("slds")(num_states=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nascar", "slds"])
def test_compare_ranks_the_generating_model_first(name, tmp_path):
    """rslds-generated NASCAR: rslds beats slds by more than 2 dse; slds-generated data: slds is
    not below rslds by more than 2 dse (the case study's settings and default estimator)."""
    recovery = load_case_study("model_recovery")
    result = recovery.recover(name, tmp_path, recovery.FULL)
    diff, dse = result["elpd_diff"], result["dse"]
    if name == "nascar":
        assert result["generating_first"] and diff > 2 * dse, (diff, dse)
    else:
        assert diff >= -2 * dse, (diff, dse)
