"""FreqFit: an lmer-style fitted model, whichever engine produced it.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> fit.fixef().round(3).to_dict()
{'Intercept': 251.405, 'Days': 10.467}
>>> vc = fit.varcorr()
>>> vc.grp.tolist(), vc.var1.tolist()[:2], bool(vc.var1.isna().iloc[-1])
(['Subject', 'Subject', 'Subject', 'Residual'], ['Intercept', 'Days'], True)
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from ..design import Design
from ..newdata import group_effects, new_design, unseen_levels_error
from .estimates import FitEstimates, relative_factor

__all__ = ["FreqFit", "MixedFitAccessors", "SINGULAR_TOL"]

SINGULAR_TOL = 1e-4
"""A relative-factor diagonal below this marks a boundary fit (lme4's isSingular)."""


class MixedFitAccessors:
    """The accessors of :class:`FreqFit` and :class:`~bayesmlm.freq.glmer_result.GlmerFit` that
    depend only on ``design`` and ``estimates`` (and the class's ``loglik`` and ``df``).

    A class using it sets ``design`` and ``estimates`` and defines ``_relative_covariances``:
    each block's covariance relative to the residual scale, whose Cholesky factor is
    checked for the boundary.
    """

    @property
    def nobs(self) -> int:
        return self.design.n

    @property
    def theta(self) -> np.ndarray:
        """Relative covariance factor entries, blocks in model order."""
        return np.asarray(self.estimates.theta)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.df

    @property
    def converged(self) -> bool:
        return bool(self.estimates.converged)

    @property
    def singular(self) -> bool:
        """True for a boundary fit: a variance ~0 or a correlation of +-1 (lme4's ``isSingular``)."""
        return bool(self.singular_components())

    def singular_components(self) -> list[str]:
        """Describe each component on the boundary (empty for a regular fit)."""
        out = []
        for block, rel in zip(self.design.blocks, self._relative_covariances()):
            L = relative_factor(rel)
            for j, name in enumerate(block.columns):
                if L[j, j] < SINGULAR_TOL:
                    if rel[j, j] < SINGULAR_TOL**2:
                        out.append(f"sd[{block.factor}][{name}] is ~0")
                    else:
                        out.append(f"{name} in {block.factor} is perfectly correlated with earlier columns")
        return out

    # -- fixed effects ---------------------------------------------------------------
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates indexed by design-column name."""
        return pd.Series(self.estimates.beta, index=self.design.fixed_names, name="Estimate")

    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effects estimates."""
        names = self.design.fixed_names
        return pd.DataFrame(self.estimates.vcov, index=names, columns=names)

    def se(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.estimates.vcov)), index=self.design.fixed_names, name="Std.Error")

    # -- random effects --------------------------------------------------------------
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes: factor -> DataFrame (levels x varying columns)."""
        return {
            b.factor: pd.DataFrame(values, index=pd.Index(b.levels, name=b.factor), columns=list(b.columns))
            for b, values in zip(self.design.blocks, self.estimates.ranef)
        }

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients: fixed effects plus that level's random effects."""
        fixed = self.fixef()
        out = {}
        for factor, re in self.ranef().items():
            table = pd.DataFrame(np.tile(fixed.to_numpy(), (len(re), 1)), index=re.index, columns=fixed.index)
            for col in re.columns:
                table[col] = (table[col] if col in table.columns else 0.0) + re[col]
            out[factor] = table
        return out

    def _varcorr_frame(self, residual: tuple | None) -> pd.DataFrame:
        """``as.data.frame(VarCorr(fit))``: the group rows, then ``residual`` (a row) if given."""
        rows = []
        for block, cov in zip(self.design.blocks, self.estimates.covariances):
            sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            for group in block.groups:
                for i in group:
                    rows.append((block.factor, block.columns[i], None, cov[i, i], sd[i]))
                for a, i in enumerate(group):
                    for j in group[a + 1 :]:
                        corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                        rows.append((block.factor, block.columns[i], block.columns[j], cov[i, j], corr))
        if residual is not None:
            rows.append(residual)
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


