"""Optimise the profiled deviance over theta (lme4's ``optimizeLmer`` stage).

Uses NLopt's BOBYQA, the bound-constrained derivative-free method behind
lme4's default ``nloptwrap`` optimiser, with tighter tolerances (and Brent's
bounded method from SciPy when theta has one entry, where BOBYQA is undefined). After it
stops, the gradient is checked by finite differences, scaled by the Hessian
as lme4's ``checkConv`` does, so that a stop short of the optimum is reported.

Examples
--------
>>> import numpy as np
>>> res = optimize_theta(lambda t: float((t[0] - 2.0) ** 2 + 1.0), np.array([1.0]), np.array([0.0]))
>>> float(round(res.theta[0], 6)), res.converged
(2.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import nlopt
import numpy as np
from scipy.optimize import minimize_scalar

__all__ = ["OptimizerResult", "optimize_theta", "check_gradient"]

_NLOPT_SUCCESS = {
    nlopt.SUCCESS: "success",
    nlopt.FTOL_REACHED: "ftol reached",
    nlopt.XTOL_REACHED: "xtol reached",
    nlopt.STOPVAL_REACHED: "stopval reached",
}


@dataclass
class OptimizerResult:
    """Outcome of the theta optimisation.

    Attributes
    ----------
    theta : ndarray
    deviance : float
    evaluations : int
    converged : bool
    messages : list of str
        Why it is not converged, in words, with what to try.
    max_grad : float
        Largest (Hessian-scaled where possible) gradient component at the
        optimum over parameters not held at a bound.
    """

    theta: np.ndarray
    deviance: float
    evaluations: int
    converged: bool
    messages: list[str] = field(default_factory=list)
    max_grad: float = 0.0


def _finite_difference(fun: Callable, x: np.ndarray, lower: np.ndarray, h: float = 1e-4):
    """Central-difference gradient and Hessian, one-sided at a lower bound."""
    d = len(x)
    f0 = fun(x)
    grad = np.zeros(d)
    hess = np.zeros((d, d))
    steps = h * np.maximum(np.abs(x), 1.0)
    for i in range(d):
        e = np.zeros(d)
        e[i] = steps[i]
        if x[i] - steps[i] < lower[i]:
            f1, f2 = fun(x + e), fun(x + 2 * e)
            grad[i] = (-3 * f0 + 4 * f1 - f2) / (2 * steps[i])
            hess[i, i] = (f0 - 2 * f1 + f2) / steps[i] ** 2
        else:
            fp, fm = fun(x + e), fun(x - e)
            grad[i] = (fp - fm) / (2 * steps[i])
            hess[i, i] = (fp - 2 * f0 + fm) / steps[i] ** 2
    for i in range(d):
        for j in range(i):
            ei = np.zeros(d)
            ej = np.zeros(d)
            ei[i], ej[j] = steps[i], steps[j]
            if x[i] - steps[i] < lower[i] or x[j] - steps[j] < lower[j]:
                continue
            val = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (4 * steps[i] * steps[j])
            hess[i, j] = hess[j, i] = val
    return grad, hess


def check_gradient(fun: Callable, theta: np.ndarray, lower: np.ndarray, tol: float = 2e-3) -> tuple[float, bool]:
    """lme4-style convergence check: Hessian-scaled gradient below ``tol``.

    Parameters at a lower bound whose gradient points out of the region are
    excluded (the optimum is on the boundary there).
    """
    if not np.isfinite(fun(theta)):
        return np.inf, False
    grad, hess = _finite_difference(fun, theta, lower)
    interior = ~((theta - lower <= 1e-6) & (grad > 0))
    if not interior.any():
        return 0.0, True
    g = grad[interior]
    H = hess[np.ix_(interior, interior)]
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(H), g)
        value = float(np.max(np.minimum(np.abs(scaled), np.abs(g))))
    except np.linalg.LinAlgError:
        value = float(np.max(np.abs(g)))
    return value, value < tol


def _snap_to_bounds(fun: Callable, theta: np.ndarray, lower: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Put entries within ``tol`` of their lower bound on it when that is no worse."""
    theta = theta.copy()
    for i in np.flatnonzero(np.isfinite(lower) & (theta - lower < tol)):
        trial = theta.copy()
        trial[i] = lower[i]
        if fun(trial) <= fun(theta):
            theta = trial
    return theta


