"""Inference around frequentist fits: lmerTest's tests, pbkrtest's Kenward-Roger, lme4's confint.

* :func:`coef_table` -- t tests of the fixed effects with Satterthwaite or
  Kenward-Roger df (lmerTest's ``summary``);
* :func:`fixed_anova` -- type III F tests per term (lmerTest's ``anova``);
* :func:`anova` -- those F tests for one fit, or likelihood-ratio tests
  between nested fits (lme4's ``anova(a, b)``);
* :func:`confint` -- Wald, profile and parametric-bootstrap intervals
  (lme4's ``confint``), with :func:`profile` and :func:`bootstrap` behind them;
* :func:`icc`, :func:`r2` -- intraclass correlation and Nakagawa's R^2.

All read a fitted :class:`~bayesmlm.freq.result.FreqFit` and never change it.

Examples
--------
>>> import bayesmlm as bm
>>> df = bm.datasets.load("sleepstudy")
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)
>>> fit.coef_table().round(3).loc["Days"].tolist()
[10.467, 1.546, 17.0, 6.771, 0.0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import pandas as pd

from .anova import coef_table, fixed_anova
from .bootstrap import Bootstrap, bootstrap
from .confint import confint
from .icc_r2 import icc, r2, variance_components
from .lrt import RefitNote, lrt
from .profile import Profile, ProfileWarning, profile

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = [
    "coef_table",
    "fixed_anova",
    "anova",
    "lrt",
    "confint",
    "profile",
    "Profile",
    "bootstrap",
    "Bootstrap",
    "icc",
    "r2",
    "variance_components",
    "RefitNote",
    "ProfileWarning",
]


def anova(*fits: "FreqFit", names: Sequence[str] | None = None, ddf: str = "satterthwaite") -> pd.DataFrame:
    """ANOVA of one fit (type III F tests) or likelihood-ratio tests between nested fits.

    Parameters
    ----------
    *fits : FreqFit
        One fit: its F tests per fixed-effects term (``num_df den_df F p``,
        lmerTest's ``anova(fit)``). Several: likelihood-ratio tests between
        them (``npar AIC BIC loglik deviance chisq df p``, lme4's
        ``anova(a, b)``), REML fits refitted by ML with a :class:`RefitNote`.
    names : sequence of str, optional
        Row labels of the likelihood-ratio table (default: the formulas).
    ddf : {"satterthwaite", "kenward-roger", "none"}
        Denominator df of the one-fit F tests.

    Examples
    --------
    >>> import warnings
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> full = bm.lmer("Reaction ~ Days + (Days | Subject)", df)
    >>> small = bm.lmer("Reaction ~ 1 + (Days | Subject)", df)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", RefitNote)
    ...     table = anova(small, full, names=["no Days", "Days"])
    >>> table[["npar", "chisq", "df"]].round(2)
             npar  chisq   df
    no Days     5    NaN  NaN
    Days        6  23.54  1.0
    """
    if len(fits) == 0:
        raise ValueError("give at least one fit")
    if len(fits) == 1:
        return fixed_anova(fits[0], ddf=ddf)
    return lrt(*fits, names=names, stacklevel=3)
