"""Hostile and edge inputs: one line naming the file or option, exit status 2, and the user's
files left as they were; nothing is ever unpickled or imported from a data or run folder."""

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from neurodyn.cli import main
from neurodyn.inference import run_folder, runs
from neurodyn.inference.runs import RunError

FIT = ["--steps", "20", "--quiet"]


def one_line_error(capsys, argv, *needles):
    """Run the command in-process; assert exit 2, one stderr line holding every needle."""
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    lines = [x for x in err.splitlines() if not x.startswith("note:")]
    assert status == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny session and a finished hmm run, fitted with ``--out .`` from inside its folder."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "train.npz"
    argv = ["simulate", "lorenz", "--out", data, "--trials", "6", "--timesteps", "12"]
    assert main([str(a) for a in [*argv, "--neurons", "3"]]) == 0
    run = root / "run"
    run.mkdir()
    here = os.getcwd()
    os.chdir(run)
    try:  # `--out .` works: the current (empty) folder becomes the run
        assert main(["fit", "hmm", str(data), "--out", ".", *FIT]) == 0
    finally:
        os.chdir(here)
    assert runs.CONFIG in os.listdir(run) and not (run / run_folder.INCOMPLETE).exists()
    return root, data, run


def copy_run(tiny, tmp_path, name="copy"):
    _, _, run = tiny
    out = tmp_path / name
    shutil.copytree(run, out)
    return out


# ----------------------------------------------------------------------------- no code from data


