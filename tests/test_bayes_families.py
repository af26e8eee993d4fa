"""Bayesian families through bm.sample: brms's posterior for cbpp, priors, predictions, LOO, CLI.

The oracle is brms 2.18's posterior for lme4's cbpp binomial model
(tests/reference/brms/cbpp_binomial.json, 12,000 draws; priors in the file): every
posterior mean within 0.15 posterior SD of brms's, 5% and 95% quantiles within 0.2 SD.
Models are sampled once per module (the compiled kernels are shared by all tests).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.priors.distributions import HalfNormal, Normal

REF = Path(__file__).parent / "reference"
CBPP_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "cbpp.csv", dtype={"herd": str, "period": str})


@pytest.fixture(scope="module")
def cbpp_post(cbpp):
    priors = bm.priors.default(CBPP_FORMULA, cbpp, family="binomial")
    for key in ("Intercept", "period2", "period3", "period4"):
        priors[key] = Normal(0, 2.5)
    priors["sd[herd][Intercept]"] = HalfNormal(1)
    return bm.sample(CBPP_FORMULA, cbpp, priors=priors, family="binomial", chains=4, draws=2000, seed=11,
                     progressbar=False)


def _brms_name(name: str) -> str:
    if name.startswith("b_"):
        return name[2:]
    if name == "sd_herd__Intercept":
        return "sd[herd][Intercept]"
    level = name[len("r_herd["):].split(",")[0]
    return f"r[herd][{level},Intercept]"


def test_cbpp_binomial_matches_brms(cbpp_post) -> None:
    ref = json.loads((REF / "brms" / "cbpp_binomial.json").read_text())
    assert len(ref["summary"]) == 20  # 4 fixed, 1 SD, 15 herd effects
    worst = {}
    for row in ref["summary"]:
        draws = cbpp_post.draws(_brms_name(row["variable"]))
        sd = row["sd"]
        gaps = {"mean": abs(draws.mean() - row["mean"]) / sd,
                "5%": abs(np.quantile(draws, 0.05) - row["5%"]) / sd,
                "95%": abs(np.quantile(draws, 0.95) - row["95%"]) / sd}
        worst[row["variable"]] = gaps
        assert gaps["mean"] < 0.15, (row["variable"], gaps)
        assert gaps["5%"] < 0.2 and gaps["95%"] < 0.2, (row["variable"], gaps)
    assert cbpp_post.diagnostics.divergences == 0


def test_family_fit_accessors_and_predictions(cbpp_post, cbpp) -> None:
    assert "compiled density" in cbpp_post.method_note
    assert cbpp_post.family.name == "binomial"
    assert list(cbpp_post.parameters().index) == ["Intercept", "period2", "period3", "period4", "sd[herd][Intercept]"]
    new = pd.DataFrame({"herd": ["1", "new herd"], "period": ["1", "1"], "size": [10, 10]})
    with pytest.raises(bm.DataError, match="new herd"):
        cbpp_post.predict(new)
    link = cbpp_post.predict_draws(new, new_levels="population", type="link")
    prob = cbpp_post.predict_draws(new, new_levels="population")
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-link)))
    counts = cbpp_post.predict_draws(new, new_levels="sample", kind="predictive", trials="size", seed=1)
    assert counts.dtype.kind == "i" and counts.min() >= 0 and counts.max() <= 10
    loglik = cbpp_post.idata["log_likelihood"]["y"]
    assert loglik.shape == (4, 2000, len(cbpp))
    # the first draw's pointwise log-likelihood is the binomial's, constants included
    from scipy import stats

    beta, r = cbpp_post.draws("Intercept")[0], cbpp_post.draws("r[herd][1,Intercept]")[0]
    p = 1 / (1 + np.exp(-(beta + r)))
    assert float(loglik[0, 0, 0]) == pytest.approx(stats.binom.logpmf(2, 14, p), rel=1e-10)
    # draws on both sides of the chunks' boundaries (200 draws each, filled on threads), every row
    n_draws = loglik.shape[1]
    for chain, draw in ((0, 199), (0, 200), (1, 0), (3, n_draws - 1)):
        flat = chain * n_draws + draw
        eta = cbpp_post.draws("Intercept")[flat] + np.array([
            cbpp_post.draws(f"r[herd][{h},Intercept]")[flat]
            + (cbpp_post.draws(f"period{t}")[flat] if t != "1" else 0.0)
            for h, t in zip(cbpp["herd"], cbpp["period"])])
        want = stats.binom.logpmf(cbpp["incidence"], cbpp["size"], 1 / (1 + np.exp(-eta)))
        np.testing.assert_allclose(loglik[chain, draw].values, want, rtol=1e-10)


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 300
    df = pd.DataFrame({"g": rng.integers(0, 8, n).astype(str), "x": rng.normal(size=n), "expo": rng.uniform(0.5, 2, n)})
    eta = 0.4 + 0.5 * df.x + rng.normal(0, 0.4, 8)[df.g.astype(int)]
    df["y"] = rng.poisson(rng.gamma(4.0, np.exp(eta) * df.expo / 4.0))
    return df


def test_family_parameters_join_the_prior_vocabulary(counts, tmp_path) -> None:
    formula = "y ~ x + offset(log(expo)) + (x | g)"
    pri = bm.priors.default(formula, counts, family="negbinomial")
    assert list(pri)[-1] == "phi" and "sigma" not in pri
    path = pri.save(tmp_path / "nb.toml")
    back = bm.priors.load(path)
    assert back == pri
    assert bm.priors.load(path, formula, counts, family="negbinomial") == pri
    with pytest.raises(bm.PriorError, match="phi"):
        bm.priors.load(path, formula, counts, family="poisson")
    with pytest.raises(bm.PriorError, match="phi"):
        bm.priors.PriorSpec({"phi": Normal(0, 1)})
    student = bm.priors.default("y ~ x + (1 | g)", counts, family="student")
    assert [k for k in student if k in ("sigma", "nu")] == ["sigma", "nu"]
    assert list(bm.priors.default("y ~ x + (1 | g)", counts, family="poisson"))[-1] == "sd[g][Intercept]"
    gamma = bm.priors.default("expo ~ x + (1 | g)", counts, family="gamma")
    assert "shape" in gamma


def test_empirical_priors_from_a_glmer_fit(counts) -> None:
    fit = bm.glmer("y ~ x + offset(log(expo)) + (1 | g)", counts, family="negbinomial")
    pri = bm.priors.empirical(fit)
    assert list(pri) == ["Intercept", "x", "sd[g][Intercept]", "phi"]
    assert pri["x"].mu == pytest.approx(float(fit.fixef()["x"]))
    assert pri["x"].sigma == pytest.approx(5 * float(fit.se()["x"]))
    assert pri["phi"].family == "LogNormal" and np.exp(pri["phi"].mu) == pytest.approx(fit.phi)
    # 2 k_8 sd_hat (k_8 = 2.04) exceeds the link-scale default's scale 1: the default, never a wider prior
    from scipy import stats

    est = float(fit.varcorr().sdcor[0])
    rule = 2 * est * np.sqrt(7 / stats.chi2.ppf(0.025, 7))
    assert rule > 1 and pri["sd[g][Intercept]"] == HalfNormal(1)
    assert f"glmer SD {est:.4g} from 8 levels x2 x2.04 = {rule:.4g} is wider than" in pri.sources["sd[g][Intercept]"]
    assert bm.priors.empirical(fit, sd_scale=0.5)["sd[g][Intercept]"].sigma == pytest.approx(rule / 4, rel=1e-12)


def test_negative_binomial_with_offset_samples_and_predicts(counts) -> None:
    formula = "y ~ x + offset(log(expo)) + (1 | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bm.sample(formula, counts, family="negbinomial", priors="default", chains=2, draws=300, tune=300,
                         seed=3, progressbar=False)
    fit = bm.glmer(formula, counts, family="negbinomial")
    assert abs(post.fixef().loc["x", "mean"] - fit.fixef()["x"]) < 2 * fit.se()["x"]
    assert "phi" in post.parameters().index
    new = counts.head(3)
    mean = post.predict_draws(new, type="response")
    link = post.predict_draws(new, type="link")
    np.testing.assert_allclose(mean, np.exp(link))
    # the offset of new rows comes from the formula: doubling the exposure doubles the expected count
    doubled = post.predict_draws(new.assign(expo=2 * new.expo), type="response")
    np.testing.assert_allclose(doubled, 2 * mean, rtol=1e-10)
    draws = post.predict_draws(new, kind="predictive", seed=1)
    assert draws.dtype.kind == "i"
    cmp = bm.compare(fit, post)
    assert "x" in cmp.fixed.index


def test_family_arguments_are_checked(counts) -> None:
    with pytest.raises(ValueError, match="collapsed"):
        bm.sample("y ~ x + (1 | g)", counts, family="poisson", method="collapsed", progressbar=False)
    with pytest.raises(ValueError, match="trials= is for the binomial"):
        bm.sample("y ~ x + (1 | g)", counts, family="poisson", trials="expo", progressbar=False)
    with pytest.raises(ValueError, match="unknown family"):
        bm.sample("y ~ x + (1 | g)", counts, family="weibull", progressbar=False)


@pytest.mark.filterwarnings("ignore::bayesmlm.SamplingWarning")
def test_command_line_samples_a_family(tmp_path, capsys) -> None:
    from bayesmlm.cli import main

    path = tmp_path / "cbpp.csv"
    bm.datasets.load("cbpp").to_csv(path, index=False)
    code = main(["fit", str(path), CBPP_FORMULA, "--family", "binomial", "--priors", "default", "--draws", "200",
                 "--tune", "200", "--chains", "2", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "Family: binomial" in out and "Bayesian generalized linear mixed model" in out


def test_gaussian_with_weights_and_offset_uses_the_compiled_density(counts) -> None:
    df = counts.assign(w=np.where(np.arange(len(counts)) % 2 == 0, 1.0, 2.0), z=np.log(counts.expo))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bm.sample("x ~ 1 + offset(z) + (1 | g)", df, weights="w", chains=2, draws=300, tune=300, seed=2,
                         progressbar=False)
    assert post.family.name == "gaussian" and "compiled density" in post.method_note
    assert post.fixef().loc["Intercept", "mean"] == pytest.approx(np.average(df.x - df.z, weights=df.w), abs=0.3)
    assert "sigma" in post.parameters().index


@pytest.mark.slow
def test_pymc_sampler_gives_the_same_family_posterior(cbpp, cbpp_post) -> None:
    priors = cbpp_post.priors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = bm.sample(CBPP_FORMULA, cbpp, priors=priors, family="binomial", sampler="pymc", chains=4, draws=2000,
                          seed=3, progressbar=False)
    assert "PyMC model" in other.method_note
    for key in ["Intercept", "period4", "sd[herd][Intercept]", "r[herd][7,Intercept]"]:
        a, b = cbpp_post.draws(key), other.draws(key)
        assert abs(a.mean() - b.mean()) < 0.15 * a.std(), key


def test_family_tools_refuse_a_gaussian_fit(cbpp_post, cbpp, tmp_path) -> None:
    # report, pooling and sensitivity take family models (tests/test_families_pooling_report.py); an lmer fit
    # in place of the glmer fit is refused before any work
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        lmer_fit = bm.lmer("incidence ~ period + (1 | herd)", cbpp)
    with pytest.raises(TypeError, match="bm.glmer fit"):
        bm.report(cbpp_post, tmp_path / "r.html", freq=lmer_fit)
    with pytest.raises(TypeError, match="bm.glmer fit"):
        bm.pooling(CBPP_FORMULA, cbpp, fit=lmer_fit, post=cbpp_post)


def test_prior_predictive_draws_counts_from_the_family(counts) -> None:
    check = bm.prior_predictive("y ~ x + offset(log(expo)) + (1 | g)", counts, family="poisson", draws=200,
                                plausible=(0, 100), seed=1)
    assert check.y.shape == (200, len(counts)) and check.y.dtype.kind == "i" and check.y.min() >= 0
    np.testing.assert_array_equal(check.observed, counts.y)
    assert 0 <= check.share_outside <= 1
