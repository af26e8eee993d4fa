"""bm.glmer against lme4's glmer on its reference fits (tests/reference/glmer/*.json).

Cases: cbpp binomial (cbind response) by Laplace and by 25-point adaptive Gauss-Hermite
quadrature, grouseticks Poisson with three nested factors, VerbAgg binomial with 316 persons
crossed with 24 items (the shared oracles), and three made here with lme4 1.1-31 by
``tests/reference/glmer/make_extra_cases.R``: a negative binomial (``glmer.nb``), a Gamma with
log link and VerbAgg with a correlated varying slope. Tolerances (issue 2/5): log-likelihood
at least lme4's - 1e-3; fixed effects and their standard errors within 1% of lme4's SE;
random-effect SDs within 1%, correlations within 0.01; the negative binomial's ``phi`` within
1%. Conditional modes are compared by level name to 1% of their SD, and lme4's
``deviance()`` (the sum of squared deviance residuals) to 1e-3 relative.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm

from .conftest import REFERENCE, lme4_name

GLMER_FACTORS = {
    "cbpp": ["herd", "period"],
    "grouseticks": ["INDEX", "BROOD", "YEAR", "LOCATION"],
    "verbagg": ["id", "item", "Gender", "btype", "situ", "mode", "resp"],
    "nb_counts": ["g"],
    "gamma_positive": ["g"],
}
CASES = sorted(p.stem for p in (REFERENCE / "glmer").glob("*.json"))
_FITS: dict = {}


def load_glmer_case(case: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((REFERENCE / "glmer" / f"{case}.json").read_text())
    data = pd.read_csv(REFERENCE / "data" / f"{ref['data']}.csv", dtype={c: str for c in GLMER_FACTORS[ref["data"]]})
    return ref, data


def fit_glmer_case(case: str) -> bm.GlmerFit:
    if case not in _FITS:
        ref, data = load_glmer_case(case)
        with warnings.catch_warnings():
            warnings.simplefilter("error", bm.ConvergenceWarning)  # the reference fits converge
            _FITS[case] = bm.glmer(ref["formula"], data, family=ref["family"], link=ref.get("link"), nAGQ=ref["nAGQ"])
    return _FITS[case]


def test_cases_present() -> None:
    assert CASES == ["cbpp_binomial", "cbpp_binomial_agq25", "gamma_log", "grouseticks_poisson", "nb_counts",
                     "verbagg_crossed", "verbagg_slopes"]


@pytest.mark.parametrize("case", CASES)
def test_loglik_at_least_lme4(case: str) -> None:
    ref, _ = load_glmer_case(case)
    fit = fit_glmer_case(case)
    assert fit.loglik >= ref["loglik"] - 1e-3
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-2)
    assert fit.aic == pytest.approx(ref["aic"], abs=2e-2)
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-3)
    assert fit.nobs == ref["nobs"] and fit.singular == ref["singular"]


@pytest.mark.parametrize("case", CASES)
def test_fixed_effects_and_standard_errors(case: str) -> None:
    ref, _ = load_glmer_case(case)
    fit = fit_glmer_case(case)
    fixef, se = fit.fixef(), fit.se()
    assert sorted(fixef.index) == sorted(lme4_name(k) for k in ref["fixef"])
    for name, value in ref["fixef"].items():
        lme4_se = ref["se"][name]
        assert abs(fixef[lme4_name(name)] - value) <= 0.01 * lme4_se, f"fixef {name}"
        assert abs(se[lme4_name(name)] - lme4_se) <= 0.01 * lme4_se, f"SE {name}"
    assert fit.solution.vcov_source == "hessian"  # lme4's use.hessian = TRUE


@pytest.mark.parametrize("case", CASES)
def test_variance_components_and_modes(case: str) -> None:
    ref, _ = load_glmer_case(case)
    fit = fit_glmer_case(case)
    vc = fit.varcorr()
    vc = vc[vc.grp != "Residual"]
    # lme4 1.1 multiplies a Gamma GLMM's variances by sigma^2; bm.glmer (as newer lme4) does not
    scale = ref.get("sigma", 1.0) if ref["family"] == "Gamma" else 1.0
    assert len(vc) == len(ref["varcorr"])
    for row in ref["varcorr"]:
        var2 = row.get("var2")
        ours = vc[(vc.grp == row["grp"]) & (vc.var1 == lme4_name(row["var1"]))
                  & (vc.var2.isna() if var2 is None else vc.var2 == lme4_name(var2))]
        assert len(ours) == 1
        if var2 is None:
            assert ours.sdcor.iloc[0] == pytest.approx(row["sdcor"] / scale, rel=1e-2), row["grp"]
        else:
            assert ours.sdcor.iloc[0] == pytest.approx(row["sdcor"], abs=1e-2), (row["grp"], var2)
    if "phi" in ref and ref["phi"] is not None:
        assert fit.phi == pytest.approx(ref["phi"], rel=1e-2)
    ranef = fit.ranef()
    for factor, rows in ref["ranef"].items():
        for column in [c for c in rows[0] if c not in ("level", "_row")]:
            expected = pd.Series({r["level"]: r[column] for r in rows})
            got = ranef[factor][lme4_name(column)].reindex(expected.index)
            sd = float(vc.loc[(vc.grp == factor) & (vc.var1 == lme4_name(column)) & vc.var2.isna(), "sdcor"].iloc[0])
            assert np.max(np.abs(got.to_numpy() - expected.to_numpy())) <= 0.01 * sd, (factor, column)


def test_quadrature_changes_loglik_convention_like_lme4() -> None:
    """lme4 reports the AGQ log-likelihood relative to the saturated model (no binomial coefficients)."""
    laplace, agq = fit_glmer_case("cbpp_binomial"), fit_glmer_case("cbpp_binomial_agq25")
    assert laplace.method == "Laplace" and agq.method == "AGQ(25)"
    assert agq.loglik - laplace.loglik == pytest.approx(42.02, abs=0.01)


def test_residuals_from_lme4_parameters() -> None:
    """Deviance, Pearson and response residuals equal R's formulas at lme4's fitted means."""
    ref, data = load_glmer_case("cbpp_binomial")
    fit = fit_glmer_case("cbpp_binomial")
    X = np.column_stack([np.ones(len(data))] + [(data.period == k).to_numpy(float) for k in "234"])
    re = {r["level"]: r["(Intercept)"] for r in ref["ranef"]["herd"]}
    eta = X @ np.array(list(ref["fixef"].values())) + data.herd.map(re).to_numpy(float)
    mu = 1 / (1 + np.exp(-eta))
    n = data["size"].to_numpy(float)
    y = data.incidence.to_numpy(float) / n
    unit = 2 * n * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0)
                    + np.where(y < 1, (1 - y) * np.log(np.where(y < 1, 1 - y, 1) / (1 - mu)), 0))
    np.testing.assert_allclose(fit.fitted(), mu, atol=1e-5)
    np.testing.assert_allclose(fit.residuals("response"), y - mu, atol=1e-5)
    np.testing.assert_allclose(fit.residuals("pearson"), (y - mu) * np.sqrt(n / (mu * (1 - mu))), atol=1e-4)
    np.testing.assert_allclose(fit.residuals("deviance"), np.sign(y - mu) * np.sqrt(unit), atol=1e-4)
    assert float(np.sum(fit.residuals("deviance") ** 2)) == pytest.approx(ref["deviance"], rel=1e-4)
