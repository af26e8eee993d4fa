"""lmer against the posterior: one table per parameter class, and the figures that explain them.

``compare(fit, post)`` lines up lme4-style estimates with posterior summaries:

* ``fixed``: estimate and SE against posterior mean, SD and interval;
* ``scales``: group SDs and correlations;
* ``sigma``: the residual SD;
* ``levels``: every level's coefficient (fixed plus group effect), with its
  no-pooling (per-group least squares) estimate and the shrinkage towards the
  population value: ``1 - (partial - population) / (no pooling - population)``,
  0 for none, 1 for complete pooling (per coefficient: with correlated
  effects a level's intercept can be pulled past the population value, which
  shows as a value outside 0..1).

Each row says whether the lmer estimate lies inside the posterior interval.
Examples: :func:`compare`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .pooling import no_pooling
from .priors.spec import component_key

__all__ = ["Comparison", "compare"]

_SUMMARY = ["mean", "sd", "lower", "upper"]


def _interval(table: pd.DataFrame) -> pd.DataFrame:
    """Rename a BayesFit summary's quantile columns to lower/upper."""
    quantiles = [c for c in table.columns if c.endswith("%")]
    return table.rename(columns=dict(zip(quantiles, ["lower", "upper"])))


def _inside(table: pd.DataFrame) -> pd.DataFrame:
    table["lmer_inside"] = (table["lmer"] >= table["lower"]) & (table["lmer"] <= table["upper"])
    return table


@dataclass
class Comparison:
    """Tables comparing lmer estimates with the posterior (see module docstring).

    Attributes
    ----------
    fixed, scales, sigma, levels : pandas.DataFrame
    prob : float
        Probability of the equal-tailed posterior intervals.

    Examples
    --------
    See :func:`compare`.

    >>> import bayesmlm as bm
    >>> callable(bm.Comparison.plot_forest)
    True
    """

    fixed: pd.DataFrame
    scales: pd.DataFrame
    sigma: pd.DataFrame
    levels: pd.DataFrame
    prob: float

    def tables(self) -> dict[str, pd.DataFrame]:
        """The four tables by name."""
        return {"fixed effects": self.fixed, "group SDs and correlations": self.scales, "residual SD": self.sigma,
                "group-level coefficients": self.levels}

    def outside(self) -> pd.DataFrame:
        """Parameters (not levels) whose lmer estimate falls outside the posterior interval."""
        rows = [t.loc[~t["lmer_inside"], ["lmer", "mean", "lower", "upper"]] for t in (self.fixed, self.scales, self.sigma)]
        return pd.concat(rows)

    def __repr__(self) -> str:
        out = [f"lmer vs posterior ({self.prob:.0%} intervals)"]
        for name, table in self.tables().items():
            shown = table if len(table) <= 20 else table.head(20)
            out += ["", f"{name}:", shown.to_string(float_format=lambda v: f"{v:.4g}")]
            if len(table) > 20:
                out.append(f"... {len(table) - 20} more rows")
        return "\n".join(out)

    # -- figures -------------------------------------------------------------------
    def plot_forest(self) -> Figure:
        """Posterior mean and interval of every fixed effect, SD, correlation and sigma, lmer overlaid.

        Parameters live on different scales, so each gets its own row and axis.
        """
        table = pd.concat([self.fixed, self.scales, self.sigma])
        fig = Figure(figsize=(7, 0.42 * len(table) + 0.9), layout="constrained")
        axes = fig.subplots(len(table), 1, squeeze=False).ravel()
        for ax, (name, row) in zip(axes, table.iterrows()):
            ax.hlines(0, row["lower"], row["upper"], color="tab:blue", lw=3, label=f"posterior {self.prob:.0%} interval")
            ax.plot(row["mean"], 0, "o", color="tab:blue", label="posterior mean")
            ax.plot(row["lmer"], 0, "x", color="tab:red", markersize=9, mew=2, label="lmer estimate")
            ax.set_yticks([0], [str(name)], fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            for side in ("top", "right", "left"):
                ax.spines[side].set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=3, fontsize=8)
        return fig

    def plot_shrinkage(self, factor: str | None = None) -> Figure:
        """Arrows from each level's no-pooling estimate to its partial-pooling (posterior mean) coefficient.

        With two coefficients per level (intercept and slope) the arrows live in
        that plane; with one, levels are spread along the vertical axis.
        """
        levels = self.levels
        factor = factor or levels.index.get_level_values("factor")[0]
        part = levels.xs(factor, level="factor")
        terms = list(dict.fromkeys(part.index.get_level_values("term")))
        fig = Figure(figsize=(6, 5), layout="constrained")
        ax = fig.subplots()
        if len(terms) >= 2:
            tx, ty = terms[0], terms[1]
            x0, y0 = part.xs(tx, level="term")["no_pooling"], part.xs(ty, level="term")["no_pooling"]
            x1, y1 = part.xs(tx, level="term")["mean"], part.xs(ty, level="term")["mean"]
            ax.set_xlabel(tx)
            ax.set_ylabel(ty)
        else:
            tx = terms[0]
            x0, x1 = part.xs(tx, level="term")["no_pooling"], part.xs(tx, level="term")["mean"]
            y0 = y1 = pd.Series(np.arange(len(x0)), index=x0.index)
            ax.set_yticks(y0.to_numpy(), [str(i) for i in x0.index], fontsize=7)
            ax.set_xlabel(tx)
        ok = np.isfinite(x0.to_numpy()) & np.isfinite(y0.to_numpy())
        for a, b, c, d in zip(x0[ok], y0[ok], x1[ok], y1[ok]):
            ax.annotate("", xy=(c, d), xytext=(a, b), arrowprops={"arrowstyle": "->", "color": "tab:grey", "lw": 0.8})
        ax.plot(x0[ok], y0[ok], "o", color="tab:orange", label="no pooling (least squares per group)")
        ax.plot(x1, y1, "o", color="tab:green", label="partial pooling (posterior mean)")
        ax.set_title(f"Shrinkage of {factor} coefficients", fontsize=10)
        ax.legend(fontsize=8)
        return fig


