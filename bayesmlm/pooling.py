"""The pooling spectrum: no pooling, complete pooling and partial pooling side by side.

* no pooling: a separate least-squares fit of the fixed-effects formula within
  each group (lme4's ``lmList``);
* complete pooling: one least-squares fit that ignores the groups;
* partial pooling: the mixed model, by lmer (``fit.coef()``) and by the
  Bayesian posterior (posterior means of fixed plus group effects).

For crossed factors the combined coefficient of each combination of the first
two factors' levels is shown as well (intercept = I + I1 + I2, slope = S + S1
+ S2), for every combination, including those absent from the data: the
mixed model predicts them, no pooling cannot. Examples: :func:`pooling`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .design import Design, crossed_pair
from .errors import DataError

__all__ = ["Pooling", "pooling", "no_pooling", "complete_pooling", "APPROACHES"]

APPROACHES = ("no pooling", "complete pooling", "partial pooling (lmer)", "partial pooling (Bayes)")
_COLOURS = dict(zip(APPROACHES, ("tab:orange", "tab:grey", "tab:blue", "tab:green")))


def _ols(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients, or NaN when the rows cannot identify them all."""
    if X.shape[0] < X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]:
        return np.full(X.shape[1], np.nan)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def complete_pooling(design: Design) -> pd.Series:
    """One least-squares fit of the fixed-effects formula, groups ignored."""
    design.require_rows("complete pooling")
    return pd.Series(_ols(design.X, design.y), index=design.fixed_names)


def no_pooling(design: Design, codes: np.ndarray, levels: list[str]) -> pd.DataFrame:
    """Least squares within each group given by ``codes``: levels x fixed-effect columns.

    Groups whose rows cannot identify every coefficient (too few rows, a
    column constant within the group) get NaN, as lmList does.
    """
    design.require_rows("no pooling")
    rows = [_ols(design.X[codes == k], design.y[codes == k]) for k in range(len(levels))]
    return pd.DataFrame(rows, index=pd.Index(levels), columns=design.fixed_names)


def _long(table: pd.DataFrame, approach: str, factor: str, counts: pd.Series) -> pd.DataFrame:
    out = table.rename_axis("level").reset_index().melt(id_vars="level", var_name="term", value_name="estimate")
    out["level"] = out["level"].astype(str)
    out.insert(0, "factor", factor)
    out.insert(0, "approach", approach)
    out["n"] = out["level"].map(counts).fillna(0).astype(int)
    return out


@dataclass
class Pooling:
    """Per-group coefficients by approach.

    Attributes
    ----------
    table : pandas.DataFrame
        Tidy: ``approach, factor, level, term, estimate, n`` (``n`` = rows of
        that group; 0 for crossed combinations absent from the data).
    design : Design

    Examples
    --------
    See :func:`pooling`.

    >>> import bayesmlm as bm
    >>> pool = bm.pooling("Reaction ~ Days + (1 | Subject)", bm.datasets.load("sleepstudy"), bayes=False)
    >>> pool.coefficients("Subject", "no pooling").shape
    (18, 2)
    """

    table: pd.DataFrame
    design: Design

    def coefficients(self, factor: str, approach: str) -> pd.DataFrame:
        """levels x terms for one factor (or combination ``"A:B"``) and approach."""
        part = self.table[(self.table.factor == factor) & (self.table.approach == approach)]
        if part.empty:
            raise KeyError(f"no rows for factor {factor!r} and approach {approach!r}")
        return part.pivot(index="level", columns="term", values="estimate").loc[lambda t: t.index.unique()]

    def _predictor(self) -> str:
        names = [n for n in self.design.fixed_names if n != "Intercept"]
        if len(names) != 1 or "Intercept" not in self.design.fixed_names:
            raise DataError(
                f"the pooling figure draws one line per approach against one numeric predictor; this model's "
                f"fixed effects are {self.design.fixed_names}: use the table instead"
            )
        return names[0]

    def plot(self, factor: str | None = None, max_panels: int = 100, columns: int = 10) -> Figure:
        """One panel per group (or per crossed combination): its points and one line per approach.

        Parameters
        ----------
        factor : str, optional
            A grouping factor, or ``"A:B"`` for crossed combinations. Default:
            the combinations when there are crossed factors, else the first factor.
        """
        x_name = self._predictor()
        factors = list(dict.fromkeys(self.table.factor))
        factor = factor or factors[-1]
        if factor not in factors:
            raise KeyError(f"no factor {factor!r}; choose one of {factors}")
        data = self.design.data
        x = np.asarray(data[x_name], dtype=float) if x_name in data else self.design.X[:, self.design.fixed_names.index(x_name)]
        keys = _row_keys(data, factor)
        levels = list(dict.fromkeys(self.table.loc[self.table.factor == factor, "level"]))[:max_panels]
        n_rows = int(np.ceil(len(levels) / columns))
        fig = Figure(figsize=(1.9 * min(columns, len(levels)), 1.7 * n_rows + 0.6), layout="constrained")
        axes = fig.subplots(n_rows, min(columns, len(levels)), sharex=True, sharey=True, squeeze=False).ravel()
        grid = np.linspace(np.nanmin(x), np.nanmax(x), 20)
        approaches = [a for a in APPROACHES if a in set(self.table.approach)]
        tables = {a: self.coefficients(factor, a) for a in approaches}
        for ax, level in zip(axes, levels):
            mask = keys == level
            ax.plot(x[mask], self.design.y[mask], ".", color="black", markersize=2.5, alpha=0.6)
            for a in approaches:
                coef = tables[a].loc[level]
                if np.isfinite(coef.get("Intercept", np.nan)) and np.isfinite(coef.get(x_name, np.nan)):
                    ax.plot(grid, coef["Intercept"] + coef[x_name] * grid, color=_COLOURS[a], lw=1.2, label=a)
            ax.set_title(level if mask.any() else f"{level} (no data)", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in axes[len(levels) :]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(approaches), fontsize=8)
        fig.supxlabel(x_name, fontsize=9)
        fig.supylabel(self.design.formula.response.strip(), fontsize=9)
        return fig


