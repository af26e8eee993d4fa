"""Optimise the profiled deviance over theta (lme4's ``optimizeLmer`` stage).

Uses NLopt's BOBYQA, the bound-constrained derivative-free method behind
lme4's default ``nloptwrap`` optimiser, for the profiled deviance with
``nloptwrap``'s settings (so that, from the same start, it takes lme4's path and
ends at lme4's optimum, also where the deviance has several local optima), one
entry of theta or many. After it stops, the
gradient is checked by finite differences, scaled by the Hessian as lme4's
``checkConv`` does, so that a stop short of the optimum is reported; the
Hessian's ``d(d-1)`` evaluations are spent only when the gradient alone does
not pass. Repeated points (the optimum, checked several times) are evaluated once.

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

__all__ = ["OptimizerResult", "optimize_theta", "check_gradient", "BOBYQA_SETTINGS", "LME4_BOBYQA_SETTINGS"]

_NLOPT_SUCCESS = {
    nlopt.SUCCESS: "success",
    nlopt.FTOL_REACHED: "ftol reached",
    nlopt.XTOL_REACHED: "xtol reached",
    nlopt.STOPVAL_REACHED: "stopval reached",
}


BOBYQA_SETTINGS = {"ftol_abs": 1e-11, "ftol_rel": 1e-13, "xtol_abs": 1e-10, "initial_step": 0.2}
"""NLopt BOBYQA's stopping rules and first step, by default: tight."""

LME4_BOBYQA_SETTINGS = {"ftol_abs": 1e-8, "ftol_rel": 0.0, "xtol_abs": 1e-8, "initial_step": None}
"""lme4's ``nloptwrap`` defaults (``initial_step`` None: NLopt's own, 3/4 of the distance to the
bound or 1). With the same criterion to rounding, BOBYQA then takes lme4's path and ends at
lme4's optimum, also where the deviance has several local optima (maximal crossed models).
The profiled deviance asks for these (:attr:`~bayesmlm.freq.pls.ProfiledDeviance.bobyqa_settings`)."""


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


def _steps(x: np.ndarray, h: float) -> np.ndarray:
    return h * np.maximum(np.abs(x), 1.0)


def _finite_gradient(fun: Callable, x: np.ndarray, lower: np.ndarray, f0: float, h: float = 1e-4):
    """Central-difference gradient (one-sided at a lower bound), with the values it used.

    Returns the gradient, the diagonal of the Hessian from the same points, and
    the values ``f(x + s_i e_i)``, ``f(x - s_i e_i)`` (or ``f(x + 2 s_i e_i)`` at a bound).
    """
    d = len(x)
    grad = np.zeros(d)
    hdiag = np.zeros(d)
    plus = np.zeros(d)
    minus = np.zeros(d)
    steps = _steps(x, h)
    at_bound = x - steps < lower
    for i in range(d):
        e = np.zeros(d)
        e[i] = steps[i]
        if at_bound[i]:
            f1, f2 = fun(x + e), fun(x + 2 * e)
            grad[i] = (-3 * f0 + 4 * f1 - f2) / (2 * steps[i])
            hdiag[i] = (f0 - 2 * f1 + f2) / steps[i] ** 2
            plus[i], minus[i] = f1, f2
        else:
            fp, fm = fun(x + e), fun(x - e)
            grad[i] = (fp - fm) / (2 * steps[i])
            hdiag[i] = (fp - 2 * f0 + fm) / steps[i] ** 2
            plus[i], minus[i] = fp, fm
    return grad, hdiag, plus, minus, at_bound


def _finite_difference(fun: Callable, x: np.ndarray, lower: np.ndarray, h: float = 1e-4):
    """Central-difference gradient and Hessian, one-sided at a lower bound.

    Off-diagonal entries use lme4's ``deriv12`` scheme: two evaluations each,
    ``f(x + s_i e_i + s_j e_j)`` and ``f(x - s_i e_i - s_j e_j)``, with the
    gradient's points (none where either entry sits at its bound).
    """
    f0 = fun(x)
    grad, hdiag, plus, minus, at_bound = _finite_gradient(fun, x, lower, f0, h)
    return grad, _hessian(fun, x, f0, hdiag, plus, minus, at_bound, h)


def _hessian(fun, x, f0, hdiag, plus, minus, at_bound, h: float = 1e-4) -> np.ndarray:
    d = len(x)
    hess = np.diag(hdiag)
    steps = _steps(x, h)
    for i in range(d):
        for j in range(i):
            if at_bound[i] or at_bound[j]:
                continue
            e = np.zeros(d)
            e[i], e[j] = steps[i], steps[j]
            fpp, fmm = fun(x + e), fun(x - e)
            val = (fpp - plus[i] - plus[j] + 2 * f0 - minus[i] - minus[j] + fmm) / (2 * steps[i] * steps[j])
            hess[i, j] = hess[j, i] = val
    return hess


