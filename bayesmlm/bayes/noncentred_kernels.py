"""The compiled kernels and C callbacks of the non-centred density (:mod:`bayesmlm.bayes.noncentred`).

Hand-written in Numba (``cache=True``; no library computes this density from level codes without a
dense ``Z``), specialised once for all families and handed to nutpie as C function pointers. Kept
apart from the model's Python side so that a helper process compiling them
(:mod:`bayesmlm.bayes.precompile`) imports Numba and these kernels only. The blob's layout, the
parametrisation and the integrated gaussian form are described in
:mod:`bayesmlm.bayes.noncentred`.

Examples
--------
>>> logp = family_logp_cfunc()   # loaded from Numba's disk cache (compiled on a first use)
>>> isinstance(logp.address, int), HEADER_SIZE
(True, 26)
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from ..family_kernels import binomial_logit, loglik_grad
from . import precompile
from .nutpie_bridge import ERROR_DEFECT, EXPAND_SIG, LOGP_SIG, blob_at, c_callback, logp_status, packed_matrix
from .scales import positive_logp, sd_and_correlations

HEADER_SIZE = 26
"""Entries of the blob's header (sizes and section offsets) before its first section."""

@numba.njit(cache=True, error_model="numpy")
def _head(blob):
    h = blob[:HEADER_SIZE]
    return (int(h[1]), int(h[2]), int(h[3]), int(h[4]), int(h[5]), int(h[6]), int(h[7]), int(h[8]), int(h[9]),
            int(h[10]), int(h[11]))


@numba.njit(cache=True, error_model="numpy")
def _block(blob, o_blk, bi):
    """Levels, varying columns, first ``z`` and first SD of block ``bi``."""
    o = o_blk + 4 * bi
    return int(blob[o]), int(blob[o + 1]), int(blob[o + 2]), int(blob[o + 3])


@numba.njit(cache=True, error_model="numpy")
def _centred(blob, o_blk, n_blocks, bi):
    """Whether block ``bi``'s effects are the parameters themselves (centred) rather than ``z``."""
    return blob[o_blk + 5 * n_blocks + bi] != 0.0


@numba.njit(cache=True, error_model="numpy")
def _integrated(blob, o_blk, n_blocks, bi):
    """Whether block ``bi``'s effects are integrated out with the fixed effects (their ``z`` slots then
    hold standard normals that expand turns into a draw from their gaussian conditional)."""
    return blob[o_blk + 7 * n_blocks + bi] != 0.0


@numba.njit(cache=True, error_model="numpy")
def _group_effects(blob, o_blk, n_blocks, sd, Lfull, z):
    """``T = diag(sd) L`` on each block's columns, and the group effects of every level.

    ``r = T z`` for a non-centred block; a centred block's parameters are ``r``; a block with one
    varying column has ``r = tau^(1 - lambda) z`` per level (:func:`_partial_prior`).
    """
    n_sd = sd.shape[0]
    T = np.empty((n_sd, n_sd))
    for i in range(n_sd):
        for j in range(n_sd):
            T[i, j] = sd[i] * Lfull[i, j]
    r = np.zeros(z.shape[0])
    for bi in range(n_blocks):
        levels, k, zo, c0 = _block(blob, o_blk, bi)
        if _integrated(blob, o_blk, n_blocks, bi):  # drawn in expand (_integrated_draw); zero here
            continue
        if k == 1:  # partially centred: r = tau^(1 - lambda) z (see _partial_prior)
            o_lam = int(blob[24])
            log_tau = math.log(T[c0, c0])
            for i in range(zo, zo + levels):
                r[i] = math.exp((1.0 - blob[o_lam + i]) * log_tau) * z[i]
            continue
        if _centred(blob, o_blk, n_blocks, bi):
            for i in range(zo, zo + levels * k):  # a loop, not a slice assignment (see _matrix)
                r[i] = z[i]
            continue
        for lv in range(levels):
            base = zo + lv * k
            for i in range(k):
                acc = 0.0
                for j in range(i + 1):
                    acc += T[c0 + i, c0 + j] * z[base + j]
                r[base + i] = acc
    return T, r


@numba.njit(cache=True, error_model="numpy")
def _partial_prior(blob, zo, levels, c0, T, z, grad_z, dT):
    """Log prior of a one-column block's parameters, partially centred, constants dropped.

    Each level's parameter is ``z ~ N(0, tau^(2 lambda))`` and its effect ``r = tau^(1 - lambda) z``
    (so ``r ~ N(0, tau^2)``), with ``lambda`` per level in ``[0, 1]`` (0: non-centred, 1: centred;
    Papaspiliopoulos, Roberts & Skold 2003, 2007; Gorinova, Moore & Hoffman 2020). The log prior is
    ``-1/2 z^2 tau^(-2 lambda) - lambda log tau``; its gradient in ``z`` goes to ``grad_z`` and in
    ``tau`` to ``dT``.
    """
    o_lam = int(blob[24])
    tau = T[c0, c0]
    log_tau = math.log(tau)
    lp = 0.0
    d_tau = 0.0
    for i in range(zo, zo + levels):
        lam = blob[o_lam + i]
        q = math.exp(-2.0 * lam * log_tau) * z[i] * z[i]
        lp -= 0.5 * q + lam * log_tau
        grad_z[i] -= math.exp(-2.0 * lam * log_tau) * z[i]
        d_tau += lam * (q - 1.0) / tau
    dT[c0, c0] += d_tau
    return lp


@numba.njit(cache=True, error_model="numpy")
def _centred_prior(blob, o_blk, n_blocks, bi, T, r, grad_r, dT):
    """Log prior of a centred block's effects, ``r_l ~ N(0, T T')``, constants dropped.

    With ``u_l = T^-1 r_l``: ``-1/2 |u_l|^2 - log det T`` per level; the gradient
    in ``r_l`` is ``-T^-T u_l`` (added to ``grad_r``) and in ``T`` (lower triangle)
    ``(T^-T u_l) u_l' - diag(1 / T_ii)`` (added to ``dT``).
    """
    levels, k, zo, c0 = _block(blob, o_blk, bi)
    lp = 0.0
    Tb = _diagonal_block(T, c0, k)
    u = np.empty(k)
    v = np.empty(k)
    for i in range(k):
        lp -= levels * math.log(Tb[i, i])
        dT[c0 + i, c0 + i] -= levels / Tb[i, i]
    for lv in range(levels):
        base = zo + lv * k
        _solve_lower(Tb, r[base:base + k], u)
        _solve_lower_t(Tb, u, v)
        for i in range(k):
            lp -= 0.5 * u[i] * u[i]
        for i in range(k):
            grad_r[base + i] -= v[i]
            for j in range(i + 1):
                dT[c0 + i, c0 + j] += v[i] * u[j]
    return lp


