"""No pooling and complete pooling for models with a response family, on the link scale.

The gaussian no-pooling estimate (:mod:`bayesmlm.pooling`) is each level's
least-squares fit to the partial residual. Its GLM form, used here, is each
level's own *maximum-likelihood GLM* estimate of the factor's varying columns,
with everything else held as an offset::

    eta_i = offset_i + x_i' beta + (other factors' effects)_i + v_i' c_j      (row i in level j)

where ``offset_i`` is the model's own offset, ``beta`` and the other factors'
effects are the mixed model's estimates (glmer's, or posterior means), and only
``c_j`` is fitted, from level ``j``'s rows alone. Factors nested inside the factor
stay out of the offset, as in the gaussian case (they split the level's own
rows). The level's no-pooling coefficient is ``beta + c_j``, on the link scale.
With a single random intercept and no covariates this is the link of the
level's own mean: ``log(mean_j y)`` for a Poisson count, ``logit`` of the
level's share of successes for the binomial.

Fitting is R's ``glm.fit`` IRLS, run for all levels at once, with the family's
link, variance, starting values and deviance (:mod:`bayesmlm.families`), and step
halving when a step makes the deviance non-finite or larger. The Gamma's
dispersion does not change the estimates; the negative binomial's ``phi`` is held
at glmer's estimate.

A level's own rows do not always identify its estimate; it is then NaN, with the
reason in words (never a huge number from a run-away IRLS):

* fewer rows than varying columns, or varying columns constant or collinear within the level;
* binomial: complete or quasi-complete separation (Konis's linear program,
  :func:`bayesmlm.freq.glmer_result.find_separation`, run for every level, also
  with a single varying column such as a slope-only ``(0 + x | g)``); when the
  varying columns span a constant (an intercept), its commonest forms are named:
  no successes (all 0) or only successes (all 1), the estimate then being minus or
  plus infinity on the logit scale. Without a constant, all 0 is not enough: with
  ``x`` of both signs a slope-only level has a finite estimate;
* Poisson and negative binomial: the zero counts separated from the positive ones
  (Haberman's condition: a direction ``d`` with ``v'd = 0`` on the positive counts
  and ``v'd <= 0`` on the zeros, found by the same kind of linear program, for every
  level); with a constant among the varying columns, all counts 0 is named as such
  (a rate of 0: minus infinity on the log scale);
* IRLS did not converge.

Complete pooling is the same IRLS on all rows, groups ignored, with the model's
offset, weights and trials.

Examples
--------
A Poisson random intercept: each brood's no-pooling coefficient is the log of
its mean tick count; the 22 broods without a single tick have none.

>>> import bayesmlm as bm, numpy as np
>>> ticks = bm.datasets.load("grouseticks")
>>> fit = bm.glmer("TICKS ~ 1 + (1 | BROOD)", ticks, family="poisson")
>>> table = glm_no_pooling(fit.design, glm_rows(fit), "BROOD", (fit.fixef(), fit.ranef()))
>>> mean = ticks.groupby("BROOD").TICKS.mean()
>>> seen = mean > 0
>>> bool(np.allclose(table.loc[mean.index[seen], "Intercept"], np.log(mean[seen])))
True
>>> int(table["Intercept"].isna().sum()), table.attrs["notes"]["501"]
(22, 'all counts are 0: the maximum-likelihood mean is 0, minus infinity on the log scale')
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize

from .design import Design
from .errors import DataError
from .families import Binomial, Family, NegativeBinomial, Poisson

if TYPE_CHECKING:
    from .bayes.result import BayesFit
    from .freq.glmer_result import GlmerFit
    from .freq.result import FreqFit

__all__ = ["GlmRows", "glm_rows", "link_scale", "group_glm", "partial_offset", "glm_no_pooling",
           "glm_complete_pooling", "require_same_glm_rows", "require_same_fits", "POOLING_FAMILIES"]

POOLING_FAMILIES = ("binomial", "poisson", "Gamma", "negative_binomial")
"""Families with no-pooling estimates: those :func:`bayesmlm.glmer` fits (its fit supplies the offsets)."""

MAX_ITER = 100
"""IRLS iterations before a level is reported as not converged."""
_TOL = 1e-10
"""Relative change of a level's deviance at which IRLS stops (R's glm.fit uses 1e-8)."""
_INFINITE_LINKS = ("logit", "probit", "cloglog", "log")


@dataclass(frozen=True)
class GlmRows:
    """What a GLM needs on the model rows besides the design.

    Attributes
    ----------
    y : ndarray
        The response as glm's: a proportion of successes for the binomial.
    weights : ndarray
        Prior weights: for the binomial, the trials (times any weights).
    offset : ndarray
    family : Family
    """

    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    family: Family


def glm_rows(source, family: Family | None = None) -> GlmRows:
    """The :class:`GlmRows` of a glmer fit or of a family design (``post.design``).

    Parameters
    ----------
    source : GlmerFit or Design
    family : Family, optional
        Overrides the source's family (e.g. a negative binomial with glmer's ``phi``).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"))
    >>> rows = glm_rows(fit)
    >>> rows.weights[:3].tolist(), round(float(rows.y[0]), 4), rows.family.name
    ([14.0, 12.0, 9.0], 0.1429, 'binomial')
    """
    glm = getattr(source, "glm", None)
    if glm is not None:  # a family design
        return GlmRows(np.asarray(glm.y, dtype=float), np.asarray(glm.trials * glm.weights, dtype=float),
                       np.asarray(glm.offset, dtype=float), family or source.family)
    if not _is_glmer(source):
        raise TypeError(f"expected a bm.glmer fit or a design with a response family, got {type(source).__name__}")
    return GlmRows(np.asarray(source.y, dtype=float), np.asarray(source.prior_weights, dtype=float),
                   source.offset, family or source.family)


def link_scale(family: Family | None) -> str:
    """The scale coefficients live on, in words (``"log scale"``, ``"logit scale"``, ``"response scale"``).

    Examples
    --------
    >>> from bayesmlm.families import get_family
    >>> link_scale(get_family("poisson")), link_scale(get_family("binomial")), link_scale(None)
    ('log scale', 'logit scale', 'response scale')
    """
    if family is None or family.link.name == "identity":
        return "response scale"
    return f"{family.link.name} scale"


def require_same_glm_rows(rows: dict[str, GlmRows], what: str) -> None:
    """Raise :class:`~bayesmlm.errors.DataError` when the weights (trials) or offsets of the fits differ.

    :func:`bayesmlm.priors.rules.require_same_data` compares response, fixed-effects
    columns and groups; a family model also depends on these.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.families import get_family
    >>> a = GlmRows(np.zeros(2), np.ones(2), np.zeros(2), get_family("poisson"))
    >>> b = GlmRows(np.zeros(2), np.ones(2), np.array([0.0, 1.0]), get_family("poisson"))
    >>> try:
    ...     require_same_glm_rows({"fit": a, "posterior": b}, "pooling")
    ... except DataError as error:
    ...     print(error)
    pooling needs the same data, but the offset differs: 1 of 2 rows, first at row 1 (0 in 'fit', 1 in 'posterior')
    """
    (first, ref), *others = rows.items()
    for name, other in others:
        for label, a, b in (("prior weights (binomial: trials) differ", ref.weights, other.weights),
                            ("offset differs", ref.offset, other.offset)):
            differ = ~np.isclose(a, b, rtol=1e-10, atol=1e-12)
            if differ.any():
                i = int(np.flatnonzero(differ)[0])
                raise DataError(f"{what} needs the same data, but the {label}: {int(differ.sum())} of "
                                f"{len(a)} rows, first at row {i} ({a[i]:g} in {first!r}, {b[i]:g} in {name!r})")


def _is_glmer(fit) -> bool:
    """Whether ``fit`` is a :func:`bayesmlm.glmer` fit."""
    from .freq.glmer_result import GlmerFit

    return isinstance(fit, GlmerFit)


# -- identification -------------------------------------------------------------------------
def _edge(family: Family, side: str) -> str:
    link = family.link.name
    return f"{side} infinity on the {link} scale" if link in _INFINITE_LINKS else f"on the edge of the {link} scale"


def _count_separation(V: np.ndarray, y: np.ndarray, columns: list[str], tol: float = 1e-7) -> list[str]:
    """Columns along which zero counts are separated from positive ones (the Poisson MLE is then infinite).

    A direction ``d`` (``|d_j| <= 1``) with ``v'd = 0`` on every positive count and
    ``v'd <= 0`` on every zero, maximising ``-sum(v'd)`` over the zeros: a positive
    optimum means the likelihood keeps rising along ``d``.
    """
    zero, positive = V[y <= 0], V[y > 0]
    if len(zero) == 0:
        return []
    scale = np.maximum(np.abs(V).max(axis=0), 1e-12)
    Z, P = zero / scale, positive / scale
    res = optimize.linprog(Z.sum(axis=0), A_ub=Z, b_ub=np.zeros(len(Z)), A_eq=P if len(P) else None,
                           b_eq=np.zeros(len(P)) if len(P) else None, bounds=[(-1, 1)] * V.shape[1], method="highs")
    if not res.success or -res.fun <= tol * len(Z):
        return []
    return [c for c, v in zip(columns, res.x) if abs(v) > 1e-6]


def _unidentified(V: np.ndarray, y: np.ndarray, wt: np.ndarray, family: Family, columns: list[str]) -> str:
    """Why one group's own rows cannot identify its GLM estimate, in words ('' when they can)."""
    from .freq.glmer_result import find_separation

    use = wt > 0
    V, y, wt = V[use], y[use], wt[use]
    n, k = V.shape
    if n < k:
        return f"too few rows: {n} for {k} coefficient{'s' if k > 1 else ''}"
    if np.linalg.matrix_rank(V) < k:
        return f"the varying columns ({', '.join(columns)}) are constant or collinear within the level"
    # all 0 (all 1) means an infinite estimate only when the columns can move every row's mean alike
    constant = np.linalg.matrix_rank(np.column_stack([V, np.ones(n)])) == k
    only_constant = constant and k == 1  # a random intercept: the all-0 / all-1 checks are the whole story
    if isinstance(family, Binomial):
        successes, trials = float(np.sum(wt * y)), float(np.sum(wt))
        if constant and successes <= 0:
            return f"no successes (all 0): the maximum-likelihood estimate is {_edge(family, 'minus')}"
        if constant and successes >= trials:
            return f"only successes (all 1): the maximum-likelihood estimate is {_edge(family, 'plus')}"
        separated = [] if only_constant else find_separation(V, y, wt, columns)
        if separated and 0 < successes < trials:
            return (f"complete or quasi-complete separation along {', '.join(separated)}: successes and failures "
                    "are split by these columns, so the maximum-likelihood estimates are infinite")
        if separated:
            kind = "no successes (all 0)" if successes <= 0 else "only successes (all 1)"
            return (f"{kind}, and {', '.join(separated)} can move every row's probability that way together, so the "
                    "maximum-likelihood estimates are infinite")
    elif isinstance(family, (Poisson, NegativeBinomial)):
        if constant and float(np.sum(wt * y)) <= 0:
            return f"all counts are 0: the maximum-likelihood mean is 0, {_edge(family, 'minus')}"
        separated = [] if only_constant else _count_separation(V, y, columns)
        if separated and float(np.sum(wt * y)) <= 0:
            return (f"all counts are 0, and {', '.join(separated)} can take every row's mean towards 0 together, so "
                    "the maximum-likelihood estimates are infinite")
        if separated:
            return (f"the zero counts are separated from the positive ones along {', '.join(separated)}, so the "
                    "maximum-likelihood estimates are infinite")
    return ""


