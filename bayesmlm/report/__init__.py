"""The posterior report: one self-contained HTML file and its Markdown twin.

``report(post, "report.html", freq=fit)`` renders, from Jinja2 templates with
autoescaping, the data summary, formula, priors with a prior predictive
check, the lmer summary, sampler diagnostics in words, the posterior beside
lmer (tables, pooling factors, forest and shrinkage plots), the pooling figure, a posterior
predictive check and, given several models, a LOO comparison. Figures are
PNG data URIs, so the file needs no other file and no network. Text from the
user's data (level and column names) is escaped. Both files are written
atomically. Examples: :func:`report`.
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..files import write_atomic
from .data_summary import summarise_data
from .figures import figure_data_uri, posterior_predictive_figure

__all__ = ["report", "render", "LEVEL_ROWS"]

LEVEL_ROWS = 60
"""Rows of the group-level coefficient table shown in the report."""


def _num(value) -> str:
    """Numbers to 4 significant digits; everything else as text."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _md(value) -> str:
    """Escape text for Markdown table cells and prose (HTML special characters and pipes)."""
    text = str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bayesmlm.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _num
    env.filters["md"] = _md
    return env


def _table(frame: pd.DataFrame, index: bool = True) -> dict:
    """A DataFrame as plain rows for the templates (the templates escape every cell)."""
    index_name = (frame.index.name or "") if index else None
    rows = [{"index": " / ".join(map(str, i)) if isinstance(i, tuple) else i, "cells": list(r)}
            for i, r in zip(frame.index, frame.itertuples(index=False))]
    return {"columns": [str(c) for c in frame.columns], "rows": rows, "index_name": index_name}


PROFILE_UP_TO = 10
"""Profile intervals (lme4's profile) in the report for at most this many variance parameters; Wald beyond."""


def _freq_intervals(freq) -> tuple[dict, str] | tuple[None, None]:
    """The lmer fit's 95% intervals: profile where quick, Wald otherwise, and which it is."""
    if freq is None or not hasattr(freq, "confint"):
        return None, None
    if len(freq.theta) <= PROFILE_UP_TO:
        method, what = "profile", "likelihood-profile intervals (lme4's confint(method = \"profile\"))"
    else:
        method, what = "wald", (f"Wald intervals for the fixed effects ({len(freq.theta)} variance parameters: "
                                "profiles skipped here; fit.confint(method='profile') computes them)")
    table = freq.confint(method=method).round(4)
    return _table(table.rename_axis("parameter")), f"95% {what}"


def _diagnostics(post) -> tuple[bool, str, list[str]]:
    d = post.diagnostics
    if d.ok:
        headline = "The sampler reports no problems: no divergences, R-hat below 1.01 and enough effective draws."
    else:
        headline = "The sampler reports problems; treat the estimates below with caution until they are fixed."
    return d.ok, headline, d.verdict().splitlines()


def _comparison(freq, post) -> dict | None:
    if freq is None:
        return None
    from ..compare import compare

    cmp = compare(freq, post)
    factor = post.design.blocks[0].factor
    return {
        "prob": f"{cmp.prob:.0%}",
        "fixed": _table(cmp.fixed),
        "scales": _table(cmp.scales),
        "sigma": _table(cmp.sigma),
        "outside": [str(i) for i in cmp.outside().index],
        "pooling": _table(cmp.pooling),
        "levels": _table(cmp.levels.head(LEVEL_ROWS)),
        "levels_note": f"first {LEVEL_ROWS} of {len(cmp.levels)} rows" if len(cmp.levels) > LEVEL_ROWS else "",
        "forest": figure_data_uri(cmp.plot_forest()),
        "shrinkage": figure_data_uri(cmp.plot_shrinkage(factor)),
    }


def _pooling(freq, post) -> tuple[str | None, str | None]:
    from ..errors import DataError
    from ..pooling import pooling

    if freq is None:
        return None, "pooling figure: pass the lmer fit (freq=...) to compare pooling strategies"
    try:
        pool = pooling(post.design.formula.text, post.design.data, fit=freq, post=post)
        return figure_data_uri(pool.plot(), dpi=70), None
    except DataError as exc:
        return None, f"pooling figure left out: {exc}"


