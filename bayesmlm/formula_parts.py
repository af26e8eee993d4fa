"""formulaic's view of a mixed formula: every right-hand side it is handed, parsed once.

:mod:`bayesmlm.formula` splits off lme4's bars; what is left -- the fixed part,
the expression on the left of each bar and a response written as an
expression (``log(y)``) -- is Wilkinson notation for formulaic. Parsing it is a
good share of a small model's fit, so each distinct text is parsed once per
fit, and the parsed formulas serve both to list the data columns a model uses
(:func:`bayesmlm.frame.required_columns`) and to build its matrices
(:func:`bayesmlm.design.build_design`).

Examples
--------
>>> from bayesmlm.formula import parse_formula
>>> parts = FormulaParts.parse(parse_formula("y ~ x + (x | g) + (x || h)"))
>>> list(parts.sides), parts.response is None
(['x', '1 + x', '1', '0 + x'], True)
>>> sorted(parts.variables(parts.sides["1 + x"]))
['x']
"""

from __future__ import annotations

import functools

import keyword
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import formulaic
from formulaic.parser.types import Factor
from formulaic.transforms import TRANSFORMS
from formulaic.utils.variables import get_required_variables

from .errors import FormulaError
from .formula import MixedFormula

__all__ = ["FormulaParts", "parse_side", "side_variables", "is_column_name"]


class _StandIn:
    """A name while variables are listed: any attribute is another stand-in."""

    def __getattr__(self, name: str) -> "_StandIn":
        if name.startswith("__"):
            raise AttributeError(name)
        return self


class _EveryName(Mapping):
    """A namespace in which every name is defined and none is a stateful transform.

    formulaic (1.2) asks a stateful transform such as ``scale(x)`` for its variables by
    evaluating its arguments, and lists none when ``x`` is undefined; in this namespace
    ``scale`` is an ordinary call, so formulaic walks into its arguments and lists ``x``.
    """

    def __getitem__(self, key: str) -> _StandIn:
        return _StandIn()

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _factor_names(factor: Factor) -> tuple[set[str], set[str]]:
    """The data variables of a factor, and every name it refers to (functions such as ``log`` too)."""
    names = {str(v) for v in factor.required_variables}  # formulaic's list (knows Q("x") etc.)
    roots = set(names)
    if factor.eval_method == Factor.EvalMethod.PYTHON:
        try:
            found = get_required_variables(factor.expr, _EveryName())
        except Exception:  # malformed code: evaluating the term reports it, as formulaic does
            found = set()
        roots |= {str(v.root) for v in found}
        names |= {str(v.root) for v in found if v.root not in TRANSFORMS}
    return names, roots


def parse_side(text: str, what: str):
    """formulaic's parse of ``text`` (a right-hand side, or ``lhs ~ rhs``), errors named by ``what``."""
    try:
        return _parsed(text)
    except Exception as exc:  # formulaic raises several exception types for syntax
        raise FormulaError(f"cannot parse the {what} {text!r}: {exc}") from exc


@functools.lru_cache(maxsize=512)
def _parsed(text: str):
    """formulaic's parse of ``text``, kept for the next fit of the same formula (a parse costs about
    0.1 ms, a twentieth of a small model's whole fit). formulaic's ``Formula`` is not changed by
    building matrices from it, so one parse serves every call."""
    return formulaic.Formula(text)


def _factors(parsed) -> Iterator[Factor]:
    sides = [parsed.lhs, parsed.rhs] if hasattr(parsed, "lhs") else [parsed]
    return (factor for side in sides for term in side for factor in term.factors)


def side_variables(parsed) -> set[str]:
    """Data variables of a parsed formula, those inside stateful transforms (``scale(x)``) included.

    Examples
    --------
    >>> sorted(side_variables(parse_side("scale(x) + center(np.log(z)):g + w", "fixed part")))
    ['g', 'w', 'x', 'z']
    """
    return {name for factor in _factors(parsed) for name in _factor_names(factor)[0]}


def is_column_name(text: str) -> bool:
    """True when a response is a plain name: its only variable is itself, no parse needed."""
    text = text.strip()
    return text.isidentifier() and not keyword.iskeyword(text)


