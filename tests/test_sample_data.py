"""The synthetic demo clinic: deterministic, within the contract, shaped like the trial, and
planted exactly as sample_data/CATALOG.md says."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.instruments import get, score_totals, subscale_scores
from sample_data import generate as gen

SAMPLE = Path(gen.__file__).parent
CATALOG = SAMPLE / "CATALOG.md"
TODAY = pd.Timestamp(gen.DEMO_TODAY)
RC_WAI = get("WAI-SR").rc_cutoff()  # 6.8 points
CONTRACT_COLUMNS = ["patient_id", "therapist_id", "week", "instrument", "score", "administered_on",
                    *[f"item_{i}" for i in range(1, 18)]]


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "demo_scores.csv", dtype={f"item_{i}": "Int64" for i in range(1, 18)})


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "demo_patients.csv", parse_dates=["start_date"])


@pytest.fixture(scope="module")
def accounts() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "demo_accounts.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def wide(scores: pd.DataFrame) -> pd.DataFrame:
    """Totals, one column per instrument, indexed by (patient, week)."""
    return scores.pivot(index=["patient_id", "week"], columns="instrument", values="score")


@pytest.fixture(scope="module")
def catalog_rows() -> pd.DataFrame:
    rows = re.findall(r"^\| (P\d{5}) \| (\S+) \| ([a-z ]+?) \| (.*?) \|$", CATALOG.read_text(encoding="utf-8"), re.M)
    return pd.DataFrame(rows, columns=["patient", "therapist", "planted", "detail"])


# --- determinism and format -----------------------------------------------------------------

def test_generator_rewrites_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    gen.write_demo(tmp_path)
    for name in gen.FILES.values():
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    again = tmp_path / "again"
    gen.write_demo(again)
    for name in gen.FILES.values():
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_generate_clinic_is_deterministic_and_seed_dependent() -> None:
    a = gen.generate_clinic(50, 12, seed=1)
    pd.testing.assert_frame_equal(a, gen.generate_clinic(50, 12, seed=1))
    assert not a.equals(gen.generate_clinic(50, 12, seed=2))


def test_scores_have_exactly_the_contract_columns_and_order(scores: pd.DataFrame) -> None:
    assert list(scores.columns) == CONTRACT_COLUMNS
    raw = (SAMPLE / "demo_scores.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw
    raw.decode("utf-8")
    keys = scores[["patient_id", "week", "instrument"]]
    assert not keys.duplicated().any()
    assert keys.equals(keys.sort_values(["patient_id", "week", "instrument"]).reset_index(drop=True))
    assert set(scores["instrument"]) == set(gen.INSTRUMENTS)


def test_patient_and_account_files_have_their_columns(patients: pd.DataFrame, accounts: pd.DataFrame) -> None:
    assert list(patients.columns) == ["patient_id", "therapist_id", "start_date", "status", "planned_weeks"]
    assert list(accounts.columns) == ["name", "role", "team", "display_name"]
    for path in SAMPLE.glob("demo_*.csv"):
        text = path.read_text(encoding="utf-8").lower()
        assert "password" not in text and gen.DEMO_PASSWORD not in text, path.name


# --- ranges and scoring -----------------------------------------------------------------------

def test_every_score_and_item_is_within_its_instruments_range(scores: pd.DataFrame) -> None:
    for code, rows in scores.groupby("instrument"):
        inst = get(code)
        assert rows["score"].between(inst.total_min, inst.total_max).all(), code
        items = rows[inst.items]
        assert items.notna().all().all(), code
        assert ((items >= inst.item_min) & (items <= inst.item_max)).all().all(), code
        extra = [f"item_{i}" for i in range(inst.n_items + 1, 18)]
        assert rows[extra].isna().all().all(), code


def test_totals_are_the_sums_of_the_items(scores: pd.DataFrame) -> None:
    computed = score_totals(scores)
    assert computed.notna().all()
    assert (computed == scores["score"]).all()


# --- clinic structure -------------------------------------------------------------------------

def test_accounts_teams_and_caseloads(accounts: pd.DataFrame, patients: pd.DataFrame,
                                      scores: pd.DataFrame) -> None:
    assert accounts["role"].value_counts().to_dict() == {"therapist": 5, "supervisor": 1, "admin": 1}
    assert set(accounts.loc[accounts["role"] != "admin", "team"]) == {"North", "South"}
    assert accounts.set_index("name").loc["supervisor.sara", "team"] == "North"
    assert accounts.set_index("name").loc["admin", "team"] == ""
    therapists = set(accounts.loc[accounts["role"] == "therapist", "name"])
    assert all(re.fullmatch(r"therapist\.[a-z]+", t) for t in therapists)
    assert set(patients["therapist_id"]) == therapists
    assert len(patients) == 60 and patients["patient_id"].iloc[0] == "P00001"
    assert patients["patient_id"].is_unique
    assert patients.groupby("therapist_id").size().min() >= 10
    # every patient stays with one therapist, the one in demo_patients.csv
    pairs = scores[["patient_id", "therapist_id"]].drop_duplicates()
    assert pairs["patient_id"].is_unique
    assert pairs.set_index("patient_id")["therapist_id"].to_dict() == \
        patients.set_index("patient_id")["therapist_id"].to_dict()


def test_dates_weeks_and_status(scores: pd.DataFrame, patients: pd.DataFrame) -> None:
    p = patients.set_index("patient_id")
    assert (p["start_date"].dt.day_of_week == 0).all() and (p["start_date"].dt.year == 2026).all()
    assert p["planned_weeks"].between(11, 16).all()
    assert p["start_date"].nunique() > 5
    on = pd.to_datetime(scores["administered_on"], format="%Y-%m-%d")
    expected = scores["patient_id"].map(p["start_date"]) + pd.to_timedelta(7 * (scores["week"] - 1), unit="D")
    assert (on == expected).all()
    assert on.max() == TODAY
    last = scores.groupby("patient_id").agg(week=("week", "max"), on=("administered_on", "max"))
    last["on"] = pd.to_datetime(last["on"])
    last = last.join(p)
    active = last[last["status"] == "active"]
    completed = last[last["status"] == "completed"]
    dropped = last[last["status"] == "dropped_out"]
    assert (active["on"] == TODAY).all() and (active["week"] < active["planned_weeks"]).all()
    assert (completed["week"] == completed["planned_weeks"]).all() and (completed["on"] <= TODAY).all()
    assert (dropped["week"] < dropped["planned_weeks"]).all()
    assert (dropped["on"] <= TODAY - pd.Timedelta(days=14)).all()
    assert set(scores.groupby("patient_id")["week"].min()) == {1}
    assert len(active) >= 30 and len(completed) >= 10


def test_about_seven_percent_of_cells_are_missing(scores: pd.DataFrame) -> None:
    last = scores.groupby("patient_id")["week"].max()
    cells = int(last.sum()) * len(gen.INSTRUMENTS)
    share = 1 - len(scores) / cells
    assert 0.06 <= share <= 0.08, share
    per_week = scores.groupby(["patient_id", "week"]).size()
    whole_missing = int(last.sum()) - len(per_week)
    assert whole_missing > 0, "some weeks lack every instrument"
    assert (per_week < len(gen.INSTRUMENTS)).sum() > 0, "some weeks lack only some instruments"


# --- shaped like the trial --------------------------------------------------------------------

def test_week_means_follow_the_trial(wide: pd.DataFrame) -> None:
    means = wide.groupby("week").mean()
    for code, trial in (("SPIN", gen.TRIAL_SPIN), ("WAI-SR", gen.TRIAL_WAI)):
        ours = means[code].loc[1:11].to_numpy()
        assert np.corrcoef(ours, trial)[0, 1] > 0.95, code
        assert np.abs(ours - np.asarray(trial)).max() < 3.0, code


def test_within_person_link_is_negative_and_between_person_link_positive(wide: pd.DataFrame) -> None:
    df = wide[["SPIN", "WAI-SR"]].dropna().reset_index()
    person = df.groupby("patient_id")[["SPIN", "WAI-SR"]].transform("mean")
    df["spin_w"] = df["SPIN"] - person["SPIN"]
    df["wai_w"] = df["WAI-SR"] - person["WAI-SR"]
    following = df[["patient_id", "week", "spin_w"]].assign(week=df["week"] - 1)
    pairs = df.merge(following, on=["patient_id", "week"], suffixes=("", "_next"))
    x = np.column_stack([np.ones(len(pairs)), pairs["spin_w"], pairs["wai_w"]])
    beta = np.linalg.lstsq(x, pairs["spin_w_next"].to_numpy(), rcond=None)[0]
    assert beta[2] < -0.1, beta
    means = df.groupby("patient_id")[["SPIN", "WAI-SR"]].mean()
    slope = np.polyfit(means["WAI-SR"], means["SPIN"], 1)[0]
    assert slope > 0, slope


def test_between_person_spread_is_realistic(wide: pd.DataFrame) -> None:
    week1 = wide.xs(1, level="week")
    assert 4 <= week1["WAI-SR"].std() <= 12
    assert 5 <= week1["SPIN"].std() <= 14


# --- planted cases ----------------------------------------------------------------------------

def _catalog(rows: pd.DataFrame, kind: str) -> pd.DataFrame:
    return rows[rows["planted"] == kind].set_index("patient")


def test_catalog_lists_what_the_generator_plants(catalog_rows: pd.DataFrame, patients: pd.DataFrame) -> None:
    text = CATALOG.read_text(encoding="utf-8")
    assert "synthetic" in text.lower() and str(gen.SEED) in text and gen.DEMO_PASSWORD in text
    assert "python -m sample_data.generate" in text and len(gen.DEMO_PASSWORD) >= 12
    unrepaired = _catalog(catalog_rows, "unrepaired rupture")
    repaired = _catalog(catalog_rows, "repaired rupture")
    assert set(unrepaired.index) == {r.patient for r in gen.RUPTURES if r.repair_weeks is None}
    assert set(repaired.index) == {r.patient for r in gen.RUPTURES if r.repair_weeks}
    for r in gen.RUPTURES:
        detail = (unrepaired if r.repair_weeks is None else repaired).loc[r.patient, "detail"]
        assert detail.startswith(f"{r.subscale}; week {r.week},"), r
    risk = _catalog(catalog_rows, "risk item")
    assert set(risk.index) == set(gen.RISK_WEEKS)
    assert set(_catalog(catalog_rows, "quiet").index) == set(gen.QUIET)
    assert set(_catalog(catalog_rows, "dropout").index) == set(gen.DROPOUTS)
    assert set(_catalog(catalog_rows, "low alliance").index) == set(gen.LOW_ALLIANCE)
    therapist = patients.set_index("patient_id")["therapist_id"]
    assert (catalog_rows.set_index("patient")["therapist"] == therapist.loc[catalog_rows["patient"]]).all()


def _baseline(series: pd.Series, week: int) -> float:
    return float(series.loc[week - 3:week - 1].mean())


def test_planted_ruptures(wide: pd.DataFrame, scores: pd.DataFrame) -> None:
    wai_rows = scores[scores["instrument"] == "WAI-SR"].set_index(["patient_id", "week"])
    subscales = subscale_scores(wai_rows, instrument="WAI-SR")
    spin_rise = []
    for r in gen.RUPTURES:
        wai = wide.loc[r.patient, "WAI-SR"]
        assert wai.loc[r.week - 3:r.week + 3].notna().all(), f"{r.patient}: weeks around the rupture are present"
        base = _baseline(wai, r.week)
        assert 8 <= wai.loc[r.week - 1] - wai.loc[r.week] <= 15, r.patient
        assert base - wai.loc[r.week] >= RC_WAI, r.patient
        if r.repair_weeks is None:
            down = wai.loc[r.week:]
            assert len(down) >= 4 and (base - down >= RC_WAI).all(), r.patient
        else:
            back = r.week + r.repair_weeks
            assert (base - wai.loc[r.week:back - 1] >= RC_WAI).all(), r.patient
            assert (base - wai.loc[back:] < RC_WAI).all(), r.patient
        sub = subscales.loc[r.patient]
        fall = sub.loc[r.week - 3:r.week - 1].mean() - sub.loc[r.week]
        assert fall.idxmax() == r.subscale and fall.max() >= 2 * fall.drop(r.subscale).max(), (r.patient, fall)
        spin = wide.loc[r.patient, "SPIN"]
        spin_rise.append(spin.loc[r.week + 1] - spin.loc[r.week])
    assert np.mean(spin_rise) >= 2 and np.sum(np.array(spin_rise) > 0) >= len(spin_rise) - 2, spin_rise


def test_p00001_shows_an_unrepaired_rupture_in_the_latest_weeks(wide: pd.DataFrame, patients: pd.DataFrame) -> None:
    p = patients.set_index("patient_id").loc["P00001"]
    assert p["therapist_id"] == "therapist.anna" and p["status"] == "active"
    (rupture,) = [r for r in gen.RUPTURES if r.patient == "P00001"]
    wai = wide.loc["P00001", "WAI-SR"]
    assert rupture.repair_weeks is None and rupture.week >= wai.index.max() - 3
    assert _baseline(wai, rupture.week) - wai.iloc[-1] >= RC_WAI
    assert wide.loc["P00001"].notna().all().all()


def test_no_unplanted_rupture(wide: pd.DataFrame) -> None:
    planted = {r.patient for r in gen.RUPTURES}
    wai = wide["WAI-SR"].dropna().reset_index()
    wai = wai[~wai["patient_id"].isin(planted)]
    g = wai.groupby("patient_id")["WAI-SR"]
    fall_1 = g.shift() - wai["WAI-SR"]
    fall_3 = g.transform(lambda s: s.shift().rolling(3, min_periods=1).mean()) - wai["WAI-SR"]
    assert (fall_1.fillna(0) < 7).all() and (fall_3.fillna(0) < 7).all()


def test_risk_items_only_where_planted(scores: pd.DataFrame) -> None:
    phq = scores[scores["instrument"] == "PHQ-9"]
    positive = phq[phq["item_9"] > 0]
    found = {(p, int(w)): int(v) for p, w, v in positive[["patient_id", "week", "item_9"]].itertuples(index=False)}
    planted = {(p, w): v for p, weeks in gen.RISK_WEEKS.items() for w, v in weeks.items()}
    assert found == planted
    assert 3 <= len(gen.RISK_WEEKS) <= 5


def test_risk_items_as_catalogued(catalog_rows: pd.DataFrame) -> None:
    risk = _catalog(catalog_rows, "risk item")
    for patient, weeks in gen.RISK_WEEKS.items():
        for week, value in weeks.items():
            assert f"{value} in week {week}" in risk.loc[patient, "detail"], patient


def test_low_alliance_only_where_planted(wide: pd.DataFrame) -> None:
    low = wide["WAI-SR"] < get("WAI-SR").low_cutoff
    assert set(low[low].index.get_level_values("patient_id")) == set(gen.LOW_ALLIANCE)


def test_dropouts_as_catalogued(catalog_rows: pd.DataFrame, patients: pd.DataFrame, scores: pd.DataFrame) -> None:
    status = patients.set_index("patient_id")["status"]
    assert set(status[status == "dropped_out"].index) == set(gen.DROPOUTS)
    last = scores.groupby("patient_id")["week"].max()
    for patient, detail in _catalog(catalog_rows, "dropout")["detail"].items():
        assert detail == f"stopped after week {last[patient]}", patient


def test_quiet_patients_raise_nothing(wide: pd.DataFrame, scores: pd.DataFrame, patients: pd.DataFrame) -> None:
    therapist = patients.set_index("patient_id")["therapist_id"]
    assert sorted(therapist[list(gen.QUIET)]) == sorted(set(therapist))  # one per therapist
    status = patients.set_index("patient_id")["status"]
    for patient in gen.QUIET:
        assert status[patient] == "active"
        x = wide.loc[patient]
        assert x.notna().all().all() and list(x.index) == list(range(1, len(x) + 1)), patient
        for code in ("WAI-SR", "WAI-P"):
            assert (x[code] >= 35).all(), (patient, code)
            assert (x[code].cummax() - x[code] < 5).all(), (patient, code)
        for code in ("SPIN", "PHQ-9", "GAD-7"):
            inst = get(code)
            rc = inst.rc_cutoff(baseline_sd=wide.xs(1, level="week")[code].std())
            assert ((x[code] - x[code].iloc[0]).abs() < rc).all(), (patient, code)  # not even improvement
            assert (x[code].diff().dropna() < rc).all(), (patient, code)
            if inst.caseness is not None:  # never crosses into caseness
                above = x[code] >= inst.caseness
                assert above.all() or not above.any(), (patient, code)
        phq = scores[(scores["patient_id"] == patient) & (scores["instrument"] == "PHQ-9")]
        assert (phq["item_9"] == 0).all()


# --- the benchmark generator ------------------------------------------------------------------

def test_generate_clinic_contract_and_ranges() -> None:
    frame = gen.generate_clinic(300, 20, seed=7, instruments=("WAI-SR", "SPIN", "PHQ-9"))
    assert list(frame.columns) == CONTRACT_COLUMNS[:6]
    for code, rows in frame.groupby("instrument"):
        inst = get(code)
        assert rows["score"].between(inst.total_min, inst.total_max).all()
    assert frame.groupby(["patient_id", "week", "instrument"]).size().max() == 1
    assert frame["week"].between(1, 20).all()
    per_patient = frame.groupby("patient_id")["week"].nunique()
    assert len(per_patient) == 300 and per_patient.max() == 20


def test_generate_clinic_with_items_sums() -> None:
    frame = gen.generate_clinic(40, 10, seed=3, instruments=("WAI-SR", "PHQ-9"), items=True)
    assert list(frame.columns) == CONTRACT_COLUMNS[:6] + [f"item_{i}" for i in range(1, 13)]
    assert (score_totals(frame) == frame["score"]).all()


def test_generate_clinic_rejects_unknown_instruments() -> None:
    with pytest.raises(ValueError, match="cannot make"):
        gen.generate_clinic(5, 5, seed=1, instruments=("WAI-SR", "BDI-II"))
