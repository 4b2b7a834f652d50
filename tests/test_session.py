"""Session files: validation messages, round trips, masks, multi-recording stacking."""

import numpy as np
import pytest

from neurodyn.data import (
    SessionError,
    concat_trials,
    load_session,
    load_sessions,
    make_session,
    save_session,
    split_trials,
    stack,
)


def counts(shape=(3, 5, 4), seed=0):
    return np.random.default_rng(seed).poisson(2.0, shape).astype(np.float32)


def test_round_trip_keeps_every_field(tmp_path):
    rng = np.random.default_rng(1)
    mask = rng.random((3, 5)) > 0.2
    s = make_session(
        counts(), mask, states=rng.integers(0, 2, (3, 5)), behavior=rng.normal(size=(3, 5, 2)),
        latents=rng.normal(size=(3, 5, 3)), dt=0.02, name="rec", meta={"omega": 1.5},
        likelihood="poisson",
    )
    back = load_session(save_session(tmp_path / "s.npz", s))
    np.testing.assert_array_equal(back.y, s.y)
    np.testing.assert_array_equal(back.mask, s.mask)
    np.testing.assert_array_equal(back.states, s.states)
    np.testing.assert_allclose(back.behavior, s.behavior)
    np.testing.assert_allclose(back.latents, s.latents)
    assert (back.dt, back.name, back.meta) == (0.02, "rec", {"omega": 1.5})


def test_mask_is_broadcast_and_masked_entries_are_zeroed():
    y = counts()
    y[0, 1, 2] = np.nan
    mask = np.ones((3, 5, 4), bool)
    mask[0, 1, 2] = False
    s = make_session(y, mask)
    assert s.y[0, 1, 2] == 0 and np.isfinite(s.y).all()
    per_bin = make_session(counts(), np.ones((3, 5), bool))
    assert per_bin.mask.shape == (3, 5, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(y=np.zeros((5, 4))), "rank 2"),
        (dict(y=np.zeros((0, 5, 4))), "empty"),
        (dict(y=np.full((2, 3, 4), np.nan)), "NaN/Inf"),
        (dict(y=-counts(), likelihood="poisson"), "negative"),
        (dict(y=counts() + 0.5, likelihood="poisson"), "integer"),
        (dict(y=counts(), mask=np.ones((3, 4), bool)), "'mask' shape"),
        (dict(y=counts(), states=np.zeros((2, 5))), "'states' has shape"),
        (dict(y=counts(), likelihood="gamma"), "unknown likelihood"),
    ],
)
def test_each_problem_has_its_message(kwargs, message):
    with pytest.raises(SessionError, match=message):
        make_session(**kwargs)


def test_file_problems_are_named(tmp_path):
    with pytest.raises(SessionError, match="no such file"):
        load_session(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(SessionError, match="not a readable .npz"):
        load_session(bad)
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(SessionError, match="empty file"):
        load_session(tmp_path / "empty.npz")
    np.savez(tmp_path / "noy.npz", x=np.zeros(3))
    with pytest.raises(SessionError, match="missing required array 'y'"):
        load_session(tmp_path / "noy.npz")
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(SessionError, match="no .npz session files"):
        load_sessions([tmp_path / "nothing_here"])


def test_folder_stands_for_its_sessions(tmp_path):
    for i in range(3):
        save_session(tmp_path / f"r{i}.npz", make_session(counts(seed=i), name=f"r{i}"))
    assert [s.name for s in load_sessions([tmp_path])] == ["r0", "r1", "r2"]


def test_split_and_select():
    s = make_session(counts((6, 5, 4)))
    train, test = split_trials(s, 4)
    assert (train.num_trials, test.num_trials) == (4, 2)
    np.testing.assert_array_equal(test.y, s.y[4:])
    with pytest.raises(SessionError, match="cannot split"):
        split_trials(s, 6)


def test_stack_pads_recordings_of_different_sizes():
    a = make_session(counts((3, 5, 4)), name="a")
    b = make_session(counts((2, 7, 6)), name="b")
    st = stack([a, b])
    assert st.y.shape == (2, 3, 7, 6)
    np.testing.assert_array_equal(st.y[1, :2, :7, :6], b.y)
    assert st.mask[0].sum() == a.mask.sum() and not st.mask[0, :, 5:].any()
    np.testing.assert_array_equal(st.trial_mask, [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(st.num_neurons, [4, 6])


def test_concat_trials_pads_time_and_refuses_different_neuron_counts():
    a = make_session(counts((3, 5, 4)))
    b = make_session(counts((2, 7, 4)))
    c = concat_trials([a, b])
    assert c.y.shape == (5, 7, 4) and not c.mask[:3, 5:].any() and c.mask[3:].all()
    with pytest.raises(SessionError, match="different neuron counts"):
        concat_trials([a, make_session(counts((2, 5, 3)))])
