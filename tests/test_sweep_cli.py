"""``neurodyn sweep``: fits a grid, ranks it by held-out elpd, and refits nothing when re-run."""

import json

import pytest

from neurodyn.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    argv = [
        "simulate",
        "lorenz",
        "--out",
        str(root / "train.npz"),
        "--test-out",
        str(root / "test.npz"),
        "--trials",
        "8",
        "--timesteps",
        "25",
        "--neurons",
        "4",
    ]
    assert main(argv) == 0
    return root


def test_sweep_ranks_the_settings_and_resumes_without_refitting(data, capsys):
    argv = [
        "sweep",
        "hmm",
        str(data / "train.npz"),
        "--states",
        "2",
        "3",
        "--test",
        str(data / "test.npz"),
        "--out",
        str(data / "sweep"),
        "--steps",
        "20",
        "--quiet",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "K2: fitted" in out and "K3: fitted" in out and "elpd" in out
    table = json.loads((data / "sweep" / "compare.json").read_text())
    assert set(table) == {"K2", "K3"}
    assert {"states", "elpd", "se", "mcse", "elpd_diff", "dse"} <= set(table["K2"])
    assert sorted(row["rank"] for row in table.values()) == [0, 1]
    for figure in ("elpd.png", "compare.png"):
        assert (data / "sweep" / figure).stat().st_size > 0
    stamps = {p: p.stat().st_mtime_ns for p in (data / "sweep").glob("K*/params.npz")}
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "K2: already fitted" in again and "K3: already fitted" in again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((data / "sweep" / "compare.json").read_text()) == table


@pytest.mark.parametrize(
    "extra, message",
    [(["--states", "2"], "at least two settings"), (["--states", "2", "2"], "distinct values")],
)
def test_a_sweep_without_two_settings_is_one_line(data, capsys, extra, message):
    argv = [
        "sweep",
        "hmm",
        str(data / "train.npz"),
        *extra,
        "--test",
        str(data / "test.npz"),
        "--out",
        str(data / "bad"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (data / "bad").exists()
