"""The families' link and log-density kernels compiled by Numba, for compiled samplers and loops.

Scalar functions keyed by :attr:`bayesmlm.families.Link.code` and
:attr:`bayesmlm.families.Family.code`, so that a compiled density (a Bayesian
non-centred GLMM, posterior predictive draws) can evaluate any family without
Python callbacks. They implement the same formulas as :mod:`bayesmlm.families`
(R's, with R's clamping of the inverse links) and are tested against it.

Examples
--------
>>> from bayesmlm.families import get_family
>>> fam = get_family("poisson")
>>> round(logpdf(fam.code, 2.0, linkinv(fam.link.code, 0.4), 1.0, 1.0), 6)
-1.384972
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["linkinv", "mu_eta", "variance", "dev_resid", "valid_mu", "logpdf", "logpdf_sum", "digamma", "loglik_grad",
           "binomial_logit"]

_EPS = float(np.finfo(float).eps)
_PROBIT = 8.125890664701906  # -qnorm(.Machine$double.eps)


@numba.njit(cache=True)
def linkinv(code: int, eta: float) -> float:  # pragma: no cover - compiled
    """Inverse link (0 logit, 1 probit, 2 cloglog, 3 log, 4 identity, 5 inverse, 6 sqrt)."""
    if code == 0:
        if eta < -30.0:
            t = _EPS
        elif eta > 30.0:
            t = 1.0 / _EPS
        else:
            t = math.exp(eta)
        return t / (1.0 + t)
    if code == 1:
        x = min(max(eta, -_PROBIT), _PROBIT)
        return 0.5 * math.erfc(-x / math.sqrt(2.0))
    if code == 2:
        return min(max(-math.expm1(-math.exp(min(eta, 700.0))), _EPS), 1.0 - _EPS)
    if code == 3:
        return max(math.exp(min(eta, 700.0)), _EPS)
    if code == 4:
        return eta
    if code == 5:
        return 1.0 / eta
    return eta * eta


@numba.njit(cache=True)
def mu_eta(code: int, eta: float) -> float:  # pragma: no cover - compiled
    """``d mu / d eta`` of the link ``code``."""
    if code == 0:
        if abs(eta) > 30.0:
            return _EPS
        e = math.exp(-abs(eta))
        return e / (1.0 + e) ** 2
    if code == 1:
        return max(math.exp(-0.5 * eta * eta) / math.sqrt(2.0 * math.pi), _EPS)
    if code == 2:
        e = min(eta, 700.0)
        return max(math.exp(e) * math.exp(-math.exp(e)), _EPS)
    if code == 3:
        return max(math.exp(min(eta, 700.0)), _EPS)
    if code == 4:
        return 1.0
    if code == 5:
        return -1.0 / (eta * eta)
    return 2.0 * eta


@numba.njit(cache=True)
def variance(family: int, mu: float, phi: float) -> float:  # pragma: no cover - compiled
    """Variance function (0 binomial, 1 Poisson, 2 Gamma, 3 negative binomial, 4 gaussian)."""
    if family == 0:
        return mu * (1.0 - mu)
    if family == 1:
        return mu
    if family == 2:
        return mu * mu
    if family == 3:
        return mu + mu * mu / phi
    return 1.0


@numba.njit(cache=True)
def _xlogy_ratio(y: float, m: float) -> float:  # pragma: no cover - compiled
    """``y * log(y / m)`` with ``0 log 0 = 0``."""
    return y * math.log(y / m) if y > 0.0 else 0.0


@numba.njit(cache=True)
def dev_resid(family: int, y: float, mu: float, wt: float, phi: float) -> float:  # pragma: no cover - compiled
    """R's ``dev.resids`` of one observation (binomial ``y`` a proportion, ``wt`` its trials)."""
    if family == 0:
        return 2.0 * wt * (_xlogy_ratio(y, mu) + _xlogy_ratio(1.0 - y, 1.0 - mu))
    if family == 1:
        return 2.0 * wt * (_xlogy_ratio(y, mu) - (y - mu))
    if family == 2:
        r = math.log(y / mu) if y != 0.0 else 0.0
        return -2.0 * wt * (r - (y - mu) / mu)
    if family == 3:
        return 2.0 * wt * (y * math.log(max(1.0, y) / mu) - (y + phi) * math.log((y + phi) / (mu + phi)))
    return wt * (y - mu) * (y - mu)


