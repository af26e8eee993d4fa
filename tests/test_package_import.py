"""The package imports its Bayesian layer on first use, and its public names stay what they were."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("pymc", "pytensor", "arviz", "nutpie", "statsmodels", "matplotlib", "jinja2")


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_frequentist_fits_load_no_bayesian_stack() -> None:
    """``import bayesmlm`` and an lmer or glmer fit leave PyMC, ArviZ, statsmodels and matplotlib
    unloaded (a frequentist script starts in about a second instead of two and a half); the first
    Bayesian name loads them."""
    out = _run(
        f"""
        import sys, warnings
        import bayesmlm as bm
        warnings.simplefilter("ignore")
        bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
        bm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", bm.datasets.load("cbpp"),
                 family="binomial")
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        bm.sample
        print("pymc" in sys.modules)
        """
    )
    assert out.splitlines() == ["[]", "True"]


def test_functions_named_like_their_modules_stay_functions() -> None:
    """``compare``, ``pooling``, ``sensitivity`` and ``report`` are functions in submodules of the same
    name; importing a submodule first (as the report does) must not replace the function."""
    out = _run(
        """
        import bayesmlm as bm
        import bayesmlm.report.figures, bayesmlm.compare, bayesmlm.pooling, bayesmlm.sensitivity
        from bayesmlm import report
        print(all(callable(f) and type(f).__name__ == "function"
                  for f in (bm.compare, bm.pooling, bm.sensitivity, bm.report, report)))
        print(type(bm.priors).__name__, bm.priors.__name__)
        """
    )
    assert out.splitlines() == ["True", "module bayesmlm.priors"]


def test_every_public_name_and_submodule_resolves() -> None:
    """Each name of ``__all__`` loads (lazy ones on first access), ``dir`` lists them, and a submodule
    not yet imported is reached as an attribute, as when the package imported everything."""
    out = _run(
        """
        import bayesmlm as bm
        print(callable(bm.loo.loo_compare), bm.bayes.__name__, bm.files.__name__)  # before anything loads them
        print(hasattr(bm, "data"), getattr(bm, "freq.lmer", None), hasattr(bm, "nothing"))
        listed = set(dir(bm))
        print(sorted(name for name in bm.__all__ if name not in listed or getattr(bm, name) is None))
        print(sorted(name for name in ("sys", "types", "import_module", "TYPE_CHECKING") if hasattr(bm, name)))
        """
    )
    assert out.splitlines() == ["True bayesmlm.bayes bayesmlm.files", "False None False", "[]", "[]"]
