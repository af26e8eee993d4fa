"""Draws from the priors, and the responses they imply (prior predictive check).

``draw_parameters`` draws every parameter of a model from its prior with
NumPy (LKJ correlation matrices through PyMC), ``simulate_response`` turns
draws into responses for the model's own rows, and ``prior_predictive`` sums
them up against the range of responses the user calls plausible: if many
simulated responses fall outside it, the priors allow data nobody expects.
Examples: :func:`prior_predictive`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..design import Design
from ..priors.spec import PriorSpec, correlation_key
from .draws import linear_predictor

__all__ = ["draw_parameters", "simulate_response", "PriorPredictive", "prior_predictive", "check_design"]


def draw_parameters(design: Design, priors: PriorSpec, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """``size`` draws of every parameter key, plus ``r[F]`` (size, levels, columns) group effects."""
    out: dict[str, np.ndarray] = {}
    for name in design.fixed_names:
        out[name] = np.asarray(priors[name].draw(rng, size), dtype=float)
    for block in design.blocks:
        F, k = block.factor, block.n_cols
        sd = np.column_stack([np.asarray(priors[f"sd[{F}][{c}]"].draw(rng, size), dtype=float) for c in block.columns])
        for c, column in zip(block.columns, sd.T):
            out[f"sd[{F}][{c}]"] = column
        corr = np.broadcast_to(np.eye(k), (size, k, k)).copy()
        multi = [g for g in block.groups if len(g) > 1]
        for group in multi:
            cols = tuple(block.columns[i] for i in group)
            idx = np.array(group)
            drawn = priors[correlation_key(F, cols, len(multi))].draw(rng, size=size, dim=len(group))
            corr[:, idx[:, None], idx[None, :]] = np.asarray(drawn).reshape(size, len(group), len(group))
            for a, i in enumerate(group):
                for j in group[a + 1 :]:
                    out[f"cor[{F}][{block.columns[i]},{block.columns[j]}]"] = corr[:, i, j]
        chol = np.linalg.cholesky(corr) * sd[:, :, None]
        z = rng.standard_normal((size, block.n_levels, k))
        out[f"r[{F}]"] = np.einsum("slk,sjk->slj", z, chol)
    out["sigma"] = np.asarray(priors["sigma"].draw(rng, size), dtype=float)
    return out


def simulate_response(design: Design, params: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Responses (draws x rows) for the design's rows under each parameter draw."""
    beta = np.column_stack([params[name] for name in design.fixed_names])
    y = linear_predictor(design, beta, [params[f"r[{block.factor}]"] for block in design.blocks])
    return y + params["sigma"][:, None] * rng.standard_normal(y.shape)


