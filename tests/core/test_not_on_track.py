"""The not_on_track kind: symptoms against the course expected for patients who started alike.

Each test pins one promise of docs/flags.md ("Not on track") with a small hand-made course, plus
the calibration figures of docs/calibration.md on fresh simulated clinics.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from core.course import SymptomCourse, estimate_symptom_course, literature_symptom_course
from core.flags import DEFAULT_CONFIG, MOVING_COLUMNS, NotOnTrackRule, compute_flags
from core.simulation import evaluate_not_on_track, simulate_clinic
from tests.core.test_flags import scores

#: A clinic's frozen SPIN and PHQ-9 courses (points a week; patients differ by 0.5, weeks by 3).
SPIN = ("SPIN", "linear", -1.6, -0.02, 44.0, 0.5, 3.0)
PHQ = ("PHQ-9", "linear", -0.8, -0.05, 15.0, 0.3, 1.5)
CLINIC = replace(DEFAULT_CONFIG, symptom_course=(SPIN, PHQ), rc_params=(("SPIN", 10.0, None),))


def off_track(data, config=CLINIC, **kwargs):
    f = compute_flags(data, config=config, **kwargs)
    return f[f["kind"] == "not_on_track"]


def test_a_patient_who_does_not_improve_is_not_on_track_with_the_numbers_that_say_so():
    flat = off_track(scores(("P1", "SPIN", [44, 45, 43, 44, 45, 44])))
    # by week 3 two weeks are too few to tell a flat course from noise; by week 5 they are not
    assert flat["week"].tolist() == [5]
    r = flat.iloc[0]
    assert r["rule"] == "not_on_track" and r["status"] == "open"
    assert r["baseline"] == pytest.approx(44 + (-1.6) * 4)  # expected by week 5 for an intake of 44
    text = r["explanation"]
    assert "worse than expected for a patient who started at 44" in text
    assert "expected around 37.6 by week 5" in text and "patients who started like them move by -1.6" in text


def test_a_patient_improving_as_expected_is_not_flagged():
    assert off_track(scores(("P1", "SPIN", [44, 43, 41, 39, 38, 36, 34, 33, 31, 29]))).empty


def test_back_on_track_moves_the_status_and_a_new_stretch_is_a_new_flag():
    data = scores(("P1", "SPIN", [44, 45, 44, 45, 44, 30, 28, 26, 24, 22]))
    f = off_track(data)
    assert f["week"].tolist() == [5]
    assert f["status"].tolist() == ["back_on_track"]
    assert off_track(data, as_of_week=5)["status"].tolist() == ["open"]  # as the monitor stood in week 5


def test_the_expected_course_depends_on_the_intake():
    course = SymptomCourse(instrument="SPIN", time=SPIN[1], slope=SPIN[2], intake_slope=SPIN[3], intake_mean=SPIN[4],
                           slope_sd=SPIN[5], resid_sd=SPIN[6], n_courses=0, source="test")
    high, low = course.expected(np.array([60.0, 30.0]), np.array([6, 6]))
    # intake_slope -0.02: a higher intake is expected to fall faster (60 -> 60 - 5 * 1.92; 30 -> 30 - 5 * 1.32)
    assert (60 - high, 30 - low) == pytest.approx((9.6, 6.6))
    f = off_track(scores(("HIGH", "SPIN", [60, 60, 59, 58, 58, 57]), ("LOW", "SPIN", [30, 30, 29, 28, 28, 27])))
    assert f["patient_id"].tolist() == ["HIGH"]  # the same slow fall is on track for one and not the other


def test_week_two_is_the_intake_when_week_one_is_missing():
    f = off_track(scores(("P1", "SPIN", [None, 45, 45, 44, 45, 46])))
    assert len(f) == 1
    assert "who started at 45 (in week 2)" in f["explanation"].iloc[0]


def test_an_instrument_without_an_expected_course_is_not_judged():
    data = scores(("P1", "PHQ-9", [15, 16, 15, 16, 17, 16]))
    assert len(off_track(data)) == 1  # the clinic froze a PHQ-9 course
    assert off_track(data, config=DEFAULT_CONFIG).empty  # no published PHQ-9 course: off by default


def test_severity_by_how_far_outside():
    mild = off_track(scores(("P1", "SPIN", [44, 45, 43, 44, 45, 44])))
    worse = off_track(scores(("P1", "SPIN", [44, 52, 58, 60, 62, 64])))
    assert mild["severity"].tolist() == ["medium"]
    assert worse["severity"].iloc[0] == "high"


def test_switched_off_and_min_week():
    data = scores(("P1", "SPIN", [44, 45, 43, 44, 45, 44]))
    assert off_track(data, config=replace(CLINIC, not_on_track=None)).empty
    later = replace(CLINIC, not_on_track=NotOnTrackRule(min_week=5))
    assert off_track(data, config=later)["week"].tolist() == [5]
    with pytest.raises(ValueError, match="min_week"):
        compute_flags(data, config=replace(CLINIC, not_on_track=NotOnTrackRule(min_week=1)))


def test_the_literature_default_is_the_trials_spin_course():
    course = literature_symptom_course("SPIN", rc=10.0)
    assert course.time == "linear" and course.slope == pytest.approx(-1.6, abs=0.01)
    assert course.resid_sd == pytest.approx(10.0 / (1.96 * np.sqrt(2)), rel=1e-3)
    assert literature_symptom_course("SPIN", rc=None) is None  # off until the clinic froze its SPIN SD
    assert literature_symptom_course("PHQ-9", rc=6.0) is None  # no published week means


def test_estimate_recovers_the_typical_rate_despite_non_responders():
    sim = simulate_clinic(n_patients=1500, seed=21, nonresponder_share=0.2)
    est = estimate_symptom_course(sim.scores, "SPIN")
    assert isinstance(est, SymptomCourse) and est.time == "linear"
    assert -2.1 < est.slope < -1.6  # responders improve 2.0 a week; the median is pulled a little by the 20%
    assert 0.4 < est.slope_sd < 0.9
    assert est.resid_sd == pytest.approx(3.0, abs=0.4)
    with pytest.raises(ValueError, match="at least 100"):
        estimate_symptom_course(sim.scores[sim.scores["patient_id"] < "S00050"], "SPIN")


@pytest.fixture(scope="module")
def clinics():
    train = simulate_clinic(n_patients=2000, seed=211, nonresponder_share=0.2)
    test = simulate_clinic(n_patients=2500, seed=11, nonresponder_share=0.2)
    own = replace(DEFAULT_CONFIG, symptom_course=(estimate_symptom_course(train.scores, "SPIN").as_tuple(),))
    return test, own


def test_calibration_on_a_fresh_simulated_clinic(clinics):
    """docs/calibration.md: by week 6 most non-responders flagged, few responders ever."""
    test, own = clinics
    res = evaluate_not_on_track(compute_flags(test.scores, config=own), test)
    assert res["nonresponders_flagged_by_week"] >= 0.78, res
    assert res["responders_ever_flagged"] <= 0.16, res


def test_no_look_ahead(clinics):
    test, own = clinics
    small = test.scores[test.scores["patient_id"] < "S00300"]
    full = compute_flags(small, config=own)
    full = full[full["kind"] == "not_on_track"]
    assert len(full) > 20
    fixed = [c for c in full.columns if c not in MOVING_COLUMNS]
    for week in (4, 7, 10):
        early = compute_flags(small, config=own, as_of_week=week)
        early = early[early["kind"] == "not_on_track"].reset_index(drop=True)
        later = full[full["week"] <= week].reset_index(drop=True)
        pd.testing.assert_frame_equal(early[fixed], later[fixed])


def test_not_on_track_is_a_reason_on_my_patients_sorted_with_deterioration():
    from core.caseload import ATTENTION_ORDER, attention_table

    data = scores(("FLAT", "SPIN", [44, 45, 43, 44, 45, 44]), ("FINE", "SPIN", [44, 42, 40, 38, 37, 35]),
                  ("LOW", "WAI-SR", [45, 46, 45, 46, 45, 28]))
    flags = compute_flags(data, config=CLINIC)
    patients = pd.DataFrame({"patient_id": ["FLAT", "FINE", "LOW"], "therapist_id": "T1", "status": "active",
                             "last_week": 6, "weeks_stored": 6})
    table = attention_table(patients, flags).set_index("patient_id")
    assert table.loc["FLAT", "attention"] == "not on track"
    assert "not on track (week 5" in table.loc["FLAT", "open_in_words"]
    assert table.loc["FINE", "attention"] == ""
    assert ATTENTION_ORDER["not_on_track"] == ATTENTION_ORDER["deterioration"]
    assert list(table.index[:2]) == ["LOW", "FLAT"]  # a new rupture first, then not on track
