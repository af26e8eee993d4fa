"""Kenward-Roger adjusted covariance and degrees of freedom (pbkrtest 0.5).

Kenward & Roger (1997, Biometrics 53, 983-997), as pbkrtest implements it
(Halekoh & Hojsgaard 2014, J. Stat. Softw. 59(9)): the covariance of ``y`` is
``Sigma = sum_r gamma_r G_r`` with one ``G_r = Z (I (x) E_r) Z'`` per variance
or covariance entry of each factor's random-effects covariance and ``I`` for
the residual variance (linear in ``gamma``, so KR's second-derivative term
vanishes). With ``Phi = (X' Sigma^-1 X)^-1``,

    P_r  = -X' Sigma^-1 G_r Sigma^-1 X,
    Q_rs =  X' Sigma^-1 G_r Sigma^-1 G_s Sigma^-1 X,
    W    = 2 [tr(Pr G_r Pr G_s)]^-1           (Pr the REML projection),
    Phi_A = Phi + 2 Phi [sum_rs W_rs (Q_rs - P_r Phi P_s)] Phi.

pbkrtest forms ``Sigma`` (n x n) explicitly. Here every product is taken
from the sufficient statistics instead: with ``U = [Z X]``,
``Sigma^-1 = sigma^-2 (I - Z C Z')``, ``C = Lambda (Lambda'Z'Z Lambda + I)^-1
Lambda'``, so ``Sigma^-k U = U T^k`` for a (q+p)-square ``T`` and every
quantity above is a product of ``U'U`` and ``T``: the cost grows with the
number of random effects, not of rows.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> kr = KenwardRoger(fit)
>>> round(kr.test_1d([0.0, 1.0]).df, 3)
17.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg as la
from scipy import stats

from ..theta import ThetaLayout
from ._blas import blas_threads
from ._cache import cached
from .satterthwaite import FTest, TTest

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["KenwardRoger", "kenward_roger", "KR_DENSE_LIMIT"]

KR_DENSE_LIMIT = 8000
"""Most random effects for which the (dense) Kenward-Roger computation is attempted."""


@dataclass(frozen=True)
class _Param:
    """One covariance parameter: D_r = sum_k e_rows[k] e_cols[k]' (None for the residual)."""

    rows: np.ndarray | None
    cols: np.ndarray | None


def _parameters(fit: "FreqFit") -> list[_Param]:
    design = fit.design
    layout = ThetaLayout.from_design(design)
    out = []
    for k, (block, free) in enumerate(zip(design.blocks, layout.free)):
        base = design.offsets[k] + block.n_cols * np.arange(block.n_levels)
        for i, j in free:  # covariance entries at the template's free positions
            ri, rj = base + i, base + j
            if i == j:
                out.append(_Param(ri, ri))
            else:
                out.append(_Param(np.concatenate([ri, rj]), np.concatenate([rj, ri])))
    out.append(_Param(None, None))
    return out


