"""``bm.sample``: from formula, data and priors to a checked posterior.

Examples
--------
>>> resolve_sampler("nutpie")
'nutpie'
"""

from __future__ import annotations

import contextlib
import importlib.util
import numbers
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from ..errors import ConvergenceWarning, DataError, EmpiricalPriorNote, SingularFitWarning
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
from . import precompile
from .loglik import pointwise_loglik
from .native import NativeCollapsed, one_blas_thread, supports
from .centring import describe as describe_centring
from .noncentred import NativeNonCentred, integrates_fixed_effects, noncentred_supports
from .result import BayesFit

__all__ = ["sample", "resolve_sampler", "resolve_method", "check_sampling_args", "SAMPLERS", "LOGLIK_MAX_VALUES"]

LOGLIK_MAX_VALUES = 50_000_000
"""Pointwise log-likelihood is stored automatically up to this many (draws x rows) values."""
Method = Literal["auto", "collapsed", "full"]


def resolve_method(method: str, design) -> tuple[str, str]:
    """The sampling method to use and why.

    ``auto`` integrates the group effects out (collapsed) when there are at
    most ``COLLAPSED_LIMIT`` random plus fixed effects, whose dense algebra
    stays cheap, and samples the non-centred model otherwise. The non-centred
    model needs the rows, which a design reduced from a Dask DataFrame does
    not hold: there a model beyond the limit is an error unless ``collapsed``
    is asked for explicitly, which then warns with the size, as it does for
    any model beyond the limit.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> d = bm.build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> resolve_method("auto", d)[0], resolve_method("full", d)[0]
    ('collapsed', 'full')
    """
    if method not in ("auto", "collapsed", "full"):
        raise ValueError(f"method must be 'auto', 'collapsed' or 'full', got {method!r}")
    size = design.q + design.p
    if method == "collapsed":
        _warn_if_dense(size)
        return "collapsed", "collapsed (requested)"
    if not design.rows_held:
        _refuse_without_rows(method, size)
        return "collapsed", f"collapsed: sampled from the sufficient statistics of a Dask DataFrame ({size} effects)"
    if method == "full":
        return "full", "full model (requested)"
    if size <= COLLAPSED_LIMIT:
        return "collapsed", f"collapsed: {size} effects integrated out exactly, NUTS over the variance parameters"
    return "full", f"full model: {size} effects exceed the collapsed limit of {COLLAPSED_LIMIT}"


def _dense_cost(size: int) -> str:
    return (f"every NUTS step factors and inverts a dense {size} x {size} matrix "
            f"(O((q+p)^3), about {size ** 3 / 3:.2g} flops per gradient, {8 * size * size / 2**20:.3g} MiB)")


def _warn_if_dense(size: int) -> None:
    if size > COLLAPSED_LIMIT:
        warnings.warn(
            f"method='collapsed' with {size} random plus fixed effects (collapsed limit {COLLAPSED_LIMIT}): "
            f"{_dense_cost(size)}; expect slow sampling, or use method='full' with the rows in a pandas DataFrame",
            UserWarning,
            stacklevel=4,
        )


def _refuse_without_rows(method: str, size: int) -> None:
    """A statistics-only design (Dask input) cannot feed the non-centred model."""
    if method == "full":
        raise DataError(
            "method='full' needs the rows, but a Dask DataFrame is reduced to sufficient statistics: pass a "
            "pandas DataFrame (ddf.compute(), or a sample of its rows), or use method='collapsed'"
        )
    if size > COLLAPSED_LIMIT:
        raise DataError(
            f"this model has {size} random plus fixed effects, more than the collapsed limit of {COLLAPSED_LIMIT}, "
            "so method='auto' would sample the non-centred model, which needs the rows; a Dask DataFrame is "
            "reduced to sufficient statistics. Pass a pandas DataFrame (ddf.compute(), or a sample of its rows), "
            f"or pass method='collapsed' to accept the dense cost: {_dense_cost(size)}"
        )


