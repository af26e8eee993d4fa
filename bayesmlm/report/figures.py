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

__all__ = ["figure_data_uri", "posterior_predictive_figure", "replicated_responses", "count_bins",
           "plot_count_frequencies", "PPC_DRAWS"]

PPC_DRAWS = 200
"""Posterior draws the posterior predictive figures of family models replicate the data from."""
COUNT_BINS = 40
"""At most this many bars in a count-frequency figure (wider bins beyond it)."""


def figure_data_uri(fig: Figure, dpi: int = 90) -> str:
    """The figure as a base64 PNG ``data:`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def posterior_predictive_figure(post, n_lines: int = 50, seed: int = 0) -> Figure:
    """Responses replicated from posterior draws against the observed ones, in a form suited to the family.

    Gaussian and continuous families: histograms (densities) of replicated data sets over
    the observed one, on a log axis for the positive Gamma and lognormal families.
    Poisson and negative binomial: the share of rows with each count, observed (bars) and
    replicated (median and 90% band), counts above the 99% quantile pooled in the last bar.
    Binomial (and Bernoulli): the overall share of successes, and by level of the first
    grouping factor, observed against the replicated 90% band.

    Examples
    --------
    With ``post`` from the example of :func:`bayesmlm.sample`:

    >>> posterior_predictive_figure(post).axes[0].get_title()
    'Posterior predictive check'
    """
    family = post.design.family
    if family is not None:
        observed, replicated, trials = replicated_responses(post, min(PPC_DRAWS, 4 * n_lines), seed)
        if family.name == "binomial":
            return _binomial_figure(post, observed, replicated, trials)
        if family.integer_response:
            return _count_figure(post, observed, replicated)
        return _continuous_figure(post.design, observed, replicated[:n_lines],
                                  positive=family.name in ("Gamma", "lognormal"))
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


def replicated_responses(post, n_draws: int = PPC_DRAWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed and replicated responses of a family model on its own rows: ``(observed, draws x rows, trials)``.

    Each replicated data set uses one posterior draw of every parameter (its linear
    predictor on the model rows, offset included, and the family's parameters) and the
    family's :meth:`~bayesmlm.families.Family.draw_response`. Binomial responses are
    successes out of the rows' trials.

    Examples
    --------
    >>> import bayesmlm as bm, warnings
    >>> cbpp = bm.datasets.load("cbpp")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     herds = bm.sample("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial",
    ...                       priors="default", draws=100, tune=200, chains=1, seed=1, progressbar=False)
    >>> observed, replicated, trials = replicated_responses(herds, 50)
    >>> replicated.shape, bool((replicated <= trials).all()), observed[:3].tolist()
    ((50, 56), True, [2.0, 3.0, 4.0])
    """
    from ..bayes.draws import linear_predictor, stack_chains

    design, family, glm = post.design, post.design.family, post.design.glm
    posterior = post.idata["posterior"].dataset
    beta = stack_chains(posterior, "beta")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(beta), size=min(n_draws, len(beta)), replace=False)
    effects = [stack_chains(posterior, f"r[{b.factor}]")[pick] for b in design.blocks]
    eta = linear_predictor(design, beta[pick], effects) + glm.offset[None, :]
    params = {name: stack_chains(posterior, name)[pick][:, None] for name in family.aux_params}
    replicated = np.asarray(family.draw_response(rng, family.link.inverse(eta), glm.trials[None, :], **params))
    observed = glm.successes if family.name == "binomial" else glm.y
    return np.asarray(observed, dtype=float), replicated, np.asarray(glm.trials, dtype=float)


