"""bm.glmer against lme4's glmer: seconds side by side, with parity on each reference case.

Fits every case in ``tests/reference/glmer`` (cbpp binomial by Laplace and by 25-point
adaptive Gauss-Hermite quadrature, grouseticks Poisson with three factors, VerbAgg binomial
with 316 persons crossed with 24 items, and the negative binomial, Gamma and correlated-slope
cases made by ``tests/reference/glmer/make_extra_cases.R``) in a fresh subprocess and prints:

- ``first``: the first fit in a new Python process after ``import bayesmlm`` (includes loading
  the Numba kernels from their on-disk cache, about 0.5-1 s once per process);
- ``best``: the best of ``--repeats`` further fits (model frame, design, both optimisation
  stages, the finite-difference Hessian and the separation check included);
- lme4 1.1-31's recorded seconds (``seconds`` in the JSON) and the ratio lme4 / best;
- parity: log-likelihood difference and the largest fixed-effect and SE differences in units
  of lme4's SE.

When ``Rscript`` is on PATH (with lme4 installed) each case is also timed in R now, on this
machine, and that time is printed beside the recorded one.

Usage::

    .venv/bin/python benchmarks/glmer_vs_lme4.py [--repeats 5] [--cases verbagg_crossed]

Timings on a shared machine are noisy: compare ratios from one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_glmer_reference import CASES, load_glmer_case  # noqa: E402


def run_one(case: str, repeats: int) -> dict:
    """Fit one case in this process (child mode)."""
    import numpy as np

    start = time.perf_counter()
    import bayesmlm as bm

    imported = time.perf_counter() - start
    warnings.simplefilter("ignore")
    ref, data = load_glmer_case(case)
    start = time.perf_counter()
    fit = bm.glmer(ref["formula"], data, family=ref["family"], link=ref.get("link"), nAGQ=ref["nAGQ"])
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit = bm.glmer(ref["formula"], data, family=ref["family"], link=ref.get("link"), nAGQ=ref["nAGQ"])
        times.append(time.perf_counter() - start)
    names = {k: ("Intercept" if k == "(Intercept)" else k) for k in ref["fixef"]}
    se = np.array([ref["se"][k] for k in names])
    beta = np.array([ref["fixef"][k] for k in names])
    return {
        "import": imported,
        "first": first,
        "best": min(times),
        "loglik_diff": fit.loglik - ref["loglik"],
        "fixef_over_se": float(np.max(np.abs(fit.fixef()[list(names.values())].to_numpy() - beta) / se)),
        "se_over_se": float(np.max(np.abs(fit.se()[list(names.values())].to_numpy() - se) / se)),
        "evaluations": fit.estimates.evaluations,
    }


R_SCRIPT = """
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
d <- read.csv(args[1], stringsAsFactors = TRUE)
for (f in strsplit(args[4], ",")[[1]]) if (f %in% names(d)) d[[f]] <- factor(d[[f]])
form <- as.formula(args[2])
fit1 <- if (args[3] == "negbinomial") {
  function() glmer.nb(form, data = d)
} else {
  fam <- if (args[6] == "default") get(args[3])() else get(args[3])(link = args[6])
  function() glmer(form, data = d, family = fam, nAGQ = as.integer(args[5]))
}
invisible(suppressWarnings(fit1()))
t <- min(replicate(3, system.time(suppressWarnings(fit1()))[["elapsed"]]))
cat(t, "\\n")
"""


def run_r(case: str) -> float | None:
    """lme4's time on this machine, when R and lme4 are available."""
    if shutil.which("Rscript") is None:
        return None
    from tests.test_glmer_reference import GLMER_FACTORS, REFERENCE

    ref, _ = load_glmer_case(case)
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_SCRIPT)
    data = REFERENCE / "data" / f"{ref['data']}.csv"
    out = subprocess.run(
        ["Rscript", fh.name, str(data), ref["formula"], ref["family"], ",".join(GLMER_FACTORS[ref["data"]]), str(ref["nAGQ"]),
         ref.get("link") or "default"],
        capture_output=True, text=True, check=False,
    )
    try:
        return float(out.stdout.split()[-1])
    except (IndexError, ValueError):
        print(f"  (R failed for {case}: {out.stderr.strip()[-200:]})")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", default=CASES)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.repeats)))
        return
    header = f"{'case':22s} {'first s':>8s} {'best s':>8s} {'lme4 s':>8s} {'R now':>7s} {'ratio':>6s}  {'dlogLik':>9s} {'dfixef/SE':>9s} {'dSE/SE':>8s}"
    print(header)
    print("-" * len(header))
    for case in args.cases:
        ref, _ = load_glmer_case(case)
        out = subprocess.run([sys.executable, __file__, "--child", case, "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        r_now = run_r(case)
        lme4 = r_now if r_now is not None else ref["seconds"]
        print(
            f"{case:22s} {res['first']:8.3f} {res['best']:8.3f} {ref['seconds']:8.3f} "
            f"{(f'{r_now:.3f}' if r_now is not None else '-'):>7s} {lme4 / res['best']:5.1f}x  "
            f"{res['loglik_diff']:9.2e} {res['fixef_over_se']:9.2e} {res['se_over_se']:8.2e}"
        )
    print("\nratio = lme4 seconds (measured now when R is available, else recorded) / bayesmlm best; "
          "first = first fit in a fresh process (Numba kernels loaded from cache).")


if __name__ == "__main__":
    main()
