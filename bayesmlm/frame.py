"""Model frame: check a DataFrame against a formula before any matrix is built.

This is where bad input is caught and named: unknown columns, missing values,
infinite values, non-numeric responses and grouping factors with a single
level. The result is a clean DataFrame holding only the rows that will be used.

Examples
--------
>>> import pandas as pd
>>> from bayesmlm.formula import parse_formula
>>> from bayesmlm.frame import model_frame
>>> df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "g": ["a", "a", "b", "b"]})
>>> model_frame(parse_formula("y ~ 1 + (1 | g)"), df).n_dropped
0
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import formulaic
import numpy as np
import pandas as pd
from formulaic.parser.types import Factor
from formulaic.transforms import TRANSFORMS
from formulaic.utils.variables import get_required_variables

from .errors import DataError, FormulaError
from .formula import MixedFormula

__all__ = ["ModelFrame", "model_frame", "check_frame_arguments", "required_columns", "infinite_in_columns", "nonfinite_error", "nonfinite_rows"]

NaAction = Literal["error", "drop"]


@dataclass(frozen=True)
class ModelFrame:
    """The rows and columns of the user's data that a model uses.

    Attributes
    ----------
    data : pandas.DataFrame
        Used columns only, complete rows only, index reset to ``0..n-1``.
    n_dropped : int
        Rows removed because of missing values (``na_action="drop"``).
    row_labels : pandas.Index, optional
        The user's labels of the rows in ``data``, for error messages.
    """

    data: pd.DataFrame
    n_dropped: int
    row_labels: pd.Index | None = None


class _StandIn:
    """A name while variables are listed: any attribute is another stand-in."""

    def __getattr__(self, name: str) -> "_StandIn":
        if name.startswith("__"):
            raise AttributeError(name)
        return self


class _EveryName(Mapping):
    """A namespace in which every name is defined and none is a stateful transform.

    formulaic (1.2) asks a stateful transform such as ``scale(x)`` for its variables by
    evaluating its arguments, and lists none when ``x`` is undefined; in this namespace
    ``scale`` is an ordinary call, so formulaic walks into its arguments and lists ``x``.
    """

    def __getitem__(self, key: str) -> _StandIn:
        return _StandIn()

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _factor_variables(factor: Factor) -> set[str]:
    names = {str(v) for v in factor.required_variables}  # formulaic's list (knows Q("x") etc.)
    if factor.eval_method == Factor.EvalMethod.PYTHON:
        try:
            found = get_required_variables(factor.expr, _EveryName())
        except Exception:  # malformed code: evaluating the term reports it, as formulaic does
            found = set()
        names |= {str(v.root) for v in found if v.root not in TRANSFORMS}
    return names


def _formula_variables(rhs: str, what: str) -> set[str]:
    """Variables of a formula's terms, those inside stateful transforms (``scale(x)``) included.

    Examples
    --------
    >>> sorted(_formula_variables("scale(x) + center(np.log(z)):g + w", "fixed part"))
    ['g', 'w', 'x', 'z']
    """
    try:
        parsed = formulaic.Formula(rhs)
    except Exception as exc:  # formulaic raises several exception types for syntax
        raise FormulaError(f"cannot parse the {what} {rhs!r}: {exc}") from exc
    sides = [parsed.lhs, parsed.rhs] if hasattr(parsed, "lhs") else [parsed]
    return {name for side in sides for term in side for factor in term.factors for name in _factor_variables(factor)}


def required_columns(formula: MixedFormula) -> list[str]:
    """Data columns a formula refers to, response first.

    Examples
    --------
    >>> from bayesmlm.formula import parse_formula
    >>> required_columns(parse_formula("y ~ x + (x | g) + (1 | a:b)"))
    ['y', 'x', 'g', 'a', 'b']
    >>> required_columns(parse_formula("y ~ scale(x) + (0 + center(z) | g)"))
    ['y', 'x', 'z', 'g']
    """
    names: dict[str, None] = {}
    names.update(dict.fromkeys(sorted(_formula_variables(f"{formula.response} ~ 1", "response"))))
    if formula.response.strip().isidentifier():  # keep the response first
        names = {formula.response.strip(): None, **names}
    names.update(dict.fromkeys(sorted(_formula_variables(formula.fixed, "fixed part"))))
    for term in formula.random:
        names.update(dict.fromkeys(sorted(_formula_variables(term.expr, f"term {term.source}"))))
        names.update(dict.fromkeys(term.factor_columns))
    return list(names)


def unknown_column_error(missing: list[str], data: pd.DataFrame, formula: MixedFormula) -> DataError:
    calls = [m for m in missing if re.search(rf"(?<![\w.]){re.escape(m)}\s*\(", formula.text)]
    if calls:
        return DataError(
            f"{', '.join(map(repr, calls))} in {formula.text!r} is neither a data column nor a known "
            "function; use numpy as np.<name>, or a formulaic transform (log, exp, center, scale, C, I)"
        )
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, [str(c) for c in data.columns], n=3)
        hints.append(f"{name!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    return DataError(
        f"column(s) {', '.join(hints)} used in the formula are not in the data; "
        f"available columns: {', '.join(map(str, data.columns))}"
    )


def _check_response(formula: MixedFormula, data: pd.DataFrame) -> None:
    name = formula.response.strip()
    if name not in data.columns:
        return  # an expression such as log(y): checked when it is evaluated
    col = data[name]
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        sample = ", ".join(map(repr, col.dropna().unique()[:3]))
        raise DataError(
            f"response column {name!r} must be numeric, but has dtype {col.dtype} "
            f"(values such as {sample}); convert it with pd.to_numeric or choose a numeric column"
        )


def check_factor_levels(formula: MixedFormula, data: pd.DataFrame, n: int | None = None) -> None:
    """Every grouping factor needs two or more levels, and fewer levels than the ``n`` rows
    (``len(data)`` by default; a distributed frame passes its total)."""
    n = len(data) if n is None else n
    for factor in formula.factors:
        _, levels = factor_codes(data, factor)
        if len(levels) < 2:
            only = repr(levels[0]) if levels else "none"
            raise DataError(
                f"grouping factor {factor!r} has {len(levels)} level (only {only}) in the rows used; "
                "a between-group variance needs at least two groups: drop the term or use more data"
            )
        if len(levels) >= n:
            raise DataError(
                f"grouping factor {factor!r} has {len(levels)} levels for {n} observations; each group "
                "needs more than one row or its variance cannot be told apart from the residual"
            )


def describe_missing(na_counts: pd.Series) -> str:
    """``'x' (3 missing), 'g' (1 missing)`` for the columns with missing values."""
    return ", ".join(f"{col!r} ({int(count)} missing)" for col, count in na_counts.items() if count > 0)


def missing_values_error(detail: str) -> DataError:
    """The error for missing values under ``na_action="error"``, with what to do."""
    return DataError(
        f"missing values in column(s) {detail}; remove or impute them, "
        "or pass na_action='drop' to drop incomplete rows"
    )


def nonfinite_error(bad: dict[str, tuple[int, list]], evaluated: bool = False) -> DataError:
    """The error for infinite values in data columns, or infinite or NaN values where the
    formula's transforms were ``evaluated``: per column, how many rows and the first labels.

    Examples
    --------
    >>> print(nonfinite_error({"column 'Days'": (2, [3, 7])}))
    infinite values in column 'Days' (2 rows: 3, 7); replace them with NaN and pass na_action='drop', or remove those rows
    """
    detail = "; ".join(
        f"{name} ({count} row{'s' if count > 1 else ''}: {', '.join(map(str, labels))}{', ...' if count > len(labels) else ''})"
        for name, (count, labels) in bad.items()
    )
    if not evaluated:
        return DataError(
            f"infinite values in {detail}; replace them with NaN and pass na_action='drop', or remove those rows"
        )
    return DataError(
        f"non-finite values (inf or NaN) in {detail} after evaluating the formula; the transform is not "
        "defined for these rows' values: choose one that is (e.g. np.log1p for zeros) or remove those rows"
    )


def nonfinite_rows(
    values: np.ndarray, names: list[str], labels: pd.Index | list, first: int = 5
) -> dict[str, tuple[int, list]]:
    """Columns of ``values`` (rows x columns) with non-finite entries: count and first row labels.

    Examples
    --------
    >>> nonfinite_rows(np.array([[1.0, np.inf], [2.0, -np.inf]]), ["a", "b"], ["r1", "r2"])
    {'b': (2, ['r1', 'r2'])}
    """
    bad = ~np.isfinite(np.asarray(values, dtype=float).reshape(len(labels), -1))
    labels = np.asarray(labels, dtype=object)
    return {name: (int(col.sum()), labels[col][:first].tolist()) for name, col in zip(names, bad.T) if col.any()}


def infinite_in_columns(frame: pd.DataFrame) -> dict[str, tuple[int, list]]:
    """Numeric columns (bools excluded) holding infinities, by ``"column 'name'"``, with their rows."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    return nonfinite_rows(frame[numeric].to_numpy(dtype=float), [f"column {c!r}" for c in numeric], frame.index)


def plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns of pandas' ``string`` dtype (Arrow-backed, as Dask makes them) as objects,
    which formulaic encodes as categorical."""
    text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    return frame.astype({c: object for c in text}) if text else frame


def check_frame_arguments(data, na_action: str) -> None:
    """A non-empty pandas DataFrame and a known ``na_action``, else a clear error.

    Examples
    --------
    >>> check_frame_arguments(pd.DataFrame({"y": [1.0]}), "drop")
    >>> check_frame_arguments([1, 2], "error")
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: data must be a pandas DataFrame, got list
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if na_action not in ("error", "drop"):
        raise ValueError(f"na_action must be 'error' or 'drop', got {na_action!r}")
    if len(data) == 0:
        raise DataError("data has no rows")


def model_frame(
    formula: MixedFormula, data: pd.DataFrame, na_action: NaAction = "error", check_levels: bool = True
) -> ModelFrame:
    """Select, check and (optionally) de-NA the columns a formula uses.

    Parameters
    ----------
    formula : MixedFormula
    data : pandas.DataFrame
    na_action : {"error", "drop"}
        ``"error"`` (default) raises naming each column with missing values and
        how many; ``"drop"`` removes incomplete rows and warns with the count.
    check_levels : bool
        Check the grouping factors' level counts against the rows (off when
        ``data`` holds only some of the rows, as for a distributed frame).

    Returns
    -------
    ModelFrame
    """
    check_frame_arguments(data, na_action)
    columns = required_columns(formula)
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise unknown_column_error(missing, data, formula)
    frame = data.loc[:, columns]
    na_counts = frame.isna().sum()
    na_counts = na_counts[na_counts > 0]
    n_dropped = 0
    if len(na_counts):
        detail = describe_missing(na_counts)
        if na_action == "error":
            raise missing_values_error(detail)
        keep = frame.notna().all(axis=1).to_numpy()
        n_dropped = int((~keep).sum())
        frame = frame.loc[keep]
        warnings.warn(f"dropped {n_dropped} of {len(data)} rows with missing values in {detail}", stacklevel=3)
        if len(frame) == 0:
            raise DataError("no complete rows remain after dropping missing values")
    _check_response(formula, frame)
    infinite = infinite_in_columns(frame)
    if infinite:
        raise nonfinite_error(infinite)
    labels = frame.index
    frame = plain_strings(frame.reset_index(drop=True))
    if check_levels:
        check_factor_levels(formula, frame)
    return ModelFrame(frame, n_dropped, labels)


def level_order(values: pd.Series) -> list:
    """Level order of one factor column: categorical order, else sorted values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().unique())
        return [c for c in values.cat.categories if c in present]
    uniques = pd.unique(values.dropna())
    try:
        return sorted(uniques)
    except TypeError:  # mixed types: fall back to their text
        return sorted(uniques, key=str)


def factor_codes(data: pd.DataFrame, factor: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes and level names of a grouping factor (``a`` or ``a:b``).

    Levels of an interaction are the combinations present in the data, ordered
    by the first column's levels, then the next (as R's ``a:b`` then
    ``factor()``), and named ``"la:lb"``.
    """
    cols = factor.split(":")
    comp_codes = []
    comp_names = []
    for col in cols:
        order = level_order(data[col])
        index = pd.Index(order)
        comp_codes.append(index.get_indexer(data[col]))
        comp_names.append([str(v) for v in order])
    if len(cols) == 1:
        return comp_codes[0].astype(np.int64), comp_names[0]
    stacked = np.column_stack(comp_codes)
    combos, codes = np.unique(stacked, axis=0, return_inverse=True)
    names = [":".join(comp_names[j][c] for j, c in enumerate(row)) for row in combos]
    return codes.reshape(-1).astype(np.int64), names