@numba.njit(cache=True)
def valid_mu(family: int, mu: float) -> bool:  # pragma: no cover - compiled
    """Whether ``mu`` is inside the family's mean space (R's ``validmu``)."""
    if not math.isfinite(mu):
        return False
    if family == 0:
        return 0.0 < mu < 1.0
    if family == 4:
        return True
    return mu > 0.0


@numba.njit(cache=True)
def logpdf(family: int, y: float, mu: float, n: float, phi: float) -> float:  # pragma: no cover - compiled
    """Log density of one observation.

    ``n``: binomial trials (``y`` the proportion). ``phi``: negative binomial
    ``phi``, Gamma shape, gaussian, lognormal and student SD; unused otherwise. The
    student's ``nu`` is not a parameter here: use :func:`loglik_grad`.
    """
    if family == 0:
        k = round(n * y)
        nn = round(n)
        out = math.lgamma(nn + 1.0) - math.lgamma(k + 1.0) - math.lgamma(nn - k + 1.0)
        if k > 0:
            out += k * math.log(mu)
        if nn - k > 0:
            out += (nn - k) * math.log1p(-mu)
        return out
    if family == 1:
        out = -mu - math.lgamma(y + 1.0)
        if y > 0:
            out += y * math.log(mu)
        return out
    if family == 2:
        scale = mu / phi
        return (phi - 1.0) * math.log(y) - y / scale - math.lgamma(phi) - phi * math.log(scale)
    if family == 3:
        out = math.lgamma(y + phi) - math.lgamma(phi) - math.lgamma(y + 1.0) + phi * math.log(phi / (mu + phi))
        if y > 0:
            out += y * math.log(mu / (mu + phi))
        return out
    if family == 6:
        ly = math.log(y)
        z = (ly - mu) / phi
        return -ly - 0.5 * z * z - math.log(phi) - 0.5 * math.log(2.0 * math.pi)
    z = (y - mu) / phi
    return -0.5 * z * z - math.log(phi) - 0.5 * math.log(2.0 * math.pi)


@numba.njit(cache=True, error_model="numpy")
def digamma(x: float) -> float:  # pragma: no cover - compiled
    """The digamma function for ``x > 0`` (recurrence to ``x >= 6``, then the asymptotic series; ~1e-13)."""
    out = 0.0
    while x < 6.0:
        out -= 1.0 / x
        x += 1.0
    inv = 1.0 / x
    inv2 = inv * inv
    return out + math.log(x) - 0.5 * inv - inv2 * (1.0 / 12.0 - inv2 * (1.0 / 120.0 - inv2 * (
        1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 * (1.0 / 132.0)))))


@numba.njit(cache=True, error_model="numpy")
def _log_mean(link: int, eta: float):  # pragma: no cover - compiled
    """``mu``, ``log mu`` and ``d log mu / d eta`` (the log link, code 3, uses ``eta`` directly)."""
    if link == 3:
        return math.exp(eta), eta, 1.0
    mu = linkinv(link, eta)
    return mu, math.log(mu), mu_eta(link, eta) / mu


@numba.njit(cache=True, error_model="numpy")
def binomial_logit(k: float, n: float, eta: float):  # pragma: no cover - compiled
    """``k`` successes in ``n`` trials under the logit link: ``(k eta - n log(1 + e^eta), its derivative
    in eta)``, the binomial log-likelihood less its terms in ``k`` and ``n`` only.

    Stable on both sides through ``t = e^-|eta|`` in (0, 1]. ``log(1 + t)``, not ``log1p(t)``: half the
    cost per row, and its absolute error (what a sum of log-likelihoods sees) stays below 2.3e-16 however
    small ``t`` is.

    Examples
    --------
    >>> ll, d = binomial_logit(1.0, 1.0, 0.0)
    >>> round(ll, 6), d
    (-0.693147, 0.5)
    """
    t = math.exp(-abs(eta))
    u = 1.0 + t
    p = (1.0 if eta > 0.0 else t) / u
    return k * eta - n * (max(eta, 0.0) + math.log(u)), k - n * p