@numba.njit(cache=True, error_model="numpy")
def _offsets(blob):
    """Where the data sections start: X, y (then trials, weights, offsets), blocks, codes, values,
    fixed-effect priors, SD priors, correlation groups, X'X."""
    return (int(blob[12]), int(blob[13]), int(blob[14]), int(blob[15]), int(blob[16]), int(blob[17]),
            int(blob[18]), int(blob[19]), int(blob[21]))


@numba.njit(cache=True, error_model="numpy")
def _big(blob):
    """The integrated block eliminated level by level (see :func:`_fixed_conditional`): its index (-1
    when none) and where its section starts: ``[index, nnz, row pointer (J + 1), columns (nnz), values
    (nnz x k), Z_l'Z_l (J x k x k)]``, the nonzero columns of each level's cross-product with the dense
    part's columns."""
    o = int(blob[23])
    if o == 0:
        return -1, 0
    return int(blob[o]), o


@numba.njit(cache=True, error_model="numpy")
def _cholesky(A):
    """Lower Cholesky factor of a small symmetric positive-definite matrix."""
    q = A.shape[0]
    C = np.zeros((q, q))
    for i in range(q):
        for j in range(i + 1):
            acc = A[i, j]
            for m in range(j):
                acc -= C[i, m] * C[j, m]
            C[i, j] = math.sqrt(acc) if i == j else acc / C[j, j]
    return C


@numba.njit(cache=True, error_model="numpy")
def _block_layout(blob, n, n_blocks):
    """Per block: varying columns, first effect, whether Z is the level indicator, first value, and
    where its effects start in the integrated vector ``u = (beta - mu0, integrated effects)`` (-1 for
    a sampled block)."""
    o_blk = int(blob[14])
    ks = np.empty(n_blocks, dtype=np.int64)
    zos = np.empty(n_blocks, dtype=np.int64)
    ones = np.empty(n_blocks, dtype=np.bool_)
    vo = np.empty(n_blocks, dtype=np.int64)
    uo = np.empty(n_blocks, dtype=np.int64)
    o = int(blob[16])
    t = int(blob[2])
    big, o_big = _big(blob)
    for bi in range(n_blocks):
        ks[bi] = int(blob[o_blk + 4 * bi + 1])
        zos[bi] = int(blob[o_blk + 4 * bi + 2])
        ones[bi] = blob[o_blk + 6 * n_blocks + bi] != 0.0
        vo[bi] = o
        o += n * ks[bi]
        uo[bi] = -1
        if _integrated(blob, o_blk, n_blocks, bi) and bi != big:
            uo[bi] = t
            t += int(blob[o_blk + 4 * bi]) * ks[bi]
    if big >= 0:  # the eliminated block's effects follow the dense part
        uo[big] = t
    return ks, zos, ones, vo, uo


@numba.njit(cache=True, error_model="numpy")
def _add_blocks(blob, n, n_blocks, coef, sign, out, over_integrated):
    """``out += sign * Z coef`` over the sampled blocks (``coef`` indexed like ``r``) or, with
    ``over_integrated`` 1.0, over the integrated blocks (``coef`` indexed like ``u``): block by block,
    each a tight loop over the rows. The flag is a float, 0.0 or 1.0: Numba would compile a function
    called with the literals ``True`` and ``False`` once for each."""
    integrated = over_integrated != 0.0
    o_codes = int(blob[15])
    ks, zos, ones, vo, uo = _block_layout(blob, n, n_blocks)
    for bi in range(n_blocks):
        if (uo[bi] >= 0) != integrated:
            continue
        k, vb = ks[bi], vo[bi]
        first = uo[bi] if integrated else zos[bi]
        codes = blob[o_codes + bi * n:o_codes + (bi + 1) * n]
        if ones[bi]:  # intercept only: Z is the level indicator
            for row in range(n):
                out[row] += sign * coef[first + int(codes[row])]
            continue
        for row in range(n):
            base = first + int(codes[row]) * k
            acc = 0.0
            for i in range(k):
                acc += blob[vb + row * k + i] * coef[base + i]
            out[row] += sign * acc


@numba.njit(cache=True, error_model="numpy")
def _scatter_blocks(blob, n, n_blocks, de, out, over_integrated):
    """``out += Z' de`` over the sampled blocks (``out`` indexed like ``r``) or, with ``over_integrated``
    1.0, over the integrated blocks (``out`` indexed like ``u``): the transpose of :func:`_add_blocks`."""
    integrated = over_integrated != 0.0
    o_codes = int(blob[15])
    ks, zos, ones, vo, uo = _block_layout(blob, n, n_blocks)
    for bi in range(n_blocks):
        if (uo[bi] >= 0) != integrated:
            continue
        k, vb = ks[bi], vo[bi]
        first = uo[bi] if integrated else zos[bi]
        codes = blob[o_codes + bi * n:o_codes + (bi + 1) * n]
        if ones[bi]:
            for row in range(n):
                out[first + int(codes[row])] += de[row]
            continue
        for row in range(n):
            base = first + int(codes[row]) * k
            d = de[row]
            for i in range(k):
                out[base + i] += d * blob[vb + row * k + i]


@numba.njit(cache=True, error_model="numpy")
def _linear_predictor(blob, n, p, n_blocks, beta, r, residual):
    """``offset + X beta + sum over factors of Z_F r_F`` for every row, or (``residual``) ``y`` less it
    (one pass fewer than subtracting afterwards)."""
    o_X, o_y = int(blob[12]), int(blob[13])
    sign = -1.0 if residual else 1.0
    eta = np.empty(n)
    for row in range(n):
        acc = 0.0
        for j in range(p):
            acc += blob[o_X + row * p + j] * beta[j]
        acc += blob[o_y + 3 * n + row]
        eta[row] = blob[o_y + row] - acc if residual else acc
    _add_blocks(blob, n, n_blocks, r, sign, eta, 0.0)
    return eta


