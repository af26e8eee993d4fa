"""engine="auto" is lme4's PLS algorithm; an explicit statsmodels fit says when it stops short.

The cooler experiment (a treatment whose effect varies over two regions) is where statsmodels'
MixedLM stops at a lower REML likelihood than lme4 and reports a correlation of -0.998 where the
optimum is on the boundary (-1). The likelihoods are checked by the textbook marginal-model
formula, group by group, so the comparison does not rest on the PLS code itself.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as la

import bayesmlm as bm

FORMULA = "y_profit ~ w_cooler + (w_cooler | X_gold)"


@pytest.fixture(scope="module")
def cooler() -> pd.DataFrame:
    """1,500 stores in two regions; this seed shows MixedLM's gap (about 1 logLik unit)."""
    df, _ = bm.datasets.simulate_cooler(sizes=(1200, 300), seed=1)
    return df.rename(columns={"Sales": "y_profit", "Cooler": "w_cooler", "Region": "X_gold"})


def group_covariance(fit: bm.FreqFit) -> np.ndarray:
    """G of (w_cooler | X_gold) rebuilt from the reported SDs and correlation."""
    sd_int, sd_slope, corr, _ = fit.varcorr().sdcor.to_numpy()
    return np.array([[sd_int**2, corr * sd_int * sd_slope], [corr * sd_int * sd_slope, sd_slope**2]])


def dense_reml_loglik(fit: bm.FreqFit, df: pd.DataFrame) -> float:
    """REML log-likelihood of y ~ N(X beta, Z G Z' + sigma^2 I) at a fit's G and sigma.

    -2 l_R = (n - p) log 2 pi + log|V| + log|X'V^-1 X| + r'V^-1 r, r the GLS residual;
    V is block diagonal over the regions, so each block is factored densely.
    """
    G, s2 = group_covariance(fit), fit.sigma**2
    p = 2
    logdet, XtVX, XtVy, ytVy = 0.0, np.zeros((p, p)), np.zeros(p), 0.0
    for _, rows in df.groupby("X_gold"):
        X = np.column_stack([np.ones(len(rows)), rows.w_cooler.to_numpy(float)])
        y = rows.y_profit.to_numpy(float)
        factor = la.cho_factor(X @ G @ X.T + s2 * np.eye(len(rows)))
        logdet += 2.0 * np.log(np.diag(factor[0])).sum()
        XtVX += X.T @ la.cho_solve(factor, X)
        XtVy += X.T @ la.cho_solve(factor, y)
        ytVy += y @ la.cho_solve(factor, y)
    beta = np.linalg.solve(XtVX, XtVy)
    quad = ytVy - beta @ XtVy
    n = len(df)
    return -0.5 * ((n - p) * np.log(2 * np.pi) + logdet + np.linalg.slogdet(XtVX)[1] + quad)


def test_auto_reaches_the_optimum_mixedlm_misses(cooler: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        auto = bm.lmer(FORMULA, cooler)
        with pytest.warns(bm.EngineWarning):
            mixedlm = bm.lmer(FORMULA, cooler, engine="statsmodels")
    assert auto.engine == "pls"
    # the reported logLik is the model's REML likelihood at the reported estimates ...
    assert auto.loglik == pytest.approx(dense_reml_loglik(auto, cooler), abs=1e-6)
    # ... and higher than at MixedLM's estimates, by about one unit here
    assert dense_reml_loglik(auto, cooler) - dense_reml_loglik(mixedlm, cooler) > 0.9
    # the optimum is on the boundary (correlation -1), as lme4 reports for this design
    assert auto.singular and auto.varcorr().sdcor.iloc[2] == pytest.approx(-1.0, abs=1e-6)
    assert not mixedlm.singular


def test_explicit_statsmodels_warns_with_both_logliks(cooler: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        with pytest.warns(bm.EngineWarning) as record:
            fit = bm.lmer(FORMULA, cooler, engine="statsmodels")
        pls = bm.lmer(FORMULA, cooler, engine="pls")
    assert fit.engine == "statsmodels"
    text = str(record[0].message)
    numbers = [float(x) for x in re.findall(r"-?\d+\.\d+", text)[:3]]
    mixedlm_ll, pls_ll, gap = numbers
    assert mixedlm_ll == pytest.approx(fit.loglik, abs=1e-3)
    assert pls_ll == pytest.approx(pls.loglik, abs=1e-3)
    assert gap == pytest.approx(pls_ll - mixedlm_ll, abs=2e-3) and gap > 0.9
    assert "engine='pls'" in text and fit.engine_note and "PLS" in fit.engine_note


def test_explicit_statsmodels_at_the_optimum_is_quiet(sleepstudy: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.EngineWarning)
        fit = bm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, engine="statsmodels")
    assert fit.engine == "statsmodels" and fit.engine_note is None


@pytest.mark.parametrize(
    "formula", ["Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days || Subject)"]
)
def test_auto_is_pls_for_every_model(formula: str, sleepstudy: pd.DataFrame) -> None:
    assert bm.lmer(formula, sleepstudy).engine == "pls"
