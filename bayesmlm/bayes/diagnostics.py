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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import SamplingWarning
from .precompile import usable_cores

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


VECTORISED_FROM = 300
"""Scalars from which the diagnostics use ArviZ's vectorised (Numba) backend: below it the default
backend's Python loop takes well under a second, less than compiling the vectorised kernels costs on
a machine whose Numba cache is empty (about 4 s here)."""


def _summary_table(idata, var_names: list[str], vectorised_from: int = VECTORISED_FROM) -> pd.DataFrame:
    """Mean, sd, bulk and tail ESS and rank-normalised R-hat of every scalar in ``var_names``, as
    ArviZ's ``summary`` computes them (same definitions, same row labels), unrounded.

    ArviZ's default (``base``) backend computes each scalar's diagnostics in a Python loop, 8-11 s
    for the 4,134 parameters of a Bayesian InstEval; its vectorised backend
    (:mod:`arviz_stats.numba.diagnostics`, whole arrays through xarray-einstats) takes a fraction of
    that. That backend fails on scalars constant over all draws (a correlation matrix's diagonal, or a
    stuck parameter), so those few go through the default backend. Models with fewer than
    ``vectorised_from`` such scalars use the default backend throughout. Bulk ESS, R-hat (see
    :func:`_rank_normalised`) and tail ESS (see :func:`_tail_ess`) are ArviZ's.
    """
    from arviz_base import dataset_to_dataarray, extract

    dataset = extract(idata, var_names=var_names, combined=False, keep_dataset=True).astype(float)
    draws = dataset_to_dataarray(dataset, sample_dims=["chain", "draw"]).transpose("chain", "draw", "label")
    table = pd.DataFrame({"mean": draws.mean(("chain", "draw"), skipna=False).to_numpy(),
                          "sd": draws.std(("chain", "draw"), ddof=1, skipna=False).to_numpy()},
                         index=pd.Index(draws["label"].to_numpy(), dtype=object))
    spread = (draws.max(("chain", "draw")) - draws.min(("chain", "draw"))).to_numpy()
    finite = np.isfinite(draws).all(("chain", "draw")).to_numpy()  # xarray's max and min skip NaN
    n_chain, n_draw = draws.sizes["chain"], draws.sizes["draw"]
    # the vectorised backend splits chains in two halves exactly (ArviZ's default drops an odd middle draw)
    vectorisable = finite & (spread > np.finfo(float).resolution) & (n_chain >= 2) & (n_draw >= 4) & (n_draw % 2 == 0)
    if vectorisable.sum() < vectorised_from:
        vectorisable[:] = False
    varying = np.flatnonzero(vectorisable)  # what the vectorised backend needs (ArviZ's rules below it: NaN)
    constant = np.flatnonzero(~vectorisable)
    # numpy's sorts and FFTs release the GIL: large models' scalars in chunks on every core
    chunks = [(rows, True) for rows in np.array_split(varying, min(usable_cores(), 1 + varying.size // 500))]
    chunks += [(constant, False)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # R-hat of a constant: 0 / 0, handled by the caller
        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            parts = list(pool.map(lambda chunk: _diagnostics_of(draws, *chunk), chunks))
    for (rows, _), values in zip(chunks, parts):
        for name, column in values.items():
            table.loc[table.index[rows], name] = column
    return table


def _diagnostics_of(draws, rows: np.ndarray, vectorised: bool) -> dict[str, np.ndarray]:
    """Bulk and tail ESS and R-hat of the scalars ``rows`` of ``draws`` (chain, draw, label): with ArviZ's
    vectorised backend, or (``vectorised=False``: constant or non-finite scalars, fewer than 2 chains or 4
    draws, where ArviZ's rules give NaN, or an odd number of draws) its default one."""
    from arviz_stats import ess, rhat

    if rows.size == 0:
        return {}
    part = draws.isel(label=rows)
    if vectorised:
        from arviz_stats.numba import diagnostics as backend  # its import compiles Numba gufuncs

        bulk, r_hat = _rank_normalised(part, backend)
        tail = _tail_ess(part, backend)
    else:
        bulk, tail, r_hat = ess(part, method="bulk"), ess(part, method="tail"), rhat(part)
    out = {}
    for name, values in (("ess_bulk", bulk), ("ess_tail", tail), ("r_hat", r_hat)):
        if isinstance(values, xr.Dataset):  # the vectorised backend merges some results into a Dataset
            values = values[next(iter(values.data_vars))]
        out[name] = np.asarray(values.reindex(label=part["label"]).transpose("label"), dtype=float)
    return out


def _z_scale(draws: xr.DataArray) -> xr.DataArray:
    """Rank-normalised draws, as ArviZ's ``_z_scale``: average ranks over all chains and draws together,
    Blom's offsets ``(rank - 3/8) / (S + 1/4)``, then the normal quantile. Through ``scipy.special.ndtri``
    rather than ``scipy.stats.norm.ppf``, whose argument checks cost 13 times as much (2.2 s against 0.16 s
    for the 16 million draws of a Bayesian InstEval), with the same values."""
    from scipy import special, stats

    chains, n_draws, labels = draws.shape
    flat = draws.to_numpy().reshape(chains * n_draws, labels)
    ranks = stats.rankdata(flat, method="average", axis=0)
    z = special.ndtri((ranks - 0.375) / (chains * n_draws + 0.25))
    return draws.copy(data=z.reshape(chains, n_draws, labels))


def _split_chains(draws: xr.DataArray) -> xr.DataArray:
    """Each chain's two halves as chains of their own (an even number of draws)."""
    chains, n_draws, labels = draws.shape
    halves = draws.to_numpy().reshape(chains * 2, n_draws // 2, labels)
    return xr.DataArray(halves, dims=draws.dims, coords={"label": draws["label"]})


def _rank_normalised(draws: xr.DataArray, vectorised) -> tuple:
    """ArviZ's bulk ESS and rank-normalised R-hat (Vehtari et al. 2021) through its vectorised backend,
    rank-normalising with :func:`_z_scale`. Ranks over all draws do not depend on how chains are split, so
    the bulk ESS is the split-chain ESS of the normalised draws (``method="mean"``) and the R-hat the larger
    of the split-chain R-hats of the normalised draws and of the normalised distances from the median."""
    draws = draws.transpose("chain", "draw", "label")
    z = _z_scale(draws)
    bulk = vectorised.ess(z, method="mean")
    folded = _z_scale(abs(draws - draws.median(("chain", "draw"))))
    centre = vectorised.rhat(_split_chains(z), method="identity")
    tails = vectorised.rhat(_split_chains(folded), method="identity")
    # max(centre, tails) as ArviZ's default backend takes it: the centre's where the folded draws are all
    # equal (a 50/50 binary parameter) and their R-hat is NaN
    return bulk, xr.where(tails > centre, tails, centre)


def _tail_ess(draws, vectorised):
    """ArviZ's tail ESS: min over the quantiles ``(1 - ci_prob) / 2`` and ``(1 + ci_prob) / 2`` (ArviZ's
    ``stats.ci_prob`` setting; linear interpolation over every draw) of the split-chain ESS of the
    indicator ``draw <= quantile``."""
    from arviz_base import rcParams

    prob = float(rcParams["stats.ci_prob"])
    probs = sorted((prob, 1.0 - prob))
    quantiles = draws.quantile(probs, dim=("chain", "draw"), method="linear", skipna=False)  # finite here
    low, high = (_split_ess((draws <= quantiles.sel(quantile=q, drop=True)).astype(float), vectorised)
                 for q in probs)
    return np.minimum(low, high)


def _split_ess(draws, vectorised) -> xr.DataArray:
    """Split-chain ESS of each label of ``draws`` (chain, draw, label), ArviZ's ``method="mean"``: the
    vectorised backend on the labels that vary, and ArviZ's value for a constant, every draw counted, on
    the rest (an indicator can be constant where the draws are not: a 50/50 binary parameter below its
    95% quantile). The backend fails on a mixture of the two."""
    varies = (draws.max(("chain", "draw")) > draws.min(("chain", "draw"))).to_numpy()
    out = np.full(varies.shape, float(draws.sizes["chain"] * draws.sizes["draw"]))
    if varies.any():
        part = draws.isel(label=np.flatnonzero(varies))
        values = vectorised.ess(part, method="mean")
        out[varies] = np.asarray(values.transpose("label"), dtype=float)
    return xr.DataArray(out, dims=("label",), coords={"label": draws["label"]})


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
