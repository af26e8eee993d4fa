"""Intraclass correlation and Nakagawa's R-squared (performance's ``icc`` and ``r2_nakagawa``).

Variance components of a linear mixed model (Nakagawa, Johnson & Schielzeth
2017, J. R. Soc. Interface 14: 20170213):

* fixed: the variance of the fixed-effects predictions ``X beta`` (n - 1 denominator);
* random: for each grouping factor with covariance ``Sigma_k``, the mean over
  rows of ``z_i' Sigma_k z_i`` (``z_i`` the row's values of that factor's
  varying columns) -- Johnson's (2014) extension to random slopes, which is
  ``Sigma_k``'s variance for a random intercept;
* residual: ``sigma^2`` for a linear mixed model; for a GLMM
  (:func:`bayesmlm.glmer`) the distribution-specific (latent-scale) variance of
  Nakagawa et al. (2017), as ``performance::r2_nakagawa`` and ``icc`` (default
  ``approximation = "lognormal"``) compute it:

  - binomial: ``pi^2 / 3`` (logit), ``1`` (probit), ``pi^2 / 6`` (cloglog) --
    the variance of the latent per-trial error. For a ``cbind(successes,
    failures)`` response performance divides this by the mean number of
    trials; here it is not divided (Nakagawa et al.'s latent-scale
    definition, the same for Bernoulli and aggregated binomial data);
  - Poisson, log link: ``log(1 + 1 / lambda)`` with ``lambda = exp(beta_0 +
    tau_0^2 / 2)``, where ``beta_0`` and ``tau_0^2`` come from the *null
    model* -- the same random effects, fixed effects the intercept only,
    refitted (and cached) on the fit's rows, weights and offset -- with
    ``tau_0^2`` the sum of its random-intercept variances (observation-level
    factors left out). This is what
    insight's ``.variance_distributional`` does (null-model intercept, not the
    mean of the fitted model's fixed-effects linear predictor);
  - other families and links (Gamma, negative binomial, Poisson with another
    link, binomial with another link) raise a ``ValueError``.

  Fixed and random variances are on the link scale, as for a linear model. A
  GLMM factor with one level per row (an observation-level random effect)
  models overdispersion: its variance is added to the residual variance, not
  to the random one (Nakagawa et al.'s additive dispersion; insight's
  ``var.dispersion``).

Marginal R^2 = fixed / total, conditional R^2 = (fixed + random) / total;
adjusted ICC = random / (random + residual), conditional ICC = random / total.
Everything comes from sufficient statistics, so Dask-reduced fits work too.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
>>> icc(fit).round(3).to_dict()
{'adjusted': 0.418, 'conditional': 0.418}
>>> r2(fit).round(3).to_dict()
{'marginal': 0.0, 'conditional': 0.418}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import warnings

import numpy as np
import pandas as pd

from ._cache import cached

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["icc", "r2", "variance_components", "distribution_variance"]

_BINOMIAL_LINK_VARIANCE = {"logit": np.pi**2 / 3.0, "probit": 1.0, "cloglog": np.pi**2 / 6.0}
_SUPPORTED = "binomial (logit, probit, cloglog links) and Poisson (log link)"


def _null_model(fit):
    """The fit's null model: fixed effects the intercept only, the same random effects, rows, weights and offset."""
    from ..glmer import RESPONSE, glmer

    design = fit.design
    random = " + ".join(t.bar for t in design.formula.random)
    engine = fit._engine
    wt = np.asarray(engine.wt, dtype=float)
    off = np.asarray(engine.offset, dtype=float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        null = glmer(f"{RESPONSE} ~ 1 + {random}", design.data.reset_index(drop=True), family=fit.family,
                     nAGQ=fit.nAGQ, weights=wt if np.any(wt != 1.0) else None,
                     offset=off if np.any(off != 0.0) else None)
    for message in dict.fromkeys(str(w.message) for w in caught):
        warnings.warn(f"the null model (intercept-only fixed effects) for the Poisson distribution-specific "
                      f"variance: {message}", UserWarning, stacklevel=4)
    return null


def distribution_variance(fit) -> float:
    """Nakagawa et al.'s distribution-specific variance of a GLMM (``sigma^2`` of a linear mixed model).

    Parameters
    ----------
    fit : FreqFit or GlmerFit

    Raises
    ------
    ValueError
        For families and links without a well-defined latent-scale variance here
        (Gamma, negative binomial, Poisson other than log, binomial other than
        logit, probit, cloglog).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"))
    >>> round(distribution_variance(fit), 4)  # pi^2 / 3
    3.2899
    """
    family = getattr(fit, "family", None)
    if family is None:
        return float(fit.sigma**2)
    name, link = family.name, family.link.name
    if name == "binomial" and link in _BINOMIAL_LINK_VARIANCE:
        return float(_BINOMIAL_LINK_VARIANCE[link])
    if name == "poisson" and link == "log":
        null = fit if fit.design.fixed_names == ["Intercept"] else cached(fit, "null_model", lambda: _null_model(fit))
        beta0 = float(null.fixef()["Intercept"])
        tau2 = 0.0
        for block, cov in zip(null.design.blocks, null.estimates.covariances):
            if "Intercept" in block.columns and not _is_observation_level(block, null.design.n):
                k = block.columns.index("Intercept")
                tau2 += float(np.asarray(cov)[k, k])
        lam = np.exp(beta0 + 0.5 * tau2)
        return float(np.log1p(1.0 / lam))
    raise ValueError(
        f"ICC and Nakagawa's R2 are implemented for linear mixed models and for {_SUPPORTED} GLMMs; "
        f"this fit is {family.label} with the {link} link, whose distribution-specific variance is not "
        "implemented (for a Gamma or negative binomial model, compute the variances by hand or use a Bayesian "
        "model's posterior predictive R2)"
    )


def _is_observation_level(block, n: int) -> bool:
    """A GLMM factor with one level per row (an observation-level random effect: overdispersion)."""
    return block.n_levels == n


def variance_components(fit: "FreqFit") -> dict[str, float]:
    """The fixed, random (summed over factors) and residual variances of Nakagawa's R^2.

    Parameters
    ----------
    fit : FreqFit or GlmerFit
        For a GLMM ``residual`` is ``distribution`` (:func:`distribution_variance`;
        a ``ValueError`` for unsupported families) plus ``dispersion``, the
        variance of observation-level random effects (a factor with one level
        per row, as insight separates them), which then do not count in ``random``.

    Returns
    -------
    dict
        ``fixed``, ``random``, ``residual``; for a GLMM also ``distribution``
        and ``dispersion``.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
    >>> {k: round(v) for k, v in variance_components(fit).items()}
    {'fixed': 0, 'random': 1764, 'residual': 2451}
    """
    distribution = distribution_variance(fit)  # first: unsupported families fail before any work
    glmm = getattr(fit, "family", None) is not None
    design = fit.design
    s = design.sufficient_stats()
    beta = fit.fixef().to_numpy()
    n = s.n
    total = float(beta @ s.XtX @ beta)
    mean = float(s.Xsum @ beta) / n
    var_fixed = max(total - n * mean**2, 0.0) / (n - 1)
    ZtZ = s.ZtZ.tocsr()
    var_random = 0.0
    dispersion = 0.0
    for k, (block, cov) in enumerate(zip(design.blocks, fit.estimates.covariances)):
        start = design.offsets[k]
        c = block.n_cols
        # sum over rows of z_i z_i' = sum over levels of the diagonal blocks of Z'Z
        sub = ZtZ[start : start + block.n_effects, start : start + block.n_effects].toarray()
        zz = sub.reshape(block.n_levels, c, block.n_levels, c)[np.arange(block.n_levels), :, np.arange(block.n_levels), :]
        part = float(np.sum(np.asarray(cov) * zz.sum(axis=0))) / n
        if glmm and _is_observation_level(block, n):
            dispersion += part
        else:
            var_random += part
    if not glmm:
        return {"fixed": var_fixed, "random": var_random, "residual": distribution}
    return {"fixed": var_fixed, "random": var_random, "residual": distribution + dispersion,
            "distribution": distribution, "dispersion": dispersion}


def icc(fit: "FreqFit") -> pd.Series:
    """Adjusted and conditional intraclass correlation (performance's ``icc``).

    Parameters
    ----------
    fit : FreqFit or GlmerFit
        A linear mixed model fit, or a binomial or Poisson (log link) GLMM, whose
        residual variance is Nakagawa's distribution-specific variance (see the
        module notes); random slopes enter by Johnson's extension.

    Returns
    -------
    pandas.Series
        ``adjusted`` = random / (random + residual);
        ``conditional`` = random / (fixed + random + residual).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> bm.icc(fit).round(3).to_dict()
    {'adjusted': 0.722, 'conditional': 0.521}
    """
    v = variance_components(fit)
    total = v["fixed"] + v["random"] + v["residual"]
    return pd.Series(
        {"adjusted": v["random"] / (v["random"] + v["residual"]), "conditional": v["random"] / total}, name="ICC"
    )


def r2(fit: "FreqFit") -> pd.Series:
    """Nakagawa's marginal and conditional R-squared (performance's ``r2_nakagawa``).

    Parameters
    ----------
    fit : FreqFit or GlmerFit
        A linear mixed model fit, or a binomial or Poisson (log link) GLMM
        (see :func:`icc`); random slopes enter by Johnson's extension.

    Returns
    -------
    pandas.Series
        ``marginal`` = fixed / total; ``conditional`` = (fixed + random) / total.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> bm.r2(fit).round(3).to_dict()
    {'marginal': 0.279, 'conditional': 0.799}
    """
    v = variance_components(fit)
    total = v["fixed"] + v["random"] + v["residual"]
    return pd.Series({"marginal": v["fixed"] / total, "conditional": (v["fixed"] + v["random"]) / total}, name="R2")
