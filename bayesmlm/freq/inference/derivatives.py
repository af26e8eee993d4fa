"""Richardson-extrapolated finite differences, as R's numDeriv computes them.

lmerTest takes the Hessian of the deviance (``numDeriv::hessian``) and the
Jacobian of ``vcov(beta)`` (``numDeriv::jacobian``) with respect to the
variance parameters; these are the same algorithms with numDeriv's defaults
(``genD``: relative step ``d = 0.1``; ``grad``/``jacobian``: ``d = 1e-4``;
both ``r = 4`` halvings extrapolated, ``eps = 1e-4`` where ``|x|`` is ~0).

Examples
--------
>>> import numpy as np
>>> f = lambda x: float(x[0] ** 2 * x[1] + np.exp(x[1]))
>>> richardson_hessian(f, np.array([1.0, 0.5])).round(6).tolist()
[[1.0, 2.0], [2.0, 1.648721]]
>>> richardson_jacobian(lambda x: np.array([x[0] * x[1], x[0] ** 3]), np.array([2.0, 3.0])).round(8).tolist()
[[3.0, 2.0], [12.0, 0.0]]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["richardson_hessian", "richardson_jacobian"]

_ZERO_TOL = float(np.sqrt(np.finfo(float).eps / 7e-7))


def _steps(x: np.ndarray, d: float, eps: float) -> np.ndarray:
    return np.abs(d * x) + eps * (np.abs(x) < _ZERO_TOL)


def _extrapolate(a: np.ndarray) -> np.ndarray:
    """Richardson extrapolation over the first axis (successive halvings, v = 2)."""
    a = np.array(a, dtype=float)
    r = a.shape[0]
    for m in range(1, r):
        a = (a[1 : r + 1 - m] * 4.0**m - a[: r - m]) / (4.0**m - 1.0)
    return a[0]


def richardson_hessian(
    fun: Callable[[np.ndarray], float], x: np.ndarray, d: float = 0.1, eps: float = 1e-4, r: int = 4
) -> np.ndarray:
    """Hessian of a scalar function (numDeriv's ``genD``/``hessian``)."""
    x = np.asarray(x, dtype=float)
    p = len(x)
    f0 = fun(x)
    h0 = _steps(x, d, eps)
    hdiag = np.zeros(p)
    for i in range(p):
        h = h0.copy()
        approx = []
        for _ in range(r):
            e = np.zeros(p)
            e[i] = h[i]
            f1, f2 = fun(x + e), fun(x - e)
            approx.append((f1 - 2.0 * f0 + f2) / h[i] ** 2)
            h = h / 2.0
        hdiag[i] = _extrapolate(approx)
    H = np.diag(hdiag)
    for i in range(p):
        for j in range(i):
            h = h0.copy()
            approx = []
            for _ in range(r):
                e = np.zeros(p)
                e[i], e[j] = h[i], h[j]
                f1, f2 = fun(x + e), fun(x - e)
                approx.append((f1 - 2.0 * f0 + f2 - hdiag[i] * h[i] ** 2 - hdiag[j] * h[j] ** 2) / (2.0 * h[i] * h[j]))
                h = h / 2.0
            H[i, j] = H[j, i] = _extrapolate(approx)
    return H


def richardson_jacobian(
    fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray, d: float = 1e-4, eps: float = 1e-4, r: int = 4
) -> np.ndarray:
    """Jacobian (outputs x inputs) of a vector function (numDeriv's ``jacobian``)."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    m = np.asarray(fun(x), dtype=float).size
    h = _steps(x, d, eps)
    a = np.zeros((r, m, n))
    for k in range(r):
        for i in range(n):
            e = np.zeros(n)
            e[i] = h[i]
            a[k, :, i] = (np.ravel(fun(x + e)) - np.ravel(fun(x - e))) / (2.0 * h[i])
        h = h / 2.0
    return _extrapolate(a)
