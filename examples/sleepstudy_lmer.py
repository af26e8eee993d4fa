"""Repeated measures: reaction time over days of sleep deprivation (lme4's sleepstudy).

Fits the correlated varying intercept and slope model by REML and ML, prints the
lmer-style summary and the per-subject coefficients, as a research script would.

Run: .venv/bin/python examples/sleepstudy_lmer.py
"""

import bayesmlm as bm

df = bm.datasets.load("sleepstudy")
fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)
print(fit.summary())
print()
print("Per-subject coefficients (fixed + random):")
print(fit.coef()["Subject"].round(2).head())

ml = bm.lmer("Reaction ~ Days + (Days | Subject)", df, reml=False)
uncorrelated = bm.lmer("Reaction ~ Days + (Days || Subject)", df, reml=False)
print()
print(f"ML logLik, correlated: {ml.loglik:.2f}; uncorrelated: {uncorrelated.loglik:.2f}")
print(f"AIC {ml.aic:.1f} vs {uncorrelated.aic:.1f}: the correlation adds one parameter")
