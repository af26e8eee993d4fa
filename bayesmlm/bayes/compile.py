"""Hand a PyMC model to nutpie with PyTensor's own compiled log density.

``nutpie.compile_pymc_model`` turns the log density into a Numba C callback,
which it cannot cache between processes: on the collapsed models that
compilation took about 37 s of a 50 s run. The collapsed model has only a
handful of parameters, so the cost of crossing from nutpie into Python per
gradient is small; here the log density and its gradient are compiled once by
``pytensor.function`` (its default backend caches compiled code on disk) and
passed to nutpie through ``nutpie.compiled_pyfunc.from_pyfunc``. ``pm.Data``
variables become explicit inputs, so ``with_data`` swaps data without
recompiling (used by simulation-based calibration).

Examples
--------
>>> import numpy as np, pymc as pm
>>> with pm.Model() as m:
...     x = pm.Data("x", np.array([0.5, 1.5]))
...     mu = pm.Normal("mu", 0.0, 1.0)
...     _ = pm.Potential("lik", -0.5 * ((x - mu) ** 2).sum())
>>> compiled = compile_for_nutpie(m)
>>> import nutpie
>>> trace = nutpie.sample(compiled, draws=1000, tune=300, chains=2, seed=1, progress_bar=False)
>>> abs(float(trace.posterior["mu"].mean()) - 2 / 3) < 0.1  # posterior N(2/3, 1/3)
True
"""

from __future__ import annotations

import threading

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.initial_point import make_initial_point_fn
from pymc.pytensorf import join_nonshared_inputs
from pytensor.graph.replace import graph_replace

__all__ = ["compile_for_nutpie"]


def _data_inputs(model: pm.Model) -> dict:
    """A fresh symbolic input for every ``pm.Data`` variable, keyed by the shared variable."""
    return {var: var.type(name=var.name) for var in model.data_vars}


def compile_for_nutpie(model: pm.Model):
    """A nutpie model whose log density, gradient and draws come from compiled PyTensor functions.

    Parameters
    ----------
    model : pymc.Model
        Continuous free variables only (NUTS).

    Returns
    -------
    nutpie compiled model
        Accepts ``with_data(name=array)`` for every ``pm.Data`` of the model.
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    point = model.initial_point()
    value_vars = model.value_vars
    data = _data_inputs(model)
    data_names = [var.name for var in data]

    def on_flat_vector(outputs: list):
        """Compile ``outputs`` as a function of the flat unconstrained vector and the data."""
        joined, flat = join_nonshared_inputs(point, outputs, value_vars)
        return pytensor.function([flat, *data.values()], graph_replace(joined, data, strict=False), on_unused_input="ignore")

    def flatten(values: dict) -> np.ndarray:
        return np.concatenate([np.asarray(values[v.name], dtype=np.float64).ravel() for v in value_vars])

    logp = model.logp()
    logp_fn = on_flat_vector([logp, pt.concatenate([g.ravel() for g in pt.grad(logp, value_vars)])])
    # Free variables on their own scale, and every Deterministic.
    kept = [v for v in model.unobserved_value_vars if v.name in model.named_vars]
    names = [v.name for v in kept]
    expand_fn = on_flat_vector(kept)
    start = flatten(point)
    values = {name: np.asarray(var.get_value(), dtype=np.float64) for name, var in zip(data_names, data)}
    shapes = [np.shape(out) for out in expand_fn(start, *values.values())]

    # nutpie asks for one function per chain and runs chains in threads; a PyTensor
    # function keeps its inputs in its own storage, so each chain gets its own copy.
    def make_logp():
        fn = logp_fn.copy()

        def logp_and_grad(x, /, **shared):
            value, gradient = fn(x, *(shared[n] for n in data_names))
            return float(value), np.asarray(gradient, dtype=np.float64)

        return logp_and_grad

    def make_expand(seed1, seed2, chain):
        fn = expand_fn.copy()

        def expand(x, /, **shared):
            return {n: np.asarray(v, dtype=np.float64) for n, v in zip(names, fn(x, *(shared[k] for k in data_names)))}

        return expand

    jittered = make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs), return_transformed=True)
    # One compiled PyTensor function serves every chain's initial point, and nutpie's chains start in
    # threads: unguarded, two chains at once can find its output storage empty ("'NoneType' object has
    # no attribute 'shape'", seen in a full test run), so they take turns.
    lock = threading.Lock()

    def initial_point(seed):
        with lock:
            return flatten(jittered(seed))

    dims = {name: tuple(model.named_vars_to_dims[name]) for name in names if name in model.named_vars_to_dims}
    return from_pyfunc(
        ndim=start.size,
        make_logp_fn=make_logp,
        make_expand_fn=make_expand,
        expanded_dtypes=[np.dtype(np.float64)] * len(names),
        expanded_shapes=shapes,
        expanded_names=names,
        coords={k: list(v) for k, v in model.coords.items() if any(k in d for d in dims.values())},
        dims=dims,
        shared_data=values,
        make_initial_point_fn=initial_point,
    )
