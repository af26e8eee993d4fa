"""Likelihood profiles and profile confidence intervals (lme4's ``profile.merMod``).

For each parameter lme4 follows the signed square root of the change in the
ML deviance (REML fits are refitted by ML first),

    zeta(x) = sign(x - x_hat) sqrt(dev(x) - dev(x_hat)),

where ``dev(x)`` is minimised over all other parameters with the profiled one
held at ``x``. Variance parameters are profiled on the SD/correlation scale
(``sd[...]``, ``cor[...]``, ``sigma``) with the others optimised on that scale
(the fixed effects profiled out by penalised least squares); a fixed effect is
profiled by moving its column into an offset and refitting theta. Steps in
``x`` aim at steps of ``delta = cutoff / 8`` in zeta (``cutoff =
sqrt(qchisq(1 - alphamax, n_parameters))``) until ``|zeta|`` passes the
cutoff or the parameter reaches a bound. The points are interpolated by a
natural cubic spline ``zeta(x)`` (R's ``interpSpline``) whose inverse is the
cubic Hermite spline through the same points (``backSpline``); a confidence
interval is the inverse at ``zeta = qnorm((1 -+ level) / 2)``, or the
parameter's bound where the profile reached that bound (an SD of 0, a
correlation of +-1) short of that zeta. Where the profile stopped at the cutoff
short of that zeta (``level`` beyond what ``alphamax`` covers) the end is NaN,
with a :class:`ProfileWarning` that says which ``alphamax`` reaches it (lme4
gives NA or the bound there); :func:`~bayesmlm.freq.inference.confint` extends
the profile itself for such levels.

Only sufficient statistics enter, so a profile point costs a few hundred
factorisations of a (random effects + fixed effects) system, whatever ``n``.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
>>> prof = profile(fit)
>>> prof.confint().round(2)
                        lower    upper
Intercept             1486.45  1568.55
sd[Batch][Intercept]    12.20    84.06
sigma                   38.23    67.66
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import nlopt
import numpy as np
import pandas as pd
from scipy import stats
from scipy.interpolate import CubicHermiteSpline, CubicSpline
from scipy.optimize import minimize_scalar

from ...stats import SufficientStats
from ..optimize import optimize_theta
from ..pls import ProfiledDeviance
from ..theta import ThetaLayout
from ._blas import blas_threads
from ._cache import cached
from ._parallel import run_tasks
from .lrt import ml_refit
from .parameters import VarianceParameter, from_sdcor, to_sdcor, variance_parameters

if TYPE_CHECKING:
    from ..result import FreqFit

__all__ = ["Profile", "profile", "ProfileWarning", "alphamax_for"]

_LOG_2PI = np.log(2.0 * np.pi)
_BIG = 1e100


class ProfileWarning(UserWarning):
    """A profile was irregular: a lower deviance found, a non-monotone or truncated profile."""


def alphamax_for(level: float, n_parameters: int, margin: float = 0.5) -> float:
    """The ``alphamax`` whose profiles reach a ``level`` interval (times ``margin``, to pass it).

    The profile of each of ``n_parameters`` parameters extends to ``|zeta| =
    sqrt(qchisq(1 - alphamax, n_parameters))``; a ``level`` interval needs
    ``|zeta| = qnorm((1 + level) / 2)``.

    Examples
    --------
    >>> alphamax_for(0.95, 3) > 0.01, f"{alphamax_for(0.9999, 3):.2g}"
    (True, '0.00085')
    """
    z = stats.norm.ppf(0.5 + level / 2.0)
    return float(margin * stats.chi2.sf(z**2, n_parameters))


def reemit_warnings(caught, stacklevel: int = 3) -> None:
    """Warn again each recorded warning, once per (category, message), in the order first seen.

    Examples
    --------
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     for _ in range(3):
    ...         warnings.warn("optimiser hit its limit", RuntimeWarning)
    >>> with warnings.catch_warnings(record=True) as again:
    ...     warnings.simplefilter("always")
    ...     reemit_warnings(caught)
    >>> [(w.category.__name__, str(w.message)) for w in again]
    [('RuntimeWarning', 'optimiser hit its limit')]
    """
    seen = set()
    for w in caught:
        key = (w.category, str(w.message))
        if key in seen:
            continue
        seen.add(key)
        warnings.warn(str(w.message), w.category, stacklevel=stacklevel)


# -- the deviance on lme4's SD/correlation scale ---------------------------------------------
@dataclass
class _Context:
    """Everything a profile task needs (picklable, shared with worker processes)."""

    dev: ProfiledDeviance
    layout: ThetaLayout
    stats: SufficientStats
    levels: list[int]
    params: list[VarianceParameter]
    opt: np.ndarray  # variance parameters (SD scale) then fixed effects, at the ML optimum
    theta: np.ndarray  # ML theta
    stderr: np.ndarray  # ML standard errors of the fixed effects
    base: float  # ML deviance
    n: int
    cutoff: float
    delta: float
    maxpts: int
    devtol: float = 1e-9
    maxmult: float = 10.0

    @property
    def nvp(self) -> int:
        return len(self.params)

    def dd(self, pars: np.ndarray) -> float:
        """ML deviance at SD/correlation/sigma values, fixed effects profiled (lme4's ``devfun2``)."""
        conv = from_sdcor(self.layout, pars)
        if conv is None:
            return np.inf
        theta, sigma = conv
        parts = self.dev.criterion_parts(theta)
        if parts is None:
            return np.inf
        _, logdet_L, _, pwrss = parts
        s2 = sigma**2
        return float(logdet_L + pwrss / s2 + self.n * (_LOG_2PI + np.log(s2)))

    def beta_at(self, pars: np.ndarray) -> np.ndarray:
        conv = from_sdcor(self.layout, pars)
        if conv is None:
            return np.full(self.dev.p, np.nan)
        return self.dev.solve(conv[0]).beta


_CONTEXT: _Context | None = None


def _install(context: _Context | None) -> None:
    global _CONTEXT
    _CONTEXT = context


# -- optimisers ----------------------------------------------------------------------------------
def _minimize(fun: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray, upper: np.ndarray, steps: np.ndarray):
    """Bounded derivative-free minimisation: BOBYQA (2+ parameters), Brent (1), evaluation (0)."""
    d = len(x0)
    if d == 0:
        return x0, fun(x0)
    x0 = np.clip(x0, lower, upper)
    if d == 1:
        lo = float(lower[0])
        hi = float(upper[0])
        f1 = lambda t: fun(np.array([t]))  # noqa: E731
        if not np.isfinite(hi):
            hi = max(2.0 * abs(float(x0[0])), float(x0[0]) + 10 * float(steps[0]), 1.0)
            while f1(hi) < f1(x0[0]) and hi < 1e12:
                hi *= 2.0
        if not np.isfinite(lo):
            lo = min(-2.0 * abs(float(x0[0])), float(x0[0]) - 10 * float(steps[0]), -1.0)
            while f1(lo) < f1(x0[0]) and lo > -1e12:
                lo *= 2.0
        res = minimize_scalar(f1, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10 * max(1.0, abs(x0[0]))})
        return np.array([res.x]), float(res.fun)
    best = [np.inf, x0.copy()]

    def objective(x, grad=None):
        value = fun(np.asarray(x, dtype=float))
        if value < best[0]:
            best[0], best[1] = value, np.array(x, dtype=float)
        return value if np.isfinite(value) else _BIG

    opt = nlopt.opt(nlopt.LN_BOBYQA, d)
    opt.set_min_objective(objective)
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(upper)
    opt.set_ftol_abs(1e-8)
    opt.set_xtol_rel(1e-7)
    opt.set_maxeval(20_000)
    opt.set_initial_step(steps)
    try:
        opt.optimize(x0)
    except (nlopt.RoundoffLimited, ValueError):
        pass
    return best[1], float(best[0])


