"""The meta family from the command line, as the README runs it: simulate a limit-cycle family,
fit ``meta-dssm`` on a folder of recordings, adapt to a new recording, evaluate the adapted run."""

import json

import pytest

from neurodyn.cli import main


def call(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("meta_flow")
    lc = root / "lc"
    sim = ("--trials", 6, "--timesteps", 15, "--recordings")
    assert call("simulate", "limit-cycle", "--out", lc, *sim, 3) == 0
    assert call("simulate", "limit-cycle", "--out", root / "new", "--seed", 7, *sim, 1) == 0
    fit = ("--steps", 10, "--batch-size", 3, "--quiet")
    dims = ("--embedding-dim", 1, "--rank", 1, "--latent-dim", 2)
    files = sorted(lc.glob("*.npz"))
    assert call("fit", "meta-dssm", *files, "--out", root / "run", *fit, *dims) == 0
    assert call("fit", "shared-dynamics", lc, "--out", root / "shared", *fit) == 0
    return root


def test_simulate_writes_one_session_per_recording(flow):
    assert len(list((flow / "lc").glob("*.npz"))) == 3
    assert len(list((flow / "new").glob("*.npz"))) == 1


def test_fit_writes_the_embeddings(flow):
    config = json.loads((flow / "run" / "config.json").read_text())
    assert (config["embedding_dim"], config["rank"], config["latent_dim"]) == (1, 1, 2)
    embeddings = json.loads((flow / "run" / "embeddings.json").read_text())
    assert set(embeddings) == {r["name"] for r in config["recordings"]}
    assert all(len(e) == 1 for e in embeddings.values())


@pytest.mark.parametrize("refine", [False, True])
def test_adapt_then_evaluate(flow, refine, capsys):
    new = next((flow / "new").glob("*.npz"))
    out = flow / f"adapted_{refine}"
    extra = ["--refine-embedding"] if refine else []
    assert call("adapt", flow / "run", new, "--trials", 4, "--out", out, "--steps", 5, *extra) == 0
    assert "adapted to" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["recordings"][-1]["name"] == new.stem
    assert config.get("embedding_refined", False) is refine
    assert list(json.loads((out / "embeddings.json").read_text())) == [new.stem]
    assert json.loads((out / "metrics.json").read_text())["adapt"]["trials"] == 4
    assert call("evaluate", out, new, "--json", out / "eval.json") == 0
    metrics = json.loads((out / "eval.json").read_text())
    assert metrics["recon_r2"] > -1 and set(metrics["forecast_r2"]) >= {"1"}


def assert_one_line_error(capsys, argv, needle):
    capsys.readouterr()
    assert call(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err, err


def test_adapt_refuses_bad_requests(flow, capsys, tmp_path):
    new = next((flow / "new").glob("*.npz"))
    assert_one_line_error(
        capsys, ["adapt", flow / "run", new, "--trials", 99, "--out", tmp_path / "a"], "--trials 99"
    )
    assert_one_line_error(
        capsys,
        ["adapt", flow / "shared", new, "--trials", 2, "--out", tmp_path / "b"]
        + ["--refine-embedding"],
        "refine_embedding applies",
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
