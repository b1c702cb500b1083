"""The clinic meeting's reading of the models: the typical week's swing, the trends, which
estimate to read, and what is said beside the published trial (issue 13)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.clinic_figures import build_forest_figure, forest_rows
from core.meeting import (
    TREND_POINTS_PER_WEEK,
    alliance_within_sd,
    both_trend,
    models_table,
    read_within_estimate,
    weekly_trends,
)
from core.models import AnalysisResult, ModelResult, TermEstimate, simulate_cohort


def scores(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["patient_id", "instrument", "week", "score"])
    df.insert(1, "therapist_id", "T01")
    return df


def term(name: str, b: float, se: float) -> TermEstimate:
    from scipy import stats

    return TermEstimate(name, b, se, b - 1.96 * se, b + 1.96 * se, float(2 * stats.norm.sf(abs(b / se))))


def mixed(name: str, terms: list[TermEstimate], *, converged: bool = True) -> ModelResult:
    return ModelResult(name, f"{name} formula", 300, 40, tuple(terms), converged, "brent", "profiled",
                       message="" if converged else "It did not converge.")


def result(*, within: float = -0.30, adjusted: float | None = -0.20, se: float = 0.05,
           adjusted_converged: bool = True, symptom: str = "SPIN", alliance: str = "WAI-SR") -> AnalysisResult:
    total = mixed("total", [term("symptom_t", 0.9, 0.02), term("alliance_t", -0.04, 0.02)])
    within_m = mixed("within", [term("symptom_within_t", 0.7, 0.03), term("alliance_within_t", within, se),
                                term("alliance_between", -0.002, 0.03)])
    between = ModelResult("between", "ols", 40, 40, (term("alliance_between", 0.3, 0.1),), True, "lstsq", "ols")
    detrended = None
    if adjusted is not None:
        detrended = mixed("detrended", [term("symptom_within_t", 0.6, 0.04), term("alliance_detrended_t", adjusted, se),
                                        term("week", -0.6, 0.1)], converged=adjusted_converged)
    return AnalysisResult(symptom, alliance, 40, total, within_m, between, detrended=detrended)


# --------------------------------------------------------------------------- the typical week


def test_the_typical_week_does_not_count_a_steady_rise_as_swing() -> None:
    """A patient rising exactly 1 point a week has no week-to-week swing at all; the old SD
    around the person mean called it 3.3 points (the SD of weeks 1…11, ddof 1)."""
    rising = scores([("A", "WAI-SR", w, 30.0 + w) for w in range(1, 12)]
                    + [("B", "WAI-SR", w, 40.0 + w) for w in range(1, 12)])
    assert alliance_within_sd(rising) == pytest.approx(0.0, abs=1e-12)
    old = float(rising.groupby("patient_id")["score"].std().mean())
    assert old == pytest.approx(math.sqrt(11.0), rel=1e-12)


def test_the_typical_week_is_the_pooled_sd_around_each_patients_own_line() -> None:
    # A: +1 a week with a bump of +2 at week 3; B: flat with alternating ±1; C: two weeks only (left out)
    a = [30.0 + w + (2.0 if w == 3 else 0.0) for w in range(1, 7)]
    b = [40.0 + (1.0 if w % 2 else -1.0) for w in range(1, 7)]
    frame = scores([("A", "WAI-SR", w, a[w - 1]) for w in range(1, 7)]
                   + [("B", "WAI-SR", w, b[w - 1]) for w in range(1, 7)]
                   + [("C", "WAI-SR", 1, 20.0), ("C", "WAI-SR", 2, 50.0), ("A", "SPIN", 1, 60.0)])
    t = np.arange(1, 7, dtype=float)
    rss = 0.0
    for y in (a, b):
        coef = np.polyfit(t, y, 1)
        rss += float(((np.asarray(y) - np.polyval(coef, t)) ** 2).sum())
    assert alliance_within_sd(frame) == pytest.approx(math.sqrt(rss / (12 - 2 * 2)), rel=1e-12)
    assert alliance_within_sd(frame[frame["patient_id"] == "C"]) is None


def test_on_a_trending_cohort_the_typical_week_is_the_planted_wobble() -> None:
    cohort = simulate_cohort(600, 11, within=-0.2, between=0.3, seed=4, alliance_trend=1.0, alliance_trend_sd=0.5,
                             alliance_within_sd=3.0)
    sd = alliance_within_sd(cohort)
    assert sd == pytest.approx(3.0, abs=0.15)  # the planted wobble (plus rounding)
    wai = cohort[cohort["instrument"] == "WAI-SR"]
    around_mean = wai["score"] - wai.groupby("patient_id")["score"].transform("mean")
    assert float(np.sqrt((around_mean**2).mean())) > sd + 0.9  # the trend inside the old SD


def test_weekly_trends_average_each_patients_slope() -> None:
    frame = scores([("A", "WAI-SR", w, 30.0 + 1.0 * w) for w in range(1, 6)]
                   + [("B", "WAI-SR", w, 40.0 + 2.0 * w) for w in (1, 2, 4, 5)]
                   + [("C", "WAI-SR", w, 10.0 * w) for w in (1, 2)]  # 2 weeks: too few
                   + [("A", "SPIN", w, 50.0 - 1.5 * w) for w in range(1, 6)])
    trends = weekly_trends(frame, instruments=("WAI-SR", "SPIN", "PHQ-9"))
    assert trends["WAI-SR"] == pytest.approx(1.5)
    assert trends["SPIN"] == pytest.approx(-1.5)
    assert trends["PHQ-9"] is None
    assert both_trend(trends, alliance="WAI-SR", symptom="SPIN") is True
    assert both_trend({"WAI-SR": 1.0, "SPIN": TREND_POINTS_PER_WEEK / 2}, alliance="WAI-SR", symptom="SPIN") is False
    assert both_trend(trends, alliance="WAI-SR", symptom="PHQ-9") is None


# --------------------------------------------------------------------------- which estimate to read


def test_when_both_trend_the_reading_says_to_read_the_adjusted_estimate() -> None:
    text = read_within_estimate(result(), within_sd=3.0, trends={"WAI-SR": 1.0, "SPIN": -1.6})
    assert "With the trial's specification" in text and "0.300 points lower" in text
    assert "Adjusted for treatment week" in text and "0.200 points lower" in text
    assert "WAI-SR rose by 1.0 and SPIN fell by 1.6 points a week" in text
    assert "so read the adjusted one" in text
    assert "with the adjusted estimate that goes with about 0.6 SPIN points" in text  # 0.2 × 3.0
    assert "above their own course were followed by fewer symptoms" in text
    assert "agrees in direction with the published trial" in text and "with a caveat" in text
    assert "part of its size may be that shared trend" in text
    assert "match" not in text.lower()


def test_without_trends_the_first_estimate_can_be_read() -> None:
    text = read_within_estimate(result(within=-0.21), within_sd=3.0, trends={"WAI-SR": 0.05, "SPIN": -1.6})
    assert "hardly trend together (WAI-SR +0.1, SPIN -1.6 points a week" in text
    assert "the first can be read" in text and "read the adjusted one" not in text
    assert "with the trial's estimate that goes with about 0.6 SPIN points" in text  # 0.21 × 3.0
    assert "above their own average were followed by fewer symptoms" in text


def test_without_trend_figures_the_rule_is_stated_and_the_adjusted_estimate_read() -> None:
    text = read_within_estimate(result())
    assert "When alliance and symptoms both trend over the weeks" in text and "read the adjusted one" in text
    assert "points off the patient's own course" not in text  # no SD given


def test_an_adjusted_estimate_whose_interval_includes_0_is_read_as_such() -> None:
    text = read_within_estimate(result(within=-0.3, adjusted=-0.05, se=0.05), trends={"WAI-SR": 1, "SPIN": -1})
    assert "cannot tell this effect from chance" in text
    assert "agrees in direction" not in text and "Compare with the published trial" in text


def test_without_a_converged_adjusted_model_only_the_trial_spec_is_read_with_the_warning() -> None:
    text = read_within_estimate(result(adjusted_converged=False), trends={"WAI-SR": 1, "SPIN": -1})
    assert "adjusted for treatment week did not converge" in text and "overstates" in text
    assert "It did not converge." in text
    assert "fewer symptoms" in text  # the trial's estimate, significant
    older = read_within_estimate(result(adjusted=None))  # a result fitted without the sensitivity model
    assert "Adjusted for treatment week" not in older and "With the trial's specification" in older


def test_other_instruments_get_no_published_comparison() -> None:
    text = read_within_estimate(result(symptom="PHQ-9"), trends={"WAI-SR": 1, "PHQ-9": -0.5})
    assert "published trial (182" not in text and "PHQ-9 score 0.200 points lower" in text


# --------------------------------------------------------------------------- table and chart


def test_the_table_notes_say_the_within_models_person_mean_alliance_is_about_0_by_construction() -> None:
    table = models_table(forest_rows(result())).set_index(["Model", "Term"])
    row = table.loc[("within", "alliance_between")]
    assert row["Published B"] == "-0.028"
    assert row["Note"].startswith("About 0 by construction") and "Not a between-person effect" in row["Note"]
    adjusted = table.loc[("detrended", "alliance_detrended_t")]
    assert adjusted["Estimate"] == "-0.200" and adjusted["Published B"] == ""
    assert "Read this one when alliance and symptoms both trend" in adjusted["Note"]
    assert table.loc[("between", "alliance_between"), "Note"] == ""


def test_the_chart_puts_the_adjusted_estimate_beside_the_trials_and_leaves_out_the_0_by_construction_term() -> None:
    fig = build_forest_figure(result())
    clinic = next(t for t in fig.data if t.name == "this clinic")
    labels = list(clinic.y)[::-1]  # top to bottom
    assert labels == ["total: alliance this week", "within (trial's): alliance off own average",
                      "adjusted for week: alliance off own course", "between: person-mean alliance"]
    assert not any("person-mean alliance (≈0" in label for label in labels)
    published = next(t for t in fig.data if t.name.startswith("published trial"))
    values = dict(zip(published.y, published.x, strict=True))
    assert values["within (trial's): alliance off own average"] == pytest.approx(-0.060)
    assert values["adjusted for week: alliance off own course"] is None or math.isnan(
        values["adjusted for week: alliance off own course"])
    without = build_forest_figure(result(adjusted=None))
    assert len(next(t for t in without.data if t.name == "this clinic").y) == 3
