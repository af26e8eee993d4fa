"""The diagnostics table (bayesmlm/bayes/diagnostics.py) against ArviZ's own ``az.summary``.

The table computes ESS and R-hat with ArviZ's vectorised backend where it applies (for models with
many scalars; forced here with ``vectorised_from=1``) and its default backend elsewhere; every column must equal ``az.summary``'s on inputs that reach both paths:
AR(1) chains, a variable with several dimensions, a correlation matrix (constant diagonal), a
constant parameter, a non-finite draw, draws with many ties (rounded), a 50/50 binary parameter (its folded draws all equal), an odd number of draws, one chain,
four chains.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from bayesmlm.bayes.diagnostics import _summary_table

COLUMNS = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat"]


def _ar(rng, shape, phi):
    e = rng.normal(size=shape)
    x = np.empty(shape)
    x[:, 0] = e[:, 0]
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


@pytest.mark.parametrize("vectorised_from", [1, 10_000])
@pytest.mark.parametrize("chains,draws", [(2, 400), (4, 250), (2, 101), (1, 300)])
def test_table_equals_arviz_summary(chains, draws, vectorised_from) -> None:
    rng = np.random.default_rng(chains * 1000 + draws)
    cor = np.zeros((chains, draws, 2, 2))
    cor[..., 0, 0] = cor[..., 1, 1] = 1.0
    cor[..., 0, 1] = cor[..., 1, 0] = np.tanh(_ar(rng, (chains, draws), 0.5))
    broken = rng.normal(size=(chains, draws))
    broken[0, 5] = np.nan
    post = {"beta": _ar(rng, (chains, draws, 3), 0.7) + 2.0, "sigma": np.exp(_ar(rng, (chains, draws), 0.3)),
            "cor[g]": cor, "tau": np.full((chains, draws), 0.5), "broken": broken,
            "r": _ar(rng, (chains, draws, 40), 0.95), "coarse": np.round(_ar(rng, (chains, draws, 2), 0.5), 1),
            "binary": np.broadcast_to(np.arange(draws) % 2, (chains, draws)).astype(float)}
    idata = az.from_dict({"posterior": post}, dims={"cor[g]": ["a", "b"], "beta": ["fixed"]},
                         coords={"a": ["Intercept", "x"], "b": ["Intercept", "x"], "fixed": ["Intercept", "x1", "x2"]})
    names = list(post)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = az.summary(idata, var_names=names, kind="all", ci_kind="eti", round_to="none")
        table = _summary_table(idata, names, vectorised_from)
    assert list(table.index) == list(expected.index)
    for column in COLUMNS:
        want, got = expected[column].to_numpy(float), table[column].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=column)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=column)
    assert np.isnan(table.loc["broken", "mean"]) and np.isnan(table.loc["broken", "ess_bulk"])
