"""``lmer``: fit a linear mixed model from an lme4 formula.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", bm.datasets.load("penicillin"))
>>> fit.engine, round(fit.sigma, 4)
('pls', 0.5499)
"""

from __future__ import annotations

import warnings
from typing import Literal

import pandas as pd

from ..design import Design, build_design
from ..distributed import design_from_dask, is_dask_frame
from ..errors import ConvergenceWarning, EngineWarning, SingularFitWarning
from ..frame import NaAction
from .estimates import FitEstimates
from .pls_engine import fit_pls
from .result import FreqFit

__all__ = ["lmer", "fit_design", "make_design", "LOGLIK_TOLERANCE"]

Engine = Literal["auto", "pls", "statsmodels"]

LOGLIK_TOLERANCE = 1e-3
"""A log-likelihood this much below PLS's (the precision lme4 reports) marks a worse optimum."""


def make_design(formula: str, data, na_action: NaAction = "error") -> Design:
    """The design of a pandas frame, or the statistics-only design of a Dask DataFrame."""
    if is_dask_frame(data):
        return design_from_dask(formula, data, na_action=na_action)
    return build_design(formula, data, na_action=na_action)


def _gap_message(mixedlm: FreqFit, pls: FreqFit) -> str:
    kind = "REML logLik" if mixedlm.reml else "logLik"
    boundary = pls.singular_components()
    where = f" on the boundary ({'; '.join(boundary)})" if boundary and not mixedlm.singular else ""
    return (
        f"statsmodels MixedLM stopped at {kind} {mixedlm.loglik:.4f}, but lme4's PLS algorithm finds "
        f"{pls.loglik:.4f}{where} for the same model and data ({pls.loglik - mixedlm.loglik:.4f} higher): "
        "MixedLM's estimates are not the optimum and differ from lme4's; use engine='pls' (the default)"
    )


def _fit_statsmodels_checked(design: Design, reml: bool) -> FreqFit:
    """MixedLM's fit, checked against the PLS optimum of the same model (cheap: statistics only)."""
    from .statsmodels_engine import fit_statsmodels, near_boundary  # statsmodels loads only for this engine

    estimates: FitEstimates = fit_statsmodels(design, reml=reml)
    fit = FreqFit(design, estimates, reml, "statsmodels")
    if near_boundary(estimates, design) and not fit.singular:
        warnings.warn(
            "statsmodels MixedLM ended near the boundary of the variance parameters, where it is known to "
            "stop short of the optimum (it reports a small SD where lme4 finds 0); refit with engine='pls'",
            SingularFitWarning,
            stacklevel=4,
        )
    pls = FreqFit(design, fit_pls(design, reml=reml), reml, "pls")
    if pls.loglik - fit.loglik > LOGLIK_TOLERANCE:
        fit.engine_note = _gap_message(fit, pls)
        warnings.warn(fit.engine_note, EngineWarning, stacklevel=4)
    return fit


def _warn_boundary_and_convergence(fit: FreqFit) -> None:
    if fit.singular:
        warnings.warn(
            "boundary (singular) fit: "
            + "; ".join(fit.singular_components())
            + ". The data do not support this random-effects structure: simplify it (drop the "
            "component or the correlation), or fit it with a Bayesian model whose priors keep SDs off zero.",
            SingularFitWarning,
            stacklevel=4,
        )
    if not fit.converged:
        warnings.warn(
            "; ".join(fit.estimates.messages or ["the optimiser did not converge"]),
            ConvergenceWarning,
            stacklevel=4,
        )


def fit_design(design: Design, reml: bool = True, engine: Engine = "auto") -> FreqFit:
    """Fit an already built :class:`~bayesmlm.design.Design` (see :func:`lmer`).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> design = make_design("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
    >>> fit_design(design).engine
    'pls'
    """
    if engine not in ("auto", "pls", "statsmodels"):
        raise ValueError(f"engine must be 'auto', 'pls' or 'statsmodels', got {engine!r}")
    if engine == "statsmodels":
        fit = _fit_statsmodels_checked(design, reml)
    else:
        fit = FreqFit(design, fit_pls(design, reml=reml), reml, "pls")
    _warn_boundary_and_convergence(fit)
    return fit


def lmer(
    formula: str,
    data: pd.DataFrame,
    reml: bool = True,
    engine: Engine = "auto",
    na_action: NaAction = "error",
) -> FreqFit:
    """Fit a linear mixed model, lme4 style.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)"``.
        Bars: ``(1|g)``, ``(0+x|g)``, ``(x|g)``, ``(x||g)``, ``(x1+x2|g)``,
        ``(1|a/b)``, ``(1|a:b)``; the fixed part is Wilkinson notation
        (``recipe*temperature``, ``log(x)``, ``C(x)``).
    data : pandas.DataFrame or dask.dataframe.DataFrame
        A Dask DataFrame is reduced partition by partition to sufficient
        statistics and fitted by the PLS engine; fitted values and residuals
        then need the rows and are not available.
    reml : bool, default True
        REML (lme4's default) or maximum likelihood.
    engine : {"auto", "pls", "statsmodels"}
        ``"auto"`` and ``"pls"`` are lme4's profiled-deviance algorithm (any
        model; it reaches lme4's optimum, boundary optima included, and is the
        faster engine on every model both can fit). ``"statsmodels"`` is
        MixedLM (only where it expresses the model exactly, else
        :class:`~bayesmlm.errors.EngineError`); its optimum is checked against
        PLS's and :class:`~bayesmlm.errors.EngineWarning` says when it is lower.
    na_action : {"error", "drop"}
        Missing values in used columns raise (default) or drop rows with a warning.

    Returns
    -------
    FreqFit

    Warns
    -----
    SingularFitWarning
        A variance component is ~0 or a correlation is +-1.
    ConvergenceWarning
        The optimiser did not meet its convergence checks.
    EngineWarning
        ``engine="statsmodels"`` stopped below the PLS optimum (both logLiks given).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"), reml=False)
    >>> round(fit.loglik, 3)
    -875.97
    """
    return fit_design(make_design(formula, data, na_action), reml=reml, engine=engine)
