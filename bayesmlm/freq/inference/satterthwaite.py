"""Satterthwaite degrees of freedom for t and F tests of fixed effects (lmerTest).

Following lmerTest 3.1 (Kuznetsova, Brockhoff & Christensen 2017, J. Stat.
Softw. 82(13)): the variance parameters are ``varpar = (theta, sigma)``; their
asymptotic covariance is twice the inverse Hessian of the deviance (REML
criterion for REML fits, -2 log-likelihood for ML fits) written as a function
of ``varpar`` (lmerTest's ``devfun_vp``), and ``vcov(beta)`` is differentiated
with respect to ``varpar`` (``get_covbeta``). Both derivatives use numDeriv's
Richardson extrapolation. For a contrast ``L``:

    df = 2 (L' C L)^2 / (g' A g),   g_i = L' (d C / d varpar_i) L,

with ``C = vcov(beta)`` and ``A = vcov(varpar)``. A multi-row ``L`` is split
into independent 1-df contrasts by the eigen-decomposition of ``L C L'`` and
their df combined as lmerTest's ``get_Fstat_ddf`` does.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> s = Satterthwaite(fit)
>>> round(s.test_1d([0.0, 1.0]).df, 2)
17.0
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from ..pls import ProfiledDeviance
from ._blas import blas_threads
from ._cache import cached, is_cached
from .derivatives import richardson_hessian, richardson_jacobian

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["Satterthwaite", "satterthwaite", "satterthwaite_if_quick", "TTest", "FTest", "fstat_ddf"]

_LOG_2PI = np.log(2.0 * np.pi)


@dataclass(frozen=True)
class TTest:
    """A 1-df test of ``L' beta = 0``."""

    estimate: float
    se: float
    df: float
    t: float
    p: float


@dataclass(frozen=True)
class FTest:
    """A multi-df test of ``L beta = 0``."""

    num_df: int
    den_df: float
    F: float
    p: float


def fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Denominator df of an F statistic made of independent t statistics (lmerTest's ``get_Fstat_ddf``).

    Examples
    --------
    >>> fstat_ddf(np.array([10.0, 10.0])), round(fstat_ddf(np.array([5.0, 20.0])), 4)
    (10.0, 7.1429)
    """
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


def varpar_deviance(dev: ProfiledDeviance, reml: bool):
    """lmerTest's ``devfun_vp``: the deviance as a function of ``(theta, sigma)``."""
    n, p = dev.n, dev.p

    def fun(varpar: np.ndarray) -> float:
        try:
            sol = dev.solve(varpar[:-1])
        except np.linalg.LinAlgError:
            return np.nan
        s2 = varpar[-1] ** 2
        value = sol.logdet_L + sol.pwrss / s2 + n * (_LOG_2PI + np.log(s2))
        if reml:
            value += sol.logdet_RX - p * (_LOG_2PI + np.log(s2))
        return float(value)

    return fun


class Satterthwaite:
    """lmerTest's ingredients for one fit: ``vcov(varpar)`` and the Jacobian of ``vcov(beta)``.

    Parameters
    ----------
    fit : FreqFit

    Attributes
    ----------
    varpar : ndarray
        ``(theta, sigma)`` at the estimates.
    hessian : ndarray
        Hessian of the deviance with respect to ``varpar``.
    vcov_varpar : ndarray
        ``2 H^+`` (Moore-Penrose inverse over positive eigenvalues).
    jacobian : ndarray (k, p, p)
        ``d vcov(beta) / d varpar_i``.
    messages : list of str
        Warnings about a Hessian that is not positive definite.
    """

    def __init__(self, fit: "FreqFit", tol: float = 1e-8, dev: ProfiledDeviance | None = None):
        design = fit.design
        if dev is None:
            dev = ProfiledDeviance.from_design(design, reml=fit.reml, stats=design.sufficient_stats())
        with blas_threads(dev.m):
            self._compute(fit, dev, tol)

    def _compute(self, fit: "FreqFit", dev: ProfiledDeviance, tol: float) -> None:
        self.varpar = np.concatenate([fit.theta, [fit.sigma]])
        self.beta = fit.fixef().to_numpy()
        self.vcov_beta = fit.vcov().to_numpy()
        self.sigma = fit.sigma
        self.hessian = richardson_hessian(varpar_deviance(dev, fit.reml), self.varpar)
        self.messages: list[str] = []
        if not np.all(np.isfinite(self.hessian)):
            raise np.linalg.LinAlgError("the deviance could not be evaluated around the estimates")
        values, vectors = np.linalg.eigh(self.hessian)
        neg, zero = values < -tol, np.abs(values) <= tol
        if neg.any():
            self.messages.append(
                f"Model failed to converge with {neg.sum()} negative eigenvalue(s) of the deviance Hessian: "
                + " ".join(f"{v:.1e}" for v in values[neg])
            )
        if zero.any():
            self.messages.append(
                f"Model may not have converged with {zero.sum()} eigenvalue(s) of the deviance Hessian close to zero: "
                + " ".join(f"{v:.1e}" for v in values[zero])
            )
        for message in self.messages:
            warnings.warn(message, stacklevel=3)
        pos = values > tol
        self.vcov_varpar = 2.0 * (vectors[:, pos] / values[pos]) @ vectors[:, pos].T
        p = len(self.beta)

        def covbeta(varpar: np.ndarray) -> np.ndarray:
            RX = dev.solve(varpar[:-1]).RX
            RXinv = np.linalg.inv(RX)
            return (varpar[-1] ** 2 * (RXinv.T @ RXinv)).ravel()

        J = richardson_jacobian(covbeta, self.varpar)
        self.jacobian = np.stack([J[:, i].reshape(p, p) for i in range(J.shape[1])])

    def test_1d(self, L) -> TTest:
        """t test of ``L' beta = 0`` with Satterthwaite's df (lmerTest's ``contest1D``)."""
        L = np.asarray(L, dtype=float).ravel()
        estimate = float(L @ self.beta)
        var = float(L @ self.vcov_beta @ L)
        grad = np.einsum("i,kij,j->k", L, self.jacobian, L)
        df = 2.0 * var**2 / float(grad @ self.vcov_varpar @ grad)
        se = np.sqrt(var)
        t = estimate / se
        return TTest(estimate, float(se), float(df), float(t), float(2.0 * stats.t.sf(abs(t), df)))

    def test_md(self, L, eps: float = np.sqrt(np.finfo(float).eps)) -> FTest:
        """F test of ``L beta = 0`` with Satterthwaite's df (lmerTest's ``contestMD``)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if L.shape[0] == 1:
            res = self.test_1d(L[0])
            return FTest(1, res.df, res.t**2, float(stats.f.sf(res.t**2, 1, res.df)))
        VL = L @ self.vcov_beta @ L.T
        values, vectors = np.linalg.eigh(VL)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        tol = max(eps * values[0], 0.0)
        q = int(np.sum(values > tol))
        if q == 0:
            return FTest(0, np.nan, np.nan, np.nan)
        PtL = vectors.T @ L
        if q == 1:
            res = self.test_1d(PtL[0])
            return FTest(1, res.df, res.t**2, float(stats.f.sf(res.t**2, 1, res.df)))
        PtL, d = PtL[:q], values[:q]
        t2 = (PtL @ self.beta) ** 2 / d
        F = float(t2.sum() / q)
        grads = np.einsum("mi,kij,mj->mk", PtL, self.jacobian, PtL)
        nu = 2.0 * d**2 / np.einsum("mk,kl,ml->m", grads, self.vcov_varpar, grads)
        ddf = fstat_ddf(nu)
        return FTest(q, ddf, F, float(stats.f.sf(F, q, ddf)))


def satterthwaite(fit: "FreqFit") -> Satterthwaite:
    """The (cached) Satterthwaite ingredients of a fit."""
    return cached(fit, "satterthwaite", lambda: Satterthwaite(fit))


def evaluations(k: int, r: int = 4) -> int:
    """Deviance evaluations for ``k`` variance parameters: Hessian plus Jacobian (numDeriv's counts)."""
    return 1 + 2 * r * k + r * k * (k - 1) + 2 * r * k


def satterthwaite_if_quick(fit: "FreqFit", budget_s: float = 3.0) -> Satterthwaite | None:
    """The Satterthwaite ingredients when they take under ``budget_s`` seconds (timed on one evaluation), else None.

    Used by ``summary()``, which should stay quick for large models.
    """
    if is_cached(fit, "satterthwaite"):
        return satterthwaite(fit)
    design = fit.design
    dev = ProfiledDeviance.from_design(design, reml=fit.reml, stats=design.sufficient_stats())
    with blas_threads(dev.m):
        start = time.perf_counter()
        dev.solve(fit.theta)
        elapsed = time.perf_counter() - start
    if elapsed * evaluations(len(fit.theta) + 1) > budget_s:
        return None
    return cached(fit, "satterthwaite", lambda: Satterthwaite(fit, dev=dev))
