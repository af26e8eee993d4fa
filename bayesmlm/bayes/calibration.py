"""Simulation from the prior, and simulation-based calibration (Talts et al. 2018).

``simulate_from_prior`` draws every parameter from its prior and a response
for a fixed design. ``sbc`` repeats: simulate, fit with the collapsed sampler
that ``bm.sample`` uses (compiled once; only the response's statistics change
between replications),
and record the rank of each true value among thinned posterior draws: the
hyperparameters (fixed effects, SDs, correlations, sigma) and the group effects
``r[F][level,column]`` of the first few levels of every factor, which the
collapsed sampler draws exactly after NUTS and so are checked separately. For a
correct sampler the ranks are uniform; ``rank_uniformity`` tests that with a
chi-square test on binned ranks.

Examples
--------
>>> import numpy as np, bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> truth, y = simulate_from_prior(d, bm.priors.default(d.formula.text, d.data), np.random.default_rng(1))
>>> sorted(truth)[:3], y.shape
(['Days', 'Intercept', 'cor[Subject][Intercept,Days]'], (180,))
>>> [key for key in truth if key.startswith("r[")]
['r[Subject][308,Intercept]', 'r[Subject][308,Days]', 'r[Subject][309,Intercept]', 'r[Subject][309,Days]', 'r[Subject][310,Intercept]', 'r[Subject][310,Days]']
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ..design import Design
from ..priors.spec import PriorSpec
from ..stats import SufficientStats
from .collapsed import draw_effects
from .compile import compile_for_nutpie
from .draws import locate
from .native import NativeCollapsed, one_blas_thread
from .prior_predictive import draw_parameters, simulate_response
from .sample import LOW_RANK_OPTIONS, collapsed_model, quiet_blas_warning

__all__ = ["simulate_from_prior", "sbc", "rank_uniformity"]


def simulate_from_prior(
    design: Design, priors: PriorSpec, rng: np.random.Generator, levels: int = 3
) -> tuple[dict[str, float], np.ndarray]:
    """One draw of every parameter from its prior, and a response simulated from them.

    The returned truth holds every hyperparameter and the group effects
    ``r[F][level,column]`` of the first ``levels`` levels of each factor (all
    effects enter the response).
    """
    params = draw_parameters(design, priors, rng, size=1)
    y = simulate_response(design, params, rng)[0]
    truth = {key: float(value[0]) for key, value in params.items() if not key.startswith("r[")}
    for block in design.blocks:
        effects = params[f"r[{block.factor}]"][0]  # (levels, columns)
        for i, level in enumerate(block.levels[:levels]):
            for j, column in enumerate(block.columns):
                truth[f"r[{block.factor}][{level},{column}]"] = float(effects[i, j])
    return truth, y


def sbc(
    design: Design,
    priors: PriorSpec,
    replications: int = 100,
    draws: int = 1000,
    tune: int = 500,
    chains: int = 2,
    ranks_of: int = 99,
    seed: int = 0,
    levels: int = 3,
) -> pd.DataFrame:
    """Ranks of the true values among ``ranks_of`` thinned posterior draws, per replication.

    Ranked: every hyperparameter, and the group effects of the first ``levels``
    levels of each factor (``r[g][g0,Intercept]``, ...).
    Returns a DataFrame (replications x parameters) of ranks in ``0..ranks_of``.
    """
    import nutpie

    rng = np.random.default_rng(seed)
    # The model bm.sample uses for collapsed fits; only the response's statistics change.
    model, plan, _ = collapsed_model(design, priors)
    if isinstance(model, NativeCollapsed):

        def compiled_for(stats):
            return model.with_stats(stats).for_nutpie()
    else:
        with quiet_blas_warning():
            compiled = compile_for_nutpie(model)

        def compiled_for(stats):
            return compiled.with_data(Zty=stats.Zty, Xty=stats.Xty, yty=np.asarray(stats.yty, dtype=np.float64))
    keep = np.linspace(0, draws * chains - 1, ranks_of).round().astype(int)
    rows = []
    for rep in range(replications):
        truth, y = simulate_from_prior(design, priors, rng, levels=levels)
        stats = SufficientStats.from_arrays(design.X, design.Z, y)
        with one_blas_thread():
            run = nutpie.sample(
                compiled_for(stats),
                draws=draws,
                tune=tune,
                chains=chains,
                seed=int(rng.integers(2**31)),
                progress_bar=False,
                **LOW_RANK_OPTIONS,
            )
        posterior = run["posterior"].to_dataset()
        posterior = posterior.merge(draw_effects(posterior, design, dataclasses.replace(plan, stats=stats), priors, seed=rep))
        rows.append(truth_ranks(design, posterior, truth, keep))
    return pd.DataFrame(rows)


def truth_ranks(design, posterior, truth: dict[str, float], keep: np.ndarray) -> dict[str, int]:
    """Rank of each true value among the kept posterior draws (the SBC statistic), by parameter name."""
    ranks = {}
    for key, value in truth.items():
        var, sel = locate(design, posterior, key)
        flat = np.asarray(posterior[var].sel(sel)).reshape(-1)
        ranks[key] = int(np.sum(flat[keep] < value))
    return ranks


def rank_uniformity(ranks: pd.DataFrame, ranks_of: int = 99, bins: int = 10) -> pd.Series:
    """Chi-square p-value of the binned rank histogram of each parameter."""
    edges = np.linspace(0, ranks_of + 1, bins + 1)
    out = {}
    for key in ranks:
        counts, _ = np.histogram(ranks[key], bins=edges)
        out[key] = float(scipy_stats.chisquare(counts).pvalue)
    return pd.Series(out, name="p_value")
