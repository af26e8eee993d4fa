"""lme4's two-stage glmer optimisation on top of PIRLS (``optimizeGlmer``, ``glmer.nb``).

Hand-written after lme4's ``glmer``: stage 1 optimises ``theta`` alone with the
fixed effects inside PIRLS (``nAGQ = 0``), stage 2 optimises ``(theta, beta)``
jointly on the Laplace (``nAGQ = 1``) or adaptive Gauss-Hermite deviance,
starting from stage 1, by NLopt's BOBYQA (lme4 uses Nelder-Mead there; the
optimum is the same and is checked against lme4's). Every evaluation of a stage
starts PIRLS from the same linear predictor (lme4's ``lp0``), so the deviance
is a deterministic, smooth function of the parameters. At the optimum the
gradient and Hessian are taken by lme4's central differences (``deriv12``,
step 1e-4) for the convergence check and, as lme4's default
``use.hessian = TRUE``, for the covariance of the fixed effects.

The negative binomial (lme4's ``glmer.nb``) starts from a Poisson fit and
MASS's ``theta.ml`` for the dispersion ``phi``, then optimises ``log(phi)``
jointly with ``(theta, beta)``; the Hessian is taken at the optimal ``phi``,
held fixed, as lme4's final ``glmer`` fit does.

Examples
--------
>>> import numpy as np
>>> H = deriv12(lambda x: float(x @ x), np.array([1.0, 2.0]))[1]
>>> (H.round(6) + 0.0).tolist()
[[2.0, 0.0], [0.0, 2.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from ..families import Family, NegativeBinomial
from .optimize import BestSeen, bobyqa_succeeded, optimize_theta, run_bobyqa
from .pirls import PirlsEngine, PirlsState, gauss_hermite

__all__ = ["GlmerSolution", "fit_glmm", "deriv12", "theta_ml"]


@dataclass
class GlmerSolution:
    """Everything the optimisation found (the raw material of a GlmerFit)."""

    theta: np.ndarray
    beta: np.ndarray
    state: PirlsState
    deviance: float
    vcov: np.ndarray
    vcov_source: str
    family: Family
    nAGQ: int
    converged: bool
    messages: list[str] = field(default_factory=list)
    evaluations: int = 0
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None
    max_grad: float = 0.0


def deriv12(fun, x: np.ndarray, delta: float = 1e-4, fx: float | None = None, lower: np.ndarray | None = None):
    """Central-difference gradient and Hessian, lme4's ``deriv12`` (steps clipped at lower bounds).

    Returns
    -------
    gradient : ndarray
    hessian : ndarray
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    fx = fun(x) if fx is None else fx
    up = np.full(n, delta)
    dn = np.full(n, delta)
    if lower is not None:
        clip = np.isfinite(lower) & (x - delta < lower)
        dn[clip] = x[clip] - lower[clip]
    H = np.zeros((n, n))
    g = np.zeros(n)

    def at(changes):
        z = x.copy()
        for i, v in changes:
            z[i] = v
        return fun(z)

    for j in range(n):
        fadd = at([(j, x[j] + up[j])])
        fsub = at([(j, x[j] - dn[j])])
        if dn[j] > 0:
            H[j, j] = fadd / up[j] ** 2 - 2 * fx / (up[j] * dn[j]) + fsub / dn[j] ** 2
        else:  # on the bound: one-sided
            f2 = at([(j, x[j] + 2 * up[j])])
            H[j, j] = (fx - 2 * fadd + f2) / up[j] ** 2
        g[j] = (fadd - fsub) / (up[j] + dn[j])
        for i in range(j):
            H[i, j] = H[j, i] = (
                at([(i, x[i] + up[i]), (j, x[j] + up[j])]) / (up[i] + up[j]) ** 2
                - at([(i, x[i] + up[i]), (j, x[j] - dn[j])]) / (up[i] + dn[j]) ** 2
                - at([(i, x[i] - dn[i]), (j, x[j] + up[j])]) / (dn[i] + up[j]) ** 2
                + at([(i, x[i] - dn[i]), (j, x[j] - dn[j])]) / (dn[i] + dn[j]) ** 2
            )
    return g, H


