"""Sampler diagnostics in plain words: divergences, R-hat, effective sample size.

nutpie does not run PyMC's convergence checks, so they are run here for every
sampler, with ArviZ, on the named parameters, and each problem comes with
what to do about it.

Examples
--------
>>> import numpy as np, arviz as az
>>> rng = np.random.default_rng(0)
>>> dt = az.from_dict({"posterior": {"sigma": rng.normal(size=(4, 500))},
...                    "sample_stats": {"diverging": np.zeros((4, 500), bool)}})
>>> diagnose(dt, ["sigma"]).ok
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import arviz as az
import numpy as np

from ..errors import SamplingWarning

__all__ = ["Diagnostics", "diagnose", "RHAT_MAX", "ESS_PER_CHAIN_MIN", "RHAT_MIN_DRAWS"]

RHAT_MAX = 1.01
"""Largest acceptable rank-normalised R-hat (Vehtari et al. 2021)."""
ESS_PER_CHAIN_MIN = 100
"""Smallest acceptable bulk and tail ESS per chain."""
RHAT_MIN_DRAWS = 4
"""Fewest draws per chain for which R-hat (split chains) and ESS are defined."""


STRUCTURAL_CONSTANT = r"^cor\[.*\]\[(.+), \1\]$"
"""Table rows constant by construction: the unit diagonal of a correlation matrix."""


@dataclass
class Diagnostics:
    """Summary of a run's health.

    Attributes
    ----------
    divergences : int
    draws : int
        Total post-warm-up draws (chains x draws).
    max_rhat, min_ess_bulk, min_ess_tail : float
        Over the parameters whose R-hat could be computed.
    worst_rhat, worst_ess : str
        The parameter with the largest R-hat / smallest bulk ESS.
    messages : list of str
        Problems and what to do; empty when all is well.
    undefined_rhat : list of str
        Parameters whose R-hat could not be computed (non-finite draws, or chains
        that never moved): a problem.
    constant : list of str
        Parameters with the same value in every draw of every chain although nothing in
        the model fixes them (a correlation matrix's diagonal is left out): a problem.
    """

    divergences: int
    draws: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    worst_rhat: str
    worst_ess: str
    messages: list[str] = field(default_factory=list)
    undefined_rhat: list[str] = field(default_factory=list)
    constant: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.messages

    def verdict(self) -> str:
        """One line per check, for reports."""
        lines = [
            f"divergent transitions: {self.divergences} of {self.draws} draws",
            (f"largest R-hat: {self.max_rhat:.3f} ({self.worst_rhat}); want < {RHAT_MAX}" if np.isfinite(self.max_rhat)
             else "largest R-hat: not computed"),
            f"smallest bulk / tail ESS: {self.min_ess_bulk:.0f} / {self.min_ess_tail:.0f} ({self.worst_ess})",
        ]
        if self.undefined_rhat or self.constant:
            lines.append(f"R-hat not computable for {len(self.undefined_rhat) + len(self.constant)} parameter(s): "
                         + _listed(self.undefined_rhat + self.constant))
        return "\n".join(lines + (self.messages or ["all checks passed"]))


def _summary_table(idata, var_names: list[str]):
    """ArviZ's summary (stats and diagnostics) of ``var_names``, unrounded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # R-hat of a constant: 0 / 0, handled below
        return az.summary(idata, var_names=var_names, kind="all", ci_kind="eti", round_to="none")


def _undefined_messages(undefined: list[str], constant: list[str]) -> list[str]:
    """Problems for parameters without an R-hat, in words."""
    messages = []
    if undefined:
        messages.append(
            f"R-hat could not be computed for {_listed(undefined)} (draws that are not all finite, or chains "
            "that never moved), so convergence is unknown; look for an overflow in the model (very wide priors, "
            "unscaled predictors) and run again"
        )
    if constant:
        messages.append(
            f"{_listed(constant)} took the same value in every draw of every chain, although the model does not "
            "fix them: the sampler never moved them; check the model and priors, then run again"
        )
    return messages


def _extreme(column, largest: bool) -> tuple[float, str]:
    """The largest (or smallest) finite value of a summary column and its parameter; (nan, "none") if none."""
    finite = column[np.isfinite(column)]
    if finite.empty:
        return float("nan"), "none"
    name = finite.idxmax() if largest else finite.idxmin()
    return float(finite[name]), str(name)


def _listed(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def diagnose(idata, var_names: list[str]) -> Diagnostics:
    """Check divergences, R-hat and ESS of ``var_names`` in ``idata``.

    Parameters whose R-hat is undefined are reported, not dropped: those with
    non-finite draws, and those constant across every chain unless constant by
    construction (a correlation matrix's diagonal).

    Examples
    --------
    >>> import numpy as np, arviz as az
    >>> rng = np.random.default_rng(0)
    >>> dt = az.from_dict({"posterior": {"sigma": rng.normal(size=(2, 300)), "tau": np.ones((2, 300))}})
    >>> d = diagnose(dt, ["sigma", "tau"])
    >>> d.ok, d.constant
    (False, ['tau'])
    """
    post = idata["posterior"]
    chains = post.sizes["chain"]
    draws = chains * post.sizes["draw"]
    divergences = 0
    if "sample_stats" in idata.children and "diverging" in idata["sample_stats"].data_vars:
        divergences = int(np.asarray(idata["sample_stats"]["diverging"]).sum())
    table = _summary_table(idata, var_names)
    checkable = chains >= 2 and post.sizes["draw"] >= RHAT_MIN_DRAWS
    structural = table.index.str.match(STRUCTURAL_CONSTANT)
    constant = (table["sd"] <= 1e-12 * np.maximum(1.0, table["mean"].abs())).to_numpy() & ~structural
    no_rhat = ~np.isfinite(table["r_hat"].to_numpy()) & checkable
    undefined = (no_rhat | ~np.isfinite(table["sd"].to_numpy())) & ~constant & ~structural
    undefined_names, constant_names = table.index[undefined].tolist(), table.index[constant].tolist()
    table = table[~(structural | constant | undefined)]
    max_rhat, worst_rhat = _extreme(table["r_hat"], largest=True)
    min_bulk, worst_ess = _extreme(table["ess_bulk"], largest=False)
    min_tail, _ = _extreme(table["ess_tail"], largest=False)
    messages = []
    if divergences:
        messages.append(
            f"{divergences} divergent transitions ({100 * divergences / draws:.1f}% of draws): the sampler could "
            "not explore part of the posterior, so estimates may be biased; raise target_accept (e.g. 0.95 or "
            "0.99), or simplify the random effects (drop a correlation or a near-zero SD)"
        )
    if max_rhat > RHAT_MAX:
        messages.append(
            f"R-hat up to {max_rhat:.3f} ({worst_rhat}): the chains disagree; run longer (more tune and draws) "
            "and check that the model is identified"
        )
    need = ESS_PER_CHAIN_MIN * chains
    if min(min_bulk, min_tail) < need:
        messages.append(
            f"effective sample size as low as {min(min_bulk, min_tail):.0f} ({worst_ess}; want >= {need}): "
            "intervals are noisy; draw more or raise target_accept"
        )
    if not checkable:
        messages.append(
            f"R-hat compares chains and needs at least 2 chains of {RHAT_MIN_DRAWS} draws; this run has {chains} "
            f"chain(s) of {post.sizes['draw']} draws, so convergence was not checked: run 4 chains of 1000 draws"
        )
    messages += _undefined_messages(undefined_names, constant_names)
    return Diagnostics(divergences, draws, max_rhat, min_bulk, min_tail, worst_rhat, worst_ess, messages,
                       undefined_names, constant_names)


def warn_on_problems(diagnostics: Diagnostics) -> None:
    """Issue one SamplingWarning listing every problem found."""
    if diagnostics.messages:
        warnings.warn("; ".join(diagnostics.messages), SamplingWarning, stacklevel=3)
