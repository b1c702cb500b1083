"""Rupture rules: published suddengains cases, reliable change, and hand-written edge tables.

The sudden-gain cases are the published test cases of the R package ``suddengains``
(tests/testthat/test-identify_sg.R, Wiedemann et al., 2020): an alliance *fall* uses the same
arithmetic as a sudden *gain* on a symptom scale, so they apply as they stand (floor 0).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.centering import WeekLookup
from core.instruments import get, reliable_change_cutoff
from core.ruptures import (
    BelowOwnLevelRule,
    ReliableDropRule,
    RepairRule,
    below_own_level_criteria,
    combine_criteria,
    explain_interval,
    reliable_drop_criteria,
    repair_status,
    sudden_loss_criteria,
    t_critical,
)

NA = None

# series (weeks 1-6) -> suddengains intervals 2->3, 3->4, 4->5 (1 / 0 / NA)
SUDDENGAINS_CASES = [
    ([28, 19, 23, 11, 12, NA], [0, 1, NA]),
    ([28, 19, NA, 12, 13, NA], [NA, NA, NA]),
    ([35, 37, 23, 23, 24, 21], [1, 0, 0]),
    ([35, 37, 34, 24, 24, 21], [0, 1, 0]),
    ([35, 37, 34, 34, 24, 21], [0, 0, 1]),
    ([35, 37, 34, 37, 37, 37], [0, 0, 0]),
    # the other rows of suddengains' df1
    ([28, 19, 23, 12, 13, NA], [0, 0, NA]),
    ([28, 19, 23, 12, 14, NA], [0, 0, NA]),
    ([28, 25, 28, 11, 12, NA], [0, 1, NA]),
    ([28, 26, 28, 11, 12, NA], [0, 1, NA]),
    ([NA, 26, 28, NA, 12, 11], [NA, NA, NA]),
]


def series(values):
    return pd.DataFrame({"week": range(1, len(values) + 1),
                         "score": [np.nan if v is None else float(v) for v in values]})


def as_list(arr):
    return [None if pd.isna(v) else int(bool(v)) for v in arr]


@pytest.mark.parametrize(("values", "expected"), SUDDENGAINS_CASES)
def test_published_suddengains_cases(values, expected):
    res = sudden_loss_criteria(series(values), cutoff=7, pct=0.25, floor=0.0)
    # intervals 2->3, 3->4, 4->5 end at weeks 3, 4, 5 (rows 2, 3, 4)
    assert as_list(res["sudden_loss"].iloc[2:5]) == expected


def test_suddengains_case_criterion_columns():
    res = sudden_loss_criteria(series([28, 19, 23, 11, 12, NA]), cutoff=7)
    r = res.iloc[2:5]
    assert as_list(r["crit1"]) == [0, 1, 0]
    assert as_list(r["crit2"]) == [0, 1, 0]
    assert as_list(r["crit3"]) == [0, 1, None]  # 4->5: one value after -> not enough data
    # "not enough data" on criterion 3 wins over "no" on criteria 1 and 2 (R's crit1*crit2*crit3)
    assert pd.isna(r["sudden_loss"].iloc[2])
    assert r["n_pre"].tolist() == [2, 3, 3] and r["n_post"].tolist() == [3, 2, 1]
    assert r["t_crit"].iloc[1] == pytest.approx(3.182, abs=5e-4)


def test_reliable_change_published_case():
    sd, r = 6.396073, 0.931
    se = sd * math.sqrt(1 - r)
    assert se == pytest.approx(1.680111, abs=1e-6)
    assert math.sqrt(2) * se == pytest.approx(2.376036, abs=1e-6)
    assert reliable_change_cutoff(sd, r) == pytest.approx(4.65703, abs=1e-5)


def test_reliable_change_wai_sr_is_6_8_points():
    assert get("WAI-SR").rc_cutoff() == pytest.approx(6.79, abs=0.01)


def test_t_critical_matches_tang_derubeis():
    np.testing.assert_allclose(t_critical(np.array([4, 3, 2])), [2.776, 3.182, 4.303], atol=5e-4)
    assert np.isnan(t_critical(np.array([0]))[0])


def test_criterion_boundaries_are_pinned():
    """suddengains: criteria 1 and 2 count a fall exactly at the line (>=), criterion 3 is strict (>)."""
    exact = sudden_loss_criteria(series([28, 28, 28, 21, 21, 21]), cutoff=7, pct=0.25, floor=0.0).iloc[3]
    assert bool(exact["crit1"]) and bool(exact["crit2"])  # a fall of exactly 7 = 25% of 28
    below = sudden_loss_criteria(series([28, 28, 28, 21.01, 21.01, 21.01]), cutoff=7, pct=0.25, floor=0.0).iloc[3]
    assert not bool(below["crit1"]) and not bool(below["crit2"])
    # pooled SD 0 and no difference of means: 0 > t * 0 is false (strict)
    flat = sudden_loss_criteria(series([20, 20, 20, 20, 20, 20]), cutoff=0.001, pct=0.0, floor=0.0).iloc[3]
    assert not bool(flat["crit3"])
    step = sudden_loss_criteria(series([20, 20, 20, 19, 19, 19]), cutoff=0.001, pct=0.0, floor=0.0).iloc[3]
    assert bool(step["crit3"]) and step["sd_pooled"] == 0


def test_the_default_floor_of_criterion_two_is_the_published_zero():
    from core.flags import DEFAULT_CONFIG, RULES_0_3

    assert DEFAULT_CONFIG.sudden_loss.scale_floor == 0.0  # as published and in suddengains
    assert RULES_0_3.sudden_loss.scale_floor is None  # the old "above the lowest total" option


def test_scale_floor_for_criterion_two():
    # WAI-SR: fall 8 from 40: 25% of (40 - 12) = 7 -> yes; with floor 0 -> 10 -> no
    df = series([40, 40, 40, 32, 32, 32])
    assert as_list(sudden_loss_criteria(df, cutoff=6.8, floor=12.0)["crit2"])[3] == 1
    assert as_list(sudden_loss_criteria(df, cutoff=6.8, floor=0.0)["crit2"])[3] == 0


def test_criterion_off_is_left_out():
    res = sudden_loss_criteria(series([35, 37, 23, 23, 24, 21]), cutoff=None, pct=None)
    assert res["crit1"].isna().all() and res["crit2"].isna().all()
    assert as_list(res["sudden_loss"].iloc[2:5]) == [1, 0, 0]


def test_several_series_are_kept_apart():
    a = series([35, 37, 23, 23, 24, 21]).assign(patient_id="A", instrument="WAI-SR")
    b = series([35, 37, 34, 24, 24, 21]).assign(patient_id="B", instrument="WAI-SR")
    res = sudden_loss_criteria(pd.concat([b, a], ignore_index=True), cutoff=7)
    assert as_list(res["sudden_loss"].iloc[8:11]) == [1, 0, 0]
    assert as_list(res["sudden_loss"].iloc[2:5]) == [0, 1, 0]


def test_explain_interval_names_each_criterion():
    text = explain_interval(series([28, 19, 23, 11, 12, NA]), week=5, cutoff=7)
    assert "1. Fall at least the reliable-change cut-off 7: no." in text
    assert "3. Mean of 3 week(s) before" in text and "not enough data" in text
    assert text.endswith("Sudden loss: not enough data.")


def test_combine_criteria_semantics():
    t = pd.array([True, True, False, None], dtype="boolean")
    u = pd.array([True, None, None, False], dtype="boolean")
    assert as_list(combine_criteria([t, u], 4)) == [1, None, None, None]


# ----------------------------------------------------------------- reliable drop edge table
RD_CASES = [
    # prev, score, rc, rule, rd_rc, reliable_drop
    (40.0, 34.0, 4.0, ReliableDropRule(rc_multiple=1.5), 1, 1),        # fall 6 exactly at 1.5 x 4
    (40.0, 34.5, 4.0, ReliableDropRule(rc_multiple=1.5), 0, 0),        # just below
    (np.nan, 20.0, 4.0, ReliableDropRule(), None, None),                # missing week before
    (40.0, np.nan, 4.0, ReliableDropRule(), None, None),                # missing this week
    (40.0, 30.0, np.nan, ReliableDropRule(), None, None),               # unknown reliable change
    (30.0, 40.0, 4.0, ReliableDropRule(), 0, 0),                        # a rise
    (40.0, 33.0, 4.0, ReliableDropRule(rc_multiple=None, min_points=7), None, 1),  # rc criterion off
]


@pytest.mark.parametrize(("prev", "score", "rc", "rule", "rd_rc", "fired"), RD_CASES)
def test_reliable_drop_edges(prev, score, rc, rule, rd_rc, fired):
    out = reliable_drop_criteria(np.array([prev]), np.array([score]), np.array([rc]), rule=rule)
    assert as_list(out["rd_rc"]) == [rd_rc]
    assert as_list(out["reliable_drop"]) == [fired]


# ----------------------------------------------------------------- below own level edge table
BOL_CASES = [
    # score, n_prior, mean, sd, rule, rc, bol_k_sd, bol_rc, fired
    (44.0, 3, 50.0, 4.0, BelowOwnLevelRule(k_sd=1.5, rc_multiple=None), 6.8, 1, None, 1),   # 6 = 1.5 x 4 exactly
    (44.5, 3, 50.0, 4.0, BelowOwnLevelRule(k_sd=1.5, rc_multiple=None), 6.8, 0, None, 0),
    (40.0, 2, 50.0, 4.0, BelowOwnLevelRule(), 6.8, None, None, None),                       # too few prior weeks
    (47.0, 3, 50.0, 0.5, BelowOwnLevelRule(k_sd=1.5, sd_floor=3.0, rc_multiple=None), 6.8, 0, None, 0),  # floor
    (47.0, 3, 50.0, 0.5, BelowOwnLevelRule(k_sd=1.5, sd_floor=None, rc_multiple=None), 6.8, 1, None, 1),
    (45.0, 3, 50.0, 3.0, BelowOwnLevelRule(), 6.8, 1, 0, 0),                                # 5 < one RC
    (43.0, 3, 50.0, 3.0, BelowOwnLevelRule(), 7.0, 1, 1, 1),                                # exactly one RC
    (40.0, 3, 50.0, 3.0, BelowOwnLevelRule(), np.nan, 1, None, None),                       # unknown RC
]


@pytest.mark.parametrize(("score", "n_prior", "mean", "sd", "rule", "rc", "k", "r", "fired"), BOL_CASES)
def test_below_own_level_edges(score, n_prior, mean, sd, rule, rc, k, r, fired):
    out = below_own_level_criteria(np.array([score]), np.array([n_prior]), np.array([mean]), np.array([sd]),
                                   rule=rule, rc=np.array([rc]))
    assert as_list(out["bol_k_sd"]) == [k]
    assert as_list(out["bol_rc"]) == [r]
    assert as_list(out["below_own_level"]) == [fired]


# ----------------------------------------------------------------- repair
REPAIR_CASES = [
    # later scores at weeks 6, 7 (NaN = missing), now, status, repaired_week
    ({6: 44.0}, 7, "repaired", 6),           # 48 - 44 = 4 < 6.8
    ({6: 41.0, 7: 45.0}, 7, "repaired", 7),
    ({6: 40.0}, 6, "open", -1),              # window not elapsed
    ({6: 40.0}, 7, "unrepaired", -1),
    ({}, 7, "unrepaired", -1),               # missed weeks are no evidence of repair
    ({8: 48.0}, 9, "unrepaired", -1),        # back too late
]


@pytest.mark.parametrize(("later", "now", "status", "week"), REPAIR_CASES)
def test_repair_window(later, now, status, week):
    weeks = np.array([5] + list(later))
    vals = np.array([37.0] + list(later.values()))
    lookup = WeekLookup(np.zeros(len(weeks), dtype="int64"), weeks, vals)
    st, rw = repair_status(np.array([0]), np.array([5]), np.array([48.0]), np.array([6.8]), np.array([now]),
                           lookup, rule=RepairRule(weeks=2))
    assert st.tolist() == [status] and rw.tolist() == [week]


def test_repair_exactly_one_rc_is_not_repaired():
    lookup = WeekLookup(np.zeros(2, dtype="int64"), np.array([5, 6]), np.array([37.0, 41.0]))
    st, _ = repair_status(np.array([0]), np.array([5]), np.array([48.0]), np.array([7.0]), np.array([9]),
                          lookup, rule=RepairRule(weeks=2))
    assert st.tolist() == ["unrepaired"]  # 48 - 41 = 7: still a reliable fall
