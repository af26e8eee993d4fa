"""The non-centred log density of a (generalized) linear mixed model as compiled C callbacks for nutpie.

Hand-written in Numba (``cache=True``; the kernels and callbacks are in
:mod:`bayesmlm.bayes.noncentred_kernels`): the PyMC model of :mod:`bayesmlm.bayes.build`
is the same posterior (and the test oracle), but compiling its graph costs tens of
seconds per model, while these kernels are compiled once per machine, specialised
once for all families (the family and link are integer codes switched inside one
kernel, :func:`bayesmlm.family_kernels.loglik_grad`) and handed to nutpie's Rust
sampler as C function pointers, like :mod:`bayesmlm.bayes.native`.

No dense ``Z``: each row's linear predictor is
``eta = offset + X beta + sum over factors of sum_c Z[row, c] r[F][level(row), c]``,
with the level codes and varying columns of each factor. A factor's group effects
are non-centred, ``r[F][l] = diag(sd) L z[F][l]``, ``z ~ N(0, 1)``, or centred,
``r[F][l] ~ N(0, T T')`` with ``T = diag(sd) L`` (the effects themselves are the
parameters; chosen per factor by :mod:`bayesmlm.bayes.centring`), with the SD and LKJ
parametrisation shared with the collapsed density (:mod:`bayesmlm.bayes.scales`).
A factor with one varying column is partially centred, per level:
``z ~ N(0, tau^(2 lambda))``, ``r = tau^(1 - lambda) z``, ``lambda`` from the level's
information (:func:`bayesmlm.bayes.centring.centring_weights`).

Gaussian responses (identity link, no weights) with normal priors on the fixed
effects have them integrated out, with the effects of some factors: given ``sigma``
and the other factors' effects these are jointly gaussian, so the density is their
integral and the parameters in their place are standard normals ``xi`` that the
expand step turns into an exact draw from their conditional, ``u = m + L^-T xi``.
The factors with fewest effects join the fixed effects in a dense factorisation (at
most :data:`INTEGRATED_UP_TO` coefficients), and one more factor is eliminated level
by level (its block of the precision is block diagonal), at a cost linear in its
levels (:func:`integrated_factors`). This removes the ridges between the intercept
(and fixed effects constant within levels, as ``service`` for ``dept:service``), a
small factor and the mean of a factor nested in it, and the correlation between two
crossed factors, which a diagonal mass matrix can only crawl along.

Unconstrained parameters, in this order: ``beta`` (p; ``xi`` when integrated out);
``log sd`` of every varying column of every factor; the correlation values of each
correlated group; ``z`` (``r`` when centred, ``xi`` when integrated) of every factor,
level-major; the
logs of the family's parameters (``sigma``; ``sigma, nu``; ``phi``; ``shape``; none
for binomial and Poisson). Log densities drop constants (terms in the data only).

Examples
--------
>>> import numpy as np, bayesmlm as bm
>>> from bayesmlm.family_design import family_design
>>> d = family_design("incidence ~ period + (1 | herd)", bm.datasets.load("cbpp"), "binomial", trials="size")
>>> nc = NativeNonCentred.from_design(d, bm.priors.default_for_design(d))
>>> nc.n_dim   # 4 beta, 1 log sd, 15 z
20
>>> value, grad = nc.logp_and_grad(np.zeros(nc.n_dim))
>>> bool(np.isfinite(value)), grad.shape
(True, (20,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..design import Design
from ..priors.distributions import Normal, StudentT
from ..priors.spec import PriorSpec, correlation_key, family_parameters
from .dims import col_dim
from .centring import centred_factors, centring_weights
from .noncentred_kernels import (HEADER_SIZE, _family_rows, _head, _marginal_rows, _prior_terms, _through_scales,
                                 noncentred_callbacks)
from .nutpie_bridge import CompiledDensity, add_scale_variables, call_logp, prior_scale
from .scales import POSITIVE_FAMILIES, group_rows, prior_rows

__all__ = ["NativeNonCentred", "noncentred_supports", "noncentred_callbacks", "integrated_factors"]


def noncentred_supports(design: Design, priors: PriorSpec) -> str | None:
    """None when the compiled non-centred density covers this model, else why not."""
    for name in design.fixed_names:
        if not isinstance(priors[name], (Normal, StudentT)):
            return f"prior {priors[name]} of {name!r} has no compiled density (Normal and StudentT do)"
    keys = [f"sd[{b.factor}][{c}]" for b in design.blocks for c in b.columns] + list(family_parameters(design))
    for key in keys:
        if priors[key].family not in POSITIVE_FAMILIES:
            return f"prior family {priors[key].family} of {key} has no compiled density"
    if not design.rows_held:
        return "the rows are not held (a Dask DataFrame)"
    return None


def integrates_fixed_effects(design: Design, priors: PriorSpec | None, weights: np.ndarray) -> bool:
    """Whether the density integrates the fixed effects out: a gaussian response (identity link, no
    weights) and normal priors on every fixed effect, so their conditional is gaussian. ``priors``
    None: priors not known yet, taken as normal (as empirical priors are)."""
    family = design.family
    gaussian = family is None or (family.name == "gaussian" and family.link.name == "identity")
    normal = priors is None or all(isinstance(priors[name], Normal) for name in design.fixed_names)
    return bool(gaussian and normal and design.p > 0 and np.all(weights == 1.0))


INTEGRATED_UP_TO = 48
"""Most coefficients (fixed effects plus effects of integrated factors) integrated out together: each
evaluation factorises and inverts a dense matrix of this size."""


def integrated_factors(design: Design) -> list[bool]:
    """Per factor (``design.blocks`` order), whether to integrate its effects out with the fixed effects
    (when those are integrated out).

    Given ``sigma`` and the sampled factors' effects, the fixed effects and the integrated factors'
    effects are jointly gaussian, so integrating them out is exact. The factors with the fewest
    effects are integrated, smallest first, while the densely factorised coefficients (fixed effects
    plus these) number at most :data:`INTEGRATED_UP_TO`; this removes the ridges between a small
    factor's effects, the fixed effects constant within its levels and the mean of a factor nested in
    it (``dept:service`` against ``service`` and ``d`` in InstEval). Then, of the factors left, the one
    with the fewest effects is integrated too, eliminated level by level (its levels' block of the
    precision is block diagonal; see ``_fixed_conditional``): the effects of one of two crossed
    factors, and with them the correlation between the two, leave the sampled parameters.
    """
    flags = [False] * len(design.blocks)
    total = design.p
    if total > INTEGRATED_UP_TO:  # the fixed effects alone fill the dense part: no factor joins them
        return flags
    order = sorted(range(len(design.blocks)), key=lambda i: design.blocks[i].n_effects)
    for bi in order:
        if total + design.blocks[bi].n_effects > INTEGRATED_UP_TO:
            break
        flags[bi] = True
        total += design.blocks[bi].n_effects
    left = [bi for bi in order if not flags[bi]]
    if left:
        flags[left[0]] = True
    return flags


def _eliminated_block(design: Design, flags: Sequence[bool]) -> int:
    """Which integrated factor is eliminated level by level: none (-1) when every integrated coefficient
    fits the dense part, else the one with the most effects (the rest must then fit)."""
    chosen = [bi for bi, f in enumerate(flags) if f]
    if not chosen or design.p + sum(design.blocks[bi].n_effects for bi in chosen) <= INTEGRATED_UP_TO:
        return -1
    big = max(chosen, key=lambda bi: design.blocks[bi].n_effects)
    dense = design.p + sum(design.blocks[bi].n_effects for bi in chosen if bi != big)
    if dense > INTEGRATED_UP_TO:
        raise ValueError(f"the integrated factors other than {design.blocks[big].factor!r} have {dense} coefficients "
                         f"with the fixed effects, more than {INTEGRATED_UP_TO}: integrate fewer")
    return big


def _sparse_columns(design: Design, bi: int):
    """The sparse ``n x (J k)`` indicator-times-values matrix of block ``bi``."""
    from scipy import sparse

    block = design.blocks[bi]
    k = block.n_cols
    values = np.asarray(block.values, dtype=np.float64).reshape(design.n, k)
    cols = block.codes[:, None] * k + np.arange(k)
    return sparse.csr_matrix((values.ravel(), (np.repeat(np.arange(design.n), k), cols.ravel())),
                             shape=(design.n, block.n_effects))


def _eliminated_section(design: Design, flags: Sequence[bool], big: int) -> np.ndarray:
    """The eliminated block's section (layout in ``_big``): per level, the dense part's columns its
    rows touch with the ``k`` cross-products each, and ``Z_l'Z_l``."""
    from scipy import sparse

    block = design.blocks[big]
    J, k = block.n_levels, block.n_cols
    dense = sparse.hstack([sparse.csr_matrix(np.asarray(design.X, dtype=np.float64))]
                          + [_sparse_columns(design, bi) for bi, f in enumerate(flags) if f and bi != big]).tocsc()
    Zb = _sparse_columns(design, big).tocsc()
    cross = (Zb.T @ dense).tocoo()  # (J k) x q_s, kept sparse: J may be large
    key = (cross.row // k) * dense.shape[1] + cross.col  # (level, column) pairs, level-major
    pairs, which = np.unique(key, return_inverse=True)
    level, column = pairs // dense.shape[1], pairs % dense.shape[1]
    values = np.zeros((len(pairs), k))
    np.add.at(values, (which, cross.row % k), cross.data)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(level, minlength=J))])
    values_k = np.asarray(block.values, dtype=np.float64).reshape(design.n, k)
    G = np.zeros((J, k, k))
    np.add.at(G, block.codes, values_k[:, :, None] * values_k[:, None, :])
    return np.concatenate([[float(big), float(len(level))], ptr, column, values.ravel(), G.ravel()]).astype(np.float64)


