"""Bad input gets a clear error that names the column, level or term."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm import DataError, EngineError, FormulaError

from .conftest import load_data


def test_unknown_column_suggests_the_close_one(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"'Dayz' \(did you mean 'Days'\?\)"):
        bm.lmer("Reaction ~ Dayz + (1 | Subject)", sleepstudy)


def test_unknown_grouping_column(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'Subjekt'"):
        bm.lmer("Reaction ~ Days + (1 | Subjekt)", sleepstudy)


def test_missing_values_are_named_with_counts(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.copy()
    df.loc[[3, 7], "Days"] = np.nan
    df.loc[5, "Subject"] = None
    with pytest.raises(DataError, match=r"'Days' \(2 missing\), 'Subject' \(1 missing\).*na_action='drop'"):
        bm.lmer("Reaction ~ Days + (Days | Subject)", df)
    with pytest.warns(UserWarning, match="dropped 3 of 180 rows"):
        fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df, na_action="drop")
    assert fit.nobs == 177


def test_nan_that_pandas_does_not_count_is_missing(sleepstudy: pd.DataFrame) -> None:
    """NaN in an Arrow ``double`` or nullable ``Float64`` column is not a null, so pandas' isna() skips
    it; it is still a missing value (it once reached glmer's compiled kernels and crashed the process)."""
    pa = pytest.importorskip("pyarrow")
    days = sleepstudy.Days.to_numpy(dtype=float).copy()
    days[[4, 9]] = np.nan
    arrow = pd.array(pa.array(days, from_pandas=False), dtype=pd.ArrowDtype(pa.float64()))
    nullable = pd.arrays.FloatingArray(days, np.zeros(len(days), dtype=bool))  # NaN kept, not masked
    for column in (arrow, nullable):
        assert not pd.Series(column).isna().any()
        df = sleepstudy.assign(Days=column)
        with pytest.raises(DataError, match=r"'Days' \(2 missing\)"):
            bm.lmer("Reaction ~ Days + (1 | Subject)", df)
        with pytest.warns(UserWarning, match="dropped 2 of 180 rows"):
            fit = bm.lmer("Reaction ~ Days + (1 | Subject)", df, na_action="drop")
        complete = bm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy.drop(index=[4, 9]))
        assert fit.nobs == 178 and fit.loglik == pytest.approx(complete.loglik, abs=1e-9)
    cbpp = load_data("cbpp")
    size = cbpp["size"].to_numpy(dtype=float).copy()
    size[3] = np.nan
    cbpp = cbpp.assign(x=pd.array(pa.array(size, from_pandas=False), dtype=pd.ArrowDtype(pa.float64())))
    formula = "cbind(incidence, size - incidence) ~ period + (x | herd)"
    with pytest.raises(DataError, match=r"'x' \(1 missing\)"):
        bm.glmer(formula, cbpp, family="binomial")
    with pytest.warns(UserWarning, match="dropped 1 of 56 rows"):
        dropped = bm.glmer(formula, cbpp, family="binomial", na_action="drop")
    complete = bm.glmer(formula, cbpp.drop(index=3).assign(x=size[np.arange(56) != 3]), family="binomial")
    assert dropped.nobs == 55 and dropped.loglik == pytest.approx(complete.loglik, abs=1e-9)
    fit = bm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy)
    with pytest.raises(DataError, match=r"new data has missing values in 'Days' \(2 missing\)"):
        fit.predict(sleepstudy.head(10).assign(Days=arrow[:10]))


def test_a_used_column_twice_in_the_data_is_named() -> None:
    cbpp = load_data("cbpp")
    twice = pd.concat([cbpp, cbpp[["period"]]], axis=1)
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    with pytest.raises(DataError, match="'period' appear more than once"):
        bm.glmer(formula, twice, family="binomial")
    for fit in (bm.glmer(formula, cbpp, family="binomial"), bm.lmer("size ~ period + (1 | herd)", cbpp)):
        with pytest.raises(DataError, match="'period' appear more than once"):
            fit.predict(twice)