@dataclass(frozen=True)
class FormulaParts:
    """Every right-hand side of a mixed formula that formulaic evaluates, parsed once.

    Attributes
    ----------
    response : formulaic.Formula or None
        ``"<response> ~ 1"`` parsed, where the response is an expression
        (``np.log(Reaction)``); None where it is a column name.
    sides : mapping of str -> formulaic.Formula
        The fixed part, then each distinct random-term expression, by its text.
    """

    response: object | None
    sides: Mapping[str, object]

    @classmethod
    @functools.lru_cache(maxsize=512)
    def parse(cls, formula: MixedFormula) -> "FormulaParts":
        """Parse the response (if an expression), the fixed part and each term's expression (kept for
        the next fit of the same formula: the parts, read-only, depend on the formula alone).

        Raises
        ------
        FormulaError
            Naming the first part, in formula order, that formulaic cannot parse.
        """
        response, sides = None, {}
        if not is_column_name(formula.response):
            response = parse_side(f"{formula.response} ~ 1", "response")
        fixed = sides[formula.fixed] = parse_side(formula.fixed, "fixed part")
        for term in formula.random:
            if term.expr == f"1 + {formula.fixed}":
                # ``y ~ x + (x | g)``: formulaic gives ``x`` its intercept, so ``1 + x`` is the same formula
                sides[term.expr] = fixed
            elif term.expr not in sides:
                sides[term.expr] = parse_side(term.expr, f"term {term.source}")
        return cls(response, MappingProxyType(sides))

    def same_as(self, text: str) -> str:
        """The first text in :attr:`sides` that parses to the same formula as ``text`` (``"x"`` and
        ``"1 + x"`` both mean ``1 + x``): one formulaic matrix serves both."""
        target = str(self.sides[text])
        return next(t for t, parsed in self.sides.items() if str(parsed) == target)

    @staticmethod
    def variables(parsed) -> set[str]:
        """Data variables of one parsed part (see :func:`side_variables`)."""
        return side_variables(parsed)

    def bare_variables(self) -> frozenset[str]:
        """Data variables that every factor naming them is just the variable (``recipe``, not
        ``C(recipe + x)`` or ``np.log(x)``): formulaic reads those columns as they are.

        Examples
        --------
        >>> from bayesmlm.formula import parse_formula
        >>> parts = FormulaParts.parse(parse_formula("y ~ recipe * temp + np.log(x) + (1 | recipe:rep)"))
        >>> sorted(parts.bare_variables()), sorted(parts.looked_up() - {"np"})
        (['recipe', 'temp'], ['recipe', 'temp', 'x'])
        """
        return self._uses[1]

    def reads_columns_only(self, text: str) -> bool:
        """Whether every factor of the side ``text`` is a data column or a literal (``1 + x + g:x``,
        not ``np.log(x)`` or ``C(g)``): evaluated on complete rows, it cannot yield a missing value.

        Examples
        --------
        >>> from bayesmlm.formula import parse_formula
        >>> parts = FormulaParts.parse(parse_formula("y ~ recipe * temp + (np.log(x) | g)"))
        >>> parts.reads_columns_only("recipe * temp"), parts.reads_columns_only("1 + np.log(x)")
        (True, False)
        """
        return self._plain_sides[text]

    @functools.cached_property
    def _plain_sides(self) -> dict[str, bool]:
        plain = (Factor.EvalMethod.LOOKUP, Factor.EvalMethod.LITERAL)
        return {text: all(f.eval_method in plain for f in _factors(parsed)) for text, parsed in self.sides.items()}

    def looked_up(self) -> frozenset[str]:
        """Every name formulaic may look up in the data while building the matrices."""
        return self._uses[0]

    @functools.cached_property
    def _uses(self) -> tuple[frozenset[str], frozenset[str]]:
        """(:meth:`looked_up`, :meth:`bare_variables`), from one pass over the factors."""
        looked, bare, other = set(), set(), set()
        parts = ([self.response] if self.response is not None else []) + list(self.sides.values())
        for parsed in parts:
            for factor in _factors(parsed):
                names, roots = _factor_names(factor)
                looked |= names | roots
                if names == {factor.expr}:
                    bare.add(factor.expr)
                else:
                    other |= names
        return frozenset(looked), frozenset(bare - other)