def check_gradient(fun: Callable, theta: np.ndarray, lower: np.ndarray, tol: float = 2e-3) -> tuple[float, bool]:
    """lme4-style convergence check: Hessian-scaled gradient below ``tol``.

    Parameters at a lower bound whose gradient points out of the region are
    excluded (the optimum is on the boundary there). lme4's measure,
    ``max(min(|H^-1/2 g|, |g|))``, is at most ``max|g|``: when the gradient
    alone passes, the Hessian (``d(d-1)`` more evaluations) is not needed and
    ``max|g|`` is returned.
    """
    _, _, value, ok = _check(fun, theta, lower, tol)
    return value, ok


def _scaled_measure(g: np.ndarray, H: np.ndarray) -> float:
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(H), g)
        return float(np.max(np.minimum(np.abs(scaled), np.abs(g))))
    except np.linalg.LinAlgError:
        return float(np.max(np.abs(g)))


def _measure(fun, theta, lower, f0):
    """Gradient, the points it used (for the Hessian) and the check's interior set."""
    grad, hdiag, plus, minus, at_bound = _finite_gradient(fun, theta, lower, f0)
    interior = ~((theta - lower <= 1e-6) & (grad > 0))
    return grad, (hdiag, plus, minus, at_bound), interior


POLISH_ALWAYS_UP_TO = 6
"""With at most this many parameters the Hessian costs a few dozen evaluations, so the Newton
step is always tried: BOBYQA's criterion tolerance leaves theta short of the optimum by up to
1e-4 relative (Pastes: 3e-5) where lme4's answer is closer, which shows in derived numbers."""


def _check(fun: Callable, theta: np.ndarray, lower: np.ndarray, tol: float = 2e-3, polish: bool = False):
    """The convergence check, with an optional Newton step: ``(theta, f, measure, ok)``.

    With ``polish``, when the Hessian is needed (the gradient alone does not pass,
    or there are at most :data:`POLISH_ALWAYS_UP_TO` parameters) and is positive definite over the parameters off their bounds, one Newton step
    ``-H^-1 g`` is tried with it: taken when it lowers the criterion, and the
    check repeated there (the gradient only; the Hessian is reused). BOBYQA stops
    once a step gains less than its tolerance, which on a flat criterion leaves the
    parameters short of the optimum by more than the criterion shows (InstEval:
    3e-6 in theta, 5e-8 in deviance, 1e-5 relative in a fixed effect); the step
    pins the optimum down to the precision of the finite differences.
    """
    f0 = fun(theta)
    if not np.isfinite(f0):
        return theta, f0, np.inf, False
    grad, parts, interior = _measure(fun, theta, lower, f0)
    if not interior.any():
        return theta, f0, 0.0, True
    g = grad[interior]
    gradient_passes = np.max(np.abs(g)) < tol
    if gradient_passes and not (polish and len(theta) <= POLISH_ALWAYS_UP_TO):
        return theta, f0, float(np.max(np.abs(g))), True
    hess = _hessian(fun, theta, f0, *parts)
    value = float(np.max(np.abs(g))) if gradient_passes else _scaled_measure(g, hess[np.ix_(interior, interior)])
    if polish:
        free = theta - lower > 1e-6
        try:
            Hf = hess[np.ix_(free, free)]
            np.linalg.cholesky(Hf)
            step = -np.linalg.solve(Hf, grad[free])
        except np.linalg.LinAlgError:
            step = None
        if step is not None and free.any():
            new = theta.copy()
            new[free] += step
            f1 = fun(new) if np.all(new >= lower) else np.inf
            if f1 < f0:
                grad1, _, interior1 = _measure(fun, new, lower, f1)
                if not interior1.any():
                    return new, f1, 0.0, True
                g1 = grad1[interior1]
                value1 = float(np.max(np.abs(g1)))
                if value1 >= tol:
                    value1 = _scaled_measure(g1, hess[np.ix_(interior1, interior1)])
                return new, f1, value1, value1 < tol
    return theta, f0, value, value < tol


