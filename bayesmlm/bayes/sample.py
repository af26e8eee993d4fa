"""``bm.sample``: from formula, data and priors to a checked posterior.

Examples
--------
>>> resolve_sampler("nutpie")
'nutpie'
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd
import pymc as pm
import xarray as xr

from ..errors import EmpiricalPriorNote
from ..frame import NaAction
from ..freq.lmer import fit_design, make_design
from ..freq.result import FreqFit
from ..priors import io as prior_io
from ..priors.rules import default_for_design, empirical, warn_if_same_data
from ..priors.spec import PriorSpec
from .build import build_model
from .compile import compile_for_nutpie
from .collapsed import COLLAPSED_LIMIT, build_collapsed_model, collapsed_plan, draw_effects
from .diagnostics import diagnose, warn_on_problems
from .loglik import pointwise_loglik
from .native import NativeCollapsed, one_blas_thread, supports
from .result import BayesFit

__all__ = ["sample", "resolve_sampler", "resolve_method", "SAMPLERS", "LOGLIK_MAX_VALUES"]

LOGLIK_MAX_VALUES = 50_000_000
"""Pointwise log-likelihood is stored automatically up to this many (draws x rows) values."""
Method = Literal["auto", "collapsed", "full"]


def resolve_method(method: str, design) -> tuple[str, str]:
    """The sampling method to use and why.

    ``auto`` integrates the group effects out (collapsed) when there are at
    most ``COLLAPSED_LIMIT`` random plus fixed effects, whose dense algebra
    stays cheap, and samples the non-centred model otherwise.
    """
    size = design.q + design.p
    if method == "auto" and not design.rows_held:
        return "collapsed", f"collapsed: sampled from the sufficient statistics of a Dask DataFrame ({size} effects)"
    if method == "auto":
        if size <= COLLAPSED_LIMIT:
            return "collapsed", f"collapsed: {size} effects integrated out exactly, NUTS over the variance parameters"
        return "full", f"full non-centred model: {size} effects exceed the collapsed limit of {COLLAPSED_LIMIT}"
    if method == "collapsed":
        return "collapsed", "collapsed (requested)"
    if method == "full":
        return "full", "full non-centred model (requested)"
    raise ValueError(f"method must be 'auto', 'collapsed' or 'full', got {method!r}")

SAMPLERS = ("nutpie", "pymc", "numpyro")
NUTS_OPTIONS: dict[str, dict] = {"nutpie": {"adaptation": "low_rank"}}
"""Per-sampler options: nutpie's low-rank mass matrix mixes the intercept of crossed designs far better."""
Sampler = Literal["nutpie", "pymc", "numpyro"]


