"""``glmer``: generalized linear mixed models from an lme4 formula (binary, count, skewed outcomes).

The response forms are lme4's: a 0/1 (or two-level) response, ``cbind(successes,
failures) ~ ...``, or a proportion with ``weights=`` the number of trials; counts
with ``offset(log(exposure))`` in the formula or ``offset=``. The random-effects
part is the same as :func:`bayesmlm.lmer`'s (crossed, nested, ``||``, correlated
slopes), built by :mod:`bayesmlm.design`. Fitting is lme4's algorithm, hand-written
because no Python library implements it: PIRLS for the conditional modes
(:mod:`bayesmlm.freq.pirls`) and the two-stage optimisation with a Hessian-based
covariance of the fixed effects (:mod:`bayesmlm.freq.glmer_fit`).

Examples
--------
>>> import bayesmlm as bm
>>> df = bm.datasets.load("cbpp")
>>> fit = bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", df, family="binomial")
>>> fit.fixef().round(3).to_dict()
{'Intercept': -1.398, 'period2': -0.992, 'period3': -1.128, 'period4': -1.58}
>>> round(fit.loglik, 2), round(float(fit.varcorr().sdcor.iloc[0]), 3)
(-92.03, 0.642)
"""

from __future__ import annotations

import ast
import re
import warnings

import formulaic
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..design import _check_full_rank, build_design
from ..distributed import is_dask_frame
from ..errors import ConvergenceWarning, DataError, FormulaError, SingularFitWarning
from ..families import Binomial, Family, NegativeBinomial, Poisson, describe_rows, get_family, response_from_factor
from ..formula import _is_wrapped, _split_top_level, parse_formula
from ..frame import (NaAction, check_frame_arguments, check_unique_columns, describe_missing, missing_rows,
                     missing_values_error, plain_strings, required_columns, unknown_column_error)
from .glmer_fit import fit_glmm
from .glmer_result import GlmerFit, SeparationWarning, find_separation
from .pirls import GlmmData, PirlsEngine
from .theta import ThetaLayout

__all__ = ["glmer", "glmer_of_design", "glmm_design", "GlmerFit", "SeparationWarning", "BAYES_ONLY"]

RESPONSE = "bm_glmer_response_"
"""Name of the column that holds the evaluated response inside the design."""

_CBIND = re.compile(r"^cbind\s*\((?P<args>.*)\)$", re.S)
_OFFSET = re.compile(r"^offset\s*\((?P<expr>.*)\)$", re.S)


_FUNCTIONS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log1p": np.log1p, "log2": np.log2,
              "log10": np.log10, "abs": np.abs, "np": np}


