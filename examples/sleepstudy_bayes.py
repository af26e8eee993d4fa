"""From lmer to a Bayesian fit: empirical priors saved, edited by hand, loaded, sampled, predicted.

Run: .venv/bin/python examples/sleepstudy_bayes.py  (writes out/priors_sleepstudy.toml)
"""

from pathlib import Path

import pandas as pd

import bayesmlm as bm

formula = "Reaction ~ Days + (Days | Subject)"
df = bm.datasets.load("sleepstudy")
fit = bm.lmer(formula, df)

# Priors from the first 12 subjects' fit: historical data, not the data we sample below.
earlier = df[df.Subject.isin(sorted(df.Subject.unique())[:12])]
pri = bm.priors.empirical(bm.lmer(formula, earlier))
path = pri.save(Path("out") / "priors_sleepstudy.toml")

# A reviewer widens the prior on the slope SD by editing the file.
text = path.read_text()
start = text.index('"sd[Subject][Days]" =')
text = text[:start] + '"sd[Subject][Days]" = { dist = "HalfStudentT", nu = 3.0, sigma = 15.0 }' + text[text.index("\n", start):]
path.write_text(text)

later = df[~df.Subject.isin(earlier.Subject)]
post = bm.sample(formula, later, priors=bm.priors.load(path, formula, later), draws=1000, chains=4, seed=1)
print(post.summary())
print()
print("lmer on the same rows:")
print(bm.lmer(formula, later).fixef().round(2))

new = pd.DataFrame({"Subject": ["372", "new subject"], "Days": [10, 10]})
print()
print("Day-10 reaction time, a known and a new subject (new level drawn from the group distribution):")
print(post.predict(new, new_levels="sample", seed=1).round(1))
