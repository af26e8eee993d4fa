"""Posterior draws as NumPy arrays: chains stacked, keys located, correlation factors.

One place for what the accessors, predictions, the log-likelihood, the
collapsed sampler's effect draws and calibration all need.

Examples
--------
>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"sigma": (("chain", "draw"), np.ones((2, 3)))})
>>> stack_chains(ds, "sigma").shape
(6,)
"""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from ..design import Design, FactorBlock
from .dims import col_dim, col_dim_b

__all__ = ["stack_chains", "correlation_factors", "locate", "linear_predictor"]


def stack_chains(posterior: xr.Dataset, var: str) -> np.ndarray:
    """(chains * draws, ...) array of one posterior variable."""
    values = np.asarray(posterior[var])
    return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])  # not -1: beta may be empty


def linear_predictor(design: Design, beta: np.ndarray, effects: list[np.ndarray]) -> np.ndarray:
    """``X beta + Z b`` for the design's rows under each draw: (draws, rows).

    ``beta`` is (draws, p); ``effects`` holds, per block, (draws, levels, columns).
    """
    mu = beta @ design.X.T
    for block, r in zip(design.blocks, effects):
        mu += np.einsum("snk,nk->sn", r[:, block.codes, :], block.values)
    return mu


def correlation_factors(posterior: xr.Dataset, block: FactorBlock) -> np.ndarray:
    """(draws, k, k) Cholesky factor of the block's correlation matrix in every draw.

    The identity when the block has no correlated columns.
    """
    k = block.n_cols
    if f"cor[{block.factor}]" in posterior:
        return np.linalg.cholesky(stack_chains(posterior, f"cor[{block.factor}]") + 1e-12 * np.eye(k))
    draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    return np.broadcast_to(np.eye(k), (draws, k, k))


def locate(design: Design, posterior: xr.Dataset, key: str) -> tuple[str, dict]:
    """Posterior variable and coordinate selection of a shared-vocabulary key.

    Raises KeyError naming the accepted key shapes.
    """
    if key in ("sigma", "nu", "phi", "shape") and key in posterior:
        return key, {}
    if key in design.fixed_names:
        return "beta", {"fixed": key}
    match = re.fullmatch(r"(sd|cor|r)\[([^\]]+)\](?:\[(.+)\])?", key)
    if match:
        kind, factor, inner = match.groups()
        if factor in [b.factor for b in design.blocks]:
            block = design.block(factor)
            if kind == "sd" and inner in block.columns:
                return f"sd[{factor}]", {col_dim(factor): inner}
            if kind == "cor" and f"cor[{factor}]" in posterior:
                if inner:
                    pair = [p.strip() for p in inner.split(",")]
                else:  # cor[F] names the single correlated pair of a factor
                    pair = [block.columns[g[i]] for g in block.groups if len(g) == 2 for i in (0, 1)]
                if len(pair) == 2 and all(p in block.columns for p in pair):
                    return f"cor[{factor}]", {col_dim(factor): pair[0], col_dim_b(factor): pair[1]}
            if kind == "r" and inner and "," in inner:
                level, col = inner.rsplit(",", 1)
                if level in block.levels and col in block.columns:
                    return f"r[{factor}]", {factor: level, col_dim(factor): col}
    raise KeyError(
        f"no parameter {key!r}; use a fixed-effect name ({', '.join(design.fixed_names)}), "
        "sd[factor][column], cor[factor][a,b], r[factor][level,column] or the family's parameter "
        f"({', '.join(v for v in ('sigma', 'nu', 'phi', 'shape') if v in posterior) or 'none in this model'})"
    )
