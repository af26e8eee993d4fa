"""Issue 4/6: lmer vs posterior, pooling spectrum, LOO, elicitation and prior checks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.priors import HalfNormal, Normal

from .conftest import load_data

FORMULA = "Reaction ~ Days + (Days | Subject)"
SAMPLE = dict(draws=400, tune=400, chains=2, seed=3, progressbar=False)


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return load_data("sleepstudy")


@pytest.fixture(scope="module")
def fit(sleep) -> bm.FreqFit:
    return bm.lmer(FORMULA, sleep)


@pytest.fixture(scope="module")
def post(sleep, fit) -> bm.BayesFit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.sample(FORMULA, sleep, priors=bm.priors.default(FORMULA, sleep), **SAMPLE)


def _ols(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.solve(X.T @ X, X.T @ y)


def test_pooling_rows_are_ols_lmer_and_posterior(sleep, fit, post) -> None:
    pool = bm.pooling(FORMULA, sleep, fit=fit, post=post)
    # partial pooling (lmer) is exactly fit.coef()
    pd.testing.assert_frame_equal(
        pool.coefficients("Subject", "partial pooling (lmer)").loc[fit.coef()["Subject"].index, ["Intercept", "Days"]],
        fit.coef()["Subject"].rename_axis("level"),
        check_names=False,
    )
    # no pooling is a least-squares fit per subject, complete pooling one for all rows
    no_pool = pool.coefficients("Subject", "no pooling")
    for subject, rows in sleep.groupby("Subject"):
        X = np.column_stack([np.ones(len(rows)), rows["Days"]])
        np.testing.assert_allclose(no_pool.loc[subject, ["Intercept", "Days"]], _ols(X, rows["Reaction"].to_numpy()), rtol=1e-10)
    X = np.column_stack([np.ones(len(sleep)), sleep["Days"]])
    complete = pool.coefficients("Subject", "complete pooling")
    np.testing.assert_allclose(complete[["Intercept", "Days"]].to_numpy(), np.tile(_ols(X, sleep["Reaction"].to_numpy()), (18, 1)))
    bayes = pool.coefficients("Subject", "partial pooling (Bayes)")
    means = post.coef()["Subject"]["mean"].unstack("term")
    np.testing.assert_allclose(bayes.loc[means.index, ["Intercept", "Days"]], means[["Intercept", "Days"]])
    fig = pool.plot()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 18


def test_crossed_pooling_has_every_combination_including_absent_ones() -> None:
    df = bm.datasets.simulate_retail(1500, n_absent=2, seed=5)
    formula = "TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)"
    fit = bm.lmer(formula, df)
    pool = bm.pooling(formula, df, fit=fit, bayes=False)
    combos = pool.table[(pool.table.factor == "Description:MerGroup") & (pool.table.approach == "partial pooling (lmer)")]
    assert combos.level.nunique() == 100
    absent = combos[combos.n == 0]
    assert absent.level.nunique() == 2
    level = absent.level.iloc[0]
    loc, grp = level.split(":")
    expected = fit.coef()["Description"].loc[loc] + fit.coef()["MerGroup"].loc[grp] - fit.fixef()
    got = combos[combos.level == level].set_index("term").estimate
    np.testing.assert_allclose(got[expected.index], expected)
    no_pool = pool.coefficients("Description:MerGroup", "no pooling")
    assert no_pool.loc[level].isna().all()  # no rows: no pooling has nothing to say
    fig = pool.plot()
    assert any("(no data)" in ax.get_title() for ax in fig.axes)


def test_compare_tables(fit, post) -> None:
    cmp = bm.compare(fit, post)
    assert cmp.fixed.loc["Days", "lmer"] == pytest.approx(fit.fixef()["Days"])
    assert cmp.fixed.loc["Days", "lmer_se"] == pytest.approx(fit.se()["Days"])
    assert cmp.fixed.loc["Days", "mean"] == pytest.approx(post.draws("Days").mean())
    assert set(cmp.scales.index) == {"sd[Subject][Intercept]", "sd[Subject][Days]", "cor[Subject][Intercept,Days]"}
    assert cmp.sigma.loc["sigma", "lmer"] == pytest.approx(fit.sigma)
    # with 18 subjects and data-scaled priors, lmer's estimates lie inside the 90% intervals
    assert cmp.fixed.lmer_inside.all() and cmp.sigma.lmer_inside.all()
    levels = cmp.levels.xs("Subject", level="factor")
    assert len(levels) == 36
    row = levels.loc[("308", "Days")]
    assert row["shrinkage"] == pytest.approx(1 - (row["mean"] - cmp.fixed.loc["Days", "mean"]) / (row["no_pooling"] - cmp.fixed.loc["Days", "mean"]))
    # slopes are shrunk towards the population on average
    assert 0 < levels.xs("Days", level="term")["shrinkage"].median() < 1
    assert len(cmp.plot_forest().axes) == 6
    assert cmp.plot_shrinkage().axes[0].get_xlabel() == "Intercept"
    with pytest.raises(ValueError, match="different models"):
        bm.compare(bm.lmer("Reaction ~ Days + (1 | Subject)", load_data("sleepstudy")), post)


def test_loo_compare_ranks_and_explains_pareto_k(sleep, post) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simpler = bm.sample("Reaction ~ Days + (1 | Subject)", sleep, priors="default", **SAMPLE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = bm.loo_compare({"slopes": post, "intercepts": simpler})
    assert table.index[0] == "slopes" and table.loc["intercepts", "elpd_diff"] < 0
    assert {"elpd", "weight", "pareto_k_bad"} <= set(table.columns)
    for w in caught:
        if issubclass(w.category, bm.SamplingWarning):
            assert "Pareto k above" in str(w.message) and "unreliable" in str(w.message)
    message = bm.loo.pareto_k_message("m", np.array([0.1, 0.9, 0.2, 1.3]), 0.7)
    assert message.startswith("model 'm': 2 of 4 observations (50.0%) have Pareto k above 0.70")
    assert bm.loo.pareto_k_message("m", np.array([0.1, 0.2]), 0.7) is None
    with pytest.raises(ValueError, match="two or more"):
        bm.loo_compare({"slopes": post})


def test_expert_quantiles_become_priors() -> None:
    d = bm.priors.from_quantiles(-5, 20, mass=0.9)
    assert d.family == "Normal"
    assert d.mu == pytest.approx(7.5, abs=0.05)
    assert d.sigma == pytest.approx(12.5 / 1.6449, rel=0.01)  # 90% central interval of a normal
    g = bm.priors.from_quantiles(5, 50, mass=0.9, family="Gamma")
    from scipy import stats

    assert stats.gamma(g.alpha, scale=1 / g.beta).cdf(50) - stats.gamma(g.alpha, scale=1 / g.beta).cdf(5) == pytest.approx(0.9, abs=0.01)
    spec = bm.priors.default(FORMULA, load_data("sleepstudy"))
    bm.priors.set_from_quantiles(spec, "Days", 0, 20, mass=0.9)
    assert spec.sources["Days"].startswith("expert: 90% between 0 and 20")
    assert 'Days = "expert: 90% between 0 and 20' in bm.priors.dumps(spec)  # the source goes into the file
    with pytest.raises(bm.PriorError, match="positive half-line"):
        bm.priors.from_quantiles(-1, 5, family="HalfNormal")
    with pytest.raises(bm.PriorError, match="mass must be between 0 and 1"):
        bm.priors.from_quantiles(0, 5, mass=90)
    with pytest.raises(bm.PriorError, match="cannot elicit"):
        bm.priors.from_quantiles(0, 5, family="LKJ")


def test_historical_priors_from_other_data_do_not_trigger_the_same_data_note(sleep) -> None:
    earlier, later = sleep[sleep.Days <= 4], sleep[sleep.Days > 4]
    spec = bm.priors.empirical(bm.lmer(FORMULA, earlier))
    assert spec.meta["method"] == "empirical"
    from bayesmlm.design import build_design
    from bayesmlm.priors.rules import warn_if_same_data

    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.EmpiricalPriorNote)
        warn_if_same_data(spec, build_design(FORMULA, later))  # other data: silent
        with pytest.raises(bm.EmpiricalPriorNote):
            warn_if_same_data(spec, build_design(FORMULA, earlier))  # same data: says so


def test_prior_predictive_check(sleep) -> None:
    tight = bm.priors.PriorSpec({
        "Intercept": Normal(250, 20), "Days": Normal(10, 5), "sd[Subject][Intercept]": HalfNormal(30),
        "sd[Subject][Days]": HalfNormal(8), "cor[Subject]": bm.priors.LKJ(2), "sigma": HalfNormal(30)})
    wide = tight.copy()
    for key in ["Intercept", "Days"]:
        wide[key] = wide[key].scaled(100)
    a = bm.prior_predictive(FORMULA, sleep, priors=tight, draws=400, plausible=(0, 1000), seed=1)
    b = bm.prior_predictive(FORMULA, sleep, priors=wide, draws=400, plausible=(0, 1000), seed=1)
    assert a.y.shape == (400, 180) and a.share_outside < 0.05 < b.share_outside
    assert "fit what you expect" in a.verdict() and "tighten" in b.verdict()
    median = a.summary().loc["50%", "prior predictive"]
    assert 250 < median < 400  # intercept 250 + 10/day over days 0..9
    assert a.plot().axes[0].get_title() == "Prior predictive check"


def test_scaled_priors_and_sensitivity(sleep) -> None:
    spec = bm.priors.default(FORMULA, sleep)
    from bayesmlm.sensitivity import scale_priors

    wider = scale_priors(spec, 2.0)
    assert wider["Days"].sigma == pytest.approx(2 * spec["Days"].sigma)
    assert wider["cor[Subject]"] == spec["cor[Subject]"]
    assert "x2 width" in wider.sources["Days"]
    strong = spec.copy()
    strong["Days"] = Normal(0.0, 0.5)  # a prior that fights the data on the slope
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sens = bm.sensitivity(FORMULA, sleep, priors=strong, **SAMPLE)
    moved = set(sens.moved().parameter)
    assert "Days" in moved
    assert "Days" in sens.verdict()
    assert set(sens.table.columns) >= {"scale", "parameter", "statistic", "shift_sd", "moved"}
