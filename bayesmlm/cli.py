"""Command line: ``bayesmlm demo`` and ``bayesmlm fit DATA.csv FORMULA``.

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
from .errors import BayesMLMError
from .freq import lmer

__all__ = ["main"]

DEMO_MODELS = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("crossed_slopes", "rt ~ cond + (cond | subj) + (cond | item)"),
]


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


def _cmd_fit(args: argparse.Namespace) -> int:
    df = _read_csv(args.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary itself states boundary and convergence problems
        fit = lmer(args.formula, df, reml=not args.ml, engine=args.engine, na_action=args.na_action)
    _print_fit(fit)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .bayes import sample
    from .priors import empirical

    for name, formula in DEMO_MODELS:
        print(f"=== {name}: {formula}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = lmer(formula, datasets.load(name))
        _print_fit(fit)
    name, formula = DEMO_MODELS[0]
    print(f"=== Bayesian fit of {name} with empirical priors from the lmer fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmer(formula, datasets.load(name))
    post = sample(formula, datasets.load(name), priors=empirical(fit), draws=1000, chains=4, seed=1, progressbar=False)
    print(post.summary())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayesmlm", description="lme4-style mixed models, frequentist and Bayesian.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit an lme4 formula to a CSV file and print the lmer-style summary")
    fit.add_argument("data", help="CSV file with one row per observation")
    fit.add_argument("formula", help='lme4 formula, e.g. "y ~ x + (x | g)"')
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--engine", choices=["auto", "pls", "statsmodels"], default="auto")
    fit.add_argument("--na-action", choices=["error", "drop"], default="error", dest="na_action")
    fit.set_defaults(run=_cmd_fit)
    demo = sub.add_parser("demo", help="fit the bundled example models end to end")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmlm`` console script."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (BayesMLMError, ValueError) as exc:
        print(f"bayesmlm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
