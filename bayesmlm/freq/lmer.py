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
from ..errors import ConvergenceWarning, EngineError, SingularFitWarning
from ..frame import NaAction
from .estimates import FitEstimates
from .pls_engine import fit_pls
from .result import FreqFit
from .statsmodels_engine import fit_statsmodels, near_boundary, statsmodels_plan

__all__ = ["lmer", "fit_design", "make_design"]

Engine = Literal["auto", "pls", "statsmodels"]


def _choose(design: Design) -> tuple[str, str]:
    if not design.rows_held:
        return "pls", "auto chose lme4's PLS algorithm: it works from the sufficient statistics of the Dask DataFrame"
    try:
        plan = statsmodels_plan(design)
    except EngineError as exc:
        return "pls", f"auto chose lme4's PLS algorithm: {exc}".replace("; use engine='pls'", "")
    if plan.kind == "crossed":
        return "pls", "auto chose lme4's PLS algorithm: crossed factors would need dense n x levels matrices in MixedLM"
    return "statsmodels", f"auto chose statsmodels MixedLM ({plan.kind} grouping maps onto it exactly)"


def make_design(formula: str, data, na_action: NaAction = "error") -> Design:
    """The design of a pandas frame, or the statistics-only design of a Dask DataFrame."""
    if is_dask_frame(data):
        return design_from_dask(formula, data, na_action=na_action)
    return build_design(formula, data, na_action=na_action)


def fit_design(design: Design, reml: bool = True, engine: Engine = "auto") -> FreqFit:
    """Fit an already built :class:`~bayesmlm.design.Design` (see :func:`lmer`)."""
    if engine not in ("auto", "pls", "statsmodels"):
        raise ValueError(f"engine must be 'auto', 'pls' or 'statsmodels', got {engine!r}")
    note = None
    chosen = engine
    if engine == "auto":
        chosen, note = _choose(design)
    estimates: FitEstimates
    if chosen == "statsmodels":
        try:
            estimates = fit_statsmodels(design, reml=reml)
        except EngineError as exc:
            if engine != "auto":
                raise
            chosen, note = "pls", f"{exc}; auto refitted with lme4's PLS algorithm".replace("; use engine='pls'", "")
    if chosen == "statsmodels":
        fit = FreqFit(design, estimates, reml, "statsmodels", note)
        boundary = near_boundary(estimates, design)
        if engine == "auto" and (boundary or not fit.converged):
            why = "a fit at or near the boundary" if boundary else "no convergence"
            note = f"statsmodels MixedLM gave {why}; refitted with lme4's PLS algorithm, which finds boundary optima"
            chosen = "pls"
        elif boundary and not fit.singular:
            warnings.warn(
                "statsmodels MixedLM ended near the boundary of the variance parameters, where it is known to "
                "stop short of the optimum (it reports a small SD where lme4 finds 0); refit with engine='pls'",
                SingularFitWarning,
                stacklevel=3,
            )
    if chosen == "pls":
        fit = FreqFit(design, fit_pls(design, reml=reml), reml, "pls", note)
    if fit.singular:
        warnings.warn(
            "boundary (singular) fit: "
            + "; ".join(fit.singular_components())
            + ". The data do not support this random-effects structure: simplify it (drop the "
            "component or the correlation), or fit it with a Bayesian model whose priors keep SDs off zero.",
            SingularFitWarning,
            stacklevel=3,
        )
    if not fit.converged:
        warnings.warn(
            "; ".join(fit.estimates.messages or ["the optimiser did not converge"]),
            ConvergenceWarning,
            stacklevel=3,
        )
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
        ``"pls"`` is lme4's profiled-deviance algorithm (any model);
        ``"statsmodels"`` is MixedLM (only where it expresses the model
        exactly, else :class:`~bayesmlm.errors.EngineError`); ``"auto"`` picks
        MixedLM for one factor or nested factors and PLS otherwise, and
        refits with PLS when MixedLM ends on the boundary.
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

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"), reml=False)
    >>> round(fit.loglik, 3)
    -875.97
    """
    return fit_design(make_design(formula, data, na_action), reml=reml, engine=engine)
