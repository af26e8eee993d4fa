"""Build the PyMC model of a gaussian linear mixed model from a design and priors.

Non-centred: for each grouping factor ``F`` with columns ``c``, standard-normal
``z[F]`` (levels x columns) become ``r[F] = (z L') * sd`` where ``L`` is the
Cholesky factor of the correlation matrix: an ``LKJCorr`` factor for each
correlated group of columns, the identity between ``||`` columns. Each SD has
its own prior. Crossed and nested factors simply add their terms to the mean.

Posterior variables (dims in brackets) share the prior vocabulary:
``beta`` (fixed), ``sd[F]`` (F__col), ``cor[F]`` (F__col, F__col_b),
``r[F]`` (F, F__col), ``sigma``.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> d = build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> model = build_model(d, bm.priors.default(d.formula.text, d.data))
>>> sorted(v.name for v in model.free_RVs)
['beta', 'chol_cor[Subject]', 'sd[Subject]', 'sigma', 'z[Subject]']
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..design import Design, FactorBlock
from ..priors.distributions import Distribution
from .dims import col_dim, col_dim_b
from ..priors.spec import PriorSpec, correlation_key

__all__ = ["build_model", "family_likelihood", "model_coords", "col_dim", "col_dim_b", "block_scale", "vector_rv", "sigma_rv"]


def model_coords(design: Design) -> dict[str, list[str]]:
    """Named coordinates: fixed effects, each factor's levels and columns, observations."""
    coords: dict[str, list[str]] = {"fixed": list(design.fixed_names), "obs": list(map(str, range(design.n)))}
    for block in design.blocks:
        coords[block.factor] = list(block.levels)
        coords[col_dim(block.factor)] = list(block.columns)
        coords[col_dim_b(block.factor)] = list(block.columns)
    return coords


def vector_rv(name: str, dists: list[Distribution], dims: str):
    """One vector random variable whose elements have their own priors.

    Elements of one family share a PyMC distribution with parameter arrays;
    mixed families become scalar variables stacked by a Deterministic.
    """
    families = {d.family for d in dists}
    if len(families) == 1:
        params = {k: np.array([d.params()[k] for d in dists]) for k in dists[0].params()}
        return dists[0].pymc_class()(name, **params, dims=dims)
    parts = [d.pymc_class()(f"{name}__{i}", **d.params()) for i, d in enumerate(dists)]
    return pm.Deterministic(name, pt.stack(parts), dims=dims)


def block_scale(block: FactorBlock, priors: PriorSpec):
    """SDs and correlation Cholesky factor of one factor's effects.

    Returns ``(sd, L)``: the vector of SDs (one per column, each with its own
    prior) and the lower-triangular ``L`` with ``L L'`` the correlation matrix
    (LKJ factors on correlated groups, identity between ``||`` columns). The
    Cholesky factor of the effects' covariance is ``diag(sd) L``. Registers
    ``sd[F]`` and, when there are correlations, ``cor[F]``.
    """
    F, k = block.factor, block.n_cols
    sd = vector_rv(f"sd[{F}]", [priors[f"sd[{F}][{c}]"] for c in block.columns], dims=col_dim(F))
    L = pt.eye(k)
    multi = [g for g in block.groups if len(g) > 1]
    for group in multi:
        cols = tuple(block.columns[i] for i in group)
        key = correlation_key(F, cols, len(multi))
        suffix = "" if len(multi) == 1 else f"[{','.join(cols)}]"
        chol = pm.LKJCorr(f"chol_cor[{F}]{suffix}", n=len(group), eta=priors[key].eta)
        idx = np.array(group)
        L = pt.set_subtensor(L[idx[:, None], idx[None, :]], chol)
    if multi:
        pm.Deterministic(f"cor[{F}]", L @ L.T, dims=(col_dim(F), col_dim_b(F)))
    return sd, L


