"""Design matrices: encodings, level-major Z, block merging and sufficient statistics."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.design import build_design, r_style_name
from bayesmlm.stats import SufficientStats

from .conftest import load_data


def test_z_is_level_major_like_lme4(sleepstudy: pd.DataFrame) -> None:
    d = build_design("Reaction ~ Days + (Days | Subject)", sleepstudy)
    block = d.blocks[0]
    Z = d.Z.toarray()
    assert Z.shape == (180, 36)
    for i in range(d.n):
        level = block.levels.index(sleepstudy.Subject[i])
        expected = np.zeros(36)
        expected[2 * level : 2 * level + 2] = [1.0, sleepstudy.Days[i]]
        np.testing.assert_array_equal(Z[i], expected)


def test_blocks_ordered_by_levels_and_double_bar_merged() -> None:
    d = build_design("rt ~ cond + (cond || item) + (cond || subj)", load_data("crossed_slopes"))
    assert [b.factor for b in d.blocks] == ["subj", "item"]  # 40 levels before 32
    subj = d.blocks[0]
    assert subj.columns == ("Intercept", "cond")
    assert subj.groups == ((0,), (1,))
    assert subj.free == ((0, 0), (1, 1))
    corr = build_design("rt ~ cond + (cond | subj)", load_data("crossed_slopes")).blocks[0]
    assert set(corr.free) == {(0, 0), (1, 0), (1, 1)}


def test_nested_and_interaction_levels_follow_r() -> None:
    d = build_design("strength ~ 1 + (1 | batch/cask)", load_data("pastes"))
    inner = d.block("cask:batch")
    assert inner.n_levels == 30
    assert inner.levels[:3] == ["a:A", "a:B", "a:C"]
    assert d.block("batch").levels[0] == "A"


def test_categorical_fixed_effects_get_r_names() -> None:
    d = build_design("angle ~ recipe * temperature + (1 | recipe:replicate)", load_data("cake"))
    assert d.fixed_names == ["Intercept", "recipeB", "recipeC", "temperature", "recipeB:temperature", "recipeC:temperature"]
    assert r_style_name("recipe[B]") == "recipeB"
    assert r_style_name("log(x)") == "log(x)"


def test_string_factors_and_categorical_order_respected() -> None:
    df = pd.DataFrame({"y": np.arange(8.0), "g": pd.Categorical(list("bbaaccdd"), categories=list("dcba"))})
    block = build_design("y ~ 1 + (1 | g)", df).blocks[0]
    assert block.levels == ["d", "c", "b", "a"]


def test_sufficient_statistics_are_additive_over_chunks() -> None:
    d = build_design("rt ~ cond + (cond | subj) + (cond | item)", load_data("crossed_slopes"))
    whole = SufficientStats.of_chunk(d.X, d.Z, d.y)
    chunked = SufficientStats.from_arrays(d.X, d.Z, d.y, chunk_rows=100)
    assert chunked.n == whole.n == d.n
    np.testing.assert_allclose(chunked.XtX, d.X.T @ d.X)
    np.testing.assert_allclose(chunked.Xty, whole.Xty)
    np.testing.assert_allclose(chunked.yty, d.y @ d.y)
    np.testing.assert_allclose(chunked.ZtZ.toarray(), (d.Z.T @ d.Z).toarray())
    np.testing.assert_allclose(chunked.ZtX, d.Z.T @ d.X)
    np.testing.assert_allclose(chunked.Zty, d.Z.T @ d.y)


def test_response_expression() -> None:
    df = load_data("sleepstudy")
    d = build_design("np.log(Reaction) ~ Days + (1 | Subject)", df)
    np.testing.assert_allclose(d.y, np.log(df.Reaction))


@pytest.mark.parametrize("chunk_rows", [1, 7, 10_000])
def test_chunk_size_does_not_change_statistics(chunk_rows: int) -> None:
    d = build_design("Yield ~ 1 + (1 | Batch)", load_data("dyestuff"))
    s = SufficientStats.from_arrays(d.X, d.Z, d.y, chunk_rows=chunk_rows)
    assert s.yty == pytest.approx(float(d.y @ d.y))
    np.testing.assert_allclose(s.ZtZ.diagonal(), np.full(6, 5.0))


@pytest.mark.parametrize(
    "formula, data",
    [
        ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
        ("rt ~ cond + (cond || subj) + (cond | item)", "crossed_slopes"),
        ("strength ~ 1 + (1 | batch/cask)", "pastes"),
        ("Reaction ~ 0 + (1 | Subject)", "sleepstudy"),
    ],
)
def test_statistics_from_blocks_are_the_sparse_products(formula: str, data: str) -> None:
    d = build_design(formula, load_data(data))
    direct, sparse = d.sufficient_stats(), SufficientStats.from_arrays(d.X, d.Z, d.y)
    for name in ("XtX", "Xty", "ZtX", "Zty"):
        np.testing.assert_array_equal(getattr(direct, name), getattr(sparse, name))
    assert direct.yty == sparse.yty
    for name in ("indptr", "indices", "data"):  # same pattern, same numbers, to the bit
        np.testing.assert_array_equal(getattr(direct.ZtZ, name), getattr(sparse.ZtZ, name))


def test_one_formulaic_matrix_for_x_and_one_plus_x(sleepstudy: pd.DataFrame) -> None:
    d = build_design("Reaction ~ Days + (Days | Subject)", sleepstudy)
    assert d.blocks[0].specs[0] is d.fixed_spec
    np.testing.assert_array_equal(d.blocks[0].values, d.X)
    assert not np.shares_memory(d.blocks[0].values, d.X)


def test_model_frame_holds_used_columns_text_as_objects() -> None:
    df = load_data("cake").set_index(np.arange(270) * 2)
    data = build_design("angle ~ recipe + (1 | replicate)", df).data
    assert list(data.columns) == ["angle", "recipe", "replicate"]
    assert data.index.equals(pd.RangeIndex(270)) and data.recipe.dtype == object
    pd.testing.assert_series_equal(data.angle, df.angle.reset_index(drop=True))


def test_unused_categories_are_dropped_as_lme4_does() -> None:
    """A pandas Categorical with a category no row has: no all-zero design column (whose SD the data
    could not identify); the fit equals the one on the same column as text."""
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"a": rng.choice(list("pqrstu"), n), "x": rng.normal(size=n)})
    df["c"] = pd.Categorical(rng.choice(list("abc"), n), categories=list("abcz"))
    df["y"] = df.x + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bm.lmer("y ~ x + (0 + c | a)", df)
        text = bm.lmer("y ~ x + (0 + c | a)", df.assign(c=df.c.astype(str)))
        fixed = bm.lmer("y ~ c + (1 | a)", df)
    assert fit.design.blocks[0].columns == ("ca", "cb", "cc")
    np.testing.assert_allclose(fit.theta, text.theta, atol=1e-8)
    assert fit.loglik == pytest.approx(text.loglik, abs=1e-9)
    assert list(fixed.fixef().index) == ["Intercept", "cb", "cc"]


def test_grouping_levels_that_print_alike_are_refused() -> None:
    df = pd.DataFrame({"g": [1, "1", 2, "2"] * 10, "y": np.arange(40.0)})
    with pytest.raises(bm.DataError, match=r"grouping factor 'g' has different levels with the same text \['1', '2'\]"):
        bm.lmer("y ~ 1 + (1 | g)", df)


@pytest.mark.parametrize("sizes", [(3, 15), (200, 300), (1000, 1000), (5, 4, 3), (1, 7)])
def test_interaction_codes_follow_the_components_levels(sizes: tuple[int, ...]) -> None:
    """The levels of ``a:b(:c)`` are the combinations present, ordered by the first column's levels,
    then the next; checked against a plain sort of the rows' level tuples, on both sides of the
    span (combinations possible) above which the codes come from a sort instead of a count."""
    from bayesmlm.frame import factor_codes

    rng = np.random.default_rng(sum(sizes))
    n = 240
    cols = {f"c{j}": rng.integers(0, k, n) for j, k in enumerate(sizes)}
    cols["c0"] = np.array([f"l{v:04d}" for v in cols["c0"]], dtype=object)  # text first column
    df = pd.DataFrame(cols)
    names = list(cols)
    codes, levels = factor_codes(df, ":".join(names))
    rows = list(zip(*(df[c].tolist() for c in names)))
    present = sorted(set(rows))
    assert levels == [":".join(str(v) for v in combo) for combo in present]
    assert codes.tolist() == [present.index(row) for row in rows]


def test_stored_specs_refuse_missing_values_in_new_data(sleepstudy: pd.DataFrame) -> None:
    """formulaic's scan for missing values is skipped while the matrices are built (the model frame has
    checked the rows), but the specs kept for new data still refuse them rather than encoding a
    missing level as the reference level."""
    df = sleepstudy.assign(g=np.where(sleepstudy.Days < 5, "early", "late"))
    design = build_design("Reaction ~ Days + g + (Days || Subject)", df)
    new = df.head(3).assign(g=["early", None, "late"])
    with pytest.raises(Exception, match="null|missing"):
        design.fixed_spec.get_model_matrix(new)
    intercept, slope = design.blocks[0].term_specs()  # (Days || Subject): 1 and 0 + Days, cut from X's
    assert list(intercept.column_names) == ["Intercept"] and list(slope.column_names) == ["Days"]
    with pytest.raises(Exception, match="null|missing"):
        slope.get_model_matrix(df.head(3).assign(Days=[0.0, np.nan, 2.0]))


def test_backquoted_grouping_column() -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"y": rng.normal(size=60), "group id": np.repeat(list("abcdef"), 10), "x": rng.normal(size=60)})
    df["y"] += np.repeat(rng.normal(size=6), 10)
    quoted = bm.lmer("y ~ x + (1 | `group id`)", df)
    plain = bm.lmer("y ~ x + (1 | g)", df.rename(columns={"group id": "g"}))
    assert quoted.loglik == plain.loglik and list(quoted.ranef()) == ["group id"]
    counts = df.assign(y=rng.poisson(np.exp(0.3 + np.repeat(rng.normal(0, 0.5, 6), 10))))
    quoted_r2 = bm.r2(bm.glmer("y ~ x + (1 | `group id`)", counts, family="poisson"))  # refits a null model
    plain_r2 = bm.r2(bm.glmer("y ~ x + (1 | g)", counts.rename(columns={"group id": "g"}), family="poisson"))
    pd.testing.assert_series_equal(pd.Series(quoted_r2), pd.Series(plain_r2))
    df.loc[3, "y"] = np.nan
    with pytest.warns(UserWarning, match="dropped 1 of 60"):
        assert bm.lmer("y ~ x + (1 | `group id`)", df, na_action="drop").nobs == 59


def test_kept_columns_are_the_fit_s_own() -> None:
    """A write into the user's frame after the fit, even through an Arrow array, leaves the fit's data."""
    pa = pytest.importorskip("pyarrow")
    rng = np.random.default_rng(4)
    g = pd.array(pa.array(np.repeat(list("abcdef"), 10)), dtype=pd.ArrowDtype(pa.string()))
    df = pd.DataFrame({"y": rng.normal(size=60), "g": g})
    fit = bm.lmer("y ~ 1 + (1 | g)", df)
    df["g"].array[0] = "z"
    assert fit.design.data["g"].iloc[0] == "a" and df["g"].iloc[0] == "z"
