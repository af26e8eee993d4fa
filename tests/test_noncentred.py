"""The compiled non-centred density (bayesmlm/bayes/noncentred.py) against the PyMC model (bayes/build.py).

As in test_native.py: the compiled density uses its own unconstrained parameters, so it is
compared with the PyMC model on the constrained scale. At random points, the compiled log
density minus its log Jacobian (log transforms: the log values themselves; the correlation
factor: by finite differences, independently of the code under test) must differ from PyMC's
``logp(jacobian=False)`` by the same constant everywhere. Gradients are checked against
central differences. One kernel serves every family, so the models below together cover
every family and link pair that ``bm.sample`` uses by default. The PyMC model is non-centred, so
those comparisons pack every factor non-centred; the centred packing is checked against the
non-centred one by the change of variables ``r = T z``, and the gaussian packing that integrates
the fixed effects out against a numerical integral of the full density over them.
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

from .density_checks import central_gradient, correlation_log_jacobian


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
            log_jac += correlation_log_jacobian(native, x, b.factor, t, k)
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
    native = NativeNonCentred.from_design(design, priors, centred=[False] * len(design.blocks))
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
    native = NativeNonCentred.from_design(design, varied_priors(design), centred=[False] * len(design.blocks))
    rng = np.random.default_rng(2)
    x = native.start + rng.normal(size=native.n_dim) * 0.5
    _, grad = native.logp_and_grad(x)
    numeric = central_gradient(native, x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def test_gaussian_design_without_family_equals_pymc_model(data) -> None:
    """A plain gaussian design (method='full' beyond the collapsed limit) uses the same kernel."""
    from bayesmlm.design import build_design

    design = build_design("cont ~ x1 + (x1 | g) + (1 | h)", data)
    priors = varied_priors(design)
    native = NativeNonCentred.from_design(design, priors, centred=[False] * len(design.blocks))
    assert native.names[-1] == "sigma" and not native.fixed_integrated  # a StudentT prior on x1
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
    numeric = central_gradient(native, x)
    np.testing.assert_allclose(native.logp_and_grad(x)[1], numeric, rtol=1e-5, atol=1e-4)


def _z_to_r(native, design, x):
    """The centred packing's point for the non-centred point ``x`` (``r = T z``), and sum of log det T."""
    expanded = native.expand(x)
    xc = x.copy()
    t = design.p + native.n_dim - design.p - sum(b.n_effects for b in design.blocks) - len(
        bm.priors.spec.family_parameters(design))
    log_det = 0.0
    for b in design.blocks:
        xc[t:t + b.n_effects] = expanded[f"r[{b.factor}]"].ravel()
        cor = expanded.get(f"cor[{b.factor}]", np.eye(b.n_cols))
        log_det += b.n_levels * np.sum(np.log(np.atleast_1d(expanded[f"sd[{b.factor}]"]) * np.diag(np.linalg.cholesky(cor))))
        t += b.n_effects
    return xc, log_det


@pytest.mark.parametrize("formula,family,args", CASES[:4], ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES[:4])])
def test_centred_packing_is_the_same_posterior(formula, family, args, data) -> None:
    """Centred density at r = T z equals the non-centred one at z less the Jacobian sum_F J_F log det T_F."""
    design = family_design(formula, data, family, **args)
    priors = varied_priors(design)
    flags = [False] * len(design.blocks)
    non_centred = NativeNonCentred.from_design(design, priors, centred=flags)
    centred = NativeNonCentred.from_design(design, priors, centred=[True] * len(design.blocks))
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = non_centred.start + rng.normal(size=non_centred.n_dim) * 0.5
        xc, log_det = _z_to_r(non_centred, design, x)
        assert centred.logp_and_grad(xc)[0] + log_det == pytest.approx(non_centred.logp_and_grad(x)[0], abs=1e-8)
        for key, value in non_centred.expand(x).items():
            np.testing.assert_allclose(centred.expand(xc)[key], value, atol=1e-12)
    _, grad = centred.logp_and_grad(xc)
    numeric = central_gradient(centred, xc)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def _one_fixed_effect_with_offset(data):
    """p = 1, an offset, a prior mean away from zero, a factor with a correlated and a separate SD group."""
    design = family_design("cont ~ 1 + (1 + x1 | g) + (0 + x2 | g)", data, "gaussian", offset="expo")
    priors = bm.priors.default_for_design(design)
    priors["Intercept"] = bm.priors.Normal(2.5, 1.5)
    return design, priors


