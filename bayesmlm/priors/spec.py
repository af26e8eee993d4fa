"""PriorSpec: one prior per model parameter, named in the shared vocabulary.

Keys: fixed effects by design-column name (``Intercept``, ``Wk``), group SDs
``sd[factor][column]``, correlations ``cor[factor]`` (an LKJ prior on the
factor's correlation matrix), and the residual ``sigma``. The same keys name
variables in the posterior and rows in comparison tables.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> [p.key for p in model_parameters(d)]
['Intercept', 'Days', 'sd[Subject][Intercept]', 'sd[Subject][Days]', 'cor[Subject]', 'sigma']
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from ..design import Design
from ..errors import PriorError
from .distributions import Distribution

__all__ = ["Parameter", "PriorSpec", "model_parameters", "family_parameters", "FAMILY_PARAMETERS", "kind_of_key", "component_key", "SAME_DATA_NOTE"]

Kind = Literal["fixed", "sd", "cor", "sigma", "family"]

FAMILY_PARAMETERS = ("nu", "phi", "shape")
"""Keys of the response families' own parameters besides ``sigma`` (student ``nu``, negative binomial ``phi``, Gamma ``shape``)."""

SAME_DATA_NOTE = (
    "These priors come from a fit to the same data that will be sampled: using the data twice "
    "narrows the posterior (intervals are too short). For an honest analysis, derive priors from a "
    "fit on other data (e.g. an earlier period): bm.priors.empirical(bm.lmer(formula, earlier_df))."
)
EMPIRICAL_NOTE = (
    "Empirical priors from an lmer fit (data fingerprint {fingerprint}). Used on other data (an earlier "
    "period, a similar study) they carry that knowledge honestly; used on the same data they count it twice "
    "and narrow the posterior: bm.sample warns when it recognises the same data."
)

_SUPPORT_OF_KIND = {"fixed": "real", "sd": "positive", "sigma": "positive", "cor": "correlation", "family": "positive"}
_FAMILIES_OF_SUPPORT = {
    "real": "Normal, StudentT",
    "positive": "HalfNormal, HalfStudentT, Exponential, Gamma, LogNormal",
    "correlation": "LKJ",
}


@dataclass(frozen=True)
class Parameter:
    """One model parameter that needs a prior.

    Attributes
    ----------
    key : str
    kind : {"fixed", "sd", "cor", "sigma"}
    factor : str or None
    columns : tuple of str
        The fixed-effect column, the SD's column, or the correlated columns.

    Examples
    --------
    See :func:`model_parameters`.

    >>> import bayesmlm as bm
    >>> d = bm.build_design("Reaction ~ Days + (1 | Subject)", bm.datasets.load("sleepstudy"))
    >>> model_parameters(d)[-1].key
    'sigma'
    """

    key: str
    kind: Kind
    factor: str | None
    columns: tuple[str, ...]


def component_key(grp: str, var1: str | None, var2: str | None) -> str:
    """Name of a ``varcorr()`` row: ``sd[g][x]``, ``cor[g][a,b]`` or ``sigma`` (the residual).

    Examples
    --------
    >>> component_key("Subject", "Days", None), component_key("Subject", "Intercept", "Days")
    ('sd[Subject][Days]', 'cor[Subject][Intercept,Days]')
    """
    if grp == "Residual":
        return "sigma"
    if var2 is None or var2 != var2:  # None, or NaN once in a DataFrame
        return f"sd[{grp}][{var1}]"
    return f"cor[{grp}][{var1},{var2}]"


def correlation_key(factor: str, columns: tuple[str, ...], n_groups: int) -> str:
    """``cor[g]``, or ``cor[g][a,b]`` when a factor has two correlated groups."""
    return f"cor[{factor}]" if n_groups == 1 else f"cor[{factor}][{','.join(columns)}]"


def model_parameters(design: Design) -> list[Parameter]:
    """The parameters of a design's model, in a stable order.

    Parameters
    ----------
    design : Design
        The model's design (:func:`bayesmlm.build_design`).

    Examples
    --------
    >>> import bayesmlm as bm
    >>> d = bm.build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
    >>> [p.key for p in model_parameters(d)]
    ['Intercept', 'Days', 'sd[Subject][Intercept]', 'sd[Subject][Days]', 'cor[Subject]', 'sigma']
    """
    params = [Parameter(name, "fixed", None, (name,)) for name in design.fixed_names]
    for block in design.blocks:
        params += [Parameter(f"sd[{block.factor}][{c}]", "sd", block.factor, (c,)) for c in block.columns]
        multi = [g for g in block.groups if len(g) > 1]
        for group in multi:
            cols = tuple(block.columns[i] for i in group)
            params.append(Parameter(correlation_key(block.factor, cols, len(multi)), "cor", block.factor, cols))
    params += [Parameter(name, "sigma" if name == "sigma" else "family", None, ()) for name in family_parameters(design)]
    return params


def family_parameters(design: Design) -> tuple[str, ...]:
    """The response family's own parameters: ``sigma`` for a gaussian design, else the family's.

    A design built for a family (``bm.sample(..., family=...)``) carries it as ``design.family``:
    binomial and Poisson have none, the negative binomial ``phi``, Gamma ``shape``, the
    lognormal ``sigma``, the student ``sigma`` and ``nu``.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> family_parameters(bm.build_design("Reaction ~ Days + (1 | Subject)", bm.datasets.load("sleepstudy")))
    ('sigma',)
    """
    family = getattr(design, "family", None)
    return ("sigma",) if family is None else tuple(family.aux_params)


