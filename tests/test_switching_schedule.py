"""The switching family's step size and stop rule depend on the step and the loss history only."""

import numpy as np

from neurodyn.data import make_session
from neurodyn.families import switching as family


def _session():
    return make_session(np.random.default_rng(0).normal(size=(3, 20, 4)).astype(np.float32))


def test_step_size_does_not_depend_on_the_budget():
    short = family.make_config("srnn", [_session()], options=dict(steps=2000))
    long = family.make_config("srnn", [_session()], options=dict(steps=20000))
    steps = np.arange(0, 2000, 7)
    np.testing.assert_array_equal(
        [float(family.learning_rate(short)(t)) for t in steps],
        [float(family.learning_rate(long)(t)) for t in steps],
    )


def test_convergence_is_checked_once_the_step_size_is_at_its_floor():
    for model in ("srnn", "lds"):
        config = family.make_config(model, [_session()])
        lr, first = family.learning_rate(config), family.floor_step(config)
        floor = config["learning_rate"] * config["lr_decay"]
        assert float(lr(first)) == np.float32(floor) and float(lr(first - 1)) > floor