def _steps(x: np.ndarray, kinds: Sequence[str], scale: float) -> np.ndarray:
    out = np.empty(len(x))
    for k, (v, kind) in enumerate(zip(x, kinds)):
        if kind == "cor":
            out[k] = max(min(0.05, (1.0 - abs(v)) / 2.0), 1e-4)
        else:
            out[k] = 0.1 * abs(v) if abs(v) > 1e-8 else 0.01 * scale
    return out


# -- lme4's stepping -----------------------------------------------------------------------------
def _nextpar(mat: np.ndarray, cc: int, r: int, absstep: float, lower: float, upper: float, maxmult: float) -> float:
    """lme4's ``nextpar``: the next parameter value aiming at a step ``absstep`` in zeta."""
    pvals = mat[r - 1 : r + 1, cc]
    zeta = mat[r - 1 : r + 1, 0]
    num = pvals[1] - pvals[0]
    denom = zeta[1] - zeta[0]
    if not np.isfinite(denom) or denom == 0:
        warnings.warn("last two profile points have identical or NaN zeta values: using the minimum step", ProfileWarning)
        step = 1e-6
    else:
        step = absstep * num / denom
        if step < 0:
            warnings.warn("unexpected decrease in the profile: using the minimum step", ProfileWarning)
            step = 1e-6
        elif r > 0 and abs(step) > abs(maxmult * num):
            step = abs(maxmult * num)
    return float(min(upper, max(lower, pvals[1] + np.sign(num) * step)))


