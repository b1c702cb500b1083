"""The three multilevel models of ``analyze`` (total, within-person, between-person effects)
and a sensitivity model adjusted for treatment week.

Does a week in which a patient's alliance is higher than *their own* average go with lower
symptoms the next week? Following Hamaker & Muthén (2020), each weekly score ``x_it`` of
patient ``i`` in week ``t`` is split into a between-person part (the patient's mean over all
of their stored weeks, ``x̄_i``) and a within-person part (``x_it − x̄_i``). Shalom et al.
(2025) fitted three models to weekly SPIN (symptom) and WAI-SR (alliance) scores; this
module fits the same three models to a clinic's scores (CONTRACT.md, ``analyze``):

total (linear mixed model, random intercept ``u_i`` per patient, REML)::

    S_i,t+1 = b0 + b1·S_it + b2·A_it + u_i + e_it

within (linear mixed model, random intercept per patient, REML)::

    (S_i,t+1 − S̄_i) = b0 + b1·(S_it − S̄_i) + b2·(A_it − Ā_i) + b3·Ā_i + u_i + e_it

between (ordinary least squares over patients)::

    S̄_i = b0 + b1·Ā_i + e_i

with ``u_i ~ N(0, τ²)`` and ``e_it ~ N(0, σ²)`` independent. "Next week" is the same
patient's score at exactly ``week + 1``: a missing week breaks the pair. Person means use all
of the patient's stored weeks of that instrument, whether or not the week is part of a pair.

The within model's ``alliance_between`` (``b3``) is about 0 by construction: the outcome is
already each patient's distance from their own symptom average, so no difference between
patients' averages is left for ``Ā_i`` to explain. It is not exactly 0 only because the
pairs leave out each patient's first outcome week, last predictor week and the weeks beside a
gap, so the pairs' mean outcome is not quite 0 per patient: on simulated 400-patient
clinics it was −0.007 to −0.003 whatever between-person effect was planted (−0.5 to 0.8,
``tests/core/test_models.py``; issue 13 reports −0.007 to −0.001 on six other clinics).
The published −0.028 comes from the same specification (SPINw on WAIb), so it is not a
between-person effect either; the between model estimates that.

Sensitivity model: adjusted for treatment week
-----------------------------------------------
Person-mean centring keeps each patient's trend over the weeks inside the within parts. When
alliance rises while symptoms fall (as in the trial: WAI-SR week means 36 → 47, SPIN
45 → 29), ``A_it − Ā_i`` is high in late weeks and ``S_i,t+1 − S̄_i`` is low in late weeks, so
the within model's ``b2`` mixes the week-to-week link with the shared trend and overstates it
(Wang & Maxwell, 2015; Curran & Bauer, 2011). The sensitivity model ``detrended`` follows
their advice for a time-varying predictor that trends: take each patient's own trend out of
the predictor and put time in the model::

    (S_i,t+1 − S̄_i) = b0 + b1·(S_it − S̄_i) + b2·Ã_it + b3·t + u_i + e_it
    Ã_it = A_it − (α̂_i + β̂_i·t)      (each patient's own least-squares line over all of
                                       their stored alliance weeks; detrend_by_person)

``alliance_detrended_t`` (``b2``) is then the link between a week's distance from the
patient's own alliance *course* and next week's symptoms. ``Ã`` is orthogonal, patient by
patient, to any straight line in ``t``, so neither the patient's own symptom trend nor the
clinic's average one (``week``, ``b3``) can load on it. The outcome and the lagged symptom stay
person-mean centred as in the trial: detrending them too would remove two degrees of freedom
per patient from an autoregressive series of about 10 weeks, which biases ``b1`` strongly
towards 0 and ``b2`` by about 15% (−0.17 for a planted −0.20 in simulation), and ``Ā_i`` is
left out (about 0 by construction, as above). Patients with fewer than
:data:`MIN_DETREND_WEEKS` alliance weeks are left out of this model. Only straight-line
trends are removed: a course that rises fast and then levels off keeps its curve in ``Ã``.

On simulated cohorts (``simulate_cohort(3000, 11, within=-0.2, ..., alliance_trend=1.0,
symptom_trend=-1.6, ...)``, ``tests/core/test_models.py``) the within model's estimate is about
−0.29 for a planted −0.20 and the detrended model's −0.20 (SE 0.008); without trends the two
agree (both about −0.19, the small attenuation of person means over 11 weeks).

Public API
----------
prepare_pairs
    One row per patient-week with the scores, person means, within parts and next week.
fit_within_between
    Fit the three models and the sensitivity model; returns an :class:`AnalysisResult`
    (small frozen dataclasses, never a statsmodels object). ``AnalysisResult.to_dict()`` is
    the CONTRACT JSON, with the sensitivity model under the added key ``"sensitivity"``.
detrend_by_person
    Each value's distance from the patient's own straight-line course over the weeks.
too_little_data
    A plain sentence when a clinic has too few patients or weeks for the models.
simulate_cohort
    A seeded synthetic cohort with a planted within-person and between-person effect,
    optionally with alliance rising and symptoms falling over the weeks.
PUBLISHED
    The published table and week means of Shalom et al. (2025), for display beside a
    clinic's own results.

Engines
-------
Two routes fit the *same* random-intercept model by REML:

``"statsmodels"`` (primary where it is fast and reliable)
    :class:`statsmodels.regression.mixed_linear_model.MixedLM`, trying the optimisers
    ``bfgs → lbfgs → powell → nm → cg`` in turn. A fit is accepted only when statsmodels
    reports convergence, everything is finite, and its variance ratio reaches the REML
    maximum found by the exact route below (within ``max(1e-4, 1e-7·|−2ℓ|)``): on boundary
    data statsmodels can report convergence at a point 31 units of −2ℓ below the maximum.
    Standard errors are the model-based REML covariance ``σ̂²·(XᵀV̂⁻¹X)⁻¹`` (lme4, nlme,
    SAS), recovered from statsmodels' Hessian by a Schur complement (``_reml_fixed_se``);
    statsmodels' own ``bse_fe`` adds fixed/variance cross terms and was 19% larger on the
    reference data. Its likelihood loops over patients in Python: about 1.5 s per model per
    10,000 pairs on the 2-core bench machine.
``"profiled"`` (exact closed form, O(patients) per likelihood evaluation)
    With ``γ = τ²/σ²`` the inverse covariance of patient ``i`` with ``n_i`` pairs is
    ``V_i⁻¹ = σ⁻²·(I − w_i·11ᵀ)``, ``w_i = γ / (1 + n_i·γ)``, so every quantity of the REML
    likelihood is a sum over per-patient totals (``XᵀX``, ``s_i = X_iᵀ1``, ``Σy_i``, ``n_i``)::

        A(γ) = XᵀX − Σ_i w_i s_i s_iᵀ        c(γ) = Xᵀy − Σ_i w_i s_i Σy_i
        β̂(γ) = A⁻¹c                          RSS(γ) = yᵀy − Σ_i w_i (Σy_i)² − cᵀβ̂
        −2·ℓ_R(γ) = (N − p)·log(RSS/(N − p)) + Σ_i log(1 + n_i·γ) + log|A| + const

    ``log γ`` is found by a grid over [e⁻¹⁸, e¹²] followed by bounded Brent minimisation,
    and the boundary ``γ = 0`` is checked too; then ``σ̂² = RSS/(N − p)``, ``τ̂² = γ̂·σ̂²``,
    ``Cov(β̂) = σ̂²·A⁻¹``. 20,000 patients × 20 weeks fit in about a second.

``engine="auto"`` (the default) first solves the exact profile (milliseconds), then:

* the REML maximum on the boundary (``τ̂² = 0``) → the profiled route: statsmodels' Hessian
  is not positive definite there and its optimisers fail or stop elsewhere. This is common:
  the within model's response is person-centred, and in the total model the lagged symptom
  carries the person's level (as in the published B = 0.935);
* more than :data:`AUTO_STATSMODELS_MAX_OBS` pairs → the profiled route (speed);
* otherwise statsmodels, falling back to the profiled route if no optimiser is accepted.

``ModelResult.engine`` and ``.optimizer`` say which route produced the numbers. Where both
routes run they agree to about 1e-5 in estimates and SEs. The between model is OLS
(statsmodels) in every engine.

Inference: mixed-model terms use Wald z tests and 95% CIs ``estimate ± 1.96·SE`` (as
statsmodels ``MixedLM``); the between model uses t with ``n − 2`` degrees of freedom. With
hundreds of pairs, t tests with Satterthwaite degrees of freedom (lmerTest) give nearly the
same p: on the reference data both are below .001 for every week-level term, and the
person-level ``alliance_between`` of the within model (about 50 df there) reads .359 (z)
against .363 (t).

Checked against
---------------
``tests/reference/make_reference.py``: an independent implementation (pairs built by a plain
Python loop over rows, the *unprofiled* REML likelihood over (σ², τ²) with dense per-patient
covariance matrices optimised by Nelder–Mead, fixed effects by GLS, between model by
``numpy.linalg.lstsq``) on a seeded 60-patient × 8-week data set with missing weeks, stored
in ``tests/reference/reference_scores.csv`` with its results in
``tests/reference/reference_models.json``. The profiled engine agrees with it to 1e-8 in
estimates and SEs, statsmodels to 5e-6; the test (``tests/core/test_models.py``) requires
1e-4 for estimates and 1e-3 (relative) for SEs.
A simulated cohort with a planted negative within effect and positive between effect
returns both signs, significantly.

``tests/reference/lme4_models.R``: R's ``lme4::lmer`` (REML, bobyqa to 1e-12) and ``lm`` for
all four models (total, within, between, detrended) on the same reference data, with pairs,
person means and the per-patient ``lm(score ~ week)`` detrending built in base R; its output
is kept in ``tests/reference/lme4_models.json``. The profiled engine agrees with it to 5e-8
in estimates and SEs (relative; 6e-9 absolute), statsmodels to 4.3e-6 (9e-7 absolute);
``tests/core/test_models_lme4.py`` requires 1e-6 and 1e-5 and, where ``Rscript`` is
installed, re-runs the script.

References
----------
Hamaker, E. L., & Muthén, B. (2020). The fixed versus random effects debate and how it
relates to centering in multilevel modeling. *Psychological Methods*, 25(3), 365–379.

Shalom, Prihar, Strauss, Huppert, Andersson & Aderka (2025). Internet-delivered CBT for
social anxiety, weekly WAI-SR and SPIN. *Behavior Therapy*, 56, 812–822.

Wang, L. P., & Maxwell, S. E. (2015). On disaggregating between-person and within-person
effects with longitudinal data using multilevel models. *Psychological Methods*, 20(1),
63–83. doi:10.1037/met0000030

Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and between-person
effects in longitudinal models of change. *Annual Review of Psychology*, 62, 583–619.
doi:10.1146/annurev.psych.093008.100356

Patterson, H. D., & Thompson, R. (1971). Recovery of inter-block information when block
sizes are unequal. *Biometrika*, 58(3), 545–554 (REML).
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = [
    "AUTO_STATSMODELS_MAX_OBS",
    "CONTRACT_MODELS",
    "DEFAULT_OPTIMIZERS",
    "ENGINES",
    "MIN_DETREND_WEEKS",
    "MIN_PATIENTS",
    "MIN_WEEKS",
    "PUBLISHED",
    "SENSITIVITY_MODELS",
    "TERM_NOTES",
    "WITHIN_BETWEEN_NOTE",
    "AnalysisResult",
    "ModelResult",
    "PublishedResults",
    "PublishedTerm",
    "TermEstimate",
    "detrend_by_person",
    "fit_within_between",
    "prepare_pairs",
    "simulate_cohort",
    "too_little_data",
]

#: Optimisers tried in turn by the statsmodels engine (names of ``MixedLM.fit(method=...)``).
#: bfgs first: on clean simulated data lbfgs raised "Singular matrix" in 2 of 4 fits
#: (statsmodels' own default order is bfgs, lbfgs, cg).
DEFAULT_OPTIMIZERS: tuple[str, ...] = ("bfgs", "lbfgs", "powell", "nm", "cg")
_KNOWN_OPTIMIZERS = frozenset({"lbfgs", "bfgs", "powell", "nm", "cg", "basinhopping"})
#: Engines accepted by :func:`fit_within_between`.
ENGINES: tuple[str, ...] = ("auto", "statsmodels", "profiled")
#: ``engine="auto"`` uses statsmodels up to this many pairs (patient-weeks with a next week)
#: and the exact profiled route above it. Project choice: statsmodels (bfgs) takes about
#: 0.75 s per model at 5,000 pairs on the 2-core bench machine and grows linearly, so the
#: clinic page stays under about 2 s; the profiled route gives the same numbers.
AUTO_STATSMODELS_MAX_OBS = 5_000
#: ``too_little_data`` thresholds (project choice): patients, and weeks with both scores each.
MIN_PATIENTS = 20
MIN_WEEKS = 3

_Z95 = float(stats.norm.ppf(0.975))
_REQUIRED_COLUMNS = ("patient_id", "instrument", "week", "score")
_TERMS = {
    "total": ("symptom_t", "alliance_t"),
    "within": ("symptom_within_t", "alliance_within_t", "alliance_between"),
    "between": ("alliance_between",),
    "detrended": ("symptom_within_t", "alliance_detrended_t", "week"),
}
_RESPONSES = {"total": "symptom_next", "within": "symptom_within_next", "detrended": "symptom_within_next"}
#: The models of CONTRACT.md ``analyze`` (``AnalysisResult.models``), in order.
CONTRACT_MODELS: tuple[str, ...] = ("total", "within", "between")
#: Sensitivity models fitted beside them (``AnalysisResult.sensitivity``; JSON key ``"sensitivity"``).
SENSITIVITY_MODELS: tuple[str, ...] = ("detrended",)
#: A patient's alliance series is detrended only with at least this many stored weeks (with 2 the
#: straight line passes through both points and nothing is left; project choice).
MIN_DETREND_WEEKS = 3
#: What the within model's ``alliance_between`` is (and is not), wherever it is shown.
WITHIN_BETWEEN_NOTE = (
    "About 0 by construction: the within model's outcome is each patient's distance from their own average, "
    "so no difference between patients' averages is left for the average alliance to explain. It is not a "
    "between-person effect (the between model is); the trial's -0.028 comes from the same specification."
)
#: Plain notes on terms, keyed by (model, term): shown beside the numbers and in the JSON.
TERM_NOTES: Mapping[tuple[str, str], str] = MappingProxyType({("within", "alliance_between"): WITHIN_BETWEEN_NOTE})
# warnings.catch_warnings changes process-wide state; the web app fits from several threads.
_WARNINGS_LOCK = threading.Lock()

Progress = Callable[[float, str], Any]


# --------------------------------------------------------------------------- results


def _clean(x: float) -> float | None:
    """A float for JSON: NaN and infinities become ``None``."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class TermEstimate:
    """One coefficient: estimate, standard error, 95% confidence interval and p value."""

    name: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p: float

    def to_dict(self) -> dict[str, float | None]:
        """The CONTRACT ``T`` object ``{"estimate", "se", "ci_low", "ci_high", "p"}``."""
        return {
            "estimate": _clean(self.estimate),
            "se": _clean(self.se),
            "ci_low": _clean(self.ci_low),
            "ci_high": _clean(self.ci_high),
            "p": _clean(self.p),
        }