def test_missing_values_in_unused_columns_are_ignored(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.assign(unused=np.nan)
    assert bm.lmer("Reaction ~ Days + (1 | Subject)", df).nobs == 180


def test_non_numeric_response(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.assign(Reaction=sleepstudy.Reaction.astype(str))
    with pytest.raises(DataError, match="response column 'Reaction' must be numeric"):
        bm.lmer("Reaction ~ Days + (1 | Subject)", df)


def test_grouping_factor_with_one_level(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.assign(site="only")
    with pytest.raises(DataError, match="grouping factor 'site' has 1 level .*'only'"):
        bm.lmer("Reaction ~ Days + (1 | Subject) + (1 | site)", df)


def test_grouping_factor_with_a_level_per_row(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.assign(obs=np.arange(180).astype(str))
    with pytest.raises(DataError, match="'obs' has 180 levels for 180 observations"):
        bm.lmer("Reaction ~ Days + (1 | obs)", df)


def test_too_many_random_effects(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.assign(x1=np.random.default_rng(1).normal(size=180), x2=np.random.default_rng(2).normal(size=180))
    df = df.assign(pair=(np.arange(180) // 2).astype(str))
    with pytest.raises(DataError, match="not identifiable"):
        bm.lmer("Reaction ~ Days + (Days | pair)", df)


def test_rank_deficient_fixed_effects_are_named(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.assign(Days2=2 * sleepstudy.Days)
    with pytest.raises(DataError, match=r"\['Days2'\].*linear combinations"):
        bm.lmer("Reaction ~ Days + Days2 + (1 | Subject)", df)


def test_statsmodels_engine_refuses_crossed_correlated_slopes() -> None:
    with pytest.raises(EngineError, match="crossed factors 'subj' and 'item'.*engine='pls'"):
        bm.lmer("rt ~ cond + (cond | subj) + (cond | item)", load_data("crossed_slopes"), engine="statsmodels")


def test_unknown_engine(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="engine must be"):
        bm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, engine="lme4")  # type: ignore[arg-type]


def test_data_must_be_a_dataframe() -> None:
    with pytest.raises(DataError, match="pandas DataFrame"):
        bm.lmer("y ~ 1 + (1 | g)", {"y": [1, 2], "g": ["a", "b"]})  # type: ignore[arg-type]


def test_duplicate_varying_column(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(FormulaError, match=r"\['Intercept'\] appear twice for grouping factor 'Subject'"):
        bm.lmer("Reaction ~ Days + (1 | Subject) + (Days | Subject)", sleepstudy)


def test_undefined_function_in_fixed_part(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'nosuchfunction' .* neither a data column nor a known function"):
        bm.lmer("Reaction ~ nosuchfunction(Days) + (1 | Subject)", sleepstudy)


def test_infinite_predictor_is_named_with_rows(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.astype({"Days": float})
    df.loc[[3, 50, 51, 60, 61, 62], "Days"] = np.inf
    df.loc[7, "Days"] = -np.inf
    with pytest.raises(DataError, match=r"infinite values in column 'Days' \(7 rows: 3, 7, 50, 51, 60, \.\.\.\)"):
        bm.lmer("Reaction ~ Days + (1 | Subject)", df)


def test_infinite_response_is_named(sleepstudy: pd.DataFrame) -> None:
    df = sleepstudy.set_index(sleepstudy.index + 1000)
    df.loc[1009, "Reaction"] = np.inf
    with pytest.raises(DataError, match=r"column 'Reaction' \(1 row: 1009\)"):
        bm.lmer("Reaction ~ Days + (1 | Subject)", df)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_transform_that_is_infinite_is_named(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"fixed-effects column 'np.log\(Days\)' \(18 rows: .*np.log1p"):
        bm.lmer("Reaction ~ np.log(Days) + (1 | Subject)", sleepstudy)
    with pytest.raises(DataError, match=r"varying column 'np.log\(Days\)' of 'Subject'"):
        bm.lmer("Reaction ~ 1 + (0 + np.log(Days) | Subject)", sleepstudy)
