"""The pooling spectrum: no pooling, complete pooling and partial pooling side by side.

* no pooling: each level's own least-squares estimate of its group effect,
  fitted to the *partial residual* -- the response minus the fixed part and
  the other grouping factors' estimated group effects -- on that factor's
  varying columns, plus the population value. With one grouping factor this is
  lme4's ``lmList`` (a separate least-squares fit per group); with crossed
  factors, or for a factor nested in another, a plain per-group fit would soak
  up the other factors' effects, which the partial residual removes. Factors
  nested *inside* the factor are left in: their levels split the level's own
  rows, so only the pooled model can tell them apart from the level's effect;
* complete pooling: one least-squares fit that ignores the groups;
* partial pooling: the mixed model, by lmer (``fit.coef()``) and by the
  Bayesian posterior (posterior means of fixed plus group effects).

The *pooling factor* of a factor's term (Gelman & Pardoe 2006, "Bayesian
measures of explained variance and pooling in multilevel models") is
``lambda = 1 - V_k(E(e_k)) / E(V_k(e_k))``, with ``e_k`` the group effect of
level ``k``, ``V_k`` the variance across levels and ``E`` the posterior mean:
0 when the levels keep their own estimates (no pooling), 1 when every level is
pulled to the population value (complete pooling). For a balanced random
intercept it is about ``(sigma^2/n) / (sigma^2/n + tau^2)``. See
:func:`pooling_factors` for the lmer analogue.

For crossed factors the combined coefficient of each combination of the first
two factors' levels is shown as well (intercept = I + I1 + I2, slope = S + S1
+ S2), for every combination, including those absent from the data: the
mixed model predicts them, no pooling (a least-squares fit within the
combination) cannot.

Models with a response family (a :func:`bayesmlm.glmer` fit, a posterior of
``bm.sample(..., family=...)``) are pooled on the link scale: no pooling is each
level's own maximum-likelihood GLM estimate with the fixed part and the other
factors' effects held as an offset, complete pooling one GLM of all rows, partial
pooling glmer's ``coef()`` and the posterior means (:mod:`bayesmlm.pooling_glm`; a
level its own rows cannot identify, e.g. all counts 0, is NaN with the reason in
the ``note`` column). The "lmer" approach and column then hold the glmer fit, and
its pooling factor uses the Laplace approximation's conditional variances. Examples:
:func:`pooling`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure

from .design import Design, build_design, crossed_pair
from .errors import DataError
from .families import Family

if TYPE_CHECKING:
    from .bayes.result import BayesFit
    from .freq.glmer_result import GlmerFit
    from .freq.result import FreqFit

__all__ = [
    "Pooling",
    "pooling",
    "no_pooling",
    "complete_pooling",
    "partial_residual",
    "conditional_variances",
    "pooling_factor",
    "pooling_factors",
    "posterior_effects",
    "pooling_from_fits",
    "APPROACHES",
]

APPROACHES = ("no pooling", "complete pooling", "partial pooling (lmer)", "partial pooling (Bayes)")
_COLOURS = dict(zip(APPROACHES, ("tab:orange", "tab:grey", "tab:blue", "tab:green")))

Effects = tuple[pd.Series, dict[str, pd.DataFrame]]
"""Fixed effects (by design-column name) and, per factor, group effects (levels x varying columns)."""

_RANK_TOL = 1e-10
"""Relative eigenvalue of a level's cross-product below which its least squares is not identified."""


