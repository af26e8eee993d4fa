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

import numpy as np
import pandas as pd

__all__ = ["load", "names", "simulate_retail"]

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


def simulate_retail(
    n_rows: int = 5000,
    n_locations: int = 10,
    n_groups: int = 10,
    intercept: float = 3000.0,
    slope: float = 25.0,
    sd_location: tuple[float, float] = (300.0, 20.0),
    sd_group: tuple[float, float] = (200.0, 15.0),
    sigma: float = 150.0,
    seed: int = 1,
    n_absent: int = 0,
) -> pd.DataFrame:
    """Weekly sales with crossed location and merchandise-group effects on intercept and slope.

    ``TotSales = intercept + a[loc] + a[grp] + (slope + b[loc] + b[grp]) * Wk + noise``,
    with independent normal effects of the given SDs; rows pick a location,
    a group and a week (0-51) at random. ``n_absent`` location x group
    combinations, chosen at random, never sell (no rows), as in a store that
    does not stock a category.

    Examples
    --------
    >>> simulate_retail(1000, seed=2).shape
    (1000, 4)
    >>> df = simulate_retail(2000, n_absent=2, seed=3)
    >>> len(df.groupby(["Description", "MerGroup"]).size())
    98
    """
    rng = np.random.default_rng(seed)
    loc_names = [f"L{i:02d}" for i in range(n_locations)]
    grp_names = [f"G{j:02d}" for j in range(n_groups)]
    a_loc, b_loc = rng.normal(0, sd_location[0], n_locations), rng.normal(0, sd_location[1], n_locations)
    a_grp, b_grp = rng.normal(0, sd_group[0], n_groups), rng.normal(0, sd_group[1], n_groups)
    if n_absent:
        cells = rng.permutation(n_locations * n_groups)[n_absent:]  # combinations that sell
        cell = cells[rng.integers(0, len(cells), n_rows)]
        loc, grp = cell // n_groups, cell % n_groups
    else:
        loc = rng.integers(0, n_locations, n_rows)
        grp = rng.integers(0, n_groups, n_rows)
    week = rng.integers(0, 52, n_rows).astype(float)
    sales = intercept + a_loc[loc] + a_grp[grp] + (slope + b_loc[loc] + b_grp[grp]) * week + rng.normal(0, sigma, n_rows)
    return pd.DataFrame(
        {"Description": np.array(loc_names)[loc], "MerGroup": np.array(grp_names)[grp], "Wk": week, "TotSales": sales}
    )