def theta_ml(y: np.ndarray, mu: np.ndarray, wt: np.ndarray | None = None, limit: int = 10) -> float:
    """MASS's ``theta.ml``: the negative binomial ``phi`` by Newton's method for fixed means.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> y = rng.negative_binomial(2.0, 2.0 / (2.0 + 3.0), size=4000).astype(float)
    >>> round(theta_ml(y, np.full(4000, y.mean())), 1)
    2.0
    """
    y = np.asarray(y, dtype=float)
    mu = np.asarray(mu, dtype=float)
    w = np.ones_like(y) if wt is None else np.asarray(wt, dtype=float)
    n = w.sum()
    t0 = n / np.sum(w * (y / mu - 1.0) ** 2)
    eps = np.finfo(float).eps ** 0.25
    for _ in range(limit * 5):
        t0 = abs(t0)
        score = np.sum(w * (special.digamma(t0 + y) - special.digamma(t0) + np.log(t0) + 1 - np.log(t0 + mu) - (y + t0) / (mu + t0)))
        info = np.sum(w * (-special.polygamma(1, t0 + y) + special.polygamma(1, t0) - 1 / t0 + 2 / (mu + t0) - (y + t0) / (mu + t0) ** 2))
        delta = score / info
        t0 = t0 + delta
        if abs(delta) <= eps:
            break
    return float(max(t0, 1e-8))


STAGE2_XTOL = 1e-6
"""BOBYQA stops when its trust region is this fraction of the initial steps (0.02 for theta,
0.2 SE for beta): about 1e-7 SE, far inside lme4's own Nelder-Mead tolerance."""

FTOL = 1e-8
"""Stage-2 BOBYQA also stops when a step improves the deviance by less than this: a change of
1e-8 in -2 log-likelihood is a parameter change of about 1e-4 SE."""


def _bobyqa(fun, x0: np.ndarray, lower: np.ndarray, steps: np.ndarray, max_evaluations: int = 20_000,
            xtol: float = STAGE2_XTOL):
    """Minimise with per-coordinate initial steps; returns (x, value, evaluations, ok, status)."""
    objective = BestSeen(fun, x0)
    status = run_bobyqa(objective, np.clip(np.asarray(x0, dtype=float), lower, None), lower, xtol_abs=steps * xtol,
                        ftol_abs=FTOL, initial_step=steps, max_evaluations=max_evaluations)
    return objective.x, objective.value, objective.count, bobyqa_succeeded(status), status


def _rx_vcov(RX: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(RX)
    return inv.T @ inv


def _has_scale(family: Family) -> bool:
    """lme4 scales the R_X covariance by ``sigma^2`` for the Gamma (not for the negative binomial)."""
    return family.has_dispersion and not isinstance(family, NegativeBinomial)


def _sigma_ml(eng: PirlsEngine, st: PirlsState) -> float:
    """lme4's ``sigmaML = sqrt(pwrss / n)`` with the Pearson ``wrss``."""
    fam = eng.family
    wrss = float(np.sum(eng.wt * (eng.y - st.mu) ** 2 / fam.variance(st.mu)))
    return float(np.sqrt((wrss + st.sqr_u) / eng.n))


def _stage2(eng: PirlsEngine, theta0, beta0, se0, lower_theta, nAGQ: int, lp0, messages, fit_phi: bool, phi0: float):
    nt = len(theta0)
    nodes = gauss_hermite(nAGQ) if nAGQ > 1 else None
    nb_link = eng.family.link

    def devfun(par, start=lp0):
        theta, beta = par[:nt], par[nt : nt + eng.p]
        if fit_phi:
            eng.family = NegativeBinomial(nb_link, float(np.exp(par[-1])))
        if nodes is None:
            return eng.laplace(theta, beta, start)[0]
        return eng.agq(theta, beta, nodes, start)[0]

    par0 = np.concatenate([theta0, beta0] + ([[np.log(phi0)]] if fit_phi else []))
    lower = np.concatenate([lower_theta, np.full(eng.p + int(fit_phi), -np.inf)])
    steps = np.concatenate([np.full(nt, 0.02), 0.2 * np.maximum(se0, 1e-6)] + ([[0.1]] if fit_phi else []))
    if len(par0) == 1:
        res = optimize_theta(devfun, par0, lower, check=False)
        par, ok, evals = res.theta, res.converged, res.evaluations
    else:
        par, _, evals, ok, status = _bobyqa(devfun, par0, lower, steps)
        if not ok:
            messages.append(
                f"the optimiser stopped with NLopt status {status} before meeting its tolerances; "
                "centre and scale continuous predictors, or simplify the random effects"
            )
    # lme4's check.boundary: thetas within 1e-5 of their bound go onto it when that is no worse
    fval = devfun(par)
    for i in np.flatnonzero(np.isfinite(lower) & (par - lower < 1e-5) & (par > lower)):
        trial = par.copy()
        trial[i] = lower[i]
        value = devfun(trial)
        if value <= fval:
            par, fval = trial, value
    if fit_phi:
        eng.family = NegativeBinomial(nb_link, float(np.exp(par[-1])))
        par = par[:-1]
        lower = lower[:-1]
    return par, lower, evals, ok, (lambda x, start: (eng.laplace(x[:nt], x[nt:], start) if nodes is None
                                                     else eng.agq(x[:nt], x[nt:], nodes, start)))


def _gradient(fun, x: np.ndarray, lower: np.ndarray, delta: float = 1e-4) -> np.ndarray:
    """Central differences with :func:`deriv12`'s steps (clipped at lower bounds)."""
    g = np.zeros(len(x))
    for j in range(len(x)):
        dn = min(delta, x[j] - lower[j]) if np.isfinite(lower[j]) else delta
        up, down = x.copy(), x.copy()
        up[j] += delta
        down[j] -= dn
        g[j] = (fun(up) - fun(down)) / (delta + dn)
    return g


def _scaled_gradient(g, H, par, lower) -> float:
    """lme4's checkConv: ``max(min(|chol(H)^-1 g|, |g|))`` over parameters not held at a bound."""
    on_bound = np.isfinite(lower) & (par - lower <= 1e-6)
    keep = ~(on_bound & (g > 0))
    if not keep.any():
        return 0.0
    gk, Hk = g[keep], H[np.ix_(keep, keep)]
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(Hk), gk)
        return float(np.max(np.minimum(np.abs(scaled), np.abs(gk))))
    except np.linalg.LinAlgError:
        return float(np.max(np.abs(gk)))