class _Marker:
    """Unpickling this creates the file ``path`` (a stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickled_checkpoint_is_never_loaded(tiny, tmp_path, capsys):
    _, data, _ = tiny
    run = copy_run(tiny, tmp_path)
    (run / "checkpoint.npz").unlink()
    marker = tmp_path / "pwned"
    (run / "checkpoint.pkl").write_bytes(pickle.dumps({"state": _Marker(marker)}))
    one_line_error(capsys, ["fit", "hmm", data, "--out", run, "--resume", *FIT], "checkpoint.pkl")
    assert not marker.exists()
    assert (run / "checkpoint.pkl").exists() and (run / runs.PARAMS).exists()
    assert not (run / run_folder.INCOMPLETE).exists()  # the run is left as it was


def test_a_run_naming_a_guide_in_the_current_folder_does_not_import_it(
    tiny, tmp_path, monkeypatch, capsys
):
    _, data, _ = tiny
    run = copy_run(tiny, tmp_path)
    marker = tmp_path / "imported"
    (tmp_path / "evilguide.py").write_text(f"open({str(marker)!r}, 'w')\ndef g(batch): pass\n")
    (run / "evilguide.py").write_text(f"open({str(marker)!r}, 'w')\ndef g(batch): pass\n")
    config = json.loads((run / runs.CONFIG).read_text())
    config["guide"] = "evilguide:g"
    (run / runs.CONFIG).write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    status = main(["evaluate", str(run), str(data)])
    err = capsys.readouterr().err
    assert status == 2 and "cannot import guide 'evilguide:g'" in err
    assert not marker.exists()
    assert len(err.strip().splitlines()) == 1  # no import note: nothing was imported


@pytest.mark.parametrize(
    "guide, needle",
    [
        ("os:system", "not a Python function defined in module os"),
        ("os.path:join", "not a Python function defined in module os.path"),  # re-exported
        ("tests.test_hostile_inputs:one_line_error", "does not take the guide's arguments"),
    ],
)
def test_non_guide_callables_are_refused_before_fitting(tiny, tmp_path, capsys, guide, needle):
    _, data, _ = tiny
    one_line_error(capsys, ["fit", "srnn", data, "--out", tmp_path / "r", "--guide", guide], needle)
    assert not (tmp_path / "r").exists()


def raising_guide(batch, *, num_trials=None, step=None, spec, modules, priors=None, **_):
    """A user guide with the right signature that fails when called."""
    raise RuntimeError("my guide is broken")


def test_a_user_guide_that_raises_is_one_line(tiny, tmp_path, capsys):
    _, data, _ = tiny
    guide = "tests.test_hostile_inputs:raising_guide"
    out = tmp_path / "r"
    one_line_error(
        capsys,
        ["fit", "hmm", data, "--out", out, "--guide", guide, *FIT],
        f"user guide {guide} raised RuntimeError: my guide is broken",
    )
    assert not out.exists()


# ------------------------------------------------------------------ outputs checked before work


def test_an_existing_folder_of_other_files_is_never_replaced(tiny, tmp_path, capsys):
    _, data, run = tiny
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    for argv in (
        ["fit", "hmm", data, "--out", out, *FIT],
        ["fit", "hmm", data, "--out", out, "--overwrite", *FIT],
        ["report", run, data, "--out", out],
        ["adapt", run, data, "--trials", "1", "--out", out],
        ["simulate", "hopf", "--out", out],
        ["convert", "nlb", "--out", out],
    ):
        one_line_error(capsys, argv, str(out), "--out")
        assert sorted(os.listdir(out)) == ["notes.txt"]
        assert (out / "notes.txt").read_text() == "my notes"


def test_an_existing_file_is_never_turned_into_a_folder(tiny, tmp_path, capsys):
    _, data, run = tiny
    target = tmp_path / "acopy.npz"
    shutil.copy(data, target)
    before = target.read_bytes()
    for argv in (
        ["fit", "hmm", data, "--out", target, *FIT],
        ["report", run, data, "--out", target],
        ["simulate", "lorenz", "--out", target],  # a session file: needs --overwrite
        ["evaluate", run, data, "--json", target],  # not JSON: never replaced
    ):
        one_line_error(capsys, argv, str(target))
        assert target.is_file() and target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["acopy.npz"]


def test_an_existing_run_needs_resume_or_overwrite(tiny, tmp_path, capsys):
    _, data, _ = tiny
    run = copy_run(tiny, tmp_path)
    (run / "notes.txt").write_text("mine")
    params = (run / runs.PARAMS).read_bytes()
    one_line_error(capsys, ["fit", "hmm", data, "--out", run, *FIT], "--resume", "--overwrite")
    assert (run / runs.PARAMS).read_bytes() == params
    one_line_error(capsys, ["fit", "hmm", data, "--out", run, "--resume", "--overwrite"], "exclude")


def test_out_dot_in_a_folder_of_other_files_is_refused(tiny, tmp_path, monkeypatch, capsys):
    _, data, _ = tiny
    (tmp_path / "keep.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, ["fit", "hmm", data, "--out", ".", *FIT], "not a run folder")
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_an_unwritable_out_is_refused_up_front(tiny, tmp_path, capsys):
    _, data, _ = tiny
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        one_line_error(capsys, ["fit", "hmm", data, "--out", locked / "run", *FIT], "not writable")
    finally:
        locked.chmod(0o700)
    assert os.listdir(locked) == []


def test_an_out_below_a_file_is_refused_up_front(tiny, tmp_path, capsys):
    _, data, _ = tiny
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "run"
    one_line_error(capsys, ["fit", "hmm", data, "--out", out, *FIT], "is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("command", ["evaluate", "compare"])
@pytest.mark.parametrize("where", ["folder", "missing"])
def test_json_outputs_are_checked_before_any_work(tiny, tmp_path, capsys, command, where):
    _, data, run = tiny
    target = tmp_path if where == "folder" else tmp_path / "missing" / "dir" / "m.json"
    argv = [command, run, data] if command == "evaluate" else [command, run, run, "--data", data]
    one_line_error(capsys, [*argv, "--json", target], "--json", str(target))


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tiny, tmp_path, capsys):
    _, data, _ = tiny
    run = copy_run(tiny, tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / run_folder.LOCK).write_text(f"{sleeper.pid}\n")
        one_line_error(capsys, ["fit", "hmm", data, "--out", run, "--resume"], f"pid {sleeper.pid}")
        assert (run / run_folder.LOCK).read_text().strip() == str(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    # the writer died: its lock is taken over (with a note) and released after
    with run_folder.lock(run):
        assert (run / run_folder.LOCK).read_text().strip() == str(os.getpid())
    assert "taking over the lock" in capsys.readouterr().err
    assert not (run / run_folder.LOCK).exists()


# ----------------------------------------------------------------------------- resume


def test_resume_refuses_other_data_and_other_options(tiny, tmp_path, capsys):
    root, data, _ = tiny
    run = copy_run(tiny, tmp_path)
    other = tmp_path / "other.npz"
    assert (
        main(
            [
                "simulate",
                "lorenz",
                "--out",
                str(other),
                "--trials",
                "6",
                "--timesteps",
                "12",
                "--neurons",
                "3",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    wider = tmp_path / "wider.npz"
    assert (
        main(
            [
                "simulate",
                "lorenz",
                "--out",
                str(wider),
                "--trials",
                "6",
                "--timesteps",
                "12",
                "--neurons",
                "5",
            ]
        )
        == 0
    )
    capsys.readouterr()
    resume = ["--out", run, "--resume", *FIT]
    one_line_error(capsys, ["fit", "hmm", other, *resume], "other data")
    one_line_error(capsys, ["fit", "hmm", wider, *resume], "other data")
    one_line_error(capsys, ["fit", "hmm", data, *resume, "--states", "3"], "--states 3")
    one_line_error(capsys, ["fit", "hmm", data, *resume, "--seed", "4"], "--seed 4")
    one_line_error(capsys, ["fit", "hmm", data, *resume, "--likelihood", "poisson"], "negative")
    one_line_error(capsys, ["fit", "srnn", data, *resume], "'hmm' fit")


def test_resume_of_a_finished_run_with_the_same_options_refits_nothing(tiny, tmp_path, capsys):
    _, data, _ = tiny
    run = copy_run(tiny, tmp_path)
    params = runs.read_npz(run / runs.PARAMS)
    assert (
        main(["fit", "hmm", str(data), "--out", str(run), "--resume", "--states", "2", *FIT]) == 0
    )
    again = runs.read_npz(run / runs.PARAMS)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    rows = (run / "loss.csv").read_text().splitlines()
    assert len(rows) == 21


# ----------------------------------------------------------------------------- bad run files


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda r: _truncate(r / runs.PARAMS), "params.npz: not a readable .npz file"),
        (lambda r: (r / runs.CONFIG).write_text("[]"), "config.json: not a run config"),
        (lambda r: (r / runs.CONFIG).write_text("{oops"), "config.json: not valid JSON"),
        (lambda r: (r / runs.CONFIG).write_text('{"model": "nope"}'), "unknown model 'nope'"),
        (lambda r: _nan_params(r), "holds NaN/Inf"),
        (lambda r: (r / runs.PARAMS).unlink(), "did not finish"),
    ],
)
def test_a_damaged_run_is_named(tiny, tmp_path, capsys, damage, needle):
    _, data, _ = tiny
    run = copy_run(tiny, tmp_path)
    damage(run)
    one_line_error(capsys, ["evaluate", run, data], needle)


def _nan_params(run):
    arrays = runs.read_npz(run / runs.PARAMS)
    key = sorted(arrays)[0]
    arrays[key] = np.full_like(arrays[key], np.nan)
    np.savez(run / runs.PARAMS, **arrays)


@pytest.mark.parametrize("damage", ["truncated", "nan"])
def test_a_damaged_checkpoint_is_named(tiny, tmp_path, capsys, damage):
    _, data, _ = tiny
    run = copy_run(tiny, tmp_path)
    path = run / "checkpoint.npz"
    if damage == "truncated":
        _truncate(path)
    else:
        arrays = runs.read_npz(path)
        arrays["losses"] = np.full_like(arrays["losses"], np.nan)
        np.savez(path, **arrays)
    one_line_error(capsys, ["fit", "hmm", data, "--out", run, "--resume", *FIT], "checkpoint.npz")


# ----------------------------------------------------------------------------- bad data


def _session(path, **arrays):
    arrays.setdefault("y", np.random.default_rng(0).normal(size=(3, 8, 2)))
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays, needle",
    [
        (dict(dt=np.ones(3)), "'dt' must be a scalar"),
        (dict(dt=np.str_("fast")), "'dt' must be a number of seconds"),
        (dict(dt=np.float64(-1)), "'dt' must be a positive number"),
        (dict(mask=np.zeros((3, 8), bool)), "every entry of 'y' is masked out"),
        (dict(y=np.zeros((3, 8, 2))), "constant recording"),
        (dict(y=np.ones((3, 8, 2)) * (1 + 1j)), "'y' is complex"),
        (dict(name=np.array(["a", "b"])), "'name' must be a string"),
    ],
)
def test_data_that_cannot_be_fitted_is_refused_with_the_reason(tmp_path, capsys, arrays, needle):
    data = _session(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "r"
    one_line_error(capsys, ["fit", "srnn", data, "--out", out], str(data), needle)
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "srnn", "x.npz", "--out", "r"],
        ["evaluate", "run", "x.npz"],
        ["simulate", "lorenz", "--out", "x.npz"],
        ["compare", "a", "b", "--data", "x.npz"],
        ["adapt", "run", "x.npz", "--trials", "1", "--out", "r"],
        ["demo"],
    ],
)
def test_a_negative_seed_is_refused_naming_the_option(capsys, argv):
    one_line_error(capsys, [*argv, "--seed", "-1"], "--seed", "'-1'")


def test_an_option_that_does_not_apply_to_the_simulator(tmp_path, capsys):
    one_line_error(
        capsys,
        ["simulate", "lorenz", "--recordings", "3", "--out", tmp_path / "x.npz"],
        "--recordings does not apply to simulate lorenz",
    )
    one_line_error(
        capsys,
        ["simulate", "hopf", "--test-out", tmp_path / "t.npz", "--out", tmp_path / "h"],
        "--test-out does not apply to simulate hopf",
    )
    assert os.listdir(tmp_path) == []


CONVERT_WRONG = [
    ("nwb", "dad_chewie_demo.mat", ["--bin-size", "0.1"], "not a readable NWB file"),
    ("widefield", "dad_chewie_demo.mat", [], "no array 'x'"),
    ("widefield", "nlb_mc_maze_small_20_fixture.npz", [], "not a readable MATLAB file"),
    ("nlb", "dad_chewie_demo.mat", [], "not a readable .npz file"),
    ("nlb", "srnn_lorenz.npy", [], "not a readable .npz file"),
    ("dad-chewie", "widefield_higley_animal1.mat", [], "no array 'Ytr'"),
    ("dad-mihi-a", "nlb_mc_maze_small_20_fixture.npz", [], "not a readable MATLAB file"),
]


@pytest.mark.parametrize("kind, source, extra, needle", CONVERT_WRONG)
def test_convert_names_a_file_of_the_wrong_kind(
    shared_data, tmp_path, capsys, kind, source, extra, needle
):
    if kind == "nwb":
        pytest.importorskip("pynwb")
    out = tmp_path / ("o" if kind == "nlb" else "o.npz")
    one_line_error(
        capsys, ["convert", kind, shared_data / source, "--out", out, *extra], source, needle
    )
    assert not out.exists()


def test_a_horizon_as_long_as_the_trials_is_noted_in_the_json(tiny, tmp_path, capsys):
    _, data, run = tiny
    out = tmp_path / "m.json"
    argv = ["evaluate", str(run), str(data), "--horizon", "2", "--horizon", "12"]
    assert main([*argv, "--samples", "4", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics["forecast_r2"]) == {"2"}
    assert "horizon(s) 12 not scored" in metrics["forecast_r2_note"]


def test_check_out_kinds_directly(tmp_path):
    (tmp_path / "f.json").write_text("{}")
    assert run_folder.check_out(tmp_path / "f.json", "json") == tmp_path / "f.json"
    (tmp_path / "g.json").write_text("not json")
    with pytest.raises(RunError, match="not a JSON file"):
        run_folder.check_out(tmp_path / "g.json", "json")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / runs.CONFIG).write_text('{"model": "hmm"}')
    with pytest.raises(RunError, match="is a file of the run"):
        run_folder.check_out(tmp_path / "run" / runs.CONFIG, "json")
    with pytest.raises(RunError, match="no such run folder"):
        run_folder.check_out(tmp_path / "none", "run", resume=True)
    (tmp_path / "s.npz").write_bytes(b"x")
    assert run_folder.check_out(tmp_path / "s.npz", "npz", overwrite=True) == tmp_path / "s.npz"
    with pytest.raises(RunError, match="--overwrite"):
        run_folder.check_out(tmp_path / "s.npz", "npz")
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "ppc.png").write_bytes(b"x")
    assert run_folder.check_out(tmp_path / "figs", "report") == tmp_path / "figs"


def test_a_guide_module_on_the_path_is_announced_before_its_import(tmp_path, monkeypatch, capsys):
    from neurodyn.guides import load_function

    (tmp_path / "announced_guide_mod.py").write_text("import sys\nprint('ran', file=sys.stderr)\n"
                                                     "def g(batch): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert callable(load_function("announced_guide_mod:g"))
    err = capsys.readouterr().err.splitlines()
    mod = "announced_guide_mod"
    assert err[0] == f"note: importing module {mod} for user guide {mod}:g"
    assert err[1] == "ran"
