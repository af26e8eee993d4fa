"""Prior sensitivity: refit with every prior made narrower and wider, and see what moves.

Each prior's width is multiplied by each factor (``Distribution.scaled``:
Normal and Student-t sigma, half-distribution scales, the exponential's mean,
the gamma's scale, the log-normal's median; LKJ priors have no width and stay),
the model is refitted, and every posterior summary (mean and interval ends of
fixed effects, SDs, correlations and sigma) is compared with the original. A
summary "moves" when it shifts by more than ``threshold`` original posterior
SDs: the data do not dominate the prior there, so the prior choice matters and
should be reported. Examples: :func:`sensitivity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .priors.spec import PriorSpec

__all__ = ["Sensitivity", "sensitivity", "scale_priors"]


def scale_priors(spec: PriorSpec, factor: float) -> PriorSpec:
    """A copy of ``spec`` with every prior ``factor`` times as wide."""
    out = spec.copy()
    for key in list(out):
        dist = out[key].scaled(factor)
        out[key] = dist
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
        ``shift_sd`` (shift in original posterior SDs) and ``moved``.
    threshold : float

    Examples
    --------
    See :func:`sensitivity`.

    >>> import bayesmlm as bm
    >>> callable(bm.Sensitivity.verdict)
    True
    """

    table: pd.DataFrame
    threshold: float

    def moved(self) -> pd.DataFrame:
        """Rows that moved by more than the threshold."""
        return self.table[self.table["moved"]]

    def verdict(self) -> str:
        """One line naming the parameters whose summaries depend on the prior."""
        moved = self.moved()
        if moved.empty:
            return f"no posterior summary moved by more than {self.threshold:g} posterior SD when the priors were halved or doubled"
        names = ", ".join(dict.fromkeys(moved["parameter"]))
        return f"prior-sensitive (a summary moved by more than {self.threshold:g} posterior SD): {names}"

    def __repr__(self) -> str:
        return self.verdict() + "\n" + self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def sensitivity(
    formula: str,
    data: pd.DataFrame,
    priors: PriorSpec | str | Path = "default",
    scales: tuple[float, ...] = (0.5, 2.0),
    threshold: float = 0.25,
    base=None,
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
    **sample_kwargs
        Passed to every :func:`bayesmlm.sample` call (draws, chains, seed...).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> sens = sensitivity("Reaction ~ Days + (1 | Subject)", df, priors="default", draws=300,
    ...                    chains=2, seed=1, progressbar=False)
    >>> isinstance(sens.verdict(), str), "moved" in sens.table.columns
    (True, True)
    >>> sens.table.scale.unique().tolist()
    [0.5, 2.0]
    """
    from .bayes.sample import _resolve_priors, sample
    from .freq.lmer import make_design

    spec = priors if isinstance(priors, PriorSpec) else _resolve_priors(priors, make_design(formula, data), None)
    base = base if base is not None else sample(formula, data, priors=spec, **sample_kwargs)
    reference = base.parameters()
    rows = []
    for factor in scales:
        other = sample(formula, data, priors=scale_priors(spec, factor), **sample_kwargs).parameters()
        for parameter in reference.index:
            sd = reference.loc[parameter, "sd"]
            for stat in ("mean", "lower", "upper"):
                a, b = reference.loc[parameter, stat], other.loc[parameter, stat]
                shift = abs(b - a) / sd if sd > 0 else 0.0
                rows.append({"scale": factor, "parameter": parameter, "statistic": stat, "base": a, "scaled": b,
                             "shift_sd": shift, "moved": shift > threshold})
    return Sensitivity(pd.DataFrame(rows), threshold)