def _hessian_checks(dev_at, par, lower, nt, messages):
    """lme4's checkConv on the finite-difference gradient and Hessian; the Hessian-based vcov.

    When the scaled gradient is not negligible, one Newton step (free parameters only) is taken
    and kept if it lowers the deviance: derivative-free optimisers stop a little short on
    lme4's slightly rough deviance function, and the step finishes the job at the cost of one
    gradient.
    """
    f0 = dev_at(par)
    g, H = deriv12(dev_at, par, fx=f0, lower=lower)
    max_grad = _scaled_gradient(g, H, par, lower)
    if max_grad > 1e-4:
        free = ~(np.isfinite(lower) & (par - lower <= 1e-6) & (g > 0))
        try:
            step = np.zeros_like(par)
            step[free] = np.linalg.solve(H[np.ix_(free, free)], g[free])
            trial = np.maximum(par - step, lower)
            if dev_at(trial) < f0:
                par = trial
                g = _gradient(dev_at, par, lower)
                max_grad = _scaled_gradient(g, H, par, lower)
        except np.linalg.LinAlgError:
            pass
    on_bound = np.isfinite(lower) & (par - lower <= 1e-6)
    converged = max_grad < 2e-3
    if not converged:
        messages.append(
            f"model failed to converge: max|scaled gradient| = {max_grad:.3g} (tolerance 0.002); centre and scale "
            "continuous predictors, or simplify the random-effects structure"
        )
    ev = np.linalg.eigvalsh(H[np.ix_(~on_bound, ~on_bound)]) if (~on_bound).any() else np.array([1.0])
    if np.any(ev < 0):
        converged = False
        messages.append(
            f"model failed to converge: the Hessian of the deviance has {int(np.sum(ev < 0))} negative eigenvalue(s) "
            "(a saddle point or a flat direction); simplify the model or rescale predictors"
        )
    elif ev.max() > 0 and ev.min() / ev.max() < 1e-6:
        messages.append(
            "model is nearly unidentifiable: very large eigenvalue ratio of the Hessian; rescale (centre and "
            "scale) continuous predictors"
        )
    vcov, source = None, "RX"
    try:
        inv = np.linalg.inv(H)
        Vb = inv[nt:, nt:]
        Vb = Vb + Vb.T
        if np.all(np.isfinite(Vb)) and np.linalg.eigvalsh(Vb).min() > 0:
            vcov, source = Vb, "hessian"
    except np.linalg.LinAlgError:
        pass
    return par, g, H, max_grad, converged, vcov, source