def _integrated_crossproduct(design: Design, flags: Sequence[bool], big: int) -> np.ndarray:
    """``U'U`` of the dense part, ``U = [X, Z of each integrated block but the eliminated one]``
    (``q_s x q_s``), from a sparse ``U``."""
    from scipy import sparse

    U = sparse.hstack([sparse.csr_matrix(np.asarray(design.X, dtype=np.float64))]
                      + [_sparse_columns(design, bi) for bi, f in enumerate(flags) if f and bi != big]).tocsc()
    return np.asarray((U.T @ U).toarray(), dtype=np.float64)


@dataclass(frozen=True)
class NativeNonCentred(CompiledDensity):
    """Data, level codes and prior constants as one float64 array (see :class:`CompiledDensity`)."""

    _jitter = 0.5
    centred: tuple[bool, ...] = ()
    fixed_integrated: bool = False
    integrated: tuple[bool, ...] = ()

    @classmethod
    def from_design(cls, design: Design, priors: PriorSpec, centred: Sequence[bool] | None = None,
                    integrate_fixed: bool | None = None, fit=None,
                    integrated: Sequence[bool] | None = None,
                    weights: Sequence[np.ndarray] | None = None) -> "NativeNonCentred":
        """Pack a design (gaussian, or with ``design.family``) and its priors (see :func:`noncentred_supports`).

        ``centred`` flags, per factor, the factors whose effects are sampled
        centred (the effects themselves are the parameters, under their normal
        prior); the others are non-centred. Default: :func:`centred_factors`,
        informed by ``fit`` (an lmer or glmer fit of the model) when given.
        ``integrate_fixed``: integrate the fixed effects out where
        :func:`integrates_fixed_effects` allows (default), or never (False).
        ``integrated`` flags, per factor, the factors whose effects are integrated
        out with them (default :func:`integrated_factors`; none when the fixed
        effects are not integrated out). An integrated factor's centring flag is
        moot. A factor with one varying column is partially centred, per level
        (``weights``: per factor, one ``lambda`` in [0, 1] per level, read for one-column factors only; default
        :func:`centring_weights` when ``centred`` is not given, else its flag).
        """
        why = noncentred_supports(design, priors)
        if why is not None:
            raise ValueError(f"the compiled non-centred density does not cover this model: {why}")
        if centred is None:
            centred = centred_factors(design, priors, fit)
            weights = centring_weights(design, priors, fit) if weights is None else weights
        centred = [bool(c) for c in centred]
        if weights is None:
            weights = [np.full(b.n_levels, float(c)) for b, c in zip(design.blocks, centred)]
        if len(centred) != len(design.blocks):
            raise ValueError(f"centred needs one flag per factor ({len(design.blocks)}), got {len(centred)}")
        if integrated is not None and len(integrated) != len(design.blocks):
            raise ValueError(f"integrated needs one flag per factor ({len(design.blocks)}), got {len(integrated)}")
        from ..families import Gaussian

        fam = design.family if design.family is not None else Gaussian()
        if design.glm is not None:
            glm = design.glm
            y, trials, wts, off = glm.y, glm.trials, glm.weights, glm.offset
        else:
            y, trials, wts, off = design.y, np.ones(design.n), np.ones(design.n), np.zeros(design.n)
        n, p = design.n, design.p
        aux_names = list(family_parameters(design))
        sd_keys = [f"sd[{b.factor}][{c}]" for b in design.blocks for c in b.columns]
        n_sd = len(sd_keys)
        block_start = np.cumsum([0] + [b.n_cols for b in design.blocks])[:-1]
        z_start = np.cumsum([0] + [b.n_effects for b in design.blocks])[:-1]
        groups = []
        for block, c0 in zip(design.blocks, block_start):
            multi = [g for g in block.groups if len(g) > 1]
            for group in multi:
                key = correlation_key(block.factor, tuple(block.columns[i] for i in group), len(multi))
                groups.append((len(group), priors[key].eta, [int(c0) + i for i in group]))
        kmax = max([m for m, _, _ in groups], default=1)
        n_cor = sum(m * (m - 1) // 2 for m, _, _ in groups)
        n_z = int(sum(b.n_effects for b in design.blocks))
        correlated = [float(any(len(g) > 1 for g in b.groups)) for b in design.blocks]
        bpri = []
        for name in design.fixed_names:
            d = priors[name]
            bpri += [0.0, 0.0, d.mu, d.sigma] if isinstance(d, Normal) else [1.0, d.nu, d.mu, d.sigma]
        marginal = integrate_fixed is not False and integrates_fixed_effects(design, priors, wts)
        if not marginal:
            if integrated is not None and any(integrated):
                raise ValueError("factors are integrated out only with the fixed effects (a gaussian model "
                                 "with normal fixed-effect priors and no weights)")
            integrated = [False] * len(design.blocks)
        integrated = integrated_factors(design) if integrated is None else [bool(f) for f in integrated]
        sections = [
            np.asarray(design.X, dtype=np.float64).ravel(),
            np.concatenate([y, trials, wts, off]).astype(np.float64),
            np.concatenate([np.ravel([[b.n_levels, b.n_cols, zs, c0] for b, zs, c0 in zip(design.blocks, z_start, block_start)]),
                            correlated, np.asarray(centred, dtype=np.float64),
                            [float(b.n_cols == 1 and np.all(np.asarray(b.values) == 1.0)) for b in design.blocks],
                            np.asarray(integrated, dtype=np.float64)]),
            np.concatenate([b.codes.astype(np.float64) for b in design.blocks]) if design.blocks else [],
            np.concatenate([np.asarray(b.values, dtype=np.float64).ravel() for b in design.blocks]) if design.blocks else [],
            np.asarray(bpri, dtype=np.float64),
            prior_rows([priors[k] for k in sd_keys + aux_names]).ravel(),
            group_rows(groups, kmax).ravel(),
        ]
        big = _eliminated_block(design, integrated) if marginal else -1
        UtU = _integrated_crossproduct(design, integrated, big) if marginal else np.zeros((0, 0))
        sections.append(UtU.ravel())
        sections.append(_eliminated_section(design, integrated, big) if big >= 0 else np.zeros(0))
        lam = [np.asarray(w, dtype=np.float64) if b.n_cols == 1 else np.zeros(b.n_effects)
               for b, w in zip(design.blocks, weights)]
        if any(x.shape != (b.n_effects,) or not np.all((x >= 0) & (x <= 1)) for b, x in zip(design.blocks, lam)):
            raise ValueError("weights needs, per factor, one value in [0, 1] per level")
        sections.append(np.concatenate(lam) if lam else np.zeros(0))
        offsets = np.cumsum([HEADER_SIZE] + [len(s) for s in sections])
        header = np.zeros(HEADER_SIZE)
        header[:12] = [offsets[-1], n, p, len(design.blocks), n_sd, len(groups), kmax, fam.code, fam.link.code,
                       len(aux_names), n_z, n_cor]
        header[12:20] = offsets[:8]
        header[20] = float(marginal)
        header[21] = offsets[8]
        header[22] = UtU.shape[0]
        header[23] = offsets[9] if big >= 0 else 0.0
        header[24] = offsets[10]
        blob = np.ascontiguousarray(np.concatenate([header, *[np.asarray(s, dtype=np.float64) for s in sections]]))
        n_dim = p + n_sd + n_cor + n_z + len(aux_names)

        names, shapes, dims, coords = ["beta"], [(p,)], {"beta": ("fixed",)}, {"fixed": list(design.fixed_names)}
        add_scale_variables(design, correlated, names, shapes, dims, coords)
        for block in design.blocks:
            F = block.factor
            names.append(f"r[{F}]")
            shapes.append((block.n_levels, block.n_cols))
            dims[f"r[{F}]"] = (F, col_dim(F))
            coords[F] = list(block.levels)
        for name in aux_names:
            names.append(name)
            shapes.append(())
        start = np.zeros(n_dim)
        for j, name in enumerate(design.fixed_names):
            start[j] = 0.0 if marginal else priors[name].mu
        if "Intercept" in design.fixed_names and not marginal:
            start[design.fixed_names.index("Intercept")] = _link_of_mean(fam, y, trials)
        for i, key in enumerate(sd_keys):
            start[p + i] = math.log(prior_scale(priors[key])) - 1.0
        for t, name in enumerate(aux_names):
            start[p + n_sd + n_cor + n_z + t] = math.log(prior_scale(priors[name]))
        return cls(blob, n_dim, names, shapes, dims, coords, start, tuple(centred), marginal, tuple(integrated))

    def callbacks(self) -> tuple:
        """This model's pair of C callbacks: the integrated gaussian one or the one for every family."""
        return noncentred_callbacks(self.fixed_integrated)

    def logp_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Log density (constants dropped) and gradient at an unconstrained point, through the
        callback nutpie calls (a value or gradient that is not finite is returned as it is)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_dim,):
            raise ValueError(f"logp_and_grad needs {self.n_dim} unconstrained values, got shape {x.shape}")
        code, value, grad = call_logp(self.callbacks()[0], x, self.blob)
        if code < 0:
            self._replay(x)  # raises the kernel's own error
            raise RuntimeError(f"the compiled log density failed (code {code}): a defect, please report it")
        return value, grad

    def _replay(self, x: np.ndarray) -> None:
        """The log density's steps run from Python, so that the error the callback could only report
        as a code is raised with its own type and message (compiles these kernels where this
        process has not: an error path only)."""
        blob, grad = self.blob, np.empty(self.n_dim)
        n, p, n_blocks, n_sd, n_groups, kmax, family, link, n_aux, n_z, n_cor = _head(blob)
        x = np.ascontiguousarray(x, dtype=np.float64)
        lp, beta, aux, T, r, dT, sd, Lfull, dLfull = _prior_terms(x, blob, grad)
        gr = np.zeros(n_z)
        o_aux = p + n_sd + n_cor + n_z
        if self.fixed_integrated:
            _marginal_rows(blob, n, p, n_blocks, beta, r, aux[0], T, grad, o_aux, gr, dT)
        else:
            _family_rows(blob, n, p, n_blocks, family, link, beta, r, aux, n_aux, grad, o_aux, gr)
        _through_scales(x, blob, grad, T, gr, dT, sd, Lfull, dLfull)


def _link_of_mean(fam, y: np.ndarray, trials: np.ndarray) -> float:
    """The link of the response's mean: where the intercept starts."""
    if fam.name == "binomial":
        m = float(np.clip(np.sum(y * trials) / np.sum(trials), 0.02, 0.98))
    elif fam.name == "lognormal":
        return float(np.mean(np.log(y)))
    else:
        m = float(np.mean(y))
    if fam.link.name in ("log",):
        m = max(m, 0.05)
    with np.errstate(all="ignore"):
        value = float(fam.link.link(np.array([m]))[0])
    return value if math.isfinite(value) else 0.0
