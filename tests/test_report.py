"""Issue 5/6: the posterior report (rendered in headless Chromium) and the command line."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

import bayesmlm as bm
from bayesmlm.cli import main

from .conftest import load_data

FORMULA = "Reaction ~ Days + (Days | Subject)"
EVIL = "<script>alert(1)</script>"
SAMPLE = dict(draws=300, tune=300, chains=2, seed=2, progressbar=False)

CHECKER = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute("data-check", `images=${imgs.length};broken=${broken};scripts=${document.scripts.length}`);
});</script></body>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("BAYESMLM_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (.ci/ensure-chromium installs Debian's package)")
        pytest.skip("chromium is not installed; ./dev test installs it")
    return found


def _headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def fits() -> tuple:
    df = load_data("sleepstudy")
    df.loc[df.Subject == "308", "Subject"] = EVIL  # a level name that must stay text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bm.lmer(FORMULA, df)
        post = bm.sample(FORMULA, df, priors="default", **SAMPLE)
        other = bm.sample("Reaction ~ Days + (1 | Subject)", df, priors="default", **SAMPLE)
    return fit, post, other


@pytest.fixture(scope="module")
def written(fits, tmp_path_factory) -> Path:
    fit, post, other = fits
    path = tmp_path_factory.mktemp("report") / "report.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.report(post, path, freq=fit, models={"slopes": post, "intercepts": other}, plausible=(0, 1000))


def test_report_is_self_contained_and_escaped(written: Path) -> None:
    html = written.read_text()
    assert "<script" not in html  # the report runs no scripts, and the level name did not become one
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must not fetch anything"
    for heading in ["Data", "Priors", "Frequentist fit (lmer)", "Sampler diagnostics", "Posterior",
                    "Posterior predictive check", "Model comparison (PSIS-LOO)"]:
        assert f">{heading}<" in html, heading
    assert html.count('src="data:image/png;base64,') == 5  # prior check, forest, shrinkage, pooling, ppc
    md = written.with_suffix(".md").read_text()
    assert "&lt;script&gt;" in md and EVIL not in md
    assert "## Sampler diagnostics" in md and "| slopes |" in md


def test_report_renders_in_headless_chromium(written: Path, tmp_path: Path) -> None:
    browser = _chromium()
    checked = tmp_path / "checked.html"
    checked.write_text(written.read_text().replace("</body>", CHECKER))
    dom = _headless(browser, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri())
    status = re.search(r'data-check="images=(\d+);broken=(\d+);scripts=(\d+)"', dom.stdout)
    assert status, dom.stderr[-2000:]
    images, broken, scripts = map(int, status.groups())
    assert images == 5 and broken == 0 and scripts == 1  # only the checker ran
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Failed to load" in line]
    assert console == [], console
    shot = tmp_path / "report.png"
    run = _headless(browser, "--window-size=1200,3000", f"--screenshot={shot}", written.as_uri())
    assert shot.exists() and shot.stat().st_size > 50_000, run.stderr[-2000:]


def test_a_failed_report_leaves_the_previous_file(fits, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "r.html"
    target.write_text("previous report")
    rep = importlib.import_module("bayesmlm.report")  # the module (bm.report is the function)

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(rep, "posterior_predictive_figure", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        bm.report(fits[1], target)
    assert target.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no half-written or temporary files
    with pytest.raises(ValueError, match="ending in .html"):
        bm.report(fits[1], tmp_path / "r.pdf")


def test_cli_fit_priors_and_report(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "sleep.csv"
    load_data("sleepstudy").to_csv(csv, index=False)
    toml = tmp_path / "priors" / "sleep.toml"
    assert main(["priors", str(csv), FORMULA, "-o", str(toml)]) == 0
    assert toml.exists() and "empirical priors written to" in capsys.readouterr().out
    out = tmp_path / "cli.html"
    code = main(["fit", str(csv), FORMULA, "--priors", str(toml), "--draws", "200", "--tune", "200", "--chains", "2",
                 "--seed", "1", "--report", str(out)])
    assert code == 0 and out.exists() and out.with_suffix(".md").exists()
    assert "report written to" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "{missing}", FORMULA], "does not exist"),
        (["fit", "{bad_csv}", FORMULA], "cannot read"),
        (["fit", "{csv}", "Reaction ~ Days + (Days | "], "unbalanced"),
        (["fit", "{csv}", "Reaction ~ Dayz + (1 | Subject)"], "'Dayz'"),
        (["fit", "{csv}", FORMULA, "--priors", "{bad_toml}", "--report", "{out}"], "bad.toml"),
        (["fit", "{csv}", FORMULA, "--priors", "{missing}"], "prior file"),
        (["dataset", "sleepstudyy", "-o", "{out}"], "'sleepstudyy'; available: cake"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(args, message, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "sleep.csv"
    load_data("sleepstudy").to_csv(csv, index=False)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_bytes(b"\xff\xfe\x00bad")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[priors]\nIntercept = { dist = 'Normal', mu = 0, sigma = -1 }\n")
    paths = {"missing": tmp_path / "nope.csv", "bad_csv": bad_csv, "csv": csv, "bad_toml": bad_toml, "out": tmp_path / "o.html"}
    code = main([a.format(**paths) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("bayesmlm: error:") and message in err, err


def test_cli_help_for_every_command(capsys) -> None:
    for command in (["--help"], ["fit", "--help"], ["priors", "--help"], ["dataset", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(command)
        assert stop.value.code == 0
    assert "--report" in capsys.readouterr().out


def test_report_shows_lme4s_profile_intervals(written: Path) -> None:
    # lme4 1.1-31: confint(fm, method = "profile") for Days is 7.3587 .. 13.5759 (tests/reference/inference)
    md = written.with_suffix(".md").read_text()
    assert "likelihood-profile intervals" in md
    section = md[md.index("likelihood-profile intervals"):]
    row = next(line for line in section.splitlines() if line.startswith("| Days |"))
    lower, upper = (cell.strip() for cell in row.strip("|").split("|")[1:3])
    assert (lower, upper) == (f"{7.358653:.4g}", f"{13.575919:.4g}")  # as the report rounds: 4 digits
