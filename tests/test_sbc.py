"""Simulation-based calibration of the collapsed sampler (slow: ./dev test -m slow).

For each model, 100 data sets are simulated from the priors and fitted; the rank of
every true parameter among 99 thinned posterior draws must be uniform: chi-square
p-value on 10 bins above 0.05 / (number of parameters ranked), Bonferroni's bound for a
5% chance of a false alarm per model (with 16 ranked quantities, ~0.003; a miscalibrated
sampler gives p-values far below that over 100 replications). Ranked: the hyperparameters and the group
effects of the first 3 levels of every factor (drawn exactly after NUTS, so a wrong
conditional mean or covariance of the effects shows there and not in the hyperparameters).
A fast test checks only that those ranks are produced.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesmlm.bayes.calibration import rank_uniformity, sbc
from bayesmlm.design import build_design
from bayesmlm.priors import LKJ, HalfNormal, Normal, PriorSpec


def _design(formula: str, n_groups: int, per_group: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    df = pd.DataFrame(
        {
            "y": 0.0,  # replaced by simulated responses
            "x": rng.normal(size=n),
            "g": np.repeat([f"g{i}" for i in range(n_groups)], per_group),
            "g1": np.repeat([f"a{i}" for i in range(n_groups)], per_group),
            "g2": rng.choice([f"b{i}" for i in range(6)], size=n),
        }
    )
    return build_design(formula, df)


CASES = {
    "(x | g)": (
        "y ~ x + (x | g)",
        {"Intercept": Normal(0, 1), "x": Normal(0, 1), "sd[g][Intercept]": HalfNormal(1), "sd[g][x]": HalfNormal(0.5),
         "cor[g]": LKJ(2), "sigma": HalfNormal(1)},
    ),
    "(x | g1) + (1 | g2)": (
        "y ~ x + (x | g1) + (1 | g2)",
        {"Intercept": Normal(0, 1), "x": Normal(0, 1), "sd[g1][Intercept]": HalfNormal(1), "sd[g1][x]": HalfNormal(0.5),
         "cor[g1]": LKJ(2), "sd[g2][Intercept]": HalfNormal(1), "sigma": HalfNormal(1)},
    ),
}


def group_effect_keys(formula: str, levels: int = 3) -> set[str]:
    design = _design(formula, n_groups=8, per_group=10)
    return {f"r[{b.factor}][{lev},{col}]" for b in design.blocks for lev in b.levels[:levels] for col in b.columns}


def test_sbc_ranks_group_effects_as_well_as_hyperparameters() -> None:
    formula, priors = CASES["(x | g1) + (1 | g2)"]
    design = _design(formula, n_groups=8, per_group=10)
    ranks = sbc(design, PriorSpec(priors), replications=2, draws=100, tune=100, ranks_of=19, seed=1)
    effects = group_effect_keys(formula)
    assert len(effects) == 3 * 2 + 3  # g1: intercept and slope of a0..a2; g2: intercept of b0..b2
    assert set(ranks.columns) == set(priors) - {"cor[g1]"} | {"cor[g1][Intercept,x]"} | effects
    assert len(ranks) == 2 and ranks.notna().all().all() and ranks.isin(range(20)).all().all()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_collapsed_sampler_is_calibrated(case: str) -> None:
    formula, priors = CASES[case]
    design = _design(formula, n_groups=8, per_group=10)
    ranks = sbc(design, PriorSpec(priors), replications=100, seed=2026)
    p_values = rank_uniformity(ranks)
    print(f"\nSBC {case}: 100 replications, chi-square p-values per parameter:\n{p_values.round(3).to_string()}")
    assert len(ranks) == 100 and set(p_values.index) >= {"Intercept", "x", "sigma"} | group_effect_keys(formula)
    assert (p_values > 0.05 / len(p_values)).all(), p_values
