"""Which factors' group effects to sample centred, and which non-centred.

Non-centred effects (``r = sd * z``, ``z ~ N(0, 1)``) suit levels the data say
little about: the posterior of ``z`` then stays close to its prior whatever the
SD. When each level has many rows the data pin ``r`` itself down and ``z = r / sd``
follows every move of the SD: a curved ridge that forces small steps and long
trajectories. Centred effects (``r ~ N(0, sd^2)``) are then the better
coordinates (Papaspiliopoulos, Roberts & Skold 2007, "A general framework for the
parametrization of hierarchical models"; Betancourt & Girolami 2015).

The rule compares, for every varying column of a factor, the information a
typical level's rows carry about its effect with the typical spread of the
effects: ``ratio = median over levels of (sum_rows value^2 * w) * tau^2``, ``w``
the working weight of one row at the response's mean (``mu_eta(eta)^2 / Var(y)``,
the response's variance including the spread between groups, which errs towards
non-centred; for a gaussian model with an lmer fit, ``1 / sigma^2`` of the fit)
and ``tau`` the smaller of the median of the column's SD prior and the SD the
frequentist fit estimates, when there is one: a factor whose SD the data put near
zero must stay non-centred, however wide its prior (centred effects with an SD near
zero are the funnel). A factor is centred when every column's ratio is at least
:data:`CENTRED_FROM`.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.family_design import family_design
>>> d = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
>>> information_ratios(d, bm.priors.default_for_design(d))["herd"].round(1).tolist()
[2.9]
>>> centred_factors(d, bm.priors.default_for_design(d))
[True]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import Design
from ..priors.spec import PriorSpec

__all__ = ["centred_factors", "information_ratios", "CENTRED_FROM"]

CENTRED_FROM = 1.0
"""Information ratio from which a column's effects are better sampled centred."""


def _row_weights(design: Design, fit=None) -> np.ndarray:
    """Working weight of each row at the response's mean, on the link scale."""
    family = design.family
    if family is None:
        y = np.asarray(design.y, dtype=float)
        variance = float(fit.sigma) ** 2 if fit is not None else float(np.var(y))
        return np.full(y.shape, 1.0 / max(variance, 1e-12))
    glm = design.glm
    if family.name == "binomial":
        p = float(np.clip(np.sum(glm.y * glm.trials) / np.sum(glm.trials), 1e-3, 1 - 1e-3))
        eta = family.link.link(np.array([p]))
        per_trial = float(family.link.mu_eta(eta)[0]) ** 2 / (p * (1 - p))
        return per_trial * glm.trials * glm.weights
    y = np.log(glm.y) if family.name == "lognormal" else np.asarray(glm.y, dtype=float)
    if family.name == "lognormal":
        slope = 1.0
    else:
        eta = family.link.link(np.array([max(float(np.mean(y)), 1e-6)]))
        slope = float(family.link.mu_eta(eta)[0])
    return np.full(y.shape, slope ** 2 / max(float(np.var(y)), 1e-12)) * glm.weights


def _median_scale(dist) -> float:
    """The median of a positive prior, from a fixed set of draws."""
    return float(np.median(dist.draw(np.random.default_rng(0), size=4001)))


def _fitted_sds(fit) -> dict[tuple[str, str], float]:
    """The SD a frequentist fit estimates for each (factor, varying column)."""
    if fit is None:
        return {}
    vc = fit.varcorr()
    rows = vc[vc.var2.isna() & (vc.grp != "Residual")]
    return {(r.grp, r.var1): float(r.sdcor) for r in rows.itertuples()}


def information_ratios(design: Design, priors: PriorSpec, fit=None) -> dict[str, np.ndarray]:
    """Per factor, each varying column's information ratio (see the module docstring).

    ``fit`` (an lmer or glmer fit of the same model, optional) caps each SD at its estimate and,
    for gaussian models, gives the residual variance.
    """
    w = _row_weights(design, fit if design.family is None else None)
    fitted = _fitted_sds(fit)
    ratios = {}
    for block in design.blocks:
        values = np.asarray(block.values, dtype=float).reshape(design.n, block.n_cols)
        info = np.zeros((block.n_levels, block.n_cols))
        np.add.at(info, block.codes, values ** 2 * w[:, None])
        tau = np.array([min(_median_scale(priors[f"sd[{block.factor}][{c}]"]),
                            fitted.get((block.factor, c), np.inf)) for c in block.columns])
        ratios[block.factor] = np.median(info, axis=0) * tau ** 2
    return ratios


def centred_factors(design: Design, priors: PriorSpec, fit=None) -> list[bool]:
    """Per factor (in ``design.blocks`` order): sample its effects centred? (``fit``: see
    :func:`information_ratios`.)"""
    ratios = information_ratios(design, priors, fit)
    return [bool(np.all(ratios[b.factor] >= CENTRED_FROM)) for b in design.blocks]


def describe(design: Design, centred: list[bool]) -> str:
    """``centred: a, b; non-centred: c`` for the sampling note."""
    parts = pd.Series([b.factor for b in design.blocks]).groupby(pd.Series(centred)).agg(", ".join)
    words = [f"{'centred' if flag else 'non-centred'}: {parts[flag]}" for flag in (True, False) if flag in parts]
    return "; ".join(words)