def _fillmat(mat: np.ndarray, lowcut: float, upcut: float, zetafun, cc: int, ctx: _Context) -> np.ndarray:
    """lme4's ``fillmat``: extend the profile from rows 0 and 1 until |zeta| > cutoff or a bound."""
    i = 1
    nr = mat.shape[0]
    while (
        i < nr - 1
        and lowcut < mat[i, cc] < upcut
        and (not np.isfinite(mat[i, 0]) or abs(mat[i, 0]) <= ctx.cutoff)
    ):
        x = _nextpar(mat, cc, i, ctx.delta, lowcut, upcut, ctx.maxmult)
        # start the other parameters on the line through the last two points (lme4 restarts at the last)
        span = mat[i, cc] - mat[i - 1, cc]
        frac = (x - mat[i, cc]) / span if span != 0 else 0.0
        start = mat[i, 1:] + frac * (mat[i, 1:] - mat[i - 1, 1:])
        mat[i + 1] = zetafun(x, start)
        i += 1
    return mat[: i + 1]


def _check_devdiff(devdiff: float, ctx: _Context, name: str) -> float:
    if devdiff < -ctx.devtol:
        warnings.warn(
            f"profiling {name} found a deviance {-devdiff:.3g} below the fit's: the fit may not be at the optimum",
            ProfileWarning,
        )
    return max(0.0, devdiff)


def _profile_variance(w: int) -> np.ndarray:
    """Profile rows (zeta, all parameters) of variance parameter ``w``."""
    ctx = _CONTEXT
    assert ctx is not None
    nvp = ctx.nvp
    param = ctx.params[w]
    others = [k for k in range(nvp) if k != w]
    lower = np.array([ctx.params[k].lower for k in others])
    upper = np.array([ctx.params[k].upper for k in others])
    kinds = [ctx.params[k].kind for k in others]
    pw = ctx.opt[w]
    scale = float(ctx.opt[nvp - 1])

    def zeta(xx: float, start: np.ndarray) -> np.ndarray:
        def inner(x: np.ndarray) -> float:
            pars = np.empty(nvp)
            pars[w] = xx
            pars[others] = x
            return ctx.dd(pars)

        x0 = np.clip(start[:nvp][others], lower, upper)
        x, fval = _minimize(inner, x0, lower, upper, _steps(x0, kinds, scale))
        pars = np.empty(nvp)
        pars[w] = xx
        pars[others] = x
        devdiff = _check_devdiff(fval - ctx.base, ctx, param.name) if np.isfinite(fval) else np.nan
        z = np.sign(xx - pw) * np.sqrt(devdiff)
        return np.concatenate([[z], pars, ctx.beta_at(pars)])

    base_row = np.concatenate([[0.0], ctx.opt])
    pres = np.tile(base_row, (ctx.maxpts, 1))
    nres = pres.copy()
    shift = 1e-3 if pw == 0 else pw * 1.01
    nres[0] = pres[1] = zeta(shift, ctx.opt)
    up = _fillmat(pres, param.lower, param.upper, zeta, 1 + w, ctx)
    down = _fillmat(nres, param.lower, param.upper, zeta, 1 + w, ctx) if pw > param.lower else nres[:2]
    return np.vstack([up, down])


def _offset_stats(s: SufficientStats, j: int, value: float) -> SufficientStats:
    """Statistics of ``y - value * x_j`` on X without column j."""
    keep = [k for k in range(s.XtX.shape[0]) if k != j]
    xj = s.XtX[:, j]
    return SufficientStats(
        n=s.n,
        XtX=s.XtX[np.ix_(keep, keep)],
        Xty=s.Xty[keep] - value * xj[keep],
        yty=float(s.yty - 2.0 * value * s.Xty[j] + value**2 * s.XtX[j, j]),
        ZtZ=s.ZtZ,
        ZtX=s.ZtX[:, keep],
        Zty=s.Zty - value * s.ZtX[:, j],
        Xsum=s.Xsum[keep],
        ysum=float(s.ysum - value * s.Xsum[j]),
    )