def _levels_table(fit, post, prob: float) -> pd.DataFrame:
    design = post.design
    population = post.fixef(prob)["mean"]
    lmer_coef, posterior_coef = fit.coef(), post.coef(prob)
    rows = []
    for block in design.blocks:
        ours = _interval(posterior_coef[block.factor])
        unpooled = no_pooling(design, block.codes, block.levels)
        for level in block.levels:
            for term in block.columns:
                if term not in design.fixed_names:
                    continue
                r = ours.loc[(level, term)]
                nop = unpooled.loc[level, term]
                gap = nop - population[term]
                shrink = 1.0 - (r["mean"] - population[term]) / gap if np.isfinite(nop) and gap != 0 else np.nan
                rows.append({"factor": block.factor, "level": level, "term": term, "lmer": lmer_coef[block.factor].loc[level, term],
                             **{k: r[k] for k in _SUMMARY}, "no_pooling": nop, "shrinkage": shrink})
    table = pd.DataFrame(rows).set_index(["factor", "level", "term"])
    return _inside(table)


def compare(fit, post, prob: float = 0.9) -> Comparison:
    """Compare an lmer fit with a posterior of the same model (see module docstring).

    Parameters
    ----------
    fit : FreqFit
    post : BayesFit
    prob : float
        Probability of the posterior intervals.

    Raises
    ------
    ValueError
        When the two fits are of different formulas.

    Examples
    --------
    With ``df`` (sleepstudy) and ``post`` from the example of :func:`bayesmlm.sample`, and
    ``fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)``:

    >>> cmp = compare(fit, post)
    >>> cmp.fixed.columns.tolist()
    ['lmer', 'lmer_se', 'mean', 'sd', 'lower', 'upper', 'lmer_inside']
    >>> list(cmp.fixed.index), bool(cmp.fixed["lmer_inside"].all())
    (['Intercept', 'Days'], True)
    >>> cmp.levels.shape[0]  # 18 subjects x (Intercept, Days)
    36
    """
    if fit.formula != post.design.formula.text:
        raise ValueError(f"fit and posterior are of different models: {fit.formula!r} vs {post.design.formula.text!r}")
    post.design.require_rows("the comparison's no-pooling estimates")
    table = post.parameters(prob)
    vc = fit.varcorr()
    lmer = pd.concat([fit.fixef(), pd.Series(vc.sdcor.to_numpy(), index=[component_key(r.grp, r.var1, r.var2) for r in vc.itertuples()])])
    table.insert(0, "lmer", lmer.reindex(table.index))
    table = _inside(table)
    fixed_names = post.design.fixed_names
    fixed = table.loc[fixed_names]
    fixed.insert(1, "lmer_se", fit.se())
    scales = table.drop(index=[*fixed_names, "sigma"])
    return Comparison(fixed[["lmer", "lmer_se", *_SUMMARY, "lmer_inside"]], scales, table.loc[["sigma"]],
                      _levels_table(fit, post, prob), prob)