def _integrated_slots(design, native, flags):
    """Indices in ``x`` of the integrated coefficients ``u``: beta, then each integrated block's effects."""
    slots = list(range(design.p))
    o_z = native.n_dim - sum(b.n_effects for b in design.blocks) - len(bm.priors.spec.family_parameters(design))
    start = o_z
    for block, flag in zip(design.blocks, flags):
        if flag:
            slots += list(range(start, start + block.n_effects))
        start += block.n_effects
    return np.array(slots)


@pytest.mark.parametrize("case,integrated,dense_limit", [
    ("crossed", [False, False], None), ("crossed", [False, True], None), ("crossed", [True, True], None),
    ("offset", [False], None), ("offset", [True], None),
    # the largest integrated factor eliminated level by level: a slope factor, an intercept factor beside
    # a sampled one, a factor with a correlated and a separate SD group
    ("crossed", [True, True], 7), ("crossed", [False, True], 3), ("offset", [True], 1)])
def test_gaussian_coefficients_integrated_out(case, integrated, dense_limit, data, monkeypatch) -> None:
    """With normal priors on the fixed effects, the gaussian density integrates them out, with the
    effects of the factors flagged ``integrated``: it must equal log of the integral of the full density
    (those factors centred, so their effects are its coordinates) over these coefficients (gaussian in
    them: its mode and Hessian give the integral exactly), up to the constant (q0/2) log(2 pi); the
    expanded coefficients are the conditional draw mode + C^-T xi, whose covariance is the inverse
    Hessian. Covers a slope factor (correlated x1 within g) and a factor with a correlated and a
    separate SD group, integrated or sampled beside an integrated one; with ``dense_limit`` (a smaller
    :data:`INTEGRATED_UP_TO`) the largest integrated factor is eliminated level by level instead of
    factorised with the rest."""
    from scipy.optimize import minimize

    from bayesmlm.bayes import noncentred
    from bayesmlm.design import build_design

    if dense_limit is not None:
        monkeypatch.setattr(noncentred, "INTEGRATED_UP_TO", dense_limit)

    if case == "crossed":
        design = build_design("cont ~ x1 + x2 + (x1 | g) + (1 | h)", data)
        priors = bm.priors.default_for_design(design)
        flag_sets = ([True, False], [False, True])
    else:
        design, priors = _one_fixed_effect_with_offset(data)
        flag_sets = ([True], [False])
    names = ["beta"] + [f"r[{b.factor}]" for b, f in zip(design.blocks, integrated) if f]
    for flags in flag_sets:
        full_flags = [c or i for c, i in zip(flags, integrated)]  # integrated factors centred in the full density
        marginal = NativeNonCentred.from_design(design, priors, centred=flags, integrated=integrated)
        full = NativeNonCentred.from_design(design, priors, centred=full_flags, integrate_fixed=False)
        assert marginal.fixed_integrated and not full.fixed_integrated and marginal.integrated == tuple(integrated)
        assert (marginal.blob[23] != 0) == (dense_limit is not None)  # the elimination section is there
        slots = _integrated_slots(design, marginal, integrated)
        q0 = len(slots)
        rng = np.random.default_rng(5)
        for _ in range(3):
            x = marginal.start + rng.normal(size=marginal.n_dim) * 0.4
            x[slots] = 0.0

            def negative(u, x=x):
                point = x.copy()
                point[slots] = u
                value, grad = full.logp_and_grad(point)
                return -value, -grad[slots]

            mode = minimize(negative, np.zeros(q0), jac=True, method="BFGS", options={"gtol": 1e-10}).x
            hess = np.array([(negative(mode + h)[1] - negative(mode - h)[1]) / 2e-5 for h in np.eye(q0) * 1e-5])
            log_integral = -negative(mode)[0] + 0.5 * q0 * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(hess)[1]
            assert marginal.logp_and_grad(x)[0] - log_integral == pytest.approx(-0.5 * q0 * np.log(2 * np.pi), abs=1e-6)

            def coefficients(point):
                expanded = marginal.expand(point)
                return np.concatenate([np.ravel(expanded[name]) for name in names])

            at_zero = coefficients(x)
            np.testing.assert_allclose(at_zero, mode, rtol=1e-6, atol=1e-6)
            moves = []
            for s in slots:
                point = x.copy()
                point[s] = 1.0
                moves.append(coefficients(point) - at_zero)
            moves = np.array(moves)
            np.testing.assert_allclose(moves.T @ moves, np.linalg.inv(hess), rtol=1e-4, atol=1e-9)
            sampled = marginal.expand(x)
            for b, f in zip(design.blocks, integrated):  # sampled factors' effects are the point's own
                if not f:
                    np.testing.assert_allclose(sampled[f"r[{b.factor}]"], full.expand(np.where(
                        np.isin(np.arange(full.n_dim), slots), 0.0, x))[f"r[{b.factor}]"], atol=1e-12)
        _, grad = marginal.logp_and_grad(x)
        numeric = central_gradient(marginal, x)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)
    if case == "crossed":
        assert noncentred.integrates_fixed_effects(design, varied_priors(design), np.ones(design.n)) is False


