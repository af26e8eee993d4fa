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

__all__ = ["format_summary"]


def _random_effects_table(fit: "FreqFit") -> str:
    vc = fit.varcorr()
    lines = []
    header = ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    rows = []
    for block, cov in zip(fit.design.blocks, fit.estimates.covariances):
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        first = True
        for i, name in enumerate(block.columns):
            corrs = []
            for j in range(i):
                same_group = any(i in g and j in g for g in block.groups)
                if same_group and sd[i] > 0 and sd[j] > 0:
                    corrs.append(f"{cov[i, j] / (sd[i] * sd[j]):.2f}")
                elif same_group:
                    corrs.append("NaN")
            rows.append([block.factor if first else "", name, f"{cov[i, i]:.4g}", f"{sd[i]:.4g}", " ".join(corrs)])
            first = False
    resid = vc.iloc[-1]
    rows.append(["Residual", "", f"{resid.vcov:.4g}", f"{resid.sdcor:.4g}", ""])
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(5)]
    fmt = lambda r: " " + " ".join(  # noqa: E731
        r[k].ljust(widths[k]) if k in (0, 1, 4) else r[k].rjust(widths[k]) for k in range(5)
    ).rstrip()
    lines.append(fmt(header))
    lines.extend(fmt(r) for r in rows)
    return "\n".join(lines)


def _format_p(p: float) -> str:
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
        fixed["Pr(>|t|)"] = [_format_p(t.p) for t in tests]
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
        scaled = fit.residuals() / fit.sigma
        quant = pd.Series(np.quantile(scaled, [0, 0.25, 0.5, 0.75, 1.0]), index=["Min", "1Q", "Median", "3Q", "Max"])
        out += ["", "Scaled residuals:", quant.to_frame().T.to_string(index=False, float_format=lambda v: f"{v:.4f}"), ""]
    else:
        out += ["", "Scaled residuals: not available (fitted from sufficient statistics of a Dask DataFrame)", ""]
    out += ["Random effects:", _random_effects_table(fit)]
    groups = ", ".join(f"{b.factor}, {b.n_levels}" for b in fit.design.blocks)
    out.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    out += ["", "Fixed effects:"] + _fixed_effects_table(fit)
    if fit.design.p > 1:
        se = fit.se().to_numpy()
        corr = fit.vcov().to_numpy() / np.outer(se, se)
        short = [n[:6] for n in fit.design.fixed_names]
        table = pd.DataFrame(corr, index=fit.design.fixed_names, columns=short).iloc[1:, :-1]
        mask = np.triu(np.ones(table.shape, dtype=bool), 1)
        text = table.round(3).astype(str).mask(mask, "")
        out += ["", "Correlation of Fixed Effects:", text.to_string()]
    notes = []
    if fit.singular:
        notes.append("boundary (singular) fit: " + "; ".join(fit.singular_components()))
    if not fit.converged:
        notes.extend(fit.estimates.messages or ["the optimiser did not converge"])
    if notes:
        out += [""] + notes
    return "\n".join(out)
