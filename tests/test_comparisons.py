"""Issue 4/6: lmer vs posterior, pooling spectrum, LOO, elicitation and prior checks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.pooling import conditional_variances, pooling_factors
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


CROSSED = "y ~ 1 + (1 | A) + (1 | B)"


def _crossed(n_a: int, n_b: int, rows: int, tau: tuple[float, float], sigma: float, seed: int) -> pd.DataFrame:
    """Crossed random intercepts, uncorrelated, each row at a random (unbalanced) combination of A and B."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n_a, rows), rng.integers(0, n_b, rows)
    y = 10.0 + rng.normal(0, tau[0], n_a)[a] + rng.normal(0, tau[1], n_b)[b] + rng.normal(0, sigma, rows)
    return pd.DataFrame({"A": [f"a{i}" for i in a], "B": [f"b{i}" for i in b], "y": y})


def _pooling_theory(df: pd.DataFrame, factor: str, tau: float, sigma: float) -> float:
    """Expected pooling factor of a random intercept: mean over levels of (sigma^2/n) / (sigma^2/n + tau^2)."""
    noise = sigma**2 / df[factor].value_counts().to_numpy()
    return float(np.mean(noise / (noise + tau**2)))


def test_no_pooling_of_crossed_factors_removes_the_other_factors_effects() -> None:
    # Henderson's equations give each level's BLUP as (1 - w) x its own mean partial residual, with
    # w = sigma^2 / (sigma^2 + n tau^2): the shrinkage lmer implies must be exactly that, per level,
    # for both factors. A per-level mean of the raw response (old no pooling) carries the other
    # factor's effects and misses it.
    df = _crossed(30, 20, 1500, (1.0, 0.8), 2.0, seed=11)
    fit = bm.lmer(CROSSED, df)
    pool = bm.pooling(CROSSED, df, fit=fit, bayes=False)
    vc = fit.varcorr().set_index("grp")["vcov"]
    for factor in ["A", "B"]:
        own = pool.coefficients(factor, "no pooling")["Intercept"]
        partial = pool.coefficients(factor, "partial pooling (lmer)")["Intercept"]
        population = fit.fixef()["Intercept"]
        shrinkage = 1 - (partial - population) / (own - population)
        n = df[factor].value_counts().reindex(shrinkage.index)
        expected = fit.sigma**2 / (fit.sigma**2 + n * vc[factor])
        np.testing.assert_allclose(shrinkage, expected, rtol=1e-6)
        assert shrinkage.between(0, 1).all()


def test_no_pooling_of_nested_factors() -> None:
    # pastes: 10 batches x 3 casks x 2 samples, balanced. A batch's own estimate is its mean (the
    # casks nested in it split its own rows and stay in), shrunk by the share of noise in a batch
    # mean, (tau_c^2/3 + sigma^2/6) / (tau_b^2 + tau_c^2/3 + sigma^2/6); a cask's is its mean less
    # its batch's effect, shrunk by sigma^2 / (sigma^2 + 2 tau_c^2).
    formula = "strength ~ 1 + (1 | batch/cask)"
    df = load_data("pastes")
    fit = bm.lmer(formula, df)
    pool = bm.pooling(formula, df, fit=fit, bayes=False)
    vc, s2 = fit.varcorr().set_index("grp")["vcov"], fit.sigma**2
    noise = vc["cask:batch"] / 3 + s2 / 6
    expected = {"batch": noise / (vc["batch"] + noise), "cask:batch": s2 / (s2 + 2 * vc["cask:batch"])}
    population = fit.fixef()["Intercept"]
    for factor, value in expected.items():
        own = pool.coefficients(factor, "no pooling")["Intercept"]
        partial = pool.coefficients(factor, "partial pooling (lmer)")["Intercept"]
        np.testing.assert_allclose(1 - (partial - population) / (own - population), value, rtol=1e-6)
    # balanced batches: the pooling factor is that same share
    assert pool.factors.loc[("batch", "Intercept"), "lmer"] == pytest.approx(expected["batch"], rel=1e-6)


