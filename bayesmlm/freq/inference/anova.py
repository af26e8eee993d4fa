"""t and F tests of the fixed effects (lmerTest's ``summary`` and ``anova``).

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> coef_table(fit)[["df", "p"]].round(2)
             df    p
Intercept  17.0  0.0
Days       17.0  0.0
>>> fixed_anova(fit).round(2)
      num_df  den_df      F    p
Days       1    17.0  45.85  0.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .contrasts import type1_contrasts, type3_contrasts
from .kenward_roger import kenward_roger
from .satterthwaite import FTest, TTest, satterthwaite

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["coef_table", "fixed_anova", "normalise_ddf", "DDF"]

DDF = Literal["satterthwaite", "kenward-roger", "none"]

_ALIASES = {
    "satterthwaite": "satterthwaite",
    "kenward-roger": "kenward-roger",
    "kenward_roger": "kenward-roger",
    "kenwardroger": "kenward-roger",
    "kr": "kenward-roger",
    "none": "none",
    "wald": "none",
    "lme4": "none",
}


def normalise_ddf(ddf: str) -> str:
    """Canonical name of a denominator-df method (case and spelling tolerant)."""
    key = str(ddf).strip().lower().replace(" ", "")
    if key not in _ALIASES:
        raise ValueError(f"ddf must be 'satterthwaite', 'kenward-roger' or 'none', got {ddf!r}")
    return _ALIASES[key]


def _wald_1d(fit: "FreqFit", L: np.ndarray) -> TTest:
    estimate = float(L @ fit.fixef().to_numpy())
    se = float(np.sqrt(L @ fit.vcov().to_numpy() @ L))
    z = estimate / se
    return TTest(estimate, se, np.inf, z, float(2.0 * stats.norm.sf(abs(z))))


def _wald_md(fit: "FreqFit", L: np.ndarray) -> FTest:
    Lb = L @ fit.fixef().to_numpy()
    q = int(np.linalg.matrix_rank(L))
    F = float(Lb @ np.linalg.pinv(L @ fit.vcov().to_numpy() @ L.T) @ Lb) / q
    return FTest(q, np.inf, F, float(stats.chi2.sf(F * q, q)))


def _tester(fit: "FreqFit", ddf: str):
    method = normalise_ddf(ddf)
    if method == "satterthwaite":
        s = satterthwaite(fit)
        return s.test_1d, s.test_md
    if method == "kenward-roger":
        k = kenward_roger(fit)
        return k.test_1d, k.test_md
    return (lambda L: _wald_1d(fit, np.asarray(L, float))), (lambda L: _wald_md(fit, np.atleast_2d(L)))


def coef_table(fit: "FreqFit", ddf: DDF = "satterthwaite") -> pd.DataFrame:
    """Estimates with t tests: columns ``estimate se df t p``, one row per fixed effect.

    ``ddf="kenward-roger"`` reports the Kenward-Roger adjusted SEs (as
    lmerTest's ``summary(fit, ddf="Kenward-Roger")``); ``"none"`` uses the
    normal distribution (infinite df).
    """
    test_1d, _ = _tester(fit, ddf)
    names = fit.design.fixed_names
    rows = [test_1d(np.eye(len(names))[j]) for j in range(len(names))]
    return pd.DataFrame(
        {
            "estimate": [r.estimate for r in rows],
            "se": [r.se for r in rows],
            "df": [r.df for r in rows],
            "t": [r.t for r in rows],
            "p": [r.p for r in rows],
        },
        index=pd.Index(names),
    )


def fixed_anova(fit: "FreqFit", ddf: DDF = "satterthwaite", type: Literal[1, 3] = 3) -> pd.DataFrame:
    """F tests per fixed-effects term: columns ``num_df den_df F p`` (lmerTest's ``anova``).

    Parameters
    ----------
    fit : FreqFit
    ddf : {"satterthwaite", "kenward-roger", "none"}
    type : {3, 1}
        Type III (default, as lmerTest) or sequential type I hypotheses.
    """
    _, test_md = _tester(fit, ddf)
    if type in (3, "3", "III"):
        contrasts = type3_contrasts(fit.design)
    elif type in (1, "1", "I"):
        contrasts = type1_contrasts(fit.design)
    else:
        raise ValueError(f"type must be 3 or 1, got {type!r}")
    rows = {name: test_md(L) for name, L in contrasts.items() if L.shape[0] > 0}
    return pd.DataFrame(
        {
            "num_df": [r.num_df for r in rows.values()],
            "den_df": [r.den_df for r in rows.values()],
            "F": [r.F for r in rows.values()],
            "p": [r.p for r in rows.values()],
        },
        index=pd.Index(list(rows)),
    )
