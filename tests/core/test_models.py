"""Tests of ``core.models``: the three ``analyze`` models (CONTRACT.md) and their helpers.

Reference numbers come from ``tests/reference/make_reference.py`` (an independent dense
REML / lstsq implementation; re-run it to regenerate ``reference_models.json``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import models
from core.models import (
    PUBLISHED,
    AnalysisResult,
    fit_within_between,
    prepare_pairs,
    simulate_cohort,
    too_little_data,
)

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "reference"
SHARED = ROOT.parent / "shared"
TERM_KEYS = {"estimate", "se", "ci_low", "ci_high", "p"}


# --------------------------------------------------------------------------- helpers


def frame(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """Scores frame from (patient_id, instrument, week, score) tuples."""
    df = pd.DataFrame(rows, columns=["patient_id", "instrument", "week", "score"])
    df.insert(1, "therapist_id", "T01")
    df["week"] = df["week"].astype("int64")
    df["score"] = df["score"].astype("float64")
    return df


@pytest.fixture(scope="module")
def reference_scores() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "reference_scores.csv")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((REFERENCE / "reference_models.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def reference_fit(reference_scores: pd.DataFrame) -> AnalysisResult:
    return fit_within_between(reference_scores)


# --------------------------------------------------------------------------- CONTRACT shape


def contract_shape() -> dict:
    """The ``analyze --format json`` example of CONTRACT.md, ``T`` replaced by ``null``."""
    path = SHARED / "CONTRACT.md"
    if not path.exists():  # the contract lives beside the repository; fall back to its text
        text = (
            '{"symptom": "SPIN", "alliance": "WAI-SR", "n_patients": 182, "models": {'
            '"total": {"n_obs": 0, "terms": {"symptom_t": T, "alliance_t": T}},'
            '"within": {"n_obs": 0, "terms": {"symptom_within_t": T, "alliance_within_t": T,'
            ' "alliance_between": T}},'
            '"between": {"n_patients": 0, "terms": {"alliance_between": T}}}}'
        )
    else:
        md = path.read_text(encoding="utf-8")
        section = md[md.index("## `analyze --format json`") :]
        text = re.search(r"```json\n(.*?)```", section, re.S).group(1)
        assert '{"estimate", "se", "ci_low", "ci_high", "p"}' in section
    return json.loads(re.sub(r"\bT\b", "null", text))


def test_to_dict_has_exactly_the_contract_shape(reference_fit: AnalysisResult) -> None:
    shape = contract_shape()
    out = reference_fit.to_dict()
    json.dumps(out, allow_nan=False)  # valid JSON
    assert set(shape) <= set(out)
    assert out["symptom"] == "SPIN" and out["alliance"] == "WAI-SR"
    assert isinstance(out["n_patients"], int) and out["n_patients"] == 60
    assert set(out["models"]) == set(shape["models"])
    for name, model_shape in shape["models"].items():
        got = out["models"][name]
        count_keys = set(model_shape) - {"terms"}
        assert count_keys <= set(got), name
        for key in count_keys:
            assert isinstance(got[key], int) and not isinstance(got[key], bool)
        assert list(got["terms"]) == list(model_shape["terms"]), name  # same names, same order
        for term in got["terms"].values():
            assert set(term) == TERM_KEYS
            assert all(isinstance(v, float) for v in term.values())
        assert got["converged"] is True
        assert isinstance(got["warnings"], list)
    assert "n_obs" not in out["models"]["between"]


def test_to_dict_of_an_unfittable_model_is_valid_json_with_nulls() -> None:
    scores = frame([("P1", "SPIN", 1, 30), ("P1", "WAI-SR", 1, 40), ("P1", "SPIN", 2, 29)])
    result = fit_within_between(scores)
    out = result.to_dict()
    json.dumps(out, allow_nan=False)
    for name in ("total", "within", "between"):
        model = out["models"][name]
        assert model["converged"] is False
        assert model["message"]
        for term in model["terms"].values():
            assert set(term) == TERM_KEYS and all(v is None for v in term.values())
    assert out["models"]["total"]["n_obs"] == 1


def test_to_frame_is_tidy(reference_fit: AnalysisResult) -> None:
    tidy = reference_fit.to_frame()
    assert list(tidy.columns) == ["model", "term", "estimate", "se", "ci_low", "ci_high", "p", "n", "converged"]
    assert len(tidy) == 6 + 3  # the three CONTRACT models, then the detrended model
    assert tidy["model"].tolist()[6:] == ["detrended"] * 3


def test_the_sensitivity_model_is_an_added_key_not_a_fourth_contract_model(reference_fit: AnalysisResult) -> None:
    out = reference_fit.to_dict()
    assert list(out["models"]) == ["total", "within", "between"]
    detrended = out["sensitivity"]["detrended"]
    assert list(detrended["terms"]) == ["symptom_within_t", "alliance_detrended_t", "week"]
    assert isinstance(detrended["n_obs"], int) and detrended["converged"] is True
    assert "week" in detrended["formula"] and "alliance_detrended_t" in detrended["formula"]
    assert set(reference_fit.all_models) == {"total", "within", "between", "detrended"}
    without = fit_within_between(pd.read_csv(REFERENCE / "reference_scores.csv"), sensitivity=False)
    assert without.detrended is None and "sensitivity" not in without.to_dict()
    assert without.to_dict()["models"]["within"] == out["models"]["within"]


def test_the_within_models_alliance_between_carries_its_note(reference_fit: AnalysisResult) -> None:
    notes = reference_fit.to_dict()["models"]["within"]["notes"]
    assert notes == {"alliance_between": models.WITHIN_BETWEEN_NOTE}
    assert "About 0 by construction" in notes["alliance_between"] and "-0.028" in notes["alliance_between"]
    assert "notes" not in reference_fit.to_dict()["models"]["between"]


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("engine", ["auto", "statsmodels", "profiled"])
def test_matches_the_independent_reference(reference_scores: pd.DataFrame, reference: dict, engine: str) -> None:
    result = fit_within_between(reference_scores, engine=engine)
    assert result.n_patients == reference["n_patients"]
    for name, ref in reference["models"].items():
        model = result.models[name]
        assert model.converged, (name, model.message, model.warnings)
        if name == "between":
            assert model.n_obs == ref["n_patients"]
        else:
            assert model.n_obs == ref["n_obs"] and model.n_patients == ref["n_patients"]
            assert model.random_intercept_var == pytest.approx(ref["random_intercept_var"], rel=1e-3, abs=1e-4)
            assert model.residual_var == pytest.approx(ref["residual_var"], rel=1e-4)
        assert [t.name for t in model.terms] == list(ref["terms"])
        for term in model.terms:
            want = ref["terms"][term.name]
            assert term.estimate == pytest.approx(want["estimate"], abs=1e-4), (name, term.name)
            assert term.se == pytest.approx(want["se"], rel=1e-3), (name, term.name)
            assert term.p == pytest.approx(want["p"], rel=2e-2, abs=1e-12), (name, term.name)
            crit = 1.959964 if name != "between" else 2.001717  # z, or t with 58 df
            assert term.ci_low == pytest.approx(term.estimate - crit * term.se, rel=1e-6)
            assert term.ci_high == pytest.approx(term.estimate + crit * term.se, rel=1e-6)


def test_statsmodels_standard_errors_are_the_reml_gls_ones(reference_scores: pd.DataFrame) -> None:
    """Both engines report (XᵀV̂⁻¹X)⁻¹, not statsmodels' bse_fe with cross terms."""
    sm = fit_within_between(reference_scores, engine="statsmodels")
    prof = fit_within_between(reference_scores, engine="profiled")
    for name in ("total", "within"):
        for a, b in zip(sm.models[name].terms, prof.models[name].terms, strict=True):
            assert a.estimate == pytest.approx(b.estimate, abs=1e-5)
            assert a.se == pytest.approx(b.se, rel=1e-4)


