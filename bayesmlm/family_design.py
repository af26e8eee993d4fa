"""The design of a model with a response family: glmer's response parsing, for the Bayesian layer.

``bm.sample(formula, data, family=...)`` reads the response forms of ``bm.glmer``
(0/1 or two-level responses, ``cbind(successes, failures)``, proportions with
``weights=`` the trials, ``offset(...)`` terms and ``offset=``) through
:func:`bayesmlm.freq.glmer.glmm_design`, the one place they are parsed, and adds
brms's ``trials=`` (the response is then a count of successes). The design it
returns carries the family (``design.family``) and a :class:`GlmResponse`
(``design.glm``): response, trials, weights and offset, which the compiled
non-centred density, the PyMC model, predictions and the pointwise
log-likelihood read.

Examples
--------
>>> import bayesmlm as bm
>>> d = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
>>> d.family, d.glm.trials[:3].tolist(), d.glm.successes[:3].tolist()
(Family('binomial', link='logit'), [14.0, 12.0, 9.0], [2.0, 3.0, 4.0])
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .design import Design
from .errors import DataError
from .families import Binomial, Family, get_family

__all__ = ["GlmResponse", "family_design", "sampling_family", "response_label", "BAYES_FAMILIES"]

BAYES_FAMILIES = ("gaussian", "student", "lognormal", "Gamma", "bernoulli", "binomial", "poisson", "negbinomial")
"""Families ``bm.sample`` fits."""

_TRIALS_COLUMN = "bm_trials_"


@dataclass(frozen=True)
class GlmResponse:
    """What a family's likelihood needs besides the linear predictor.

    Attributes
    ----------
    y : ndarray
        The response as glm's (a binomial proportion).
    trials : ndarray
        Binomial trials (1 for other families).
    weights : ndarray
        Multiply each observation's log-likelihood.
    offset : ndarray
        Added to the linear predictor.
    offset_terms : list of str
        ``offset(...)`` expressions of the formula (evaluated again on new data).
    """

    y: np.ndarray
    trials: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    offset_terms: list

    @property
    def successes(self) -> np.ndarray:
        """Binomial successes ``y * trials``, rounded."""
        return np.round(self.y * self.trials)


def sampling_family(family: str | Family, link: str | None = None) -> Family:
    """The family object ``bm.sample`` uses: the Gamma with the log link unless another is asked for.

    Examples
    --------
    >>> sampling_family("gamma").link.name, sampling_family("bernoulli").name
    ('log', 'binomial')
    """
    if isinstance(family, str) and family.strip().lower() == "gamma" and link is None:
        link = "log"
    return get_family(family, link)


def family_design(formula: str, data: pd.DataFrame, family: str | Family, *, link: str | None = None,
                  trials=None, weights=None, offset=None, na_action: str = "error") -> Design:
    """The design of a non-gaussian model, carrying its family and :class:`GlmResponse`.

    Parameters
    ----------
    formula : str
        lme4 formula; the response forms of :func:`bayesmlm.glmer`.
    data : pandas.DataFrame
    family : str or Family
        See :data:`BAYES_FAMILIES`; ``"bernoulli"`` is the binomial with one trial.
    link : str, optional
    trials : str or array-like, optional
        Binomial only: the number of trials per row (a column name or values), the response
        then being the count of successes (brms's ``y | trials(n)``).
    weights : str or array-like, optional
        Multiply each row's log-likelihood; for a binomial proportion without ``cbind`` or
        ``trials`` they are the trials (glmer's convention).
    offset : str or array-like, optional
    na_action : {"error", "drop"}

    Returns
    -------
    Design
    """
    from .freq.glmer import _Parts, glmm_design

    fam = sampling_family(family, link)
    original = formula
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"a {fam.name} model needs a pandas DataFrame, got {type(data).__name__}"
                        " (for a Dask DataFrame: ddf.compute())")
    binomial = isinstance(fam, Binomial)
    if trials is not None:
        if not binomial:
            raise ValueError(f"trials= is for the binomial family only, not {fam.name}")
        if _Parts(formula).cbind:
            raise ValueError("give the trials either as cbind(successes, failures) or as trials=, not both")
        data = data.copy()
        if isinstance(trials, str):
            if trials not in data.columns:
                raise DataError(f"trials column {trials!r} is not in the data; available columns: "
                                f"{', '.join(map(str, data.columns))}")
            data[_TRIALS_COLUMN] = data[trials]
        else:
            values = np.asarray(trials, dtype=float).reshape(-1)
            if len(values) != len(data):
                raise DataError(f"trials has {len(values)} values but the data have {len(data)} rows")
            data[_TRIALS_COLUMN] = values
        lhs, rhs = formula.split("~", 1)
        formula = f"cbind({lhs.strip()}, {_TRIALS_COLUMN} - ({lhs.strip()})) ~{rhs}"
    cbind = binomial and _Parts(formula).cbind is not None
    if cbind and weights is not None:
        raise NotImplementedError(
            "weights= with a cbind() or trials= binomial response is not implemented in bm.sample: "
            "give the trials only, or expand the rows"
        )
    parts, design, y, wt, off, index = glmm_design(formula, data, fam, weights, offset, na_action)
    if binomial:
        trials_, weights_ = wt.astype(float), np.ones(len(y))
    else:
        trials_, weights_ = np.ones(len(y)), wt.astype(float)
    design.formula = replace(design.formula, text=original)  # the user's formula, not the internal response column
    design.family = fam
    design.glm = GlmResponse(np.asarray(y, dtype=float), trials_, weights_, np.asarray(off, dtype=float), list(parts.offsets))
    design.index = index
    return design


def response_label(design: Design) -> str:
    """The response as the user wrote it (the left-hand side of the formula).

    A family design's response column is internal (``cbind(...)`` evaluated), so labels
    read the formula text instead.

    Examples
    --------
    >>> import bayesmlm as bm
    >>> response_label(family_design("cbind(incidence, size - incidence) ~ period + (1 | herd)",
    ...                              bm.datasets.load("cbpp"), "binomial"))
    'cbind(incidence, size - incidence)'
    """
    if getattr(design, "glm", None) is None:
        return design.formula.response.strip()
    return design.formula.text.split("~", 1)[0].strip()
