"""The compiled collapsed density (bayesmlm/bayes/native.py) against PyMC's own.

The compiled density uses its own unconstrained parameters, so it is compared
with the PyMC collapsed model on the constrained scale: at random points, the
compiled log density minus its log Jacobian (computed here by finite
differences, independently of the code under test) must differ from PyMC's
``logp(jacobian=False)`` by the same constant everywhere. Gradients are
checked against central differences.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.bayes.collapsed import build_collapsed_model
from bayesmlm.bayes.native import NativeCollapsed, supports
from bayesmlm.design import build_design
from bayesmlm.priors.distributions import Exponential, Gamma, HalfNormal, HalfStudentT, LogNormal, StudentT

FORMULAS = ["y ~ x1 + (x1 | g) + (1 | h)", "y ~ x1 + x2 + (x1 + x2 | g) + (x1 || h)"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"g": rng.integers(0, 8, n).astype(str), "h": rng.integers(0, 5, n).astype(str),
                       "x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    df["y"] = 1 + df.x1 - 0.5 * df.x2 + rng.normal(size=n)
    return df


def mixed_family_priors(formula: str, df: pd.DataFrame):
    """Default priors with every positive family the compiled density knows."""
    spec = bm.priors.default(formula, df)
    families = [HalfStudentT(4, 1.5), Gamma(2, 1.5), LogNormal(0.2, 0.8), Exponential(0.7), HalfNormal(2.0)]
    positive = [key for key in spec if key.startswith("sd[")] + ["sigma"]
    for key, dist in zip(positive, families * 2):
        spec[key] = dist
    return spec


def correlation_log_jacobian(native: NativeCollapsed, x: np.ndarray, start: int, k: int) -> float:
    """log |d (strictly lower entries of L) / d x| by central differences."""
    def lower(point):
        return np.linalg.cholesky(native.expand(point)["cor[g]"])[np.tril_indices(k, -1)]

    rows = []
    for i in range(start, start + k * (k - 1) // 2):
        step = np.zeros_like(x)
        step[i] = 1e-6
        rows.append((lower(x + step) - lower(x - step)) / 2e-6)
    return float(np.linalg.slogdet(np.array(rows))[1])


@pytest.mark.parametrize("formula", FORMULAS)
def test_compiled_density_equals_pymc_collapsed_density(formula: str, data: pd.DataFrame) -> None:
    design = build_design(formula, data)
    priors = mixed_family_priors(formula, data)
    native = NativeCollapsed.from_design(design, priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = build_collapsed_model(design, priors)
        logp = model.compile_logp(jacobian=False)
    transform = model.rvs_to_transforms[model["chol_cor[g]"]]
    kg, kh = design.blocks[0].n_cols, design.blocks[1].n_cols
    rng = np.random.default_rng(1)
    differences = []
    for _ in range(6):
        x = rng.normal(size=native.n_dim) * 0.7
        L = np.linalg.cholesky(native.expand(x)["cor[g]"])
        point = {"sigma_log__": x[-1], "chol_cor[g]_cholesky_corr__": transform.forward(L).eval()}
        for factor, log_sd in (("g", x[:kg]), ("h", x[kg:kg + kh])):
            names = {v.name for v in model.value_vars}
            if f"sd[{factor}]_log__" in names:  # one family: one vector
                point[f"sd[{factor}]_log__"] = log_sd
            else:  # mixed families: one scalar per column
                point.update({f"sd[{factor}]__{i}_log__": value for i, value in enumerate(log_sd)})
        log_jacobian = x[:kg + kh].sum() + x[-1] + correlation_log_jacobian(native, x, kg + kh, kg)
        differences.append(native.logp_and_grad(x)[0] - log_jacobian - logp(point))
    assert np.ptp(differences) < 1e-7, differences


@pytest.mark.parametrize("formula", FORMULAS)
def test_compiled_gradient_matches_central_differences(formula: str, data: pd.DataFrame) -> None:
    native = NativeCollapsed.from_design(build_design(formula, data), mixed_family_priors(formula, data))
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = rng.normal(size=native.n_dim) * 0.7
        _, grad = native.logp_and_grad(x)
        numeric = np.array([(native.logp_and_grad(x + h)[0] - native.logp_and_grad(x - h)[0]) / 2e-6
                            for h in np.eye(native.n_dim) * 1e-6])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def test_expand_gives_unit_diagonal_correlations_and_positive_scales(data: pd.DataFrame) -> None:
    formula = FORMULAS[1]
    native = NativeCollapsed.from_design(build_design(formula, data), bm.priors.default(formula, data))
    values = native.expand(np.random.default_rng(3).normal(size=native.n_dim))
    np.testing.assert_allclose(np.diag(values["cor[g]"]), 1.0)
    assert np.all(np.linalg.eigvalsh(values["cor[g]"]) > 0)
    assert set(values) == {"sd[g]", "sd[h]", "cor[g]", "sigma"}  # (x1 || h): no correlation
    assert values["sd[h]"].shape == (2,) and np.all(values["sd[h]"] > 0)


def test_models_outside_the_compiled_density_use_pytensor_and_say_so(data: pd.DataFrame) -> None:
    formula = FORMULAS[0]
    priors = bm.priors.default(formula, data)
    priors["x1"] = StudentT(3, 0, 5)
    design = build_design(formula, data)
    assert "not normal" in supports(design, priors)
    with pytest.raises(ValueError, match="not normal"):
        NativeCollapsed.from_design(design, priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bm.sample(formula, data, priors=priors, draws=200, tune=200, chains=2, seed=1, progressbar=False)
        default = bm.sample(formula, data, priors=bm.priors.default(formula, data), draws=200, tune=200, chains=2,
                            seed=1, progressbar=False)
    assert post.method == "collapsed" and "PyTensor density" in post.method_note
    assert "compiled density" in default.method_note


def test_large_collapsed_model_samples_in_nutpie_threads() -> None:
    """146 effects: OpenBLAS's threaded LU overflowed the stack of nutpie's threads (segfault)."""
    df = bm.datasets.load("crossed_slopes")
    formula = "rt ~ cond + (cond | subj) + (cond | item)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bm.sample(formula, df, priors=bm.priors.default(formula, df), method="collapsed",
                         draws=100, tune=100, chains=2, seed=1, progressbar=False)
    assert post.design.q + post.design.p == 146 and "compiled density" in post.method_note
    assert np.isfinite(post.fixef()["mean"]).all()
