"""lmer against the posterior: one table per parameter class, and the figures that explain them.

``compare(fit, post)`` lines up lme4-style estimates with posterior summaries:

* ``fixed``: estimate and SE against posterior mean, SD and interval;
* ``scales``: group SDs and correlations;
* ``sigma``: the residual SD;
* ``levels``: every level's coefficient (fixed plus group effect), with its
  no-pooling estimate (the population value plus the level's own least-squares
  fit to the partial residual: the response minus the fixed part and the other
  factors' group effects, all at their posterior means, factors nested inside
  the level's factor left in; see :mod:`bayesmlm.pooling`) and the shrinkage
  towards the population value:
  ``1 - (partial - population) / (no pooling - population)``, 0 for none, 1 for
  complete pooling. A value outside 0..1 is explained in words in
  ``shrinkage_note``: when the no-pooling estimate lies close to the population
  value the ratio is within its Monte Carlo error of 0 or 1, or unstable; and
  with two or more varying columns a level's coefficients are shrunk jointly,
  so one can be pulled past the population value (> 1) or away from it (< 0)
  by its correlated partner;
* ``pooling``: the pooling factor of each factor's varying column
  (Gelman & Pardoe 2006), from the posterior draws and from lmer
  (:func:`bayesmlm.pooling.pooling_factors`): 0 = no pooling, 1 = complete.

Each parameter row says whether the lmer estimate lies inside the posterior
interval. A posterior with a response family is compared with a glmer fit (the
``lmer`` columns then hold glmer's estimates) on the link scale: ``sigma`` holds
the family's parameters, the no-pooling estimate is each level's own
maximum-likelihood GLM with the fixed part and the other factors' effects
(posterior means) as an offset (:mod:`bayesmlm.pooling_glm`; a level its rows
cannot identify, e.g. all 0, has none and the note says why), and lmer's pooling
factor uses glmer's conditional modes and Laplace conditional variances.
Examples: :func:`compare`.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .pooling import no_pooling, pooling_factors, posterior_effects
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
    fixed, scales, sigma, levels, pooling : pandas.DataFrame
    prob : float
        Probability of the equal-tailed posterior intervals.
    family : Family or None
        The response family (None: gaussian); its estimates are on the link scale.

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
    pooling: pd.DataFrame
    prob: float
    family: object = None

    @property
    def scale(self) -> str:
        """The scale of coefficients and group SDs: ``"response scale"``, or the link's (``"log scale"``)."""
        from .pooling_glm import link_scale

        return link_scale(self.family)

    @property
    def engine(self) -> str:
        """Which frequentist fit the posterior is compared with: ``"lmer"`` or ``"glmer"`` (the
        tables' ``lmer`` columns hold either, one vocabulary for both)."""
        return "lmer" if self.family is None else "glmer"

    def tables(self) -> dict[str, pd.DataFrame]:
        """The five tables by name."""
        sigma = "residual SD" if self.family is None else "family parameters"
        return {"fixed effects": self.fixed, "group SDs and correlations": self.scales, sigma: self.sigma,
                "pooling factors": self.pooling, "group-level coefficients": self.levels}

    def outside(self) -> pd.DataFrame:
        """Parameters (not levels) whose lmer estimate falls outside the posterior interval."""
        rows = [t.loc[~t["lmer_inside"], ["lmer", "mean", "lower", "upper"]] for t in (self.fixed, self.scales, self.sigma)]
        return pd.concat(rows)

    def __repr__(self) -> str:
        out = [f"lmer vs posterior ({self.prob:.0%} intervals)" if self.family is None else
               f"glmer vs posterior ({self.prob:.0%} intervals; {self.family.name}, {self.scale})"]
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
            ax.plot(row["lmer"], 0, "x", color="tab:red", markersize=9, mew=2, label=f"{self.engine} estimate")
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
        unit = "" if self.family is None else f" ({self.scale})"
        if len(terms) >= 2:
            tx, ty = terms[0], terms[1]
            x0, y0 = part.xs(tx, level="term")["no_pooling"], part.xs(ty, level="term")["no_pooling"]
            x1, y1 = part.xs(tx, level="term")["mean"], part.xs(ty, level="term")["mean"]
            ax.set_xlabel(tx + unit)
            ax.set_ylabel(ty + unit)
        else:
            tx = terms[0]
            x0, x1 = part.xs(tx, level="term")["no_pooling"], part.xs(tx, level="term")["mean"]
            y0 = y1 = pd.Series(np.arange(len(x0)), index=x0.index)
            ax.set_yticks(y0.to_numpy(), [str(i) for i in x0.index], fontsize=7)
            ax.set_xlabel(tx + unit)
        ok = np.isfinite(x0.to_numpy()) & np.isfinite(y0.to_numpy())
        for a, b, c, d in zip(x0[ok], y0[ok], x1[ok], y1[ok]):
            ax.annotate("", xy=(c, d), xytext=(a, b), arrowprops={"arrowstyle": "->", "color": "tab:grey", "lw": 0.8})
        own = ("least squares of the partial residual" if self.family is None
               else "the level's own GLM, the rest as offset")
        ax.plot(x0[ok], y0[ok], "o", color="tab:orange", label=f"no pooling ({own})")
        ax.plot(x1, y1, "o", color="tab:green", label="partial pooling (posterior mean)")
        missing = int((~ok).sum())
        title = f"Shrinkage of {factor} coefficients"
        if missing:
            title += f"\n({missing} level(s) without a no-pooling estimate: see the table's note)"
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        return fig


