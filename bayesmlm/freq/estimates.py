"""The numbers every frequentist engine hands back, in one engine-free shape.

Examples
--------
>>> import numpy as np
>>> relative_factor(np.array([[4.0, 2.0], [2.0, 2.0]])).round(6).tolist()
[[2.0, 0.0], [1.0, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FitEstimates", "relative_factor"]


@dataclass
class FitEstimates:
    """Point estimates and fit statistics of a linear mixed model.

    Attributes
    ----------
    beta : ndarray (p,)
    vcov : ndarray (p, p)
        Covariance of the fixed-effects estimates.
    sigma : float
        Residual standard deviation.
    covariances : list of ndarray
        Covariance matrix of each block's random effects (data scale).
    ranef : list of ndarray
        Conditional modes, one (levels x columns) array per block.
    loglik : float
        Log-likelihood (REML log-likelihood for REML fits, as lme4 reports).
    criterion : float
        REML criterion at convergence, or the deviance for ML fits.
    theta : ndarray
        Relative covariance factor entries (see :class:`~bayesmlm.freq.theta.ThetaLayout`).
    converged : bool
    messages : list of str
        Convergence problems in words.
    evaluations : int or None
        Objective evaluations used by the optimiser.
    """

    beta: np.ndarray
    vcov: np.ndarray
    sigma: float
    covariances: list[np.ndarray]
    ranef: list[np.ndarray]
    loglik: float
    criterion: float
    theta: np.ndarray
    converged: bool
    messages: list[str] = field(default_factory=list)
    evaluations: int | None = None


def relative_factor(cov: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Lower Cholesky factor that tolerates a singular (semi-definite) matrix.

    Columns whose pivot is ~0 are set to zero, which is how lme4 represents a
    boundary fit (a zero diagonal in the template).
    """
    cov = np.asarray(cov, dtype=float)
    k = cov.shape[0]
    L = np.zeros_like(cov)
    scale = max(float(np.max(np.abs(np.diag(cov)))), 1.0)
    for j in range(k):
        d = cov[j, j] - L[j, :j] @ L[j, :j]
        if d <= tol * scale:
            continue
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, k):
            L[i, j] = (cov[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L
