"""Posterior sampling: bayesmlm (collapsed, nutpie) against Bambi (nutpie), side by side.

The same crossed varying-slope model on ``bm.datasets.simulate_retail`` data (10 x 10
groups), the same priors, draws, tune and chains, for 5,000, 100,000 and 1,000,000 rows.

Bambi's ``(Wk | g)`` has *independent* intercepts and slopes (Bambi has no LKJ prior), so
the model both tools fit for the ratio is ``TotSales ~ Wk + (Wk || Description) + (Wk ||
MerGroup)`` in lme4's notation, under one set of explicit priors: Bambi's own defaults for
this data (read from the Bambi model, printed, and handed to both tools). A third row per
size, "bayesmlm-lkj", fits bayesmlm's correlated ``(Wk | g)`` model (LKJ(2) on the
correlations, the same other priors) for information; it has no Bambi counterpart and no ratio.
A fourth, "bayesmlm-full", samples that correlated model with ``method="full"`` (the compiled
non-centred density with the fixed effects integrated out, the path of gaussian models beyond
the collapsed limit), for its cold start.

Each fit runs in a fresh subprocess, cold (empty PyTensor and Numba compile caches) or warm
(the caches a previous run left). Printed per run: wall seconds (compilation included),
minimum bulk ESS over all parameters, ESS per second, and our ESS/s over Bambi's.

Usage::

    .venv/bin/pip install -e ".[bench]"     # Bambi, for benchmarks only
    .venv/bin/python benchmarks/sampler_vs_bambi.py [--rows 5000 100000 1000000] [--bambi-max-rows 5000]
        [--sampler nutpie|numpyro]

Bambi took 430 s at 100,000 rows when measured here, and did not finish 1,000,000 rows in
25 minutes; by default it runs only up to ``--bambi-max-rows``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

FORMULA_BAMBI = "TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)"  # independent effects in Bambi
FORMULA_SAME = "TotSales ~ Wk + (Wk || Description) + (Wk || MerGroup)"  # the same model in lme4 notation
FORMULA_LKJ = "TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)"  # correlated: bayesmlm only
FACTORS = ("Description", "MerGroup")


def bambi_default_priors(df) -> dict[str, tuple[str, dict[str, float]]]:
    """Bambi's default priors for this data, by bayesmlm parameter name: (family, arguments)."""
    import bambi

    model = bambi.Model(FORMULA_BAMBI, df, center_predictors=False)
    mu = model.parameters[model.family.likelihood.parent]
    priors = {"Intercept": ("Normal", mu.intercept_term.prior.args)}
    for name, term in mu.common_terms.items():
        priors[name] = ("Normal", term.prior.args)
    for name, term in mu.group_specific_terms.items():
        column, factor = name.split("|")
        column = "Intercept" if column == "1" else column
        sd_prior = term.prior.args["sigma"]
        priors[f"sd[{factor}][{column}]"] = (sd_prior.name, sd_prior.args)
    sigma = model.parameters["sigma"].prior
    priors["sigma"] = (sigma.name, sigma.args)
    return {k: (family, {a: float(v) for a, v in args.items()}) for k, (family, args) in priors.items()}


def bayesmlm_priors(shared: dict, correlated: bool):
    """The shared priors as a bayesmlm PriorSpec (plus LKJ(2) for the correlated model)."""
    import bayesmlm as bm

    spec = bm.priors.PriorSpec({k: getattr(bm.priors, family)(**args) for k, (family, args) in shared.items()})
    if correlated:
        for factor in FACTORS:
            spec[f"cor[{factor}]"] = bm.priors.LKJ(2.0)
    return spec


def bambi_priors(shared: dict) -> dict:
    """The shared priors in Bambi's terms."""
    import bambi

    out = {}
    for key, (family, args) in shared.items():
        if key.startswith("sd["):
            factor, column = key[3:-1].split("][")
            term = f"{'1' if column == 'Intercept' else column}|{factor}"
            out[term] = bambi.Prior("Normal", mu=0.0, sigma=bambi.Prior(family, **args))
        else:
            out[key] = bambi.Prior(family, **args)
    return out