def _snap_to_bounds(fun: Callable, theta: np.ndarray, lower: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Put entries within ``tol`` of their lower bound on it when that is no worse."""
    theta = theta.copy()
    for i in np.flatnonzero(np.isfinite(lower) & (theta - lower < tol)):
        trial = theta.copy()
        trial[i] = lower[i]
        if fun(trial) <= fun(theta):
            theta = trial
    return theta


def _remembered(fun: Callable, known: dict[bytes, float] | None = None) -> Callable:
    """``fun`` that answers repeated points (the optimum, checked several times) from memory,
    which starts with the values ``known`` (by the points' bytes)."""
    memory: dict[bytes, float] = dict(known or {})

    def wrapped(x):
        key = np.asarray(x, dtype=float).tobytes()
        if key not in memory:
            if len(memory) > 256:
                memory.clear()
            memory[key] = fun(x)
        return memory[key]

    return wrapped


class BestSeen:
    """An objective for NLopt that counts its evaluations and keeps the best point it has seen
    (NLopt may stop on a point it evaluated earlier than its last)."""

    def __init__(self, fun: Callable[[np.ndarray], float], x0: np.ndarray):
        self.fun = fun
        self.count = 0
        self.value = np.inf
        self.x = np.asarray(x0, dtype=float).copy()

    def __call__(self, x, grad=None) -> float:
        self.count += 1
        value = self.fun(np.asarray(x, dtype=float))
        if value < self.value:
            self.value, self.x = value, np.array(x, dtype=float)
        return value


def run_bobyqa(objective: BestSeen, x0: np.ndarray, lower: np.ndarray, *, xtol_abs: np.ndarray, ftol_abs: float,
               ftol_rel: float = 0.0, initial_step: np.ndarray | None = None, max_evaluations: int = 20_000) -> int:
    """NLopt's BOBYQA from ``x0`` with ``x >= lower``; returns NLopt's status (the best point is the
    objective's). A stop because BOBYQA cannot improve further (``RoundoffLimited``) counts as success."""
    d = len(x0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, d)
    opt.set_min_objective(objective)
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(np.full(d, np.inf))
    opt.set_ftol_abs(ftol_abs)
    opt.set_ftol_rel(ftol_rel)
    opt.set_xtol_abs(xtol_abs)
    opt.set_maxeval(max_evaluations)
    if initial_step is not None:
        opt.set_initial_step(np.asarray(initial_step, dtype=float))
    try:
        opt.optimize(np.asarray(x0, dtype=float))
        return opt.last_optimize_result()
    except nlopt.RoundoffLimited:
        return nlopt.SUCCESS


def bobyqa_succeeded(status: int) -> bool:
    """Whether an NLopt status means BOBYQA met one of its tolerances."""
    return status in _NLOPT_SUCCESS


def optimize_theta(
    fun: Callable[[np.ndarray], float],
    theta0: np.ndarray,
    lower: np.ndarray,
    max_evaluations: int = 20_000,
    check: bool = True,
    initial_step: np.ndarray | None = None,
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
    initial_step : ndarray, optional
        BOBYQA's first step per entry; by default ``fun.initial_step`` where
        ``fun`` has one (a :class:`~bayesmlm.freq.pls.ProfiledDeviance` started
        at moment estimates), else the settings' step.

    BOBYQA's settings are ``fun.bobyqa_settings`` where ``fun`` has them (the
    profiled deviance: :data:`LME4_BOBYQA_SETTINGS`), else :data:`BOBYQA_SETTINGS`.
    Where ``fun.newton_polish`` is true (the profiled deviance), the check ends
    with a Newton step when it computes the Hessian (see :func:`_check`).
    """
    theta0 = np.asarray(theta0, dtype=float)
    d = len(theta0)
    settings = getattr(fun, "bobyqa_settings", None) or BOBYQA_SETTINGS
    polish = bool(getattr(fun, "newton_polish", False))
    if initial_step is None:
        initial_step = getattr(fun, "initial_step", None)
    if initial_step is None and settings["initial_step"] is not None:
        initial_step = np.full(d, settings["initial_step"])
    objective = BestSeen(fun, theta0)

    messages = []
    status = run_bobyqa(objective, theta0, lower, xtol_abs=np.full(d, settings["xtol_abs"]),
                        ftol_abs=settings["ftol_abs"], ftol_rel=settings["ftol_rel"], initial_step=initial_step,
                        max_evaluations=max_evaluations)
    # BOBYQA never asks for a point twice; what follows does (the optimum, over and over)
    fun = _remembered(fun, {objective.x.tobytes(): objective.value} if np.isfinite(objective.value) else None)
    theta = _snap_to_bounds(fun, objective.x, lower)
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
        theta, value, max_grad, ok = _check(fun, theta, lower, polish=polish)
        if not ok:
            converged = False
            messages.append(
                f"model failed to converge: max|scaled gradient| = {max_grad:.3g} (tolerance 0.002); "
                "centre and scale continuous predictors, or simplify the random-effects structure"
            )
    return OptimizerResult(np.asarray(theta), float(value), objective.count, converged, messages, max_grad)
