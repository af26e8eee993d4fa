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
from bayesmlm.bayes import noncentred, precompile
from bayesmlm.family_design import family_design

COLD_RUN = """
import json, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
import bayesmlm as bm
from bayesmlm.bayes import noncentred, precompile

cold = not precompile.is_cached("family")
rng = np.random.default_rng(3)
n = 2000
a, b = rng.integers(0, 8, n), rng.integers(0, 6, n)
x = rng.normal(size=n)
eta = 0.4 + 0.3 * x + rng.normal(0, 0.3, 8)[a] + rng.normal(0, 0.2, 6)[b] + rng.normal(0, 0.1, 6)[b] * x
df = pd.DataFrame({"a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b], "x": x, "y": rng.poisson(np.exp(eta))})
post = bm.sample("y ~ x + (1 | a) + (x | b)", df, family="poisson", priors="default", draws=300, tune=300,
                 chains=2, seed=1, progressbar=False)
print(json.dumps({
    "cold": cold, "cached": precompile.is_cached("family"),
    "loaded": noncentred.family_logp_cfunc().cache_hits,
    "rows": len(noncentred._family_rows.signatures), "through": len(noncentred._through_scales.signatures),
    "slope": float(post.fixef().loc["x", "mean"]),
}))
"""


def test_cold_sample_loads_the_callback_the_helper_compiled(tmp_path) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("the helper runs only with a second core")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    out = subprocess.run([sys.executable, "-c", COLD_RUN], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cold"] and result["cached"]
    assert result["loaded"] == 1  # the log density came from the helper's cache entry, not compiled here
    assert result["rows"] == 1 and result["through"] == 1  # one specialisation: the callback reused them
    assert abs(result["slope"] - 0.3) < 0.1


def test_a_failed_helper_changes_nothing(monkeypatch) -> None:
    """A helper that dies at once: the sampling process compiles (here: loads) the callbacks itself."""
    design = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
    model = noncentred.NativeNonCentred.from_design(design, bm.priors.default_for_design(design))
    expected = model.logp_and_grad(model.start)
    noncentred.noncentred_callbacks.cache_clear()
    noncentred.family_logp_cfunc.cache_clear()
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


def test_unknown_cache_interface_means_no_helper(monkeypatch) -> None:
    import numba.core.caching

    def broken(*args, **kwargs):
        raise AttributeError("an internal interface changed")

    monkeypatch.setattr(numba.core.caching, "FunctionCache", broken)
    assert precompile.is_cached("family") is True
    assert precompile.start("family") is None
