"""Command-line options shared by the example scripts: where to write, how long to sample."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(main, doc: str, name: str) -> None:
    """Call an example's ``main(out, draws, chains, seed)`` with the command-line options.

    ``--out DIR`` (default ``out/NAME``), ``--draws``, ``--chains``, ``--seed``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out") / name, help="folder for the report and prior file")
    parser.add_argument("--draws", type=int, default=1000, help="posterior draws per chain")
    parser.add_argument("--chains", type=int, default=4, help="number of chains")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    args = parser.parse_args()
    main(args.out, args.draws, args.chains, args.seed)