# -- IRLS for every group at once ------------------------------------------------------------
def _group_sums(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.zeros((n_groups, *values.shape[1:]))
    np.add.at(out, codes, values)
    return out


def _row_validity(family: Family, mu: np.ndarray, dev: np.ndarray) -> np.ndarray:
    ok = np.isfinite(dev)
    if not family.valid_mu(mu[ok]):  # e.g. a negative mean under the identity link
        ok &= np.fromiter((family.valid_mu(np.array([m])) for m in mu), bool, len(mu))
    return ok


def _irls(V, y, wt, offset, codes, n_groups, family):
    """R's glm.fit for each group at once: (coefficients, converged, failed) per group."""
    link = family.link
    k = V.shape[1]

    def evaluate(coef):
        eta = offset + np.einsum("nk,nk->n", V, coef[codes])
        mu = link.inverse(eta)
        with np.errstate(all="ignore"):
            rows = family.dev_resids(y, mu, wt)
        rows = np.where(_row_validity(family, mu, rows), rows, np.nan)
        return eta, mu, np.bincount(codes, rows, minlength=n_groups)

    eta = link.link(family.initialize(y, wt))
    mu = link.inverse(eta)
    coef = np.zeros((n_groups, k))
    dev = np.full(n_groups, np.inf)
    converged = np.zeros(n_groups, dtype=bool)
    failed = np.zeros(n_groups, dtype=bool)
    for _ in range(MAX_ITER):
        me = link.mu_eta(eta)
        w = wt * me * me / family.variance(mu)
        z = eta - offset + (y - mu) / me
        xtwx = _group_sums(w[:, None, None] * V[:, :, None] * V[:, None, :], codes, n_groups)
        xtwz = _group_sums(V * (w * z)[:, None], codes, n_groups)
        with np.errstate(all="ignore"):
            try:
                step = np.linalg.solve(xtwx, xtwz[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                step = np.stack([np.linalg.lstsq(a, b, rcond=None)[0] if np.linalg.matrix_rank(a) == k
                                 else np.full(k, np.nan) for a, b in zip(xtwx, xtwz)])
        stuck = ~np.isfinite(step).all(axis=1)
        failed |= stuck
        step[stuck] = coef[stuck]
        new_eta, new_mu, new_dev = evaluate(step)
        for _ in range(30):  # step halving towards the previous coefficients
            bad = ~np.isfinite(new_dev) | (new_dev > dev * (1 + 1e-12) + 1e-12)
            if not bad.any():
                break
            step[bad] = 0.5 * (coef[bad] + step[bad])
            new_eta, new_mu, new_dev = evaluate(step)
        with np.errstate(invalid="ignore"):
            converged = np.abs(new_dev - dev) <= _TOL * (np.abs(new_dev) + 0.1)
        coef, eta, mu, dev = step, new_eta, new_mu, new_dev
        if (converged | failed).all():
            break
    return coef, converged & ~failed & np.isfinite(dev), failed


def group_glm(values: np.ndarray, rows: GlmRows, offset: np.ndarray, codes: np.ndarray, n_groups: int,
              columns: list[str]) -> tuple[np.ndarray, list[str]]:
    """Maximum-likelihood GLM coefficients of ``values`` within each group, ``offset`` held fixed.

    Parameters
    ----------
    values : ndarray (rows, columns)
        The columns fitted within each group.
    rows : GlmRows
        Response, prior weights and family (its ``offset`` is not used: pass ``offset``).
    offset : ndarray (rows,)
        The part of the linear predictor held fixed.
    codes : ndarray (rows,)
        Group of each row, ``0 .. n_groups - 1``.
    n_groups : int
    columns : list of str
        Names of the columns of ``values`` (for the reasons).

    Returns
    -------
    (ndarray (groups, columns), list of str)
        The estimates (NaN for a group its rows cannot identify) and, per group, why
        not ('' where estimated).

    Examples
    --------
    The Poisson MLE of a log rate is the log of the mean count; a group of zeros has none:

    >>> import numpy as np
    >>> from bayesmlm.families import get_family
    >>> y = np.array([1.0, 3.0, 0.0, 0.0])
    >>> rows = GlmRows(y, np.ones(4), np.zeros(4), get_family("poisson"))
    >>> est, why = group_glm(np.ones((4, 1)), rows, np.zeros(4), np.array([0, 0, 1, 1]), 2, ["Intercept"])
    >>> bool(np.isclose(est[0, 0], np.log(2.0))), bool(np.isnan(est[1, 0])), why[1]
    (True, True, 'all counts are 0: the maximum-likelihood mean is 0, minus infinity on the log scale')
    """
    values = np.asarray(values, dtype=float)
    codes = np.asarray(codes)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(n_groups + 1))
    reasons = []
    for g in range(n_groups):
        idx = order[starts[g] : starts[g + 1]]
        reasons.append(_unidentified(values[idx], rows.y[idx], rows.weights[idx], rows.family, columns))
    out = np.full((n_groups, values.shape[1]), np.nan)
    fit = np.array([r == "" for r in reasons], dtype=bool)
    keep = fit[codes] & (rows.weights > 0)
    if not keep.any():
        return out, reasons
    ids = np.flatnonzero(fit)
    local = np.searchsorted(ids, codes[keep])
    coef, converged, failed = _irls(values[keep], rows.y[keep], rows.weights[keep], offset[keep], local, len(ids),
                                    rows.family)
    for j, g in enumerate(ids):
        if converged[j]:
            out[g] = coef[j]
        else:
            reasons[g] = ("IRLS stopped: the working weights vanished (fitted means at the edge of their range)"
                          if failed[j] else f"IRLS did not converge in {MAX_ITER} iterations")
    return out, reasons


# -- no pooling and complete pooling ---------------------------------------------------------
def partial_offset(design: Design, rows: GlmRows, factor: str, effects) -> np.ndarray:
    """The linear predictor without ``factor``'s own effects: the GLM form of the partial residual.

    The model's offset, the fixed part and the effects of the other factors not
    nested in ``factor`` (:func:`bayesmlm.pooling.partial_residual` explains the nesting rule).

    Parameters
    ----------
    design : Design
    rows : GlmRows
    factor : str
    effects : (pandas.Series, dict of str -> pandas.DataFrame)
        Fixed and group effects, e.g. ``(fit.fixef(), fit.ranef())`` or posterior means.

    Examples
    --------
    With one factor it is the fixed part of glmer's linear predictor:

    >>> import bayesmlm as bm, numpy as np
    >>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"))
    >>> off = partial_offset(fit.design, glm_rows(fit), "herd", (fit.fixef(), fit.ranef()))
    >>> bool(np.allclose(off, fit.predict(re_form="fixed")))
    True
    """
    from .pooling import _block_effects, _nested

    fixed, ranef = effects
    own = design.block(factor)
    out = rows.offset + design.X @ fixed[design.fixed_names].to_numpy(dtype=float)
    for block in design.blocks:
        if block.factor != factor and not _nested(block, own):
            out = out + np.einsum("nk,nk->n", block.values, _block_effects(block, ranef)[block.codes])
    return out


def glm_no_pooling(design: Design, rows: GlmRows, factor: str, effects) -> pd.DataFrame:
    """Each level's own maximum-likelihood estimate, on the link scale (module docstring).

    Parameters
    ----------
    design : Design
    rows : GlmRows
    factor : str
    effects : (pandas.Series, dict of str -> pandas.DataFrame)
        Fixed and group effects that define the offset (:func:`partial_offset`).

    Returns
    -------
    pandas.DataFrame
        levels x coefficients (the fixed-effect columns, then varying columns without
        a fixed effect); a level its rows cannot identify is all NaN, and
        ``.attrs["notes"]`` maps each such level to the reason.

    Examples
    --------
    See the module docstring.

    >>> import bayesmlm as bm
    >>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"))
    >>> glm_no_pooling(fit.design, glm_rows(fit), "herd", (fit.fixef(), fit.ranef())).shape
    (15, 4)
    """
    from .pooling import _level_coefficients

    block = design.block(factor)
    offset = partial_offset(design, rows, factor, effects)
    own, reasons = group_glm(block.values, rows, offset, block.codes, block.n_levels, list(block.columns))
    table = _level_coefficients(design, block, effects[0], own)
    table.attrs["notes"] = {level: why for level, why in zip(block.levels, reasons) if why}
    return table


def glm_complete_pooling(design: Design, rows: GlmRows) -> pd.Series:
    """One GLM of the fixed-effects formula on all rows, groups ignored (offset, weights and trials kept).

    Returns
    -------
    pandas.Series
        By fixed-effect name; all NaN when the rows cannot identify it, with the reason in
        ``.attrs["note"]``.

    Examples
    --------
    >>> import bayesmlm as bm, numpy as np
    >>> fit = bm.glmer("TICKS ~ 1 + (1 | BROOD)", bm.datasets.load("grouseticks"), family="poisson")
    >>> bool(np.isclose(glm_complete_pooling(fit.design, glm_rows(fit))["Intercept"], np.log(fit.y.mean())))
    True
    """
    codes = np.zeros(design.n, dtype=int)
    est, reasons = group_glm(design.X, rows, rows.offset, codes, 1, list(design.fixed_names))
    out = pd.Series(est[0], index=design.fixed_names)
    out.attrs["note"] = reasons[0]
    return out


# -- the fits behind a family's pooling -------------------------------------------------------
def _correlation_blocks(block) -> str:
    return " + ".join("(" + ", ".join(block.columns[i] for i in group) + ")" for group in block.groups)


def _model_differences(a: Design, b: Design, names: tuple[str, str] = ("fit", "posterior")) -> list[str]:
    """How the models of two designs differ, in words: fixed-effects columns, grouping factors, varying
    columns and their correlation blocks (not the formulas' text: ``(1|g)`` and ``(1 | g)`` are one model)."""
    out = []
    if list(a.fixed_names) != list(b.fixed_names):
        out.append(f"fixed effects {list(a.fixed_names)} in {names[0]!r}, {list(b.fixed_names)} in {names[1]!r}")
    blocks_a, blocks_b = {x.factor: x for x in a.blocks}, {x.factor: x for x in b.blocks}
    if sorted(blocks_a) != sorted(blocks_b):
        out.append(f"grouping factors {sorted(blocks_a)} in {names[0]!r}, {sorted(blocks_b)} in {names[1]!r}")
    for factor in [f for f in blocks_a if f in blocks_b]:
        x, y = blocks_a[factor], blocks_b[factor]
        if tuple(x.columns) != tuple(y.columns):
            out.append(f"varying columns of {factor!r}: {list(x.columns)} in {names[0]!r}, {list(y.columns)} in "
                       f"{names[1]!r}")
        elif tuple(map(tuple, x.groups)) != tuple(map(tuple, y.groups)):
            out.append(f"correlated blocks of {factor!r}: {_correlation_blocks(x)} in {names[0]!r}, "
                       f"{_correlation_blocks(y)} in {names[1]!r}")
    return out


def require_same_fits(fit: FreqFit | GlmerFit, post: BayesFit, what: str) -> None:
    """A fit and a posterior of the same model and data; for a family also the same family, trials and offsets.

    The models are compared by structure, not by the formulas' text: the same fixed-effects
    columns, grouping factors, varying columns and correlation blocks (so ``(1|g)`` matches
    ``(1 | g)``, and a posterior sampled with ``trials="n"`` matches a glmer fit of
    ``cbind(y, n - y)``); then the same rows (response, columns, levels; for a family
    also the prior weights or trials and the offsets).

    Parameters
    ----------
    fit : FreqFit or GlmerFit
    post : BayesFit
    what : str
        The step that needs them, for the messages.

    Raises
    ------
    TypeError
        An lmer fit with a family posterior, or a glmer fit with a gaussian one.
    ValueError
        Different models (fixed effects, grouping factors, varying columns), families or links.
    DataError
        Different data (:func:`bayesmlm.priors.rules.require_same_data`), trials, weights or offsets.

    Examples
    --------
    With ``post`` the gaussian sleepstudy posterior of :func:`bayesmlm.sample`'s example:

    >>> import bayesmlm as bm
    >>> require_same_fits(bm.lmer("Reaction~Days+(Days|Subject)", df), post, "compare")  # same model, other spacing
    >>> try:
    ...     require_same_fits(bm.lmer("Reaction ~ Days + (Days || Subject)", df), post, "compare")
    ... except ValueError as error:
    ...     print(error)
    fit and posterior are of different models: correlated blocks of 'Subject': (Intercept) + (Days) in 'fit', (Intercept, Days) in 'posterior'
    >>> ticks = bm.glmer("TICKS ~ YEAR + (1 | BROOD)", bm.datasets.load("grouseticks"), family="poisson")
    >>> try:
    ...     require_same_fits(ticks, post, "pooling")
    ... except TypeError as error:
    ...     print(error)
    a bm.glmer fit (poisson) goes with a posterior of the same family (bm.sample(..., family='poisson')), not a gaussian one
    """
    from .priors.rules import require_same_data

    family = getattr(post.design, "family", None)
    glmer_fit = _is_glmer(fit)
    if glmer_fit and family is None:
        raise TypeError(f"a bm.glmer fit ({fit.family.name}) goes with a posterior of the same family "
                        f"(bm.sample(..., family={fit.family.glmer_name!r})), not a gaussian one")
    if family is not None and not glmer_fit:
        raise TypeError(f"a {family.name} posterior goes with a bm.glmer fit of the same family, "
                        f"got {type(fit).__name__}")
    differences = _model_differences(fit.design, post.design)
    if differences:
        raise ValueError("fit and posterior are of different models: " + "; ".join(differences))
    if family is not None and (fit.family.name, fit.family.link.name) != (family.name, family.link.name):
        raise ValueError(f"fit and posterior are of different families: {fit.family.name} ({fit.family.link.name} "
                         f"link) vs {family.name} ({family.link.name} link)")
    require_same_data({"fit": fit.design, "posterior": post.design}, what)
    if family is not None:
        require_same_glm_rows({"fit": glm_rows(fit), "posterior": glm_rows(post.design)}, what)


def _model_family(fit, post, family, link, trials, weights, offset, sample_kwargs) -> str | Family | None:
    """The family :func:`bayesmlm.pooling` pools: asked for, else the fit's or the posterior's; None for a
    plain gaussian model.

    A gaussian model with weights, an offset or another link is a family model of
    ``bm.sample`` (``"gaussian"`` is returned, and :func:`_family_fits` says why it
    cannot be pooled).
    """
    asked = family if family is not None else (sample_kwargs or {}).get("family")
    if isinstance(asked, str) and asked.strip().lower() == "gaussian":
        asked = None
    if asked is not None:
        return asked
    if _is_glmer(fit):
        return fit.family
    if post is not None and getattr(post.design, "family", None) is not None:
        return post.design.family
    if weights is not None or offset is not None or trials is not None or link not in (None, "identity"):
        return "gaussian"
    return None


def _family_fits(formula: str, data: pd.DataFrame, family: str | Family, *, fit=None, post=None,
                 bayes: bool = True, sample_kwargs: dict | None = None, link: str | None = None, trials=None,
                 weights=None, offset=None):
    """The glmer fit (checked against the model's rows, or fitted here) and the posterior (given, sampled,
    or None) to pool: ``(GlmerFit, BayesFit or None)``."""
    from .bayes.sample import sample
    from .family_design import family_design, sampling_family
    from .freq.glmer import glmer, glmer_of_design
    from .priors.rules import require_same_data

    fam = family if isinstance(family, Family) else sampling_family(family, link)
    if link is not None and fam.link.name != link:
        raise ValueError(f"link={link!r} but the family has the {fam.link.name} link")
    if fam.name not in POOLING_FAMILIES:
        extra = " with weights, an offset or another link" if fam.name == "gaussian" else ""
        raise ValueError(
            f"pooling of a {fam.name} model{extra} is not available: its no-pooling offsets and partial pooling come "
            f"from a bm.glmer fit, and glmer fits the {', '.join(POOLING_FAMILIES)} families only; use "
            "bayesmlm.pooling.pooling_factors(post=post) for the posterior's pooling factors")
    if fit is not None and not _is_glmer(fit):
        raise TypeError(f"a {fam.name} model is pooled with a bm.glmer fit, got {type(fit).__name__}")
    if fit is not None and (fit.family.name, fit.family.link.name) != (fam.name, fam.link.name):
        raise ValueError(f"the fit is {fit.family.name} ({fit.family.link.name} link), not {fam.name} "
                         f"({fam.link.name} link)")
    design = family_design(formula, data, fam, trials=trials, weights=weights, offset=offset, na_action="drop")
    if fit is None:
        fit = (glmer_of_design(design) if trials is not None else
               glmer(formula, data, family=fam.glmer_name, link=fam.link.name, weights=weights, offset=offset))
    else:  # the fit's own offsets and weights drive no pooling: they must be the model's
        require_same_data({"data": design, "fit": fit.design}, "pooling")
        try:
            require_same_glm_rows({"data": glm_rows(design, fit.family), "fit": glm_rows(fit)}, "pooling")
        except DataError as error:
            raise DataError(f"{error}; give bm.pooling the model's offset (an offset() term or offset=), weights= "
                            "and trials= as the fit had them") from None
    if post is None and bayes:
        kwargs = {**(sample_kwargs or {}), "family": fam.glmer_name, "link": fam.link.name, "trials": trials,
                  "weights": weights, "offset": offset}
        post = sample(formula, data, freq=fit, **kwargs)
    return fit, post


# -- figure -----------------------------------------------------------------------------------
_MARKERS = {"partial pooling (lmer)": ("s", "tab:blue"), "partial pooling (Bayes)": ("D", "tab:green"),
            "no pooling": ("o", "tab:orange")}  # no pooling on top: where it coincides it shows
_LEGEND = {"partial pooling (lmer)": "partial pooling (glmer)"}  # the table's "lmer" approach is the glmer fit


def plot_family_pooling(pool, factor: str, max_levels: int = 60):
    """Each level's coefficients by approach, one panel per coefficient, on the link scale.

    Levels run up the vertical axis, sorted by the partial-pooling (lmer, i.e. glmer)
    estimate; complete pooling is the grey line. Levels without a no-pooling
    estimate are named, with the reason, in the title.

    Parameters
    ----------
    pool : Pooling
    factor : str
    max_levels : int
        Levels shown, evenly spread over the sorted estimates; the title says when there are more.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.glmer("TICKS ~ YEAR + (1 | BROOD)", bm.datasets.load("grouseticks"), family="poisson")
    >>> from bayesmlm.pooling import pooling_from_fits
    >>> fig = plot_family_pooling(pooling_from_fits(fit), "BROOD")
    >>> fig.axes[0].get_xlabel()
    'Intercept (log scale)'
    """
    from matplotlib.figure import Figure

    part = pool.table[pool.table.factor == factor]
    varying = [b.columns for b in pool.design.blocks if b.factor == factor]
    terms = list(varying[0]) if varying else list(dict.fromkeys(part.term))
    wide = part.pivot_table(index=["level", "term"], columns="approach", values="estimate", dropna=False, sort=False)
    partial = wide.xs(terms[0], level="term")["partial pooling (lmer)"].sort_values()
    pick = np.unique(np.linspace(0, len(partial) - 1, min(max_levels, len(partial))).round().astype(int))
    levels = list(partial.index[pick])  # evenly spread over the sorted estimates
    width = max(5.5, 3.2 * len(terms) + 1.2)
    fig = Figure(figsize=(width, 0.16 * len(levels) + 2.0), layout="constrained")
    axes = fig.subplots(1, len(terms), sharey=True, squeeze=False).ravel()
    position = np.arange(len(levels))
    for ax, term in zip(axes, terms):
        table = wide.xs(term, level="term").loc[levels]
        if "complete pooling" in table:
            ax.axvline(float(table["complete pooling"].iloc[0]), color="tab:grey", lw=1, label="complete pooling")
        for approach, (marker, colour) in _MARKERS.items():
            if approach in table:
                ax.plot(table[approach], position, marker, color=colour, ms=3.5, ls="",
                        label=_LEGEND.get(approach, approach))
        ax.set_xlabel(f"{term} ({pool.scale})", fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0].set_yticks(position, levels)
    axes[0].set_ylabel(factor, fontsize=8)
    shown = (f"{len(levels)} of {len(partial)} levels, evenly spread" if len(partial) > len(levels)
             else f"{len(levels)} levels")
    title = f"{factor}: coefficients by approach ({shown}, {pool.scale})"
    notes = pool.notes()
    notes = notes[(notes.factor == factor) & (notes.approach == "no pooling")]
    if len(notes):
        reasons = notes.groupby("note", sort=False)["level"].apply(list)
        text = "; ".join(f"{why} ({', '.join(lv[:6])}{' ...' if len(lv) > 6 else ''})" for why, lv in reasons.items())
        title += "\n" + textwrap.fill(f"No no-pooling estimate for {len(notes)} level(s): {text}", int(width * 15))
    for message in pool.messages:
        title += "\n" + textwrap.fill(textwrap.shorten(message, 400), int(width * 15))
    fig.suptitle(title, fontsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=7)
    return fig
