"""Shared fixtures: the lme4 reference fits and their data, read as lme4 saw them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REFERENCE = Path(__file__).parent / "reference"

# Columns that are factors in R although the CSV holds numbers.
FACTOR_COLUMNS = {
    "sleepstudy": ["Subject"],
    "dyestuff": ["Batch"],
    "dyestuff2": ["Batch"],
    "penicillin": ["plate", "sample"],
    "pastes": ["batch", "cask", "sample"],
    "cake": ["replicate", "recipe"],
    "crossed_slopes": ["subj", "item"],
    "insteval": ["s", "d", "dept", "service", "studage", "lectage"],
}


def load_data(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / f"{name}.csv", dtype={c: str for c in FACTOR_COLUMNS.get(name, [])})


def load_reference(case: str) -> dict:
    return json.loads((REFERENCE / "lme4" / f"{case}.json").read_text())


def reference_cases() -> list[str]:
    return sorted(p.stem for p in (REFERENCE / "lme4").glob("*.json"))


def lme4_name(name: str) -> str:
    """lme4's '(Intercept)' is 'Intercept' in bayesmlm's vocabulary."""
    return "Intercept" if name == "(Intercept)" else name


@pytest.fixture(scope="session")
def sleepstudy() -> pd.DataFrame:
    return load_data("sleepstudy")
