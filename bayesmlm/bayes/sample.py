"""``bm.sample``: from formula, data and priors to a checked posterior.

Examples
--------
>>> resolve_sampler("nutpie")
'nutpie'
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd
import pymc as pm
import xarray as xr

from ..design import build_design
from ..errors import EmpiricalPriorNote
from ..frame import NaAction
from ..freq.lmer import fit_design
from ..freq.result import FreqFit
from ..priors import io as prior_io
from ..priors.rules import default_for_design, empirical, warn_if_same_data
from ..priors.spec import PriorSpec
from .build import build_model
from .diagnostics import diagnose, warn_on_problems
from .loglik import pointwise_loglik
from .result import BayesFit

__all__ = ["sample", "resolve_sampler", "SAMPLERS"]

SAMPLERS = ("nutpie", "pymc", "numpyro")
NUTS_OPTIONS: dict[str, dict] = {"nutpie": {"adaptation": "low_rank"}}
"""Per-sampler options: nutpie's low-rank mass matrix mixes the intercept of crossed designs far better."""
Sampler = Literal["nutpie", "pymc", "numpyro"]


def resolve_sampler(sampler: str) -> str:
    """Check that a sampler is known and installed; explain how to get it if not."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    needs = {"nutpie": ["nutpie"], "numpyro": ["numpyro", "jax"], "pymc": []}[sampler]
    absent = [m for m in needs if importlib.util.find_spec(m) is None]
    if absent:
        raise ValueError(f"sampler {sampler!r} needs {', '.join(absent)}: pip install {' '.join(absent)}")
    return sampler


def _resolve_priors(priors, design, freq: FreqFit | None) -> PriorSpec:
    if priors is None:
        fit = freq if freq is not None else _quiet_lmer(design)
        spec = empirical(fit)
        warnings.warn(
            "no priors given: using empirical priors from an lmer fit of the same formula and data "
            "(bm.priors.empirical); this uses the data twice, see its docstring for the honest alternative",
            EmpiricalPriorNote,
            stacklevel=3,
        )
        return spec
    if isinstance(priors, str) and priors in ("default", "empirical"):
        if priors == "empirical":
            spec = empirical(freq if freq is not None else _quiet_lmer(design))
        else:
            spec = default_for_design(design)
    elif isinstance(priors, (str, Path)):
        spec = prior_io.load(priors)
    elif isinstance(priors, PriorSpec):
        spec = priors
    else:
        raise TypeError(f"priors must be a PriorSpec, a prior file path, 'default' or 'empirical'; got {type(priors).__name__}")
    spec.check(design)
    warn_if_same_data(spec, design)
    return spec


def _quiet_lmer(design) -> FreqFit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary fits are handled by the empirical rule
        return fit_design(design)


def sample(
    formula: str,
    data: pd.DataFrame,
    priors: PriorSpec | str | Path | None = None,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: Sampler = "nutpie",
    target_accept: float = 0.8,
    progressbar: bool = True,
    log_likelihood: bool = True,
    na_action: NaAction = "error",
    freq: FreqFit | None = None,
) -> BayesFit:
    """Fit the Bayesian hierarchical model of an lme4 formula by NUTS.

    Parameters
    ----------
    formula : str
        lme4 formula (see :func:`bayesmlm.lmer`).
    data : pandas.DataFrame
    priors : PriorSpec, path, "default", "empirical" or None
        None (the default) derives empirical priors from an lmer fit of the
        same formula and data and says so in one line; a path loads a TOML
        prior file; "default" uses the data-scaled rules.
    draws, tune, chains : int
        Draws kept per chain, warm-up draws per chain, number of chains.
    seed : int, optional
        Makes the run reproducible.
    sampler : {"nutpie", "pymc", "numpyro"}
    target_accept : float
        NUTS target acceptance; raise it (0.95, 0.99) when there are divergences.
    progressbar : bool
    log_likelihood : bool
        Store the pointwise log-likelihood (for LOO).
    na_action : {"error", "drop"}
    freq : FreqFit, optional
        An lmer fit of the same model to reuse for empirical priors.

    Returns
    -------
    BayesFit

    Warns
    -----
    EmpiricalPriorNote
        Priors were derived from the data being fitted.
    SamplingWarning
        Divergences, R-hat above 1.01 or too small an effective sample size,
        with what to do.
    """
    sampler = resolve_sampler(sampler)
    design = build_design(formula, data, na_action=na_action)
    spec = _resolve_priors(priors, design, freq)
    model = build_model(design, spec)
    with model, warnings.catch_warnings():
        # PyTensor's C backend warns that it found no BLAS; the sampler runs on its Numba backend
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=min(chains, os.cpu_count() or 1),
            random_seed=seed,
            nuts_sampler=sampler,
            progressbar=progressbar,
            nuts={"target_accept": target_accept, **NUTS_OPTIONS.get(sampler, {})},
            compute_convergence_checks=False,
        )
    if log_likelihood:
        idata["log_likelihood"] = xr.DataTree(pointwise_loglik(idata["posterior"].dataset, design))
    names = ["beta", "sigma"] + [v for b in design.blocks for v in (f"sd[{b.factor}]", f"r[{b.factor}]")]
    names += [v for v in idata["posterior"].data_vars if v.startswith("cor[")]
    diagnostics = diagnose(idata, names)
    warn_on_problems(diagnostics)
    return BayesFit(idata, design, spec, diagnostics, sampler)
