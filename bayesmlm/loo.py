"""Model comparison by approximate leave-one-out cross-validation (ArviZ's PSIS-LOO).

``loo_compare`` ranks posteriors of different models of the same rows (the
same observed response, row by row; the formulas may differ) by expected log
predictive density and says, in plain words, when the Pareto k
diagnostic makes an estimate unreliable (k above ArviZ's threshold for the
number of draws, usually about 0.7): which model, how many observations, and
what to do.

Examples
--------
>>> import warnings, bayesmlm as bm
>>> df = bm.datasets.load("sleepstudy")
>>> kw = dict(priors="default", draws=300, tune=300, chains=2, seed=1, progressbar=False)
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     models = {"slopes": bm.sample("Reaction ~ Days + (Days | Subject)", df, **kw),
...               "intercepts": bm.sample("Reaction ~ Days + (1 | Subject)", df, **kw)}
...     table = bm.loo_compare(models)
>>> table.index.tolist()
['slopes', 'intercepts']
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd

from .errors import DataError, SamplingWarning
from .priors.rules import require_same_data

__all__ = ["loo_compare", "pareto_k_message"]


def pareto_k_message(name: str, pareto_k: np.ndarray, threshold: float) -> str | None:
    """A plain-language warning when some observations have a high Pareto k, else None."""
    k = np.asarray(pareto_k).reshape(-1)
    bad = int(np.sum(k > threshold))
    if bad == 0:
        return None
    worst = np.argsort(k)[::-1][: min(bad, 5)]
    return (
        f"model {name!r}: {bad} of {k.size} observations ({bad / k.size:.1%}) have Pareto k above {threshold:.2f} "
        f"(worst rows {', '.join(map(str, worst))}, k up to {k.max():.2f}). Leaving each of them out changes the "
        "posterior too much for the LOO approximation, so this model's LOO estimate is unreliable; they are "
        "usually influential points or groups with few rows. Check them, or refit leaving them out (exact LOO), "
        "or use K-fold cross-validation."
    )


def loo_compare(models: dict, warn: bool = True) -> pd.DataFrame:
    """Rank models by PSIS-LOO expected log predictive density.

    Parameters
    ----------
    models : dict of str -> BayesFit
        Posteriors of models fitted to the same rows -- the same response
        values in the same order; formulas may differ -- each with its
        pointwise log-likelihood (stored by ``bm.sample`` by default).
    warn : bool
        Issue a :class:`~bayesmlm.errors.SamplingWarning` for high Pareto k.

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison (``elpd``, ``p``, ``elpd_diff``, ``dse``, ``weight``,
        ...) with an added ``pareto_k_bad`` count per model; best model first.

    Raises
    ------
    DataError
        When a model has no pointwise log-likelihood, or when the models were
        fitted to different rows: the message names the model and says how its
        data differ from the first model's (row count, response values).

    Examples
    --------
    With ``df`` (sleepstudy) and ``post`` from the example of :func:`bayesmlm.sample`, and
    ``fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)``:

    >>> simple = bm.sample("Reaction ~ Days + (1 | Subject)", df, priors="default", draws=300,
    ...                    chains=2, seed=1, progressbar=False)
    >>> table = loo_compare({"slopes": post, "intercepts": simple}, warn=False)
    >>> table.index[0]  # the varying-slope model predicts better
    'slopes'
    """
    if len(models) < 2:
        raise ValueError(f"loo_compare needs two or more models, got {len(models)}")
    for name, post in models.items():
        if "log_likelihood" not in post.idata.children:
            raise DataError(
                f"model {name!r} has no pointwise log-likelihood; refit it with bm.sample(..., log_likelihood=True)"
            )
    # Different formulas are fine; the observed response, row by row, must be the same.
    require_same_data({name: post.design for name, post in models.items()}, "loo_compare", parts=("rows", "response"))
    bad = {}
    for name, post in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = az.loo(post.idata, pointwise=True)
        message = pareto_k_message(name, loo.pareto_k, loo.good_k)
        bad[name] = int(np.sum(np.asarray(loo.pareto_k) > loo.good_k))
        if message and warn:
            warnings.warn(message, SamplingWarning, stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare({name: post.idata for name, post in models.items()}, round_to="none")
    table["pareto_k_bad"] = pd.Series(bad)
    return table