def _row_keys(data: pd.DataFrame, factor: str) -> np.ndarray:
    from .newdata import level_keys

    return level_keys(data, factor).astype(str)


def _crossed_rows(design: Design, pair, fit, post, lmer_coef, bayes_coef) -> list[pd.DataFrame]:
    """Combined coefficients for every combination of the crossed pair's levels."""
    a, b = pair
    name = f"{a.factor}:{b.factor}"
    combos = [f"{la}:{lb}" for la, lb in itertools.product(a.levels, b.levels)]
    keys = np.char.add(np.char.add(np.asarray(a.levels, dtype=str)[a.codes], ":"), np.asarray(b.levels, dtype=str)[b.codes])
    counts = pd.Series(keys).value_counts()
    code = pd.Index(combos).get_indexer(keys)
    out = [
        _long(no_pooling(design, code, combos), "no pooling", name, counts),
        _long(pd.DataFrame([complete_pooling(design)] * len(combos), index=combos), "complete pooling", name, counts),
    ]

    def combined(coef: dict[str, pd.DataFrame], fixed: pd.Series) -> pd.DataFrame:
        ta, tb = coef[a.factor], coef[b.factor]
        rows = [ta.loc[la] + tb.loc[lb] - fixed for la, lb in itertools.product(a.levels, b.levels)]
        return pd.DataFrame(rows, index=combos)

    out.append(_long(combined(lmer_coef, fit.fixef()), "partial pooling (lmer)", name, counts))
    if bayes_coef is not None:
        out.append(_long(combined(bayes_coef, post.fixef()["mean"]), "partial pooling (Bayes)", name, counts))
    return out


def _bayes_means(post) -> dict[str, pd.DataFrame]:
    """Posterior-mean coefficients per factor: levels x fixed-effect columns, model order."""
    out, coef = {}, post.coef()
    for block in post.design.blocks:
        means = coef[block.factor]["mean"].unstack("term")
        out[block.factor] = means.loc[block.levels, post.design.fixed_names]
    return out


def pooling(
    formula: str,
    data: pd.DataFrame,
    *,
    fit=None,
    post=None,
    bayes: bool = True,
    sample_kwargs: dict | None = None,
) -> Pooling:
    """No pooling, complete pooling and partial pooling (lmer and Bayesian) per group.

    Parameters
    ----------
    formula : str
        lme4 formula.
    data : pandas.DataFrame
    fit : FreqFit, optional
        lmer fit to reuse (else fitted here).
    post : BayesFit, optional
        Posterior to reuse. Without one, ``bayes=True`` samples with
        ``bm.sample(formula, data, **sample_kwargs)``.
    bayes : bool
        Include Bayesian partial pooling.

    Returns
    -------
    Pooling
        ``.table`` (tidy) and ``.plot()`` (faceted figure).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> pool = pooling("Reaction ~ Days + (Days | Subject)", df, bayes=False)  # bayes=True samples too
    >>> sorted(pool.table["approach"].unique())
    ['complete pooling', 'no pooling', 'partial pooling (lmer)']
    >>> pool.table.query("level == '308' and term == 'Days'").estimate.round(2).tolist()
    [21.76, 10.47, 19.67]
    """
    from .bayes.sample import sample
    from .freq.lmer import lmer

    if fit is None:
        fit = lmer(formula, data)
    design = fit.design
    if post is None and bayes:
        post = sample(formula, data, freq=fit, **(sample_kwargs or {}))
    lmer_coef = fit.coef()
    bayes_coef = _bayes_means(post) if post is not None else None
    parts = []
    pooled = complete_pooling(design)
    for block in design.blocks:
        counts = pd.Series(block.codes).value_counts().rename(index=dict(enumerate(block.levels)))
        parts.append(_long(no_pooling(design, block.codes, block.levels), "no pooling", block.factor, counts))
        same = pd.DataFrame([pooled] * block.n_levels, index=block.levels)
        parts.append(_long(same, "complete pooling", block.factor, counts))
        parts.append(_long(lmer_coef[block.factor], "partial pooling (lmer)", block.factor, counts))
        if bayes_coef is not None:
            parts.append(_long(bayes_coef[block.factor], "partial pooling (Bayes)", block.factor, counts))
    pair = crossed_pair(design)
    if pair is not None:
        parts += _crossed_rows(design, pair, fit, post, lmer_coef, bayes_coef)
    return Pooling(pd.concat(parts, ignore_index=True), design)