def _ols(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients, or NaN when the rows cannot identify them all."""
    if X.shape[0] < X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]:
        return np.full(X.shape[1], np.nan)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def _group_ols(values: np.ndarray, response: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Least squares of ``response`` on ``values`` within each group: (groups, columns).

    Groups whose rows cannot identify every coefficient (too few rows, a
    column constant within the group) get NaN, as lmList does.
    """
    k = values.shape[1]
    xtx = np.zeros((n_groups, k, k))
    np.add.at(xtx, codes, values[:, :, None] * values[:, None, :])
    xty = np.zeros((n_groups, k))
    np.add.at(xty, codes, values * response[:, None])
    eig = np.linalg.eigvalsh(xtx)
    ok = eig[:, 0] > _RANK_TOL * np.maximum(eig[:, -1], np.finfo(float).tiny)
    out = np.full((n_groups, k), np.nan)
    if ok.any():
        out[ok] = np.linalg.solve(xtx[ok], xty[ok][:, :, None])[:, :, 0]
    return out


def complete_pooling(design: Design) -> pd.Series:
    """One least-squares fit of the fixed-effects formula, groups ignored."""
    design.require_rows("complete pooling")
    return pd.Series(_ols(design.X, design.y), index=design.fixed_names)


def _block_effects(block, ranef: dict[str, pd.DataFrame]) -> np.ndarray:
    """A factor's estimated group effects as (levels, columns) in model order."""
    return ranef[block.factor].loc[block.levels, list(block.columns)].to_numpy(dtype=float)


def _nested(inner, outer) -> bool:
    """True when every level of block ``inner`` lies within a single level of block ``outer``."""
    pairs = pd.DataFrame({"inner": inner.codes, "outer": outer.codes}).drop_duplicates()
    return bool(pairs["inner"].is_unique)


def partial_residual(design: Design, factor: str, effects: Effects) -> np.ndarray:
    """The response minus the fixed part and the group effects of the other factors not nested in ``factor``.

    A factor nested inside ``factor`` (``cask:batch`` inside ``batch``) splits
    each level's own rows, so its effects stay in: removing them would hand
    part of the level's own deviation to the pooled inner effects.

    Parameters
    ----------
    design : Design
    factor : str
        The grouping factor whose effects are left in.
    effects : (pandas.Series, dict of str -> pandas.DataFrame)
        Fixed effects and group effects per factor, e.g. ``(fit.fixef(), fit.ranef())``.

    Examples
    --------
    With one grouping factor it is the response minus the fixed part:

    >>> import bayesmlm as bm
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> r = partial_residual(fit.design, "Subject", (fit.fixef(), fit.ranef()))
    >>> bool(np.allclose(r, fit.design.y - fit.design.X @ fit.fixef().to_numpy()))
    True
    """
    design.require_rows("the partial residuals")
    fixed, ranef = effects
    own = design.block(factor)
    out = design.y - design.X @ fixed[design.fixed_names].to_numpy(dtype=float)
    for block in design.blocks:
        if block.factor != factor and not _nested(block, own):
            out = out - np.einsum("nk,nk->n", block.values, _block_effects(block, ranef)[block.codes])
    return out


def no_pooling(design: Design, factor: str, effects: Effects) -> pd.DataFrame:
    """Each level's own estimate: population value plus least squares of the partial residual.

    The partial residual (:func:`partial_residual`) of ``factor`` is regressed
    on the factor's varying columns within each level; the coefficients are
    that level's unpooled group effects, added to the fixed effects. Fixed
    columns that do not vary by ``factor`` keep the population value.

    Parameters
    ----------
    design : Design
    factor : str
    effects : (pandas.Series, dict of str -> pandas.DataFrame)
        Fixed and group effects that define the partial residual, e.g.
        ``(fit.fixef(), fit.ranef())`` or posterior means.

    Returns
    -------
    pandas.DataFrame
        levels x coefficients (the fixed-effect columns, then varying columns
        without a fixed effect). A level whose rows cannot identify its
        coefficients (too few rows, a column constant within it) is all NaN.

    Examples
    --------
    With one factor it equals a least-squares fit per subject (lmList):

    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)
    >>> no_pooling(fit.design, "Subject", (fit.fixef(), fit.ranef())).loc["308"].round(2).tolist()
    [244.19, 21.76]
    """
    block = design.block(factor)
    own = _group_ols(block.values, partial_residual(design, factor, effects), block.codes, block.n_levels)
    return _level_coefficients(design, block, effects[0], own)


def _level_coefficients(design: Design, block, fixed: pd.Series, own: np.ndarray) -> pd.DataFrame:
    """Each level's coefficients: the fixed effects plus its own estimates ``own`` (levels x the block's
    varying columns; a level with any NaN is NaN throughout)."""
    columns = design.fixed_names + [c for c in block.columns if c not in design.fixed_names]
    table = pd.DataFrame(0.0, index=pd.Index(block.levels), columns=columns)
    table[design.fixed_names] = fixed[design.fixed_names].to_numpy(dtype=float)
    for j, column in enumerate(block.columns):
        table[column] = table[column].to_numpy() + own[:, j]
    table.loc[np.isnan(own).any(axis=1)] = np.nan
    return table


def posterior_effects(post) -> Effects:
    """Posterior means of the fixed and group effects, shaped like ``(fit.fixef(), fit.ranef())``.

    Examples
    --------
    With ``post`` from the example of :func:`bayesmlm.sample`:

    >>> fixed, ranef = posterior_effects(post)
    >>> fixed.index.tolist(), ranef["Subject"].shape
    (['Intercept', 'Days'], (18, 2))
    """
    ranef = {factor: table["mean"].unstack("term") for factor, table in post.ranef().items()}
    return post.fixef()["mean"], ranef


# -- pooling factors -----------------------------------------------------------------------
def _level_blocks(matrix: sp.spmatrix, n_levels: int, n_cols: int) -> np.ndarray:
    """The (levels, cols, cols) diagonal blocks of a level-major block-diagonal sparse matrix."""
    coo = matrix.tocoo()
    out = np.zeros((n_levels, n_cols, n_cols))
    np.add.at(out, (coo.row // n_cols, coo.row % n_cols, coo.col % n_cols), coo.data)
    return out


def _inverse_diagonal_blocks(M: sp.spmatrix, first: tuple[int, int], rest: list[tuple[int, int]]) -> list[np.ndarray]:
    """Per-level diagonal blocks of ``M^-1``, exploiting the block-diagonal first factor.

    ``M = [[A, B], [B', D]]`` with ``A`` block diagonal (the first factor's
    levels do not overlap); with ``S = D - B' A^-1 B`` the diagonal blocks are
    ``A^-1 + A^-1 B S^-1 B' A^-1`` for the first factor and those of ``S^-1``
    for the others, so only ``S`` (as large as the PLS engine's own dense part)
    is inverted densely.
    """
    k1, c1 = first
    q1 = k1 * c1
    a_inv = np.linalg.inv(_level_blocks(M[:q1, :q1], k1, c1))
    if not rest:
        return [a_inv]
    B = M[:q1, q1:].toarray()
    W = np.einsum("kij,kjm->kim", a_inv, B.reshape(k1, c1, -1))
    S_inv = np.linalg.inv(M[q1:, q1:].toarray() - B.T @ W.reshape(q1, -1))
    T = (W.reshape(q1, -1) @ S_inv).reshape(k1, c1, -1)
    out, start = [a_inv + np.einsum("kim,kjm->kij", T, W)], 0
    for k, c in rest:
        idx = start + np.arange(k * c).reshape(k, c)
        out.append(S_inv[idx[:, :, None], idx[:, None, :]])
        start += k * c
    return out


def _is_glmer(fit) -> bool:
    from .pooling_glm import _is_glmer as is_glmer

    return is_glmer(fit)


def _relative_system(fit) -> tuple[sp.csc_matrix, list[np.ndarray]]:
    """``M = Lambda' Z'WZ Lambda + I`` and each block's relative factor ``L`` (``Lambda = blockdiag(I (x) L)``).

    ``W`` is the identity for lmer and the IRLS weights at the conditional modes for
    glmer (the Laplace approximation's curvature; glmer's covariances are relative already).
    """
    from .freq.estimates import relative_factor

    design = fit.design
    if _is_glmer(fit):
        factors = [relative_factor(cov) for cov in fit.estimates.covariances]
        ZtWZ = design.Z.T @ sp.diags(fit.working_weights()) @ design.Z
    else:
        factors = [relative_factor(cov / fit.sigma**2) for cov in fit.estimates.covariances]
        ZtWZ = design.sufficient_stats().ZtZ
    Lam = sp.block_diag([sp.kron(sp.identity(b.n_levels), L) for b, L in zip(design.blocks, factors)], format="csc")
    return (Lam.T @ ZtWZ @ Lam + sp.identity(design.q)).tocsc(), factors


def conditional_variances(fit) -> dict[str, np.ndarray]:
    """Conditional covariance of each level's group effects given the data, as lme4's ``condVar``.

    ``Var(b | y) = sigma^2 Lambda (Lambda' Z'Z Lambda + I)^-1 Lambda'`` at the
    estimated variance components, with the fixed effects held at their
    estimates (as lme4 does); only the per-level diagonal blocks are formed.
    For a glmer fit ``Z'Z`` becomes ``Z'WZ`` with ``W`` the IRLS weights at the
    conditional modes: the inverse curvature of the penalised deviance there
    (the Laplace approximation), and ``sigma`` is lme4's ``sigma()`` (1 for the
    binomial, Poisson and negative binomial).

    Parameters
    ----------
    fit : FreqFit or GlmerFit

    Returns
    -------
    dict of str -> ndarray (levels, columns, columns)

    Examples
    --------
    A balanced random intercept: ``tau^2 sigma^2 / (n tau^2 + sigma^2)`` with n = 5 rows per batch.

    >>> import bayesmlm as bm
    >>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
    >>> tau2, s2 = fit.varcorr().vcov[0], fit.sigma**2
    >>> bool(np.allclose(conditional_variances(fit)["Batch"][:, 0, 0], tau2 * s2 / (5 * tau2 + s2)))
    True

    A Poisson random intercept (log link, ``W = mu``): ``tau^2 / (1 + tau^2 sum_i mu_i)`` over each brood's rows.

    >>> ticks = bm.datasets.load("grouseticks")
    >>> g = bm.glmer("TICKS ~ YEAR + (1 | BROOD)", ticks, family="poisson")
    >>> mu_sum = pd.Series(g.fitted()).groupby(ticks.BROOD.to_numpy()).sum()[g.ranef()["BROOD"].index]
    >>> tau2 = g.varcorr().vcov[0]
    >>> bool(np.allclose(conditional_variances(g)["BROOD"][:, 0, 0], tau2 / (1 + tau2 * mu_sum)))
    True
    """
    design = fit.design
    M, factors = _relative_system(fit)
    sizes = [(b.n_levels, b.n_cols) for b in design.blocks]
    inverse = _inverse_diagonal_blocks(M, sizes[0], sizes[1:])
    return {b.factor: fit.sigma**2 * np.einsum("ij,kjl,ml->kim", L, m, L) for b, L, m in zip(design.blocks, factors, inverse)}


def _level_sum_variances(fit) -> dict[str, np.ndarray]:
    """``Var(sum_k b_kj | y)`` for each factor's varying column ``j``: the between-level covariances summed."""
    from scipy.sparse.linalg import splu

    design = fit.design
    M, factors = _relative_system(fit)
    # Lambda' times the indicator of column j over all levels of a factor: row j of L at every level
    V = np.zeros((design.q, sum(b.n_cols for b in design.blocks)))
    col = 0
    for b, L, start in zip(design.blocks, factors, design.offsets):
        for j in range(b.n_cols):
            V[start : start + b.n_effects, col] = np.tile(L[j], b.n_levels)
            col += 1
    sums = fit.sigma**2 * np.einsum("qc,qc->c", V, splu(M).solve(V))
    out, col = {}, 0
    for b in design.blocks:
        out[b.factor], col = sums[col : col + b.n_cols], col + b.n_cols
    return out


def pooling_factor(effects: np.ndarray) -> np.ndarray:
    """Gelman & Pardoe's pooling factor ``1 - V_k(E(e_k)) / E(V_k(e_k))`` from draws of group effects.

    Parameters
    ----------
    effects : ndarray (draws, levels, columns)
        Posterior draws of one factor's group effects.

    Returns
    -------
    ndarray (columns,)
        0 = no pooling (the levels keep their own estimates), 1 = complete pooling.

    Examples
    --------
    Draws that scatter each level's effect around well-separated means pool
    little; draws that are pure noise around 0 pool completely:

    >>> rng = np.random.default_rng(0)
    >>> means = np.linspace(-3, 3, 20)[None, :, None]
    >>> float(pooling_factor(means + 0.1 * rng.normal(size=(4000, 20, 1)))[0]) < 0.01
    True
    >>> float(pooling_factor(rng.normal(size=(4000, 20, 1)))[0]) > 0.99
    True
    """
    between = np.var(effects.mean(axis=0), axis=0, ddof=1)
    expected = np.var(effects, axis=1, ddof=1).mean(axis=0)
    return 1.0 - between / expected


def _lmer_pooling_factor(blups: np.ndarray, cond_var: np.ndarray, sum_var: np.ndarray) -> np.ndarray:
    """G&P's formula with ``N(BLUP, condVar)`` (between-level covariances included) as the posterior.

    For effects ``e ~ N(b, C)`` over K levels, ``E(V_k(e)) = V_k(b) + (tr C - 1'C1 / K) / (K - 1)``.
    """
    k = blups.shape[0]
    within = (np.diagonal(cond_var, axis1=1, axis2=2).sum(axis=0) - sum_var / k) / (k - 1)
    between = np.var(blups, axis=0, ddof=1)
    total = between + within
    # a component estimated at 0 (singular fit) has every BLUP at 0: complete pooling
    return np.where(total > 0, within / np.where(total > 0, total, 1.0), 1.0)


def pooling_factors(fit=None, post=None) -> pd.DataFrame:
    """Pooling factor of every factor's varying column, by lmer and by the posterior.

    Bayesian: :func:`pooling_factor` of the posterior draws of the group
    effects. lmer: the same formula with the conditional distribution of the
    effects given the data, ``N(BLUP, C)`` (lme4's ``condVar``,
    :func:`conditional_variances`, with the covariances between levels) in
    place of the posterior: ``E(V_k(e)) = V_k(BLUP) + (tr C - 1'C1 / K) / (K - 1)``
    for K levels. It holds the variance components and fixed effects at their
    estimates, so with few levels (uncertain SDs) it can differ from the
    posterior's. A component estimated at 0 pools completely (1).

    For a model with a response family the effects are on the link scale: the
    ``lmer`` column takes a glmer fit's conditional modes and the Laplace
    approximation's conditional covariance (:func:`conditional_variances`), and
    the posterior's factor is the same draws-based formula.

    Parameters
    ----------
    fit : FreqFit or GlmerFit, optional
    post : BayesFit, optional
        At least one of the two.

    Returns
    -------
    pandas.DataFrame
        Index ``(factor, term)``; columns ``levels`` and ``lmer`` and/or ``Bayes``.

    Raises
    ------
    DataError
        When ``fit`` and ``post`` were fitted to different data (for a family, also
        different trials, weights or offsets).
    TypeError, ValueError
        An lmer fit with a family posterior (or a glmer fit with a gaussian one), or
        different families.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> pooling_factors(fit).round(2)
                       levels  lmer
    factor  term                   
    Subject Intercept      18  0.24
            Days           18  0.15
    """
    if fit is None and post is None:
        raise ValueError("pooling_factors needs an lmer fit, a posterior, or both")
    if fit is not None and post is not None:
        from .pooling_glm import require_same_fits

        require_same_fits(fit, post, "pooling_factors")
    design = fit.design if fit is not None else post.design
    columns = {}
    if fit is not None:
        cond, sums, blups = conditional_variances(fit), _level_sum_variances(fit), fit.ranef()
        columns["lmer"] = np.concatenate(
            [_lmer_pooling_factor(_block_effects(b, blups), cond[b.factor], sums[b.factor]) for b in design.blocks]
        )
    if post is not None:
        from .bayes.draws import stack_chains

        posterior = post.idata["posterior"].dataset
        columns["Bayes"] = np.concatenate([pooling_factor(stack_chains(posterior, f"r[{b.factor}]")) for b in post.design.blocks])
    index = pd.MultiIndex.from_tuples([(b.factor, c) for b in design.blocks for c in b.columns], names=["factor", "term"])
    levels = [b.n_levels for b in design.blocks for _ in b.columns]
    return pd.DataFrame({"levels": levels, **columns}, index=index)


_GAUSSIAN_NOTE = "not identified: too few rows, or a varying column constant within the level"


def _long(table: pd.DataFrame, approach: str, factor: str, counts: pd.Series, notes: dict | None = None,
          scale: str = "response scale") -> pd.DataFrame:
    out = table.rename_axis("level").reset_index().melt(id_vars="level", var_name="term", value_name="estimate")
    out["level"] = out["level"].astype(str)
    out.insert(0, "factor", factor)
    out.insert(0, "approach", approach)
    out["n"] = out["level"].map(counts).fillna(0).astype(int)
    out["scale"] = scale
    notes = {str(k): v for k, v in (notes or {}).items()}
    out["note"] = [notes.get(level, "") for level in out["level"]]
    return out


@dataclass
class Pooling:
    """Per-group coefficients by approach.

    Attributes
    ----------
    table : pandas.DataFrame
        Tidy: ``approach, factor, level, term, estimate, n, scale, note`` (``n`` =
        rows of that group, 0 for crossed combinations absent from the data;
        ``scale`` the scale of the estimates, e.g. ``"log scale"``; ``note`` why an
        estimate is NaN, '' otherwise).
    design : Design
    factors : pandas.DataFrame
        Pooling factor per factor and varying column (:func:`pooling_factors`).
    scale : str
        ``"response scale"`` for a gaussian model, else the link's (``"logit scale"``).
    family : Family or None
        The response family (None: gaussian).
    messages : tuple of str
        Problems of the fits behind the whole table, e.g. glmer's complete separation
        (its partial-pooling estimates along the separated fixed effects are then meaningless).

    Examples
    --------
    See :func:`pooling`.

    >>> import bayesmlm as bm
    >>> pool = bm.pooling("Reaction ~ Days + (1 | Subject)", bm.datasets.load("sleepstudy"), bayes=False)
    >>> pool.coefficients("Subject", "no pooling").shape
    (18, 2)
    """

    table: pd.DataFrame
    design: Design
    factors: pd.DataFrame
    scale: str = "response scale"
    family: object = None
    messages: tuple[str, ...] = ()

    def notes(self) -> pd.DataFrame:
        """Estimates left out (NaN) and why: one row per approach, factor and level.

        Problems of a whole fit (:attr:`messages`, e.g. glmer's separation) come first, with
        factor and level ``"(all)"``.

        Examples
        --------
        >>> import bayesmlm as bm
        >>> ticks = bm.datasets.load("grouseticks")
        >>> pool = bm.pooling("TICKS ~ YEAR + (1 | BROOD)", ticks, family="poisson", bayes=False)
        >>> pool.notes().query("approach == 'no pooling'").shape[0]  # broods without a single tick
        22
        """
        part = self.table.loc[self.table["note"] != "", ["approach", "factor", "level", "note"]].drop_duplicates()
        if self.messages:
            whole = pd.DataFrame({"approach": "partial pooling (lmer)", "factor": "(all)", "level": "(all)",
                                  "note": list(self.messages)})
            part = pd.concat([whole, part])
        return part.reset_index(drop=True)

    def coefficients(self, factor: str, approach: str) -> pd.DataFrame:
        """levels x terms for one factor (or combination ``"A:B"``) and approach."""
        part = self.table[(self.table.factor == factor) & (self.table.approach == approach)]
        if part.empty:
            raise KeyError(f"no rows for factor {factor!r} and approach {approach!r}")
        return part.pivot(index="level", columns="term", values="estimate").loc[lambda t: t.index.unique()]

    def _predictor(self) -> str:
        names = [n for n in self.design.fixed_names if n != "Intercept"]
        if len(names) != 1 or "Intercept" not in self.design.fixed_names:
            raise DataError(
                f"the pooling figure draws one line per approach against one numeric predictor; this model's "
                f"fixed effects are {self.design.fixed_names}: use the table instead"
            )
        return names[0]

    def plot(self, factor: str | None = None, max_panels: int = 100, columns: int = 10) -> Figure:
        """One panel per group (or per crossed combination): its points and one line per approach.

        Parameters
        ----------
        factor : str, optional
            A grouping factor, or ``"A:B"`` for crossed combinations. Default:
            the combinations when there are crossed factors, else the first factor.

        For a model with a response family the figure has one panel per
        coefficient instead: each level's estimate by approach on the link scale
        (:func:`bayesmlm.pooling_glm.plot_family_pooling`).
        """
        factors = list(dict.fromkeys(self.table.factor))
        factor = factor or factors[-1]
        if factor not in factors:
            raise KeyError(f"no factor {factor!r}; choose one of {factors}")
        if self.family is not None:
            from .pooling_glm import plot_family_pooling

            return plot_family_pooling(self, factor, max_levels=max_panels)
        x_name = self._predictor()
        data = self.design.data
        x = np.asarray(data[x_name], dtype=float) if x_name in data else self.design.X[:, self.design.fixed_names.index(x_name)]
        keys = _row_keys(data, factor)
        levels = list(dict.fromkeys(self.table.loc[self.table.factor == factor, "level"]))[:max_panels]
        n_rows = int(np.ceil(len(levels) / columns))
        fig = Figure(figsize=(1.9 * min(columns, len(levels)), 1.7 * n_rows + 0.6), layout="constrained")
        axes = fig.subplots(n_rows, min(columns, len(levels)), sharex=True, sharey=True, squeeze=False).ravel()
        grid = np.linspace(np.nanmin(x), np.nanmax(x), 20)
        approaches = [a for a in APPROACHES if a in set(self.table.approach)]
        tables = {a: self.coefficients(factor, a) for a in approaches}
        for ax, level in zip(axes, levels):
            mask = keys == level
            ax.plot(x[mask], self.design.y[mask], ".", color="black", markersize=2.5, alpha=0.6)
            for a in approaches:
                coef = tables[a].loc[level]
                if np.isfinite(coef.get("Intercept", np.nan)) and np.isfinite(coef.get(x_name, np.nan)):
                    ax.plot(grid, coef["Intercept"] + coef[x_name] * grid, color=_COLOURS[a], lw=1.2, label=a)
            ax.set_title(level if mask.any() else f"{level} (no data)", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in axes[len(levels) :]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(approaches), fontsize=8)
        fig.supxlabel(x_name, fontsize=9)
        fig.supylabel(self.design.formula.response.strip(), fontsize=9)
        return fig


def _row_keys(data: pd.DataFrame, factor: str) -> np.ndarray:
    from .newdata import level_keys

    return level_keys(data, factor).astype(str)


def _group_estimates(design: Design, rows, values: np.ndarray, codes: np.ndarray,
                     n: int) -> tuple[np.ndarray, list[str]]:
    """Per-group fits of the response on ``values`` (offset: the model's own): least squares or the family's GLM."""
    if rows is None:
        est = _group_ols(values, design.y, codes, n)
        return est, [_GAUSSIAN_NOTE if np.isnan(e).any() else "" for e in est]
    from .pooling_glm import group_glm

    return group_glm(values, rows, rows.offset, codes, n, list(design.fixed_names))


def _unpooled(design: Design, rows, factor: str, effects: Effects) -> tuple[pd.DataFrame, dict]:
    """No pooling of one factor and the reasons for its NaN levels."""
    if rows is None:
        table = no_pooling(design, factor, effects)
        return table, {level: _GAUSSIAN_NOTE for level in table.index[table.isna().all(axis=1)]}
    from .pooling_glm import glm_no_pooling

    table = glm_no_pooling(design, rows, factor, effects)
    return table, table.attrs["notes"]


def _complete(design: Design, rows) -> tuple[pd.Series, str]:
    """Complete pooling and, when it is NaN, why."""
    if rows is None:
        pooled = complete_pooling(design)
        return pooled, _GAUSSIAN_NOTE if pooled.isna().any() else ""
    from .pooling_glm import glm_complete_pooling

    pooled = glm_complete_pooling(design, rows)
    return pooled, pooled.attrs["note"]


def _crossed_rows(design: Design, pair, fit, post, lmer_coef, bayes_coef, rows=None,
                  scale: str = "response scale") -> list[pd.DataFrame]:
    """Combined coefficients for every combination of the crossed pair's levels."""
    a, b = pair
    name = f"{a.factor}:{b.factor}"
    combos = [f"{la}:{lb}" for la, lb in itertools.product(a.levels, b.levels)]
    keys = np.char.add(np.char.add(np.asarray(a.levels, dtype=str)[a.codes], ":"), np.asarray(b.levels, dtype=str)[b.codes])
    counts = pd.Series(keys).value_counts()
    code = pd.Index(combos).get_indexer(keys)
    est, reasons = _group_estimates(design, rows, design.X, code, len(combos))
    pooled, pooled_note = _complete(design, rows)
    out = [
        _long(pd.DataFrame(est, index=combos, columns=design.fixed_names), "no pooling", name, counts,
              {c: r for c, r in zip(combos, reasons) if r}, scale),
        _long(pd.DataFrame([pooled] * len(combos), index=combos), "complete pooling", name, counts,
              dict.fromkeys(combos, pooled_note) if pooled_note else None, scale),
    ]

    def combined(coef: dict[str, pd.DataFrame], fixed: pd.Series) -> pd.DataFrame:
        ta, tb = coef[a.factor], coef[b.factor]
        rows = [ta.loc[la] + tb.loc[lb] - fixed for la, lb in itertools.product(a.levels, b.levels)]
        return pd.DataFrame(rows, index=combos)

    out.append(_long(combined(lmer_coef, fit.fixef()), "partial pooling (lmer)", name, counts, scale=scale))
    if bayes_coef is not None:
        out.append(_long(combined(bayes_coef, post.fixef()["mean"]), "partial pooling (Bayes)", name, counts,
                         scale=scale))
    return out


def _bayes_means(post) -> dict[str, pd.DataFrame]:
    """Posterior-mean coefficients per factor: levels x fixed-effect columns, model order."""
    out, coef = {}, post.coef()
    for block in post.design.blocks:
        means = coef[block.factor]["mean"].unstack("term")
        out[block.factor] = means.loc[block.levels, post.design.fixed_names]
    return out


def pooling(
    formula: str,
    data: pd.DataFrame,
    *,
    fit=None,
    post=None,
    bayes: bool = True,
    sample_kwargs: dict | None = None,
    family: str | Family | None = None,
    link: str | None = None,
    trials: str | np.ndarray | None = None,
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
) -> Pooling:
    """No pooling, complete pooling and partial pooling (lmer and Bayesian) per group, and pooling factors.

    No pooling per factor uses the lmer estimates of the fixed part and of the
    other factors' effects for the partial residual (module docstring). For a
    model with a response family everything is on the link scale, lmer is
    glmer, and no pooling is each level's maximum-likelihood GLM with those
    estimates as an offset (:mod:`bayesmlm.pooling_glm`).

    Parameters
    ----------
    formula : str
        lme4 formula.
    data : pandas.DataFrame
    fit : FreqFit or GlmerFit, optional
        lmer (glmer, for a family) fit to reuse (else fitted here).
    post : BayesFit, optional
        Posterior to reuse. Without one, ``bayes=True`` samples with
        ``bm.sample(formula, data, **sample_kwargs)`` (with the family and its arguments).
    bayes : bool
        Include Bayesian partial pooling.
    sample_kwargs : dict, optional
        Passed to :func:`bayesmlm.sample` (draws, chains, seed, priors...).
    family : str or Family, optional
        A response family (``"poisson"``, ``"bernoulli"``, ``"binomial"``, ``"negbinomial"``,
        ``"gamma"``); taken from ``fit`` or ``post`` when they have one.
    link, trials, weights, offset : optional
        As for :func:`bayesmlm.sample` (``trials``: binomial trials, the response then
        being the successes).

    Returns
    -------
    Pooling
        ``.table`` (tidy), ``.factors`` (pooling factors), ``.notes()`` (estimates
        left out, and why) and ``.plot()`` (faceted figure).

    Raises
    ------
    DataError
        When ``fit`` or ``post`` was fitted to other data than ``data`` (row
        count, response values, fixed-effects columns or grouping levels differ;
        the message says which and how).
    TypeError, ValueError
        An lmer fit for a family model, fits of different families, or a family
        glmer does not fit (``student``, ``lognormal``, gaussian with weights).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> pool = pooling("Reaction ~ Days + (Days | Subject)", df, bayes=False)  # bayes=True samples too
    >>> sorted(pool.table["approach"].unique())
    ['complete pooling', 'no pooling', 'partial pooling (lmer)']
    >>> pool.table.query("level == '308' and term == 'Days'").estimate.round(2).tolist()
    [21.76, 10.47, 19.67]
    >>> pool.factors["lmer"].round(2).tolist()  # 0 = no pooling, 1 = complete pooling
    [0.24, 0.15]

    A binomial model, on the logit scale (herd 1's own log-odds against glmer's and the pooled ones):

    >>> cbpp = bm.datasets.load("cbpp")
    >>> herds = pooling("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial",
    ...                 bayes=False)
    >>> herds.scale, herds.table.query("level == '1' and term == 'Intercept'").estimate.round(2).tolist()
    ('logit scale', [-0.58, -1.27, -0.81])
    """
    from .bayes.sample import sample
    from .freq.lmer import lmer
    from .pooling_glm import _family_fits, _model_family
    from .priors.rules import require_same_data

    chosen = _model_family(fit, post, family, link, trials, weights, offset, sample_kwargs)
    if chosen is not None:
        fit, post = _family_fits(formula, data, chosen, fit=fit, post=post, bayes=bayes, sample_kwargs=sample_kwargs,
                                link=link, trials=trials, weights=weights, offset=offset)
        return pooling_from_fits(fit, post)
    if fit is None:
        fit = lmer(formula, data)
    else:
        require_same_data({"data": build_design(formula, data, na_action="drop"), "fit": fit.design}, "pooling")
    if post is None and bayes:
        post = sample(formula, data, freq=fit, **(sample_kwargs or {}))
    return pooling_from_fits(fit, post)


def pooling_from_fits(fit: FreqFit | GlmerFit, post: BayesFit | None = None) -> Pooling:
    """:func:`pooling` of fits already made: an lmer or glmer fit and, optionally, a posterior of the same model.

    Parameters
    ----------
    fit : FreqFit or GlmerFit
    post : BayesFit, optional
        Of the same model and data (for a glmer fit: of the same family).

    Returns
    -------
    Pooling

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.glmer("TICKS ~ YEAR + (1 | BROOD)", bm.datasets.load("grouseticks"), family="poisson")
    >>> pool = pooling_from_fits(fit)
    >>> pool.scale, pool.factors.columns.tolist()
    ('log scale', ['levels', 'lmer'])
    """
    from .pooling_glm import glm_rows, link_scale, require_same_fits

    if post is not None:
        require_same_fits(fit, post, "pooling")
    design = fit.design
    effects = (fit.fixef(), fit.ranef())
    rows, family = (glm_rows(fit), fit.family) if _is_glmer(fit) else (None, None)
    scale = link_scale(family)
    lmer_coef = fit.coef()
    bayes_coef = _bayes_means(post) if post is not None else None
    pooled, pooled_note = _complete(design, rows)
    parts = []
    for block in design.blocks:
        counts = pd.Series(block.codes).value_counts().rename(index=dict(enumerate(block.levels)))
        unpooled, notes = _unpooled(design, rows, block.factor, effects)
        parts.append(_long(unpooled, "no pooling", block.factor, counts, notes, scale))
        same = pd.DataFrame([pooled] * block.n_levels, index=block.levels)
        parts.append(_long(same, "complete pooling", block.factor, counts,
                           dict.fromkeys(block.levels, pooled_note) if pooled_note else None, scale))
        parts.append(_long(lmer_coef[block.factor], "partial pooling (lmer)", block.factor, counts, scale=scale))
        if bayes_coef is not None:
            parts.append(_long(bayes_coef[block.factor], "partial pooling (Bayes)", block.factor, counts, scale=scale))
    pair = crossed_pair(design)
    if pair is not None:
        parts += _crossed_rows(design, pair, fit, post, lmer_coef, bayes_coef, rows, scale)
    messages = (f"glmer: {fit.separation_message()}",) if family is not None and fit.separation else ()
    return Pooling(pd.concat(parts, ignore_index=True), design, pooling_factors(fit, post), scale, family, messages)
