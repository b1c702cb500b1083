"""Symptom rules: reliable change from the first week, caseness, risk items, missed runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.symptoms import ReliableChangeRule, missed_runs, reliable_change_criteria


def as_list(arr):
    return [None if pd.isna(v) else int(bool(v)) for v in arr]


RC_CASES = [
    # first, score, rc, worse_sign, direction, expected
    (10.0, 16.0, 6.0, 1.0, "deterioration", 1),     # PHQ-9: +6 exactly at the cut-off
    (10.0, 15.0, 6.0, 1.0, "deterioration", 0),
    (16.0, 10.0, 6.0, 1.0, "improvement", 1),
    (16.0, 10.0, 6.0, 1.0, "deterioration", 0),
    (np.nan, 10.0, 6.0, 1.0, "deterioration", None),  # no first score
    (10.0, 16.0, np.nan, 1.0, "deterioration", None),  # unknown reliable change
    (40.0, 30.0, 6.8, -1.0, "deterioration", 1),      # higher-is-better scale falling
]


@pytest.mark.parametrize(("first", "score", "rc", "sign", "direction", "expected"), RC_CASES)
def test_reliable_change_edges(first, score, rc, sign, direction, expected):
    out = reliable_change_criteria(np.array([first]), np.array([score]), np.array([rc]),
                                   worse_sign=np.array([sign]), rule=ReliableChangeRule(), direction=direction)
    assert as_list(out) == [expected]


def test_min_points_only():
    out = reliable_change_criteria(np.array([10.0]), np.array([13.0]), np.array([np.nan]),
                                   worse_sign=np.array([1.0]),
                                   rule=ReliableChangeRule(rc_multiple=None, min_points=3), direction="deterioration")
    assert as_list(out) == [1]


MISSED_CASES = [
    # stored weeks, now, N, expected flag weeks
    ([1, 2, 5], 5, 2, [4]),          # weeks 3-4 missing: flag at week 4
    ([1, 2, 4], 4, 2, []),           # one missing week only
    ([1, 2, 3], 5, 2, [5]),          # trailing run up to now
    ([1, 2, 3], 4, 2, []),           # trailing run of one week
    ([1, 9], 9, 2, [3]),             # one flag per run, raised when it reaches N
    ([1, 9], 9, 3, [4]),
    ([3, 4], 4, 2, []),              # weeks before the first stored week are not expected
    ([1, 4, 7], 7, 2, [3, 6]),
    ([1], 1, 1, []),
    ([1, 3], 3, 1, [2]),
]


@pytest.mark.parametrize(("weeks", "now", "n", "expected"), MISSED_CASES)
def test_missed_runs(weeks, now, n, expected):
    w = np.array(weeks)
    runs = missed_runs(np.zeros(len(w), dtype="int64"), w, np.array([now]), weeks=n)
    assert runs["week"].tolist() == expected
