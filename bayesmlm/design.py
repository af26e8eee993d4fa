"""Design matrices of a linear mixed model: y, dense X and sparse level-major Z.

Fixed-effects columns and each random term's columns are built by formulaic,
whose model specs are kept so that new data get the same encoding. Random
terms that share a grouping factor are merged into one :class:`FactorBlock`
(e.g. ``(x || g)`` becomes one block with a diagonal covariance template),
and blocks are ordered by decreasing number of levels, as lme4 does, so that
the first block's cross-product is block diagonal.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> d.fixed_names, d.blocks[0].columns, d.blocks[0].n_levels, d.Z.shape
(['Intercept', 'Days'], ('Intercept', 'Days'), 18, (180, 36))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import formulaic
import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic.parser.types import Factor

from .errors import DataError, FormulaError
from .formula import MixedFormula, RandomTerm, parse_formula
from .formula_parts import FormulaParts
from .frame import ModelFrame, NaAction, model_frame, nonfinite_error, nonfinite_rows
from .stats import SufficientStats

__all__ = [
    "FactorBlock",
    "Design",
    "build_design",
    "nonfinite_design",
    "check_identifiable",
    "crossed_pair",
    "response_values",
    "r_style_name",
]

DIRECT_STATS_Q = 512
"""Models with at most this many random effects (and ``DIRECT_STATS_ROWS`` rows) get their
statistics from the blocks directly (:meth:`~bayesmlm.stats.SufficientStats.from_columns`)."""

DIRECT_STATS_ROWS = 250_000
"""The row limit of that path (one chunk of :meth:`~bayesmlm.stats.SufficientStats.from_arrays`)."""

_TREATMENT = re.compile(r"^(?P<var>.+)\[T\.(?P<level>.+)\]$")
_FULL = re.compile(r"^(?P<var>[^\[\]]+)\[(?P<level>[^\[\]]+)\]$")


def r_style_name(name: str) -> str:
    """Name a formulaic column as R does: ``recipe[T.B]:temp`` -> ``recipeB:temp``.

    Examples
    --------
    >>> r_style_name("recipe[T.B]:temperature")
    'recipeB:temperature'
    """
    parts = []
    for part in name.split(":"):
        match = _TREATMENT.match(part) or _FULL.match(part)
        parts.append(f"{match['var']}{match['level']}" if match else part)
    return ":".join(parts)


def _r_style_names(columns: list[str]) -> list[str]:
    renamed = [r_style_name(c) for c in columns]
    return renamed if len(set(renamed)) == len(renamed) else list(columns)


def _model_matrix(
    rhs: str, data: pd.DataFrame, what: str, parsed=None, complete: bool = False
) -> tuple[np.ndarray, object]:
    """formulaic's matrix of ``rhs`` (given as ``parsed`` where already parsed), as a numpy array,
    and its model spec.

    ``complete``: ``rhs`` reads only data columns that hold no missing values (checked by the model
    frame), so formulaic's scan of every evaluated factor for them is skipped (a tenth of a small
    model's fit); otherwise a transform's missing result raises. Either way the spec returned, which
    re-applies the encoding to new data, raises on a missing value there.
    """
    try:
        if complete:
            mm = formulaic.model_matrix(rhs if parsed is None else parsed, data, na_action="ignore", output="numpy")
            return mm, mm.model_spec.update(na_action="raise")
        mm = formulaic.model_matrix(rhs if parsed is None else parsed, data, na_action="raise", output="numpy")
        return mm, mm.model_spec
    except Exception as exc:
        raise FormulaError(f"cannot build the {what} from {rhs!r}: {exc}") from exc


@dataclass
class FactorBlock:
    """All random effects attached to one grouping factor.

    Attributes
    ----------
    factor : str
        Grouping factor name (``"Subject"``, ``"cask:batch"``).
    columns : tuple of str
        Varying design columns, e.g. ``("Intercept", "Days")``.
    levels : list of str
        Level names in model order.
    codes : ndarray of int, shape (n,)
        Level index of each row.
    values : ndarray, shape (n, len(columns))
        The varying columns evaluated on the data.
    free : tuple of (int, int)
        Lower-triangular positions of the relative covariance factor that are
        estimated: the full triangle of each correlated group of columns and
        only the diagonal for ``||`` terms.
    groups : tuple of tuple of int
        Column indices of each correlated sub-block (one per original term).
    specs : list
        formulaic model specs of the terms, or :class:`DeferredSpec` where a term's columns were taken
        from the fixed part's; :meth:`term_specs` gives the specs themselves, for new data.
    """

    factor: str
    columns: tuple[str, ...]
    levels: list[str]
    codes: np.ndarray
    values: np.ndarray
    free: tuple[tuple[int, int], ...]
    groups: tuple[tuple[int, ...], ...]
    specs: list = field(repr=False)
    terms: tuple[RandomTerm, ...] = ()

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_cols(self) -> int:
        return len(self.columns)

    @property
    def n_effects(self) -> int:
        return self.n_levels * self.n_cols

    @property
    def correlated(self) -> bool:
        """True when all columns form one correlated group."""
        return len(self.groups) == 1

    def term_specs(self) -> list:
        """formulaic model specs of the terms, deferred ones resolved (once)."""
        if any(isinstance(spec, DeferredSpec) for spec in self.specs):
            self.specs = [spec.resolve() if isinstance(spec, DeferredSpec) else spec for spec in self.specs]
        return self.specs

    def diagonal_positions(self) -> np.ndarray:
        """Indices into ``free`` of the diagonal entries (bounded below by 0)."""
        return np.array([k for k, (i, j) in enumerate(self.free) if i == j], dtype=int)

    def z_matrix(self) -> sp.csc_matrix:
        """Sparse n x (levels * columns) block of Z, level-major like lme4."""
        n, p = self.values.shape
        rows = np.repeat(np.arange(n), p)
        cols = (self.codes[:, None] * p + np.arange(p)[None, :]).reshape(-1)
        return sp.csc_matrix((self.values.reshape(-1), (rows, cols)), shape=(n, self.n_effects))


def _from_fixed(spec, X: np.ndarray, parsed) -> tuple[DeferredSpec, np.ndarray] | None:
    """A random term's formula built from the fixed part's matrix (``spec``, ``X``): its model spec
    (deferred: :class:`DeferredSpec`) and columns, where formulaic would build the formula alike --
    its terms are among the fixed part's, their factors numeric (the intercept aside) and no stateful
    transform is involved -- else None. Saves formulaic a pass over the data for ``(1 | g)`` or
    ``(0 + x | g)`` beside a fixed ``x``.

    Examples
    --------
    >>> import bayesmlm as bm, formulaic
    >>> df = bm.datasets.load("sleepstudy")
    >>> fixed = formulaic.model_matrix("Days", df, output="numpy")
    >>> spec, values = _from_fixed(fixed.model_spec, np.asarray(fixed), formulaic.Formula("0 + Days"))
    >>> spec.resolve() == formulaic.model_matrix("0 + Days", df, output="numpy").model_spec, values.shape
    (True, (180, 1))
    """
    if spec.transform_state:
        return None
    index = spec.term_indices
    terms = list(parsed)
    if not terms or any(t not in index for t in terms):
        return None
    own = set()
    for term in terms:
        if str(term) == "1":
            continue
        for factor in term.factors:
            if spec.encoder_state.get(factor.expr, (None,))[0] is not Factor.Kind.NUMERICAL:
                return None  # categorical: the encoding depends on the rest of the formula
            own.add(factor.expr)
    columns = [i for term in terms for i in index[term]]
    names = tuple(spec.column_names[i] for i in columns)
    return DeferredSpec(spec, parsed, frozenset(own), names), X[:, columns]


@dataclass(frozen=True)
class DeferredSpec:
    """A random term's formulaic model spec, cut from the fixed part's (:func:`_from_fixed`) when first
    needed: only predictions on new data use it, and cutting it costs a fit of a small model a few
    percent.

    Attributes
    ----------
    fixed_spec : formulaic.ModelSpec
    parsed : formulaic.Formula
        The term's formula.
    own : frozenset of str
        The term's factors, whose encoder states the cut keeps.
    column_names : tuple of str
        The term's columns, as formulaic names them.
    """

    fixed_spec: object
    parsed: object
    own: frozenset
    column_names: tuple[str, ...]

    def resolve(self):
        """The model spec itself (:meth:`formulaic.ModelSpec.subset` of the fixed part's)."""
        sub = self.fixed_spec.subset(self.parsed)
        return sub.update(encoder_state={k: v for k, v in sub.encoder_state.items() if k in self.own})


def _merge_terms(
    factor: str, terms: list[RandomTerm], matrix, codes: np.ndarray, levels: list[str], n_rows: int
) -> FactorBlock:
    """One factor's block from its terms; ``matrix(term)`` gives a term's model spec and columns."""
    columns: list[str] = []
    values = []
    groups = []
    specs = []
    for term in terms:
        spec, term_values = matrix(term)
        names = _r_style_names(list(spec.column_names))
        if not names:
            raise FormulaError(f"random-effects term {term.source} has no columns")
        clash = [c for c in names if c in columns]
        if clash:
            raise FormulaError(
                f"column(s) {clash} appear twice for grouping factor {factor!r} "
                f"(in {term.source}); each varying column may appear once per factor"
            )
        start = len(columns)
        columns.extend(names)
        groups.append(tuple(range(start, start + len(names))))
        values.append(np.array(term_values, dtype=float, order="F").reshape(n_rows, -1))
        specs.append(spec)
    free = tuple((i, j) for g in groups for j in g for i in g if i >= j)
    value = values[0] if len(values) == 1 else np.hstack(values)
    return FactorBlock(factor, tuple(columns), levels, codes, value, free, tuple(groups), specs, tuple(terms))


def check_identifiable(block: FactorBlock, n_rows: int) -> None:
    """A factor needs fewer random effects than observations."""
    if block.n_effects >= n_rows:
        raise DataError(
            f"grouping factor {block.factor!r} has {block.n_levels} levels x {block.n_cols} varying columns = "
            f"{block.n_effects} random effects for {n_rows} observations; the random effects and "
            "the residual variance are not identifiable: simplify the term"
        )


@dataclass
class Design:
    """Response, fixed-effects matrix and random-effects blocks of a model.

    Attributes
    ----------
    formula : MixedFormula
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
    fixed_names : list of str
        Design-column names in the shared vocabulary (``Intercept``, ``Wk``).
    blocks : list of FactorBlock
        Ordered by decreasing number of levels.
    fixed_spec : formulaic ModelSpec
        Re-applies the fixed-effects encoding to new data.
    frame : ModelFrame
        The used columns and rows; :attr:`data` is its model frame.
    n_dropped : int
        Rows dropped for missing values.
    stats : SufficientStats, optional
        Precomputed cross-products. A design reduced from a distributed frame
        holds only these (``rows_held`` is False): ``X``, ``y`` and ``data``
        then hold a sample of rows that covers every level, for encodings only.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> d.X.shape, d.Z.shape, [b.factor for b in d.blocks]
    ((180, 2), (180, 36), ['Subject'])
    """

    formula: MixedFormula
    y: np.ndarray
    X: np.ndarray
    fixed_names: list[str]
    blocks: list[FactorBlock]
    fixed_spec: object = field(repr=False)
    frame: ModelFrame = field(repr=False)
    n_dropped: int = 0
    stats: SufficientStats | None = field(default=None, repr=False)
    rows_held: bool = True
    family: object = field(default=None, repr=False)
    """The response family of a non-gaussian model (:mod:`bayesmlm.family_design`); None: gaussian."""
    glm: object = field(default=None, repr=False)
    """Its response, trials, weights and offset (:class:`bayesmlm.family_design.GlmResponse`)."""

    @property
    def n(self) -> int:
        return len(self.y) if self.rows_held else self.stats.n

    @property
    def data(self) -> pd.DataFrame:
        """The model frame: used columns, complete rows, index ``0..n-1`` (built on first use)."""
        return self.frame.data

    def sufficient_stats(self) -> SufficientStats:
        """Cross-products of ``[Z X y]`` (computed once, in row chunks; from the blocks directly,
        without forming ``Z``, for a small model)."""
        if self.stats is None:
            if self.q <= DIRECT_STATS_Q and self.n <= DIRECT_STATS_ROWS:
                cols = np.hstack(
                    [b.codes[:, None] * b.n_cols + np.arange(b.n_cols) + s for b, s in zip(self.blocks, self.offsets)]
                )
                vals = self.blocks[0].values if len(self.blocks) == 1 else np.hstack([b.values for b in self.blocks])
                self.stats = SufficientStats.from_columns(self.X, cols, vals, self.y, self.q)
            else:
                self.stats = SufficientStats.from_arrays(self.X, self.Z, self.y)
        return self.stats

    def require_rows(self, what: str) -> None:
        """Raise a clear error when ``what`` needs the rows and only statistics are held."""
        if not self.rows_held:
            raise DataError(
                f"{what} needs the data rows, but this model was reduced from a Dask DataFrame to its "
                "sufficient statistics; compute the frame into pandas (ddf.compute()) for this step"
            )

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return sum(b.n_effects for b in self.blocks)

    @cached_property
    def Z(self) -> sp.csc_matrix:
        """Sparse random-effects model matrix, blocks side by side."""
        return sp.hstack([b.z_matrix() for b in self.blocks], format="csc")

    @property
    def offsets(self) -> np.ndarray:
        """Start column of each block in Z, plus the total."""
        return np.concatenate([[0], np.cumsum([b.n_effects for b in self.blocks])]).astype(int)

    def block(self, factor: str) -> FactorBlock:
        """The block of a grouping factor, by name."""
        for b in self.blocks:
            if b.factor == factor:
                return b
        raise KeyError(f"no grouping factor {factor!r}; factors are {[b.factor for b in self.blocks]}")


def crossed_pair(design: "Design") -> tuple[FactorBlock, FactorBlock] | None:
    """The first two factor blocks when they are crossed (neither nested in the other), else None.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> d = build_design("diameter ~ 1 + (1 | plate) + (1 | sample)", bm.datasets.load("penicillin"))
    >>> [b.factor for b in crossed_pair(d)]
    ['plate', 'sample']
    >>> crossed_pair(build_design("strength ~ 1 + (1 | batch/cask)", bm.datasets.load("pastes"))) is None
    True
    """
    if len(design.blocks) < 2:
        return None
    a, b = design.blocks[0], design.blocks[1]
    pairs = pd.DataFrame({"a": a.codes, "b": b.codes}).drop_duplicates()
    crossed = pairs.groupby("b").a.nunique().max() > 1 and pairs.groupby("a").b.nunique().max() > 1
    return (a, b) if crossed else None


def response_values(formula: MixedFormula, data: pd.DataFrame, parsed=None) -> np.ndarray:
    """The response of a formula evaluated on a frame (a column, or an expression such as ``log(y)``;
    ``parsed``: its ``"<response> ~ 1"`` as formulaic parsed it, where already parsed)."""
    name = formula.response.strip()
    if name in data.columns:
        return data[name].to_numpy(dtype=float)
    mm, _ = _model_matrix(f"0 + {name}", data, "response", None if parsed is None else parsed.lhs)
    if mm.shape[1] != 1:
        raise DataError(f"response {name!r} must evaluate to one numeric column, got {mm.shape[1]}")
    return np.asarray(mm, dtype=float).reshape(-1)


def nonfinite_design(
    y: np.ndarray,
    X: np.ndarray,
    formula: MixedFormula,
    fixed_names: list[str],
    blocks: list[FactorBlock],
    labels: pd.Index | list,
) -> dict[str, tuple[int, list]]:
    """Evaluated columns with infinite or NaN entries (``log(x)`` of a zero, say), with their rows."""
    bad = nonfinite_rows(y, [f"response {formula.response.strip()!r}"], labels)
    bad |= nonfinite_rows(X, [f"fixed-effects column {n!r}" for n in fixed_names], labels)
    for block in blocks:
        names = [f"varying column {c!r} of {block.factor!r}" for c in block.columns]
        bad |= nonfinite_rows(block.values, names, labels)
    return bad


def _check_full_rank(X: np.ndarray, names: list[str]) -> None:
    if X.shape[1] == 0:
        return
    rank = np.linalg.matrix_rank(X)
    if rank < X.shape[1]:
        # find the columns that add nothing, left to right, as R's pivoting would
        kept: list[int] = []
        aliased = []
        for j in range(X.shape[1]):
            if np.linalg.matrix_rank(X[:, kept + [j]]) > len(kept):
                kept.append(j)
            else:
                aliased.append(names[j])
        raise DataError(
            f"fixed-effects columns {aliased} are linear combinations of other columns "
            "(rank-deficient design); remove the redundant terms from the formula"
        )


def build_design(
    formula: str | MixedFormula, data: pd.DataFrame, na_action: NaAction = "error", row_checks: bool = True
) -> Design:
    """Check the data and build y, X and the random-effects blocks.

    Parameters
    ----------
    formula : str or MixedFormula
        lme4-style formula.
    data : pandas.DataFrame
    na_action : {"error", "drop"}
        What to do with rows that have missing values in used columns.
    row_checks : bool
        Check identifiability against these rows (full-rank X, fewer effects
        and levels than rows). Off only when ``data`` is a sample of a larger
        frame whose totals are checked separately.

    Returns
    -------
    Design

    Examples
    --------
    >>> import bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> d = build_design("Reaction ~ Days + (Days | Subject)", df)
    >>> d.n, d.p, d.q, d.fixed_names
    (180, 2, 36, ['Intercept', 'Days'])
    """
    parsed = parse_formula(formula) if isinstance(formula, str) else formula
    parts = FormulaParts.parse(parsed)
    frame = model_frame(parsed, data, na_action=na_action, check_levels=row_checks)
    n = frame.n
    df = frame.evaluation_frame(parts.looked_up(), data, parts.bare_variables())
    response = parsed.response.strip()
    if response in frame.columns:
        y = frame.columns[response].to_numpy(dtype=float)
    else:
        y = response_values(parsed, df, parts.response)
    fixed_mm, fixed_spec = _model_matrix(parsed.fixed, df, "fixed-effects matrix", parts.sides[parsed.fixed],
                                         complete=parts.reads_columns_only(parsed.fixed))
    # a copy (terms may share this matrix), column-major as pandas' blocks are: X'X's rounding depends on it
    X = np.array(fixed_mm, dtype=float, order="F").reshape(n, -1)
    fixed_names = _r_style_names(list(fixed_spec.column_names))
    matrices: dict[str, tuple] = {parts.same_as(parsed.fixed): (fixed_spec, X)}

    def matrix(rhs: str, what: str) -> tuple:
        key = parts.same_as(rhs)  # a formula used twice (fixed part and a term, say) is built once
        if key not in matrices:
            built = _from_fixed(fixed_spec, X, parts.sides[rhs])
            if built is None:
                mm, spec = _model_matrix(rhs, df, what, parts.sides[rhs], complete=parts.reads_columns_only(rhs))
                built = spec, np.asarray(mm)
            matrices[key] = built
        return matrices[key]

    by_factor: dict[str, list[RandomTerm]] = {}
    for term in parsed.random:
        by_factor.setdefault(term.factor, []).append(term)
    blocks = [
        _merge_terms(
            f, terms, lambda t: matrix(t.expr, f"random-effects term {t.source}"), *frame.factors[f], n
        )
        for f, terms in by_factor.items()
    ]
    if row_checks:
        bad = nonfinite_design(y, X, parsed, fixed_names, blocks, frame.row_labels)
        if bad:
            raise nonfinite_error(bad, evaluated=True)
        _check_full_rank(X, fixed_names)
        for block in blocks:
            check_identifiable(block, n)
    blocks.sort(key=lambda b: -b.n_levels)  # stable: ties keep formula order
    return Design(parsed, y, X, fixed_names, blocks, fixed_spec, frame, frame.n_dropped)