def _names(expr: str) -> set[str] | None:
    """Column names in a plain arithmetic expression (None when it needs formulaic)."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        return None
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.Constant, ast.Call, ast.Attribute,
               ast.operator, ast.unaryop)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)):
        return None
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                                               or isinstance(node.func, ast.Attribute)):
            return None
        if isinstance(node, ast.Name) and id(node) not in calls and node.id != "np":
            names.add(node.id)
    return names


def _variables(expr: str) -> list[str]:
    names = _names(expr)
    if names is not None:
        return sorted(names)
    try:
        return sorted(str(v) for v in formulaic.Formula(f"0 + I({expr})").required_variables)
    except Exception as exc:
        raise FormulaError(f"cannot parse {expr!r}: {exc}") from exc


def _evaluate(expr: str, data: pd.DataFrame, what: str) -> np.ndarray | pd.Series:
    """A column, or an expression of columns (``size - incidence``, ``log(exposure)``), on the rows."""
    name = expr.strip()
    if name in data.columns:
        return data[name]
    names = _names(name)
    if names is not None and names <= set(map(str, data.columns)):
        env = {c: pd.to_numeric(data[c], errors="coerce").to_numpy(dtype=float) for c in names}
        try:
            with np.errstate(all="ignore"):  # log(0) and the like are reported by the callers, by row
                value = eval(compile(ast.parse(name, mode="eval"), "<formula>", "eval"), {"__builtins__": {}, **_FUNCTIONS}, env)
            return np.broadcast_to(np.asarray(value, dtype=float), (len(data),)).copy()
        except Exception:  # anything unusual: formulaic's evaluation below
            pass
    try:
        with np.errstate(all="ignore"):
            mm = formulaic.model_matrix(f"0 + I({name})", data, na_action="ignore")
    except Exception as exc:
        raise FormulaError(f"cannot evaluate the {what} {name!r}: {exc}") from exc
    if mm.shape[1] != 1:
        raise DataError(f"the {what} {name!r} must evaluate to one numeric column, got {mm.shape[1]}")
    return np.asarray(mm, dtype=float).reshape(-1)


class _Parts:
    """The formula split into response form, offsets and the part the design builds."""

    def __init__(self, formula: str):
        parsed = parse_formula(formula)  # checks bars and '~'
        lhs, rhs = (s.strip() for s in _split_top_level(formula, "~"))
        self.text = formula
        self.parsed = parsed
        self.response = lhs
        match = _CBIND.match(lhs)
        if match and _is_wrapped(lhs[lhs.index("(") :]):
            args = [a.strip() for a in _split_top_level(match["args"], ",")]
            if len(args) != 2 or not all(args):
                raise FormulaError(f"cbind() in {formula!r} needs two arguments: cbind(successes, failures)")
            self.cbind: tuple[str, str] | None = (args[0], args[1])
        else:
            self.cbind = None
        kept, self.offsets = [], []
        for chunk in _split_top_level(rhs, "+"):
            text = chunk.strip()
            m = _OFFSET.match(text)
            if m and _is_wrapped(text[text.index("(") :]):
                self.offsets.append(m["expr"].strip())
            else:
                kept.append(text)
        self.design_formula = f"{RESPONSE} ~ " + " + ".join(kept)

    @property
    def response_exprs(self) -> list[str]:
        return list(self.cbind) if self.cbind else [self.response]


def _vector(value, data: pd.DataFrame, what: str) -> tuple[np.ndarray, str]:
    """``weights=`` / ``offset=``: a column name or a vector as long as the data."""
    if isinstance(value, str):
        if value not in data.columns:
            raise DataError(f"{what} column {value!r} is not in the data; available columns: {', '.join(map(str, data.columns))}")
        return pd.to_numeric(data[value], errors="coerce").to_numpy(dtype=float), value
    arr = np.asarray(value, dtype=float).reshape(-1)
    if len(arr) != len(data):
        raise DataError(f"{what} has {len(arr)} values but the data have {len(data)} rows")
    return arr, what


def _prepare(parts: _Parts, data: pd.DataFrame, family: Family, weights, offset, na_action: NaAction):
    """Check and clean the rows; return the design frame, response, trials/weights, offset."""
    needed = [v for e in parts.response_exprs + parts.offsets for v in _variables(e)]
    design_vars = [c for c in required_columns(parse_formula(parts.design_formula)) if c != RESPONSE]
    columns = list(dict.fromkeys(needed + design_vars))
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise unknown_column_error(missing, data, parts.parsed)
    check_unique_columns(data, columns)
    extra = {}
    w_user = w_name = off_user = None
    if weights is not None:
        w_user, w_name = _vector(weights, data, "weights")
        extra[w_name] = w_user
    if offset is not None:
        off_user, off_name = _vector(offset, data, "offset")
        extra[off_name] = off_user
    frame = data.loc[:, columns]
    counts, keep = missing_rows(frame)
    for name, arr in extra.items():
        counts[name] = int(np.sum(~np.isfinite(arr))) if name not in counts.index else counts[name]
    counts = counts[counts > 0]
    for arr in extra.values():
        keep &= np.isfinite(arr)
    n_dropped = 0
    if len(counts):
        if na_action == "error":
            raise missing_values_error(describe_missing(counts))
        n_dropped = int((~keep).sum())
        warnings.warn(f"dropped {n_dropped} of {len(data)} rows with missing values in {describe_missing(counts)}", stacklevel=4)
        if not keep.any():
            raise DataError("no complete rows remain after dropping missing values")
    index = data.index[keep]
    frame = plain_strings(frame.loc[keep].reset_index(drop=True))
    w_user = None if w_user is None else w_user[keep]
    off_user = None if off_user is None else off_user[keep]
    if w_user is not None:
        bad = w_user < 0
        if bad.any():
            raise DataError(f"weights must be non-negative; {describe_rows(index, bad)} are negative")

    # response
    if parts.cbind:
        if not isinstance(family, Binomial):
            raise FormulaError(f"cbind(successes, failures) is a binomial response; it cannot be used with the {family.name} family")
        s_expr, f_expr = parts.cbind
        counts_sf = []
        for expr, label in ((s_expr, "successes"), (f_expr, "failures")):
            values = pd.to_numeric(pd.Series(_evaluate(expr, frame, f"cbind {label}")), errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(values) | (values < 0) | (np.abs(values - np.round(values)) > 1e-8)
            if bad.any():
                raise DataError(
                    f"cbind {label} {expr!r} must be whole non-negative counts; {describe_rows(index, bad)} are not "
                    f"(e.g. {values[bad][0]:g})"
                )
            counts_sf.append(values)
        trials = counts_sf[0] + counts_sf[1]
        zero = trials <= 0
        if zero.any():
            raise DataError(
                f"cbind({s_expr}, {f_expr}) has zero trials (successes + failures = 0) in {describe_rows(index, zero)}; "
                "those rows carry no information: drop them"
            )
        y = counts_sf[0] / trials
        wt = trials * (1.0 if w_user is None else w_user)
    else:
        raw = _evaluate(parts.response, frame, "response")
        column = parts.response
        if isinstance(family, Binomial) and isinstance(raw, pd.Series) and (
            pd.api.types.is_bool_dtype(raw) or not pd.api.types.is_numeric_dtype(raw)
        ):
            y = response_from_factor(raw, column)
        else:
            if isinstance(raw, pd.Series) and (pd.api.types.is_bool_dtype(raw) or not pd.api.types.is_numeric_dtype(raw)):
                sample = ", ".join(map(repr, raw.dropna().unique()[:3]))
                raise DataError(
                    f"response column {column!r} must be numeric for the {family.name} family, but has dtype "
                    f"{raw.dtype} (values such as {sample})"
                )
            y = np.asarray(raw, dtype=float)
        family.check_response(y, column, index, weights=w_user if isinstance(family, Binomial) else None)
        wt = np.ones(len(y)) if w_user is None else w_user
    if isinstance(family, Binomial) and parts.cbind:
        family.check_response(y, parts.response, index)

    # offsets
    off = np.zeros(len(frame)) if off_user is None else off_user.copy()
    for expr in parts.offsets:
        values = np.asarray(pd.to_numeric(pd.Series(_evaluate(expr, frame, "offset")), errors="coerce"), dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"offset({expr}) is not finite in {describe_rows(index, bad)} (e.g. log of 0 exposure); "
                "drop those rows or fix the exposure"
            )
        off += values
    bad = ~np.isfinite(off)
    if bad.any():
        raise DataError(f"the offset is not finite in {describe_rows(index, bad)}")
    frame = frame.copy()
    frame[RESPONSE] = y
    return frame, y, wt, off, n_dropped, index


BAYES_ONLY = ("student", "lognormal")
"""Families that only the Bayesian layer fits."""


def glmm_design(formula: str, data: pd.DataFrame, family: Family, weights=None, offset=None,
                na_action: NaAction = "error"):
    """lme4's response forms, offsets and weights turned into a design: the one place both glmer and bm.sample use.

    Returns ``(parts, design, y, wt, off, index)``: ``y`` the response as glm's (a binomial
    proportion), ``wt`` the prior weights (binomial: the trials, times ``weights`` with
    ``cbind``), ``off`` the offset, ``index`` the labels of the rows kept. The design's
    response column holds ``y``.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> from bayesmlm.families import get_family
    >>> parts, d, y, wt, off, idx = glmm_design("cbind(incidence, size - incidence) ~ period + (1 | herd)",
    ...                                         bm.datasets.load("cbpp"), get_family("binomial"))
    >>> d.n, float(wt[0]), round(float(y[0]), 4)
    (56, 14.0, 0.1429)
    """
    parts = _Parts(formula)
    frame, y, wt, off, n_dropped, index = _prepare(parts, data, family, weights, offset, na_action)
    design = build_design(parts.design_formula, frame, na_action="error", row_checks=False)
    design.n_dropped = n_dropped
    _check_full_rank(design.X, design.fixed_names)
    _check_blocks(design)
    return parts, design, y, wt, off, index


def _check_blocks(design) -> None:
    n = design.n
    for block in design.blocks:
        if block.n_levels < 2:
            only = repr(block.levels[0]) if block.levels else "none"
            raise DataError(
                f"grouping factor {block.factor!r} has {block.n_levels} level (only {only}) in the rows used; "
                "a between-group variance needs at least two groups: drop the term or use more data"
            )
        if block.n_effects > n:
            raise DataError(
                f"grouping factor {block.factor!r} has {block.n_levels} levels x {block.n_cols} varying columns = "
                f"{block.n_effects} random effects for {n} observations: simplify the term"
            )


def glmer(
    formula: str,
    data: pd.DataFrame,
    family: str | Family = "binomial",
    link: str | None = None,
    nAGQ: int = 1,
    weights=None,
    offset=None,
    na_action: NaAction = "error",
    use_hessian: bool = True,
):
    """Fit a generalized linear mixed model, lme4 style (``lme4::glmer``, ``glmer.nb``).

    Parameters
    ----------
    formula : str
        lme4 formula. Response: a 0/1 column, a two-level column (the first
        level, in sorted or categorical order, is the failure), a proportion
        with ``weights=`` the trials, ``cbind(successes, failures)``, or a
        count; ``offset(log(exposure))`` terms add to the linear predictor.
        Random effects as in :func:`bayesmlm.lmer`.
    data : pandas.DataFrame
        (Dask DataFrames are not supported here: ``ddf.compute()`` first.)
    family : str or Family
        ``"binomial"`` (default), ``"poisson"``, ``"Gamma"``, ``"negbinomial"``
        (lme4's ``glmer.nb``: the dispersion ``phi`` is estimated too) or a
        :class:`~bayesmlm.families.Family`. ``"gaussian"`` with the identity
        link is a linear mixed model and is handed to :func:`bayesmlm.lmer`.
    link : str, optional
        The family's default link (R's) when omitted: ``logit``, ``log``,
        ``inverse`` (Gamma); also ``probit``, ``cloglog``, ``identity``, ``sqrt``.
    nAGQ : int
        1 (default): Laplace approximation. 0: lme4's fast approximation (fixed
        effects inside PIRLS; stage 1 only). 2 to 100: adaptive Gauss-Hermite
        quadrature, for a single scalar random-effects term only.
    weights : str or array-like, optional
        Prior weights (a column name or a vector): for a binomial proportion the
        number of trials.
    offset : str or array-like, optional
        Added to the linear predictor (with any ``offset()`` terms).
    na_action : {"error", "drop"}
    use_hessian : bool
        Standard errors from the finite-difference Hessian of the deviance
        (lme4's default for nAGQ > 0); ``False`` uses the PIRLS factor.

    Returns
    -------
    GlmerFit

    Warns
    -----
    SingularFitWarning, ConvergenceWarning, SeparationWarning

    Examples
    --------
    >>> import bayesmlm as bm
    >>> ticks = bm.datasets.load("grouseticks")
    >>> fit = bm.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", ticks, family="poisson")
    >>> fit.fixef().round(3).to_dict()
    {'Intercept': 0.373, 'YEAR96': 1.18, 'YEAR97': -0.979, 'cHEIGHT': -0.024}
    >>> fit.predict(ticks.head(2), type="response").round(2).tolist()
    [0.5, 0.5]
    """
    if is_dask_frame(data):
        raise DataError(
            "glmer needs the data rows in memory: pass a pandas DataFrame (for a Dask DataFrame, ddf.compute()); "
            "the sufficient-statistics route of bm.lmer does not apply to non-gaussian families"
        )
    check_frame_arguments(data, na_action)
    if isinstance(nAGQ, bool) or not isinstance(nAGQ, (int, np.integer)) or not 0 <= nAGQ <= 100:
        raise ValueError(f"nAGQ must be an integer from 0 to 100, got {nAGQ!r}")
    fam = get_family(family, link)
    if fam.name == "gaussian":
        if fam.link.name != "identity" or weights is not None or offset is not None:
            raise NotImplementedError(
                "a gaussian GLMM with a non-identity link, weights or an offset is not implemented; "
                "transform the response and use bm.lmer"
            )
        from .lmer import lmer

        warnings.warn("family='gaussian' with the identity link is a linear mixed model: fitted by bm.lmer (REML)",
                      UserWarning, stacklevel=2)
        return lmer(formula, data, na_action=na_action)
    if fam.name in BAYES_ONLY:
        raise ValueError(f"the {fam.name} family is available in bm.sample(..., family={fam.name!r}) only, not in glmer")
    parts, design, y, wt, off, index = glmm_design(formula, data, fam, weights, offset, na_action)
    if nAGQ > 1 and (len(design.blocks) != 1 or design.blocks[0].n_cols != 1):
        raise ValueError("nAGQ > 1 is only available for models with a single, scalar random-effects term (e.g. (1 | g))")
    fit_phi = isinstance(fam, NegativeBinomial) and not isinstance(family, Family)  # a family object holds phi fixed
    engine_family = Poisson(fam.link) if fit_phi else fam
    layout = ThetaLayout.from_design(design)
    data_ = GlmmData(y, wt, off, design.X, [(b.codes, b.values, b.n_levels) for b in design.blocks],
                     [b.free for b in design.blocks], engine_family)
    engine = PirlsEngine(data_)
    with threadpool_limits(limits=1, user_api="blas"):  # small dense factors: threads only add overhead
        solution = fit_glmm(engine, layout.initial(), layout.lower, nAGQ=nAGQ, fit_phi=fit_phi, use_hessian=use_hessian)
    fit = GlmerFit(design, engine, solution, parts.text, parts.offsets, offset, weights, index)
    mu = solution.state.mu
    if isinstance(solution.family, Binomial) and np.any((mu < 1e-5) | (mu > 1 - 1e-5)):
        # separation drives fitted probabilities to 0 or 1; only then is the linear program run
        separated = find_separation(design.X, y, wt, design.fixed_names)
        if separated:
            fit.separation = separated
            warnings.warn(fit.separation_message(), SeparationWarning, stacklevel=2)
    if fit.singular:
        warnings.warn(
            "boundary (singular) fit: " + "; ".join(fit.singular_components())
            + ". The data do not support this random-effects structure: simplify it (drop the component or the "
            "correlation), or fit it with a Bayesian model whose priors keep SDs off zero.",
            SingularFitWarning,
            stacklevel=2,
        )
    if not fit.converged and not fit.separation:  # under separation the warning above says why
        warnings.warn("; ".join(solution.messages or ["the optimiser did not converge"]), ConvergenceWarning, stacklevel=2)
    return fit


def glmer_of_design(design):
    """``glmer`` of a family design (:func:`bayesmlm.family_design.family_design`): its response, trials,
    prior weights and offsets, as the Bayesian model has them; glmer's warnings reach the caller.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> from bayesmlm.family_design import family_design
    >>> d = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
    >>> round(glmer_of_design(d).loglik, 2)   # the cbind(incidence, size - incidence) fit's
    -92.03
    """
    fam, glm = design.family, design.glm
    frame = design.data.copy()
    frame["bm_weights_"] = glm.trials * glm.weights if fam.name == "binomial" else glm.weights
    frame["bm_offset_"] = glm.offset
    internal = _Parts(design.formula.text).design_formula  # RESPONSE ~ fixed + random, offsets dropped
    return glmer(internal, frame, family=fam.glmer_name, link=fam.link.name, weights="bm_weights_",
                 offset="bm_offset_")
