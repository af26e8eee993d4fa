"""Variance parameters of a fit in lme4's order, named in the shared vocabulary.

lme4 reports the random-effects part of a linear mixed model either as the
relative covariance factor ``theta`` (column-major lower triangles, block
after block) or, in ``profile`` and ``confint``, as standard deviations and
correlations in the same positions followed by the residual ``sigma``. This
module converts between the two and names every entry as the rest of bayesmlm
does: ``sd[Subject][Days]``, ``cor[Subject][Intercept,Days]``, ``sigma``.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> [p.name for p in variance_parameters(fit.design)]
['sd[Subject][Intercept]', 'cor[Subject][Intercept,Days]', 'sd[Subject][Days]', 'sigma']
>>> from bayesmlm.freq.theta import ThetaLayout
>>> layout = ThetaLayout.from_design(fit.design)
>>> values = to_sdcor(layout, fit.theta, fit.sigma)
>>> values.round(2).tolist()
[24.74, 0.07, 5.92, 25.59]
>>> theta, sigma = from_sdcor(layout, values)
>>> bool(abs(theta - fit.theta).max() < 1e-10)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from ...design import Design
from ..estimates import relative_factor
from ..theta import ThetaLayout

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["VarianceParameter", "variance_parameters", "to_sdcor", "from_sdcor", "all_parameter_names"]


@dataclass(frozen=True)
class VarianceParameter:
    """One entry of lme4's (sd, cor, ..., sigma) vector.

    Attributes
    ----------
    name : str
        ``sd[F][col]``, ``cor[F][a,b]`` or ``sigma``.
    kind : {"sd", "cor", "sigma"}
    block : int
        Index of the factor block (-1 for sigma).
    row, col : int
        Position in the block's template (row >= col; -1 for sigma).
    """

    name: str
    kind: Literal["sd", "cor", "sigma"]
    block: int = -1
    row: int = -1
    col: int = -1

    @property
    def lower(self) -> float:
        """lme4's lower bound in profiles: 0 for SDs and sigma, -1 for correlations."""
        return -1.0 if self.kind == "cor" else 0.0

    @property
    def upper(self) -> float:
        """lme4's upper bound in profiles: 1 for correlations, infinity otherwise."""
        return 1.0 if self.kind == "cor" else np.inf


def variance_parameters(design: Design) -> list[VarianceParameter]:
    """SDs and correlations in theta order, then ``sigma``."""
    layout = ThetaLayout.from_design(design)
    out = []
    for k, (block, free) in enumerate(zip(design.blocks, layout.free)):
        for i, j in free:
            if i == j:
                out.append(VarianceParameter(f"sd[{block.factor}][{block.columns[i]}]", "sd", k, i, j))
            else:
                name = f"cor[{block.factor}][{block.columns[j]},{block.columns[i]}]"
                out.append(VarianceParameter(name, "cor", k, i, j))
    out.append(VarianceParameter("sigma", "sigma"))
    return out


def all_parameter_names(fit: "FreqFit") -> list[str]:
    """Fixed effects, then the variance parameters (the rows of ``confint``)."""
    return list(fit.design.fixed_names) + [p.name for p in variance_parameters(fit.design)]


def to_sdcor(layout: ThetaLayout, theta: np.ndarray, sigma: float) -> np.ndarray:
    """lme4's ``Cv_to_Sv``: theta and sigma -> SDs and correlations, then sigma.

    A correlation with a zero SD is NaN, as in lme4.
    """
    out = []
    for T, free in zip(layout.templates(np.asarray(theta, dtype=float)), layout.free):
        cov = T @ T.T
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        for i, j in free:
            if i == j:
                out.append(sigma * sd[i])
            else:
                out.append(cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan)
    out.append(sigma)
    return np.asarray(out, dtype=float)


def from_sdcor(layout: ThetaLayout, values: np.ndarray, tol: float = 1e-10) -> tuple[np.ndarray, float] | None:
    """lme4's ``Sv_to_Cv``: SDs, correlations and sigma -> theta and sigma.

    Returns None where the values do not define a covariance matrix (a
    correlation outside [-1, 1], a negative SD, an indefinite correlation
    matrix, or sigma <= 0).
    """
    values = np.asarray(values, dtype=float)
    sigma = float(values[-1])
    if not np.isfinite(sigma) or sigma <= 0 or not np.all(np.isfinite(values)):
        return None
    theta = []
    start = 0
    for size, free in zip(layout.sizes, layout.free):
        part = values[start : start + len(free)]
        start += len(free)
        if size == 1:
            if part[0] < 0:
                return None
            theta.append(part / sigma)
            continue
        sd = np.zeros(size)
        corr = np.eye(size)
        for v, (i, j) in zip(part, free):
            if i == j:
                sd[i] = v
            else:
                corr[i, j] = corr[j, i] = v
        if np.any(sd < 0) or np.any(np.abs(corr) > 1.0):
            return None
        cov = corr * np.outer(sd, sd) / sigma**2
        try:
            L = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:  # semi-definite: a zero SD or a correlation of +-1
            if np.linalg.eigvalsh(corr)[0] < -tol:
                return None
            L = relative_factor(cov, tol=1e-14)
        theta.append(L[tuple(zip(*free))])
    return np.concatenate(theta), sigma
