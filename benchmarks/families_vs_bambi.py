"""Bayesian families: bayesmlm's compiled non-centred sampler against Bambi (nutpie), same priors.

1. Poisson, crossed varying slopes: ``y ~ x + (x || a) + (x || b)`` on 5,000 simulated rows
   (10 x 10 levels), against Bambi 0.21 with the same explicit priors (Bambi's group terms
   are independent: it has no LKJ prior, so the ratio compares the ``||`` model; a
   "bayesmlm-lkj" row fits the correlated ``(x | a) + (x | b)`` model for information).
   2 chains x 1000 draws after 1000 tune.
2. Bernoulli, a correlated varying slope: ``y ~ x + (x | g)`` on 6,500 rows (65 groups),
   bayesmlm only, 4 chains x 1000 draws after 1000 tune (goal: under 30 s warm).

Each fit runs in a fresh subprocess, cold (empty Numba and PyTensor caches: everything
compiled in the run) or warm (the caches an earlier run left). Printed: wall seconds
(model building, compilation and sampling), minimum bulk ESS over all parameters, ESS/s,
and bayesmlm's ESS/s over Bambi's.

Measured here (2 cores, load average 1.2-1.6; Bambi 0.21, nutpie both)::

    model     cache tool                   wall s  min ESS    ESS/s   ratio
    poisson   cold  bayesmlm                 10.2     1756    171.7    7.4x
    poisson   cold  bambi                    13.3      309     23.1
    poisson   cold  bayesmlm-lkj             10.2     1833    179.9
    poisson   warm  bayesmlm                  2.7     1756    658.2   26.9x
    poisson   warm  bambi                    12.6      309     24.5
    poisson   warm  bayesmlm-lkj              3.0     1833    609.8
    bernoulli cold  bayesmlm (4 chains)      14.5     1067     73.5
    bernoulli warm  bayesmlm (4 chains)       7.6     1067    141.3

Cold Poisson runs vary 9.5-10.2 s on this VM. The bernoulli model took 22.9 s warm and 29.9 s cold with
nutpie's default regularisation of the low-rank mass matrix, whose updates then cost more than the
sampling (``LOW_RANK_OPTIONS`` in ``bayes/sample.py``).

The Poisson factors have 500 rows per level: ``bm.sample`` samples them centred
(``bayes/centring.py``) with nutpie's low-rank mass matrix, about 14,000 gradient evaluations for
min ESS 1,756-2,192 (three seeds), where the non-centred density needed 121,792 for 360 (and Bambi's, also
non-centred, reaches 309). "Cold" runs start from empty Numba and PyTensor caches, so they
include compiling the kernels this model needs: about 6-7 s here, split between two processes (a helper
compiles the log density while the glmer fit for the centring runs, ``bayes/precompile.py``);
``./dev`` pays it once at install (``bayesmlm warmup``). The gradient itself costs about 85 us
on the Poisson model (5,000 rows, two factors with two varying columns each; 120 us on the 6,500
bernoulli rows), about what
Bambi's compiled PyTensor gradient costs: the ratio comes from the parametrisation and the
mass matrix, not from a faster gradient.

Usage::

    .venv/bin/python benchmarks/families_vs_bambi.py [--skip-bambi] [--draws 1000] [--tune 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

POISSON_SAME = "y ~ x + (x || a) + (x || b)"
POISSON_BAMBI = "y ~ x + (x | a) + (x | b)"  # independent group effects in Bambi
POISSON_LKJ = "y ~ x + (x | a) + (x | b)"
BERNOULLI = "y ~ x + (x | g)"
SHARED = {"Intercept": ("Normal", {"mu": 0.0, "sigma": 2.5}), "x": ("Normal", {"mu": 0.0, "sigma": 2.5}),
          "sd[a][Intercept]": ("HalfNormal", {"sigma": 1.0}), "sd[a][x]": ("HalfNormal", {"sigma": 1.0}),
          "sd[b][Intercept]": ("HalfNormal", {"sigma": 1.0}), "sd[b][x]": ("HalfNormal", {"sigma": 1.0})}


def poisson_data(rows: int = 5000, seed: int = 1):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 10, rows), rng.integers(0, 10, rows)
    x = rng.normal(size=rows)
    ua, ub = rng.normal(0, [0.4, 0.2], (10, 2)), rng.normal(0, [0.3, 0.15], (10, 2))
    eta = 0.5 + 0.3 * x + ua[a, 0] + ua[a, 1] * x + ub[b, 0] + ub[b, 1] * x
    return pd.DataFrame({"a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b], "x": x, "y": rng.poisson(np.exp(eta))})


def bernoulli_data(rows: int = 6500, seed: int = 2):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    g = rng.integers(0, 65, rows)
    x = rng.normal(size=rows)
    L = np.linalg.cholesky(np.array([[1.0, 0.4], [0.4, 1.0]]))
    u = (rng.normal(size=(65, 2)) @ L.T) * [0.7, 0.3]
    eta = -0.5 + 0.6 * x + u[g, 0] + u[g, 1] * x
    return pd.DataFrame({"g": [f"g{i}" for i in g], "x": x, "y": (rng.random(rows) < 1 / (1 + np.exp(-eta))).astype(int)})


def run_one(tool: str, draws: int, tune: int, chains: int) -> dict:
    warnings.simplefilter("ignore")
    import arviz as az

    import bayesmlm as bm

    df = poisson_data() if tool != "bayesmlm-bernoulli" else bernoulli_data()
    start = time.perf_counter()
    if tool.startswith("bayesmlm"):
        if tool == "bayesmlm-bernoulli":
            formula, family = BERNOULLI, "bernoulli"
            spec = bm.priors.default(formula, df, family=family)
        else:
            formula = POISSON_LKJ if tool == "bayesmlm-lkj" else POISSON_SAME
            family = "poisson"
            spec = bm.priors.PriorSpec({k: getattr(bm.priors, f)(**a) for k, (f, a) in SHARED.items()})
            if tool == "bayesmlm-lkj":
                spec["cor[a]"] = bm.priors.LKJ(2.0)
                spec["cor[b]"] = bm.priors.LKJ(2.0)
        post = bm.sample(formula, df, family=family, priors=spec, draws=draws, tune=tune, chains=chains, seed=1,
                         progressbar=False)
        min_ess = post.diagnostics.min_ess_bulk
    else:
        import bambi

        priors = {}
        for key, (family, args) in SHARED.items():
            if key.startswith("sd["):
                factor, column = key[3:-1].split("][")
                priors[f"{'1' if column == 'Intercept' else column}|{factor}"] = bambi.Prior(
                    "Normal", mu=0.0, sigma=bambi.Prior(family, **args))
            else:
                priors[key] = bambi.Prior(family, **args)
        model = bambi.Model(POISSON_BAMBI, df, family="poisson", priors=priors, center_predictors=False)
        idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=1, inference_method="nutpie",
                          progressbar=False)
        ess = az.ess(idata)
        min_ess = min(float(ess[v].min()) for v in ess.data_vars)
    wall = time.perf_counter() - start
    return {"tool": tool, "wall": wall, "min_ess": min_ess, "ess_per_s": min_ess / wall}


def child(tool: str, cold: bool, draws: int, tune: int, chains: int) -> dict:
    env = dict(os.environ)
    if cold:
        env["PYTENSOR_FLAGS"] = f"compiledir={tempfile.mkdtemp(prefix='pytensor-cold-')}"
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cold-")
    cmd = [sys.executable, __file__, "--one", tool, "--draws", str(draws), "--tune", str(tune), "--chains", str(chains)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"tool": tool, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--skip-bambi", action="store_true")
    parser.add_argument("--one", metavar="TOOL", help=argparse.SUPPRESS)
    parser.add_argument("--chains", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.draws, args.tune, args.chains)))
        return
    print(f"load average at start: {os.getloadavg()}")
    header = f"{'model':9s} {'cache':5s} {'tool':20s} {'wall s':>8s} {'min ESS':>8s} {'ESS/s':>8s} {'ratio':>7s}"
    print(header)
    print("-" * len(header))
    for cold in (True, False):
        cache = "cold" if cold else "warm"
        tools = ["bayesmlm"] + ([] if args.skip_bambi else ["bambi"]) + ["bayesmlm-lkj"]
        results = {t: child(t, cold, args.draws, args.tune, 2) for t in tools}
        for tool, r in results.items():
            if "error" in r:
                print(f"{'poisson':9s} {cache:5s} {tool:20s} failed: {r['error']}")
                continue
            ratio = ""
            if tool == "bayesmlm" and "error" not in results.get("bambi", {"error": 1}):
                ratio = f"{r['ess_per_s'] / results['bambi']['ess_per_s']:6.1f}x"
            print(f"{'poisson':9s} {cache:5s} {tool:20s} {r['wall']:8.1f} {r['min_ess']:8.0f} {r['ess_per_s']:8.1f} {ratio:>7s}")
    for cold in (True, False):
        r = child("bayesmlm-bernoulli", cold, args.draws, args.tune, 4)
        cache = "cold" if cold else "warm"
        if "error" in r:
            print(f"{'bernoulli':9s} {cache:5s} {'bayesmlm':20s} failed: {r['error']}")
        else:
            print(f"{'bernoulli':9s} {cache:5s} {'bayesmlm (4 chains)':20s} {r['wall']:8.1f} {r['min_ess']:8.0f} {r['ess_per_s']:8.1f}")
    print(f"load average at end: {os.getloadavg()}")
    print("wall = model building, compilation and sampling (data simulation excluded)")


if __name__ == "__main__":
    main()