class KenwardRoger:
    """pbkrtest's ``vcovAdj`` for one REML fit, and the tests built on it.

    Parameters
    ----------
    fit : FreqFit
        A REML fit (Kenward-Roger is defined for REML only, as in lmerTest).

    Attributes
    ----------
    Phi : ndarray (p, p)
        ``vcov(beta)`` of the fit.
    PhiA : ndarray (p, p)
        The adjusted covariance.
    P : list of ndarray
    W : ndarray
        Asymptotic covariance of the covariance parameters (inverse expected REML information).
    """

    def __init__(self, fit: "FreqFit"):
        if not fit.reml:
            raise ValueError("Kenward-Roger's method is only available for REML fits; refit with reml=True")
        design = fit.design
        if design.q > KR_DENSE_LIMIT:
            raise ValueError(
                f"Kenward-Roger needs dense {design.q} x {design.q} matrices here (more than {KR_DENSE_LIMIT} "
                "random effects); use ddf='satterthwaite'"
            )
        with blas_threads(design.q + design.p):
            self._compute(fit)

    def _compute(self, fit: "FreqFit") -> None:
        design = fit.design
        s = design.sufficient_stats()
        q, p = design.q, design.p
        sigma2 = fit.sigma**2
        layout = ThetaLayout.from_design(design)
        rows, cols, entry = layout.lambda_positions([b.n_levels for b in design.blocks])
        theta = fit.theta
        index = np.concatenate([e + layout.offsets[k] for k, e in enumerate(entry)])
        Lam = np.zeros((q, q))
        Lam[rows, cols] = theta[index]
        ZtZ = s.ZtZ.toarray()
        ZtX = np.asarray(s.ZtX)
        A = Lam.T @ ZtZ @ Lam + np.eye(q)
        cf = la.cho_factor(A, lower=True)
        C = Lam @ la.cho_solve(cf, Lam.T)
        # K = U'U, U = [Z X]; T = sigma^-2 (I - E_Z C [Z'Z Z'X])
        K = np.block([[ZtZ, ZtX], [ZtX.T, s.XtX]])
        T = np.eye(q + p)
        T[:q, :] -= C @ K[:q, :]
        T /= sigma2
        KT = K @ T
        KT2 = T.T @ KT  # U' Sigma^-2 U (symmetric form)
        KT3 = T.T @ KT @ T  # U' Sigma^-3 U
        z, x = slice(0, q), slice(q, q + p)
        M = KT[z, z]  # Z' Sigma^-1 Z
        F = KT[z, x]  # Z' Sigma^-1 X
        ZS2Z, ZS2X, XS2X = KT2[z, z], KT2[z, x], KT2[x, x]
        XS3X = KT3[x, x]
        CZ = C @ ZtZ
        tr_S2 = (s.n - 2.0 * np.trace(CZ) + np.sum(CZ * CZ.T)) / sigma2**2

        params = _parameters(fit)
        m = len(params)
        Phi = fit.vcov().to_numpy()
        P = []
        for r in params:
            P.append(-XS2X if r.rows is None else -(F[r.rows].T @ F[r.cols]))
        Q = {}
        Ktrace = np.zeros((m, m))
        for a, r in enumerate(params):
            for b in range(a, m):
                s_ = params[b]
                if r.rows is not None and s_.rows is not None:
                    Q[a, b] = F[r.rows].T @ M[np.ix_(r.cols, s_.rows)] @ F[s_.cols]
                    Ktrace[a, b] = np.sum(M[np.ix_(r.cols, s_.rows)] * M[np.ix_(r.rows, s_.cols)])
                elif r.rows is not None:  # s is the residual
                    Q[a, b] = F[r.rows].T @ ZS2X[r.cols]
                    Ktrace[a, b] = np.sum(ZS2Z[r.cols, r.rows])
                elif s_.rows is not None:  # r is the residual
                    Q[a, b] = ZS2X[s_.rows].T @ F[s_.cols]
                    Ktrace[a, b] = np.sum(ZS2Z[s_.cols, s_.rows])
                else:
                    Q[a, b] = XS3X
                    Ktrace[a, b] = tr_S2
                Ktrace[b, a] = Ktrace[a, b]
        IE2 = np.zeros((m, m))
        for a in range(m):
            PhiPa = Phi @ P[a]
            for b in range(a, m):
                IE2[a, b] = IE2[b, a] = Ktrace[a, b] - 2.0 * np.sum(Phi * Q[a, b]) + np.sum(PhiPa * (P[b] @ Phi))
        eig = np.linalg.eigvalsh(IE2)
        self.condition = float(np.min(np.abs(eig)))
        W = 2.0 * (np.linalg.inv(IE2) if self.condition > 1e-10 else np.linalg.pinv(IE2))
        W = (W + W.T) / 2.0
        U = np.zeros((p, p))
        for a in range(m - 1):
            for b in range(a + 1, m):
                U += W[a, b] * (Q[a, b] - P[a] @ Phi @ P[b])
        U = U + U.T
        for a in range(m):
            U += W[a, a] * (Q[a, a] - P[a] @ Phi @ P[a])
        self.Phi = Phi
        self.PhiA = Phi + 2.0 * Phi @ U @ Phi
        self.P = [(Pa + Pa.T) / 2.0 for Pa in P]
        self.W = W
        self.beta = fit.fixef().to_numpy()

    # -- tests ---------------------------------------------------------------------------
    def _A12(self, L: np.ndarray) -> tuple[float, float]:
        Theta = L.T @ np.linalg.solve(L @ self.Phi @ L.T, L)
        TP = Theta @ self.Phi
        us = [TP @ Pa @ self.Phi for Pa in self.P]
        A1 = A2 = 0.0
        m = len(us)
        for a in range(m):
            for b in range(a, m):
                e = 1.0 if a == b else 2.0
                A1 += e * self.W[a, b] * np.trace(us[a]) * np.trace(us[b])
                A2 += e * self.W[a, b] * np.sum(us[a] * us[b].T)
        return A1, A2

    def _adjust(self, L: np.ndarray) -> tuple[int, float, float]:
        """Numerator df, denominator df and F scaling (pbkrtest's ``.KR_adjust``)."""
        q = int(np.linalg.matrix_rank(L))
        A1, A2 = self._A12(L)
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        c1 = g / (3 * q + 2 * (1 - g))
        c2 = (q - g) / (3 * q + 2 * (1 - g))
        c3 = (q + 2 - g) / (3 * q + 2 * (1 - g))
        V0 = 1 + c1 * B
        V1 = 1 - c2 * B
        V2 = 1 - c3 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        x, y = 1 - A2 / q, V1
        ratio = 1.0 if abs(x) < 1e-14 and abs(y) < 1e-14 else x / y
        rho = ratio**2 * V0 / V2 / q
        df2 = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(df2 - 2) < 1e-2 else df2 * (1 - A2 / q) / (df2 - 2)
        return q, float(df2), float(scaling)

    def test_1d(self, L) -> TTest:
        """t test with the adjusted SE and KR df (lmerTest's ``contest1D(ddf="KR")``)."""
        L = np.asarray(L, dtype=float).ravel()
        _, df, _ = self._adjust(L[None, :])
        estimate = float(L @ self.beta)
        se = float(np.sqrt(L @ self.PhiA @ L))
        t = estimate / se
        return TTest(estimate, se, df, t, float(2.0 * stats.t.sf(abs(t), df)))

    def test_md(self, L) -> FTest:
        """Scaled F test (pbkrtest's ``KRmodcomp``, as lmerTest's anova reports it)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q, df, scaling = self._adjust(L)
        Lb = L @ self.beta
        wald = float(Lb @ np.linalg.solve(L @ self.PhiA @ L.T, Lb))
        F = scaling * wald / q
        return FTest(q, df, F, float(stats.f.sf(F, q, df)))


def kenward_roger(fit: "FreqFit") -> KenwardRoger:
    """The (cached) Kenward-Roger adjustment of a fit."""
    return cached(fit, "kenward_roger", lambda: KenwardRoger(fit))
