"""Priors: distributions, PriorSpec, default and empirical rules, TOML files."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmlm as bm
from bayesmlm.priors import LKJ, HalfNormal, Normal, PriorSpec

from .conftest import load_data

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_fit(sleepstudy) -> bm.FreqFit:
    return bm.lmer(FORMULA, sleepstudy)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: bm.priors.HalfNormal(-1), "sigma must be > 0"),
        (lambda: bm.priors.Gamma(0, 1), "alpha must be > 0"),
        (lambda: bm.priors.Normal(0, float("nan")), "must be finite"),
        (lambda: bm.priors.StudentT("3", 0, 1), "nu must be a number"),
        (lambda: bm.priors.LKJ(0), "eta must be > 0"),
    ],
)
def test_distributions_reject_bad_parameters(make, message: str) -> None:
    with pytest.raises(bm.PriorError, match=message):
        make()


SCIPY_DENSITY = {  # the same families written with scipy.stats, as an independent check of the PyMC mapping
    "Normal": lambda d, x: stats.norm(d.mu, d.sigma).logpdf(x),
    "StudentT": lambda d, x: stats.t(d.nu, d.mu, d.sigma).logpdf(x),
    "HalfNormal": lambda d, x: stats.halfnorm(scale=d.sigma).logpdf(x),
    "HalfStudentT": lambda d, x: np.log(2.0) + stats.t(d.nu, 0.0, d.sigma).logpdf(x),
    "Exponential": lambda d, x: stats.expon(scale=1.0 / d.lam).logpdf(x),
    "Gamma": lambda d, x: stats.gamma(d.alpha, scale=1.0 / d.beta).logpdf(x),
    "LogNormal": lambda d, x: stats.lognorm(d.sigma, scale=np.exp(d.mu)).logpdf(x),
}


@pytest.mark.parametrize("name", sorted(SCIPY_DENSITY))
def test_every_family_makes_the_pymc_variable_of_the_same_density(name: str) -> None:
    import pymc as pm

    cls = bm.priors.DISTRIBUTIONS[name]
    fields = {"nu": 4.5, "mu": 0.3, "sigma": 1.7, "lam": 0.6, "alpha": 2.5, "beta": 1.3}
    dist = cls(**{k: v for k, v in fields.items() if k in cls().params()})
    rv = dist.pymc_class().dist(**dist.params())
    for x in (0.4, 2.2):
        assert float(pm.logp(rv, x).eval()) == pytest.approx(SCIPY_DENSITY[name](dist, x), rel=1e-6)  # PyTensor gammaln: ~1e-8


def test_spec_rejects_a_prior_of_the_wrong_support(sleepstudy) -> None:
    pri = bm.priors.default(FORMULA, sleepstudy)
    with pytest.raises(bm.PriorError, match=r"'sd\[Subject\]\[Days\]' needs one of: HalfNormal"):
        pri["sd[Subject][Days]"] = Normal(0, 1)
    with pytest.raises(bm.PriorError, match=r"'cor\[Subject\]' needs one of: LKJ"):
        pri["cor[Subject]"] = HalfNormal(1)
    with pytest.raises(bm.PriorError, match="'Days' needs one of: Normal, StudentT"):
        pri["Days"] = LKJ(2)


def test_default_rule_follows_its_documented_formulas(sleepstudy) -> None:
    pri = bm.priors.default(FORMULA, sleepstudy)
    s_y, days = np.std(sleepstudy.Reaction), sleepstudy.Days
    assert pri["Days"] == Normal(0, 2.5 * s_y / np.std(days))
    assert pri["Intercept"].mu == pytest.approx(np.mean(sleepstudy.Reaction))
    assert pri["Intercept"].sigma == pytest.approx(2.5 * s_y * math.sqrt(1 + (np.mean(days) / np.std(days)) ** 2))
    assert pri["sd[Subject][Intercept]"] == bm.priors.HalfStudentT(3, 2.5 * s_y)
    assert pri["sd[Subject][Days]"] == bm.priors.HalfStudentT(3, 2.5 * s_y / np.std(days))
    assert pri["cor[Subject]"] == LKJ(2) and pri["sigma"] == bm.priors.HalfStudentT(3, 2.5 * s_y)
    assert list(pri) == [p.key for p in bm.priors.model_parameters(bm.build_design(FORMULA, sleepstudy))]


def test_empirical_priors_centre_on_the_fit(sleep_fit: bm.FreqFit) -> None:
    pri = bm.priors.empirical(sleep_fit, fixed_scale=4, sd_scale=3)
    fixef, se = sleep_fit.fixef(), sleep_fit.se()
    assert pri["Days"] == Normal(fixef["Days"], 4 * se["Days"])
    vc = sleep_fit.varcorr()
    widen = math.sqrt(17 / stats.chi2.ppf(0.025, 17))  # 18 subjects: upper end of a 95% interval for an SD
    assert pri["sd[Subject][Days]"].family == "HalfNormal"
    assert pri["sd[Subject][Days]"].sigma == pytest.approx(3 * vc.sdcor[1] * widen, rel=1e-12)
    assert pri["sigma"] == HalfNormal(2 * sleep_fit.sigma)
    text = str(pri)
    assert "count it twice and narrow the posterior" in text and "earlier" in text
    assert "using the data twice narrows the posterior" in pri.notes(same_data=True)[0]
    assert "empirical: lmer" in pri.table().source[0]


def test_empirical_falls_back_to_the_default_rule_for_a_singular_component() -> None:
    df = load_data("dyestuff2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        fit = bm.lmer("Yield ~ 1 + (1 | Batch)", df)
    pri = bm.priors.empirical(fit)
    assert pri["sd[Batch][Intercept]"] == bm.priors.default("Yield ~ 1 + (1 | Batch)", df)["sd[Batch][Intercept]"]
    assert "singular fit" in pri.sources["sd[Batch][Intercept]"]


def _with_sd(fit: bm.FreqFit, sd: float) -> bm.FreqFit:
    """``fit`` with its single group SD replaced by ``sd`` (a (1 | g) model)."""
    estimates = dataclasses.replace(fit.estimates, covariances=[np.array([[sd**2]])])
    return bm.FreqFit(fit.design, estimates, fit.reml, fit.engine, fit.engine_note)


def test_a_tiny_sd_estimate_gets_the_floor_not_a_dogmatic_prior(sleepstudy) -> None:
    formula = "Reaction ~ Days + (1 | Subject)"
    fit = bm.lmer(formula, sleepstudy)
    tiny = _with_sd(fit, 0.01 * fit.sigma)  # above the singular threshold (1e-3 sigma), so not the default rule
    pri = bm.priors.empirical(tiny)
    floor = 0.1 * bm.priors.default(formula, sleepstudy)["sd[Subject][Intercept]"].sigma  # 0.1 x 2.5 sd(y)
    assert pri["sd[Subject][Intercept]"] == HalfNormal(floor)
    assert pri["sd[Subject][Intercept]"].sigma > 40 * 0.01 * fit.sigma  # was HalfNormal(0.02 sigma)
    assert "raised to the floor" in pri.sources["sd[Subject][Intercept]"]
    with pytest.raises(ValueError, match="sd_floor must be >= 0"):
        bm.priors.empirical(fit, sd_floor=-1)


def _grouped(levels: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(levels), 30)
    effects = rng.normal(0.0, 2.0, levels)
    return pd.DataFrame({"y": effects[g] + rng.normal(size=g.size), "g": g.astype(str)})


def test_sd_prior_is_wider_relative_to_its_estimate_for_fewer_levels() -> None:
    ratios = {}
    for levels in (3, 100):
        fit = bm.lmer("y ~ 1 + (1 | g)", _grouped(levels, seed=levels))
        if levels == 3:  # an estimate small enough (0.1 sd(y)) that 2 k_3 sd_hat stays below the default's 2.5 sd(y)
            fit = _with_sd(fit, 0.1 * float(np.std(fit.design.y)))
        est = float(fit.varcorr().sdcor[0])
        ratios[levels] = bm.priors.empirical(fit)["sd[g][Intercept]"].sigma / est
    assert ratios[3] == pytest.approx(2 * math.sqrt(2 / stats.chi2.ppf(0.025, 2)))  # 12.57
    assert ratios[100] == pytest.approx(2 * math.sqrt(99 / stats.chi2.ppf(0.025, 99)))  # 2.32
    assert ratios[3] > 5 * ratios[100]


def test_empirical_sd_prior_is_never_wider_than_the_default_rule() -> None:
    df = _grouped(3, seed=2)
    fit = bm.lmer("y ~ 1 + (1 | g)", df)
    est, s_y = float(fit.varcorr().sdcor[0]), float(np.std(df.y))
    rule = 2 * est * math.sqrt(2 / stats.chi2.ppf(0.025, 2))  # 2 k_3 sd_hat = 9.01
    default = bm.priors.HalfStudentT(3, 2.5 * s_y)  # 2.88
    assert rule > default.sigma  # the uncapped rule gave HalfNormal(9.01), three times the default's scale
    pri = bm.priors.empirical(fit)
    assert pri["sd[g][Intercept]"] == default
    source = pri.sources["sd[g][Intercept]"]
    assert f"= {rule:.4g} is wider than the default rule's scale {default.sigma:.4g}" in source
    assert source.startswith("default: HalfStudentT(3, 2.5 sd(y))") and "3 levels" in source


def _counts_with_exposure(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    df = pd.DataFrame({"g": rng.integers(0, 10, n).astype(str), "x": rng.normal(size=n),
                       "t": rng.uniform(5e3, 1.5e4, n)})
    eta = -8.0 + 0.3 * df.x + rng.normal(0, 0.3, 10)[df.g.astype(int)]
    df["y"] = rng.poisson(np.exp(eta) * df.t)
    return df


def test_link_scale_intercept_prior_subtracts_the_offset() -> None:
    df = _counts_with_exposure()
    formula = "y ~ x + offset(log(t)) + (1 | g)"
    pri = bm.priors.default(formula, df, family="poisson")
    rate = np.log(df.y.sum() / df.t.sum())  # the pooled rate per unit exposure: about -7.9
    assert pri["Intercept"].mu == pytest.approx(rate, rel=1e-12)  # was log(mean(y)) = 1.29, 3.7 prior SDs from glmer's
    assert "sum(w exp(offset))" in pri.sources["Intercept"]
    glmer_intercept = float(bm.glmer(formula, df, family="poisson").fixef()["Intercept"])
    assert abs(pri["Intercept"].mu - glmer_intercept) < 0.1 * pri["Intercept"].sigma
    # offset= as an argument and weights: sum(w y) / sum(w exp(offset))
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(df))
    pri = bm.priors.default("y ~ x + (1 | g)", df, family="poisson", offset=np.log(df.t), weights=w)
    assert pri["Intercept"].mu == pytest.approx(np.log(np.sum(w * df.y) / np.sum(w * df.t)), rel=1e-12)
    # no offset: unchanged, log(mean(y)); the logit link: minus the mean offset
    assert bm.priors.default("y ~ x + (1 | g)", df, family="poisson")["Intercept"].mu == pytest.approx(np.log(df.y.mean()))
    df["z"] = (df.y > df.y.median()).astype(int)
    pri = bm.priors.default("z ~ x + (1 | g)", df, family="binomial", offset=np.log(df.t))
    assert pri["Intercept"].mu == pytest.approx(-np.mean(np.log(df.t)), rel=1e-12)


def test_default_priors_of_phi_and_shape_allow_overdispersion(sleepstudy) -> None:
    counts = bm.datasets.load("grouseticks")
    phi = bm.priors.default("TICKS ~ cHEIGHT + (1 | BROOD)", counts, family="negbinomial")["phi"]
    assert phi.family == "LogNormal"
    prior = stats.lognorm(phi.sigma, scale=np.exp(phi.mu))
    assert prior.cdf(1.0) > 0.2  # Gamma(2, 0.1) gave 0.0047
    assert prior.cdf(2.05) > 0.3 and prior.cdf(2.52) > 0.3  # glmer.nb's and the nb oracle's phi: were 1.8%, 2.7%
    assert prior.cdf(100) - prior.cdf(0.3) > 0.8
    assert prior.ppf([0.05, 0.5, 0.95]) == pytest.approx([0.167, 4.48, 120.3], rel=2e-3)  # stated in priors/README.md
    shape = bm.priors.default("Reaction ~ Days + (1 | Subject)", sleepstudy, family="gamma")["shape"]
    prior = stats.lognorm(shape.sigma, scale=np.exp(shape.mu))
    assert prior.ppf([0.05, 0.5, 0.95]) == pytest.approx([0.121, 7.39, 451.3], rel=2e-3)
    assert prior.cdf(1.0) > 0.2 and prior.sf(100) > 0.1  # CV above 100% and below 10% both allowed
    nu = bm.priors.default("Reaction ~ Days + (1 | Subject)", sleepstudy, family="student")["nu"]
    assert nu == bm.priors.Gamma(2, 0.1)  # brms's prior for nu stays nu's


def _with_glmm_sd(fit, sd: float):
    """A copy of a (1 | g) glmer fit with its group SD set to ``sd``."""
    import copy

    out = copy.copy(fit)
    out.estimates = dataclasses.replace(fit.estimates, covariances=[np.array([[sd**2]])])
    return out


def _gamma_fit():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(12), 80)
    eta = 0.01 + rng.normal(0, 2e-4, 12)[g]  # inverse link: mean 100, groups differ by about 2%
    df = pd.DataFrame({"y": rng.gamma(50.0, 1 / eta / 50.0), "g": g.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        return bm.glmer("y ~ 1 + (1 | g)", df, family="Gamma")


def test_empirical_glmm_uses_the_fits_own_singular_test() -> None:
    base = _gamma_fit()
    assert base.family.link.name == "inverse"
    small = _with_glmm_sd(base, 1.6e-4)
    small.estimates = dataclasses.replace(small.estimates, converged=True, messages=[])
    assert small.singular_components() == []  # a real SD on the inverse link's scale (mean 100: eta 0.01)
    pri = bm.priors.empirical(small)
    source = pri.sources["sd[g][Intercept]"]
    assert "singular" not in source and source.startswith("empirical: glmer SD 0.00016 from 12 levels")
    assert pri["sd[g][Intercept]"] == HalfNormal(0.1)  # 2 x 1.70 x 1.6e-4 raised to the floor 0.1 x HalfNormal(1)
    zero = _with_glmm_sd(small, 1e-7)
    assert zero.singular_components() == ["sd[g][Intercept] is ~0"]
    pri = bm.priors.empirical(zero)
    assert pri["sd[g][Intercept]"] == HalfNormal(1) and "singular fit" in pri.sources["sd[g][Intercept]"]


def test_unconverged_glmer_fit_warning_names_glmer_and_the_family() -> None:
    fit = _with_glmm_sd(_gamma_fit(), 0.003)
    fit.estimates = dataclasses.replace(fit.estimates, converged=False, messages=["max|grad| = 0.2 > 0.002"])
    with pytest.warns(bm.ConvergenceWarning) as record:
        bm.priors.empirical(fit)
    message = str(record[0].message)
    assert "from a glmer fit that did not converge (max|grad| = 0.2 > 0.002)" in message
    assert "bm.priors.default(formula, data, family='Gamma', link='inverse')" in message
    assert "lmer fit" not in message.replace("glmer fit", "") and "engine='pls'" not in message


def test_fingerprint_of_a_family_model_includes_trials_weights_and_offset() -> None:
    from bayesmlm.family_design import family_design
    from bayesmlm.priors.rules import data_fingerprint, warn_if_same_data

    df = _counts_with_exposure()
    df["t2"] = df.t * 2
    base = data_fingerprint(family_design("y ~ x + (1 | g)", df, "poisson"))
    exposed = data_fingerprint(family_design("y ~ x + offset(log(t)) + (1 | g)", df, "poisson"))
    other = data_fingerprint(family_design("y ~ x + offset(log(t2)) + (1 | g)", df, "poisson"))
    weighted = data_fingerprint(family_design("y ~ x + (1 | g)", df, "poisson", weights=np.full(len(df), 2.0)))
    assert len({base, exposed, other, weighted}) == 4  # were all equal: same y and X
    df["k"], df["n1"], df["n2"] = df.y % 5, 5, 6
    d5, d6 = (family_design("k ~ x + (1 | g)", df, "binomial", trials=n) for n in ("n1", "n2"))
    assert data_fingerprint(d5) != data_fingerprint(d6)
    # a glmer fit of the same data with an offset: the same-data note fires; other exposures: silent
    fit = bm.glmer("y ~ x + offset(log(t)) + (1 | g)", df, family="poisson")
    spec = bm.priors.empirical(fit)
    with pytest.warns(bm.EmpiricalPriorNote):
        warn_if_same_data(spec, family_design("y ~ x + offset(log(t)) + (1 | g)", df, "poisson"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.EmpiricalPriorNote)
        warn_if_same_data(spec, family_design("y ~ x + offset(log(t2)) + (1 | g)", df, "poisson"))


def test_prior_file_round_trips_exactly(tmp_path: Path, sleep_fit: bm.FreqFit) -> None:
    pri = bm.priors.empirical(sleep_fit)
    pri["Intercept"] = Normal(0.1 + 0.2, 1e-7)  # floats that print inexactly
    pri["sd[Subject][Days]"] = bm.priors.Gamma(2.5, 1 / 3)
    path = pri.save(tmp_path / "priors" / "sleep.toml")
    again = bm.priors.load(path)
    assert again == pri
    assert again["Intercept"].mu == 0.1 + 0.2
    assert list(tmp_path.joinpath("priors").iterdir()) == [path]  # no temporary file left behind


def test_hand_edited_file_is_read_with_its_edits(tmp_path: Path, sleepstudy, sleep_fit) -> None:
    path = bm.priors.empirical(sleep_fit).save(tmp_path / "p.toml")
    text = path.read_text()
    start = text.index('"sd[Subject][Days]" =')
    end = text.index("\n", start)
    text = text[:start] + '"sd[Subject][Days]" = { dist = "HalfStudentT", nu = 4.0, sigma = 10.0 }' + text[end:]
    text = text.replace('"sd[Subject][Days]" = "empirical', '# "sd[Subject][Days]" = "empirical')
    path.write_text(text)
    pri = bm.priors.load(path, FORMULA, sleepstudy)
    assert pri["sd[Subject][Days]"] == bm.priors.HalfStudentT(4, 10)
    assert pri.sources["sd[Subject][Days]"] == "file p.toml"


GOOD = """[meta]
formula = "Reaction ~ Days + (Days | Subject)"

