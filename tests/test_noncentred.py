"""The compiled non-centred density (bayesmlm/bayes/noncentred.py) against the PyMC model (bayes/build.py).

As in test_native.py: the compiled density uses its own unconstrained parameters, so it is
compared with the PyMC model on the constrained scale. At random points, the compiled log
density minus its log Jacobian (log transforms: the log values themselves; the correlation
factor: by finite differences, independently of the code under test) must differ from PyMC's
``logp(jacobian=False)`` by the same constant everywhere. Gradients are checked against
central differences. One kernel serves every family, so the models below together cover
every family and link pair that ``bm.sample`` uses by default.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.bayes.build import build_model
from bayesmlm.bayes.noncentred import NativeNonCentred, noncentred_supports
from bayesmlm.family_design import family_design
from bayesmlm.priors.distributions import Exponential, Gamma, HalfNormal, HalfStudentT, LogNormal, StudentT


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({"g": rng.integers(0, 6, n).astype(str), "h": rng.integers(0, 4, n).astype(str),
                       "x1": rng.normal(size=n), "x2": rng.normal(size=n), "size": rng.integers(1, 9, n),
                       "expo": rng.uniform(0.5, 2.0, n), "w": rng.uniform(0.5, 1.5, n)})
    eta = 0.3 + 0.5 * df.x1
    df["count"] = rng.poisson(np.exp(eta) * df.expo)
    df["succ"] = rng.binomial(df["size"], 1 / (1 + np.exp(-eta)))
    df["yes"] = rng.random(n) < 1 / (1 + np.exp(-eta))
    df["pos"] = np.exp(eta + 0.3 * rng.normal(size=n))
    df["cont"] = eta + rng.standard_t(4, n)
    return df


CASES = [
    ("succ ~ x1 + (x1 | g) + (1 | h)", "binomial", {"trials": "size"}),
    ("yes ~ x1 + x2 + (x1 + x2 | g)", "bernoulli", {}),
    ("count ~ x1 + offset(log(expo)) + (x1 || g) + (1 | h)", "poisson", {}),
    ("count ~ x1 + (x1 | g)", "negbinomial", {"weights": "w"}),
    ("pos ~ x1 + (x1 | g)", "gamma", {}),
    ("pos ~ x1 + (1 | g) + (1 | h)", "lognormal", {}),
    ("cont ~ x1 + (x1 | g)", "student", {}),
    ("succ ~ x1 + (1 | g)", "binomial", {"trials": "size", "link": "probit"}),
]


def varied_priors(design):
    """Default priors with every positive prior family the compiled density knows, and a StudentT slope."""
    spec = bm.priors.default_for_design(design)
    positive = [k for k in spec if k.startswith("sd[")] + list(bm.priors.spec.family_parameters(design))
    families = [HalfStudentT(4, 1.5), Gamma(2, 1.5), LogNormal(0.2, 0.8), Exponential(0.7), HalfNormal(2.0)]
    for key, dist in zip(positive, families * 3):
        spec[key] = dist
    spec["x1"] = StudentT(5, 0.2, 2.0)
    return spec


def _correlation_log_jacobian(native, x, factor, start, k) -> float:
    def lower(point):
        return np.linalg.cholesky(native.expand(point)[f"cor[{factor}]"])[np.tril_indices(k, -1)]

    rows = []
    for i in range(start, start + k * (k - 1) // 2):
        step = np.zeros_like(x)
        step[i] = 1e-6
        rows.append((lower(x + step) - lower(x - step)) / 2e-6)
    return float(np.linalg.slogdet(np.array(rows))[1])


def _pymc_point(model, native, design, x):
    """The PyMC value variables at the compiled density's point ``x``, and the log Jacobian of ``x``."""
    names = {v.name for v in model.value_vars}
    p = design.p
    point = {"beta": x[:p]} if "beta" in names else {f"beta__{j}": x[j] for j in range(p)}
    t = p
    log_jac = 0.0
    for b in design.blocks:
        k = b.n_cols
        if f"sd[{b.factor}]_log__" in names:
            point[f"sd[{b.factor}]_log__"] = x[t:t + k]
        else:
            point.update({f"sd[{b.factor}]__{i}_log__": x[t + i] for i in range(k)})
        log_jac += x[t:t + k].sum()
        t += k
    for b in design.blocks:
        if any(len(g) > 1 for g in b.groups):
            k = b.n_cols
            L = np.linalg.cholesky(native.expand(x)[f"cor[{b.factor}]"])
            transform = model.rvs_to_transforms[model[f"chol_cor[{b.factor}]"]]
            point[f"chol_cor[{b.factor}]_cholesky_corr__"] = transform.forward(L).eval()
            log_jac += _correlation_log_jacobian(native, x, b.factor, t, k)
            t += k * (k - 1) // 2
    for b in design.blocks:
        point[f"z[{b.factor}]"] = x[t:t + b.n_effects].reshape(b.n_levels, b.n_cols)
        t += b.n_effects
    for name in bm.priors.spec.family_parameters(design):
        point[f"{name}_log__"] = x[t]
        log_jac += x[t]
        t += 1
    assert t == native.n_dim
    return point, log_jac


