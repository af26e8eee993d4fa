"""Parse lme4-style mixed-model formulas.

The random-effects "bars" (``|``, ``||``, ``/`` and ``:`` inside the grouping
part) are lme4 syntax that no Python formula library understands, so they are
split off here, by hand, following lme4's ``findbars``/``expandDoubleVerts``/
``expandSlash`` rules. Everything else -- the fixed part and the expression on
the left of each bar -- is ordinary Wilkinson notation and is handed, as text,
to formulaic by :mod:`bayesmlm.design`.

Examples
--------
>>> from bayesmlm.formula import parse_formula
>>> f = parse_formula("y ~ x + (x || g) + (1 | a/b)")
>>> f.response, f.fixed
('y', 'x')
>>> [(t.expr, t.factor) for t in f.random]
[('1', 'g'), ('0 + x', 'g'), ('1', 'b:a'), ('1', 'a')]
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .errors import FormulaError

__all__ = ["RandomTerm", "MixedFormula", "parse_formula"]

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$|^`[^`]+`$")


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | factor)`` after lme4's expansions.

    Attributes
    ----------
    expr : str
        Right-hand side of a model formula for the varying columns, e.g.
        ``"1 + Days"`` or ``"0 + Days"``.
    factor : str
        Grouping factor: a column name or an interaction ``"b:a"`` of columns.
    correlated : bool
        False for terms produced by ``||``; such terms hold a single column.
    source : str
        The bar as the user wrote it, for error messages.

    Examples
    --------
    >>> term = parse_formula("y ~ x + (x || g)").random[0]
    >>> term.factor, term.correlated
    ('g', False)
    """

    expr: str
    factor: str
    correlated: bool
    source: str

    @property
    def factor_columns(self) -> tuple[str, ...]:
        """Data columns that make up the grouping factor."""
        return tuple(_unquote(c) for c in self.factor.split(":"))

    @property
    def bar(self) -> str:
        """The term as formula text, ``(expr | factor)``, names that are not plain backquoted.

        Examples
        --------
        >>> parse_formula("y ~ x + (x || `group id`)").random[1].bar
        '(0 + x | `group id`)'
        """
        factor = ":".join(c if _NAME.match(c) else f"`{c}`" for c in self.factor_columns)
        return f"({self.expr} | {factor})"


@dataclass(frozen=True)
class MixedFormula:
    """A parsed mixed-model formula.

    Attributes
    ----------
    text : str
        The formula as given.
    response : str
        Left-hand side expression.
    fixed : str
        Fixed-effects right-hand side in formulaic syntax (``"1"`` when only
        an intercept).
    random : tuple of RandomTerm
        Random-effects terms, expanded (``||`` and ``/`` resolved).

    Examples
    --------
    >>> f = parse_formula("y ~ x + (x | g) + (1 | a/b)")
    >>> f.response, [t.factor for t in f.random]
    ('y', ['g', 'b:a', 'a'])
    """

    text: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]

    @property
    def factors(self) -> tuple[str, ...]:
        """Distinct grouping factors in order of first appearance."""
        return tuple(dict.fromkeys(t.factor for t in self.random))


