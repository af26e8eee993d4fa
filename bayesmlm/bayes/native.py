"""The collapsed log density as a compiled C callback for nutpie: no graph, no Python per step.

Hand-written: no library provides the gradient of a linear mixed model's
marginal likelihood in terms of its sufficient statistics. The density is the
one ``collapsed.py`` builds in PyMC (group and fixed effects integrated out,
every fixed-effect prior normal); here it and its gradient are written in
Numba, compiled once and cached on disk (``cache=True``), and handed to nutpie
as the C function pointers its Rust sampler calls directly, so chains run in
parallel threads without the GIL and a warm start costs no compilation.

Unconstrained parameters, in this order:

* ``log sd`` of every varying column of every factor;
* for each correlated group of ``m`` columns, ``m (m - 1) / 2`` values mapped
  to the Cholesky factor of a correlation matrix by the canonical-partial-
  correlation transform (``tanh``, then rows scaled to unit length), with its
  log Jacobian and the LKJ(eta) density of the Cholesky factor
  ``sum_i (m - i + 2 eta - 3) log L_ii`` (0-based ``i``);
* ``log sigma``.

The transform differs from PyMC's, the distribution does not: sd, sigma and
correlations have the priors of the PyMC model, checked against its log
density in the tests. Log densities drop constants.

With ``G = blockdiag(Lambda, I)``, ``C = [Z X]'[Z X]``, ``a = [Z X]'y``,
``P`` the prior precision of ``beta`` and ``s = sigma^2``:

    Q = G'CG + blockdiag(I, sP),  b = G'a + [0; sPm],  g = Q^-1 b,
    ll = -(n-p)/2 log s - 1/2 log|Q| - (y'y + s m'Pm - b'g) / (2s),
    d ll / dG = -C G Q^-1 + (a - C G g) g' / s,
    d ll / ds = -(n-p)/(2s) - tr(Q^-1 E)/2 - (m'Pm - 2 g'e + g'Eg)/(2s) + r2/(2s^2),

with ``E = blockdiag(0, P)``, ``e = [0; Pm]``, ``r2`` the bracket above.

Examples
--------
>>> import numpy as np, bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> native = NativeCollapsed.from_design(d, bm.priors.default(d.formula.text, d.data))
>>> native.n_dim, native.names  # 2 log sd, 1 correlation, log sigma
(4, ['sd[Subject]', 'cor[Subject]', 'sigma'])
>>> value, grad = native.logp_and_grad(np.zeros(4))
>>> bool(np.isfinite(value)), grad.shape
(True, (4,))
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numba
import numpy as np

from ..design import Design
from ..priors.distributions import Normal
from ..priors.spec import PriorSpec, correlation_key
from ..stats import SufficientStats
from . import precompile
from .nutpie_bridge import (ERROR_DEFECT, EXPAND_SIG, LOGP_SIG, CompiledDensity, add_scale_variables, blob_at,
                            c_callback, logp_status, packed_matrix, prior_scale)
from .scales import POSITIVE_FAMILIES, positive_logp, sd_and_correlations

__all__ = ["NativeCollapsed", "supports", "compiled_callbacks", "one_blas_thread"]

_HEADER = 16
ERROR_NOT_POSITIVE_DEFINITE = 1
"""Log-density callback code where ``Q`` cannot be factored: nutpie treats it like a divergence."""


def supports(design: Design, priors: PriorSpec) -> str | None:
    """None when the compiled density covers this model, else why not."""
    if not all(isinstance(priors[name], Normal) for name in design.fixed_names):
        return "a fixed-effect prior is not normal, so beta is sampled"
    for key in [f"sd[{b.factor}][{c}]" for b in design.blocks for c in b.columns] + ["sigma"]:
        if priors[key].family not in POSITIVE_FAMILIES:
            return f"prior family {priors[key].family} of {key} has no compiled density"
    return None


# --------------------------------------------------------------------------- numba kernels
# error_model="numpy": float arithmetic follows IEEE (x / 0 = inf) instead of raising
# ZeroDivisionError, so a point far out in the tails (sigma = exp(-800) = 0, a correlation of
# tanh(50) = 1) gives a non-finite density, which nutpie treats as a divergence; only a defect raises.


@numba.njit(cache=True, error_model="numpy")
def _unpack(blob):
    """The header of the packed float64 array that ``NativeCollapsed.from_design`` writes.

    ``[0]`` total length, ``[1:4]`` q, p, n, ``[4:8]`` number of SDs, of correlated groups,
    of factors, largest group; ``[8:16]`` offsets of the sections: ``C``; ``a``; ``y'y``;
    priors (family code and two parameters per SD, then sigma); factors (offset, levels,
    columns each; then first SD of each; then a correlated flag each); groups (size, eta,
    SD indices, padded); prior mean and precision of ``beta``; Lambda's nonzeros (row,
    column, i, j).
    """
    h = blob[:_HEADER]
    return (int(h[1]), int(h[2]), h[3], int(h[4]), int(h[5]), int(h[6]), int(h[7]),
            int(h[8]), int(h[9]), int(h[10]), int(h[11]), int(h[12]), int(h[13]), int(h[14]), int(h[15]))


@numba.njit(cache=True, error_model="numpy")
def _scales(x, blob):
    """sd, sigma and every block's correlation factor, with the prior part of the log density.

    Returns (sd, sigma, Lfull, dLfull, lp, gx) where ``Lfull`` (n_sd, n_sd) holds each
    block's correlation factor on the block diagonal and ``dLfull`` (n_sd, n_sd, n_dim)
    its derivative in ``x``; ``gx`` is the gradient of ``lp`` in ``x``.
    """
    q, p, n, n_sd, n_groups, n_blocks, kmax, o_C, o_a, o_yty, o_pri, o_blk, o_grp, o_mp, o_pos = _unpack(blob)
    n_dim = x.shape[0]
    n_loc = n_dim - 1
    sd, Lfull, dL_loc, lp, g_loc = sd_and_correlations(
        x[:n_loc], packed_matrix(blob, o_pri, n_sd, 3), packed_matrix(blob, o_grp, n_groups, 2 + kmax), kmax)
    gx = np.zeros(n_dim)
    dLfull = np.zeros((n_sd, n_sd, n_dim))
    for u in range(n_loc):
        gx[u] = g_loc[u]
    for i in range(n_sd):
        for j in range(n_sd):
            for u in range(n_loc):
                dLfull[i, j, u] = dL_loc[i, j, u]
    sigma = math.exp(x[n_loc])
    o_sig = o_pri + 3 * n_sd
    v, d = positive_logp(int(blob[o_sig]), blob[o_sig + 1], blob[o_sig + 2], sigma)
    lp += v + x[n_loc]
    gx[n_loc] += d * sigma + 1.0
    return sd, sigma, Lfull, dLfull, lp, gx


@numba.njit(cache=True, error_model="numpy")
def _factor(Q):
    """(True, Cholesky factor, inverse) of ``Q``, or (False, empty, empty) when it cannot be factored.

    Numba cannot name an exception class in ``except``, so the ``try`` holds these two
    LAPACK calls only: at run time their one error is ``LinAlgError`` (not positive
    definite, singular, or holding inf/NaN, as when an SD overflows far out in the tails).
    """
    try:
        chol = np.linalg.cholesky(Q)
        Qinv = np.linalg.inv(Q)
    except Exception:  # noqa: BLE001  (LinAlgError: see above)
        return False, np.empty((0, 0)), np.empty((0, 0)).T  # the layouts (C, F) of the calls' results
    return True, chol, Qinv


@numba.njit(cache=True, error_model="numpy")
def _logp_grad(x, blob, grad):
    """(log density with constants dropped, True) at ``x``, its gradient written into ``grad``.

    (-inf, False), gradient NaN, where ``Q`` cannot be factored.
    """
    q, p, n, n_sd, n_groups, n_blocks, kmax, o_C, o_a, o_yty, o_pri, o_blk, o_grp, o_mp, o_pos = _unpack(blob)
    n_dim = x.shape[0]
    sd, sigma, Lfull, dLfull, lp, gx = _scales(x, blob)
    s = sigma * sigma
    r = q + p
    a = blob[o_a:o_a + r]
    yty = blob[o_yty]
    mprior = blob[o_mp:o_mp + p]
    P = blob[o_mp + p:o_mp + 2 * p]
    # G = blockdiag(Lambda, I), Lambda block diagonal: each nonzero is sd_i L_ij / sigma of its
    # factor's (i, j). Products with G go through these nonzeros only (O(r^2 k), not O(r^3)).
    if (blob.shape[0] - o_pos) % 4 != 0:
        raise ValueError("the Lambda section of the packed array is not a whole number of 4-value rows")
    n_pos = (blob.shape[0] - o_pos) // 4
    rows = np.empty(n_pos, dtype=np.int64)
    cols = np.empty(n_pos, dtype=np.int64)
    lam = np.empty(n_pos)
    for t in range(n_pos):
        o = o_pos + 4 * t
        rows[t], cols[t] = int(blob[o]), int(blob[o + 1])
        lam[t] = sd[int(blob[o + 2])] * Lfull[int(blob[o + 2]), int(blob[o + 3])] / sigma
    GtC = np.zeros((r, r))  # G'C (C symmetric)
    for i in range(q, r):
        for m in range(r):
            GtC[i, m] = blob[o_C + i * r + m]
    for t in range(n_pos):
        for m in range(r):
            GtC[cols[t], m] += lam[t] * blob[o_C + rows[t] * r + m]
    CG = np.empty((r, r))
    for i in range(r):
        for m in range(r):
            CG[i, m] = GtC[m, i]
    Q = np.zeros((r, r))  # G'CG, row by row: row c of G'CG is row c of G'C times G
    for m in range(r):
        for j in range(q, r):
            Q[m, j] = GtC[m, j]
    for t in range(n_pos):
        for m in range(r):
            Q[m, cols[t]] += lam[t] * GtC[m, rows[t]]
    for i in range(q):
        Q[i, i] += 1.0
    for j in range(p):
        Q[q + j, q + j] += s * P[j]
    b = np.zeros(r)
    for j in range(q, r):
        b[j] = a[j]
    for t in range(n_pos):
        b[cols[t]] += lam[t] * a[rows[t]]
    for j in range(p):
        b[q + j] += s * P[j] * mprior[j]
    factored, chol, Qinv = _factor(Q)
    if not factored:
        for i in range(n_dim):
            grad[i] = np.nan
        return -np.inf, False
    g = np.zeros(r)
    bg = 0.0
    for i in range(r):
        for m in range(r):
            g[i] += Qinv[i, m] * b[m]
        bg += b[i] * g[i]
    mPm = 0.0
    for j in range(p):
        mPm += P[j] * mprior[j] * mprior[j]
    r2 = yty + s * mPm - bg
    half_logdet = 0.0
    for i in range(r):
        half_logdet += math.log(chol[i, i])
    ll = -0.5 * (n - p) * math.log(s) - half_logdet - r2 / (2.0 * s)
    # d ll / ds holding Lambda fixed
    resid = np.empty(r)
    for i in range(r):
        acc = a[i]
        for m in range(r):
            acc -= CG[i, m] * g[m]
        resid[i] = acc
    tr = 0.0
    ge = 0.0
    gEg = 0.0
    for j in range(p):
        tr += P[j] * Qinv[q + j, q + j]
        ge += g[q + j] * P[j] * mprior[j]
        gEg += P[j] * g[q + j] * g[q + j]
    dr2 = mPm - 2.0 * ge + gEg
    dll_ds = -0.5 * (n - p) / s - 0.5 * tr - dr2 / (2.0 * s) + r2 / (2.0 * s * s)
    dsigma = dll_ds * 2.0 * sigma
    # d ll / d G at the nonzeros of Lambda -> T = diag(sd) L (summed over levels) and sigma
    dT = np.zeros((n_sd, n_sd))
    for t in range(n_pos):
        row, col = rows[t], cols[t]
        d = resid[row] * g[col] / s
        for m in range(r):
            d -= CG[row, m] * Qinv[col, m]  # Qinv symmetric
        dT[int(blob[o_pos + 4 * t + 2]), int(blob[o_pos + 4 * t + 3])] += d / sigma
        dsigma -= d * lam[t] / sigma
    gx[n_dim - 1] += dsigma * sigma
    for i in range(n_sd):
        for j in range(i + 1):
            if dT[i, j] == 0.0:
                continue
            gx[i] += dT[i, j] * Lfull[i, j] * sd[i]  # d/d log sd_i
            dL = dT[i, j] * sd[i]
            for u in range(n_sd, n_dim - 1):
                gx[u] += dL * dLfull[i, j, u]
    for i in range(n_dim):
        grad[i] = gx[i]
    return lp + ll, True


@numba.njit(cache=True, error_model="numpy")
def _expand(x, blob, out):
    """sd, every correlated block's correlation matrix (flattened), then sigma."""
    q, p, n, n_sd, n_groups, n_blocks, kmax, o_C, o_a, o_yty, o_pri, o_blk, o_grp, o_mp, o_pos = _unpack(blob)
    sd, sigma, Lfull, dLfull, lp, gx = _scales(x, blob)
    for i in range(n_sd):
        out[i] = sd[i]
    t = n_sd
    for bi in range(n_blocks):
        if blob[o_blk + 4 * n_blocks + bi] == 0.0:
            continue
        k = int(blob[o_blk + 3 * bi + 2])
        c0 = int(blob[o_blk + 3 * n_blocks + bi])
        for i in range(k):
            for j in range(k):
                acc = 0.0
                for m in range(min(i, j) + 1):
                    acc += Lfull[c0 + i, c0 + m] * Lfull[c0 + j, c0 + m]
                out[t] = acc
                t += 1
    out[t] = sigma


