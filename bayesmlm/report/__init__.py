"""The posterior report: one self-contained HTML file and its Markdown twin.

``report(post, "report.html", freq=fit)`` renders, from Jinja2 templates with
autoescaping, the data summary, formula, priors with a prior predictive
check, the lmer summary, sampler diagnostics in words, the posterior beside
lmer (tables, pooling factors, forest and shrinkage plots), the pooling figure, a posterior
predictive check and, given several models, a LOO comparison. Figures are
PNG data URIs, so the file needs no other file and no network. Text from the
user's data (level and column names) is escaped. Both files are written
atomically. Examples: :func:`report`.

A posterior with a response family (``bm.sample(..., family=...)``) is reported
with its glmer fit (``freq=bm.glmer(...)``): the report states the family and
link, compares on the link scale, checks the priors and the posterior in
response units with a figure suited to the family (count frequencies for counts,
shares of successes for the binomial, densities on a log axis for positive
continuous responses; :func:`~bayesmlm.report.figures.posterior_predictive_figure`)
and pools on the link scale (:mod:`bayesmlm.pooling_glm`). A section that does not
apply says why.
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
    if freq is None:
        return None, None
    if not hasattr(freq, "confint"):
        return None, ("No likelihood-profile or bootstrap intervals: bayesmlm computes them for lmer fits only; "
                      "the summary's Wald standard errors (link scale) are the glmer fit's uncertainty.")
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


def _glmer_cannot_fit(post) -> str | None:
    """Why no glmer fit can go with a family posterior (student, lognormal, gaussian with weights...); None if one can."""
    from ..pooling_glm import POOLING_FAMILIES

    family = post.design.family
    if family is None or family.name in POOLING_FAMILIES:
        return None
    what = f"the {family.name} family" if family.name != "gaussian" else "a gaussian model with weights, an offset or another link"
    return (f"bm.glmer does not fit {what} (it fits the {', '.join(POOLING_FAMILIES)} families), so there is no "
            "frequentist fit to compare with, and no no-pooling estimates or partial pooling figure (their "
            "offsets come from that fit)")


def _posterior_pooling(post, freq) -> dict | None:
    """The posterior's own pooling factors, for a report without a frequentist fit."""
    if freq is not None:
        return None
    from ..pooling import pooling_factors

    return {"table": _table(pooling_factors(post=post)),
            "note": _glmer_cannot_fit(post) or ""}


def _pooling(freq, post) -> tuple[str | None, str | None]:
    from ..errors import DataError
    from ..pooling import pooling_from_fits

    if freq is None:
        why = _glmer_cannot_fit(post)
        if why is not None:
            return None, f"pooling figure left out: {why}; the posterior's own pooling factors are shown above"
        name = "lmer" if post.design.family is None else "glmer"
        return None, (f"pooling figure left out: it needs the {name} fit (freq=...) for no pooling and partial "
                      "pooling; the posterior's own pooling factors are shown above")
    try:
        pool = pooling_from_fits(freq, post)
        return figure_data_uri(pool.plot(max_panels=100 if pool.family is None else 60), dpi=70), None
    except DataError as exc:
        return None, f"pooling figure left out: {exc}"


def _family_context(post, freq) -> dict:
    """What the templates say about the response family (the gaussian model too)."""
    from ..pooling_glm import link_scale

    family = post.design.family
    if family is None:
        return {"family_model": False, "freq_name": "lmer", "sigma_heading": "Residual SD", "sigma_note": "",
                "family_line": "gaussian (identity link): a linear mixed model; estimates are in the response's units",
                "ppc_caption": "responses replicated from posterior draws against the observed response"}
    trials = post.design.glm.trials
    bernoulli = family.name == "binomial" and np.all(trials == 1)
    scale = link_scale(family)
    captions = {"binomial": "share of successes overall and by level, observed against data sets replicated "
                            "from posterior draws",
                "Gamma": "responses replicated from posterior draws against the observed ones (log axis)",
                "lognormal": "responses replicated from posterior draws against the observed ones (log axis)"}
    aux = ", ".join(family.aux_params)
    return {
        "family_model": True, "freq_name": "glmer",
        "family_line": f"{family.name} ({'Bernoulli: one trial per row; ' if bernoulli else ''}{family.link.name} "
                       "link): fixed effects, group effects and SDs, pooling factors "
                       f"and the pooling figure are on the {scale}; the prior and posterior predictive checks "
                       "are in the response's units",
        "sigma_heading": "Family parameters",
        "sigma_note": (f"The {family.name} family's own parameters ({aux})." if aux else
                       f"The {family.name} family has no dispersion parameter: its variance is fixed by its mean, "
                       "so this table is empty."),
        "ppc_caption": captions.get(family.name, "share of rows with each count, observed against data sets "
                                                 "replicated from posterior draws (median and 90% band)"
                                    if family.integer_response else
                                    "responses replicated from posterior draws against the observed response"),
    }


