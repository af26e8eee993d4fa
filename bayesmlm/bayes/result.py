"""BayesFit: a posterior read like an lmer fit.

Accessors mirror :class:`~bayesmlm.freq.result.FreqFit` (``fixef``,
``varcorr``, ``ranef``, ``coef``) with posterior mean, SD and an
equal-tailed interval in place of point estimates; ``draws(key)`` returns one
parameter's draws by its shared-vocabulary key, and ``predict`` handles new
rows, new levels and unseen combinations of crossed levels.

Examples
--------
>>> import numpy as np
>>> interval_columns(0.9)
('5%', '95%')
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ..design import Design
from ..errors import DataError
from ..newdata import new_design
from ..priors.spec import PriorSpec, component_key
from .diagnostics import Diagnostics
from .draws import correlation_factors, locate, stack_chains

__all__ = ["BayesFit", "interval_columns"]

NewLevels = Literal["error", "population", "sample"]


def interval_columns(prob: float) -> tuple[str, str]:
    """Column names of an equal-tailed interval, e.g. ``('5%', '95%')``."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1, got {prob}")
    lo, hi = 100 * (1 - prob) / 2, 100 * (1 + prob) / 2
    return f"{lo:g}%", f"{hi:g}%"


def interval_stats_columns(prob: float) -> list[str]:
    """``mean, sd`` and the interval's columns."""
    return ["mean", "sd", *interval_columns(prob)]


def _stats(samples: np.ndarray, prob: float) -> dict[str, float]:
    lo, hi = interval_columns(prob)
    q = np.quantile(samples, [(1 - prob) / 2, (1 + prob) / 2])
    return {"mean": float(np.mean(samples)), "sd": float(np.std(samples, ddof=1)), lo: float(q[0]), hi: float(q[1])}


