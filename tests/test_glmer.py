"""bm.glmer beyond the lme4 reference fits: families, response forms, bad input, predictions,
residuals against statsmodels' GLM, the negative binomial, separation, the command line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
import statsmodels.api as sm

import bayesmlm as bm
from bayesmlm import family_kernels as K
from bayesmlm.families import NegativeBinomial, get_family

from .conftest import REFERENCE
from .test_glmer_reference import fit_glmer_case, load_glmer_case

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return bm.datasets.load("cbpp")


def _counts(seed: int = 3, n_groups: int = 30, per: int = 20, sd: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    expo = rng.uniform(1, 3, g.size)
    mu = expo * np.exp(0.3 + 0.4 * x + rng.normal(0, sd, n_groups)[g])
    return pd.DataFrame({"y": rng.poisson(mu), "x": x, "g": [f"g{k}" for k in g], "expo": expo})


# ----------------------------------------------------------------------------- families
FAMILIES = [("binomial", "logit"), ("binomial", "probit"), ("binomial", "cloglog"), ("poisson", "log"),
            ("poisson", "sqrt"), ("Gamma", "log"), ("Gamma", "inverse"), ("negbinomial", "log")]


@pytest.mark.parametrize(("name", "link"), FAMILIES)
def test_family_matches_statsmodels_and_scipy(name: str, link: str) -> None:
    rng = np.random.default_rng(0)
    fam = get_family(name, link)
    smf = fam.to_statsmodels()
    eta = rng.normal(0, 0.5, 40) + (2.0 if link in ("inverse", "sqrt") else 0.0)
    mu = fam.link.inverse(eta)
    np.testing.assert_allclose(mu, smf.link.inverse(eta), rtol=1e-12)
    np.testing.assert_allclose(fam.link.mu_eta(eta), smf.link.inverse_deriv(eta), rtol=1e-10)
    np.testing.assert_allclose(fam.link.link(mu), eta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fam.variance(mu), smf.variance(mu), rtol=1e-12)
    n = rng.integers(1, 8, 40).astype(float)
    if name == "binomial":
        k = rng.binomial(n.astype(int), mu)
        y, wt, ref = k / n, n, st.binom.logpmf(k, n, mu)
        np.testing.assert_allclose(fam.dev_resids(y, mu, wt), smf.resid_dev(y, mu, var_weights=wt) ** 2, atol=1e-10)
        np.testing.assert_allclose(fam.loglik_obs(y, mu, wt), ref, atol=1e-10)
    elif name == "Gamma":
        y, wt = rng.gamma(2.0, mu / 2.0), np.ones(40)
        np.testing.assert_allclose(fam.dev_resids(y, mu), smf.resid_dev(y, mu) ** 2, atol=1e-10)
        np.testing.assert_allclose(fam.loglik_obs(y, mu, scale=0.5), st.gamma.logpdf(y, 2.0, scale=mu / 2.0), atol=1e-10)
    else:
        y = rng.poisson(mu).astype(float)
        np.testing.assert_allclose(fam.dev_resids(y, mu), smf.resid_dev(y, mu) ** 2, atol=1e-10)
        ref = st.poisson.logpmf(y, mu) if name == "poisson" else st.nbinom.logpmf(y, fam.phi, fam.phi / (fam.phi + mu))
        np.testing.assert_allclose(fam.loglik_obs(y, mu), ref, atol=1e-10)
        wt = np.ones_like(y)
    ev = fam.evaluator(y, wt)
    assert ev.aic(mu, ev.dev_resids(mu).sum()) == pytest.approx(fam.aic(y, mu, wt), rel=1e-12)
    phi = {"binomial": 1.0, "Gamma": 2.0}.get(name, getattr(fam, "phi", 1.0))
    compiled = [K.logpdf(fam.code, y[i], K.linkinv(fam.link.code, eta[i]), wt[i], phi) for i in range(40)]
    scale = {"Gamma": 0.5}.get(name)
    np.testing.assert_allclose(compiled, fam.loglik_obs(y, mu, wt, scale=scale), atol=1e-10)
    np.testing.assert_allclose([K.mu_eta(fam.link.code, e) for e in eta], fam.link.mu_eta(eta), rtol=1e-12)
    np.testing.assert_allclose([K.dev_resid(fam.code, y[i], mu[i], wt[i], getattr(fam, "phi", 1.0)) for i in range(40)],
                               fam.dev_resids(y, mu, wt), rtol=1e-10, atol=1e-12)
    assert all(K.valid_mu(fam.code, m) for m in mu) and not K.valid_mu(fam.code, -1.0)


def test_unknown_family_and_link() -> None:
    with pytest.raises(ValueError, match="unknown family"):
        get_family("weibull")
    with pytest.raises(ValueError, match="not available for the poisson"):
        get_family("poisson", "logit")


# ----------------------------------------------------------------------------- response forms
def test_proportion_with_weights_equals_cbind(cbpp: pd.DataFrame) -> None:
    a = fit_glmer_case("cbpp_binomial")
    b = bm.glmer("p ~ period + (1 | herd)", cbpp.assign(p=cbpp.incidence / cbpp["size"]), weights="size")
    c = bm.glmer("p ~ period + (1 | herd)", cbpp.assign(p=cbpp.incidence / cbpp["size"]), weights=cbpp["size"].to_numpy())
    for fit in (b, c):
        assert fit.loglik == pytest.approx(a.loglik, abs=1e-6)
        np.testing.assert_allclose(fit.fixef(), a.fixef(), atol=1e-6)


def test_two_level_factor_response_equals_zero_one() -> None:
    ref, data = load_glmer_case("verbagg_crossed")
    small = data[data.item.str.startswith("S1")]
    numeric = bm.glmer("r2 ~ Anger + btype + (1 | id)", small)
    text = bm.glmer("answer ~ Anger + btype + (1 | id)", small.assign(answer=np.where(small.r2 == 1, "Y", "N")))
    boolean = bm.glmer("answer ~ Anger + btype + (1 | id)", small.assign(answer=small.r2 == 1))
    for fit in (text, boolean):
        assert fit.loglik == pytest.approx(numeric.loglik, abs=1e-8)


def test_offset_in_formula_and_argument_agree() -> None:
    df = _counts()
    a = bm.glmer("y ~ x + offset(log(expo)) + (1 | g)", df, family="poisson")
    b = bm.glmer("y ~ x + (1 | g)", df, family="poisson", offset=np.log(df.expo.to_numpy()))
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    np.testing.assert_allclose(a.fixef(), b.fixef(), atol=1e-8)
    assert a.fixef()["x"] == pytest.approx(0.4, abs=0.1)
    np.testing.assert_allclose(a.predict(df, type="response"), a.fitted(), rtol=1e-10)  # offset re-evaluated
    np.testing.assert_allclose(b.predict(df, offset=np.log(df.expo.to_numpy())), b.linear_predictor(), rtol=1e-10)


# ----------------------------------------------------------------------------- bad input
def _bad(df, formula, match, **kw):
    with pytest.raises(bm.DataError, match=match):
        bm.glmer(formula, df, **kw)


def test_bad_responses_are_named() -> None:
    df = _counts()
    _bad(df.assign(y=df.y + 0.5), "y ~ x + (1 | g)", r"poisson response 'y' must be a count.*rows 0, 1", family="poisson")
    _bad(df.assign(y=-df.y - 1), "y ~ x + (1 | g)", "negative", family="poisson")
    _bad(df.assign(y=df.y * 1.0 - 0.5), "y ~ x + (1 | g)", "Gamma response 'y' must be positive", family="Gamma")
    _bad(df.assign(y=df.y + 2), "y ~ x + (1 | g)", r"outside \[0, 1\]")
    three = df.assign(y=np.array(["a", "b", "c"])[np.arange(len(df)) % 3])
    _bad(three, "y ~ x + (1 | g)", "exactly two levels, but it has 3")
    _bad(df.assign(s=0, f=0), "cbind(s, f) ~ x + (1 | g)", r"zero trials .* rows 0, 1")
    _bad(df.assign(p=0.5, n=0.0), "p ~ x + (1 | g)", r"trials \(weights\) must be positive; rows 0, 1", weights="n")
    _bad(df.assign(p=0.5, n=-2.0), "p ~ x + (1 | g)", "weights must be non-negative", weights="n")
    _bad(df.assign(p=0.3, n=2.0), "p ~ x + (1 | g)", "whole numbers of successes", weights="n")
    _bad(df, "y ~ x + (1 | g)", "weights must be non-negative", family="poisson", weights=-np.ones(len(df)))


def test_bad_offsets_and_missing_values() -> None:
    df = _counts()
    off = np.log(df.expo.to_numpy())
    off[[4, 9]] = np.nan
    _bad(df, "y ~ x + (1 | g)", r"missing values in column\(s\) 'offset' \(2 missing\)", family="poisson", offset=off)
    with pytest.warns(UserWarning, match="dropped 2 of 600 rows"):
        fit = bm.glmer("y ~ x + (1 | g)", df, family="poisson", offset=off, na_action="drop")
    assert fit.nobs == 598
    _bad(df.assign(expo=np.where(np.arange(len(df)) == 7, 0.0, df.expo)), "y ~ x + offset(log(expo)) + (1 | g)",
         r"offset\(log\(expo\)\) is not finite in row 7", family="poisson")
    _bad(df.assign(x=np.where(np.arange(len(df)) < 3, np.nan, df.x)), "y ~ x + (1 | g)", r"'x' \(3 missing\)", family="poisson")
    _bad(df, "y ~ z + (1 | g)", "'z'", family="poisson")
    with pytest.raises(bm.FormulaError, match="cbind"):
        bm.glmer("cbind(y, y) ~ x + (1 | g)", df, family="poisson")
    with pytest.raises(ValueError, match="single, scalar random-effects term"):
        bm.glmer("y ~ x + (x | g)", df, family="poisson", nAGQ=5)
    with pytest.raises(ValueError, match="nAGQ"):
        bm.glmer("y ~ x + (1 | g)", df, family="poisson", nAGQ=101)


def test_dask_input_is_refused_with_advice() -> None:
    dd = pytest.importorskip("dask.dataframe")
    with pytest.raises(bm.DataError, match="pandas DataFrame"):
        bm.glmer("y ~ x + (1 | g)", dd.from_pandas(_counts(), npartitions=2), family="poisson")


def test_gaussian_identity_is_lmer(sleepstudy: pd.DataFrame) -> None:
    with pytest.warns(UserWarning, match="fitted by bm.lmer"):
        fit = bm.glmer("Reaction ~ Days + (Days | Subject)", sleepstudy, family="gaussian")
    assert isinstance(fit, bm.FreqFit)


# ----------------------------------------------------------------------------- predictions and residuals
def test_predict_link_response_and_new_levels(cbpp: pd.DataFrame) -> None:
    fit = fit_glmer_case("cbpp_binomial")
    link = fit.predict(cbpp)
    np.testing.assert_allclose(fit.predict(cbpp, type="response"), 1 / (1 + np.exp(-link)), rtol=1e-12)
    np.testing.assert_allclose(link, fit.linear_predictor(), rtol=1e-10)
    np.testing.assert_allclose(fit.predict(type="response"), fit.fitted(), rtol=1e-12)
    fixed = fit.predict(cbpp, re_form="fixed")
    np.testing.assert_allclose(fixed, fit.design.X @ fit.fixef().to_numpy(), rtol=1e-12)
    new = pd.DataFrame({"herd": ["1", "99"], "period": ["2", "2"]})
    with pytest.raises(bm.DataError, match="herd: '99'"):
        fit.predict(new)
    pop = fit.predict(new, new_levels="population")
    assert pop[1] == pytest.approx(fixed[cbpp.period.eq("2").idxmax()])
    assert pop[0] == pytest.approx(pop[1] + fit.ranef()["herd"].loc["1", "Intercept"])


def test_residuals_match_statsmodels_glm_on_a_boundary_fit() -> None:
    """With the random-effect variance at zero the GLMM is a GLM: estimates and every residual type agree."""
    rng = np.random.default_rng(11)
    df = pd.DataFrame({"x": rng.normal(size=400), "g": np.repeat([f"g{k}" for k in range(20)], 20)})
    df["y"] = rng.poisson(np.exp(0.5 + 0.3 * df.x))
    with pytest.warns(bm.SingularFitWarning):
        fit = bm.glmer("y ~ x + (1 | g)", df, family="poisson")
    assert fit.singular
    glm = sm.GLM(df.y, sm.add_constant(df.x), family=sm.families.Poisson()).fit()
    np.testing.assert_allclose(fit.fixef().to_numpy(), glm.params.to_numpy(), atol=1e-5)
    np.testing.assert_allclose(fit.residuals("deviance"), glm.resid_deviance, atol=1e-5)
    np.testing.assert_allclose(fit.residuals("pearson"), glm.resid_pearson, atol=1e-5)
    np.testing.assert_allclose(fit.residuals("response"), glm.resid_response, atol=1e-5)
    np.testing.assert_allclose(fit.residuals("working"), glm.resid_working, atol=1e-5)
    assert fit.loglik == pytest.approx(glm.llf, abs=1e-4)


# ----------------------------------------------------------------------------- more models
def test_negative_binomial_phi_is_the_likelihood_optimum() -> None:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 20)
    mu = np.exp(0.5 + rng.normal(0, 0.5, 30)[g])
    df = pd.DataFrame({"y": rng.negative_binomial(2.5, 2.5 / (2.5 + mu)), "g": g.astype(str)})
    fit = bm.glmer("y ~ 1 + (1 | g)", df, family="negbinomial")
    assert 1.5 < fit.phi < 4.0 and fit.family.label.startswith("Negative Binomial(")
    for factor in (0.9, 1.1):
        fixed = bm.glmer("y ~ 1 + (1 | g)", df, family=NegativeBinomial(phi=fit.phi * factor))
        assert fixed.phi == pytest.approx(fit.phi * factor) and fixed.loglik < fit.loglik
    assert fit.loglik > bm.glmer("y ~ 1 + (1 | g)", df, family="poisson").loglik + 10
    assert "Negative binomial dispersion phi" in fit.summary()


def test_correlated_slopes_crossed_and_uncorrelated_terms() -> None:
    rng = np.random.default_rng(5)
    n_s, n_i = 40, 15
    s, i = np.repeat(np.arange(n_s), n_i), np.tile(np.arange(n_i), n_s)
    x = rng.normal(size=s.size)
    b0, b1 = rng.normal(0, 0.8, n_s), rng.normal(0, 0.4, n_s)
    eta = -0.2 + 0.6 * x + b0[s] + b1[s] * x + rng.normal(0, 0.5, n_i)[i]
    df = pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "s": s.astype(str), "i": i.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        corr = bm.glmer("y ~ x + (x | s) + (1 | i)", df)
        indep = bm.glmer("y ~ x + (x || s) + (1 | i)", df)
    assert corr.converged and len(corr.theta) == 4 and len(indep.theta) == 3
    vc = corr.varcorr()
    assert vc.var2.notna().sum() == 1 and abs(vc.sdcor[vc.var2.notna()].iloc[0]) <= 1
    assert corr.loglik >= indep.loglik - 1e-6  # the correlated model nests the uncorrelated one
    assert corr.coef()["s"].shape == (n_s, 2)


def test_nagq0_is_the_first_stage(cbpp: pd.DataFrame) -> None:
    fit0 = bm.glmer(CBPP, cbpp, nAGQ=0)
    fit1 = fit_glmer_case("cbpp_binomial")
    assert fit0.method == "nAGQ=0" and fit0.solution.vcov_source == "RX"
    np.testing.assert_allclose(fit0.fixef(), fit1.fixef(), atol=0.05)
    assert "nAGQ = 0" in fit0.summary()


def test_complete_separation_is_named() -> None:
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"g": np.repeat([f"g{k}" for k in range(10)], 12), "arm": np.tile(["a", "b", "c"], 40)})
    df["y"] = np.where(df.arm == "c", 0, rng.binomial(1, 0.5, len(df)))
    with pytest.warns(bm.SeparationWarning, match="armc"):
        fit = bm.glmer("y ~ arm + (1 | g)", df)
    assert fit.separation == ["armc"] and "complete separation" in fit.summary()


def test_summary_layout(cbpp: pd.DataFrame) -> None:
    text = fit_glmer_case("cbpp_binomial").summary()
    for line in ("Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)",
                 " Family: binomial  ( logit )", "Scaled residuals:", "Random effects:",
                 "Number of obs: 56, groups:  herd, 15", "z value", "Pr(>|z|)", "Correlation of Fixed Effects:"):
        assert line in text
    assert "194.1" in text and "-92.0" in text and "184.1" in text


def test_command_line_fits_a_family(tmp_path, capsys) -> None:
    from bayesmlm.cli import main

    path = tmp_path / "cbpp.csv"
    bm.datasets.load("cbpp").to_csv(path, index=False)
    assert main(["fit", str(path), CBPP, "--family", "binomial"]) == 0
    assert "Family: binomial  ( logit )" in capsys.readouterr().out
    out = tmp_path / "r.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["fit", str(path), CBPP, "--family", "binomial", "--report", str(out), "--draws", "200",
                     "--tune", "200", "--chains", "2", "--seed", "1"])
    assert code == 0 and "report written to" in capsys.readouterr().out
    assert "Family: binomial (logit link)" in out.read_text() and out.with_suffix(".md").is_file()


# ----------------------------------------------------------------------------- review fixes: predict, ICC, LRT
def test_predict_refuses_an_unseen_fixed_effect_level(cbpp: pd.DataFrame) -> None:
    fit = fit_glmer_case("cbpp_binomial")
    new = pd.DataFrame({"herd": ["1"], "period": ["5"]})
    for policy in ("error", "population"):
        with pytest.raises(bm.DataError, match=r"column 'period' has level\(s\) '5' that the model has no "
                           r"coefficient for \(fitted levels: '1', '2', '3', '4'\)"):
            fit.predict(new, new_levels=policy)
    with pytest.raises(bm.DataError, match=r"column 'period' has level\(s\) 2 .*values are int, the fitted "
                       r"levels str; convert the column"):
        fit.predict(pd.DataFrame({"herd": ["1"], "period": [2]}), re_form="fixed")  # an int, not the text '2'


def test_predict_fixed_needs_no_grouping_column_and_checks_the_offset_length(cbpp: pd.DataFrame) -> None:
    fit = fit_glmer_case("cbpp_binomial")
    ref, _ = load_glmer_case("cbpp_binomial")
    b = ref["fixef"]  # lme4's estimates: period 2 at the population level is (Intercept) + period2
    got = fit.predict(pd.DataFrame({"period": ["1", "2"]}), re_form="fixed")
    np.testing.assert_allclose(got, [b["(Intercept)"], b["(Intercept)"] + b["period2"]], atol=1e-4)
    got = fit.predict(pd.DataFrame({"period": ["2"]}), re_form="fixed", type="response", offset=[0.5])
    assert got[0] == pytest.approx(1 / (1 + np.exp(-(b["(Intercept)"] + b["period2"] + 0.5))), abs=1e-4)
    new = pd.DataFrame({"herd": ["1", "2"], "period": ["1", "2"]})
    with pytest.raises(bm.DataError, match=r"offset= has 3 values for 2 rows of newdata"):
        fit.predict(new, offset=[0.0, 0.1, 0.2])
    with pytest.raises(bm.DataError, match=r"offset='expo' is not a column of newdata"):
        fit.predict(new, offset="expo")
    np.testing.assert_allclose(fit.predict(new.assign(expo=[0.5, 1.0]), offset="expo"),
                               fit.predict(new) + np.array([0.5, 1.0]), rtol=1e-12)


def test_icc_and_r2_of_a_binomial_glmm_use_pi_squared_over_three() -> None:
    fit = fit_glmer_case("cbpp_binomial")
    tau2 = float(fit.varcorr().set_index("grp").loc["herd", "vcov"])
    eta = fit.design.X @ fit.fixef().to_numpy()
    fixed = float(np.var(eta, ddof=1))
    latent = np.pi**2 / 3
    icc = bm.icc(fit)
    assert icc["adjusted"] == pytest.approx(tau2 / (tau2 + latent), rel=1e-10)
    assert icc["conditional"] == pytest.approx(tau2 / (fixed + tau2 + latent), rel=1e-10)
    r2 = bm.r2(fit)
    assert r2["marginal"] == pytest.approx(fixed / (fixed + tau2 + latent), rel=1e-10)
    assert r2["conditional"] == pytest.approx((fixed + tau2) / (fixed + tau2 + latent), rel=1e-10)
    # the other links of the binomial: probit 1, cloglog pi^2 / 6
    from bayesmlm.freq.inference.icc_r2 import distribution_variance

    cbpp = bm.datasets.load("cbpp")
    assert distribution_variance(bm.glmer(CBPP, cbpp, link="probit")) == 1.0
    assert distribution_variance(bm.glmer(CBPP, cbpp, link="cloglog")) == pytest.approx(np.pi**2 / 6)


def test_icc_and_r2_of_a_poisson_glmm_match_nakagawa_by_hand_with_lme4() -> None:
    """Against tests/reference/glmer/inference/grouseticks_nakagawa.json (lme4 1.1-31, computed as
    performance::r2_nakagawa does); INDEX has one level per row: overdispersion, in the residual."""
    ref = json.loads((REFERENCE / "glmer" / "inference" / "grouseticks_nakagawa.json").read_text())
    fit = fit_glmer_case("grouseticks_poisson")
    from bayesmlm.freq.inference.icc_r2 import variance_components

    v = variance_components(fit)
    for key in ("fixed", "random", "dispersion"):
        assert v[key] == pytest.approx(ref[key], rel=1e-3), key
    # lme4's null fit stops short (max|grad| 0.08 on a flat likelihood): the null intercept agrees to ~2%
    assert v["distribution"] == pytest.approx(ref["distribution"], rel=2e-2)
    assert bm.icc(fit)["adjusted"] == pytest.approx(ref["icc_adjusted"], abs=2e-3)
    assert bm.icc(fit)["conditional"] == pytest.approx(ref["icc_conditional"], abs=2e-3)
    assert bm.r2(fit)["marginal"] == pytest.approx(ref["r2_marginal"], abs=2e-3)
    assert bm.r2(fit)["conditional"] == pytest.approx(ref["r2_conditional"], abs=2e-3)
    # exactly the lognormal formula on our own null model
    null = bm.glmer("TICKS ~ 1 + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", load_glmer_case("grouseticks_poisson")[1],
                    family="poisson")
    vc = null.varcorr().set_index("grp")["vcov"]
    lam = np.exp(null.fixef()["Intercept"] + 0.5 * (vc["BROOD"] + vc["LOCATION"]))
    assert v["distribution"] == pytest.approx(np.log1p(1 / lam), rel=1e-6)


def test_icc_refuses_families_without_a_distribution_variance() -> None:
    fit = fit_glmer_case("gamma_log")
    with pytest.raises(ValueError, match=r"binomial \(logit, probit, cloglog links\) and Poisson \(log link\).*Gamma"):
        bm.icc(fit)
    with pytest.raises(ValueError, match="negative binomial|Negative Binomial"):
        bm.r2(fit_glmer_case("nb_counts"))


def test_anova_of_two_glmms_matches_lme4(cbpp: pd.DataFrame) -> None:
    """lme4's anova(null, full) on cbpp: tests/reference/glmer/inference/cbpp_lrt.json."""
    ref = json.loads((REFERENCE / "glmer" / "inference" / "cbpp_lrt.json").read_text())
    full = bm.glmer(ref["formulas"]["full"], cbpp)
    null = bm.glmer(ref["formulas"]["null"], cbpp)
    table = bm.anova(full, null, names=["full", "null"])
    assert list(table.index) == ["null", "full"]
    assert table.npar.tolist() == [ref["npar"]["null"], ref["npar"]["full"]]
    assert table.loc["full", "chisq"] == pytest.approx(ref["chisq"], rel=1e-3)
    assert table.loc["full", "df"] == ref["df"]
    assert table.loc["full", "p"] == pytest.approx(ref["p"], rel=1e-2)
    np.testing.assert_allclose(table.loglik, [ref["loglik"]["null"], ref["loglik"]["full"]], atol=1e-3)