@numba.njit(cache=True, error_model="numpy")
def _solve_lower(C, b, x):
    """``x`` (written, and returned) with ``C x = b``, ``C`` lower triangular."""
    for i in range(b.shape[0]):
        acc = b[i]
        for j in range(i):
            acc -= C[i, j] * x[j]
        x[i] = acc / C[i, i]
    return x


@numba.njit(cache=True, error_model="numpy")
def _solve_lower_t(C, b, x):
    """``x`` (written, and returned) with ``C' x = b``, ``C`` lower triangular."""
    k = b.shape[0]
    for i in range(k - 1, -1, -1):
        acc = b[i]
        for j in range(i + 1, k):
            acc -= C[j, i] * x[j]
        x[i] = acc / C[i, i]
    return x


@numba.njit(cache=True, error_model="numpy")
def _diagonal_block(T, c0, k):
    """A copy of ``T[c0:c0 + k, c0:c0 + k]`` (loops: cheaper to compile than a contiguous-copy call)."""
    Tb = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            Tb[i, j] = T[c0 + i, c0 + j]
    return Tb


@numba.njit(cache=True, error_model="numpy")
def _block_precision(T, c0, k):
    """``W = (T_b T_b')^-1`` of the block whose SDs start at ``c0``: the prior precision of one level's effects."""
    Tb = _diagonal_block(T, c0, k)
    Tinv = np.zeros((k, k))
    unit = np.zeros(k)
    col = np.empty(k)
    for j in range(k):
        unit[j] = 1.0
        _solve_lower(Tb, unit, col)
        unit[j] = 0.0
        for i in range(k):
            Tinv[i, j] = col[i]
    W = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            acc = 0.0
            for m in range(k):
                acc += Tinv[m, i] * Tinv[m, j]
            W[i, j] = acc
    return Tb, W


@numba.njit(cache=True, error_model="numpy")
def _cross(blob, n, p, n_blocks, e, q0):
    """``U' e`` with ``U = [X, Z of each integrated block]``, the columns of ``u``."""
    o_X = int(blob[12])
    b = np.zeros(q0)
    for row in range(n):
        er = e[row]
        for j in range(p):
            b[j] += blob[o_X + row * p + j] * er
    _scatter_blocks(blob, n, n_blocks, e, b, 1.0)
    return b


@numba.njit(cache=True, error_model="numpy")
def _subtract_fit(blob, n, p, n_blocks, u, e, v):
    """``e = (e - U u) / v`` (``U`` as in :func:`_cross`); returns ``|e - U u|^2``. The fixed part last,
    with the sum of squares and the scaling in its pass."""
    o_X = int(blob[12])
    _add_blocks(blob, n, n_blocks, u, -1.0, e, 1.0)
    rss = 0.0
    for row in range(n):
        acc = e[row]
        for j in range(p):
            acc -= blob[o_X + row * p + j] * u[j]
        rss += acc * acc
        e[row] = acc / v
    return rss


@numba.njit(cache=True, error_model="numpy")
def _fixed_conditional(blob, n, p, n_blocks, resid0, v, T):
    """The gaussian conditional of ``u = (beta - mu0, effects of the integrated blocks)`` given the
    sampled group effects and ``sigma^2 = v``.

    ``resid0 = y - offset - X mu0 - Z r`` (sampled blocks). With ``U = [X, Z_int]`` and the prior
    precision ``P = diag(1 / s^2) (+) I_J (x) W`` per integrated block (``W = (T_b T_b')^-1``), the
    precision of ``u`` is ``A = U'U / v + P`` and its mean ``m = A^-1 b``, ``b = U' resid0 / v``.

    The dense part (``beta`` and the small integrated blocks, ``q_s`` coefficients) is factorised
    densely. At most one large integrated block (``_big``) comes first in the elimination: its own
    block of ``A`` is block diagonal (``D_l = Z_l'Z_l / v + W`` per level), so with ``B_l`` its levels'
    cross-products with the dense part, ``A = L L'`` with ``L = [[C_D, 0], [Y', C]]``, ``C_D`` the
    per-level factors, ``Y_l = C_Dl^-1 B_l`` and ``C`` the factor of the Schur complement
    ``E = A_s - sum_l Y_l' Y_l``, at a cost linear in the levels.

    Returns ``C`` (the dense factor: ``C C'`` is the precision of the dense part after elimination, so
    ``(C C')^-1`` is ``A^-1``'s dense block), ``m``, ``b`` and ``C_D`` (J x k x k; empty when none).
    """
    o_blk, o_bpri, o_xtx = int(blob[14]), int(blob[17]), int(blob[21])
    qs = int(blob[22])
    big, o_big = _big(blob)
    A = np.empty((qs, qs))
    for i in range(qs):
        for j in range(qs):
            A[i, j] = blob[o_xtx + i * qs + j] / v
    for i in range(p):
        s = blob[o_bpri + 4 * i + 3]
        A[i, i] += 1.0 / (s * s)
    ks, zos, ones, vo, uo = _block_layout(blob, n, n_blocks)
    for bi in range(n_blocks):
        if uo[bi] < 0 or bi == big:
            continue
        levels, k, zo, c0 = _block(blob, o_blk, bi)
        Tb, W = _block_precision(T, c0, k)
        for lv in range(levels):
            base = uo[bi] + lv * k
            for i in range(k):
                for j in range(k):
                    A[base + i, base + j] += W[i, j]
    q_total = qs
    J, kb = 0, 1
    if big >= 0:
        J, kb, zo, c0 = _block(blob, o_blk, big)
        q_total += J * kb
    b = _cross(blob, n, p, n_blocks, resid0, q_total)
    for j in range(q_total):
        b[j] /= v
    Dc = np.zeros((J, kb, kb))
    nnz = int(blob[o_big + 1]) if big >= 0 else 0
    Yv = np.empty((nnz, kb))
    bs = b[:qs].copy()
    if big >= 0:
        Tb, W = _block_precision(T, c0, kb)
        o_ptr, o_col, o_val, o_G = _big_offsets(blob, o_big, J, kb)
        yb = np.empty(kb)
        for lv in range(J):
            _eliminate_level(blob, o_ptr, o_val, o_G, lv, kb, v, W, Dc, Yv)
            for i in range(kb):  # C_Dl^-1 b_l
                acc = b[qs + lv * kb + i]
                for t in range(i):
                    acc -= Dc[lv, i, t] * yb[t]
                yb[i] = acc / Dc[lv, i, i]
            start, stop = int(blob[o_ptr + lv]), int(blob[o_ptr + lv + 1])
            for a in range(start, stop):
                ca = int(blob[o_col + a])
                for c in range(start, a + 1):
                    acc = 0.0
                    for i in range(kb):
                        acc += Yv[a, i] * Yv[c, i]
                    cc = int(blob[o_col + c])
                    A[ca, cc] -= acc
                    if c != a:
                        A[cc, ca] -= acc
                acc = 0.0
                for i in range(kb):
                    acc += Yv[a, i] * yb[i]
                bs[ca] -= acc
    C = _cholesky(A)
    m = np.empty(q_total)
    ms = _solve_lower_t(C, _solve_lower(C, bs, np.empty(qs)), np.empty(qs))
    for j in range(qs):
        m[j] = ms[j]
    # Per level, the triangular solves are written out rather than calls to _solve_lower(_t): the calls
    # made InstEval's gradient 0.97 -> 1.11 ms.
    if big >= 0:  # m_l = D_l^-1 (b_l - B_l m_s)
        o_ptr, o_col, o_val, o_G = _big_offsets(blob, o_big, J, kb)
        rhs = np.empty(kb)
        w = np.empty(kb)
        out = np.empty(kb)
        for lv in range(J):
            base = qs + lv * kb
            for i in range(kb):
                rhs[i] = b[base + i]
            for t in range(int(blob[o_ptr + lv]), int(blob[o_ptr + lv + 1])):
                col = int(blob[o_col + t])
                for i in range(kb):
                    rhs[i] -= blob[o_val + t * kb + i] / v * ms[col]
            for i in range(kb):
                acc = rhs[i]
                for t in range(i):
                    acc -= Dc[lv, i, t] * w[t]
                w[i] = acc / Dc[lv, i, i]
            for i in range(kb - 1, -1, -1):
                acc = w[i]
                for t in range(i + 1, kb):
                    acc -= Dc[lv, t, i] * out[t]
                out[i] = acc / Dc[lv, i, i]
            for i in range(kb):
                m[base + i] = out[i]
    return C, m, b, Dc, Yv