class BayesFit:
    """Posterior of a linear mixed model.

    Attributes
    ----------
    idata : xarray.DataTree
        ArviZ data: posterior, sample_stats, log_likelihood, observed_data.
    design : Design
    priors : PriorSpec
    diagnostics : Diagnostics
    sampler : str
    method : str
        ``"collapsed"`` or ``"full"``; ``method_note`` says why.

    Examples
    --------
    With ``df`` (sleepstudy) and ``post`` from the example of :func:`bayesmlm.sample`, and
    ``fit = bm.lmer("Reaction ~ Days + (Days | Subject)", df)``:

    >>> list(post.fixef().columns)
    ['mean', 'sd', '5%', '95%']
    >>> post.draws("sd[Subject][Days]").shape, post.ranef()["Subject"].shape[0]
    ((600,), 36)
    >>> import pandas as pd
    >>> new = pd.DataFrame({"Subject": ["308", "new"], "Days": [5, 5]})
    >>> post.predict(new, new_levels="population").shape
    (2, 4)
    """

    def __init__(
        self,
        idata,
        design: Design,
        priors: PriorSpec,
        diagnostics: Diagnostics,
        sampler: str,
        method: str = "full",
        method_note: str = "",
    ):
        self.idata = idata
        self.design = design
        self.priors = priors
        self.diagnostics = diagnostics
        self.sampler = sampler
        self.method = method
        self.method_note = method_note

    @property
    def priors_from_same_data(self) -> bool:
        """True when the priors are empirical priors elicited from the data sampled here."""
        from ..priors.rules import data_fingerprint

        return self.priors.meta.get("data_fingerprint") == data_fingerprint(self.design)

    # -- draws -----------------------------------------------------------------------
    @property
    def _posterior(self):
        return self.idata["posterior"].dataset

    def _flat(self, var: str) -> np.ndarray:
        """(draws, ...) array of one posterior variable, chains stacked."""
        return stack_chains(self._posterior, var)

    def _locate(self, key: str) -> tuple[str, dict]:
        return locate(self.design, self._posterior, key)

    def draws(self, key: str) -> np.ndarray:
        """All posterior draws of one parameter, chains concatenated.

        Parameters
        ----------
        key : str
            ``"Intercept"``, ``"sd[Subject][Days]"``, ``"cor[Subject][Intercept,Days]"``
            (or ``"cor[Subject]"`` for a single pair), ``"r[Subject][308,Days]"``, ``"sigma"``.
        """
        var, sel = self._locate(key)
        return np.asarray(self._posterior[var].sel(sel)).reshape(-1)

    # -- lmer-style tables -------------------------------------------------------------
    def fixef(self, prob: float = 0.9) -> pd.DataFrame:
        """Fixed effects: mean, sd and equal-tailed interval, one row per column."""
        beta = self._flat("beta")
        rows = {name: _stats(beta[:, j], prob) for j, name in enumerate(self.design.fixed_names)}
        return pd.DataFrame.from_dict(rows, orient="index")

    def varcorr(self, prob: float = 0.9) -> pd.DataFrame:
        """Group SDs, correlations and sigma, shaped like ``FreqFit.varcorr()``."""
        rows = []
        for block in self.design.blocks:
            sd = self._flat(f"sd[{block.factor}]")
            for j, col in enumerate(block.columns):
                rows.append({"grp": block.factor, "var1": col, "var2": None, **_stats(sd[:, j], prob)})
            if f"cor[{block.factor}]" in self._posterior:
                cor = self._flat(f"cor[{block.factor}]")
                for group in block.groups:
                    for a, i in enumerate(group):
                        for j in group[a + 1 :]:
                            rows.append(
                                {"grp": block.factor, "var1": block.columns[i], "var2": block.columns[j], **_stats(cor[:, i, j], prob)}
                            )
        if "sigma" in self._aux_names:
            rows.append({"grp": "Residual", "var1": None, "var2": None, **_stats(self._flat("sigma"), prob)})
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", *interval_stats_columns(prob)])

    @property
    def family(self):
        """The response family (None: the gaussian linear mixed model)."""
        return self.design.family

    @property
    def _aux_names(self) -> tuple[str, ...]:
        return ("sigma",) if self.design.family is None else tuple(self.design.family.aux_params)

    def family_parameters(self, prob: float = 0.9) -> pd.DataFrame:
        """The family's own parameters besides ``sigma`` (``nu``, ``phi``, ``shape``): mean, sd, interval."""
        rows = {name: _stats(self._flat(name), prob) for name in self._aux_names if name != "sigma"}
        return pd.DataFrame.from_dict(rows, orient="index", columns=interval_stats_columns(prob))

    def parameters(self, prob: float = 0.9) -> pd.DataFrame:
        """Fixed effects, SDs, correlations and sigma in one table indexed by parameter name.

        Columns ``mean, sd, lower, upper`` (the equal-tailed ``prob`` interval);
        names as in prior files and :meth:`draws` (``Days``, ``sd[Subject][Days]``,
        ``cor[Subject][Intercept,Days]``, ``sigma``).

        Examples
        --------
        With ``post`` from the example of :func:`bayesmlm.sample`:

        >>> post.parameters().index.tolist()[2:]
        ['sd[Subject][Intercept]', 'sd[Subject][Days]', 'cor[Subject][Intercept,Days]', 'sigma']
        >>> post.parameters().columns.tolist()
        ['mean', 'sd', 'lower', 'upper']
        """
        vc = self.varcorr(prob)
        vc.index = [component_key(r.grp, r.var1, r.var2) for r in vc.itertuples()]
        table = pd.concat([self.fixef(prob), vc.drop(columns=["grp", "var1", "var2"]), self.family_parameters(prob)])
        quantiles = [c for c in table.columns if c.endswith("%")]
        return table.rename(columns=dict(zip(quantiles, ["lower", "upper"])))

    def _per_level(self, values: dict[str, np.ndarray], block, prob: float) -> pd.DataFrame:
        rows, index = [], []
        for lev_i, level in enumerate(block.levels):
            for term, draws in values.items():
                rows.append(_stats(draws[:, lev_i], prob))
                index.append((level, term))
        return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=[block.factor, "term"]))

    def ranef(self, prob: float = 0.9) -> dict[str, pd.DataFrame]:
        """Group effects per factor: rows (level, term), columns mean, sd, interval."""
        out = {}
        for block in self.design.blocks:
            r = self._flat(f"r[{block.factor}]")
            out[block.factor] = self._per_level({c: r[:, :, j] for j, c in enumerate(block.columns)}, block, prob)
        return out

    def coef(self, prob: float = 0.9) -> dict[str, pd.DataFrame]:
        """Per-level coefficients (fixed plus group effect), summarised over draws."""
        beta = self._flat("beta")
        out = {}
        for block in self.design.blocks:
            r = self._flat(f"r[{block.factor}]")
            values = {}
            for j, name in enumerate(self.design.fixed_names):
                total = np.repeat(beta[:, j : j + 1], block.n_levels, axis=1)
                if name in block.columns:
                    total = total + r[:, :, block.columns.index(name)]
                values[name] = total
            out[block.factor] = self._per_level(values, block, prob)
        return out

    # -- prediction ----------------------------------------------------------------------
    def predict_draws(
        self,
        new_data: pd.DataFrame,
        new_levels: NewLevels = "error",
        kind: Literal["mean", "predictive"] = "mean",
        seed: int | None = None,
        type: Literal["response", "link"] = "response",
        trials=None,
        offset=None,
    ) -> np.ndarray:
        """Draws (draws x rows) of the expected response, or of new observations.

        For a model with a response family: ``type="link"`` gives the linear predictor
        (offset included), ``"response"`` the expected response (the inverse link: a
        probability for the binomial, a count for the Poisson; the lognormal's
        ``exp(eta + sigma^2 / 2)``); ``kind="predictive"``
        draws responses from the family (whole numbers for counts; binomial successes out
        of ``trials``, a column of ``new_data`` or values, default 1). The offset of new rows
        comes from the formula's ``offset(...)`` terms evaluated on ``new_data``, plus ``offset``
        (a column or values), which a model fitted with ``offset=`` needs.

        Parameters
        ----------
        new_data : pandas.DataFrame
        new_levels : {"error", "population", "sample"}
            What to do with grouping levels the model has not seen: raise
            (naming them), use the population mean (group effect 0), or draw
            the group effect from its fitted distribution (one draw per new
            level and posterior draw, shared by that level's rows). Unseen
            *combinations* of seen levels of crossed factors need no policy:
            each factor contributes its own effect.
        kind : {"mean", "predictive"}
            Expected value, or with residual noise added.
        seed : int, optional
        """
        if new_levels not in ("error", "population", "sample"):
            raise ValueError(f"new_levels must be 'error', 'population' or 'sample', got {new_levels!r}")
        if kind not in ("mean", "predictive"):
            raise ValueError(f"kind must be 'mean' or 'predictive', got {kind!r}")
        nd = new_design(self.design, new_data)
        if nd.unseen and new_levels == "error":
            detail = "; ".join(f"{f!r}: {', '.join(map(repr, lv[:5]))}{' ...' if len(lv) > 5 else ''}" for f, lv in nd.unseen.items())
            raise DataError(
                f"new data has levels the model has not seen ({detail}); pass new_levels='population' "
                "(group effect 0) or new_levels='sample' (drawn from the fitted group distribution)"
            )
        rng = np.random.default_rng(seed)
        mu = self._flat("beta") @ nd.X.T
        for b, block in enumerate(self.design.blocks):
            code, values = nd.codes[b], nd.values[b]
            r = self._flat(f"r[{block.factor}]")
            seen = code >= 0
            mu[:, seen] += np.einsum("smk,mk->sm", r[:, code[seen], :], values[seen])
            if new_levels == "sample" and block.factor in nd.unseen:
                mu += self._new_level_effects(block, nd, b, rng)
        fam = self.design.family
        if fam is None:
            if kind == "predictive":
                mu = mu + self._flat("sigma")[:, None] * rng.standard_normal(mu.shape)
            return mu
        if type not in ("response", "link"):
            raise ValueError(f"type must be 'response' or 'link', got {type!r}")
        mu = mu + self._new_offset(new_data, offset)[None, :]
        if kind == "mean":
            if type == "link":
                return mu
            if fam.name == "lognormal":  # E[y] = exp(mu + sigma^2 / 2)
                return np.exp(mu + 0.5 * self._flat("sigma")[:, None] ** 2)
            return fam.link.inverse(mu)
        if type == "link":
            raise ValueError("kind='predictive' draws responses: use type='response'")
        n_trials = np.ones(len(new_data)) if trials is None else _column_or_values(new_data, trials, "trials")
        params = {name: self._flat(name)[:, None] for name in fam.aux_params}
        return fam.draw_response(rng, fam.link.inverse(mu), n_trials[None, :], **params)

    def _new_offset(self, new_data: pd.DataFrame, offset) -> np.ndarray:
        """The offset of new rows: the formula's offset terms on ``new_data`` plus ``offset``."""
        from ..freq.glmer import _evaluate

        glm = self.design.glm
        out = np.zeros(len(new_data))
        for expr in glm.offset_terms:
            out += np.asarray(_evaluate(expr, new_data.reset_index(drop=True), "offset"), dtype=float)
        if offset is not None:
            out += _column_or_values(new_data, offset, "offset")
        elif not glm.offset_terms and np.any(glm.offset != 0):
            raise DataError("this model was fitted with offset=: pass offset= (a column of new_data or values) "
                            "for the new rows too")
        return out

    def _new_level_effects(self, block, nd, b: int, rng: np.random.Generator) -> np.ndarray:
        """Effects of unseen levels drawn from N(0, Sigma) of each posterior draw."""
        levels = nd.unseen[block.factor]
        sd = self._flat(f"sd[{block.factor}]")  # (S, k)
        S, k = sd.shape
        chol = correlation_factors(self._posterior, block)
        r_new = np.einsum("sij,suj->sui", chol, rng.standard_normal((S, len(levels), k))) * sd[:, None, :]
        rows = np.flatnonzero(nd.codes[b] < 0)
        position = {level: i for i, level in enumerate(levels)}
        idx = np.array([position[str(key)] for key in nd.keys[b][rows]])
        out = np.zeros((S, nd.n))
        out[:, rows] = np.einsum("smk,mk->sm", r_new[:, idx, :], nd.values[b][rows])
        return out

    def predict(
        self,
        new_data: pd.DataFrame,
        new_levels: NewLevels = "error",
        kind: Literal["mean", "predictive"] = "mean",
        prob: float = 0.9,
        seed: int | None = None,
        type: Literal["response", "link"] = "response",
        trials=None,
        offset=None,
    ) -> pd.DataFrame:
        """Posterior mean, SD and interval per new row (see :meth:`predict_draws`; ``type``, ``trials``
        and ``offset`` for models with a response family)."""
        draws = self.predict_draws(new_data, new_levels=new_levels, kind=kind, seed=seed, type=type,
                                   trials=trials, offset=offset)
        rows = [_stats(draws[:, i], prob) for i in range(draws.shape[1])]
        return pd.DataFrame(rows, index=new_data.index)

    # -- text --------------------------------------------------------------------------
    def summary(self, prob: float = 0.9) -> str:
        """Priors, fixed effects, variance components and sampler diagnostics."""
        return "\n".join(
            [
                (f"Bayesian linear mixed model ({self.sampler}, {self.method_note}), {self.design.n} observations"
                 if self.design.family is None else
                 f"Bayesian generalized linear mixed model, family {self.design.family.name} "
                 f"({self.design.family.link.name} link) ({self.sampler}, {self.method_note}), {self.design.n} observations"),
                f"Formula: {self.design.formula.text}",
                "",
                "Priors:",
                self.priors.table().to_string(index=False),
                *[f"Note: {note}" for note in self.priors.notes(same_data=self.priors_from_same_data)],
                "",
                "Fixed effects:",
                self.fixef(prob).to_string(float_format=lambda v: f"{v:.4g}"),
                "",
                "Group SDs, correlations and residual SD:",
                self.varcorr(prob).to_string(index=False, float_format=lambda v: f"{v:.4g}"),
                *([] if self.family_parameters(prob).empty else
                  ["", "Family parameters:", self.family_parameters(prob).to_string(float_format=lambda v: f"{v:.4g}")]),
                "",
                "Sampler diagnostics:",
                self.diagnostics.verdict(),
            ]
        )

    def __repr__(self) -> str:
        return self.summary()


def _column_or_values(data: pd.DataFrame, value, what: str) -> np.ndarray:
    if isinstance(value, str):
        if value not in data.columns:
            raise DataError(f"{what} column {value!r} is not in new_data; its columns: {', '.join(map(str, data.columns))}")
        return pd.to_numeric(data[value], errors="coerce").to_numpy(dtype=float)
    arr = np.broadcast_to(np.asarray(value, dtype=float), (len(data),)).copy()
    return arr
