"""Parametric bootstrap of a fit (lme4's ``bootMer``) and percentile intervals.

Each replicate simulates a response from the fitted model -- new random
effects ``b* = sigma Lambda u*``, ``u* ~ N(0, I)``, and new residuals -- and
refits it by PLS (REML or ML as the original), starting from the fitted theta
as lme4's ``refit`` does. Only ``X'y``, ``Z'y`` and ``y'y`` change between
replicates, so a refit costs an optimisation over theta and nothing in ``n``
beyond the simulation. Replicates are spread over processes; replicate ``k``
always uses the ``k``-th child of ``numpy.random.SeedSequence(seed)``, so the
draws do not depend on the number of workers.

Each refit is checked as lme4's ``refit`` is (the optimiser's status and the
Hessian-scaled gradient at its optimum); replicates whose refit did not
converge are kept, as ``bootMer`` keeps them, flagged in
:attr:`Bootstrap.converged` and counted in a warning (``bootMer`` reports its
refits' warnings). Refits that fail outright are rows of NaN, counted in
:attr:`Bootstrap.failed`.

Percentile intervals use boot's ``norm.inter`` rule (order statistic
``(nsim + 1) alpha``, interpolated on the normal scale), as ``confint(fit,
method = "boot")`` does.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
>>> boot = bootstrap(fit, nsim=20, seed=1, n_jobs=1)
>>> boot.draws.shape, list(boot.draws.columns)
((20, 3), ['Intercept', 'sd[Batch][Intercept]', 'sigma'])
>>> bool(boot.draws.equals(bootstrap(fit, nsim=20, seed=1, n_jobs=1).draws))
True
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from ...errors import ConvergenceWarning
from ...stats import SufficientStats
from ..optimize import optimize_theta
from ..pls import ProfiledDeviance
from ..theta import ThetaLayout
from ._blas import blas_threads
from ._parallel import run_tasks
from .parameters import to_sdcor, variance_parameters

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["Bootstrap", "bootstrap", "percentile_interval"]


def percentile_interval(t: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """boot's percentile interval (``perc.ci`` with ``norm.inter``).

    Examples
    --------
    >>> percentile_interval(np.arange(1.0, 100.0), 0.9)
    (5.0, 95.0)
    """
    t = np.sort(np.asarray(t, dtype=float)[np.isfinite(t)])
    R = len(t)
    if R == 0:
        return (np.nan, np.nan)
    alpha = np.array([(1 - level) / 2, (1 + level) / 2])
    rk = (R + 1) * alpha
    k = np.trunc(rk).astype(int)
    out = np.empty(2)
    for m in range(2):
        if k[m] == rk[m] and 0 < k[m] <= R:
            out[m] = t[k[m] - 1]
        elif k[m] <= 0:
            out[m] = t[0]
        elif k[m] >= R:
            out[m] = t[-1]
        else:
            z, z1, z2 = stats.norm.ppf([alpha[m], k[m] / (R + 1), (k[m] + 1) / (R + 1)])
            out[m] = t[k[m] - 1] + (z - z1) / (z2 - z1) * (t[k[m]] - t[k[m] - 1])
    return float(out[0]), float(out[1])


@dataclass
class _Model:
    """The fitted model, reduced to what a replicate needs (picklable)."""

    X: np.ndarray
    Z: sp.csr_matrix
    stats: SufficientStats
    layout: ThetaLayout
    levels: list[int]
    reml: bool
    theta: np.ndarray
    beta: np.ndarray
    sigma: float


_MODEL: _Model | None = None


def _install(model: _Model | None) -> None:
    global _MODEL
    _MODEL = model


def _simulate(model: _Model, rng: np.random.Generator) -> np.ndarray:
    b = []
    for T, n_levels in zip(model.layout.templates(model.theta), model.levels):
        u = rng.standard_normal((n_levels, T.shape[0]))
        b.append((u @ T.T).reshape(-1))
    e = rng.standard_normal(model.X.shape[0])
    return model.X @ model.beta + model.sigma * (model.Z @ np.concatenate(b) + e)


def _replicate(seed: np.random.SeedSequence) -> np.ndarray:
    """One bootstrap replicate: fixed effects, then SDs, correlations and sigma (NaN if it fails), and last
    whether the refit converged (1.0), did not (0.0) or failed (NaN)."""
    model = _MODEL
    assert model is not None
    y = _simulate(model, np.random.default_rng(seed))
    s = replace(
        model.stats,
        Xty=model.X.T @ y,
        yty=float(y @ y),
        Zty=np.asarray(model.Z.T @ y).reshape(-1),
        ysum=float(y.sum()),
    )
    try:
        with blas_threads(model.stats.ZtZ.shape[0] + len(model.beta)):
            dev = ProfiledDeviance(s, model.layout, model.levels, reml=model.reml)
            res = optimize_theta(dev, model.theta, model.layout.lower, check=True)
            sol = dev.solve(res.theta)
    except (np.linalg.LinAlgError, ValueError):
        return np.full(len(model.beta) + model.layout.size + 2, np.nan)
    return np.concatenate([sol.beta, to_sdcor(model.layout, sol.theta, sol.sigma), [float(bool(res.converged))]])


class _Progress:
    def __init__(self, every: int = 10):
        self.every = every

    def __call__(self, done: int, total: int) -> None:
        if done % self.every == 0 or done == total:
            print(f"\rbootstrap: {done}/{total} refits", end="" if done < total else "\n", file=sys.stderr, flush=True)


@dataclass
class Bootstrap:
    """Bootstrap replicates of a fit's parameters.

    Attributes
    ----------
    draws : pandas.DataFrame
        One row per replicate, one column per parameter (fixed effects, SDs,
        correlations, sigma), in the shared vocabulary.
    estimates : pandas.Series
        The fitted values of the same parameters.
    failed : int
        Replicates whose refit failed (rows of NaN).
    converged : ndarray of bool
        Per replicate, whether its refit converged (False for failed ones too);
        ``draws[converged]`` keeps the converged replicates only.
    not_converged : int
        Replicates whose refit ran but did not converge (kept in ``draws``).
    """

    draws: pd.DataFrame
    estimates: pd.Series
    failed: int
    converged: np.ndarray | None = None
    not_converged: int = 0

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals: columns ``lower upper``."""
        rows = {name: percentile_interval(self.draws[name].to_numpy(), level) for name in self.draws.columns}
        return pd.DataFrame.from_dict(rows, orient="index", columns=["lower", "upper"])


