"""The SVI engine: recovery, full-data scaling of minibatches, determinism, resume, plateau stop."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from neurodyn.inference.svi import fit, plateaued, trial_sampler

# A conjugate model: y_i ~ N(mu, 1) i.i.d. (4 values per trial), mu ~ N(0, 10^2).


def model(batch, *, num_trials, step=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("trials", num_trials, subsample_size=batch["y"].shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0).expand([4]).to_event(1), obs=batch["y"])


def guide(batch, *, num_trials, step=None):
    loc = numpyro.param("loc", 0.0)
    scale = numpyro.param("scale", 1.0, constraint=dist.constraints.positive)
    numpyro.sample("mu", dist.Normal(loc, scale))


Y = np.random.default_rng(0).normal(3.0, 1.0, (64, 4)).astype(np.float32)


def exact_posterior():
    n = Y.size
    precision = 1 / 100 + n
    return Y.sum() / precision, precision**-0.5


def test_minibatch_fit_recovers_the_exact_posterior():
    result = fit(model, guide, {"y": Y}, num_steps=1500, batch_size=16, learning_rate=0.02,
                 seed=1, progress=False)
    mean, sd = exact_posterior()
    assert abs(result.params["loc"] - mean) < 0.05
    # The minibatch ELBO is scaled to the full data, so the posterior width is the full-data one.
    assert 0.5 * sd < result.params["scale"] < 2 * sd


def test_same_seed_same_curve_and_different_seed_different_curve():
    kw = dict(num_steps=60, batch_size=8, progress=False)
    a = fit(model, guide, {"y": Y}, seed=3, **kw).losses
    b = fit(model, guide, {"y": Y}, seed=3, **kw).losses
    c = fit(model, guide, {"y": Y}, seed=4, **kw).losses
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_resume_continues_the_same_run(tmp_path):
    kw = dict(batch_size=8, seed=5, progress=False, checkpoint_every=20)
    whole = fit(model, guide, {"y": Y}, num_steps=100, out_dir=tmp_path / "a", **kw)
    fit(model, guide, {"y": Y}, num_steps=40, out_dir=tmp_path / "b", **kw)
    resumed = fit(model, guide, {"y": Y}, num_steps=100, out_dir=tmp_path / "b", resume=True, **kw)
    np.testing.assert_array_equal(whole.losses, resumed.losses)
    rows = (tmp_path / "b" / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,seconds" and len(rows) == 101
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(100))


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(model, guide, {"y": Y}, num_steps=10, out_dir=tmp_path, resume=True, progress=False)


def test_plateau_stops_early():
    result = fit(model, guide, {"y": Y}, num_steps=20000, learning_rate=0.05, patience=100,
                 seed=0, progress=False)
    assert result.stopped_early and result.steps_run < 20000


def test_plateau_rule():
    assert not plateaued(np.linspace(10, 1, 400), patience=100)
    assert plateaued(np.ones(400), patience=100)
    assert not plateaued(np.ones(150), patience=100)  # too short to judge


def test_trial_sampler_draws_distinct_trials():
    import jax

    sample = trial_sampler(10, 4)
    batch = sample(jax.random.PRNGKey(0), {"i": np.arange(10)})
    assert len(set(np.asarray(batch["i"]).tolist())) == 4
    assert trial_sampler(10, None)(None, {"i": np.arange(10)})["i"].shape == (10,)


def test_no_plateau_stop_before_min_steps():
    result = fit(model, guide, {"y": Y}, num_steps=3000, learning_rate=0.05, patience=100,
                 min_steps=2000, seed=0, progress=False)
    assert result.stopped_early and 2000 <= result.steps_run < 3000


_MANY_SITES = '''
import sys
import numpy as np, numpyro, numpyro.distributions as dist
from neurodyn.inference.svi import fit

def model(batch, *, num_trials):
    total = 0.0
    for i in range(8):
        total = total + numpyro.sample(f"z{i}", dist.Normal(0.0, 10.0 ** (i % 4)))
    with numpyro.plate("trials", num_trials):
        numpyro.sample("y", dist.Normal(total, 1.0).expand([3]).to_event(1), obs=batch["y"])

def guide(batch, *, num_trials):
    for i in range(8):
        loc = numpyro.param(f"loc{i}", 0.1 * i)
        numpyro.sample(f"z{i}", dist.Normal(loc, 0.37))

y = np.random.default_rng(0).normal(2.0, 1.0, (16, 3)).astype(np.float32)
fit(model, guide, {"y": y}, num_steps=30, seed=2, progress=False, out_dir=sys.argv[1])
'''


def test_the_same_seed_gives_a_bit_equal_loss_csv_in_any_process(tmp_path):
    """Two processes with different hash seeds (NumPyro sums ELBO sites in set order): the
    step and loss columns of loss.csv are equal (the seconds column is wall time)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from neurodyn.inference.runs import read_npz

    root = Path(__file__).resolve().parents[1]
    columns, losses = [], []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
        subprocess.run([sys.executable, "-c", _MANY_SITES, str(out)], env=env, check=True,
                       timeout=300)
        rows = (out / "loss.csv").read_text().splitlines()
        columns.append([",".join(r.split(",")[:2]) for r in rows])
        losses.append(read_npz(out / "checkpoint.npz")["losses"])  # the float32 values
    assert len(columns[0]) == 31
    assert columns[0] == columns[1]
    np.testing.assert_array_equal(losses[0], losses[1])


def test_a_fit_into_a_folder_checkpoints_by_default(tmp_path, monkeypatch):
    """No ``checkpoint_every`` given: a fit with ``out_dir`` still writes checkpoints during the
    run (seen through the test hook that fires after each one) and a final one."""
    import neurodyn.inference.svi as svi

    flag = tmp_path / "checkpointed"
    monkeypatch.setattr(svi, "CHECKPOINT_EVERY", 10)
    monkeypatch.setenv("NEURODYN_TEST_PAUSE_AT", "svi")
    monkeypatch.setenv("NEURODYN_TEST_PAUSE_FILE", str(flag))
    monkeypatch.setenv("NEURODYN_TEST_PAUSE_SECONDS", "0")
    fit(model, guide, {"y": Y}, num_steps=15, out_dir=tmp_path / "run", progress=False)
    assert flag.exists() and (tmp_path / "run" / svi.CHECKPOINT).exists()


def test_stop_rule_is_the_convergence_check_and_resume_stops_at_the_same_step(tmp_path):
    from neurodyn.inference.diagnostics import elbo_convergence

    def stop(losses):
        return elbo_convergence(losses)["converged"]

    kw = dict(learning_rate=0.05, min_steps=500, stop=stop, seed=0, progress=False)
    whole = fit(model, guide, {"y": Y}, num_steps=20000, **kw)
    assert whole.stopped_early and 500 <= whole.steps_run < 20000
    assert elbo_convergence(whole.losses)["converged"]
    fit(model, guide, {"y": Y}, num_steps=300, out_dir=tmp_path, checkpoint_every=100, **kw)
    resumed = fit(model, guide, {"y": Y}, num_steps=20000, out_dir=tmp_path, resume=True,
                  checkpoint_every=100, **kw)
    assert resumed.steps_run == whole.steps_run
    np.testing.assert_array_equal(resumed.losses, whole.losses)