def _loo(models: dict | None) -> tuple[dict | None, list[str]]:
    if not models or len(models) < 2:
        return None, []
    from ..loo import loo_compare

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = loo_compare(models)
    messages = [str(w.message) for w in caught if "Pareto k" in str(w.message)]
    keep = [c for c in ["rank", "elpd", "se", "p", "elpd_diff", "dse", "weight", "pareto_k_bad"] if c in table.columns]
    return _table(table[keep].rename_axis("model")), messages


def render(post, freq=None, *, models: dict | None = None, plausible: tuple[float, float] | None = None,
           title: str | None = None) -> tuple[str, str]:
    """The report as ``(html, markdown)`` text; see :func:`report`."""
    from .. import __version__
    from ..bayes.prior_predictive import check_design

    design = post.design
    design.require_rows("the report")
    check = check_design(design, post.priors, draws=200, plausible=plausible, seed=0)
    pooling_figure, pooling_note = _pooling(freq, post)
    ok, headline, lines = _diagnostics(post)
    loo_table, loo_warnings = _loo(models)
    intervals, intervals_note = _freq_intervals(freq)
    data = summarise_data(design)
    priors = post.priors.table().set_index("parameter")
    context = {
        "title": title or f"Bayesian multilevel model: {design.formula.text}",
        "formula": design.formula.text,
        "sampler": post.sampler,
        "method_note": post.method_note,
        "created": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "version": __version__,
        "data": data,
        "data_table": _table(data.table(), index=False),
        "priors_table": _table(priors),
        "prior_notes": post.priors.notes(same_data=post.priors_from_same_data),
        "prior_check": {"verdict": check.verdict(), "figure": figure_data_uri(check.plot())},
        "freq_summary": freq.summary() if freq is not None else None,
        "freq_intervals": intervals,
        "freq_intervals_note": intervals_note,
        "diagnostics_ok": ok,
        "diagnostics_headline": headline,
        "diagnostics_lines": lines,
        "comparison": _comparison(freq, post),
        "fixed_table": _table(post.fixef()),
        "varcorr_table": _table(post.varcorr(), index=False),
        "pooling_figure": pooling_figure,
        "pooling_note": pooling_note,
        "ppc_figure": figure_data_uri(posterior_predictive_figure(post)),
        "loo": loo_table,
        "loo_warnings": loo_warnings,
    }
    env = _environment()
    return env.get_template("report.html.j2").render(**context), env.get_template("report.md.j2").render(**context)


def report(post, path: str | Path, freq=None, *, models: dict | None = None,
           plausible: tuple[float, float] | None = None, title: str | None = None) -> Path:
    """Write the posterior report: ``path`` (HTML) and the same name with ``.md``.

    Parameters
    ----------
    post : BayesFit
    path : str or Path
        The HTML file; the Markdown twin goes beside it.
    freq : FreqFit, optional
        The lmer fit of the same model: adds its summary, the comparison
        tables, forest, shrinkage and pooling figures.
    models : dict of str -> BayesFit, optional
        Two or more models of the same rows to compare by LOO.
    plausible : (low, high), optional
        Plausible range of the response for the prior predictive check.
    title : str, optional

    Returns
    -------
    Path
        The HTML file.

    Examples
    --------
    With ``df`` (sleepstudy) and ``post`` from the example of :func:`bayesmlm.sample`, and
    ``fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)``:

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> path = report(post, out, freq=fit)
    >>> path.is_file(), path.with_suffix(".md").is_file()
    (True, True)
    """
    if getattr(post.design, "family", None) is not None:
        raise NotImplementedError(
            f"the report is not available yet for {post.design.family.name} models (its prior predictive check, "
            "lmer comparison and pooling sections are gaussian): use post.summary(), bm.compare(glmer_fit, post) "
            "and bm.loo_compare instead"
        )
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report is HTML: give a path ending in .html, got {str(path)!r}")
    html, markdown = render(post, freq, models=models, plausible=plausible, title=title)
    write_atomic(path.with_suffix(".md"), markdown)
    return write_atomic(path, html)
