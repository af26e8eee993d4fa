"""GlmerFit: a fitted generalized linear mixed model with lme4's accessors, summary and predictions.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"))
>>> print(fit.summary().splitlines()[1])
 Family: binomial  ( logit )
>>> fit.residuals(type="pearson").shape, fit.fitted().shape
((56,), (56,))
"""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..design import Design
from ..errors import ConvergenceWarning, DataError
from ..families import Family, NegativeBinomial
from ..newdata import new_design
from .estimates import FitEstimates
from .glmer_fit import GlmerSolution
from .pirls import PirlsEngine
from .result import MixedFitAccessors
from .summary import (fixed_correlation_lines, format_p, groups_line, problem_lines, random_effects_table,
                      scaled_residuals_lines)

__all__ = ["GlmerFit", "SeparationWarning", "find_separation"]


class SeparationWarning(ConvergenceWarning):
    """Complete or quasi-complete separation: some fixed effects are estimated as +-infinity."""


def find_separation(X: np.ndarray, y: np.ndarray, wt: np.ndarray, names: list[str], tol: float = 1e-7) -> list[str]:
    """Fixed effects along which a binary/binomial outcome is (quasi-)completely separated.

    The linear program of Konis (2007): find a direction ``d`` (``|d_j| <= 1``)
    with ``x_i'd >= 0`` for every success, ``<= 0`` for every failure, maximising
    the total. A positive optimum means the likelihood keeps increasing along
    ``d``: the estimates of the columns where ``d`` is non-zero are infinite.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1.0]])
    >>> find_separation(X, np.array([0, 1, 0, 1, 1, 1.0]), np.ones(6), ["Intercept", "treated"])
    ['treated']
    """
    keep = wt > 0
    X, y, wt = X[keep], y[keep], wt[keep]
    if X.shape[1] == 0 or len(y) == 0:
        return []
    scale = np.maximum(np.abs(X).max(axis=0), 1e-12)
    Xs = X / scale
    succ = (y * wt) > 1e-12
    fail = ((1 - y) * wt) > 1e-12
    rows = [Xs[succ], -Xs[fail]]
    A = np.unique(np.vstack(rows), axis=0)
    res = optimize.linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(len(A)), bounds=[(-1, 1)] * X.shape[1], method="highs")
    if not res.success or -res.fun <= tol * len(A):
        return []
    d = res.x
    return [n for n, v in zip(names, d) if abs(v) > 1e-6]


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


