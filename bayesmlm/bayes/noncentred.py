"""The non-centred log density of a (generalized) linear mixed model as compiled C callbacks for nutpie.

Hand-written in Numba (``cache=True``): the PyMC model of :mod:`bayesmlm.bayes.build`
is the same posterior (and the test oracle), but compiling its graph costs tens of
seconds per model, while these kernels are compiled once per machine, specialised
once for all families (the family and link are integer codes switched inside one
kernel, :func:`bayesmlm.family_kernels.loglik_grad`) and handed to nutpie's Rust
sampler as C function pointers, like :mod:`bayesmlm.bayes.native`.

No dense ``Z``: each row's linear predictor is
``eta = offset + X beta + sum over factors of sum_c Z[row, c] r[F][level(row), c]``,
with the level codes and varying columns of each factor. A factor's group effects
are non-centred, ``r[F][l] = diag(sd) L z[F][l]``, ``z ~ N(0, 1)``, or centred,
``r[F][l] ~ N(0, T T')`` with ``T = diag(sd) L`` (the effects themselves are the
parameters; chosen per factor by :mod:`bayesmlm.bayes.centring`), with the SD and LKJ
parametrisation shared with the collapsed density (:mod:`bayesmlm.bayes.scales`).

Gaussian responses (identity link, no weights) with normal priors on the fixed
effects have them integrated out: given the group effects and ``sigma`` they are
gaussian, so the density is the integral over ``beta`` (``X'X`` precomputed, a
``p x p`` Cholesky factor per evaluation) and the ``p`` parameters in ``beta``'s place
are standard normals ``xi`` that the expand step turns into an exact draw from the
conditional, ``beta = mu0 + m + C^-T xi``. This removes the ridge between the
intercept (and fixed effects constant within levels, as ``service`` for
``dept:service``) and the mean of the group effects, which a diagonal mass matrix
can only crawl along.

Unconstrained parameters, in this order: ``beta`` (p; ``xi`` when integrated out);
``log sd`` of every varying column of every factor; the correlation values of each
correlated group; ``z`` (or ``r`` when centred) of every factor, level-major; the
logs of the family's parameters (``sigma``; ``sigma, nu``; ``phi``; ``shape``; none
for binomial and Poisson). Log densities drop constants (terms in the data only).

Examples
--------
>>> import numpy as np, bayesmlm as bm
>>> from bayesmlm.family_design import family_design
>>> d = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
>>> nc = NativeNonCentred.from_design(d, bm.priors.default_for_design(d))
>>> nc.n_dim   # 4 beta, 1 log sd, 15 z
20
>>> value, grad = nc.logp_and_grad(np.zeros(nc.n_dim))
>>> bool(np.isfinite(value)), grad.shape
(True, (20,))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from ..design import Design
from ..family_kernels import loglik_grad
from ..priors.distributions import Normal, StudentT
from ..priors.spec import PriorSpec, correlation_key, family_parameters
from .build import col_dim
from .centring import centred_factors
from .nutpie_bridge import (ERROR_DEFECT, EXPAND_SIG, LOGP_SIG, CompiledDensity, add_scale_variables, blob_at,
                            logp_status, prior_scale)
from .scales import POSITIVE_FAMILIES, group_rows, positive_logp, prior_rows, sd_and_correlations

__all__ = ["NativeNonCentred", "noncentred_supports", "noncentred_callbacks"]

_H = 24


def noncentred_supports(design: Design, priors: PriorSpec) -> str | None:
    """None when the compiled non-centred density covers this model, else why not."""
    for name in design.fixed_names:
        if not isinstance(priors[name], (Normal, StudentT)):
            return f"prior {priors[name]} of {name!r} has no compiled density (Normal and StudentT do)"
    keys = [f"sd[{b.factor}][{c}]" for b in design.blocks for c in b.columns] + list(family_parameters(design))
    for key in keys:
        if priors[key].family not in POSITIVE_FAMILIES:
            return f"prior family {priors[key].family} of {key} has no compiled density"
    if not design.rows_held:
        return "the rows are not held (a Dask DataFrame)"
    return None


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, error_model="numpy")
def _matrix(blob, start, rows, cols):
    """A copy of ``blob[start:start + rows * cols]`` as a ``rows x cols`` matrix, for the small packed
    sections. A copy rather than ``reshape`` (and loops rather than slice assignments elsewhere in
    these kernels): both bring numba's error-message formatting into the compilation, seconds of a
    cold start."""
    out = np.empty((rows, cols))
    for i in range(rows):
        for j in range(cols):
            out[i, j] = blob[start + i * cols + j]
    return out


@numba.njit(cache=True, error_model="numpy")
def _head(blob):
    h = blob[:_H]
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
def _group_effects(blob, o_blk, n_blocks, sd, Lfull, z):
    """``T = diag(sd) L`` on each block's columns, and the group effects of every level.

    ``r = T z`` for a non-centred block; a centred block's parameters are ``r``.
    """
    n_sd = sd.shape[0]
    T = np.empty((n_sd, n_sd))
    for i in range(n_sd):
        for j in range(n_sd):
            T[i, j] = sd[i] * Lfull[i, j]
    r = np.zeros(z.shape[0])
    for bi in range(n_blocks):
        levels, k, zo, c0 = _block(blob, o_blk, bi)
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
def _centred_prior(blob, o_blk, n_blocks, bi, T, r, grad_r, dT):
    """Log prior of a centred block's effects, ``r_l ~ N(0, T T')``, constants dropped.

    With ``u_l = T^-1 r_l``: ``-1/2 |u_l|^2 - log det T`` per level; the gradient
    in ``r_l`` is ``-T^-T u_l`` (added to ``grad_r``) and in ``T`` (lower triangle)
    ``(T^-T u_l) u_l' - diag(1 / T_ii)`` (added to ``dT``).
    """
    levels, k, zo, c0 = _block(blob, o_blk, bi)
    lp = 0.0
    Tb = np.ascontiguousarray(T[c0:c0 + k, c0:c0 + k])
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
def _block_layout(blob, n, n_blocks):
    """Per block: varying columns, first effect, whether Z is the level indicator, first value."""
    o_blk = int(blob[14])
    ks = np.empty(n_blocks, dtype=np.int64)
    zos = np.empty(n_blocks, dtype=np.int64)
    ones = np.empty(n_blocks, dtype=np.bool_)
    vo = np.empty(n_blocks, dtype=np.int64)
    o = int(blob[16])
    for bi in range(n_blocks):
        ks[bi] = int(blob[o_blk + 4 * bi + 1])
        zos[bi] = int(blob[o_blk + 4 * bi + 2])
        ones[bi] = blob[o_blk + 6 * n_blocks + bi] != 0.0
        vo[bi] = o
        o += n * ks[bi]
    return ks, zos, ones, vo


@numba.njit(cache=True, error_model="numpy")
def _linear_predictor(blob, n, p, n_blocks, beta, r):
    """``offset + X beta + sum over factors of Z_F r_F`` for every row."""
    o_X, o_y, o_codes = int(blob[12]), int(blob[13]), int(blob[15])
    ks, zos, ones, vo = _block_layout(blob, n, n_blocks)
    eta = blob[o_y + 3 * n:o_y + 4 * n].copy()
    for row in range(n):
        acc = 0.0
        for j in range(p):
            acc += blob[o_X + row * p + j] * beta[j]
        eta[row] += acc
    for bi in range(n_blocks):
        k, zo, vb = ks[bi], zos[bi], vo[bi]
        codes = blob[o_codes + bi * n:o_codes + (bi + 1) * n]
        if ones[bi]:
            for row in range(n):
                eta[row] += r[zo + int(codes[row])]
            continue
        for row in range(n):
            base = zo + int(codes[row]) * k
            acc = 0.0
            for i in range(k):
                acc += blob[vb + row * k + i] * r[base + i]
            eta[row] += acc
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
def _fixed_conditional(blob, n, p, resid0, v):
    """The fixed effects' gaussian conditional given the group effects and ``sigma^2 = v``.

    ``resid0 = y - offset - X mu0 - Z r``. Returns the Cholesky factor ``C`` of
    ``A = X'X / v + diag(1 / s^2)`` (prior ``beta ~ N(mu0, diag(s^2))``), ``m = A^-1 X' resid0 / v``
    (the conditional mean of ``beta - mu0``) and ``b = X' resid0 / v``.
    """
    o_X, o_bpri, o_xtx = int(blob[12]), int(blob[17]), int(blob[21])
    A = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            A[i, j] = blob[o_xtx + i * p + j] / v
        s = blob[o_bpri + 4 * i + 3]
        A[i, i] += 1.0 / (s * s)
    b = np.zeros(p)
    for row in range(n):
        e = resid0[row]
        for j in range(p):
            b[j] += blob[o_X + row * p + j] * e
    for j in range(p):
        b[j] /= v
    C = np.zeros((p, p))
    for i in range(p):
        for j in range(i + 1):
            acc = A[i, j]
            for m in range(j):
                acc -= C[i, m] * C[j, m]
            C[i, j] = math.sqrt(acc) if i == j else acc / C[j, j]
    return C, _solve_lower_t(C, _solve_lower(C, b, np.empty(p)), np.empty(p)), b


@numba.njit(cache=True, error_model="numpy")
def _marginal_terms(blob, n, p, resid0, v):
    """What the fixed effects' integral adds, given ``resid0 = y - offset - X mu0 - Z r`` and ``v = sigma^2``.

    Returns ``m`` (:func:`_fixed_conditional`), ``log det C`` and ``tr(A^-1 X'X)``. The integrated
    log-likelihood (constants dropped) is ``-1/2 (rss / v + sum_j m_j^2 / s_j^2) - n log sigma - log det C``
    with ``rss = |resid0 - X m|^2`` (the minimum over beta of ``|resid0 - X beta|^2 / v + beta' P0 beta``,
    which it equals, computed without cancellation); its derivative in ``log sigma`` is
    ``rss / v - n + tr(A^-1 X'X) / v``, and in each row's ``eta`` ``(resid0 - X m) / v``.
    """
    o_xtx = int(blob[21])
    C, m, b = _fixed_conditional(blob, n, p, resid0, v)
    logdet = 0.0
    for j in range(p):
        logdet += math.log(C[j, j])
    trace = 0.0
    xtx = _matrix(blob, o_xtx, p, p)
    w = np.empty(p)
    u = np.empty(p)
    for col in range(p):  # A^-1 X'X = C^-T C^-1 X'X, column by column
        trace += _solve_lower_t(C, _solve_lower(C, np.ascontiguousarray(xtx[:, col]), w), u)[col]
    return m, logdet, trace


@numba.njit(cache=True, error_model="numpy")
def _scatter(blob, n, n_blocks, de, gr):
    """``gr += Z' de``: every row's ``d log p / d eta`` times its Z entries, block by block."""
    o_codes = int(blob[15])
    ks, zos, ones, vo = _block_layout(blob, n, n_blocks)
    for bi in range(n_blocks):
        k, zo, vb = ks[bi], zos[bi], vo[bi]
        codes = blob[o_codes + bi * n:o_codes + (bi + 1) * n]
        if ones[bi]:  # intercept only: Z is the level indicator
            for row in range(n):
                gr[zo + int(codes[row])] += de[row]
            continue
        for row in range(n):
            base = zo + int(codes[row]) * k
            d = de[row]
            for i in range(k):
                gr[base + i] += d * blob[vb + row * k + i]


@numba.njit(cache=True, error_model="numpy")
def _family_rows(blob, n, p, n_blocks, family, link, beta, r, aux, n_aux, grad, o_aux, gr):
    """The family's log-likelihood over the rows: adds the gradients in beta, the family's
    log parameters (into ``grad``) and the group effects (into ``gr``)."""
    o_X, o_y = int(blob[12]), int(blob[13])
    eta = _linear_predictor(blob, n, p, n_blocks, beta, r)
    y = blob[o_y:o_y + n]
    trials = blob[o_y + n:o_y + 2 * n]
    wts = blob[o_y + 2 * n:o_y + 3 * n]
    de_all = np.empty(n)
    gb = np.zeros(p)  # a local accumulator: grad may alias nothing, but LLVM cannot know
    ll = 0.0
    g0 = 0.0
    g1 = 0.0
    a0, a1 = aux[0], aux[1]
    for row in range(n):
        v, de, d1, d2 = loglik_grad(family, link, y[row], eta[row], trials[row], a0, a1)
        w = wts[row]
        ll += w * v
        de *= w
        de_all[row] = de
        g0 += w * d1
        g1 += w * d2
        for j in range(p):
            gb[j] += de * blob[o_X + row * p + j]
    for j in range(p):
        grad[j] += gb[j]
    for t in range(n_aux):
        grad[o_aux + t] += (g0 if t == 0 else g1) * aux[t]
    _scatter(blob, n, n_blocks, de_all, gr)
    return ll


@numba.njit(cache=True, error_model="numpy")
def _marginal_rows(blob, n, p, n_blocks, mu0, r, sigma, grad, o_aux, gr):
    """The gaussian log-likelihood with the fixed effects integrated out (:func:`_marginal_terms`):
    adds the gradients in log sigma (``grad``) and the group effects (``gr``)."""
    o_X, o_y, o_bpri = int(blob[12]), int(blob[13]), int(blob[17])
    resid0 = _linear_predictor(blob, n, p, n_blocks, mu0, r)
    for row in range(n):
        resid0[row] = blob[o_y + row] - resid0[row]
    v = sigma * sigma
    m, logdet, trace = _marginal_terms(blob, n, p, resid0, v)
    rss = 0.0
    for row in range(n):  # resid0 becomes d log p / d eta = (resid0 - X m) / v
        acc = resid0[row]
        for j in range(p):
            acc -= blob[o_X + row * p + j] * m[j]
        rss += acc * acc
        resid0[row] = acc / v
    _scatter(blob, n, n_blocks, resid0, gr)
    penalty = 0.0
    for j in range(p):
        s = blob[o_bpri + 4 * j + 3]
        penalty += m[j] * m[j] / (s * s)
    grad[o_aux] += rss / v - n + trace / v
    return -0.5 * (rss / v + penalty) - n * math.log(sigma) - logdet


@numba.njit(cache=True, error_model="numpy")
def _logp_grad(x, blob, grad):
    """Log density (constants dropped) at ``x``; its gradient written into ``grad``."""
    n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
    o_X, o_y, o_blk, o_codes, o_vals, o_bpri, o_spri, o_grp, o_xtx = _offsets(blob)
    marginal = blob[20] != 0.0
    grad[:] = 0.0
    o_s = p
    o_z = p + n_sd + n_cor
    o_aux = o_z + n_z
    stride = 2 + kmax
    sd, Lfull, dLfull, lp, g_loc = sd_and_correlations(
        x[o_s:o_z], _matrix(blob, o_spri, n_sd, 3), _matrix(blob, o_grp, n_groups, stride), kmax)
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
    aux = np.ones(2)
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
        if _centred(blob, o_blk, n_blocks, bi):
            lp += _centred_prior(blob, o_blk, n_blocks, bi, T, r, g_prior, dT)
        else:
            levels, k, zo, c0 = _block(blob, o_blk, bi)
            for i in range(zo, zo + levels * k):
                lp += -0.5 * z[i] * z[i]
                g_prior[i] -= z[i]
    for i in range(n_z):
        grad[o_z + i] += g_prior[i]
    gr = np.zeros(n_z)
    if marginal:
        lp += _marginal_rows(blob, n, p, n_blocks, beta, r, aux[0], grad, o_aux, gr)
    else:
        lp += _family_rows(blob, n, p, n_blocks, family, link, beta, r, aux, n_aux, grad, o_aux, gr)
    # back through r = T z (centred blocks: r is the parameter)
    for bi in range(n_blocks):
        levels, k, zo, c0 = _block(blob, o_blk, bi)
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
                    dT[c0 + i, c0 + j] += gi * z[base + j]
    n_loc = n_sd + n_cor
    for i in range(n_sd):
        for j in range(i + 1):
            if dT[i, j] == 0.0:
                continue
            grad[o_s + i] += dT[i, j] * Lfull[i, j] * sd[i]
            dL = dT[i, j] * sd[i]
            for u in range(n_sd, n_loc):
                grad[o_s + u] += dL * dLfull[i, j, u]
    return lp


@numba.njit(cache=True, error_model="numpy")
def _fixed_draw(x, blob, n, p, n_blocks, sd, Lfull, o_z, n_z):
    """A draw of the integrated-out fixed effects from their conditional, given the rest of ``x``.

    ``beta = mu0 + m + C^-T xi`` with ``xi = x[:p]`` standard normal (see :func:`_marginal_terms`):
    exact, since ``xi`` is independent of everything else in the sampled density.
    """
    o_bpri = int(blob[17])
    mu0 = np.empty(p)
    for j in range(p):
        mu0[j] = blob[o_bpri + 4 * j + 2]
    T, r = _group_effects(blob, int(blob[14]), n_blocks, sd, Lfull, x[o_z:o_z + n_z])
    eta0 = _linear_predictor(blob, n, p, n_blocks, mu0, r)
    sigma = math.exp(x[o_z + n_z])
    resid0 = np.empty(n)
    o_y = int(blob[13])
    for row in range(n):
        resid0[row] = blob[o_y + row] - eta0[row]
    C, m, b = _fixed_conditional(blob, n, p, resid0, sigma * sigma)
    return mu0 + m + _solve_lower_t(C, np.ascontiguousarray(x[:p]), np.empty(p))


@numba.njit(cache=True, error_model="numpy")
def _expand(x, blob, out):
    """beta, sd, every correlated block's correlation matrix, r of every factor, the family's parameters."""
    n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
    o_blk, o_spri, o_grp = int(blob[14]), int(blob[18]), int(blob[19])
    o_z = p + n_sd + n_cor
    stride = 2 + kmax
    sd, Lfull, dLfull, lp, g_loc = sd_and_correlations(
        x[p:o_z], _matrix(blob, o_spri, n_sd, 3), _matrix(blob, o_grp, n_groups, stride), kmax)
    t = 0
    if blob[20] != 0.0:
        beta = _fixed_draw(x, blob, n, p, n_blocks, sd, Lfull, o_z, n_z)
    else:
        beta = x[:p]
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
    T, r = _group_effects(blob, o_blk, n_blocks, sd, Lfull, x[o_z:o_z + n_z])
    for i in range(n_z):  # every factor's effects, level-major, in block order (their z offsets are consecutive)
        out[t] = r[i]
        t += 1
    for a in range(n_aux):
        out[t] = math.exp(x[o_z + n_z + a])
        t += 1


def _logp_callback(dim, x_, out_, logp_, user_data):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    try:
        value = _logp_grad(x, blob_at(user_data), out)
    except Exception:  # noqa: BLE001  (a defect: a negative code makes nutpie stop and report it)
        return ERROR_DEFECT
    return logp_status(value, out, logp)


def _expand_callback(dim, expanded, x_, out_, user_data):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    try:
        _expand(x, blob_at(user_data), out)
    except Exception:  # noqa: BLE001
        return ERROR_DEFECT
    return 0


@functools.cache
def noncentred_callbacks():
    """The two C callbacks nutpie calls (compiled on first use, then loaded from Numba's disk cache)."""
    return (numba.cfunc(LOGP_SIG, cache=True)(_logp_callback),
            numba.cfunc(EXPAND_SIG, cache=True)(_expand_callback))


# --------------------------------------------------------------------------- packing
def integrates_fixed_effects(design: Design, priors: PriorSpec, weights: np.ndarray) -> bool:
    """Whether the density integrates the fixed effects out: a gaussian response (identity link, no
    weights) and normal priors on every fixed effect, so their conditional is gaussian."""
    family = design.family
    gaussian = family is None or (family.name == "gaussian" and family.link.name == "identity")
    normal = all(isinstance(priors[name], Normal) for name in design.fixed_names)
    return bool(gaussian and normal and design.p > 0 and np.all(weights == 1.0))



@dataclass(frozen=True)
class NativeNonCentred(CompiledDensity):
    """Data, level codes and prior constants as one float64 array (see :class:`CompiledDensity`)."""

    _expand_kernel = staticmethod(_expand)
    _callbacks = staticmethod(noncentred_callbacks)
    _jitter = 0.5
    centred: tuple[bool, ...] = ()
    fixed_integrated: bool = False

    @classmethod
    def from_design(cls, design: Design, priors: PriorSpec, centred: Sequence[bool] | None = None,
                    integrate_fixed: bool | None = None, fit=None) -> "NativeNonCentred":
        """Pack a design (gaussian, or with ``design.family``) and its priors (see :func:`noncentred_supports`).

        ``centred`` flags, per factor, the factors whose effects are sampled
        centred (the effects themselves are the parameters, under their normal
        prior); the others are non-centred. Default: :func:`centred_factors`,
        informed by ``fit`` (an lmer or glmer fit of the model) when given.
        ``integrate_fixed``: integrate the fixed effects out where
        :func:`integrates_fixed_effects` allows (default), or never (False).
        """
        why = noncentred_supports(design, priors)
        if why is not None:
            raise ValueError(f"the compiled non-centred density does not cover this model: {why}")
        centred = centred_factors(design, priors, fit) if centred is None else [bool(c) for c in centred]
        if len(centred) != len(design.blocks):
            raise ValueError(f"centred needs one flag per factor ({len(design.blocks)}), got {len(centred)}")
        from ..families import Gaussian

        fam = design.family if design.family is not None else Gaussian()
        if design.glm is not None:
            glm = design.glm
            y, trials, wts, off = glm.y, glm.trials, glm.weights, glm.offset
        else:
            y, trials, wts, off = design.y, np.ones(design.n), np.ones(design.n), np.zeros(design.n)
        n, p = design.n, design.p
        aux_names = list(family_parameters(design))
        sd_keys = [f"sd[{b.factor}][{c}]" for b in design.blocks for c in b.columns]
        n_sd = len(sd_keys)
        block_start = np.cumsum([0] + [b.n_cols for b in design.blocks])[:-1]
        z_start = np.cumsum([0] + [b.n_effects for b in design.blocks])[:-1]
        groups = []
        for block, c0 in zip(design.blocks, block_start):
            multi = [g for g in block.groups if len(g) > 1]
            for group in multi:
                key = correlation_key(block.factor, tuple(block.columns[i] for i in group), len(multi))
                groups.append((len(group), priors[key].eta, [int(c0) + i for i in group]))
        kmax = max([m for m, _, _ in groups], default=1)
        n_cor = sum(m * (m - 1) // 2 for m, _, _ in groups)
        n_z = int(sum(b.n_effects for b in design.blocks))
        correlated = [float(any(len(g) > 1 for g in b.groups)) for b in design.blocks]
        bpri = []
        for name in design.fixed_names:
            d = priors[name]
            bpri += [0.0, 0.0, d.mu, d.sigma] if isinstance(d, Normal) else [1.0, d.nu, d.mu, d.sigma]
        sections = [
            np.asarray(design.X, dtype=np.float64).ravel(),
            np.concatenate([y, trials, wts, off]).astype(np.float64),
            np.concatenate([np.ravel([[b.n_levels, b.n_cols, zs, c0] for b, zs, c0 in zip(design.blocks, z_start, block_start)]),
                            correlated, np.asarray(centred, dtype=np.float64),
                            [float(b.n_cols == 1 and np.all(np.asarray(b.values) == 1.0)) for b in design.blocks]]),
            np.concatenate([b.codes.astype(np.float64) for b in design.blocks]) if design.blocks else [],
            np.concatenate([np.asarray(b.values, dtype=np.float64).ravel() for b in design.blocks]) if design.blocks else [],
            np.asarray(bpri, dtype=np.float64),
            prior_rows([priors[k] for k in sd_keys + aux_names]).ravel(),
            group_rows(groups, kmax).ravel(),
        ]
        marginal = integrate_fixed is not False and integrates_fixed_effects(design, priors, wts)
        X = np.asarray(design.X, dtype=np.float64)
        sections.append((X.T @ X).ravel() if marginal else np.zeros(0))
        offsets = np.cumsum([_H] + [len(s) for s in sections])
        header = np.zeros(_H)
        header[:12] = [offsets[-1], n, p, len(design.blocks), n_sd, len(groups), kmax, fam.code, fam.link.code,
                       len(aux_names), n_z, n_cor]
        header[12:20] = offsets[:8]
        header[20] = float(marginal)
        header[21] = offsets[8]
        blob = np.ascontiguousarray(np.concatenate([header, *[np.asarray(s, dtype=np.float64) for s in sections]]))
        n_dim = p + n_sd + n_cor + n_z + len(aux_names)

        names, shapes, dims, coords = ["beta"], [(p,)], {"beta": ("fixed",)}, {"fixed": list(design.fixed_names)}
        add_scale_variables(design, correlated, names, shapes, dims, coords)
        for block in design.blocks:
            F = block.factor
            names.append(f"r[{F}]")
            shapes.append((block.n_levels, block.n_cols))
            dims[f"r[{F}]"] = (F, col_dim(F))
            coords[F] = list(block.levels)
        for name in aux_names:
            names.append(name)
            shapes.append(())
        start = np.zeros(n_dim)
        for j, name in enumerate(design.fixed_names):
            start[j] = 0.0 if marginal else priors[name].mu
        if "Intercept" in design.fixed_names and not marginal:
            start[design.fixed_names.index("Intercept")] = _link_of_mean(fam, y, trials)
        for i, key in enumerate(sd_keys):
            start[p + i] = math.log(prior_scale(priors[key])) - 1.0
        for t, name in enumerate(aux_names):
            start[p + n_sd + n_cor + n_z + t] = math.log(prior_scale(priors[name]))
        return cls(blob, n_dim, names, shapes, dims, coords, start, tuple(centred), marginal)

    def logp_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Log density (constants dropped) and gradient at an unconstrained point."""
        grad = np.empty(self.n_dim)
        value = _logp_grad(np.asarray(x, dtype=np.float64), self.blob, grad)
        return float(value), grad


def _link_of_mean(fam, y: np.ndarray, trials: np.ndarray) -> float:
    """The link of the response's mean: where the intercept starts."""
    if fam.name == "binomial":
        m = float(np.clip(np.sum(y * trials) / np.sum(trials), 0.02, 0.98))
    elif fam.name == "lognormal":
        return float(np.mean(np.log(y)))
    else:
        m = float(np.mean(y))
    if fam.link.name in ("log",):
        m = max(m, 0.05)
    with np.errstate(all="ignore"):
        value = float(fam.link.link(np.array([m]))[0])
    return value if math.isfinite(value) else 0.0