def _unquote(name: str) -> str:
    name = name.strip()
    return name[1:-1] if name.startswith("`") and name.endswith("`") else name


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` where it is not inside parentheses."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"unbalanced ')' at position {i} in {text!r}")
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    if depth != 0:
        raise FormulaError(f"unbalanced '(' in {text!r}")
    parts.append(text[start:])
    return parts


def _is_wrapped(chunk: str) -> bool:
    """True when ``chunk`` is ``( ... )`` with the outer pair matching."""
    chunk = chunk.strip()
    if not (chunk.startswith("(") and chunk.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(chunk):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(chunk) - 1:
            return False
    return True


def _expand_slash(spec: str, source: str) -> list[str]:
    """``a/b/c`` -> ``['c:b:a', 'b:a', 'a']`` (lme4's expandSlash naming)."""
    parts = [p.strip() for p in spec.split("/")]
    if any(not p for p in parts):
        raise FormulaError(f"empty grouping factor in {source!r}")
    for p in parts:
        for name in p.split(":"):
            if not _NAME.match(name.strip()):
                raise FormulaError(
                    f"grouping factor {name.strip()!r} in {source!r} must be a column "
                    "name or an interaction of column names like a:b"
                )
    # factors by their columns' names: `h h` is the column h h
    parts = [":".join(_unquote(name) for name in p.split(":")) for p in parts]
    factors = []
    for k in range(len(parts), 0, -1):
        factors.append(":".join(reversed(parts[:k])))
    return factors


def _expr_terms(expr: str) -> tuple[bool, list[str]]:
    """Split a bar's left side into (has_intercept, non-intercept terms)."""
    intercept = True
    terms = []
    for piece in _split_top_level(expr, "+"):
        for j, sub in enumerate(_split_top_level(piece, "-")):
            sub = sub.strip()
            if not sub:
                continue
            if j > 0:  # "- 1" removes the intercept; other removals are not supported
                if sub == "1":
                    intercept = False
                    continue
                raise FormulaError(f"term removal '- {sub}' inside a random-effects bar is not supported")
            if sub == "1":
                intercept = True
            elif sub == "0":
                intercept = False
            else:
                terms.append(sub)
    return intercept, terms


def _parse_bar(chunk: str) -> list[RandomTerm]:
    inner = chunk.strip()[1:-1]
    double = _split_top_level(inner, "||")
    if len(double) == 2:
        lhs, spec, correlated = double[0], double[1], False
    elif len(double) == 1:
        single = _split_top_level(inner, "|")
        if len(single) != 2:
            raise FormulaError(f"random-effects term {chunk.strip()!r} needs exactly one '|' or '||'")
        lhs, spec, correlated = single[0], single[1], True
    else:
        raise FormulaError(f"random-effects term {chunk.strip()!r} has more than one '||'")
    lhs = lhs.strip()
    if not lhs:
        raise FormulaError(f"random-effects term {chunk.strip()!r} has nothing before the bar; write (1 | g)")
    source = chunk.strip()
    intercept, terms = _expr_terms(lhs)
    if not intercept and not terms:
        raise FormulaError(f"random-effects term {source!r} has no varying columns")
    out = []
    for factor in _expand_slash(spec, source):
        if correlated:
            expr = " + ".join((["1"] if intercept else ["0"]) + terms)
            out.append(RandomTerm(expr, factor, True, source))
        else:
            if intercept:
                out.append(RandomTerm("1", factor, False, source))
            out.extend(RandomTerm(f"0 + {t}", factor, False, source) for t in terms)
    return out


def parse_formula(formula: str) -> MixedFormula:
    """Parse an lme4 formula into its response, fixed part and random terms.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ Days + (Days | Subject)"``. Supported bars:
        ``(1|g)``, ``(0+x|g)``, ``(x|g)``, ``(x||g)``, ``(x1+x2|g)``,
        ``(1|a/b)`` (nested: ``b:a`` and ``a``), ``(1|a:b)``.

    Returns
    -------
    MixedFormula

    Raises
    ------
    FormulaError
        When there is no ``~``, no random-effects term, or a malformed bar.

    Examples
    --------
    >>> parse_formula("Reaction ~ Days + (Days | Subject)").random[0].expr
    '1 + Days'
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    return _parse(formula)


@functools.lru_cache(maxsize=512)
def _parse(formula: str) -> MixedFormula:
    """The parse of a formula text, kept for the next fit of the same formula (refits, bootstrap and
    profile loops, model comparisons): the result, frozen, depends on the text alone."""
    sides = _split_top_level(formula, "~")
    if len(sides) != 2 or not sides[0].strip():
        raise FormulaError(f"formula {formula!r} must have the form 'response ~ terms'")
    response, rhs = sides[0].strip(), sides[1].strip()
    if not rhs:
        raise FormulaError(f"formula {formula!r} has no terms after '~'")
    fixed_chunks, random = [], []
    for chunk in _split_top_level(rhs, "+"):
        if not chunk.strip():
            raise FormulaError(f"empty term in {formula!r} (check for a doubled '+')")
        if _is_wrapped(chunk) and len(_split_top_level(chunk.strip()[1:-1], "|")) > 1:
            random.extend(_parse_bar(chunk))
        elif "|" in chunk:
            raise FormulaError(
                f"random-effects term {chunk.strip()!r} must be wrapped in parentheses, e.g. (1 | g)"
            )
        else:
            fixed_chunks.append(chunk.strip())
    if not random:
        raise FormulaError(
            f"formula {formula!r} has no random-effects term such as (1 | group); "
            "for a model without group effects use ordinary least squares"
        )
    fixed = " + ".join(fixed_chunks) if fixed_chunks else "1"
    return MixedFormula(formula, response, fixed, tuple(random))