_IN_RANGE_SLACK = 1e-9
"""Round-off allowed at the ends of 0..1 before a shrinkage needs explaining."""


def _shrinkage_note(shrink: float, gap: float, sd: float, mcse: float, term: str, partners: list[str]) -> str:
    """Why a level's shrinkage is undefined or outside 0..1, in words ('' when it needs no explanation).

    ``gap`` is no pooling minus the population value, ``sd`` and ``mcse`` the
    posterior SD and Monte Carlo standard error of the level's coefficient.
    """
    if np.isnan(gap):
        return "no pooling not identified: too few rows, or a varying column constant within the level"
    if gap == 0:
        return "no-pooling estimate equals the population value: nothing to shrink"
    if -_IN_RANGE_SLACK <= shrink <= 1 + _IN_RANGE_SLACK:
        return ""
    moved = "pulled past the population value" if shrink > 1 else "moved away from the population value"
    excess, error = max(-shrink, shrink - 1), 2 * mcse / abs(gap)
    if excess <= error:
        return (f"{moved} by {excess:.2g}, within this ratio's Monte Carlo error (+-{error:.2g}: two standard "
                "errors of the posterior mean over the gap), so consistent with 0 to 1; the no-pooling estimate is "
                "too close to the population value for a precise ratio")
    if abs(gap) < sd:
        return (f"{moved}: the no-pooling estimate lies only {abs(gap) / sd:.2g} posterior SD from the population "
                "value, so this ratio of two small numbers is unstable")
    if partners:
        return (f"{moved} together with this level's {', '.join(partners)}: the level's coefficients are shrunk "
                f"jointly, and its estimates of {term} and {', '.join(partners)} are correlated (correlated group "
                "effects, or a predictor far from 0 in its rows)")
    return f"{moved}, which a single varying column should not be: check the sampler diagnostics"


def _coefficient_mcse(post, block, terms: list[str]) -> np.ndarray:
    """Monte Carlo standard error of the posterior mean of each level's coefficients: (levels, terms)."""
    posterior = post.idata["posterior"].dataset
    beta = np.asarray(posterior["beta"])[:, :, [post.design.fixed_names.index(t) for t in terms]]
    effects = np.asarray(posterior[f"r[{block.factor}]"])[:, :, :, [block.columns.index(t) for t in terms]]
    return np.asarray(az.mcse(beta[:, :, None, :] + effects))


def _unpooled(fit, post, factor: str, effects) -> tuple[pd.DataFrame, dict]:
    """No pooling at the posterior means, and why levels have none (least squares, or the family's GLM)."""
    design = post.design
    if design.family is None:
        return no_pooling(design, factor, effects), {}
    from .pooling_glm import glm_no_pooling, glm_rows

    table = glm_no_pooling(design, glm_rows(design, family=fit.family), factor, effects)  # glmer's NB phi
    return table, table.attrs["notes"]


