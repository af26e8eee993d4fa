"""Prior distributions as small, named, serialisable values.

Each distribution knows its parameters (for TOML), its support (real line,
positive half-line or correlation matrices) and how to become a PyMC random
variable. Parameters are checked when the object is made, so a negative scale
never reaches a sampler.

Examples
--------
>>> HalfNormal(50)
HalfNormal(sigma=50)
>>> Normal(mu=3000, sigma=2000).params()
{'mu': 3000.0, 'sigma': 2000.0}
>>> Normal(0, -1)
Traceback (most recent call last):
...
bayesmlm.errors.PriorError: Normal: sigma must be > 0, got -1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import numpy as np

from ..errors import PriorError

__all__ = [
    "Distribution",
    "Normal",
    "StudentT",
    "HalfNormal",
    "HalfStudentT",
    "Exponential",
    "Gamma",
    "LogNormal",
    "LKJ",
    "DISTRIBUTIONS",
]

Support = Literal["real", "positive", "correlation"]


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.6g}"


@dataclass(frozen=True)
class Distribution:
    """Base class: a named family with float parameters.

    Examples
    --------
    >>> Normal(0, 1).family, HalfNormal(1).support
    ('Normal', 'positive')
    """

    family: ClassVar[str] = ""
    support: ClassVar[Support] = "real"
    positive: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise PriorError(f"{self.family}: {f.name} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise PriorError(f"{self.family}: {f.name} must be finite, got {value}")
            if f.name in self.positive and value <= 0:
                raise PriorError(f"{self.family}: {f.name} must be > 0, got {value}")
            object.__setattr__(self, f.name, value)

    def params(self) -> dict[str, float]:
        """Parameters by name, as floats."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params().items())
        return f"{self.family}({inner})"

    __str__ = __repr__

    def pymc_class(self):
        import pymc as pm

        return getattr(pm, self.family)

    def draw(self, rng: np.random.Generator, size: int | None = None, dim: int = 2):
        """Random draws with NumPy (``dim``: matrix size, LKJ only)."""
        raise NotImplementedError

    spread: ClassVar[str] = "sigma"
    """The parameter that ``scaled`` multiplies (its width); location parameters stay."""

    def scaled(self, factor: float) -> "Distribution":
        """The same family ``factor`` times as wide (for prior sensitivity checks).

        Examples
        --------
        >>> Normal(10, 2).scaled(0.5), Exponential(0.1).scaled(2), LKJ(2).scaled(2)
        (Normal(mu=10, sigma=1), Exponential(lam=0.05), LKJ(eta=2))
        """
        params = self.params()
        if self.spread in params:
            params[self.spread] *= factor
        return type(self)(**params)


@dataclass(frozen=True, repr=False)
class Normal(Distribution):
    """Normal(mu, sigma) on the real line.

    Examples
    --------
    >>> Normal(0, 2.5).params()
    {'mu': 0.0, 'sigma': 2.5}
    """

    mu: float = 0.0
    sigma: float = 1.0
    family: ClassVar[str] = "Normal"
    positive: ClassVar[tuple[str, ...]] = ("sigma",)

    def draw(self, rng, size=None, dim=2):
        return rng.normal(self.mu, self.sigma, size)


@dataclass(frozen=True, repr=False)
class StudentT(Distribution):
    """Student's t with ``nu`` degrees of freedom, location ``mu``, scale ``sigma``.

    Examples
    --------
    >>> StudentT(3, 0, 10)
    StudentT(nu=3, mu=0, sigma=10)
    """

    nu: float = 3.0
    mu: float = 0.0
    sigma: float = 1.0
    family: ClassVar[str] = "StudentT"
    positive: ClassVar[tuple[str, ...]] = ("nu", "sigma")

    def draw(self, rng, size=None, dim=2):
        return self.mu + self.sigma * rng.standard_t(self.nu, size)


@dataclass(frozen=True, repr=False)
class HalfNormal(Distribution):
    """Half-normal with scale ``sigma`` on the positive half-line.

    Examples
    --------
    >>> bool(HalfNormal(5).draw(np.random.default_rng(0), size=3).min() >= 0)
    True
    """

    sigma: float = 1.0
    family: ClassVar[str] = "HalfNormal"
    support: ClassVar[Support] = "positive"
    positive: ClassVar[tuple[str, ...]] = ("sigma",)

    def draw(self, rng, size=None, dim=2):
        return np.abs(rng.normal(0.0, self.sigma, size))


