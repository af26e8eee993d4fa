"""Likelihood-ratio tests between nested fits (lme4's ``anova(fit_a, fit_b)``).

As lme4 does, REML fits are refitted by maximum likelihood first (REML
likelihoods of models with different fixed effects are not comparable), the
models are ordered by their number of parameters, and each is tested against
the one before it: ``chisq = 2 (logLik_b - logLik_a)`` on the difference in
parameters. GLMMs (:func:`bayesmlm.glmer`) are compared as fitted (their
likelihood is already ML), and only with GLMMs of the same family, link and
``nAGQ`` (lme4's adaptive-quadrature log-likelihood has another constant than
its Laplace one); linear and generalized fits are not mixed. A larger model
whose log-likelihood is below the smaller one's gets ``chisq = 0``, as in
lme4, with a :class:`~bayesmlm.errors.ConvergenceWarning` naming both: one of
the fits did not reach its optimum.

Examples
--------
>>> import warnings
>>> import bayesmlm as bm
>>> df = bm.datasets.load("sleepstudy")
>>> full = bm.lmer("Reaction ~ Days + (Days | Subject)", df, reml=False)
>>> reduced = bm.lmer("Reaction ~ Days + (Days || Subject)", df, reml=False)
>>> lrt(reduced, full, names=["reduced", "full"])[["npar", "deviance", "chisq", "df"]].round(3)
         npar  deviance  chisq   df
reduced     5  1752.003    NaN  NaN
full        6  1751.939  0.064  1.0
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ...errors import ConvergenceWarning, DataError, SingularFitWarning
from ._cache import cached

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["lrt", "ml_refit", "RefitNote", "check_nested"]


class RefitNote(UserWarning):
    """REML fits were refitted by maximum likelihood before a likelihood-ratio test."""


def _is_glmm(fit) -> bool:
    return getattr(fit, "family", None) is not None


def ml_refit(fit: "FreqFit") -> "FreqFit":
    """The fit itself when it is ML (or a GLMM), else its (cached) ML refit by lme4's PLS algorithm."""
    if _is_glmm(fit) or not fit.reml:
        return fit
    from ..lmer import fit_design

    def refit():
        with warnings.catch_warnings():
            # the REML fit already warned about its boundary; a non-converged ML refit still warns
            warnings.simplefilter("ignore", SingularFitWarning)
            return fit_design(fit.design, reml=False, engine="pls")

    return cached(fit, "ml_refit", refit)


def _random_structure(fit: "FreqFit") -> dict[str, set[tuple[str, str]]]:
    """Factor -> covariance entries estimated, as (column, column) pairs."""
    out = {}
    for block in fit.design.blocks:
        entries = set()
        for group in block.groups:
            for a in group:
                for b in group:
                    entries.add((block.columns[a], block.columns[b]))
        out[block.factor] = entries
    return out


def _same_response(a: "FreqFit", b: "FreqFit") -> bool:
    """Same response for designs reduced to sufficient statistics (compared by their moments)."""
    sa, sb = a.design.sufficient_stats(), b.design.sufficient_stats()
    return bool(np.isclose(sa.yty, sb.yty, rtol=1e-12) and np.isclose(sa.ysum, sb.ysum, rtol=1e-12))


def _check_same_data(small, big, small_name: str, big_name: str) -> None:
    da, db = small.design, big.design
    if da.rows_held and db.rows_held:
        from ...priors.rules import require_same_data

        require_same_data({small_name: da, big_name: db}, "a likelihood-ratio test", parts=("rows", "response"))
    elif small.nobs != big.nobs or not _same_response(small, big):
        raise DataError(
            f"models {small_name!r} and {big_name!r} were not fitted to the same data "
            f"(n = {small.nobs} and {big.nobs}, or a different response); a likelihood-ratio test needs the same rows"
        )
    if _is_glmm(small) and _is_glmm(big):
        wa, wb = np.asarray(small.prior_weights), np.asarray(big.prior_weights)
        if wa.shape != wb.shape or not np.allclose(wa, wb, rtol=1e-12, atol=0.0):
            i = int(np.argmax(~np.isclose(wa, wb, rtol=1e-12, atol=0.0))) if wa.shape == wb.shape else 0
            raise DataError(
                f"models {small_name!r} and {big_name!r} have different prior weights (binomial trials), first at "
                f"row {i} ({wa[i]:g} and {wb[i]:g}); a likelihood-ratio test needs the same rows and weights"
            )


