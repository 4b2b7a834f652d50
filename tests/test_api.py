"""The Run API: Python and the command line make and open the same run folders."""

import json

import numpy as np
import pytest
import xarray as xr

import neurodyn
from neurodyn.api import as_sessions
from neurodyn.cli import main
from neurodyn.data import load_session


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A run fitted from Python and one fitted by the command line, on the same data."""
    root = tmp_path_factory.mktemp("api")
    line = neurodyn.api.simulate(
        "lorenz",
        root / "train.npz",
        test_out=root / "test.npz",
        trials=8,
        timesteps=30,
        neurons=4,
        test_trials=3,
    )
    assert line.startswith("wrote")
    python_run = neurodyn.fit(
        "srnn",
        [root / "train.npz"],
        out=root / "py_run",
        states=2,
        latent_dim=2,
        steps=30,
        progress=False,
    )
    argv = ["fit", "srnn", str(root / "train.npz"), "--out", str(root / "cli_run")]
    assert main([*argv, "--states", "2", "--latent-dim", "2", "--steps", "30", "--quiet"]) == 0
    return root, python_run


def test_python_and_cli_write_the_same_run(folders):
    root, python_run = folders
    cli_run = neurodyn.load(root / "cli_run")
    assert isinstance(python_run, neurodyn.Run)
    assert sorted(p.name for p in python_run.path.iterdir()) == sorted(
        p.name for p in cli_run.path.iterdir()
    )
    for name, value in python_run.params.items():  # same seed, same data: bit-equal
        np.testing.assert_array_equal(value, cli_run.params[name], err_msg=name)
    fit = python_run.metrics["fit"]
    assert fit["seconds"] >= fit["compile_seconds"] > 0


def test_the_cli_opens_a_folder_made_in_python(folders, tmp_path, capsys):
    root, _ = folders
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(root / "py_run"),
                str(root / "test.npz"),
                "--samples",
                "4",
                "--particles",
                "16",
                "--replicates",
                "2",
                "--json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "m.json").read_text())
    assert {"recon_r2", "forecast_r2", "heldout_loglik_per_bin"} <= set(printed)
    assert (
        main(
            ["report", str(root / "py_run"), str(root / "test.npz"), "--out", str(tmp_path / "fig")]
        )
        == 0
    )
    assert (tmp_path / "fig" / "ppc.png").stat().st_size > 0


def test_python_evaluates_a_folder_made_by_the_cli_like_the_cli(folders, tmp_path, capsys):
    root, _ = folders
    options = dict(num_samples=4, particles=16, replicates=2)
    metrics = neurodyn.load(root / "cli_run").evaluate(root / "test.npz", **options)
    argv = [
        "evaluate",
        str(root / "cli_run"),
        str(root / "test.npz"),
        "--samples",
        "4",
        "--particles",
        "16",
        "--replicates",
        "2",
    ]
    capsys.readouterr()
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(metrics))


def test_data_may_be_sessions_or_arrays(folders):
    root, python_run = folders
    test = load_session(root / "test.npz")
    by_session = python_run.evaluate(test, horizons=(1,), num_samples=4, particles=16, replicates=2)
    by_array = python_run.evaluate(
        {"y": test.y, "mask": test.mask}, horizons=(1,), num_samples=4, particles=16, replicates=2
    )
    assert by_session["recon_r2"] == by_array["recon_r2"]
    assert as_sessions(test.y)[0].y.shape == test.y.shape


def test_compare_from_python_matches_the_cli(folders, tmp_path, capsys):
    root, python_run = folders
    table = neurodyn.compare(
        [python_run, root / "cli_run"], root / "test.npz", particles=16, replicates=2
    )
    assert list(table.index) == ["py_run", "cli_run"] or list(table.index) == ["cli_run", "py_run"]
    assert {"elpd", "se", "mcse", "elpd_diff", "dse"} <= set(table.columns)
    # identical fits: identical elpd
    assert table["elpd"].iloc[0] == pytest.approx(table["elpd"].iloc[1])


def test_fit_refuses_an_existing_run_without_resume_or_overwrite(folders, capsys):
    root, _ = folders
    before = {p.name: p.stat().st_mtime_ns for p in (root / "py_run").iterdir()}
    with pytest.raises(ValueError, match="existing run; add --resume"):
        neurodyn.fit("srnn", [root / "train.npz"], out=root / "py_run", steps=5)
    argv = ["fit", "srnn", str(root / "train.npz"), "--out", str(root / "py_run"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "existing run" in err
    assert {p.name: p.stat().st_mtime_ns for p in (root / "py_run").iterdir()} == before


def test_unknown_fit_option_is_one_line_and_writes_nothing(folders, tmp_path):
    root, _ = folders
    with pytest.raises(ValueError, match="unknown option.*latent_dims"):
        neurodyn.fit("srnn", [root / "train.npz"], out=tmp_path / "r", latent_dims=3)
    assert not (tmp_path / "r").exists()


def test_infer_writes_a_datatree_with_named_dims(folders, tmp_path, capsys):
    root, python_run = folders
    out = tmp_path / "post.nc"
    assert (
        main(
            [
                "infer",
                str(root / "cli_run"),
                str(root / "test.npz"),
                "--out",
                str(out),
                "--samples",
                "5",
            ]
        )
        == 0
    )
    tree = xr.open_datatree(out)
    h = tree["posterior"]["h"]
    assert {"chain", "draw", "trial", "time", "latent"} <= set(h.dims)
    states = tree["posterior"]["states"]
    assert np.issubdtype(states.dtype, np.integer)
    assert {"trial", "time"} <= set(states.dims)
    direct = python_run.infer(root / "test.npz", num_samples=5)
    assert direct["posterior"]["h"].shape == h.shape
    assert main(["infer", str(root / "cli_run"), str(root / "test.npz"), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