@dataclass(frozen=True, repr=False)
class HalfStudentT(Distribution):
    """Half Student's t with ``nu`` degrees of freedom and scale ``sigma``.

    Examples
    --------
    >>> HalfStudentT(3, 20).support
    'positive'
    """

    nu: float = 3.0
    sigma: float = 1.0
    family: ClassVar[str] = "HalfStudentT"
    support: ClassVar[Support] = "positive"
    positive: ClassVar[tuple[str, ...]] = ("nu", "sigma")

    def draw(self, rng, size=None, dim=2):
        return np.abs(self.sigma * rng.standard_t(self.nu, size))


@dataclass(frozen=True, repr=False)
class Exponential(Distribution):
    """Exponential with rate ``lam`` (mean ``1/lam``).

    Examples
    --------
    >>> round(float(Exponential(0.1).draw(np.random.default_rng(0), size=10000).mean()))
    10
    """

    lam: float = 1.0
    family: ClassVar[str] = "Exponential"
    support: ClassVar[Support] = "positive"
    positive: ClassVar[tuple[str, ...]] = ("lam",)

    def scaled(self, factor: float) -> "Exponential":
        return Exponential(self.lam / factor)

    def draw(self, rng, size=None, dim=2):
        return rng.exponential(1.0 / self.lam, size)


@dataclass(frozen=True, repr=False)
class Gamma(Distribution):
    """Gamma with shape ``alpha`` and rate ``beta``.

    Examples
    --------
    >>> Gamma(2, 0.5).scaled(2)
    Gamma(alpha=2, beta=0.25)
    """

    alpha: float = 2.0
    beta: float = 1.0
    family: ClassVar[str] = "Gamma"
    support: ClassVar[Support] = "positive"
    positive: ClassVar[tuple[str, ...]] = ("alpha", "beta")

    def scaled(self, factor: float) -> "Gamma":
        return Gamma(self.alpha, self.beta / factor)

    def draw(self, rng, size=None, dim=2):
        return rng.gamma(self.alpha, 1.0 / self.beta, size)


@dataclass(frozen=True, repr=False)
class LogNormal(Distribution):
    """Log-normal: ``log(x) ~ Normal(mu, sigma)``; ``scaled`` widens it on the log scale around
    the same median (the prior of a precision such as ``phi`` or ``shape``).

    Examples
    --------
    >>> LogNormal(0, 1).pymc_class().__name__, LogNormal(1.5, 2).scaled(2)
    ('LogNormal', LogNormal(mu=1.5, sigma=4))
    """

    mu: float = 0.0
    sigma: float = 1.0
    family: ClassVar[str] = "LogNormal"
    support: ClassVar[Support] = "positive"
    positive: ClassVar[tuple[str, ...]] = ("sigma",)

    def draw(self, rng, size=None, dim=2):
        return rng.lognormal(self.mu, self.sigma, size)


@dataclass(frozen=True, repr=False)
class LKJ(Distribution):
    """LKJ prior on a correlation matrix; ``eta=1`` is uniform, larger favours 0.

    Examples
    --------
    >>> LKJ(2).draw(np.random.default_rng(0), size=4, dim=3).shape
    (4, 3, 3)
    """

    eta: float = 2.0
    spread: ClassVar[str] = ""  # a correlation prior has no scale: left as it is
    family: ClassVar[str] = "LKJ"
    support: ClassVar[Support] = "correlation"
    positive: ClassVar[tuple[str, ...]] = ("eta",)

    def draw(self, rng, size=None, dim=2):
        """One correlation matrix, or ``size`` of them stacked, drawn by PyMC."""
        import pymc as pm

        chol = pm.draw(pm.LKJCorr.dist(n=dim, eta=self.eta), draws=1 if size is None else size, random_seed=rng)
        if size == 1:
            chol = chol[None]  # pm.draw drops the draws axis for a single draw
        return chol @ np.swapaxes(chol, -1, -2)


DISTRIBUTIONS: dict[str, type[Distribution]] = {
    cls.family: cls for cls in (Normal, StudentT, HalfNormal, HalfStudentT, Exponential, Gamma, LogNormal, LKJ)
}
"""Every distribution family by name, as written in prior files."""
