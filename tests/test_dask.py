"""Dask DataFrames: reduced partition by partition, they give the pandas answers (and lme4's)."""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from arviz_stats.base import array_stats

import bayesmlm as bm
from bayesmlm.distributed import design_from_dask

from .conftest import load_data, load_reference
from .lme4_checks import assert_matches_lme4, assert_modes_match_lme4

CASES = ["cake_interaction_reml", "pastes_nested_reml", "crossed_slopes_reml", "sleepstudy_uncorr_ml", "dyestuff2_singular_reml"]


@pytest.mark.parametrize("case", CASES)
def test_lmer_on_dask_matches_lme4_and_pandas(case: str) -> None:
    ref = load_reference(case)
    df = load_data(ref["data"]).sample(frac=1.0, random_state=3)  # levels spread over partitions
    ddf = dd.from_pandas(df, npartitions=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        fit = bm.lmer(ref["formula"], ddf, reml=ref["REML"])
        local = bm.lmer(ref["formula"], df, reml=ref["REML"], engine="pls")
    assert fit.nobs == ref["nobs"] and not fit.design.rows_held
    assert_matches_lme4(fit, ref)
    assert_modes_match_lme4(fit, ref)
    assert fit.loglik == pytest.approx(local.loglik, abs=1e-6)  # same statistics up to summation order


def test_collapsed_posterior_from_dask_matches_pandas() -> None:
    df = bm.datasets.simulate_retail(4000, seed=2)
    formula = "TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)"
    priors = bm.priors.default(formula, df)
    kwargs = dict(priors=priors, draws=500, tune=500, chains=2, seed=4, progressbar=False)
    local = bm.sample(formula, df, **kwargs)
    remote = bm.sample(formula, dd.from_pandas(df, npartitions=4), **kwargs)
    assert remote.method == "collapsed" and "log_likelihood" not in remote.idata.children
    # The same statistics up to summation order ...
    mine, theirs = local.design.sufficient_stats(), remote.design.sufficient_stats()
    for name in ["ZtX", "Zty", "XtX", "Xty", "yty"]:
        np.testing.assert_allclose(getattr(theirs, name), getattr(mine, name), rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(theirs.ZtZ.toarray(), mine.ZtZ.toarray(), rtol=1e-10)
    # ... so the same posterior: rounding differences in the last digits make NUTS trajectories
    # part ways, so the chains are compared as independent runs, within their Monte Carlo error.
    for key in ["Intercept", "Wk", "sigma", "sd[Description][Wk]", "cor[MerGroup][Intercept,Wk]"]:
        a, b = local.draws(key), remote.draws(key)
        mcse = np.hypot(*(float(array_stats.mcse(x.reshape(2, -1), method="mean")) for x in (a, b)))
        assert abs(a.mean() - b.mean()) <= 4 * mcse, key


def test_dask_errors_name_the_problem() -> None:
    df = load_data("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    with pytest.raises(bm.DataError, match="'Dayz'"):
        bm.lmer("Reaction ~ Dayz + (1 | Subject)", dd.from_pandas(df, npartitions=2))
    holed = df.assign(Days=df["Days"].where(df.index % 50 != 0))
    with pytest.raises(bm.DataError, match=r"'Days' \(4 missing\)"):
        bm.lmer(formula, dd.from_pandas(holed, npartitions=3))
    with pytest.warns(UserWarning, match="dropped 4 of 180 rows"):
        assert bm.lmer(formula, dd.from_pandas(holed, npartitions=3), na_action="drop").nobs == 176
    pa = pytest.importorskip("pyarrow")  # NaN in an Arrow double is no null, yet missing all the same
    arrow = pd.array(pa.array(holed["Days"].to_numpy(dtype=float), from_pandas=False), dtype=pd.ArrowDtype(pa.float64()))
    with pytest.raises(bm.DataError, match=r"'Days' \(4 missing\)"):
        bm.lmer(formula, dd.from_pandas(df.assign(Days=arrow), npartitions=3))
    with pytest.warns(UserWarning, match="dropped 4 of 180 rows"):
        assert bm.lmer(formula, dd.from_pandas(df.assign(Days=arrow), npartitions=3), na_action="drop").nobs == 176
    one_level = df.assign(Subject="only")
    with pytest.raises(bm.DataError, match="'Subject' has 1 level"):
        bm.lmer(formula, dd.from_pandas(one_level, npartitions=3))
    fit = bm.lmer(formula, dd.from_pandas(df, npartitions=3))
    with pytest.raises(bm.DataError, match=r"compute the frame into pandas"):
        fit.residuals()


def test_partitions_with_few_levels_are_encoded_like_the_whole() -> None:
    """Each partition holds a few subjects only; codes must still follow the full level order."""
    df = load_data("sleepstudy").sort_values("Subject")
    design = design_from_dask("Reaction ~ Days + (Days | Subject)", dd.from_pandas(df, npartitions=6))
    full = bm.lmer("Reaction ~ Days + (Days | Subject)", df, engine="pls").design.sufficient_stats()
    stats = design.sufficient_stats()
    assert design.blocks[0].levels == sorted(df["Subject"].unique())
    np.testing.assert_allclose(stats.ZtZ.toarray(), full.ZtZ.toarray())
    np.testing.assert_allclose(stats.Zty, full.Zty)
    np.testing.assert_allclose(stats.XtX, full.XtX)
    assert design.fixed_names == ["Intercept", "Days"] and design.n == 180


TRANSFORM_CASES = [
    # (formula, REML, lme4 case it reparametrises (same logLik) or None)
    ("Reaction ~ Days + (0 + scale(Days) | Subject)", True, None),
    ("Reaction ~ scale(Days) + (scale(Days) | Subject)", False, "sleepstudy_corr_ml"),
    ("Reaction ~ center(Days) + (center(Days) | Subject)", True, "sleepstudy_corr_reml"),
    ("Reaction ~ Days + (0 + scale(Days, center=False) | Subject)", True, "sleepstudy_slope_only_reml"),
    ("Reaction ~ standardize(Days) + (1 | Subject)", False, "sleepstudy_int_ml"),
]


@pytest.mark.parametrize(("formula", "reml", "case"), TRANSFORM_CASES)
def test_stateful_transforms_learn_from_every_partition(formula: str, reml: bool, case: str | None) -> None:
    """scale/center statistics come from all rows, not from the encoding sample."""
    df = load_data("sleepstudy").sample(frac=1.0, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        local = bm.lmer(formula, df, reml=reml)
        fit = bm.lmer(formula, dd.from_pandas(df, npartitions=3), reml=reml)
    assert not fit.design.rows_held
    assert fit.loglik == pytest.approx(local.loglik, abs=1e-6)
    np.testing.assert_allclose(fit.fixef(), local.fixef(), rtol=1e-8)
    if case is not None:
        assert fit.loglik == pytest.approx(load_reference(case)["loglik"], abs=1e-6)


def test_transforms_dask_cannot_learn_are_refused() -> None:
    ddf = dd.from_pandas(load_data("sleepstudy"), npartitions=3)
    with pytest.raises(bm.FormulaError, match=r"poly\(Days, 2\) .*stateful transform.*compute the column before fitting"):
        bm.lmer("Reaction ~ poly(Days, 2) + (1 | Subject)", ddf)
    with pytest.raises(bm.FormulaError, match=r"response 'scale\(Reaction\)'.*standardise it"):
        bm.lmer("scale(Reaction) ~ Days + (1 | Subject)", ddf)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_infinite_values_on_dask_are_counted_over_partitions() -> None:
    df = load_data("sleepstudy").astype({"Days": float})
    df.loc[[5, 100, 170], "Days"] = np.inf
    with pytest.raises(bm.DataError, match=r"infinite values in column 'Days' \(3 rows: 5, 100, 170\)"):
        bm.lmer("Reaction ~ Days + (1 | Subject)", dd.from_pandas(df, npartitions=3))
    with pytest.raises(bm.DataError, match=r"fixed-effects column 'np.log\(Days\)' \(18 rows: 0, 10"):
        bm.lmer("Reaction ~ np.log(Days) + (1 | Subject)", dd.from_pandas(load_data("sleepstudy"), npartitions=3))