def check_nested(small: "FreqFit", big: "FreqFit", small_name: str, big_name: str) -> None:
    """Raise a :class:`~bayesmlm.errors.DataError` unless ``small`` is nested in ``big`` on the same data.

    The data must agree in rows and response (:func:`bayesmlm.priors.rules.require_same_data`; for GLMMs
    also the prior weights). Nesting is judged by name: fixed-effect columns, and each grouping factor's
    variances and correlations. An equivalent factor under another name (``sample`` coding the same groups
    as ``batch:cask``) counts as a different factor.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> a = bm.lmer("Reaction ~ Days + (1 | Subject)", df, reml=False)
    >>> b = bm.lmer("Reaction ~ Days + (1 | Subject)", df.iloc[:170], reml=False)
    >>> try:
    ...     check_nested(b, a, "short", "full")
    ... except bm.DataError as error:
    ...     print(error)
    a likelihood-ratio test needs the same data, but 'full' differs from 'short': row count: 170 in 'short', 180 in 'full'
    """
    _check_same_data(small, big, small_name, big_name)
    extra_fixed = [c for c in small.design.fixed_names if c not in big.design.fixed_names]
    rs, rb = _random_structure(small), _random_structure(big)
    extra_random = []
    for factor, entries in rs.items():
        missing = entries - rb.get(factor, set())
        if missing:
            extra_random.append(f"{factor}: " + ", ".join(sorted({f'{a}' if a == b else f'{a}~{b}' for a, b in missing})))
    if extra_fixed or extra_random:
        parts = []
        if extra_fixed:
            parts.append(f"fixed effects {extra_fixed}")
        if extra_random:
            parts.append("random effects " + "; ".join(extra_random))
        note = ""
        if extra_random:
            note = (f" (grouping factors are matched by name: {sorted(rs)} in {small_name!r}, {sorted(rb)} in "
                    f"{big_name!r}; a factor that codes the same groups under another name, such as 'sample' for "
                    "'batch:cask', counts as different: write it the same way in both formulas)")
        raise DataError(
            f"model {small_name!r} is not nested in {big_name!r}: it has "
            + " and ".join(parts)
            + f" that {big_name!r} lacks; a likelihood-ratio test compares a model with a simplification of it"
            + note
        )


def _check_comparable(fits, names) -> None:
    """All linear, or all GLMMs of one family, link and nAGQ."""
    kinds = ["glmer" if _is_glmm(f) else "lmer" for f in fits]
    if len(set(kinds)) > 1:
        detail = ", ".join(f"{n!r} ({k})" for n, k in zip(names, kinds))
        raise ValueError(
            f"cannot compare linear mixed models with GLMMs in one likelihood-ratio test: {detail}; their "
            "likelihoods are of different response distributions: fit every model with bm.lmer, or every one "
            "with bm.glmer and the same family"
        )
    if kinds[0] == "lmer":
        return
    labels = [f"{f.family.name} ({f.family.link.name})" for f in fits]
    if len(set(labels)) > 1:
        detail = ", ".join(f"{n!r}: {lab}" for n, lab in zip(names, labels))
        raise ValueError(
            f"GLMMs of different families or links cannot be compared by a likelihood-ratio test ({detail}); "
            "refit them with the same family and link"
        )
    nagq = [f.nAGQ for f in fits]
    if len(set(nagq)) > 1:
        detail = ", ".join(f"{n!r}: nAGQ={k}" for n, k in zip(names, nagq))
        raise ValueError(
            f"GLMMs fitted with different nAGQ cannot be compared by a likelihood-ratio test ({detail}): lme4's "
            "adaptive-quadrature (nAGQ > 1) log-likelihood has another constant than its Laplace one, and nAGQ=0 "
            "is a cruder approximation; refit them all with the same nAGQ"
        )


