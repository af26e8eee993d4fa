"""The teaching scenarios in examples/ run end to end and tell the story they claim.

Each script's ``main`` runs with short chains; its printed numbers are checked against
the simulated truth where there is one.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmlm as bm

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, out: Path) -> dict:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.SamplingWarning)  # short chains
        result = module.main(out, draws=400, chains=2, seed=3)
    assert result["report"].is_file() and result["report"].with_suffix(".md").is_file()
    return result


def test_retail_predicts_the_two_never_sold_combinations(tmp_path: Path) -> None:
    result = run_example("retail", tmp_path)
    table = result["predicted"]
    assert len(result["never_sold"]) == 2 and len(table) == 2
    # The posterior prediction and lmer's BLUP sum estimate the same cell mean.
    assert np.all(np.abs(table["mean"] - table["lmer"]) < 2 * table["sd"])
    assert bm.priors.load(result["prior_file"]).keys() >= {"Intercept", "Wk", "cor[Description]"}
    cmp = result["compare"]
    # Not circular: the priors come from the first half-year's fit, lmer here is fitted to the second.
    assert cmp.fixed["lmer_inside"].all()
    # The simulator's population values (bm.datasets.simulate_retail defaults) lie inside the 90%
    # intervals of the group SDs (correlations: 0, effects drawn independently); sigma within 3 SD.
    truth = {"sd[Description][Intercept]": 300.0, "sd[Description][Wk]": 20.0, "sd[MerGroup][Intercept]": 200.0,
             "sd[MerGroup][Wk]": 15.0, "cor[Description][Intercept,Wk]": 0.0, "cor[MerGroup][Intercept,Wk]": 0.0}
    scales = cmp.scales.loc[list(truth)]
    assert ((scales["lower"] < pd.Series(truth)) & (pd.Series(truth) < scales["upper"])).all(), scales
    assert abs(cmp.sigma.loc["sigma", "mean"] - 150.0) < 3 * cmp.sigma.loc["sigma", "sd"]


def test_plant_machine_is_singular_and_the_bayesian_fit_handles_it(tmp_path: Path) -> None:
    result = run_example("plant_machine", tmp_path)
    assert result["fit"].singular and any("singular" in m for m in result["messages"])
    post = result["post"]
    assert post.diagnostics.divergences == 0
    # Against the simulation's values (bm.datasets.simulate_plant_machine defaults), not lmer's fit,
    # which the priors are centred on. sd[Plant] is 0 in truth and lmer puts both SDs at 0: the
    # posterior must reach down to the boundary, and cover sd[Machine] = 0.05.
    vc = post.varcorr().set_index("grp")
    assert vc.loc["Plant", "5%"] < 0.05
    assert vc.loc["Machine:Plant", "5%"] < 0.05 < vc.loc["Machine:Plant", "95%"]
    fixef = post.fixef()
    for name, value, row in [("Intercept", 20.0, fixef.loc["Intercept"]), ("Hours", 12.0, fixef.loc["Hours"]),
                             ("sigma", 0.5, vc.loc["Residual"])]:
        assert row["5%"] < value < row["95%"] and abs(row["mean"] - value) < 3 * row["sd"], (name, row)


def test_cooler_naive_difference_misses_and_varying_slope_recovers(tmp_path: Path) -> None:
    result = run_example("cooler", tmp_path)
    truth, table = result["truth"].average_effect, result["table"]
    error = table["error"].abs()
    assert error["naive difference of means"] > 10
    assert error["interaction: Cooler coefficient (Urban only)"] > 5
    lmer_row = table.loc["varying slope, lmer fixed effect"]
    assert error["varying slope, lmer fixed effect"] < lmer_row["se / sd"]
    low, high = result["interval"]
    assert low < truth < high


def test_sleepstudy_walkthrough(tmp_path: Path) -> None:
    result = run_example("sleepstudy", tmp_path)
    assert result["fit"].fixef().round(2).tolist() == pytest.approx([251.41, 10.47])  # lme4
    assert "HalfStudentT" in result["prior_file"].read_text()
    predicted = result["predicted"]
    assert predicted["sd"].iloc[1] > 2 * predicted["sd"].iloc[0]  # a new subject is less certain
