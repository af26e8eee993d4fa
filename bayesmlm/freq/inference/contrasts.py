"""Contrast matrices of lmerTest's ANOVA tables (type III, and type I where lmerTest falls back to it).

lmerTest 3.1 (``get_contrasts_type3``): with one model term (or one column)
the type I contrasts are used -- rows of ``t(doolittle(X'X)$L)``. Otherwise,
for treatment coding, the contrasts are computed against the over-
parameterised design ``rdX`` (an intercept and every term coded with all
levels, R's ``model.matrix(~ 0 + term)``): ``L = t(ginv(X) rdX)``; the columns
of each term contained in others (same numeric covariates, more factors) are
orthogonalised against the columns of the terms that contain it, higher-order
terms first; the rows that match model coefficients are kept. These are the
hypotheses SAS calls type III, and they do not depend on the coding.

Examples
--------
>>> import bayesmlm as bm
>>> fit = bm.lmer("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy"))
>>> {k: v.tolist() for k, v in type3_contrasts(fit.design).items()}
{'Days': [[0.0, 1.0]]}
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from formulaic import model_matrix

from ...design import Design, r_style_name

__all__ = ["type3_contrasts", "type1_contrasts", "model_terms", "doolittle", "zapsmall"]


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round relative to the largest absolute entry."""
    x = np.asarray(x, dtype=float)
    finite = x[np.isfinite(x)]
    mx = float(np.max(np.abs(finite))) if finite.size else 0.0
    return np.round(x, max(0, digits - int(np.ceil(np.log10(mx)))) if mx > 0 else digits)


def doolittle(x: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """lmerTest's Doolittle decomposition ``x = L U`` (L unit lower triangular)."""
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            U[i, j] = x[i, j] - L[i, :i] @ U[:i, j]
        for j in range(i + 1, n):
            L[j, i] = x[j, i] - L[j, :i] @ U[:i, i]
            L[j, i] = 0.0 if abs(U[i, i]) < eps else L[j, i] / U[i, i]
    L[np.abs(L) < eps] = 0.0
    U[np.abs(U) < eps] = 0.0
    return L, U


def model_terms(design: Design) -> list[tuple[str, list[int], list[str], list[str]]]:
    """Fixed-effects terms (intercept excluded): name, X columns, variables, numeric variables."""
    spec = design.fixed_spec
    kinds = {name: state[0].value for name, state in spec.encoder_state.items()}
    out = []
    for term, cols in spec.term_indices.items():
        name = str(term)
        if name == "1":
            continue
        variables = [f.expr for f in term.factors]
        numerics = [v for v in variables if kinds.get(v) == "numerical"]
        out.append((name, list(cols), variables, numerics))
    return out


def _contains(f1, f2) -> bool:
    """lmerTest's ``term_contain``: F2 contains F1."""
    _, _, v1, n1 = f1
    _, _, v2, n2 = f2
    return set(v1) <= set(v2) and len(set(v2) - set(v1)) > 0 and set(n1) == set(n2)


def type1_contrasts(design: Design) -> dict[str, np.ndarray]:
    """Sequential (type I) contrasts: rows of the transposed Doolittle factor of ``X'X``."""
    XtX = design.sufficient_stats().XtX
    p = XtX.shape[0]
    L = np.ones((1, 1)) if p == 1 else doolittle(XtX)[0].T
    return {name: L[cols] for name, cols, _, _ in model_terms(design)}


def type3_contrasts(design: Design) -> dict[str, np.ndarray]:
    """lmerTest's type III contrasts, one (rows x p) matrix per fixed-effects term."""
    terms = model_terms(design)
    if design.p <= 1 or len(terms) <= 1:
        return type1_contrasts(design)
    spec = design.fixed_spec
    for name, state in spec.encoder_state.items():
        if state[0].value == "categorical":
            contrasts = state[1].get("contrasts")
            kind = type(getattr(contrasts, "contrasts", None)).__name__
            if kind not in ("TreatmentContrasts", "NoneType"):
                raise NotImplementedError(
                    f"type III contrasts are computed for treatment coding; {name!r} uses {kind}. "
                    "Refit with the default (treatment) coding: the tests do not depend on it"
                )
    X = design.X
    x_names = [r_style_name(c) for c in spec.column_names]
    data = design.data
    parts = [pd.DataFrame({"(Intercept)": np.ones(len(data))})] if "Intercept" in spec.column_names else []
    for name, _, _, _ in terms:
        mm = model_matrix(f"0 + {name}", data, ensure_full_rank=False, na_action="ignore")
        parts.append(pd.DataFrame(np.asarray(mm, dtype=float), columns=[r_style_name(c) for c in mm.columns]))
    rdX = pd.concat(parts, axis=1)
    rd_names = ["Intercept" if c == "(Intercept)" else c for c in rdX.columns]
    missing = [c for c in x_names if c not in rd_names]
    if missing:
        raise NotImplementedError(f"cannot match design columns {missing} to the over-parameterised design")
    L = zapsmall((np.linalg.pinv(X) @ rdX.to_numpy()).T)  # rows: rdX columns; columns: X columns
    order = sorted(range(len(terms)), key=lambda k: -len(terms[k][2]))
    for k in order:
        containing = [t for t in terms if _contains(terms[k], t)]
        if containing:
            xcols = [c for t in containing for c in t[1]]
            ycols = terms[k][1]
            coef, *_ = np.linalg.lstsq(L[:, xcols], L[:, ycols], rcond=None)
            L[:, ycols] = zapsmall(L[:, ycols] - L[:, xcols] @ coef)
    keep = [rd_names.index(c) for c in x_names]
    L = L[keep]
    out = {}
    for name, cols, _, _ in terms:
        Lt = L[:, cols].T
        out[name] = Lt[np.abs(Lt).sum(axis=1) > 1e-8]
    return out