def kind_of_key(key: str) -> Kind:
    """Parameter kind from its key's shape."""
    if key == "sigma":
        return "sigma"
    if key in FAMILY_PARAMETERS:
        return "family"
    if key.startswith("sd["):
        return "sd"
    if key.startswith("cor["):
        return "cor"
    return "fixed"


def check_support(key: str, dist: Distribution) -> None:
    """Raise PriorError when a distribution cannot serve a parameter of this kind."""
    need = _SUPPORT_OF_KIND[kind_of_key(key)]
    if not isinstance(dist, Distribution):
        raise PriorError(f"prior for {key!r} must be a bayesmlm.priors distribution, got {type(dist).__name__}")
    if dist.support != need:
        raise PriorError(
            f"prior for {key!r} is {dist}, whose support is {dist.support}; "
            f"{key!r} needs one of: {_FAMILIES_OF_SUPPORT[need]}"
        )


class PriorSpec(MutableMapping):
    """Priors by parameter key, with where each came from.

    Parameters
    ----------
    priors : dict of str -> Distribution
    sources : dict of str -> str, optional
        One line per key saying where the prior came from.
    meta : dict, optional
        ``formula``, ``method`` and, for empirical priors, ``data_fingerprint``
        of the fitted data.

    Examples
    --------
    >>> from bayesmlm.priors import HalfNormal, Normal
    >>> spec = PriorSpec({"Intercept": Normal(0, 10), "sigma": HalfNormal(5)})
    >>> spec["sigma"] = HalfNormal(2)
    >>> spec.table().parameter.tolist()
    ['Intercept', 'sigma']
    >>> spec["sigma"] = Normal(0, 1)
    Traceback (most recent call last):
    ...
    bayesmlm.errors.PriorError: prior for 'sigma' is Normal(mu=0, sigma=1), whose support is real; 'sigma' needs one of: HalfNormal, HalfStudentT, Exponential, Gamma, LogNormal
    """

    def __init__(
        self,
        priors: dict[str, Distribution] | None = None,
        sources: dict[str, str] | None = None,
        meta: dict | None = None,
    ):
        self._priors: dict[str, Distribution] = {}
        self.sources: dict[str, str] = {}
        self.meta: dict = dict(meta or {})
        self.lines: dict[str, int] = {}  # line of each key in the file it was read from
        self.path: str | None = None  # the file it was read from
        for key, dist in (priors or {}).items():
            self[key] = dist
        self.sources.update(sources or {})

    # -- mapping -------------------------------------------------------------------
    def __getitem__(self, key: str) -> Distribution:
        try:
            return self._priors[key]
        except KeyError:
            raise KeyError(f"no prior for {key!r}; keys are {list(self._priors)}") from None

    def __setitem__(self, key: str, dist: Distribution) -> None:
        check_support(key, dist)
        self._priors[key] = dist
        self.sources[key] = "set in code"

    def __delitem__(self, key: str) -> None:
        del self._priors[key]
        self.sources.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._priors)

    def __len__(self) -> int:
        return len(self._priors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PriorSpec):
            return NotImplemented
        return self._priors == other._priors and self.sources == other.sources and self.meta == other.meta

    def copy(self) -> "PriorSpec":
        out = PriorSpec(dict(self._priors), dict(self.sources), dict(self.meta))
        out.lines, out.path = dict(self.lines), self.path
        return out

    # -- presentation --------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """One row per parameter: parameter, distribution, source."""
        return pd.DataFrame(
            [(k, str(d), self.sources.get(k, "")) for k, d in self._priors.items()],
            columns=["parameter", "distribution", "source"],
        )

    def notes(self, same_data: bool | None = None) -> list[str]:
        """Caveats a reader of these priors should see.

        ``same_data``: whether they are used on the data they were elicited
        from (True / False when known, e.g. by data fingerprint; None if not).
        """
        if self.meta.get("method") != "empirical":
            return []
        if same_data:
            return [SAME_DATA_NOTE]
        if same_data is False:
            return [f"Empirical priors elicited from other data (fingerprint {self.meta.get('data_fingerprint', '?')}), "
                    "not the data sampled here."]
        return [EMPIRICAL_NOTE.format(fingerprint=self.meta.get("data_fingerprint", "?"))]

    def __repr__(self) -> str:
        lines = [f"PriorSpec for {self.meta.get('formula', '(no formula)')}"]
        lines.append(self.table().to_string(index=False))
        lines += [f"Note: {n}" for n in self.notes()]
        return "\n".join(lines)

    __str__ = __repr__

    # -- checks --------------------------------------------------------------------
    def _where(self, key: str) -> str:
        path = self.path
        line = self.lines.get(key)
        if path and line:
            return f"{path}, line {line}: "
        return f"{path}: " if path else ""

    def check(self, design: Design) -> None:
        """Raise PriorError unless the keys are exactly the model's parameters.

        The message names each unknown key (with its file and line when the
        spec was read from a file) and each missing parameter.
        """
        expected = [p.key for p in model_parameters(design)]
        unknown = [k for k in self._priors if k not in expected]
        missing = [k for k in expected if k not in self._priors]
        problems = [
            f"{self._where(k)}{k!r} is not a parameter of {design.formula.text!r} (its parameters: {', '.join(expected)})"
            for k in unknown
        ]
        if missing:
            where = f"{self.path}: " if self.path else ""
            problems.append(f"{where}no prior for {', '.join(map(repr, missing))}")
        if problems:
            raise PriorError("; ".join(problems))

    def save(self, path: str | Path) -> Path:
        """Write the spec as a TOML prior file (see ``priors/README.md``)."""
        from .io import save

        return save(self, path)
