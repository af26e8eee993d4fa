"""Repeated measures: reaction time over ten days of sleep deprivation (lme4's sleepstudy).

lmer by REML (the numbers lme4 reports) and ML (correlated vs uncorrelated slopes by AIC);
priors elicited from the first 12 subjects' fit, saved as a TOML file, one prior widened by
editing the file, and used for the other 6 subjects; posterior vs lmer; prediction for a
known and a new subject; report.

Run: .venv/bin/python examples/sleepstudy.py [--out out/sleepstudy] [--draws 1000] [--chains 4]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import bayesmlm as bm

FORMULA = "Reaction ~ Days + (Days | Subject)"


def main(out: Path, draws: int = 1000, chains: int = 4, seed: int = 1) -> dict:
    df = bm.datasets.load("sleepstudy")
    fit = bm.lmer(FORMULA, df)
    print(fit.summary())
    ml = bm.lmer(FORMULA, df, reml=False)
    uncorrelated = bm.lmer("Reaction ~ Days + (Days || Subject)", df, reml=False)
    print(f"\nML AIC, correlated {ml.aic:.1f} vs uncorrelated {uncorrelated.aic:.1f}")

    earlier_subjects = sorted(df.Subject.unique())[:12]
    earlier, later = df[df.Subject.isin(earlier_subjects)], df[~df.Subject.isin(earlier_subjects)]
    path = bm.priors.empirical(bm.lmer(FORMULA, earlier)).save(out / "priors" / "sleepstudy.toml")
    # A reviewer widens the prior on the slope SD by editing the file.
    lines = path.read_text().splitlines()
    lines = ['"sd[Subject][Days]" = { dist = "HalfStudentT", nu = 3.0, sigma = 15.0 }'
             if line.startswith('"sd[Subject][Days]"') else line for line in lines]
    path.write_text("\n".join(lines) + "\n")

    post = bm.sample(FORMULA, later, priors=path, draws=draws, chains=chains, seed=seed, progressbar=False)
    later_fit = bm.lmer(FORMULA, later)
    cmp = bm.compare(later_fit, post)
    print("\nlmer vs posterior on the later 6 subjects:")
    print(cmp.fixed.round(2).to_string())
    print(cmp.scales.round(2).to_string())

    new = pd.DataFrame({"Subject": [later.Subject.iloc[0], "new subject"], "Days": [10, 10]})
    predicted = post.predict(new, new_levels="sample", seed=seed)
    print("\nday-10 reaction time, a known and a new subject (new level drawn from the group distribution):")
    print(pd.concat([new, predicted.round(1)], axis=1).to_string(index=False))

    report = bm.report(post, out / "report.html", freq=later_fit, title="Sleep deprivation: reaction time by day")
    print(f"\nreport: {report}")
    return {"fit": fit, "aic": (ml.aic, uncorrelated.aic), "compare": cmp, "predicted": predicted,
            "prior_file": path, "report": report}


if __name__ == "__main__":
    from _common import run

    run(main, __doc__, "sleepstudy")