@numba.njit(cache=True, error_model="numpy")
def loglik_grad(family: int, link: int, y: float, eta: float, n: float, a1: float, a2: float):  # pragma: no cover
    """Log-likelihood of one observation up to terms in ``y`` and ``n`` only, and its derivatives.

    Returns ``(ll, d ll / d eta, d ll / d a1, d ll / d a2)``, ``a1``, ``a2`` the family's
    parameters in the order of :attr:`bayesmlm.families.Family.aux_params` (gaussian,
    lognormal: ``sigma``; student: ``sigma``, ``nu``; Gamma: ``shape``; negative
    binomial: ``phi``; binomial, Poisson: none, derivatives 0). ``y`` and ``n`` as in
    :func:`logpdf` (binomial ``y`` the proportion of ``n`` trials). One generic kernel,
    the family a run-time switch, so a compiled density is specialised once for every
    family. Canonical pairs (binomial-logit, Poisson-log, negative binomial and Gamma
    with the log link) use the linear predictor directly; other links go through
    ``mu`` and ``d mu / d eta``.
    """
    if family == 0:
        k = n * y
        if link == 0:
            ll, d_eta = binomial_logit(k, n, eta)
            return ll, d_eta, 0.0, 0.0
        mu = linkinv(link, eta)
        ll = 0.0
        if k > 0.0:
            ll += k * math.log(mu)
        if n - k > 0.0:
            ll += (n - k) * math.log1p(-mu)
        return ll, (k / mu - (n - k) / (1.0 - mu)) * mu_eta(link, eta), 0.0, 0.0
    if family == 1:
        if link == 3:
            mu = math.exp(eta)
            return y * eta - mu, y - mu, 0.0, 0.0
        mu = linkinv(link, eta)
        ll = -mu + (y * math.log(mu) if y > 0.0 else 0.0)
        return ll, (y / mu - 1.0) * mu_eta(link, eta), 0.0, 0.0
    if family == 3:
        phi = a1
        mu, log_mu, dmu = _log_mean(link, eta)
        lmp = math.log(mu + phi)
        ll = (math.lgamma(y + phi) - math.lgamma(phi) + phi * math.log(phi) - (y + phi) * lmp + y * log_mu)
        d_eta = (y - (y + phi) * mu / (mu + phi)) * dmu
        d_phi = digamma(y + phi) - digamma(phi) + math.log(phi) + 1.0 - lmp - (y + phi) / (mu + phi)
        return ll, d_eta, d_phi, 0.0
    if family == 2:
        a = a1
        mu, log_mu, dmu = _log_mean(link, eta)
        ly = math.log(y)
        ll = a * math.log(a) - a * log_mu - math.lgamma(a) + (a - 1.0) * ly - a * y / mu
        d_eta = (-a + a * y / mu) * dmu
        d_a = math.log(a) + 1.0 - log_mu - digamma(a) + ly - y / mu
        return ll, d_eta, d_a, 0.0
    if family == 5:
        sigma = a1
        nu = a2
        z = (y - eta) / sigma
        q = nu + z * z
        ll = (math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu) - math.log(sigma)
              - 0.5 * (nu + 1.0) * math.log1p(z * z / nu))
        d_eta = (nu + 1.0) * z / (sigma * q)
        d_sigma = -1.0 / sigma + (nu + 1.0) * z * z / (sigma * q)
        d_nu = (0.5 * digamma(0.5 * (nu + 1.0)) - 0.5 * digamma(0.5 * nu) - 0.5 / nu
                - 0.5 * math.log1p(z * z / nu) + 0.5 * (nu + 1.0) * z * z / (nu * q))
        return ll, d_eta, d_sigma, d_nu
    sigma = a1
    mu = eta if link == 4 else linkinv(link, eta)
    resp = math.log(y) if family == 6 else y
    z = (resp - mu) / sigma
    dmu = 1.0 if link == 4 else mu_eta(link, eta)
    return -0.5 * z * z - math.log(sigma), z / sigma * dmu, -1.0 / sigma + z * z / sigma, 0.0


@numba.njit(cache=True)
def logpdf_sum(family: int, link: int, y, eta, n, phi: float) -> float:  # pragma: no cover - compiled
    """Sum of :func:`logpdf` over observations given the linear predictor ``eta``."""
    total = 0.0
    for i in range(y.shape[0]):
        total += logpdf(family, y[i], linkinv(link, eta[i]), n[i], phi)
    return total
