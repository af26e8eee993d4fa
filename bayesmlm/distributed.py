"""Reduce a Dask DataFrame to a model's sufficient statistics, partition by partition.

A linear mixed model needs its rows only through ``X'X, X'y, y'y, Z'Z, Z'X,
Z'y`` (:mod:`bayesmlm.stats`), so data larger than memory never have to be
gathered: the PLS engine and the collapsed sampler run on the statistics.

Two passes over the partitions, each a ``dask.delayed`` task per partition:

1. row, missing-value and infinite-value counts, and the distinct rows over
   the grouping and categorical columns. Their union is a small frame that
   holds every level, so the design built from it (with formulaic) encodes
   every partition the same way and orders levels as the full data would.
2. each partition encoded with that design's specs (as for new data) and
   reduced to its statistics; the sums are the model's statistics.

Stateful transforms learn statistics from the data they are built on, which
here is the sample of pass 1. ``scale``, ``center`` and ``standardize`` get
theirs from an extra pass (sums and sums of squares of their argument over
every partition) before pass 2; the others (``poly``, splines) are refused
with what to do instead.

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

import ast
import dataclasses
import warnings

import formulaic
import numpy as np
import pandas as pd
from formulaic.transforms import TRANSFORMS
from formulaic.utils.layered_mapping import LayeredMapping
from formulaic.utils.stateful_transforms import stateful_eval

from .design import Design, build_design, check_identifiable, nonfinite_design, response_values
from .errors import DataError, FormulaError
from .formula import MixedFormula, parse_formula
from .frame import (
    NaAction,
    check_factor_levels,
    complete_rows,
    describe_missing,
    missing_rows,
    missing_values_error,
    infinite_in_columns,
    nonfinite_error,
    plain_strings,
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


def _first_pass(
    part: pd.DataFrame, keys: list[str], head_rows: int
) -> tuple[int, pd.Series, dict[str, tuple[int, list]], pd.DataFrame]:
    counts, keep = missing_rows(part)
    complete = part.loc[keep]
    sample = complete.drop_duplicates(subset=keys) if keys else complete.iloc[:0]
    return len(part), counts, infinite_in_columns(complete), pd.concat([complete.iloc[:head_rows], sample])


def _merge_rows(found: list[dict[str, tuple[int, list]]], first: int = 5) -> dict[str, tuple[int, list]]:
    """Non-finite counts and first row labels of each partition, summed over partitions."""
    total: dict[str, tuple[int, list]] = {}
    for part in found:
        for name, (count, labels) in part.items():
            seen, kept = total.get(name, (0, []))
            total[name] = (seen + count, (kept + labels)[:first])
    return total


def _second_pass(part: pd.DataFrame, template: Design) -> tuple[SufficientStats | None, dict[str, tuple[int, list]]]:
    """A partition's statistics, or the evaluated columns where it has non-finite values."""
    part = complete_rows(part)
    labels = part.index
    part = part.reset_index(drop=True)
    if len(part) == 0:
        return None, {}
    nd = new_design(template, part)
    blocks = [dataclasses.replace(b, codes=c, values=v) for b, c, v in zip(template.blocks, nd.codes, nd.values)]
    y = response_values(template.formula, part)
    bad = nonfinite_design(y, nd.X, template.formula, template.fixed_names, blocks, labels)
    if bad:
        return None, bad
    Z = dataclasses.replace(template, blocks=blocks).Z
    return SufficientStats.of_chunk(nd.X, Z, y), {}


# -- stateful transforms ------------------------------------------------------------------

_SCALE_ARGUMENTS = {"scale": ("center", "scale"), "center": (), "standardize": ("center", "rescale")}
"""formulaic's transforms that learn a mean and SD, with their positional arguments after the data."""


def _refuse_transform(key: str, why: str) -> FormulaError:
    return FormulaError(
        f"{key} in the formula is a stateful transform {why}; with a Dask DataFrame compute the column "
        "before fitting (e.g. ddf.assign(...) with the transform applied), or pass a pandas DataFrame"
    )


def _learned_parts(key: str) -> tuple[bool, bool]:
    """Whether a scale-family call learns its centre and its scale from the data (the argument is
    absent or ``True``) rather than being given them."""
    call = ast.parse(key, mode="eval").body
    name = call.func.id if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) else None
    if name not in _SCALE_ARGUMENTS:
        raise _refuse_transform(key, "whose statistics (knots, orthogonal bases) would be learned from a sample of rows")
    given = dict(zip(_SCALE_ARGUMENTS[name], call.args[1:])) | {kw.arg: kw.value for kw in call.keywords}

    def learned(argument: str) -> bool:
        node = given.get(argument)
        return node is None or (isinstance(node, ast.Constant) and node.value is True)

    return learned("center"), name != "center" and learned(_SCALE_ARGUMENTS[name][-1])