class GlmerFit(MixedFitAccessors):
    """A fitted GLMM with the FreqFit vocabulary (``fixef se vcov ranef coef varcorr``).

    Created by :func:`bayesmlm.glmer`. ``loglik`` and ``aic`` are lme4's (the
    Laplace approximation includes every constant, e.g. the binomial
    coefficients; adaptive quadrature, as in lme4, reports the log-likelihood
    relative to the saturated model). ``deviance`` is lme4's ``deviance()``: the
    sum of squared deviance residuals.

    Attributes
    ----------
    design : Design
    family : Family
    nAGQ : int
    engine : str
        ``"pirls"``.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"))
    >>> fit.se().round(3).tolist(), round(fit.aic, 1), fit.df_resid
    ([0.231, 0.303, 0.323, 0.422], 194.1, 51)
    >>> fit.varcorr()[["grp", "var1", "sdcor"]].round(3).to_dict("list")
    {'grp': ['herd'], 'var1': ['Intercept'], 'sdcor': [0.642]}
    """

    engine = "pirls"
    engine_note = None

    def __init__(self, design: Design, engine: PirlsEngine, solution: GlmerSolution, formula: str,
                 offset_terms: list[str], offset_arg=None, weights_arg=None, index=None):
        self.design = design
        self._engine = engine
        self.solution = solution
        self.family: Family = solution.family
        self.nAGQ = solution.nAGQ
        self._formula = formula
        self.offset_terms = list(offset_terms)
        self.separation: list[str] = []
        self.row_index = index
        self._has_offset_arg = offset_arg is not None
        T = engine.templates(solution.theta)
        b = engine.b(solution.state.u)
        offsets = design.offsets
        ranef = [b[offsets[k] : offsets[k + 1]].reshape(blk.n_levels, blk.n_cols) for k, blk in enumerate(design.blocks)]
        self.estimates = FitEstimates(
            beta=np.asarray(solution.beta, dtype=float),
            vcov=np.asarray(solution.vcov, dtype=float),
            sigma=self.sigma,
            covariances=[t @ t.T for t in T],
            ranef=ranef,
            loglik=-0.5 * solution.deviance,
            criterion=solution.deviance,
            theta=np.asarray(solution.theta, dtype=float),
            converged=solution.converged,
            messages=list(solution.messages),
            evaluations=solution.evaluations,
        )

    # -- scalars ---------------------------------------------------------------------
    @property
    def formula(self) -> str:
        return self._formula

    @property
    def method(self) -> str:
        """``"Laplace"``, ``"AGQ(25)"`` or ``"nAGQ=0"``."""
        return "Laplace" if self.nAGQ == 1 else "nAGQ=0" if self.nAGQ == 0 else f"AGQ({self.nAGQ})"

    @property
    def phi(self) -> float | None:
        """Negative binomial dispersion (R's ``theta``); None for other families."""
        return self.family.phi if isinstance(self.family, NegativeBinomial) else None

    @cached_property
    def sigma(self) -> float:
        """lme4's ``sigma()``: ``sqrt(pwrss / n)`` for the Gamma, 1 for binomial, Poisson and the
        negative binomial (whose dispersion is :attr:`phi`)."""
        if not self.family.has_dispersion or self.phi is not None:
            return 1.0
        st = self.solution.state
        eng = self._engine
        wrss = float(np.sum(eng.wt * (eng.y - st.mu) ** 2 / self.family.variance(st.mu)))
        return float(np.sqrt((wrss + st.sqr_u) / eng.n))

    @property
    def loglik(self) -> float:
        """lme4's ``logLik`` (``-deviance_criterion / 2``)."""
        return float(self.estimates.loglik)

    @property
    def df(self) -> int:
        """Estimated parameters: fixed effects, theta and, for the Gamma and negative binomial, one
        dispersion parameter (lme4's ``useSc``; for ``glmer.nb`` that is ``phi``)."""
        return self.design.p + len(self.theta) + int(self.family.has_dispersion)

    @property
    def deviance(self) -> float:
        """lme4's ``deviance()`` of a GLMM: the sum of squared deviance residuals."""
        return float(self.solution.state.dev_resid)

    @property
    def df_resid(self) -> int:
        return self.nobs - self.df

    @property
    def messages(self) -> list[str]:
        out = list(self.estimates.messages) + self.singular_components()
        if self.separation:
            out.append(self.separation_message())
        return out

    def _relative_covariances(self) -> list[np.ndarray]:
        return self.estimates.covariances

    def separation_message(self) -> str:
        names = ", ".join(self.separation)
        return (
            f"complete separation: the outcome is perfectly predicted along the fixed effect(s) {names} (some "
            "combination of them has only successes on one side and only failures on the other), so their "
            "maximum-likelihood estimates are infinite and the reported values and standard errors are meaningless. "
            "Merge or drop the categories involved, remove the predictor, or fit a Bayesian model whose priors "
            "keep these effects finite"
        )

    def varcorr(self) -> pd.DataFrame:
        """Variance components like lme4's ``as.data.frame(VarCorr(fit))`` (``grp, var1, var2, vcov, sdcor``).

        Binomial and Poisson fits have no residual row; Gamma fits end with
        lme4's ``Residual`` row (``sigma``). Variances are those of the random
        effects on the link scale (``Lambda Lambda'``; current lme4 no longer
        multiplies them by ``sigma^2`` for GLMMs).
        """
        has_residual = self.family.has_dispersion and self.phi is None
        return self._varcorr_frame(("Residual", None, None, self.sigma**2, self.sigma) if has_residual else None)

    # -- fitted values and residuals -------------------------------------------------
    def linear_predictor(self) -> np.ndarray:
        """``eta = offset + X beta + Z b`` on the model rows."""
        return self.solution.state.eta.copy()

    def fitted(self) -> np.ndarray:
        """Fitted means on the response scale (proportions for a binomial response)."""
        return self.solution.state.mu.copy()

    @property
    def y(self) -> np.ndarray:
        """The response as fitted (proportion of successes for a binomial)."""
        return self._engine.y

    @property
    def prior_weights(self) -> np.ndarray:
        """Prior weights (binomial: trials)."""
        return self._engine.wt

    @property
    def offset(self) -> np.ndarray:
        """The offset on the model rows (``offset()`` terms plus ``offset=``; zeros without one)."""
        return self._engine.offset.copy()

    def working_weights(self) -> np.ndarray:
        """IRLS weights ``wt * (d mu / d eta)^2 / V(mu)`` at the conditional modes (what PIRLS converged on).

        The Laplace approximation's conditional precision of the spherical random effects
        is ``Lambda' Z' W Z Lambda + I`` with ``W`` these weights (lme4's ``condVar``).

        Examples
        --------
        >>> import bayesmlm as bm, numpy as np
        >>> fit = bm.glmer("TICKS ~ YEAR + (1 | BROOD)", bm.datasets.load("grouseticks"), family="poisson")
        >>> bool(np.allclose(fit.working_weights(), fit.fitted()))  # Poisson, log link: W = mu
        True
        """
        return self._engine.weights(self.solution.state.eta)

    def residuals(self, type: str = "deviance") -> np.ndarray:
        """Residuals as lme4's ``residuals(fit, type)``.

        Parameters
        ----------
        type : {"deviance", "pearson", "response", "working"}
        """
        y, mu, wt = self._engine.y, self.solution.state.mu, self._engine.wt
        fam = self.family
        if type == "deviance":
            d = np.sqrt(np.maximum(fam.dev_resids(y, mu, wt), 0.0))
            return np.where(y > mu, d, -d)
        if type == "pearson":
            return np.sqrt(wt / fam.variance(mu)) * (y - mu)
        if type == "response":
            return y - mu
        if type == "working":
            return (y - mu) / fam.link.mu_eta(self.solution.state.eta)
        raise ValueError(f"type must be 'deviance', 'pearson', 'response' or 'working', got {type!r}")

    # -- prediction ------------------------------------------------------------------
    def predict(self, newdata: pd.DataFrame | None = None, type: str = "link", re_form=None,
                new_levels: str = "error", offset=None) -> np.ndarray:
        """Predictions on the link or response scale, as lme4's ``predict``.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New rows (the response is not needed); the model rows when omitted.
        type : {"link", "response"}
        re_form : None or "fixed"
            ``None`` includes the random effects; ``"fixed"`` (or ``"~0"``, NA)
            the fixed effects only (population level), and the grouping
            columns are then not needed.
        new_levels : {"error", "population"}
            Levels not seen in the fit: raise (default, listing them) or predict
            them at the population level (random effect 0), as lme4's
            ``allow.new.levels = TRUE``.
        offset : array-like or str, optional
            Offset of the new rows when the model was fitted with ``offset=``
            (``offset()`` terms of the formula are re-evaluated on ``newdata``):
            one value per row of ``newdata``, one for all, or a column of ``newdata``.

        Examples
        --------
        >>> import bayesmlm as bm, pandas as pd
        >>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"))
        >>> fit.predict(pd.DataFrame({"period": ["1", "2"]}), re_form="fixed").round(3).tolist()
        [-1.398, -2.39]
        """
        if type not in ("link", "response"):
            raise ValueError(f"type must be 'link' or 'response', got {type!r}")
        if new_levels not in ("error", "population"):
            raise ValueError(f"new_levels must be 'error' or 'population', got {new_levels!r}")
        fixed_only = re_form is not None and (
            (isinstance(re_form, str) and re_form.replace(" ", "") in ("fixed", "~0", "NA")) or
            (isinstance(re_form, float) and np.isnan(re_form))
        )
        if re_form is not None and not fixed_only:
            raise ValueError(f"re_form must be None (all random effects) or 'fixed', got {re_form!r}")
        beta = self.estimates.beta
        if newdata is None:
            eta = self.solution.state.eta
            if fixed_only:
                eta = self._engine.offset + self.design.X @ beta
            return self.family.link.inverse(eta) if type == "response" else eta.copy()
        nd = new_design(self.design, newdata, random=not fixed_only)
        eta = nd.X @ beta
        from .glmer import _evaluate  # the same evaluation as in the fit

        frame = newdata.reset_index(drop=True)
        for expr in self.offset_terms:
            eta = eta + np.asarray(_evaluate(expr, frame, "offset"), dtype=float)
        if offset is not None:
            if isinstance(offset, str):
                if offset not in newdata.columns:
                    raise DataError(f"offset={offset!r} is not a column of newdata; pass a column name of newdata "
                                    "or one value per row")
                offset = newdata[offset]
            try:
                values = np.asarray(offset, dtype=float).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise DataError(f"offset= must be numbers, one per row of newdata, or a column name: {exc}") from exc
            if values.size not in (1, nd.n):
                raise DataError(
                    f"offset= has {values.size} values for {nd.n} rows of newdata; pass one value per row of "
                    "newdata (or a single value for all of them)"
                )
            eta = eta + values
        elif self._has_offset_arg:
            warnings.warn("the model was fitted with offset=; pass offset= for the new rows (0 used)", UserWarning, stacklevel=2)
        if not fixed_only:
            if nd.unseen and new_levels == "error":
                detail = "; ".join(f"{f}: {', '.join(map(repr, lv[:5]))}" + (" ..." if len(lv) > 5 else "")
                                   for f, lv in nd.unseen.items())
                raise DataError(
                    f"new data have levels the model has not seen ({detail}); pass new_levels='population' to "
                    "predict them at the population level, or re_form='fixed'"
                )
            for block, re, codes, values in zip(self.design.blocks, self.estimates.ranef, nd.codes, nd.values):
                seen = codes >= 0
                contrib = np.zeros(nd.n)
                contrib[seen] = np.sum(values[seen] * re[codes[seen]], axis=1)
                eta = eta + contrib
        return self.family.link.inverse(eta) if type == "response" else eta

    # -- text ------------------------------------------------------------------------
    def summary(self) -> str:
        """Text summary laid out like lme4's ``summary(glmer_fit)``."""
        return format_glmer_summary(self)

    def __repr__(self) -> str:
        return self.summary()