@pytest.mark.parametrize("formula,family,args", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_compiled_density_equals_pymc_model(formula, family, args, data) -> None:
    design = family_design(formula, data, family, **args)
    priors = varied_priors(design)
    assert noncentred_supports(design, priors) is None
    native = NativeNonCentred.from_design(design, priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(design, priors)
        logp = model.compile_logp(jacobian=False)
    rng = np.random.default_rng(1)
    differences = []
    for _ in range(5):
        x = native.start + rng.normal(size=native.n_dim) * 0.5
        point, log_jac = _pymc_point(model, native, design, x)
        differences.append(native.logp_and_grad(x)[0] - log_jac - float(logp(point)))
    assert np.ptp(differences) < 1e-7, differences


@pytest.mark.parametrize("formula,family,args", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_compiled_gradient_matches_central_differences(formula, family, args, data) -> None:
    design = family_design(formula, data, family, **args)
    native = NativeNonCentred.from_design(design, varied_priors(design))
    rng = np.random.default_rng(2)
    x = native.start + rng.normal(size=native.n_dim) * 0.5
    _, grad = native.logp_and_grad(x)
    numeric = np.array([(native.logp_and_grad(x + h)[0] - native.logp_and_grad(x - h)[0]) / 2e-6
                        for h in np.eye(native.n_dim) * 1e-6])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def test_gaussian_design_without_family_equals_pymc_model(data) -> None:
    """A plain gaussian design (method='full' beyond the collapsed limit) uses the same kernel."""
    from bayesmlm.design import build_design

    design = build_design("cont ~ x1 + (x1 | g) + (1 | h)", data)
    priors = varied_priors(design)
    native = NativeNonCentred.from_design(design, priors)
    assert native.names[-1] == "sigma"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(design, priors)
        logp = model.compile_logp(jacobian=False)
    rng = np.random.default_rng(3)
    differences = []
    for _ in range(4):
        x = native.start + rng.normal(size=native.n_dim) * 0.5
        point, log_jac = _pymc_point(model, native, design, x)
        differences.append(native.logp_and_grad(x)[0] - log_jac - float(logp(point)))
    assert np.ptp(differences) < 1e-7, differences
    x = native.start + rng.normal(size=native.n_dim) * 0.5
    numeric = np.array([(native.logp_and_grad(x + h)[0] - native.logp_and_grad(x - h)[0]) / 2e-6
                        for h in np.eye(native.n_dim) * 1e-6])
    np.testing.assert_allclose(native.logp_and_grad(x)[1], numeric, rtol=1e-5, atol=1e-4)