def test_anova_refuses_glmms_that_cannot_be_compared(cbpp: pd.DataFrame, sleepstudy: pd.DataFrame) -> None:
    full = fit_glmer_case("cbpp_binomial")
    null = bm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp)
    with pytest.raises(ValueError, match=r"different nAGQ .*'null': nAGQ=25, 'full': nAGQ=1.*same nAGQ"):
        bm.anova(bm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, nAGQ=25), full,
                 names=["null", "full"])
    with pytest.raises(ValueError, match=r"different families or links .*binomial \(probit\).*binomial \(logit\)"):
        bm.anova(bm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, link="probit"), full)
    lin = bm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, reml=False)
    with pytest.raises(ValueError, match=r"cannot compare linear mixed models with GLMMs.*'a' \(glmer\), 'b' \(lmer\)"):
        bm.anova(null, lin, names=["a", "b"])
    fewer = bm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp.iloc[:50])
    with pytest.raises(bm.DataError, match=r"row count: 50 in 'fewer', 56 in 'full'"):
        bm.anova(fewer, full, names=["fewer", "full"])
    trials = cbpp.assign(size=cbpp["size"] + 1)
    more = bm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", trials)
    with pytest.raises(bm.DataError, match=r"response values|prior weights"):
        bm.anova(more, full, names=["more", "full"])
