"""The "statsmodels" engine: MixedLM where it expresses the model exactly.

MixedLM has one ``groups`` factor with correlated random effects
(``exog_re``) and independent variance components nested within the groups
(``exog_vc``). That expresses exactly:

* one grouping factor, with at most one correlated group of columns (any
  further ``||`` columns become variance components);
* a factor whose other factors are all nested in it (``(1|a/b)``), the inner
  ones with independent columns;
* crossed factors with independent columns, as variance components of one
  all-ones group (exact, but dense: ``n x levels`` matrices).

Anything else (crossed correlated slopes, ...) raises :class:`EngineError`;
use the "pls" engine. MixedLM's BFGS runs with a tight gradient tolerance so
that its estimates agree with lme4's to the digits lme4 reports where it finds
the optimum. It stops short of boundary optima (an SD of 7e-4 where lme4 finds 0
on Dyestuff2; a correlation of -0.998 and a REML logLik 1-4 units low where lme4
finds -1 on the cooler experiment), so this engine is used only when asked for:
:func:`near_boundary` flags fits close to the boundary, and
:func:`~bayesmlm.freq.lmer.fit_design` compares every MixedLM optimum with PLS's.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> statsmodels_plan(d).kind
'single'
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

from ..design import Design, FactorBlock
from ..errors import EngineError
from .estimates import FitEstimates, relative_factor
from .theta import ThetaLayout

__all__ = ["StatsmodelsPlan", "statsmodels_plan", "fit_statsmodels", "near_boundary", "NEAR_BOUNDARY"]

NEAR_BOUNDARY = 1e-2
"""Relative-factor diagonal below which a MixedLM optimum may sit short of the boundary."""


@dataclass(frozen=True)
class StatsmodelsPlan:
    """How a design maps onto MixedLM.

    Attributes
    ----------
    kind : {"single", "nested", "crossed"}
    outer : int or None
        Index of the block used as ``groups`` (None for crossed).
    re_columns : tuple of int
        Columns of the outer block that form ``exog_re``.
    """

    kind: str
    outer: int | None
    re_columns: tuple[int, ...]


def _nested_in(inner: FactorBlock, outer: FactorBlock) -> bool:
    return bool(pd.Series(outer.codes).groupby(inner.codes).nunique().max() == 1)


def _re_group(block: FactorBlock) -> tuple[int, ...] | None:
    """The block's correlated group for exog_re, or None if it has two or more."""
    multi = [g for g in block.groups if len(g) > 1]
    if len(multi) > 1:
        return None
    return multi[0] if multi else block.groups[0]


def statsmodels_plan(design: Design) -> StatsmodelsPlan:
    """Map a design onto MixedLM, or raise EngineError saying why it cannot be."""
    blocks = design.blocks
    diagonal = [all(len(g) == 1 for g in b.groups) for b in blocks]
    if len(blocks) == 1:
        group = _re_group(blocks[0])
        if group is None:
            raise EngineError(
                f"statsmodels MixedLM cannot express two correlated groups of columns on {blocks[0].factor!r}; use engine='pls'"
            )
        return StatsmodelsPlan("single", 0, group)
    for k, outer in enumerate(blocks):
        others = [b for j, b in enumerate(blocks) if j != k]
        if all(_nested_in(b, outer) for b in others) and all(diagonal[j] for j in range(len(blocks)) if j != k):
            group = _re_group(outer)
            if group is not None:
                return StatsmodelsPlan("nested", k, group)
    if all(diagonal):
        return StatsmodelsPlan("crossed", None, ())
    factors = " and ".join(repr(b.factor) for b in blocks)
    raise EngineError(
        f"statsmodels MixedLM cannot express correlated random effects on crossed factors {factors} "
        "(it has one grouping factor with correlated effects); use engine='pls'"
    )