@dataclass(frozen=True)
class ModelResult:
    """One fitted model.

    Attributes
    ----------
    name : {"total", "within", "between", "detrended"}
    formula : str
        The model in words, e.g. ``"symptom_next ~ symptom_t + alliance_t + (1 | patient)"``.
    n_obs : int
        Pairs used (total, within) or patients (between).
    n_patients : int
        Patients contributing at least one row.
    terms : tuple of TermEstimate
        In CONTRACT order; the intercept is not reported.
    converged : bool
        False when no optimiser reached the REML maximum with finite standard errors (the
        numbers of the last attempt are shown and ``message`` says they are not reliable),
        or the model could not be fitted at all (estimates NaN, ``message`` says why).
    optimizer : str or None
        The optimiser whose fit is reported (``"bfgs"``, ``"lbfgs"``, ``"powell"``, ``"nm"``, ``"cg"``,
        ``"brent"`` for the profiled engine, ``"lstsq"`` for OLS), None if nothing ran.
    engine : str
        ``"statsmodels"``, ``"profiled"`` or ``"ols"``.
    warnings : tuple of str
        Warnings raised while fitting (captured, not printed), and one line per optimiser
        that failed before the reported one.
    message : str
        Empty when all is well; otherwise a plain sentence for the user.
    random_intercept_var, residual_var : float or None
        ``τ̂²`` and ``σ̂²`` of the mixed models (residual variance of OLS for between).
    """

    name: str
    formula: str
    n_obs: int
    n_patients: int
    terms: tuple[TermEstimate, ...]
    converged: bool
    optimizer: str | None
    engine: str
    warnings: tuple[str, ...] = ()
    message: str = ""
    random_intercept_var: float | None = None
    residual_var: float | None = None

    def term(self, name: str) -> TermEstimate:
        """The term called ``name``; ``ValueError`` if the model has no such term."""
        for t in self.terms:
            if t.name == name:
                return t
        raise ValueError(f"The {self.name} model has no term {name!r}; it has {', '.join(t.name for t in self.terms)}.")

    def to_dict(self) -> dict[str, Any]:
        """The CONTRACT object of this model plus the extra keys of this project."""
        out: dict[str, Any] = {}
        if self.name == "between":
            out["n_patients"] = self.n_obs
        else:
            out["n_obs"] = self.n_obs
            out["n_patients"] = self.n_patients
        out["terms"] = {t.name: t.to_dict() for t in self.terms}
        notes = {t.name: TERM_NOTES[(self.name, t.name)] for t in self.terms if (self.name, t.name) in TERM_NOTES}
        if notes:
            out["notes"] = notes
        out["formula"] = self.formula
        out["converged"] = self.converged
        out["optimizer"] = self.optimizer
        out["engine"] = self.engine
        out["warnings"] = list(self.warnings)
        out["message"] = self.message
        if self.random_intercept_var is not None:
            out["random_intercept_var"] = _clean(self.random_intercept_var)
        if self.residual_var is not None:
            out["residual_var"] = _clean(self.residual_var)
        return out