def fit_glmm(
    eng: PirlsEngine,
    theta0: np.ndarray,
    lower_theta: np.ndarray,
    nAGQ: int = 1,
    fit_phi: bool = False,
    use_hessian: bool = True,
) -> GlmerSolution:
    """Fit by lme4's stages: nAGQ=0 over theta, then (theta, beta) on the Laplace/AGQ deviance.

    Parameters
    ----------
    eng : PirlsEngine
    theta0, lower_theta : ndarray
        Starting values (lme4: identity templates) and lower bounds of theta.
    nAGQ : int
        0 (stop after stage 1), 1 (Laplace) or more (adaptive Gauss-Hermite).
    fit_phi : bool
        Estimate the negative binomial ``phi`` too (``eng.family`` must be a
        Poisson family with the link to use; glmer.nb starts from it).
    """
    messages: list[str] = []
    start = eng.pirls(theta0, None)  # lme4's initial PIRLS from mustart at the starting theta
    lp_init = start.eta

    def stage1(theta):
        return eng.laplace(theta, None, lp_init)[0]

    res1 = optimize_theta(stage1, theta0, lower_theta, check=(nAGQ == 0 and not fit_phi))
    st1 = eng.pirls(res1.theta, None, lp_init)
    evaluations = res1.evaluations
    _, _, RX1 = eng.joint_factor(res1.theta, st1)
    V1 = _rx_vcov(RX1)
    if nAGQ == 0 and not fit_phi:
        messages += res1.messages
        scale = _sigma_ml(eng, st1) ** 2 if _has_scale(eng.family) else 1.0
        return GlmerSolution(res1.theta, st1.beta, st1, st1.laplace, scale * V1, "RX", eng.family, 0,
                             res1.converged, messages, evaluations)
    phi0 = 1.0
    if fit_phi:
        # glmer.nb: Poisson fit first, then theta.ml on its fitted means
        par, lower, ev, _, _ = _stage2(eng, res1.theta, st1.beta, np.sqrt(np.diag(V1)), lower_theta, 1,
                                       st1.eta, [], False, 1.0)
        evaluations += ev
        nt = len(theta0)
        st_p = eng.pirls(par[:nt], par[nt:], st1.eta)
        phi0 = theta_ml(eng.y, st_p.mu, eng.wt)
        eng.family = NegativeBinomial(eng.family.link, phi0)
        res_theta, beta_start, lp0 = par[:nt], par[nt:], st_p.eta
        se_start = np.sqrt(np.diag(V1))
    else:
        res_theta, beta_start, lp0, se_start = res1.theta, st1.beta, st1.eta, np.sqrt(np.diag(V1))
    par, lower, ev, ok, dev_at = _stage2(eng, res_theta, beta_start, se_start, lower_theta, max(nAGQ, 1), lp0,
                                         messages, fit_phi, phi0)
    evaluations += ev
    nt = len(theta0)
    value, st = dev_at(par, lp0)
    converged = ok
    g = H = None
    max_grad = 0.0
    vcov, source = None, "RX"
    if use_hessian:
        par, g, H, max_grad, conv_h, vcov, source = _hessian_checks(lambda x: dev_at(x, lp0)[0], par, lower, nt, messages)
        converged = converged and conv_h
        if vcov is None:
            messages.append(
                "the covariance of the fixed effects from the finite-difference Hessian is not positive definite; "
                "it is taken from the PIRLS factor (R_X) instead, as lme4 falls back"
            )
    if vcov is None:
        _, _, RX = eng.joint_factor(par[:nt], st)
        scale = _sigma_ml(eng, st) ** 2 if _has_scale(eng.family) else 1.0
        vcov = scale * _rx_vcov(RX)
    value, st = dev_at(par, lp0)  # leave the engine at the optimum
    if not st.converged:
        converged = False
        messages.append(
            "PIRLS (the inner loop for the group effects) did not converge at the optimum; check for extreme "
            "predictor values or a response that one predictor nearly determines"
        )
    return GlmerSolution(par[:nt], par[nt:], st, value, vcov, source, eng.family, max(nAGQ, 1), converged,
                         messages, evaluations, g, H, max_grad)
