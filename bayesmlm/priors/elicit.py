"""Priors from an expert's quantiles, found by PreliZ.

An expert says "the weekly trend is between -5 and 20 with 90% probability";
``from_quantiles`` asks PreliZ for the maximum-entropy member of a family with
that much mass between the bounds (``preliz.maxent``) and returns it as a
bayesmlm distribution, ready to go into a :class:`PriorSpec` and its TOML file.

Examples
--------
>>> d = from_quantiles(-5, 20, mass=0.9)
>>> d.family, round(d.mu, 1), round(d.sigma, 1)
('Normal', 7.5, 7.6)
>>> d = from_quantiles(0, 50, family="HalfNormal")
>>> round(d.sigma, 1)
30.4
"""

from __future__ import annotations

from ..errors import PriorError
from .distributions import DISTRIBUTIONS, Distribution
from .spec import PriorSpec

__all__ = ["from_quantiles", "set_from_quantiles"]

_ELICITABLE = ("Normal", "StudentT", "HalfNormal", "HalfStudentT", "Exponential", "Gamma", "LogNormal")


def from_quantiles(lower: float, upper: float, mass: float = 0.9, family: str = "Normal", nu: float = 3.0,
                   link: str | None = None) -> Distribution:
    """The maximum-entropy distribution of a family with ``mass`` probability in ``[lower, upper]``.

    Parameters
    ----------
    lower, upper : float
        The expert's interval (``lower`` is usually 0 for positive families).
    mass : float
        Probability inside the interval, e.g. 0.9 for "90% sure".
    family : str
        One of Normal, StudentT, HalfNormal, HalfStudentT, Exponential, Gamma, LogNormal.
    nu : float
        Degrees of freedom kept fixed for the Student-t families.
    link : str, optional
        The interval is on the response scale (a mean count, a probability) and the prior
        is for a coefficient on this link's scale (``"log"``, ``"logit"``, ``"probit"``,
        ``"cloglog"``, ``"inverse"``): the bounds go through the link, so the prior puts
        ``mass`` on link values whose mean response lies in the interval. For location
        priors (Normal, StudentT), e.g. the intercept of a family model.

    Raises
    ------
    PriorError
        Bad interval or mass, unknown family, or PreliZ finding no member; an interval
        outside the link's range.

    Examples
    --------
    >>> prior = from_quantiles(0, 20, mass=0.9)   # "90% sure the effect is between 0 and 20"
    >>> prior.family, round(prior.mu, 1), round(prior.sigma, 2)
    ('Normal', 10.0, 6.08)
    >>> counts = from_quantiles(2, 10, link="log")  # "a typical count is between 2 and 10"
    >>> round(counts.mu, 3), round(counts.sigma, 3)   # on the log scale: log 2 .. log 10
    (1.498, 0.489)
    """
    import preliz as pz

    if link is not None and link != "identity":
        lower, upper = _through_link(lower, upper, link, family)
    if family not in _ELICITABLE:
        raise PriorError(f"cannot elicit a {family!r} prior from quantiles; choose one of {', '.join(_ELICITABLE)}")
    if not 0.0 < mass < 1.0:
        raise PriorError(f"mass must be between 0 and 1 (e.g. 0.9 for 90%), got {mass}")
    if not lower < upper:
        raise PriorError(f"the interval must have lower < upper, got [{lower}, {upper}]")
    positive = DISTRIBUTIONS[family].support == "positive"
    if positive and lower < 0:
        raise PriorError(f"{family} lives on the positive half-line; the interval [{lower}, {upper}] must start at 0 or above")
    target = getattr(pz, family)(nu=nu) if family in ("StudentT", "HalfStudentT") else getattr(pz, family)()
    pz.maxent(target, lower, upper, mass, plot=False)
    params = {k: float(v) for k, v in target.params_dict.items()}
    try:
        found = DISTRIBUTIONS[family](**params)
    except PriorError as exc:
        raise PriorError(f"PreliZ found no {family} with {mass:.0%} in [{lower}, {upper}]: {exc}") from exc
    achieved = float(target.cdf(upper) - target.cdf(lower))
    if abs(achieved - mass) > 0.01:
        raise PriorError(
            f"no {family} puts {mass:.0%} in [{lower}, {upper}] (the closest puts {achieved:.0%}); "
            "widen the interval or choose another family"
        )
    return found


def _through_link(lower: float, upper: float, link: str, family: str) -> tuple[float, float]:
    """The interval's bounds on the link scale (in increasing order: the inverse link reverses them)."""
    import numpy as np

    from ..families import get_link

    if family not in ("Normal", "StudentT"):
        raise PriorError(f"link= maps a response-scale interval to a coefficient's prior on the link scale, which "
                         f"is a location prior: use family='Normal' or 'StudentT', not {family!r}")
    with np.errstate(all="ignore"):
        values = get_link(link).link(np.array([lower, upper], dtype=float))
    if not np.all(np.isfinite(values)) or values[0] == values[1]:
        raise PriorError(f"the interval [{lower}, {upper}] is outside the range of the {link} link (log: positive "
                         "means; logit, probit, cloglog: probabilities strictly between 0 and 1)")
    return float(min(values)), float(max(values))


def set_from_quantiles(
    spec: PriorSpec, key: str, lower: float, upper: float, mass: float = 0.9, family: str = "Normal",
    link: str | None = None,
) -> PriorSpec:
    """Set ``spec[key]`` from an expert interval and record the elicitation as its source.

    Returns the same spec, for chaining.

    Parameters
    ----------
    spec : PriorSpec
    key : str
        Parameter name, e.g. ``"Days"`` or ``"sd[Subject][Days]"``.
    lower, upper, mass, family, link
        As in :func:`from_quantiles` (with ``link``, the interval is on the response scale).

    Examples
    --------
    >>> from bayesmlm.priors import PriorSpec, Normal
    >>> spec = set_from_quantiles(PriorSpec({"Days": Normal(0, 100)}), "Days", 0, 20)
    >>> spec.sources["Days"]
    'expert: 90% between 0 and 20 (Normal, PreliZ maxent)'
    """
    dist = from_quantiles(lower, upper, mass=mass, family=family, link=link)
    spec[key] = dist
    scale = "" if link in (None, "identity") else f" on the response scale, {link} link"
    spec.sources[key] = f"expert: {mass:.0%} between {lower:g} and {upper:g}{scale} ({family}, PreliZ maxent)"
    return spec
