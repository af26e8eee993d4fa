"""Confidence intervals for every parameter of a fit (lme4's ``confint.merMod``).

``method="wald"``: ``estimate +- z se`` for the fixed effects; NaN for the
variance parameters, as lme4 gives NA. ``"profile"``: likelihood-profile
intervals (:mod:`~bayesmlm.freq.inference.profile`). ``"boot"``: percentile
intervals from a parametric bootstrap
(:mod:`~bayesmlm.freq.inference.bootstrap`).

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> confint(fit).round(2)
                               lower   upper
Intercept                     238.03  264.78
Days                            7.44   13.50
sd[Subject][Intercept]           NaN     NaN
cor[Subject][Intercept,Days]     NaN     NaN
sd[Subject][Days]                NaN     NaN
sigma                            NaN     NaN
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pandas as pd
from scipy import stats

from .bootstrap import bootstrap
from .parameters import all_parameter_names
from .profile import alphamax_for, cached_profile

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["confint"]


def confint(
    fit: "FreqFit",
    method: Literal["wald", "profile", "boot"] = "wald",
    level: float = 0.95,
    nsim: int = 500,
    seed: int | None = None,
    n_jobs: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Confidence intervals: columns ``lower upper``, one row per parameter.

    Parameters
    ----------
    fit : FreqFit
    method : {"wald", "profile", "boot"}
    level : float
    nsim, seed, progress : int, int, bool
        Bootstrap replicates, their seed, a progress counter (``"boot"`` only).
    n_jobs : int or None
        Worker processes for ``"boot"`` (``None``: every core) and ``"profile"``
        (``None``: one; profiles are usually quick).

    For ``"profile"`` the profiles reach ``alphamax = 0.01`` as lme4's do, and
    further when ``level`` needs it (lme4 then gives NA or the bound), so
    ``level=0.9999`` works too.

    Returns
    -------
    pandas.DataFrame
        Indexed by fixed effects, then ``sd[...]``, ``cor[...]``, ``sigma``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    names = all_parameter_names(fit)
    key = str(method).lower()
    if key == "wald":
        z = stats.norm.ppf(0.5 + level / 2.0)
        est, se = fit.fixef(), fit.se()
        out = pd.DataFrame({"lower": est - z * se, "upper": est + z * se})
    elif key == "profile":
        # profiles reach |zeta| = sqrt(qchisq(1 - alphamax, n_parameters)), alphamax 0.01 by default:
        # extend them for levels beyond that
        alphamax = min(0.01, alphamax_for(level, len(names)))
        if n_jobs in (None, 1):
            prof = cached_profile(fit, alphamax=alphamax)
        else:
            prof = cached_profile(fit, alphamax=alphamax, n_jobs=n_jobs)
        out = prof.confint(level)
    elif key in ("boot", "bootstrap"):
        out = bootstrap(fit, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress).confint(level)
    else:
        raise ValueError(f"method must be 'wald', 'profile' or 'boot', got {method!r}")
    return out.reindex(names).astype(float)
