"""Figures for the report, embedded as PNG data URIs (no external files, no network).

Examples
--------
>>> from matplotlib.figure import Figure
>>> fig = Figure(figsize=(2, 2)); _ = fig.subplots().plot([0, 1], [0, 1])
>>> figure_data_uri(fig).startswith("data:image/png;base64,")
True
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure

__all__ = ["figure_data_uri", "posterior_predictive_figure"]


def figure_data_uri(fig: Figure, dpi: int = 90) -> str:
    """The figure as a base64 PNG ``data:`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def posterior_predictive_figure(post, n_lines: int = 50, seed: int = 0) -> Figure:
    """Histograms of responses replicated from posterior draws against the observed response."""
    design = post.design
    rng = np.random.default_rng(seed)
    replicated = post.predict_draws(design.data, kind="predictive", seed=seed)
    rows = rng.choice(len(replicated), size=min(n_lines, len(replicated)), replace=False)
    y = design.y
    lo, hi = np.quantile(np.concatenate([replicated[rows].ravel(), y]), [0.002, 0.998])
    bins = np.linspace(lo, hi, 50)
    fig = Figure(figsize=(7, 3.4), layout="constrained")
    ax = fig.subplots()
    for r in rows:
        ax.hist(replicated[r], bins=bins, histtype="step", density=True, color="tab:blue", alpha=0.15, lw=0.8)
    ax.hist(y, bins=bins, histtype="step", density=True, color="black", lw=2, label="observed")
    ax.plot([], [], color="tab:blue", alpha=0.6, label="replicated from the posterior")
    ax.set_xlabel(design.formula.response.strip())
    ax.set_yticks([])
    ax.legend(fontsize=8)
    ax.set_title("Posterior predictive check", fontsize=10)
    return fig