def format_glmer_summary(fit: GlmerFit) -> str:
    """lme4's glmer summary: family/link, fit statistics, scaled residuals, random and fixed effects."""
    how = {
        0: "maximum likelihood (nAGQ = 0: fixed effects inside PIRLS)",
        1: "maximum likelihood (Laplace Approximation)",
    }.get(fit.nAGQ, f"maximum likelihood (Adaptive Gauss-Hermite Quadrature, nAGQ = {fit.nAGQ})")
    out = [f"Generalized linear mixed model fit by {how} (engine: {fit.engine})",
           f" Family: {fit.family.label}  ( {fit.family.link.name} )",
           f"Formula: {fit.formula}", ""]
    stats_row = pd.Series({"AIC": fit.aic, "BIC": fit.bic, "logLik": fit.loglik, "deviance": -2 * fit.loglik,
                           "df.resid": fit.df_resid})
    out.append(stats_row.to_frame().T.astype(object).to_string(
        index=False, formatters={k: (lambda v: f"{v:.1f}") for k in ["AIC", "BIC", "logLik", "deviance"]}
        | {"df.resid": lambda v: f"{int(v)}"}))
    out += scaled_residuals_lines(fit.residuals("pearson") / fit.sigma)
    residual = (fit.sigma**2, fit.sigma) if fit.family.has_dispersion and fit.phi is None else None
    out += ["Random effects:", random_effects_table(fit, residual), groups_line(fit)]
    if fit.phi is not None:
        out.append(f"Negative binomial dispersion phi (R's theta): {fit.phi:.4g}")
    est, se = fit.fixef(), fit.se()
    z = est / se
    p = 2 * stats.norm.sf(np.abs(z))
    table = pd.DataFrame({"Estimate": est.map(lambda v: f"{v:.4g}"), "Std. Error": se.map(lambda v: f"{v:.4g}"),
                          "z value": z.map(lambda v: f"{v:.3f}"),
                          "Pr(>|z|)": [format_p(v) for v in p],
                          "": [_stars(v) for v in p]})
    out += ["", "Fixed effects:", table.to_string(), "---",
            "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    out += fixed_correlation_lines(fit)
    out += problem_lines(fit, [fit.separation_message()] if fit.separation else [])
    return "\n".join(out)
