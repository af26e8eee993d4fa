"""What the compiled densities share to reach nutpie: the C callback signatures, the packed array, the model.

:mod:`bayesmlm.bayes.native` (the collapsed density) and :mod:`bayesmlm.bayes.noncentred`
(the non-centred density) each pack their model into one float64 array (its first
value is its length), write their own log-density and expand kernels in Numba, and
are handed to nutpie's Rust sampler as C function pointers with these signatures.
:class:`CompiledDensity` holds what both keep about a packed model and builds the
nutpie compiled model from it.

Examples
--------
>>> import numpy as np
>>> from bayesmlm.priors.distributions import HalfNormal
>>> prior_scale(HalfNormal(sigma=2.0))
2.0
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import numba
import numpy as np

from .dims import col_dim, col_dim_b

__all__ = ["LOGP_SIG", "EXPAND_SIG", "ERROR_DEFECT", "blob_at", "packed_matrix", "logp_status", "prior_scale", "add_scale_variables",
           "call_logp", "c_callback", "CompiledDensity"]

LOGP_SIG = numba.types.int64(
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)
"""nutpie's log-density callback: (dim, x, gradient out, log density out, user data) -> code."""
EXPAND_SIG = numba.types.int64(
    numba.types.uint64,
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)
"""nutpie's expand callback: (dim, expanded, x, out, user data) -> code."""
ERROR_DEFECT = -1
"""Callback code for any error in a kernel (a defect, not a region of the posterior): negative, so nutpie
stops and reports it (positive codes are recoverable, like a divergence)."""


@numba.njit(cache=True, error_model="numpy")
def blob_at(user_data):
    """The packed float64 array behind nutpie's ``user_data`` pointer (its first value is its length)."""
    head = numba.carray(user_data, (1,), dtype=np.float64)
    return numba.carray(user_data, (int(head[0]),), dtype=np.float64)


@numba.njit("float64[:, ::1](float64[::1], int64, int64, int64)", cache=True, error_model="numpy")
def packed_matrix(blob, start, rows, cols):
    """A copy of ``blob[start:start + rows * cols]`` as a ``rows x cols`` matrix (one signature, so that a
    literal ``cols`` does not compile a second specialisation).

    A copy rather than ``reshape``, and in both densities loops rather than slice assignments
    and ``@`` on small arrays: those bring Numba's shape checks, error-message formatting and
    BLAS bindings into the compilation, seconds of a first run on an empty cache."""
    out = np.empty((rows, cols))
    for i in range(rows):
        for j in range(cols):
            out[i, j] = blob[start + i * cols + j]
    return out


@numba.njit(cache=True, error_model="numpy")
def logp_status(value, grad, logp):
    """Write the log density ``value`` into nutpie's ``logp``; its code: 4 where ``value`` is not
    finite, 3 where the gradient is not, else 0 (nutpie treats both as divergences)."""
    logp[0] = value
    if not np.isfinite(value):
        return 4
    for i in range(grad.shape[0]):
        if not np.isfinite(grad[i]):
            return 3
    return 0


_DOUBLES = ctypes.POINTER(ctypes.c_double)


