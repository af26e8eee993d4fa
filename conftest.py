"""Objects the API docstrings' examples share, so each example shows only its own step.

Docstrings after :func:`bayesmlm.sample` use ``df`` (sleepstudy), ``fit`` (its lmer fit) and
``post`` (the posterior from ``sample``'s example), as a reader who ran that example has them.
"""

from __future__ import annotations

import functools
import warnings

import pytest


@functools.cache
def _sleepstudy_objects() -> dict:
    import bayesmlm as bm

    df = bm.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SamplingWarning)
        post = bm.sample(formula, df, priors="default", draws=300, chains=2, seed=1, progressbar=False)
    return {"bm": bm, "df": df, "fit": bm.lmer(formula, df), "post": post}


@pytest.fixture(autouse=True)
def _shared_example_objects(request: pytest.FixtureRequest) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        request.getfixturevalue("doctest_namespace").update(_sleepstudy_objects())