def _profile_fixed(j: int) -> np.ndarray:
    """Profile rows of fixed effect ``j`` (lme4's ``fe.zeta``)."""
    ctx = _CONTEXT
    assert ctx is not None
    nvp = ctx.nvp
    est = ctx.opt[nvp + j]
    lower = ctx.layout.lower
    last_theta = [ctx.theta.copy()]

    def zeta(fw: float, start=None) -> np.ndarray:
        dev = ProfiledDeviance(_offset_stats(ctx.stats, j, fw), ctx.layout, ctx.levels, reml=False)
        res = optimize_theta(dev, last_theta[0], lower, check=False)
        sol = dev.solve(res.theta)
        last_theta[0] = res.theta
        sigma = float(np.sqrt(sol.pwrss / ctx.n))
        devdiff = _check_devdiff(sol.deviance - ctx.base, ctx, f"fixed effect {j}")
        beta = np.insert(sol.beta, j, fw)
        return np.concatenate([[np.sign(fw - est) * np.sqrt(devdiff)], to_sdcor(ctx.layout, res.theta, sigma), beta])

    base_row = np.concatenate([[0.0], ctx.opt])
    pres = np.tile(base_row, (ctx.maxpts, 1))
    nres = pres.copy()
    nres[0] = pres[1] = zeta(est + ctx.delta * ctx.stderr[j])
    poff = 1 + nvp + j
    up = _fillmat(pres, -np.inf, np.inf, zeta, poff, ctx)
    last_theta[0] = ctx.theta.copy()
    down = _fillmat(nres, -np.inf, np.inf, zeta, poff, ctx)
    return np.vstack([up, down])


def _task(kind: str, index: int) -> np.ndarray:
    with blas_threads(_CONTEXT.dev.m):
        return _profile_variance(index) if kind == "var" else _profile_fixed(index)


# -- splines -------------------------------------------------------------------------------------
@dataclass
class _Trace:
    name: str
    rows: np.ndarray  # unique rows sorted by the parameter: zeta, then every parameter
    column: int
    forward: CubicSpline | None
    backward: CubicHermiteSpline | None
    note: str | None = None
    reached: tuple[bool, bool] = (False, False)  # the profile got to the lower / upper bound


def _splines(name: str, rows: np.ndarray, column: int, bounds: tuple[float, float] = (-np.inf, np.inf)) -> _Trace:
    x_all = rows[:, column]
    x_all = x_all[np.isfinite(x_all)]
    tol = [1e-10 * max(1.0, abs(b)) if np.isfinite(b) else 0.0 for b in bounds]
    reached = (bool(np.isfinite(bounds[0]) and len(x_all) and x_all.min() <= bounds[0] + tol[0]),
               bool(np.isfinite(bounds[1]) and len(x_all) and x_all.max() >= bounds[1] - tol[1]))
    trace = _splines_of(name, rows[np.isfinite(rows[:, 0]) & np.isfinite(rows[:, column])], column)
    trace.reached = reached
    return trace


def _splines_of(name: str, rows: np.ndarray, column: int) -> _Trace:
    _, first = np.unique(rows[:, column], return_index=True)
    rows = rows[np.sort(first)]
    rows = rows[np.argsort(rows[:, column], kind="stable")]
    x, z = rows[:, column], rows[:, 0]
    if len(x) < 3:
        return _Trace(name, rows, column, None, None, "too few profile points")
    forward = CubicSpline(x, z, bc_type="natural")
    slope = forward(x, 1)
    if np.all(np.diff(z) > 0) and np.all(slope > 0):
        backward = CubicHermiteSpline(z, x, 1.0 / slope, extrapolate=False)
        return _Trace(name, rows, column, forward, backward)
    return _Trace(name, rows, column, forward, None, "non-monotone profile")