def _vc_spec(design: Design, plan: StatsmodelsPlan, groups: np.ndarray, labels: list):
    """Variance components: every (block, column) that is not in exog_re."""
    names, colnames, mats = [], [], []
    index_by_group = {lab: np.flatnonzero(groups == lab) for lab in labels}
    for k, block in enumerate(design.blocks):
        for j, col in enumerate(block.columns):
            if k == plan.outer and j in plan.re_columns:
                continue
            names.append(f"{block.factor}|{col}")
            cn, mm = [], []
            for lab in labels:
                rows = index_by_group[lab]
                codes = block.codes[rows]
                present = np.unique(codes)
                mm.append((codes[:, None] == present[None, :]) * block.values[rows, j][:, None])
                cn.append([block.levels[c] for c in present])
            colnames.append(cn)
            mats.append(mm)
    return VCSpec(names, colnames, mats) if names else None


def fit_statsmodels(design: Design, reml: bool = True) -> FitEstimates:
    """Fit with statsmodels MixedLM (exact mappings only; see module docstring)."""
    design.require_rows("engine='statsmodels'")
    plan = statsmodels_plan(design)
    n = design.n
    if plan.outer is None:
        groups = np.zeros(n, dtype=int)
        exog_re = None
    else:
        outer = design.blocks[plan.outer]
        groups = np.asarray(outer.levels, dtype=object)[outer.codes]
        exog_re = outer.values[:, list(plan.re_columns)]
    labels = sorted(pd.unique(groups).tolist())
    vc = _vc_spec(design, plan, groups, labels)
    model = MixedLM(design.y, design.X, groups=groups, exog_re=exog_re, exog_vc=vc)
    result, failures = None, []
    for method in ("bfgs", "lbfgs", "nm"):
        options = {"bfgs": {"gtol": 1e-8}, "lbfgs": {}, "nm": {"maxiter": 20_000}}[method]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = model.fit(reml=reml, method=method, **options)
            except (np.linalg.LinAlgError, ValueError) as exc:
                failures.append(f"{method}: {exc}")
                continue
        if result.converged:
            break
    if result is None:
        raise EngineError(f"statsmodels MixedLM failed ({'; '.join(failures)}); use engine='pls'")
    messages = [
        f"statsmodels: {w.message}"
        for w in caught
        if any(word in str(w.message).lower() for word in ("converge", "boundary", "singular"))
    ]
    scale = float(result.scale)
    vcomp = dict(zip(vc.names, np.asarray(result.vcomp))) if vc is not None else {}
    covariances, ranef = [], []
    re_effects = result.random_effects
    for k, block in enumerate(design.blocks):
        cov = np.zeros((block.n_cols, block.n_cols))
        values = np.zeros((block.n_levels, block.n_cols))
        if k == plan.outer:
            idx = list(plan.re_columns)
            cov[np.ix_(idx, idx)] = np.asarray(result.cov_re)
            for lev_i, lev in enumerate(block.levels):
                values[lev_i, idx] = np.asarray(re_effects[lev])[: len(idx)]
        for j, col in enumerate(block.columns):
            name = f"{block.factor}|{col}"
            if name not in vcomp:
                continue
            cov[j, j] = vcomp[name]
            level_pos = {lev: i for i, lev in enumerate(block.levels)}
            for lab in labels:
                series = re_effects[lab]
                for label, value in series.items():
                    if str(label).startswith(name + "["):
                        values[level_pos[str(label)[len(name) + 1 : -1]], j] = value
        covariances.append(cov)
        ranef.append(values)
    layout = ThetaLayout.from_design(design)
    theta = layout.from_templates([relative_factor(c / scale) for c in covariances])
    p = design.p
    vcov = np.asarray(result.cov_params())[:p, :p]
    return FitEstimates(
        beta=np.asarray(result.fe_params),
        vcov=vcov,
        sigma=float(np.sqrt(scale)),
        covariances=covariances,
        ranef=ranef,
        loglik=float(result.llf),
        criterion=-2.0 * float(result.llf),
        theta=theta,
        converged=bool(result.converged) and not messages,
        messages=messages,
    )


def near_boundary(estimates: FitEstimates, design: Design) -> bool:
    """True when a relative-factor diagonal is below :data:`NEAR_BOUNDARY`."""
    layout = ThetaLayout.from_design(design)
    return bool(np.any(estimates.theta[layout.is_diagonal] < NEAR_BOUNDARY))
