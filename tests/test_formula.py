"""lme4 bar syntax: every form of the random-effects vocabulary, and bad formulas."""

from __future__ import annotations

import pytest

from bayesmlm import FormulaError, parse_formula


def terms(formula: str) -> list[tuple[str, str, bool]]:
    return [(t.expr, t.factor, t.correlated) for t in parse_formula(formula).random]


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("y ~ x + (1 | g)", [("1", "g", True)]),
        ("y ~ x + (0 + x | g)", [("0 + x", "g", True)]),
        ("y ~ x + (x | g)", [("1 + x", "g", True)]),
        ("y ~ x + (1 | g) + (0 + x | g)", [("1", "g", True), ("0 + x", "g", True)]),
        ("y ~ x + (x || g)", [("1", "g", False), ("0 + x", "g", False)]),
        ("y ~ x + (x1 + x2 | g)", [("1 + x1 + x2", "g", True)]),
        ("y ~ x + (x | g1) + (x | g2)", [("1 + x", "g1", True), ("1 + x", "g2", True)]),
        ("y ~ 1 + (1 | a/b)", [("1", "b:a", True), ("1", "a", True)]),
        ("y ~ 1 + (1 | a/b/c)", [("1", "c:b:a", True), ("1", "b:a", True), ("1", "a", True)]),
        ("y ~ 1 + (1 | a:b)", [("1", "a:b", True)]),
        ("y ~ x + (x - 1 | g)", [("0 + x", "g", True)]),
        ("y ~ x + (0 + x1 + x2 || g)", [("0 + x1", "g", False), ("0 + x2", "g", False)]),
        ("y ~ x + (log(x) | g)", [("1 + log(x)", "g", True)]),
    ],
)
def test_random_terms(formula: str, expected: list) -> None:
    assert terms(formula) == expected


def test_fixed_part_keeps_wilkinson_terms() -> None:
    f = parse_formula("angle ~ recipe * temperature + I(x + 1) + (1 | recipe:replicate)")
    assert f.response == "angle"
    assert f.fixed == "recipe * temperature + I(x + 1)"
    assert f.factors == ("recipe:replicate",)


def test_intercept_only_fixed_part() -> None:
    assert parse_formula("y ~ (1 | g)").fixed == "1"
    assert parse_formula("y ~ 0 + (1 | g)").fixed == "0"


def test_factor_columns_of_interaction() -> None:
    assert parse_formula("y ~ 1 + (1 | a:b)").random[0].factor_columns == ("a", "b")


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y x + (1 | g)", "response ~ terms"),
        ("y ~ x", "no random-effects term"),
        ("y ~ x + 1 | g", "wrapped in parentheses"),
        ("y ~ x + (1 | g", "unbalanced"),
        ("y ~ x + (1 | )", "empty grouping factor"),
        ("y ~ x + ( | g)", "nothing before the bar"),
        ("y ~ x + (0 | g)", "no varying columns"),
        ("y ~ x + (1 | g + h)", "must be a column name"),
        ("y ~ x + (1 | g | h)", "exactly one"),
        ("y ~ x + + (1 | g)", "empty term"),
    ],
)
def test_malformed_formulas_are_named(formula: str, message: str) -> None:
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_non_string_formula() -> None:
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(42)  # type: ignore[arg-type]