@numba.njit(cache=True, error_model="numpy")
def _big_offsets(blob, o_big, J, k):
    """Row pointer, columns, values and ``Z_l'Z_l`` of the eliminated block's section (see :func:`_big`)."""
    nnz = int(blob[o_big + 1])
    o_ptr = o_big + 2
    o_col = o_ptr + J + 1
    o_val = o_col + nnz
    return o_ptr, o_col, o_val, o_val + nnz * k


@numba.njit(cache=True, error_model="numpy")
def _eliminate_level(blob, o_ptr, o_val, o_G, lv, k, v, W, Dc, Yv):
    """Level ``lv`` of the eliminated block, in place (no allocation: this runs once per level per
    evaluation): ``Dc[lv]``, the Cholesky factor of ``D_l = Z_l'Z_l / v + W``, and the rows of
    ``Yv`` of its nonzero columns, ``C_Dl^-1 B_l`` (one row of ``k`` per column)."""
    for i in range(k):
        for j in range(i + 1):
            acc = blob[o_G + (lv * k + i) * k + j] / v + W[i, j]
            for t in range(j):
                acc -= Dc[lv, i, t] * Dc[lv, j, t]
            Dc[lv, i, j] = math.sqrt(acc) if i == j else acc / Dc[lv, j, j]
    for a in range(int(blob[o_ptr + lv]), int(blob[o_ptr + lv + 1])):
        for i in range(k):
            acc = blob[o_val + a * k + i] / v
            for t in range(i):
                acc -= Dc[lv, i, t] * Yv[a, t]
            Yv[a, i] = acc / Dc[lv, i, i]


@numba.njit(cache=True, error_model="numpy")
def _eliminated_inverse_blocks(blob, qs, Dc, Yv, Cinv):
    """``A^-1``'s diagonal block of each level of the eliminated block:
    ``D_l^-1 + H_l E^-1 H_l'``, ``H_l = C_Dl^-T Y_l = D_l^-1 B_l``, ``E^-1 = C^-T C^-1`` (J x k x k)."""
    J, k = Dc.shape[0], Dc.shape[1]
    big, o_big = _big(blob)
    o_ptr, o_col, o_val, o_G = _big_offsets(blob, o_big, J, k)
    Einv = np.empty((qs, qs))
    for i in range(qs):
        for j in range(i + 1):
            Einv[i, j] = _inverse_entry(Cinv, i, j)
            Einv[j, i] = Einv[i, j]
    out = np.zeros((J, k, k))
    H = np.empty((Yv.shape[0], k))
    Dinv = np.empty((k, k))  # C_Dl^-1
    for lv in range(J):
        start, stop = int(blob[o_ptr + lv]), int(blob[o_ptr + lv + 1])
        for a in range(start, stop):  # H rows: C_Dl^-T Y
            for i in range(k - 1, -1, -1):
                acc = Yv[a, i]
                for t in range(i + 1, k):
                    acc -= Dc[lv, t, i] * H[a, t]
                H[a, i] = acc / Dc[lv, i, i]
        for j in range(k):
            for i in range(k):
                if i < j:
                    Dinv[i, j] = 0.0
                    continue
                acc = 1.0 if i == j else 0.0
                for t in range(j, i):
                    acc -= Dc[lv, i, t] * Dinv[t, j]
                Dinv[i, j] = acc / Dc[lv, i, i]
        for i in range(k):
            for j in range(k):
                acc = 0.0
                for t in range(max(i, j), k):
                    acc += Dinv[t, i] * Dinv[t, j]
                for a in range(start, stop):
                    ca = int(blob[o_col + a])
                    for c in range(start, stop):
                        acc += H[a, i] * Einv[ca, int(blob[o_col + c])] * H[c, j]
                out[lv, i, j] = acc
    return out


