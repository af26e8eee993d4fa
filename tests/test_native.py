"""The compiled collapsed density (bayesmlm/bayes/native.py) against PyMC's own.

The compiled density uses its own unconstrained parameters, so it is compared
with the PyMC collapsed model on the constrained scale: at random points, the
compiled log density minus its log Jacobian (computed here by finite
differences, independently of the code under test) must differ from PyMC's
``logp(jacobian=False)`` by the same constant everywhere. Gradients are
checked against central differences.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm
from bayesmlm.bayes.collapsed import build_collapsed_model
from bayesmlm.bayes.native import ERROR_DEFECT, ERROR_NOT_POSITIVE_DEFINITE, NativeCollapsed, compiled_callbacks, supports
from bayesmlm.design import build_design
from bayesmlm.priors.distributions import Exponential, Gamma, HalfNormal, HalfStudentT, LogNormal, StudentT

from .density_checks import central_gradient, correlation_log_jacobian

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
        log_jacobian = x[:kg + kh].sum() + x[-1] + correlation_log_jacobian(native, x, "g", kg + kh, kg)
        differences.append(native.logp_and_grad(x)[0] - log_jacobian - logp(point))
    assert np.ptp(differences) < 1e-7, differences


@pytest.mark.parametrize("formula", FORMULAS)
def test_compiled_gradient_matches_central_differences(formula: str, data: pd.DataFrame) -> None:
    native = NativeCollapsed.from_design(build_design(formula, data), mixed_family_priors(formula, data))
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = rng.normal(size=native.n_dim) * 0.7
        _, grad = native.logp_and_grad(x)
        numeric = central_gradient(native, x)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def test_expand_follows_the_documented_parameterisation(data: pd.DataFrame) -> None:
    """Against the module docstring's definition, by independent arithmetic: SDs and sigma are exp of
    their slots; the 3 x 3 correlation comes from canonical partial correlations (Lewandowski, Kurowicka
    and Joe 2009): the first column's correlations and the partial correlation of the last pair given
    the first variable are tanh of their unconstrained values."""
    formula = FORMULAS[1]
    native = NativeCollapsed.from_design(build_design(formula, data), bm.priors.default(formula, data))
    x = np.random.default_rng(3).normal(size=native.n_dim)
    values = native.expand(x)
    assert set(values) == {"sd[g]", "sd[h]", "cor[g]", "sigma"}  # (x1 || h): no correlation
    assert native.n_dim == 3 + 2 + 3 + 1  # log sd of g and h, 3 partial correlations, log sigma
    np.testing.assert_allclose(values["sd[g]"], np.exp(x[:3]), rtol=1e-12)
    np.testing.assert_allclose(values["sd[h]"], np.exp(x[3:5]), rtol=1e-12)
    assert values["sigma"] == pytest.approx(np.exp(x[-1]), rel=1e-12)
    R, z = values["cor[g]"], np.tanh(x[5:8])
    np.testing.assert_allclose(R, R.T, atol=1e-15)
    np.testing.assert_allclose(np.diag(R), 1.0, rtol=1e-12)
    np.testing.assert_allclose([R[1, 0], R[2, 0]], z[:2], rtol=1e-12)
    partial = (R[2, 1] - R[2, 0] * R[1, 0]) / np.sqrt((1 - R[2, 0] ** 2) * (1 - R[1, 0] ** 2))
    assert partial == pytest.approx(z[2], rel=1e-10)


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
    """146 effects: OpenBLAS's threaded LU overflowed the stack of nutpie's threads (segfault).
    The short run must also be right: fixed effects and sigma against brms on the same priors, within
    4 combined Monte Carlo SEs (ours by arviz_stats from the chains, brms's sd / sqrt(ess_bulk))."""
    import arviz_stats as azs

    df = bm.datasets.load("crossed_slopes")
    formula = "rt ~ cond + (cond | subj) + (cond | item)"
    reference = Path(__file__).parent / "reference"
    priors = bm.priors.load(reference / "brms_priors" / "crossed_slopes.toml", formula, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bm.sample(formula, df, priors=priors, method="collapsed", draws=200, tune=200, chains=2, seed=1,
                         progressbar=False)
    assert post.design.q + post.design.p == 146 and "compiled density" in post.method_note
    brms = {row["variable"]: row for row in json.loads((reference / "brms" / "crossed_slopes.json").read_text())["summary"]}
    for key, name in [("Intercept", "b_Intercept"), ("cond", "b_cond"), ("sigma", "sigma")]:
        draws, row = post.draws(key), brms[name]
        mcse = np.hypot(float(azs.mcse(draws.reshape(2, -1))), row["sd"] / np.sqrt(row["ess_bulk"]))
        assert abs(draws.mean() - row["mean"]) <= 4 * mcse <= 0.5 * row["sd"], (key, draws.mean(), row["mean"], mcse)


def _call_logp_callback(native: NativeCollapsed, x: np.ndarray) -> int:
    """The return code of the C log-density callback nutpie calls, at ``x``."""
    import ctypes

    logp_callback, _ = compiled_callbacks()
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad, logp = np.empty(native.n_dim), np.empty(1)
    pointer = ctypes.POINTER(ctypes.c_double)
    return logp_callback.ctypes(native.n_dim, x.ctypes.data_as(pointer), grad.ctypes.data_as(pointer),
                                logp.ctypes.data_as(pointer), native.blob.ctypes.data_as(ctypes.c_void_p))


def test_callback_reports_only_a_failed_factorisation_as_recoverable(data: pd.DataFrame) -> None:
    """Positive codes are recoverable for nutpie (a divergence); any other error must stop it."""
    formula = FORMULAS[0]
    native = NativeCollapsed.from_design(build_design(formula, data), bm.priors.default(formula, data))
    assert _call_logp_callback(native, np.zeros(native.n_dim)) == 0
    overflow = np.zeros(native.n_dim)
    overflow[0] = 800.0  # sd = exp(800) = inf: Q holds inf, the Cholesky factorisation fails
    assert _call_logp_callback(native, overflow) == ERROR_NOT_POSITIVE_DEFINITE == 1
    with pytest.raises(np.linalg.LinAlgError, match="cannot be factored"):
        native.logp_and_grad(overflow)
    # Far-out points where the arithmetic overflows or divides by zero (sigma = exp(-800) = 0, a
    # correlation of tanh(50) = 1) give inf/NaN, which nutpie treats as a divergence, not an error:
    for index, value in ((native.n_dim - 1, -800.0), (native.n_dim - 2, 50.0)):
        extreme = np.zeros(native.n_dim)
        extreme[index] = value
        assert _call_logp_callback(native, extreme) > 0
    # A malformed input (a Lambda section that is not a whole number of 4-value rows) is a defect:
    blob = np.append(native.blob, 0.0)
    blob[0] = blob.size
    broken = dataclasses.replace(native, blob=blob)
    with pytest.raises(ValueError):
        broken.logp_and_grad(np.zeros(native.n_dim))
    assert _call_logp_callback(broken, np.zeros(native.n_dim)) == ERROR_DEFECT < 0


def test_warmup_command_fills_the_kernel_cache(capsys) -> None:
    """`bayesmlm warmup` (run by ./dev after installing) compiles or loads every kernel and says so."""
    from bayesmlm.bayes.native import compiled_callbacks
    from bayesmlm.bayes.noncentred_kernels import noncentred_callbacks
    from bayesmlm.cli import main

    assert main(["warmup"]) == 0
    assert "compiled kernels ready" in capsys.readouterr().out
    assert compiled_callbacks.cache_info().currsize == 1 and noncentred_callbacks.cache_info().currsize == 2


def _probe_logp(dim, x_, out_, logp_, user_data):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    acc = 0.0
    for i in range(dim):
        acc -= 0.5 * x[i] * x[i]
        out[i] = -x[i]
    logp[0] = acc
    return 0


def test_a_callback_compiles_with_a_light_final_pass_and_leaves_numba_as_it_was(tmp_path, monkeypatch) -> None:
    """c_callback skips the callback library's last full optimisation pass only: Numba's settings and
    methods are restored, and the callback computes what its body says."""
    from numba.core import config
    from numba.core.codegen import CPUCodeLibrary

    from bayesmlm.bayes.nutpie_bridge import LOGP_SIG, c_callback, call_logp

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))  # compiled here, not loaded
    levels = []
    default_pass = CPUCodeLibrary._optimize_final_module

    def spy(library):
        levels.append((library.name, int(config.OPT)))
        return default_pass(library)

    monkeypatch.setattr(CPUCodeLibrary, "_optimize_final_module", spy)
    before = int(config.OPT)
    callback = c_callback(LOGP_SIG, _probe_logp)
    assert int(config.OPT) == before and CPUCodeLibrary._optimize_final_module is spy
    assert (_probe_logp.__qualname__, 0) in levels  # the callback's own final pass, light
    assert all(level == before for name, level in levels if name != _probe_logp.__qualname__)
    code, value, grad = call_logp(callback, np.array([1.0, 2.0]), np.zeros(1))
    assert code == 0 and value == -2.5 and grad.tolist() == [-1.0, -2.0]


