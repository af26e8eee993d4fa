"""Simulation-based calibration of the compiled non-centred sampler (slow: ``./dev test -m slow``).

Poisson and bernoulli models with crossed factors, the response simulated from the priors
(:mod:`bayesmlm.bayes.family_calibration`); the ranks of the true hyperparameters, and of
the group effects of the first levels of each factor, must be uniform (chi-square test
per parameter, Bonferroni over parameters).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesmlm.bayes.calibration import rank_uniformity
from bayesmlm.bayes.family_calibration import sbc_family
from bayesmlm.family_design import family_design
from bayesmlm.priors import HalfNormal, Normal, default_for_design

pytestmark = pytest.mark.slow


def _crossed(n: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"g": rng.integers(0, 6, n).astype(str), "h": rng.integers(0, 5, n).astype(str),
                         "x": rng.normal(size=n), "y": rng.integers(0, 2, n)})


@pytest.mark.parametrize("formula,family", [("y ~ x + (x | g) + (1 | h)", "poisson"),
                                            ("y ~ x + (1 | g) + (1 | h)", "bernoulli")])
def test_noncentred_sampler_is_calibrated(formula: str, family: str) -> None:
    design = family_design(formula, _crossed(), family)
    priors = default_for_design(design)
    priors["Intercept"] = Normal(0.3, 0.7)
    priors["x"] = Normal(0, 0.5)
    for key in [k for k in priors if k.startswith("sd[")]:
        priors[key] = HalfNormal(0.6)
    ranks = sbc_family(design, priors, replications=120, draws=300, tune=300, chains=2, seed=4, levels=2)
    p = rank_uniformity(ranks)
    assert p.min() > 0.001 / len(p), p.sort_values().head()