def bootstrap(
    fit: "FreqFit",
    nsim: int = 500,
    seed: int | np.random.SeedSequence | None = None,
    n_jobs: int | None = None,
    progress: bool = False,
) -> Bootstrap:
    """Parametric bootstrap (lme4's ``bootMer`` with ``use.u = FALSE``).

    Parameters
    ----------
    fit : FreqFit
    nsim : int
        Number of replicates.
    seed : int or SeedSequence, optional
        Makes the replicates reproducible (whatever ``n_jobs``).
    n_jobs : int or None
        Worker processes; ``None`` uses every core, 1 runs here.
    progress : bool
        Print a progress counter to stderr.

    Returns
    -------
    Bootstrap
    """
    design = fit.design
    design.require_rows("a parametric bootstrap")
    layout = ThetaLayout.from_design(design)
    model = _Model(
        X=np.asarray(design.X, dtype=float),
        Z=sp.csr_matrix(design.Z),
        stats=design.sufficient_stats(),
        layout=layout,
        levels=[b.n_levels for b in design.blocks],
        reml=fit.reml,
        theta=np.asarray(fit.theta, dtype=float),
        beta=fit.fixef().to_numpy(),
        sigma=fit.sigma,
    )
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    children = seq.spawn(nsim)
    try:
        rows = run_tasks(
            _replicate,
            [(c,) for c in children],
            n_jobs=n_jobs,
            initializer=_install,
            initargs=(model,),
            progress=_Progress(max(1, nsim // 20)) if progress else None,
        )
    finally:
        _install(None)  # serial runs installed it here
    names = list(design.fixed_names) + [p.name for p in variance_parameters(design)]
    table = np.vstack(rows)
    draws = pd.DataFrame(table[:, :-1], columns=names)
    flag = table[:, -1]
    converged = flag == 1.0
    failed = int(np.isnan(flag).sum())
    not_converged = int((flag == 0.0).sum())
    if failed:
        warnings.warn(f"{failed} of {nsim} bootstrap refits failed and are left out", stacklevel=2)
    if not_converged:
        warnings.warn(
            f"{not_converged} of {nsim} bootstrap refits did not converge (the optimiser stopped short or the "
            "scaled gradient at its optimum exceeded 0.002); they are kept in the draws and intervals, as lme4's "
            "bootMer keeps them: Bootstrap.converged flags them (draws[converged] leaves them out)",
            ConvergenceWarning,
            stacklevel=2,
        )
    estimates = pd.Series(
        np.concatenate([model.beta, to_sdcor(layout, model.theta, model.sigma)]), index=names, name="estimate"
    )
    return Bootstrap(draws, estimates, failed, converged, not_converged)
