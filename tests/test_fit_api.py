"""FreqFit accessors return lme4's shapes; singular and non-converged fits are reported."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.freq.optimize import optimize_theta

from .conftest import load_data, load_reference


@pytest.fixture(scope="module")
def sleep_fit(sleepstudy: pd.DataFrame) -> bm.FreqFit:
    return bm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)


# Independent arithmetic: the marginal model y ~ N(X beta, V), V = Z Sigma_b Z' + sigma^2 I, written
# out densely with numpy from a data frame and variance components (lme4's or a fit's), sharing no
# code with the PLS engine. Used to check accessors against numbers the package did not compute.
def random_design(df: pd.DataFrame, terms: dict[str, list[str]]) -> list[np.ndarray]:
    """One dense Z block per factor, level-major (level j's columns together), levels sorted."""
    blocks = []
    for factor, columns in terms.items():
        levels = sorted(df[factor].unique())
        Z = np.zeros((len(df), len(levels) * len(columns)))
        j = df[factor].map({lev: i for i, lev in enumerate(levels)}).to_numpy()
        for k, col in enumerate(columns):
            Z[np.arange(len(df)), j * len(columns) + k] = 1.0 if col == "Intercept" else df[col].to_numpy()
        blocks.append(Z)
    return blocks


def marginal_covariance(blocks: list[np.ndarray], covs: list[np.ndarray], sigma: float) -> np.ndarray:
    V = sigma**2 * np.eye(blocks[0].shape[0])
    for Z, S in zip(blocks, covs):
        V += Z @ np.kron(np.eye(Z.shape[1] // len(S)), S) @ Z.T
    return V


def covariance(sd: list[float], cor: float = 0.0) -> np.ndarray:
    S = np.diag(np.square(sd))
    if len(sd) == 2:
        S[0, 1] = S[1, 0] = cor * sd[0] * sd[1]
    return S


def gaussian_loglik(y: np.ndarray, mean: np.ndarray, V: np.ndarray) -> float:
    r = y - mean
    return float(-0.5 * (len(y) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ np.linalg.solve(V, r)))


def reml_criterion(y: np.ndarray, X: np.ndarray, V: np.ndarray) -> float:
    """-2 x restricted log-likelihood, lme4's REMLcrit (no log|X'X| term), at the GLS beta."""
    A = X.T @ np.linalg.solve(V, X)
    r = y - X @ np.linalg.solve(A, X.T @ np.linalg.solve(V, y))
    n, p = X.shape
    return float((n - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(A)[1] + r @ np.linalg.solve(V, r))


def lme4_sleepstudy_V(ref: dict, df: pd.DataFrame) -> np.ndarray:
    """V from lme4's VarCorr for Reaction ~ Days + (Days | Subject)."""
    vc = ref["varcorr"]
    S = covariance([vc[0]["sdcor"], vc[1]["sdcor"]], vc[2]["sdcor"])
    return marginal_covariance(random_design(df, {"Subject": ["Intercept", "Days"]}), [S], ref["sigma"])


def test_fixed_effect_accessors(sleep_fit: bm.FreqFit, sleepstudy: pd.DataFrame) -> None:
    """vcov against sigma^2 (X'V^-1 X)^-1 built from lme4's variance components (lme4 stores only the SEs)."""
    fixef, se, vcov = sleep_fit.fixef(), sleep_fit.se(), sleep_fit.vcov()
    assert isinstance(fixef, pd.Series) and list(fixef.index) == ["Intercept", "Days"]
    assert list(se.index) == list(vcov.index) == list(vcov.columns) == ["Intercept", "Days"]
    ref = load_reference("sleepstudy_corr_reml")
    X = np.column_stack([np.ones(len(sleepstudy)), sleepstudy.Days])
    V = lme4_sleepstudy_V(ref, sleepstudy)
    gls_vcov = np.linalg.inv(X.T @ np.linalg.solve(V, X))
    gls_beta = gls_vcov @ X.T @ np.linalg.solve(V, sleepstudy.Reaction.to_numpy())
    # the independent arithmetic reproduces lme4's own fixef and SEs ...
    np.testing.assert_allclose(gls_beta, [ref["fixef"]["(Intercept)"], ref["fixef"]["Days"]], rtol=1e-8)
    np.testing.assert_allclose(np.sqrt(np.diag(gls_vcov)), [ref["se"]["(Intercept)"], ref["se"]["Days"]], rtol=1e-8)
    # ... and the package's vcov, off-diagonal included, matches it (lme4's SE tolerance, 1e-4)
    np.testing.assert_allclose(vcov.to_numpy(), gls_vcov, rtol=1e-4, atol=1e-4 * se.min() ** 2)
    np.testing.assert_allclose(se, np.sqrt(np.diag(gls_vcov)), rtol=1e-4)


def test_random_effect_accessors(sleep_fit: bm.FreqFit, sleepstudy: pd.DataFrame) -> None:
    """ranef and coef against lme4's ranef() and coef() = fixef + ranef, from lme4's numbers."""
    ranef = sleep_fit.ranef()
    assert list(ranef) == ["Subject"]
    table = ranef["Subject"]
    assert table.shape == (18, 2) and list(table.columns) == ["Intercept", "Days"]
    assert set(table.index) == set(sleepstudy.Subject)
    ref = load_reference("sleepstudy_corr_reml")
    lme4_ranef = pd.DataFrame(ref["ranef"]["Subject"]).set_index("level").rename(columns={"(Intercept)": "Intercept"})
    lme4_coef = lme4_ranef + pd.Series({"Intercept": ref["fixef"]["(Intercept)"], "Days": ref["fixef"]["Days"]})
    coef = sleep_fit.coef()["Subject"]
    assert list(coef.index) == list(lme4_coef.index) and list(coef.columns) == ["Intercept", "Days"]
    scale = np.array([ref["varcorr"][0]["sdcor"], ref["varcorr"][1]["sdcor"]])  # modes to 1e-3 of their SD
    assert np.all(np.abs(table.loc[lme4_ranef.index].to_numpy() - lme4_ranef.to_numpy()) <= 1e-3 * scale)
    assert np.all(np.abs(coef.to_numpy() - lme4_coef.to_numpy()) <= 1e-3 * scale)


def test_coef_adds_fixed_columns_without_random_part() -> None:
    """Random intercepts: coef against the closed-form BLUP u_j = tau^2 / (tau^2 + sigma^2 / n_j) * mean_j(y - X beta),
    with lme4's tau, sigma and beta; the Days column is lme4's fixed slope for every subject."""
    df = load_data("sleepstudy")
    fit = bm.lmer("Reaction ~ Days + (1 | Subject)", df)
    ref = load_reference("sleepstudy_int_reml")
    b0, b1 = ref["fixef"]["(Intercept)"], ref["fixef"]["Days"]
    tau, sigma = ref["varcorr"][0]["sdcor"], ref["sigma"]
    residual = (df.Reaction - b0 - b1 * df.Days).groupby(df.Subject)
    blup = tau**2 / (tau**2 + sigma**2 / residual.size()) * residual.mean()
    lme4_ranef = pd.Series({row["level"]: row["(Intercept)"] for row in ref["ranef"]["Subject"]})
    np.testing.assert_allclose(blup[lme4_ranef.index], lme4_ranef, atol=1e-6 * tau)  # the arithmetic is lme4's
    coef = fit.coef()["Subject"]
    assert list(coef.columns) == ["Intercept", "Days"]
    assert np.all(np.abs(coef["Intercept"] - (b0 + blup[coef.index])) <= 1e-3 * tau)
    assert coef["Days"].to_numpy() == pytest.approx(np.full(18, b1), rel=1e-5)


def test_varcorr_matches_lme4(sleep_fit: bm.FreqFit) -> None:
    """Every row of as.data.frame(VarCorr(fit)), vcov and sdcor, against lme4's (reference-suite tolerances)."""
    vc = sleep_fit.varcorr()
    assert list(vc.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert vc.grp.tolist() == ["Subject", "Subject", "Subject", "Residual"]
    assert vc.var1.tolist()[:3] == ["Intercept", "Days", "Intercept"] and vc.iloc[2].var2 == "Days"
    ref = load_reference("sleepstudy_corr_reml")["varcorr"]
    for ours, theirs in zip(vc.itertuples(), ref):
        if isinstance(theirs.get("var2"), str):  # the correlation row: sdcor is the correlation
            assert ours.sdcor == pytest.approx(theirs["sdcor"], abs=1e-3)
            assert ours.vcov == pytest.approx(theirs["vcov"], abs=1e-3 * ref[0]["sdcor"] * ref[1]["sdcor"])
        else:
            assert ours.sdcor == pytest.approx(theirs["sdcor"], rel=1e-3), ours
            assert ours.vcov == pytest.approx(theirs["vcov"], rel=2e-3), ours


def test_information_criteria_follow_lme4() -> None:
    """lme4's summary(lmer(..., REML = FALSE)) prints AIC 1763.9, BIC 1783.1, logLik -876.0,
    deviance 1751.9, df.resid 174; the reference file holds the unrounded logLik and deviance."""
    ref = load_reference("sleepstudy_corr_ml")
    fit = bm.lmer(ref["formula"], load_data("sleepstudy"), reml=False)
    assert fit.df == 6
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-3)
    assert fit.criterion == pytest.approx(ref["deviance_or_reml"], abs=2e-3)
    assert fit.aic == pytest.approx(1763.939, abs=2e-3)  # -2 logLik + 2 df, lme4's numbers
    assert fit.bic == pytest.approx(1783.097, abs=2e-3)  # -2 logLik + log(180) df


def test_fitted_plus_residuals_is_response(sleep_fit: bm.FreqFit, sleepstudy: pd.DataFrame) -> None:
    np.testing.assert_allclose(sleep_fit.fitted() + sleep_fit.residuals(), sleepstudy.Reaction)


def test_summary_reads_like_lmer(sleep_fit: bm.FreqFit) -> None:
    text = sleep_fit.summary()
    for piece in ["Linear mixed model fit by REML", "Formula: Reaction ~ Days + (Days | Subject)",
                  "REML criterion at convergence: 1743.6", "Random effects:", "Groups", "Std.Dev.", "Corr",
                  "Residual", "Number of obs: 180, groups:  Subject, 18", "Fixed effects:", "t value"]:
        assert piece in text, piece
    ml = bm.lmer("Reaction ~ Days + (Days | Subject)", load_data("sleepstudy"), reml=False).summary()
    assert "maximum likelihood" in ml and "AIC" in ml and "logLik" in ml


def test_singular_fit_is_reported_not_hidden() -> None:
    with pytest.warns(bm.SingularFitWarning, match=r"sd\[Batch\]\[Intercept\] is ~0"):
        fit = bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff2"))
    assert fit.singular and fit.engine == "pls"
    assert fit.engine_note is None  # auto is PLS for every model: nothing to explain
    assert "boundary (singular) fit" in fit.summary()


def test_explicit_statsmodels_warns_near_boundary() -> None:
    with pytest.warns(bm.SingularFitWarning, match="engine='pls'"), pytest.warns(bm.ConvergenceWarning, match="boundary"):
        fit = bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff2"), engine="statsmodels")
    assert fit.engine == "statsmodels"


def test_auto_engine_choices(sleep_fit: bm.FreqFit) -> None:
    assert sleep_fit.engine == "pls"
    crossed = bm.lmer("rt ~ cond + (cond | subj) + (cond | item)", load_data("crossed_slopes"))
    assert crossed.engine == "pls"


def test_optimizer_reports_non_convergence() -> None:
    result = optimize_theta(lambda t: float(np.sum((t - 3.0) ** 2)), np.array([1.0, 0.0]), np.array([0.0, -np.inf]), max_evaluations=4)
    assert not result.converged
    assert "evaluations" in result.messages[0] and "rescale" in result.messages[0]


def test_non_convergence_warns_with_advice(monkeypatch: pytest.MonkeyPatch, sleepstudy: pd.DataFrame) -> None:
    import bayesmlm.freq.pls_engine as pls_engine

    real = pls_engine.optimize_theta
    monkeypatch.setattr(pls_engine, "optimize_theta", lambda f, t0, lo: real(f, t0, lo, max_evaluations=3))
    with pytest.warns(bm.ConvergenceWarning, match="rescale predictors"):
        fit = bm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, engine="pls")
    assert not fit.converged


def simulate_retail(seed: int = 7) -> tuple[pd.DataFrame, dict]:
    """Crossed varying intercepts and slopes on string-valued factors."""
    rng = np.random.default_rng(seed)
    stores = [f"store-{c}" for c in "ABCDEFGHIJ"]
    groups = ["Toys", "Garden", "Food", "Books", "Tools", "Pets", "Music", "Sport"]
    truth = {"Intercept": 3000.0, "Wk": 25.0, "sd_store": [400.0, 10.0], "sd_group": [300.0, 8.0], "sigma": 150.0}
    a_s = rng.normal(0, truth["sd_store"][0], len(stores)); b_s = rng.normal(0, truth["sd_store"][1], len(stores))
    a_g = rng.normal(0, truth["sd_group"][0], len(groups)); b_g = rng.normal(0, truth["sd_group"][1], len(groups))
    rows = []
    for i, s in enumerate(stores):
        for j, g in enumerate(groups):
            for wk in range(12):
                mu = truth["Intercept"] + a_s[i] + a_g[j] + (truth["Wk"] + b_s[i] + b_g[j]) * wk
                rows.append((s, g, wk, mu + rng.normal(0, truth["sigma"])))
    return pd.DataFrame(rows, columns=["Description", "MerGroup", "Wk", "TotSales"]), truth


def test_new_user_crossed_varying_slopes_on_string_factors() -> None:
    df, truth = simulate_retail()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean fit: no singular or convergence warning
        fit = bm.lmer("TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)", df)
    assert fit.engine == "pls" and fit.converged and not fit.singular
    assert set(fit.ranef()) == {"Description", "MerGroup"}
    assert fit.ranef()["Description"].index[0] == "store-A"
    z = (fit.fixef() - pd.Series({"Intercept": truth["Intercept"], "Wk": truth["Wk"]})) / fit.se()
    assert np.all(np.abs(z) < 4)
    assert fit.sigma == pytest.approx(truth["sigma"], rel=0.1)
    # The likelihoods, by direct dense Gaussian arithmetic (see marginal_covariance), not the PLS engine:
    # REML's criterion is -2 x the restricted log-likelihood at REML's estimates; ML's logLik is the
    # Gaussian log density at ML's estimates and is the maximum: the REML estimates give a lower one.
    ml = bm.lmer("TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)", df, reml=False)
    y, X = df.TotSales.to_numpy(), np.column_stack([np.ones(len(df)), df.Wk])
    blocks = random_design(df, {"Description": ["Intercept", "Wk"], "MerGroup": ["Intercept", "Wk"]})

    def V_of(f: bm.FreqFit) -> np.ndarray:
        vc = f.varcorr()
        covs = []
        for g in ("Description", "MerGroup"):
            rows = vc[vc.grp == g]
            sd = rows[rows.var2.isna()].set_index("var1").sdcor
            covs.append(covariance([sd["Intercept"], sd["Wk"]], rows[rows.var2.notna()].sdcor.iloc[0]))
        return marginal_covariance(blocks, covs, f.sigma)

    assert fit.criterion == pytest.approx(reml_criterion(y, X, V_of(fit)), abs=1e-6 * abs(fit.criterion))
    at_ml = gaussian_loglik(y, X @ ml.fixef().to_numpy(), V_of(ml))
    assert ml.loglik == pytest.approx(at_ml, abs=1e-6 * abs(at_ml))
    at_reml = gaussian_loglik(y, X @ fit.fixef().to_numpy(), V_of(fit))
    assert at_reml < ml.loglik
