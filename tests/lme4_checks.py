"""The lme4 comparisons every reference test applies (tolerances: see test_lme4_reference)."""

from __future__ import annotations

import re

import pytest

import bayesmlm as bm

from .conftest import lme4_name


def _name_or_none(value) -> str | None:
    return lme4_name(value) if isinstance(value, str) else None


def _varcorr_key(row: dict) -> tuple:
    grp = re.sub(r"\.\d+$", "", row["grp"])  # lme4 names the parts of (x || g) g, g.1, ...
    return grp, _name_or_none(row.get("var1")), _name_or_none(row.get("var2"))


def assert_matches_lme4(fit: bm.FreqFit, ref: dict) -> None:
    """Fixed effects, SEs, VarCorr, logLik, REML criterion, sigma and singular flag."""
    fixef, se = fit.fixef(), fit.se()
    assert sorted(fixef.index) == sorted(lme4_name(k) for k in ref["fixef"])
    for name, value in ref["fixef"].items():
        assert fixef[lme4_name(name)] == pytest.approx(value, rel=1e-5), f"fixef {name}"
    for name, value in ref["se"].items():
        assert se[lme4_name(name)] == pytest.approx(value, rel=1e-4), f"se {name}"

    ours = {(r.grp, _name_or_none(r.var1), _name_or_none(r.var2)): r for r in fit.varcorr().itertuples()}
    assert len(ours) == len(ref["varcorr"])
    for row in ref["varcorr"]:
        key = _varcorr_key(row)
        assert key in ours, f"VarCorr row {key} missing; have {list(ours)}"
        got = ours[key].sdcor
        if key[2] is not None:  # correlation
            assert got == pytest.approx(row["sdcor"], abs=1e-3), f"correlation {key}"
        elif row["sdcor"] < 1e-6:
            assert got == pytest.approx(0.0, abs=1e-4), f"SD {key} should be ~0"
        else:
            assert got == pytest.approx(row["sdcor"], rel=1e-3), f"SD {key}"

    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-3)
    assert fit.criterion == pytest.approx(ref["deviance_or_reml"], abs=2e-3)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    assert fit.singular == ref["singular"]
    assert fit.converged


def assert_modes_match_lme4(fit: bm.FreqFit, ref: dict) -> None:
    """Conditional modes to 1e-3 of their factor's SD."""
    ranef = fit.ranef()
    vc = fit.varcorr()
    sd = {(r.grp, r.var1): r.sdcor for r in vc[vc.var2.isna()].itertuples()}
    for factor, rows in ref["ranef"].items():
        table = ranef[factor]
        assert len(table) == len(rows)
        for row in rows:
            level = str(row["level"])
            for name, value in row.items():
                if name in ("level", "_row"):
                    continue
                col = lme4_name(name)
                scale = max(sd.get((factor, col), 0.0), 1e-8)
                assert abs(table.loc[level, col] - value) <= 1e-3 * scale + 1e-7, f"{factor}[{level}, {col}]"