@dataclass(frozen=True)
class AnalysisResult:
    """The three models for one symptom/alliance pair of instruments, and the sensitivity model.

    ``to_dict()`` is the JSON of ``analyze --format json`` (CONTRACT.md) with one added key,
    ``"sensitivity"``; ``to_frame()`` is the same numbers as a tidy table, one row per model
    term. ``detrended`` is the within model adjusted for treatment week (module docstring,
    "Sensitivity model"); it is ``None`` when ``fit_within_between(..., sensitivity=False)``.
    """

    symptom: str
    alliance: str
    n_patients: int
    total: ModelResult
    within: ModelResult
    between: ModelResult
    seconds: float = field(default=0.0, compare=False)
    detrended: ModelResult | None = None

    @property
    def models(self) -> dict[str, ModelResult]:
        """The CONTRACT models: ``{"total": ..., "within": ..., "between": ...}``."""
        return {"total": self.total, "within": self.within, "between": self.between}

    @property
    def sensitivity(self) -> dict[str, ModelResult]:
        """The sensitivity models fitted: ``{"detrended": ...}``, or ``{}``."""
        return {} if self.detrended is None else {"detrended": self.detrended}

    @property
    def all_models(self) -> dict[str, ModelResult]:
        """The CONTRACT models followed by the sensitivity models."""
        return {**self.models, **self.sensitivity}

    @property
    def converged(self) -> bool:
        """True when the three CONTRACT models converged (the sensitivity model has its own
        ``converged``)."""
        return all(m.converged for m in self.models.values())

    def to_dict(self) -> dict[str, Any]:
        """CONTRACT.md ``analyze --format json``: ``{"symptom", "alliance", "n_patients",
        "models": {"total": {"n_obs", "terms"}, "within": {...}, "between": {"n_patients",
        "terms"}}}``, each term ``{"estimate", "se", "ci_low", "ci_high", "p"}``; NaN is
        ``None`` so that the result is valid JSON. Extra keys are additions the contract
        allows: per model ``converged``, ``warnings``, ``optimizer``, ``formula``, ...,
        ``notes`` (plain sentences on terms, e.g. the within model's ``alliance_between``),
        and at the top ``"sensitivity": {"detrended": {...}}`` (same shape as a model), so
        that ``"models"`` keeps exactly the three models of the contract."""
        out: dict[str, Any] = {
            "symptom": self.symptom,
            "alliance": self.alliance,
            "n_patients": int(self.n_patients),
            "models": {name: m.to_dict() for name, m in self.models.items()},
        }
        if self.sensitivity:
            out["sensitivity"] = {name: m.to_dict() for name, m in self.sensitivity.items()}
        return out

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: model, term, estimate, se, ci_low, ci_high, p, n, converged; the CONTRACT
        models first, then the sensitivity model (``model == "detrended"``)."""
        rows = [
            {
                "model": m.name,
                "term": t.name,
                "estimate": t.estimate,
                "se": t.se,
                "ci_low": t.ci_low,
                "ci_high": t.ci_high,
                "p": t.p,
                "n": m.n_obs,
                "converged": m.converged,
            }
            for m in self.all_models.values()
            for t in m.terms
        ]
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------- published


@dataclass(frozen=True)
class PublishedTerm:
    """One row of the published table: ``B``, ``SE`` and ``p`` as printed (e.g. ``"<.001"``)."""

    estimate: float
    se: float
    p: str


@dataclass(frozen=True)
class PublishedResults:
    """Published results to show beside a clinic's own (CLINICAL.md)."""

    citation: str
    symptom: str
    alliance: str
    n_patients: int
    n_weeks: int
    models: Mapping[str, Mapping[str, PublishedTerm]]
    week_means: Mapping[str, tuple[float, ...]]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: model, term, estimate, se, p (p as printed)."""
        return pd.DataFrame(
            [
                {"model": m, "term": t, "estimate": v.estimate, "se": v.se, "p": v.p}
                for m, terms in self.models.items()
                for t, v in terms.items()
            ]
        )

    def week_means_frame(self) -> pd.DataFrame:
        """Long table: instrument, week (1-based), mean."""
        return pd.DataFrame(
            [
                {"instrument": k, "week": w, "mean": v}
                for k, means in self.week_means.items()
                for w, v in enumerate(means, start=1)
            ]
        )


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


#: Shalom et al. (2025), Behav Ther 56:812–822: 182 adults, 11 weeks of internet CBT for
#: social anxiety (CLINICAL.md, "Published results" and Table 1 week means).
PUBLISHED = PublishedResults(
    citation=("Shalom, Prihar, Strauss, Huppert, Andersson & Aderka (2025), Behavior Therapy 56, 812-822"),
    symptom="SPIN",
    alliance="WAI-SR",
    n_patients=182,
    n_weeks=11,
    models=_frozen(
        {
            "total": _frozen(
                {
                    "symptom_t": PublishedTerm(0.935, 0.010, "<.001"),
                    "alliance_t": PublishedTerm(-0.038, 0.011, ".001"),
                }
            ),
            "within": _frozen(
                {
                    "symptom_within_t": PublishedTerm(0.770, 0.018, "<.001"),
                    "alliance_within_t": PublishedTerm(-0.060, 0.021, ".004"),
                    "alliance_between": PublishedTerm(-0.028, 0.017, ".091"),
                }
            ),
            "between": _frozen({"alliance_between": PublishedTerm(0.115, 0.031, "<.001")}),
        }
    ),
    week_means=_frozen(
        {
            "SPIN": (44.79, 43.55, 42.35, 40.50, 38.91, 37.31, 35.25, 34.21, 31.36, 29.66, 28.72),
            "WAI-SR": (36.19, 41.05, 42.49, 43.76, 44.69, 46.53, 46.12, 46.26, 46.79, 47.11, 46.86),
        }
    ),
)


# --------------------------------------------------------------------------- input


def _check_instruments(symptom: str, alliance: str) -> None:
    for label, code in (("symptom", symptom), ("alliance", alliance)):
        if not isinstance(code, str) or not code.strip():
            raise ValueError(f"The {label} instrument must be a code such as 'SPIN' or 'WAI-SR'.")
    if symptom == alliance:
        raise ValueError(
            f"The symptom and the alliance instrument are both {symptom!r}; choose two different instruments."
        )


def _select_scores(scores: pd.DataFrame, symptom: str, alliance: str) -> pd.DataFrame:
    """Validated rows of the two instruments: patient_id, week (int64), instrument, score."""
    if not isinstance(scores, pd.DataFrame):
        raise ValueError("The scores must be a table (a pandas DataFrame) in the core column contract.")
    _check_instruments(symptom, alliance)
    missing = [c for c in _REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(
            f"The scores table lacks the column(s) {', '.join(missing)}; it needs {', '.join(_REQUIRED_COLUMNS)}."
        )
    df = scores.loc[scores["instrument"].isin([symptom, alliance]), list(_REQUIRED_COLUMNS)]
    if df["patient_id"].isna().any():
        raise ValueError("Some scores have no patient_id; every score must name its patient.")
    week = df["week"]
    if not pd.api.types.is_numeric_dtype(week) or pd.api.types.is_bool_dtype(week):
        raise ValueError("The week column must hold whole numbers (treatment weeks 1, 2, 3, ...).")
    wk = week.to_numpy(dtype="float64", na_value=np.nan)
    if len(wk) and (~np.isfinite(wk)).any():
        raise ValueError("Some scores have no week; every score must have a treatment week (1, 2, ...).")
    if len(wk) and ((wk != np.round(wk)).any() or (wk < 1).any()):
        raise ValueError("The week column must hold whole numbers of 1 or more (treatment weeks).")
    score = df["score"]
    if not pd.api.types.is_numeric_dtype(score) or pd.api.types.is_bool_dtype(score):
        raise ValueError("The score column must hold numbers (total scores).")
    sc = score.to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(sc).any():
        raise ValueError("Some scores are infinite; scores must be finite numbers.")
    out = pd.DataFrame(
        {
            "patient_id": df["patient_id"].to_numpy(),
            "week": wk.astype("int64"),
            "instrument": df["instrument"].to_numpy(),
            "score": sc,
        }
    )
    out = out.loc[np.isfinite(sc)]  # a missing score is a missing week, never a zero
    dup = out.duplicated(["patient_id", "instrument", "week"], keep=False)
    if dup.any():
        first = out.loc[dup].iloc[0]
        raise ValueError(
            f"{int(dup.sum())} rows repeat a score for the same patient, instrument and week "
            f"(first: patient {first['patient_id']}, {first['instrument']}, week {first['week']}); "
            "keep one score per patient, instrument and week."
        )
    return out


def prepare_pairs(scores: pd.DataFrame, *, symptom: str = "SPIN", alliance: str = "WAI-SR") -> pd.DataFrame:
    """One row per patient-week: scores, person means, within parts and the next week.

    For patient ``i`` and week ``t`` (``S`` symptom, ``A`` alliance)::

        symptom_between     S̄_i = mean of all of the patient's stored S scores
        alliance_between    Ā_i = mean of all of the patient's stored A scores
        symptom_within_t    S_it − S̄_i
        alliance_within_t   A_it − Ā_i
        symptom_next        S_i,t+1 (exactly week t + 1, else NaN: a missing week breaks the pair)
        symptom_within_next S_i,t+1 − S̄_i
        alliance_detrended_t A_it − (α̂_i + β̂_i·t), the patient's own least-squares line over
                            all of their stored A weeks taken out (detrend_by_person; NaN
                            for patients with fewer than MIN_DETREND_WEEKS alliance weeks)

    Parameters
    ----------
    scores : DataFrame
        Long scores frame in the core column contract (``patient_id``, ``instrument``,
        ``week``, ``score``; other columns and instruments are ignored). Rows with a
        missing score count as missing weeks. Not modified.
    symptom, alliance : str
        Instrument codes.

    Returns
    -------
    DataFrame
        Columns ``patient_id, week, symptom_t, alliance_t, symptom_next, symptom_between,
        alliance_between, symptom_within_t, alliance_within_t, symptom_within_next,
        alliance_detrended_t``; one row
        for every week in which the patient has a score on either instrument, sorted by
        patient and week. A row is a usable pair when ``symptom_t``, ``alliance_t`` and
        ``symptom_next`` are all present.

    Raises
    ------
    ValueError
        Missing columns, weeks that are not whole numbers ≥ 1, non-numeric or infinite
        scores, a missing patient_id, or two scores for the same patient, instrument and week.

    References
    ----------
    Hamaker & Muthén (2020), Psychol Methods 25:365 (person-mean centring).
    Wang & Maxwell (2015), Psychol Methods 20:63 (detrending).

    Checked against the row-by-row pairing of ``tests/reference/make_reference.py`` and the
    base-R pairing and ``lm`` detrending of ``tests/reference/lme4_models.R``.
    """
    df = _select_scores(scores, symptom, alliance)
    df["instrument"] = np.where(df["instrument"].to_numpy() == symptom, "symptom_t", "alliance_t")
    wide = df.pivot(index=["patient_id", "week"], columns="instrument", values="score")
    wide = wide.reindex(columns=["symptom_t", "alliance_t"]).sort_index().reset_index()
    wide.columns.name = None
    wide["symptom_t"] = wide["symptom_t"].astype("float64")
    wide["alliance_t"] = wide["alliance_t"].astype("float64")

    by_patient = wide.groupby("patient_id", sort=False)
    next_week = by_patient["week"].shift(-1)
    next_symptom = by_patient["symptom_t"].shift(-1)
    consecutive = (next_week == wide["week"] + 1).to_numpy(dtype=bool, na_value=False)
    wide["symptom_next"] = np.where(consecutive, next_symptom.to_numpy(dtype="float64"), np.nan)

    wide["symptom_between"] = by_patient["symptom_t"].transform("mean")
    wide["alliance_between"] = by_patient["alliance_t"].transform("mean")
    wide["symptom_within_t"] = wide["symptom_t"] - wide["symptom_between"]
    wide["alliance_within_t"] = wide["alliance_t"] - wide["alliance_between"]
    wide["symptom_within_next"] = wide["symptom_next"] - wide["symptom_between"]
    wide["alliance_detrended_t"] = detrend_by_person(wide, "alliance_t")
    return wide[
        [
            "patient_id",
            "week",
            "symptom_t",
            "alliance_t",
            "symptom_next",
            "symptom_between",
            "alliance_between",
            "symptom_within_t",
            "alliance_within_t",
            "symptom_within_next",
            "alliance_detrended_t",
        ]
    ]


def detrend_by_person(frame: pd.DataFrame, column: str, *, min_weeks: int = MIN_DETREND_WEEKS) -> pd.Series:
    """Each value's distance from the patient's own straight-line course over the weeks.

    For patient ``i`` with stored values ``x_it`` in weeks ``t`` (missing values are gaps)::

        x_it = α_i + β_i·t + r_it      (least squares over all of the patient's stored weeks)
        β̂_i = Σ_t (t − t̄_i)(x_it − x̄_i) / Σ_t (t − t̄_i)²
        detrended_it = r̂_it = x_it − x̄_i − β̂_i·(t − t̄_i)

    Person-mean centring (``x_it − x̄_i``) is the special case ``β_i = 0``: it keeps a patient's
    steady rise or fall inside the within part. Detrending removes it, so that what is left is
    the week-to-week fluctuation around the patient's own course (Curran & Bauer, 2011; Wang &
    Maxwell, 2015). Vectorised: per-patient sums by ``groupby(...).transform``, no loop.

    Parameters
    ----------
    frame : DataFrame
        Columns ``patient_id``, ``week`` and ``column`` (other columns ignored). Not modified.
    column : str
        The values to detrend (NaN = no value that week).
    min_weeks : int
        Patients with fewer stored values than this get NaN (default
        :data:`MIN_DETREND_WEEKS` = 3: a line through 2 points leaves nothing).

    Returns
    -------
    Series
        float64, aligned with ``frame``; NaN where the value is missing or the patient has
        fewer than ``min_weeks`` values.

    References
    ----------
    Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
    between-person effects in longitudinal models of change. *Annual Review of Psychology*,
    62, 583–619. doi:10.1146/annurev.psych.093008.100356
    Wang, L. P., & Maxwell, S. E. (2015). On disaggregating between-person and within-person
    effects with longitudinal data using multilevel models. *Psychological Methods*, 20(1),
    63–83. doi:10.1037/met0000030

    Checked against R's per-patient ``lm(score ~ week)`` residuals
    (``tests/reference/lme4_models.R``).
    """
    if min_weeks < 2:
        raise ValueError("min_weeks must be at least 2: a straight line needs two weeks.")
    x = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    present = x.notna()
    week = frame["week"].astype("float64")
    by = frame["patient_id"]
    t = week.where(present)
    n = present.groupby(by, sort=False).transform("sum")
    t_bar = t.groupby(by, sort=False).transform("mean")
    x_bar = x.groupby(by, sort=False).transform("mean")
    dt = t - t_bar
    sxx = (dt * dt).groupby(by, sort=False).transform("sum")
    sxy = (dt * (x - x_bar)).groupby(by, sort=False).transform("sum")
    enough = (n >= min_weeks) & (sxx > 0)
    slope = (sxy / sxx.where(enough)).where(enough)
    resid = x - x_bar - slope * (week - t_bar)
    return resid.where(enough & present).astype("float64")


def too_little_data(
    scores: pd.DataFrame,
    *,
    symptom: str = "SPIN",
    alliance: str = "WAI-SR",
    min_patients: int = MIN_PATIENTS,
    min_weeks: int = MIN_WEEKS,
) -> str | None:
    """A plain message when there are too few data for the models, else ``None``.

    A patient counts when they have at least ``min_weeks`` weeks with both a symptom and an
    alliance score; the models need at least ``min_patients`` such patients (defaults 20 and
    3, a project choice: below that the estimates are too unstable to discuss in a clinic
    meeting).

    Parameters
    ----------
    scores : DataFrame
        Long scores frame (core column contract). Not modified.
    symptom, alliance : str
        Instrument codes.
    min_patients, min_weeks : int
        Thresholds, both at least 1.

    Returns
    -------
    str or None
    """
    if min_patients < 1 or min_weeks < 1:
        raise ValueError("min_patients and min_weeks must both be at least 1.")
    pairs = prepare_pairs(scores, symptom=symptom, alliance=alliance)
    both = pairs["symptom_t"].notna() & pairs["alliance_t"].notna()
    weeks_both = both.groupby(pairs["patient_id"], sort=False).sum()
    enough = int((weeks_both >= min_weeks).sum())
    if enough >= min_patients:
        return None
    n_sym = int(pairs["symptom_t"].notna().sum())
    n_all = int(pairs["alliance_t"].notna().sum())
    if n_sym == 0 or n_all == 0:
        absent = " and ".join(c for c, n in ((symptom, n_sym), (alliance, n_all)) if n == 0)
        return f"No {absent} scores are stored, so the models comparing {symptom} with {alliance} cannot be fitted."
    patients = "patient has" if enough == 1 else "patients have"
    return (
        f"Too little data for the models: they need at least {min_patients} patients with at "
        f"least {min_weeks} weeks of both {symptom} and {alliance} scores, and {enough} "
        f"{patients} that many so far."
    )


# --------------------------------------------------------------------------- fitting


def _wald(names: Sequence[str], est: np.ndarray, se: np.ndarray) -> tuple[TermEstimate, ...]:
    """Wald z terms: p = 2·(1 − Φ(|b/se|)), CI = b ± 1.96·se."""
    out = []
    for name, b, s in zip(names, est, se, strict=True):
        b, s = float(b), float(s)
        p = float(2.0 * stats.norm.sf(abs(b / s))) if s > 0 and math.isfinite(s) else math.nan
        out.append(TermEstimate(name, b, s, b - _Z95 * s, b + _Z95 * s, p))
    return tuple(out)


def _nan_terms(names: Sequence[str]) -> tuple[TermEstimate, ...]:
    nan = math.nan
    return tuple(TermEstimate(n, nan, nan, nan, nan, nan) for n in names)


def _warning_text(w: warnings.WarningMessage) -> str:
    return f"{w.category.__name__}: {w.message}"


def _dedupe(msgs: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(msgs))


@dataclass(frozen=True)
class _Design:
    y: np.ndarray  # (N,)
    x: np.ndarray  # (N, p), first column the intercept
    groups: np.ndarray  # (N,) int codes 0..G-1
    n_groups: int


def _design(pairs: pd.DataFrame, model: str) -> _Design:
    terms = _TERMS[model]
    cols = [_RESPONSES[model], *terms]
    # a usable pair has both scores this week and the symptom next week; the detrended model
    # also needs the patient's detrended alliance (at least MIN_DETREND_WEEKS alliance weeks)
    needed = list(dict.fromkeys(["symptom_t", "alliance_t", "symptom_next", *cols]))
    usable = pairs[needed].notna().all(axis=1).to_numpy()
    data = pairs.loc[usable, ["patient_id", *cols]]
    codes, uniques = pd.factorize(data["patient_id"], sort=False)
    x = np.column_stack([np.ones(len(data)), data[list(terms)].to_numpy(dtype="float64")])
    return _Design(
        y=data[cols[0]].to_numpy(dtype="float64"),
        x=x,
        groups=codes.astype(np.int64),
        n_groups=len(uniques),
    )


class _Fit(NamedTuple):
    terms: tuple[TermEstimate, ...]
    converged: bool
    optimizer: str | None
    engine: str
    notes: list[str]
    message: str
    tau2: float | None
    sigma2: float | None


class _ProfiledREML:
    """Exact restricted likelihood of the random-intercept model from per-patient sums.

    ``objective(γ)`` is ``−2·ℓ_R`` up to a constant, profiled over β and σ² (module
    docstring); ``solve()`` minimises it over ``γ = τ²/σ² ≥ 0``.
    """

    def __init__(self, d: _Design) -> None:
        x = d.x.copy()
        y = d.y.copy()
        # Centre the covariates and the response: the slopes, their covariance and the
        # likelihood are unchanged (a unit-triangular reparametrisation), and the sums below
        # lose no precision to cancellation.
        x[:, 1:] -= x[:, 1:].mean(axis=0)
        y -= y.mean()
        g, n_groups = d.groups, d.n_groups
        self.N, self.p = x.shape
        self.n = np.bincount(g, minlength=n_groups).astype("float64")
        self.sx = np.column_stack([np.bincount(g, weights=x[:, j], minlength=n_groups) for j in range(self.p)])
        self.sy = np.bincount(g, weights=y, minlength=n_groups)
        self.xtx, self.xty, self.yty = x.T @ x, x.T @ y, float(y @ y)

    def parts(self, gamma: float) -> tuple[float, np.ndarray, np.ndarray, float]:
        """``(−2ℓ_R, β̂, A, RSS)`` at ``γ``; ``−2ℓ_R`` is ``inf`` where undefined."""
        n, sx, sy = self.n, self.sx, self.sy
        w = gamma / (1.0 + n * gamma)
        a = self.xtx - (sx * w[:, None]).T @ sx
        c = self.xty - (sx * (w * sy)[:, None]).sum(axis=0)
        dd = self.yty - float(np.sum(w * sy * sy))
        try:
            beta = np.linalg.solve(a, c)
        except np.linalg.LinAlgError:
            return math.inf, np.full(self.p, np.nan), a, math.nan
        rss = dd - float(c @ beta)
        sign, logdet = np.linalg.slogdet(a)
        if sign <= 0 or not rss > 0:
            return math.inf, beta, a, rss
        df = self.N - self.p
        obj = df * math.log(rss / df) + float(np.sum(np.log1p(n * gamma))) + logdet
        return obj, beta, a, rss

    def objective(self, gamma: float) -> float:
        return self.parts(gamma)[0]

    def solve(self) -> tuple[float, float, bool, list[str]]:
        """``(γ̂, −2ℓ_R(γ̂), success, notes)``: a grid over log γ, bounded Brent, and γ = 0."""
        grid = np.linspace(-18.0, 12.0, 61)
        values = np.array([self.objective(math.exp(v)) for v in grid])
        if not np.isfinite(values).any():
            raise np.linalg.LinAlgError("the likelihood is not finite anywhere: the terms are collinear or constant")
        k = int(np.argmin(values))
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
        opt = optimize.minimize_scalar(
            lambda v: self.objective(math.exp(v)),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-10, "maxiter": 500},
        )
        gamma, best = math.exp(float(opt.x)), float(opt.fun)
        success = bool(opt.success) and math.isfinite(best)
        notes: list[str] = []
        at_zero = self.objective(0.0)
        if at_zero <= best:
            gamma, best = 0.0, at_zero
            success = math.isfinite(at_zero)
            notes.append("random-intercept variance estimated at 0 (boundary of the parameter space)")
        return gamma, best, success, notes

    def estimates(self, gamma: float) -> tuple[np.ndarray, np.ndarray, float]:
        """``(β̂, Cov(β̂), σ̂²)`` at ``γ`` (slopes in positions 1…p−1)."""
        _, beta, a, rss = self.parts(gamma)
        sigma2 = rss / (self.N - self.p)
        return beta, sigma2 * np.linalg.inv(a), sigma2


def _reml_tolerance(best: float) -> float:
    """Largest excess of −2ℓ_R over the optimum that still counts as the same maximum."""
    return max(1e-4, 1e-7 * abs(best))


def _reml_fixed_se(cov_all: np.ndarray, k_fe: int) -> np.ndarray:
    """Model-based SEs of the fixed effects, ``sqrt(diag((XᵀV̂⁻¹X)⁻¹))``, from statsmodels.

    statsmodels' ``bse_fe`` is taken from the inverse of the observed Hessian of *all*
    parameters, whose fixed-effect/variance cross terms are not zero in a finite sample;
    on the reference data this made the SE of ``symptom_t`` 19% larger than the usual REML
    covariance ``(XᵀV̂⁻¹X)⁻¹`` reported by lme4, nlme and SAS PROC MIXED (and by the
    independent reference). The inverse of the fixed-effect block of the Hessian is
    recovered from the full inverse ``P`` by the Schur complement
    ``P_ff − P_fr·P_rr⁻¹·P_rf``. Returns NaN where that is not possible.
    """
    p_ff = cov_all[:k_fe, :k_fe]
    p_fr = cov_all[:k_fe, k_fe:]
    p_rr = cov_all[k_fe:, k_fe:]
    try:
        cov_fe = p_ff - p_fr @ np.linalg.solve(p_rr, p_fr.T)
    except np.linalg.LinAlgError:
        return np.full(k_fe, np.nan)
    diag = np.diag(cov_fe)
    return np.where(diag > 0, np.sqrt(np.abs(diag)), np.nan)


def _fit_statsmodels(
    d: _Design,
    names: Sequence[str],
    optimizers: Sequence[str],
    optimizer_options: Mapping[str, Mapping[str, Any]],
    profile: _ProfiledREML | None,
    best: float | None,
) -> _Fit:
    """Random-intercept REML by statsmodels MixedLM, one optimiser after another.

    An optimiser's fit is accepted when statsmodels says it converged, its estimates and
    standard errors are finite, and (when the exact profile is available) its variance
    ratio reaches the REML maximum found by :class:`_ProfiledREML`. statsmodels can report
    convergence at a point that is not the maximum, most often when the random-intercept
    variance is at its boundary of 0; such fits are rejected and the next optimiser tried.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM

    notes: list[str] = []
    last: tuple[Any, str, list[str]] | None = None  # last fit that ran, for the report
    for name in optimizers:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = MixedLM(d.y, d.x, groups=d.groups)
                res = model.fit(reml=True, method=name, **dict(optimizer_options.get(name, {})))
                fe = np.asarray(res.fe_params, dtype="float64")
                bse = _reml_fixed_se(np.asarray(res.cov_params(), dtype="float64"), len(fe))
                tau2, sigma2 = float(np.asarray(res.cov_re)[0, 0]), float(res.scale)
            except Exception as exc:  # any failure of one optimiser: record it, try the next
                notes.append(f"optimizer {name} failed: {type(exc).__name__}: {exc}")
                continue
        caught_text = [_warning_text(w) for w in caught]
        finite = bool(np.isfinite(fe).all() and np.isfinite(bse).all() and np.isfinite(res.llf))
        why = ""
        if not res.converged:
            why = "did not converge"
        elif not finite:
            why = "gave no finite estimates, standard errors or likelihood"
        elif profile is not None and best is not None:
            gamma = tau2 / sigma2 if sigma2 > 0 else math.inf
            excess = profile.objective(gamma) - best
            if not excess <= _reml_tolerance(best):
                why = (
                    f"stopped short of the REML maximum (variance ratio {gamma:.4g}; "
                    f"-2 log-likelihood {excess:.3g} above the maximum)"
                )
            elif excess < -_reml_tolerance(best):
                caught_text.append("statsmodels found a higher likelihood than the exact profile")
        if not why:
            terms = _wald(names, fe[1:], bse[1:])
            return _Fit(terms, True, name, "statsmodels", [*notes, *caught_text], "", tau2, sigma2)
        notes.append(f"optimizer {name} {why}")
        last = (res, name, caught_text)
    if last is not None:
        res, name, caught_text = last
        fe = np.asarray(res.fe_params, dtype="float64")
        bse = _reml_fixed_se(np.asarray(res.cov_params(), dtype="float64"), len(fe))
        msg = (
            f"No optimiser reached the REML maximum ({', '.join(optimizers)}); the numbers "
            f"shown come from {name} and are not reliable."
        )
        tau2, sigma2 = float(np.asarray(res.cov_re)[0, 0]), float(res.scale)
        return _Fit(
            _wald(names, fe[1:], bse[1:]), False, name, "statsmodels", [*notes, *caught_text], msg, tau2, sigma2
        )
    msg = f"The model could not be fitted by any optimiser ({', '.join(optimizers)})."
    return _Fit(_nan_terms(names), False, None, "statsmodels", notes, msg, None, None)


