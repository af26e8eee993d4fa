"""Simulation-based calibration of the compiled non-centred sampler for response families.

A thin companion of :mod:`bayesmlm.bayes.calibration` (whose ``sbc`` runs the
collapsed gaussian sampler): the same procedure (Talts et al. 2018) and the same
rank test (:func:`~bayesmlm.bayes.calibration.rank_uniformity`), with the
response simulated from the family (:meth:`bayesmlm.families.Family.draw_response`)
and fitted by the density ``bm.sample`` uses for families
(:class:`~bayesmlm.bayes.noncentred.NativeNonCentred`, compiled once; only the
response changes between replications), with the same nutpie options. The
centring of each factor is decided once, from the design's own response and the
priors (no frequentist fit): a fixed choice of coordinates, so the calibration
holds whatever it is; replications whose SDs drawn from the prior are near zero
then sample a centred factor in its funnel, which costs efficiency, not validity. Ranked: every hyperparameter, the
family's parameters and the group effects of the first few levels of every factor.

Examples
--------
>>> import numpy as np, bayesmlm as bm
>>> from bayesmlm.family_design import family_design
>>> d = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
>>> truth, y = simulate_family(d, bm.priors.default_for_design(d), np.random.default_rng(1), levels=2)
>>> sorted(truth)[-2:], bool(np.all((y >= 0) & (y <= 1)))
(['r[herd][10,Intercept]', 'sd[herd][Intercept]'], True)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..design import Design
from ..priors.spec import PriorSpec
from .calibration import truth_ranks
from .native import one_blas_thread
from .noncentred import NativeNonCentred
from .prior_predictive import simulate_family as simulate_family_draws
from .sample import full_nuts_options, quiet_blas_warning

__all__ = ["simulate_family", "sbc_family"]


def simulate_family(design: Design, priors: PriorSpec, rng: np.random.Generator,
                    levels: int = 3) -> tuple[dict[str, float], np.ndarray]:
    """One draw of every parameter from its prior and a response from the family (glm's ``y``).

    Returns the truth (hyperparameters, family parameters, the group effects of the first
    ``levels`` levels of each factor) and ``y`` (a binomial proportion of the design's trials).
    """
    params, y = simulate_family_draws(design, priors, rng, 1)
    y = np.asarray(y[0], dtype=float)
    if design.family.name == "binomial":
        y = y / design.glm.trials
    truth = {k: float(v[0]) for k, v in params.items() if not k.startswith("r[")}
    for block in design.blocks:
        effects = params[f"r[{block.factor}]"][0]
        for i, level in enumerate(block.levels[:levels]):
            for j, column in enumerate(block.columns):
                truth[f"r[{block.factor}][{level},{column}]"] = float(effects[i, j])
    return truth, y


def _with_response(native: NativeNonCentred, y: np.ndarray) -> NativeNonCentred:
    blob = native.blob.copy()
    start = int(blob[13])  # the y section (y, trials, weights, offset) starts with y
    blob[start:start + y.size] = y
    return replace(native, blob=blob)


def sbc_family(design: Design, priors: PriorSpec, replications: int = 100, draws: int = 500, tune: int = 500,
               chains: int = 2, ranks_of: int = 99, seed: int = 0, levels: int = 3) -> pd.DataFrame:
    """Ranks (replications x parameters, in ``0..ranks_of``) of the true values among thinned posterior draws.

    ``design`` is a family design (:func:`bayesmlm.family_design.family_design`); test the ranks
    with :func:`bayesmlm.bayes.calibration.rank_uniformity`.
    """
    import nutpie

    if design.family is None:
        raise ValueError("sbc_family needs a design with a response family; for gaussian models use calibration.sbc")
    rng = np.random.default_rng(seed)
    native = NativeNonCentred.from_design(design, priors)
    keep = np.linspace(0, draws * chains - 1, ranks_of).round().astype(int)
    rows = []
    for _ in range(replications):
        truth, y = simulate_family(design, priors, rng, levels=levels)
        with quiet_blas_warning(), one_blas_thread():
            run = nutpie.sample(_with_response(native, y).for_nutpie(), draws=draws, tune=tune, chains=chains,
                                seed=int(rng.integers(2**31)), progress_bar=False, **full_nuts_options(native))
        posterior = run["posterior"].to_dataset()
        rows.append(truth_ranks(design, posterior, truth, keep))
    return pd.DataFrame(rows)
