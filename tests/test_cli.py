"""The command line: help, simulate, and the error contract (one line, exit 2, nothing written)."""

import subprocess
import sys

import numpy as np
import pytest

from neurodyn.cli import main
from neurodyn.data import load_session


def run(*args):
    """Run the real command in a subprocess: (exit status, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "neurodyn.cli", *map(str, args)],
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_help_lists_every_command():
    status, out, _ = run("--help")
    assert status == 0
    for command in ("simulate", "fit", "adapt", "evaluate", "compare", "report", "demo"):
        assert command in out


def test_simulate_writes_train_and_test_with_the_same_neurons(tmp_path):
    status, out, err = run("simulate", "lorenz", "--out", tmp_path / "train.npz",
                           "--test-out", tmp_path / "test.npz", "--neurons", 7)
    assert status == 0, err
    train, test = load_session(tmp_path / "train.npz"), load_session(tmp_path / "test.npz")
    assert (train.num_trials, test.num_trials) == (12, 4)
    assert train.num_neurons == test.num_neurons == 7
    assert train.states is not None and train.latents.shape[-1] == 3


def assert_one_line_error(capsys, argv, needle):
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err, err


def test_missing_file(capsys, tmp_path):
    assert_one_line_error(capsys, ["fit", "srnn", "no_such_file.npz", "--out", str(tmp_path / "r")],
                          "no_such_file.npz: no such file")
    assert not (tmp_path / "r").exists()


def test_unknown_model_and_option(capsys, tmp_path):
    assert_one_line_error(capsys, ["fit", "bogus", "x.npz", "--out", "r"], "unknown model 'bogus'")
    assert_one_line_error(capsys, ["fit", "srnn", "x.npz", "--out", "r", "--wat"], "--wat")
    assert_one_line_error(capsys, ["fit", "srnn", "x.npz", "--out", "r", "--states", "0"],
                          "must be a positive integer")
    assert_one_line_error(capsys, ["simulate", "nope", "--out", "x"], "unknown simulator 'nope'")


@pytest.mark.parametrize(
    "array, extra, needle",
    [
        (np.full((2, 5, 3), np.nan), [], "NaN/Inf"),
        (np.zeros((5, 3)), [], "rank 2"),
        (-np.ones((2, 5, 3)), ["--likelihood", "poisson"], "negative"),
    ],
)
def test_bad_files_are_named_and_nothing_is_written(capsys, tmp_path, array, extra, needle):
    np.savez(tmp_path / "bad.npz", y=array)
    out = tmp_path / "run"
    assert_one_line_error(capsys, ["fit", "srnn", str(tmp_path / "bad.npz"), "--out", str(out),
                                   *extra], needle)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.npz"]


def test_bad_prior_spec(capsys, tmp_path):
    assert_one_line_error(capsys, ["fit", "srnn", "x.npz", "--out", "r", "--prior", "oops"],
                          "SITE=SPEC")


def test_evaluate_a_missing_run(capsys, tmp_path):
    assert_one_line_error(capsys, ["evaluate", str(tmp_path / "norun"), "x.npz"], "no such run")