# -- the result ------------------------------------------------------------------------------------
class Profile:
    """Profile traces of a fit's parameters, with confidence intervals and a plot.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per profile point: ``parameter`` (the one profiled),
        ``zeta``, ``value`` (its value), then every parameter's value there
        (the others optimised), as lme4's ``profile()`` data frame.
    base_deviance : float
        ML deviance at the optimum.
    alphamax : float or None
        The ``alphamax`` the profiles were computed for (how far they reach).
    """

    def __init__(self, traces: dict[str, _Trace], names: list[str], bounds: dict[str, tuple[float, float]], base: float,
                 alphamax: float | None = None):
        self._traces = traces
        self._names = names
        self._bounds = bounds
        self.base_deviance = base
        self.alphamax = alphamax

    @property
    def parameters(self) -> list[str]:
        return list(self._traces)

    @property
    def table(self) -> pd.DataFrame:
        frames = []
        for name, trace in self._traces.items():
            frame = pd.DataFrame(trace.rows[:, 1:], columns=self._names)
            frame.insert(0, "value", trace.rows[:, trace.column])
            frame.insert(0, "zeta", trace.rows[:, 0])
            frame.insert(0, "parameter", name)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Profile confidence intervals (lme4's ``confint.thpr``): columns ``lower upper``.

        An end the profile does not reach is the parameter's bound where the
        profile got to that bound (an SD's 0, a correlation's +-1), else NaN with
        a :class:`ProfileWarning` naming the parameter, the level and the
        ``alphamax`` to profile with.

        Examples
        --------
        >>> import bayesmlm as bm
        >>> fit = bm.lmer("Yield ~ 1 + (1 | Batch)", bm.datasets.load("dyestuff"))
        >>> prof = profile(fit, which=["Intercept"])
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     prof.confint(level=0.9999).values.tolist()
        [[nan, nan]]
        >>> print(str(caught[0].message)[:76])
        the profile of 'Intercept' does not reach the 0.9999 level on the lower side
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1, got {level}")
        a = (1.0 - level) / 2.0
        targets = stats.norm.ppf([a, 1.0 - a])
        out = {}
        for name, trace in self._traces.items():
            lo_bound, hi_bound = self._bounds[name]
            if trace.backward is not None:
                values = np.asarray(trace.backward(targets), dtype=float)
            else:
                x, z = trace.rows[:, trace.column], trace.rows[:, 0]
                if len(z) >= 2 and np.all(np.diff(z) > -1e-2):
                    warnings.warn(f"bad spline fit for {name}: falling back to linear interpolation", ProfileWarning)
                    order = np.argsort(z)
                    values = np.interp(targets, z[order], x[order], left=np.nan, right=np.nan)
                else:
                    warnings.warn(f"{trace.note or 'bad profile'} for {name}: no interval", ProfileWarning)
                    out[name] = (np.nan, np.nan)
                    continue
            ends = []
            for side, (value, bound) in enumerate(zip(values, (lo_bound, hi_bound))):
                if np.isnan(value) and trace.reached[side]:
                    value = bound  # the profile got to the bound without reaching the level's zeta
                elif np.isnan(value):
                    self._warn_short(name, level, side, abs(float(targets[side])), trace)
                ends.append(float(value))
            out[name] = tuple(ends)
        return pd.DataFrame.from_dict(out, orient="index", columns=["lower", "upper"])

    def _warn_short(self, name: str, level: float, side: int, needed: float, trace: _Trace) -> None:
        z = trace.rows[:, 0]
        zs = z[z < 0] if side == 0 else z[z > 0]
        reach = float(np.max(np.abs(zs))) if len(zs) else 0.0
        n_par = len(self._names)
        how = (f"profile(fit, alphamax={alphamax_for(level, n_par):.2g}) reaches it (fit.confint('profile', "
               f"level={level:g}) extends the profile by itself)")
        given = f" for alphamax = {self.alphamax:g}" if self.alphamax is not None else ""
        warnings.warn(
            f"the profile of {name!r} does not reach the {level:g} level on the {('lower', 'upper')[side]} side "
            f"(|zeta| = {needed:.3g} needed; the profile{given} stops at |zeta| = {reach:.3g}): NaN returned; {how}",
            ProfileWarning,
            stacklevel=3,
        )

    def plot(self, parameters: Sequence[str] | None = None, absval: bool = False, levels=(0.5, 0.8, 0.9, 0.95, 0.99)):
        """zeta (or |zeta|) against each parameter, with the spline and the interval levels.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        names = list(parameters) if parameters is not None else self.parameters
        ncol = min(3, len(names))
        nrow = int(np.ceil(len(names) / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
        cut = stats.norm.ppf(0.5 + np.asarray(levels) / 2.0)
        for ax, name in zip(axes.ravel(), names):
            trace = self._traces[name]
            x, z = trace.rows[:, trace.column], trace.rows[:, 0]
            if trace.forward is not None and len(x) > 1:
                grid = np.linspace(x.min(), x.max(), 200)
                zz = trace.forward(grid)
                ax.plot(grid, np.abs(zz) if absval else zz, color="C0")
            ax.plot(x, np.abs(z) if absval else z, "+", color="C0")
            for c in cut:
                ax.axhline(c, color="0.8", lw=0.8)
                if not absval:
                    ax.axhline(-c, color="0.8", lw=0.8)
            ax.set_title(name, fontsize=9)
            ax.set_ylabel("|zeta|" if absval else "zeta")
        for ax in axes.ravel()[len(names) :]:
            ax.set_visible(False)
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        return f"Profile({len(self._traces)} parameters, {len(self.table)} points)"


def profile(
    fit: "FreqFit",
    which: Sequence[str] | None = None,
    alphamax: float = 0.01,
    maxpts: int = 100,
    delta: float | None = None,
    delta_cutoff: float = 1.0 / 8.0,
    n_jobs: int | None = 1,
) -> Profile:
    """Likelihood profiles of a fit's parameters (lme4's ``profile.merMod``).

    Parameters
    ----------
    fit : FreqFit
    which : sequence of str, optional
        Parameter names (``"Days"``, ``"sd[Subject][Days]"``, ``"sigma"``...);
        all by default.
    alphamax : float
        Profiles extend to ``|zeta| = sqrt(qchisq(1 - alphamax, n_parameters))``.
    maxpts : int
        Most points on each side of the optimum.
    delta, delta_cutoff : float
        Target step in zeta (default ``cutoff * delta_cutoff``).
    n_jobs : int or None
        Worker processes (one parameter each at a time); ``None`` uses every core.

    Returns
    -------
    Profile
    """
    design = fit.design
    ml = ml_refit(fit)
    layout = ThetaLayout.from_design(design)
    stats_ = design.sufficient_stats()
    params = variance_parameters(design)
    fixed = list(design.fixed_names)
    names = [p.name for p in params] + fixed
    opt = np.concatenate([to_sdcor(layout, ml.theta, ml.sigma), ml.fixef().to_numpy()])
    nptot = len(names)
    cutoff = float(np.sqrt(stats.chi2.ppf(1.0 - alphamax, nptot)))
    selected = fixed + [p.name for p in params] if which is None else list(which)
    unknown = [w for w in selected if w not in names]
    if unknown:
        raise KeyError(f"unknown parameter(s) {unknown}; parameters are {names}")
    ctx = _Context(
        dev=ProfiledDeviance.from_design(design, reml=False, stats=stats_),
        layout=layout,
        stats=stats_,
        levels=[b.n_levels for b in design.blocks],
        params=params,
        opt=opt,
        theta=np.asarray(ml.theta, dtype=float),
        stderr=ml.se().to_numpy(),
        base=float(ml.criterion),
        n=int(stats_.n),
        cutoff=cutoff,
        delta=cutoff * delta_cutoff if delta is None else float(delta),
        maxpts=maxpts,
    )
    nvp = len(params)
    tasks = [("var", names.index(w)) if names.index(w) < nvp else ("fixed", names.index(w) - nvp) for w in selected]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProfileWarning)
        try:
            rows = run_tasks(_task, tasks, n_jobs=n_jobs, initializer=_install, initargs=(ctx,))
        finally:
            _install(None)  # serial runs installed it here
    reemit_warnings(caught, stacklevel=2)  # every warning, each message once
    traces = {}
    bounds = {}
    for w, r in zip(selected, rows):
        k = names.index(w)
        bounds[w] = (params[k].lower, params[k].upper) if k < nvp else (-np.inf, np.inf)
        traces[w] = _splines(w, r, 1 + k, bounds[w])
    return Profile(traces, names, bounds, ctx.base, alphamax=alphamax)


def cached_profile(fit: "FreqFit", **kwargs) -> Profile:
    """The profile of a fit with default settings (or only another ``alphamax``), computed once."""
    if set(kwargs) <= {"alphamax"}:
        alphamax = kwargs.get("alphamax", 0.01)
        key = "profile" if alphamax == 0.01 else f"profile(alphamax={alphamax!r})"
        return cached(fit, key, lambda: profile(fit, alphamax=alphamax))
    return profile(fit, **kwargs)