def _template_states(template: Design) -> dict[str, dict]:
    """Transform states of every model spec (fixed part and random terms), by expression."""
    specs = [template.fixed_spec] + [spec for block in template.blocks for spec in block.term_specs()]
    states: dict[str, dict] = {}
    for spec in specs:
        states.update(spec.transform_state)
    for key in states:
        if any(other != key and other in key for other in states):
            raise _refuse_transform(key, "applied to another stateful transform")
    return states


def _transform_moments(part: pd.DataFrame, states: dict[str, dict]) -> dict[str, tuple]:
    """Per transform: rows, and sums and sums of squares of its argument about the sample's centre."""
    frame = plain_strings(complete_rows(part).reset_index(drop=True))
    out = {}
    for key, state in states.items():
        raw = {key: {"ddof": state["ddof"], "center": None, "scale": None}}  # the identity: the argument itself
        try:
            values = np.asarray(stateful_eval(key, LayeredMapping(frame, TRANSFORMS), None, raw, None), dtype=float)
        except Exception as exc:  # formulaic and the user's expression raise many types
            raise _refuse_transform(key, f"whose argument could not be evaluated on a partition ({exc})") from exc
        shifted = values - (0.0 if state["center"] is None else state["center"])
        out[key] = (len(frame), shifted.sum(axis=0), (shifted**2).sum(axis=0))
    return out


def _whole_data_state(key: str, state: dict, moments: list[dict[str, tuple]]) -> dict:
    n = sum(m[key][0] for m in moments)
    s1 = sum(m[key][1] for m in moments)
    s2 = sum(m[key][2] for m in moments)
    learn_center, learn_scale = _learned_parts(key)
    center, squares = state["center"], s2
    if learn_center:
        center = (0.0 if center is None else center) + s1 / n
        squares = s2 - s1**2 / n
    scale = np.sqrt(squares / (n - state["ddof"])) if learn_scale else state["scale"]
    return {**state, "center": center, "scale": scale}


def _with_whole_data_transforms(template: Design, parts: list) -> Design:
    """The template with its scale/center statistics computed over every partition (an extra pass)."""
    import dask

    states = _template_states(template)
    if not states:
        return template
    for key in states:
        _learned_parts(key)  # refuse unsupported transforms before reading the data
    moments = list(dask.compute(*[dask.delayed(_transform_moments)(p, states) for p in parts]))
    whole = {key: _whole_data_state(key, state, moments) for key, state in states.items()}

    def respec(spec):
        return spec.update(transform_state={k: whole[k] for k in spec.transform_state})

    blocks = [dataclasses.replace(b, specs=[respec(spec) for spec in b.term_specs()]) for b in template.blocks]
    updated = dataclasses.replace(template, fixed_spec=respec(template.fixed_spec), blocks=blocks)
    nd = new_design(updated, updated.data)  # the sample re-encoded with the whole-data statistics
    blocks = [dataclasses.replace(b, values=v) for b, v in zip(updated.blocks, nd.values)]
    return dataclasses.replace(updated, X=nd.X, blocks=blocks)


def _check_response_transform(formula: MixedFormula, sample: pd.DataFrame) -> None:
    name = formula.response.strip()
    if name in sample.columns:
        return
    learned = formulaic.model_matrix(f"0 + {name}", sample).model_spec.transform_state
    if learned:
        raise FormulaError(
            f"the response {name!r} uses the stateful transform {', '.join(learned)}, which would learn its "
            "statistics partition by partition; with a Dask DataFrame compute the response column before "
            "fitting (e.g. standardise it with ddf.assign(...)), or pass a pandas DataFrame"
        )


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
    n_rows = sum(n for n, _, _, _ in first)
    if n_rows == 0:
        raise DataError("data has no rows")
    detail = describe_missing(sum((counts for _, counts, _, _ in first), start=pd.Series(0, index=needed)))
    if detail and na_action == "error":
        raise missing_values_error(detail)
    infinite = _merge_rows([inf for _, _, inf, _ in first])
    if infinite:
        raise nonfinite_error(infinite)
    sample = pd.concat([s for _, _, _, s in first], ignore_index=True)
    if len(sample) == 0:
        raise DataError("no complete rows remain after dropping missing values")
    template = build_design(parsed, sample, na_action="error", row_checks=False)
    _check_response_transform(parsed, template.data)
    template = _with_whole_data_transforms(template, parts)
    partial = dask.compute(*[dask.delayed(_second_pass)(p, template) for p in parts])
    bad = _merge_rows([b for _, b in partial])
    if bad:
        raise nonfinite_error(bad, evaluated=True)
    stats = None
    for s, _ in partial:
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
