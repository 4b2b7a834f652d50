"""The meta family behind the CLI contract: configurations, fitting, adaptation, evaluation."""

import jax
import numpy as np
import pytest

from neurodyn.data.simulators.families import simulate_limit_cycles
from neurodyn.families import family_of
from neurodyn.families import meta as fam
from neurodyn.inference import runs
from neurodyn.models.meta import PER_RECORDING

TINY = dict(hidden=8, steps=6, batch_size=3)


@pytest.fixture(scope="module")
def sessions():
    return simulate_limit_cycles(seed=0, num_recordings=3, num_trials=5, num_timesteps=12)


@pytest.fixture(scope="module")
def fitted(sessions):
    config = fam.make_config("meta-dssm", sessions[:2], options=TINY)
    params, result = fam.fit(config, sessions[:2], progress=False)
    return config, params, result


def test_contract_names():
    assert set(fam.MODELS) == {
        "meta-dssm",
        "single-session",
        "shared-dynamics",
        "embedding-input",
        "linear-adapter",
    }
    assert all(family_of(m) is fam for m in fam.MODELS)
    assert fam.GUIDES == ("amortized", "free")


@pytest.mark.parametrize("guide", fam.GUIDES)
@pytest.mark.parametrize("model", fam.MODELS)
def test_every_configuration_fits_without_nan(model, guide, sessions):
    """Every configuration with every guide (the guides are interchangeable by name)."""
    config = fam.make_config(model, sessions[:2], options=dict(TINY, guide=guide))
    params, result = fam.fit(config, sessions[:2], progress=False)
    assert np.isfinite(result.losses).all() and len(result.losses) == 6
    template = fam.param_template(config)
    assert jax.tree_util.tree_structure(template) == jax.tree_util.tree_structure(params)
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params))


def test_adapt_changes_only_the_new_recording(fitted, sessions, tmp_path):
    config, params, _ = fitted
    new = sessions[2]
    new_config, new_params, result = fam.adapt(config, params, new, trials=3, steps=5)
    assert [r["name"] for r in new_config["recordings"]][-1] == new.name
    assert np.isfinite(result.losses).all()
    for name, before in params.items():
        after = new_params[name]
        if name in PER_RECORDING:
            old = np.asarray(after)[: len(config["recordings"])]
            n = np.shape(before)[1] if name in fam.NEURON_AXIS else None
            np.testing.assert_array_equal(old[:, :n] if n else old, before)
        else:  # shared: bit-equal
            for a, b in zip(
                jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after), strict=True
            ):
                assert np.array_equal(np.asarray(a), np.asarray(b))
    # The new run is a valid run: it saves, loads and evaluates the new recording.
    runs.save_params(tmp_path / "params.npz", new_params)
    loaded = runs.load_params(tmp_path / "params.npz", fam.param_template(new_config))
    metrics = fam.evaluate(new_config, loaded, [new], horizons=(2,), num_samples=2)
    assert np.isfinite(metrics["recon_r2"]) and "2" in metrics["forecast_r2"]
    assert list(fam.embeddings(new_config, loaded, [new])) == [new.name]


def test_refined_embedding_is_the_encoders_plus_a_fitted_shift(fitted, sessions):
    """``refine_embedding``: shared parameters stay bit-equal, the new recording's q(e) mean is
    the frozen encoder's output plus its fitted shift, the old recordings' shifts are 0, and a
    later unrefined adaptation of the refined run keeps its recording at the encoder's e."""
    config, params, _ = fitted
    new = sessions[2]
    cfg, prm, result = fam.adapt(config, params, new, trials=3, steps=5, refine_embedding=True)
    assert cfg["embedding_refined"] and np.isfinite(result.losses).all()
    shift = np.asarray(prm["embedding_shift"])
    assert shift.shape == (3, config["embedding_dim"])
    assert np.array_equal(shift[:2], np.zeros_like(shift[:2])) and np.abs(shift[2]).max() > 0
    for name, before in params.items():
        if name not in PER_RECORDING:
            for a, b in zip(
                jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(prm[name]), strict=True
            ):
                assert np.array_equal(np.asarray(a), np.asarray(b))
    refined = fam.embeddings(cfg, prm, [new])[new.name]
    plain_prm = {k: v for k, v in prm.items() if k != "embedding_shift"}
    plain = fam.embeddings(dict(cfg, embedding_refined=False), plain_prm, [new])[new.name]
    np.testing.assert_allclose(np.subtract(refined, plain), shift[2], atol=1e-5)

    other = sessions[0].__class__(y=new.y, mask=new.mask, name="another", dt=new.dt)
    cfg2, prm2, _ = fam.adapt(cfg, prm, other, trials=3, steps=5)
    assert cfg2["embedding_refined"]
    np.testing.assert_array_equal(prm2["embedding_shift"][:3], shift)
    assert not np.asarray(prm2["embedding_shift"][3]).any()


@pytest.mark.parametrize("model, guide", [("shared-dynamics", "amortized"), ("meta-dssm", "free")])
def test_refine_embedding_needs_an_amortized_embedding(model, guide, sessions):
    config = fam.make_config(model, sessions[:2], options=dict(TINY, steps=1, guide=guide))
    params, _ = fam.fit(config, sessions[:2], progress=False)
    with pytest.raises(ValueError, match="refine_embedding applies"):
        fam.adapt(config, params, sessions[2], trials=2, steps=1, refine_embedding=True)