@numba.njit(cache=True, error_model="numpy")
def _lower_inverse(C):
    """``C^-1`` of a lower-triangular ``C`` (lower triangular): ``A^-1 = C^-T C^-1`` entry by entry
    (:func:`_inverse_entry`) where only ``A^-1``'s diagonal blocks are needed."""
    q0 = C.shape[0]
    Cinv = np.zeros((q0, q0))
    for j in range(q0):
        Cinv[j, j] = 1.0 / C[j, j]
        for i in range(j + 1, q0):
            acc = 0.0
            for m in range(j, i):
                acc += C[i, m] * Cinv[m, j]
            Cinv[i, j] = -acc / C[i, i]
    return Cinv


@numba.njit(cache=True, error_model="numpy")
def _inverse_entry(Cinv, i, j):
    """``(A^-1)[i, j] = sum_m Cinv[m, i] Cinv[m, j]`` (``Cinv`` lower triangular)."""
    acc = 0.0
    for m in range(max(i, j), Cinv.shape[0]):
        acc += Cinv[m, i] * Cinv[m, j]
    return acc


@numba.njit(cache=True, error_model="numpy")
def _family_rows(blob, n, p, n_blocks, family, link, beta, r, aux, n_aux, grad, o_aux, gr):
    """The family's log-likelihood over the rows: adds the gradients in beta, the family's
    log parameters (into ``grad``) and the group effects (into ``gr``)."""
    o_X, o_y = int(blob[12]), int(blob[13])
    eta = _linear_predictor(blob, n, p, n_blocks, beta, r, False)
    y = blob[o_y:o_y + n]
    trials = blob[o_y + n:o_y + 2 * n]
    wts = blob[o_y + 2 * n:o_y + 3 * n]
    de_all = np.empty(n)
    gb = np.zeros(p)  # a local accumulator: grad may alias nothing, but LLVM cannot know
    ll = 0.0
    g0 = 0.0
    g1 = 0.0
    a0, a1 = aux[0], aux[1]
    logit_binomial = family == 0 and link == 0  # straight to its row kernel, past loglik_grad's family switch
    for row in range(n):
        w = wts[row]
        if logit_binomial:
            v, de = binomial_logit(trials[row] * y[row], trials[row], eta[row])
        else:
            v, de, d1, d2 = loglik_grad(family, link, y[row], eta[row], trials[row], a0, a1)
            g0 += w * d1
            g1 += w * d2
        ll += w * v
        de *= w
        de_all[row] = de
        for j in range(p):
            gb[j] += de * blob[o_X + row * p + j]
    for j in range(p):
        grad[j] += gb[j]
    for t in range(n_aux):
        grad[o_aux + t] += (g0 if t == 0 else g1) * aux[t]
    _scatter_blocks(blob, n, n_blocks, de_all, gr, 0.0)
    return ll


@numba.njit(cache=True, error_model="numpy")
def _marginal_rows(blob, n, p, n_blocks, mu0, r, sigma, T, grad, o_aux, gr, dT):
    """The gaussian log-likelihood with ``u`` (the fixed effects and the integrated blocks' effects,
    :func:`_fixed_conditional`) integrated out: adds the gradients in log sigma (``grad``), the sampled
    group effects (``gr``) and ``T`` (``dT``).

    The integral is ``-1/2 rss_min - log det C + 1/2 log det P - n log sigma`` (constants dropped), with
    ``rss_min = |resid0 - U m|^2 / v + m' P m`` (the minimum over ``u``, computed without cancellation)
    and ``1/2 log det P = -J log det T_b`` per integrated block (the fixed effects' part is a constant).
    Its derivatives: in log sigma ``|resid0 - U m|^2 / v - n + q0 - tr(A^-1 P)``; in each row's ``eta``
    ``(resid0 - U m) / v``; in ``P`` ``1/2 (P^-1 - A^-1 - m m')``, which for an integrated block's ``W``
    sums over its levels to ``S``, and through ``W = (T T')^-1`` gives ``-2 W S W T`` in ``T``.
    """
    o_blk, o_bpri = int(blob[14]), int(blob[17])
    resid0 = _linear_predictor(blob, n, p, n_blocks, mu0, r, True)
    v = sigma * sigma
    C, m, b, Dc, Yv = _fixed_conditional(blob, n, p, n_blocks, resid0, v, T)
    q0 = m.shape[0]
    qs = C.shape[0]
    logdet = 0.0
    for j in range(qs):
        logdet += math.log(C[j, j])
    for lv in range(Dc.shape[0]):
        for i in range(Dc.shape[1]):
            logdet += math.log(Dc[lv, i, i])
    Cinv = _lower_inverse(C)
    big, o_big = _big(blob)
    big_inv = np.empty((0, 1, 1))
    if big >= 0:
        big_inv = _eliminated_inverse_blocks(blob, qs, Dc, Yv, Cinv)
    penalty = 0.0
    trace_p = 0.0  # tr(A^-1 P)
    for j in range(p):
        s = blob[o_bpri + 4 * j + 3]
        penalty += m[j] * m[j] / (s * s)
        trace_p += _inverse_entry(Cinv, j, j) / (s * s)
    lp = 0.0
    ks, zos, ones, vo, uo = _block_layout(blob, n, n_blocks)
    for bi in range(n_blocks):
        if uo[bi] < 0:
            continue
        levels, k, zo, c0 = _block(blob, o_blk, bi)
        Tb, W = _block_precision(T, c0, k)
        S = np.zeros((k, k))
        for lv in range(levels):
            base = uo[bi] + lv * k
            for i in range(k):
                for j in range(k):
                    a_ij = big_inv[lv, i, j] if bi == big else _inverse_entry(Cinv, base + i, base + j)
                    S[i, j] -= a_ij + m[base + i] * m[base + j]
                    penalty += m[base + i] * W[i, j] * m[base + j]
                    trace_p += a_ij * W[j, i]
        for i in range(k):
            lp -= levels * math.log(Tb[i, i])
            for j in range(k):
                acc = 0.0
                for t in range(k):
                    acc += Tb[i, t] * Tb[j, t]
                S[i, j] = 0.5 * (S[i, j] + levels * acc)
        WSW = np.zeros((k, k))  # W S W, in loops (k is small; a matrix product would bring BLAS in)
        for i in range(k):
            for t in range(k):
                acc = 0.0
                for a in range(k):
                    for b in range(k):
                        acc += W[i, a] * S[a, b] * W[b, t]
                WSW[i, t] = acc
        for i in range(k):
            for j in range(i + 1):
                acc = 0.0
                for t in range(k):
                    acc += WSW[i, t] * Tb[t, j]
                dT[c0 + i, c0 + j] -= 2.0 * acc
    rss = _subtract_fit(blob, n, p, n_blocks, m, resid0, v)  # resid0 becomes d log p / d eta
    _scatter_blocks(blob, n, n_blocks, resid0, gr, 0.0)
    grad[o_aux] += rss / v - n + q0 - trace_p
    return lp - 0.5 * (rss / v + penalty) - n * math.log(sigma) - logdet