def test_pairs_match_the_reference_row_loop(reference_scores: pd.DataFrame, reference: dict) -> None:
    pairs = prepare_pairs(reference_scores)
    usable = pairs[["symptom_t", "alliance_t", "symptom_next"]].notna().all(axis=1)
    assert int(usable.sum()) == reference["models"]["total"]["n_obs"]
    assert pairs["patient_id"].nunique() == reference["n_patients"]
    assert len(reference_scores) == reference["n_rows"]


# --------------------------------------------------------------------------- pairing


def test_missing_week_breaks_the_pair_and_person_means_use_all_weeks() -> None:
    scores = frame(
        [
            ("A", "SPIN", 1, 40),
            ("A", "WAI-SR", 1, 30),
            ("A", "SPIN", 2, 38),
            ("A", "WAI-SR", 2, 34),
            ("A", "SPIN", 3, 36),
            ("A", "WAI-SR", 3, 38),
            # week 4 missing entirely
            ("A", "SPIN", 5, 30),
            ("A", "WAI-SR", 5, 42),
            ("A", "WAI-SR", 6, 50),  # alliance only: no symptom to pair with week 5
            ("A", "SPIN", 7, 26),  # symptom only: not a pair itself, but in the person mean
            ("B", "SPIN", 2, 20),
            ("B", "WAI-SR", 2, 44),
            ("B", "SPIN", 3, 22),
        ]
    )
    pairs = prepare_pairs(scores).set_index(["patient_id", "week"])
    a = pairs.loc["A"]
    assert list(a.index) == [1, 2, 3, 5, 6, 7]
    # (week, symptom_next): NaN after week 3 (week 4 missing), week 5 (week 6 has no SPIN),
    # week 6 (no SPIN at 7? there is: 26) and week 7 (last week)
    expected_next = {1: 38.0, 2: 36.0, 3: np.nan, 5: np.nan, 6: 26.0, 7: np.nan}
    for week, value in expected_next.items():
        got = a.loc[week, "symptom_next"]
        assert (math.isnan(got) and math.isnan(value)) or got == value, week
    s_mean = (40 + 38 + 36 + 30 + 26) / 5
    w_mean = (30 + 34 + 38 + 42 + 50) / 5
    assert a["symptom_between"].unique().tolist() == [pytest.approx(s_mean)]
    assert a["alliance_between"].unique().tolist() == [pytest.approx(w_mean)]
    assert a.loc[2, "symptom_within_t"] == pytest.approx(38 - s_mean)
    assert a.loc[2, "alliance_within_t"] == pytest.approx(34 - w_mean)
    assert a.loc[2, "symptom_within_next"] == pytest.approx(36 - s_mean)
    usable = pairs[["symptom_t", "alliance_t", "symptom_next"]].notna().all(axis=1)
    assert sorted(usable[usable].index.tolist()) == [("A", 1), ("A", 2), ("B", 2)]
    assert pairs.loc[("B", 2), "symptom_next"] == 22.0