@contextlib.contextmanager
def quiet_blas_warning():
    """Hide PyTensor's "could not link to a BLAS" warning: the samplers use its Numba backend."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        yield


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


def collapsed_model(design, priors: PriorSpec, sampler: str = "nutpie") -> tuple:
    """The collapsed model to sample, its plan, and which log density it uses.

    The compiled density (:class:`NativeCollapsed`) when nutpie samples and it covers the
    priors; else the PyMC model of ``collapsed.py``, with the reason.
    """
    plan = collapsed_plan(design, priors)
    why_not = supports(design, priors) if sampler == "nutpie" else f"sampler {sampler!r}"
    if why_not is None:
        return NativeCollapsed.from_design(design, priors, plan.stats), plan, "compiled density (Numba, cached on disk)"
    model, plan = build_collapsed_model(design, priors, plan)
    return model, plan, f"PyTensor density ({why_not})"


def _nutpie_sample(compiled, *, draws, tune, chains, cores, seed, progressbar, target_accept) -> xr.DataTree:
    import nutpie

    with one_blas_thread():  # nutpie's threads have small stacks: see one_blas_thread
        idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                              progress_bar=progressbar, target_accept=target_accept, **NUTS_OPTIONS["nutpie"])
    return xr.DataTree.from_dict({"posterior": idata["posterior"].to_dataset(),
                                  "sample_stats": idata["sample_stats"].to_dataset()})


def _run_nuts(model, sampler: str, method: str, *, draws, tune, chains, seed, progressbar, target_accept) -> xr.DataTree:
    """Run NUTS on a built model; returns a DataTree with posterior and sample_stats.

    ``model`` is a PyMC model or, for collapsed fits that the compiled density
    covers, a :class:`NativeCollapsed`, whose cached C callbacks nutpie calls
    directly. Other collapsed models reach nutpie through PyTensor's
    disk-cached compiled gradient (``compile_for_nutpie``) rather than a Numba
    callback compiled in every process; the full model has thousands of
    parameters, and keeps nutpie's own compiled callback.
    """
    cores = min(chains, os.cpu_count() or 1)
    with quiet_blas_warning():
        if sampler == "nutpie" and method == "collapsed":
            compiled = model.for_nutpie() if isinstance(model, NativeCollapsed) else compile_for_nutpie(model)
            return _nutpie_sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                                  progressbar=progressbar, target_accept=target_accept)
        with model:
            return pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=seed,
                nuts_sampler=sampler,
                progressbar=progressbar,
                nuts={"target_accept": target_accept, **NUTS_OPTIONS.get(sampler, {})},
                compute_convergence_checks=False,
            )


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
    method: Method = "auto",
    log_likelihood: bool | None = None,
    na_action: NaAction = "error",
    freq: FreqFit | None = None,
) -> BayesFit:
    """Fit the Bayesian hierarchical model of an lme4 formula by NUTS.

    Parameters
    ----------
    formula : str
        lme4 formula (see :func:`bayesmlm.lmer`).
    data : pandas.DataFrame or dask.dataframe.DataFrame
        A Dask DataFrame is reduced partition by partition to sufficient
        statistics and sampled collapsed; the pointwise log-likelihood then
        needs the rows and is not stored.
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
    method : {"auto", "collapsed", "full"}
        ``collapsed`` integrates the group and (under normal priors) fixed
        effects out of the likelihood and runs NUTS over the variance
        parameters only, then draws the effects exactly for every draw; its
        cost per step does not depend on the number of rows. ``full`` samples
        the non-centred model. ``auto`` (default) is ``collapsed`` for models
        with at most ``COLLAPSED_LIMIT`` random plus fixed effects.
    log_likelihood : bool, optional
        Store the pointwise log-likelihood (for LOO); by default only while it
        stays below ``LOGLIK_MAX_VALUES`` values (draws x rows).
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

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> post = bm.sample("Reaction ~ Days + (Days | Subject)", df, priors="default", draws=300,
    ...                  chains=2, seed=1, progressbar=False)
    >>> post.method, post.fixef().shape
    ('collapsed', (2, 4))
    >>> bool(abs(post.fixef().loc["Days", "mean"] - 10.5) < 1.5)
    True
    """
    sampler = resolve_sampler(sampler)
    design = make_design(formula, data, na_action=na_action)
    spec = _resolve_priors(priors, design, freq)
    method, method_note = resolve_method(method, design)
    if method == "collapsed":
        model, plan, density_note = collapsed_model(design, spec, sampler)
        method_note += f"; {density_note}"
    else:
        model = build_model(design, spec)
    idata = _run_nuts(model, sampler, method, draws=draws, tune=tune, chains=chains, seed=seed,
                      progressbar=progressbar, target_accept=target_accept)
    if design.rows_held:
        idata["observed_data"] = xr.DataTree(xr.Dataset({"y": (("obs",), design.y)}))
    if method == "collapsed":
        posterior = idata["posterior"].to_dataset()
        effects = draw_effects(posterior, design, plan, spec, seed=None if seed is None else seed + 1)
        idata["posterior"] = xr.DataTree(posterior.merge(effects).assign_attrs(posterior.attrs))
    if log_likelihood is None:
        log_likelihood = design.rows_held and draws * chains * design.n <= LOGLIK_MAX_VALUES
    if log_likelihood:
        idata["log_likelihood"] = xr.DataTree(pointwise_loglik(idata["posterior"].dataset, design))
    names = ["beta", "sigma"] + [v for b in design.blocks for v in (f"sd[{b.factor}]", f"r[{b.factor}]")]
    names += [v for v in idata["posterior"].data_vars if v.startswith("cor[")]
    diagnostics = diagnose(idata, names)
    warn_on_problems(diagnostics)
    return BayesFit(idata, design, spec, diagnostics, sampler, method, method_note)
