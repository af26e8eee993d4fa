"""Response families of generalized linear (mixed) models, one object each.

A :class:`Family` bundles what every consumer needs and none re-derives: the
link (with its inverse and derivative), the variance function, deviance
residuals, the pointwise log-likelihood, R's ``aic`` (``-2`` log-likelihood
with all constants, which lme4's Laplace deviance adds), starting values and
the checks of a response. :func:`bayesmlm.glmer` (PIRLS and the Laplace or
quadrature deviance), predictions (``type="response"``) and the Bayesian layer
all take a family object.

The formulas are R's (``stats::binomial()``, ``poisson()``, ``Gamma()``,
``MASS::negative.binomial()``), including R's clamping of the inverse links,
so that deviances and log-likelihoods agree with lme4 to rounding. They are
cross-checked in the tests against statsmodels' GLM families
(:meth:`Family.to_statsmodels` gives the equivalent statsmodels object) and
against scipy's distributions. The link and log-density kernels are also
available compiled by Numba (:mod:`bayesmlm.family_kernels`), keyed by
:attr:`Link.code` and :attr:`Family.code`.

Examples
--------
>>> import numpy as np
>>> fam = get_family("binomial")
>>> fam, fam.link.name
(Family('binomial', link='logit'), 'logit')
>>> mu = fam.link.inverse(np.array([0.0, 2.0]))
>>> mu.round(4).tolist(), fam.variance(mu).round(4).tolist()
([0.5, 0.8808], [0.25, 0.105])
>>> round(float(fam.loglik_obs(np.array([0.3]), np.array([0.5]), trials=np.array([10.0]))[0]), 4)
-2.144
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from .errors import DataError

__all__ = ["Link", "Family", "get_family", "get_link", "FAMILY_NAMES", "LINK_NAMES", "describe_rows"]

_EPS = np.finfo(float).eps
_LOGIT_THRESH = 30.0
_PROBIT_THRESH = -special.ndtri(_EPS)


# ----------------------------------------------------------------------------- links
def _logit_link(mu):
    return np.log(mu / (1.0 - mu))


def _logit_inverse(eta):
    tmp = np.exp(np.clip(eta, -_LOGIT_THRESH, _LOGIT_THRESH))
    tmp = np.where(eta < -_LOGIT_THRESH, _EPS, np.where(eta > _LOGIT_THRESH, 1.0 / _EPS, tmp))
    return tmp / (1.0 + tmp)


def _logit_mu_eta(eta):
    e = np.exp(-np.abs(np.clip(eta, -_LOGIT_THRESH, _LOGIT_THRESH)))
    out = e / (1.0 + e) ** 2
    return np.where(np.abs(eta) > _LOGIT_THRESH, _EPS, out)


def _probit_inverse(eta):
    return special.ndtr(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))


def _probit_mu_eta(eta):
    return np.maximum(np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi), _EPS)


def _cloglog_inverse(eta):
    return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), _EPS, 1.0 - _EPS)


def _cloglog_mu_eta(eta):
    eta = np.minimum(eta, 700.0)
    return np.maximum(np.exp(eta) * np.exp(-np.exp(eta)), _EPS)


def _log_inverse(eta):
    with np.errstate(over="ignore"):
        return np.maximum(np.exp(eta), _EPS)


def _inverse_link(mu):
    return 1.0 / mu


def _inverse_mu_eta(eta):
    return -1.0 / (eta * eta)


@dataclass(frozen=True)
class Link:
    """A link function ``eta = g(mu)`` with its inverse and ``d mu / d eta``.

    Vectorised over NumPy arrays. The inverses are clamped as R's
    ``make.link`` clamps them (``mu`` stays strictly inside (0, 1) for the
    binomial links and positive for the log link), so that deviances stay finite.

    Attributes
    ----------
    name : str
        ``"logit"``, ``"probit"``, ``"cloglog"``, ``"log"``, ``"identity"``,
        ``"inverse"`` or ``"sqrt"``.
    code : int
        Key of the compiled kernels in :mod:`bayesmlm.family_kernels`.

    Examples
    --------
    >>> import numpy as np
    >>> link = get_link("cloglog")
    >>> eta = link.link(np.array([0.2, 0.7]))
    >>> link.inverse(eta).round(6).tolist(), bool(np.all(link.mu_eta(eta) > 0))
    ([0.2, 0.7], True)
    """

    name: str
    code: int
    link: callable = field(repr=False, compare=False)
    inverse: callable = field(repr=False, compare=False)
    mu_eta: callable = field(repr=False, compare=False)

    def deriv(self, mu: np.ndarray) -> np.ndarray:
        """``d eta / d mu`` at ``mu`` (the reciprocal of :meth:`mu_eta` at ``g(mu)``)."""
        return 1.0 / self.mu_eta(self.link(mu))

    def to_statsmodels(self):
        """The equivalent ``statsmodels.genmod.families.links`` object."""
        from statsmodels.genmod.families import links

        return {
            "logit": links.Logit,
            "probit": links.Probit,
            "cloglog": links.CLogLog,
            "log": links.Log,
            "identity": links.Identity,
            "inverse": links.InversePower,
            "sqrt": links.Sqrt,
        }[self.name]()


_LINKS = {
    "logit": Link("logit", 0, _logit_link, _logit_inverse, _logit_mu_eta),
    "probit": Link("probit", 1, lambda mu: special.ndtri(mu), _probit_inverse, _probit_mu_eta),
    "cloglog": Link("cloglog", 2, lambda mu: np.log(-np.log1p(-mu)), _cloglog_inverse, _cloglog_mu_eta),
    "log": Link("log", 3, lambda mu: np.log(mu), _log_inverse, _log_inverse),
    "identity": Link("identity", 4, lambda mu: np.asarray(mu, dtype=float), lambda eta: np.asarray(eta, dtype=float),
                     lambda eta: np.ones_like(np.asarray(eta, dtype=float))),
    "inverse": Link("inverse", 5, _inverse_link, _inverse_link, _inverse_mu_eta),
    "sqrt": Link("sqrt", 6, lambda mu: np.sqrt(mu), lambda eta: np.asarray(eta, dtype=float) ** 2,
                 lambda eta: 2.0 * np.asarray(eta, dtype=float)),
}
LINK_NAMES = tuple(_LINKS)


def get_link(name: str | Link) -> Link:
    """A link by name.

    Examples
    --------
    >>> get_link("probit").name
    'probit'
    """
    if isinstance(name, Link):
        return name
    if name not in _LINKS:
        raise ValueError(f"unknown link {name!r}; choose one of {', '.join(LINK_NAMES)}")
    return _LINKS[name]


# ----------------------------------------------------------------------------- helpers
def describe_rows(index, mask: np.ndarray, limit: int = 5) -> str:
    """``"rows 3, 17 and 40"`` / ``"rows 3, 17, 40, 41, 52 (and 7 more)"`` for the flagged rows.

    Examples
    --------
    >>> import numpy as np
    >>> describe_rows(range(10), np.arange(10) % 2 == 1, limit=3)
    'rows 1, 3, 5 (and 2 more)'
    """
    labels = [str(v) for v in np.asarray(list(index), dtype=object)[np.asarray(mask, dtype=bool)]]
    if len(labels) == 1:
        return f"row {labels[0]}"
    if len(labels) <= limit:
        return "rows " + ", ".join(labels[:-1]) + " and " + labels[-1]
    return "rows " + ", ".join(labels[:limit]) + f" (and {len(labels) - limit} more)"


def _as_index(index, n: int):
    return range(n) if index is None else index


def _is_whole(x: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    return np.abs(x - np.round(x)) <= tol


# ----------------------------------------------------------------------------- families
class Family:
    """A GLM response distribution with its link.

    Subclasses implement R's ``variance``, ``dev.resids``, ``aic`` and
    ``initialize`` for one distribution; :func:`get_family` builds them by name.

    Attributes
    ----------
    name : str
        ``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"negative_binomial"`` or ``"gaussian"``.
    link : Link
    has_dispersion : bool
        Whether the family has a scale beyond the mean (lme4's ``useSc``):
        False for binomial and Poisson.
    code : int
        Key of the compiled log-density kernels in :mod:`bayesmlm.family_kernels`.

    Examples
    --------
    >>> import numpy as np
    >>> fam = get_family("poisson")
    >>> y, mu = np.array([0.0, 3.0]), np.array([1.0, 2.0])
    >>> fam.dev_resids(y, mu).round(4).tolist()
    [2.0, 0.4328]
    >>> bool(np.isclose(fam.aic(y, mu), -2 * fam.loglik_obs(y, mu).sum()))
    True
    """

    name = "family"
    code = -1
    default_link = "identity"
    links: tuple[str, ...] = ()
    has_dispersion = False
    aux_params: tuple[str, ...] = ()
    """Names of the family's own parameters in the prior vocabulary (``sigma``, ``nu``, ``phi``, ``shape``)."""
    integer_response = False
    """Whether posterior predictive draws of the response are whole numbers."""

    @property
    def glmer_name(self) -> str:
        """The ``family=`` name that makes :func:`bayesmlm.glmer` and ``bm.sample`` estimate the family's parameters.

        The family's :attr:`name`, except the negative binomial's: ``"negbinomial"`` (a
        ``NegativeBinomial`` object itself holds ``phi`` fixed).

        Examples
        --------
        >>> get_family("negbinomial").glmer_name, get_family("Gamma").glmer_name
        ('negbinomial', 'Gamma')
        """
        return self.name

    def __init__(self, link: str | Link | None = None):
        link = get_link(link or self.default_link)
        if self.links and link.name not in self.links:
            raise ValueError(
                f"link {link.name!r} is not available for the {self.name} family; use one of {', '.join(self.links)}"
            )
        self.link = link

    # -- interface -------------------------------------------------------------------
    def variance(self, mu: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray | float = 1.0) -> np.ndarray:
        """Unit deviances times the prior weights (R's ``dev.resids``); their sum is the deviance."""
        raise NotImplementedError

    def loglik_obs(self, y, mu, wt=1.0, trials=None, scale=None) -> np.ndarray:
        """Pointwise log-likelihood of each observation (for LOO and ``aic``).

        ``wt`` are prior weights (for the binomial, the number of trials, also
        accepted as ``trials``); ``scale`` is the dispersion of families that
        have one (the Gamma's ``1 / shape``).
        """
        raise NotImplementedError

    def loglik_given(self, y, mu, trials=1.0, **params) -> np.ndarray:
        """Pointwise log-likelihood with the family's parameters given by name (broadcast over draws).

        ``params`` are the family's :attr:`aux_params` (``sigma``, ``nu``, ``phi``, ``shape``), each
        a number or an array broadcasting against ``mu`` (e.g. draws x 1); for the binomial,
        ``y`` is the proportion of ``trials``. The Bayesian pointwise log-likelihood (LOO) uses it.

        Examples
        --------
        >>> import numpy as np
        >>> fam = get_family("negbinomial")
        >>> fam.loglik_given(np.array([2.0]), np.array([[1.5], [1.5]]), phi=np.array([[2.0], [1e9]])).round(4).tolist()
        [[-1.7152], [-1.3822]]
        """
        missing = [p for p in self.aux_params if p not in params]
        if missing:
            raise ValueError(f"the {self.name} family's log-likelihood needs {', '.join(missing)}")
        return self._loglik_given(np.asarray(y, dtype=float), np.asarray(mu, dtype=float), trials, params)

    def _loglik_given(self, y, mu, trials, params):
        return self.loglik_obs(y, mu)

    def draw_response(self, rng: np.random.Generator, mu, trials=1.0, **params) -> np.ndarray:
        """Random responses with mean ``mu`` (binomial: successes out of ``trials``), for posterior predictive draws.

        Examples
        --------
        >>> import numpy as np
        >>> get_family("poisson").draw_response(np.random.default_rng(0), np.full(3, 2.0)).dtype.kind
        'i'
        """
        raise NotImplementedError(f"posterior predictive draws are not implemented for the {self.name} family")

    def aic(self, y, mu, wt=1.0, dev: float | None = None) -> float:
        """R's ``family$aic``: ``-2`` log-likelihood with constants (what lme4's Laplace deviance adds)."""
        return float(-2.0 * np.sum(self.loglik_obs(y, mu, wt)))

    def initialize(self, y: np.ndarray, wt: np.ndarray | float = 1.0) -> np.ndarray:
        """Starting means (R's ``family$initialize`` ``mustart``)."""
        return np.asarray(y, dtype=float).copy()

    def check_response(self, y: np.ndarray, column: str, index=None, weights: np.ndarray | None = None) -> None:
        """Raise :class:`~bayesmlm.errors.DataError` naming the column and rows when ``y`` is invalid."""
        y = np.asarray(y, dtype=float)
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(f"response {column!r} has non-finite values in {describe_rows(_as_index(index, len(y)), bad)}")

    def valid_mu(self, mu: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(mu)))

    def deviance(self, y, mu, wt=1.0) -> float:
        """Sum of the deviance residuals (R's ``deviance``)."""
        return float(np.sum(self.dev_resids(y, mu, wt)))

    def evaluator(self, y: np.ndarray, wt: np.ndarray) -> "Evaluator":
        """Deviance residuals and ``aic`` for fixed ``y`` and weights, with their constants precomputed.

        For the binomial, Poisson and negative binomial, ``aic(mu) = deviance(mu) + K`` with ``K``
        depending on ``y`` only, so fitting loops evaluate one log-density term per observation.

        Examples
        --------
        >>> import numpy as np
        >>> fam = get_family("binomial")
        >>> y, wt, mu = np.array([0.25, 1.0]), np.array([4.0, 1.0]), np.array([0.3, 0.6])
        >>> ev = fam.evaluator(y, wt)
        >>> bool(np.isclose(ev.aic(mu, ev.dev_resids(mu).sum()), fam.aic(y, mu, wt)))
        True
        """
        return Evaluator(self, y, wt)

    # -- description -----------------------------------------------------------------
    @property
    def label(self) -> str:
        """The family as lme4's summary names it (``"binomial"``, ``"Negative Binomial(2.31)"``)."""
        return self.name

    def to_statsmodels(self):
        """The equivalent ``statsmodels.genmod.families`` object (for GLM cross-checks)."""
        raise NotImplementedError(f"no statsmodels equivalent for the {self.name} family")

    def __repr__(self) -> str:
        return f"Family({self.label!r}, link={self.link.name!r})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.link == other.link and self._params() == other._params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.link.name, self._params()))

    def _params(self) -> tuple:
        return ()


