"""Bayesian fits: PyMC model builder, sampling with diagnostics, BayesFit."""

from .build import build_model
from .result import BayesFit
from .sample import sample

__all__ = ["sample", "BayesFit", "build_model"]
