"""lme4's profiled deviance by penalized least squares (the "pls" engine).

Hand-written: no maintained Python library implements lme4's algorithm
(Bates, Maechler, Bolker & Walker 2015, J. Stat. Softw. 67(1)). For a theta,
the system

    [ L'Z'Z L + I   L'Z'X   L'Z'y ]
    [ X'Z L         X'X     X'y   ]      (L = Lambda(theta))
    [ y'Z L         y'X     y'y   ]

is factored by a blocked Cholesky decomposition. Following MixedModels.jl, the
first random-effects block (the factor with most levels) has a block-diagonal
cross-product, so its factor is a batch of small Cholesky factors; only the
Schur complement of everything else is dense. Small models (``q`` up to
``DENSE_LIMIT``) skip the split and factor one dense matrix, which avoids
sparse-matrix overhead where it would dominate. The penalized residual sum of
squares is the square of the last diagonal entry of the factor, and the
profiled ML or REML criterion follows in closed form. Only the sufficient
statistics enter, so the cost of one evaluation does not depend on ``n``.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> dev = ProfiledDeviance.from_design(d, reml=True)
>>> round(dev([0.966741773967412, 0.0151690588960361, 0.230909953207795]), 4)
1743.6283
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..design import Design
from ..stats import SufficientStats
from .theta import ThetaLayout

__all__ = ["ProfiledDeviance", "PLSSolution", "DENSE_LIMIT"]

DENSE_LIMIT = 400
"""Models with at most this many random effects are factored as one dense matrix."""

_LOG_2PI = np.log(2.0 * np.pi)


@dataclass(frozen=True)
class PLSSolution:
    """Everything lme4 derives from the factorization at one theta.

    Attributes
    ----------
    theta : ndarray
    deviance : float
        REML criterion or ML deviance (-2 log-likelihood).
    beta : ndarray (p,)
    b : ndarray (q,)
        Conditional modes of the random effects, ``Lambda u``.
    pwrss : float
        Penalized residual sum of squares ``|y - X beta - Z b|^2 + |u|^2``.
    sigma : float
    logdet_L : float
        ``log |L_Z|^2``.
    logdet_RX : float
        ``log |R_X|^2``.
    RX : ndarray (p, p)
        Lower Cholesky factor of the fixed-effects Schur complement;
        ``vcov(beta) = sigma^2 (RX RX')^{-1}``.
    """

    theta: np.ndarray
    deviance: float
    beta: np.ndarray
    b: np.ndarray
    pwrss: float
    sigma: float
    logdet_L: float
    logdet_RX: float
    RX: np.ndarray

    @property
    def vcov(self) -> np.ndarray:
        RXinv = la.solve_triangular(self.RX, np.eye(self.RX.shape[0]), lower=True)
        return self.sigma**2 * (RXinv.T @ RXinv)


def _block_diag_sparse(blocks: np.ndarray) -> sp.csr_matrix:
    """Sparse block-diagonal matrix from an (l, p, p) stack of blocks."""
    l, p, _ = blocks.shape
    return sp.bsr_matrix((blocks, np.arange(l), np.arange(l + 1)), shape=(l * p, l * p)).tocsr()


def _lambda_sparse(T: np.ndarray, n_levels: int) -> sp.csr_matrix:
    """kron(I_levels, T) without Python loops."""
    return _block_diag_sparse(np.broadcast_to(T, (n_levels, *T.shape)).copy())


class ProfiledDeviance:
    """Callable ``theta -> deviance`` with the blocked factorization behind it.

    The analogue of lme4's ``mkLmerDevfun``: build it once from a design, call
    it from any optimiser, and ask :meth:`solve` for the full solution at the
    optimum.

    Parameters
    ----------
    stats : SufficientStats
    layout : ThetaLayout
    levels : sequence of int
        Number of levels of each block.
    reml : bool
    """

    def __init__(self, stats: SufficientStats, layout: ThetaLayout, levels: list[int], reml: bool = True):
        self.layout = layout
        self.reml = reml
        self.levels = list(levels)
        self.n = stats.n
        self.p = stats.XtX.shape[0]
        sizes = layout.sizes
        q = stats.ZtZ.shape[0]
        # the first block is split off (block-diagonal batch) only when the model is large
        self.split_first = q > DENSE_LIMIT
        self.q1 = levels[0] * sizes[0] if self.split_first else 0
        self.q_rest = q - self.q1
        p1 = sizes[0] if self.split_first else 1
        first = 1 if self.split_first else 0
        self._rest_blocks = list(range(first, len(levels)))

        ZtZ = stats.ZtZ.tocsc()
        top = ZtZ[: self.q1, : self.q1].tocoo()
        # the first block's cross-product is block diagonal: keep its (l, p1, p1) blocks
        self.A11 = np.zeros((levels[0] if self.split_first else 0, p1, p1))
        lev = top.row // p1
        if np.any(top.col // p1 != lev):
            raise AssertionError("first random-effects block is not block diagonal")
        np.add.at(self.A11, (lev, top.row % p1, top.col % p1), top.data)

        # rows of [Z_rest X y]' [Z_1]: sparse random part, dense fixed and response rows
        Zrest_Z1 = ZtZ[self.q1 :, : self.q1]
        self.A21 = sp.vstack(
            [Zrest_Z1, sp.csr_matrix(stats.ZtX[: self.q1].T), sp.csr_matrix(stats.Zty[: self.q1][None, :])],
            format="csr",
        )
        # dense [Z_rest X y]'[Z_rest X y]
        m = self.q_rest + self.p + 1
        A22 = np.empty((m, m))
        r, pe = self.q_rest, self.q_rest + self.p
        A22[:r, :r] = ZtZ[self.q1 :, self.q1 :].toarray()
        A22[:r, r:pe] = stats.ZtX[self.q1 :]
        A22[:r, pe] = stats.Zty[self.q1 :]
        A22[r:pe, r:pe] = stats.XtX
        A22[r:pe, pe] = stats.Xty
        A22[pe, pe] = stats.yty
        self.A22 = np.triu(A22) + np.triu(A22, 1).T
        self._penalty = np.concatenate([np.ones(r), np.zeros(self.p + 1)])
        if not self.split_first:
            self._scatter = self._lambda_scatter()

    def _lambda_scatter(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions in the dense Lambda of every theta entry (rows, cols, theta index)."""
        rows, cols, entry = self.layout.lambda_positions(self.levels, self._rest_blocks)
        theta_offsets = self.layout.offsets
        index = np.concatenate([e + theta_offsets[k] for k, e in zip(self._rest_blocks, entry)])
        return rows, cols, index

    @classmethod
    def from_design(cls, design: Design, reml: bool = True, stats: SufficientStats | None = None) -> "ProfiledDeviance":
        """Build from a :class:`~bayesmlm.design.Design` (statistics computed if not given)."""
        stats = stats or design.sufficient_stats()
        return cls(stats, ThetaLayout.from_design(design), [b.n_levels for b in design.blocks], reml)

    # -- factorization -----------------------------------------------------------------
    def _factor(self, theta: np.ndarray):
        theta = np.asarray(theta, dtype=float)
        templates = self.layout.templates(theta)
        if not self.split_first:
            rows, cols, index = self._scatter
            lam = np.eye(self.A22.shape[0])
            lam[: self.q_rest, : self.q_rest] = 0.0
            lam[rows, cols] = theta[index]
            S = lam.T @ self.A22 @ lam
            S[np.diag_indices_from(S)] += self._penalty
            L22 = np.linalg.cholesky(S)  # numpy, not scipy: one BLAS library in the loop
            return templates, self.A11, self.A11, None, L22
        T1 = templates[0]
        B = np.einsum("ji,ljk,kh->lih", T1, self.A11, T1)  # T1' A11_l T1
        B += np.eye(T1.shape[0])
        L11 = np.linalg.cholesky(B)
        L11inv = np.linalg.inv(L11)
        lam_rest = sp.block_diag(
            [_lambda_sparse(templates[k], self.levels[k]) for k in self._rest_blocks] + [sp.identity(self.p + 1)],
            format="csr",
        )
        lam1 = _lambda_sparse(T1, self.levels[0])
        # W = Lrest' A21 Lambda1 L11^{-T}
        W = (lam_rest.T @ (self.A21 @ (lam1 @ _block_diag_sparse(np.transpose(L11inv, (0, 2, 1)))))).tocsr()
        if all(templates[k].shape == (1, 1) for k in self._rest_blocks):  # diagonal Lambda: scale rows, columns
            scale = lam_rest.diagonal()
            M22 = self.A22 * scale[:, None] * scale[None, :]
        else:
            M22 = (lam_rest.T @ (lam_rest.T @ self.A22).T).T
        S = np.asarray(M22) - (W @ W.T).toarray()
        S[np.diag_indices_from(S)] += self._penalty
        L22 = np.linalg.cholesky(S)  # numpy, not scipy: one BLAS library in the loop
        return templates, L11, L11inv, W, L22

    def _criterion(self, L11: np.ndarray, L22: np.ndarray) -> tuple[float, float, float, float]:
        d22 = np.diag(L22)
        r, pe = self.q_rest, self.q_rest + self.p
        logdet_L = 2.0 * np.log(np.diagonal(L11, axis1=1, axis2=2)).sum() + 2.0 * np.log(d22[:r]).sum()
        logdet_RX = 2.0 * np.log(d22[r:pe]).sum()
        pwrss = d22[pe] ** 2
        if self.reml:
            dof = self.n - self.p
            dev = logdet_L + logdet_RX + dof * (1.0 + _LOG_2PI + np.log(pwrss / dof))
        else:
            dev = logdet_L + self.n * (1.0 + _LOG_2PI + np.log(pwrss / self.n))
        return float(dev), float(logdet_L), float(logdet_RX), float(pwrss)

    def __call__(self, theta: np.ndarray) -> float:
        try:
            _, L11, _, _, L22 = self._factor(theta)
        except (np.linalg.LinAlgError, la.LinAlgError):
            return np.inf
        value = self._criterion(L11, L22)[0]
        return value if np.isfinite(value) else np.inf

    def solve(self, theta: np.ndarray) -> PLSSolution:
        """Fixed effects, conditional modes and the criterion at ``theta``."""
        theta = np.asarray(theta, dtype=float)
        templates, L11, L11inv, W, L22 = self._factor(theta)
        dev, logdet_L, logdet_RX, pwrss = self._criterion(L11, L22)
        r, pe = self.q_rest, self.q_rest + self.p
        # back-substitution: L0' x = l, with l the last row of the factor
        x2 = la.solve_triangular(L22[:pe, :pe].T, L22[pe, :pe], lower=False)
        b_parts = []
        if self.split_first:
            W_dense_y = W[pe].toarray().reshape(-1)
            rhs1 = W_dense_y - W[:pe].T @ x2
            u1 = np.einsum("lji,lj->li", L11inv, rhs1.reshape(self.levels[0], -1))  # L11^{-T} rhs
            b_parts.append((u1 @ templates[0].T).reshape(-1))
        start = 0
        for k in self._rest_blocks:
            T, n = templates[k], self.levels[k]
            size = n * T.shape[0]
            b_parts.append((x2[start : start + size].reshape(n, -1) @ T.T).reshape(-1))
            start += size
        beta = x2[r:pe]
        dof = self.n - self.p if self.reml else self.n
        sigma = float(np.sqrt(pwrss / dof))
        return PLSSolution(
            theta=theta,
            deviance=dev,
            beta=beta,
            b=np.concatenate(b_parts),
            pwrss=pwrss,
            sigma=sigma,
            logdet_L=logdet_L,
            logdet_RX=logdet_RX,
            RX=L22[r:pe, r:pe].copy(),
        )