class Evaluator:
    """A family's deviance residuals and ``aic`` at fixed ``y`` and weights (see :meth:`Family.evaluator`)."""

    def __init__(self, family: Family, y: np.ndarray, wt: np.ndarray):
        self.family = family
        self.y = np.asarray(y, dtype=float)
        self.wt = np.broadcast_to(np.asarray(wt, dtype=float), self.y.shape)
        self.shift = None
        self._prepare()

    def _prepare(self) -> None:
        fam, y, wt = self.family, self.y, self.wt
        if isinstance(fam, (Binomial, Poisson, NegativeBinomial)):
            mu0 = np.clip(fam.initialize(y, wt), 1e-3, None)
            if isinstance(fam, Binomial):
                mu0 = np.clip(mu0, 1e-3, 1 - 1e-3)
                with np.errstate(divide="ignore", invalid="ignore"):
                    self._cy = special.xlogy(y, y) + special.xlogy(1.0 - y, 1.0 - y)
            self.shift = fam.aic(y, mu0, wt) - float(np.sum(fam.dev_resids(y, mu0, wt)))

    def dev_resids(self, mu: np.ndarray) -> np.ndarray:
        if isinstance(self.family, Binomial):
            y = self.y
            return 2.0 * self.wt * (self._cy - y * np.log(mu) - (1.0 - y) * np.log1p(-mu))
        return self.family.dev_resids(self.y, mu, self.wt)

    def aic(self, mu: np.ndarray, dev_sum: float) -> float:
        if self.shift is not None:
            return float(dev_sum + self.shift)
        return self.family.aic(self.y, mu, self.wt, dev_sum)


