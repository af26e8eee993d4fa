"""Penalized iteratively reweighted least squares (PIRLS) and the Laplace / AGQ deviance.

Hand-written, following lme4 (Bates, Maechler, Bolker & Walker 2015; lme4's
``pwrssUpdate``, ``glmerLaplace`` and ``glmerAGQ`` in ``src/external.cpp``):
no maintained Python library computes lme4's GLMM deviance. For covariance
parameters ``theta`` (and, after the first stage, fixed effects ``beta``), the
conditional modes ``u`` of the spherical random effects minimise the penalized
deviance ``sum(dev.resid(y, mu)) + |u|^2`` with ``eta = offset + X beta + Z Lambda u``.
Each PIRLS step solves the weighted, penalized least-squares system

    [ U'WU + I   U'WX ] [u   ]   [U'W z]
    [ X'WU       X'WX ] [beta] = [X'W z]      (U = Z Lambda(theta))

for the working response ``z`` and IRLS weights ``W`` (``beta`` is part of the
system only in lme4's ``nAGQ = 0`` stage), halving the step when the penalized
deviance rises. The Laplace approximation of the deviance (``-2`` log
likelihood) is then ``log|L|^2 + |u|^2 + aic(y, mu)`` with ``L L' = U'WU + I``;
adaptive Gauss-Hermite quadrature (one scalar random-effects term) replaces it
by lme4's per-level quadrature around the modes.

Every evaluation in a stage starts from the same linear predictor and stops at lme4's
tolerance (:data:`PIRLS_TOL`), taking ``log|L|^2`` at the weights of the step before the last
as lme4 does: the deviance is then lme4's own function of the parameters, whose optimum and
finite-difference Hessian (hence the standard errors) agree with lme4's to about 1e-4 of an
SE; the fully converged Laplace value differs from it by up to ~1e-3.

The system is factored in blocks, as :mod:`bayesmlm.freq.pls` does for linear
models: the grouping factor with most levels has a block-diagonal ``U'WU``
(a batch of small Cholesky factors); only the Schur complement of the other
factors (and ``X``) is dense. The weighted cross-products are accumulated in
one pass over the rows by a Numba kernel, so one PIRLS step costs ``O(n)`` plus
a dense factorization of the small remaining block: for 316 persons x 24 items
(VerbAgg) that is a 24 x 24 (or 30 x 30) Cholesky factor.

Examples
--------
>>> import numpy as np
>>> from bayesmlm.families import get_family
>>> rng = np.random.default_rng(0)
>>> g = np.repeat(np.arange(20), 10)
>>> y = rng.binomial(1, 1 / (1 + np.exp(-rng.normal(0, 1, 20)[g]))).astype(float)
>>> eng = PirlsEngine(GlmmData(y, np.ones(200), np.zeros(200), np.ones((200, 1)),
...                            [(g, np.ones((200, 1)), 20)], [((0, 0),)], get_family("binomial")))
>>> st = eng.pirls(np.array([1.0]), beta=None)
>>> bool(st.converged), st.u.shape, st.beta.shape
(True, (20,), (1,))
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numba
import numpy as np
import scipy.linalg as la

from .. import family_kernels as fk

from ..families import Family

__all__ = ["GlmmData", "PirlsEngine", "PirlsState", "gauss_hermite", "PIRLS_TOL"]

PIRLS_TOL = 1e-7
"""Relative change of the penalized deviance at which PIRLS stops: lme4's ``tolPwrss``. With it
(and lme4's order of updates, where ``log|L|^2`` is taken at the weights of the step before the
last) the deviance function is lme4's own, which is what its optimum, log-likelihood and
Hessian-based standard errors are computed from (tested against lme4 to 1e-4 of an SE)."""

MAX_DENSE = 36_000_000
"""Largest dense Schur complement (entries) the engine factors: about 6000 random effects outside
the largest grouping factor."""

_SQRT_2PI = np.sqrt(2.0 * np.pi)


@numba.njit(cache=True)
def _crossprods(c1, V1, pos, val, idx, w, z, l1, npairs, R):  # pragma: no cover - compiled
    """Weighted cross-products of ``[U1 | Urest (| X)]`` and their products with the working response.

    The cross term between the first block and the rest is kept as its non-zero pattern
    (``pos[i, j]`` is the pattern entry of row ``i``'s ``j``-th rest column and its level).
    """
    n, s1 = V1.shape
    m = idx.shape[1]
    A11 = np.zeros((l1, s1, s1))
    A21 = np.zeros((npairs, s1))
    A22 = np.zeros((R, R))
    r1 = np.zeros(l1 * s1)
    r2 = np.zeros(R)
    for i in range(n):
        wi = w[i]
        if wi == 0.0:
            continue
        zi = z[i]
        lev = c1[i]
        base = lev * s1
        for a in range(s1):
            wa = wi * V1[i, a]
            r1[base + a] += wa * zi
            for b in range(s1):
                A11[lev, a, b] += wa * V1[i, b]
        for j in range(m):
            wj = wi * val[i, j]
            pj = pos[i, j]
            rj = idx[i, j]
            r2[rj] += wj * zi
            for a in range(s1):
                A21[pj, a] += wj * V1[i, a]
            for k in range(m):
                A22[rj, idx[i, k]] += wj * val[i, k]
    return A11, A21, A22, r1, r2


@numba.njit(cache=True)
def _schur(A22, A21, Linv, col_ptr, prow, penalty, r1, r2, accumulate):  # pragma: no cover - compiled
    """Eliminate the first block: ``S = A22 + diag(penalty) - G G'``, ``G = A21 L11^-T`` (per level),
    ``c1 = L11^-1 r1`` and ``r2 - G c1``, visiting only the non-zero pattern of ``A21``."""
    npairs, s1 = A21.shape
    l1 = Linv.shape[0]
    R = A22.shape[0]
    S = A22.copy()
    for r in range(R):
        S[r, r] += penalty[r]
    G = np.empty((npairs, s1))
    c1 = np.empty(l1 * s1)
    rhs2 = r2.copy()
    for c in range(l1):
        for a in range(s1):
            acc = 0.0
            for b in range(a + 1):
                acc += Linv[c, a, b] * r1[c * s1 + b]
            c1[c * s1 + a] = acc
        for k in range(col_ptr[c], col_ptr[c + 1]):
            for a in range(s1):
                acc = 0.0
                for b in range(a + 1):
                    acc += Linv[c, a, b] * A21[k, b]
                G[k, a] = acc
            acc = 0.0
            for a in range(s1):
                acc += G[k, a] * c1[c * s1 + a]
            rhs2[prow[k]] -= acc
        if not accumulate:
            continue
        for k1 in range(col_ptr[c], col_ptr[c + 1]):
            for k2 in range(col_ptr[c], k1 + 1):
                acc = 0.0
                for a in range(s1):
                    acc += G[k1, a] * G[k2, a]
                S[prow[k1], prow[k2]] -= acc
    for a in range(R):
        for b in range(a):
            S[b, a] = S[a, b]
    return S, G, c1, rhs2


@numba.njit(cache=True)
def _back(G, Linv, col_ptr, prow, c1, x2):  # pragma: no cover - compiled
    """``u1 = L11^-T (c1 - G' x2)`` level by level."""
    l1, s1, _ = Linv.shape
    t = c1.copy()
    for c in range(l1):
        for k in range(col_ptr[c], col_ptr[c + 1]):
            xv = x2[prow[k]]
            for a in range(s1):
                t[c * s1 + a] -= G[k, a] * xv
    u1 = np.empty(l1 * s1)
    for c in range(l1):
        for a in range(s1):
            acc = 0.0
            for b in range(a, s1):
                acc += Linv[c, b, a] * t[c * s1 + b]
            u1[c * s1 + a] = acc
    return u1


@numba.njit(cache=True)
def _irls_weights(fam, link, phi, y, wt, eta, base):  # pragma: no cover - compiled
    """IRLS weights ``wt mu_eta^2 / V(mu)`` and working response ``eta - base + (y - mu) / mu_eta``."""
    n = y.shape[0]
    w = np.empty(n)
    z = np.empty(n)
    for i in range(n):
        mu = fk.linkinv(link, eta[i])
        me = fk.mu_eta(link, eta[i])
        wi = wt[i] * me * me / fk.variance(fam, mu, phi)
        zi = eta[i] - base[i] + (y[i] - mu) / me
        if math.isfinite(wi) and math.isfinite(zi):
            w[i] = wi
            z[i] = zi
        else:
            w[i] = 0.0
            z[i] = 0.0
    return w, z


@numba.njit(cache=True)
def _deviance(fam, link, phi, y, wt, eta):  # pragma: no cover - compiled
    """Sum of deviance residuals at ``eta``; ``inf`` when a mean leaves the family's range."""
    total = 0.0
    for i in range(y.shape[0]):
        mu = fk.linkinv(link, eta[i])
        if not fk.valid_mu(fam, mu):
            return np.inf
        total += fk.dev_resid(fam, y[i], mu, wt[i], phi)
    return total if math.isfinite(total) else np.inf


@numba.njit(cache=True)
def _linpred(c1, V1, idx, val, u1, x2, base):  # pragma: no cover - compiled
    """``base + U1 u1 + [Urest (X)] x2`` row by row."""
    n, s1 = V1.shape
    m = idx.shape[1]
    out = np.empty(n)
    for i in range(n):
        acc = base[i]
        b0 = c1[i] * s1
        for a in range(s1):
            acc += V1[i, a] * u1[b0 + a]
        for j in range(m):
            acc += val[i, j] * x2[idx[i, j]]
        out[i] = acc
    return out


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes, weights (summing to one) and standard-normal log densities: lme4's ``GHrule(n)``.

    Examples
    --------
    >>> z, w, ld = gauss_hermite(3)
    >>> z.round(4).tolist(), round(float(w.sum()), 12)
    ([-1.7321, 0.0, 1.7321], 1.0)
    """
    if n == 1:
        return np.zeros(1), np.ones(1), np.array([-0.5 * np.log(2 * np.pi)])
    z, w = np.polynomial.hermite_e.hermegauss(n)
    z = np.where(np.abs(z) < 1e-12, 0.0, z)
    return z, w / _SQRT_2PI, -0.5 * z * z - 0.5 * np.log(2 * np.pi)


@dataclass
class GlmmData:
    """Everything PIRLS needs about the rows, independent of the formula machinery.

    Attributes
    ----------
    y : ndarray (n,)
        Response (for the binomial, the proportion of successes).
    wt : ndarray (n,)
        Prior weights (for the binomial, the number of trials).
    offset : ndarray (n,)
    X : ndarray (n, p)
    blocks : list of (codes, values, n_levels)
        One per grouping factor, in model order (most levels first): the level
        of each row and the varying columns evaluated on the rows.
    free : list of tuple of (int, int)
        Free template positions of each block (see :class:`~bayesmlm.freq.theta.ThetaLayout`).
    family : Family
    """

    y: np.ndarray
    wt: np.ndarray
    offset: np.ndarray
    X: np.ndarray
    blocks: list
    free: list
    family: Family


@dataclass
class PirlsState:
    """The solution of PIRLS at one parameter value.

    Attributes
    ----------
    u : ndarray (q,)
        Conditional modes of the spherical random effects (``b = Lambda u``).
    beta : ndarray (p,)
    eta, mu : ndarray (n,)
    ldL2 : float
        ``log |L|^2`` of ``U'WU + I``.
    ldRX2 : float
        ``log |R_X|^2`` (joint solutions only, else nan).
    RX : ndarray or None
        Lower factor of the fixed-effects Schur complement (joint solutions).
    dev_resid : float
        Sum of deviance residuals at ``mu``.
    aic : float
        The family's ``aic`` at ``mu``.
    converged : bool
    iterations : int
    """

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    ldL2: float
    ldRX2: float
    RX: np.ndarray | None
    dev_resid: float
    aic: float
    converged: bool
    iterations: int

    @property
    def sqr_u(self) -> float:
        return float(self.u @ self.u)

    @property
    def laplace(self) -> float:
        """lme4's Laplace deviance ``ldL2 + |u|^2 + aic``."""
        return self.ldL2 + self.sqr_u + self.aic


class PirlsEngine:
    """PIRLS for one GLMM: conditional modes and the Laplace/AGQ deviance at any ``theta``, ``beta``.

    Parameters
    ----------
    data : GlmmData
    family : Family, optional
        Overrides ``data.family`` (the negative binomial's ``phi`` changes between fits).
    """

    def __init__(self, data: GlmmData, family: Family | None = None):
        self.data = data
        self._family = None
        self.n, self.p = data.X.shape
        blocks = data.blocks
        self.sizes = [v.shape[1] for _, v, _ in blocks]
        self.levels = [int(l) for _, _, l in blocks]
        self.free = [tuple(sorted(f, key=lambda ij: (ij[1], ij[0]))) for f in data.free]
        self.theta_size = sum(len(f) for f in self.free)
        self.c1 = np.ascontiguousarray(blocks[0][0], dtype=np.int64)
        self.V1raw = np.ascontiguousarray(blocks[0][1], dtype=float)
        self.l1, self.s1 = self.levels[0], self.sizes[0]
        self.q1 = self.l1 * self.s1
        starts = np.cumsum([0] + [l * s for l, s in zip(self.levels[1:], self.sizes[1:])])
        self.q_rest = int(starts[-1])
        self.q = self.q1 + self.q_rest
        idx = [np.ascontiguousarray(c, dtype=np.int64)[:, None] * s + np.arange(s)[None, :] + start
               for (c, _, _), s, start in zip(blocks[1:], self.sizes[1:], starts[:-1])]
        self.idx_u = np.ascontiguousarray(np.hstack(idx) if idx else np.zeros((self.n, 0), dtype=np.int64))
        self.idx_j = np.ascontiguousarray(np.hstack([self.idx_u, np.broadcast_to(self.q_rest + np.arange(self.p), (self.n, self.p))]))
        self.Vrest_raw = [np.ascontiguousarray(v, dtype=float) for _, v, _ in blocks[1:]]
        if (self.q_rest + self.p) ** 2 > MAX_DENSE:
            raise NotImplementedError(
                f"this model has {self.q_rest} random effects outside its largest grouping factor; the glmer "
                "engine factors them as one dense block, which would be too large (no sparse Cholesky engine yet)"
            )
        # non-zero pattern of the cross term between the largest factor and the rest, ordered
        # by level of the largest factor (a nested design has few entries per level)
        self._pattern, self._penalty, self._dense, self._dense_rows, self._dense_cols = {}, {}, {}, {}, {}
        for joint, idx in ((False, self.idx_u), (True, self.idx_j)):
            R = self.q_rest + (self.p if joint else 0)
            keys = (self.c1[:, None] * max(R, 1) + idx).reshape(-1)
            uniq, inverse = np.unique(keys, return_inverse=True)
            pos = np.ascontiguousarray(inverse.reshape(idx.shape).astype(np.int64))
            prow = (uniq % max(R, 1)).astype(np.int64)
            col_ptr = np.searchsorted(uniq // max(R, 1), np.arange(self.l1 + 1)).astype(np.int64)
            self._pattern[joint] = (pos, col_ptr, prow)
            self._dense[joint] = len(prow) > 0.25 * R * self.l1
            levels = np.repeat(np.arange(self.l1), np.diff(col_ptr))
            self._dense_rows[joint] = np.repeat(prow, self.s1)
            self._dense_cols[joint] = (levels[:, None] * self.s1 + np.arange(self.s1)[None, :]).reshape(-1)
            self._penalty[joint] = np.concatenate([np.ones(self.q_rest), np.zeros(self.p if joint else 0)])
        # writable copies where the data are read-only (pandas' copy-on-write arrays): the kernels then
        # compile one specialisation, not one per writability flag
        self.y = np.require(np.asarray(data.y, dtype=float), requirements=["C", "W"])
        self.wt = np.require(np.asarray(data.wt, dtype=float), requirements=["C", "W"])
        self.offset = np.require(np.asarray(data.offset, dtype=float), requirements=["C", "W"])
        self.X = np.ascontiguousarray(data.X, dtype=float)
        self._theta_key = None
        self.evaluations = 0
        self.family = family or data.family

    @property
    def family(self) -> Family:
        return self._family

    @family.setter
    def family(self, family: Family) -> None:
        if family != self._family:
            self._family = family
            self._eval = family.evaluator(self.y, self.wt)
            self._codes = (family.code, family.link.code, float(getattr(family, "phi", 1.0)))

    # -- theta -----------------------------------------------------------------------
    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        out, k = [], 0
        for s, free in zip(self.sizes, self.free):
            T = np.zeros((s, s))
            for (i, j) in free:
                T[i, j] = theta[k]
                k += 1
            out.append(T)
        return out

    def set_theta(self, theta: np.ndarray) -> None:
        """Compute ``U = Z Lambda(theta)`` row values (cached for the last theta)."""
        key = tuple(np.asarray(theta, dtype=float).tolist())
        if key == self._theta_key:
            return
        T = self.templates(np.asarray(theta, dtype=float))
        self.T = T
        self.V1 = np.ascontiguousarray(self.V1raw @ T[0])
        rest = [v @ t for v, t in zip(self.Vrest_raw, T[1:])]
        self.val_u = np.ascontiguousarray(np.hstack(rest) if rest else np.zeros((self.n, 0)))
        self.val_j = np.ascontiguousarray(np.hstack([self.val_u, self.X]))
        self._theta_key = key

    def b(self, u: np.ndarray) -> np.ndarray:
        """Random effects ``Lambda u`` on the data scale, level-major per block."""
        out, start = [], 0
        for T, l, s in zip(self.T, self.levels, self.sizes):
            out.append((u[start : start + l * s].reshape(l, s) @ T.T).reshape(-1))
            start += l * s
        return np.concatenate(out)

    # -- linear algebra --------------------------------------------------------------
    def _factor_solve(self, w: np.ndarray, z: np.ndarray, joint: bool):
        idx, val = (self.idx_j, self.val_j) if joint else (self.idx_u, self.val_u)
        pos, col_ptr, prow = self._pattern[joint]
        R = self.q_rest + (self.p if joint else 0)
        A11, A21, A22, r1, r2 = _crossprods(self.c1, self.V1, pos, val, idx, w, z, self.l1, len(prow), R)
        s1 = self.s1
        if s1 == 1:
            d = np.sqrt(A11[:, 0, 0] + 1.0)
            Linv = (1.0 / d)[:, None, None]
            logdiag1 = np.log(d)
        else:
            L11 = np.linalg.cholesky(A11 + np.eye(s1)[None, :, :])
            Linv = np.ascontiguousarray(np.linalg.inv(L11))
            logdiag1 = np.log(np.diagonal(L11, axis1=1, axis2=2))
        ldL2 = 2.0 * float(logdiag1.sum())
        dense = self._dense[joint]
        S, G, c1, rhs2 = _schur(A22, A21, Linv, col_ptr, prow, self._penalty[joint], r1, r2, not dense)
        if dense and R:  # crossed factors: the cross term is (nearly) full, BLAS does the update
            Gd = np.zeros((R, self.q1))
            Gd[self._dense_rows[joint], self._dense_cols[joint]] = G.reshape(-1)
            S -= Gd @ Gd.T
            rhs2 = r2 - Gd @ c1
        if R:
            L22 = np.linalg.cholesky(S)
            x2 = la.solve_triangular(L22.T, la.solve_triangular(L22, rhs2, lower=True, check_finite=False),
                                     lower=False, check_finite=False)
            dl = np.log(np.diag(L22))
            ldL2 += 2.0 * float(dl[: self.q_rest].sum())
            ldRX2 = 2.0 * float(dl[self.q_rest :].sum())
            RX = L22[self.q_rest :, self.q_rest :] if joint else None
        else:
            x2, ldRX2, RX = np.zeros(0), 0.0, None
        u1 = _back(G, Linv, col_ptr, prow, c1, x2)
        return u1, x2, ldL2, ldRX2, RX

    def linear_predictor(self, u: np.ndarray, beta: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """``offset + X beta + U u`` at the current theta."""
        base = (self.offset if offset is None else offset) + self.X @ beta
        return _linpred(self.c1, self.V1, self.idx_u, self.val_u, u[: self.q1], u[self.q1 :], base)

    # -- PIRLS -----------------------------------------------------------------------
    def pirls(
        self,
        theta: np.ndarray,
        beta: np.ndarray | None,
        eta0: np.ndarray | None = None,
        tol: float = PIRLS_TOL,
        max_iter: int = 60,
    ) -> PirlsState:
        """Conditional modes at ``theta`` (and ``beta``; ``None`` solves for ``beta`` too, lme4's nAGQ=0).

        Parameters
        ----------
        theta : ndarray
        beta : ndarray or None
        eta0 : ndarray, optional
            Linear predictor where the first step linearises (lme4 starts every
            evaluation of a stage from the same one); the family's starting
            means by default.
        """
        self.evaluations += 1
        self.set_theta(theta)
        fam, link = self.family, self.family.link
        y, wt = self.y, self.wt
        joint = beta is None
        base = self.offset if joint else self.offset + self.X @ beta
        if eta0 is None:
            eta = link.link(fam.initialize(y, wt))
        else:
            eta = np.asarray(eta0, dtype=float)
        fc, lc, phi = self._codes
        old_pdev = np.inf
        old = None
        converged = False
        u = np.zeros(self.q)
        beta_cur = np.zeros(self.p) if joint else np.asarray(beta, dtype=float)
        ldL2 = ldRX2 = np.nan
        RX = None
        it = 0
        for it in range(1, max_iter + 1):
            w, z = _irls_weights(fc, lc, phi, y, wt, eta, base)
            try:
                u1, x2, ldL2, ldRX2, RX = self._factor_solve(w, z, joint)
            except np.linalg.LinAlgError:
                break
            if joint:
                u_new = np.concatenate([u1, x2[: self.q_rest]])
                beta_new = x2[self.q_rest :]
                eta_new = _linpred(self.c1, self.V1, self.idx_j, self.val_j, u1, x2, base)
            else:
                u_new, beta_new = np.concatenate([u1, x2]), beta_cur
                eta_new = _linpred(self.c1, self.V1, self.idx_u, self.val_u, u1, x2, base)
            pdev = _deviance(fc, lc, phi, y, wt, eta_new) + float(u_new @ u_new)
            if pdev > old_pdev and old is not None:  # step halving towards the previous solution
                for _ in range(10):
                    u_new = 0.5 * (old[0] + u_new)
                    beta_new = 0.5 * (old[1] + beta_new)
                    eta_new = self.linear_predictor(u_new, beta_new)
                    pdev = _deviance(fc, lc, phi, y, wt, eta_new) + float(u_new @ u_new)
                    if pdev <= old_pdev:
                        break
            u, beta_cur, eta = u_new, beta_new, eta_new
            if np.isfinite(pdev) and abs(old_pdev - pdev) <= tol * abs(pdev):
                converged = True
                break
            if pdev >= old_pdev and np.isfinite(pdev):  # halving could not reduce it: at the floor
                converged = abs(pdev - old_pdev) <= max(1e-7 * abs(pdev), 1e-9)
                break
            old_pdev = pdev
            old = (u, beta_cur)
        mu = link.inverse(eta)
        dev_resid = float(np.sum(self._eval.dev_resids(mu)))
        aic = self._eval.aic(mu, dev_resid)
        return PirlsState(u, np.asarray(beta_cur, dtype=float), eta, mu, float(ldL2), float(ldRX2), RX,
                          dev_resid, float(aic) if np.isfinite(aic) else np.inf, converged, it)

    def _level_order(self):
        """Rows sorted by level of the first factor and where each level starts (for per-level sums)."""
        if not hasattr(self, "_order"):
            order = np.argsort(self.c1, kind="stable")
            self._order = (order, np.searchsorted(self.c1[order], np.arange(self.l1)))
        return self._order

    def weights(self, eta: np.ndarray) -> np.ndarray:
        """IRLS weights ``wt * mu_eta^2 / V(mu)`` at ``eta``."""
        link = self.family.link
        mu = link.inverse(eta)
        me = link.mu_eta(eta)
        return self.wt * me * me / self.family.variance(mu)

    def joint_factor(self, theta: np.ndarray, state: PirlsState) -> tuple[float, float, np.ndarray]:
        """``ldL2``, ``ldRX2`` and ``R_X`` of the joint system at a solution's weights."""
        self.set_theta(theta)
        eta = state.eta
        link = self.family.link
        me = link.mu_eta(eta)
        z = eta - self.offset + (self.y - state.mu) / me
        _, _, ldL2, ldRX2, RX = self._factor_solve(self.weights(eta), z, joint=True)
        return ldL2, ldRX2, RX

    # -- deviance functions ----------------------------------------------------------
    def laplace(self, theta, beta, eta0=None) -> tuple[float, PirlsState]:
        """Laplace deviance at ``(theta, beta)`` (``beta=None``: lme4's nAGQ=0 criterion)."""
        st = self.pirls(theta, beta, eta0)
        value = st.laplace
        return (value if np.isfinite(value) else np.inf), st

    def agq(self, theta, beta, nodes, eta0=None) -> tuple[float, PirlsState]:
        """lme4's adaptive Gauss-Hermite deviance for one scalar random-effects term."""
        if len(self.levels) != 1 or self.s1 != 1:
            raise ValueError("adaptive Gauss-Hermite quadrature needs a single scalar random-effects term")
        st = self.pirls(theta, beta, eta0)
        if not np.isfinite(st.laplace):
            return np.inf, st
        z, w, ld = nodes
        fam = self.family
        base = self.offset + self.X @ st.beta
        v = self.V1[:, 0]
        wts = self.weights(st.eta)
        d = np.sqrt(np.bincount(self.c1, wts * v * v, minlength=self.l1) + 1.0)
        sd = 1.0 / d
        ldL2 = 2.0 * np.log(d).sum()
        u = st.u

        order, starts = self._level_order()
        keep = z != 0.0
        zs = np.concatenate([[0.0], z[keep]])
        uk = u[None, :] + zs[:, None] * sd[None, :]  # (nodes, levels): the modes moved along each node
        mu = fam.link.inverse(base[None, :] + v[None, :] * uk[:, self.c1])
        dev = self._eval.dev_resids(mu)
        devc = uk * uk + np.add.reduceat(dev[:, order], starts, axis=1)
        devc0 = devc[0]
        mult = np.full(self.l1, float(w[~keep].sum()))
        mult += (np.exp(-0.5 * (devc[1:] - devc0[None, :]) - ld[keep][:, None]) * (w[keep] / _SQRT_2PI)[:, None]).sum(axis=0)
        value = float(devc0.sum() + ldL2 - 2.0 * np.log(mult).sum())
        return (value if np.isfinite(value) else np.inf), st
