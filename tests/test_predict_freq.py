"""FreqFit.predict gives lme4's predict.merMod: group effects, re.form=NA, allow.new.levels=TRUE.

The reference values come from lme4 (tests/reference/inference/*.json): ``predict_rows`` are
R's 1-based row numbers of the data, ``predict_full`` is ``predict(fit, newdata)``,
``predict_fixed_only`` is ``re.form=NA`` and ``predict_new_level`` replaces the factor
``group`` by a new level with ``allow.new.levels=TRUE``.

Predictions are checked to 1e-6 at lme4's own theta (tests/reference/lme4), which tests the
prediction itself; a full fit reaches a theta that differs from lme4's in the fifth digit (the
REML criterion is flat there: ours is 1e-9 to 1e-8 lower), so its predictions agree to 1e-6
relative.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm

import bayesmlm.freq.pls_engine as pls_engine
from bayesmlm.freq.optimize import OptimizerResult
from bayesmlm.frame import required_columns

from .conftest import REFERENCE, load_data, load_reference

CASES = ["sleepstudy_corr", "cake_interaction", "crossed_slopes"]


def load_inference(case: str) -> dict:
    return json.loads((REFERENCE / "inference" / f"{case}.json").read_text())


def fit_and_rows(case: str, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[bm.FreqFit, pd.DataFrame, dict]:
    """The fit of a case (at lme4's theta when ``monkeypatch`` is given) and its reference rows."""
    ref = load_inference(case)
    data = load_data(ref["data"])
    if monkeypatch is not None:
        theta = np.atleast_1d(np.asarray(load_reference(f"{case}_reml")["theta"], dtype=float))
        monkeypatch.setattr(
            pls_engine, "optimize_theta", lambda f, t0, lo: OptimizerResult(theta, float(f(theta)), 1, True)
        )
    fit = bm.lmer(ref["formula"], data)
    rows = data.iloc[np.asarray(ref["predict_rows"]) - 1]
    return fit, rows, ref


@pytest.mark.parametrize("case", CASES)
def test_predict_with_group_effects_matches_lme4(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fit, rows, ref = fit_and_rows(case)
    np.testing.assert_allclose(fit.predict(rows), ref["predict_full"], rtol=1e-6)
    at_lme4, rows, ref = fit_and_rows(case, monkeypatch)
    np.testing.assert_allclose(at_lme4.predict(rows), ref["predict_full"], rtol=0, atol=1e-6)
    # newdata=None predicts the fitted rows
    np.testing.assert_allclose(at_lme4.predict().iloc[rows.index], ref["predict_full"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_predict_fixed_only_matches_lme4(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fit, rows, ref = fit_and_rows(case, monkeypatch)
    np.testing.assert_allclose(fit.predict(rows, re_form="fixed"), ref["predict_fixed_only"], rtol=0, atol=1e-6)
    response, *fixed_part = required_columns(dataclasses.replace(fit.design.formula, random=()))
    only_fixed = rows.loc[:, fixed_part]  # re.form=NA needs no grouping column
    np.testing.assert_allclose(fit.predict(only_fixed, re_form="fixed"), ref["predict_fixed_only"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(fit.predict(re_form="fixed").iloc[rows.index], ref["predict_fixed_only"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["sleepstudy_corr", "crossed_slopes"])
def test_new_level_matches_lme4(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fit, rows, ref = fit_and_rows(case, monkeypatch)
    factor = ref["predict_new_level"]["group"]
    new = rows.assign(**{factor: "a level never seen"})
    got = fit.predict(new, new_levels="population")
    np.testing.assert_allclose(got, ref["predict_new_level"]["value"], rtol=0, atol=1e-6)
    assert list(got.index) == list(rows.index)


def test_new_level_of_an_interaction_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded cake case renamed no column of recipe:replicate, so lme4 predicted seen levels
    (its values equal predict_full); a genuinely new replicate gets effect 0, i.e. lme4's re.form=NA."""
    fit, rows, ref = fit_and_rows("cake_interaction", monkeypatch)
    np.testing.assert_allclose(ref["predict_new_level"]["value"], ref["predict_full"])
    new = rows.assign(replicate="99")
    np.testing.assert_allclose(fit.predict(new, new_levels="population"), ref["predict_fixed_only"], rtol=0, atol=1e-6)


def test_unseen_level_is_named_with_its_factor(sleepstudy: pd.DataFrame) -> None:
    fit = bm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)
    new = pd.DataFrame({"Subject": ["308", "999", "1000"], "Days": [1, 2, 3]})
    with pytest.raises(bm.DataError, match=r"'Subject': '999', '1000'.*new_levels='population'"):
        fit.predict(new)
    crossed = bm.lmer("rt ~ cond + (cond | subj) + (cond | item)", load_data("crossed_slopes"))
    with pytest.raises(bm.DataError, match=r"'item': 'I99'"):
        crossed.predict(pd.DataFrame({"subj": ["S01"], "item": ["I99"], "cond": [0.5]}))


def test_missing_column_is_named(sleepstudy: pd.DataFrame) -> None:
    fit = bm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)
    with pytest.raises(bm.DataError, match=r"'Days'"):
        fit.predict(pd.DataFrame({"Subject": ["308"], "Day": [1]}))
    with pytest.raises(bm.DataError, match=r"'Subject'"):
        fit.predict(pd.DataFrame({"Days": [1]}))
    with pytest.raises(ValueError, match="re_form"):
        fit.predict(sleepstudy, re_form="NA")  # type: ignore[arg-type]


def test_unseen_level_of_a_fixed_effect_factor_is_an_error() -> None:
    """A recipe the model has no coefficient for is refused, naming the column and the level, whatever
    new_levels says (formulaic alone would encode it as NaN, i.e. another recipe's prediction)."""
    cake = load_data("cake")
    fit = bm.lmer("angle ~ recipe * temp + (1 | recipe:replicate)", cake)
    new = pd.DataFrame({"recipe": ["D", "A", "E"], "temp": [200, 200, 200], "replicate": ["1", "1", "1"]})
    for policy in ("error", "population"):
        with pytest.raises(bm.DataError, match=r"fixed effects: column 'recipe' has level\(s\) 'D', 'E' that the "
                           r"model has no coefficient for \(fitted levels: 'A', 'B', 'C'\).*grouping factors only"):
            fit.predict(new, new_levels=policy)
    with pytest.raises(bm.DataError, match=r"column 'recipe' has level\(s\) 'D' that"):
        fit.predict(new.iloc[:1], re_form="fixed")
    # seen recipes still predict: recipe A at temp 200 is the intercept plus 200 times the slope
    beta = fit.fixef()
    got = fit.predict(new.iloc[[1]], re_form="fixed").iloc[0]
    assert np.isclose(got, beta["Intercept"] + 200 * beta["temp"])
    # a categorical expression (C(temp)) is refused too, by formulaic's own check
    by_temp = bm.lmer("angle ~ C(temp) + (1 | replicate)", cake)
    with pytest.raises(bm.DataError, match=r"fixed effects: a categorical term has values the fitted data did not "
                       r"have .*999"):
        by_temp.predict(pd.DataFrame({"temp": [999], "replicate": ["1"]}))
    # a categorical column of a varying term is checked too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        slopes = bm.lmer("angle ~ temp + (recipe | replicate)", cake)
    with pytest.raises(bm.DataError, match=r"term on replicate: column 'recipe' has level\(s\) 'D'"):
        slopes.predict(pd.DataFrame({"recipe": ["D"], "temp": [200], "replicate": ["1"]}))


def test_interaction_levels_containing_the_separator_do_not_collide() -> None:
    """("x:y", "z") and ("x", "y:z") are two groups of a:b although both print as "x:y:z"; each new row
    gets its own group's effect (the fitted value of that group's rows)."""
    rng = np.random.default_rng(1)
    a = np.array(["x:y", "x", "p", "p", "q", "q"] * 10)
    b = np.array(["z", "y:z", "r", "s", "r", "s"] * 10)
    shift = {("x:y", "z"): 3.0, ("x", "y:z"): -3.0}
    y = np.array([shift.get(k, 0.0) for k in zip(a, b)]) + rng.normal(size=len(a))
    df = pd.DataFrame({"y": y, "a": a, "b": b})
    fit = bm.lmer("y ~ 1 + (1 | a:b)", df)
    np.testing.assert_allclose(fit.predict(df.iloc[:6]).to_numpy(), fit.fitted()[:6], rtol=0, atol=1e-9)
    assert fit.fitted()[0] > 1.5 > -1.5 > fit.fitted()[1]  # the two groups' effects differ
    swapped = pd.DataFrame({"a": ["x:y", "x"], "b": ["y:z", "z"]})  # combinations the model has not seen
    with pytest.raises(bm.DataError, match="'a:b'"):
        fit.predict(swapped)
    np.testing.assert_allclose(fit.predict(swapped, new_levels="population"), fit.fixef()["Intercept"])
