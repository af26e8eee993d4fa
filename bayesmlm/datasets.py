"""Example data sets shipped with bayesmlm.

Public data from the lme4 R package (``sleepstudy``, ``dyestuff``, ``dyestuff2``,
``penicillin``, ``pastes``, ``cake``) and ``crossed_slopes``, a simulated
subjects x items design with correlated slopes on both factors.

Examples
--------
>>> from bayesmlm import datasets
>>> datasets.load("sleepstudy").shape
(180, 3)
>>> "penicillin" in datasets.names()
True
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load", "names"]

# Grouping columns that hold numbers but name groups: read them as text.
_TEXT_COLUMNS = {
    "sleepstudy": ["Subject"],
    "cake": ["replicate", "recipe"],
}


def names() -> list[str]:
    """Names of the bundled data sets."""
    folder = resources.files("bayesmlm") / "data"
    return sorted(p.name.removesuffix(".csv") for p in folder.iterdir() if p.name.endswith(".csv"))


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Raises
    ------
    KeyError
        For an unknown name, listing the known ones.
    """
    if name not in names():
        raise KeyError(f"no bundled data set {name!r}; available: {', '.join(names())}")
    path = resources.files("bayesmlm") / "data" / f"{name}.csv"
    with resources.as_file(path) as p:
        return pd.read_csv(p, dtype={c: str for c in _TEXT_COLUMNS.get(name, [])})
