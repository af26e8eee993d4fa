"""Every code block in README.md runs.

Python blocks run in order in one namespace (the API section continues the walkthrough), in
a temporary folder. Bash blocks run line by line in that folder with this environment's
``bayesmlm`` on PATH. The block with the two fresh-machine commands is checked as such:
``./dev demo`` runs here (it writes the demo report), and ``./dev test`` is the command CI
runs (``.ci/run`` calls exactly it), since running it from inside the test suite would
recurse.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
TWO_COMMANDS = "./dev demo"


def _blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCKS if lang == language]


def test_readme_has_only_python_and_bash_blocks() -> None:
    assert {lang for lang, _ in BLOCKS} == {"python", "bash"}
    assert len(_blocks("python")) >= 3 and len(_blocks("bash")) >= 2


def test_python_blocks_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs in the examples may warn about ESS
        for i, code in enumerate(_blocks("python")):
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert (tmp_path / "priors" / "sleep.toml").is_file()
    assert namespace["post"].diagnostics.ok
    assert list(namespace["big"].fixef().index) == ["Intercept", "Wk"]


def test_command_line_block_runs(tmp_path: Path) -> None:
    block = next(code for code in _blocks("bash") if "bayesmlm fit" in code)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for line in block.splitlines():
        command = line.split("  #")[0].strip()
        out = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
        assert out.returncode == 0, f"{command}\n{out.stderr[-2000:]}"
    assert (tmp_path / "report.html").is_file() and (tmp_path / "priors" / "sleep.toml").is_file()


def test_two_commands_block() -> None:
    block = next(code for code in _blocks("bash") if TWO_COMMANDS in code)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["./dev demo", "./dev test"]
    assert "./dev test" in (ROOT / ".ci" / "run").read_text().splitlines()  # CI runs it
    out = subprocess.run(["./dev", "demo"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "report written to" in out.stdout
    assert (ROOT / "bayesmlm-demo" / "report.html").stat().st_size > 10_000