[priors]
Intercept = { dist = "Normal", mu = 250.0, sigma = 100.0 }
Days = { dist = "Normal", mu = 0.0, sigma = 50.0 }
"sd[Subject][Intercept]" = { dist = "HalfNormal", sigma = 50.0 }
"sd[Subject][Days]" = { dist = "HalfNormal", sigma = 50.0 }
"cor[Subject]" = { dist = "LKJ", eta = 2.0 }
sigma = { dist = "HalfNormal", sigma = 50.0 }
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('Days = { dist = "Normal"', 'Dayz = { dist = "Normal"', r"line 6: 'Dayz' is not a parameter of"),
        ('{ dist = "Normal", mu = 0.0', '{ dist = "Gaussian", mu = 0.0', r"line 6: 'Days': unknown distribution 'Gaussian'; known: Normal"),
        ('"sd[Subject][Days]" = { dist = "HalfNormal", sigma = 50.0 }', '"sd[Subject][Days]" = { dist = "HalfNormal", sigma = -5.0 }', r"line 8: 'sd\[Subject\]\[Days\]': HalfNormal: sigma must be > 0, got -5.0"),
        ('"cor[Subject]" = { dist = "LKJ", eta = 2.0 }\n', "", r"no prior for 'cor\[Subject\]'"),
        ('sigma = { dist = "HalfNormal", sigma = 50.0 }', 'sigma = { dist = "HalfNormal", scale = 50.0 }', r"line 10: 'sigma': HalfNormal takes sigma; unknown parameter\(s\) 'scale' and missing parameter\(s\) 'sigma'"),
        ('"cor[Subject]" = { dist = "LKJ", eta = 2.0 }', '"cor[Subject]" = { dist = "HalfNormal", sigma = 2.0 }', r"line 9: 'cor\[Subject\]': prior for 'cor\[Subject\]' is HalfNormal"),
        ("sigma = { dist", "sigma = dist", r"not valid TOML"),
        ('"cor[Subject]" = { dist = "LKJ", eta = 2.0 }', '"cor[Subject]" = { dist = "LKJ", eta = 2.0 }\n"sd[Item][Intercept]" = { dist = "HalfNormal", sigma = 1.0 }', r"line 10: 'sd\[Item\]\[Intercept\]' is not a parameter"),
        ("Intercept = { dist", "Intercept = { dost", r"not valid TOML|line 5: 'Intercept': expected an inline table"),
    ],
    ids=["unknown-parameter", "unknown-distribution", "negative-scale", "missing-parameter", "misnamed-argument",
         "wrong-support", "bad-syntax", "parameter-formula-lacks", "no-dist"],
)
def test_bad_prior_files_fail_with_file_line_key_and_reason(tmp_path: Path, sleepstudy, old: str, new: str, message: str) -> None:
    assert old in GOOD
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(bm.PriorError, match=message) as info:
        bm.priors.load(path, FORMULA, sleepstudy)
    assert str(path) in str(info.value)


def test_good_file_loads(tmp_path: Path, sleepstudy) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    pri = bm.priors.load(path, FORMULA, sleepstudy)
    assert pri["cor[Subject]"] == LKJ(2) and len(pri) == 6


def test_missing_prior_file() -> None:
    with pytest.raises(bm.PriorError, match="does not exist"):
        bm.priors.load("no/such/file.toml")


def test_spec_table_and_copy() -> None:
    spec = PriorSpec({"Intercept": Normal(0, 1), "sigma": HalfNormal(1)})
    twin = spec.copy()
    twin["sigma"] = HalfNormal(2)
    assert spec["sigma"] == HalfNormal(1)
    assert spec.table().distribution.tolist() == ["Normal(mu=0, sigma=1)", "HalfNormal(sigma=1)"]
