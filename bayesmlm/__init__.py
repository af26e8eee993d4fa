"""bayesmlm: lme4-style mixed models in Python, frequentist and Bayesian.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> fit.fixef().round(2).tolist()
[251.41, 10.47]
"""

import importlib.util as _importlib_util
import sys as _sys
import types as _types
from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING

from . import datasets, families
from .design import Design, build_design
from .errors import (
    BayesMLMError,
    ConvergenceWarning,
    DataError,
    EmpiricalPriorNote,
    PriorError,
    SamplingWarning,
    EngineError,
    EngineWarning,
    FormulaError,
    SingularFitWarning,
)
from .formula import MixedFormula, RandomTerm, parse_formula
from .freq import FreqFit, lmer
from .freq.glmer import GlmerFit, SeparationWarning, glmer
from .freq.inference import anova, icc, r2

# The Bayesian layer and the report (PyMC, PyTensor, ArviZ, nutpie, matplotlib) load on first use:
# a script that only fits lmer/glmer models starts in a fraction of the time and memory. Each name
# below is an attribute of the module named beside it; submodules (bm.priors, bm.loo) load alike.
_LAZY = {
    "sample": ".bayes",
    "BayesFit": ".bayes",
    "prior_predictive": ".bayes.prior_predictive",
    "PriorPredictive": ".bayes.prior_predictive",
    "pooling": ".pooling",
    "Pooling": ".pooling",
    "compare": ".compare",
    "Comparison": ".compare",
    "loo_compare": ".loo",
    "sensitivity": ".sensitivity",
    "Sensitivity": ".sensitivity",
    "report": ".report",
}

if _TYPE_CHECKING:  # what static tools see; at run time these come from __getattr__
    from . import priors
    from .bayes import BayesFit, sample
    from .bayes.prior_predictive import PriorPredictive, prior_predictive
    from .compare import Comparison, compare
    from .loo import loo_compare
    from .pooling import Pooling, pooling
    from .report import report
    from .sensitivity import Sensitivity, sensitivity


def _is_submodule(name: str) -> bool:
    """Whether ``name`` is a module of the package (not a folder of data files, not a dotted path)."""
    if name.startswith("_") or not name.isidentifier():
        return False
    spec = _importlib_util.find_spec(f"{__name__}.{name}")
    return spec is not None and spec.origin is not None  # a namespace package has no origin


class _Package(_types.ModuleType):
    """The package module: loads the names of ``_LAZY`` on first access. Where a function shares its
    name with the submodule defining it (``compare``, ``pooling``, ``sensitivity``, ``report``), the
    import system, binding the submodule to the package once it is loaded, binds the function instead:
    ``bm.compare`` stays the function whichever module imported ``bayesmlm.compare`` first."""

    def __getattr__(self, name: str):
        if name in _LAZY:
            value = getattr(_import_module(_LAZY[name], __name__), name)
        elif _is_submodule(name):
            value = _import_module(f".{name}", __name__)  # a submodule not loaded yet (bm.priors, bm.loo)
        else:
            raise AttributeError(f"module 'bayesmlm' has no attribute {name!r}")
        super().__setattr__(name, value)  # once loaded, an ordinary attribute
        return value

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, _types.ModuleType) and _LAZY.get(name) == f".{name}":
            value = getattr(value, name)  # the import system binding bayesmlm.compare: keep compare()
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(__all__))


_sys.modules[__name__].__class__ = _Package

__all__ = [
    "lmer",
    "FreqFit",
    "sample",
    "BayesFit",
    "pooling",
    "compare",
    "Comparison",
    "loo_compare",
    "prior_predictive",
    "PriorPredictive",
    "sensitivity",
    "Sensitivity",
    "report",
    "Pooling",
    "parse_formula",
    "MixedFormula",
    "RandomTerm",
    "build_design",
    "Design",
    "datasets",
    "priors",
    "BayesMLMError",
    "FormulaError",
    "DataError",
    "EngineError",
    "EngineWarning",
    "SingularFitWarning",
    "ConvergenceWarning",
    "PriorError",
    "SamplingWarning",
    "EmpiricalPriorNote",
]
__all__ += ["glmer", "GlmerFit", "SeparationWarning", "families"]
__all__ += ["anova", "icc", "r2"]
__version__ = "0.1.0"