def simulate_family(design: Design, priors: PriorSpec, rng: np.random.Generator,
                    size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parameter draws and responses (size x rows) of a design with a response family.

    The parameters of :func:`draw_parameters` plus the family's own (``phi``, ``shape``,
    ``nu``, ``sigma``); responses from :meth:`bayesmlm.families.Family.draw_response`
    (binomial: successes out of the design's trials).
    """
    from ..priors.distributions import HalfNormal

    fam, glm = design.family, design.glm
    shim = priors.copy()
    if "sigma" not in shim:
        shim["sigma"] = HalfNormal(1.0)  # draw_parameters draws a sigma; dropped unless the family has one
    params = draw_parameters(design, shim, rng, size)
    if "sigma" not in fam.aux_params:
        del params["sigma"]
    for name in fam.aux_params:
        if name != "sigma":
            params[name] = np.asarray(priors[name].draw(rng, size), dtype=float).reshape(-1)
    beta = np.column_stack([params[name] for name in design.fixed_names])
    eta = linear_predictor(design, beta, [params[f"r[{b.factor}]"] for b in design.blocks]) + glm.offset[None, :]
    aux = {name: params[name][:, None] for name in fam.aux_params}
    y = fam.draw_response(rng, fam.link.inverse(eta), glm.trials[None, :], **aux)
    return params, np.asarray(y)


@dataclass
class PriorPredictive:
    """Responses simulated from the priors, beside the observed ones.

    Attributes
    ----------
    y : ndarray (draws, rows)
    observed : ndarray (rows,)
    plausible : (float, float) or None
    response : str

    Examples
    --------
    See :func:`prior_predictive`.

    >>> import bayesmlm as bm
    >>> callable(bm.PriorPredictive.verdict)
    True
    """

    y: np.ndarray
    observed: np.ndarray
    plausible: tuple[float, float] | None
    response: str

    @property
    def share_outside(self) -> float:
        """Share of simulated responses outside the plausible range (NaN without one)."""
        if self.plausible is None:
            return float("nan")
        lo, hi = self.plausible
        return float(np.mean((self.y < lo) | (self.y > hi)))

    def summary(self) -> pd.DataFrame:
        """Quantiles of the simulated and the observed responses, and the share outside the range."""
        qs = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
        table = pd.DataFrame(
            {"prior predictive": np.quantile(self.y, qs), "observed": np.quantile(self.observed, qs)},
            index=[f"{q:.0%}" for q in qs],
        )
        table.attrs["share_outside"] = self.share_outside
        return table

    def verdict(self) -> str:
        """One line: how much of the simulated data is implausible."""
        if self.plausible is None:
            return "no plausible range given: compare the simulated quantiles with what you expect"
        lo, hi = self.plausible
        share = self.share_outside
        tone = "the priors fit what you expect" if share < 0.05 else (
            "the priors allow a fair amount of implausible data; consider tightening them" if share < 0.25
            else "the priors mostly produce implausible data: tighten them")
        return f"{share:.1%} of simulated {self.response} values fall outside [{lo:g}, {hi:g}]: {tone}"

    @property
    def counts(self) -> bool:
        """Whether the responses are counts (whole numbers: Poisson, negative binomial, binomial successes)."""
        return np.issubdtype(np.asarray(self.y).dtype, np.integer)

    def plot(self, n_lines: int = 50) -> Figure:
        """Densities (histograms) of simulated responses against the observed one; plausible range shaded.

        Counts stay counts: the share of rows with each count, observed (bars) and simulated
        (median and 90% band over the simulated data sets), counts above the 99% quantile in
        the last bar (wider bins when that quantile is large).
        """
        fig = Figure(figsize=(7, 3.6), layout="constrained")
        ax = fig.subplots()
        if self.counts:
            from ..report.figures import plot_count_frequencies

            plot_count_frequencies(ax, np.asarray(self.observed), self.y, "simulated from the priors")
            ax.set_xlabel(f"{self.response} (count; the last bar pools counts above the 99% quantile)")
            title = "Prior predictive check (counts)"
            if self.plausible is not None:
                title += f"; {self.share_outside:.1%} outside the plausible range [{self.plausible[0]:g}, {self.plausible[1]:g}]"
            ax.set_title(title, fontsize=10)
            return fig
        lo, hi = np.quantile(self.y, [0.005, 0.995])
        lo, hi = min(lo, self.observed.min()), max(hi, self.observed.max())
        bins = np.linspace(lo, hi, 60)
        for row in self.y[: min(n_lines, len(self.y))]:
            ax.hist(row, bins=bins, histtype="step", density=True, color="tab:blue", alpha=0.15, lw=0.8)
        ax.hist(self.observed, bins=bins, histtype="step", density=True, color="black", lw=2, label="observed")
        ax.plot([], [], color="tab:blue", alpha=0.6, label="simulated from the priors")
        if self.plausible is not None:
            ax.axvspan(*self.plausible, color="tab:green", alpha=0.1, label="plausible range")
        ax.set_xlabel(self.response)
        ax.set_yticks([])
        ax.legend(fontsize=8)
        ax.set_title("Prior predictive check", fontsize=10)
        return fig


def prior_predictive(
    formula: str,
    data: pd.DataFrame,
    priors: PriorSpec | str | Path = "default",
    draws: int = 500,
    plausible: tuple[float, float] | None = None,
    seed: int | None = None,
    family: str | None = None,
    **family_args,
) -> PriorPredictive:
    """Simulate responses for the data's rows from the priors alone.

    Parameters
    ----------
    formula : str
    data : pandas.DataFrame
        Supplies the rows (covariates and groups) and the observed response.
    priors : PriorSpec, path, "default" or "empirical"
    draws : int
    plausible : (low, high), optional
        The range a response could reasonably take; the share of simulated
        values outside it is reported.
    seed : int, optional
    family : str, optional
        A response family of :func:`bayesmlm.sample` (with ``link``, ``trials``, ``weights``,
        ``offset`` in ``family_args``): responses are drawn from it (binomial: successes).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> cbpp = bm.datasets.load("cbpp")
    >>> prior_predictive("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial",
    ...                  draws=100, plausible=(0, 10), seed=1).y.dtype.kind
    'i'
    >>> df = bm.datasets.load("sleepstudy")
    >>> check = prior_predictive("Reaction ~ Days + (Days | Subject)", df, priors="default",
    ...                          draws=200, plausible=(0, 2000), seed=1)
    >>> check.y.shape
    (200, 180)
    >>> 0.0 <= check.share_outside <= 1.0, isinstance(check.verdict(), str)
    (True, True)
    """
    from ..design import build_design
    from .sample import _resolve_priors

    if family is not None and not (isinstance(family, str) and family.lower() == "gaussian"):
        from ..family_design import family_design
        from .sample import _family_priors

        design = family_design(formula, data, family, **family_args)
        return check_design(design, _family_priors(priors, design, None), draws, plausible, seed)
    design = build_design(formula, data)
    return check_design(design, _resolve_priors(priors, design, None), draws, plausible, seed)


def check_design(
    design: Design, priors: PriorSpec, draws: int = 500, plausible: tuple[float, float] | None = None, seed: int | None = None
) -> PriorPredictive:
    """:func:`prior_predictive` for a built design and resolved priors."""
    if plausible is not None and not plausible[0] < plausible[1]:
        raise ValueError(f"plausible must be (low, high) with low < high, got {plausible}")
    rng = np.random.default_rng(seed)
    if getattr(design, "family", None) is not None:
        _, y = simulate_family(design, priors, rng, draws)
        glm = design.glm
        observed = glm.successes if design.family.name == "binomial" else glm.y
        from ..family_design import response_label

        return PriorPredictive(y, observed, plausible, response_label(design))
    y = simulate_response(design, draw_parameters(design, priors, rng, draws), rng)
    return PriorPredictive(y, design.y, plausible, design.formula.response.strip())
