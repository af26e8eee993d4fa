"""Checks shared by the tests of the compiled densities (test_native.py, test_noncentred.py):
derivatives by central differences, independent of the code under test."""

from __future__ import annotations

import numpy as np

STEP = 1e-6


def central_gradient(density, x: np.ndarray) -> np.ndarray:
    """The gradient of ``density.logp_and_grad(x)[0]`` by central differences."""
    return np.array([(density.logp_and_grad(x + h)[0] - density.logp_and_grad(x - h)[0]) / (2 * STEP)
                     for h in np.eye(density.n_dim) * STEP])


def correlation_log_jacobian(density, x: np.ndarray, factor: str, start: int, k: int) -> float:
    """log |d (strictly lower entries of L) / d x| for ``cor[factor]`` (its ``k (k - 1) / 2`` values
    start at ``x[start]``), by central differences."""
    def lower(point):
        return np.linalg.cholesky(density.expand(point)[f"cor[{factor}]"])[np.tril_indices(k, -1)]

    rows = []
    for i in range(start, start + k * (k - 1) // 2):
        step = np.zeros_like(x)
        step[i] = STEP
        rows.append((lower(x + step) - lower(x - step)) / (2 * STEP))
    return float(np.linalg.slogdet(np.array(rows))[1])
