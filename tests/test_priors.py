"""Priors: distributions, PriorSpec, default and empirical rules, TOML files."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

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


def test_every_family_makes_a_pymc_variable() -> None:
    import pymc as pm

    with pm.Model():
        for name, cls in bm.priors.DISTRIBUTIONS.items():
            if name != "LKJ":
                dist = cls()
                rv = dist.pymc_class()(name, **dist.params())
                assert np.isfinite(pm.draw(rv, random_seed=1))


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
    assert pri["sd[Subject][Days]"] == HalfNormal(3 * vc.sdcor[1])
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