def test_integrated_factors_rule() -> None:
    """The smallest factors are integrated, while the coefficients integrated number at most the limit."""
    from bayesmlm.bayes.noncentred import INTEGRATED_UP_TO, integrated_factors
    from bayesmlm.design import build_design

    rng = np.random.default_rng(3)
    n = 600
    df = pd.DataFrame({"a": rng.integers(0, 40, n).astype(str), "b": rng.integers(0, 10, n).astype(str),
                       "c": rng.integers(0, 30, n).astype(str), "x": rng.normal(size=n)})
    df["y"] = rng.normal(size=n)
    design = build_design("y ~ x + (x | a) + (x | b) + (1 | c)", df)
    sizes = {b.factor: b.n_effects for b in design.blocks}
    assert sizes == {"a": 80, "b": 20, "c": 30} and INTEGRATED_UP_TO == 48
    flags = dict(zip([b.factor for b in design.blocks], integrated_factors(design)))
    # 2 + 20 = 22 dense; + 30 would pass 48, so c, the smaller of those left, is eliminated level by level
    assert flags == {"a": False, "b": True, "c": True}


def test_information_ratio_of_a_random_intercept(data) -> None:
    """Poisson, (1 | g): each level's information about its effect is n_l mu^2 / Var(y) at the mean."""
    from bayesmlm.bayes.centring import centred_factors, information_ratios

    design = family_design("count ~ x1 + (1 | g)", data, "poisson")
    priors = bm.priors.default_for_design(design)
    y = data["count"].to_numpy(float)
    tau = np.median(priors["sd[g][Intercept]"].draw(np.random.default_rng(0), size=4001))
    expected = np.median(data.groupby("g").size().to_numpy()) * y.mean() ** 2 / y.var() * tau ** 2
    assert information_ratios(design, priors)["g"][0] == pytest.approx(expected, rel=1e-12)
    priors["sd[g][Intercept]"] = HalfNormal(1e-3)  # effects the prior keeps tiny: the data say more than it
    assert centred_factors(design, priors) == [False]


def test_centring_follows_the_fitted_sd_not_only_the_prior() -> None:
    """A factor whose SD the data put at zero stays non-centred however wide its prior (centred
    effects with an SD near zero are the funnel); a clearly varying one with many rows is centred."""
    from bayesmlm.bayes.centring import centred_factors
    from bayesmlm.design import build_design

    rng = np.random.default_rng(2)
    for sd_true, expected in ((0.0, False), (0.5, True)):
        df = pd.DataFrame({"g": np.repeat(np.arange(30), 40).astype(str), "x": rng.normal(size=1200)})
        df["y"] = 1 + 0.5 * df.x + sd_true * rng.normal(size=30)[np.repeat(np.arange(30), 40)] + rng.normal(size=1200)
        design = build_design("y ~ x + (1 | g)", df)
        priors = bm.priors.default_for_design(design)
        assert centred_factors(design, priors) == [True]  # the prior alone says centred in both cases
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bm.lmer("y ~ x + (1 | g)", df)
        assert centred_factors(design, priors, fit) == [expected]