def call_logp(callback, x: np.ndarray, blob: np.ndarray) -> tuple[int, float, np.ndarray]:
    """Call a compiled log-density callback from Python as nutpie does: its code, value and gradient."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad, logp = np.empty(x.size), np.full(1, np.nan)
    code = callback.ctypes(x.size, x.ctypes.data_as(_DOUBLES), grad.ctypes.data_as(_DOUBLES),
                           logp.ctypes.data_as(_DOUBLES), blob.ctypes.data_as(ctypes.c_void_p))
    return int(code), float(logp[0]), grad


def c_callback(sig, function):
    """``function`` compiled as a C callback with signature ``sig`` (or loaded from Numba's disk cache).

    The callbacks only call the kernels, each of which Numba has optimised in its own compilation;
    Numba then links them all into the callback and runs its full optimisation over the result once
    more, about half of a callback's compile time, for no measurable gain (the log density's time per
    call is the same). So the callback's own library skips that last full pass (inlining and the
    cheap pass still run); the kernels it calls are compiled as usual. Where Numba's internals differ,
    it is compiled as Numba does by default."""
    try:
        from numba.core import config
        from numba.core.codegen import CPUCodeLibrary
        from numba.core.compiler_lock import global_compiler_lock

        CPUCodeLibrary._optimize_final_module  # noqa: B018  (present, or the default compilation)
    except (ImportError, AttributeError):
        return numba.cfunc(sig, cache=True, error_model="numpy")(function)
    name = function.__qualname__

    with global_compiler_lock:  # no other thread compiles (or swaps the pass) meanwhile
        default_pass = CPUCodeLibrary._optimize_final_module

        def final_pass(library, *args, **kwargs):
            if library.name != name or not _holds_c_wrapper(library):
                return default_pass(library, *args, **kwargs)
            level = config.OPT
            config.OPT = 0  # this library's whole-module pass only
            try:
                return default_pass(library, *args, **kwargs)
            finally:
                config.OPT = level

        CPUCodeLibrary._optimize_final_module = final_pass
        try:
            return numba.cfunc(sig, cache=True, error_model="numpy")(function)
        finally:
            CPUCodeLibrary._optimize_final_module = default_pass


def _holds_c_wrapper(library) -> bool:
    """Whether a Numba library is a C callback's (holds its ``cfunc.`` wrapper), not a kernel's."""
    try:
        return any(f.name.startswith("cfunc.") for f in library._final_module.functions)
    except AttributeError:
        return False


def prior_scale(dist) -> float:
    """A typical value of a positive prior, where sampling starts."""
    params = dist.params()
    if dist.family == "Exponential":
        return 1.0 / params["lam"]
    if dist.family == "Gamma":
        return params["alpha"] / params["beta"]
    if dist.family == "LogNormal":
        return math.exp(params["mu"])
    return params["sigma"]


def add_scale_variables(design, correlated, names: list, shapes: list, dims: dict, coords: dict) -> None:
    """Append the expanded ``sd[F]`` of every factor, then ``cor[F]`` of each factor flagged in ``correlated``."""
    for block in design.blocks:
        F = block.factor
        names.append(f"sd[{F}]")
        shapes.append((block.n_cols,))
        dims[f"sd[{F}]"] = (col_dim(F),)
        coords[col_dim(F)] = list(block.columns)
    for block, corr in zip(design.blocks, correlated):
        if corr:
            F = block.factor
            names.append(f"cor[{F}]")
            shapes.append((block.n_cols, block.n_cols))
            dims[f"cor[{F}]"] = (col_dim(F), col_dim_b(F))
            coords[col_dim_b(F)] = list(block.columns)


@dataclass(frozen=True)
class CompiledDensity:
    """A packed model for a compiled density, and how to read its expanded draws.

    Subclasses set ``_callbacks`` (returns the two C callbacks; or override :meth:`callbacks`
    where they depend on the model) and ``_jitter`` (the half-width of the uniform spread of
    initial points around ``start``).

    Attributes
    ----------
    blob : ndarray
        The nutpie ``user_data``.
    n_dim : int
        Number of unconstrained parameters.
    names, shapes, dims : list, list, dict
        The posterior variables the expand function writes.
    coords : dict
        Coordinates of those dims.
    start : ndarray
        Centre of the random initial points.
    """

    blob: np.ndarray
    n_dim: int
    names: list
    shapes: list
    dims: dict
    coords: dict
    start: np.ndarray

    _callbacks: ClassVar[Callable]
    _jitter: ClassVar[float]

    @property
    def n_expanded(self) -> int:
        return int(sum(math.prod(s) for s in self.shapes))

    def callbacks(self) -> tuple:
        """The log-density and expand C callbacks of this model (Numba ``cfunc`` objects)."""
        return type(self)._callbacks()

    def expand(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The posterior variables at an unconstrained point (through the expand callback nutpie calls)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (self.n_dim,):
            raise ValueError(f"expand needs {self.n_dim} unconstrained values, got shape {x.shape}")
        out = np.empty(self.n_expanded)
        code = self.callbacks()[1].ctypes(self.n_dim, self.n_expanded, x.ctypes.data_as(_DOUBLES),
                                          out.ctypes.data_as(_DOUBLES), self.blob.ctypes.data_as(ctypes.c_void_p))
        if code != 0:
            raise RuntimeError(f"the compiled expand kernel failed (code {code}): a defect, please report it")
        values, t = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = math.prod(shape)
            values[name] = out[t:t + size].reshape(shape)
            t += size
        return values

    def for_nutpie(self):
        """A nutpie compiled model calling the cached C callbacks."""
        import pandas as pd
        from nutpie.compile_pymc import CompiledPyMCModel

        logp_callback, expand_callback = self.callbacks()
        sizes = [math.prod(s) for s in self.shapes]
        slices = [slice(int(a), int(a + b)) for a, b in zip(np.cumsum([0] + sizes[:-1]), sizes)]
        start, jitter = self.start, self._jitter

        def initial_point(seed):
            rng = np.random.default_rng(seed)
            return start + rng.uniform(-jitter, jitter, size=start.size)

        return CompiledPyMCModel(
            _n_dim=self.n_dim,
            dims=self.dims,
            _coords={k: pd.Index(v) for k, v in self.coords.items()},
            _shapes=dict(zip(self.names, self.shapes)),
            compiled_logp_func=logp_callback,
            compiled_expand_func=expand_callback,
            initial_point_func=initial_point,
            shared_data={},
            shared_var_keys={},
            user_data=self.blob,
            n_expanded=self.n_expanded,
            shape_info=(self.names, slices, self.shapes),
            logp_func=None,
            expand_func=None,
        )
