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
import functools
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
from pandas.arrays import ArrowExtensionArray

from .errors import DataError
from .formula import MixedFormula
from .formula_parts import FormulaParts, parse_side, side_variables

__all__ = ["ModelFrame", "model_frame", "check_frame_arguments", "required_columns", "infinite_in_columns", "nonfinite_error", "nonfinite_rows", "missing_mask",
           "missing_rows", "complete_rows", "check_unique_columns"]

NaAction = Literal["error", "drop"]


@dataclass(frozen=True)
class ModelFrame:
    """The rows and columns of the user's data that a model uses.

    Attributes
    ----------
    columns : dict of str -> pandas.Series
        The used columns, complete rows only, with the user's row labels.
    n_dropped : int
        Rows removed because of missing values (``na_action="drop"``).
    row_labels : pandas.Index
        The user's labels of the rows kept, for error messages.
    factors : dict of str -> (ndarray, list of str)
        Codes and level names of each grouping factor (:func:`factor_codes`).
    pruned : frozenset of str
        Categorical columns whose unused categories were dropped (as lme4's model frame does),
        so that no design column is all zeros.
    text_codes : dict of str -> (ndarray, list)
        Codes and sorted levels of the text columns the grouping factors are made of.
    """

    columns: dict[str, pd.Series]
    n_dropped: int
    row_labels: pd.Index
    factors: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)
    pruned: frozenset = frozenset()
    text_codes: dict[str, tuple[np.ndarray, list]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.row_labels)

    @cached_property
    def data(self) -> pd.DataFrame:
        """Used columns only, complete rows only, index reset to ``0..n-1``, text as objects."""
        return self.frame(list(self.columns))

    def frame(self, names: list[str], as_category: frozenset | set = frozenset()) -> pd.DataFrame:
        """Some of the used columns, as :attr:`data` holds them (built when first asked for:
        a fit needs only the columns formulaic evaluates); those in ``as_category`` that are text
        already coded for a grouping factor as categoricals of their sorted values instead, which
        formulaic encodes alike (the levels it would find) without hashing the text again."""
        if not names:
            return pd.DataFrame(index=pd.RangeIndex(self.n))
        # on the new row labels from the start: no alignment on the user's
        index = pd.RangeIndex(self.n)
        columns = {name: self._column(name, name in as_category, index) for name in names}
        out = pd.DataFrame(columns, index=index, copy=False)
        # labels as objects: formulaic looks every name up in them, faster than in an Arrow-backed index
        out.columns = pd.Index(names, dtype=object)
        return out

    def _column(self, name: str, text_as_category: bool, index: pd.RangeIndex):
        column = self.columns[name]
        if isinstance(column.dtype, pd.StringDtype):
            if text_as_category and name in self.text_codes:
                codes, levels = self.text_codes[name]
                # the codes index the levels by construction: pandas' checks of both would be repeated work;
                # levels as objects, as formulaic names them (text levels would go through Arrow for nothing)
                dtype = pd.CategoricalDtype(pd.Index(levels, dtype=object))
                return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
            # a Series keeps the object dtype (an object array would be inferred as text again)
            return pd.Series(column.to_numpy(dtype=object), index=index, dtype=object, copy=False)
        return column.array

    def evaluation_frame(self, looked_up: set[str], source: pd.DataFrame,
                         bare: set[str] = frozenset()) -> pd.DataFrame:
        """A frame in which formulaic, looking up the names ``looked_up``, finds what it would find in
        :attr:`data`: the user's frame ``source`` itself where that holds (every row used, no text
        to convert, no other column under one of these names), else the used columns among them;
        text columns in ``bare`` (used by the formula only as themselves, never inside an
        expression such as ``C(a + b)``) as categoricals where already coded."""
        names = [c for c in self.columns if c in looked_up]
        if (
            self.n_dropped == 0
            and not self.pruned
            and not any(isinstance(self.columns[c].dtype, pd.StringDtype) for c in names)
            and not any(name in source.columns for name in looked_up if name not in self.columns)
        ):
            return source
        return self.frame(names, as_category=bare)


