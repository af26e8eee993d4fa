"""Compile every Numba kernel into its disk cache ahead of the first model.

bayesmlm's compiled pieces (the PLS engine, PIRLS and the family kernels, the
collapsed and full densities that nutpie calls) are compiled by Numba on first use
and cached on disk (``cache=True``), so only the first run on a machine pays the
compilation (about 7-9 s for one model on 2 cores; every kernel, about 30-45 s).
:func:`warm_up` pays it at install time instead (``./dev`` runs ``bayesmlm warmup`` after
installing; run it yourself after ``pip install``): it fits tiny models, builds every pair of C
callbacks and runs the diagnostics once, without sampling.

Examples
--------
>>> seconds = warm_up()   # quick when the caches are already filled
>>> seconds >= 0
True
"""

from __future__ import annotations

import time
import warnings

__all__ = ["warm_up"]


def warm_up() -> float:
    """Compile (or load from the disk cache) every Numba kernel; returns the seconds it took."""
    start = time.perf_counter()
    from . import datasets
    from .bayes.native import NativeCollapsed, compiled_callbacks
    from .bayes.noncentred import NativeNonCentred, noncentred_callbacks
    from .design import build_design
    from .family_design import family_design
    from .freq.glmer import glmer
    from .freq.lmer import lmer
    from .priors.rules import default_for_design

    sleep = datasets.load("sleepstudy")
    cbpp = datasets.load("cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lmer("Reaction ~ Days + (Days | Subject)", sleep)
        glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
        compiled_callbacks()
        noncentred_callbacks(False)
        noncentred_callbacks(True)
        gaussian = build_design("Reaction ~ Days + (Days | Subject)", sleep)
        priors = default_for_design(gaussian)
        for model in (NativeCollapsed.from_design(gaussian, priors), NativeNonCentred.from_design(gaussian, priors)):
            model.logp_and_grad(model.start)
        binomial = family_design("incidence ~ period + (1 | herd)", cbpp, "binomial", trials="size")
        full = NativeNonCentred.from_design(binomial, default_for_design(binomial))
        full.logp_and_grad(full.start)
        _diagnostics_kernels()
    return time.perf_counter() - start


def _diagnostics_kernels() -> None:
    """ArviZ's vectorised ESS (a Numba gufunc, cached on disk), as ``bm.sample``'s diagnostics call it."""
    import numpy as np
    from arviz_base import from_dict

    from .bayes.diagnostics import _summary_table

    _summary_table(from_dict({"posterior": {"x": np.random.default_rng(0).normal(size=(2, 100, 3))}}), ["x"],
                   vectorised_from=1)