SAMPLERS = ("nutpie", "pymc", "numpyro")
LOW_RANK_OPTIONS: Mapping[str, object] = MappingProxyType({"adaptation": "low_rank", "mass_matrix_gamma": 1e-3})
"""nutpie's low-rank mass matrix, which mixes the intercept of crossed designs far better than a diagonal one
(read-only: every sampler path that uses it shares it).

``mass_matrix_gamma`` regularises the covariances of the window's draws and gradients (``cov / gamma + I``)
before the eigendecompositions of each mass-matrix update. In nutpie's scaled coordinates ``cov`` sums over
the window's draws, so its eigenvalues are of the order of the number of draws, except in the directions
the draws do not span, where they are 0. With nutpie's default gamma, 1e-5, the regularised matrices span
about seven orders of magnitude, and on models with 100-150 parameters the updates then cost more than the
sampling: ``benchmarks/families_vs_bambi.py``'s bernoulli model (135 parameters) tunes one chain in 6.7 s
with it against 1.9 s with 1e-3, and the crossed-slopes brms case (``method="full"``, 4 chains) takes 11.3 s
against 3.1 s. The mass matrix does not move: the geometric mean of the two covariances does not depend on
their common scale, and ``+ I`` matters only where ``cov`` is of the order of ``gamma``, outside the span
of the draws, where the eigenvalue is 1 either way. Measured: the bernoulli model's final eigenvalues agree
within 7%, and min bulk ESS over 2-3 seeds is unchanged (crossed slopes 2,943-3,458 against 3,090-3,122;
bernoulli 1,067-1,461 against 1,252-1,366; Poisson crossed slopes 1,756-2,192 against 1,885-2,065); 1e-2
begins to cost ESS (crossed slopes 2,857-2,875). The same holds on the PyMC model's path, which only changes
the log density. This needs nutpie >= 0.16.11 (nuts-rs 0.18), whose scaling sums over the draws: earlier
releases divided by their number, and there 1e-3 would shrink real eigenvalues toward 1. Hence the floor in
``pyproject.toml`` and ``tests/test_native.py::test_low_rank_options_learn_a_known_ridge``."""
NUTS_OPTIONS: Mapping[str, Mapping[str, object]] = MappingProxyType({"nutpie": LOW_RANK_OPTIONS})
"""Per-sampler options: nutpie's low-rank mass matrix (:data:`LOW_RANK_OPTIONS`)."""
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


def check_sampling_args(draws, tune, chains, seed, target_accept, sampler: str = "nutpie") -> None:
    """Reject sampler settings outside their range, naming the argument, its value and the range.

    Parameters
    ----------
    draws, tune, chains, seed, target_accept :
        As for :func:`sample`: ``draws >= 1``, ``tune >= 1`` with nutpie (whose adaptation
        fails without warm-up) and ``>= 0`` otherwise, ``chains >= 1``, ``seed`` None or a
        whole number in ``[0, 2**63 - 2]``, ``0 < target_accept < 1``. Booleans are not numbers here.
    sampler : str
        The sampler that will run.

    Raises
    ------
    ValueError

    Examples
    --------
    >>> check_sampling_args(1000, 1000, 4, 1, 0.8)
    >>> check_sampling_args(0, 1000, 4, 1, 0.8)
    Traceback (most recent call last):
    ...
    ValueError: draws must be a whole number >= 1 (posterior draws kept per chain), got 0
    """
    _check_count("draws", draws, 1, "posterior draws kept per chain")
    _check_count("tune", tune, 1 if sampler == "nutpie" else 0,
                 "warm-up draws per chain" + ("; nutpie's adaptation needs at least one" if sampler == "nutpie" else ""))
    _check_count("chains", chains, 1, "number of chains; 4 lets R-hat compare them")
    if seed is not None:
        _check_count("seed", seed, 0, "or None; below 2**63", upper=2**63 - 2)
    if isinstance(target_accept, bool) or not isinstance(target_accept, numbers.Real) or not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be a number strictly between 0 and 1 (e.g. 0.8, or 0.95 against "
                         f"divergences), got {target_accept!r}")


def _check_count(name: str, value, minimum: int, what: str, upper: int | None = None) -> None:
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or value < minimum or (upper is not None and value > upper):
        raise ValueError(f"{name} must be a whole number >= {minimum} ({what}), got {value!r}")


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
            priors = empirical(freq if freq is not None else _quiet_lmer(design))
        else:
            priors = default_for_design(design)
    return _checked_priors(priors, design)


