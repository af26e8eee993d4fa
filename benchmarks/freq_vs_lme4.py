"""Frequentist fits against lme4 and mixedlm: seconds, peak memory and logLik, side by side.

Cases: every lme4 reference fit in ``tests/reference/lme4`` (lme4 1.1-31's seconds
stored with it), and simulated shapes that stress the PLS engine:

``retail``        ``TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)``, 5,000 rows
``students``      24,578 rows, ``(x | id)`` on 10,732 students (2-3 observations each)
                  crossed with ``(1 | teacher)`` (1,374) and ``(1 | school)`` (80): students
                  mostly with one teacher, teachers within schools, fitted as crossed factors
``two_crossed``   3,435 rows, two crossed intercepts (150 and 20 levels)
``maximal``       kb07-like maximal model: four correlated terms on each of two crossed
                  factors (56 subjects x 32 items, 2x2x2 design, 1,792 rows), 20 theta entries

lme4's seconds for the simulated shapes are stored in ``benchmarks/lme4_simulated.json``
(measured on the same machine kind, with the logLik lme4 reached); ``--lme4 live`` refits
every case in R instead (needs ``Rscript`` with lme4). mixedlm (Rust, ``pip install mixedlm``,
in the ``bench`` extra) runs where installed.

Each engine fits each case in a fresh subprocess, so peak memory (maximum resident set
size) is that fit's own; the resident size after imports and a warm-up fit is shown too.
Time is the best of ``--repeats`` fits (formula to estimates, model frame included; quick
fits are repeated for at least a second, up to 1,000 times, as shared cores make single times
noisy) after one warm-up fit of a small model with the same engine (lazy imports, Numba's
disk cache).

Usage::

    .venv/bin/python benchmarks/freq_vs_lme4.py [--repeats 3] [--big-repeats 1] [--cases insteval students]
        [--lme4 stored|live] [--statsmodels] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import FACTOR_COLUMNS, load_data, load_reference, reference_cases  # noqa: E402

STORED_SIMULATED = Path(__file__).with_name("lme4_simulated.json")


# -- simulated shapes -------------------------------------------------------------------------
def simulate_students(seed: int = 1, n_students: int = 10_732, n_teachers: int = 1_374, n_schools: int = 80,
                      n_rows: int = 24_578, move: float = 0.1) -> pd.DataFrame:
    """Students observed in 2-3 consecutive years (``x`` = 0, 1, 2), a new teacher each year.

    Teachers belong to schools (about 17 each); each year's teacher is drawn from the
    student's school, and a fraction ``move`` of students change school between years,
    so teachers connect across schools. ``y = 10 + 0.5 x + a_id + b_id x + t_teacher +
    s_school + e``.
    """
    rng = np.random.default_rng(seed)
    n_obs = np.full(n_students, 2)
    n_obs[rng.choice(n_students, n_rows - 2 * n_students, replace=False)] += 1
    student = np.repeat(np.arange(n_students), n_obs)
    x = np.concatenate([np.arange(k) for k in n_obs])
    teacher_school = rng.integers(0, n_schools, n_teachers)
    by_school = [np.flatnonzero(teacher_school == s) for s in range(n_schools)]
    school_now = rng.integers(0, n_schools, n_students)
    school = np.empty(len(student), dtype=int)
    teacher = np.empty(len(student), dtype=int)
    for i, (sid, year) in enumerate(zip(student, x)):
        if year > 0 and rng.random() < move:
            school_now[sid] = rng.integers(n_schools)
        peers = by_school[school_now[sid]]
        teacher[i] = peers[rng.integers(len(peers))]
        school[i] = school_now[sid]
    x = x.astype(float)
    a, b = rng.normal(0, 1.0, n_students), rng.normal(0, 0.3, n_students)
    t, s = rng.normal(0, 0.5, n_teachers), rng.normal(0, 0.4, n_schools)
    y = 10 + 0.5 * x + a[student] + b[student] * x + t[teacher] + s[school] + rng.normal(0, 0.8, len(student))
    return pd.DataFrame({"y": y, "x": x, "id": student.astype(str), "teacher": teacher.astype(str),
                         "school": school.astype(str)})


def simulate_two_crossed(seed: int = 1, n: int = 3_435, n1: int = 150, n2: int = 20) -> pd.DataFrame:
    """Two crossed random intercepts and one covariate."""
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, n1, n), rng.integers(0, n2, n)
    x = rng.normal(size=n)
    y = 2 + 0.3 * x + rng.normal(0, 1, n1)[g1] + rng.normal(0, 0.5, n2)[g2] + rng.normal(0, 1, n)
    return pd.DataFrame({"y": y, "x": x, "g1": g1.astype(str), "g2": g2.astype(str)})


def simulate_maximal(seed: int = 1, n_subj: int = 56, n_item: int = 32) -> pd.DataFrame:
    """kb07-like: every subject sees every item once, 2x2x2 within-subject and within-item design.

    Factors ``spkr``, ``prec``, ``load`` are coded -0.5/0.5; subjects and items have
    correlated (rho 0.3 and 0.2) intercepts and slopes for all three.
    """
    rng = np.random.default_rng(seed)
    subj, item = np.repeat(np.arange(n_subj), n_item), np.tile(np.arange(n_item), n_subj)
    cond = (subj + item) % 8
    spkr, prec, load = (np.where(cond & bit, 0.5, -0.5) for bit in (1, 2, 4))

    def effects(n, sds, rho):
        C = np.full((4, 4), rho)
        np.fill_diagonal(C, 1.0)
        return rng.multivariate_normal(np.zeros(4), np.diag(sds) @ C @ np.diag(sds), n)

    rs, ri = effects(n_subj, [300, 60, 80, 40], 0.3), effects(n_item, [350, 50, 200, 30], 0.2)
    X = np.column_stack([np.ones_like(spkr), spkr, prec, load])
    y = 2200 + 70 * spkr - 330 * prec + 80 * load + (X * rs[subj]).sum(1) + (X * ri[item]).sum(1)
    y = y + rng.normal(0, 650, len(y))
    return pd.DataFrame({"rt": y, "spkr": spkr, "prec": prec, "load": load, "subj": subj.astype(str),
                         "item": item.astype(str)})


def simulate_retail() -> pd.DataFrame:
    import bayesmlm as bm

    return bm.datasets.simulate_retail(5000)


SIMULATED = {
    "retail": (simulate_retail, "TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)", ["Description", "MerGroup"]),
    "students": (simulate_students, "y ~ x + (x | id) + (1 | teacher) + (1 | school)", ["id", "teacher", "school"]),
    "two_crossed": (simulate_two_crossed, "y ~ x + (1 | g1) + (1 | g2)", ["g1", "g2"]),
    "maximal": (simulate_maximal,
                "rt ~ spkr * prec * load + (1 + spkr + prec + load | subj) + (1 + spkr + prec + load | item)",
                ["subj", "item"]),
}


def case_spec(case: str) -> tuple[pd.DataFrame, str, bool, list[str]]:
    """Data, formula, REML and factor columns of a case."""
    if case in SIMULATED:
        make, formula, factors = SIMULATED[case]
        return make(), formula, True, factors
    ref = load_reference(case)
    return load_data(ref["data"]), ref["formula"], ref["REML"], FACTOR_COLUMNS.get(ref["data"], [])


def all_cases() -> list[str]:
    return reference_cases() + list(SIMULATED)


# -- one fit per subprocess ---------------------------------------------------------------------
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _fitter(engine: str, baseline: str | None = None):
    if engine == "baseline":  # another copy of the package (e.g. before a change), same pipeline
        sys.path.insert(0, str(baseline))
        for name in [m for m in sys.modules if m == "bayesmlm" or m.startswith("bayesmlm.")]:
            del sys.modules[name]
        engine = "bayesmlm"
    if engine == "mixedlm":
        import mixedlm

        def fit(formula, data, reml):
            res = mixedlm.lmer(formula, data, REML=reml)
            return float(res.logLik().value), bool(getattr(res, "converged", True))

        return fit
    import bayesmlm as bm

    def fit(formula, data, reml):
        res = bm.lmer(formula, data, reml=reml, engine="statsmodels" if engine == "statsmodels" else "pls")
        return float(res.loglik), bool(res.converged)

    return fit


def run_one(case: str, engine: str, repeats: int, baseline: str | None = None) -> dict:
    """Fit one case in this process and report timing, memory and logLik (child mode)."""
    warnings.simplefilter("ignore")
    fit = _fitter(engine, baseline)
    data, formula, reml, _ = case_spec(case)
    fit("Yield ~ 1 + (1 | Batch)", load_data("dyestuff"), True)  # warm-up: imports, compiled kernels
    base = _rss_mb()
    times = []
    while len(times) < repeats or (sum(times) < 1.0 and len(times) < 1000):  # quick fits: a second's worth
        start = time.perf_counter()
        loglik, converged = fit(formula, data, reml)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_mb": _rss_mb(), "base_mb": base, "loglik": loglik, "converged": converged}


# -- lme4 ---------------------------------------------------------------------------------------
_R_TEMPLATE = """
suppressMessages(library(lme4))
d <- read.csv("{csv}", stringsAsFactors = FALSE)
for (f in c({factors})) d[[f]] <- factor(d[[f]])
fit <- function() lmer({formula}, d, REML = {reml})
invisible(fit())
best <- Inf
for (i in seq_len({repeats})) {{ t <- system.time(m <- fit())[["elapsed"]]; best <- min(best, t) }}
cat(sprintf('{{"seconds": %.6f, "loglik": %.6f}}\\n', best, as.numeric(logLik(m))))
"""


def run_lme4(case: str, repeats: int) -> dict | None:
    """Fit a case with lme4 in R (best of ``repeats`` after a warm-up); None without Rscript."""
    if shutil.which("Rscript") is None:
        return None
    data, formula, reml, factors = case_spec(case)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "data.csv"
        data.to_csv(csv, index=False)
        script = _R_TEMPLATE.format(csv=csv, factors=", ".join(f'"{f}"' for f in factors), formula=formula,
                                    reml="TRUE" if reml else "FALSE", repeats=repeats)
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def stored_lme4(case: str) -> dict | None:
    if case in SIMULATED:
        stored = json.loads(STORED_SIMULATED.read_text()) if STORED_SIMULATED.exists() else {}
        return stored.get(case)  # "_about" describes the measurement
    ref = load_reference(case)
    return {"seconds": ref["seconds"], "loglik": ref["loglik"]}


# -- the table ----------------------------------------------------------------------------------
def _child(case: str, engine: str, repeats: int, baseline: str | None = None) -> dict | str:
    extra = ["--baseline", str(baseline)] if baseline else []
    out = subprocess.run(
        [sys.executable, __file__, "--one", case, engine, "--repeats", str(repeats), *extra],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return f"failed: {lines[-1] if lines else out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-repeats", type=int, default=1, help="repeats for InstEval")
    parser.add_argument("--cases", nargs="*", help="substrings of case names to run")
    parser.add_argument("--lme4", choices=["stored", "live"], default="stored")
    parser.add_argument("--statsmodels", action="store_true", help="also time the statsmodels engine (slow)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also time the bayesmlm package found in DIR (e.g. a copy from before a change)")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, repeats=args.repeats, baseline=args.baseline)))
        return
    cases = [c for c in all_cases() if not args.cases or any(s in c for s in args.cases)]
    engines = (["bayesmlm"] + (["baseline"] if args.baseline else []) + (["mixedlm"] if _have("mixedlm") else [])
               + (["statsmodels"] if args.statsmodels else []))
    others = ["lme4"] + [e for e in engines if e != "bayesmlm" and e != "statsmodels"]
    header = (f"{'case':28s} {'lme4 s':>8s} " + " ".join(f"{e + ' s':>13s}" for e in engines) + " "
              + " ".join(f"{'vs ' + o:>12s}" for o in others) + " "
              + " ".join(f"{e[:8] + ' MB':>11s}" for e in engines) + f" {'bayesmlm logLik':>17s} {'dlogLik':>9s}")
    print(header)
    print("-" * len(header))
    for case in cases:
        big = case.startswith("insteval")
        repeats = args.big_repeats if big else args.repeats
        lme4 = run_lme4(case, repeats) if args.lme4 == "live" else stored_lme4(case)
        res = {}
        for engine in engines:
            if engine == "statsmodels" and (big or case in SIMULATED):
                res[engine] = "skipped"
                continue
            res[engine] = _child(case, engine, repeats, args.baseline)
        res["lme4"] = lme4 if lme4 else "n/a"
        ours = res["bayesmlm"]
        rows = [res[e] for e in engines]
        cells = [f"{r['seconds']:13.4f}" if isinstance(r, dict) else f"{r[:13]:>13s}" for r in rows]
        mems = [f"{r['peak_mb']:11.0f}" if isinstance(r, dict) else f"{'':>11s}" for r in rows]
        ratios = []
        for o in others:
            if isinstance(ours, dict) and isinstance(res.get(o), dict):
                ratios.append(f"{ours['seconds'] / res[o]['seconds']:11.2f}x")
            else:
                ratios.append(f"{'':>12s}")
        lme4_s = f"{lme4['seconds']:8.4f}" if lme4 else f"{'n/a':>8s}"
        ll = f"{ours['loglik']:17.4f}" if isinstance(ours, dict) else f"{'':>17s}"
        best = [r["loglik"] for r in res.values() if isinstance(r, dict)]
        dll = f"{ours['loglik'] - max(best):9.1e}" if isinstance(ours, dict) else ""
        print(f"{case:28s} {lme4_s} " + " ".join(cells) + " " + " ".join(ratios) + " " + " ".join(mems)
              + f" {ll} {dll}", flush=True)
    print(
        "\nseconds: best of --repeats fits (--big-repeats for InstEval; quick fits repeated for a second) in a fresh "
        "process after a warm-up fit; "
        "vs X: bayesmlm's seconds over X's (below 1: bayesmlm faster); MB: peak "
        "resident memory of the fitting process (imports included); dlogLik: bayesmlm's logLik minus "
        "the best logLik of lme4 and the other engines (0 or above: bayesmlm reached the best optimum)."
    )


if __name__ == "__main__":
    main()
