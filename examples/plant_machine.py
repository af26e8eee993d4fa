"""Plant and machine: production is nearly a fixed rate per hour, so lmer's fit is singular.

Machines are nested in plants. With almost no variation between plants or machines beyond
the noise, lmer puts both group SDs at zero (a boundary, "singular" fit) and says so. The
toolkit reports it, the empirical priors it would derive are refused for the zero SDs in
favour of weakly informative ones that say why, and the Bayesian fit then gives the group
SDs a posterior concentrated near zero but not at it, with the same fixed effects.

Run: .venv/bin/python examples/plant_machine.py [--out out/plant_machine] [--draws 1000]
"""

from __future__ import annotations

import warnings
from pathlib import Path

import bayesmlm as bm

FORMULA = "Production ~ Hours + (1 | Plant/Machine)"


def main(out: Path, draws: int = 1000, chains: int = 4, seed: int = 1) -> dict:
    df = bm.datasets.simulate_plant_machine()
    print(f"{len(df)} shifts, {df.Plant.nunique()} plants, {df.Machine.nunique()} machines")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bm.SingularFitWarning)
        fit = bm.lmer(FORMULA, df)
    messages = [str(w.message) for w in caught if issubclass(w.category, bm.SingularFitWarning)]
    print(f"\nlmer singular: {fit.singular}; the toolkit says:\n  " + "\n  ".join(messages))
    print(fit.varcorr().round(4).to_string(index=False))

    priors = bm.priors.empirical(fit)
    print("\npriors derived from that fit (the notes say what was done at the boundary):")
    print(priors)
    priors.save(out / "priors" / "plant_machine.toml")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.EmpiricalPriorNote)
        post = bm.sample(FORMULA, df, priors=priors, draws=draws, chains=chains, seed=seed,
                         target_accept=0.95, progressbar=False)
    print("\nposterior variance components (no SD is exactly zero; the intervals say how small);")
    print("simulated with sd[Plant] = 0, sd[Machine] = 0.05, sigma = 0.5:")
    print(post.varcorr().round(3).to_string())
    print("\nfixed effects, lmer vs posterior:")
    cmp = bm.compare(fit, post)
    print(cmp.fixed.round(3).to_string())
    print(f"\ndivergences: {post.diagnostics.divergences}")

    report = bm.report(post, out / "report.html", freq=fit, title="Plant and machine: a singular lmer fit")
    print(f"\nreport: {report}")
    return {"fit": fit, "messages": messages, "post": post, "compare": cmp, "report": report}


if __name__ == "__main__":
    from _common import run

    run(main, __doc__, "plant_machine")
