"""Posterior sampling: bayesmlm (collapsed, nutpie) against Bambi (nutpie), side by side.

The same crossed varying-slope model, ``TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)``
on ``bm.datasets.simulate_retail`` data (10 x 10 groups), the same draws, tune and chains,
for 5,000, 100,000 and 1,000,000 rows. Each fit runs in a fresh subprocess, cold (empty
PyTensor and Numba compile caches) or warm (the caches a previous run left). Printed per run: wall
seconds (compilation included), minimum bulk ESS over all parameters, ESS per second, and
our ESS/s over Bambi's. Bambi's group effects are independent (it has no LKJ), ours
correlated; both report every parameter's ESS.

Usage::

    .venv/bin/pip install -e ".[bench]"     # Bambi, for benchmarks only
    .venv/bin/python benchmarks/sampler_vs_bambi.py [--rows 5000 100000 1000000] [--bambi-max-rows 5000]
        [--sampler nutpie|numpyro]

Bambi took 430 s at 100,000 rows when measured here, and did not finish 1,000,000 rows in
25 minutes; by default it runs only up to ``--bambi-max-rows``.
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

FORMULA = "TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)"


def run_one(tool: str, rows: int, draws: int, tune: int, chains: int, sampler: str = "nutpie") -> dict:
    """One fit in this process (child mode); prints a JSON line."""
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    import arviz as az

    import bayesmlm as bm

    df = bm.datasets.simulate_retail(rows, seed=1)
    data_ready = time.perf_counter()
    if tool == "bayesmlm":
        post = bm.sample(FORMULA, df, draws=draws, tune=tune, chains=chains, seed=1, progressbar=False, sampler=sampler)
        min_ess = post.diagnostics.min_ess_bulk
        extra = {"method": post.method}
    else:
        import bambi

        model = bambi.Model(FORMULA, df)
        idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=1, inference_method="nutpie", progressbar=False)
        ess = az.ess(idata)
        min_ess = min(float(ess[v].min()) for v in ess.data_vars)
        extra = {}
    wall = time.perf_counter() - data_ready
    return {"tool": tool, "rows": rows, "wall": wall, "min_ess": min_ess, "ess_per_s": min_ess / wall,
            "data_s": data_ready - start, **extra}


def child(tool: str, rows: int, cold: bool, args) -> dict:
    env = dict(os.environ)
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
    print(f"{FORMULA}; {args.chains} chains x {args.draws} draws after {args.tune} tune; bayesmlm sampler {args.sampler}\n")
    header = f"{'rows':>9s} {'cache':5s} {'tool':9s} {'wall s':>8s} {'min ESS':>8s} {'ESS/s':>8s} {'ratio':>8s}"
    print(header)
    print("-" * len(header))
    for rows in args.rows:
        for cold in (True, False):
            results = {"bayesmlm": child("bayesmlm", rows, cold, args)}
            if have_bambi and rows <= args.bambi_max_rows:
                results["bambi"] = child("bambi", rows, cold, args)
            for tool, r in results.items():
                cache = "cold" if cold else "warm"
                if "error" in r:
                    print(f"{rows:9d} {cache:5s} {tool:9s} failed: {r['error']}")
                    continue
                ratio = ""
                if tool == "bayesmlm" and "bambi" in results and "error" not in results["bambi"]:
                    ratio = f"{r['ess_per_s'] / results['bambi']['ess_per_s']:7.1f}x"
                print(f"{rows:9d} {cache:5s} {tool:9s} {r['wall']:8.1f} {r['min_ess']:8.0f} {r['ess_per_s']:8.1f} {ratio:>8s}")
    print("\nwall = model building, compilation and sampling (data simulation excluded);")
    print("ratio = bayesmlm ESS/s over Bambi ESS/s on the same rows and cache state")


if __name__ == "__main__":
    main()
