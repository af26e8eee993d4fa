"""Prior files: TOML, one line per parameter, validated on load.

The format is documented in ``priors/README.md``. Files are written
atomically (to a temporary file, then renamed), so a failed save never leaves
a half-written file behind, and every float is written with ``repr`` so that
save -> load round-trips exactly.

Examples
--------
>>> import tempfile, pathlib
>>> from bayesmlm.priors import HalfNormal, Normal, PriorSpec
>>> spec = PriorSpec({"Intercept": Normal(3000, 2000), "sigma": HalfNormal(50)})
>>> path = save(spec, pathlib.Path(tempfile.mkdtemp()) / "p.toml")
>>> load(path) == spec
True
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pandas as pd

from ..design import build_design
from ..errors import PriorError
from ..files import write_atomic
from .distributions import DISTRIBUTIONS, Distribution
from .spec import PriorSpec, check_support

__all__ = ["save", "load", "dumps"]

HEADER = """\
# bayesmlm prior file: one prior per model parameter (format: priors/README.md).
# Edit a distribution or its numbers; keep the keys. Checked when loaded.
"""


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(str(value))


def dumps(spec: PriorSpec) -> str:
    """The TOML text of a spec.

    Parameters
    ----------
    spec : PriorSpec

    Examples
    --------
    >>> import bayesmlm as bm
    >>> spec = bm.priors.default("Reaction ~ Days + (1 | Subject)", bm.datasets.load("sleepstudy"))
    >>> '"sd[Subject][Intercept]" = { dist = "HalfStudentT"' in dumps(spec)
    True
    """
    lines = [HEADER, "[meta]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in spec.meta.items()]
    lines += ["", "[priors]"]
    for key, dist in spec.items():
        params = ", ".join(f"{name} = {_value(v)}" for name, v in dist.params().items())
        lines.append(f'{_key(key)} = {{ dist = "{dist.family}", {params} }}')
    lines += ["", "[sources]"]
    lines += [f"{_key(k)} = {_value(spec.sources.get(k, ''))}" for k in spec]
    return "\n".join(lines) + "\n"


def save(spec: PriorSpec, path: str | Path) -> Path:
    """Write ``spec`` to ``path`` atomically; parent folders are created.

    Parameters
    ----------
    spec : PriorSpec
    path : str or Path
        Destination (``.toml``); folders are created, the file is written atomically.

    Examples
    --------
    >>> import tempfile, pathlib, bayesmlm as bm
    >>> spec = bm.priors.default("Reaction ~ Days + (1 | Subject)", bm.datasets.load("sleepstudy"))
    >>> save(spec, pathlib.Path(tempfile.mkdtemp()) / "priors" / "sleep.toml").name
    'sleep.toml'
    """
    return write_atomic(path, dumps(spec))


def _line_numbers(text: str) -> dict[str, int]:
    """Line of each key in the [priors] table."""
    lines, section = {}, None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[] ")
            continue
        if section != "priors" or "=" not in line or line.startswith("#"):
            continue
        head = line.split("=", 1)[0].strip()
        if head.startswith('"'):
            match = re.match(r'"((?:[^"\\]|\\.)*)"', line)
            head = json.loads(f'"{match.group(1)}"') if match else head
        lines.setdefault(head, number)
    return lines


def _distribution(key: str, entry, where: str) -> Distribution:
    if not isinstance(entry, dict) or "dist" not in entry:
        raise PriorError(f"{where}{key!r}: expected an inline table like {{ dist = \"Normal\", mu = 0.0, sigma = 1.0 }}")
    family = entry["dist"]
    if family not in DISTRIBUTIONS:
        raise PriorError(f"{where}{key!r}: unknown distribution {family!r}; known: {', '.join(DISTRIBUTIONS)}")
    cls = DISTRIBUTIONS[family]
    expected = list(cls().params())
    given = {k: v for k, v in entry.items() if k != "dist"}
    extra = [k for k in given if k not in expected]
    missing = [k for k in expected if k not in given]
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"unknown parameter(s) {', '.join(map(repr, extra))}")
        if missing:
            parts.append(f"missing parameter(s) {', '.join(map(repr, missing))}")
        raise PriorError(f"{where}{key!r}: {family} takes {', '.join(expected)}; {' and '.join(parts)}")
    try:
        dist = cls(**given)
        check_support(key, dist)
    except PriorError as exc:
        raise PriorError(f"{where}{key!r}: {exc}") from None
    return dist


def load(path: str | Path, formula: str | None = None, data: pd.DataFrame | None = None, family=None,
         **family_args) -> PriorSpec:
    """Read and validate a prior file.

    Parameters
    ----------
    path : str or Path
    formula, data : optional
        When both are given, the keys are also checked against the model's
        parameters (unknown and missing parameters are errors). Without them
        that check happens when the spec is used by :func:`bayesmlm.sample`.
    family : str, optional
        The model's response family (its parameters ``phi``, ``shape``, ``nu``, ``sigma``
        are then expected), with ``link``, ``trials``, ``weights``, ``offset`` as for
        :func:`bayesmlm.sample`.

    Raises
    ------
    PriorError
        Naming the file, the line and the key, and saying what is wrong.

    Examples
    --------
    >>> import tempfile, pathlib, bayesmlm as bm
    >>> df = bm.datasets.load("sleepstudy")
    >>> path = bm.priors.default("Reaction ~ Days + (1 | Subject)", df).save(pathlib.Path(tempfile.mkdtemp()) / "p.toml")
    >>> load(path, "Reaction ~ Days + (1 | Subject)", df)["sigma"].family
    'HalfStudentT'
    """
    path = Path(path)
    if not path.is_file():
        raise PriorError(f"prior file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriorError(f"{path}: not valid TOML: {exc}") from None
    unknown_tables = [k for k in doc if k not in ("meta", "priors", "sources")]
    if unknown_tables:
        raise PriorError(f"{path}: unknown table(s) {unknown_tables}; a prior file has [meta], [priors] and [sources]")
    if "priors" not in doc or not isinstance(doc["priors"], dict):
        raise PriorError(f"{path}: no [priors] table")
    lines = _line_numbers(text)
    priors = {}
    for key, entry in doc["priors"].items():
        where = f"{path}, line {lines.get(key, '?')}: "
        priors[key] = _distribution(key, entry, where)
    spec = PriorSpec(priors, meta=dict(doc.get("meta", {})))
    file_sources = doc.get("sources", {})
    for key in priors:  # a key without a [sources] line was written by hand
        spec.sources[key] = str(file_sources[key]) if key in file_sources else f"file {path.name}"
    spec.lines = lines
    spec.path = str(path)
    if formula is not None and data is not None:
        if family is not None and not (isinstance(family, str) and family.lower() == "gaussian"):
            from ..family_design import family_design

            spec.check(family_design(formula, data, family, **family_args))
        else:
            spec.check(build_design(formula, data))
    return spec
