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


def from_quantiles(lower: float, upper: float, mass: float = 0.9, family: str = "Normal", nu: float = 3.0) -> Distribution:
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

    Raises
    ------
    PriorError
        Bad interval or mass, unknown family, or PreliZ finding no member.

    Examples
    --------
    >>> prior = from_quantiles(0, 20, mass=0.9)   # "90% sure the effect is between 0 and 20"
    >>> prior.family, round(prior.mu, 1), round(prior.sigma, 2)
    ('Normal', 10.0, 6.08)
    """
    import preliz as pz

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


def set_from_quantiles(
    spec: PriorSpec, key: str, lower: float, upper: float, mass: float = 0.9, family: str = "Normal"
) -> PriorSpec:
    """Set ``spec[key]`` from an expert interval and record the elicitation as its source.

    Returns the same spec, for chaining.

    Parameters
    ----------
    spec : PriorSpec
    key : str
        Parameter name, e.g. ``"Days"`` or ``"sd[Subject][Days]"``.
    lower, upper, mass, family
        As in :func:`from_quantiles`.

    Examples
    --------
    >>> from bayesmlm.priors import PriorSpec, Normal
    >>> spec = set_from_quantiles(PriorSpec({"Days": Normal(0, 100)}), "Days", 0, 20)
    >>> spec.sources["Days"]
    'expert: 90% between 0 and 20 (Normal, PreliZ maxent)'
    """
    dist = from_quantiles(lower, upper, mass=mass, family=family)
    spec[key] = dist
    spec.sources[key] = f"expert: {mass:.0%} between {lower:g} and {upper:g} ({family}, PreliZ maxent)"
    return spec
