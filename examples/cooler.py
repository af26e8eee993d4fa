"""Cooler experiment: a treatment whose effect differs between two unequal regions.

A drinks cooler raises sales by 10 in the large Urban region and by 30 in the small Rural
one; 20% of Urban but 80% of Rural stores got it, and Rural stores sell less anyway. The
effect in a typical region, the average of the two, is 20. Three analyses:

* the naive difference of mean sales with and without a cooler mixes the regions'
  baselines into the effect (most coolers sit in the low-selling region);
* a regression with a Cooler x Region interaction estimates each region's effect, but its
  ``Cooler`` coefficient is the effect in the reference region only; the average has to be
  assembled by hand;
* the varying-slope model ``Sales ~ Cooler + (Cooler | Region)`` estimates the average
  effect directly as its fixed effect, with the regions' effects partially pooled around
  it; with two regions its uncertainty is honestly wide, and the Bayesian fit says so.

Run: .venv/bin/python examples/cooler.py [--out out/cooler] [--draws 1000] [--chains 4]
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import statsmodels.formula.api as smf

import bayesmlm as bm

FORMULA = "Sales ~ Cooler + (Cooler | Region)"


def main(out: Path, draws: int = 1000, chains: int = 4, seed: int = 1) -> dict:
    df, truth = bm.datasets.simulate_cooler()
    print(df.groupby("Region").agg(stores=("Sales", "size"), cooler_share=("Cooler", "mean"), mean_sales=("Sales", "mean")).round(2))
    print(f"true effects {truth.effects}; average effect {truth.average_effect}")

    means = df.groupby("Cooler")["Sales"].mean()
    naive = means[1] - means[0]
    interaction = smf.ols("Sales ~ Cooler * C(Region, Treatment('Urban'))", df).fit().params
    urban = interaction["Cooler"]
    rural = urban + interaction["Cooler:C(Region, Treatment('Urban'))[T.Rural]"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SingularFitWarning)  # two regions: the correlation sits at -1
        fit = bm.lmer(FORMULA, df)
    priors = bm.priors.default(FORMULA, df)
    priors.save(out / "priors" / "cooler.toml")
    post = bm.sample(FORMULA, df, priors=priors, draws=draws, chains=chains, seed=seed, target_accept=0.95, progressbar=False)
    bayes = post.fixef().loc["Cooler"]

    table = pd.DataFrame(
        [
            ("naive difference of means", naive, None),
            ("interaction: Cooler coefficient (Urban only)", urban, None),
            ("interaction: mean of the two region effects", (urban + rural) / 2, None),
            ("varying slope, lmer fixed effect", fit.fixef()["Cooler"], fit.se()["Cooler"]),
            ("varying slope, posterior mean", bayes["mean"], bayes["sd"]),
        ],
        columns=["analysis", "average effect", "se / sd"],
    ).set_index("analysis")
    table["error"] = table["average effect"] - truth.average_effect
    print(f"\nestimates of the average effect (truth {truth.average_effect}):")
    print(table.round(2).to_string())
    interval = (bayes["5%"], bayes["95%"])
    print(f"posterior 90% interval {interval[0]:.1f} to {interval[1]:.1f}: wide, because two regions say little about a third")

    report = bm.report(post, out / "report.html", freq=fit, title="Cooler experiment: a treatment effect that differs by region")
    print(f"\nreport: {report}")
    return {"truth": truth, "table": table, "interval": interval, "report": report}


if __name__ == "__main__":
    from _common import run

    run(main, __doc__, "cooler")
