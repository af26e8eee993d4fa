"""Inference around lmer fits against lmerTest 3.1, pbkrtest 0.5 and lme4 1.1-31.

Oracles: tests/reference/inference/<case>.json (Satterthwaite and Kenward-Roger
t tests, type III ANOVA with both, Wald and profile intervals, the LRT against
the reduced model named in the file). Goals: df within 0.1%, p within 1%
(relative), F within 0.1%, Wald bounds within 1e-4, profile bounds within
0.2%, LRT chi-square within 0.1%, on every case.
"""

from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.freq.inference import RefitNote, bootstrap, profile
from bayesmlm.freq.inference.icc_r2 import variance_components

from .conftest import load_data

ORACLES = Path(__file__).parent / "reference" / "inference"
CASES = ["sleepstudy_corr", "cake_interaction", "crossed_slopes"]


@lru_cache(maxsize=None)
def oracle(case: str) -> dict:
    return json.loads((ORACLES / f"{case}.json").read_text())


@lru_cache(maxsize=None)
def fitted(case: str, which: str = "formula"):
    ref = oracle(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.lmer(ref[which], load_data(ref["data"]))


def name(term: str) -> str:
    """lme4/lmerTest names -> the shared vocabulary."""
    fix = lambda s: "Intercept" if s == "(Intercept)" else s  # noqa: E731
    if m := re.fullmatch(r"sd_(.+)\|(.+)", term):
        return f"sd[{m[2]}][{fix(m[1])}]"
    if m := re.fullmatch(r"cor_(.+)\.(.+)\|(.+)", term):
        return f"cor[{m[3]}][{fix(m[2])},{fix(m[1])}]"
    return fix(term)


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def rel(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.abs(a - b) / np.abs(b)


@pytest.mark.parametrize("case", CASES)
def test_satterthwaite_t_tests(case):
    ref = oracle(case)["satterthwaite"]
    table = fitted(case).coef_table("satterthwaite").loc[[name(t) for t in ref["term"]]]
    assert list(table.columns) == ["estimate", "se", "df", "t", "p"]
    assert rel(table.df, ref["df"]).max() < 1e-3
    assert rel(table.p, ref["p"]).max() < 1e-2
    assert rel(table.t, ref["t"]).max() < 1e-4


@pytest.mark.parametrize("case", CASES)
def test_kenward_roger_t_tests(case):
    ref = oracle(case)["kenward_roger"]
    table = fitted(case).coef_table("kenward-roger").loc[[name(t) for t in ref["term"]]]
    assert rel(table.se, ref["se"]).max() < 1e-4  # the adjusted SEs
    assert rel(table.df, ref["df"]).max() < 1e-3
    assert rel(table.p, ref["p"]).max() < 1e-2


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ddf, key", [("satterthwaite", "anova_satterthwaite"), ("kenward-roger", "anova_kr")])
def test_type3_anova(case, ddf, key):
    ref = oracle(case)[key]
    terms = as_list(ref["term"])
    table = fitted(case).anova(ddf=ddf)
    assert list(table.index) == terms and list(table.columns) == ["num_df", "den_df", "F", "p"]
    assert table.num_df.tolist() == as_list(ref["NumDF"])
    assert rel(table.den_df, as_list(ref["DenDF"])).max() < 1e-3
    assert rel(table.F, as_list(ref["F"])).max() < 1e-3
    assert rel(table.p, as_list(ref["p"])).max() < 1e-2


@pytest.mark.parametrize("case", CASES)
def test_wald_intervals(case):
    ref = oracle(case)["confint_wald"]
    fit = fitted(case)
    ci = fit.confint("wald")
    rows = [name(t) for t in ref["term"]]
    assert np.abs(ci.loc[rows, "lower"] - ref["lower"]).max() < 1e-4
    assert np.abs(ci.loc[rows, "upper"] - ref["upper"]).max() < 1e-4
    # lme4 gives NA for the variance parameters
    assert ci.drop(index=rows).isna().all().all() and "sigma" in ci.index


@pytest.mark.parametrize("case", CASES)
def test_profile_intervals(case):
    ref = oracle(case)["confint_profile"]
    ci = fitted(case).confint("profile")
    rows = [name(t) for t in ref["term"]]
    assert set(rows) == set(ci.index)
    assert rel(ci.loc[rows, "lower"], ref["lower"]).max() < 2e-3
    assert rel(ci.loc[rows, "upper"], ref["upper"]).max() < 2e-3


@pytest.mark.parametrize("case", CASES)
def test_likelihood_ratio_test(case):
    ref = oracle(case)["lrt"]
    with pytest.warns(RefitNote, match="refitting model"):
        table = bm.anova(fitted(case), fitted(case, "reduced"), names=["full", "reduced"])
    assert list(table.index) == ["reduced", "full"]  # ordered by number of parameters, as lme4
    assert list(table.columns) == ["npar", "AIC", "BIC", "loglik", "deviance", "chisq", "df", "p"]
    assert table.npar.tolist() == ref["npar"]
    assert rel(table.deviance, ref["deviance"]).max() < 1e-6
    assert rel(table.chisq.iloc[1], ref["Chisq"][1]) < 1e-3
    assert table.df.iloc[1] == ref["Df"][1]
    assert rel(table.p.iloc[1], ref["p"][1]) < 1e-2


def test_anova_rejects_non_nested_and_different_data(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = bm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, reml=False)
        b = bm.lmer("Reaction ~ 1 + (Days || Subject)", sleepstudy, reml=False)
        c = bm.lmer("Reaction ~ 1 + (1 | Subject)", sleepstudy.iloc[:120], reml=False)
    with pytest.raises(bm.DataError, match="not nested.*fixed effects \\['Days'\\]"):
        bm.anova(a, b)
    with pytest.raises(bm.DataError, match="same data"):
        bm.anova(a, c)


def test_kenward_roger_needs_reml(sleepstudy):
    fit = bm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, reml=False)
    with pytest.raises(ValueError, match="only available for REML"):
        fit.coef_table("kenward-roger")
    assert fit.coef_table("none").df.tolist() == [np.inf, np.inf]


def test_summary_shows_satterthwaite_df_and_p():
    text = fitted("cake_interaction").summary()
    header = next(line for line in text.splitlines() if "Estimate" in line)
    assert header.split() == ["Estimate", "Std.", "Error", "df", "t", "value", "Pr(>|t|)"]
    assert "Satterthwaite" in text


def test_profile_traces_and_plot():
    fit = fitted("sleepstudy_corr")
    prof = profile(fit, which=["Days", "sigma"])
    table = prof.table
    assert {"parameter", "zeta", "value", "Days", "sigma", "sd[Subject][Intercept]"} <= set(table.columns)
    for par, rows in table.groupby("parameter"):
        rows = rows.sort_values("value")
        assert np.all(np.diff(rows.zeta) > 0)  # monotone in the parameter
        assert np.isclose(rows.zeta.abs().min(), 0.0)
    fig = prof.plot()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2


def test_bootstrap_is_reproducible_across_workers(sleepstudy):
    fit = fitted("sleepstudy_corr")
    serial = bootstrap(fit, nsim=12, seed=7, n_jobs=1)
    parallel = bootstrap(fit, nsim=12, seed=7, n_jobs=2)
    pd.testing.assert_frame_equal(serial.draws, parallel.draws)
    assert not serial.draws.equals(bootstrap(fit, nsim=12, seed=8, n_jobs=1).draws)
    ci = fit.confint("boot", nsim=12, seed=7, n_jobs=1)
    assert list(ci.index) == list(serial.draws.columns) and (ci.lower <= ci.upper).all()


@pytest.mark.slow
def test_bootstrap_interval_of_a_fixed_effect_is_close_to_wald():
    fit = fitted("sleepstudy_corr")
    boot = bootstrap(fit, nsim=1000, seed=1)
    wald = fit.confint("wald").loc["Days"]
    ci = boot.confint().loc["Days"]
    half = (wald.upper - wald.lower) / 2
    assert abs(ci.lower - wald.lower) < 0.1 * half and abs(ci.upper - wald.upper) < 0.1 * half
    assert abs(boot.draws["Days"].std() / fit.se()["Days"] - 1) < 0.1


def test_icc_and_r2_random_intercept():
    fit = bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff"))
    tau2 = fit.varcorr().vcov.iloc[0]
    assert np.isclose(bm.icc(fit)["adjusted"], tau2 / (tau2 + fit.sigma**2))
    assert np.isclose(bm.r2(fit)["marginal"], 0.0) and np.isclose(bm.r2(fit)["conditional"], bm.icc(fit)["adjusted"])


def test_icc_and_r2_match_performance_on_sleepstudy():
    # as performance's r2_nakagawa() and icc() print them for this model (their documentation example)
    fit = fitted("sleepstudy_corr")
    assert bm.r2(fit).round(3).to_dict() == {"marginal": 0.279, "conditional": 0.799}
    assert bm.icc(fit).round(3).to_dict() == {"adjusted": 0.722, "conditional": 0.521}


def test_r2_random_slopes_uses_johnson_extension():
    fit = fitted("sleepstudy_corr")
    v = variance_components(fit)
    block = fit.design.blocks[0]
    Sigma = fit.estimates.covariances[0]
    # mean over rows of z_i' Sigma z_i, from the rows themselves
    expected = np.mean(np.einsum("ij,jk,ik->i", block.values, Sigma, block.values))
    assert np.isclose(v["random"], expected)
    assert np.isclose(v["fixed"], np.var(fit.design.X @ fit.fixef().to_numpy(), ddof=1))
    total = v["fixed"] + v["random"] + fit.sigma**2
    assert np.isclose(bm.r2(fit)["marginal"], v["fixed"] / total)
    assert np.isclose(bm.icc(fit)["conditional"], v["random"] / total)


# ----------------------------------------------------------------------------- review fixes
def test_profile_interval_beyond_the_profile_is_nan_with_advice_and_confint_extends_it():
    """lme4 gives NA (Intercept) and 0 / Inf (sigma) for level 0.9999 from its default profile; with
    alphamax = 0.5 * P(chi2_3 > qnorm(0.99995)^2) = 0.000851737 it gives (R, lme4 1.1-31)
    confint(profile(fm, alphamax = 0.000851737), level = 0.9999) below."""
    fit = bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff"))
    prof = profile(fit)
    with pytest.warns(bm.freq.inference.ProfileWarning) as record:
        ci = prof.confint(level=0.9999)
    assert np.isnan(ci.loc["Intercept"]).all() and np.isnan(ci.loc["sigma"]).all()
    assert ci.loc["sd[Batch][Intercept]", "lower"] == 0.0  # the profile reached the bound: a genuine end
    assert np.isnan(ci.loc["sd[Batch][Intercept]", "upper"])
    messages = [str(w.message) for w in record]
    assert any("'Intercept' does not reach the 0.9999 level on the lower side" in m and "alphamax = 0.01" in m
               and "alphamax=0.00085" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.freq.inference.ProfileWarning)
        wide = fit.confint("profile", level=0.9999)
    lme4 = {"Intercept": (1380.7158910613, 1674.2896375181), "sd[Batch][Intercept]": (0.0, 247.5437111964),
            "sigma": (30.8363271077, 98.6282935959)}
    for name, (lo, hi) in lme4.items():
        assert wide.loc[name, "lower"] == pytest.approx(lo, rel=5e-4, abs=1e-9), name
        assert wide.loc[name, "upper"] == pytest.approx(hi, rel=5e-4), name


def test_profile_passes_on_every_warning_once(monkeypatch):
    import importlib

    module = importlib.import_module("bayesmlm.freq.inference.profile")
    real = module.optimize_theta

    def noisy(*args, **kwargs):
        warnings.warn("theta optimiser: evaluation limit reached", RuntimeWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "optimize_theta", noisy)
    fit = bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profile(fit, which=["Intercept"])
    runtime = [w for w in caught if w.category is RuntimeWarning]
    assert [str(w.message) for w in runtime] == ["theta optimiser: evaluation limit reached"]


def test_bootstrap_counts_refits_that_did_not_converge(monkeypatch):
    import dataclasses
    import importlib

    module = importlib.import_module("bayesmlm.freq.inference.bootstrap")
    real = module.optimize_theta
    calls = []

    def every_other(*args, **kwargs):
        res = real(*args, **kwargs)
        calls.append(kwargs.get("check"))
        return res if len(calls) % 2 else dataclasses.replace(res, converged=False, messages=["stopped short"])

    monkeypatch.setattr(module, "optimize_theta", every_other)
    fit = bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff"))
    with pytest.warns(bm.ConvergenceWarning, match=r"^3 of 6 bootstrap refits did not converge"):
        boot = bootstrap(fit, nsim=6, seed=1, n_jobs=1)
    assert calls == [True] * 6  # each refit is checked, as lme4's refit is
    assert boot.not_converged == 3 and boot.failed == 0
    assert boot.converged.tolist() == [True, False, True, False, True, False]
    assert boot.draws.notna().all().all()  # kept, as bootMer keeps them


def test_lrt_warns_when_the_larger_model_fits_worse(sleepstudy):
    import copy
    import dataclasses

    small = bm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, reml=False)
    big = bm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, reml=False)
    failed = copy.copy(big)  # a fit stopped far from its optimum, 2 below the smaller model's (lme4: -897.039)
    failed.estimates = dataclasses.replace(big.estimates, loglik=small.loglik - 2.0)
    with pytest.warns(bm.ConvergenceWarning, match=r"'big' \(6 parameters\) has a lower log-likelihood "
                      r"\(-899\.039\) than the simpler model 'small' it contains \(4 parameters, -897\.039\)"):
        table = bm.anova(small, failed, names=["small", "big"])
    assert table.loc["big", "chisq"] == 0.0 and table.loc["big", "p"] == 1.0


def test_lrt_data_check_names_the_difference_and_nesting_is_by_factor_name(sleepstudy):
    a = bm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, reml=False)
    changed = sleepstudy.assign(Reaction=sleepstudy.Reaction.where(sleepstudy.index != 3, 300.0))
    b = bm.lmer("Reaction ~ 1 + (1 | Subject)", changed, reml=False)
    with pytest.raises(bm.DataError, match=r"'full' differs from 'small': response values: 1 of 180 rows differ, "
                       r"first at row 3 \(300\.0 in 'small', 321\.4398 in 'full'\)"):
        bm.anova(b, a, names=["small", "full"])
    pastes = load_data("pastes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_sample = bm.lmer("strength ~ 1 + (1 | sample)", pastes, reml=False)
        nested = bm.lmer("strength ~ 1 + (1 | batch) + (1 | batch:cask)", pastes, reml=False)
    with pytest.raises(bm.DataError, match=r"not nested.*\['sample'\] in 'one', \['batch', 'batch:cask'\] in 'two'.*"
                       r"counts as different"):
        bm.anova(by_sample, nested, names=["one", "two"])
