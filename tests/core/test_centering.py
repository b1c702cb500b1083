"""Running (prospective) and full-course centering: hand cases, edges and a pandas cross-check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.centering import baseline_sds, person_mean_center, running_stats


def frame(rows):
    return pd.DataFrame(rows, columns=["patient_id", "instrument", "week", "score"])


def test_hand_case_with_gap_and_nan_score():
    df = frame([
        ("P1", "WAI-SR", 1, 40.0),
        ("P1", "WAI-SR", 2, 44.0),
        ("P1", "WAI-SR", 4, np.nan),  # stored row without a score: a gap
        ("P1", "WAI-SR", 5, 30.0),    # week 3 absent: a gap, not a zero
        ("P1", "WAI-SR", 6, 38.0),
    ])
    out = running_stats(df)
    assert out["n_prior"].tolist() == [0, 1, 2, 2, 3]
    np.testing.assert_allclose(out["running_mean"], [np.nan, 40, 42, 42, 38], equal_nan=True)
    np.testing.assert_allclose(out["running_sd"],
                               [np.nan, np.nan, np.sqrt(8), np.sqrt(8), np.std([40, 44, 30], ddof=1)],
                               equal_nan=True)
    np.testing.assert_allclose(out["person_mean"], [38.0] * 5)
    np.testing.assert_allclose(out["within"], [2, 6, np.nan, -8, 0], equal_nan=True)


def test_keeps_rows_index_and_order_and_does_not_mutate():
    df = frame([("B", "SPIN", 2, 10.0), ("A", "WAI-SR", 1, 40.0), ("B", "SPIN", 1, 12.0),
                ("A", "WAI-P", 1, 30.0)])
    df.index = [10, 3, 7, 1]
    before = df.copy()
    out = running_stats(df)
    pd.testing.assert_frame_equal(df, before)
    assert out.index.tolist() == [10, 3, 7, 1]
    assert out["n_prior"].tolist() == [1, 0, 0, 0]
    assert out.loc[10, "running_mean"] == 12.0
    # each instrument is its own series
    assert out.loc[1, "n_prior"] == 0


def test_constant_series_has_sd_exactly_zero():
    df = frame([("P", "WAI-SR", w, 47.0) for w in range(1, 8)])
    out = running_stats(df)
    assert (out["running_sd"].iloc[2:] == 0.0).all()


def test_matches_pandas_expanding_on_random_data():
    rng = np.random.default_rng(3)
    rows = []
    for p in range(30):
        weeks = np.sort(rng.choice(np.arange(1, 20), size=rng.integers(1, 15), replace=False))
        for w in weeks:
            rows.append((f"P{p}", "WAI-SR", int(w), float(rng.integers(12, 61))))
    df = frame(rows).sample(frac=1, random_state=2)
    out = running_stats(df)
    ref = df.sort_values(["patient_id", "week"])
    g = ref.groupby("patient_id")["score"]
    exp_mean = g.transform(lambda s: s.shift(1).expanding().mean())
    exp_sd = g.transform(lambda s: s.shift(1).expanding().std())
    np.testing.assert_allclose(out.loc[ref.index, "running_mean"], exp_mean, equal_nan=True)
    np.testing.assert_allclose(out.loc[ref.index, "running_sd"], exp_sd, equal_nan=True, atol=1e-9)
    np.testing.assert_allclose(out["person_mean"], df.groupby("patient_id")["score"].transform("mean"))


def test_running_stats_never_look_ahead():
    rng = np.random.default_rng(5)
    df = frame([(f"P{p}", "WAI-SR", w, float(rng.integers(12, 61))) for p in range(5) for w in range(1, 13)])
    full = running_stats(df)
    cut = running_stats(df[df["week"] <= 6])
    cols = ["n_prior", "running_mean", "running_sd"]
    pd.testing.assert_frame_equal(cut[cols], full.loc[cut.index, cols])  # bit for bit


def test_empty_input():
    out = running_stats(frame([]).astype({"week": "int64", "score": "float64"}))
    assert out.empty and {"n_prior", "running_mean", "running_sd", "person_mean", "within"} <= set(out.columns)


def test_person_mean_center_columns():
    df = frame([("P", "SPIN", 1, 10.0), ("P", "SPIN", 2, 20.0)])
    out = person_mean_center(df)
    assert out["within"].tolist() == [-5.0, 5.0]


@pytest.mark.parametrize(
    ("df", "message"),
    [
        (frame([("P", "WAI-SR", 0, 40.0)]), "week"),
        (frame([("P", "WAI-SR", 1.5, 40.0)]), "whole number"),
        (frame([("P", "WAI-SR", 1, 40.0), ("P", "WAI-SR", 1, 41.0)]), "repeat"),
        (pd.DataFrame({"patient_id": ["P"], "week": [1], "score": [1.0]}), "instrument"),
        (frame([(None, "WAI-SR", 1, 40.0)]), "patient_id"),
        (frame([("P", "WAI-SR", 1, "forty")]), "numbers"),
    ],
)
def test_bad_input_raises_value_error(df, message):
    with pytest.raises(ValueError, match=message):
        running_stats(df)


def test_baseline_sds_uses_week_one_only():
    df = frame([("A", "SPIN", 1, 40.0), ("B", "SPIN", 1, 50.0), ("A", "SPIN", 2, 0.0),
                ("A", "PHQ-9", 1, 10.0)])
    sds = baseline_sds(df)
    assert sds["SPIN"] == pytest.approx(np.std([40, 50], ddof=1))
    assert np.isnan(sds["PHQ-9"])