def run_one(tool: str, rows: int, draws: int, tune: int, chains: int, sampler: str = "nutpie") -> dict:
    """One fit in this process (child mode); prints a JSON line."""
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    import arviz as az

    import bayesmlm as bm

    df = bm.datasets.simulate_retail(rows, seed=1)
    shared = json.loads(os.environ["BENCH_PRIORS"])
    data_ready = time.perf_counter()
    if tool.startswith("bayesmlm"):
        correlated = tool in ("bayesmlm-lkj", "bayesmlm-full")
        formula = FORMULA_LKJ if correlated else FORMULA_SAME
        post = bm.sample(formula, df, priors=bayesmlm_priors(shared, correlated), draws=draws, tune=tune,
                         chains=chains, seed=1, progressbar=False, sampler=sampler,
                         method="full" if tool == "bayesmlm-full" else "auto")
        min_ess = post.diagnostics.min_ess_bulk
        extra = {"method": post.method}
    else:
        import bambi

        model = bambi.Model(FORMULA_BAMBI, df, priors=bambi_priors(shared), center_predictors=False)
        idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=1, inference_method="nutpie", progressbar=False)
        ess = az.ess(idata)
        min_ess = min(float(ess[v].min()) for v in ess.data_vars)
        extra = {}
    wall = time.perf_counter() - data_ready
    return {"tool": tool, "rows": rows, "wall": wall, "min_ess": min_ess, "ess_per_s": min_ess / wall,
            "data_s": data_ready - start, **extra}


def child(tool: str, rows: int, cold: bool, args, shared: dict) -> dict:
    env = dict(os.environ, BENCH_PRIORS=json.dumps(shared))
    if cold:  # empty PyTensor and Numba caches: everything compiled in the run
        env["PYTENSOR_FLAGS"] = f"compiledir={tempfile.mkdtemp(prefix='pytensor-cold-')}"
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cold-")
    cmd = [sys.executable, __file__, "--one", tool, str(rows), "--draws", str(args.draws), "--tune", str(args.tune),
           "--chains", str(args.chains), "--sampler", args.sampler]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"tool": tool, "rows": rows, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="*", default=[5_000, 100_000, 1_000_000])
    parser.add_argument("--bambi-max-rows", type=int, default=5_000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--sampler", default="nutpie", choices=["nutpie", "numpyro", "pymc"], help="bayesmlm's sampler")
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.draws, args.tune, args.chains, args.sampler)))
        return
    try:
        import bambi  # noqa: F401

        have_bambi = True
    except ImportError:
        have_bambi = False
        print("Bambi is not installed (pip install -e '.[bench]'); printing bayesmlm only")
    import bayesmlm as bm

    print(f"{FORMULA_SAME} (Bambi: {FORMULA_BAMBI}); {args.chains} chains x {args.draws} draws after "
          f"{args.tune} tune; bayesmlm sampler {args.sampler}")
    print("bayesmlm-lkj: bayesmlm's correlated model, " + FORMULA_LKJ + ", for information (no Bambi counterpart);"
          " bayesmlm-full: the same with method='full'")
    priors_by_rows = {}
    for rows in args.rows:
        if have_bambi:
            priors_by_rows[rows] = bambi_default_priors(bm.datasets.simulate_retail(rows, seed=1))
        else:  # without Bambi: bayesmlm's data-scaled defaults, so the script still runs
            spec = bm.priors.default(FORMULA_SAME, bm.datasets.simulate_retail(rows, seed=1))
            priors_by_rows[rows] = {k: (d.family, {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}) for k, d in spec.items()}
        print(f"priors for {rows} rows (both tools): "
              + "; ".join(f"{k} ~ {f}({', '.join(f'{a}={v:.4g}' for a, v in p.items())})" for k, (f, p) in priors_by_rows[rows].items()))
    print()
    header = f"{'rows':>9s} {'cache':5s} {'tool':13s} {'wall s':>8s} {'min ESS':>8s} {'ESS/s':>8s} {'ratio':>8s}"
    print(header)
    print("-" * len(header))
    for rows in args.rows:
        for cold in (True, False):
            shared = priors_by_rows[rows]
            results = {"bayesmlm": child("bayesmlm", rows, cold, args, shared)}
            if have_bambi and rows <= args.bambi_max_rows:
                results["bambi"] = child("bambi", rows, cold, args, shared)
            results["bayesmlm-lkj"] = child("bayesmlm-lkj", rows, cold, args, shared)
            results["bayesmlm-full"] = child("bayesmlm-full", rows, cold, args, shared)
            for tool, r in results.items():
                cache = "cold" if cold else "warm"
                if "error" in r:
                    print(f"{rows:9d} {cache:5s} {tool:13s} failed: {r['error']}")
                    continue
                ratio = ""
                if tool == "bayesmlm" and "bambi" in results and "error" not in results["bambi"]:
                    ratio = f"{r['ess_per_s'] / results['bambi']['ess_per_s']:7.1f}x"
                print(f"{rows:9d} {cache:5s} {tool:13s} {r['wall']:8.1f} {r['min_ess']:8.0f} {r['ess_per_s']:8.1f} {ratio:>8s}")
    print("\nwall = model building, compilation and sampling (data simulation excluded);")
    print("ratio = bayesmlm ESS/s over Bambi ESS/s on the same rows and cache state")


if __name__ == "__main__":
    main()
