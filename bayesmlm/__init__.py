"""bayesmlm: lme4-style mixed models in Python, frequentist and Bayesian.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> fit.fixef().round(2).tolist()
[251.41, 10.47]
"""

from . import datasets
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
from . import families
from . import priors
from .bayes import BayesFit, sample
from .pooling import Pooling, pooling
from .compare import Comparison, compare
from .loo import loo_compare
from .bayes.prior_predictive import PriorPredictive, prior_predictive
from .sensitivity import Sensitivity, sensitivity
from .report import report
from .freq.inference import anova, icc, r2

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