class Binomial(Family):
    """Binomial proportions ``y`` out of ``wt`` trials (``wt = 1``: 0/1 outcomes).

    Examples
    --------
    >>> import numpy as np
    >>> fam = Binomial()
    >>> fam.dev_resids(np.array([0.0, 1.0, 0.5]), np.array([0.2, 0.9, 0.5]), np.array([1.0, 1.0, 4.0])).round(4).tolist()
    [0.4463, 0.2107, 0.0]
    """

    name = "binomial"
    code = 0
    integer_response = True
    default_link = "logit"
    links = ("logit", "probit", "cloglog", "log", "identity")

    def variance(self, mu):
        return mu * (1.0 - mu)

    def dev_resids(self, y, mu, wt=1.0):
        y = np.asarray(y, dtype=float)
        mu = np.asarray(mu, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = 2.0 * wt * (special.xlogy(y, y / mu) + special.xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
        return out

    def loglik_obs(self, y, mu, wt=1.0, trials=None, scale=None):
        n = np.broadcast_to(np.asarray(trials if trials is not None else wt, dtype=float), np.shape(y))
        k = np.round(n * np.asarray(y, dtype=float))
        n = np.round(n)
        mu = np.asarray(mu, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
                   + special.xlogy(k, mu) + special.xlog1py(n - k, -mu))
        return np.where(n > 0, out, 0.0)

    def _loglik_given(self, y, mu, trials, params):
        return self.loglik_obs(y, mu, trials=np.broadcast_to(trials, np.shape(y)))

    def draw_response(self, rng, mu, trials=1.0, **params):
        return rng.binomial(np.asarray(trials, dtype=np.int64), np.clip(mu, 0.0, 1.0))

    def initialize(self, y, wt=1.0):
        return (wt * np.asarray(y, dtype=float) + 0.5) / (wt + 1.0)

    def valid_mu(self, mu):
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0) and np.all(mu < 1))

    def check_response(self, y, column, index=None, weights=None):
        super().check_response(y, column, index)
        y = np.asarray(y, dtype=float)
        idx = _as_index(index, len(y))
        bad = (y < 0) | (y > 1)
        if bad.any():
            raise DataError(
                f"binomial response {column!r} must be 0/1, a proportion in [0, 1] with weights= the trials, "
                f"or cbind(successes, failures); {describe_rows(idx, bad)} are outside [0, 1] "
                f"(e.g. {y[bad][0]:g})"
            )
        if weights is not None:
            w = np.asarray(weights, dtype=float)
            badw = ~np.isfinite(w) | (w <= 0)
            if badw.any():
                raise DataError(
                    f"the number of trials (weights) must be positive; {describe_rows(idx, badw)} have "
                    f"{w[badw][0]:g}: drop those rows"
                )
            k = y * w
            nonint = ~_is_whole(k) | ~_is_whole(w)
            if nonint.any():
                raise DataError(
                    f"binomial response {column!r} times its trials (weights) must give whole numbers of "
                    f"successes; {describe_rows(idx, nonint)} do not (e.g. {k[nonint][0]:g} of {w[nonint][0]:g}): "
                    "pass the proportion of successes with weights= the number of trials"
                )

    def to_statsmodels(self):
        from statsmodels.genmod import families

        return families.Binomial(link=self.link.to_statsmodels())


