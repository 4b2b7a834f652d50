"""Loaders of the shared recordings (skipped without ../shared/data) and the NWB round trip."""

from datetime import UTC, datetime

import numpy as np
import pytest

from neurodyn.data import SessionError
from neurodyn.data.loaders import (
    DAD_RECORDINGS,
    load_dad,
    load_nlb_fixture,
    load_nwb,
    load_widefield,
    runs_of,
    split_runs,
    widefield_states,
)


def test_runs_and_their_split():
    labels = np.array([0] * 4 + [1] * 8 + [2] * 3)
    assert runs_of(labels) == [(0, 4, 0), (4, 12, 1), (12, 15, 2)]
    assert split_runs(runs_of(labels), typical=4) == [(0, 4, 0), (4, 8, 1), (8, 12, 1), (12, 15, 2)]


@pytest.mark.parametrize("recording, neurons", [("chewie", 71), ("mihi-a", 174), ("mihi-b", 187)])
def test_dad_recordings(shared_data, recording, neurons):
    s = load_dad(shared_data, recording)
    assert s.num_neurons == neurons and s.behavior.shape[-1] == 2
    assert np.array_equal(s.y, np.round(s.y)) and (s.y >= 0).all()  # counts, also for Mihi
    assert len(s.meta["trial_label"]) == s.num_trials
    # Ragged trials: each trial's observed bins are a prefix, padding is at the end.
    observed = s.bin_mask
    assert (observed[:, :-1] >= observed[:, 1:]).all() and observed[:, 0].all()
    if recording == "chewie":  # 62-bin runs are two 31-bin reaches
        assert s.num_timesteps == 31


def test_dad_bins_are_all_kept(shared_data):
    from scipy.io import loadmat

    m = loadmat(shared_data / "dad_chewie_demo.mat")
    s = load_dad(shared_data, "chewie")
    assert s.bin_mask.sum() == len(m["Ytr"]) + len(m["Yte"])
    assert s.y.sum() == m["Ytr"].sum() + m["Yte"].sum()


def test_unknown_dad_recording(tmp_path):
    with pytest.raises(SessionError, match="unknown DAD recording"):
        load_dad(tmp_path, "nope")
    with pytest.raises(SessionError, match="no such file"):
        load_dad(tmp_path, list(DAD_RECORDINGS)[0])


def test_widefield_windows_and_states(shared_data):
    s = load_widefield(shared_data / "widefield_higley_animal1.mat", window=100)
    assert s.y.shape == (40, 100, 48) and s.behavior.shape == (40, 100, 3)
    assert set(np.unique(s.states)) == {0, 1, 2}
    np.testing.assert_allclose(s.y.reshape(-1, 48).mean(0), 0, atol=1e-5)


def test_widefield_state_rule():
    wheel = np.r_[np.zeros(90), np.full(10, 5.0)] + np.linspace(0, 0.01, 100)
    whisking = np.r_[np.zeros(50), np.linspace(1, 2, 50)]
    labels = widefield_states(wheel, whisking)  # whisking above its 60% quantile from index 60
    assert (labels[90:] == 2).all() and (labels[:60] == 0).all() and (labels[60:90] == 1).all()


def test_nlb_fixture(shared_data):
    source, target = load_nlb_fixture(shared_data / "nlb_mc_maze_small_20_fixture.npz")
    assert source.y.shape == target.y.shape == (40, 35, 35)
    assert source.dt == pytest.approx(0.02) and source.behavior.shape == (40, 35, 2)


def test_nwb_round_trip(tmp_path):
    pynwb = pytest.importorskip("pynwb", reason="pynwb is in the test extra")
    nwb = pynwb.NWBFile(
        session_description="test",
        identifier="rec1",
        session_start_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    nwb.add_trial(start_time=0.0, stop_time=1.0)
    nwb.add_trial(start_time=2.0, stop_time=2.5)
    spikes = [np.array([0.05, 0.06, 0.55, 2.01]), np.array([0.95, 2.45, 3.0])]
    for times in spikes:
        nwb.add_unit(spike_times=times)
    with pynwb.NWBHDF5IO(str(tmp_path / "t.nwb"), "w") as io:
        io.write(nwb)
    s = load_nwb(tmp_path / "t.nwb", bin_size=0.1)
    assert s.y.shape == (2, 10, 2) and s.name == "rec1"
    np.testing.assert_array_equal(s.bin_mask.sum(1), [10, 5])
    assert s.y[0, 0, 0] == 2 and s.y[0, 5, 0] == 1 and s.y[0, 9, 1] == 1
    assert s.y[1, 0, 0] == 1 and s.y[1, 4, 1] == 1 and s.y.sum() == 6  # 3.0 s is outside trials


def test_convert_command_writes_valid_sessions(shared_data, tmp_path):
    from neurodyn.cli import main
    from neurodyn.data import load_session, load_sessions

    assert main(["convert", "dad-mihi-b", str(shared_data), "--out", str(tmp_path / "m.npz")]) == 0
    assert load_session(tmp_path / "m.npz", "poisson").num_neurons == 187
    nlb = shared_data / "nlb_mc_maze_small_20_fixture.npz"
    assert main(["convert", "nlb", str(nlb), "--out", str(tmp_path / "nlb")]) == 0
    assert [s.name for s in load_sessions([tmp_path / "nlb"])] == ["nlb-source", "nlb-target"]
