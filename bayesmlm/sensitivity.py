"""Prior sensitivity: refit with every prior made narrower and wider, and see what moves.

Each prior's width is multiplied by each factor (``Distribution.scaled``: Normal and
Student-t sigma, half-distribution scales, the exponential's mean, the gamma's
scale, and the log-normal's sigma, its width on the log scale, with the median
kept; LKJ priors have no width and stay),
the model is refitted, and every posterior summary (mean and interval ends of
fixed effects, SDs, correlations and sigma) is compared with the original. A
summary "moves" when it shifts by more than ``threshold`` original posterior
SDs: the data do not dominate the prior there, so the prior choice matters and
should be reported. Two runs differ by Monte Carlo noise too, so a shift must
also exceed ``k`` combined Monte Carlo standard errors, ``sqrt(mcse_a^2 + mcse_b^2)``
of that summary in the two runs (ArviZ's MCSE of the mean, or of the quantile for
an interval end). ``k`` is at least 3 and grows with the number ``m`` of summaries
compared, ``k = max(3, z_{1 - 0.01 / (2m)})``, so that noise alone moves any of
them with probability about 1% (6 parameters, 3 statistics, 2 scales: ``k = 3.64``).
Measured on sleepstudy with 2 chains of 200 draws, two runs with the same priors
and different seeds flagged some summary in 82% of 435 seed pairs by the SD rule
alone, in 4.6% with ``k = 3`` and 1.4% with ``k = 3.5`` (18 summaries).

The noise rule raises the bar: a summary whose ``k`` combined Monte Carlo SEs exceed
``threshold`` posterior SDs cannot show a ``threshold``-SD move at all. Such a summary,
when it did not move, is *undetermined*, not stable (as is one without a Monte Carlo SE,
e.g. from too few draws): the table says so, and the verdict counts them and gives the
draws per chain that would resolve them (Monte Carlo SEs shrink as ``1 / sqrt(draws)``).

Models with a response family (``family=`` among the sampling arguments) work the same
way: their priors are resolved as ``bm.sample`` resolves them (link-scale defaults,
empirical priors from glmer), and the family's own parameters (``phi``, ``shape``,
``nu``, ``sigma``) are scaled and compared like the others; fixed effects and SDs are on
the link scale. Examples: :func:`sensitivity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from arviz_stats.base import array_stats
from scipy import stats

from .priors.spec import PriorSpec

__all__ = ["Sensitivity", "sensitivity", "scale_priors", "mcse_table", "noise_multiplier"]


def scale_priors(spec: PriorSpec, factor: float) -> PriorSpec:
    """A copy of ``spec`` with every prior ``factor`` times as wide (``Distribution.scaled``; the
    log-normal prior of ``phi`` or ``shape`` widens on the log scale around the same median).

    Examples
    --------
    >>> from bayesmlm.priors import LogNormal, Normal, PriorSpec
    >>> wide = scale_priors(PriorSpec({"Intercept": Normal(0, 2), "phi": LogNormal(1.5, 2)}), 2)
    >>> wide["Intercept"], wide["phi"]
    (Normal(mu=0, sigma=4), LogNormal(mu=1.5, sigma=4))
    """
    out = spec.copy()
    for key in list(out):
        out[key] = out[key].scaled(factor)
        out.sources[key] = f"{spec.sources.get(key, '')} (x{factor:g} width)".strip()
    out.meta = {k: v for k, v in spec.meta.items() if k != "data_fingerprint"}
    return out


@dataclass
class Sensitivity:
    """Shifts of posterior summaries under scaled priors.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (scale, parameter, statistic): ``base``, ``scaled``,
        ``shift_sd`` (shift in original posterior SDs), ``mcse`` (combined Monte
        Carlo SE of the two values; NaN where none could be computed),
        ``noise_sd`` (``k * mcse`` in original posterior SDs: the smallest shift
        the Monte Carlo error lets the check see), ``moved`` and ``undetermined``
        (not moved, but ``noise_sd`` above ``threshold`` or unknown: a
        ``threshold``-SD move would have gone unseen).
    threshold : float
    mcse_multiplier : float
        ``k``: a shift must exceed this many combined Monte Carlo SEs.
    draws : int, optional
        Draws per chain of the runs compared (for the verdict's advice).

    Examples
    --------
    See :func:`sensitivity`.

    >>> import bayesmlm as bm
    >>> callable(bm.Sensitivity.verdict)
    True
    """

    table: pd.DataFrame
    threshold: float
    mcse_multiplier: float = 3.0
    draws: int | None = None

    def moved(self) -> pd.DataFrame:
        """Rows that moved by more than the threshold."""
        return self.table[self.table["moved"]]

    def undetermined(self) -> pd.DataFrame:
        """Rows that did not move but whose Monte Carlo error could hide a ``threshold``-SD move."""
        if "undetermined" not in self.table:
            return self.table.iloc[:0]
        return self.table[self.table["undetermined"]]

    def _undetermined_note(self) -> str:
        under = self.undetermined()
        if under.empty:
            return ""
        known = under["noise_sd"].dropna()
        known = known[np.isfinite(known)]
        note = (f"; but {len(under)} of {len(self.table)} summaries were undetermined: their Monte Carlo error "
                f"is too large to detect a {self.threshold:g}-SD move ({', '.join(dict.fromkeys(under['parameter']))}")
        if not known.empty:
            note += f"; {self.mcse_multiplier:.3g} Monte Carlo SEs up to {known.max():.3g} posterior SD"
        unknown = len(under) - len(known)
        if unknown:
            note += f"; {unknown} without a finite Monte Carlo SE (too few draws, or non-finite draws)"
        note += ")"
        if not known.empty:
            factor = float((known.max() / self.threshold) ** 2)
            if self.draws:
                note += (f"; about {int(np.ceil(self.draws * factor))} draws per chain (now {self.draws}) "
                         "would resolve them")
            else:
                note += f"; about {factor:.3g} times the draws would resolve them"
        else:
            note += "; rerun with more draws per chain"
        return note

    def verdict(self) -> str:
        """One line naming the parameters whose summaries depend on the prior, and what could not be told."""
        moved = self.moved()
        rule = f"more than {self.threshold:g} posterior SD and {self.mcse_multiplier:.3g} Monte Carlo SEs"
        if moved.empty:
            return f"no posterior summary moved by {rule} when the priors were scaled" + self._undetermined_note()
        names = ", ".join(dict.fromkeys(moved["parameter"]))
        return f"prior-sensitive (a summary moved by {rule}): {names}" + self._undetermined_note()

    def __repr__(self) -> str:
        return self.verdict() + "\n" + self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def mcse_table(fit, prob: float = 0.9) -> pd.DataFrame:
    """Monte Carlo standard error of every summary in ``fit.parameters(prob)``.

    Columns ``mean``, ``lower``, ``upper``: ArviZ's MCSE of the mean and of the
    ``(1 - prob) / 2`` and ``(1 + prob) / 2`` quantiles, from the chains as sampled.

    Parameters
    ----------
    fit : BayesFit
    prob : float
        Interval probability, as for :meth:`BayesFit.parameters`.

    Examples
    --------
    With ``post`` from the example of :func:`bayesmlm.sample`:

    >>> table = mcse_table(post)
    >>> table.columns.tolist(), bool((table > 0).all().all())
    (['mean', 'lower', 'upper'], True)

    An MCSE ArviZ cannot compute (NaN) is 0 only where the draws are all the same value
    (no Monte Carlo noise); otherwise (e.g. too few draws per chain) it stays NaN, and
    :func:`sensitivity` counts such a summary as undetermined.
    """
    chains = fit.idata["posterior"].dataset.sizes["chain"]
    rows = {}
    for key in fit.parameters(prob).index:
        x = fit.draws(key).reshape(chains, -1)  # draws() concatenates the chains
        row = {"mean": float(array_stats.mcse(x, method="mean")),
               "lower": float(array_stats.mcse(x, method="quantile", prob=(1 - prob) / 2)),
               "upper": float(array_stats.mcse(x, method="quantile", prob=(1 + prob) / 2))}
        constant = bool(np.all(np.isfinite(x)) and np.ptp(x) == 0)
        rows[key] = {k: 0.0 if np.isnan(v) and constant else v for k, v in row.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


FAMILY_FALSE_ALARM = 0.01
"""Chance that Monte Carlo noise alone marks any compared summary as moved (sets the default ``k``)."""


def noise_multiplier(comparisons: int, false_alarm: float = FAMILY_FALSE_ALARM) -> float:
    """``k = max(3, z_{1 - false_alarm / (2 m)})`` for ``m`` compared summaries (Bonferroni, normal errors).

    Parameters
    ----------
    comparisons : int
        Number of summaries compared (parameters x statistics x scales).
    false_alarm : float
        Chance that noise alone moves any of them.

    Examples
    --------
    >>> round(noise_multiplier(36), 2), noise_multiplier(1)
    (3.64, 3.0)
    """
    return max(3.0, float(stats.norm.ppf(1.0 - false_alarm / (2 * max(comparisons, 1)))))


def _shift_rows(factor: float, reference: pd.DataFrame, other: pd.DataFrame, noise_a: pd.DataFrame,
                noise_b: pd.DataFrame, threshold: float, mcse_multiplier: float) -> list[dict]:
    """One table row per (parameter, statistic) of a refit under priors scaled by ``factor``."""
    rows = []
    for parameter in reference.index:
        sd = reference.loc[parameter, "sd"]
        for stat in ("mean", "lower", "upper"):
            a, b = reference.loc[parameter, stat], other.loc[parameter, stat]
            shift = abs(b - a) / sd if sd > 0 else 0.0
            mcse = float(np.hypot(noise_a.loc[parameter, stat], noise_b.loc[parameter, stat]))  # NaN if either is
            noise_sd = mcse_multiplier * mcse / sd if sd > 0 else (0.0 if mcse == 0 else float("nan"))
            moved = bool(shift > threshold and abs(b - a) > mcse_multiplier * mcse)
            rows.append({"scale": factor, "parameter": parameter, "statistic": stat, "base": a, "scaled": b,
                         "shift_sd": shift, "mcse": mcse, "noise_sd": noise_sd, "moved": moved,
                         # not moved, and a threshold-SD move would not have cleared k MCSEs (or MCSE unknown)
                         "undetermined": bool(not moved and not noise_sd <= threshold)})
    return rows


def _resolved_priors(formula: str, data: pd.DataFrame, priors, sample_kwargs: dict) -> PriorSpec:
    """The priors ``bm.sample(formula, data, priors=priors, **sample_kwargs)`` would use (family models too)."""
    from .bayes.sample import _family_priors, _is_family_model, _resolve_priors
    from .freq.lmer import make_design

    model = {k: sample_kwargs.get(k) for k in ("link", "trials", "weights", "offset")}
    family = sample_kwargs.get("family")
    if not _is_family_model(family, **model):
        return _resolve_priors(priors, make_design(formula, data, na_action=sample_kwargs.get("na_action", "error")),
                               sample_kwargs.get("freq"))
    from .family_design import family_design

    design = family_design(formula, data, family or "gaussian", na_action=sample_kwargs.get("na_action", "error"),
                           **model)
    return _family_priors(priors, design, sample_kwargs.get("freq"))


def sensitivity(
    formula: str,
    data: pd.DataFrame,
    priors: PriorSpec | str | Path = "default",
    scales: tuple[float, ...] = (0.5, 2.0),
    threshold: float = 0.25,
    base=None,
    mcse_multiplier: float | None = None,
    **sample_kwargs,
) -> Sensitivity:
    """Refit under priors scaled by each factor and report which summaries move.

    Parameters
    ----------
    formula, data :
        As for :func:`bayesmlm.sample`.
    priors : PriorSpec, path, "default" or "empirical"
        The priors under test.
    scales : tuple of float
        Width multipliers.
    threshold : float
        Shift, in original posterior SDs, that counts as moving.
    base : BayesFit, optional
        The fit under the original priors, if already made.
    mcse_multiplier : float, optional
        A shift must also exceed this many combined Monte Carlo SEs of the two
        runs' summaries, so that sampling noise is not reported as sensitivity;
        by default :func:`noise_multiplier` of the number of summaries compared.
    **sample_kwargs
        Passed to every :func:`bayesmlm.sample` call (draws, chains, seed..., and for a
        model with a response family ``family``, ``link``, ``trials``, ``weights``, ``offset``).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> sens = sensitivity("Reaction ~ Days + (1 | Subject)", df, priors="default", draws=300,
    ...                    chains=2, seed=1, progressbar=False)
    >>> isinstance(sens.verdict(), str), {"moved", "mcse", "undetermined"} <= set(sens.table.columns)
    (True, True)
    >>> sens.table.scale.unique().tolist()
    [0.5, 2.0]

    A binomial model (link-scale default priors; a family's own parameter, such as the
    negative binomial's ``phi``, joins the table):

    >>> herds = sensitivity("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"),
    ...                     family="binomial", draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> sorted(set(herds.table.parameter))
    ['Intercept', 'period2', 'period3', 'period4', 'sd[herd][Intercept]']
    """
    from .bayes.sample import sample

    spec = priors if isinstance(priors, PriorSpec) else _resolved_priors(formula, data, priors, sample_kwargs)
    base = base if base is not None else sample(formula, data, priors=spec, **sample_kwargs)
    reference, noise = base.parameters(), mcse_table(base)
    k = mcse_multiplier if mcse_multiplier is not None else noise_multiplier(3 * len(reference) * len(scales))
    rows, draws = [], [base.idata["posterior"].dataset.sizes["draw"]]
    for factor in scales:
        refit = sample(formula, data, priors=scale_priors(spec, factor), **sample_kwargs)
        draws.append(refit.idata["posterior"].dataset.sizes["draw"])
        rows += _shift_rows(factor, reference, refit.parameters(), noise, mcse_table(refit), threshold, k)
    return Sensitivity(pd.DataFrame(rows), threshold, k, draws=int(min(draws)))
