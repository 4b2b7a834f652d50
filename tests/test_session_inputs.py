"""Session ``inputs`` (trials, T, U): validation, round trip, selection, concatenation, stacking."""

import numpy as np
import pytest

from neurodyn.data import (
    SessionError,
    concat_trials,
    load_session,
    make_session,
    save_session,
    split_trials,
    stack,
)


def counts(shape=(3, 5, 4), seed=0):
    return np.random.default_rng(seed).poisson(2.0, shape).astype(np.float32)


def one_nan():
    x = np.zeros((3, 5, 1))
    x[1, 2, 0] = np.nan
    return x


def pulses(trials, T, U=1, seed=0):
    return np.random.default_rng(seed).normal(size=(trials, T, U))


def test_inputs_absent_is_none_and_not_written(tmp_path):
    s = make_session(counts())
    assert s.inputs is None
    path = save_session(tmp_path / "s.npz", s)
    assert "inputs" not in np.load(path).files
    assert load_session(path).inputs is None


def test_inputs_round_trip_as_float32(tmp_path):
    u = pulses(3, 5, 2)
    s = make_session(counts(), inputs=u)
    assert s.inputs.dtype == np.float32 and s.inputs.shape == (3, 5, 2)
    back = load_session(save_session(tmp_path / "s.npz", s))
    np.testing.assert_allclose(back.inputs, u.astype(np.float32))


def test_integer_inputs_are_accepted_as_float():
    s = make_session(counts(), inputs=np.ones((3, 5, 1), np.int64))
    assert s.inputs.dtype == np.float32 and (s.inputs == 1).all()


@pytest.mark.parametrize(
    "inputs, message",
    [
        (np.zeros((3, 5)), r"'inputs' has shape \(3, 5\), expected \(trials, T, U\) = \(3, 5, U\)"),
        (np.zeros((2, 5, 1)), r"'inputs' has shape \(2, 5, 1\), expected"),
        (np.zeros((3, 6, 1)), r"'inputs' has shape \(3, 6, 1\), expected"),
        (np.zeros((3, 5, 0)), "'inputs' has no input channels"),
        (np.zeros((3, 5, 1), bool), "'inputs' must be real numbers, got dtype bool"),
        (np.full((3, 5, 1), "a"), "'inputs' must be real numbers"),
        (one_nan(), r"'inputs' has 1 NaN/Inf entries \(first at \(1, 2, 0\)\)"),
    ],
)
def test_bad_inputs_give_one_line_error_naming_the_key(inputs, message):
    with pytest.raises(SessionError, match=message) as err:
        make_session(counts(), inputs=inputs, name="rec")
    assert "\n" not in str(err.value) and str(err.value).startswith("rec: ")


def test_bad_inputs_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, y=counts(), inputs=np.zeros((3, 4, 1)))
    with pytest.raises(SessionError, match=r"bad\.npz: 'inputs' has shape \(3, 4, 1\)") as err:
        load_session(path)
    assert "\n" not in str(err.value)


def test_select_and_split_carry_inputs():
    u = pulses(6, 5)
    s = make_session(counts((6, 5, 4)), inputs=u)
    train, test = split_trials(s, 4)
    np.testing.assert_allclose(train.inputs, u[:4].astype(np.float32))
    np.testing.assert_allclose(test.inputs, u[4:].astype(np.float32))
    np.testing.assert_allclose(s.select([5, 0]).inputs, u[[5, 0]].astype(np.float32))


def test_concat_trials_pads_inputs_with_zeros():
    a = make_session(counts((3, 5, 4)), inputs=pulses(3, 5, 2, seed=1) + 5)
    b = make_session(counts((2, 7, 4)), inputs=pulses(2, 7, 2, seed=2) + 5)
    c = concat_trials([a, b])
    assert c.inputs.shape == (5, 7, 2)
    np.testing.assert_array_equal(c.inputs[:3, :5], a.inputs)
    np.testing.assert_array_equal(c.inputs[3:], b.inputs)
    assert (c.inputs[:3, 5:] == 0).all() and not c.mask[:3, 5:].any()


def test_concat_and_stack_refuse_inputs_on_only_some_recordings_or_different_channels():
    a = make_session(counts((3, 5, 4)), name="a", inputs=pulses(3, 5))
    b = make_session(counts((2, 5, 4)), name="b")
    c = make_session(counts((2, 5, 4)), name="c", inputs=pulses(2, 5, 3))
    for combine in (concat_trials, stack):
        with pytest.raises(SessionError, match="recordings b lack the 'inputs'"):
            combine([a, b])
        with pytest.raises(SessionError, match=r"different input channel counts \[1, 3\]"):
            combine([a, c])


def test_stack_pads_inputs_and_is_none_without_them():
    a = make_session(counts((3, 5, 4)), name="a", inputs=pulses(3, 5, 2, seed=1) + 5)
    b = make_session(counts((2, 7, 6)), name="b", inputs=pulses(2, 7, 2, seed=2) + 5)
    st = stack([a, b])
    assert st.inputs.shape == (2, 3, 7, 2)
    np.testing.assert_array_equal(st.inputs[0, :3, :5], a.inputs)
    np.testing.assert_array_equal(st.inputs[1, :2], b.inputs)
    assert (st.inputs[0, :, 5:] == 0).all() and (st.inputs[1, 2:] == 0).all()
    assert stack([make_session(counts())]).inputs is None