class Poisson(Family):
    """Counts with variance equal to the mean.

    Examples
    --------
    >>> import numpy as np
    >>> Poisson().loglik_obs(np.array([2.0]), np.array([1.5])).round(4).tolist()
    [-1.3822]
    """

    name = "poisson"
    code = 1
    integer_response = True
    default_link = "log"
    links = ("log", "identity", "sqrt")

    def variance(self, mu):
        return np.asarray(mu, dtype=float)

    def dev_resids(self, y, mu, wt=1.0):
        y = np.asarray(y, dtype=float)
        mu = np.asarray(mu, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = special.xlogy(y, y / mu) - (y - mu)
        return 2.0 * wt * r

    def loglik_obs(self, y, mu, wt=1.0, trials=None, scale=None):
        y = np.asarray(y, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return wt * (special.xlogy(y, mu) - mu - special.gammaln(y + 1.0))

    def draw_response(self, rng, mu, trials=1.0, **params):
        return rng.poisson(mu)

    def initialize(self, y, wt=1.0):
        return np.asarray(y, dtype=float) + 0.1

    def valid_mu(self, mu):
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def check_response(self, y, column, index=None, weights=None):
        _check_counts(self.name, y, column, index)

    def to_statsmodels(self):
        from statsmodels.genmod import families

        return families.Poisson(link=self.link.to_statsmodels())


def _check_counts(family: str, y, column: str, index) -> None:
    y = np.asarray(y, dtype=float)
    idx = _as_index(index, len(y))
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataError(f"response {column!r} has non-finite values in {describe_rows(idx, bad)}")
    neg = y < 0
    if neg.any():
        raise DataError(
            f"{family} response {column!r} must be a count (0, 1, 2, ...); {describe_rows(idx, neg)} are "
            f"negative (e.g. {y[neg][0]:g})"
        )
    frac = ~_is_whole(y, 1e-8)
    if frac.any():
        raise DataError(
            f"{family} response {column!r} must be a count (0, 1, 2, ...); {describe_rows(idx, frac)} are not "
            f"whole numbers (e.g. {y[frac][0]:g}); for rates use the count as response and "
            "offset(log(exposure)) in the formula"
        )


def _check_positive(family: str, y, column: str, index, advice: str) -> None:
    """Raise :class:`~bayesmlm.errors.DataError` naming the rows where a positive response is not."""
    y = np.asarray(y, dtype=float)
    bad = y <= 0
    if bad.any():
        raise DataError(
            f"{family} response {column!r} must be positive; {describe_rows(_as_index(index, len(y)), bad)} are "
            f"not (e.g. {y[bad][0]:g}): drop them, or {advice}"
        )


def _aic_with_dispersion(self, y, mu, wt=1.0, dev=None):
    """R's ``family$aic`` of a family with a dispersion parameter: 2 more, for it."""
    return float(-2.0 * np.sum(self.loglik_obs(y, mu, wt)) + 2.0)


class Gamma(Family):
    """Positive, right-skewed responses with variance ``phi * mu^2``.

    The default link is R's (``inverse``); ``log`` is the usual choice.
    ``aic`` follows R's ``Gamma()$aic``: the dispersion is ``deviance / sum(wt)``
    and 2 is added for it, which is what lme4's Laplace deviance uses.

    Examples
    --------
    >>> import numpy as np
    >>> Gamma("log").dev_resids(np.array([2.0]), np.array([1.0])).round(4).tolist()
    [0.6137]
    """

    name = "Gamma"
    code = 2
    default_link = "inverse"
    links = ("inverse", "log", "identity")
    has_dispersion = True
    aux_params = ("shape",)

    def variance(self, mu):
        return np.asarray(mu, dtype=float) ** 2

    def dev_resids(self, y, mu, wt=1.0):
        y = np.asarray(y, dtype=float)
        mu = np.asarray(mu, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return -2.0 * wt * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)

    def loglik_obs(self, y, mu, wt=1.0, trials=None, scale=None):
        if scale is None:
            wsum = np.sum(np.broadcast_to(wt, np.shape(y)))
            scale = float(np.sum(self.dev_resids(y, mu, wt)) / wsum)
        shape = 1.0 / scale
        y = np.asarray(y, dtype=float)
        mu = np.asarray(mu, dtype=float)
        theta = mu * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            return wt * ((shape - 1.0) * np.log(y) - y / theta - special.gammaln(shape) - shape * np.log(theta))

    def _loglik_given(self, y, mu, trials, params):
        return self.loglik_obs(y, mu, scale=1.0 / np.asarray(params["shape"], dtype=float))

    def draw_response(self, rng, mu, trials=1.0, **params):
        shape = np.asarray(params["shape"], dtype=float)
        return rng.gamma(shape, mu / shape)

    aic = _aic_with_dispersion

    def valid_mu(self, mu):
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def check_response(self, y, column, index=None, weights=None):
        super().check_response(y, column, index)
        _check_positive("Gamma", y, column, index, "model zeros separately (a hurdle model)")

    def to_statsmodels(self):
        from statsmodels.genmod import families

        return families.Gamma(link=self.link.to_statsmodels())


class NegativeBinomial(Family):
    """Over-dispersed counts: variance ``mu + mu^2 / phi`` (R's ``negative.binomial(theta = phi)``).

    ``phi`` is estimated by :func:`bayesmlm.glmer` with ``family="negbinomial"``
    (lme4's ``glmer.nb``); a family built here holds it fixed.

    Examples
    --------
    >>> import numpy as np
    >>> fam = NegativeBinomial(phi=2.0)
    >>> fam.label, fam.variance(np.array([2.0])).tolist()
    ('Negative Binomial(2)', [4.0])
    """

    name = "negative_binomial"
    glmer_name = "negbinomial"
    code = 3
    default_link = "log"
    links = ("log", "identity", "sqrt")
    has_dispersion = True
    aux_params = ("phi",)
    integer_response = True

    def __init__(self, link: str | Link | None = None, phi: float = 1.0):
        super().__init__(link)
        if not np.isfinite(phi) or phi <= 0:
            raise ValueError(f"negative binomial phi must be positive, got {phi!r}")
        self.phi = float(phi)

    def _params(self) -> tuple:
        return (self.phi,)

    @property
    def label(self) -> str:
        return f"Negative Binomial({self.phi:.4g})"

    def with_phi(self, phi: float) -> "NegativeBinomial":
        """The same family with another ``phi``."""
        return NegativeBinomial(self.link, phi)

    def variance(self, mu):
        mu = np.asarray(mu, dtype=float)
        return mu + mu * mu / self.phi

    def dev_resids(self, y, mu, wt=1.0):
        y = np.asarray(y, dtype=float)
        mu = np.asarray(mu, dtype=float)
        th = self.phi
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2.0 * wt * (y * np.log(np.maximum(1.0, y) / mu) - (y + th) * np.log((y + th) / (mu + th)))

    def loglik_obs(self, y, mu, wt=1.0, trials=None, scale=None, phi=None):
        y = np.asarray(y, dtype=float)
        mu = np.asarray(mu, dtype=float)
        th = self.phi if phi is None else np.asarray(phi, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (special.gammaln(y + th) - special.gammaln(th) - special.gammaln(y + 1.0)
                   + th * np.log(th / (mu + th)) + special.xlogy(y, mu / (mu + th)))
        return wt * out

    def _loglik_given(self, y, mu, trials, params):
        return self.loglik_obs(y, mu, phi=params["phi"])

    def draw_response(self, rng, mu, trials=1.0, **params):
        phi = np.asarray(params["phi"], dtype=float)
        return rng.poisson(rng.gamma(phi, mu / phi))

    def initialize(self, y, wt=1.0):
        y = np.asarray(y, dtype=float)
        return y + (y == 0) / 6.0

    def valid_mu(self, mu):
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def check_response(self, y, column, index=None, weights=None):
        _check_counts("negative binomial", y, column, index)

    def to_statsmodels(self):
        from statsmodels.genmod import families

        return families.NegativeBinomial(link=self.link.to_statsmodels(), alpha=1.0 / self.phi)


class Gaussian(Family):
    """Normal responses (``bm.glmer`` hands the identity link to :func:`bayesmlm.lmer`).

    Examples
    --------
    >>> import numpy as np
    >>> Gaussian().dev_resids(np.array([1.0]), np.array([0.5])).tolist()
    [0.25]
    """

    name = "gaussian"
    code = 4
    default_link = "identity"
    links = ("identity", "log", "inverse")
    has_dispersion = True
    aux_params = ("sigma",)

    def variance(self, mu):
        return np.ones_like(np.asarray(mu, dtype=float))

    def dev_resids(self, y, mu, wt=1.0):
        return wt * (np.asarray(y, dtype=float) - mu) ** 2

    def loglik_obs(self, y, mu, wt=1.0, trials=None, scale=None):
        y = np.asarray(y, dtype=float)
        if scale is None:
            scale = float(np.sum(self.dev_resids(y, mu, wt)) / np.size(y))
        return 0.5 * np.log(np.asarray(wt, dtype=float)) - 0.5 * np.log(2 * np.pi * scale) - wt * (y - mu) ** 2 / (2 * scale)

    def _loglik_given(self, y, mu, trials, params):
        return self.loglik_obs(y, mu, scale=np.asarray(params["sigma"], dtype=float) ** 2)

    def draw_response(self, rng, mu, trials=1.0, **params):
        return mu + np.asarray(params["sigma"], dtype=float) * rng.standard_normal(np.shape(mu))

    aic = _aic_with_dispersion

    def to_statsmodels(self):
        from statsmodels.genmod import families

        return families.Gaussian(link=self.link.to_statsmodels())


class Student(Family):
    """Student-t responses: ``y ~ t(nu, mu, sigma)`` with the identity link (robust regression).

    Used by the Bayesian layer only (``bm.sample(..., family="student")``); ``scale`` in
    :meth:`loglik_obs` is ``sigma`` and ``nu`` is passed as ``nu``.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(Student().loglik_obs(np.array([0.0]), np.array([0.0]), scale=1.0, nu=1e9)[0]), 4)
    -0.9189
    """

    name = "student"
    code = 5
    default_link = "identity"
    links = ("identity",)
    has_dispersion = True
    aux_params = ("sigma", "nu")

    def _loglik_given(self, y, mu, trials, params):
        return self.loglik_obs(y, mu, scale=np.asarray(params["sigma"], dtype=float), nu=np.asarray(params["nu"], dtype=float))

    def draw_response(self, rng, mu, trials=1.0, **params):
        nu = np.asarray(params["nu"], dtype=float)
        return mu + np.asarray(params["sigma"], dtype=float) * rng.standard_t(np.broadcast_to(nu, np.shape(mu)))

    def variance(self, mu):
        return np.ones_like(np.asarray(mu, dtype=float))

    def dev_resids(self, y, mu, wt=1.0):
        return wt * (np.asarray(y, dtype=float) - mu) ** 2

    def loglik_obs(self, y, mu, wt=1.0, trials=None, scale=None, nu=None):
        if scale is None or nu is None:
            raise ValueError("the student family's log-likelihood needs scale= (sigma) and nu=")
        z = (np.asarray(y, dtype=float) - mu) / scale
        out = (special.gammaln((nu + 1.0) / 2.0) - special.gammaln(nu / 2.0) - 0.5 * np.log(nu * np.pi)
               - np.log(scale) - (nu + 1.0) / 2.0 * np.log1p(z * z / nu))
        return wt * out


class LogNormal(Family):
    """Positive responses whose logarithm is normal: ``log y ~ N(eta, sigma)`` (identity link on ``log y``).

    Used by the Bayesian layer only (``bm.sample(..., family="lognormal")``); the linear
    predictor is the mean of ``log y``, as in brms.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(LogNormal().loglik_obs(np.array([1.0]), np.array([0.0]), scale=1.0)[0]), 4)
    -0.9189
    """

    name = "lognormal"
    code = 6
    default_link = "identity"
    links = ("identity",)
    has_dispersion = True
    aux_params = ("sigma",)

    def _loglik_given(self, y, mu, trials, params):
        return self.loglik_obs(y, mu, scale=np.asarray(params["sigma"], dtype=float))

    def draw_response(self, rng, mu, trials=1.0, **params):
        return np.exp(mu + np.asarray(params["sigma"], dtype=float) * rng.standard_normal(np.shape(mu)))

    def variance(self, mu):
        return np.ones_like(np.asarray(mu, dtype=float))

    def dev_resids(self, y, mu, wt=1.0):
        return wt * (np.log(np.asarray(y, dtype=float)) - mu) ** 2

    def loglik_obs(self, y, mu, wt=1.0, trials=None, scale=None):
        if scale is None:
            raise ValueError("the lognormal family's log-likelihood needs scale= (sigma)")
        ly = np.log(np.asarray(y, dtype=float))
        z = (ly - mu) / scale
        return wt * (-ly - np.log(scale) - 0.5 * np.log(2 * np.pi) - 0.5 * z * z)

    def check_response(self, y, column, index=None, weights=None):
        super().check_response(y, column, index)
        _check_positive("lognormal", y, column, index, "use another family")


_FAMILIES = {
    "binomial": Binomial,
    "bernoulli": Binomial,
    "poisson": Poisson,
    "gamma": Gamma,
    "negbinomial": NegativeBinomial,
    "negative_binomial": NegativeBinomial,
    "nb": NegativeBinomial,
    "gaussian": Gaussian,
    "student": Student,
    "student_t": Student,
    "lognormal": LogNormal,
}
FAMILY_NAMES = ("binomial", "bernoulli", "poisson", "Gamma", "negbinomial", "gaussian", "student", "lognormal")


def get_family(family: str | Family = "binomial", link: str | None = None) -> Family:
    """A family object by name (``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"negbinomial"``, ``"gaussian"``).

    Parameters
    ----------
    family : str or Family
        Name (case-insensitive; ``"bernoulli"`` is the binomial, ``"nb"`` and
        ``"negative_binomial"`` the negative binomial) or a family object.
    link : str, optional
        Link name; the family's default (R's) when omitted.

    Examples
    --------
    >>> get_family("Gamma", link="log")
    Family('Gamma', link='log')
    >>> get_family("negbinomial").label
    'Negative Binomial(1)'
    """
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            raise ValueError(f"family {family!r} already has link {family.link.name!r}; drop link={link!r}")
        return family
    if not isinstance(family, str):
        raise ValueError(f"family must be a name or a Family, got {type(family).__name__}")
    key = family.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in _FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILY_NAMES)}")
    return _FAMILIES[key](link)


def response_from_factor(values: pd.Series, column: str) -> np.ndarray:
    """0/1 from a two-level response (R's rule: the first level is failure, 0).

    Booleans map False -> 0, True -> 1; text and categorical columns use their
    level order (sorted text, or the categories' order).

    Examples
    --------
    >>> import pandas as pd
    >>> response_from_factor(pd.Series(["no", "yes", "no"]), "buy").tolist()
    [0.0, 1.0, 0.0]
    """
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=float)
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = [c for c in values.cat.categories if c in set(values.dropna().unique())]
    else:
        levels = sorted(pd.unique(values.dropna()), key=str)
    if len(levels) != 2:
        shown = ", ".join(map(repr, levels[:5])) + (" ..." if len(levels) > 5 else "")
        raise DataError(
            f"a binomial response {column!r} given as categories needs exactly two levels, but it has "
            f"{len(levels)} ({shown}); recode it to 0/1 (which outcome is the success?)"
        )
    return (values.to_numpy(dtype=object) == levels[1]).astype(float)