def count_bins(values: np.ndarray, quantile: float = 0.99, max_bins: int = COUNT_BINS) -> np.ndarray:
    """Left edges of the bins of a count-frequency figure; the last bin holds everything above.

    One bin per count up to the ``quantile`` of ``values`` when that needs at most
    ``max_bins`` bars; wider, log-spaced bins beyond.

    Examples
    --------
    >>> import numpy as np
    >>> count_bins(np.array([0, 1, 1, 2, 5])).tolist()
    [0, 1, 2, 3, 4, 5, 6]
    >>> edges = count_bins(np.arange(10_000))
    >>> len(edges) <= 41, bool(np.all(np.diff(edges) > 0))  # no empty bin between equal edges
    (True, True)
    """
    top = int(np.ceil(np.quantile(np.asarray(values, dtype=float), quantile)))
    if top + 1 <= max_bins:
        return np.arange(top + 2)
    inner = np.unique(np.floor(np.geomspace(1, top + 1, max_bins)).astype(int))
    inner = inner[inner < top + 1]  # geomspace ends at top + 1 itself: that edge is added once, below
    return np.concatenate([[0], inner, [top + 1]]).astype(int)


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of each row of ``values`` (sets x rows) in each bin; the last bin is open above."""
    index = np.searchsorted(edges, values, side="right") - 1
    return np.stack([np.bincount(row, minlength=len(edges)) for row in np.atleast_2d(index)]) / values.shape[-1]


def _bin_labels(edges: np.ndarray) -> list[str]:
    labels = [str(a) if b - a == 1 else f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])]
    return labels + [f">={edges[-1]}"]


def plot_count_frequencies(ax, observed: np.ndarray, simulated: np.ndarray, simulated_label: str,
                           quantile: float = 0.99) -> None:
    """Share of rows with each count: observed (grey bars) and simulated data sets (median, 90% band).

    Parameters
    ----------
    ax : matplotlib Axes
    observed : ndarray (rows,)
    simulated : ndarray (sets, rows)
    simulated_label : str
        Legend label of the simulated data sets.
    quantile : float
        Counts above this quantile of all values (observed and simulated) share the last bar.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> ax = Figure().subplots()
    >>> rng = np.random.default_rng(0)
    >>> plot_count_frequencies(ax, rng.poisson(2, 100), rng.poisson(2, (50, 100)), "replicated")
    >>> ax.get_xticklabels()[0].get_text(), ax.get_ylabel()
    ('0', 'share of rows')
    """
    edges = count_bins(np.concatenate([observed, np.ravel(simulated)]), quantile)
    seen = _bin_shares(np.asarray(observed, dtype=int), edges)[0]
    shares = _bin_shares(np.asarray(simulated, dtype=np.int64), edges)
    low, mid, high = np.quantile(shares, [0.05, 0.5, 0.95], axis=0)
    x = np.arange(len(edges))
    ax.bar(x, seen, color="lightgrey", edgecolor="grey", width=0.8, label="observed")
    ax.errorbar(x, mid, yerr=[mid - low, high - mid], fmt="o", color="tab:blue", ms=4, capsize=2,
                label=f"{simulated_label} (median, 90% of data sets)")
    ax.set_xticks(x, _bin_labels(edges), rotation=90 if len(x) > 15 else 0, fontsize=7)
    ax.set_ylabel("share of rows")
    ax.legend(fontsize=8)


def _response_label(design) -> str:
    from ..family_design import response_label

    return response_label(design)


def _count_figure(post, observed: np.ndarray, replicated: np.ndarray) -> Figure:
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    plot_count_frequencies(ax, observed, replicated, "replicated from the posterior")
    ax.set_xlabel(f"{_response_label(post.design)} (count; the last bar pools counts above the 99% quantile)")
    ax.set_title(f"Posterior predictive check: frequency of each count ({post.design.family.name})", fontsize=10)
    return fig


def _binomial_figure(post, observed: np.ndarray, replicated: np.ndarray, trials: np.ndarray,
                     max_levels: int = 40) -> Figure:
    """Overall share of successes, and per level of the first grouping factor, observed against replicated."""
    block = post.design.blocks[0]
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax_all, ax_level = fig.subplots(1, 2, width_ratios=[1, 2.4])
    overall = replicated.sum(axis=1) / trials.sum()
    ax_all.hist(overall, bins=30, color="tab:blue", alpha=0.5, label="replicated from the posterior")
    ax_all.axvline(observed.sum() / trials.sum(), color="black", lw=2, label="observed")
    ax_all.set_xlabel("share of successes, all rows")
    ax_all.set_yticks([])
    ax_all.legend(fontsize=7)
    level_trials = np.bincount(block.codes, trials, minlength=block.n_levels)
    seen = np.bincount(block.codes, observed, minlength=block.n_levels) / level_trials
    shares = np.stack([np.bincount(block.codes, r, minlength=block.n_levels) for r in replicated]) / level_trials
    low, mid, high = np.quantile(shares, [0.05, 0.5, 0.95], axis=0)
    order = np.argsort(seen, kind="stable")
    if block.n_levels > max_levels:  # the levels with most trials, in order of their observed share
        keep = np.sort(np.argsort(-level_trials, kind="stable")[:max_levels])
        order = keep[np.argsort(seen[keep], kind="stable")]
    x = np.arange(len(order))
    ax_level.errorbar(x, mid[order], yerr=[mid[order] - low[order], high[order] - mid[order]], fmt="o",
                      color="tab:blue", ms=3, capsize=2, label="replicated (median, 90% of data sets)")
    ax_level.plot(x, seen[order], "D", color="black", ms=4, label="observed")
    ax_level.set_xticks(x, [str(block.levels[i]) for i in order], rotation=90, fontsize=6)
    shown = f"{len(order)} of {block.n_levels} levels with most trials" if len(order) < block.n_levels else "levels"
    ax_level.set_xlabel(f"{block.factor} ({shown}, by observed share)")
    ax_level.set_ylabel("share of successes")
    ax_level.legend(fontsize=7)
    fig.suptitle(f"Posterior predictive check: share of successes ({_response_label(post.design)}, binomial)",
                 fontsize=10)
    return fig


def _continuous_figure(design, observed: np.ndarray, replicated: np.ndarray, positive: bool) -> Figure:
    values = np.concatenate([replicated.ravel(), observed])
    values = values[np.isfinite(values) & ((values > 0) if positive else True)]
    lo, hi = np.quantile(values, [0.002, 0.998])
    bins = np.geomspace(lo, hi, 50) if positive else np.linspace(lo, hi, 50)
    fig = Figure(figsize=(7, 3.4), layout="constrained")
    ax = fig.subplots()
    def shares(row):  # log-spaced bins: the share per bin (a density would tilt towards small values)
        return {"weights": np.full(len(row), 1.0 / len(row))} if positive else {"density": True}

    for row in replicated:
        ax.hist(row, bins=bins, histtype="step", color="tab:blue", alpha=0.15, lw=0.8, **shares(row))
    ax.hist(observed, bins=bins, histtype="step", color="black", lw=2, label="observed", **shares(observed))
    ax.plot([], [], color="tab:blue", alpha=0.6, label="replicated from the posterior")
    if positive:
        ax.set_xscale("log")
    ax.set_xlabel(_response_label(design) + (" (log axis)" if positive else ""))
    ax.set_yticks([])
    ax.legend(fontsize=8)
    ax.set_title(f"Posterior predictive check ({design.family.name})", fontsize=10)
    return fig
