"""The group-effect scales shared by the compiled densities: SD priors, LKJ factors, their Jacobians.

Hand-written in Numba (``cache=True``) for :mod:`bayesmlm.bayes.native` (the collapsed
density) and :mod:`bayesmlm.bayes.noncentred` (the non-centred density), which both
parametrise the group effects' covariance the same way, so that the two stay one
definition: log SDs, and for each correlated group of ``m`` columns ``m (m - 1) / 2``
values mapped to the Cholesky factor of a correlation matrix by the canonical-partial-
correlation transform (``tanh``, then rows scaled to unit length), with its log Jacobian
and the LKJ(eta) density of the Cholesky factor ``sum_i (m - i + 2 eta - 3) log L_ii``
(0-based ``i``). Log densities drop constants.

Examples
--------
>>> import numpy as np
>>> value, deriv = positive_logp(0, 2.0, 0.0, 1.0)   # HalfNormal(2) at 1
>>> round(value, 4), round(deriv, 4)
(-0.125, -0.25)
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["POSITIVE_FAMILIES", "positive_logp", "correlation_factor", "sd_and_correlations", "prior_rows", "group_rows"]

POSITIVE_FAMILIES = {"HalfNormal": 0, "HalfStudentT": 1, "Exponential": 2, "Gamma": 3, "LogNormal": 4}
"""Prior families of SDs and positive family parameters the compiled densities know, by code."""
_LOG2 = math.log(2.0)


@numba.njit(cache=True, error_model="numpy")
def positive_logp(code, a, b, v):
    """Log density (constants dropped) of a positive prior at ``v`` and its derivative."""
    if code == 0:  # HalfNormal(sigma=a)
        return -0.5 * v * v / (a * a), -v / (a * a)
    if code == 1:  # HalfStudentT(nu=a, sigma=b)
        u = 1.0 + v * v / (a * b * b)
        return -0.5 * (a + 1.0) * math.log(u), -(a + 1.0) * v / (a * b * b + v * v)
    if code == 2:  # Exponential(lam=a)
        return -a * v, -a
    if code == 3:  # Gamma(alpha=a, beta=b)
        return (a - 1.0) * math.log(v) - b * v, (a - 1.0) / v - b
    lv = math.log(v)  # LogNormal(mu=a, sigma=b)
    return -lv - 0.5 * (lv - a) ** 2 / (b * b), (-1.0 - (lv - a) / (b * b)) / v


@numba.njit(cache=True, error_model="numpy")
def _log_sech2(y):
    """log(1 - tanh(y)^2), stable for large |y|."""
    ay = abs(y)
    return 2.0 * (_LOG2 - ay - math.log1p(math.exp(-2.0 * ay)))


@numba.njit(cache=True, error_model="numpy")
def correlation_factor(y, m, eta, L, dL, dlp):
    """Cholesky factor of an m x m correlation matrix from ``y``; returns log Jacobian + LKJ.

    Fills ``L`` (m, m), ``dL`` (m, m, nz) = d L / d y and ``dlp`` (nz) = d (returned) / d y.
    """
    nz = m * (m - 1) // 2
    L[:, :] = 0.0
    dL[:, :, :] = 0.0
    dlp[:] = 0.0
    lp = 0.0
    L[0, 0] = 1.0
    dS = np.zeros(nz)
    t = 0
    for i in range(1, m):
        S = 0.0
        dS[:] = 0.0
        for j in range(i):
            z = math.tanh(y[t])
            lp += _log_sech2(y[t])
            dlp[t] += -2.0 * z
            r = math.sqrt(1.0 - S)
            lp += 0.5 * math.log(1.0 - S)
            for u in range(nz):
                dlp[u] += -0.5 * dS[u] / (1.0 - S)
                dL[i, j, u] = -z * dS[u] / (2.0 * r)
            dL[i, j, t] += (1.0 - z * z) * r
            L[i, j] = z * r
            S += L[i, j] * L[i, j]
            for u in range(nz):
                dS[u] += 2.0 * L[i, j] * dL[i, j, u]
            t += 1
        L[i, i] = math.sqrt(1.0 - S)
        c = m - i + 2.0 * eta - 3.0
        lp += c * math.log(L[i, i])
        for u in range(nz):
            dL[i, i, u] = -dS[u] / (2.0 * L[i, i])
            dlp[u] += c * dL[i, i, u] / L[i, i]
    return lp


@numba.njit(cache=True, error_model="numpy")
def sd_and_correlations(x, priors, groups, kmax):
    """SDs and correlation factors from ``x = [log sd (n_sd), correlation values]``.

    Parameters
    ----------
    x : (n_sd + n_cor,) array
    priors : (n_sd, 3) array
        Per SD: prior family code (:data:`POSITIVE_FAMILIES`) and two parameters.
    groups : (n_groups, 2 + kmax) array
        Per correlated group: size ``m``, LKJ ``eta``, the group's SD indices (padded).
    kmax : int
        Largest group.

    Returns
    -------
    (sd, Lfull, dLfull, lp, gx)
        ``Lfull`` (n_sd, n_sd) holds each group's correlation factor at its SDs (identity
        elsewhere), ``dLfull`` (n_sd, n_sd, len(x)) its derivative in ``x``; ``lp`` the SD
        and LKJ priors with the log Jacobians, ``gx`` its gradient in ``x``.
    """
    n_sd = priors.shape[0]
    n_loc = x.shape[0]
    gx = np.zeros(n_loc)
    sd = np.empty(n_sd)
    for i in range(n_sd):
        sd[i] = math.exp(x[i])
    lp = 0.0
    for i in range(n_sd):
        v, d = positive_logp(int(priors[i, 0]), priors[i, 1], priors[i, 2], sd[i])
        lp += v + x[i]
        gx[i] += d * sd[i] + 1.0
    Lfull = np.zeros((n_sd, n_sd))
    for i in range(n_sd):
        Lfull[i, i] = 1.0
    dLfull = np.zeros((n_sd, n_sd, n_loc))
    Lg = np.zeros((kmax, kmax))
    dLg = np.zeros((kmax, kmax, kmax * kmax))
    dlp = np.zeros(kmax * kmax)
    t = n_sd
    for gi in range(groups.shape[0]):
        m = int(groups[gi, 0])
        eta = groups[gi, 1]
        nz = m * (m - 1) // 2
        lp += correlation_factor(x[t:t + nz], m, eta, Lg[:m, :m], dLg[:m, :m, :nz], dlp[:nz])
        for u in range(nz):
            gx[t + u] += dlp[u]
        for i in range(m):
            ci = int(groups[gi, 2 + i])
            for j in range(i + 1):
                cj = int(groups[gi, 2 + j])
                Lfull[ci, cj] = Lg[i, j]
                for u in range(nz):
                    dLfull[ci, cj, t + u] = dLg[i, j, u]
        t += nz
    return sd, Lfull, dLfull, lp, gx


def prior_rows(dists) -> np.ndarray:
    """``(len(dists), 3)``: family code and two parameters of each positive prior."""
    rows = [[POSITIVE_FAMILIES[d.family], *list(d.params().values()), 0.0][:3] for d in dists]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def group_rows(groups, kmax: int) -> np.ndarray:
    """``(n_groups, 2 + kmax)`` from ``(m, eta, sd indices)`` triples."""
    rows = [[m, eta, *cols, *[0] * (kmax - m)] for m, eta, cols in groups]
    return np.array(rows, dtype=np.float64).reshape(-1, 2 + kmax)
