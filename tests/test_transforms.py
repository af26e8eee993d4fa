"""Stateful transforms (scale, center) anywhere in the formula, checked against lme4.

Centring or scaling a covariate reparametrises the model: the ML likelihood is unchanged by any
invertible linear map of the fixed-effects columns, the REML likelihood by one of determinant 1
(centring), and the likelihood by rescaling a varying column (its SD rescales). So lme4's fits
of the untransformed models give the numbers, and a fit on a column standardised by hand
(plain arithmetic) gives the rest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm

from .conftest import load_reference


def standardised(days: pd.Series) -> pd.Series:
    return (days - days.mean()) / days.std(ddof=1)


def test_scale_in_the_fixed_part_is_the_standardised_column(sleepstudy: pd.DataFrame) -> None:
    fit = bm.lmer("Reaction ~ scale(Days) + (1 | Subject)", sleepstudy)
    by_hand = bm.lmer("Reaction ~ zDays + (1 | Subject)", sleepstudy.assign(zDays=standardised(sleepstudy.Days)))
    assert fit.fixef().index.tolist() == ["Intercept", "scale(Days)"]
    np.testing.assert_allclose(fit.fixef().to_numpy(), by_hand.fixef().to_numpy(), rtol=1e-9)
    assert fit.loglik == pytest.approx(by_hand.loglik, abs=1e-9)


def test_scale_in_the_fixed_part_reparametrises_lme4(sleepstudy: pd.DataFrame) -> None:
    ref = load_reference("sleepstudy_int_ml")  # Reaction ~ Days + (1 | Subject), ML
    fit = bm.lmer("Reaction ~ scale(Days) + (1 | Subject)", sleepstudy, reml=False)
    mean, sd = sleepstudy.Days.mean(), sleepstudy.Days.std(ddof=1)
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    assert fit.fixef()["scale(Days)"] == pytest.approx(ref["fixef"]["Days"] * sd, rel=1e-6)
    assert fit.fixef()["Intercept"] == pytest.approx(ref["fixef"]["(Intercept)"] + ref["fixef"]["Days"] * mean, rel=1e-6)


def test_center_in_both_parts_reparametrises_lme4(sleepstudy: pd.DataFrame) -> None:
    ref = load_reference("sleepstudy_corr_reml")  # Reaction ~ Days + (Days | Subject), REML
    fit = bm.lmer("Reaction ~ center(Days) + (center(Days) | Subject)", sleepstudy)
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    assert fit.fixef()["center(Days)"] == pytest.approx(ref["fixef"]["Days"], rel=1e-6)


def test_scale_only_inside_a_random_term(sleepstudy: pd.DataFrame) -> None:
    """Days appears nowhere else: its column must still be found inside scale(...)."""
    ref = load_reference("sleepstudy_slope_only_reml")  # Reaction ~ Days + (0 + Days | Subject)
    fit = bm.lmer("Reaction ~ Days + (0 + scale(Days, center=False) | Subject)", sleepstudy)
    root_mean_square = np.sqrt((sleepstudy.Days**2).sum() / (len(sleepstudy) - 1))
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    assert fit.varcorr().sdcor.iloc[0] == pytest.approx(ref["varcorr"][0]["sdcor"] * root_mean_square, rel=1e-4)
    alone = bm.lmer("Reaction ~ 1 + (0 + scale(Days) | Subject)", sleepstudy)
    by_hand = bm.lmer("Reaction ~ 1 + (0 + zDays | Subject)", sleepstudy.assign(zDays=standardised(sleepstudy.Days)))
    assert alone.loglik == pytest.approx(by_hand.loglik, abs=1e-9)


def test_new_data_use_the_fitted_statistics(sleepstudy: pd.DataFrame) -> None:
    fit = bm.lmer("Reaction ~ scale(Days) + (1 | Subject)", sleepstudy)
    new = pd.DataFrame({"Subject": ["308", "309"], "Days": [20, 20]})  # far outside: own mean/SD would differ
    beta = fit.fixef()
    z = (20 - sleepstudy.Days.mean()) / sleepstudy.Days.std(ddof=1)
    expected = beta["Intercept"] + beta["scale(Days)"] * z + fit.ranef()["Subject"].loc[["308", "309"], "Intercept"]
    np.testing.assert_allclose(fit.predict(new), expected.to_numpy(), rtol=1e-12)
