"""The helper process that compiles a sampler's log density while the frequentist fit runs
(bayesmlm/bayes/precompile.py): on an empty Numba cache the sampling process loads the callback the
helper compiled, its own share of the kernels has the argument types the callback uses (else Numba
would compile them a second time), and a helper that fails changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bayesmlm as bm
from bayesmlm.bayes import noncentred, noncentred_kernels, precompile
from bayesmlm.family_design import family_design

COLD_RUN = """
import json, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
import bayesmlm as bm
from bayesmlm.bayes import noncentred_kernels as kernels, precompile

waits = []  # seconds this process waited for a helper, each time
real_wait = precompile.wait
def timed_wait(kind):
    start = time.perf_counter()
    real_wait(kind)
    waits.append(time.perf_counter() - start)
precompile.wait = timed_wait
cold = not precompile.is_cached("family")
rng = np.random.default_rng(3)
n = 2000
a, b = rng.integers(0, 8, n), rng.integers(0, 6, n)
x = rng.normal(size=n)
eta = 0.4 + 0.3 * x + rng.normal(0, 0.3, 8)[a] + rng.normal(0, 0.2, 6)[b] + rng.normal(0, 0.1, 6)[b] * x
df = pd.DataFrame({"a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b], "x": x, "y": rng.poisson(np.exp(eta))})
post = bm.sample("y ~ x + (1 | a) + (x | b)", df, family="poisson", priors="default", draws=300, tune=300,
                 chains=2, seed=1, progressbar=False)
marginal_cold = not precompile.is_cached("marginal")
sleep = bm.datasets.load("sleepstudy")
gauss = bm.sample("Reaction ~ Days + (Days | Subject)", sleep, method="full", draws=300, tune=300, chains=2,
                  seed=1, progressbar=False)
print(json.dumps({
    "cold": cold, "cached": precompile.is_cached("family"),
    "loaded": kernels.family_logp_cfunc().cache_hits,
    "rows": len(kernels._family_rows.signatures), "through": len(kernels._through_scales.signatures),
    "slope": float(post.fixef().loc["x", "mean"]),
    "marginal_cold": marginal_cold, "marginal_cached": precompile.is_cached("marginal"),
    "marginal_loaded": kernels.marginal_logp_cfunc().cache_hits,
    "draw": len(kernels._integrated_draw.signatures), "prior": len(kernels._prior_terms.signatures),
    "expand_kernels": len(kernels._effects_at.signatures) + len(kernels._write_draw.signatures),
    "longest_wait": max(waits),
    "days": float(gauss.fixef().loc["Days", "mean"]),
}))
"""


def test_cold_samples_load_the_callbacks_the_helper_compiled(tmp_path) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("the helper runs only with a second core")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    out = subprocess.run([sys.executable, "-c", COLD_RUN], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cold"] and result["cached"]
    assert result["loaded"] == 1  # the log density came from the helper's cache entry, not compiled here
    # this process's share: at most one specialisation each (none when the helper finished first)
    assert result["rows"] <= 1 and result["through"] <= 1
    assert abs(result["slope"] - 0.3) < 0.1
    # the integrated gaussian density: this process compiles the prior's kernels, the conditional draw and
    # the expand callback (which reaches the helper's group-effect kernels), each once at most
    assert result["marginal_cold"] and result["marginal_cached"] and result["marginal_loaded"] == 1
    assert result["draw"] <= 1 and result["prior"] <= 1 and result["expand_kernels"] <= 2
    # the helper was told when this process's share was done, so no wait ran into WAIT_SECONDS (300 s)
    assert result["longest_wait"] < 0.5 * precompile.WAIT_SECONDS
    assert abs(result["days"] - 10.47) < 1.5  # lme4's 10.47 (sd 1.55)


def test_a_failed_helper_changes_nothing(monkeypatch) -> None:
    """A helper that dies at once: the sampling process compiles (here: loads) the callbacks itself."""
    design = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
    model = noncentred.NativeNonCentred.from_design(design, bm.priors.default_for_design(design))
    expected = model.logp_and_grad(model.start)
    noncentred_kernels.noncentred_callbacks.cache_clear()
    noncentred_kernels.family_logp_cfunc.cache_clear()
    monkeypatch.setattr(precompile, "is_cached", lambda kind: False)
    real_popen = subprocess.Popen
    monkeypatch.setattr(precompile.subprocess, "Popen",
                        lambda args, **kw: real_popen([sys.executable, "-c", "raise SystemExit(3)"], **kw))
    helper = precompile.start("family")
    assert helper is not None
    helper.wait()
    assert not precompile.helping("family")
    value, grad = model.logp_and_grad(model.start)
    assert value == expected[0] and np.array_equal(grad, expected[1])
    assert "family" not in precompile._helpers  # waited for and forgotten


def _sleeping_helpers(monkeypatch) -> list:
    """Helpers that never finish on their own (a sleep), whatever is not cached."""
    started = []
    real_popen = subprocess.Popen

    def popen(args, **kw):
        started.append(real_popen([sys.executable, "-c", "import time; time.sleep(120)"], **kw))
        return started[-1]

    monkeypatch.setattr(precompile, "is_cached", lambda kind: False)
    monkeypatch.setattr(precompile, "usable_cores", lambda: 2)
    monkeypatch.setattr(precompile.subprocess, "Popen", popen)
    return started


def test_a_helper_too_slow_is_stopped(monkeypatch) -> None:
    started = _sleeping_helpers(monkeypatch)
    monkeypatch.setattr(precompile, "WAIT_SECONDS", 0.5)
    assert precompile.start("family") is started[0] and precompile.helping("family")
    precompile.wait("family")
    assert started[0].returncode is not None and not precompile.helping("family")


def test_a_helper_for_a_density_the_model_does_not_use_is_stopped(monkeypatch) -> None:
    """Should the kind guessed before the fit be wrong (here forced: the integrated gaussian density
    for a binomial model), the helper is stopped once the model is built, not left running."""
    import importlib

    sample_module = importlib.import_module("bayesmlm.bayes.sample")
    started = _sleeping_helpers(monkeypatch)
    monkeypatch.setattr(sample_module, "_start_helper",
                        lambda design, spec, kind=None: "marginal" if precompile.start("marginal") else None)
    post = bm.sample("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"),
                     family="binomial", priors="default", draws=50, tune=50, chains=1, seed=1, progressbar=False)
    assert post.family.name == "binomial"
    assert len(started) == 1 and started[0].returncode is not None  # killed and reaped, not waited for
    assert precompile._helpers == {}


def test_the_kind_started_is_the_density_sampled() -> None:
    """With the priors known before the fit, the helper compiles the density the model samples."""
    import importlib

    from bayesmlm.design import build_design

    sample_module = importlib.import_module("bayesmlm.bayes.sample")
    sleep = bm.datasets.load("sleepstudy")
    gaussian = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    priors = bm.priors.default_for_design(gaussian)
    cases = [(gaussian, priors, "marginal")]
    student = bm.priors.PriorSpec(dict(priors.items()))
    student["Days"] = bm.priors.StudentT(nu=4.0, mu=10.0, sigma=10.0)
    cases.append((gaussian, student, "family"))  # beta sampled: the family density
    no_fixed = build_design("Reaction ~ 0 + (1 | Subject)", sleep)
    cases.append((no_fixed, None, "family"))
    for design, spec, kind in cases:
        calls = []
        original = precompile.start
        try:
            precompile.start = lambda k: calls.append(k)  # records the kind, starts nothing
            sample_module._start_helper(design, spec)
        finally:
            precompile.start = original
        assert calls == [kind]


def test_one_usable_core_means_no_helper(monkeypatch) -> None:
    monkeypatch.setattr(precompile, "is_cached", lambda kind: False)
    monkeypatch.setattr(precompile, "usable_cores", lambda: 1)
    assert precompile.start("family") is None


def test_unknown_cache_interface_means_no_helper(monkeypatch) -> None:
    import numba.core.caching

    def broken(*args, **kwargs):
        raise AttributeError("an internal interface changed")

    monkeypatch.setattr(numba.core.caching, "FunctionCache", broken)
    assert precompile.is_cached("family") is True
    assert precompile.start("family") is None


AWAIT = """
import sys
from bayesmlm.bayes import precompile
precompile._PARENT = {parent}
print(precompile.await_share(timeout={timeout}))
"""


def _await_share(parent: str, timeout: float, close_input: bool) -> tuple[str, float]:
    import time

    start = time.perf_counter()
    helper = subprocess.Popen([sys.executable, "-c", AWAIT.format(parent=parent, timeout=timeout)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if close_input:
        helper.stdin.close()
    out = helper.stdout.read()
    helper.wait(timeout=120)
    if not close_input:
        helper.stdin.close()
    return out.strip().splitlines()[-1], time.perf_counter() - start


def test_a_helper_compiles_its_callback_when_told_and_gives_up_otherwise() -> None:
    """await_share: True as soon as the sampling process closes the helper's input; False (nothing
    compiled) after the timeout, and at once when the process that started it is not its parent."""
    told, told_s = _await_share("__import__('os').getppid()", 60.0, close_input=True)
    assert told == "True" and told_s < 30.0
    untold, untold_s = _await_share("__import__('os').getppid()", 1.0, close_input=False)
    assert untold == "False" and untold_s >= 1.0
    orphan, orphan_s = _await_share("-1", 60.0, close_input=False)  # a parent that is not this one: gone
    assert orphan == "False" and orphan_s < 30.0


def test_waiting_tells_the_helper_first(monkeypatch) -> None:
    """wait() closes the helper's input before waiting for it, so a helper waiting for this process's
    share never keeps this process waiting."""
    monkeypatch.setattr(precompile, "is_cached", lambda kind: False)
    monkeypatch.setattr(precompile, "usable_cores", lambda: 2)
    real_popen = subprocess.Popen
    waits_for_input = "import sys; sys.stdin.read()"
    monkeypatch.setattr(precompile.subprocess, "Popen",
                        lambda args, **kw: real_popen([sys.executable, "-c", waits_for_input], **kw))
    helper = precompile.start("family")
    assert helper is not None and precompile.helping("family")
    precompile.wait("family")
    assert helper.returncode == 0 and not precompile.helping("family")