@numba.njit(cache=True, error_model="numpy")
def _prior_terms(x, blob, grad):
    """The log prior at ``x`` (gradient written into ``grad``, which it zeroes first) and what the rows
    need from ``x``: returns ``lp, beta, aux, T, r, dT, sd, Lfull, dLfull`` (``dT`` holds the prior's
    gradient in ``T``, and the rows' part is added to it before :func:`_through_scales`)."""
    n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
    o_X, o_y, o_blk, o_codes, o_vals, o_bpri, o_spri, o_grp, o_xtx = _offsets(blob)
    marginal = blob[20] != 0.0
    grad[:] = 0.0
    o_s = p
    o_z = p + n_sd + n_cor
    o_aux = o_z + n_z
    stride = 2 + kmax
    sd, Lfull, dLfull, lp, g_loc = sd_and_correlations(
        x[o_s:o_z], packed_matrix(blob, o_spri, n_sd, 3), packed_matrix(blob, o_grp, n_groups, stride), kmax)
    for i in range(o_z - o_s):
        grad[o_s + i] = g_loc[i]
    beta = np.empty(p)
    for j in range(p):
        code = blob[o_bpri + 4 * j]
        a, m, s = blob[o_bpri + 4 * j + 1], blob[o_bpri + 4 * j + 2], blob[o_bpri + 4 * j + 3]
        if marginal:  # x[j] is the standard normal that expand turns into a draw of beta[j]
            beta[j] = m
            lp += -0.5 * x[j] * x[j]
            grad[j] -= x[j]
            continue
        beta[j] = x[j]
        u = (x[j] - m) / s
        if code == 0.0:  # Normal(mu, sigma)
            lp += -0.5 * u * u
            grad[j] += -u / s
        else:  # StudentT(nu, mu, sigma)
            lp += -0.5 * (a + 1.0) * math.log1p(u * u / a)
            grad[j] += -(a + 1.0) * u / (s * (a + u * u))
    # family parameters: positive priors (after the SDs' rows) on log scale
    aux = np.empty(2)
    aux[0] = 1.0
    aux[1] = 1.0
    for t in range(n_aux):
        v = math.exp(x[o_aux + t])
        aux[t] = v
        o = o_spri + 3 * (n_sd + t)
        val, d = positive_logp(int(blob[o]), blob[o + 1], blob[o + 2], v)
        lp += val + x[o_aux + t]
        grad[o_aux + t] += d * v + 1.0
    z = x[o_z:o_aux]
    T, r = _group_effects(blob, o_blk, n_blocks, sd, Lfull, z)
    dT = np.zeros((n_sd, n_sd))
    g_prior = np.zeros(n_z)
    for bi in range(n_blocks):
        levels, k, zo, c0 = _block(blob, o_blk, bi)
        integrated = _integrated(blob, o_blk, n_blocks, bi)
        if k == 1 and not integrated:
            lp += _partial_prior(blob, zo, levels, c0, T, z, g_prior, dT)
        elif _centred(blob, o_blk, n_blocks, bi) and not integrated:
            lp += _centred_prior(blob, o_blk, n_blocks, bi, T, r, g_prior, dT)
        else:  # non-centred z, or an integrated block's standard normals
            for i in range(zo, zo + levels * k):
                lp += -0.5 * z[i] * z[i]
                g_prior[i] -= z[i]
    for i in range(n_z):
        grad[o_z + i] += g_prior[i]
    return lp, beta, aux, T, r, dT, sd, Lfull, dLfull


@numba.njit(cache=True, error_model="numpy")
def _through_scales(x, blob, grad, T, gr, dT, sd, Lfull, dLfull):
    """Adds to ``grad`` the rows' gradient ``gr`` in the group effects, taken back through
    ``r = T z`` (centred blocks: ``r`` is the parameter; integrated blocks: not in the rows) to the
    ``z`` and into ``dT``, then ``dT`` through ``T = diag(sd) L`` to the log SDs and correlations."""
    n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
    o_blk = int(blob[14])
    o_s = p
    o_z = p + n_sd + n_cor
    for bi in range(n_blocks):
        levels, k, zo, c0 = _block(blob, o_blk, bi)
        if _integrated(blob, o_blk, n_blocks, bi):
            continue
        if k == 1:  # r = tau^(1 - lambda) z
            o_lam = int(blob[24])
            tau = T[c0, c0]
            log_tau = math.log(tau)
            d_tau = 0.0
            for i in range(zo, zo + levels):
                lam = blob[o_lam + i]
                s = math.exp((1.0 - lam) * log_tau)
                grad[o_z + i] += gr[i] * s
                d_tau += gr[i] * (1.0 - lam) * s / tau * x[o_z + i]
            dT[c0, c0] += d_tau
            continue
        if _centred(blob, o_blk, n_blocks, bi):
            for i in range(zo, zo + levels * k):
                grad[o_z + i] += gr[i]
            continue
        for lv in range(levels):
            base = zo + lv * k
            for i in range(k):
                gi = gr[base + i]
                if gi == 0.0:
                    continue
                for j in range(i + 1):
                    grad[o_z + base + j] += gi * T[c0 + i, c0 + j]
                    dT[c0 + i, c0 + j] += gi * x[o_z + base + j]
    n_loc = n_sd + n_cor
    for i in range(n_sd):
        for j in range(i + 1):
            if dT[i, j] == 0.0:
                continue
            grad[o_s + i] += dT[i, j] * Lfull[i, j] * sd[i]
            dL = dT[i, j] * sd[i]
            for u in range(n_sd, n_loc):
                grad[o_s + u] += dL * dLfull[i, j, u]