def _block_effects(block: FactorBlock, priors: PriorSpec):
    """Random effects of one factor, non-centred; returns r[F] (levels x columns)."""
    sd, L = block_scale(block, priors)
    z = pm.Normal(f"z[{block.factor}]", 0.0, 1.0, dims=(block.factor, col_dim(block.factor)))
    return pm.Deterministic(f"r[{block.factor}]", pt.dot(z, L.T) * sd, dims=(block.factor, col_dim(block.factor)))


def sigma_rv(priors: PriorSpec):
    """The residual SD with its prior."""
    return priors["sigma"].pymc_class()("sigma", **priors["sigma"].params())


def build_model(design: Design, priors: PriorSpec) -> pm.Model:
    """The non-centred hierarchical PyMC model (see module docstring).

    Parameters
    ----------
    design : Design
    priors : PriorSpec
        Must hold exactly the model's parameters (checked).
    """
    design.require_rows("method='full'")
    priors.check(design)
    with pm.Model(coords=model_coords(design)) as model:
        beta = vector_rv("beta", [priors[name] for name in design.fixed_names], dims="fixed")
        mu = pt.dot(design.X, beta)
        for block in design.blocks:
            r = _block_effects(block, priors)
            mu = mu + (block.values * r[block.codes]).sum(axis=1)
        if design.family is None:
            sigma = sigma_rv(priors)
            pm.Normal("y", mu=mu, sigma=sigma, observed=design.y, dims="obs")
        else:
            family_likelihood(design, priors, mu)
    return model


def _positive_rv(name: str, priors: PriorSpec):
    return priors[name].pymc_class()(name, **priors[name].params())


def family_likelihood(design: Design, priors: PriorSpec, eta) -> None:
    """The response's likelihood for ``design.family`` given the linear predictor (offset added here).

    Registers the family's parameters (``sigma``, ``nu``, ``phi``, ``shape``) with their priors.
    With weights other than 1 the likelihood is a ``pm.Potential`` of the weighted
    log-likelihood (``y`` is then not an observed variable).
    """
    fam, glm = design.family, design.glm
    eta = eta + glm.offset
    aux = {name: _positive_rv(name, priors) for name in fam.aux_params}
    link = fam.link.name
    inv = {"logit": pm.math.invlogit, "log": pt.exp, "identity": lambda e: e, "probit": lambda e: 0.5 * pt.erfc(-e / np.sqrt(2.0)),
           "cloglog": lambda e: 1.0 - pt.exp(-pt.exp(e)), "inverse": lambda e: 1.0 / e, "sqrt": pt.sqr}[link]
    name = fam.name
    if name == "binomial":
        cls, kw, observed = pm.Binomial, ({"n": glm.trials, "logit_p": eta} if link == "logit"
                                          else {"n": glm.trials, "p": inv(eta)}), glm.successes
    elif name == "poisson":
        cls, kw, observed = pm.Poisson, {"mu": inv(eta)}, glm.y
    elif name == "negative_binomial":
        cls, kw, observed = pm.NegativeBinomial, {"mu": inv(eta), "alpha": aux["phi"]}, glm.y
    elif name == "Gamma":
        cls, kw, observed = pm.Gamma, {"alpha": aux["shape"], "beta": aux["shape"] / inv(eta)}, glm.y
    elif name == "lognormal":
        cls, kw, observed = pm.LogNormal, {"mu": eta, "sigma": aux["sigma"]}, glm.y
    elif name == "student":
        cls, kw, observed = pm.StudentT, {"nu": aux["nu"], "mu": eta, "sigma": aux["sigma"]}, glm.y
    elif name == "gaussian":
        cls, kw, observed = pm.Normal, {"mu": inv(eta), "sigma": aux["sigma"]}, glm.y
    else:  # pragma: no cover - families are checked before
        raise NotImplementedError(f"no PyMC likelihood for the {name} family")
    if np.all(glm.weights == 1.0):
        cls("y", **kw, observed=observed, dims="obs")
    else:
        pm.Potential("y_weighted", (glm.weights * pm.logp(cls.dist(**kw), observed)).sum())
