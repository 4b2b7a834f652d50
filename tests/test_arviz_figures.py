"""ArviZ figures from a small synthetic DataTree laid out like arviz_export's."""

import numpy as np
import pytest
import xarray as xr

from neurodyn.inference import arviz_figures as figs
from neurodyn.inference.comparison import compare

R, T, N, DRAWS = 4, 6, 3, 100


def tree(counts=True, mask=None, seed=0):
    """posterior_predictive / observed_data / log_likelihood / sample_stats like a run's."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 1.0, (R, T, N))
    if counts:
        y = rng.poisson(rate).astype(float)
        pred = rng.poisson(rate, (1, DRAWS, R, T, N)).astype(float)
    else:
        y = rng.normal(rate)
        pred = rng.normal(rate, size=(1, DRAWS, R, T, N))
    if mask is not None:
        y = np.where(mask[..., None], y, 0.0)
        pred = np.where(mask[..., None], pred, 500.0)  # a padded bin drawn as data would show
    ydims = ("trial", "y_dim_0", "y_dim_1")
    observed = {}
    if mask is not None:  # first, so that picking the first observed variable would be wrong
        observed["observed"] = (("trial", "y_dim_0"), mask)
    observed["y"] = (ydims, y)
    log_p = rng.normal(-50, 1, (1, DRAWS))
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {"h": (("chain", "draw", "trial"), rng.normal(size=(1, DRAWS, R)))}
            ),
            "posterior_predictive": xr.Dataset({"y": (("chain", "draw", *ydims), pred)}),
            "log_likelihood": xr.Dataset(
                {"y": (("chain", "draw", "trial"), rng.normal(-10, 0.3, (1, DRAWS, R)))}
            ),
            "observed_data": xr.Dataset(observed),
            "sample_stats": xr.Dataset(
                {
                    "log_p": (("chain", "draw"), log_p),
                    "log_q": (("chain", "draw"), log_p + rng.normal(0, 0.2, (1, DRAWS))),
                    "elbo": (("step",), -1000 * np.exp(-np.arange(300) / 20) - 50),
                }
            ),
        }
    )


def png(path):
    data = path.read_bytes()
    return path.is_file() and len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "draw, counts",
    [
        (figs.plot_ppc_rootogram, True),
        (figs.plot_ppc_dist, False),
        (figs.plot_ppc, True),
        (figs.plot_ppc, False),
        (figs.plot_khat, True),
        (figs.plot_elbo, True),
    ],
)
def test_each_figure_writes_a_png(tmp_path, draw, counts):
    out = draw(tree(counts), tmp_path / "sub" / "fig.png")
    assert png(out)


def test_compare_figure_from_a_table_and_from_rows(tmp_path):
    elpds = {name: figs.elpd_data(tree(seed=s)) for s, name in enumerate(["a", "b", "c"])}
    table = compare(elpds)
    assert png(figs.plot_compare(table, tmp_path / "cmp.png"))
    rows = [{"model": name, **row} for name, row in table.to_dict("index").items()]
    assert png(figs.plot_compare(rows, tmp_path / "rows.png"))


def test_padded_bins_are_not_drawn_as_data():
    mask = np.ones((R, T), bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    t = tree(mask=mask)
    flat, name, entries = figs._flat_ppc_tree(t, None, None, "test")  # mask found in the tree
    assert entries == mask.sum() * N
    assert flat["observed_data"][name].sizes["obs"] == entries
    assert (flat["posterior_predictive"][name].values < 500).all()
    # An explicit mask wins; a (trials, T, N) mask works too.
    full = np.broadcast_to(mask[..., None], (R, T, N)).copy()
    full[0, 0, 0] = False
    _, _, fewer = figs._flat_ppc_tree(t, "y", full, "test")
    assert fewer == entries - 1


def test_figures_with_a_mask_write_pngs(tmp_path):
    mask = np.ones((R, T), bool)
    mask[2, 3:] = False
    assert png(figs.plot_ppc_rootogram(tree(mask=mask), tmp_path / "root.png"))
    assert png(figs.plot_ppc_dist(tree(False), tmp_path / "dist.png", mask=mask))


@pytest.mark.parametrize(
    "draw, drop, message",
    [
        (
            figs.plot_ppc_rootogram,
            "posterior_predictive",
            "needs the DataTree group 'posterior_predictive'",
        ),
        (figs.plot_ppc_dist, "observed_data", "needs the DataTree group 'observed_data'"),
        (figs.plot_ppc, "observed_data", "needs the DataTree group 'observed_data'"),
        (figs.plot_khat, "log_likelihood", "needs the DataTree group 'log_likelihood'"),
        (figs.plot_elbo, "sample_stats", "needs the DataTree group 'sample_stats'"),
    ],
)
def test_missing_group_is_a_one_line_error(tmp_path, draw, drop, message):
    t = tree()
    groups = {k: t[k].to_dataset() for k in t.children if k != drop}
    with pytest.raises(ValueError, match=message) as err:
        draw(xr.DataTree.from_dict(groups), tmp_path / "x.png")
    assert "\n" not in str(err.value) and not (tmp_path / "x.png").exists()


def test_other_bad_input(tmp_path):
    with pytest.raises(ValueError, match="not counts"):
        figs.plot_ppc_rootogram(tree(counts=False), tmp_path / "x.png")
    with pytest.raises(ValueError, match="has no variable 'z'"):
        figs.plot_ppc_dist(tree(), tmp_path / "x.png", var_name="z")
    with pytest.raises(ValueError, match=r"mask shape \(2, 2\) does not match"):
        figs.plot_ppc_dist(tree(), tmp_path / "x.png", mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="leaves no observed entry"):
        figs.plot_ppc_dist(tree(), tmp_path / "x.png", mask=np.zeros((R, T), bool))
    t = tree()
    stats = t["sample_stats"].to_dataset().drop_vars("elbo")
    groups = {k: t[k].to_dataset() for k in t.children} | {"sample_stats": stats}
    with pytest.raises(ValueError, match="no 'elbo' trace"):
        figs.plot_elbo(xr.DataTree.from_dict(groups), tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least two models"):
        figs.plot_compare([{"model": "a", "elpd": 1.0}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="comparison DataFrame or rows"):
        figs.plot_compare("table", tmp_path / "x.png")


def test_figures_of_a_real_export_read_back_from_netcdf(tmp_path):
    from tests.test_arviz_export import export

    export(tmp_path, num_samples=100)
    back = xr.open_datatree(tmp_path / "posterior.nc")
    assert png(figs.plot_ppc(back, tmp_path / "ppc.png"))  # Gaussian: the density figure
    assert png(figs.plot_khat(back, tmp_path / "khat.png"))
    assert png(figs.plot_elbo(back, tmp_path / "elbo.png"))