@numba.njit(cache=True, error_model="numpy")
def _integrated_draw(x, blob, n, p, n_blocks, T, r, o_z):
    """A draw of ``u`` (the integrated-out fixed effects and effects) from its conditional given the
    rest of ``x``: ``u = m + C^-T xi`` (see :func:`_fixed_conditional`), ``xi`` the standard normals in
    ``beta``'s and the integrated blocks' slots of ``x``; exact, since ``xi`` is independent of
    everything else in the sampled density. Returns ``beta = mu0 + u[:p]`` and ``u``."""
    o_bpri = int(blob[17])
    mu0 = np.empty(p)
    for j in range(p):
        mu0[j] = blob[o_bpri + 4 * j + 2]
    resid0 = _linear_predictor(blob, n, p, n_blocks, mu0, r, True)
    sigma = math.exp(x[o_z + r.shape[0]])
    v = sigma * sigma
    C, m, b, Dc, Yv = _fixed_conditional(blob, n, p, n_blocks, resid0, v, T)
    q0 = m.shape[0]
    qs = C.shape[0]
    xi = np.empty(q0)
    for j in range(p):
        xi[j] = x[j]
    ks, zos, ones, vo, uo = _block_layout(blob, n, n_blocks)
    o_blk = int(blob[14])
    for bi in range(n_blocks):
        if uo[bi] >= 0:
            size = int(blob[o_blk + 4 * bi]) * ks[bi]
            for i in range(size):
                xi[uo[bi] + i] = x[o_z + zos[bi] + i]
    # L' d = xi with L = [[C_D, 0], [Y', C]] (see _fixed_conditional): the dense part first
    u = m.copy()
    xs = np.empty(qs)
    for j in range(qs):
        xs[j] = xi[j]
    ds = _solve_lower_t(C, xs, np.empty(qs))
    for j in range(qs):
        u[j] += ds[j]
    big, o_big = _big(blob)
    if big >= 0:  # d_l = C_Dl^-T (xi_l - Y_l d_s)
        J, kb = Dc.shape[0], Dc.shape[1]
        o_ptr, o_col, o_val, o_G = _big_offsets(blob, o_big, J, kb)
        rhs = np.empty(kb)
        out = np.empty(kb)
        for lv in range(J):
            base = qs + lv * kb
            for i in range(kb):
                acc = xi[base + i]
                for a in range(int(blob[o_ptr + lv]), int(blob[o_ptr + lv + 1])):
                    acc -= Yv[a, i] * ds[int(blob[o_col + a])]
                rhs[i] = acc
            _solve_lower_t(Dc[lv], rhs, out)
            for i in range(kb):
                u[base + i] += out[i]
    beta = np.empty(p)
    for j in range(p):
        beta[j] = mu0[j] + u[j]
    return beta, u


@numba.njit(cache=True, error_model="numpy")
def _effects_at(x, blob):
    """The SDs, correlation factor, ``T`` and group effects ``r`` at ``x``."""
    n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
    o_blk, o_spri, o_grp = int(blob[14]), int(blob[18]), int(blob[19])
    o_z = p + n_sd + n_cor
    sd, Lfull, dLfull, lp, g_loc = sd_and_correlations(
        x[p:o_z], packed_matrix(blob, o_spri, n_sd, 3), packed_matrix(blob, o_grp, n_groups, 2 + kmax), kmax)
    T, r = _group_effects(blob, o_blk, n_blocks, sd, Lfull, x[o_z:o_z + n_z])
    return sd, Lfull, T, r


@numba.njit(cache=True, error_model="numpy")
def _write_draw(x, blob, out, beta, sd, Lfull, r):
    """Writes beta, sd, every correlated block's correlation matrix, r of every factor and the family's
    parameters into ``out``."""
    n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
    o_blk = int(blob[14])
    o_z = p + n_sd + n_cor
    t = 0
    for j in range(p):
        out[t] = beta[j]
        t += 1
    for i in range(n_sd):
        out[t] = sd[i]
        t += 1
    for bi in range(n_blocks):
        if blob[o_blk + 4 * n_blocks + bi] == 0.0:
            continue
        k, c0 = int(blob[o_blk + 4 * bi + 1]), int(blob[o_blk + 4 * bi + 3])
        for i in range(k):
            for j in range(k):
                acc = 0.0
                for m in range(min(i, j) + 1):
                    acc += Lfull[c0 + i, c0 + m] * Lfull[c0 + j, c0 + m]
                out[t] = acc
                t += 1
    for i in range(n_z):  # every factor's effects, level-major, in block order (their z offsets are consecutive)
        out[t] = r[i]
        t += 1
    for a in range(n_aux):
        out[t] = math.exp(x[o_z + n_z + a])
        t += 1


# The four C callbacks hold the top of each kernel themselves rather than calling a jitted
# ``logp(x, blob, grad)``: Numba re-optimises and re-emits every callee's code in each function
# that calls it, so one level less is seconds less of first-run compilation.


def _family_logp_callback(dim, x_, out_, logp_, user_data):
    """nutpie's log density for every family but the integrated gaussian one (:func:`_family_rows`)."""
    x = numba.carray(x_, (dim,))
    grad = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    try:
        blob = blob_at(user_data)
        n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
        lp, beta, aux, T, r, dT, sd, Lfull, dLfull = _prior_terms(x, blob, grad)
        gr = np.zeros(n_z)
        lp += _family_rows(blob, n, p, n_blocks, family, link, beta, r, aux, n_aux, grad, p + n_sd + n_cor + n_z, gr)
        _through_scales(x, blob, grad, T, gr, dT, sd, Lfull, dLfull)
    except Exception:  # noqa: BLE001  (a defect: a negative code makes nutpie stop and report it)
        return ERROR_DEFECT
    return logp_status(lp, grad, logp)