def _check_inputs(post, freq) -> None:
    """Fail before any work when the posterior and the frequentist fit do not belong together."""
    from ..bayes.result import BayesFit
    from ..freq.glmer_result import GlmerFit
    from ..freq.result import FreqFit

    if not isinstance(post, BayesFit):
        raise TypeError(f"the report is of a posterior (bm.sample's BayesFit), got {type(post).__name__}")
    if freq is None:
        return
    family = post.design.family
    if family is None and not isinstance(freq, FreqFit):
        raise TypeError(f"a gaussian posterior is reported with its bm.lmer fit (freq=...), got {type(freq).__name__}"
                        + (f" ({freq.family.name})" if isinstance(freq, GlmerFit) else ""))
    cannot = _glmer_cannot_fit(post)
    if cannot is not None:
        raise TypeError(f"{cannot}: report this posterior without freq= (got {type(freq).__name__})")
    if family is not None and not isinstance(freq, GlmerFit):
        raise TypeError(f"a {family.name} posterior is reported with a bm.glmer fit of the same family "
                        f"(freq=bm.glmer(formula, data, family=...)), got {type(freq).__name__}")
    if family is not None and (freq.family.name, freq.family.link.name) != (family.name, family.link.name):
        raise ValueError(f"the posterior is {family.name} ({family.link.name} link) but the glmer fit is "
                         f"{freq.family.name} ({freq.family.link.name} link)")
    from ..pooling_glm import require_same_fits

    require_same_fits(freq, post, "the report")  # same model by structure (not formula text), same rows


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

    _check_inputs(post, freq)
    design = post.design
    design.require_rows("the report")
    check = check_design(design, post.priors, draws=200, plausible=plausible, seed=0)
    pooling_figure, pooling_note = _pooling(freq, post)
    ok, headline, lines = _diagnostics(post)
    loo_table, loo_warnings = _loo(models)
    intervals, intervals_note = _freq_intervals(freq)
    data = summarise_data(design)
    priors = post.priors.table().set_index("parameter")
    family_params = post.family_parameters() if design.family is not None else None
    context = {
        **_family_context(post, freq),
        "family_table": _table(family_params) if family_params is not None and len(family_params) else None,
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
        "posterior_pooling": _posterior_pooling(post, freq),
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
        A gaussian posterior, or one with a response family (``bm.sample(..., family=...)``).
    path : str or Path
        The HTML file; the Markdown twin goes beside it.
    freq : FreqFit or GlmerFit, optional
        The lmer fit of the same model (for a family: the glmer fit of the same
        family and formula): adds its summary, the comparison tables, forest,
        shrinkage and pooling figures.
    models : dict of str -> BayesFit, optional
        Two or more models of the same rows to compare by LOO.
    plausible : (low, high), optional
        Plausible range of the response for the prior predictive check.
    title : str, optional

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    TypeError
        ``post`` is not a posterior, or ``freq`` is not the kind of fit its model needs
        (lmer for a gaussian posterior, glmer for a family glmer fits; none for the student
        and lognormal families or a gaussian model with weights or an offset).
    ValueError
        ``freq`` is of another model (fixed effects, grouping factors, varying columns,
        correlations: compared by structure, not formula text) or family, or ``path`` does
        not end in ``.html``.
    DataError
        ``freq`` was fitted to other rows (response, columns, levels, trials, weights, offsets).

    Examples
    --------
    With ``df`` (sleepstudy) and ``post`` from the example of :func:`bayesmlm.sample`, and
    ``fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)``:

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> path = report(post, out, freq=fit)
    >>> path.is_file(), path.with_suffix(".md").is_file()
    (True, True)

    A binomial model with its glmer fit:

    >>> import bayesmlm as bm
    >>> cbpp = bm.datasets.load("cbpp")
    >>> f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    >>> herds = bm.sample(f, cbpp, family="binomial", priors="default", draws=300, tune=300, chains=2, seed=1,
    ...                   progressbar=False)
    >>> path = report(herds, out, freq=bm.glmer(f, cbpp))
    >>> "Family: binomial (logit link)" in path.read_text()
    True
    """
    _check_inputs(post, freq)
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report is HTML: give a path ending in .html, got {str(path)!r}")
    html, markdown = render(post, freq, models=models, plausible=plausible, title=title)
    write_atomic(path.with_suffix(".md"), markdown)
    return write_atomic(path, html)
