"""Command line: ``bayesmlm fit``, ``priors``, ``dataset`` and ``demo``.

``fit DATA.csv FORMULA`` prints the lmer summary; with ``--priors`` or
``--report OUT.html`` it also samples the Bayesian model and writes the
report. ``priors DATA.csv FORMULA -o FILE.toml`` writes empirical priors for
review. ``dataset NAME -o FILE.csv`` writes a bundled or simulated example
data set. ``demo`` runs the README's end-to-end example.

User mistakes (unreadable CSV, bad formula, unknown column) end with one clear
line on stderr and exit status 2, never a traceback.

Examples
--------
>>> main(["fit", "--help"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
SystemExit: 0
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from . import datasets
from .errors import BayesMLMError, EmpiricalPriorNote, SingularFitWarning
from .freq import lmer

__all__ = ["main"]

DEMO_FORMULA = "TotSales ~ Wk + (Wk | Description) + (Wk | MerGroup)"


def _read_csv(path: str) -> pd.DataFrame:
    file = Path(path)
    if not file.is_file():
        raise BayesMLMError(f"data file {path!r} does not exist")
    try:
        return pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BayesMLMError(f"cannot read {path!r} as CSV: {exc}") from exc


def _print_fit(fit) -> None:
    print(fit.summary())
    print()


def _cmd_fit_family(args: argparse.Namespace) -> int:
    """``fit --family ...``: the glmer summary; with ``--priors`` or ``--report`` also the Bayesian fit (and report)."""
    from .family_design import sampling_family
    from .freq.glmer import BAYES_ONLY, glmer

    df = _read_csv(args.data)
    fit = None
    if args.family.lower() not in BAYES_ONLY:
        family = sampling_family(args.family)  # the link bm.sample uses (log for the Gamma, not R's inverse)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the summary itself states boundary, convergence and separation problems
            fit = glmer(args.formula, df, family=family.glmer_name, link=family.link.name, na_action=args.na_action)
        _print_fit(fit)
        if args.report is None and args.priors is None:
            return 0
    from .bayes import sample

    priors = args.priors or ("empirical" if fit is not None else "default")
    if priors not in ("empirical", "default") and not Path(priors).is_file():
        raise BayesMLMError(f"prior file {priors!r} does not exist (or use --priors empirical / default)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmpiricalPriorNote)
        post = sample(args.formula, df, priors=priors, family=args.family, draws=args.draws, tune=args.tune,
                      chains=args.chains, seed=args.seed, progressbar=False, na_action=args.na_action, freq=fit)
    print(post.summary())
    if args.report is not None:
        from .report import report

        path = report(post, args.report, freq=fit)
        print(f"\nreport written to {path} (and {path.with_suffix('.md')})")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    if getattr(args, "family", "gaussian") != "gaussian":
        return _cmd_fit_family(args)
    df = _read_csv(args.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary itself states boundary and convergence problems
        fit = lmer(args.formula, df, reml=not args.ml, engine=args.engine, na_action=args.na_action)
    _print_fit(fit)
    if args.report is None and args.priors is None:
        return 0
    from .bayes import sample
    from .report import report

    priors = args.priors or "empirical"
    if priors not in ("empirical", "default") and not Path(priors).is_file():
        raise BayesMLMError(f"prior file {priors!r} does not exist (or use --priors empirical / default)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmpiricalPriorNote)  # stated in the report's priors section
        post = sample(args.formula, df, priors=priors, draws=args.draws, tune=args.tune, chains=args.chains,
                      seed=args.seed, progressbar=False, na_action=args.na_action, freq=fit)
    print(post.summary())
    if args.report is not None:
        path = report(post, args.report, freq=fit)
        print(f"\nreport written to {path} (and {path.with_suffix('.md')})")
    return 0


def _cmd_priors(args: argparse.Namespace) -> int:
    from .priors import empirical

    df = _read_csv(args.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmer(args.formula, df, na_action=args.na_action)
    spec = empirical(fit)
    path = spec.save(args.output)
    print(spec)
    print(f"\nempirical priors written to {path}; review and edit them, then: bayesmlm fit DATA.csv FORMULA --priors {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job: simulated retail data, lmer, empirical priors from an earlier period, report."""
    from .bayes import sample
    from .priors import empirical
    from .report import report

    formula = DEMO_FORMULA
    df = datasets.simulate_retail(4000, n_absent=2, seed=7)
    earlier, later = df[df.Wk < 26], df[df.Wk >= 26]
    print(f"=== {formula}\n    {len(df)} rows of simulated weekly sales (bayesmlm.datasets.simulate_retail)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)  # the printed summary states boundary fits
        fit = lmer(formula, df)
        earlier_fit = lmer(formula, earlier)
    priors = empirical(earlier_fit)  # warns itself when the fit it elicits from did not converge
    _print_fit(fit)
    print(f"=== priors elicited from weeks 0-25 (lmer fit), used for weeks 26-51\n{priors}\n")
    post = sample(formula, later, priors=priors, draws=args.draws, chains=args.chains, seed=1, progressbar=False)
    print(post.summary())
    later_fit = lmer(formula, later)
    path = report(post, args.out, freq=later_fit, title="bayesmlm demo: weekly sales by location and merchandise group")
    print(f"\nreport written to {Path(path).resolve()} (and the Markdown twin beside it)")
    return 0


SIMULATED = {
    "retail": lambda: datasets.simulate_retail(5000, n_absent=2, seed=7),
    "plant_machine": datasets.simulate_plant_machine,
    "cooler": lambda: datasets.simulate_cooler()[0],
}
"""Simulated data sets ``bayesmlm dataset`` writes (default parameters of the simulators)."""


def _cmd_dataset(args: argparse.Namespace) -> int:
    if args.name in SIMULATED:
        df = SIMULATED[args.name]()
    elif args.name in datasets.names():
        df = datasets.load(args.name)
    else:
        known = ", ".join(datasets.names() + sorted(SIMULATED))
        raise BayesMLMError(f"no data set {args.name!r}; available: {known}")
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    print(f"{args.name}: {len(df)} rows, columns {', '.join(df.columns)} written to {path}")
    return 0


def _whole_number(minimum: int):
    """An argparse type: a whole number >= ``minimum`` (the ranges ``bm.sample`` checks, nutpie's for --tune)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayesmlm", description="lme4-style mixed models, frequentist and Bayesian.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit an lme4 formula to a CSV file: lmer summary, and with --report a Bayesian fit and report")
    fit.add_argument("data", help="CSV file with one row per observation")
    fit.add_argument("formula", help='lme4 formula, e.g. "y ~ x + (x | g)"')
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--engine", choices=["auto", "pls", "statsmodels"], default="auto")
    fit.add_argument("--family", choices=["gaussian", "binomial", "bernoulli", "poisson", "Gamma", "negbinomial",
                                          "student", "lognormal"], default="gaussian",
                     help="response family; other than gaussian: the bm.glmer summary (lme4's glmer; not for student "
                          "and lognormal; the Gamma with the log link, as bm.sample), and with --priors or --report the "
                          "Bayesian fit")
    fit.add_argument("--na-action", choices=["error", "drop"], default="error", dest="na_action")
    fit.add_argument("--priors", help="empirical (default), default, or a TOML prior file; implies a Bayesian fit")
    fit.add_argument("--draws", type=_whole_number(1), default=1000, help="posterior draws per chain (default 1000)")
    fit.add_argument("--tune", type=_whole_number(1), default=1000, help="warm-up draws per chain (default 1000)")
    fit.add_argument("--chains", type=_whole_number(1), default=4, help="number of chains (default 4)")
    fit.add_argument("--seed", type=_whole_number(0), default=None, help="random seed, for a reproducible run")
    fit.add_argument("--report", metavar="OUT.html", help="write the posterior report (HTML and Markdown)")
    fit.set_defaults(run=_cmd_fit)
    priors = sub.add_parser("priors", help="write empirical priors from an lmer fit to a TOML file for review")
    priors.add_argument("data", help="CSV file")
    priors.add_argument("formula", help="lme4 formula")
    priors.add_argument("-o", "--output", required=True, metavar="FILE.toml", help="prior file to write")
    priors.add_argument("--na-action", choices=["error", "drop"], default="error", dest="na_action")
    priors.set_defaults(run=_cmd_priors)
    dataset = sub.add_parser("dataset", help="write an example data set (bundled or simulated) as CSV")
    dataset.add_argument("name", help=f"one of {', '.join(datasets.names() + sorted(SIMULATED))}")
    dataset.add_argument("-o", "--output", required=True, metavar="FILE.csv", help="CSV file to write")
    dataset.set_defaults(run=_cmd_dataset)
    demo = sub.add_parser("demo", help="end-to-end example on bundled simulated data; writes a report")
    demo.add_argument("--out", default="bayesmlm-demo/report.html", metavar="OUT.html", help="report path (default %(default)s)")
    demo.add_argument("--draws", type=_whole_number(1), default=1000, help="posterior draws per chain (default 1000)")
    demo.add_argument("--chains", type=_whole_number(1), default=4, help="number of chains (default 4)")
    demo.set_defaults(run=_cmd_demo)
    warm = sub.add_parser("warmup", help="compile the Numba kernels into their disk cache (once per install)")
    warm.set_defaults(run=_cmd_warmup)
    return parser


def _cmd_warmup(args: argparse.Namespace) -> int:
    from .warmup import warm_up

    print(f"bayesmlm: compiled kernels ready in {warm_up():.1f} s (cached on disk; later runs load them)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmlm`` console script."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (BayesMLMError, ValueError, OSError) as exc:
        print(f"bayesmlm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