def _marginal_logp_callback(dim, x_, out_, logp_, user_data):
    """nutpie's log density for gaussian models with the fixed effects integrated out (:func:`_marginal_rows`)."""
    x = numba.carray(x_, (dim,))
    grad = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    try:
        blob = blob_at(user_data)
        n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
        lp, beta, aux, T, r, dT, sd, Lfull, dLfull = _prior_terms(x, blob, grad)
        gr = np.zeros(n_z)
        lp += _marginal_rows(blob, n, p, n_blocks, beta, r, aux[0], T, grad, p + n_sd + n_cor + n_z, gr, dT)
        _through_scales(x, blob, grad, T, gr, dT, sd, Lfull, dLfull)
    except Exception:  # noqa: BLE001
        return ERROR_DEFECT
    return logp_status(lp, grad, logp)


def _family_expand_callback(dim, expanded, x_, out_, user_data):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    try:
        blob = blob_at(user_data)
        p = int(blob[2])
        sd, Lfull, T, r = _effects_at(x, blob)
        _write_draw(x, blob, out, x[:p], sd, Lfull, r)
    except Exception:  # noqa: BLE001
        return ERROR_DEFECT
    return 0


def _marginal_expand_callback(dim, expanded, x_, out_, user_data):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    try:
        blob = blob_at(user_data)
        n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
        sd, Lfull, T, r = _effects_at(x, blob)
        beta, u = _integrated_draw(x, blob, n, p, n_blocks, T, r, p + n_sd + n_cor)
        ks, zos, ones, vo, uo = _block_layout(blob, n, n_blocks)
        o_blk = int(blob[14])
        for bi in range(n_blocks):  # an integrated block's effects: its part of u, level-major as in r
            if uo[bi] >= 0:
                for i in range(int(blob[o_blk + 4 * bi]) * ks[bi]):
                    r[zos[bi] + i] = u[uo[bi] + i]
        _write_draw(x, blob, out, beta, sd, Lfull, r)
    except Exception:  # noqa: BLE001
        return ERROR_DEFECT
    return 0


@functools.cache
def family_logp_cfunc():
    """The log-density C callback for every family (compiled on first use, or by a helper process
    meanwhile, see :mod:`bayesmlm.bayes.precompile`; then loaded from Numba's disk cache)."""
    precompile.wait("family")
    return c_callback(LOGP_SIG, _family_logp_callback)


@functools.cache
def marginal_logp_cfunc():
    """The log-density C callback of gaussian models with the fixed effects integrated out (as
    :func:`family_logp_cfunc`)."""
    precompile.wait("marginal")
    return c_callback(LOGP_SIG, _marginal_logp_callback)


_VEC, _MAT, _INT = numba.types.float64[::1], numba.types.float64[:, ::1], numba.types.int64
_PRIOR_TERMS_ARGS = (_VEC, _VEC, _VEC)
_THROUGH_SCALES_ARGS = (_VEC, _VEC, _VEC, _MAT, _VEC, _MAT, _VEC, _MAT, numba.types.float64[:, :, ::1])
_FAMILY_ROWS_ARGS = (_VEC, _INT, _INT, _INT, _INT, _INT, _VEC, _VEC, _VEC, _INT, _VEC, _INT, _VEC)
_MARGINAL_ROWS_ARGS = (_VEC, _INT, _INT, _INT, _VEC, _VEC, numba.types.float64, _MAT, _VEC, _INT, _VEC, _MAT)
_INTEGRATED_DRAW_ARGS = (_VEC, _VEC, _INT, _INT, _INT, _MAT, _VEC, _INT)
_EFFECTS_AT_ARGS = (_VEC, _VEC)
"""The argument types the callbacks call these kernels with (C-contiguous float64 arrays and int64
scalars), for compiling them ahead of the callbacks, in two processes."""

HELPER_SHARE = {
    "family": ((_prior_terms, _PRIOR_TERMS_ARGS),),
    "marginal": ((_effects_at, _EFFECTS_AT_ARGS), (_marginal_rows, _MARGINAL_ROWS_ARGS)),
}
"""What a helper process (:mod:`bayesmlm.bayes.precompile`) compiles of each kind's kernels before
its log-density callback: for the family density the prior's kernels; for the integrated gaussian
one the SD, correlation and group-effect kernels (which the prior's kernels and the expand callback
share) and the rows' kernels with the conditional of the integrated coefficients."""

MAIN_SHARE = {
    "family": ((_family_rows, _FAMILY_ROWS_ARGS), (_through_scales, _THROUGH_SCALES_ARGS)),
    "marginal": ((_prior_terms, _PRIOR_TERMS_ARGS), (_through_scales, _THROUGH_SCALES_ARGS),
                 (_integrated_draw, _INTEGRATED_DRAW_ARGS)),
}
"""What the sampling process compiles meanwhile, after the frequentist fit: the rest of the log
density's kernels (the helper waits for them, :func:`bayesmlm.bayes.precompile.await_share`, then
compiles the callback) and, for the integrated gaussian density, the conditional draw; then the
expand callback. The split keeps both processes busy on two cores; a kernel one process reaches
before the other has written it to the cache is compiled again there, which costs time only."""


def _compile(share) -> None:
    for kernel, args in share:
        kernel.compile(args)


def family_logp_in_helper():
    """What a helper process runs for the family log density: its share (:data:`HELPER_SHARE`), then,
    once the sampling process has compiled its own (:data:`MAIN_SHARE`), the callback."""
    _compile(HELPER_SHARE["family"])
    if precompile.await_share():
        family_logp_cfunc()


def marginal_in_helper():
    """What a helper process runs for the integrated gaussian density (as :func:`family_logp_in_helper`)."""
    _compile(HELPER_SHARE["marginal"])
    if precompile.await_share():
        marginal_logp_cfunc()


@functools.cache
def noncentred_callbacks(marginal: bool = False):
    """The two C callbacks nutpie calls, for a model with the fixed effects integrated out (``marginal``,
    gaussian) or not (every family): compiled on first use, then loaded from Numba's disk cache. A model
    compiles only its own pair, so a Poisson model never compiles the gaussian integration. Where a
    helper process compiles the log density, this process compiles its share of the kernels first
    (:data:`MAIN_SHARE`), tells the helper so, and compiles the expand callback meanwhile."""
    kind = "marginal" if marginal else "family"
    if precompile.helping(kind):
        try:
            _compile(MAIN_SHARE[kind])
        finally:
            precompile.share_done(kind)
    expand = c_callback(EXPAND_SIG, _marginal_expand_callback if marginal else _family_expand_callback)
    return (marginal_logp_cfunc() if marginal else family_logp_cfunc()), expand