def test_other_instruments_and_missing_scores_are_ignored() -> None:
    scores = frame(
        [
            ("A", "SPIN", 1, 40),
            ("A", "WAI-SR", 1, 30),
            ("A", "PHQ-9", 1, 12),
            ("A", "SPIN", 2, np.nan),
            ("A", "WAI-SR", 2, 34),
            ("A", "SPIN", 3, 33),
        ]
    )
    pairs = prepare_pairs(scores).set_index("week")
    assert math.isnan(pairs.loc[1, "symptom_next"])  # a NaN score is a missing week
    assert pairs.loc[1, "symptom_between"] == pytest.approx((40 + 33) / 2)


def naive_pairs(scores: pd.DataFrame) -> dict[tuple[str, int], tuple[float, float, float]]:
    """Row-by-row pairing: (patient, week) -> (symptom_t, alliance_t, symptom_next)."""
    value = {(r.patient_id, r.instrument, r.week): r.score for r in scores.itertuples()}
    out = {}
    for pid, _, week in value:
        s = value.get((pid, "SPIN", week))
        a = value.get((pid, "WAI-SR", week))
        nxt = value.get((pid, "SPIN", week + 1))
        if s is not None and a is not None and nxt is not None:
            out[(pid, week)] = (s, a, nxt)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["P1", "P2", "P3"]),
            st.sampled_from(["SPIN", "WAI-SR"]),
            st.integers(min_value=1, max_value=8),
            st.integers(min_value=0, max_value=60),
        ),
        max_size=40,
        unique_by=lambda r: r[:3],
    ),
    st.randoms(use_true_random=False),
)
def test_vectorised_pairing_equals_a_row_loop(rows, rnd) -> None:
    rnd.shuffle(rows)
    scores = frame(rows)
    pairs = prepare_pairs(scores)
    usable = pairs[["symptom_t", "alliance_t", "symptom_next"]].notna().all(axis=1)
    got = {(r.patient_id, int(r.week)): (r.symptom_t, r.alliance_t, r.symptom_next) for r in pairs[usable].itertuples()}
    assert got == naive_pairs(scores)
    for pid, group in scores.groupby("patient_id"):
        mine = pairs[pairs["patient_id"] == pid]
        for code, col in (("SPIN", "symptom_between"), ("WAI-SR", "alliance_between")):
            stored = group.loc[group["instrument"] == code, "score"]
            if len(stored):
                assert mine[col].iloc[0] == pytest.approx(stored.mean())
            else:
                assert mine[col].isna().all()


