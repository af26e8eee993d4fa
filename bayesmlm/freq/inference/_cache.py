"""Per-fit memo of derived quantities (Hessians, adjusted covariances, ML refits).

The fit itself is never changed: results live in a weak-keyed table and go
away with the fit.

Examples
--------
>>> class Fit: pass
>>> f = Fit()
>>> cached(f, "answer", lambda: 42), cached(f, "answer", lambda: 0), is_cached(f, "question")
(42, 42, False)
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, TypeVar

__all__ = ["cached", "is_cached"]

T = TypeVar("T")
_MEMO: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def cached(fit: Any, key: str, factory: Callable[[], T]) -> T:
    """``factory()`` computed once per (fit, key)."""
    store = _MEMO.setdefault(fit, {})
    if key not in store:
        store[key] = factory()
    return store[key]


def is_cached(fit: Any, key: str) -> bool:
    """Whether ``cached(fit, key, ...)`` has a value already."""
    return key in _MEMO.get(fit, {})
