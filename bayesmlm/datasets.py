"""Example data sets shipped with bayesmlm.

Public data from the lme4 R package (``sleepstudy``, ``dyestuff``, ``dyestuff2``,
``penicillin``, ``pastes``, ``cake``, and for :func:`bayesmlm.glmer` ``cbpp`` and ``grouseticks``) and ``crossed_slopes``, a simulated
subjects x items design with correlated slopes on both factors.

Seeded simulators, every true value a parameter, for the teaching scenarios in
``examples/``: :func:`simulate_retail` (crossed locations x merchandise groups),
:func:`simulate_plant_machine` (nearly deterministic production, a singular
lmer fit) and :func:`simulate_cooler` (a treatment effect that differs between
two unequal groups with unequal treatment shares).

Examples
--------
>>> from bayesmlm import datasets
>>> datasets.load("sleepstudy").shape
(180, 3)
>>> "penicillin" in datasets.names()
True
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["load", "names", "simulate_retail", "simulate_plant_machine", "simulate_cooler", "CoolerTruth"]

# Grouping columns that hold numbers but name groups: read them as text.
_TEXT_COLUMNS = {
    "sleepstudy": ["Subject"],
    "cake": ["replicate", "recipe"],
    "cbpp": ["herd", "period"],
    "grouseticks": ["INDEX", "BROOD", "YEAR", "LOCATION"],
}


def names() -> list[str]:
    """Names of the bundled data sets.

    Examples
    --------
    >>> "sleepstudy" in names()
    True
    """
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

    Examples
    --------
    >>> load("sleepstudy").columns.tolist()
    ['Reaction', 'Days', 'Subject']
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

    Parameters
    ----------
    n_rows : int
        Rows (one sale record each).
    n_locations, n_groups : int
        Levels of ``Description`` (location) and ``MerGroup`` (merchandise group).
    intercept, slope : float
        Population mean sales at week 0 and weekly change.
    sd_location, sd_group : (float, float)
        SDs of the intercept and slope effects of each factor.
    sigma : float
        Residual SD.
    seed : int
    n_absent : int
        Location x group combinations with no rows.

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


def simulate_plant_machine(
    n_plants: int = 3,
    machines_per_plant: int = 4,
    shifts: int = 8,
    base: float = 20.0,
    rate: float = 12.0,
    sd_plant: float = 0.0,
    sd_machine: float = 0.05,
    sigma: float = 0.5,
    seed: int = 1,
) -> pd.DataFrame:
    """Units produced per shift: nearly a fixed rate per hour, so lmer's group variances hit zero.

    ``Production = base + rate * Hours + p[Plant] + m[Machine] + noise`` with
    machines nested in plants (``Machine`` names are unique: ``P1-M2``),
    ``Hours`` between 4 and 10 per shift. With the defaults the plant effect is
    absent and the machine effect tiny next to the noise: the data are nearly
    deterministic given the hours, and ``Production ~ Hours + (1 | Plant/Machine)``
    is a singular (boundary) fit in lmer.

    Parameters
    ----------
    n_plants, machines_per_plant, shifts : int
        Design size: rows = n_plants x machines_per_plant x shifts.
    base, rate : float
        Production at zero hours and per hour.
    sd_plant, sd_machine : float
        SDs of the plant and machine effects.
    sigma : float
        Residual SD.
    seed : int

    Examples
    --------
    >>> df = simulate_plant_machine()
    >>> df.shape, sorted(df.columns)
    ((96, 4), ['Hours', 'Machine', 'Plant', 'Production'])
    >>> df.groupby("Plant")["Machine"].nunique().tolist()
    [4, 4, 4]
    """
    rng = np.random.default_rng(seed)
    plant = np.repeat(np.arange(n_plants), machines_per_plant * shifts)
    machine = np.repeat(np.arange(n_plants * machines_per_plant), shifts)
    p_effect = rng.normal(0.0, sd_plant, n_plants)
    m_effect = rng.normal(0.0, sd_machine, n_plants * machines_per_plant)
    hours = rng.uniform(4.0, 10.0, plant.size).round(1)
    production = base + rate * hours + p_effect[plant] + m_effect[machine] + rng.normal(0.0, sigma, plant.size)
    names = [f"P{p + 1}" for p in range(n_plants)]
    return pd.DataFrame({
        "Plant": np.array(names)[plant],
        "Machine": [f"{names[m // machines_per_plant]}-M{m % machines_per_plant + 1}" for m in machine],
        "Hours": hours,
        "Production": production.round(2),
    })


@dataclass(frozen=True)
class CoolerTruth:
    """The true values behind :func:`simulate_cooler`.

    Attributes
    ----------
    effects : dict
        Treatment effect in each group.
    average_effect : float
        The effect in a typical group: the mean of the group effects, which the
        fixed effect of ``(Cooler | Region)`` estimates.

    Examples
    --------
    >>> simulate_cooler()[1].effects
    {'Urban': 10.0, 'Rural': 30.0}
    """

    effects: dict
    average_effect: float


def simulate_cooler(
    sizes: tuple[int, int] = (600, 150),
    treated_share: tuple[float, float] = (0.2, 0.8),
    baseline: tuple[float, float] = (100.0, 60.0),
    effect: tuple[float, float] = (10.0, 30.0),
    sigma: float = 8.0,
    groups: tuple[str, str] = ("Urban", "Rural"),
    seed: int = 1,
) -> tuple[pd.DataFrame, CoolerTruth]:
    """Sales of stores with and without a new drinks cooler, in two unequal regions.

    Region ``g`` has ``sizes[g]`` stores, of which ``treated_share[g]`` got the
    cooler; sales are ``baseline[g] + effect[g] * Cooler + noise``. With the
    defaults the small region has both the low baseline and most of the
    coolers, so a plain difference of means mixes the regions' baselines into
    the effect.

    Parameters
    ----------
    sizes : (int, int)
        Stores per region.
    treated_share : (float, float)
        Share of each region's stores with a cooler.
    baseline, effect : (float, float)
        Mean sales without a cooler, and the cooler's effect, per region.
    sigma : float
        Residual SD.
    groups : (str, str)
        Region names.
    seed : int

    Returns
    -------
    (DataFrame, CoolerTruth)
        Columns ``Region``, ``Cooler`` (0/1), ``Sales``; and the true effects.

    Examples
    --------
    >>> df, truth = simulate_cooler()
    >>> df.groupby("Region")["Cooler"].mean().round(2).to_dict()
    {'Rural': 0.8, 'Urban': 0.2}
    >>> truth.average_effect
    20.0
    """
    rng = np.random.default_rng(seed)
    frames = []
    for name, n, share, base, eff in zip(groups, sizes, treated_share, baseline, effect):
        cooler = (rng.permutation(n) < round(share * n)).astype(int)
        sales = base + eff * cooler + rng.normal(0.0, sigma, n)
        frames.append(pd.DataFrame({"Region": name, "Cooler": cooler, "Sales": sales.round(2)}))
    truth = CoolerTruth(dict(zip(groups, map(float, effect))), float(np.mean(effect)))
    return pd.concat(frames, ignore_index=True), truth
