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

from ..design import Design
from ..priors.spec import PriorSpec

__all__ = ["centred_factors", "information_ratios", "level_information_ratios", "centring_weights", "CENTRED_FROM"]

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


def level_information_ratios(design: Design, priors: PriorSpec, fit=None) -> dict[str, np.ndarray]:
    """Per factor, every level's information ratio for each varying column (levels x columns): the
    information its rows carry about its effect times ``tau^2`` (see the module docstring).

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
        ratios[block.factor] = info * tau ** 2
    return ratios


def information_ratios(design: Design, priors: PriorSpec, fit=None) -> dict[str, np.ndarray]:
    """Per factor, each varying column's information ratio: the median over levels of
    :func:`level_information_ratios`."""
    return {factor: np.median(r, axis=0) for factor, r in level_information_ratios(design, priors, fit).items()}


def centring_weights(design: Design, priors: PriorSpec, fit=None) -> list[np.ndarray]:
    """Per factor, each level's centring weight ``lambda = rho / (1 + rho)`` (``rho`` its information
    ratio), for factors with one varying column, which are sampled partially centred: ``z ~ N(0,
    tau^(2 lambda))``, ``r = tau^(1 - lambda) z``. In a gaussian model with known variances this
    ``lambda`` (one less the level's shrinkage) makes ``z`` and ``tau`` nearly independent a posteriori
    (Papaspiliopoulos, Roberts & Skold 2003): neither the funnel of non-centred effects with
    informative data nor the narrow ridge in ``tau`` of centred ones. Factors with several varying
    columns get all 1 or all 0 from :func:`centred_factors`.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> from bayesmlm.family_design import family_design
    >>> d = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
    >>> lam = centring_weights(d, bm.priors.default_for_design(d))[0]
    >>> bool(((lam > 0) & (lam < 1)).all()), lam.shape
    (True, (15,))
    """
    ratios = level_information_ratios(design, priors, fit)
    flags = [bool(np.all(np.median(ratios[b.factor], axis=0) >= CENTRED_FROM)) for b in design.blocks]
    weights = []
    for block, flag in zip(design.blocks, flags):
        rho = ratios[block.factor][:, 0]
        weights.append(rho / (1.0 + rho) if block.n_cols == 1 else np.full(block.n_levels, float(flag)))
    return weights


def centred_factors(design: Design, priors: PriorSpec, fit=None) -> list[bool]:
    """Per factor (in ``design.blocks`` order): sample its effects centred? (``fit``: see
    :func:`information_ratios`.)"""
    ratios = information_ratios(design, priors, fit)
    return [bool(np.all(ratios[b.factor] >= CENTRED_FROM)) for b in design.blocks]


def describe(design: Design, centred: list[bool], sampled: list[bool] | None = None) -> str:
    """``partially centred: a; centred: b; non-centred: c`` for the sampling note (over the ``sampled``
    factors; default all). Factors with one varying column are partially centred per level
    (:func:`centring_weights`); the others centred or not by ``centred``."""
    keep = [True] * len(design.blocks) if sampled is None else sampled
    groups: dict[str, list[str]] = {}
    for block, flag, k in zip(design.blocks, centred, keep):
        if k:
            kind = "partially centred" if block.n_cols == 1 else ("centred" if flag else "non-centred")
            groups.setdefault(kind, []).append(block.factor)
    return "; ".join(f"{kind}: {', '.join(groups[kind])}" for kind in ("partially centred", "centred", "non-centred")
                     if kind in groups)