def _formula_variables(rhs: str, what: str) -> set[str]:
    """Variables of a formula's terms, those inside stateful transforms (``scale(x)``) included.

    Examples
    --------
    >>> sorted(_formula_variables("scale(x) + center(np.log(z)):g + w", "fixed part"))
    ['g', 'w', 'x', 'z']
    """
    return side_variables(parse_side(rhs, what))


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
    return list(_required_columns(formula))


@functools.lru_cache(maxsize=512)
def _required_columns(formula: MixedFormula) -> tuple[str, ...]:
    parts = FormulaParts.parse(formula)
    response = formula.response.strip()
    names: dict[str, None] = {}
    if parts.response is not None:
        names.update(dict.fromkeys(sorted(parts.variables(parts.response))))
    if response.isidentifier():  # keep the response first
        names = {response: None, **names}
    names.update(dict.fromkeys(sorted(parts.variables(parts.sides[formula.fixed]))))
    for term in formula.random:
        names.update(dict.fromkeys(sorted(parts.variables(parts.sides[term.expr]))))
        names.update(dict.fromkeys(term.factor_columns))
    return tuple(names)


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


def _check_response(formula: MixedFormula, columns: Mapping[str, pd.Series]) -> None:
    name = formula.response.strip()
    if name not in columns:
        return  # an expression such as log(y): checked when it is evaluated
    col = columns[name]
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        sample = ", ".join(map(repr, col.dropna().unique()[:3]))
        raise DataError(
            f"response column {name!r} must be numeric, but has dtype {col.dtype} "
            f"(values such as {sample}); convert it with pd.to_numeric or choose a numeric column"
        )


def _check_levels(factor: str, levels: list[str], n: int) -> None:
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


def check_factor_levels(formula: MixedFormula, data: pd.DataFrame, n: int | None = None) -> None:
    """Every grouping factor needs two or more levels, and fewer levels than the ``n`` rows
    (``len(data)`` by default; a distributed frame passes its total)."""
    n = len(data) if n is None else n
    for factor in formula.factors:
        _check_levels(factor, factor_codes(data, factor)[1], n)


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
    if not bad.any():
        return {}
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


def check_unique_columns(data: pd.DataFrame, columns: list[str]) -> None:
    """Each of ``columns`` is one column of ``data``, else an error naming those that appear twice.

    Examples
    --------
    >>> check_unique_columns(pd.DataFrame([[1, 2, 3]], columns=["y", "x", "x"]), ["y", "x"])
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: column(s) 'x' appear more than once in the data; rename them
    """
    if not data.columns.is_unique:
        twice = [c for c in columns if int((data.columns == c).sum()) > 1]
        if twice:
            raise DataError(f"column(s) {', '.join(map(repr, twice))} appear more than once in the data; rename them")


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


def _may_miss(column: pd.Series) -> bool:
    """Whether a column holds missing values (NaN, None, NA), without pandas' generic scan where
    the dtype answers: numpy integers and booleans cannot, numpy floats are checked by NaN, Arrow
    arrays count their nulls."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biu":
        return False
    if isinstance(dtype, np.dtype) and dtype.kind in "fc":
        return bool(np.isnan(column.to_numpy()).any())
    if isinstance(column.array, ArrowExtensionArray) and not isinstance(dtype, pd.ArrowDtype):
        # pandas' own Arrow-backed dtypes (text) store every missing value as a null
        return column.array.__arrow_array__().null_count > 0
    return bool(missing_mask(column).any())


def missing_rows(columns: Mapping[str, pd.Series] | pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """Missing values (:func:`missing_mask`) per column, and the rows with none: ``isna().sum()`` and
    ``notna().all(axis=1)`` that also count the NaN pandas does not. ``columns``: a frame whose labels
    are distinct, or its columns by name.

    Examples
    --------
    >>> counts, complete = missing_rows(pd.DataFrame({"x": [1.0, None, 3.0], "g": ["a", "b", None]}))
    >>> counts.to_dict(), complete.tolist()
    ({'x': 1, 'g': 1}, [True, False, False])
    """
    masks = {name: missing_mask(column) for name, column in columns.items()}
    counts = pd.Series({name: int(mask.sum()) for name, mask in masks.items()}, dtype=int)
    complete = ~np.logical_or.reduce(list(masks.values())) if masks else np.ones(len(columns), dtype=bool)
    return counts, complete


def complete_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` with no missing value (:func:`missing_rows`): ``dropna`` that also drops the
    NaN pandas does not count.

    Examples
    --------
    >>> complete_rows(pd.DataFrame({"x": [1.0, None, 3.0]})).index.tolist()
    [0, 2]
    """
    keep = missing_rows(frame)[1]
    return frame if keep.all() else frame.loc[keep]