def _fit_profiled(d: _Design, names: Sequence[str], profile: _ProfiledREML, solved: Any) -> _Fit:
    """Report the exact profiled REML solution (``solved`` from ``profile.solve()``)."""
    if isinstance(solved, Exception):
        msg = f"The model could not be fitted: {solved}."
        return _Fit(_nan_terms(names), False, None, "profiled", [msg], msg, None, None)
    gamma, _, success, notes = solved
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        beta, cov, sigma2 = profile.estimates(gamma)
        se = np.sqrt(np.diag(cov))
    ok = bool(success and np.isfinite(beta).all() and np.isfinite(se).all())
    terms = _wald(names, beta[1:], se[1:])
    msg = "" if ok else "The profiled REML fit did not converge; the numbers are not reliable."
    all_notes = [*notes, *(_warning_text(w) for w in caught)]
    return _Fit(terms, ok, "brent", "profiled", all_notes, msg, gamma * sigma2, sigma2)


def _fit_mixed(
    pairs: pd.DataFrame,
    model: str,
    *,
    engine: str,
    optimizers: Sequence[str],
    optimizer_options: Mapping[str, Mapping[str, Any]],
) -> ModelResult:
    names = _TERMS[model]
    resp = _RESPONSES[model]
    formula = f"{resp} ~ {' + '.join(names)} + (1 | patient), REML"
    d = _design(pairs, model)
    n_obs, n_pat = len(d.y), d.n_groups
    p = d.x.shape[1]
    if n_pat < 2 or n_obs < p + 2 or n_obs <= n_pat:
        msg = (
            f"The {model} model needs pairs of consecutive weeks from at least 2 patients, more "
            f"pairs than patients and more than {p + 1} pairs in all; there are {n_obs} pairs "
            f"from {n_pat} patients."
        )
        return ModelResult(model, formula, n_obs, n_pat, _nan_terms(names), False, None, engine, (), msg)
    centred = d.x[:, 1:] - d.x[:, 1:].mean(axis=0)
    if np.linalg.matrix_rank(centred) < p - 1:
        constant = [n for n, sd in zip(names, centred.std(axis=0), strict=True) if sd == 0]
        verb = "does" if len(constant) == 1 else "do"
        why = f"{' and '.join(constant)} {verb} not vary" if constant else "its terms are collinear"
        msg = f"The {model} model cannot be fitted: {why} in these data."
        return ModelResult(model, formula, n_obs, n_pat, _nan_terms(names), False, None, engine, (), msg)
    use = engine
    if engine == "auto":
        use = "statsmodels" if n_obs <= AUTO_STATSMODELS_MAX_OBS else "profiled"
    profile = _ProfiledREML(d)
    solved: Any
    try:
        solved = profile.solve()
    except (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError) as exc:
        solved = exc
    at_boundary = not isinstance(solved, Exception) and solved[2] and solved[0] == 0.0
    if engine == "auto" and use == "statsmodels" and at_boundary:
        # statsmodels' standard errors come from the inverse Hessian of all parameters,
        # which is not positive definite when τ² = 0; its optimisers then fail or stop
        # elsewhere (see the module docstring). The exact route handles the boundary.
        use = "profiled"
    if use == "statsmodels":
        best = None if isinstance(solved, Exception) or not solved[2] else solved[1]
        fit = _fit_statsmodels(d, names, optimizers, optimizer_options, profile, best)
        if engine == "auto" and not fit.converged:
            prof = _fit_profiled(d, names, profile, solved)
            if prof.converged:
                notes = [*fit.notes, "no statsmodels optimiser was accepted; used the exact profiled REML"]
                fit = prof._replace(notes=[*notes, *prof.notes])
    else:
        fit = _fit_profiled(d, names, profile, solved)
    return ModelResult(
        name=model,
        formula=formula,
        n_obs=n_obs,
        n_patients=n_pat,
        terms=fit.terms,
        converged=fit.converged,
        optimizer=fit.optimizer,
        engine=fit.engine,
        warnings=_dedupe(fit.notes),
        message=fit.message,
        random_intercept_var=fit.tau2,
        residual_var=fit.sigma2,
    )


