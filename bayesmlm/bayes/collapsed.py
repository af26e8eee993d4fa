"""The collapsed Gaussian sampler: NUTS over variance parameters only.

Hand-written: no library integrates the random (and fixed) effects of a
linear mixed model out of a PyMC model. For a gaussian response,
``y = X beta + Z Lambda u + e`` with ``u ~ N(0, sigma^2 I)`` and, when every
fixed-effect prior is normal, ``beta ~ N(m, S)``, the effects
``g = [u; beta]`` integrate out in closed form. With the relative factor
``Lambda`` (``sigma * Lambda_k`` = Cholesky factor of the factor's covariance)
and ``W = [Z Lambda, X]``:

    Q = W'W + sigma^2 blockdiag(0, S^-1) + blockdiag(I, 0),
    c = L^-1 [Lambda'Z'y ; X'y + sigma^2 S^-1 m],   L L' = Q,
    log p(y | theta, sigma) = -n/2 log 2pi - (n-p)/2 log sigma^2 - 1/2 log|S|
                              - sum log diag L - (y'y + sigma^2 m'S^-1 m - c'c) / (2 sigma^2).

Everything enters through the sufficient statistics, so a gradient costs
O((q+p)^3) whatever ``n`` is. When some fixed-effect prior is not normal,
``beta`` stays a NUTS parameter and only ``u`` is integrated out.

After sampling, ``g`` is drawn exactly from ``N(Q^-1 b, sigma^2 Q^-1)`` for
every posterior draw, so the posterior holds ``beta`` and ``r[F]`` just as
the non-centred model's does. This is exact MCMC, not an approximation.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> model, plan = build_collapsed_model(d, bm.priors.default(d.formula.text, d.data))
>>> plan.integrate_beta, sorted(v.name for v in model.free_RVs)
(True, ['chol_cor[Subject]', 'sd[Subject]', 'sigma'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from ..design import Design
from ..freq.theta import ThetaLayout
from ..priors.distributions import Normal
from ..priors.spec import PriorSpec
from ..stats import SufficientStats
from .build import block_scale, model_coords, sigma_rv, vector_rv
from .dims import col_dim
from .draws import correlation_factors, stack_chains

__all__ = ["COLLAPSED_LIMIT", "CollapsedPlan", "collapsed_plan", "build_collapsed_model", "draw_effects"]

COLLAPSED_LIMIT = 200
"""Largest number of random plus fixed effects that ``method="auto"`` samples collapsed.

