"""The "pls" engine: lme4's algorithm from deviance function to estimates.

``fit_pls`` chains the stages that lme4 exposes as ``mkLmerDevfun`` ->
``optimizeLmer`` -> ``mkMerMod``; each stage is importable on its own
(:class:`~bayesmlm.freq.pls.ProfiledDeviance`,
:func:`~bayesmlm.freq.optimize.optimize_theta`).

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> est = fit_pls(build_design("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff")), reml=True)
>>> float(round(est.beta[0], 2)), round(est.sigma, 3)
(1527.5, 49.51)
"""

from __future__ import annotations

import numpy as np

from ..design import Design
from ..stats import SufficientStats
from .estimates import FitEstimates
from .optimize import optimize_theta
from .pls import ProfiledDeviance
from .theta import ThetaLayout

__all__ = ["fit_pls"]


def fit_pls(
    design: Design,
    reml: bool = True,
    stats: SufficientStats | None = None,
    theta0: np.ndarray | None = None,
) -> FitEstimates:
    """Fit a linear mixed model by lme4's profiled (RE)ML.

    Parameters
    ----------
    design : Design
    reml : bool
    stats : SufficientStats, optional
        Precomputed statistics (e.g. reduced from a distributed data frame).
    theta0 : ndarray, optional
        Starting point; lme4's identity templates by default.
    """
    layout = ThetaLayout.from_design(design)
    deviance = ProfiledDeviance.from_design(design, reml=reml, stats=stats)
    start = layout.initial() if theta0 is None else np.asarray(theta0, dtype=float)
    result = optimize_theta(deviance, start, layout.lower)
    sol = deviance.solve(result.theta)
    templates = layout.templates(sol.theta)
    covariances = [sol.sigma**2 * (T @ T.T) for T in templates]
    offsets = design.offsets
    ranef = [
        sol.b[offsets[k] : offsets[k + 1]].reshape(block.n_levels, block.n_cols)
        for k, block in enumerate(design.blocks)
    ]
    return FitEstimates(
        beta=sol.beta,
        vcov=sol.vcov,
        sigma=sol.sigma,
        covariances=covariances,
        ranef=ranef,
        loglik=-0.5 * sol.deviance,
        criterion=sol.deviance,
        theta=sol.theta,
        converged=result.converged,
        messages=result.messages,
        evaluations=result.evaluations,
    )
