"""Retail sales: weekly sales per location (10) x merchandise group (10), crossed varying slopes.

Two location/group combinations were never sold. lmer estimates the crossed model; its fit
to the first half-year becomes the prior file (reviewable TOML) for the Bayesian fit to the
second; the posterior is compared with lmer; and the two never-sold combinations are
predicted from their location's and their group's effects, which is what a crossed model
allows and a per-cell model cannot.

Run: .venv/bin/python examples/retail.py [--out out/retail] [--draws 1000] [--chains 4]
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import pandas as pd

import bayesmlm as bm

FORMULA = "TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)"


def main(out: Path, draws: int = 1000, chains: int = 4, seed: int = 1) -> dict:
    df = bm.datasets.simulate_retail(5000, n_absent=2, seed=7)
    sold = set(zip(df.Description, df.MerGroup))
    never = [c for c in itertools.product(sorted(df.Description.unique()), sorted(df.MerGroup.unique())) if c not in sold]
    print(f"{len(df)} rows; never sold: {never}")

    first, second = df[df.Wk < 26], df[df.Wk >= 26]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)
        priors = bm.priors.empirical(bm.lmer(FORMULA, first))
    prior_file = priors.save(out / "priors" / "retail.toml")
    fit = bm.lmer(FORMULA, second)
    print(fit.summary())

    post = bm.sample(FORMULA, second, priors=prior_file, draws=draws, chains=chains, seed=seed, progressbar=False)
    cmp = bm.compare(fit, post)
    print("\nlmer vs posterior, fixed effects:")
    print(cmp.fixed.round(2).to_string())

    cells = pd.DataFrame({"Description": [c[0] for c in never], "MerGroup": [c[1] for c in never], "Wk": 51.0})
    predicted = post.predict(cells, seed=seed)
    lmer_mean = [fit.fixef()["Intercept"] + fit.fixef()["Wk"] * 51
                 + sum(fit.ranef()[f].loc[c[i]] @ pd.Series({"Intercept": 1.0, "Wk": 51.0})
                       for i, f in enumerate(["Description", "MerGroup"])) for c in never]
    table = pd.concat([cells, predicted.round(1)], axis=1).assign(lmer=[round(m, 1) for m in lmer_mean])
    print("\nweek-51 sales of the never-sold combinations (posterior mean, sd, 90% interval; lmer's BLUP sum):")
    print(table.to_string(index=False))

    report = bm.report(post, out / "report.html", freq=fit, title="Retail: crossed locations x merchandise groups")
    print(f"\nreport: {report}")
    return {"never_sold": never, "predicted": table, "compare": cmp, "report": report, "prior_file": prior_file}


if __name__ == "__main__":
    from _common import run

    run(main, __doc__, "retail")
