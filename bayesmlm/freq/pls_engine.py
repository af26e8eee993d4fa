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
        Starting point. By default moment estimates of the templates' diagonals
        (:meth:`~bayesmlm.freq.pls.ProfiledDeviance.moment_start`), with first steps
        at their scale; lme4's identity templates where those cannot be formed.
    """
    deviance = ProfiledDeviance.from_design(design, reml=reml, stats=stats)
    layout = deviance.layout
    if theta0 is not None:
        start = np.asarray(theta0, dtype=float)
    elif (moments := deviance.moment_start()) is not None:
        # moment estimates of the SDs, first steps to match their scales
        start = moments
        deviance.initial_step = deviance.moment_steps(moments)
    else:
        start = layout.initial()
    with deviance.blas_threads():
        result = optimize_theta(deviance, start, layout.lower)
        if not result.converged and np.isfinite(result.deviance):
            # once more from where BOBYQA stopped, with a fresh model at that point's scale
            # (what lme4's documentation advises on a convergence warning); keep the better
            deviance.initial_step = deviance.moment_steps(result.theta)
            again = optimize_theta(deviance, result.theta, layout.lower)
            again.evaluations += result.evaluations
            if again.deviance < result.deviance or (again.converged and again.deviance <= result.deviance + 1e-8):
                result = again
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
