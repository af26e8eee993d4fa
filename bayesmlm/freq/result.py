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

import numpy as np
import pandas as pd

from ..design import Design
from .estimates import FitEstimates, relative_factor

__all__ = ["FreqFit", "SINGULAR_TOL"]

SINGULAR_TOL = 1e-4
"""A relative-factor diagonal below this marks a boundary fit (lme4's isSingular)."""


class FreqFit:
    """A fitted linear mixed model with lme4's accessors.

    Created by :func:`bayesmlm.lmer`; not meant to be built by hand.

    Attributes
    ----------
    design : Design
    reml : bool
    engine : str
        ``"pls"`` or ``"statsmodels"``.
    engine_note : str or None
        Why ``engine="auto"`` chose this engine.

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
    def nobs(self) -> int:
        return self.design.n

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
    def theta(self) -> np.ndarray:
        """Relative covariance factor entries, blocks in model order."""
        return np.asarray(self.estimates.theta)

    @property
    def df(self) -> int:
        """Number of estimated parameters: fixed effects, theta and sigma."""
        return self.design.p + len(self.theta) + 1

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
    def messages(self) -> list[str]:
        """Convergence and boundary notes, in words."""
        return list(self.estimates.messages) + self.singular_components()

    @property
    def singular(self) -> bool:
        """True for a boundary fit: a variance ~0 or a correlation of +-1."""
        return bool(self.singular_components())

    def singular_components(self) -> list[str]:
        """Describe each component on the boundary (empty for a regular fit)."""
        out = []
        for block, cov in zip(self.design.blocks, self.estimates.covariances):
            rel = cov / self.sigma**2
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

    def varcorr(self) -> pd.DataFrame:
        """Variance components shaped like lme4's ``as.data.frame(VarCorr(fit))``.

        Columns ``grp, var1, var2, vcov, sdcor``: one row per variance (``sdcor``
        the SD), then one per covariance within each correlated group
        (``sdcor`` the correlation); the residual row last.
        """
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
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

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

    def summary(self) -> str:
        """Text summary laid out like lme4's ``summary(fit)``."""
        from .summary import format_summary

        return format_summary(self)

    def __repr__(self) -> str:
        return self.summary()
