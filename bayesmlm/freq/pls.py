"""lme4's profiled deviance by penalized least squares (the "pls" engine).

Hand-written: no maintained Python library implements lme4's algorithm
(Bates, Maechler, Bolker & Walker 2015, J. Stat. Softw. 67(1)). For a theta,
the system

    [ L'Z'Z L + I   L'Z'X   L'Z'y ]
    [ X'Z L         X'X     X'y   ]      (L = Lambda(theta))
    [ y'Z L         y'X     y'y   ]

is factored by a blocked Cholesky decomposition. Following MixedModels.jl, the
first random-effects block (the factor with most levels) has a block-diagonal
cross-product, so its factor is a batch of small Cholesky factors, computed
level by level in closed form; only the Schur complement of everything else
(the "rest system": the other factors, X and y) is factored as a whole. It is
kept dense, or, when its pattern is sparse enough to pay (a factor nested in
another, say), as a sparse factor whose fill-reducing order and pattern are
found once. (Models with ``q`` up to ``DENSE_LIMIT``, 0 by default, would skip
the split and factor one matrix.) The layout is built once; an evaluation fills
preallocated buffers with compiled kernels (:mod:`bayesmlm.freq._plskernels`) and
calls LAPACK once (a small model: nothing but the compiled call), so it allocates
nothing of the model's size. The penalized
residual sum of squares is the square of the last diagonal entry of the
factor, and the profiled ML or REML criterion follows in closed form. Only the
sufficient statistics enter, so the cost of one evaluation does not depend on ``n``.

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

import contextlib
import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas, lapack

from ..design import Design
from ..stats import SufficientStats
from . import _plskernels as kern
from .optimize import LME4_BOBYQA_SETTINGS
from .theta import ThetaLayout

__all__ = ["ProfiledDeviance", "PLSSolution", "DENSE_LIMIT"]

DENSE_LIMIT = 0
"""Models with at most this many random effects are factored as one matrix (no split). 0: every
model is split, which is also the cheaper evaluation for small models (sleepstudy: one level's
2 x 2 block at a time and a 3 x 3 rest instead of a 39 x 39 matrix); the one-matrix
factorization stays as a check of the blocked one."""

SPARSE_ADVANTAGE = 30.0
"""Weight of a flop of the scalar sparse kernel against one of LAPACK's blocked dense Cholesky,
in the cost model that splits the rest system into a sparse head and a dense tail."""

SPARSE_HEAD = True
"""Look for a sparse head of the rest system (False: always factor it dense)."""

SMALL_TAIL = 64
"""Dense tails up to this size are factored inside one compiled call."""

SMALL_SYRK_FLOPS = 20_000
"""A dense ``-L21 L21'`` update of at most this many multiply-adds is done inside that call (by
loops) rather than by BLAS ``syrk``, whose call from Python costs more than such an update."""

ONE_THREAD_LIMIT = 2500
"""Dense rest systems up to this size are factored with one BLAS thread (see :meth:`ProfiledDeviance.blas_threads`)."""

_LOG_2PI = np.log(2.0 * np.pi)


def _theta_vector(theta) -> np.ndarray:
    """theta as the kernels take it: a writable, contiguous float64 vector (a read-only one, as some
    optimisers pass, would make Numba compile every kernel a second time for that type)."""
    if type(theta) is np.ndarray and theta.dtype == np.float64 and theta.ndim == 1:
        flags = theta.flags
        if flags.c_contiguous and flags.writeable:  # what an optimiser passes: as it is (np.require costs more)
            return theta
    return np.require(np.asarray(theta, dtype=np.float64).reshape(-1), requirements=["C", "W"])
_MAX_ORDER_LEVELS = 8000  # levels of the rest system up to which a sparse order is sought


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
        RXinv = kern.lower_inverse(_f64(self.RX))
        return self.sigma**2 * (RXinv.T @ RXinv)


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _starts(sizes) -> np.ndarray:
    """``[0, s0, s0 + s1, ...]``: where each of consecutive pieces of these sizes starts, and the end."""
    starts = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    return starts


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

    Attributes
    ----------
    split_first : bool
        The first factor is eliminated level by level (models above ``DENSE_LIMIT``).
    m : int
        Size of the rest system (random effects after the first factor, X and y).
    n_head : int
        Rows of the rest system eliminated sparse, in a fill-reducing order, before
        its dense tail (0: all dense). Pays where the other factors are nearly
        nested (teachers within schools, say), so that most of the rest system
        stays sparse.
    sparse_rest : bool
        ``n_head > 0``.

    Examples
    --------
    Students seen three years running, a teacher each year, teachers within schools,
    a few students changing school: the teachers are eliminated sparse.

    >>> import numpy as np, pandas as pd
    >>> from bayesmlm.design import build_design
    >>> rng = np.random.default_rng(1)
    >>> n = 1500; sid = np.repeat(np.arange(n), 3); x = np.tile([0.0, 1.0, 2.0], n)
    >>> school = rng.integers(0, 15, n)[sid]
    >>> school = np.where((x == 2) & (rng.random(3 * n) < 0.1), rng.integers(0, 15, 3 * n), school)
    >>> teacher = school + 15 * rng.integers(0, 13, 3 * n)
    >>> y = rng.normal(0, 1, n)[sid] + rng.normal(0, 0.5, 195)[teacher] + rng.normal(size=3 * n) + x
    >>> df = pd.DataFrame({"y": y, "x": x, "id": sid, "teacher": teacher, "school": school})
    >>> d = build_design("y ~ x + (x | id) + (1 | teacher) + (1 | school)", df)
    >>> sparse = ProfiledDeviance.from_design(d)
    >>> import bayesmlm.freq.pls as pls
    >>> pls.SPARSE_HEAD = False; dense = ProfiledDeviance.from_design(d); pls.SPARSE_HEAD = True
    >>> sparse.n_head > 0, dense.n_head
    (True, 0)
    >>> theta = np.array([1.0, 0.1, 0.5, 0.6, 0.4])
    >>> bool(np.isclose(sparse(theta), dense(theta), rtol=1e-12, atol=0))
    True
    >>> a, b = sparse.solve(theta), dense.solve(theta)
    >>> bool(np.allclose(a.b, b.b, rtol=1e-9, atol=1e-12) and np.allclose(a.beta, b.beta, rtol=1e-12))
    True
    """

    bobyqa_settings = LME4_BOBYQA_SETTINGS
    """BOBYQA's settings for this deviance (:func:`~bayesmlm.freq.optimize.optimize_theta`): lme4's."""

    newton_polish = True
    """End the optimisation's convergence check with a Newton step (:func:`~bayesmlm.freq.optimize.optimize_theta`)."""

    def __init__(self, stats: SufficientStats, layout: ThetaLayout, levels: list[int], reml: bool = True):
        self.layout = layout
        self.reml = reml
        self.levels = list(levels)
        self.n = stats.n
        self.p = stats.XtX.shape[0]
        self._stats = stats
        sizes = layout.sizes
        q = stats.ZtZ.shape[0]
        self.split_first = q > DENSE_LIMIT
        self.q1 = levels[0] * sizes[0] if self.split_first else 0
        self.q_rest = q - self.q1
        self.m = self.q_rest + self.p + 1
        first = 1 if self.split_first else 0
        self._rest_blocks = list(range(first, len(levels)))
        self._penalty = np.concatenate([np.ones(self.q_rest), np.zeros(self.p + 1)])
        self.initial_step: np.ndarray | None = None  # BOBYQA's first steps, when a start suggests them
        self._build(stats)

    @classmethod
    def from_design(cls, design: Design, reml: bool = True, stats: SufficientStats | None = None) -> "ProfiledDeviance":
        """Build from a :class:`~bayesmlm.design.Design` (statistics computed if not given)."""
        stats = stats or design.sufficient_stats()
        return cls(stats, ThetaLayout.from_design(design), [b.n_levels for b in design.blocks], reml)

    # -- layout, once --------------------------------------------------------------------
    def _build(self, stats: SufficientStats) -> None:
        layout, levels = self.layout, self.levels
        sizes = layout.sizes
        p, q1, q_rest, m = self.p, self.q1, self.q_rest, self.m
        # ZtZ's entries once, split by block (as slicing out each part would give them, without the cost)
        ZtZ = stats.ZtZ
        if isinstance(ZtZ, sp.csc_matrix):
            zr, zx = ZtZ.indices.astype(np.int64), ZtZ.data
            zc = np.repeat(np.arange(ZtZ.shape[1], dtype=np.int64), np.diff(ZtZ.indptr))
        else:
            coo = ZtZ.tocoo()
            zr, zc, zx = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
        top_r, left_c = zr < q1, zc < q1
        # templates: block k's row-major p_k x p_k template at tofs[k] of one flat vector
        tofs = _starts([s * s for s in sizes])
        self._Tflat = np.zeros(int(tofs[-1]))
        self._tofs = tofs
        self._tpos = _i64([tofs[k] + i * sizes[k] + j for k in range(len(sizes)) for (i, j) in layout.free[k]])

        # first factor: block-diagonal cross-product, (n1, p1, p1)
        n1 = levels[0] if self.split_first else 0
        p1 = sizes[0] if self.split_first else 1
        self._n1, self._p1 = n1, p1
        self._t1ofs = int(tofs[0])
        in_top = top_r & left_c
        top_row, top_col = zr[in_top], zc[in_top]
        self.A11 = np.zeros((n1, p1, p1))
        lev = top_row // p1
        if np.any(top_col // p1 != lev):
            raise AssertionError("first random-effects block is not block diagonal")
        np.add.at(self.A11, (lev, top_row % p1, top_col % p1), zx[in_top])

        # rest levels, original order: each factor's levels, then the border (X and y)
        lvl_size, lvl_tofs, lvl_start = [], [], []
        start = 0
        for k in self._rest_blocks:
            lvl_size.append(np.full(levels[k], sizes[k]))
            lvl_tofs.append(np.full(levels[k], tofs[k]))
            lvl_start.append(start + sizes[k] * np.arange(levels[k]))
            start += sizes[k] * levels[k]
        lvl_size.append([p + 1])
        lvl_tofs.append([-1])
        lvl_start.append([q_rest])
        lvl_size0, lvl_tofs0, lvl_start0 = (_i64(np.concatenate(a)) for a in (lvl_size, lvl_tofs, lvl_start))
        nL = len(lvl_size0)
        border = nL - 1
        row_lvl0 = _i64(np.repeat(np.arange(nL), lvl_size0))
        row_c0 = _i64(np.arange(m) - lvl_start0[row_lvl0])

        # nonzero level pairs of A22 (u >= v, original ids), dense blocks
        in_rest = ~top_r & ~left_c
        rr_row, rr_col, rr_x = zr[in_rest] - q1, zc[in_rest] - q1, zx[in_rest]
        ru, rv = row_lvl0[rr_row], row_lvl0[rr_col]
        keep = ru >= rv
        ent_u, ent_v, ent_x = ru[keep], rv[keep], rr_x[keep]
        ent_a, ent_b = row_c0[rr_row[keep]], row_c0[rr_col[keep]]
        n_rand = nL - 1
        diag = np.arange(n_rand)
        keys = np.unique(np.concatenate([ent_u * nL + ent_v, diag * nL + diag, border * nL + np.arange(nL)]))
        pr_u0, pr_v0 = keys // nL, keys % nL
        blk = lvl_size0[pr_u0] * lvl_size0[pr_v0]
        pr_ofs0 = _starts(blk)
        pr_vals = np.zeros(int(pr_ofs0[-1]))
        t = np.searchsorted(keys, ent_u * nL + ent_v)
        pr_vals[pr_ofs0[t] + ent_a * lvl_size0[ent_v] + ent_b] = ent_x
        # border rows: [X y]' Z_rest, then [X y]'[X y]
        if q_rest:
            ZX = np.column_stack([stats.ZtX[q1:], stats.Zty[q1:]])
            bt = np.searchsorted(keys, border * nL + row_lvl0[:q_rest])
            sv = lvl_size0[row_lvl0[:q_rest]]
            pr_vals[(pr_ofs0[bt] + row_c0[:q_rest])[:, None] + sv[:, None] * np.arange(p + 1)] = ZX
        XyXy = np.empty((p + 1, p + 1))
        XyXy[:p, :p] = stats.XtX
        XyXy[:p, p] = XyXy[p, :p] = stats.Xty
        XyXy[p, p] = stats.yty
        bb = np.searchsorted(keys, border * nL + border)
        pr_vals[pr_ofs0[bb] : pr_ofs0[bb + 1]] = XyXy.reshape(-1)
        self._pairs0 = (pr_u0, pr_v0, pr_ofs0, pr_vals)

        # first-factor rows: per level k, the rest levels it touches (full levels), then the border
        in_a21 = ~top_r & left_c
        a21 = (zr[in_a21] - q1, zc[in_a21], zx[in_a21])  # rows (rest), columns (first factor), values
        fk, fl = a21[1] // p1, row_lvl0[a21[0]]
        kl = np.unique(np.concatenate([fk * nL + fl, np.arange(n1) * nL + border]))
        self._kl0 = kl
        self._a21 = (a21, fk, fl)

        # order of the rest levels: a sparse head (minimum degree) when it pays, else dense
        perm = np.arange(nL)
        head = None
        if SPARSE_HEAD and self.split_first and n_rand >= 64:
            head = self._sparse_head(nL, lvl_size0, kl, pr_u0, pr_v0)
            if head is not None:
                order, ptr, nbr = head
                rest = np.setdiff1d(np.arange(n_rand), order, assume_unique=True)
                perm = np.concatenate([order, rest, [nL - 1]]).astype(np.int64)
        self._install(perm, head, lvl_size0, lvl_tofs0, lvl_start0, row_lvl0, row_c0, stats)

    def _sparse_head(self, nL, lvl_size0, kl, pr_u0, pr_v0):
        """Levels to eliminate sparse (minimum-degree order) before a dense tail, when that pays.

        Returns ``(order, ptr, nbr)``: the head levels in elimination order and their
        neighbours when eliminated (the pattern of their columns), or None (all dense).
        """
        n_rand = nL - 1
        if n_rand > _MAX_ORDER_LEVELS:
            return None
        k_of, l_of = kl // nL, kl % nL
        lev_lvl_ptr = np.searchsorted(k_of, np.arange(self._n1 + 1)).astype(np.int64)
        adj = kern.clique_adjacency(n_rand, lev_lvl_ptr, _i64(l_of), _i64(pr_u0), _i64(pr_v0))
        if adj.sum() > 0.5 * n_rand * n_rand:
            return None  # dense already: nothing to gain
        m, bsize = self.m, self.p + 1
        dense_cost = m**3 / 3.0
        weight = _i64(lvl_size0[:n_rand])
        order, ptr, nbr, steps = kern.minimum_degree(adj, weight, 4e8)
        if steps == 0:
            return None
        order, ptr = order[:steps], ptr[: steps + 1]
        # cost of a head of h levels: its columns' flops (scalar kernel) + the dense tail's
        own = weight[order].astype(float)
        below = np.bincount(np.repeat(np.arange(steps), np.diff(ptr)), weights=weight[nbr], minlength=steps) + bsize
        col_flops = np.zeros(steps)
        for b in range(int(own.max())):
            col_flops += np.where(own > b, (own - b + below) ** 2, 0.0)
        head_cost = np.concatenate([[0.0], np.cumsum(col_flops)]) * SPARSE_ADVANTAGE
        tail = m - np.concatenate([[0.0], np.cumsum(own)])
        cost = head_cost + tail**3 / 3.0
        h = int(np.argmin(cost))
        if h == 0 or cost[h] > dense_cost / 1.25:
            return None
        return order[:h], ptr[: h + 1], nbr[: ptr[h]]

    def _install(self, perm, head, lvl_size0, lvl_tofs0, lvl_start0, row_lvl0, row_c0, stats):
        """Kernel arrays in the (possibly permuted) rest order."""
        m, p, q_rest, n1, p1 = self.m, self.p, self.q_rest, self._n1, self._p1
        nL = len(lvl_size0)
        if head is None:  # the original order (the identity permutation): nothing to reorder
            inv = np.arange(nL)
            lvl_size, lvl_tofs, lvl_start = lvl_size0, lvl_tofs0, lvl_start0
            new_row, row_lvl, row_c = np.arange(m), row_lvl0, row_c0
        else:
            inv = np.empty(nL, dtype=np.int64)
            inv[perm] = np.arange(nL)
            lvl_size = _i64(lvl_size0[perm])
            lvl_tofs = _i64(lvl_tofs0[perm])
            lvl_start = _starts(lvl_size)[:-1]
            new_row = _i64(lvl_start[inv[row_lvl0]] + row_c0)  # old scalar row -> new
            row_lvl = np.empty(m, dtype=np.int64)
            row_lvl[new_row] = inv[row_lvl0]
            row_c = np.empty(m, dtype=np.int64)
            row_c[new_row] = row_c0
        self._perm, self._new_row = perm, new_row
        self._lvl = (lvl_size, lvl_tofs, lvl_start)
        self._row_lvl, self._row_c = row_lvl, row_c

        # level pairs in the new order (u >= v by position), blocks transposed where swapped
        pr_u0, pr_v0, pr_ofs0, vals0 = self._pairs0
        U, V = inv[pr_u0], inv[pr_v0]
        swap = U < V
        pr_u, pr_v = np.where(swap, V, U), np.where(swap, U, V)
        pr_vals = vals0
        if swap.any():
            pr_vals = vals0.copy()
            for t in np.flatnonzero(swap):
                su, sv = lvl_size0[pr_u0[t]], lvl_size0[pr_v0[t]]
                pr_vals[pr_ofs0[t] : pr_ofs0[t + 1]] = vals0[pr_ofs0[t] : pr_ofs0[t + 1]].reshape(su, sv).T.reshape(-1)
        del self._pairs0
        self._pairs = (_i64(pr_u), _i64(pr_v), _i64(pr_ofs0), _f64(pr_vals))

        # first-factor rows in the new order
        kl = self._kl0
        a21, fk, fl = self._a21
        k_of, l_new = kl // nL, inv[kl % nL]
        if head is not None:  # kl is sorted: in the original order it is sorted by (level, rest level) already
            order = np.lexsort((l_new, k_of))
            k_of, l_new = k_of[order], l_new[order]
        sizes = lvl_size[l_new]
        pair_row = _starts(sizes)
        lev_rows = _i64(np.repeat(lvl_start[l_new] - pair_row[:-1], sizes) + np.arange(pair_row[-1]))
        lev_ptr = _i64(pair_row[np.searchsorted(k_of, np.arange(n1 + 1))])
        lev_vals = np.zeros((int(pair_row[-1]), p1))
        key_sorted = k_of * nL + l_new
        t = np.searchsorted(key_sorted, fk * nL + inv[fl])
        lev_vals[pair_row[t] + row_c0[a21[0]], a21[1] % p1] = a21[2]
        if n1:
            tb = np.searchsorted(key_sorted, np.arange(n1) * nL + (nL - 1))
            Xy = np.column_stack([stats.ZtX[: self.q1], stats.Zty[: self.q1]]).reshape(n1, p1, p + 1)
            lev_vals[pair_row[tb][:, None] + np.arange(p + 1)] = Xy.transpose(0, 2, 1)
        self._first = (lev_ptr, lev_rows, _f64(lev_vals))
        r = np.diff(lev_ptr)
        R = int(lev_ptr[-1]) if n1 else 0
        # per rest row, the first-factor levels touching it (for the row/column-wise update)
        k_of_row = np.repeat(np.arange(n1), r)
        inc = np.argsort(lev_rows, kind="stable")
        self._inc = (
            _starts(np.bincount(lev_rows, minlength=m)),
            _i64(k_of_row[inc]),
            _i64(inc),
        )
        self._Wall = np.zeros((R, p1))
        self._L11 = np.zeros((n1, p1, p1))
        del self._a21, self._kl0
        self._colmap = np.zeros(m, dtype=np.int64)
        self._work = np.zeros(m)

        # the sparse head's pattern: per level, its own lower block, its elimination neighbours, the border
        cols = []
        H = 0
        if head is not None:
            order_h, ptr, nbr = head
            for step in range(len(order_h)):
                s0, sz = lvl_start[step], lvl_size[step]
                nb_levels = np.sort(inv[nbr[ptr[step] : ptr[step + 1]]])
                nb_rows = [np.arange(lvl_start[u], lvl_start[u] + lvl_size[u]) for u in nb_levels]
                below = np.concatenate(nb_rows + [np.arange(q_rest, m)])
                for b in range(sz):
                    cols.append(np.concatenate([np.arange(s0 + b, s0 + sz), below]))
            H = int(lvl_start[len(order_h)])
        self.n_head = H
        self.sparse_rest = H > 0
        T = m - H
        colptr = _starts([len(c) for c in cols])
        rowidx = _i64(np.concatenate(cols)) if cols else np.zeros(0, dtype=np.int64)
        nnz_h = len(rowidx)
        self._colptr, self._rowidx, self._nnz_h, self._T = colptr, rowidx, nnz_h, T
        if H:
            self._rptr, self._rcol, self._rpos = (_i64(a) for a in kern.row_structure(colptr, rowidx))
            lkeys = np.repeat(np.arange(H), np.diff(colptr)) * m + rowidx
        else:
            self._rptr, self._rcol, self._rpos = np.zeros(1, dtype=np.int64), rowidx, rowidx
        self._out = np.zeros(nnz_h + T * T)

        def positions(keys: np.ndarray) -> np.ndarray:
            """Positions in ``out`` of entries ``col * m + row`` (-1 stays -1)."""
            col, row = keys // m, keys % m
            if not H:
                return np.where(keys >= 0, row * T + col, -1)
            pos = np.full(len(keys), -1, dtype=np.int64)
            tail = (keys >= 0) & (col >= H)
            pos[tail] = nnz_h + (row[tail] - H) * T + (col[tail] - H)
            hd = (keys >= 0) & (col < H)
            if hd.any():
                found = np.searchsorted(lkeys, keys[hd])
                if not np.all(lkeys[np.minimum(found, len(lkeys) - 1)] == keys[hd]):
                    raise AssertionError("the sparse pattern misses an entry of the rest system")
                pos[hd] = found
            return pos

        pu, pv, pofs, _ = self._pairs
        self._pr_pos = positions(kern.block_keys(pu, pv, pofs, lvl_start, lvl_size, m, int(pofs[-1])))
        self._diag_pos = positions(np.arange(q_rest) * (m + 1)) if q_rest else np.zeros(0, dtype=np.int64)
        # L21 (nearly) dense in a dense layout: one BLAS syrk beats the scattered update
        self._dense_w = False
        self._WdT = np.zeros((0, 0))
        scatter_flops = float((r * (r + 1)).sum()) * p1
        syrk_flops = float(m) * (m + 1) * n1 * p1
        if H == 0 and n1 and syrk_flops < 10.0 * scatter_flops and syrk_flops < 2e9:
            self._dense_w = True
            self._WdT = np.zeros((n1 * p1, m))
        # small dense tails: the whole evaluation in one compiled call
        self._small = T <= SMALL_TAIL and (not self._dense_w or 0.5 * T * (T + 1) * n1 * p1 <= SMALL_SYRK_FLOPS)
        self._pack()

    def _pack(self) -> None:
        """Gather the kernels' arrays into one integer and one float buffer, the attributes becoming
        views of them (:func:`~bayesmlm.freq._plskernels.pack`): an evaluation then passes the
        compiled code six arguments, whose types Numba checks on every call, instead of 43."""
        lev_ptr, lev_rows, lev_vals = self._first
        lvl_size, lvl_tofs, lvl_start = self._lvl
        pr_u, pr_v, pr_ofs, pr_vals = self._pairs
        inc_ptr, inc_k, inc_a = self._inc
        ib, io, ints = kern.pack([
            self._tpos, lev_ptr, lev_rows, self._row_lvl, self._row_c, lvl_start, lvl_size, lvl_tofs, pr_u, pr_v,
            pr_ofs, self._pr_pos, self._diag_pos, inc_ptr, inc_k, inc_a, self._colptr, self._rowidx, self._colmap,
            self._rptr, self._rcol, self._rpos,
        ], np.int64)  # fmt: skip
        fb, fo, floats = kern.pack(
            [self._Tflat, self.A11, lev_vals, pr_vals, self._out, self._L11, self._Wall, self._WdT, self._work],
            np.float64,
        )
        (self._tpos, lev_ptr, lev_rows, self._row_lvl, self._row_c, lvl_start, lvl_size, lvl_tofs, pr_u, pr_v,
         pr_ofs, self._pr_pos, self._diag_pos, inc_ptr, inc_k, inc_a, self._colptr, self._rowidx, self._colmap,
         self._rptr, self._rcol, self._rpos) = ints  # fmt: skip
        self._Tflat, self.A11, lev_vals, pr_vals, self._out, self._L11, self._Wall, self._WdT, self._work = floats
        self._first = (lev_ptr, lev_rows, lev_vals)
        self._lvl = (lvl_size, lvl_tofs, lvl_start)
        self._pairs = (pr_u, pr_v, pr_ofs, pr_vals)
        self._inc = (inc_ptr, inc_k, inc_a)
        dims = [
            self._p1, self._t1ofs, self.q_rest, self.m, self.n_head, self._nnz_h, self._dense_w, self.n, self.p,
            self.reml, self._n1, self._Wall.shape[0], *self._WdT.shape,
        ]  # fmt: skip
        self._packed = (ib, io, fb, fo, np.array(dims, dtype=np.int64))

    @property
    def reml(self) -> bool:
        """REML criterion (True) or ML deviance."""
        return self._reml

    @reml.setter
    def reml(self, value: bool) -> None:
        self._reml = bool(value)
        if hasattr(self, "_packed"):  # the compiled evaluation reads it from the packed dimensions
            self._packed[4][kern.PACKED_DIMS.index("reml")] = self._reml

    def __setstate__(self, state: dict) -> None:
        # a pickle or deep copy restores the views as separate arrays: gather them again
        self.__dict__.update(state)
        self._pack()

    @property
    def _tail(self) -> np.ndarray:
        """The dense tail as a T x T matrix (a view, so that copies and pickles stay consistent)."""
        return self._out[self._nnz_h :].reshape(self._T, self._T)

    def moment_start(self) -> np.ndarray | None:
        """A starting theta from moments: template diagonals estimated, off-diagonals 0.

        For each random-effects column, the ordinary least-squares residuals summed
        within levels, ``S_j = (Z'r)_j`` with weight ``w_j = (Z'Z)_jj``, give
        ``E[sum S_j^2 / w_j] = sd^2 sum w_j + J sigma^2``: a method-of-moments SD
        (crossed factors inflate it a little; the residual variance is netted of
        the effects' shares by a few fixed-point steps), relative to the residual
        SD and kept in [0.05, 20]. None when the fixed effects' cross-product is
        singular. Starting at the right scale saves BOBYQA's long approach from
        the identity where the columns' scales differ (a slope on weeks 0-51:
        100 evaluations instead of 400) and reaches the same optimum or a better
        one on maximal models with several local optima.
        """
        layout = self.layout
        st = self._stats
        n = st.n
        beta = kern.spd_solve(_f64(st.XtX), _f64(st.Xty))
        rss = float(st.yty - beta @ st.Xty)
        if not (np.isfinite(rss) and rss > 0):
            return None
        s2 = rss / n
        Ztr = st.Zty - st.ZtX @ beta
        w = np.asarray(st.ZtZ.diagonal()).ravel()
        offsets = _starts([lv * sz for lv, sz in zip(self.levels, layout.sizes)])
        terms = []
        for k, (size, free) in enumerate(zip(layout.sizes, layout.free)):
            block_S = Ztr[offsets[k] : offsets[k + 1]].reshape(self.levels[k], size)
            block_w = w[offsets[k] : offsets[k + 1]].reshape(self.levels[k], size)
            # one term per free entry of column i's row, so a column with covariances has its share netted
            # from the residual once for each: a heuristic start, and the better one on crossed and maximal
            # models (once per column: crossed slopes 81 -> 97 evaluations, kb07-like maximal 445 -> 543)
            for i, _ in free:
                Wc = block_w[:, i]
                ok = Wc > 0
                if ok.any():
                    terms.append(((k, i), float(np.sum(block_S[ok, i] ** 2 / Wc[ok])), int(ok.sum()), float(Wc.sum())))
        s2e, var = s2, {}
        for _ in range(3):  # the residual variance net of the effects' shares, and back
            var = {key: max((ss - J * s2e) / W, 0.0) for key, ss, J, W in terms}
            s2e = max(s2 - sum(var[key] * W / n for key, _, _, W in terms), 0.1 * s2)
        theta = [
            np.sqrt(var.get((k, i), s2e) / s2e) if i == j else 0.0 for k, free in enumerate(layout.free) for (i, j) in free
        ]
        return np.where(layout.is_diagonal, np.clip(np.array(theta), 0.05, 20.0), 0.0)

    def moment_steps(self, start: np.ndarray) -> np.ndarray:
        """BOBYQA's first steps from a moment start: a quarter of the entry's row diagonal (at least 0.02)."""
        diag = {}
        for k, free in enumerate(self.layout.free):
            for t, (i, j) in enumerate(free):
                if i == j:
                    diag[(k, i)] = start[self.layout.offsets[k] + t]
        rows = [diag.get((k, i), 1.0) for k, free in enumerate(self.layout.free) for (i, _) in free]
        return np.maximum(0.25 * np.array(rows), 0.02)

    def blas_threads(self):
        """Context for evaluating this deviance many times: one BLAS thread unless the system is large.

        A multi-threaded BLAS gains little on systems of a few thousand rows and,
        on shared cores, loses an order of magnitude (threads wait on each other).
        """
        if self._small:  # evaluated by compiled loops alone: no BLAS to limit
            return contextlib.nullcontext()
        if self.m <= ONE_THREAD_LIMIT:
            return _controller().limit(limits=1, user_api="blas")
        return contextlib.nullcontext()

    # -- one evaluation ----------------------------------------------------------------
    def _factorize(self, theta: np.ndarray) -> tuple[float, np.ndarray] | None:
        """Assemble and factor the system at theta: ``(log|L11|^2, diag of the rest factor)``, None if not PD."""
        H, m, nnz_h = self.n_head, self.m, self._nnz_h
        out = self._out
        logdet1 = kern.assemble_packed(theta, *self._packed)
        if not np.isfinite(logdet1):
            return None
        if H and not kern.head_cholesky(
            out, self._colptr, self._rowidx, self._rptr, self._rcol, self._rpos, self._work, H, m, nnz_h
        ):
            return None
        # the tail's C-order lower triangle is its Fortran-order upper triangle: syrk, dpotrf('U') in place
        tail = self._tail
        if self._dense_w:
            blas.dsyrk(-1.0, self._WdT.T, beta=1.0, c=tail.T, lower=0, overwrite_c=1)
        _, info = lapack.dpotrf(tail.T, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            return None
        if H:
            return logdet1, np.concatenate([out[self._colptr[:-1]], np.diagonal(tail)])
        return logdet1, np.diagonal(tail)

    def _criterion_from(self, logdet1: float, d: np.ndarray) -> tuple[float, float, float, float]:
        r, pe = self.q_rest, self.q_rest + self.p
        logd = np.log(d[:pe])
        logdet_L = logdet1 + 2.0 * float(logd[:r].sum())
        logdet_RX = 2.0 * float(logd[r:pe].sum())
        pwrss = float(d[pe]) ** 2
        if self.reml:
            dof = self.n - self.p
            dev = logdet_L + logdet_RX + dof * (1.0 + _LOG_2PI + np.log(pwrss / dof))
        else:
            dev = logdet_L + self.n * (1.0 + _LOG_2PI + np.log(pwrss / self.n))
        return float(dev), logdet_L, logdet_RX, pwrss

    def __call__(self, theta: np.ndarray) -> float:
        theta = _theta_vector(theta)
        if self._small:
            value = kern.evaluate_packed(theta, *self._packed)[0]
            return value if math.isfinite(value) else np.inf
        out = self._factorize(theta)
        if out is None:
            return np.inf
        with np.errstate(all="ignore"):
            value = self._criterion_from(*out)[0]
        return value if np.isfinite(value) else np.inf

    def criterion_parts(self, theta: np.ndarray) -> tuple[float, float, float, float] | None:
        """``(deviance, log|L|^2, log|RX|^2, pwrss)`` at theta, None where the system is not positive definite.

        Leaves the factor in ``_out`` (the head's columns, then the tail's lower triangle, C order).
        Small systems are factored by the same compiled call as every evaluation the optimiser made
        (:func:`~bayesmlm.freq._plskernels.evaluate_packed`), others by :meth:`_factorize`."""
        theta = _theta_vector(theta)
        if self._small:
            parts = kern.evaluate_packed(theta, *self._packed)
            return None if np.isnan(parts[0]) else tuple(float(v) for v in parts)  # NaN: not positive definite
        out = self._factorize(theta)
        return None if out is None else self._criterion_from(*out)

    def solve(self, theta: np.ndarray) -> PLSSolution:
        """Fixed effects, conditional modes and the criterion at ``theta``."""
        theta = _theta_vector(theta)
        parts = self.criterion_parts(theta)
        if parts is None:
            raise np.linalg.LinAlgError("the penalized system is not positive definite at this theta")
        dev, logdet_L, logdet_RX, pwrss = parts
        r, pe, m = self.q_rest, self.q_rest + self.p, self.m
        # back-substitution: L0' x = l, with l the last row of the rest factor
        H = self.n_head
        x2 = kern.back_solve(self._out, self._colptr, self._rowidx, H, m, self._nnz_h, pe)
        RX = np.tril(self._tail[r - H : pe - H, r - H : pe - H])
        # b = Lambda u for the rest levels (in rest order), beta for the border
        lvl_size, lvl_tofs, lvl_start = self._lvl
        Tflat = self._Tflat
        z = np.zeros(m)
        z[r:pe] = x2[r:pe]
        for k in self._rest_blocks:
            s, T = self.layout.sizes[k], self.layout.templates(theta)[k]
            sel = np.flatnonzero(lvl_tofs == self._tofs[k])
            rows = lvl_start[sel][:, None] + np.arange(s)[None, :]
            z[rows] = x2[rows] @ T.T
        b_parts = []
        if self.split_first:
            lev_ptr, lev_rows, lev_vals = self._first
            b1 = kern.first_block_modes(Tflat, self._p1, self._t1ofs, self._L11, lev_ptr, lev_rows, lev_vals, z, pe)
            b_parts.append(b1.reshape(-1))
        b_parts.append(z[self._new_row[:r]])
        beta = x2[r:pe].copy()
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
            RX=RX,
        )
