"""Design matrices for new data, encoded exactly as the fitted data were.

The fixed part and each random term are re-evaluated with the formulaic model
specs kept in the :class:`~bayesmlm.design.Design`, so categorical encodings
and transforms match. Grouping levels are matched by name (an interaction ``a:b`` by its pair
of component levels, so that ``("x:y", "z")`` and ``("x", "y:z")`` stay
apart); levels the model has not seen get code ``-1`` and are listed per
factor, for the caller's new-level policy. Levels of *fixed-effect* factors
(and of factors in varying terms) that the model has no coefficient for raise
a :class:`~bayesmlm.errors.DataError` naming the column and the levels: no
new-level policy applies to them.

Examples
--------
>>> import pandas as pd, bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> nd = new_design(d, pd.DataFrame({"Days": [0, 5], "Subject": ["308", "999"]}))
>>> nd.codes[0].tolist(), nd.unseen
([0, -1], {'Subject': ['999']})
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .design import Design
from .errors import DataError
from .frame import check_unique_columns, missing_rows, plain_strings, required_columns, unknown_column_error

__all__ = ["NewDesign", "new_design", "level_keys", "level_tuples", "group_effects", "unseen_levels_error"]


@dataclass
class NewDesign:
    """Fixed and random-effects matrices of new rows.

    Attributes
    ----------
    X : ndarray (m, p)
    codes : list of ndarray
        Per block, the level index of each row, ``-1`` for unseen levels.
    values : list of ndarray
        Per block, the varying columns evaluated on the new rows.
    unseen : dict of str -> list of str
        Unseen levels per factor, in order of first appearance.
    keys : list of ndarray
        Per block, the level name of each row.
    """

    X: np.ndarray
    codes: list[np.ndarray]
    values: list[np.ndarray]
    unseen: dict[str, list[str]]
    keys: list[np.ndarray]

    @property
    def n(self) -> int:
        return self.X.shape[0]


def level_keys(data: pd.DataFrame, factor: str) -> np.ndarray:
    """Level name of every row for a factor ``a`` or ``a:b`` (as the design names them).

    The names are for display: components that themselves contain ``":"`` can
    give two combinations one name, so levels are matched by
    :func:`level_tuples` instead.
    """
    cols = factor.split(":")
    keys = data[cols[0]].astype(str).to_numpy(dtype=object)
    for col in cols[1:]:
        keys = keys + ":" + data[col].astype(str).to_numpy(dtype=object)
    return keys


def level_tuples(data: pd.DataFrame, factor: str) -> pd.MultiIndex:
    """Each row's level of a factor ``a`` or ``a:b`` as the tuple of its components' level names.

    Unlike the joined names of :func:`level_keys`, tuples cannot collide.

    Examples
    --------
    >>> df = pd.DataFrame({"a": ["x:y", "x"], "b": ["z", "y:z"]})
    >>> level_keys(df, "a:b").tolist()
    ['x:y:z', 'x:y:z']
    >>> level_tuples(df, "a:b").tolist()
    [('x:y', 'z'), ('x', 'y:z')]
    """
    cols = factor.split(":")
    return pd.MultiIndex.from_arrays([data[c].astype(str).to_numpy(dtype=object) for c in cols], names=cols)


def _block_codes(design: Design, block, frame: pd.DataFrame) -> np.ndarray:
    """Level index of every new row in ``block`` (``-1`` for levels the model has not seen)."""
    if ":" not in block.factor:
        return pd.Index([str(v) for v in block.levels]).get_indexer(frame[block.factor].astype(str).to_numpy(dtype=object))
    data = design.data
    if data is None or len(data) != len(block.codes):  # no rows to recover the components from
        return pd.Index(block.levels).get_indexer(level_keys(frame, block.factor))
    known = level_tuples(data, block.factor)
    table = pd.Series(block.codes, index=known)
    table = table[~table.index.duplicated()]
    position = table.index.get_indexer(level_tuples(frame, block.factor))
    return np.where(position >= 0, table.to_numpy()[position], -1)


def _categorical_states(spec):
    for var, (kind, state) in (getattr(spec, "encoder_state", None) or {}).items():
        if str(getattr(kind, "value", kind)) == "categorical" and isinstance(state, dict) and "categories" in state:
            yield var, list(state["categories"])


def _check_categories(spec, frame: pd.DataFrame, what: str) -> None:
    """Raise naming each categorical column of ``spec`` whose new values the fitted data did not have."""
    problems = []
    for var, known in _categorical_states(spec):
        if var not in frame.columns:
            continue  # an expression such as C(x): formulaic's own check, in _evaluate
        values = frame[var]
        new = list(dict.fromkeys(values[~values.isin(known)].tolist()))
        if not new:
            continue
        shown = ", ".join(map(repr, new[:5])) + (" ..." if len(new) > 5 else "")
        fitted = ", ".join(map(repr, known[:10])) + (" ..." if len(known) > 10 else "")
        hint = ""
        as_text = {str(k) for k in known}
        if all(str(v) in as_text for v in new):
            hint = (f" (as text they match fitted levels: the column's values are {type(new[0]).__name__}, the "
                    f"fitted levels {type(known[0]).__name__}; convert the column)")
        problems.append(f"column {var!r} has level(s) {shown} that the model has no coefficient for "
                        f"(fitted levels: {fitted}){hint}")
    if problems:
        raise DataError(
            f"cannot encode the new data for the {what}: " + "; ".join(problems)
            + ". new_levels= applies to grouping factors only; drop these rows, or refit with these levels in the data"
        )


def _evaluate(spec, data: pd.DataFrame, what: str) -> np.ndarray:
    _check_categories(spec, data, what)
    from formulaic.errors import DataMismatchWarning

    try:
        with warnings.catch_warnings():
            # an unseen category would be encoded as NaN (a zero row): refuse instead
            warnings.simplefilter("error", DataMismatchWarning)
            return np.asarray(spec.get_model_matrix(data, na_action="raise"), dtype=float).reshape(len(data), -1)
    except DataMismatchWarning as exc:
        raise DataError(
            f"cannot encode the new data for the {what}: a categorical term has values the fitted data did not "
            f"have ({str(exc).split(' They are')[0]}); new_levels= applies to grouping factors only; drop these "
            "rows, or refit with these levels in the data"
        ) from exc
    except Exception as exc:
        raise DataError(f"cannot encode the new data for the {what} as the fitted data were: {exc}") from exc


def new_design(design: Design, data: pd.DataFrame, random: bool = True) -> NewDesign:
    """Encode new rows for a fitted design (response not needed).

    Parameters
    ----------
    design : Design
    data : pandas.DataFrame
    random : bool
        Encode the random-effects blocks too; without them the grouping
        columns are not needed (and ``codes``, ``values``, ``keys`` are empty).

    Raises
    ------
    DataError
        Missing columns (named, with the nearest existing name), missing
        values, or categorical levels of fixed-effect columns (or of varying
        columns of a random term) that the model has no coefficient for, named
        per column; a grouping factor's unseen levels are not an error here.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> cake = bm.datasets.load("cake")
    >>> from bayesmlm.design import build_design
    >>> d = build_design("angle ~ recipe + (1 | recipe:replicate)", cake)
    >>> try:
    ...     new_design(d, pd.DataFrame({"recipe": ["D"], "replicate": ["1"]}))
    ... except DataError as error:
    ...     print(str(error)[:120])
    cannot encode the new data for the fixed effects: column 'recipe' has level(s) 'D' that the model has no coefficient for
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"new data must be a pandas DataFrame, got {type(data).__name__}")
    response = design.formula.response.strip()
    formula = design.formula if random else dataclasses.replace(design.formula, random=())
    needed = [c for c in required_columns(formula) if c != response]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise unknown_column_error(missing, data, design.formula)
    check_unique_columns(data, needed)
    frame = plain_strings(data.loc[:, needed].reset_index(drop=True))
    na = missing_rows(frame)[0]
    na = na[na > 0]
    if len(na):
        detail = ", ".join(f"{c!r} ({k} missing)" for c, k in na.items())
        raise DataError(f"new data has missing values in {detail}; predictions need complete rows")
    X = _evaluate(design.fixed_spec, frame, "fixed effects")
    codes, values, unseen, all_keys = [], [], {}, []
    for block in design.blocks if random else []:
        keys = level_keys(frame, block.factor)
        all_keys.append(keys)
        code = _block_codes(design, block, frame)
        codes.append(code.astype(np.int64))
        values.append(np.hstack([_evaluate(spec, frame, f"term on {block.factor}") for spec in block.term_specs()]))
        new = list(dict.fromkeys(keys[code < 0]))
        if new:
            unseen[block.factor] = [str(k) for k in new]
    return NewDesign(X, codes, values, unseen, all_keys)