def _fit_between(pairs: pd.DataFrame) -> ModelResult:
    import statsmodels.api as sm

    names = _TERMS["between"]
    formula = "symptom_between ~ alliance_between (one row per patient), OLS"
    per_patient = pairs.groupby("patient_id", sort=False)[["symptom_between", "alliance_between"]].first()
    per_patient = per_patient.dropna()
    n = len(per_patient)
    if n < 3:
        msg = f"The between model needs at least 3 patients with both a symptom and an alliance score; there are {n}."
        return ModelResult("between", formula, n, n, _nan_terms(names), False, None, "ols", (), msg)
    yv = per_patient["symptom_between"].to_numpy(dtype="float64")
    xv = per_patient["alliance_between"].to_numpy(dtype="float64")
    if np.ptp(xv) == 0:
        msg = "The between model needs patients whose average alliance differs; all are equal."
        return ModelResult("between", formula, n, n, _nan_terms(names), False, None, "ols", (), msg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sm.OLS(yv, sm.add_constant(xv, has_constant="add")).fit(method="pinv")
        b, se, p = float(res.params[1]), float(res.bse[1]), float(res.pvalues[1])
        lo, hi = (float(v) for v in np.asarray(res.conf_int(0.05))[1])
        resid_var = float(res.scale)
    term = TermEstimate(names[0], b, se, lo, hi, p)
    ok = all(math.isfinite(v) for v in (b, se, lo, hi, p))
    return ModelResult(
        "between",
        formula,
        n,
        n,
        (term,),
        ok,
        "lstsq",
        "ols",
        _dedupe([_warning_text(w) for w in caught]),
        "" if ok else "The between model gave no finite estimate.",
        None,
        resid_var,
    )


def fit_within_between(
    scores: pd.DataFrame,
    *,
    symptom: str = "SPIN",
    alliance: str = "WAI-SR",
    progress: Progress | None = None,
    engine: str = "auto",
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    optimizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    sensitivity: bool = True,
) -> AnalysisResult:
    """Fit the total, within-person and between-person models (CONTRACT.md ``analyze``) and
    the sensitivity model adjusted for treatment week.

    Models (``S`` symptom, ``A`` alliance, ``u_i ~ N(0, τ²)`` a random intercept per patient,
    the mixed models by REML)::

        total:     S_i,t+1 = b0 + b1·S_it + b2·A_it + u_i + e_it
                   terms symptom_t (b1), alliance_t (b2)
        within:    S_i,t+1 − S̄_i = b0 + b1·(S_it − S̄_i) + b2·(A_it − Ā_i) + b3·Ā_i + u_i + e_it
                   terms symptom_within_t (b1), alliance_within_t (b2), alliance_between (b3)
        between:   S̄_i = b0 + b1·Ā_i + e_i            (OLS, one row per patient)
                   term alliance_between (b1)
        detrended: S_i,t+1 − S̄_i = b0 + b1·(S_it − S̄_i) + b2·Ã_it + b3·t + u_i + e_it
                   Ã_it = A_it − (α̂_i + β̂_i·t), the patient's own straight-line alliance
                   course removed (:func:`detrend_by_person`); t the treatment week
                   terms symptom_within_t (b1), alliance_detrended_t (b2), week (b3)

    In the within model ``b3`` is about 0 by construction (its outcome is person-centred, so no
    between-person differences are left to explain; :data:`WITHIN_BETWEEN_NOTE`). When
    alliance and symptoms both trend over the weeks, the within model's ``b2`` also carries the
    shared trend; the detrended model's ``b2`` does not (module docstring, "Sensitivity model").

    Parameters
    ----------
    scores : DataFrame
        Long scores frame in the core column contract. Not modified.
    symptom, alliance : str
        Instrument codes (default SPIN and WAI-SR, as in Shalom et al., 2025).
    progress : callable(fraction: float, message: str), optional
        Called with 0 ≤ fraction ≤ 1 as the work proceeds (for a progress bar).
    engine : {"auto", "statsmodels", "profiled"}
        See the module docstring; the two engines fit the same model and agree to about
        1e-5. ``"auto"`` picks statsmodels up to :data:`AUTO_STATSMODELS_MAX_OBS` pairs.
    optimizers : sequence of str
        statsmodels optimisers tried in turn (default ``bfgs, lbfgs, powell, nm, cg``).
    optimizer_options : mapping, optional
        Extra keyword arguments per optimiser for ``MixedLM.fit``, e.g.
        ``{"lbfgs": {"maxiter": 200}}``.
    sensitivity : bool
        Also fit the detrended model (default True; ``AnalysisResult.detrended``).

    Returns
    -------
    AnalysisResult
        Frozen result; ``.to_dict()`` is the CONTRACT JSON. A model that cannot be fitted is
        reported with ``converged=False`` and a ``message``; this function does not raise
        for too little data (see :func:`too_little_data` for a message before fitting).
        ``n_patients`` counts the patients with at least one score on either instrument.

    Raises
    ------
    ValueError
        Malformed scores (see :func:`prepare_pairs`), an unknown engine or optimiser.

    Notes
    -----
    Mixed-model p values are Wald z tests and CIs are ``b ± 1.96·SE`` (as statsmodels);
    the between model uses t with ``n − 2`` df. Warnings raised while fitting are captured
    into ``ModelResult.warnings`` (under a lock, as ``warnings.catch_warnings`` is
    process-wide).

    References
    ----------
    Hamaker, E. L., & Muthén, B. (2020). Psychological Methods, 25(3), 365–379.
    Shalom, J. G., et al. (2025). Behavior Therapy, 56, 812–822.

    Wang, L. P., & Maxwell, S. E. (2015). Psychological Methods, 20(1), 63–83.
    Curran, P. J., & Bauer, D. J. (2011). Annual Review of Psychology, 62, 583–619.

    Checked against ``tests/reference/make_reference.py`` (an independent dense REML and
    lstsq implementation; see the module docstring), against R's lme4 for all four models
    (``tests/reference/lme4_models.R``), and simulated cohorts with planted within (negative)
    and between (positive) effects, with and without trends over the weeks.

    Examples
    --------
    >>> cohort = simulate_cohort(60, 8, within=-0.4, between=0.5, seed=1)
    >>> result = fit_within_between(cohort)
    >>> sorted(result.to_dict()["models"])
    ['between', 'total', 'within']
    >>> sorted(result.to_dict()["sensitivity"])
    ['detrended']
    """
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    if isinstance(optimizers, str) or not len(optimizers):
        raise ValueError("optimizers must be a non-empty list of names such as ['lbfgs', 'powell'].")
    unknown = [o for o in optimizers if o not in _KNOWN_OPTIMIZERS]
    if unknown:
        raise ValueError(
            f"Unknown optimiser(s) {', '.join(map(repr, unknown))}; choose from {', '.join(sorted(_KNOWN_OPTIMIZERS))}."
        )
    if progress is not None and not callable(progress):
        raise ValueError("progress must be a function taking (fraction, message), or None.")
    options = dict(optimizer_options or {})

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(float(fraction), message)

    start = time.perf_counter()
    report(0.0, "Pairing each week with the next")
    pairs = prepare_pairs(scores, symptom=symptom, alliance=alliance)
    n_patients = int(pairs["patient_id"].nunique())
    with _WARNINGS_LOCK:
        report(0.1, "Fitting the total model")
        total = _fit_mixed(pairs, "total", engine=engine, optimizers=optimizers, optimizer_options=options)
        report(0.4, "Fitting the within-person model")
        within = _fit_mixed(pairs, "within", engine=engine, optimizers=optimizers, optimizer_options=options)
        detrended = None
        if sensitivity:
            report(0.7, "Fitting the model adjusted for treatment week")
            detrended = _fit_mixed(pairs, "detrended", engine=engine, optimizers=optimizers, optimizer_options=options)
        report(0.9, "Fitting the between-person model")
        between = _fit_between(pairs)
    report(1.0, "Done")
    return AnalysisResult(
        symptom=symptom,
        alliance=alliance,
        n_patients=n_patients,
        total=total,
        within=within,
        between=between,
        seconds=time.perf_counter() - start,
        detrended=detrended,
    )


# --------------------------------------------------------------------------- simulation


def simulate_cohort(
    n_patients: int,
    n_weeks: int,
    *,
    within: float,
    between: float,
    seed: int,
    symptom: str = "SPIN",
    alliance: str = "WAI-SR",
    autoregression: float = 0.5,
    alliance_mean: float = 42.0,
    alliance_between_sd: float = 6.0,
    alliance_within_sd: float = 4.0,
    symptom_mean: float = 36.0,
    symptom_between_sd: float = 6.0,
    symptom_within_sd: float = 3.0,
    symptom_trend: float = 0.0,
    symptom_trend_sd: float = 0.0,
    alliance_trend: float = 0.0,
    alliance_trend_sd: float = 0.0,
    missing: float = 0.0,
    patients_per_therapist: int = 15,
) -> pd.DataFrame:
    """A seeded synthetic cohort with planted within-person and between-person effects.

    For patient ``i`` (``A`` alliance, ``S`` symptom, all noise normal and independent)::

        μA_i  = alliance_mean + N(0, alliance_between_sd²)
        μS_i  = symptom_mean + between·(μA_i − alliance_mean) + N(0, symptom_between_sd²)
        a_it  ~ N(0, alliance_within_sd²)                                  (alliance deviation)
        s_i1  ~ N(0, symptom_within_sd² / (1 − φ²))                        (stationary start)
        s_i,t+1 = φ·s_it + within·a_it + N(0, symptom_within_sd²)          (φ = autoregression)
        d_i   = symptom_trend + N(0, symptom_trend_sd²)                    (weekly change)
        c_i   = alliance_trend + N(0, alliance_trend_sd²)                  (weekly change)
        A_it = μA_i + c_i·(t − m) + a_it,   S_it = μS_i + d_i·(t − m) + s_it,   m = (n_weeks + 1)/2

    so a week above the patient's own alliance course (``a_it > 0``) is followed by a change
    of ``within`` points of symptom per alliance point the next week, while patients with an
    alliance level one point higher have a symptom level ``between`` points higher. With
    ``alliance_trend > 0`` and ``symptom_trend < 0`` alliance rises while symptoms fall over
    the weeks, as in the trial (WAI-SR week means 36 → 47, SPIN 45 → 29); the planted
    ``within`` stays the effect of the week's distance from the patient's own course, which
    the detrended model of :func:`fit_within_between` estimates and the trial's within model
    overstates. Scores are rounded
    to whole points and kept within the instrument ranges (SPIN 0–68, WAI-SR 12–60 by
    default); then each row is dropped with probability ``missing``. With the defaults,
    clipping touches well under 1% of scores.

    Parameters
    ----------
    n_patients, n_weeks : int
        Cohort size (≥ 1 each).
    within, between : float
        Planted effects (points of symptom per point of alliance).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same frame.
    symptom, alliance : str
        Instrument codes written to the ``instrument`` column.
    symptom_trend, symptom_trend_sd : float
        Mean and between-patient SD of a linear weekly change in symptoms (centred on the
        middle week, so person means are unaffected). Default 0: no trend. The published
        SPIN week means fall by about 1.6 points a week.
    alliance_trend, alliance_trend_sd : float
        The same for alliance (default 0: no trend); the published WAI-SR week means rise by
        about 1.1 points a week (most of it in the first weeks).
    missing : float
        Probability in [0, 1) that a row is dropped (a missed questionnaire).

    Notes
    -----
    The within estimate from observed person means over a few weeks is slightly attenuated
    (Hamaker & Muthén, 2020): e.g. about −0.27 to −0.29 for a planted −0.30 at 12 weeks.

    Returns
    -------
    DataFrame
        Long scores frame in the core column contract: ``patient_id`` (``S00001`` ...),
        ``therapist_id`` (``T001`` ...), ``instrument``, ``week`` (1 … n_weeks, int64),
        ``score`` (float64), sorted by patient, instrument and week.
    """
    if n_patients < 1 or n_weeks < 1:
        raise ValueError("A simulated cohort needs at least 1 patient and 1 week.")
    if not 0.0 <= missing < 1.0:
        raise ValueError("missing must be a probability from 0 up to (not including) 1.")
    if not -1.0 < autoregression < 1.0:
        raise ValueError("autoregression must lie strictly between -1 and 1.")
    if patients_per_therapist < 1:
        raise ValueError("patients_per_therapist must be at least 1.")
    rng = np.random.default_rng(seed)
    phi = autoregression
    mu_a = alliance_mean + rng.normal(0.0, alliance_between_sd, n_patients)
    mu_s = symptom_mean + between * (mu_a - alliance_mean) + rng.normal(0.0, symptom_between_sd, n_patients)
    a_dev = rng.normal(0.0, alliance_within_sd, (n_patients, n_weeks))
    s_dev = np.empty((n_patients, n_weeks))
    s_dev[:, 0] = rng.normal(0.0, symptom_within_sd / math.sqrt(1.0 - phi**2), n_patients)
    shocks = rng.normal(0.0, symptom_within_sd, (n_patients, n_weeks))
    for t in range(1, n_weeks):  # a loop over weeks, vectorised over patients
        s_dev[:, t] = phi * s_dev[:, t - 1] + within * a_dev[:, t - 1] + shocks[:, t]
    slope = symptom_trend + rng.normal(0.0, symptom_trend_sd, n_patients) if symptom_trend_sd else None
    # drawn after everything else, so that a cohort without an alliance trend is unchanged
    a_slope = alliance_trend + rng.normal(0.0, alliance_trend_sd, n_patients) if alliance_trend_sd else None
    centred_week = np.arange(n_weeks) - (n_weeks - 1) / 2.0
    trend = (symptom_trend if slope is None else slope[:, None]) * centred_week
    a_trend = (alliance_trend if a_slope is None else a_slope[:, None]) * centred_week
    a_score = np.clip(np.round(mu_a[:, None] + a_trend + a_dev), 12.0, 60.0)
    s_score = np.clip(np.round(mu_s[:, None] + trend + s_dev), 0.0, 68.0)

    width = max(5, len(str(n_patients)))
    pid = np.array([f"S{i:0{width}d}" for i in range(1, n_patients + 1)], dtype=object)
    tid = np.array([f"T{i // patients_per_therapist + 1:03d}" for i in range(n_patients)], dtype=object)
    weeks = np.arange(1, n_weeks + 1, dtype=np.int64)

    def long(values: np.ndarray, code: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "patient_id": np.repeat(pid, n_weeks),
                "therapist_id": np.repeat(tid, n_weeks),
                "instrument": code,
                "week": np.tile(weeks, n_patients),
                "score": values.reshape(-1).astype("float64"),
            }
        )

    out = pd.concat([long(s_score, symptom), long(a_score, alliance)], ignore_index=True)
    if missing > 0:
        out = out.loc[rng.random(len(out)) >= missing]
    out = out.sort_values(["patient_id", "instrument", "week"], kind="stable").reset_index(drop=True)
    out["patient_id"] = out["patient_id"].astype("str")
    out["therapist_id"] = out["therapist_id"].astype("str")
    out["instrument"] = out["instrument"].astype("str")
    return out
