"""Reduce a Dask DataFrame to a model's sufficient statistics, partition by partition.

A linear mixed model needs its rows only through ``X'X, X'y, y'y, Z'Z, Z'X,
Z'y`` (:mod:`bayesmlm.stats`), so data larger than memory never have to be
gathered: the PLS engine and the collapsed sampler run on the statistics.

Two passes over the partitions, each a ``dask.delayed`` task per partition:

1. row and missing-value counts, and the distinct rows over the grouping and
   categorical columns. Their union is a small frame that holds every level,
   so the design built from it (with formulaic) encodes every partition the
   same way and orders levels as the full data would.
2. each partition encoded with that design's specs (as for new data) and
   reduced to its statistics; the sums are the model's statistics.

Checks that need the totals (two or more levels, fewer levels and effects
than rows, a full-rank X) are made on the totals.

Examples
--------
>>> import dask.dataframe as dd, bayesmlm as bm
>>> ddf = dd.from_pandas(bm.datasets.load("sleepstudy"), npartitions=3)
>>> d = design_from_dask("Reaction ~ Days + (Days | Subject)", ddf)
>>> d.n, d.rows_held, d.blocks[0].n_levels
(180, False, 18)
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from .design import Design, build_design, check_identifiable, response_values
from .errors import DataError
from .formula import MixedFormula, parse_formula
from .frame import (
    NaAction,
    check_factor_levels,
    describe_missing,
    missing_values_error,
    required_columns,
    unknown_column_error,
)
from .newdata import new_design
from .stats import SufficientStats

__all__ = ["is_dask_frame", "design_from_dask"]


def is_dask_frame(data: object) -> bool:
    """True for a Dask DataFrame (checked without importing Dask)."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "to_delayed")


def _key_columns(formula: MixedFormula, frame: pd.DataFrame) -> list[str]:
    """Columns whose distinct values define the levels: grouping factors and non-numeric columns."""
    keys = {col for factor in formula.factors for col in factor.split(":")}
    keys |= {c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])}
    response = formula.response.strip()
    return [c for c in frame.columns if c in keys and c != response]


def _first_pass(part: pd.DataFrame, keys: list[str], head_rows: int) -> tuple[int, pd.Series, pd.DataFrame]:
    complete = part.dropna()
    sample = complete.drop_duplicates(subset=keys) if keys else complete.iloc[:0]
    return len(part), part.isna().sum(), pd.concat([complete.iloc[:head_rows], sample])


def _second_pass(part: pd.DataFrame, template: Design) -> SufficientStats | None:
    part = part.dropna().reset_index(drop=True)
    if len(part) == 0:
        return None
    nd = new_design(template, part)
    blocks = [dataclasses.replace(b, codes=c, values=v) for b, c, v in zip(template.blocks, nd.codes, nd.values)]
    Z = dataclasses.replace(template, blocks=blocks).Z
    y = response_values(template.formula, part)
    return SufficientStats.of_chunk(nd.X, Z, y)


def design_from_dask(formula: str | MixedFormula, ddf, na_action: NaAction = "error", head_rows: int = 2_000) -> Design:
    """Levels, encodings and sufficient statistics of a Dask DataFrame.

    Parameters
    ----------
    formula : str or MixedFormula
    ddf : dask.dataframe.DataFrame
    na_action : {"error", "drop"}
    head_rows : int
        Complete rows of the first partition added to the encoding sample.

    Returns
    -------
    Design
        With ``rows_held=False`` and ``stats`` set.
    """
    import dask

    parsed = parse_formula(formula) if isinstance(formula, str) else formula
    needed = required_columns(parsed)
    missing = [c for c in needed if c not in ddf.columns]
    if missing:
        raise unknown_column_error(missing, pd.DataFrame(columns=list(ddf.columns)), parsed)
    ddf = ddf[needed]
    keys = _key_columns(parsed, ddf._meta)
    parts = ddf.to_delayed()
    first = dask.compute(*[dask.delayed(_first_pass)(p, keys, head_rows if i == 0 else 0) for i, p in enumerate(parts)])
    n_rows = sum(n for n, _, _ in first)
    if n_rows == 0:
        raise DataError("data has no rows")
    detail = describe_missing(sum((counts for _, counts, _ in first), start=pd.Series(0, index=needed)))
    if detail and na_action == "error":
        raise missing_values_error(detail)
    sample = pd.concat([s for _, _, s in first], ignore_index=True)
    if len(sample) == 0:
        raise DataError("no complete rows remain after dropping missing values")
    template = build_design(parsed, sample, na_action="error", row_checks=False)
    partial = dask.compute(*[dask.delayed(_second_pass)(p, template) for p in parts])
    stats = None
    for s in partial:
        if s is not None:
            stats = s if stats is None else stats + s
    if stats is None:
        raise DataError("no complete rows remain after dropping missing values")
    n_dropped = n_rows - stats.n
    if n_dropped:
        warnings.warn(f"dropped {n_dropped} of {n_rows} rows with missing values in {detail}", stacklevel=3)
    check_factor_levels(parsed, template.data, n=stats.n)
    for block in template.blocks:
        check_identifiable(block, stats.n)
    if np.linalg.matrix_rank(stats.XtX) < stats.XtX.shape[0]:
        raise DataError(
            "the fixed-effects columns are linear combinations of one another (rank-deficient design); "
            "remove the redundant terms from the formula"
        )
    return dataclasses.replace(template, stats=stats, rows_held=False, n_dropped=n_dropped)
