"""The public API is documented in numpy style with runnable examples (run by doctest).

``pytest`` collects the package's doctests (``--doctest-modules`` in pyproject.toml);
this test makes sure there is one to run for every public function and class.
"""

from __future__ import annotations

import inspect

import pytest

import bayesmlm as bm

MODULES = [bm, bm.priors, bm.datasets]
PUBLIC = [
    (f"{module.__name__}.{name}", getattr(module, name))
    for module in MODULES
    for name in module.__all__
    if (inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name)))
    and not (inspect.isclass(getattr(module, name)) and issubclass(getattr(module, name), (Exception, Warning)))
]


@pytest.mark.parametrize("name,obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_object_has_a_runnable_example(name: str, obj) -> None:
    doc = inspect.getdoc(obj) or ""
    assert "Examples\n--------" in doc and ">>> " in doc, f"{name} has no Examples section"


@pytest.mark.parametrize("name,obj", [(n, o) for n, o in PUBLIC if inspect.isfunction(o)],
                         ids=[n for n, o in PUBLIC if inspect.isfunction(o)])
def test_public_function_documents_its_parameters(name: str, obj) -> None:
    params = [p for p in inspect.signature(obj).parameters if p not in ("self", "kwargs", "sample_kwargs")]
    doc = inspect.getdoc(obj) or ""
    if params:
        assert "Parameters\n----------" in doc, f"{name} has no Parameters section"


def test_errors_module_shows_the_exception_hierarchy() -> None:
    assert ">>> " in (bm.errors.__doc__ or "")
