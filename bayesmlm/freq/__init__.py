"""Frequentist fits: lme4's PLS engine and statsmodels MixedLM behind one FreqFit."""

from .lmer import fit_design, lmer
from .result import FreqFit
from .glmer import GlmerFit, glmer

__all__ = ["lmer", "fit_design", "FreqFit", "glmer", "GlmerFit"]
