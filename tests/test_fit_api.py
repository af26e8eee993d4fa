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


def test_fixed_effect_accessors(sleep_fit: bm.FreqFit) -> None:
    fixef, se, vcov = sleep_fit.fixef(), sleep_fit.se(), sleep_fit.vcov()
    assert isinstance(fixef, pd.Series) and list(fixef.index) == ["Intercept", "Days"]
    assert list(se.index) == ["Intercept", "Days"]
    assert isinstance(vcov, pd.DataFrame) and vcov.shape == (2, 2)
    np.testing.assert_allclose(vcov.to_numpy(), vcov.to_numpy().T)
    np.testing.assert_allclose(np.sqrt(np.diag(vcov)), se)


def test_random_effect_accessors(sleep_fit: bm.FreqFit, sleepstudy: pd.DataFrame) -> None:
    ranef = sleep_fit.ranef()
    assert list(ranef) == ["Subject"]
    table = ranef["Subject"]
    assert table.shape == (18, 2) and list(table.columns) == ["Intercept", "Days"]
    assert set(table.index) == set(sleepstudy.Subject)
    coef = sleep_fit.coef()["Subject"]
    np.testing.assert_allclose(coef.to_numpy(), table.to_numpy() + sleep_fit.fixef().to_numpy())


def test_coef_adds_fixed_columns_without_random_part() -> None:
    fit = bm.lmer("Reaction ~ Days + (1 | Subject)", load_data("sleepstudy"))
    coef = fit.coef()["Subject"]
    assert list(coef.columns) == ["Intercept", "Days"]
    assert np.all(coef["Days"] == fit.fixef()["Days"])


def test_varcorr_shape(sleep_fit: bm.FreqFit) -> None:
    vc = sleep_fit.varcorr()
    assert list(vc.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert vc.grp.tolist() == ["Subject", "Subject", "Subject", "Residual"]
    assert vc.iloc[2].var2 == "Days" and -1 <= vc.iloc[2].sdcor <= 1
    assert vc.iloc[-1].sdcor == pytest.approx(sleep_fit.sigma)
    np.testing.assert_allclose(vc.vcov.iloc[:2], vc.sdcor.iloc[:2] ** 2)


def test_information_criteria_follow_lme4() -> None:
    ref = load_reference("sleepstudy_corr_ml")
    fit = bm.lmer(ref["formula"], load_data("sleepstudy"), reml=False)
    assert fit.df == 6
    assert fit.aic == pytest.approx(-2 * ref["loglik"] + 12, abs=1e-3)
    assert fit.bic == pytest.approx(-2 * ref["loglik"] + np.log(180) * 6, abs=1e-3)


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
    assert "boundary" in fit.engine_note
    assert "boundary (singular) fit" in fit.summary()


def test_explicit_statsmodels_warns_near_boundary() -> None:
    with pytest.warns(bm.SingularFitWarning, match="engine='pls'"), pytest.warns(bm.ConvergenceWarning, match="boundary"):
        fit = bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff2"), engine="statsmodels")
    assert fit.engine == "statsmodels"


def test_auto_engine_choices(sleep_fit: bm.FreqFit) -> None:
    assert sleep_fit.engine == "statsmodels"
    crossed = bm.lmer("rt ~ cond + (cond | subj) + (cond | item)", load_data("crossed_slopes"))
    assert crossed.engine == "pls" and "crossed" in crossed.engine_note


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
    # the same model by ML has a higher log-likelihood than by REML's criterion on the ML scale
    ml = bm.lmer("TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)", df, reml=False)
    assert ml.loglik > -0.5 * ml.criterion - 1e-9