def test_low_rank_options_learn_a_known_ridge() -> None:
    """``LOW_RANK_OPTIONS`` regularises nutpie's low-rank updates more than nutpie's default; with the
    scaling of nutpie >= 0.16.11 that leaves the learned mass matrix as it is. A gaussian with one known
    ridge (a direction 20 times wider than the others, rotated and rescaled) must be learned: the largest
    square-rooted eigenvalue nutpie stores within 25% of the one its adaptation targets, the geometric
    mean of the draws' covariance and the inverse of the gradients' covariance, computed here from the
    known covariance. With an older scaling the same gamma shrinks it towards 1."""
    import nutpie
    from nutpie.compiled_pyfunc import from_pyfunc

    from bayesmlm.bayes.sample import LOW_RANK_OPTIONS

    d = 30
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    values = np.ones(d)
    values[0] = 400.0
    scales = np.exp(rng.normal(size=d))
    cov = (Q * values) @ Q.T * np.outer(scales, scales)
    precision = np.linalg.inv(cov)
    precision = (precision + precision.T) / 2

    def make_logp():
        def logp(x):
            g = -precision @ x
            return 0.5 * float(x @ g), g
        return logp

    def make_expand(*_):
        return lambda x: {"x": x.copy()}

    model = from_pyfunc(d, make_logp, make_expand, [np.dtype("float64")], [(d,)], ["x"])
    # nutpie's target in its diagonally scaled coordinates, s_i = (var x_i / var grad_i)^(1/4)
    s = np.sqrt(np.sqrt(np.diag(cov)) / np.sqrt(np.diag(precision)))
    draws_cov, grads_cov = cov / np.outer(s, s), precision * np.outer(s, s)
    w, U = np.linalg.eigh(grads_cov)
    half, half_inv = (U * np.sqrt(w)) @ U.T, (U / np.sqrt(w)) @ U.T
    w2, U2 = np.linalg.eigh(half @ draws_cov @ half)
    target = np.linalg.eigvalsh(half_inv @ ((U2 * np.sqrt(w2)) @ U2.T) @ half_inv).max()
    idata = nutpie.sample(model, draws=10, tune=600, chains=1, cores=1, seed=1, progress_bar=False,
                          store_mass_matrix=True, **LOW_RANK_OPTIONS)
    stats = idata.warmup_sample_stats
    updated = np.nonzero(np.nan_to_num(stats["num_eigenvalues"].values[0]))[0]
    assert updated.size > 0
    learned = stats["mass_matrix_eigvals"].values[0, updated[-1]]
    largest = np.nanmax(learned)
    assert largest == pytest.approx(np.sqrt(target), rel=0.25), (largest, np.sqrt(target))