@pytest.mark.parametrize("formula,family,args", [CASES[5], CASES[2]], ids=["lognormal", "poisson"])
def test_partially_centred_packing_is_the_same_posterior(formula, family, args, data) -> None:
    """One-column factors are partially centred per level: ``z ~ N(0, tau^(2 lambda))``,
    ``r = tau^(1 - lambda) z``. At ``z = r / tau^(1 - lambda)`` the density equals the non-centred one at
    ``r / tau`` less the Jacobian ``sum_levels lambda log tau``; the expanded draws are equal; the gradient
    matches central differences."""
    design = family_design(formula, data, family, **args)
    priors = varied_priors(design)
    rng = np.random.default_rng(8)
    weights = [rng.uniform(0, 1, b.n_levels) for b in design.blocks]
    flags = [False] * len(design.blocks)
    non_centred = NativeNonCentred.from_design(design, priors, centred=flags)
    partial = NativeNonCentred.from_design(design, priors, centred=flags, weights=weights)
    one_column = [b.n_cols == 1 for b in design.blocks]
    assert any(one_column)
    for _ in range(3):
        x = non_centred.start + rng.normal(size=non_centred.n_dim) * 0.5
        expanded = non_centred.expand(x)
        xp = x.copy()
        t = non_centred.n_dim - sum(b.n_effects for b in design.blocks) - len(bm.priors.spec.family_parameters(design))
        jacobian = 0.0
        for b, w, single in zip(design.blocks, weights, one_column):
            if single:
                tau = float(np.atleast_1d(expanded[f"sd[{b.factor}]"])[0])
                xp[t:t + b.n_effects] = x[t:t + b.n_effects] * tau ** w
                jacobian += np.sum(w) * np.log(tau)
            t += b.n_effects
        assert partial.logp_and_grad(xp)[0] + jacobian == pytest.approx(non_centred.logp_and_grad(x)[0], abs=1e-8)
        for key, value in expanded.items():
            np.testing.assert_allclose(partial.expand(xp)[key], value, rtol=1e-10, atol=1e-12)
    _, grad = partial.logp_and_grad(xp)
    np.testing.assert_allclose(grad, central_gradient(partial, xp), rtol=1e-5, atol=1e-4)


def test_many_fixed_effects_integrate_no_factor() -> None:
    """With more fixed effects than the dense limit, no factor joins them (the fixed effects are still
    integrated out, alone, as before factors could be)."""
    from bayesmlm.bayes.noncentred import INTEGRATED_UP_TO, integrated_factors
    from bayesmlm.design import build_design

    rng = np.random.default_rng(4)
    df = pd.DataFrame({"f": rng.integers(0, 50, 400).astype(str), "g": rng.integers(0, 8, 400).astype(str)})
    df["y"] = rng.normal(size=400)
    design = build_design("y ~ f + (1 | g)", df)
    assert design.p > INTEGRATED_UP_TO
    assert integrated_factors(design) == [False]
    native = NativeNonCentred.from_design(design, bm.priors.default_for_design(design))
    assert native.fixed_integrated and native.integrated == (False,)
    value, grad = native.logp_and_grad(native.start)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_a_defect_in_the_kernels_is_raised_with_its_own_error() -> None:
    """The C callback can only return a code (nutpie then stops); called from Python, the error the
    kernel met is raised as itself, not as a bare code."""
    import dataclasses

    from bayesmlm.bayes.nutpie_bridge import ERROR_DEFECT, call_logp

    design = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
    model = NativeNonCentred.from_design(design, bm.priors.default_for_design(design))
    blob = model.blob.copy()
    blob[6] = -5.0  # a malformed packed array: the largest correlated group has a negative size
    broken = dataclasses.replace(model, blob=blob)
    assert call_logp(broken.callbacks()[0], broken.start, broken.blob)[0] == ERROR_DEFECT
    with pytest.raises(ValueError, match="negative dimensions"):
        broken.logp_and_grad(broken.start)


