"""Simulation from the prior, and simulation-based calibration (Talts et al. 2018).

``simulate_from_prior`` draws every parameter from its prior and a response
for a fixed design. ``sbc`` repeats: simulate, fit with the collapsed sampler
(compiled once; only the response's statistics change between replications),
and record the rank of each true value among thinned posterior draws. For a
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
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ..design import Design
from ..priors.spec import PriorSpec, correlation_key
from ..stats import SufficientStats
from .collapsed import build_collapsed_model, draw_effects
from .draws import locate
from .sample import quiet_blas_warning

__all__ = ["simulate_from_prior", "sbc", "rank_uniformity"]


def simulate_from_prior(design: Design, priors: PriorSpec, rng: np.random.Generator) -> tuple[dict[str, float], np.ndarray]:
    """One draw of every parameter from its prior, and a response simulated from them."""
    truth: dict[str, float] = {}
    beta = np.array([float(priors[name].draw(rng)) for name in design.fixed_names])
    truth.update(zip(design.fixed_names, beta))
    y = design.X @ beta
    for block in design.blocks:
        F, k = block.factor, block.n_cols
        sd = np.array([float(priors[f"sd[{F}][{c}]"].draw(rng)) for c in block.columns])
        truth.update({f"sd[{F}][{c}]": s for c, s in zip(block.columns, sd)})
        corr = np.eye(k)
        multi = [g for g in block.groups if len(g) > 1]
        for group in multi:
            cols = tuple(block.columns[i] for i in group)
            idx = np.array(group)
            corr[np.ix_(idx, idx)] = priors[correlation_key(F, cols, len(multi))].draw(rng, dim=len(group))
            for a, i in enumerate(group):
                for j in group[a + 1 :]:
                    truth[f"cor[{F}][{block.columns[i]},{block.columns[j]}]"] = corr[i, j]
        chol = np.linalg.cholesky(corr) * sd[:, None]
        r = rng.standard_normal((block.n_levels, k)) @ chol.T
        y = y + (block.values * r[block.codes]).sum(axis=1)
    sigma = float(priors["sigma"].draw(rng))
    truth["sigma"] = sigma
    return truth, y + sigma * rng.standard_normal(design.n)


def sbc(
    design: Design,
    priors: PriorSpec,
    replications: int = 100,
    draws: int = 1000,
    tune: int = 500,
    chains: int = 2,
    ranks_of: int = 99,
    seed: int = 0,
) -> pd.DataFrame:
    """Ranks of the true values among ``ranks_of`` thinned posterior draws, per replication.

    Returns a DataFrame (replications x parameters) of ranks in ``0..ranks_of``.
    """
    import nutpie

    rng = np.random.default_rng(seed)
    model, plan = build_collapsed_model(design, priors)
    with quiet_blas_warning():
        compiled = nutpie.compile_pymc_model(model)
    keep = np.linspace(0, draws * chains - 1, ranks_of).round().astype(int)
    rows = []
    for rep in range(replications):
        truth, y = simulate_from_prior(design, priors, rng)
        stats = SufficientStats.from_arrays(design.X, design.Z, y)
        run = nutpie.sample(
            compiled.with_data(Zty=stats.Zty, Xty=stats.Xty, yty=np.float64(stats.yty)),
            draws=draws,
            tune=tune,
            chains=chains,
            seed=int(rng.integers(2**31)),
            progress_bar=False,
            adaptation="low_rank",
        )
        posterior = run["posterior"].to_dataset()
        posterior = posterior.merge(draw_effects(posterior, design, dataclasses.replace(plan, stats=stats), priors, seed=rep))
        ranks = {}
        for key, value in truth.items():
            var, sel = locate(design, posterior, key)
            flat = np.asarray(posterior[var].sel(sel)).reshape(-1)
            ranks[key] = int(np.sum(flat[keep] < value))
        rows.append(ranks)
    return pd.DataFrame(rows)


def rank_uniformity(ranks: pd.DataFrame, ranks_of: int = 99, bins: int = 10) -> pd.Series:
    """Chi-square p-value of the binned rank histogram of each parameter."""
    edges = np.linspace(0, ranks_of + 1, bins + 1)
    out = {}
    for key in ranks:
        counts, _ = np.histogram(ranks[key], bins=edges)
        out[key] = float(scipy_stats.chisquare(counts).pvalue)
    return pd.Series(out, name="p_value")