def missing_mask(column: pd.Series) -> np.ndarray:
    """Rows where a column is missing: what pandas counts (None, NA, NaN in numpy columns), and NaN in
    the float columns that hold it apart from their nulls (nullable ``Float64``, Arrow ``double``),
    which pandas does not count but no computation can use.

    Examples
    --------
    >>> import pyarrow as pa
    >>> column = pd.Series(pd.array(pa.array([1.0, float("nan"), None], from_pandas=False),
    ...                             dtype=pd.ArrowDtype(pa.float64())))
    >>> int(column.isna().sum()), missing_mask(column).tolist()
    (1, [False, True, True])
    """
    mask = column.isna().to_numpy(dtype=bool)
    if pd.api.types.is_float_dtype(column.dtype) and not isinstance(column.dtype, np.dtype):
        mask = mask | np.isnan(column.to_numpy(dtype=float, na_value=np.nan))
    return mask


def _may_be_infinite(column: pd.Series) -> bool:
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biu":
        return False
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return False
    return bool(np.isinf(column.to_numpy(dtype=float)).any())


def model_frame(
    formula: MixedFormula,
    data: pd.DataFrame,
    na_action: NaAction = "error",
    check_levels: bool = True,
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
    check_unique_columns(data, columns)
    used = {c: data[c].copy() for c in columns}  # copies: the fit keeps these, not the user's whole frame
    labels = data.index
    n_dropped = 0
    if any(_may_miss(col) for col in used.values()):
        counts, keep = missing_rows(used)
        detail = describe_missing(counts)
        if na_action == "error":
            raise missing_values_error(detail)
        n_dropped = int((~keep).sum())
        warnings.warn(f"dropped {n_dropped} of {len(data)} rows with missing values in {detail}", stacklevel=3)
        if not keep.any():
            raise DataError("no complete rows remain after dropping missing values")
        used, labels = {c: col[keep] for c, col in used.items()}, data.index[keep]
    _check_response(formula, used)
    pruned = frozenset(c for c, col in used.items()
                       if isinstance(col.dtype, pd.CategoricalDtype) and col.nunique() < len(col.cat.categories))
    for c in pruned:
        used[c] = used[c].cat.remove_unused_categories()
    if any(_may_be_infinite(col) for col in used.values()):
        raise nonfinite_error(infinite_in_columns(pd.DataFrame(used, copy=False)))
    column_cache: dict[str, tuple[np.ndarray, list]] = {}  # a column in two factors (a/b) is coded once
    factors = {factor: _factor_codes(used, factor, column_cache) for factor in formula.factors}
    if check_levels:
        for factor, (_, levels) in factors.items():
            _check_levels(factor, levels, len(labels))
    text = {c: column_cache[c] for c in column_cache if isinstance(used[c].dtype, pd.StringDtype)}
    return ModelFrame(used, n_dropped, labels, factors, pruned, text)


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


def column_codes(values: pd.Series) -> tuple[np.ndarray, list]:
    """Level index of each value of one complete factor column, and the levels in
    :func:`level_order` (by one hashing pass where the dtype allows, else by lookup).

    Examples
    --------
    >>> codes, levels = column_codes(pd.Series(["b", "a", "b", "c"]))
    >>> codes.tolist(), levels
    ([1, 0, 1, 2], ['a', 'b', 'c'])
    """
    dtype = values.dtype
    plain = isinstance(dtype, pd.StringDtype) or (isinstance(dtype, np.dtype) and dtype.kind in "biufO")
    if plain:
        codes, uniques = pd.factorize(values.to_numpy())  # numpy (text as objects): the cheaper hashing
        if not (codes < 0).any():
            uniques = list(uniques)
            try:
                perm = sorted(range(len(uniques)), key=uniques.__getitem__)
            except TypeError:  # mixed types: fall back to their text
                perm = sorted(range(len(uniques)), key=lambda i: str(uniques[i]))
            rank = np.empty(len(perm), dtype=np.int64)
            rank[perm] = np.arange(len(perm))
            return rank[codes], [uniques[i] for i in perm]
    order = level_order(values)
    return pd.Index(order).get_indexer(values).astype(np.int64), order


def factor_codes(data: pd.DataFrame, factor: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes and level names of a grouping factor (``a`` or ``a:b``).

    Levels of an interaction are the combinations present in the data, ordered
    by the first column's levels, then the next (as R's ``a:b`` then
    ``factor()``), and named ``"la:lb"``.
    """
    return _factor_codes({col: data[col] for col in factor.split(":")}, factor)


def _factor_codes(
    columns: Mapping[str, pd.Series], factor: str, cache: dict | None = None
) -> tuple[np.ndarray, list[str]]:
    cache = {} if cache is None else cache
    cols = factor.split(":")
    comp_codes = []
    comp_names = []
    for col in cols:
        if col not in cache:
            codes, order = column_codes(columns[col])
            cache[col] = codes, [str(v) for v in order]
        comp_codes.append(cache[col][0])
        comp_names.append(cache[col][1])
    if len(cols) == 1:
        return comp_codes[0], _distinct(comp_names[0], factor)
    # the combinations present, in the order of their components' levels (first column first):
    # one integer per row in mixed radix sorts as the rows would lexicographically
    if np.prod([float(len(names)) for names in comp_names]) >= 2.0**62:
        combos, codes = np.unique(np.column_stack(comp_codes), axis=0, return_inverse=True)
        names = [":".join(comp_names[j][c] for j, c in enumerate(row)) for row in combos]
        return codes.reshape(-1).astype(np.int64), names
    key = np.zeros(len(comp_codes[0]), dtype=np.int64)
    for codes, names in zip(comp_codes, comp_names):
        key = key * len(names) + codes
    span = int(np.prod([len(names) for names in comp_names]))
    if span <= 4 * len(key) + 1024:  # few possible combinations: mark those present, no sort
        present = np.bincount(key, minlength=span) > 0
        combos = np.flatnonzero(present)
        codes = (np.cumsum(present) - 1)[key]
    else:
        combos, codes = np.unique(key, return_inverse=True)
    parts = []
    for names in reversed(comp_names):
        parts.append((combos % len(names)).tolist())
        combos = combos // len(names)
    parts.reverse()
    names = [":".join(comp_names[j][c] for j, c in enumerate(row)) for row in zip(*parts)]
    return codes.reshape(-1).astype(np.int64), names


def _distinct(names: list[str], factor: str) -> list[str]:
    """A factor's level names, checked to be distinct: a level ``1`` and a level ``"1"`` print alike, and
    ranef() and predictions (which match a factor's levels by their text) would mix them up. (The levels
    of an interaction ``a:b`` may print alike when their parts contain ":"; predictions match those by
    their parts, see :mod:`bayesmlm.newdata`.)"""
    if len(set(names)) == len(names):
        return names
    seen, twice = set(), []
    for name in names:
        if name in seen and name not in twice:
            twice.append(name)
        seen.add(name)
    raise DataError(f"grouping factor {factor!r} has different levels with the same text {twice[:3]} (a number and "
                    "its text, say): recode the column so every level has its own text")
