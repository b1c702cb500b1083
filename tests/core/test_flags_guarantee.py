"""The guarantee: a flag for week t depends only on weeks <= t (hypothesis property test).

On random courses (gaps, missing scores, item data, several instruments and patients), the
flags computed as of week t equal the flags of the full data restricted to weeks <= t, in
every column except those allowed to move on (status, confirmed, repaired_week,
symptom_change_next_week). ``as_of_week=t`` also equals computing on the truncated frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.flags import FLAG_COLUMNS, MOVING_COLUMNS, compute_flags

FIXED = [c for c in FLAG_COLUMNS if c not in MOVING_COLUMNS]
N_WEEKS = 12


@st.composite
def clinics(draw):
    rows = []
    n_pat = draw(st.integers(1, 3))
    for p in range(n_pat):
        for inst, lo, hi in (("WAI-SR", 12, 60), ("WAI-P", 12, 60), ("SPIN", 0, 68), ("PHQ-9", 0, 27)):
            if not draw(st.booleans()):
                continue
            weeks = draw(st.lists(st.integers(1, N_WEEKS), min_size=1, max_size=N_WEEKS, unique=True))
            level = draw(st.integers(lo, hi))
            for w in sorted(weeks):
                jump = draw(st.integers(-15, 15))
                level = int(np.clip(level + jump, lo, hi))
                score = float(level) if draw(st.integers(0, 9)) else np.nan
                row = {"patient_id": f"P{p}", "therapist_id": f"T{p % 2}", "week": w, "instrument": inst,
                       "score": score}
                if inst == "WAI-SR" and not np.isnan(score):
                    # items summing to the total (spread evenly, remainder on the first items)
                    base, extra = divmod(int(score), 12)
                    for i in range(12):
                        row[f"item_{i + 1}"] = float(base + (1 if i < extra else 0))
                if inst == "PHQ-9":
                    row["item_9"] = float(draw(st.integers(0, 3)))
                rows.append(row)
    df = pd.DataFrame(rows, columns=["patient_id", "therapist_id", "week", "instrument", "score"]
                      + [f"item_{i}" for i in range(1, 13)])
    df = df.astype({"week": "int64", "score": "float64"})
    return df


def _fixed(flags: pd.DataFrame) -> pd.DataFrame:
    return flags[FIXED].reset_index(drop=True)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clinics(), st.integers(1, N_WEEKS))
def test_flags_never_look_ahead(df, cut):
    full = compute_flags(df, current_week=N_WEEKS)
    for t in range(1, N_WEEKS + 1):
        as_of = compute_flags(df, as_of_week=t)
        expected = full[full["week"] <= t]
        pd.testing.assert_frame_equal(_fixed(as_of), _fixed(expected), check_exact=True)
    # answering "as of week t" is the same as having stored only weeks <= t
    truncated = compute_flags(df[df["week"] <= cut], current_week=cut)
    pd.testing.assert_frame_equal(compute_flags(df, as_of_week=cut), truncated, check_exact=True)