def _logp_callback(dim, x_, out_, logp_, user_data):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    try:
        value, factored = _logp_grad(x, blob_at(user_data), out)
    except Exception:  # noqa: BLE001
        # Any error here is a defect, not a region of the posterior: a negative code makes nutpie
        # stop with an error (positive codes are recoverable, like a divergence). Without this
        # catch Numba would print the error and return 0, i.e. report success with garbage.
        return ERROR_DEFECT
    if not factored:
        return ERROR_NOT_POSITIVE_DEFINITE
    return logp_status(value, out, logp)


def _expand_callback(dim, expanded, x_, out_, user_data):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    try:
        _expand(x, blob_at(user_data), out)
    except Exception:  # noqa: BLE001  (a defect: nutpie stops, "Failed to expand a draw")
        return ERROR_DEFECT
    return 0


def one_blas_thread():
    """Context in which BLAS/LAPACK run single-threaded, for sampling with the C callbacks.

    nutpie calls the callbacks from its own threads, whose stacks are small; OpenBLAS's
    multi-threaded LU (``dgetrf_parallel``, used from about 100 x 100) recurses deeply
    enough there to overflow them (a segmentation fault, seen with 146 effects). Chains
    already run in parallel, so one BLAS thread per chain loses nothing.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@functools.cache
def collapsed_logp_cfunc():
    """The log-density C callback (compiled on first use, or by a helper process meanwhile, see
    :mod:`bayesmlm.bayes.precompile`; then loaded from Numba's disk cache)."""
    precompile.wait("collapsed")
    return c_callback(LOGP_SIG, _logp_callback)


@functools.cache
def compiled_callbacks():
    """The two C callbacks nutpie calls: compiled on first use (then loaded from Numba's disk cache)."""
    expand = c_callback(EXPAND_SIG, _expand_callback)  # first: a helper may be compiling the log density
    return collapsed_logp_cfunc(), expand


# --------------------------------------------------------------------------- packing


@dataclass(frozen=True)
class NativeCollapsed(CompiledDensity):
    """Everything the compiled collapsed density needs, as one float64 array (see :class:`CompiledDensity`).

    Sample its :meth:`for_nutpie` model under :func:`one_blas_thread`.
    """

    _callbacks = staticmethod(compiled_callbacks)
    _jitter = 1.0

    @classmethod
    def from_design(cls, design: Design, priors: PriorSpec, stats: SufficientStats | None = None) -> "NativeCollapsed":
        """Pack a design's statistics and its priors (see :func:`supports`)."""
        why = supports(design, priors)
        if why is not None:
            raise ValueError(f"the compiled collapsed density does not cover this model: {why}")
        stats = stats or design.sufficient_stats()
        q, p = design.q, design.p
        sd_keys = [f"sd[{b.factor}][{c}]" for b in design.blocks for c in b.columns]
        n_sd = len(sd_keys)
        block_start = np.cumsum([0] + [b.n_cols for b in design.blocks])[:-1]
        groups = []  # (m, eta, global sd columns)
        for block, c0 in zip(design.blocks, block_start):
            multi = [g for g in block.groups if len(g) > 1]
            for group in multi:
                key = correlation_key(block.factor, tuple(block.columns[i] for i in group), len(multi))
                groups.append((len(group), priors[key].eta, [c0 + i for i in group]))
        kmax = max([m for m, _, _ in groups], default=1)
        n_dim = n_sd + sum(m * (m - 1) // 2 for m, _, _ in groups) + 1

        prior_rows = []
        for key in sd_keys + ["sigma"]:
            dist = priors[key]
            prior_rows.append([POSITIVE_FAMILIES[dist.family], *list(dist.params().values()), 0.0][:3])
        blocks = [[off, b.n_levels, b.n_cols] for b, off in zip(design.blocks, design.offsets[:-1])]
        correlated = [float(any(len(g) > 1 for g in b.groups)) for b in design.blocks]
        m = np.array([priors[name].mu for name in design.fixed_names])
        P = 1.0 / np.array([priors[name].sigma for name in design.fixed_names]) ** 2
        sections = [
            *_data_sections(stats),
            np.ravel(prior_rows),
            np.concatenate([np.ravel(blocks), block_start, correlated]),
            np.ravel([[mm, eta, *cols, *[0] * (kmax - mm)] for mm, eta, cols in groups]) if groups else [],
            np.concatenate([m, P]),
            _lambda_positions(design, block_start),
        ]
        offsets = np.cumsum([_HEADER] + [len(s) for s in sections])
        header = np.zeros(_HEADER)
        header[:8] = [offsets[-1], q, p, stats.n, n_sd, len(groups), len(design.blocks), kmax]
        header[8:16] = offsets[:-1]
        blob = np.ascontiguousarray(np.concatenate([header, *[np.asarray(s, dtype=np.float64) for s in sections]]))

        names, shapes, dims = [], [], {}
        coords = {}
        add_scale_variables(design, correlated, names, shapes, dims, coords)
        names.append("sigma")
        shapes.append(())
        # Sampling starts near each prior's scale; correlations near zero.
        start = np.zeros(n_dim)
        for i, key in enumerate(sd_keys + ["sigma"]):
            start[i if i < n_sd else n_dim - 1] = math.log(prior_scale(priors[key]))
        return cls(blob, n_dim, names, shapes, dims, coords, start)

    def with_stats(self, stats: SufficientStats) -> "NativeCollapsed":
        """The same model on other data of the same design (simulation-based calibration)."""
        blob = self.blob.copy()
        data = np.concatenate(_data_sections(stats))
        start = int(blob[8])  # the C, a and y'y sections come first, in that order
        if start + data.size != int(blob[11]):
            raise ValueError("with_stats needs statistics of the same design (same q and p)")
        blob[start:start + data.size] = data
        blob[3] = stats.n
        return replace(self, blob=blob)

    def logp_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Log density (constants dropped) and gradient at an unconstrained point.

        Raises ``numpy.linalg.LinAlgError`` where ``Q`` cannot be factored (nutpie's
        callback reports that as a divergence instead).
        """
        grad = np.empty(self.n_dim)
        value, factored = _logp_grad(np.asarray(x, dtype=np.float64), self.blob, grad)
        if not factored:
            raise np.linalg.LinAlgError(f"Q cannot be factored (not positive definite or not finite) at x = {x}")
        return float(value), grad


def _data_sections(stats: SufficientStats) -> list[np.ndarray]:
    """The sections of the packed array that hold the data: ``C = [Z X]'[Z X]``, ``a = [Z X]'y``, ``y'y``."""
    C = np.block([[stats.ZtZ.toarray(), stats.ZtX], [stats.ZtX.T, stats.XtX]])
    return [C.ravel(), np.concatenate([stats.Zty, stats.Xty]), np.array([stats.yty])]


def _lambda_positions(design: Design, block_start) -> np.ndarray:
    """(row, column, i, j) of every nonzero of Lambda: its place and its factor's sd / L entry.

    ``i, j`` index the stacked SDs of all factors (``block_start`` is each factor's first).
    """
    rows = []
    for block, off, c0 in zip(design.blocks, design.offsets[:-1], block_start):
        k = block.n_cols
        for level in range(block.n_levels):
            base = off + level * k
            rows += [(base + i, base + j, c0 + i, c0 + j) for i in range(k) for j in range(i + 1)]
    return np.ravel(rows).astype(np.float64)
