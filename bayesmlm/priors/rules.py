"""Rules that write a PriorSpec: data-scaled defaults and empirical priors.

Default rule (``default``), scaled by the data so that it works in any units,
in the spirit of rstanarm's and brms's autoscaled priors. With ``s_y`` the SD of
the response and ``s_j``, ``m_j`` the SD and mean of design column ``j``:

* slope ``j``: ``Normal(0, 2.5 s_y / s_j)`` -- a one-SD change in ``x_j``
  moves ``y`` by up to a few ``s_y``;
* ``Intercept``: ``Normal(mean(y), 2.5 s_y sqrt(1 + sum_j (m_j / s_j)^2))`` --
  wide enough for an intercept at ``x = 0`` far from the data;
* ``sd[g][Intercept]``: ``HalfStudentT(3, 2.5 s_y)``; ``sd[g][x_j]``:
  ``HalfStudentT(3, 2.5 s_y / s_j)`` -- heavy tails, mass near 0 allowed;
* ``cor[g]``: ``LKJ(2)`` -- mild preference for small correlations;
* ``sigma``: ``HalfStudentT(3, 2.5 s_y)``.

Empirical rule (``empirical``): centred on an lmer fit, with the fit's
uncertainty inflated. Using the same data for the prior and the posterior
narrows the posterior; an honest alternative is a fit on other data (e.g.
an earlier period), which this function accepts just the same.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> pri = empirical(fit)
>>> pri["sd[Subject][Days]"]
HalfNormal(sigma=11.8443)
>>> print(pri.notes(same_data=True)[0][:60])
These priors come from a fit to the same data that will be s
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd

from ..design import Design, build_design
from ..errors import EmpiricalPriorNote
from ..freq.result import FreqFit
from .distributions import LKJ, HalfNormal, HalfStudentT, Normal
from .spec import SAME_DATA_NOTE, PriorSpec, model_parameters

__all__ = ["default", "default_for_design", "empirical", "data_fingerprint", "warn_if_same_data"]


def data_fingerprint(design: Design) -> str:
    """Short hash of the response and fixed-effects matrix, to spot reuse of the same data.

    Parameters
    ----------
    design : Design

    Examples
    --------
    >>> import bayesmlm as bm
    >>> d = bm.build_design("Reaction ~ Days + (1 | Subject)", bm.datasets.load("sleepstudy"))
    >>> len(data_fingerprint(d)), data_fingerprint(d) == data_fingerprint(d)
    (16, True)
    """
    digest = hashlib.sha256()
    if design.rows_held:
        digest.update(np.ascontiguousarray(design.y).tobytes())
        digest.update(np.ascontiguousarray(design.X).tobytes())
    else:  # reduced from a distributed frame: its statistics stand for the rows
        stats = design.sufficient_stats()
        for part in (stats.XtX, stats.Xty, np.array([stats.yty, stats.n])):
            digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()[:16]


def _column_scales(design: Design) -> tuple[float, float, dict[str, tuple[float, float]]]:
    if not design.rows_held:
        mean_y, s_y, mean_x, sd_x = design.sufficient_stats().column_moments()
        cols = {name: (float(m), float(s)) for name, m, s in zip(design.fixed_names, mean_x, sd_x)}
        return mean_y, s_y or 1.0, cols
    y = design.y
    s_y = float(np.std(y)) or 1.0
    cols = {}
    for j, name in enumerate(design.fixed_names):
        x = design.X[:, j]
        cols[name] = (float(np.mean(x)), float(np.std(x)))
    return float(np.mean(y)), s_y, cols


def _default_priors(design: Design) -> tuple[dict, dict]:
    mean_y, s_y, cols = _column_scales(design)
    priors, sources = {}, {}
    slope_terms = []
    for p in model_parameters(design):
        if p.kind == "fixed":
            m, s = cols[p.key]
            if s == 0:  # the intercept, or a constant column
                continue
            priors[p.key] = Normal(0.0, 2.5 * s_y / s)
            sources[p.key] = "default: Normal(0, 2.5 sd(y)/sd(x))"
            slope_terms.append((m / s) ** 2)
    for p in model_parameters(design):
        if p.kind == "fixed" and p.key not in priors:
            priors[p.key] = Normal(mean_y, 2.5 * s_y * float(np.sqrt(1.0 + sum(slope_terms))))
            sources[p.key] = "default: Normal(mean(y), 2.5 sd(y) sqrt(1 + sum (mean(x)/sd(x))^2))"
        elif p.kind == "sd":
            block = design.block(p.factor)
            x = block.values[:, block.columns.index(p.columns[0])]
            s = float(np.std(x))
            if s == 0:
                priors[p.key] = HalfStudentT(3.0, 2.5 * s_y)
                sources[p.key] = "default: HalfStudentT(3, 2.5 sd(y))"
            else:
                priors[p.key] = HalfStudentT(3.0, 2.5 * s_y / s)
                sources[p.key] = "default: HalfStudentT(3, 2.5 sd(y)/sd(x))"
        elif p.kind == "cor":
            priors[p.key] = LKJ(2.0)
            sources[p.key] = "default: LKJ(2)"
        elif p.kind == "sigma":
            priors[p.key] = HalfStudentT(3.0, 2.5 * s_y)
            sources[p.key] = "default: HalfStudentT(3, 2.5 sd(y))"
    order = [p.key for p in model_parameters(design)]
    return {k: priors[k] for k in order}, {k: sources[k] for k in order}


def default(formula: str, data: pd.DataFrame) -> PriorSpec:
    """Data-scaled weakly informative priors (rules in the module docstring).

    Parameters
    ----------
    formula : str
    data : pandas.DataFrame

    Examples
    --------
    >>> import bayesmlm as bm
    >>> pri = bm.priors.default("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> pri["cor[Subject]"], pri["Days"]
    (LKJ(eta=2), Normal(mu=0, sigma=48.8915))
    """
    return default_for_design(build_design(formula, data))


def default_for_design(design: Design) -> PriorSpec:
    """:func:`default` for an already built design."""
    priors, sources = _default_priors(design)
    return PriorSpec(priors, sources, {"formula": design.formula.text, "method": "default"})


def empirical(
    fit: FreqFit,
    fixed_scale: float = 5.0,
    sd_scale: float = 2.0,
    sigma_scale: float = 2.0,
    eta: float = 2.0,
    singular_threshold: float = 1e-3,
) -> PriorSpec:
    """Priors centred on an lmer fit, with inflated scales.

    * fixed effect: ``Normal(estimate, fixed_scale * SE)``;
    * ``sd[g][c]``: ``HalfNormal(sd_scale * estimated SD)``; when the estimated SD
      is below ``singular_threshold * sigma`` (a singular or near-singular
      component, whose estimate of 0 says nothing about its scale), the
      data-scaled default rule is used instead and the source says so;
    * ``cor[g]``: ``LKJ(eta)``;
    * ``sigma``: ``HalfNormal(sigma_scale * estimated sigma)``.

    Using the same data for the prior and for the posterior narrows the
    posterior: the spec carries that note and :func:`bayesmlm.sample` warns
    when it sees the same data again. The honest alternative is a fit on
    other data -- an earlier period, a pilot study -- passed here unchanged:
    ``empirical(bm.lmer(formula, earlier_df))``.

    Parameters
    ----------
    fit : FreqFit
    fixed_scale, sd_scale, sigma_scale : float
        Inflation factors of the fixed-effect SEs, group SDs and sigma.
    eta : float
        LKJ shape for correlations.
    singular_threshold : float
        Relative size below which a group SD counts as ~0.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> spec = empirical(bm.lmer("Reaction ~ Days + (Days | Subject)", df))
    >>> spec["sd[Subject][Days]"].family, spec["cor[Subject]"].family
    ('HalfNormal', 'LKJ')
    """
    design = fit.design
    fixef, se = fit.fixef(), fit.se()
    defaults, default_sources = _default_priors(design)
    vc = fit.varcorr()
    sd_hat = {(r.grp, r.var1): r.sdcor for r in vc[vc.var2.isna() & (vc.grp != "Residual")].itertuples()}
    priors, sources = {}, {}
    for p in model_parameters(design):
        if p.kind == "fixed":
            priors[p.key] = Normal(float(fixef[p.key]), fixed_scale * float(se[p.key]))
            sources[p.key] = f"empirical: lmer {fixef[p.key]:.4g} (SE {se[p.key]:.3g}), scale x{fixed_scale:g}"
        elif p.kind == "sd":
            est = float(sd_hat[(p.factor, p.columns[0])])
            if est < singular_threshold * fit.sigma:
                priors[p.key] = defaults[p.key]
                sources[p.key] = f"{default_sources[p.key]} (lmer estimate ~0, singular fit)"
            else:
                priors[p.key] = HalfNormal(sd_scale * est)
                sources[p.key] = f"empirical: lmer SD {est:.4g}, scale x{sd_scale:g}"
        elif p.kind == "cor":
            priors[p.key] = LKJ(eta)
            sources[p.key] = f"empirical: LKJ({eta:g})"
        else:
            priors[p.key] = HalfNormal(sigma_scale * fit.sigma)
            sources[p.key] = f"empirical: lmer sigma {fit.sigma:.4g}, scale x{sigma_scale:g}"
    meta = {
        "formula": design.formula.text,
        "method": "empirical",
        "data_fingerprint": data_fingerprint(design),
        "nobs": design.n,
    }
    return PriorSpec(priors, sources, meta)


def warn_if_same_data(priors: PriorSpec, design: Design) -> None:
    """Warn when empirical priors were elicited from the data being fitted."""
    if priors.meta.get("method") == "empirical" and priors.meta.get("data_fingerprint") == data_fingerprint(design):
        warnings.warn(SAME_DATA_NOTE, EmpiricalPriorNote, stacklevel=3)