Each gradient costs O((q+p)^3) dense algebra. Measured here with the compiled
density (nutpie, 4 x 1000 draws, 2 cores): the crossed subjects x items model
(q+p = 146) sampled in 24.9 s with min ESS 3408, the non-centred model in 42.3 s
with min ESS 1293 (4.5x fewer ESS per second); the cost grows as (q+p)^3, so at
200 the collapsed model is still ahead. A blocked factorization (first factor
block diagonal, as in the PLS engine) would raise this limit."""

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class CollapsedPlan:
    """What the collapsed model integrates and the constants it needs.

    Attributes
    ----------
    integrate_beta : bool
        True when every fixed-effect prior is normal.
    rows, cols : ndarray
        Positions in Lambda of the template entries listed by ``entry``.
    entry : list of ndarray
        Per block, which free template entry fills each position.
    stats : SufficientStats
    layout : ThetaLayout
        The free template entries of each block.
    """

    integrate_beta: bool
    rows: np.ndarray
    cols: np.ndarray
    entry: list[np.ndarray]
    stats: SufficientStats
    layout: ThetaLayout


def _free_entries(T, free) -> object:
    """The free entries of a template, in ``free`` order."""
    return T[[i for i, _ in free], [j for _, j in free]]


def collapsed_plan(design: Design, priors: PriorSpec, stats: SufficientStats | None = None) -> CollapsedPlan:
    """What the collapsed likelihood integrates out, with the statistics it uses (priors checked)."""
    priors.check(design)
    stats = stats or design.sufficient_stats()
    integrate_beta = all(isinstance(priors[name], Normal) for name in design.fixed_names)
    layout = ThetaLayout.from_design(design)
    rows, cols, entry = layout.lambda_positions([b.n_levels for b in design.blocks])
    return CollapsedPlan(integrate_beta, rows, cols, entry, stats, layout)


def build_collapsed_model(
    design: Design, priors: PriorSpec, plan: CollapsedPlan | None = None
) -> tuple[pm.Model, CollapsedPlan]:
    """PyMC model whose likelihood has the group (and fixed) effects integrated out.

    ``plan`` (from :func:`collapsed_plan`) is made here when not given.
    """
    plan = plan or collapsed_plan(design, priors)
    stats, integrate_beta, layout = plan.stats, plan.integrate_beta, plan.layout
    rows, cols, entry = plan.rows, plan.cols, plan.entry
    q, p, n = design.q, design.p, stats.n
    coords = {k: v for k, v in model_coords(design).items() if k != "obs"}
    with pm.Model(coords=coords) as model:
        ZtZ = pm.Data("ZtZ", stats.ZtZ.toarray())
        ZtX = pm.Data("ZtX", stats.ZtX)
        Zty = pm.Data("Zty", stats.Zty)
        XtX = pm.Data("XtX", stats.XtX)
        Xty = pm.Data("Xty", stats.Xty)
        yty = pm.Data("yty", np.float64(stats.yty))
        nobs = pm.Data("nobs", np.float64(n))
        sigma = sigma_rv(priors)
        values = []
        for block, free, e in zip(design.blocks, layout.free, entry):
            sd, L = block_scale(block, priors)
            T = (sd[:, None] * L) / sigma  # relative Cholesky factor of the block's covariance
            values.append(_free_entries(T, free)[e])
        lam = pt.set_subtensor(pt.zeros((q, q))[rows, cols], pt.concatenate(values))
        M = pt.dot(lam.T, pt.dot(ZtZ, lam)) + pt.eye(q)
        if integrate_beta:
            m = np.array([priors[name].mu for name in design.fixed_names])
            s = np.array([priors[name].sigma for name in design.fixed_names])
            top = pt.concatenate([M, pt.dot(lam.T, ZtX)], axis=1)
            bottom = pt.concatenate([pt.dot(ZtX.T, lam), XtX + sigma**2 * pt.diag(1.0 / s**2)], axis=1)
            Q = pt.concatenate([top, bottom], axis=0)
            rhs = pt.concatenate([pt.dot(lam.T, Zty), Xty + sigma**2 * m / s**2])
            chol = pt.linalg.cholesky(Q)
            c = pt.linalg.solve_triangular(chol, rhs, lower=True)
            r2 = yty + sigma**2 * np.sum(m**2 / s**2) - pt.dot(c, c)
            logp = (
                -0.5 * nobs * _LOG_2PI
                - 0.5 * (nobs - p) * pt.log(sigma**2)
                - np.sum(np.log(s))
                - pt.sum(pt.log(pt.diag(chol)))
                - r2 / (2.0 * sigma**2)
            )
        else:
            beta = vector_rv("beta", [priors[name] for name in design.fixed_names], dims="fixed")
            Ztr = Zty - pt.dot(ZtX, beta)
            rtr = yty - 2.0 * pt.dot(beta, Xty) + pt.dot(beta, pt.dot(XtX, beta))
            chol = pt.linalg.cholesky(M)
            c = pt.linalg.solve_triangular(chol, pt.dot(lam.T, Ztr), lower=True)
            logp = (
                -0.5 * nobs * _LOG_2PI
                - 0.5 * nobs * pt.log(sigma**2)
                - pt.sum(pt.log(pt.diag(chol)))
                - (rtr - pt.dot(c, c)) / (2.0 * sigma**2)
            )
        pm.Potential("collapsed_loglik", logp)
    return model, plan


def _templates(post: xr.Dataset, design: Design) -> list[np.ndarray]:
    """(draws, k, k) relative Cholesky factor of every block's covariance."""
    sigma = stack_chains(post, "sigma")
    return [
        stack_chains(post, f"sd[{block.factor}]")[:, :, None] * correlation_factors(post, block) / sigma[:, None, None]
        for block in design.blocks
    ]


