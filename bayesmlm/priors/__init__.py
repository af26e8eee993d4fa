"""Priors as reviewable artefacts: distributions, PriorSpec, rules and TOML files.

Examples
--------
>>> import bayesmlm as bm
>>> pri = bm.priors.default("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> pri["sd[Subject][Days]"] = bm.priors.HalfNormal(10)
>>> pri.sources["sd[Subject][Days]"]
'set in code'
"""

from .distributions import (
    DISTRIBUTIONS,
    LKJ,
    Distribution,
    Exponential,
    Gamma,
    HalfNormal,
    HalfStudentT,
    LogNormal,
    Normal,
    StudentT,
)
from .elicit import from_quantiles, set_from_quantiles
from .io import dumps, load, save
from .rules import data_fingerprint, default, default_for_design, empirical
from .spec import Parameter, PriorSpec, model_parameters

__all__ = [
    "Distribution",
    "Normal",
    "StudentT",
    "HalfNormal",
    "HalfStudentT",
    "Exponential",
    "Gamma",
    "LogNormal",
    "LKJ",
    "DISTRIBUTIONS",
    "PriorSpec",
    "Parameter",
    "model_parameters",
    "default",
    "default_for_design",
    "empirical",
    "load",
    "save",
    "dumps",
    "data_fingerprint",
    "from_quantiles",
    "set_from_quantiles",
]