def test_logit_binomial_row_is_exact_in_the_tails() -> None:
    """The logit-binomial row kernel (``log(1 + t)``, not ``log1p``) against SciPy's ``log_expit`` on both
    tails, where ``t = e^-|eta|`` is far below machine epsilon: error below 1e-12 (relative to the value
    where it exceeds 1), and the derivative ``k - n expit(eta)`` to 1e-14, out to eta = +-800, where
    ``e^|eta|`` would overflow."""
    from scipy import special

    from bayesmlm.family_kernels import binomial_logit

    for eta in (-800.0, -40.0, -5.0, -1e-9, 0.0, 1e-9, 3.0, 37.0, 800.0):
        for k, n in ((0.0, 1.0), (1.0, 1.0), (3.0, 7.0)):
            want = k * special.log_expit(eta) + (n - k) * special.log_expit(-eta)
            ll, d = binomial_logit(k, n, eta)
            assert abs(ll - want) < 1e-12 * max(1.0, abs(want)), (eta, k, n, ll, want)
            assert abs(d - (k - n * special.expit(eta))) < 1e-14 * max(1.0, n), (eta, k, n, d)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_binomial_rows_match_numpy_with_weights(data, link: str) -> None:
    """The rows' log-likelihood and its gradients in beta and the group effects (the logit pair through its
    own row kernel, probit through the generic one) against NumPy and SciPy written independently, with
    non-unit row weights written into the packed data; the logit's linear predictors reach +-40."""
    from scipy import special

    from bayesmlm.bayes import noncentred_kernels as K

    design = family_design("succ ~ x1 + (x1 | g) + (1 | h)", data, "binomial", trials="size", link=link)
    model = NativeNonCentred.from_design(design, varied_priors(design))
    n, p = design.n, design.p
    blob = model.blob.copy()
    o_y = int(blob[13])
    rng = np.random.default_rng(3)
    w = rng.uniform(0.3, 2.0, n)
    blob[o_y + 2 * n:o_y + 3 * n] = w
    beta = np.array([0.4, 15.0 if link == "logit" else 1.0])  # x1 spans about +-3
    n_z = sum(b.n_effects for b in design.blocks)
    r = rng.normal(0.0, 0.5, n_z)
    grad, gr = np.zeros(model.n_dim), np.zeros(n_z)
    head = K._head(blob)
    family, fam_link = head[6], head[7]
    ll = K._family_rows(blob, n, p, len(design.blocks), family, fam_link, beta, r, np.zeros(2), 0, grad, p, gr)

    eta = design.X @ beta + design.glm.offset
    start = 0
    for block in design.blocks:
        effects = r[start:start + block.n_effects].reshape(block.n_levels, block.n_cols)
        eta = eta + np.sum(effects[block.codes] * block.values, axis=1)
        start += block.n_effects
    trials = design.glm.trials
    k = design.glm.y * trials
    if link == "logit":
        rows = k * special.log_expit(eta) + (trials - k) * special.log_expit(-eta)
        d_eta = k - trials * special.expit(eta)
    else:
        rows = k * special.log_ndtr(eta) + (trials - k) * special.log_ndtr(-eta)
        dens = np.exp(-0.5 * eta * eta) / np.sqrt(2 * np.pi)
        d_eta = dens * (k / special.ndtr(eta) - (trials - k) / special.ndtr(-eta))
    assert np.abs(eta).max() > (30.0 if link == "logit" else 2.0)
    assert ll == pytest.approx(np.sum(w * rows), rel=1e-12)
    np.testing.assert_allclose(grad[:p], design.X.T @ (w * d_eta), rtol=1e-10)
    want = np.zeros(n_z)
    start = 0
    for block in design.blocks:
        part = want[start:start + block.n_effects].reshape(block.n_levels, block.n_cols)
        np.add.at(part, block.codes, (w * d_eta)[:, None] * block.values)
        start += block.n_effects
    np.testing.assert_allclose(gr, want, rtol=1e-10, atol=1e-12)