def test_evaluate_metrics_and_embeddings(fitted, sessions):
    config, params, _ = fitted
    metrics = fam.evaluate(config, params, sessions[:2], horizons=(1, 3), num_samples=2)
    assert set(metrics) >= {"recon_r2", "forecast_r2", "elbo_per_bin", "per_recording"}
    assert set(metrics["forecast_r2"]) == {"1", "3"}
    assert set(metrics["per_recording"]) == {s.name for s in sessions[:2]}
    emb = fam.embeddings(config, params, sessions[:2])
    assert all(len(v) == config["embedding_dim"] for v in emb.values())


def test_forecast_r2_matches_evaluate(fitted, sessions):
    config, params, _ = fitted
    full = fam.evaluate(config, params, sessions[:2], horizons=(1, 3), num_samples=2, seed=1)
    only = fam.forecast_r2(config, params, sessions[:2], horizons=(1, 3), num_samples=2, seed=1)
    assert only["forecast_r2"] == pytest.approx(full["forecast_r2"])
    for name, per in only["per_recording"].items():
        assert per == pytest.approx(full["per_recording"][name]["forecast_r2"])


def test_evaluate_rejects_unknown_or_mismatched_recordings(fitted, sessions):
    config, params, _ = fitted
    with pytest.raises(ValueError, match="not part of this run"):
        fam.evaluate(config, params, [sessions[2]], horizons=())
    wrong = sessions[0].__class__(
        y=sessions[1].y, mask=sessions[1].mask, name=sessions[0].name, dt=0.1
    )
    if wrong.num_neurons != sessions[0].num_neurons:
        with pytest.raises(ValueError, match="neurons"):
            fam.evaluate(config, params, [wrong], horizons=())


@pytest.mark.parametrize(
    "model, options, message",
    [
        ("meta-dssm", dict(states=3), "does not apply"),
        ("shared-dynamics", dict(embedding_dim=2), "does not apply"),
        ("embedding-input", dict(rank=2), "does not apply"),
        ("meta-dssm", dict(guide="mystery"), "unknown guide"),
        ("meta-dssm", dict(latent_dim=0), "latent_dim"),
        ("meta-dssm", dict(likelihood="gamma"), "likelihood"),
        ("meta-dssm", dict(priors={"nonsense": "Normal(0, 1)"}), "no prior site"),
        ("meta-dssm", dict(colour="red"), "unknown option"),
    ],
)
def test_bad_options_raise(model, options, message, sessions):
    with pytest.raises(ValueError, match=message):
        fam.make_config(model, sessions, options=options)


def test_priors_are_arguments(sessions):
    config = fam.make_config(
        "meta-dssm", sessions[:2], options=dict(TINY, priors={"embedding": "StudentT(3, 0, 1)"})
    )
    params, result = fam.fit(config, sessions[:2], progress=False)
    assert np.isfinite(result.losses).all()


@pytest.mark.slow
def test_limit_cycles_case_study_quick(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "case_studies" / "limit_cycles.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--quick"], check=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"meta-dssm", "shared-dynamics", "floors", "wall_seconds"}
    assert (tmp_path / "vector_fields.png").exists()


def test_workflow_problem_scores_each_recording_and_trial(fitted, sessions):
    from neurodyn.inference import workflow

    config, params, _ = fitted
    metrics, estimate = workflow.heldout(
        fam.problem(config, params, sessions[:2]), num_samples=4, seed=0
    )
    assert estimate.log_marginal.shape == (2, 5)  # (recordings, trials)
    assert np.isfinite(metrics["heldout_loglik_per_bin"])


@pytest.mark.slow
def test_bifurcations_case_study_quick(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "case_studies" / "bifurcations_fewshot.py"
    cmd = [sys.executable, str(script), "--out", str(tmp_path), "--quick", "--models"]
    subprocess.run([*cmd, "meta-dssm", "shared-dynamics", "single-session-scratch"], check=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["table"]) == {
        "meta-dssm",
        "shared-dynamics",
        "single-session-scratch",
        "oracle",
    }
    assert all(len(v) == 3 for v in metrics["raw"]["single-session-scratch"].values())
    assert (tmp_path / "table.md").exists()
    # meta-dssm's embeddings: 31 training recordings, 3 held-out ones at each n_s
    emb = metrics["embeddings"]["meta-dssm"]["seed0"]
    assert len(emb["train"]) == 31
    assert all(len(per) == 3 for per in emb["held_out"].values())
    assert set(metrics["embeddings"]) == {"meta-dssm"}  # the others have no embedding
    assert set(metrics["generating_parameters"]) == {f"seed0/{k}" for k in emb["train"]} | {
        f"seed0/{k}" for k in emb["held_out"]["1"]
    }
    assert (tmp_path / "embeddings.png").exists()
    # per-recording forecasts on the training recordings, beside their oracle ceilings
    per = metrics["train_forecast_per_recording"]
    assert set(per) == {"meta-dssm", "shared-dynamics"}  # the scratch fit has no training set
    assert (
        set(per["meta-dssm"])
        == set(metrics["oracle_train"])
        == {f"seed0/{k}" for k in emb["train"]}
    )
    assert all(np.isfinite(v) and v <= 1 for v in metrics["oracle_train"].values())
