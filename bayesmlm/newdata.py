"""Design matrices for new data, encoded exactly as the fitted data were.

The fixed part and each random term are re-evaluated with the formulaic model
specs kept in the :class:`~bayesmlm.design.Design`, so categorical encodings
and transforms match. Grouping levels are matched by name; levels the model
has not seen get code ``-1`` and are listed per factor, for the caller's
new-level policy.

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

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .design import Design
from .errors import DataError
from .frame import plain_strings, required_columns, unknown_column_error

__all__ = ["NewDesign", "new_design", "level_keys"]


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
    """Level name of every row for a factor ``a`` or ``a:b`` (as the design names them)."""
    cols = factor.split(":")
    keys = data[cols[0]].astype(str).to_numpy(dtype=object)
    for col in cols[1:]:
        keys = keys + ":" + data[col].astype(str).to_numpy(dtype=object)
    return keys


def _evaluate(spec, data: pd.DataFrame, what: str) -> np.ndarray:
    try:
        return np.asarray(spec.get_model_matrix(data, na_action="raise"), dtype=float).reshape(len(data), -1)
    except Exception as exc:
        raise DataError(f"cannot encode the new data for the {what} as the fitted data were: {exc}") from exc


def new_design(design: Design, data: pd.DataFrame) -> NewDesign:
    """Encode new rows for a fitted design (response not needed).

    Raises
    ------
    DataError
        Missing columns (named, with the nearest existing name), missing
        values, or categorical levels of fixed-effect columns that the model
        has no coefficient for.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"new data must be a pandas DataFrame, got {type(data).__name__}")
    response = design.formula.response.strip()
    needed = [c for c in required_columns(design.formula) if c != response]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise unknown_column_error(missing, data, design.formula)
    frame = plain_strings(data.loc[:, needed].reset_index(drop=True))
    na = frame.isna().sum()
    na = na[na > 0]
    if len(na):
        detail = ", ".join(f"{c!r} ({k} missing)" for c, k in na.items())
        raise DataError(f"new data has missing values in {detail}; predictions need complete rows")
    X = _evaluate(design.fixed_spec, frame, "fixed effects")
    codes, values, unseen, all_keys = [], [], {}, []
    for block in design.blocks:
        keys = level_keys(frame, block.factor)
        all_keys.append(keys)
        code = pd.Index(block.levels).get_indexer(keys)
        codes.append(code.astype(np.int64))
        values.append(np.hstack([_evaluate(spec, frame, f"term on {block.factor}") for spec in block.specs]))
        new = list(dict.fromkeys(keys[code < 0]))
        if new:
            unseen[block.factor] = [str(k) for k in new]
    return NewDesign(X, codes, values, unseen, all_keys)
