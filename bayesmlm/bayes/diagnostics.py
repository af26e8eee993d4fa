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

__all__ = ["Diagnostics", "diagnose", "RHAT_MAX", "ESS_PER_CHAIN_MIN"]

RHAT_MAX = 1.01
"""Largest acceptable rank-normalised R-hat (Vehtari et al. 2021)."""
ESS_PER_CHAIN_MIN = 100
"""Smallest acceptable bulk and tail ESS per chain."""


@dataclass
class Diagnostics:
    """Summary of a run's health.

    Attributes
    ----------
    divergences : int
    draws : int
        Total post-warm-up draws (chains x draws).
    max_rhat, min_ess_bulk, min_ess_tail : float
    worst_rhat, worst_ess : str
        The parameter with the largest R-hat / smallest bulk ESS.
    messages : list of str
        Problems and what to do; empty when all is well.
    """

    divergences: int
    draws: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    worst_rhat: str
    worst_ess: str
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.messages

    def verdict(self) -> str:
        """One line per check, for reports."""
        lines = [
            f"divergent transitions: {self.divergences} of {self.draws} draws",
            f"largest R-hat: {self.max_rhat:.3f} ({self.worst_rhat}); want < {RHAT_MAX}",
            f"smallest bulk / tail ESS: {self.min_ess_bulk:.0f} / {self.min_ess_tail:.0f} ({self.worst_ess})",
        ]
        return "\n".join(lines + (self.messages or ["all checks passed"]))


def diagnose(idata, var_names: list[str]) -> Diagnostics:
    """Check divergences, R-hat and ESS of ``var_names`` in ``idata``."""
    post = idata["posterior"]
    chains = post.sizes["chain"]
    draws = chains * post.sizes["draw"]
    divergences = 0
    if "sample_stats" in idata.children and "diverging" in idata["sample_stats"].data_vars:
        divergences = int(np.asarray(idata["sample_stats"]["diverging"]).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # R-hat of a correlation's constant diagonal
        table = az.summary(idata, var_names=var_names, kind="diagnostics", round_to="none")
    diagonal = table.index.str.match(r"^cor\[.*\]\[(.+), \1\]$")
    table = table[np.isfinite(table["r_hat"]) & ~diagonal]  # a correlation matrix's constant diagonal
    max_rhat = float(table["r_hat"].max())
    min_bulk = float(table["ess_bulk"].min())
    min_tail = float(table["ess_tail"].min())
    worst_rhat = str(table["r_hat"].idxmax())
    worst_ess = str(table["ess_bulk"].idxmin())
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
    return Diagnostics(divergences, draws, max_rhat, min_bulk, min_tail, worst_rhat, worst_ess, messages)


def warn_on_problems(diagnostics: Diagnostics) -> None:
    """Issue one SamplingWarning listing every problem found."""
    if diagnostics.messages:
        warnings.warn("; ".join(diagnostics.messages), SamplingWarning, stacklevel=3)
