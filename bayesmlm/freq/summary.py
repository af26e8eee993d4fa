"""Text summary of a FreqFit, laid out like lme4's ``summary()``.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
>>> print(fit.summary().splitlines()[0])
Linear mixed model fit by REML (engine: pls)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .result import FreqFit

__all__ = ["format_summary", "random_effects_table", "scaled_residuals_lines", "groups_line",
           "fixed_correlation_lines", "problem_lines", "format_p"]


def random_effects_table(fit, residual: tuple[float, float] | None) -> str:
    """lme4's random-effects block (Groups, Name, Variance, Std.Dev., Corr) of an lmer or glmer fit.

    ``residual`` is the (variance, SD) of the Residual row, or None for families without one.
    """
    header = ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    rows = []
    for block, cov in zip(fit.design.blocks, fit.estimates.covariances):
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        for i, name in enumerate(block.columns):
            corrs = []
            for j in range(i):
                same_group = any(i in g and j in g for g in block.groups)
                if same_group and sd[i] > 0 and sd[j] > 0:
                    corrs.append(f"{cov[i, j] / (sd[i] * sd[j]):.2f}")
                elif same_group:
                    corrs.append("NaN")
            rows.append([block.factor if i == 0 else "", name, f"{cov[i, i]:.4g}", f"{sd[i]:.4g}", " ".join(corrs)])
    if residual is not None:
        rows.append(["Residual", "", f"{residual[0]:.4g}", f"{residual[1]:.4g}", ""])
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(5)]
    fmt = lambda r: " " + " ".join(  # noqa: E731
        r[k].ljust(widths[k]) if k in (0, 1, 4) else r[k].rjust(widths[k]) for k in range(5)
    ).rstrip()
    return "\n".join([fmt(header)] + [fmt(r) for r in rows])


def scaled_residuals_lines(scaled: np.ndarray) -> list[str]:
    """The "Scaled residuals:" block: quantiles of the residuals over sigma."""
    quant = pd.Series(np.quantile(scaled, [0, 0.25, 0.5, 0.75, 1.0]), index=["Min", "1Q", "Median", "3Q", "Max"])
    return ["", "Scaled residuals:", quant.to_frame().T.to_string(index=False, float_format=lambda v: f"{v:.4f}"), ""]


def groups_line(fit) -> str:
    """``Number of obs: n, groups:  g1, levels; ...``."""
    groups = ", ".join(f"{b.factor}, {b.n_levels}" for b in fit.design.blocks)
    return f"Number of obs: {fit.nobs}, groups:  {groups}"


def fixed_correlation_lines(fit) -> list[str]:
    """The "Correlation of Fixed Effects:" block (empty for one fixed effect)."""
    if fit.design.p <= 1:
        return []
    se = fit.se().to_numpy()
    corr = fit.vcov().to_numpy() / np.outer(se, se)
    short = [n[:6] for n in fit.design.fixed_names]
    table = pd.DataFrame(corr, index=fit.design.fixed_names, columns=short).iloc[1:, :-1]
    mask = np.triu(np.ones(table.shape, dtype=bool), 1)
    return ["", "Correlation of Fixed Effects:", table.round(3).astype(str).mask(mask, "").to_string()]


def problem_lines(fit, first: list[str] = ()) -> list[str]:
    """Boundary and convergence notes (after ``first``), preceded by a blank line when there are any."""
    notes = list(first)
    if fit.singular:
        notes.append("boundary (singular) fit: " + "; ".join(fit.singular_components()))
    if not fit.converged:
        notes.extend(fit.estimates.messages or ["the optimiser did not converge"])
    return [""] + notes if notes else []


def format_p(p: float) -> str:
    """p-values as R prints them: 3 significant digits, ``<2e-16`` below machine precision."""
    return "<2e-16" if p < 2.2e-16 else f"{p:.3g}"


def _fixed_effects_table(fit: "FreqFit") -> list[str]:
    """Estimates with Satterthwaite df and p (lmerTest's layout) when they are quick to compute."""
    import warnings

    from .inference.satterthwaite import satterthwaite_if_quick

    fixed = pd.DataFrame({"Estimate": fit.fixef(), "Std. Error": fit.se()})
    tests, note = None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            satt = satterthwaite_if_quick(fit)
        if satt is None:
            note = "df and p not computed here (a large model): see fit.coef_table()"
        else:
            tests = [satt.test_1d(row) for row in np.eye(fit.design.p)]
            if satt.messages:  # stated here instead of as warnings from a printout
                note = "Satterthwaite df: " + "; ".join(satt.messages)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        note = f"df and p not computed: {exc}"
    if tests is not None:
        fixed["df"] = [t.df for t in tests]
    fixed["t value"] = fixed["Estimate"] / fixed["Std. Error"]
    if tests is not None:
        fixed["Pr(>|t|)"] = [format_p(t.p) for t in tests]
    lines = [fixed.to_string(float_format=lambda v: f"{v:.4g}")]
    lines.append(note or "t tests use Satterthwaite's df (lmerTest); fit.coef_table(ddf='kenward-roger') for Kenward-Roger")
    return lines


def format_summary(fit: "FreqFit") -> str:
    """Render the lmer-style summary of a fit."""
    method = "REML" if fit.reml else "maximum likelihood"
    out = [f"Linear mixed model fit by {method} (engine: {fit.engine})", f"Formula: {fit.formula}"]
    if fit.engine_note:
        out.append(f"Engine note: {fit.engine_note}")
    out.append("")
    if fit.reml:
        out.append(f"REML criterion at convergence: {fit.criterion:.1f}")
    else:
        stats = pd.Series(
            {"AIC": fit.aic, "BIC": fit.bic, "logLik": fit.loglik, "deviance": fit.criterion, "df.resid": fit.nobs - fit.df}
        )
        out.append(stats.to_frame().T.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if fit.design.rows_held:
        out += scaled_residuals_lines(fit.residuals() / fit.sigma)
    else:
        out += ["", "Scaled residuals: not available (fitted from sufficient statistics of a Dask DataFrame)", ""]
    resid = fit.varcorr().iloc[-1]
    out += ["Random effects:", random_effects_table(fit, (resid.vcov, resid.sdcor)), groups_line(fit)]
    out += ["", "Fixed effects:"] + _fixed_effects_table(fit)
    out += fixed_correlation_lines(fit)
    out += problem_lines(fit)
    return "\n".join(out)
