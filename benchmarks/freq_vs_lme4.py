"""Frequentist fits against lme4: seconds and peak memory, side by side.

Fits every reference case in ``tests/reference/lme4`` with each engine that
can express it, each fit in a fresh subprocess (so peak memory is that fit's
own), and prints our seconds beside lme4 1.1-31's recorded seconds (measured
on this machine kind) with the ratio. statsmodels' MixedLM is skipped on
InstEval unless ``--include-slow`` is given: it ran past 20 minutes and 11 GB.

Usage::

    .venv/bin/python benchmarks/freq_vs_lme4.py [--repeats 3] [--include-slow] [--cases insteval]

Time is the best of ``--repeats`` fits of ``bm.lmer`` (model frame, design and
optimisation included) after one warm-up fit of a small model with the same
engine; peak memory is the subprocess's maximum resident set size, shown with
the resident size after imports so the fit's own share is visible.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import load_data, load_reference, reference_cases  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(case: str, engine: str, repeats: int) -> dict:
    """Fit one case in this process and report timing and memory (child mode)."""
    import bayesmlm as bm

    warnings.simplefilter("ignore")
    ref = load_reference(case)
    data = load_data(ref["data"])
    bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff"), engine=engine)  # warm-up: lazy imports
    base = _rss_mb()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit = bm.lmer(ref["formula"], data, reml=ref["REML"], engine=engine)
        times.append(time.perf_counter() - start)
    return {
        "seconds": min(times),
        "peak_mb": _rss_mb(),
        "base_mb": base,
        "loglik_diff": fit.loglik - ref["loglik"],
    }


def applicable(case: str) -> list[str]:
    from bayesmlm.design import build_design
    from bayesmlm.errors import EngineError
    from bayesmlm.freq.statsmodels_engine import statsmodels_plan

    ref = load_reference(case)
    engines = ["pls"]
    try:
        statsmodels_plan(build_design(ref["formula"], load_data(ref["data"])))
        engines.append("statsmodels")
    except EngineError:
        pass
    return engines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--include-slow", action="store_true", help="also run MixedLM on InstEval")
    parser.add_argument("--cases", nargs="*", help="substrings of case names to run")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, repeats=args.repeats)))
        return
    cases = [c for c in reference_cases() if not args.cases or any(s in c for s in args.cases)]
    header = f"{'case':32s} {'engine':12s} {'seconds':>9s} {'lme4 s':>8s} {'ratio':>7s} {'peak MB':>8s} {'after import':>12s} {'dlogLik':>9s}"
    print(header)
    print("-" * len(header))
    for case in cases:
        ref = load_reference(case)
        for engine in applicable(case):
            if engine == "statsmodels" and case.startswith("insteval") and not args.include_slow:
                print(f"{case:32s} {engine:12s} {'skipped (>20 min, >11 GB when tried; --include-slow)':>40s}")
                continue
            repeats = 1 if case.startswith("insteval") else args.repeats
            out = subprocess.run(
                [sys.executable, __file__, "--one", case, engine, "--repeats", str(repeats)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                print(f"{case:32s} {engine:12s} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = r["seconds"] / ref["seconds"]
            print(
                f"{case:32s} {engine:12s} {r['seconds']:9.3f} {ref['seconds']:8.3f} {ratio:6.2f}x "
                f"{r['peak_mb']:8.0f} {r['base_mb']:12.0f} {r['loglik_diff']:9.1e}"
            )
    print("\nratio = our seconds / lme4's recorded seconds (below 1 is faster than lme4)")


if __name__ == "__main__":
    main()