# --------------------------------------------------------------------------- optimisers


def test_fallback_reports_the_optimiser_that_worked(reference_scores: pd.DataFrame, reference: dict) -> None:
    result = fit_within_between(
        reference_scores,
        engine="statsmodels",
        optimizers=("bfgs", "powell"),
        optimizer_options={"bfgs": {"maxiter": 1}},  # forces the first optimiser to fail
    )
    for name in ("total", "within"):
        model = result.models[name]
        assert model.converged and model.engine == "statsmodels"
        assert model.optimizer == "powell"
        assert "optimizer bfgs did not converge" in model.warnings
        for term in model.terms:
            assert term.estimate == pytest.approx(reference["models"][name]["terms"][term.name]["estimate"], abs=1e-4)


def test_a_crashing_optimiser_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, reference_scores: pd.DataFrame
) -> None:
    from statsmodels.regression.mixed_linear_model import MixedLM

    def broken_fit(self, *args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(MixedLM, "fit", broken_fit)
    result = fit_within_between(reference_scores, engine="statsmodels", optimizers=("bfgs", "powell"))
    for name in ("total", "within"):
        model = result.models[name]
        assert model.converged is False and model.optimizer is None
        assert "could not be fitted" in model.message
        assert model.warnings == (
            "optimizer bfgs failed: LinAlgError: Singular matrix",
            "optimizer powell failed: LinAlgError: Singular matrix",
        )
        assert all(math.isnan(t.estimate) for t in model.terms)
    assert result.between.converged  # OLS is unaffected
    json.dumps(result.to_dict(), allow_nan=False)
    # "auto" falls back to the exact profiled REML instead of giving up
    auto = fit_within_between(reference_scores, engine="auto")
    assert auto.total.converged and auto.total.engine == "profiled" and auto.total.optimizer == "brent"
    assert any("used the exact profiled REML" in w for w in auto.total.warnings)


def test_statsmodels_never_reports_a_point_below_the_reml_maximum() -> None:
    """On boundary data statsmodels' optimisers 'converge' elsewhere; they must be rejected.

    Here bfgs, nm and cg all report convergence at a variance ratio of about 0.756 with
    symptom_t = 0.64, while the REML maximum is at tau² = 0 with symptom_t = 0.903 (confirmed
    by the dense likelihood of tests/reference/make_reference.py, -2 log-lik 31 lower).
    """
    cohort = simulate_cohort(182, 11, within=-0.3, between=0.4, seed=3, missing=0.07)
    exact = fit_within_between(cohort, engine="profiled")
    forced = fit_within_between(cohort, engine="statsmodels", optimizers=("nm",))
    auto = fit_within_between(cohort)
    assert exact.total.random_intercept_var == 0.0
    assert any("boundary" in w for w in exact.total.warnings)
    assert auto.total.engine == "profiled"
    for a, b in zip(auto.total.terms, exact.total.terms, strict=True):
        assert a == b
    if forced.total.converged:
        for a, b in zip(forced.total.terms, exact.total.terms, strict=True):
            assert a.estimate == pytest.approx(b.estimate, abs=1e-4)
    else:
        assert "not reliable" in forced.total.message
        assert any("REML maximum" in w or "finite" in w for w in forced.total.warnings)


# --------------------------------------------------------------------------- simulated cohort


def test_planted_negative_within_and_positive_between_effects_come_back() -> None:
    cohort = simulate_cohort(300, 12, within=-0.3, between=0.5, seed=11)
    result = fit_within_between(cohort)
    within = result.within.term("alliance_within_t")
    between = result.between.term("alliance_between")
    assert within.estimate < 0 and within.ci_high < 0 and within.p < 0.001
    assert between.estimate > 0 and between.ci_low > 0 and between.p < 0.001
    # observed person means over 12 weeks attenuate the within estimate a little
    assert within.estimate == pytest.approx(-0.3, abs=0.05)
    assert between.estimate == pytest.approx(0.5, abs=3 * between.se)
    assert result.converged


@pytest.mark.parametrize("between", [-0.5, 0.0, 0.3, 0.8])
def test_the_within_models_alliance_between_is_about_0_whatever_the_planted_between_effect(between: float) -> None:
    """The within model's outcome is person-centred: nothing between patients is left for the
    person-mean alliance to explain, so its coefficient is ~0 by construction, while the
    between model finds the planted effect."""
    cohort = simulate_cohort(400, 11, within=-0.2, between=between, seed=21, missing=0.07)
    result = fit_within_between(cohort)
    assert abs(result.within.term("alliance_between").estimate) < 0.01
    assert result.between.term("alliance_between").estimate == pytest.approx(between, abs=0.15)


#: Trial-like trends: alliance rises about 1 point a week and SPIN falls 1.6 (CLINICAL.md week
#: means), each patient with their own slope; a planted within effect of -0.2 on the week's
#: distance from the patient's own alliance course.
TRENDING = {"alliance_trend": 1.0, "alliance_trend_sd": 0.5, "symptom_trend": -1.6, "symptom_trend_sd": 0.8,
            "alliance_within_sd": 3.0, "missing": 0.07}
PLANTED = -0.2
#: The sensitivity model must recover the planted effect within this (3 SE at 3000 patients).
TOLERANCE = 0.025


def test_when_scores_trend_the_trial_spec_is_biased_and_the_detrended_model_is_not() -> None:
    """Wang & Maxwell (2015): person-mean centring keeps the trend in the within part.

    Seed 2 gives -0.287 (SE 0.006) for the trial's specification and -0.201 (SE 0.008) for the
    detrended model (issue 13 reports -0.316 from another simulation with steeper trends)."""
    cohort = simulate_cohort(3000, 11, within=PLANTED, between=0.3, seed=2, **TRENDING)
    result = fit_within_between(cohort)
    trial = result.within.term("alliance_within_t")
    adjusted = result.detrended.term("alliance_detrended_t")
    assert result.detrended.converged and result.detrended.n_obs > 0.8 * result.within.n_obs
    # the trial's specification overstates the link: more than 0.06 beyond the planted -0.2,
    # and its 95% CI excludes it
    assert trial.estimate < PLANTED - 0.06 and trial.ci_high < PLANTED
    # the sensitivity model recovers it, and its CI covers it
    assert adjusted.estimate == pytest.approx(PLANTED, abs=TOLERANCE)
    assert adjusted.ci_low < PLANTED < adjusted.ci_high
    assert result.detrended.term("week").estimate < 0  # symptoms fall over the weeks


def test_without_trends_the_two_specifications_agree() -> None:
    cohort = simulate_cohort(3000, 11, within=PLANTED, between=0.3, seed=2, missing=0.07, alliance_within_sd=3.0)
    result = fit_within_between(cohort)
    trial = result.within.term("alliance_within_t").estimate
    adjusted = result.detrended.term("alliance_detrended_t").estimate
    assert abs(trial - adjusted) < 0.01
    assert trial == pytest.approx(PLANTED, abs=TOLERANCE) and adjusted == pytest.approx(PLANTED, abs=TOLERANCE)


def test_an_alliance_trend_leaves_a_cohort_without_one_unchanged() -> None:
    base = simulate_cohort(40, 6, within=-0.2, between=0.3, seed=9, symptom_trend=-1.0, symptom_trend_sd=0.5)
    same = simulate_cohort(40, 6, within=-0.2, between=0.3, seed=9, symptom_trend=-1.0, symptom_trend_sd=0.5,
                           alliance_trend=0.0, alliance_trend_sd=0.0)
    pd.testing.assert_frame_equal(base, same)
    rising = simulate_cohort(200, 11, within=-0.2, between=0.3, seed=9, alliance_trend=1.0, alliance_trend_sd=0.5)
    wai = rising[rising["instrument"] == "WAI-SR"].groupby("week")["score"].mean()
    assert wai.loc[11] - wai.loc[1] == pytest.approx(10.0, abs=1.5)


def test_detrending_removes_each_patients_own_straight_line() -> None:
    scores = frame([("A", "WAI-SR", w, 30 + 2 * w + (1 if w == 3 else 0)) for w in range(1, 7)]
                   + [("B", "WAI-SR", 1, 40), ("B", "WAI-SR", 2, 44)])  # B: 2 weeks, nothing left to detrend
    got = models.detrend_by_person(scores, "score")
    a = got[scores["patient_id"] == "A"].to_numpy()
    # a line through (t, 30 + 2t) plus a bump of 1 at week 3: residuals sum to 0, none is a trend
    assert a.sum() == pytest.approx(0.0, abs=1e-12)
    assert np.dot(a, np.arange(1, 7) - 3.5) == pytest.approx(0.0, abs=1e-12)
    assert a.argmax() == 2 and a[2] == pytest.approx(1 - 1 / 6 - (3 - 3.5) * (-0.5 / 17.5))
    assert got[scores["patient_id"] == "B"].isna().all()
    pd.testing.assert_frame_equal(scores, frame([("A", "WAI-SR", w, 30 + 2 * w + (1 if w == 3 else 0))
                                                 for w in range(1, 7)]
                                                + [("B", "WAI-SR", 1, 40), ("B", "WAI-SR", 2, 44)]))
    with pytest.raises(ValueError, match="two weeks"):
        models.detrend_by_person(scores, "score", min_weeks=1)


def test_simulate_cohort_is_seeded_and_in_the_column_contract() -> None:
    a = simulate_cohort(30, 5, within=-0.2, between=0.3, seed=5, missing=0.1)
    b = simulate_cohort(30, 5, within=-0.2, between=0.3, seed=5, missing=0.1)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["patient_id", "therapist_id", "instrument", "week", "score"]
    assert a["week"].dtype == "int64" and a["score"].dtype == "float64"
    assert set(a["instrument"]) == {"SPIN", "WAI-SR"}
    assert 0.8 * 300 < len(a) < 300
    spin = a.loc[a["instrument"] == "SPIN", "score"]
    assert spin.between(0, 68).all() and (spin == spin.round()).all()
    with pytest.raises(ValueError, match="probability"):
        simulate_cohort(3, 3, within=0, between=0, seed=1, missing=1.0)


# --------------------------------------------------------------------------- too little data


def cohort_with(n_patients: int, n_weeks: int) -> pd.DataFrame:
    return simulate_cohort(n_patients, n_weeks, within=-0.2, between=0.3, seed=2)


@pytest.mark.parametrize(
    ("n_patients", "n_weeks", "expected"),
    [
        (20, 3, None),
        (19, 11, "at least 20 patients with at least 3 weeks of both SPIN and WAI-SR scores, and 19 patients"),
        (40, 2, "and 0 patients have that many so far"),
    ],
)
def test_too_little_data(n_patients: int, n_weeks: int, expected: str | None) -> None:
    message = too_little_data(cohort_with(n_patients, n_weeks))
    if expected is None:
        assert message is None
    else:
        assert message is not None and expected in message


def test_too_little_data_names_an_absent_instrument() -> None:
    scores = cohort_with(25, 4)
    message = too_little_data(scores[scores["instrument"] == "WAI-SR"])
    assert message == "No SPIN scores are stored, so the models comparing SPIN with WAI-SR cannot be fitted."


def test_too_little_data_counts_weeks_with_both_scores() -> None:
    scores = cohort_with(20, 3)
    one_spin_dropped = scores.drop(
        scores.index[(scores["patient_id"] == "S00001") & (scores["week"] == 2) & (scores["instrument"] == "SPIN")]
    )
    assert "19 patients" in too_little_data(one_spin_dropped)
    assert too_little_data(one_spin_dropped, min_patients=19) is None


# --------------------------------------------------------------------------- input handling


def test_inputs_are_not_mutated(reference_scores: pd.DataFrame) -> None:
    scores = reference_scores.sample(frac=1.0, random_state=1)  # shuffled, non-default index
    before = scores.copy(deep=True)
    prepare_pairs(scores)
    fit_within_between(scores, engine="profiled")
    too_little_data(scores)
    pd.testing.assert_frame_equal(scores, before)


def test_row_order_does_not_matter(reference_scores: pd.DataFrame) -> None:
    shuffled = reference_scores.sample(frac=1.0, random_state=3)
    a = fit_within_between(reference_scores, engine="profiled").to_dict()
    b = fit_within_between(shuffled, engine="profiled").to_dict()
    assert a == b


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="week"), "lacks the column"),
        (lambda df: pd.concat([df, df.iloc[:1]]), "repeat a score for the same patient"),
        (lambda df: df.assign(week=df["week"] + 0.5), "whole numbers"),
        (lambda df: df.assign(week=df["week"] - 1), "1 or more"),
        (lambda df: df.assign(week=df["week"].astype(str)), "whole numbers"),
        (lambda df: df.assign(score=df["score"].astype(str)), "must hold numbers"),
        (lambda df: df.assign(score=np.where(df.index == 0, np.inf, df["score"])), "infinite"),
        (lambda df: df.assign(patient_id=np.where(df.index == 0, None, df["patient_id"])), "patient_id"),
    ],
)
def test_bad_input_raises_a_plain_value_error(reference_scores: pd.DataFrame, change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_within_between(change(reference_scores.copy()))


def test_bad_options_raise_value_error(reference_scores: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="different instruments"):
        prepare_pairs(reference_scores, symptom="SPIN", alliance="SPIN")
    with pytest.raises(ValueError, match="Unknown engine"):
        fit_within_between(reference_scores, engine="lme4")
    with pytest.raises(ValueError, match="Unknown optimiser"):
        fit_within_between(reference_scores, optimizers=("newton-raphson",))
    with pytest.raises(ValueError, match="progress"):
        fit_within_between(reference_scores, progress="yes")


def test_progress_is_reported_from_0_to_1(reference_scores: pd.DataFrame) -> None:
    calls: list[tuple[float, str]] = []
    fit_within_between(reference_scores, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and len(calls) >= 4
    assert all(isinstance(m, str) and m for _, m in calls)


# --------------------------------------------------------------------------- published


def test_published_table_matches_clinical_md() -> None:
    path = SHARED / "CLINICAL.md"
    if not path.exists():
        pytest.skip("shared/CLINICAL.md is not beside the repository")
    md = path.read_text(encoding="utf-8").replace("−", "-")
    rows = re.findall(r"^\|[^|]*\| (\w+) \| (-?[\d.]+) \| ([\d.]+) \| ([<.\d]+) \|$", md, re.M)
    assert len(rows) == 6
    model_order = ["total", "total", "within", "within", "within", "between"]
    for model, (term, b, se, p) in zip(model_order, rows, strict=True):
        published = PUBLISHED.models[model][term]
        assert (published.estimate, published.se, published.p) == (float(b), float(se), p)
    for code in ("SPIN", "WAI-SR"):
        line = re.search(rf"^{re.escape(code)} ([\d., ]+)[;.]$", md, re.M).group(1)
        assert PUBLISHED.week_means[code] == tuple(float(v) for v in line.split(", "))
    assert PUBLISHED.n_patients == 182 and PUBLISHED.n_weeks == 11


def test_published_terms_use_the_contract_names() -> None:
    for name, terms in PUBLISHED.models.items():
        assert tuple(terms) == models._TERMS[name]
    assert len(PUBLISHED.to_frame()) == 6
    assert len(PUBLISHED.week_means_frame()) == 22
    with pytest.raises(TypeError):
        PUBLISHED.models["total"] = {}  # read-only


def test_a_constant_alliance_is_reported_not_raised() -> None:
    scores = simulate_cohort(30, 6, within=-0.2, between=0.3, seed=4)
    scores.loc[scores["instrument"] == "WAI-SR", "score"] = 40.0
    result = fit_within_between(scores)
    assert result.total.message == "The total model cannot be fitted: alliance_t does not vary in these data."
    assert not result.total.converged and result.total.optimizer is None
    assert "alliance_within_t and alliance_between do not vary" in result.within.message
    assert not result.between.converged and "average alliance differs" in result.between.message
    json.dumps(result.to_dict(), allow_nan=False)