def _brent(objective: Callable, theta0: np.ndarray, lower: np.ndarray, max_evaluations: int):
    """One-parameter minimisation on [lower, upper], upper found by doubling."""
    lo = float(lower[0]) if np.isfinite(lower[0]) else -1.0
    upper = max(2.0 * abs(float(theta0[0])), 1.0)
    while objective(np.array([upper])) < objective(np.array([upper / 2.0])) and upper < 1e8:
        upper *= 2.0
    res = minimize_scalar(
        lambda t: objective(np.array([t])),
        bounds=(lo, upper),
        method="bounded",
        options={"xatol": 1e-10, "maxiter": max_evaluations},
    )
    return np.array([res.x]), bool(res.success)


def optimize_theta(
    fun: Callable[[np.ndarray], float],
    theta0: np.ndarray,
    lower: np.ndarray,
    max_evaluations: int = 20_000,
    check: bool = True,
) -> OptimizerResult:
    """Minimise ``fun`` over theta with bounds ``theta >= lower`` by BOBYQA.

    Parameters
    ----------
    fun : callable
        Profiled deviance, ``theta -> float`` (``inf`` where undefined).
    theta0, lower : ndarray
    max_evaluations : int
    check : bool
        Run the finite-difference gradient check at the optimum.
    """
    theta0 = np.asarray(theta0, dtype=float)
    d = len(theta0)
    count = [0]

    best = [np.inf, theta0.copy()]

    def objective(x, grad=None):
        count[0] += 1
        value = fun(np.asarray(x, dtype=float))
        if value < best[0]:
            best[0], best[1] = value, np.array(x, dtype=float)
        return value

    messages = []
    if d == 1:
        _, converged = _brent(objective, theta0, lower, max_evaluations)
        status = nlopt.SUCCESS if converged else nlopt.MAXEVAL_REACHED
        theta = best[1]
    else:
        opt = nlopt.opt(nlopt.LN_BOBYQA, d)
        opt.set_min_objective(objective)
        opt.set_lower_bounds(lower)
        opt.set_upper_bounds(np.full(d, np.inf))
        opt.set_ftol_abs(1e-11)
        opt.set_ftol_rel(1e-13)
        opt.set_xtol_abs(np.full(d, 1e-10))
        opt.set_maxeval(max_evaluations)
        opt.set_initial_step(np.full(d, 0.2))
        try:
            opt.optimize(theta0)
            status = opt.last_optimize_result()
        except nlopt.RoundoffLimited:  # BOBYQA could not improve further: keep its best point
            status = nlopt.SUCCESS
        theta = best[1]
    theta = _snap_to_bounds(fun, theta, lower)
    value = fun(theta)
    converged = status in _NLOPT_SUCCESS
    if status == nlopt.MAXEVAL_REACHED:
        messages.append(
            f"the optimiser used its {max_evaluations} evaluations without meeting its tolerances; "
            "rescale predictors (centre and scale continuous columns) or simplify the random effects"
        )
    elif not converged:
        messages.append(f"the optimiser stopped with NLopt status {status}")
    max_grad = 0.0
    if check and converged:
        max_grad, ok = check_gradient(fun, theta, lower)
        if not ok:
            converged = False
            messages.append(
                f"model failed to converge: max|scaled gradient| = {max_grad:.3g} (tolerance 0.002); "
                "centre and scale continuous predictors, or simplify the random-effects structure"
            )
    return OptimizerResult(np.asarray(theta), float(value), count[0], converged, messages, max_grad)