def _levels_table(fit, post, prob: float) -> pd.DataFrame:
    design = post.design
    effects = posterior_effects(post)
    population = effects[0]
    lmer_coef, posterior_coef = fit.coef(), post.coef(prob)
    rows = []
    for block in design.blocks:
        ours = _interval(posterior_coef[block.factor])
        unpooled, reasons = _unpooled(fit, post, block.factor, effects)
        terms = [t for t in block.columns if t in design.fixed_names]  # a varying column without a fixed effect has no coefficient row
        if not terms:
            continue
        mcse = _coefficient_mcse(post, block, terms)
        for i, level in enumerate(block.levels):
            for j, term in enumerate(terms):
                r = ours.loc[(level, term)]
                nop = unpooled.loc[level, term]
                gap = nop - population[term]
                shrink = 1.0 - (r["mean"] - population[term]) / gap if np.isfinite(gap) and gap != 0 else np.nan
                note = _shrinkage_note(shrink, gap, r["sd"], mcse[i, j], term, [t for t in block.columns if t != term])
                if level in reasons:
                    note = f"no pooling not identified: {reasons[level]}"
                rows.append({"factor": block.factor, "level": level, "term": term, "lmer": lmer_coef[block.factor].loc[level, term],
                             **{k: r[k] for k in _SUMMARY}, "no_pooling": nop, "shrinkage": shrink, "shrinkage_note": note})
    table = pd.DataFrame(rows).set_index(["factor", "level", "term"])
    return _inside(table)


def compare(fit, post, prob: float = 0.9) -> Comparison:
    """Compare an lmer fit with a posterior of the same model (see module docstring).

    Parameters
    ----------
    fit : FreqFit or GlmerFit
        lmer fit; for a posterior with a response family, the glmer fit of the same family.
    post : BayesFit
    prob : float
        Probability of the posterior intervals.

    Raises
    ------
    ValueError
        When the two fits are of different models (fixed effects, grouping factors, varying
        columns or their correlations: compared by structure, so spacing or ``cbind`` against
        ``trials=`` does not matter) or families.
    TypeError
        An lmer fit with a family posterior.
    DataError
        When they were fitted to different data (row count, response values,
        fixed-effects columns or grouping levels; for a family also trials, weights
        and offsets; the message says which and how).

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
    >>> cmp.pooling.columns.tolist()  # pooling factor per factor and term: 0 = none, 1 = complete
    ['levels', 'lmer', 'Bayes']
    """
    from .pooling_glm import require_same_fits

    if post.design.family is not None:
        return _compare_family(fit, post, prob)
    post.design.require_rows("the comparison's no-pooling estimates")
    require_same_fits(fit, post, "compare")  # same model by structure (not formula text) and same data
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
                      _levels_table(fit, post, prob), pooling_factors(fit, post), prob)



def _compare_family(fit, post, prob: float) -> Comparison:
    """:func:`compare` for a posterior with a response family and a glmer fit, on the link scale.

    ``sigma`` holds the family's parameters (``phi``, ``shape``, ``sigma``, ``nu``; empty for the
    binomial and Poisson). No pooling is each level's maximum-likelihood GLM at the posterior
    means (:mod:`bayesmlm.pooling_glm`), lmer's pooling factors glmer's (Laplace ``condVar``).
    """
    from .pooling_glm import require_same_fits

    require_same_fits(fit, post, "compare")  # type, model structure, family and link, data, trials and offsets
    table = post.parameters(prob)
    vc = fit.varcorr()
    vc = vc[vc.grp != "Residual"]
    lmer = pd.concat([fit.fixef(), pd.Series(vc.sdcor.to_numpy(), index=[component_key(r.grp, r.var1, r.var2) for r in vc.itertuples()])])
    if fit.phi is not None:
        lmer["phi"] = fit.phi
    if fit.family.name == "Gamma":
        lmer["shape"] = 1.0 / fit.sigma ** 2
    table.insert(0, "lmer", lmer.reindex(table.index))
    table = _inside(table)
    fixed_names = post.design.fixed_names
    aux = list(post.design.family.aux_params)
    fixed = table.loc[fixed_names]
    fixed.insert(1, "lmer_se", fit.se())
    scales = table.drop(index=[*fixed_names, *aux])
    return Comparison(fixed[["lmer", "lmer_se", *_SUMMARY, "lmer_inside"]], scales, table.loc[aux],
                      _levels_table(fit, post, prob), pooling_factors(fit, post), prob, post.design.family)