def draw_effects(posterior: xr.Dataset, design: Design, plan: CollapsedPlan, priors: PriorSpec, seed=None, chunk: int = 250) -> xr.Dataset:
    """Exact draws of ``beta`` and ``r[F]`` given each posterior draw of the variances.

    Returns a Dataset with ``beta`` (unless it was sampled) and every ``r[F]``,
    dims (chain, draw, ...), to merge into the posterior.
    """
    rng = np.random.default_rng(seed)
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    S = chains * draws
    stats, q, p = plan.stats, design.q, design.p
    ZtZ = stats.ZtZ.toarray()
    sigma = stack_chains(posterior, "sigma")
    templates = _templates(posterior, design)
    if plan.integrate_beta:
        m = np.array([priors[name].mu for name in design.fixed_names])
        s2 = np.array([priors[name].sigma for name in design.fixed_names]) ** 2
    else:
        beta_draws = stack_chains(posterior, "beta")
    b_all = np.empty((S, q))
    beta_all = np.empty((S, p))
    block_of_row = np.searchsorted(design.offsets, plan.rows, side="right") - 1
    for start in range(0, S, chunk):
        idx = np.arange(start, min(start + chunk, S))
        lam = np.zeros((len(idx), q, q))
        for k, (free, e) in enumerate(zip(plan.layout.free, plan.entry)):
            free_rows, free_cols = zip(*free)
            entries = templates[k][idx][:, list(free_rows), list(free_cols)]  # (chunk, n_free)
            mask = block_of_row == k
            lam[:, plan.rows[mask], plan.cols[mask]] = entries[:, e]
        lt = np.transpose(lam, (0, 2, 1))
        M = lt @ ZtZ @ lam + np.eye(q)
        if plan.integrate_beta:
            Q = np.zeros((len(idx), q + p, q + p))
            Q[:, :q, :q] = M
            Q[:, :q, q:] = lt @ stats.ZtX
            Q[:, q:, :q] = np.transpose(Q[:, :q, q:], (0, 2, 1))
            Q[:, q:, q:] = stats.XtX + (sigma[idx] ** 2)[:, None, None] * np.diag(1.0 / s2)
            rhs = np.concatenate([lt @ stats.Zty, (stats.Xty + (sigma[idx] ** 2)[:, None] * m / s2)], axis=1)
        else:
            Q = M
            rhs = lt @ (stats.Zty[None, :] - beta_draws[idx] @ stats.ZtX.T)[:, :, None]
            rhs = rhs[:, :, 0]
        L = np.linalg.cholesky(Q)
        c = np.linalg.solve(L, rhs[:, :, None])[:, :, 0]
        noise = rng.standard_normal(c.shape) * sigma[idx][:, None]
        g = np.linalg.solve(np.transpose(L, (0, 2, 1)), (c + noise)[:, :, None])[:, :, 0]
        b_all[idx] = np.einsum("sij,sj->si", lam, g[:, :q])  # b = Lambda u, on the data scale
        if plan.integrate_beta:
            beta_all[idx] = g[:, q:]
    out = {}
    dims = ("chain", "draw")
    if plan.integrate_beta:
        out["beta"] = (dims + ("fixed",), beta_all.reshape(chains, draws, p))
    for block, start, stop in zip(design.blocks, design.offsets[:-1], design.offsets[1:]):
        r = b_all[:, start:stop].reshape(chains, draws, block.n_levels, block.n_cols)
        out[f"r[{block.factor}]"] = (dims + (block.factor, col_dim(block.factor)), r)
    coords = {"chain": posterior["chain"].values, "draw": posterior["draw"].values, "fixed": list(design.fixed_names)}
    for block in design.blocks:
        coords[block.factor] = list(block.levels)
        coords[col_dim(block.factor)] = list(block.columns)
    return xr.Dataset(out, coords=coords)