def test_lmer_pooling_factor_of_crossed_intercepts_matches_theory() -> None:
    tau, sigma = (0.245, 0.2), 2.0
    df = _crossed(200, 150, 30_000, tau, sigma, seed=4)
    fit = bm.lmer(CROSSED, df)
    factors = pooling_factors(fit)["lmer"]
    for factor, t in zip(["A", "B"], tau):
        theory = _pooling_theory(df, factor, t, sigma)  # about 0.31 and 0.33
        assert factors[(factor, "Intercept")] == pytest.approx(theory, abs=0.1)
    # lme4's condVar: the diagonal of (Z'Z / sigma^2 + G^-1)^-1, here by a dense inverse
    design, vc = fit.design, fit.varcorr().set_index("grp")["vcov"]
    prior_precision = np.concatenate([np.full(b.n_levels, 1 / vc[b.factor]) for b in design.blocks])
    dense = np.linalg.inv(design.Z.toarray().T @ design.Z.toarray() / fit.sigma**2 + np.diag(prior_precision))
    got = np.concatenate([v[:, 0, 0] for v in conditional_variances(fit).values()])
    np.testing.assert_allclose(got, np.diag(dense), rtol=1e-6)


def test_posterior_pooling_factor_agrees_with_the_lmer_analogue() -> None:
    # two independent computations: posterior draws of the effects vs BLUPs with lme4's conditional
    # variances; with 60 rows a level the posterior sits close to the lmer estimates
    df = _crossed(40, 20, 2400, (0.387, 0.274), 2.0, seed=2)
    fit = bm.lmer(CROSSED, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bm.sample(CROSSED, df, priors="default", draws=400, tune=400, chains=2, seed=1, progressbar=False)
    table = bm.compare(fit, post).pooling
    assert np.all(np.abs(table["Bayes"] - table["lmer"]) < 0.05), table


@pytest.mark.slow  # 180 effects collapsed: a minute or more on 2 cores
def test_compare_on_crossed_simulation_shrinks_within_0_1_and_pools_as_theory() -> None:
    tau, sigma = (0.387, 0.274), 2.0
    df = _crossed(120, 60, 7200, tau, sigma, seed=1)
    fit = bm.lmer(CROSSED, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bm.sample(CROSSED, df, priors="default", draws=500, tune=500, chains=2, seed=1, progressbar=False)
    cmp = bm.compare(fit, post)
    levels = cmp.levels
    for factor, t in zip(["A", "B"], tau):
        theory = _pooling_theory(df, factor, t, sigma)  # about 0.31 for both
        assert cmp.pooling.loc[(factor, "Intercept"), "Bayes"] == pytest.approx(theory, abs=0.1)
        assert levels.xs(factor, level="factor")["shrinkage"].median() == pytest.approx(theory, abs=0.1)
    # uncorrelated intercepts: every level's shrinkage lies in [0, 1], except where the no-pooling
    # estimate is so close to the population value that Monte Carlo error decides the ratio -- and
    # those rows say so
    gap = (levels["no_pooling"] - cmp.fixed.loc["Intercept", "mean"]).abs()
    clear = gap >= levels["sd"]
    assert clear.mean() > 0.5 and levels.loc[clear, "shrinkage"].between(0, 1).all()
    outside = ~levels["shrinkage"].between(0, 1)
    assert outside.mean() < 0.05
    assert levels.loc[outside, "shrinkage_note"].str.contains("Monte Carlo error|unstable").all()


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
    # one grouping factor: no pooling is a least-squares fit per subject (lmList), computed here
    sleep = load_data("sleepstudy")
    for subject, rows in sleep.groupby("Subject"):
        X = np.column_stack([np.ones(len(rows)), rows["Days"]])
        own = _ols(X, rows["Reaction"].to_numpy())
        np.testing.assert_allclose(levels.loc[[(subject, "Intercept"), (subject, "Days")], "no_pooling"], own, rtol=1e-8)
    # slopes are shrunk towards the population on average; a value outside 0..1 always says why
    assert 0 < levels.xs("Days", level="term")["shrinkage"].median() < 1
    outside = (levels.shrinkage < 0) | (levels.shrinkage > 1)
    assert (levels.loc[outside, "shrinkage_note"] != "").all() and (levels.loc[~outside, "shrinkage_note"] == "").all()
    assert cmp.pooling.index.tolist() == [("Subject", "Intercept"), ("Subject", "Days")]
    assert ((cmp.pooling[["lmer", "Bayes"]] > 0) & (cmp.pooling[["lmer", "Bayes"]] < 1)).all().all()
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


def test_compare_pooling_and_loo_refuse_fits_on_other_data(sleep, fit, post) -> None:
    changed = sleep.copy()
    changed.loc[17, "Reaction"] += 10.0  # same rows, same count, one response value changed
    response = r"response values: 1 of 180 rows differ, first at row 17"
    with pytest.raises(bm.DataError, match=rf"compare needs the same data, but 'posterior' differs from 'fit': {response}"):
        bm.compare(bm.lmer(FORMULA, changed), post)
    with pytest.raises(bm.DataError, match=rf"pooling needs the same data, but 'fit' differs from 'data': {response}"):
        bm.pooling(FORMULA, changed, fit=fit, bayes=False)
    relabelled = sleep.assign(Subject=sleep.Subject.replace("308", "999"))
    with pytest.raises(bm.DataError, match=r"grouping levels of 'Subject': 18 in 'fit', 18 in 'posterior' \(only in 'fit': \['999'\], only in 'posterior': \['308'\]\)"):
        bm.compare(bm.lmer(FORMULA, relabelled), post)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = bm.sample(FORMULA, changed, priors="default", draws=200, tune=200, chains=2, seed=1, progressbar=False)
    with pytest.raises(bm.DataError, match=rf"loo_compare needs the same data, but 'other' differs from 'slopes': {response}"):
        bm.loo_compare({"slopes": post, "other": other})
    with pytest.raises(bm.DataError, match=rf"'posterior' differs from 'fit': {response}"):
        bm.pooling(FORMULA, sleep, fit=fit, post=other)
    fewer = bm.lmer(FORMULA, sleep.iloc[:170])
    with pytest.raises(bm.DataError, match="row count: 170 in 'fit', 180 in 'posterior'"):
        bm.compare(fewer, post)


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


def test_expert_quantiles_on_the_response_scale_of_a_family() -> None:
    """"A typical count is between 2 and 10" (log link) and "the success rate is between 10% and 40%"
    (logit link): the prior on the link scale puts 90% on coefficients whose mean response lies in the
    interval (checked through scipy's normal distribution and the inverse links, not the code's own)."""
    from scipy import stats

    counts = bm.priors.from_quantiles(2, 10, mass=0.9, link="log")
    lo, hi = stats.norm(counts.mu, counts.sigma).ppf([0.05, 0.95])
    assert (np.exp(lo), np.exp(hi)) == pytest.approx((2, 10), rel=0.01)
    rate = bm.priors.from_quantiles(0.1, 0.4, mass=0.9, link="logit")
    inside = stats.norm(rate.mu, rate.sigma).cdf(np.log(0.4 / 0.6)) - stats.norm(rate.mu, rate.sigma).cdf(np.log(0.1 / 0.9))
    assert inside == pytest.approx(0.9, abs=0.005)
    spec = bm.priors.PriorSpec({"Intercept": bm.priors.Normal(0, 2.5)})
    bm.priors.set_from_quantiles(spec, "Intercept", 2, 10, link="log")
    assert spec.sources["Intercept"] == "expert: 90% between 2 and 10 on the response scale, log link (Normal, PreliZ maxent)"
    with pytest.raises(bm.PriorError, match="outside the range of the logit link"):
        bm.priors.from_quantiles(0.5, 1.5, link="logit")
    with pytest.raises(bm.PriorError, match="location prior"):
        bm.priors.from_quantiles(1, 5, family="HalfNormal", link="log")


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
