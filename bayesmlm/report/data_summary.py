"""What the data hold: rows, groups, levels per factor, and crossed combinations never observed.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)",
...                  bm.datasets.simulate_retail(2000, n_absent=2, seed=3))
>>> s = summarise_data(d)
>>> s.n_rows, s.levels, len(s.missing_combinations)
(2000, {'Description': 10, 'MerGroup': 10}, 2)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pandas as pd

from ..design import Design, crossed_pair

__all__ = ["DataSummary", "summarise_data"]


@dataclass
class DataSummary:
    """Size and grouping structure of a model's data.

    Attributes
    ----------
    n_rows, n_dropped : int
    response : str
    levels : dict of factor -> number of levels
    rows_per_level : dict of factor -> (min, median, max) rows per level
    crossed : (factor, factor) or None
        The first two factors when they are crossed.
    missing_combinations : list of str
        Their level combinations with no rows (``"a:b"``).
    """

    n_rows: int
    n_dropped: int
    response: str
    levels: dict[str, int]
    rows_per_level: dict[str, tuple[int, float, int]]
    crossed: tuple[str, str] | None = None
    missing_combinations: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per grouping factor."""
        return pd.DataFrame(
            [{"factor": f, "levels": n, "min rows": r[0], "median rows": r[1], "max rows": r[2]}
             for (f, n), r in zip(self.levels.items(), self.rows_per_level.values())]
        )


def summarise_data(design: Design) -> DataSummary:
    """Summarise the rows and groups behind a design."""
    levels, per_level = {}, {}
    for block in design.blocks:
        counts = pd.Series(block.codes).value_counts()
        levels[block.factor] = block.n_levels
        per_level[block.factor] = (int(counts.min()), float(counts.median()), int(counts.max()))
    crossed, missing = None, []
    pair = crossed_pair(design)
    if pair is not None:
        a, b = pair
        seen = set(zip(a.codes.tolist(), b.codes.tolist()))
        crossed = (a.factor, b.factor)
        missing = [f"{a.levels[i]}:{b.levels[j]}" for i, j in itertools.product(range(a.n_levels), range(b.n_levels))
                   if (i, j) not in seen]
    from ..family_design import response_label

    return DataSummary(design.n, design.n_dropped, response_label(design), levels, per_level, crossed, missing)