def _checked_priors(priors, design) -> PriorSpec:
    """A PriorSpec, or one loaded from a prior file, checked against the design (with the same-data warning)."""
    if isinstance(priors, (str, Path)):
        spec = prior_io.load(priors)
    elif isinstance(priors, PriorSpec):
        spec = priors
    else:
        raise TypeError(f"priors must be a PriorSpec, a prior file path, 'default' or 'empirical'; got {type(priors).__name__}")
    spec.check(design)
    warn_if_same_data(spec, design)
    return spec


def _quiet_lmer(design) -> FreqFit:
    """The lmer fit to elicit empirical priors from, without lmer's own boundary and convergence warnings.

    The empirical rule handles boundary fits, and :func:`~bayesmlm.priors.empirical` warns itself,
    outside this block, when the fit did not converge; other warnings pass.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
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


NONCENTRED_NUTS_OPTIONS: Mapping[str, object] = MappingProxyType({})
"""nutpie's options for the compiled density with a non-centred factor: its default diagonal mass matrix.
The low-rank one diverged there on a crossed Poisson model (15 divergences, min ESS 264 of 2,000 draws,
against none and 360 with the diagonal one)."""

LOW_RANK_UP_TO = 1000
"""Most parameters for nutpie's low-rank mass matrix, whose cost per step grows steeply with the dimension.
With centred factors the direction that moves all of a factor's effects together is as wide as the
effects' SD while each effect is pinned to its standard error: a ridge the low-rank mass matrix learns and
a diagonal one crawls along (crossed slopes, 153 parameters: min ESS 96, R-hat 1.07 with the diagonal one,
the brms comparison passes with the low-rank one). Measured (``benchmarks/families_vs_bambi.py``,
``benchmarks/bayes_insteval.py``): crossed Poisson, 48 parameters: 2.7 s, min ESS 1,756 (diagonal: 131 ESS);
bernoulli, 135 parameters, 4 chains: 7.6 s, ESS 1,067 (diagonal: 10.8 s, ESS 690, with an earlier, slower
gradient); InstEval, 4,134 parameters (low-rank forced): 73.5 s against 54.8 s with the diagonal one for the
same draws and the same 73,000 gradient evaluations (the low-rank directions buy nothing there)."""


def full_nuts_options(model: NativeNonCentred) -> Mapping[str, object]:
    """nutpie's options for the compiled full density: the low-rank mass matrix (:data:`LOW_RANK_OPTIONS`)
    when every sampled factor is centred and the model is small enough (:data:`LOW_RANK_UP_TO`), else the
    diagonal one.

    Centred, the effects and the intercept share a few directions (their sum is known far better than
    each), which the low-rank mass matrix learns and a diagonal one must crawl along. Crossed Poisson model
    of ``benchmarks/families_vs_bambi.py``, measured with nutpie's default gamma: min ESS 2,065 in 14,000
    gradient evaluations, against 131 in 53,544 with the diagonal one (and 360 in 121,792 non-centred).
    """
    sampled = [c for c, i in zip(model.centred, model.integrated) if not i]
    if sampled and all(sampled) and model.n_dim <= LOW_RANK_UP_TO:
        return LOW_RANK_OPTIONS
    return NONCENTRED_NUTS_OPTIONS


def _nutpie_sample(compiled, *, draws, tune, chains, cores, seed, progressbar, target_accept,
                   options: Mapping[str, object] | None = None) -> xr.DataTree:
    import nutpie

    options = NUTS_OPTIONS["nutpie"] if options is None else options
    with one_blas_thread():  # nutpie's threads have small stacks: see one_blas_thread
        idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                              progress_bar=progressbar, target_accept=target_accept, **options)
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
        if isinstance(model, NativeNonCentred):
            return _nutpie_sample(model.for_nutpie(), draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                                  progressbar=progressbar, target_accept=target_accept, options=full_nuts_options(model))
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
    family: str | None = None,
    link: str | None = None,
    trials=None,
    weights=None,
    offset=None,
) -> BayesFit:
    """Fit the Bayesian hierarchical model of an lme4 formula by NUTS.

    Parameters
    ----------
    formula : str
        lme4 formula (see :func:`bayesmlm.lmer`).
    data : pandas.DataFrame or dask.dataframe.DataFrame
        A Dask DataFrame is reduced partition by partition to sufficient
        statistics and sampled collapsed (a model with more than
        ``COLLAPSED_LIMIT`` effects then needs ``method="collapsed"``); the
        pointwise log-likelihood needs the rows and is not stored.
    priors : PriorSpec, path, "default", "empirical" or None
        None (the default) derives empirical priors from an lmer fit of the
        same formula and data and says so in one line; a path loads a TOML
        prior file; "default" uses the data-scaled rules.
    draws, tune, chains : int
        Draws kept per chain (>= 1), warm-up draws per chain (>= 1 for nutpie,
        >= 0 otherwise), number of chains (>= 1; R-hat needs 2).
    seed : int, optional
        Non-negative; makes the run reproducible.
    sampler : {"nutpie", "pymc", "numpyro"}
    target_accept : float
        NUTS target acceptance, between 0 and 1; raise it (0.95, 0.99) when there are divergences.
    progressbar : bool
    method : {"auto", "collapsed", "full"}
        ``collapsed`` integrates the group and (under normal priors) fixed
        effects out of the likelihood and runs NUTS over the variance
        parameters only, then draws the effects exactly for every draw; its
        cost per step does not depend on the number of rows. ``full`` samples
        the non-centred model. ``auto`` (default) is ``collapsed`` for models
        with at most ``COLLAPSED_LIMIT`` random plus fixed effects (see
        :func:`resolve_method`; an explicit ``collapsed`` beyond it warns).
    log_likelihood : bool, optional
        Store the pointwise log-likelihood (for LOO); by default only while it
        stays below ``LOGLIK_MAX_VALUES`` values (draws x rows).
    na_action : {"error", "drop"}
    freq : FreqFit or GlmerFit, optional
        An lmer (glmer, for a family) fit of the same model to reuse for empirical priors.
    family : str, optional
        ``"gaussian"`` (default), ``"student"`` (``nu``), ``"lognormal"``, ``"gamma"``
        (``shape``; log link), ``"bernoulli"``, ``"binomial"`` (``cbind(s, f)`` response or
        ``trials=``), ``"poisson"``, ``"negbinomial"`` (``phi``); canonical links. These are
        sampled non-centred by a compiled density (or the PyMC model for ``sampler="pymc"``
        / ``"numpyro"``); ``method="collapsed"`` is for gaussian models only.
    link : str, optional
        Another link of the family (e.g. ``"probit"``).
    trials, weights, offset :
        As for :func:`bayesmlm.glmer` (``trials``: binomial trials, a column or values, the
        response then being the successes); weights multiply each row's log-likelihood.

    Returns
    -------
    BayesFit

    Raises
    ------
    ValueError
        A sampler setting out of range; a Dask DataFrame with a model beyond
        ``COLLAPSED_LIMIT`` under ``method="auto"`` or with ``method="full"``.

    Warns
    -----
    EmpiricalPriorNote
        Priors were derived from the data being fitted.
    ConvergenceWarning
        Empirical priors come from an lmer fit that did not converge.
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

    A binomial model (the compiled non-centred density):

    >>> herds = bm.sample("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"),
    ...                   family="binomial", priors="default", draws=1000, chains=2, seed=1, progressbar=False)
    >>> herds.fixef().loc["period2", "mean"].round(1), herds.family.name
    (np.float64(-1.0), 'binomial')
    """
    sampler = resolve_sampler(sampler)
    check_sampling_args(draws, tune, chains, seed, target_accept, sampler)
    if _is_family_model(family, link, trials, weights, offset):
        return _sample_family(formula, data, priors, family=family, link=link, trials=trials, weights=weights,
                              offset=offset, draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                              target_accept=target_accept, progressbar=progressbar, method=method,
                              log_likelihood=log_likelihood, na_action=na_action, freq=freq)
    design = make_design(formula, data, na_action=na_action)
    method, method_note = resolve_method(method, design)
    empirical = priors is None or (isinstance(priors, str) and priors == "empirical")
    spec = None if empirical else _resolve_priors(priors, design, freq)
    helped = None
    if sampler == "nutpie" and freq is None and design.rows_held and (empirical or method == "full"):
        helped = _start_helper(design, spec, "collapsed" if method == "collapsed" else None)  # while lmer runs
    if freq is None and empirical:
        freq = _quiet_lmer(design)  # once, for the priors and the centring
    if spec is None:
        spec = _resolve_priors(priors, design, freq)
    if method == "collapsed":
        model, plan, density_note = collapsed_model(design, spec, sampler)
        method_note += f"; {density_note}"
    else:
        if freq is None and _compiled_full(design, spec, sampler):
            freq = _fit_for_centring(design, _quiet_lmer)
        model, full_note = _full_model(design, spec, sampler, freq)
        method_note += f"; {full_note}"
    _stop_unused_helper(helped, model)
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


def _compiled_full(design, spec, sampler: str) -> bool:
    """Whether the full model is the compiled density (else the PyMC model)."""
    return sampler == "nutpie" and noncentred_supports(design, spec) is None


def _full_model(design, spec, sampler: str, fit=None):
    """The full (uncollapsed) model and its note: the compiled density where it covers the model (each
    factor centred or not, informed by ``fit`` when there is one), else the non-centred PyMC model."""
    why_not = noncentred_supports(design, spec) if sampler == "nutpie" else f"sampler {sampler!r}"
    if why_not is not None:
        return build_model(design, spec), f"non-centred PyMC model ({why_not})"
    model = NativeNonCentred.from_design(design, spec, fit=fit)
    sampled = [not i for i in model.integrated]
    parts = []
    if any(sampled):
        parts.append(describe_centring(design, model.centred, sampled)
                     + (" (from the SDs of the frequentist fit and the SD priors)" if fit is not None else
                        " (from the SD priors: no frequentist fit)"))
    if model.fixed_integrated:
        together = [b.factor for b, i in zip(design.blocks, model.integrated) if i]
        parts.append("fixed effects" + (f" and the effects of {', '.join(together)}" if together else "")
                     + " integrated out and drawn from their gaussian conditional")
    if full_nuts_options(model) is LOW_RANK_OPTIONS:
        parts.append("low-rank mass matrix")
    return model, "; ".join(parts + ["compiled density (Numba, cached on disk)"])


def _start_helper(design, spec: PriorSpec | None, kind: str | None = None) -> str | None:
    """Start compiling, in a helper process, the log density the model will sample (``kind``, else the
    full density's: :data:`precompile.KINDS`) while the frequentist fit runs; returns the kind
    started, or None. ``spec`` None (empirical priors, not known yet): normal fixed-effect priors."""
    if kind is None:
        weights = design.glm.weights if design.glm is not None else np.ones(design.n)
        if spec is not None and noncentred_supports(design, spec) is not None:
            return None  # the PyMC model: no callback to compile
        kind = "marginal" if integrates_fixed_effects(design, spec, weights) else "family"
    elif spec is not None and supports(design, spec) is not None:
        return None
    return kind if precompile.start(kind) is not None else None


def _stop_unused_helper(kind: str | None, model) -> None:
    """Stop a helper compiling a log density that ``model`` does not use after all."""
    if kind is None:
        return
    uses = ("collapsed" if isinstance(model, NativeCollapsed) else
            ("marginal" if model.fixed_integrated else "family") if isinstance(model, NativeNonCentred) else None)
    if uses != kind:
        precompile.cancel(kind)


def _fit_for_centring(design, fit_quietly):
    """A frequentist fit of the design to inform the centring, or None (with the reason passed over:
    the rule then uses the SD priors alone, and the sampling note says so)."""
    try:
        return fit_quietly(design)
    except Exception:  # noqa: BLE001  (a fit that fails only informs a choice of coordinates)
        return None


def _is_family_model(family, link, trials, weights, offset) -> bool:
    """Whether a model leaves the gaussian path (collapsed sampler, lmer priors)."""
    if family is None or (isinstance(family, str) and family.strip().lower() == "gaussian"):
        if link not in (None, "identity") or trials is not None:
            raise ValueError("link= other than identity and trials= need a non-gaussian family=")
        return weights is not None or offset is not None
    return True


def _family_priors(priors, design, freq) -> PriorSpec:
    """Priors of a family model: as for gaussian models, with glmer in place of lmer."""
    from ..priors.rules import empirical_glmm

    fam = design.family
    have = getattr(freq, "family", None) if freq is not None else fam
    if have is None or (have.name, have.link.name) != (fam.name, fam.link.name):
        got = f"{have.name} ({have.link.name} link)" if have is not None else f"{type(freq).__name__} (gaussian)"
        raise ValueError(f"freq= is a {got} fit but the model sampled is {fam.name} ({fam.link.name} link): its "
                         "empirical priors would be on another scale; refit it with "
                         f"bm.glmer(formula, data, family={fam.glmer_name!r}, link={fam.link.name!r}) "
                         "(or sample with the fit's link=), or drop freq=")
    if priors is None or (isinstance(priors, str) and priors == "empirical"):
        fit = freq if freq is not None else _quiet_glmer(design)
        if fit is None:
            if priors == "empirical":
                raise ValueError(f"priors='empirical' needs a glmer fit, and glmer does not fit the {design.family.name} "
                                 "family: use priors='default' or a prior file")
            spec = default_for_design(design)
            warnings.warn(f"no priors given: using the default priors (bm.priors.default) for the {design.family.name} "
                          "family", EmpiricalPriorNote, stacklevel=3)
            return spec
        spec = empirical_glmm(fit)
        if priors is None:
            warnings.warn(
                "no priors given: using empirical priors from a glmer fit of the same formula and data "
                "(bm.priors.empirical); this uses the data twice, see its docstring for the honest alternative",
                EmpiricalPriorNote, stacklevel=3)
        spec.check(design)
        return spec
    if isinstance(priors, str) and priors == "default":
        priors = default_for_design(design)
    return _checked_priors(priors, design)


def _quiet_glmer(design):
    """A glmer fit of a family design for empirical priors, or None for families glmer does not fit."""
    from ..freq.glmer import BAYES_ONLY, glmer_of_design

    fam = design.family
    if fam.name in BAYES_ONLY or fam.name == "gaussian":  # glmer hands gaussian to lmer, without weights/offsets
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmer_of_design(design)


def _sample_family(formula, data, priors, *, family, link, trials, weights, offset, draws, tune, chains, seed,
                   sampler, target_accept, progressbar, method, log_likelihood, na_action, freq) -> BayesFit:
    """``bm.sample`` for a response family: the compiled non-centred density (or the PyMC model)."""
    from ..family_design import family_design

    if method == "collapsed":
        raise ValueError("method='collapsed' integrates gaussian effects out and is for gaussian models only; "
                         "use method='auto' or 'full' for this family")
    if method not in ("auto", "full"):
        raise ValueError(f"method must be 'auto', 'collapsed' or 'full', got {method!r}")
    design = family_design(formula, data, family or "gaussian", link=link, trials=trials, weights=weights,
                           offset=offset, na_action=na_action)
    empirical = priors is None or (isinstance(priors, str) and priors == "empirical")
    spec = None if empirical else _family_priors(priors, design, freq)
    helped = None
    if sampler == "nutpie" and freq is None:  # while the glmer fit runs (for the priors or the centring)
        helped = _start_helper(design, spec)
    if freq is None and empirical:
        freq = _quiet_glmer(design)  # once, for the priors and the centring (None where glmer cannot fit)
    if spec is None:
        spec = _family_priors(priors, design, freq)
    fam = design.family
    if freq is None and _compiled_full(design, spec, sampler):
        freq = _fit_for_centring(design, _quiet_glmer)
    model, full_note = _full_model(design, spec, sampler, freq)
    _stop_unused_helper(helped, model)
    note = f"full model ({fam.name}, {fam.link.name} link); {full_note}"
    idata = _run_nuts(model, sampler, "full", draws=draws, tune=tune, chains=chains, seed=seed,
                      progressbar=progressbar, target_accept=target_accept)
    observed = design.glm.successes if fam.name == "binomial" else design.glm.y
    idata["observed_data"] = xr.DataTree(xr.Dataset({"y": (("obs",), observed)}))
    if log_likelihood is None:
        log_likelihood = draws * chains * design.n <= LOGLIK_MAX_VALUES
    if log_likelihood:
        idata["log_likelihood"] = xr.DataTree(pointwise_loglik(idata["posterior"].dataset, design))
    names = ["beta", *fam.aux_params] + [v for b in design.blocks for v in (f"sd[{b.factor}]", f"r[{b.factor}]")]
    names += [v for v in idata["posterior"].data_vars if v.startswith("cor[")]
    diagnostics = diagnose(idata, names)
    warn_on_problems(diagnostics)
    return BayesFit(idata, design, spec, diagnostics, sampler, "full", note)
