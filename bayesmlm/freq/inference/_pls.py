"""The few things inference needs from the PLS deviance, in one place.

Examples
--------
>>> import numpy as np, bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> from bayesmlm.freq.pls import ProfiledDeviance
>>> dev = ProfiledDeviance.from_design(build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy")))
>>> parts = criterion_parts(dev, np.array([0.97, 0.015, 0.23]))
>>> len(parts), system_size(dev)
(4, 39)
"""

from __future__ import annotations

import numpy as np

from ..pls import ProfiledDeviance

__all__ = ["criterion_parts", "system_size"]


def criterion_parts(dev: ProfiledDeviance, theta: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(criterion, log|L|^2, log|RX|^2, penalised RSS)`` at theta; None where the system is not positive definite."""
    parts = getattr(dev, "criterion_parts", None)
    if parts is not None:
        return parts(theta)
    try:
        sol = dev.solve(theta)
    except np.linalg.LinAlgError:
        return None
    return sol.deviance, sol.logdet_L, sol.logdet_RX, sol.pwrss


def system_size(dev: ProfiledDeviance) -> int:
    """Rows of the dense system factored at each evaluation (decides BLAS threading)."""
    m = getattr(dev, "m", None)
    return int(m) if m is not None else int(dev.A22.shape[0])