def group_effects(nd: NewDesign, effects: list[np.ndarray]) -> np.ndarray:
    """Each new row's group contribution: its varying columns times its levels' effects, summed
    over factors; unseen levels contribute 0 (the population mean).

    Parameters
    ----------
    nd : NewDesign
    effects : list of ndarray
        Per block, ``(levels, columns)`` effects, or ``(draws, levels, columns)``.

    Returns
    -------
    ndarray
        ``(rows,)``, or ``(draws, rows)`` for effects with draws.

    Examples
    --------
    >>> import pandas as pd, bayesmlm as bm
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> nd = new_design(fit.design, pd.DataFrame({"Days": [0, 1], "Subject": ["308", "new"]}))
    >>> effects = group_effects(nd, fit.estimates.ranef)
    >>> bool(effects[0] == fit.ranef()["Subject"].loc["308", "Intercept"]), float(effects[1])
    (True, 0.0)
    """
    draws = effects[0].shape[:-2] if effects else ()
    out = np.zeros(draws + (nd.n,))
    for code, values, r in zip(nd.codes, nd.values, effects):
        seen = code >= 0
        out[..., seen] += np.einsum("...mk,mk->...m", r[..., code[seen], :], values[seen])
    return out


def unseen_levels_error(unseen: dict[str, list[str]], remedy: str) -> DataError:
    """The error for grouping levels the model has not seen, named per factor, with ``remedy``.

    Examples
    --------
    >>> print(unseen_levels_error({"Subject": ["999"]}, "pass new_levels='population'"))
    new data has levels the model has not seen ('Subject': '999'); pass new_levels='population'
    """
    detail = "; ".join(f"{f!r}: {', '.join(map(repr, lv[:5]))}{' ...' if len(lv) > 5 else ''}" for f, lv in unseen.items())
    return DataError(f"new data has levels the model has not seen ({detail}); {remedy}")
