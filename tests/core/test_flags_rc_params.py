"""``FlagConfig.rc_params``: frozen reliable-change parameters, so a flag does not depend on who views it.

CLINICAL.md "Reliable change": a clinic's own SD is frozen once measured, never recomputed from
whatever patients are being looked at. With ``rc_params`` set, one patient's flags are the same
computed alone (a therapist's view of one patient) or within the whole clinic, and a new
patient's first week changes nobody else's flags. Without it (``None``, the default kept for
simulations and research) SPIN's cut-off comes from the frame's week-1 SD, and both can differ.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.flags import DEFAULT_CONFIG, FlagConfig, _instrument_table, _prepare, compute_flags
from core.validation import validate_scores
from tests.core.test_flags import scores  # the one builder of small score frames

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
SPIN_SD = 10.0
FROZEN = FlagConfig(rc_params=(("SPIN", SPIN_SD, None),))
RC = {sd_r: 1.96 * math.sqrt(2) * sd_r[0] * math.sqrt(1 - sd_r[1]) for sd_r in ((10, 0.85), (10, 0.94), (10, 0.9),
                                                                                 (8, 0.94))}
SYMPTOM_CHANGE = ["deterioration", "improvement"]




def of(flags, patient, kinds=None):
    rows = flags[(flags["patient_id"] == patient) & (flags["kind"].isin(kinds) if kinds else True)]
    return rows.reset_index(drop=True)


# A's SPIN rises 11 points by week 3. B's week 1 makes the clinic's week-1 SD exactly 10
# (rc 10.73: A deteriorates); alone, A has no week-1 SD at all.
CLINIC = scores(("A", "SPIN", [30, 40, 41, 25]), ("B", "SPIN", [30 + 10 * math.sqrt(2), 40, 38]),
                ("A", "WAI-SR", [45, 46, 45, 46, 33]))


# --------------------------------------------------------------------------- the cut-off
@pytest.mark.parametrize(("rc_params", "expected"), [
    ((("SPIN", 10.0, None),), {"SPIN": RC[(10, 0.85)], "WAI-SR": RC[(10, 0.94)], "PHQ-9": 6.0}),
    ((("WAI-SR", None, 0.9),), {"SPIN": np.nan, "WAI-SR": RC[(10, 0.9)], "PHQ-9": 6.0}),   # registry SD 10
    ((("WAI-SR", 8.0, None),), {"SPIN": np.nan, "WAI-SR": RC[(8, 0.94)], "PHQ-9": 6.0}),   # registry r .94
    ((("PHQ-9", 3.0, 0.5),), {"SPIN": np.nan, "WAI-SR": RC[(10, 0.94)], "PHQ-9": 6.0}),    # explicit RC wins
    ((), {"SPIN": np.nan, "WAI-SR": RC[(10, 0.94)], "PHQ-9": 6.0}),                         # no SD anywhere
    (None, {"SPIN": 1.96 * math.sqrt(2) * 20 * math.sqrt(0.15), "WAI-SR": RC[(10, 0.94)], "PHQ-9": 6.0}),
])
def test_rc_cutoff_never_reads_the_frame_when_rc_params_are_set(rc_params, expected):
    w1 = _prepare(scores(("A", "SPIN", [30]), ("B", "SPIN", [30 + 20 * math.sqrt(2)]), ("A", "PHQ-9", [4]),
                         ("A", "WAI-SR", [40])), None)  # week-1 SPIN SD of the frame: 20
    table = _instrument_table(pd.Index(["PHQ-9", "SPIN", "WAI-SR"]), w1, FlagConfig(rc_params=rc_params))
    got = dict(zip(table["code"], table["rc"], strict=True))
    for code, rc in expected.items():
        np.testing.assert_allclose(got[code], rc, err_msg=code)


def test_an_instrument_with_no_sd_anywhere_has_no_reliable_change_flags():
    f = compute_flags(CLINIC, config=FlagConfig(rc_params=(("WAI-SR", None, None),)))
    assert of(f, "A", SYMPTOM_CHANGE).empty
    assert not of(compute_flags(CLINIC), "A", SYMPTOM_CHANGE).empty  # the week-1 SD of the frame (default)


# --------------------------------------------------------------------------- whoever views them
def test_one_patient_alone_gets_the_same_spin_flags_as_in_the_clinic():
    alone = CLINIC[CLINIC["patient_id"] == "A"]
    clinic, own = compute_flags(CLINIC, config=FROZEN), compute_flags(alone, config=FROZEN)
    assert of(clinic, "A", SYMPTOM_CHANGE)[["week", "kind"]].values.tolist() == [[3, "deterioration"]]
    pd.testing.assert_frame_equal(of(own, "A", SYMPTOM_CHANGE), of(clinic, "A", SYMPTOM_CHANGE))
    pd.testing.assert_frame_equal(of(own, "A"), of(clinic, "A"))  # and every other flag of A
    # the caveat the setting removes: from the frame's week-1 SD, A alone has no SPIN cut-off
    assert not of(compute_flags(CLINIC), "A", SYMPTOM_CHANGE).empty
    assert of(compute_flags(alone), "A", SYMPTOM_CHANGE).empty


def test_a_new_patients_first_week_changes_no_one_elses_flags():
    newcomer = pd.concat([CLINIC, scores(("N", "SPIN", [68]))], ignore_index=True)
    before, after = compute_flags(CLINIC, config=FROZEN), compute_flags(newcomer, config=FROZEN)
    for patient in ("A", "B"):
        pd.testing.assert_frame_equal(of(after, patient), of(before, patient))
    # without rc_params the newcomer widens the week-1 SD (10 -> 19) and A's deterioration goes
    assert not of(compute_flags(CLINIC), "A", ["deterioration"]).empty
    assert of(compute_flags(newcomer), "A", ["deterioration"]).empty


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    result = validate_scores(pd.read_csv(SAMPLE / "demo_scores.csv"))
    assert result.ok, result.errors
    return result.scores


def test_demo_clinic_spin_flags_are_the_same_for_each_patient_alone(demo):
    config = FlagConfig(rc_params=(("SPIN", 9.2, None),))  # ~ the demo clinic's week-1 SPIN SD, frozen
    clinic = compute_flags(demo, config=config)
    spin = clinic[(clinic["instrument"] == "SPIN") & clinic["kind"].isin(SYMPTOM_CHANGE)]
    assert len(spin) > 10 and set(spin["kind"]) == set(SYMPTOM_CHANGE)
    patients = sorted(set(spin["patient_id"]))
    for patient in patients[:: max(1, len(patients) // 12)]:  # a dozen patients keep the test fast
        own = compute_flags(demo[demo["patient_id"] == patient], config=config)
        pd.testing.assert_frame_equal(of(own, patient), of(clinic, patient), obj=patient)


@st.composite
def clinics(draw):
    rows = []
    for p in range(draw(st.integers(2, 4))):
        for inst, lo, hi in (("SPIN", 0, 68), ("WAI-SR", 12, 60), ("PHQ-9", 0, 27)):
            if not draw(st.booleans()):
                continue
            level = draw(st.integers(lo, hi))
            for w in sorted(draw(st.lists(st.integers(1, 10), min_size=1, max_size=10, unique=True))):
                level = int(np.clip(level + draw(st.integers(-15, 15)), lo, hi))
                rows.append((f"P{p}", f"T{p % 2}", w, inst, float(level)))
    return pd.DataFrame(rows, columns=["patient_id", "therapist_id", "week", "instrument", "score"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clinics())
def test_with_rc_params_every_patients_flags_are_the_same_alone_and_in_the_clinic(df):
    clinic = compute_flags(df, config=FROZEN, current_week=10)
    for patient in df["patient_id"].unique():
        own = compute_flags(df[df["patient_id"] == patient], config=FROZEN, current_week=10)
        pd.testing.assert_frame_equal(own.reset_index(drop=True), of(clinic, patient))


# --------------------------------------------------------------------------- the setting itself
@pytest.mark.parametrize("rc_params", [
    None, (), (("SPIN", 11.0, None),), (("SPIN", None, 0.8),), (("WAI-SR", 9, 0), ("SPIN", np.float64(11.5), None)),
])
def test_valid_rc_params(rc_params):
    FlagConfig(rc_params=rc_params).check()


@pytest.mark.parametrize(("rc_params", "message"), [
    ([("SPIN", 11.0, None)], "not a tuple"),
    (("SPIN", 11.0, None), "not an \\(instrument code, SD, r\\) triple"),
    ((("SPIN", 11.0),), "not an \\(instrument code, SD, r\\) triple"),
    (((1, 11.0, None),), "not an \\(instrument code, SD, r\\) triple"),
    ((("SPN", 11.0, None),), "'SPN', which has no definition"),
    ((("SPIN", 11.0, None), ("SPIN", 12.0, None)), "SPIN twice"),
    ((("SPIN", 0, None),), "an SD must be a number above 0"),
    ((("SPIN", -3.0, None),), "an SD must be a number above 0"),
    ((("SPIN", float("nan"), None),), "an SD must be a number above 0"),
    ((("SPIN", float("inf"), None),), "an SD must be a number above 0"),
    ((("SPIN", "11", None),), "an SD must be a number above 0"),
    ((("SPIN", True, None),), "an SD must be a number above 0"),
    ((("SPIN", None, 1.0),), "from 0 up to \\(not including\\) 1"),
    ((("SPIN", None, -0.1),), "from 0 up to \\(not including\\) 1"),
    ((("SPIN", None, float("nan")),), "from 0 up to \\(not including\\) 1"),
])
def test_bad_rc_params_are_refused_with_a_sentence(rc_params, message):
    config = FlagConfig(rc_params=rc_params)
    with pytest.raises(ValueError, match=message):
        config.check()
    with pytest.raises(ValueError, match=message):
        compute_flags(CLINIC, config=config)


def test_describe_and_hash_with_rc_params():
    config = FlagConfig(rc_params=(("SPIN", 11.0, None), ("WAI-SR", None, 0.9)))
    assert config.describe()["rc_params"] == {"SPIN": {"sd": 11.0, "r": None}, "WAI-SR": {"sd": None, "r": 0.9}}
    assert DEFAULT_CONFIG.describe()["rc_params"] is None
    assert config.describe()["reliable_drop"] == DEFAULT_CONFIG.describe()["reliable_drop"]
    assert hash(config) == hash(FlagConfig(rc_params=(("SPIN", 11.0, None), ("WAI-SR", None, 0.9))))
