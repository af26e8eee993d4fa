"""Compile a sampler's log-density callback in a helper process while the frequentist fit runs.

Numba compiles one function at a time in a process (a global lock), so on a machine whose disk
cache lacks the kernels a model needs, ``bm.sample`` would compile the frequentist engine's kernels
(for the empirical priors or the centring) and then the sampler's callbacks, one after the other:
most of a first run. With a second core, :func:`start` runs a helper process meanwhile, which
imports only the kernels' modules and compiles the log-density callback of that kind of density into
the shared Numba disk cache. For the non-centred densities the work is split: the helper compiles
its share of the kernels, this process its own after the frequentist fit, then tells the helper
(:func:`share_done`, closing the helper's input), which compiles the callback, loading this
process's share from the cache (:func:`await_share`), while this process compiles the expand
callback. This process then waits for the helper (:func:`wait`) and loads the callback from the
cache.

Nothing here changes a result: the helper only writes Numba's cache, where this process would have
written the same kernel. Where the cache already holds the callback, where this process may use
one core only (:func:`usable_cores`), where the helper fails or is too slow
(:data:`WAIT_SECONDS`), or where Numba's cache cannot be read this way, the callback is compiled
(or loaded) here as before; a helper compiling a density the model turns out not to use is
stopped (:func:`cancel`). The helper waits for nothing but this process's word (or its exit), so
this process never waits on the helper longer than the helper's own compilation.

Examples
--------
>>> sorted(KINDS)
['collapsed', 'family', 'marginal']
>>> helping("family")   # no helper started
False
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time

__all__ = ["KINDS", "start", "wait", "cancel", "helping", "share_done", "await_share", "is_cached", "usable_cores"]

KINDS = {
    "collapsed": ("bayesmlm.bayes.native", "_logp_callback", "collapsed_logp_cfunc"),
    "family": ("bayesmlm.bayes.noncentred_kernels", "_family_logp_callback", "family_logp_in_helper"),
    "marginal": ("bayesmlm.bayes.noncentred_kernels", "_marginal_logp_callback", "marginal_in_helper"),
}
"""Kind of compiled density: (module, the log-density callback's Python function, what the helper
runs: the function that compiles the callback, or its share of the kernels and then the callback)."""

WAIT_SECONDS = 300.0
"""Longest wait for a helper before compiling here instead."""

_helpers: dict[str, subprocess.Popen] = {}


def is_cached(kind: str) -> bool:
    """Whether Numba's disk cache holds the log-density callback of ``kind`` for this machine and source.

    True where that cannot be told (an internal Numba interface changed): the callback is then
    compiled here, as without a helper."""
    module, name, _ = KINDS[kind]
    try:
        import numba
        from numba.core.caching import FunctionCache
        from numba.core.registry import cpu_target

        from .nutpie_bridge import LOGP_SIG

        if numba.config.DISABLE_JIT:
            return True
        cache = FunctionCache(getattr(importlib.import_module(module), name))
        key = cache._index_key(LOGP_SIG, cpu_target.target_context.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001  (an internal interface: unknown means no helper)
        return True


def share_done(kind: str) -> None:
    """Tell the helper compiling ``kind`` that this process has compiled its share of the kernels (or
    will not): the helper then compiles the callback (:func:`await_share`). Closes its input."""
    helper = _helpers.get(kind)
    if helper is not None:
        _close_input(helper)


def await_share(timeout: float | None = None) -> bool:
    """In a helper: wait until the sampling process says its share of the kernels is compiled (its end
    of the helper's input closes: :func:`share_done`, or it has exited), so that the callback compiled
    next loads them from the cache rather than compiling them a second time. False (the callback is
    then not compiled) when the sampling process has gone, or after ``timeout`` seconds
    (:data:`WAIT_SECONDS`): a sampling process that still needs the callback compiles it itself."""
    closed = threading.Event()

    def read_to_end() -> None:
        try:
            sys.stdin.buffer.read()
        except (OSError, ValueError, AttributeError):
            pass
        closed.set()

    threading.Thread(target=read_to_end, daemon=True).start()
    deadline = time.monotonic() + (WAIT_SECONDS if timeout is None else timeout)
    while not closed.wait(0.1):
        if time.monotonic() > deadline or not _parent_alive():
            return False
    return _parent_alive()


_PARENT = None
"""The sampling process's id, in a helper (set by the helper's code)."""


def _parent_alive() -> bool:
    return _PARENT is None or os.getppid() == _PARENT


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system reports it; container CPU
    quotas are not read)."""
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


_HELPER_CODE = """
import os, sys, types
parent = {parent!r}
for name in ("bayesmlm", "bayesmlm.bayes"):  # this copy's packages, without running their __init__ (which
    package = types.ModuleType(name)        # imports the whole library): the kernels' modules only
    package.__path__ = [os.path.join(parent, *name.split("."))]
    sys.modules[name] = package
from bayesmlm.bayes import precompile
precompile._PARENT = {pid!r}
precompile._compile({kind!r})
os._exit(0)  # the cache is written; an interpreter's orderly exit would keep the waiting process ~1 s
"""


def start(kind: str) -> subprocess.Popen | None:
    """Start compiling the log-density callback of ``kind`` in a helper process, unless it is cached,
    a helper for it runs already, or this process may use only one core. Returns the helper or None."""
    if helping(kind):
        return _helpers[kind]
    wait(kind)  # a helper that finished unwaited for
    if usable_cores() < 2 or not sys.executable or getattr(sys, "frozen", False) or is_cached(kind):
        return None
    parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:  # -P: not the working directory first on the helper's path
        helper = subprocess.Popen([sys.executable, "-P", "-c", _HELPER_CODE.format(parent=parent, kind=kind, pid=os.getpid())],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except Exception:  # noqa: BLE001  (no helper: this process compiles, as without one)
        return None
    _helpers[kind] = helper
    return helper


def helping(kind: str) -> bool:
    """Whether a helper started by :func:`start` is still compiling ``kind``."""
    helper = _helpers.get(kind)
    return helper is not None and helper.poll() is None


def cancel(kind: str) -> None:
    """Stop the helper compiling ``kind`` (a model that turned out not to use it)."""
    helper = _helpers.pop(kind, None)
    if helper is not None:
        if helper.poll() is None:
            helper.kill()
        helper.wait()
        _close_input(helper)


def wait(kind: str) -> None:
    """Wait for the helper compiling ``kind``, if one was started (at most :data:`WAIT_SECONDS`); it is
    told first that this process's share is done (:func:`share_done`), whether compiled or not."""
    share_done(kind)
    helper = _helpers.pop(kind, None)
    if helper is None:
        return
    try:
        helper.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.wait()


def _close_input(helper: subprocess.Popen) -> None:
    if helper.stdin is not None and not helper.stdin.closed:
        try:
            helper.stdin.close()
        except OSError:  # a helper that has gone: nothing to tell
            pass


def _compile(kind: str) -> None:
    module, _, builder = KINDS[kind]
    getattr(importlib.import_module(module), builder)()
