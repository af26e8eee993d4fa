"""Rules that write a PriorSpec: data-scaled defaults and empirical priors.

Default rule (``default``), scaled by the data so that it works in any units,
in the spirit of rstanarm's and brms's autoscaled priors. With ``s_y`` the SD of
the response and ``s_j``, ``m_j`` the SD and mean of design column ``j``:

* slope ``j``: ``Normal(0, 2.5 s_y / s_j)`` -- a one-SD change in ``x_j``
  moves ``y`` by up to a few ``s_y``;
* ``Intercept``: ``Normal(mean(y), 2.5 s_y sqrt(1 + sum_j (m_j / s_j)^2))`` --
  wide enough for an intercept at ``x = 0`` far from the data;
* ``sd[g][Intercept]``: ``HalfStudentT(3, 2.5 s_y)``; ``sd[g][x_j]``:
  ``HalfStudentT(3, 2.5 s_y / s_j)`` -- heavy tails, mass near 0 allowed;
* ``cor[g]``: ``LKJ(2)`` -- mild preference for small correlations;
* ``sigma``: ``HalfStudentT(3, 2.5 s_y)``.

Empirical rule (``empirical``): centred on an lmer fit, with the fit's
uncertainty inflated: fixed effects ``Normal(estimate, 5 SE)``; a group SD
``HalfNormal(max(0.1 d, 2 k_J sd_hat))``, with ``d`` the default rule's scale
for it and ``k_J`` the widening an SD estimated from ``J`` levels calls for
(:func:`sd_level_factor`), so that few levels or a tiny estimate never make a
dogmatic prior, and never wider than the default rule (above ``d`` the default
``HalfStudentT(3, d)`` is used); ``sigma`` ``HalfNormal(2 sigma_hat)``. A fit that did not
converge gives a ``ConvergenceWarning``. Using the same data for the prior
and the posterior narrows the posterior; an honest alternative is a fit on
other data (e.g. an earlier period), which this function accepts just the same.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> pri = empirical(fit)
>>> pri["sd[Subject][Days]"]
HalfNormal(sigma=17.7563)
>>> print(pri.notes(same_data=True)[0][:60])
These priors come from a fit to the same data that will be s
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..design import Design, build_design
from ..errors import ConvergenceWarning, DataError, EmpiricalPriorNote
from ..freq.result import FreqFit
from .distributions import LKJ, Gamma, HalfNormal, HalfStudentT, LogNormal, Normal
from .spec import SAME_DATA_NOTE, PriorSpec, model_parameters

__all__ = [
    "default",
    "default_for_design",
    "empirical",
    "empirical_glmm",
    "sd_level_factor",
    "data_fingerprint",
    "data_differences",
    "require_same_data",
    "warn_if_same_data",
]


def data_fingerprint(design: Design) -> str:
    """Short hash of the response and fixed-effects matrix, to spot reuse of the same data.

    For a family model (``design.glm``) the binomial trials, the weights and the offset are
    hashed too, each when the design has them (trials or weights other than 1, an offset other
    than 0): the same counts over other exposures or trials are other data.

    Parameters
    ----------
    design : Design

    Examples
    --------
    >>> import bayesmlm as bm
    >>> d = bm.build_design("Reaction ~ Days + (1 | Subject)", bm.datasets.load("sleepstudy"))
    >>> len(data_fingerprint(d)), data_fingerprint(d) == data_fingerprint(d)
    (16, True)
    """
    digest = hashlib.sha256()
    if design.rows_held:
        digest.update(np.ascontiguousarray(design.y).tobytes())
        digest.update(np.ascontiguousarray(design.X).tobytes())
        glm = getattr(design, "glm", None)
        if glm is not None:  # a family model: binomial trials, weights and offset are data too
            for name, part, neutral in (("trials", glm.trials, 1.0), ("weights", glm.weights, 1.0),
                                        ("offset", glm.offset, 0.0)):
                values = np.asarray(part, dtype=float)
                if np.any(values != neutral):  # only when the design has them: other fingerprints stay as they were
                    digest.update(name.encode())
                    digest.update(np.ascontiguousarray(values).tobytes())
    else:  # reduced from a distributed frame: its statistics stand for the rows
        stats = design.sufficient_stats()
        for part in (stats.XtX, stats.Xty, np.array([stats.yty, stats.n])):
            digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()[:16]


DATA_PARTS = ("rows", "response", "fixed", "grouping")
"""What :func:`data_differences` can compare: row count (always compared first), response values,
fixed-effects columns, and grouping factors (names, levels, each row's level, the varying columns)."""


def _rows_differ(a: np.ndarray, b: np.ndarray, what: str, names: tuple[str, str]) -> str | None:
    """How many rows of two equally long arrays differ (exactly), and the first one; None if none."""
    differ = np.any((np.asarray(a) != np.asarray(b)).reshape(len(a), -1), axis=1)
    if not differ.any():
        return None
    i = int(np.argmax(differ))
    first = [np.asarray(x)[i].tolist() for x in (a, b)]
    return (f"{what}: {int(differ.sum())} of {len(a)} rows differ, first at row {i} "
            f"({first[0]} in {names[0]!r}, {first[1]} in {names[1]!r})")


def _fixed_differences(a: Design, b: Design, names: tuple[str, str]) -> list[str]:
    if a.fixed_names != b.fixed_names:
        return [f"fixed-effects columns: {a.fixed_names} in {names[0]!r}, {b.fixed_names} in {names[1]!r}"]
    changed = _rows_differ(a.X, b.X, f"fixed-effects columns {a.fixed_names}", names)
    return [changed] if changed else []


def _block_differences(block, other, names: tuple[str, str]) -> list[str]:
    if block.levels != other.levels:
        only = [[v for v in x.levels if v not in set(y.levels)][:5] for x, y in ((block, other), (other, block))]
        return [f"grouping levels of {block.factor!r}: {block.n_levels} in {names[0]!r}, {other.n_levels} in "
                f"{names[1]!r} (only in {names[0]!r}: {only[0]}, only in {names[1]!r}: {only[1]})"]
    moved = _rows_differ(block.codes, other.codes, f"grouping levels of {block.factor!r} (each row's level index)", names)
    if moved:
        return [moved]
    if block.columns != other.columns:
        return [f"varying columns of {block.factor!r}: {list(block.columns)} in {names[0]!r}, "
                f"{list(other.columns)} in {names[1]!r}"]
    changed = _rows_differ(block.values, other.values, f"varying columns {list(block.columns)} of {block.factor!r}", names)
    return [changed] if changed else []


def _grouping_differences(a: Design, b: Design, names: tuple[str, str]) -> list[str]:
    fa, fb = [blk.factor for blk in a.blocks], [blk.factor for blk in b.blocks]
    if sorted(fa) != sorted(fb):
        return [f"grouping factors: {fa} in {names[0]!r}, {fb} in {names[1]!r}"]
    return [line for block in a.blocks for line in _block_differences(block, b.block(block.factor), names)]


def data_differences(a: Design, b: Design, names: tuple[str, str] = ("a", "b"),
                     parts: tuple[str, ...] = DATA_PARTS) -> list[str]:
    """How the data behind two designs differ, in words; empty when they are the same.

    The same concept as :func:`data_fingerprint`, spelled out: row count, then
    (for equally many rows) response values, fixed-effects columns and
    grouping factors, each compared exactly, row by row. Designs reduced from
    a Dask frame hold only statistics, so for them the fingerprints are compared.

    Parameters
    ----------
    a, b : Design
    names : (str, str)
        What to call the two in the messages (e.g. the models' names).
    parts : tuple of str
        Subset of ``("rows", "response", "fixed", "grouping")`` to compare; the row
        count is always compared.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> d = bm.build_design("Reaction ~ Days + (1 | Subject)", df)
    >>> data_differences(d, bm.build_design("Reaction ~ Days + (Days | Subject)", df), parts=("rows", "response"))
    []
    >>> changed = df.assign(Reaction=df.Reaction.where(df.index != 3, 300.0))
    >>> data_differences(d, bm.build_design("Reaction ~ Days + (1 | Subject)", changed), ("fit", "post"))
    ["response values: 1 of 180 rows differ, first at row 3 (321.4398 in 'fit', 300.0 in 'post')"]
    """
    unknown = set(parts) - set(DATA_PARTS)
    if unknown:
        raise ValueError(f"unknown data parts {sorted(unknown)}; choose from {DATA_PARTS}")
    if a.n != b.n:  # nothing else can be compared row by row
        return [f"row count: {a.n} in {names[0]!r}, {b.n} in {names[1]!r}"]
    if not (a.rows_held and b.rows_held):
        same = data_fingerprint(a) == data_fingerprint(b)
        return [] if same else [f"data (reduced to sufficient statistics): the fingerprints of {names[0]!r} and {names[1]!r} differ"]
    out = []
    if "response" in parts:
        out += [m for m in [_rows_differ(a.y, b.y, "response values", names)] if m]
    if "fixed" in parts:
        out += _fixed_differences(a, b, names)
    if "grouping" in parts:
        out += _grouping_differences(a, b, names)
    return out


def require_same_data(designs: dict[str, Design], what: str, parts: tuple[str, ...] = DATA_PARTS) -> None:
    """Raise a :class:`~bayesmlm.errors.DataError` naming the designs whose data differ from the first, and how.

    Parameters
    ----------
    designs : dict of str -> Design
        Named designs (e.g. ``{"fit": fit.design, "posterior": post.design}``).
    what : str
        The step that needs the same data, for the message.
    parts : tuple of str
        See :func:`data_differences`.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> f = "Reaction ~ Days + (1 | Subject)"
    >>> require_same_data({"fit": bm.build_design(f, df), "post": bm.build_design(f, df)}, "compare")
    >>> try:
    ...     require_same_data({"fit": bm.build_design(f, df), "post": bm.build_design(f, df.iloc[:170])}, "compare")
    ... except bm.DataError as error:
    ...     print(error)
    compare needs the same data, but 'post' differs from 'fit': row count: 180 in 'fit', 170 in 'post'
    """
    (first, reference), *others = designs.items()
    problems = []
    for name, design in others:
        found = data_differences(reference, design, (first, name), parts)
        if found:
            problems.append(f"{name!r} differs from {first!r}: " + "; ".join(found))
    if problems:
        raise DataError(f"{what} needs the same data, but " + ". ".join(problems))


def _column_scales(design: Design) -> tuple[float, float, dict[str, tuple[float, float]]]:
    if not design.rows_held:
        mean_y, s_y, mean_x, sd_x = design.sufficient_stats().column_moments()
        cols = {name: (float(m), float(s)) for name, m, s in zip(design.fixed_names, mean_x, sd_x)}
        return mean_y, s_y or 1.0, cols
    y = design.y
    s_y = float(np.std(y)) or 1.0
    cols = {}
    for j, name in enumerate(design.fixed_names):
        x = design.X[:, j]
        cols[name] = (float(np.mean(x)), float(np.std(x)))
    return float(np.mean(y)), s_y, cols


LINK_SCALE_FAMILIES = ("binomial", "poisson", "negative_binomial", "Gamma")
"""Families whose default priors are on the link scale (not scaled by the response's SD)."""
NU_PRIOR = Gamma(2.0, 0.1)
"""Default prior of the student family's ``nu`` (brms's): mean 20, 90% in about (3.6, 47)."""
PHI_PRIOR = LogNormal(1.5, 2.0)
"""Default prior of the negative binomial's ``phi`` (variance ``mu + mu^2 / phi``): median 4.5, 90% in
about (0.17, 120), P(phi < 1) = 0.23 -- from strong overdispersion to nearly Poisson. Gamma(2, 0.1), brms's
prior for ``nu``, gave P(phi < 1) = 0.005 and ruled out grouseticks' phi of about 2 (glmer.nb 2.05).
rstanarm's ``1 / phi ~ Exponential(1)`` cannot be written in the prior vocabulary (a prior on ``phi``
itself); a normal prior on ``log phi`` also gives nutpie a well-shaped posterior."""
SHAPE_PRIOR = LogNormal(2.0, 2.5)
"""Default prior of the Gamma family's ``shape`` (``1 / CV^2``): median 7.4, 90% in about (0.12, 450), i.e.
a coefficient of variation from about 5% to 290%. brms's gamma(0.01, 0.01) is flatter still but puts most
of its mass at ``shape`` below 1e-30, which samplers handle badly."""
FAMILY_PARAMETER_PRIORS = {"nu": NU_PRIOR, "phi": PHI_PRIOR, "shape": SHAPE_PRIOR}
"""Default prior of each family parameter besides ``sigma``, by key."""


def _family_parameter_prior(key: str):
    """The default prior of family parameter ``key`` and its source line."""
    prior = FAMILY_PARAMETER_PRIORS[key]
    return prior, f"default: {prior}"


def _intercept_centre(design: Design) -> tuple[float, str]:
    """Centre of the link-scale intercept prior: the link of the mean response per unit exposure.

    With an offset the intercept is the linear predictor where the offset is 0 (one unit of
    exposure for ``offset(log(t))``), not where the data are: a Poisson rate per unit ``t`` of
    1e-4 has intercept -9.2 whatever the counts. For the log link the centre is
    ``log(sum(w y) / sum(w exp(offset)))`` (the pooled rate; the mean count is floored at 0.05 so
    that all-zero data stay finite); for other links ``0 - mean(w offset) / mean(w)``.
    """
    fam, glm = design.family, design.glm
    w = np.asarray(glm.weights, dtype=float) * np.asarray(glm.trials, dtype=float)
    offset = np.asarray(glm.offset, dtype=float)
    has_offset = bool(np.any(offset != 0))
    if fam.name != "binomial" and fam.link.name == "log":
        mean_count = max(float(np.sum(w * glm.y) / np.sum(w)), 0.05)
        if not has_offset:
            return float(np.log(mean_count)), "log(mean(y))" if np.all(w == 1) else "log(sum(w y) / sum(w))"
        exposure = float(np.sum(w * np.exp(offset)) / np.sum(w))
        return float(np.log(mean_count / exposure)), "log(sum(w y) / sum(w exp(offset)))"
    if not has_offset:
        return 0.0, "0"
    return -float(np.sum(w * offset) / np.sum(w)), "-mean(offset)"


def _default_link_scale(design: Design) -> tuple[dict, dict]:
    """rstanarm-style defaults on the link scale (binomial, Poisson, negative binomial, Gamma)."""
    _, _, cols = _column_scales(design)
    centre, where = _intercept_centre(design)
    priors, sources, slope_terms = {}, {}, []
    params = model_parameters(design)
    for p in params:
        if p.kind == "fixed":
            m, s = cols[p.key]
            if s == 0:
                continue
            priors[p.key] = Normal(0.0, 2.5 / s)
            sources[p.key] = "default (link scale): Normal(0, 2.5/sd(x))"
            slope_terms.append((m / s) ** 2)
    for p in params:
        if p.kind == "fixed" and p.key not in priors:
            priors[p.key] = Normal(centre, 2.5 * float(np.sqrt(1.0 + sum(slope_terms))))
            sources[p.key] = f"default (link scale): Normal({where}, 2.5 sqrt(1 + sum (mean(x)/sd(x))^2))"
        elif p.kind == "sd":
            block = design.block(p.factor)
            s = float(np.std(block.values[:, block.columns.index(p.columns[0])]))
            priors[p.key] = HalfNormal(1.0 if s == 0 else 1.0 / s)
            sources[p.key] = "default (link scale): HalfNormal(1)" if s == 0 else "default (link scale): HalfNormal(1/sd(x))"
        elif p.kind == "cor":
            priors[p.key] = LKJ(2.0)
            sources[p.key] = "default: LKJ(2)"
        elif p.kind in ("family", "sigma"):
            priors[p.key], sources[p.key] = _family_parameter_prior(p.key)
    order = [p.key for p in params]
    return {k: priors[k] for k in order}, {k: sources[k] for k in order}


def _default_priors(design: Design) -> tuple[dict, dict]:
    family = getattr(design, "family", None)
    if family is not None and family.name in LINK_SCALE_FAMILIES:
        return _default_link_scale(design)
    if family is not None and family.name == "lognormal":
        from dataclasses import replace

        design = replace(design, y=np.log(design.glm.y))
    mean_y, s_y, cols = _column_scales(design)
    priors, sources = {}, {}
    slope_terms = []
    for p in model_parameters(design):
        if p.kind == "fixed":
            m, s = cols[p.key]
            if s == 0:  # the intercept, or a constant column
                continue
            priors[p.key] = Normal(0.0, 2.5 * s_y / s)
            sources[p.key] = "default: Normal(0, 2.5 sd(y)/sd(x))"
            slope_terms.append((m / s) ** 2)
    for p in model_parameters(design):
        if p.kind == "fixed" and p.key not in priors:
            priors[p.key] = Normal(mean_y, 2.5 * s_y * float(np.sqrt(1.0 + sum(slope_terms))))
            sources[p.key] = "default: Normal(mean(y), 2.5 sd(y) sqrt(1 + sum (mean(x)/sd(x))^2))"
        elif p.kind == "sd":
            block = design.block(p.factor)
            x = block.values[:, block.columns.index(p.columns[0])]
            s = float(np.std(x))
            if s == 0:
                priors[p.key] = HalfStudentT(3.0, 2.5 * s_y)
                sources[p.key] = "default: HalfStudentT(3, 2.5 sd(y))"
            else:
                priors[p.key] = HalfStudentT(3.0, 2.5 * s_y / s)
                sources[p.key] = "default: HalfStudentT(3, 2.5 sd(y)/sd(x))"
        elif p.kind == "cor":
            priors[p.key] = LKJ(2.0)
            sources[p.key] = "default: LKJ(2)"
        elif p.kind == "sigma":
            priors[p.key] = HalfStudentT(3.0, 2.5 * s_y)
            sources[p.key] = "default: HalfStudentT(3, 2.5 sd(y))"
        elif p.kind == "family":
            priors[p.key], sources[p.key] = _family_parameter_prior(p.key)
    order = [p.key for p in model_parameters(design)]
    return {k: priors[k] for k in order}, {k: sources[k] for k in order}


def default(formula: str, data: pd.DataFrame, family=None, **family_args) -> PriorSpec:
    """Data-scaled weakly informative priors (rules in the module docstring).

    Parameters
    ----------
    formula : str
    data : pandas.DataFrame
    family : str or Family, optional
        A response family of :func:`bayesmlm.sample` (binomial, Poisson, negative binomial,
        Gamma: link-scale rules; student, lognormal: the gaussian rules on ``y`` or ``log y``).
    **family_args
        ``link``, ``trials``, ``weights``, ``offset`` as for :func:`bayesmlm.sample`.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> cbpp = bm.datasets.load("cbpp")
    >>> pri = bm.priors.default("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    >>> pri["sd[herd][Intercept]"], list(pri)[-1]
    (HalfNormal(sigma=1), 'sd[herd][Intercept]')

    Examples
    --------
    >>> import bayesmlm as bm
    >>> pri = bm.priors.default("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> pri["cor[Subject]"], pri["Days"]
    (LKJ(eta=2), Normal(mu=0, sigma=48.8915))
    """
    if family is not None and not (isinstance(family, str) and family.lower() == "gaussian"):
        from ..family_design import family_design

        return default_for_design(family_design(formula, data, family, **family_args))
    return default_for_design(build_design(formula, data))


def default_for_design(design: Design) -> PriorSpec:
    """:func:`default` for an already built design (with ``design.family``: the family's rules).

    Parameters
    ----------
    design : Design
        From :func:`bayesmlm.build_design`, or :func:`bayesmlm.family_design.family_design`.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> from bayesmlm.family_design import family_design
    >>> d = family_design("TICKS ~ cHEIGHT + (1 | BROOD)", bm.datasets.load("grouseticks"), "negbinomial")
    >>> pri = default_for_design(d)
    >>> pri["phi"], pri["sd[BROOD][Intercept]"]
    (LogNormal(mu=1.5, sigma=2), HalfNormal(sigma=1))
    """
    priors, sources = _default_priors(design)
    return PriorSpec(priors, sources, {"formula": design.formula.text, "method": "default"})


def sd_level_factor(levels: int, prob: float = 0.95) -> float:
    """How much wider than the estimate the upper end of an interval for an SD from ``levels`` values is.

    If the ``J`` level effects were observed exactly, ``(J - 1) s^2 / sd^2`` would be
    chi-square with ``J - 1`` degrees of freedom, and the upper end of the equal-tailed
    ``prob`` interval for ``sd`` is ``s * sqrt((J - 1) / chi2_{(1 - prob) / 2, J - 1})``;
    this returns that multiplier. The level effects are themselves estimated, so the
    real uncertainty is larger still: this is the least widening ``J`` levels call for.

    Parameters
    ----------
    levels : int
        Number of levels of the grouping factor (at least 2).
    prob : float
        Interval probability.

    Examples
    --------
    >>> round(sd_level_factor(3), 2), round(sd_level_factor(18), 2), round(sd_level_factor(100), 2)
    (6.28, 1.5, 1.16)
    """
    if levels < 2:
        raise ValueError(f"levels must be at least 2 for an SD across levels, got {levels}")
    df = levels - 1
    return float(np.sqrt(df / stats.chi2.ppf((1.0 - prob) / 2.0, df)))


def _empirical_sd(est: float, levels: int, default_prior, default_source: str, sd_scale: float, sd_floor: float,
                  fit_kind: str = "lmer") -> tuple:
    """The empirical prior of one group SD and its source line (rule in :func:`empirical`).

    ``HalfNormal(sd_scale * k_J * est)`` between two bounds: at least ``sd_floor`` times the
    default rule's scale ``d``, and never wider than the default rule itself -- when
    ``sd_scale * k_J * est`` exceeds ``d`` (few levels: ``k_3 = 6.28``, ``k_2 = 31.9``) the
    default prior is used, since a prior wider than the weakly informative default would
    inflate an SD that the few levels hardly inform (the posterior is then mostly prior).
    """
    default_scale = default_prior.sigma
    floor = sd_floor * default_scale
    widen = sd_level_factor(levels)
    scale = sd_scale * est * widen
    source = (f"empirical: {fit_kind} SD {est:.4g} from {levels} levels, x{sd_scale:g} x{widen:.3g} "
              f"(95% upper bound of an SD from {levels} values)")
    if scale > default_scale:
        return default_prior, (f"{default_source} ({fit_kind} SD {est:.4g} from {levels} levels x{sd_scale:g} "
                               f"x{widen:.3g} = {scale:.4g} is wider than the default rule's scale "
                               f"{default_scale:.4g}: the default prior is used, never a wider one)")
    if scale < floor:
        return HalfNormal(floor), (f"{source} = {scale:.3g}, raised to the floor: {sd_floor:g} x the default "
                                   f"rule's scale {default_scale:.4g} = {floor:.4g}")
    return HalfNormal(scale), source


def _refit_hint(fit) -> tuple[str, str]:
    """What kind of fit ``fit`` is (``"lmer"``/``"glmer"``) and the default-rule call for the same model."""
    family = getattr(fit, "family", None)
    if family is None or getattr(family, "name", "gaussian") == "gaussian":
        return "lmer", "bm.priors.default(formula, data)"
    from ..family_design import sampling_family

    args = f"family={family.name!r}"
    if family.link.name != sampling_family(family.name).link.name:
        args += f", link={family.link.name!r}"
    return "glmer", f"bm.priors.default(formula, data, {args})"


def _warn_if_not_converged(fit) -> None:
    if not fit.converged:
        kind, hint = _refit_hint(fit)
        why = "; ".join(fit.estimates.messages) or "the optimiser did not converge"
        fixes = ("rescale predictors, simplify the random effects, try engine='pls'" if kind == "lmer"
                 else "rescale predictors, simplify the random effects, try nAGQ=0")
        warnings.warn(
            f"these empirical priors come from {'an' if kind == 'lmer' else 'a'} {kind} fit that did not converge ({why}): its estimates, and so the "
            f"priors' centres and scales, may be wrong. Fix the fit first ({fixes}), or use {hint}.",
            ConvergenceWarning,
            stacklevel=3,
        )


def empirical(
    fit: FreqFit,
    fixed_scale: float = 5.0,
    sd_scale: float = 2.0,
    sigma_scale: float = 2.0,
    eta: float = 2.0,
    singular_threshold: float | None = None,
    sd_floor: float = 0.1,
) -> PriorSpec:
    """Priors centred on an lmer fit, with inflated scales.

    * fixed effect: ``Normal(estimate, fixed_scale * SE)``;
    * ``sd[g][c]``: ``HalfNormal(max(sd_floor * d, sd_scale * k_J * estimated SD))``
      where ``d`` is the scale of the default rule's ``HalfStudentT(3, d)`` for that SD
      (``2.5 s_y / s_c``) and ``k_J = sqrt((J - 1) / chi2_{0.025, J - 1})`` widens the
      prior for a factor with few levels ``J`` (the upper end of a 95% interval for an SD
      estimated from ``J`` values, :func:`sd_level_factor`: 6.28 for 3 levels, 1.50 for
      18, 1.16 for 100). The floor keeps a small estimate from making a dogmatic prior.
      The prior is never wider than the default rule: when ``sd_scale * k_J * estimated SD``
      exceeds ``d`` (typically 2 or 3 levels) the default ``HalfStudentT(3, d)`` is used.
      When the estimated SD is below ``singular_threshold * sigma`` (a singular or
      near-singular component, whose estimate of 0 says nothing about its scale), the
      data-scaled default rule is used instead; each source says which applied;
    * ``cor[g]``: ``LKJ(eta)``;
    * ``sigma``: ``HalfNormal(sigma_scale * estimated sigma)``.

    Using the same data for the prior and for the posterior narrows the
    posterior: the spec carries that note and :func:`bayesmlm.sample` warns
    when it sees the same data again. The honest alternative is a fit on
    other data -- an earlier period, a pilot study -- passed here unchanged:
    ``empirical(bm.lmer(formula, earlier_df))``.

    Parameters
    ----------
    fit : FreqFit
    fixed_scale, sd_scale, sigma_scale : float
        Inflation factors of the fixed-effect SEs, group SDs and sigma.
    eta : float
        LKJ shape for correlations.
    singular_threshold : float, optional
        Relative size (to sigma) below which a group SD counts as ~0; 1e-3 for an lmer fit
        when omitted. For a glmer fit, omitted means the fit's own boundary test
        (``fit.singular_components()``, lme4's ``isSingular``); see :func:`empirical_glmm`.
    sd_floor : float
        Smallest group-SD prior scale, as a fraction of the default rule's scale.

    Warns
    -----
    ConvergenceWarning
        The fit did not converge, so neither may its estimates be trusted as priors.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> spec = empirical(bm.lmer("Reaction ~ Days + (Days | Subject)", df))
    >>> spec["sd[Subject][Days]"].family, spec["cor[Subject]"].family
    ('HalfNormal', 'LKJ')
    >>> print(spec.sources["sd[Subject][Days]"])
    empirical: lmer SD 5.922 from 18 levels, x2 x1.5 (95% upper bound of an SD from 18 values)
    """
    if sd_floor < 0:
        raise ValueError(f"sd_floor must be >= 0 (a fraction of the default rule's scale), got {sd_floor}")
    from ..freq.glmer_result import GlmerFit

    if isinstance(fit, GlmerFit):
        return empirical_glmm(fit, fixed_scale=fixed_scale, sd_scale=sd_scale, eta=eta,
                              singular_threshold=singular_threshold, sd_floor=sd_floor)
    _warn_if_not_converged(fit)
    design = fit.design
    fixef, se = fit.fixef(), fit.se()
    defaults, default_sources = _default_priors(design)
    vc = fit.varcorr()
    sd_hat = {(r.grp, r.var1): r.sdcor for r in vc[vc.var2.isna() & (vc.grp != "Residual")].itertuples()}
    priors, sources = {}, {}
    for p in model_parameters(design):
        if p.kind == "fixed":
            priors[p.key] = Normal(float(fixef[p.key]), fixed_scale * float(se[p.key]))
            sources[p.key] = f"empirical: lmer {fixef[p.key]:.4g} (SE {se[p.key]:.3g}), scale x{fixed_scale:g}"
        elif p.kind == "sd":
            est = float(sd_hat[(p.factor, p.columns[0])])
            if est < (1e-3 if singular_threshold is None else singular_threshold) * fit.sigma:
                priors[p.key] = defaults[p.key]
                sources[p.key] = f"{default_sources[p.key]} (lmer estimate ~0, singular fit)"
            else:
                priors[p.key], sources[p.key] = _empirical_sd(est, design.block(p.factor).n_levels, defaults[p.key],
                                                              default_sources[p.key], sd_scale, sd_floor)
        elif p.kind == "cor":
            priors[p.key] = LKJ(eta)
            sources[p.key] = f"empirical: LKJ({eta:g})"
        else:
            priors[p.key] = HalfNormal(sigma_scale * fit.sigma)
            sources[p.key] = f"empirical: lmer sigma {fit.sigma:.4g}, scale x{sigma_scale:g}"
    meta = {
        "formula": design.formula.text,
        "method": "empirical",
        "data_fingerprint": data_fingerprint(design),
        "nobs": design.n,
    }
    return PriorSpec(priors, sources, meta)


def empirical_glmm(fit, fixed_scale: float = 5.0, sd_scale: float = 2.0, eta: float = 2.0,
                   singular_threshold: float | None = None, sd_floor: float = 0.1, family_sd: float = 1.0) -> PriorSpec:
    """Link-scale priors centred on a glmer fit (:func:`empirical` for a ``GlmerFit``).

    The rules of :func:`empirical`, on the link scale: fixed effects ``Normal(estimate,
    fixed_scale * SE)``; a group SD ``HalfNormal(max(sd_floor * d, sd_scale * k_J * sd_hat))``
    with ``d`` the link-scale default's scale and ``k_J`` the level-count widening
    (:func:`sd_level_factor`), never wider than the default ``HalfNormal(d)``, and the default
    for a component the fit reports as ~0 (``fit.singular_components()``: lme4's ``isSingular``,
    a relative-factor diagonal below 1e-4; an absolute cut-off would call a real SD of 1e-4 on
    the inverse link's scale ~0); ``LKJ(eta)``; the negative binomial's ``phi`` and the Gamma's
    ``shape`` (``1 / sigma^2`` of the fit) ``LogNormal(log(estimate), family_sd)``.

    Parameters
    ----------
    singular_threshold : float, optional
        When given, an SD below ``singular_threshold`` times the fit's ``sigma`` (1 for the
        binomial, Poisson and negative binomial) also counts as ~0.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"))
    >>> pri = empirical_glmm(fit)
    >>> pri["sd[herd][Intercept]"]
    HalfNormal(sigma=1)
    >>> print(pri.sources["sd[herd][Intercept]"])  # 2 x 1.58 x 0.642 = 2.03 > 1: the default
    default (link scale): HalfNormal(1) (glmer SD 0.6421 from 15 levels x2 x1.58 = 2.025 is wider than the default rule's scale 1: the default prior is used, never a wider one)
    """
    from dataclasses import replace

    from ..family_design import GlmResponse

    _warn_if_not_converged(fit)
    fam = fit.family
    n = fit.design.n
    binomial = fam.name == "binomial"
    weights = np.asarray(fit.prior_weights, dtype=float)
    offset = np.asarray(fit._engine.offset, dtype=float)  # the fit's offset (formula terms and offset=), as sampled
    glm = GlmResponse(np.asarray(fit.y, dtype=float), weights if binomial else np.ones(n),
                      np.ones(n) if binomial else weights, offset, list(fit.offset_terms))
    design = replace(fit.design, family=fam, glm=glm)
    defaults, default_sources = _default_priors(design)
    fixef, se = fit.fixef(), fit.se()
    vc = fit.varcorr()
    sd_hat = {(r.grp, r.var1): r.sdcor for r in vc[vc.var2.isna() & (vc.grp != "Residual")].itertuples()}
    boundary = {c[: -len(" is ~0")] for c in fit.singular_components() if c.endswith(" is ~0")}
    priors, sources = {}, {}
    for p in model_parameters(design):
        if p.kind == "fixed":
            priors[p.key] = Normal(float(fixef[p.key]), fixed_scale * float(se[p.key]))
            sources[p.key] = f"empirical: glmer {fixef[p.key]:.4g} (SE {se[p.key]:.3g}), scale x{fixed_scale:g}"
        elif p.kind == "sd":
            est = float(sd_hat[(p.factor, p.columns[0])])
            small = singular_threshold is not None and est < singular_threshold * float(fit.sigma)
            if p.key in boundary or small:
                priors[p.key] = defaults[p.key]
                sources[p.key] = f"{default_sources[p.key]} (glmer estimate {est:.3g} ~0, singular fit)"
            else:
                priors[p.key], sources[p.key] = _empirical_sd(est, design.block(p.factor).n_levels, defaults[p.key],
                                                              default_sources[p.key], sd_scale, sd_floor, "glmer")
        elif p.kind == "cor":
            priors[p.key] = LKJ(eta)
            sources[p.key] = f"empirical: LKJ({eta:g})"
        else:
            est = float(fit.phi) if p.key == "phi" else 1.0 / float(fit.sigma) ** 2
            priors[p.key] = LogNormal(float(np.log(est)), family_sd)
            sources[p.key] = f"empirical: glmer {p.key} {est:.4g}, LogNormal(log(estimate), {family_sd:g})"
    meta = {"formula": fit.formula, "method": "empirical", "family": fam.name,
            "data_fingerprint": data_fingerprint(design), "nobs": n}
    return PriorSpec(priors, sources, meta)


def warn_if_same_data(priors: PriorSpec, design: Design) -> None:
    """Warn when empirical priors were elicited from the data being fitted."""
    if priors.meta.get("method") == "empirical" and priors.meta.get("data_fingerprint") == data_fingerprint(design):
        warnings.warn(SAME_DATA_NOTE, EmpiricalPriorNote, stacklevel=3)