def lrt(*fits: "FreqFit", names: Sequence[str] | None = None, stacklevel: int = 2) -> pd.DataFrame:
    """Likelihood-ratio tests between nested fits, laid out like lme4's ``anova.merMod``.

    Parameters
    ----------
    *fits : FreqFit or GlmerFit
        Two or more fits of the same data; each must be nested in the next
        larger one (fixed-effect columns and random-effect variances and
        correlations a subset). GLMMs must share family, link and ``nAGQ``;
        linear and generalized fits cannot be mixed.
    names : sequence of str, optional
        Row labels (default: each fit's formula).
    stacklevel : int
        Where the :class:`RefitNote` points (for wrappers).

    Returns
    -------
    pandas.DataFrame
        Rows ordered by number of parameters; columns ``npar AIC BIC loglik
        deviance chisq df p`` (ML values; the first row's test columns are NaN).

    Warns
    -----
    RefitNote
        When REML fits were refitted by ML, as lme4 says it does.
    ConvergenceWarning
        When a larger model's log-likelihood is below the smaller one's (its
        chi-square is then set to 0, as lme4 does): one of the fits failed.

    Raises
    ------
    ValueError
        Linear and generalized fits mixed, or GLMMs of different family, link or ``nAGQ``.
    DataError
        Fits of different data, or not nested.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> cbpp = bm.datasets.load("cbpp")
    >>> full = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    >>> null = bm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp)
    >>> lrt(null, full, names=["null", "full"])[["npar", "chisq", "df"]].round(3)
          npar  chisq   df
    null     2    NaN  NaN
    full     5  25.61  3.0
    """
    if len(fits) < 2:
        raise ValueError("a likelihood-ratio test needs at least two fits")
    names = list(names) if names is not None else [f.formula for f in fits]
    if len(names) != len(fits) or len(set(names)) != len(names):
        raise ValueError("give one distinct name per fit")
    _check_comparable(fits, names)
    refitted = [n for f, n in zip(fits, names) if not _is_glmm(f) and f.reml]
    if refitted:
        warnings.warn(
            "refitting model(s) with ML (instead of REML): " + ", ".join(refitted), RefitNote, stacklevel=stacklevel
        )
    ml = [ml_refit(f) for f in fits]
    order = sorted(range(len(fits)), key=lambda k: ml[k].df)
    for a, b in zip(order[:-1], order[1:]):
        check_nested(ml[a], ml[b], names[a], names[b])
    npar = np.array([ml[k].df for k in order], dtype=int)
    loglik = np.array([ml[k].loglik for k in order])
    n = ml[order[0]].nobs
    gain = np.diff(loglik)
    for k in np.flatnonzero(gain < 0):
        small, big = order[k], order[k + 1]
        warnings.warn(
            f"model {names[big]!r} ({npar[k + 1]} parameters) has a lower log-likelihood ({loglik[k + 1]:.6g}) than "
            f"the simpler model {names[small]!r} it contains ({npar[k]} parameters, {loglik[k]:.6g}): one of the "
            f"fits did not reach its optimum (difference {-gain[k]:.3g}); its chi-square is set to 0, as lme4 does. "
            f"Refit {names[big]!r} (e.g. from the simpler model's estimates or with another optimiser) before "
            "trusting the test",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    chisq = np.concatenate([[np.nan], 2.0 * np.maximum(0.0, gain)])
    ddf = np.concatenate([[np.nan], np.diff(npar).astype(float)])
    with np.errstate(invalid="ignore"):
        p = np.where(np.isfinite(chisq), stats.chi2.sf(chisq, np.where(ddf > 0, ddf, np.nan)), np.nan)
    return pd.DataFrame(
        {
            "npar": npar,
            "AIC": -2.0 * loglik + 2.0 * npar,
            "BIC": -2.0 * loglik + np.log(n) * npar,
            "loglik": loglik,
            "deviance": -2.0 * loglik,
            "chisq": chisq,
            "df": ddf,
            "p": p,
        },
        index=pd.Index([names[k] for k in order]),
    )
