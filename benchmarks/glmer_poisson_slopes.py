"""bm.glmer against lme4 on counts with crossed correlated slopes: ``y ~ x + (x | a) + (x | b)``.

5,000 simulated Poisson rows, 10 x 10 crossed levels (the data of
``benchmarks/families_vs_bambi.py``). bayesmlm: best of ``--repeats`` fits after one warm-up
fit in the same process. lme4 1.1-31: run now when ``Rscript`` with lme4 is on PATH (best of
two fits), else the recorded figure below. Printed side by side with both log-likelihoods.

Recorded on this machine kind (2 cores, another job running): lme4 1.467 s, logLik -7868.0609;
bayesmlm 0.364 s, logLik -7868.0609 (+1.2e-8): 4.0x.

Usage::

    .venv/bin/python benchmarks/glmer_poisson_slopes.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

FORMULA = "y ~ x + (x | a) + (x | b)"
RECORDED_LME4 = {"seconds": 1.467, "loglik": -7868.0609}
R_SCRIPT = """
suppressMessages(library(lme4))
df <- read.csv("{path}")
f <- y ~ x + (x | a) + (x | b)
t1 <- system.time(m <- glmer(f, df, family = poisson))[["elapsed"]]
t2 <- system.time(m <- glmer(f, df, family = poisson))[["elapsed"]]
cat(min(t1, t2), format(as.numeric(logLik(m)), digits = 15), "\\n")
"""


def lme4_now(df) -> tuple[float, float] | None:
    """lme4's best of two fits and its logLik, or None without Rscript and lme4."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "counts.csv"
        df.to_csv(path, index=False)
        out = subprocess.run(["Rscript", "-e", R_SCRIPT.format(path=path)], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    seconds, loglik = out.stdout.split()[:2]
    return float(seconds), float(loglik)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import bayesmlm as bm
    from families_vs_bambi import poisson_data

    df = poisson_data()
    bm.glmer(FORMULA, df, family="poisson")
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        fit = bm.glmer(FORMULA, df, family="poisson")
        best = min(best, time.perf_counter() - start)
    live = lme4_now(df)
    lme4_seconds, lme4_loglik = live if live is not None else (RECORDED_LME4["seconds"], RECORDED_LME4["loglik"])
    source = "run now" if live is not None else "recorded"
    print(f"{'engine':22s} {'seconds':>8s} {'logLik':>14s}")
    print(f"{'lme4 (' + source + ')':22s} {lme4_seconds:8.3f} {lme4_loglik:14.4f}")
    print(f"{'bayesmlm':22s} {best:8.3f} {fit.loglik:14.4f}")
    print(f"bayesmlm is {lme4_seconds / best:.1f}x faster; logLik difference {fit.loglik - lme4_loglik:+.2e}")


if __name__ == "__main__":
    main()
