"""Pointwise gaussian log-likelihood of every observation under every draw.

Computed from the posterior draws of ``beta``, ``r[F]`` and ``sigma`` with
NumPy, chunk by chunk over draws (the chunks on a few threads), and stored as the ``log_likelihood`` group
(variable ``y``, dims chain, draw, obs) that ArviZ's LOO reads. Doing it here
rather than through ``pm.compute_log_likelihood`` keeps it independent of how
the posterior was sampled (the collapsed sampler has no PyMC ``y``).

Examples
--------
>>> import numpy as np
>>> round(float(normal_logpdf(np.array([0.0]), np.array([0.0]), 1.0)[0]), 4)
-0.9189
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from ..design import Design
from .draws import linear_predictor, stack_chains
from .precompile import usable_cores

__all__ = ["pointwise_loglik", "normal_logpdf"]

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
MAX_LOGLIK_THREADS = 4
"""Most threads for the chunks: each holds a few (chunk draws x rows) temporaries, so more would add
memory faster than speed (on 2 cores, 2 threads take 1.3-1.6x less time than one)."""


def normal_logpdf(y: np.ndarray, mu: np.ndarray, sigma) -> np.ndarray:
    """Elementwise log N(y | mu, sigma)."""
    z = (y - mu) / sigma
    return -0.5 * z * z - np.log(sigma) - _HALF_LOG_2PI


def pointwise_loglik(posterior: xr.Dataset, design: Design, chunk_draws: int = 200) -> xr.Dataset:
    """``log p(y_i | draw)`` for all draws and observations, as a Dataset.

    For a design with a response family (``design.family``) the family's own
    log-likelihood (:meth:`bayesmlm.families.Family.loglik_given`, with all constants)
    at the inverse link of the linear predictor plus offset, times the weights.
    """
    design.require_rows("the pointwise log-likelihood")
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    beta = stack_chains(posterior, "beta")
    fam, glm = design.family, design.glm
    aux_names = ("sigma",) if fam is None else fam.aux_params
    aux = {name: stack_chains(posterior, name) for name in aux_names}
    effects = [stack_chains(posterior, f"r[{b.factor}]") for b in design.blocks]
    out = np.empty((chains * draws, design.n))

    def fill(start: int) -> None:
        s = slice(start, start + chunk_draws)
        mu = linear_predictor(design, beta[s], [r[s] for r in effects])
        if fam is None:
            out[s] = normal_logpdf(design.y[None, :], mu, aux["sigma"][s][:, None])
        else:
            params = {name: value[s][:, None] for name, value in aux.items()}
            mean = fam.link.inverse(mu + glm.offset[None, :])
            out[s] = glm.weights[None, :] * fam.loglik_given(glm.y[None, :], mean, glm.trials[None, :], **params)

    starts = range(0, chains * draws, chunk_draws)
    workers = min(len(starts), usable_cores(), MAX_LOGLIK_THREADS)
    if workers > 1:  # NumPy releases the GIL in these array operations: the chunks run side by side
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, starts))
    else:
        for start in starts:
            fill(start)
    values = out.reshape(chains, draws, design.n)
    return xr.Dataset(
        {"y": (("chain", "draw", "obs"), values)},
        coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values, "obs": np.arange(design.n).astype(str)},
    )
