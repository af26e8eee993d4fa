"""BLAS threading for the many small factorizations of profiles, derivatives and refits.

A multi-threaded BLAS slows small dense products down by an order of magnitude
when the cores are shared (threads wait on each other); below a few hundred
rows one thread is both faster and steadier.

Examples
--------
>>> with blas_threads(100):
...     pass
"""

from __future__ import annotations

import contextlib

__all__ = ["blas_threads", "SMALL"]

SMALL = 600
"""Dense systems up to this size are factored with one BLAS thread."""


def blas_threads(size: int):
    """One BLAS thread for systems of at most :data:`SMALL` rows, the default otherwise."""
    if size > SMALL:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
