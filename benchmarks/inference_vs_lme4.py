"""Profile confidence intervals against lme4: seconds, side by side.

Times ``fit.confint(method="profile")`` on the crossed subjects x items model
with correlated slopes on both factors (``rt ~ cond + (cond | subj) + (cond |
item)``, 1,217 rows), the ML refit included as in lme4, and prints it beside
lme4 1.1's ``confint(fit, method = "profile")`` on the same data: run with
``Rscript`` when it is on the PATH, otherwise the stored figure (none is
stored yet, which is said). Also prints the bounds' largest relative
difference from the lme4 oracle and, for context, the Satterthwaite and
Kenward-Roger tables' times.

Usage::

    .venv/bin/python benchmarks/inference_vs_lme4.py [--repeats 3] [--jobs 1]
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import REFERENCE, load_data  # noqa: E402

FORMULA = "rt ~ cond + (cond | subj) + (cond | item)"
ORACLE = REFERENCE / "inference" / "crossed_slopes.json"
STORED_LME4_SECONDS: float | None = None  # lme4's confint(method="profile") time on this machine kind, when measured

R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
d <- read.csv("{csv}")
d$subj <- factor(d$subj); d$item <- factor(d$item)
fit <- lmer({formula}, d)
times <- replicate({repeats}, system.time(confint(fit, method = "profile", oldNames = FALSE))[["elapsed"]])
cat(min(times), "\\n")
"""


def lme4_seconds(repeats: int) -> tuple[float | None, str]:
    if shutil.which("Rscript"):
        with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as f:
            f.write(R_SCRIPT.format(csv=REFERENCE / "data" / "crossed_slopes.csv", formula=FORMULA, repeats=repeats))
        try:
            out = subprocess.run(["Rscript", f.name], capture_output=True, text=True, timeout=3600, check=True)
            return float(out.stdout.split()[-1]), "measured now with Rscript"
        except (subprocess.SubprocessError, ValueError) as exc:
            return None, f"Rscript failed ({exc})"
    if STORED_LME4_SECONDS is not None:
        return STORED_LME4_SECONDS, "stored figure"
    return None, "not available: Rscript is not on the PATH and no stored figure exists"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for the profile (lme4 runs serially)")
    args = parser.parse_args()

    import bayesmlm as bm
    from bayesmlm.freq.inference import profile

    warnings.simplefilter("ignore")
    data = load_data("crossed_slopes")
    oracle = json.loads(ORACLE.read_text())["confint_profile"]
    bm.lmer("Yield ~ 1 + (1 | Batch)", load_data("dyestuff"))  # warm-up: lazy imports

    seconds, cpu, ci = [], [], None
    for _ in range(args.repeats):
        fit = bm.lmer(FORMULA, data)  # a fresh fit: nothing cached, the ML refit timed too
        start, start_cpu = time.perf_counter(), time.process_time()
        ci = profile(fit, n_jobs=args.jobs).confint()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    ours = min(seconds)

    names = {"(Intercept)": "Intercept"}
    worst = 0.0
    for term, lo, hi in zip(oracle["term"], oracle["lower"], oracle["upper"]):
        key = term
        if term.startswith("sd_"):
            col, factor = term[3:].split("|")
            key = f"sd[{factor}][{names.get(col, col)}]"
        elif term.startswith("cor_"):
            cols, factor = term[4:].split("|")
            b, a = cols.split(".", 1)
            key = f"cor[{factor}][{names.get(a, a)},{names.get(b, b)}]"
        else:
            key = names.get(term, term)
        worst = max(worst, abs(ci.loc[key, "lower"] / lo - 1), abs(ci.loc[key, "upper"] / hi - 1))

    fit = bm.lmer(FORMULA, data)
    t0 = time.perf_counter()
    fit.coef_table("satterthwaite")
    t_satt = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit.coef_table("kenward-roger")
    t_kr = time.perf_counter() - t0

    theirs, source = lme4_seconds(args.repeats)
    print(f"profile intervals, {FORMULA} (n = {len(data)}), best of {args.repeats}, {args.jobs} process(es)")
    print(f"  bayesmlm : {ours:8.2f} s   (CPU {min(cpu):.2f} s in this process; largest relative difference from lme4's bounds: {worst:.1e})")
    if theirs is None:
        print(f"  lme4     :      n/a   ({source})")
    else:
        print(f"  lme4     : {theirs:8.2f} s   ({source}); ratio bayesmlm/lme4 = {ours / theirs:.2f}")
    print(f"  Satterthwaite t tests: {t_satt:.2f} s; Kenward-Roger t tests: {t_kr:.2f} s")


if __name__ == "__main__":
    main()
