"""compute_flags end to end: columns, each kind's edges, as_of_week, current_week, bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from core.flags import (
    CONTRACT_COLUMNS,
    FLAG_COLUMNS,
    RULES_0_3,
    BelowOwnLevelRule,
    MissedRule,
    ReliableDropRule,
)
from core.flags import (
    compute_flags as _compute_flags,
)

# These tests pin the rupture rules of 0.1-0.3 (reliable_drop, below_own_level), still available as
# options (core.flags.RULES_0_3); the default rule, below_expected, is tested in test_below_expected.py.
DEFAULT_CONFIG = RULES_0_3


def FlagConfig(**settings):
    return replace(RULES_0_3, **settings)


def compute_flags(data, config=RULES_0_3, **kwargs):
    return _compute_flags(data, config=config, **kwargs)


def scores(*series, therapist="T1"):
    """series: (patient, instrument, [scores from week 1; None = missing week])."""
    rows = []
    for pid, inst, values in series:
        for w, v in enumerate(values, start=1):
            if v is not None:
                rows.append((pid, therapist, w, inst, float(v)))
    return pd.DataFrame(rows, columns=["patient_id", "therapist_id", "week", "instrument", "score"])


def kinds(flags, kind):
    return flags[flags["kind"] == kind]


# 1.5 x 6.79 = 10.19 points for a reliable drop of WAI-SR
def test_columns_and_dtypes():
    f = compute_flags(scores(("P1", "WAI-SR", [45, 46, 45, 46, 33])))
    assert list(f.columns[: len(CONTRACT_COLUMNS)]) == list(CONTRACT_COLUMNS)
    assert list(f.columns) == list(FLAG_COLUMNS)
    expected = {c: str(pd.Series(dtype=d).dtype) for c, d in FLAG_COLUMNS.items()}
    assert {c: str(f[c].dtype) for c in f.columns} == expected


def test_empty_input_gives_empty_frame_with_columns():
    empty = scores(("P1", "WAI-SR", []))
    f = compute_flags(empty)
    assert f.empty and list(f.columns) == list(FLAG_COLUMNS)


def test_rupture_explained():
    f = compute_flags(scores(("P1", "WAI-SR", [45, 46, 45, 46, 33])))
    r = kinds(f, "rupture").iloc[0]
    assert (r.week, r.rule, r.severity, r.score, r.baseline, r["drop"]) == \
        (5, "reliable_drop+below_own_level", "high", 33.0, 46.0, 13.0)
    assert r.drop_sd == pytest.approx((45.5 - 33) / 3.0)  # running SD 0.58 is floored at 3
    assert r.explanation.startswith("Therapist alliance fell from 46 to 33 (13 points, 4.2 of this patient's own SDs"
                                    " below their running average of 45.5)")
    assert r.status == "open" and pd.isna(r.confirmed) and pd.isna(r.repaired_week)


RUPTURE_CASES = [
    # WAI-SR course, expected rupture weeks, rules
    ([45, 46, 45, 46, 35], [5], "reliable_drop+below_own_level"),  # fall 11 >= 10.19
    ([45, 46, 45, 46, 36], [5], "below_own_level"),                # fall 10 < 10.19, 9.5 below mean
    ([45, 46, None, 46, 35], [5], "reliable_drop+below_own_level"),
    ([45, 46, 45, None, 35], [5], "below_own_level"),              # missing week before: no reliable drop
    ([46, 35], [2], "reliable_drop"),                               # first weeks: not enough prior weeks
    ([35], [], ""),                                                 # first week alone
    ([45, 46, 45, 46, 45, 46, 40], [], ""),                         # 5.5 below: less than one RC
]


@pytest.mark.parametrize(("course", "weeks", "rule"), RUPTURE_CASES)
def test_rupture_edges(course, weeks, rule):
    f = kinds(compute_flags(scores(("P1", "WAI-SR", course))), "rupture")
    assert f["week"].tolist() == weeks
    if weeks:
        assert f["rule"].iloc[0] == rule


def test_each_alliance_instrument_is_its_own_series():
    f = compute_flags(scores(("P1", "WAI-SR", [45, 46, 45, 46, 35]), ("P1", "WAI-P", [45, 46, 45, 46, 45])))
    assert kinds(f, "rupture")["instrument"].tolist() == ["WAI-SR"]


def test_rupture_requires_all():
    cfg = replace(DEFAULT_CONFIG, rupture_requires="all")
    f = compute_flags(scores(("P1", "WAI-SR", [45, 46, 45, 46, 36])), config=cfg)
    assert kinds(f, "rupture").empty


def test_repair_status_moves_on():
    course = [45, 46, 45, 46, 35, 36, 44]
    data = scores(("P1", "WAI-SR", course))
    r5 = lambda f: kinds(f, "rupture").set_index("week").loc[5]  # noqa: E731
    assert r5(compute_flags(data, as_of_week=5)).status == "open"
    assert r5(compute_flags(data, as_of_week=6)).status == "open"
    full = r5(compute_flags(data))
    assert (full.status, full.repaired_week) == ("repaired", 7)  # 46 - 44 = 2 < 6.8
    unrep = r5(compute_flags(scores(("P1", "WAI-SR", [45, 46, 45, 46, 35, 36, 37]))))
    assert unrep.status == "unrepaired"


def test_sudden_loss_confirms_later():
    data = scores(("P1", "WAI-SR", [45, 46, 45, 46, 33, 34, 33]))
    assert pd.isna(kinds(compute_flags(data, as_of_week=5), "rupture")["confirmed"].iloc[0])
    assert bool(kinds(compute_flags(data), "rupture")["confirmed"].iloc[0]) is True
    data = scores(("P1", "WAI-SR", [45, 46, 45, 46, 33, 46, 47]))
    assert bool(kinds(compute_flags(data), "rupture")["confirmed"].iloc[0]) is False


def test_subscale_that_fell_most():
    items = {f"item_{i}": 4.0 for i in range(1, 13)}
    rows = []
    for w in range(1, 5):
        rows.append({"patient_id": "P1", "therapist_id": "T", "week": w, "instrument": "WAI-SR", **items})
    bond_fall = dict(items, item_3=1.0, item_5=1.0, item_7=1.0, item_9=1.0, item_1=3.0)
    rows.append({"patient_id": "P1", "therapist_id": "T", "week": 5, "instrument": "WAI-SR", **bond_fall})
    df = pd.DataFrame(rows)
    df["score"] = df[[f"item_{i}" for i in range(1, 13)]].sum(axis=1)
    r = kinds(compute_flags(df), "rupture").iloc[0]
    assert (r.subscale, r.subscale_drop) == ("bond", 12.0)
    assert r.explanation.endswith("; bond fell most.")


def test_symptom_change_next_week():
    data = scores(("P1", "WAI-SR", [45, 46, 45, 46, 35, 40]), ("P1", "SPIN", [40, 40, 40, 40, 40, 44]),
                  ("P1", "PHQ-9", [10, 10, 10, 10, 10, 10]))
    r = kinds(compute_flags(data), "rupture").iloc[0]
    assert (r.symptom_instrument, r.symptom_change_next_week) == ("SPIN", 4.0)
    r = kinds(compute_flags(data, as_of_week=5), "rupture").iloc[0]
    assert r.symptom_instrument == "SPIN" and pd.isna(r.symptom_change_next_week)


LOW_CASES = [
    ([35, 29, 28, 31, 29], [2, 5]),  # entering the low range, not every week
    ([25, 26], [1]),                  # first week counts
    ([30, 30], []),                   # exactly the cut-off is not below it
]


@pytest.mark.parametrize(("course", "weeks"), LOW_CASES)
def test_low_alliance(course, weeks):
    f = kinds(compute_flags(scores(("P1", "WAI-SR", course))), "low_alliance")
    assert f["week"].tolist() == weeks
    assert (f["severity"] == "medium").all() and (f["baseline"] == 30).all()


SYMPTOM_CASES = [
    # PHQ-9 course, kind, weeks
    ([10, 14, 16, 17, 10, 16], "deterioration", [3, 6]),   # +6 = reliable change 6, re-entered at 6
    ([20, 15, 14, 13], "improvement", [3]),
    ([8, 9, 10, 12, 9, 11], "caseness", [3]),              # crossing 10; a re-crossing is the same episode
    ([12, 13], "caseness", []),                             # starting in caseness is no crossing
    ([12, 8, 11], "caseness", []),                          # started above: back above is not a new problem
    ([8, None, 10], "caseness", [3]),                       # previous *stored* week
]


def test_caseness_every_crossing_when_once_is_off():
    from core.symptoms import CasenessRule

    config = FlagConfig(caseness=CasenessRule(once=False))
    f = kinds(compute_flags(scores(("P1", "PHQ-9", [8, 9, 10, 12, 9, 11])), config=config), "caseness")
    assert f["week"].tolist() == [3, 6]
    config = FlagConfig(caseness=CasenessRule(once=False, new_only=False))
    f = kinds(compute_flags(scores(("P1", "PHQ-9", [12, 8, 11])), config=config), "caseness")
    assert f["week"].tolist() == [3]


RUPTURE_EPISODES = [
    # WAI-SR course (weeks 1..n); the rupture weeks raised with episodes on / off
    ([45, 46, 45, 46, 30, 31, 30, 46], [5], [5, 6]),        # week 7: the running mean has sunk by then
    ([45, 46, 45, 46, 30, None, 31, 46], [5], [5, 7]),       # a gap: the next stored week continues it
    ([45, 46, 45, 46, 30, 46, 46, 30], [5, 8], [5, 8]),       # recovered in between: a new episode
]


@pytest.mark.parametrize(("course", "episodes", "every_week"), RUPTURE_EPISODES)
def test_a_continuing_rupture_is_one_episode(course, episodes, every_week):
    data = scores(("P1", "WAI-SR", course))
    assert kinds(compute_flags(data), "rupture")["week"].tolist() == episodes
    off = kinds(compute_flags(data, config=FlagConfig(rupture_episodes=False)), "rupture")
    assert off["week"].tolist() == every_week


@pytest.mark.parametrize(("course", "kind", "weeks"), SYMPTOM_CASES)
def test_symptom_kinds(course, kind, weeks):
    f = kinds(compute_flags(scores(("P1", "PHQ-9", course))), kind)
    assert f["week"].tolist() == weeks


def test_spin_reliable_change_uses_clinic_week_one_sd():
    # week-1 SPIN SD of the clinic = 10 -> rc = 1.96 * sqrt(2) * 10 * sqrt(.15) = 10.7
    data = scores(("A", "SPIN", [30, 40, 41]), ("B", "SPIN", [30.0 + 10 * np.sqrt(2)]))
    f = kinds(compute_flags(data), "deterioration")
    assert f["week"].tolist() == [3] and f["patient_id"].tolist() == ["A"]


def test_risk_item_is_urgent_every_week():
    data = scores(("P1", "PHQ-9", [10, 11, 12]))
    data["item_9"] = [0.0, 1.0, 2.0]
    f = kinds(compute_flags(data), "risk_item")
    assert f["week"].tolist() == [2, 3] and (f["severity"] == "urgent").all()
    assert "item 9" in f["explanation"].iloc[0] and "answered 1" in f["explanation"].iloc[0]


def test_missed_questionnaires():
    data = scores(("P1", "WAI-SR", [45, None, None, 45, None]), ("P1", "SPIN", [40, None, None, 40, None]))
    f = kinds(compute_flags(data), "missed")
    assert f["week"].tolist() == [3] and f["instrument"].isna().all() and f["therapist_id"].tolist() == ["T1"]
    assert kinds(compute_flags(data, current_week=6), "missed")["week"].tolist() == [3, 6]
    assert kinds(compute_flags(data, current_week=pd.Series({"P1": 6})), "missed")["week"].tolist() == [3, 6]
    assert kinds(compute_flags(data, as_of_week=6), "missed")["week"].tolist() == [3, 6]
    cfg = replace(DEFAULT_CONFIG, missed=MissedRule(weeks=3))
    assert kinds(compute_flags(data, config=cfg, current_week=6), "missed").empty


def test_a_score_on_any_instrument_counts_as_not_missed():
    data = scores(("P1", "WAI-SR", [45, None, None, 45]), ("P1", "SPIN", [40, 41, None, 40]))
    assert kinds(compute_flags(data), "missed").empty


def test_sorted_and_one_row_per_key():
    data = scores(("B", "WAI-SR", [45, 46, 45, 46, 35]), ("A", "WAI-SR", [25, 46, 45, 46, 35]),
                  ("A", "PHQ-9", [8, 12, 12, 12, 12]))
    f = compute_flags(data.sample(frac=1, random_state=1))
    assert not f.duplicated(["patient_id", "week", "instrument", "kind"]).any()
    keys = list(zip(f["patient_id"], f["week"], strict=True))
    assert keys == sorted(keys)
    pd.testing.assert_frame_equal(f, compute_flags(data))


def test_rules_switched_off():
    cfg = FlagConfig(reliable_drop=None, below_own_level=None, sudden_loss=None, low_alliance=None,
                     deterioration=None, improvement=None, caseness=None, risk_item=None, missed=None)
    assert compute_flags(scores(("P1", "WAI-SR", [45, 46, 45, 46, 20])), config=cfg).empty


def test_input_not_mutated():
    data = scores(("P1", "WAI-SR", [45, 46, 45, 46, 35]))
    before = data.copy()
    compute_flags(data)
    pd.testing.assert_frame_equal(data, before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"as_of_week": 0}, "as_of_week"),
        ({"current_week": "soon"}, "current_week"),
        ({"config": "strict"}, "FlagConfig"),
        ({"config": FlagConfig(rupture_requires="most")}, "rupture_requires"),
        ({"config": FlagConfig(reliable_drop=ReliableDropRule(rc_multiple=-1))}, "positive"),
        ({"config": FlagConfig(below_own_level=BelowOwnLevelRule(min_prior_weeks=0))}, "min_prior_weeks"),
    ],
)
def test_bad_settings_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_flags(scores(("P1", "WAI-SR", [45, 46])), **kwargs)


def test_unknown_instrument_is_named():
    with pytest.raises(ValueError, match="Unknown instrument code.*BDI"):
        compute_flags(scores(("P1", "BDI", [10])))
