"""Each step of the ``compute_flags`` pipeline (core/flags.py, "The pipeline") on small hand-written frames.

Every test builds a frame by hand, runs ``_prepare`` and ``_series_arrays`` and then one step,
and asserts the rows (patient, week) and the key columns that step returns.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.flags import (
    FLAG_COLUMNS,
    CasenessRule,
    LowAllianceRule,
    MissedRule,
    ReliableChangeRule,
    RiskItemRule,
    SuddenLossRule,
    _assemble,
    _caseness_flags,
    _instrument_table,
    _low_alliance_flags,
    _missed_part,
    _prepare,
    _risk_parts,
    _rupture_flags,
    _series_arrays,
    _symptom_change_flags,
    empty_flags,
)

# These tests pin the rupture rules of 0.1-0.3 (see tests/core/test_flags.py); the default rule,
# below_expected, is tested in test_below_expected.py.
from tests.core.test_flags import DEFAULT_CONFIG, FlagConfig, compute_flags, scores

RC_WAI = 1.96 * math.sqrt(2) * 10 * math.sqrt(1 - 0.94)  # 6.79 points (CLINICAL.md)
NAN = np.nan




def arrays(data, config=DEFAULT_CONFIG, *, as_of_week=None, current_week=None):
    frame = _prepare(data, as_of_week)
    return frame, _series_arrays(frame, config, as_of_week=as_of_week, current_week=current_week)


def keys(part, *cols):
    return list(zip(*(part[c].tolist() for c in ("patient_id", "week", *cols)), strict=True))


# --------------------------------------------------------------------------- _prepare
def test_prepare_sorts_into_series_cuts_at_as_of_week_and_keeps_only_known_columns():
    data = pd.DataFrame({
        "patient_id": ["B", "A", "A", "A", "A"], "instrument": ["WAI-SR", "SPIN", "WAI-SR", "WAI-SR", "WAI-SR"],
        "week": [2, 1, 2, 1, 3], "score": [40, 30, 45, 44, NAN], "item_1": [4.0, 2, 4, 4, NAN],
        "administered_on": ["x"] * 5,
    })
    before = data.copy()
    frame = _prepare(data, 2)
    assert list(zip(frame["patient_id"], frame["instrument"], frame["week"], strict=True)) == [
        ("A", "SPIN", 1), ("A", "WAI-SR", 1), ("A", "WAI-SR", 2), ("B", "WAI-SR", 2)]
    assert frame["_gid"].tolist() == [0, 1, 1, 2]
    assert frame["score"].tolist() == [30.0, 44.0, 45.0, 40.0]
    assert list(frame.columns) == ["patient_id", "instrument", "week", "score", "item_1", "therapist_id", "_gid"]
    assert frame["therapist_id"].isna().all() and frame["therapist_id"].dtype == "string"
    assert frame["week"].dtype == "int64" and frame["score"].dtype == "float64"
    pd.testing.assert_frame_equal(data, before)  # the input is not modified


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"as_of_week": 0}, "as_of_week"), ({"as_of_week": True}, "as_of_week"), ({"as_of_week": 2.5}, "as_of_week"),
    ({"instrument": "BDI"}, "Unknown instrument code"),
])
def test_prepare_refuses_bad_input(kwargs, message):
    data = scores(("P1", kwargs.get("instrument", "WAI-SR"), [45, 46]))
    with pytest.raises(ValueError, match=message):
        _prepare(data, kwargs.get("as_of_week"))


# --------------------------------------------------------------------------- _series_arrays
SERIES = pd.DataFrame(
    [("P1", "WAI-SR", 1, 44.0), ("P1", "WAI-SR", 2, 46.0), ("P1", "WAI-SR", 4, 40.0), ("P1", "WAI-SR", 5, NAN),
     ("P1", "PHQ-9", 1, 12.0), ("P1", "PHQ-9", 2, 9.0), ("P2", "WAI-SR", 3, 50.0)],
    columns=["patient_id", "instrument", "week", "score"])


def test_series_arrays_one_entry_per_row_in_series_order():
    _, s = arrays(SERIES)
    # rows: P1 PHQ-9 w1 w2 | P1 WAI-SR w1 w2 w4 w5(not answered) | P2 WAI-SR w3
    assert s.gid.tolist() == [0, 0, 1, 1, 1, 1, 2]
    assert s.week.tolist() == [1, 2, 1, 2, 4, 5, 3]
    assert s.present.tolist() == [True, True, True, True, True, False, True]
    assert s.pids.tolist() == ["P1", "P2"] and s.pcode.tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert s.icodes.tolist() == ["PHQ-9", "WAI-SR"] and s.icode.tolist() == [0, 0, 1, 1, 1, 1, 1]
    np.testing.assert_array_equal(s.prev, [NAN, 12, NAN, 44, NAN, 40, NAN])          # exactly the week before
    np.testing.assert_array_equal(s.prev_stored, [NAN, 12, NAN, 44, 46, 40, NAN])    # any earlier stored week
    np.testing.assert_array_equal(s.first, [12, 12, 44, 44, 44, 44, 50])
    assert s.cnt.tolist() == [0, 1, 0, 1, 2, 3, 0]
    np.testing.assert_allclose(s.rmean, [NAN, 12, NAN, 44, 45, 130 / 3, NAN])
    np.testing.assert_allclose(s.rsd[4], math.sqrt(2))
    np.testing.assert_allclose(s.rc, [6, 6] + [RC_WAI] * 5)
    assert s.is_alliance.tolist() == [False, False, True, True, True, True, True]
    assert s.worse_sign.tolist() == [1, 1, -1, -1, -1, -1, -1]
    assert s.labels.tolist() == ["PHQ-9", "Therapist alliance"]
    assert list(s.base.columns) == ["patient_id", "therapist_id", "week", "instrument"] and len(s.base) == 7
    np.testing.assert_array_equal(s.lookup.at(s.gid, s.week, 0), s.x)


@pytest.mark.parametrize(("kwargs", "now_p"), [
    ({}, [5, 3]),                                               # each patient's last stored week
    ({"current_week": 7}, [7, 7]),
    ({"current_week": pd.Series({"P2": 9})}, [5, 9]),           # not in the Series: last stored week
    ({"as_of_week": 4}, [4, 4]),
    ({"as_of_week": 4, "current_week": 7}, [4, 4]),             # capped at as_of_week
])
def test_series_arrays_now(kwargs, now_p):
    _, s = arrays(SERIES, **kwargs)
    assert s.now_p.tolist() == now_p
    assert s.now.tolist() == [now_p[p] for p in s.pcode]


def test_series_arrays_refuses_a_bad_current_week():
    with pytest.raises(ValueError, match="current_week"):
        arrays(SERIES, current_week=0)


# --------------------------------------------------------------------------- _instrument_table
def test_instrument_table_settings_per_instrument():
    data = scores(("A", "SPIN", [30, 40]), ("B", "SPIN", [30 + 10 * math.sqrt(2)]), ("A", "WAI-SR", [45]),
                  ("A", "PHQ-9", [9]))
    frame = _prepare(data, None)
    t = _instrument_table(pd.Index(["PHQ-9", "SPIN", "WAI-SR"]), frame[frame["week"] == 1], DEFAULT_CONFIG)
    assert t["code"].tolist() == ["PHQ-9", "SPIN", "WAI-SR"]
    # PHQ-9: explicit reliable_change; SPIN: week-1 SD of the frame (10); WAI-SR: SD 10, r .94
    np.testing.assert_allclose(t["rc"], [6, 1.96 * math.sqrt(2) * 10 * math.sqrt(0.15), RC_WAI])
    assert t["alliance"].tolist() == [False, False, True]
    np.testing.assert_array_equal(t["low"], [NAN, NAN, 30])
    np.testing.assert_array_equal(t["case"], [10, 19, NAN])
    assert t["floor"].tolist() == [0, 0, 12] and t["worse_sign"].tolist() == [1, 1, -1]
    cfg = FlagConfig(low_alliance=LowAllianceRule(cutoff=35), caseness=CasenessRule(cutoff=12),
                     sudden_loss=SuddenLossRule(scale_floor=20))
    t = _instrument_table(pd.Index(["PHQ-9", "WAI-SR"]), frame.iloc[:0], cfg)
    assert t["low"].tolist() == [35, 35] and t["case"].tolist() == [12, 12] and t["floor"].tolist() == [20, 20]


# --------------------------------------------------------------------------- _rupture_flags
RUPTURES = [
    # WAI-SR course, config, (week, rule, severity, baseline, status)
    ([45, 46, 45, 46, 33], DEFAULT_CONFIG, [(5, "reliable_drop+below_own_level", "high", 46.0, "open")]),
    # 10 points < 1.5 x 6.79: not a reliable drop; 9.5 below the running mean 45.5 is below own level
    ([45, 46, 45, 46, 36], DEFAULT_CONFIG, [(5, "below_own_level", "medium", 45.5, "open")]),
    ([45, 46, 45, 46, 36], FlagConfig(rupture_requires="all"), []),
    ([45, 46, 45, 46, 33, 46], DEFAULT_CONFIG, [(5, "reliable_drop+below_own_level", "high", 46.0, "repaired")]),
    ([45, 46, 45, 46, 33, 34, 33, 34], DEFAULT_CONFIG,
     [(5, "reliable_drop+below_own_level", "high", 46.0, "unrepaired")]),
    # weeks 6 and 7 continue the episode (one flag); not back within the repair window
    ([45, 46, 45, 46, 30, 31, 30, 46], DEFAULT_CONFIG,
     [(5, "reliable_drop+below_own_level", "high", 46.0, "unrepaired")]),
    # every week: week 6 is 11.4 below its running mean of 42.4 (week 7: the mean has sunk)
    ([45, 46, 45, 46, 30, 31, 30, 46], FlagConfig(rupture_episodes=False),
     [(5, "reliable_drop+below_own_level", "high", 46.0, "unrepaired"),
      (6, "below_own_level", "medium", 42.4, "unrepaired")]),
    ([45, 46, 45, 46, 45], DEFAULT_CONFIG, []),
    ([45, 46, 45, 46, 33], FlagConfig(reliable_drop=None, below_own_level=None), []),
]


@pytest.mark.parametrize(("course", "config", "expected"), RUPTURES)
def test_rupture_flags(course, config, expected):
    frame, s = arrays(scores(("P1", "WAI-SR", course)), config)
    part = _rupture_flags(frame, s, config)
    if not expected:
        assert part is None
        return
    assert [(w, r, sev, round(b, 1)) for _, w, r, sev, b, _ in
            keys(part, "rule", "severity", "baseline", "status")] == [e[:4] for e in expected]
    assert part["status"].tolist()[:1] == [expected[0][4]]
    assert (part["kind"] == "rupture").all() and (part["instrument"] == "WAI-SR").all()
    np.testing.assert_array_equal(part["drop"], part["baseline"] - part["score"])


def test_rupture_flags_columns_of_one_rupture():
    frame, s = arrays(scores(("P1", "WAI-SR", [45, 46, 45, 46, 33, 34, 33, 34])))
    r = _rupture_flags(frame, s, DEFAULT_CONFIG).iloc[0]
    assert (r["score"], r["baseline"], r["drop"]) == (33.0, 46.0, 13.0)
    assert r["drop_sd"] == pytest.approx((45.5 - 33) / 3)  # own SD 0.58 raised to the sd_floor of 3
    assert bool(r["confirmed"]) is True  # sudden loss: later weeks stay down
    assert r["explanation"] == ("Therapist alliance fell from 46 to 33 (13 points, 4.2 of this patient's own SDs "
                                "below their running average of 45.5).")
    frame, s = arrays(scores(("P1", "WAI-SR", [45, 46, 45, 46, 33, 46])))
    r = _rupture_flags(frame, s, DEFAULT_CONFIG).iloc[0]
    assert r["status"] == "repaired" and r["repaired_week"] == 6 and bool(r["confirmed"]) is False
    part = _rupture_flags(frame, s, FlagConfig(sudden_loss=None))
    assert part["confirmed"].isna().all()


def test_rupture_flags_names_the_subscale_that_fell_most():
    data = scores(("P1", "WAI-SR", [48, 48, 48, 48, 36]))
    for i in range(1, 13):
        data[f"item_{i}"] = 4.0
    for i in (3, 5, 7, 9):  # the bond items fall from 4 to 1 in week 5
        data.loc[data["week"] == 5, f"item_{i}"] = 1.0
    frame, s = arrays(data)
    r = _rupture_flags(frame, s, DEFAULT_CONFIG).iloc[0]
    assert (r["subscale"], r["subscale_drop"]) == ("bond", 12.0)
    assert r["explanation"].endswith("; bond fell most.")


def test_rupture_flags_none_without_alliance_scores():
    frame, s = arrays(scores(("P1", "SPIN", [45, 46, 45, 46, 20])))
    assert _rupture_flags(frame, s, DEFAULT_CONFIG) is None


# --------------------------------------------------------------------------- _low_alliance_flags
@pytest.mark.parametrize(("config", "weeks"), [
    (DEFAULT_CONFIG, [2, 5]),                                      # entering the state
    (FlagConfig(low_alliance=LowAllianceRule(every_week=True)), [2, 3, 5]),
    (FlagConfig(low_alliance=LowAllianceRule(cutoff=36)), [2]),    # 35 stays below 36: the same stretch
])
def test_low_alliance_flags(config, weeks):
    _, s = arrays(scores(("P1", "WAI-SR", [40, 29, 28, 35, 28])), config)
    part = _low_alliance_flags(s, config)
    assert part["week"].tolist() == weeks
    assert (part["rule"] == "low_alliance").all() and (part["severity"] == "medium").all()
    cut = config.low_alliance.cutoff or 30
    assert (part["baseline"] == cut).all()
    if config is DEFAULT_CONFIG:
        assert part["explanation"].iloc[0] == ("Therapist alliance is 29, below the low-alliance line of 30 "
                                               "(mean item answer below 2.5).")


def test_low_alliance_flags_none_when_off_or_nothing_low():
    _, s = arrays(scores(("P1", "WAI-P", [40, 29])))
    assert _low_alliance_flags(s, FlagConfig(low_alliance=None)) is None
    assert _low_alliance_flags(s, DEFAULT_CONFIG)["explanation"].iloc[0].startswith("Alliance with the program is 29")
    _, s = arrays(scores(("P1", "WAI-SR", [40, 31]), ("P1", "PHQ-9", [3, 2])))
    assert _low_alliance_flags(s, DEFAULT_CONFIG) is None


# --------------------------------------------------------------------------- _symptom_change_flags
def test_symptom_change_flags_deterioration_then_improvement():
    data = scores(("P1", "PHQ-9", [10, 14, 16, 17, 10, 16]), ("P2", "PHQ-9", [20, 15, 14, 13]))
    _, s = arrays(data)
    det, imp = _symptom_change_flags(s, DEFAULT_CONFIG)
    # PHQ-9 reliable change is 6 points: +6 at week 3, back under, re-entered at week 6
    assert keys(det, "kind", "severity", "baseline", "score") == [
        ("P1", 3, "deterioration", "high", 10.0, 16.0), ("P1", 6, "deterioration", "high", 10.0, 16.0)]
    assert keys(imp, "kind", "severity", "baseline", "score") == [("P2", 3, "improvement", "low", 20.0, 14.0)]
    assert det["drop"].tolist() == [-6.0, -6.0]
    assert det["explanation"].iloc[0] == ("PHQ-9 rose from 10 in the first week to 16: 6 points worse, more than "
                                          "the 6 points that count as a real change.")
    assert imp["explanation"].iloc[0] == ("PHQ-9 fell from 20 in the first week to 14: 6 points better, more than "
                                          "the 6 points that count as a real change.")


def test_symptom_change_flags_options():
    _, s = arrays(scores(("P1", "PHQ-9", [10, 14, 16, 17, 10, 16])))
    every = FlagConfig(deterioration=ReliableChangeRule(every_week=True), improvement=None)
    assert [p["week"].tolist() for p in _symptom_change_flags(s, every)] == [[3, 4, 6]]
    points = FlagConfig(deterioration=ReliableChangeRule(rc_multiple=None, min_points=4))
    (det,) = _symptom_change_flags(s, points)
    assert det["week"].tolist() == [2, 6] and det["explanation"].iloc[0] == (
        "PHQ-9 rose from 10 in the first week to 14 (worse).")
    assert _symptom_change_flags(s, FlagConfig(deterioration=None, improvement=None)) == []


def test_symptom_change_flags_need_a_reliable_change_cutoff():
    # SPIN has no SD: one patient's week 1 has no SD, so no cut-off and no flag (not a "no")
    _, s = arrays(scores(("P1", "SPIN", [30, 50, 60])))
    assert np.isnan(s.rc).all() and _symptom_change_flags(s, DEFAULT_CONFIG) == []
    _, s = arrays(scores(("P1", "WAI-SR", [45, 20])))
    assert _symptom_change_flags(s, DEFAULT_CONFIG) == []


# --------------------------------------------------------------------------- _caseness_flags
@pytest.mark.parametrize(("course", "config", "weeks"), [
    ([8, 9, 10, 12, 9, 11], DEFAULT_CONFIG, [3]),
    ([8, 9, 10, 12, 9, 11], FlagConfig(caseness=CasenessRule(once=False)), [3, 6]),
    ([8, None, 10], DEFAULT_CONFIG, [3]),                                    # previous *stored* week
    ([12, 8, 11], DEFAULT_CONFIG, []),                                       # started above
    ([12, 8, 11], FlagConfig(caseness=CasenessRule(once=False, new_only=False)), [3]),
    ([8, 9, 10], FlagConfig(caseness=None), []),
])
def test_caseness_flags(course, config, weeks):
    _, s = arrays(scores(("P1", "PHQ-9", course)), config)
    part = _caseness_flags(s, config)
    if not weeks:
        assert part is None
        return
    assert part["week"].tolist() == weeks
    assert (part["baseline"] == 10).all() and (part["severity"] == "medium").all()
    if course == [8, 9, 10, 12, 9, 11]:
        assert part["explanation"].iloc[0] == ("PHQ-9 is 10, at or past the clinical cut-off of 10 "
                                               "(it was 9 at the last questionnaire).")


# --------------------------------------------------------------------------- _risk_parts
def test_risk_parts():
    data = scores(("P1", "PHQ-9", [10, 11, 12]), ("P1", "WAI-SR", [40, 41, 42]))
    data["item_9"] = [0.0, 1.0, 2.0, 3.0, 3.0, 3.0]  # WAI-SR item 9 is not a risk item
    frame, s = arrays(data)
    (part,) = _risk_parts(frame, s, DEFAULT_CONFIG)
    assert keys(part, "instrument", "severity", "score") == [("P1", 2, "PHQ-9", "urgent", 11.0),
                                                             ("P1", 3, "PHQ-9", "urgent", 12.0)]
    assert part["baseline"].isna().all()
    assert part["explanation"].iloc[0] == (
        "PHQ-9 item 9 (\u201cThoughts that you would be better off dead or of hurting yourself in some way\u201d) "
        "was answered 1 (above 0): ask about risk and follow the clinic's risk procedure today.")
    (part,) = _risk_parts(frame, s, FlagConfig(risk_item=RiskItemRule(threshold=1)))
    assert part["week"].tolist() == [3]
    assert _risk_parts(frame, s, FlagConfig(risk_item=None)) == []
    frame, s = arrays(scores(("P1", "PHQ-9", [10, 11, 12])))  # no item columns
    assert _risk_parts(frame, s, DEFAULT_CONFIG) == []


# --------------------------------------------------------------------------- _missed_part
@pytest.mark.parametrize(("weeks", "current_week", "rows"), [
    (2, None, [(3, "T1", "No questionnaire for 2 weeks in a row (weeks 2 to 3); the last one was in week 1.")]),
    (2, 6, [(3, "T1", "No questionnaire for 2 weeks in a row (weeks 2 to 3); the last one was in week 1."),
            (6, "T2", "No questionnaire for 2 weeks in a row (weeks 5 to 6); the last one was in week 4.")]),
    (1, 6, [(2, "T1", "No questionnaire in week 2; the last one was in week 1."),
            (5, "T2", "No questionnaire in week 5; the last one was in week 4.")]),
    (3, 6, []),
])
def test_missed_part(weeks, current_week, rows):
    data = scores(("P1", "WAI-SR", [45, None, None, 45]), ("P1", "SPIN", [40, None, None, 40]))
    data.loc[data["week"] == 4, "therapist_id"] = "T2"  # the therapist of the last week before the run
    frame, s = arrays(data, current_week=current_week)
    part = _missed_part(frame, s, FlagConfig(missed=MissedRule(weeks=weeks)))
    if not rows:
        assert part is None
        return
    assert list(zip(part["week"], part["therapist_id"], part["explanation"], strict=True)) == rows
    assert part["instrument"].isna().all() and (part["patient_id"] == "P1").all()
    assert (part["severity"] == "low").all() and part["score"].isna().all()


def test_missed_part_counts_a_score_on_any_instrument_and_can_be_off():
    data = scores(("P1", "WAI-SR", [45, None, None, 45]), ("P1", "SPIN", [40, 41, None, 40]))
    frame, s = arrays(data)
    assert _missed_part(frame, s, DEFAULT_CONFIG) is None
    data = scores(("P1", "WAI-SR", [45, None, None, 45]))
    frame, s = arrays(data)
    assert _missed_part(frame, s, FlagConfig(missed=None)) is None


# --------------------------------------------------------------------------- _assemble
def test_assemble_sorts_adds_symptom_context_and_every_column():
    data = scores(("B", "WAI-SR", [45, 46, 45, 46, 33]), ("A", "WAI-SR", [40, 29]), ("A", "SPIN", [30, 33, 31]),
                  ("B", "PHQ-9", [None, None, None, 12, 15, 13]))
    frame, s = arrays(data)
    parts = [_rupture_flags(frame, s, DEFAULT_CONFIG), None, _low_alliance_flags(s, DEFAULT_CONFIG).iloc[:0],
             _low_alliance_flags(s, DEFAULT_CONFIG)]
    out = _assemble(parts, frame, s, DEFAULT_CONFIG)
    assert list(out.columns) == list(FLAG_COLUMNS)
    assert {c: str(t) for c, t in out.dtypes.items()} == FLAG_COLUMNS
    assert keys(out, "kind", "symptom_instrument", "symptom_change_next_week") == [
        ("A", 2, "low_alliance", "SPIN", -2.0),    # SPIN 33 -> 31 the week after
        ("A", 2, "rupture", "SPIN", -2.0),         # 40 -> 29 is a reliable drop too
        ("B", 5, "rupture", "PHQ-9", -2.0),        # B's only symptom instrument: PHQ-9 15 -> 13
    ]
    assert out["subscale"].isna().all() and out["status"].tolist() == ["open"] * 3


def test_assemble_without_parts_is_the_empty_frame():
    frame, s = arrays(scores(("P1", "WAI-SR", [45])))
    pd.testing.assert_frame_equal(_assemble([None, empty_flags().iloc[:0]], frame, s, DEFAULT_CONFIG),
                                  empty_flags())


# --------------------------------------------------------------------------- the whole pipeline
def test_compute_flags_is_the_pipeline_of_its_steps():
    data = scores(("B", "WAI-SR", [45, 46, 45, 46, 33, None, None, 44]), ("A", "WAI-SR", [40, 29, 31]),
                  ("A", "PHQ-9", [8, 10, 16, 1]))
    data["item_9"] = np.where(data["instrument"] == "PHQ-9", 1.0, NAN)
    frame, s = arrays(data, current_week=9)
    cfg = DEFAULT_CONFIG
    parts = [_rupture_flags(frame, s, cfg), _low_alliance_flags(s, cfg), *_symptom_change_flags(s, cfg),
             _caseness_flags(s, cfg), *_risk_parts(frame, s, cfg), _missed_part(frame, s, cfg)]
    expected = _assemble(parts, frame, s, cfg)
    got = compute_flags(data, current_week=9)
    pd.testing.assert_frame_equal(got, expected)
    assert set(got["kind"]) == {"rupture", "low_alliance", "deterioration", "improvement", "caseness",
                                "risk_item", "missed"}


def test_computing_flags_does_not_import_scipy_stats() -> None:
    """The rules take their t and normal quantiles from scipy.special: scipy.stats' import alone
    was ~0.4 s of every refresh-flags (bench/processes.py)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import pandas as pd; from core.flags import compute_flags; "
            "from sample_data.generate import generate_clinic; "
            "flags = compute_flags(generate_clinic(n_patients=12, n_weeks=14, seed=3, items=True)); "
            "assert len(flags) > 0, 'no flag'; print('scipy.stats' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_sentence_numbers_are_formatted_as_each_value_would_be() -> None:
    from core.flags import _fmt

    values = np.array([np.nan, -0.0, 0.0, -0.04, 12.0, 12.25, 3.14159, 1e7, -7.5])
    assert _fmt(values).tolist() == ["?", "-0", "0", "-0", "12", "12.2", "3.1", "1e+07", "-7.5"]
    assert _fmt(np.array([])).tolist() == [] and str(_fmt(np.array([])).dtype) == "string"
