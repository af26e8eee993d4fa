"""Exception and warning classes raised by bayesmlm.

Every user-facing error says *what* is wrong (which column, level, key or term)
and *what to do* about it. The classes subclass the built-in ones users already
catch (``ValueError``, ``UserWarning``) so existing handlers keep working.

Examples
--------
>>> issubclass(DataError, ValueError), issubclass(SingularFitWarning, UserWarning)
(True, True)
>>> import bayesmlm as bm, pandas as pd
>>> try:
...     bm.lmer("y ~ x + (1 | g)", pd.DataFrame({"y": [1.0, 2.0], "x": [0.0, 1.0]}))
... except bm.DataError as error:
...     print(error)
column(s) 'g' used in the formula are not in the data; available columns: y, x
"""

from __future__ import annotations


class BayesMLMError(Exception):
    """Base class of all bayesmlm errors."""


class FormulaError(BayesMLMError, ValueError):
    """The model formula cannot be parsed or does not fit the data."""


class DataError(BayesMLMError, ValueError):
    """The data cannot be used with the formula (missing column, NaN, bad type...)."""


class EngineError(BayesMLMError, ValueError):
    """The requested fitting engine cannot fit this model exactly."""


class SingularFitWarning(UserWarning):
    """A variance component or correlation was estimated on the boundary."""


class ConvergenceWarning(UserWarning):
    """The optimiser stopped without meeting its convergence checks."""


class EngineWarning(UserWarning):
    """The chosen engine stopped at a lower likelihood than lme4's PLS algorithm finds."""


class PriorError(BayesMLMError, ValueError):
    """A prior, a prior specification or a prior file is invalid."""


class SamplingWarning(UserWarning):
    """The sampler finished, but its diagnostics (divergences, R-hat, ESS) need attention."""


class EmpiricalPriorNote(UserWarning):
    """Empirical priors were derived from the same data that is being fitted."""