class FreqFit(MixedFitAccessors):
    """A fitted linear mixed model with lme4's accessors.

    Created by :func:`bayesmlm.lmer`; not meant to be built by hand.

    Attributes
    ----------
    design : Design
    reml : bool
    engine : str
        ``"pls"`` or ``"statsmodels"``.
    engine_note : str or None
        What to know about the engine's answer: for ``engine="statsmodels"``,
        the :class:`~bayesmlm.errors.EngineWarning` when PLS found a higher
        likelihood.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)
    >>> fit.fixef().round(2).tolist(), round(fit.sigma, 2), fit.singular
    ([251.41, 10.47], 25.59, False)
    >>> fit.varcorr()[["grp", "var1", "sdcor"]].round(2).head(2).to_dict("list")
    {'grp': ['Subject', 'Subject'], 'var1': ['Intercept', 'Days'], 'sdcor': [24.74, 5.92]}
    >>> fit.ranef()["Subject"].shape, fit.coef()["Subject"].shape
    ((18, 2), (18, 2))
    """

    def __init__(self, design: Design, estimates: FitEstimates, reml: bool, engine: str, engine_note: str | None = None):
        self.design = design
        self.estimates = estimates
        self.reml = reml
        self.engine = engine
        self.engine_note = engine_note

    # -- scalars ---------------------------------------------------------------------
    @property
    def formula(self) -> str:
        return self.design.formula.text

    @property
    def sigma(self) -> float:
        """Residual standard deviation."""
        return float(self.estimates.sigma)

    @property
    def loglik(self) -> float:
        """Log-likelihood; the REML log-likelihood for REML fits (as lme4's logLik)."""
        return float(self.estimates.loglik)

    @property
    def criterion(self) -> float:
        """REML criterion at convergence (REML) or deviance (ML)."""
        return float(self.estimates.criterion)

    @property
    def df(self) -> int:
        """Number of estimated parameters: fixed effects, theta and sigma."""
        return self.design.p + len(self.theta) + 1

    @property
    def messages(self) -> list[str]:
        """Convergence and boundary notes, in words."""
        return list(self.estimates.messages) + self.singular_components()

    def _relative_covariances(self) -> list[np.ndarray]:
        return [cov / self.sigma**2 for cov in self.estimates.covariances]

    def varcorr(self) -> pd.DataFrame:
        """Variance components shaped like lme4's ``as.data.frame(VarCorr(fit))``.

        Columns ``grp, var1, var2, vcov, sdcor``: one row per variance (``sdcor``
        the SD), then one per covariance within each correlated group
        (``sdcor`` the correlation); the residual row last.
        """
        return self._varcorr_frame(("Residual", None, None, self.sigma**2, self.sigma))

    # -- fitted values ---------------------------------------------------------------
    @cached_property
    def _b(self) -> np.ndarray:
        return np.concatenate([r.reshape(-1) for r in self.estimates.ranef])

    def fitted(self) -> np.ndarray:
        """Fitted values ``X beta + Z b`` on the model rows."""
        self.design.require_rows("fitted values")
        return self.design.X @ self.estimates.beta + self.design.Z @ self._b

    def residuals(self) -> np.ndarray:
        """Response minus fitted values."""
        return self.design.y - self.fitted()

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        re_form: Literal["fixed"] | None = None,
        new_levels: Literal["error", "population"] = "error",
    ) -> pd.Series:
        """Predicted mean response, as lme4's ``predict(fit, newdata, re.form, allow.new.levels)``.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            Rows with the columns the formula uses (the response is not needed),
            encoded as the fitted data were. ``None`` predicts the fitted rows.
        re_form : {None, "fixed"}
            ``None`` adds every group effect (lme4's ``re.form=NULL``);
            ``"fixed"`` uses the fixed effects only (``re.form=NA``), and the
            grouping columns are then not needed.
        new_levels : {"error", "population"}
            Grouping levels the model has not seen: raise naming them (lme4's
            default), or predict them at the population mean, group effect 0
            (``allow.new.levels=TRUE``). Seen levels keep their effects, so a
            new subject still gets a seen item's effect in a crossed model.

        Returns
        -------
        pandas.Series
            Indexed like ``newdata`` (the model rows ``0..n-1`` without it).

        Raises
        ------
        DataError
            A column the formula uses is missing (named), values are missing,
            or levels are unseen under ``new_levels="error"`` (named per factor).

        Examples
        --------
        >>> import bayesmlm as bm, pandas as pd
        >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
        >>> new = pd.DataFrame({"Subject": ["308", "a new subject"], "Days": [2, 2]})
        >>> fit.predict(new, new_levels="population").round(2).tolist()
        [293.0, 272.34]
        >>> fit.predict(new, re_form="fixed").round(2).tolist()
        [272.34, 272.34]
        >>> bool((fit.predict() == fit.fitted()).all())
        True
        """
        if re_form not in (None, "fixed"):
            raise ValueError(f"re_form must be None (all group effects) or 'fixed' (none), got {re_form!r}")
        if new_levels not in ("error", "population"):
            raise ValueError(f"new_levels must be 'error' or 'population', got {new_levels!r}")
        beta = self.estimates.beta
        if newdata is None:
            self.design.require_rows("predict() without newdata")
            mu = self.design.X @ beta if re_form == "fixed" else self.fitted()
            return pd.Series(mu, name="predict")
        nd = new_design(self.design, newdata, random=re_form is None)
        if nd.unseen and new_levels == "error":
            raise unseen_levels_error(
                nd.unseen,
                "pass new_levels='population' to predict them at the population mean (group effect 0, "
                "lme4's allow.new.levels=TRUE), or re_form='fixed' for fixed effects only",
            )
        mu = nd.X @ beta + group_effects(nd, self.estimates.ranef)
        return pd.Series(mu, index=newdata.index, name="predict")

    def summary(self) -> str:
        """Text summary laid out like lme4's ``summary(fit)``."""
        from .summary import format_summary

        return format_summary(self)

    def __repr__(self) -> str:
        return self.summary()


    # -- inference (lmerTest, pbkrtest, lme4's confint): see bayesmlm.freq.inference ----------
    def coef_table(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Fixed effects with t tests: columns ``estimate se df t p`` (lmerTest's summary table).

        ``ddf`` is ``"satterthwaite"`` (default), ``"kenward-roger"`` (adjusted
        SEs, REML fits only) or ``"none"`` (normal distribution).

        Examples
        --------
        >>> import bayesmlm as bm
        >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
        >>> fit.coef_table().loc["Days", ["df", "t"]].round(2).tolist()
        [17.0, 6.77]
        """
        from .inference import coef_table

        return coef_table(self, ddf=ddf)

    def anova(self, ddf: str = "satterthwaite", type: int = 3) -> pd.DataFrame:
        """Type III F tests per fixed-effects term: columns ``num_df den_df F p`` (lmerTest's anova).

        Examples
        --------
        >>> import bayesmlm as bm
        >>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
        >>> fit.anova(ddf="kenward-roger").loc["Days", ["num_df", "den_df", "F"]].round(2).tolist()
        [1.0, 17.0, 45.85]
        """
        from .inference import fixed_anova

        return fixed_anova(self, ddf=ddf, type=type)

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        nsim: int = 500,
        seed: int | None = None,
        n_jobs: int | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Confidence intervals (``"wald"``, ``"profile"`` or ``"boot"``): columns ``lower upper``.

        Rows: fixed effects, then ``sd[...]``, ``cor[...]`` and ``sigma``
        (NaN for these with ``"wald"``, as lme4). See
        :func:`bayesmlm.freq.inference.confint`.

        Examples
        --------
        >>> import bayesmlm as bm
        >>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
        >>> fit.confint("profile").round(1).loc[["sd[Batch][Intercept]", "sigma"]].values.tolist()
        [[12.2, 84.1], [38.2, 67.7]]
        """
        from .inference import confint

        return confint(self, method=method, level=level, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress)

    def profile(self, which=None, n_jobs: int | None = 1, **kwargs):
        """Likelihood profiles of the parameters (lme4's ``profile``): a :class:`~bayesmlm.freq.inference.Profile`.

        Examples
        --------
        >>> import bayesmlm as bm
        >>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
        >>> prof = fit.profile(which=["sigma"])
        >>> list(prof.table.columns[:3]), prof.confint().round(1).values.tolist()
        (['parameter', 'zeta', 'value'], [[38.2, 67.7]])
        """
        from .inference import profile

        return profile(self, which=which, n_jobs=n_jobs, **kwargs)

    def bootstrap(self, nsim: int = 500, seed: int | None = None, n_jobs: int | None = None, progress: bool = False):
        """Parametric bootstrap replicates (lme4's ``bootMer``): a :class:`~bayesmlm.freq.inference.Bootstrap`.

        Examples
        --------
        >>> import bayesmlm as bm
        >>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
        >>> fit.bootstrap(nsim=10, seed=1, n_jobs=1).draws.shape
        (10, 3)
        """
        from .inference import bootstrap

        return bootstrap(self, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress)
