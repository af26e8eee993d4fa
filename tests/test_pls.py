"""The PLS deviance function on its own: lme4's criterion at lme4's theta, both factorizations."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmlm.freq.pls as pls
from bayesmlm.design import build_design
from bayesmlm.freq.pls import ProfiledDeviance

from .conftest import load_data, load_reference, reference_cases


@pytest.mark.parametrize("case", [c for c in reference_cases() if not c.startswith("insteval")])
def test_deviance_at_lme4_theta_is_lme4_criterion(case: str) -> None:
    ref = load_reference(case)
    design = build_design(ref["formula"], load_data(ref["data"]))
    dev = ProfiledDeviance.from_design(design, reml=ref["REML"])
    theta = np.atleast_1d(np.asarray(ref["theta"], dtype=float))
    assert dev(theta) == pytest.approx(ref["deviance_or_reml"], abs=1e-6)
    sol = dev.solve(theta)
    assert sol.sigma == pytest.approx(ref["sigma"], rel=1e-6)


@pytest.mark.parametrize("case", ["crossed_slopes_reml", "pastes_nested_ml", "sleepstudy_corr_reml"])
def test_blocked_and_dense_factorizations_agree(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = load_reference(case)
    design = build_design(ref["formula"], load_data(ref["data"]))
    theta = np.atleast_1d(np.asarray(ref["theta"], dtype=float)) * 1.1
    monkeypatch.setattr(pls, "DENSE_LIMIT", design.q)  # one matrix
    dense = ProfiledDeviance.from_design(design, reml=ref["REML"])
    monkeypatch.setattr(pls, "DENSE_LIMIT", 0)
    blocked = ProfiledDeviance.from_design(design, reml=ref["REML"])
    assert not dense.split_first and blocked.split_first
    assert dense(theta) == pytest.approx(blocked(theta), rel=1e-12)
    a, b = dense.solve(theta), blocked.solve(theta)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)
    np.testing.assert_allclose(a.b, b.b, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-10)


def test_undefined_theta_gives_infinite_deviance() -> None:
    ref = load_reference("sleepstudy_corr_reml")
    dev = ProfiledDeviance.from_design(build_design(ref["formula"], load_data("sleepstudy")))
    assert dev(np.array([np.nan, 0.0, 1.0])) == np.inf


def test_copied_and_pickled_deviance_evaluates_alike() -> None:
    import copy
    import pickle

    ref = load_reference("crossed_slopes_reml")
    dev = ProfiledDeviance.from_design(build_design(ref["formula"], load_data("crossed_slopes")))
    theta = np.asarray(ref["theta"], dtype=float)
    value, modes = dev(theta), dev.solve(theta).b
    for other in (pickle.loads(pickle.dumps(dev)), copy.deepcopy(dev)):
        assert other(theta * 1.1) == dev(theta * 1.1)
        assert other(theta) == value
        np.testing.assert_array_equal(other.solve(theta).b, modes)
