"""Flags as the clinic's one stored record (db.flagstore): the same for every viewer, maintained
by every write path in the write's transaction, equal to a fresh computation at all times."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from core.caseload import current_weeks
from core.flags import FLAG_COLUMNS, compute_flags
from db import flagstore
from db.access import SYSTEM, Actor
from db.engine import make_engine, session_factory, transaction, upgrade
from db.entry import read_entry, save_entry
from db.flags import read_flags
from db.models import Account, StoredFlag
from db.parameters import current_rule_set, ensure_rule_set, flag_config, freeze_own_sd, set_rule
from db.queries import list_patients, read_scores
from db.writes import import_retrying
from manage import app
from tests.db.helpers import scores_frame

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
DEMO_SCORES = ROOT / "sample_data" / "demo_scores.csv"
TODAY = dt.date(2026, 11, 23)
#: Columns a user sees of a flag (the arrival time is not part of "what the flag says").
CONTENT = [c for c in FLAG_COLUMNS] + ["administered_on", "rules_version"]


def _actor(session, name: str) -> Actor:  # type: ignore[no-untyped-def]
    return Actor.from_account(session.scalar(select(Account).where(Account.name == name)))


def _check(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return flagstore.check(session)
    finally:
        engine.dispose()


def _cli_ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


# --------------------------------------------------------------------------- one answer for every viewer
@pytest.mark.parametrize("code", ["P00016", "P00011", "P00001", "P00046", "P00031"])
def test_every_viewer_sees_the_same_flags_of_a_patient(demo_db: str, code: str) -> None:
    engine = make_engine(demo_db)
    with session_factory(engine)() as session:
        views = {
            "admin": read_flags(session, actor=SYSTEM, today=TODAY),
            "therapist": read_flags(session, actor=_actor(session, "therapist.anna"), today=TODAY),
            "supervisor": read_flags(session, actor=_actor(session, "supervisor.sara"), today=TODAY),
            "patient page": read_flags(session, actor=_actor(session, "therapist.anna"), patient_code=code,
                                       today=TODAY),
        }
    engine.dispose()
    mine = {k: v[v["patient_id"] == code].reset_index(drop=True) for k, v in views.items()}
    assert len(mine["admin"]) > 0
    for who, frame in mine.items():
        pd.testing.assert_frame_equal(frame, mine["admin"], obj=who)
    spin = mine["admin"][mine["admin"]["instrument"] == "SPIN"]
    if code == "P00016":  # the high-severity SPIN deterioration the issue found missing on two screens
        assert ((spin["kind"] == "deterioration") & (spin["severity"] == "high")).any()
    if code == "P00011":  # SPIN fell from 37 to 6: an improvement, on the patient page too
        assert (spin["kind"] == "improvement").any()


def test_flags_user_prints_exactly_what_that_account_sees(demo_db: str) -> None:
    everything = pd.read_csv(io.StringIO(_cli_ok("flags", "--db", demo_db, "--today", "2026-11-23")))
    anna = pd.read_csv(io.StringIO(_cli_ok("flags", "--db", demo_db, "--today", "2026-11-23",
                                           "--user", "therapist.anna")))
    assert set(anna["therapist_id"]) == {"therapist.anna"}
    theirs = everything[everything["therapist_id"] == "therapist.anna"].reset_index(drop=True)
    pd.testing.assert_frame_equal(anna, theirs)
    assert {"raised_at", "rules_version"} <= set(anna.columns)
    missing = runner.invoke(app, ["flags", "--db", demo_db, "--user", "nobody.here"])
    assert missing.exit_code == 2 and "There is no account nobody.here" in missing.output


def test_stored_flags_plus_the_calendar_equal_a_fresh_computation(demo_db: str) -> None:
    """What every page reads equals compute_flags over the whole clinic with today's treatment weeks."""
    engine = make_engine(demo_db)
    with session_factory(engine)() as session:
        stored = flagstore.read_flags_stored(session, actor=SYSTEM, today=TODAY)
        config = flag_config(current_rule_set(session))
        scores = read_scores(session, actor=SYSTEM, with_items=True)
        weeks = current_weeks(list_patients(session, actor=SYSTEM), today=TODAY)
    engine.dispose()
    fresh = compute_flags(scores, config=config, current_week=weeks)
    assert (stored["status"] == "unrepaired").any() and (stored["kind"] == "missed").any()
    pd.testing.assert_frame_equal(stored[list(FLAG_COLUMNS)], fresh)


def test_a_recompute_in_blocks_of_patients_equals_one_over_the_whole_clinic(demo_db: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """refresh_all's parallel recompute (threads over blocks of whole patients) stores exactly
    what one pass over every patient gives, flags and summaries, bit for bit."""
    from db import summaries

    engine = make_engine(demo_db)
    with session_factory(engine)() as session:
        scores = flagstore.scores_for_flags(session)
        config, version = flag_config(current_rule_set(session)), current_rule_set(session).version
    engine.dispose()
    whole = flagstore.compute_stored(scores, config=config, rules_version=version)
    for workers in (2, 3, 7):
        monkeypatch.setattr(flagstore, "PARALLEL_ROWS", 1)
        monkeypatch.setattr("os.cpu_count", lambda n=workers: n)
        flags, summary = flagstore.compute_all(scores, config=config, rules_version=version)
        assert len(flags) == len(whole) > 100
        pd.testing.assert_frame_equal(flags, whole, check_exact=True)
        pd.testing.assert_frame_equal(summary, summaries.compute(scores), check_exact=True)


# --------------------------------------------------------------------------- write paths keep the record
def _demo_csv(tmp_path: Path, keep) -> Path:  # type: ignore[no-untyped-def]
    frame = pd.read_csv(DEMO_SCORES, dtype=str, keep_default_na=False)
    out = tmp_path / f"part-{len(list(tmp_path.iterdir()))}.csv"
    frame[keep(frame["week"].astype(int))].to_csv(out, index=False)
    return out


def test_an_import_in_two_parts_ends_with_the_flags_of_one_import(db_url: str, tmp_path: Path) -> None:
    early = _demo_csv(tmp_path, lambda w: w <= 7)
    late = _demo_csv(tmp_path, lambda w: w > 7)
    whole = _demo_csv(tmp_path, lambda w: w > 0)
    for part in (early, late):
        _cli_ok("import-scores", str(part), "--db", db_url)
    one = f"sqlite:///{tmp_path / 'one.db'}"
    _cli_ok("import-scores", str(whole), "--db", one)
    flags = {}
    for name, url in (("two parts", db_url), ("one import", one)):
        engine = make_engine(url)
        with session_factory(engine)() as session:
            flags[name] = flagstore.read_stored(session, actor=SYSTEM)
        engine.dispose()
    assert len(flags["one import"]) > 100
    pd.testing.assert_frame_equal(flags["two parts"][CONTENT], flags["one import"][CONTENT])
    assert _check(db_url) is None and _check(one) is None


def test_check_passes_after_every_write_path(writable_demo: str, tmp_path: Path) -> None:
    url = writable_demo
    assert _check(url) is None
    # CSV import: a new patient, then a new week for an old one
    csv = tmp_path / "new.csv"
    csv.write_text("patient_id,therapist_id,week,instrument,score\nP09001,therapist.anna,1,WAI-SR,50\n"
                   "P09001,therapist.anna,2,WAI-SR,30\nP00001,therapist.anna,15,WAI-SR,20\n", encoding="utf-8")
    _cli_ok("import-scores", str(csv), "--db", url)
    assert _check(url) is None
    # --replace
    changed = tmp_path / "changed.csv"
    changed.write_text("patient_id,therapist_id,week,instrument,score\nP09001,therapist.anna,2,WAI-SR,49\n",
                       encoding="utf-8")
    _cli_ok("import-scores", str(changed), "--db", url, "--replace")
    assert _check(url) is None
    # Excel
    xlsx = tmp_path / "more.xlsx"
    pd.DataFrame({"patient_id": ["P09002"], "therapist_id": ["therapist.ben"], "week": [1],
                  "instrument": ["PHQ-9"], "score": [26]}).to_excel(xlsx, index=False)
    _cli_ok("import-scores", str(xlsx), "--db", url)
    assert _check(url) is None
    # FHIR
    bundle = _cli_ok("export-fhir", "--patient", "P00002", "--db", url)
    resource = json.loads(bundle)["entry"][0]["resource"]
    resource["subject"]["identifier"]["value"] = "P09003"
    fhir = tmp_path / "one.json"
    fhir.write_text(json.dumps(resource), encoding="utf-8")
    assert runner.invoke(app, ["import-fhir", str(fhir), "--db", url]).exit_code in (0, 2)
    assert _check(url) is None
    # weekly entry: new, then an edit
    engine = make_engine(url)
    with transaction(engine) as session:
        save_entry(session, actor=SYSTEM, code="P00002", instrument="WAI-SR", week=30, total=15.0)
    with transaction(engine) as session:
        stored = read_entry(session, actor=SYSTEM, code="P00002", instrument="WAI-SR", week=30)
        save_entry(session, actor=SYSTEM, code="P00002", instrument="WAI-SR", week=30, total=55.0,
                   read_version=stored.version, reason="typing error")
    engine.dispose()
    assert _check(url) is None
    # a change of rule settings
    _cli_ok("freeze-parameters", "--instrument", "SPIN", "--min-patients", "2", "--db", url)
    assert _check(url) is None
    _cli_ok("assign", "P09001", "--therapist", "therapist.ben", "--db", url)
    assert _check(url) is None


def test_restore_leaves_stored_flags_that_agree_with_the_restored_scores(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    _cli_ok("import-scores", str(_demo_csv(tmp_path, lambda w: w <= 5)), "--db", url)
    copy = tmp_path / "copy.db"
    _cli_ok("backup", str(copy), "--db", url)
    _cli_ok("import-scores", str(_demo_csv(tmp_path, lambda w: w > 5)), "--db", url)
    out = _cli_ok("restore", str(copy), "--db", url)
    assert "Recomputed its" in out
    assert _check(url) is None
    engine = make_engine(url)
    with session_factory(engine)() as session:
        assert int(session.scalar(text("SELECT max(week) FROM flags"))) <= 5
    engine.dispose()


def test_check_names_the_first_patient_whose_stored_flags_differ(writable_demo: str) -> None:
    engine = make_engine(writable_demo)
    with transaction(engine) as session:
        pid = session.scalar(text("SELECT id FROM patients WHERE code = 'P00003'"))
        session.execute(update(StoredFlag).where(StoredFlag.patient_id == pid).values(severity="low"))
    engine.dispose()
    bad = runner.invoke(app, ["refresh-flags", "--check", "--db", writable_demo])
    assert bad.exit_code == 1
    assert "P00003" in bad.output and "run manage.py refresh-flags" in bad.output
    _cli_ok("refresh-flags", "--db", writable_demo)
    assert "agree with a fresh computation" in _cli_ok("refresh-flags", "--check", "--db", writable_demo)


def test_the_stored_facts_follow_the_scores_and_check_compares_them(writable_demo: str) -> None:
    """last_week and weeks_stored are set from the scores the recompute read (only where they
    changed); refresh-flags --check names a patient whose stored facts are wrong, and a patient
    left without scores gets NULL and 0."""
    engine = make_engine(writable_demo)
    with transaction(engine) as session:
        session.execute(text("UPDATE patients SET weeks_stored = 99 WHERE code = 'P00005'"))
    bad = runner.invoke(app, ["refresh-flags", "--check", "--db", writable_demo])
    assert bad.exit_code == 1 and "P00005" in bad.output
    with transaction(engine) as session:
        gone = session.scalar(text("SELECT id FROM patients WHERE code = 'P00007'"))
        session.execute(text("DELETE FROM scores WHERE patient_id = :p"), {"p": gone})
    _cli_ok("refresh-flags", "--db", writable_demo)
    assert "agree with a fresh computation" in _cli_ok("refresh-flags", "--check", "--db", writable_demo)
    with session_factory(engine)() as session:
        stored = session.execute(text("SELECT id, last_week, weeks_stored FROM patients ORDER BY id")).all()
        agg = dict((r[0], (r[1], r[2])) for r in session.execute(text(
            "SELECT patient_id, max(week), count(DISTINCT week) FROM scores GROUP BY patient_id")).all())
    engine.dispose()
    assert [(i, w, n) for i, w, n in stored] == [(i, *agg.get(i, (None, 0))) for i, _, _ in stored]
    assert (gone, None, 0) in stored and len(agg) == len(stored) - 1


def test_a_new_patient_changes_no_other_patients_flags(writable_demo: str, tmp_path: Path) -> None:
    engine = make_engine(writable_demo)
    with session_factory(engine)() as session:
        before = flagstore.read_stored(session, actor=SYSTEM)
    # an extreme week-1 SPIN would have moved the clinic's week-1 SD (and hundreds of SPIN flags)
    csv = tmp_path / "newcomer.csv"
    csv.write_text("patient_id,therapist_id,week,instrument,score\nP09009,therapist.anna,1,SPIN,0\n"
                   "P09010,therapist.anna,1,SPIN,68\n", encoding="utf-8")
    _cli_ok("import-scores", str(csv), "--db", writable_demo)
    with session_factory(engine)() as session:
        after = flagstore.read_stored(session, actor=SYSTEM)
    engine.dispose()
    after = after[~after["patient_id"].isin(["P09009", "P09010"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(after, before)


def test_freezing_the_clinics_sd_writes_a_new_rule_set_with_its_provenance(writable_demo: str) -> None:
    engine = make_engine(writable_demo)
    with session_factory(engine)() as session:
        old = current_rule_set(session)
    out = _cli_ok("freeze-parameters", "--db", writable_demo)
    assert f"Rule set {old.version + 1} is in force" in out
    assert "this clinic's week-1 SD, 60 patients, frozen on" in out
    with session_factory(engine)() as session:
        assert set(flagstore.read_stored(session, actor=SYSTEM)["rules_version"]) == {old.version + 1}
        with pytest.raises(ValueError, match="needs at least 500"):
            freeze_own_sd(session, actor=SYSTEM, instruments=["SPIN"], min_patients=500)
        with pytest.raises(ValueError, match="published reliable change"):
            freeze_own_sd(session, actor=SYSTEM, instruments=["PHQ-9"])
        with pytest.raises(PermissionError):
            freeze_own_sd(session, actor=_actor(session, "therapist.anna"))
    engine.dispose()
    listing = _cli_ok("parameters", "--db", writable_demo)
    assert "Hatcher & Gillaspy (2006)" in listing and f"Rule set {old.version + 1}" in listing


def test_a_new_clinic_gets_literature_defaults_and_spin_reliable_change_off(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        info = ensure_rule_set(session)
    assert info.version == 1
    assert info.instruments["WAI-SR"]["source"].startswith("literature: SD 10")
    assert info.instruments["SPIN"]["sd"] is None and "freezes its own" in info.instruments["SPIN"]["source"]
    with transaction(engine) as session:
        import_retrying(engine, actor=SYSTEM, scores=scores_frame(
            [("P1", "t.x", 1, "SPIN", 60), ("P1", "t.x", 2, "SPIN", 10)]))
    with session_factory(engine)() as session:
        kinds = set(flagstore.read_stored(session, actor=SYSTEM)["kind"])
    assert "improvement" not in kinds  # no SD: no reliable change, and no SD guessed from the data


def test_raised_at_is_when_the_data_that_raised_the_flag_arrived(engine) -> None:  # type: ignore[no-untyped-def]
    import_retrying(engine, actor=SYSTEM, scores=scores_frame(
        [("P1", "t.x", w, "WAI-SR", s) for w, s in ((1, 50), (2, 51), (3, 50), (4, 52))]))
    with transaction(engine) as session:  # the stored arrival time of the first weeks, made older
        session.execute(text("UPDATE scores SET entered_at = :t"), {"t": dt.datetime(2026, 1, 5, tzinfo=dt.UTC)})
        flagstore.refresh_all(session)
    import_retrying(engine, actor=SYSTEM, scores=scores_frame([("P1", "t.x", 5, "WAI-SR", 30)]))
    with session_factory(engine)() as session:
        flags = flagstore.read_stored(session, actor=SYSTEM)
    rupture = flags[flags["kind"] == "rupture"]
    assert list(rupture["week"]) == [5]
    assert rupture["raised_at"].iloc[0] > pd.Timestamp("2026-06-01", tz="UTC")
    assert _check(engine.url.render_as_string(hide_password=False)) is None


# --------------------------------------------------------------------------- the property
_OPS = st.lists(st.tuples(
    st.sampled_from(["import", "replace", "entry", "freeze", "set-rule"]),
    st.sampled_from(["P1", "P2", "P3"]),
    st.integers(1, 8),
    st.sampled_from(["WAI-SR", "SPIN"]),
    st.integers(0, 60)), min_size=1, max_size=8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_any_sequence_of_writes_leaves_stored_equal_to_recomputed(ops, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'p.db'}"
    engine = make_engine(url)
    upgrade(engine)
    try:
        for op, patient, week, instrument, value in ops:
            score = min(max(value, 12), 60) if instrument == "WAI-SR" else min(value, 68)
            rows = scores_frame([(patient, "t.x", week, instrument, score)])
            if op in ("import", "replace"):
                import_retrying(engine, actor=SYSTEM, scores=rows, replace=op == "replace")
            elif op == "entry":
                with transaction(engine) as session:
                    stored = read_entry(session, actor=SYSTEM, code=patient, instrument=instrument, week=week) \
                        if session.scalar(text("SELECT count(*) FROM patients WHERE code = :c"), {"c": patient}) \
                        else None
                    if stored is None:
                        import_retrying(engine, actor=SYSTEM, scores=rows)
                    else:
                        save_entry(session, actor=SYSTEM, code=patient, instrument=instrument, week=week,
                                   total=float(score), read_version=stored.version, reason="property test")
            elif op == "set-rule":  # a rule setting changes: a new rule set, every flag recomputed once
                with transaction(engine) as session:
                    set_rule(session, actor=SYSTEM, rule="below_expected", param="k_sd",
                             value=1.5 + value / 20, reason="property test")
                    flagstore.refresh_all(session)
            else:
                with transaction(engine) as session:
                    try:
                        freeze_own_sd(session, actor=SYSTEM, instruments=[instrument] if instrument == "SPIN"
                                      else None, min_patients=2)
                    except ValueError:
                        continue
                    flagstore.refresh_all(session)
            with session_factory(engine)() as session:
                assert flagstore.check(session) is None, ops
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- the write path's read
def _scores_through_the_orm(session, patient_ids=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """A plain reference for ``flagstore.scores_for_flags``: ORM rows, one by one."""
    from db.models import Patient, Score

    stmt = select(Patient.id, Patient.code, Score.instrument, Score.week, Score.total, Score.administered_on,
                  Score.entered_at, Score.items).join(Patient, Score.patient_id == Patient.id)
    if patient_ids is not None:
        stmt = stmt.where(Patient.id.in_(patient_ids))
    rows = session.execute(stmt).all()
    width = max((len(r.items) for r in rows if r.items), default=0)
    return pd.DataFrame([{
        "_pid": r[0], "patient_id": r[1], "instrument": r[2], "week": r[3], "score": r[4],
        "administered_on": r[5],
        "entered_at": pd.Timestamp(r[6]).tz_localize("UTC") if r[6].tzinfo is None else pd.Timestamp(r[6]),
        **{f"item_{k + 1}": (float(r[7][k]) if r[7] and k < len(r[7]) and r[7][k] is not None else float("nan"))
           for k in range(width)},
    } for r in rows])


def _same_scores(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    key = ["_pid", "instrument", "week"]
    assert slow["item_1"].notna().any() and slow["item_1"].isna().any()  # the case holds what it must
    assert slow["administered_on"].notna().any() and slow["entered_at"].nunique() >= 2
    fast = fast.sort_values(key).reset_index(drop=True)
    slow = slow.sort_values(key).reset_index(drop=True)
    assert list(fast.columns) == list(slow.columns)
    assert fast[["_pid", "week"]].astype("int64").equals(slow[["_pid", "week"]].astype("int64"))
    for c in ("patient_id", "instrument"):
        assert fast[c].astype(object).tolist() == slow[c].astype(object).tolist()
    assert fast["administered_on"].tolist() == slow["administered_on"].tolist()
    assert (fast["entered_at"] == slow["entered_at"]).all()
    items = [c for c in fast.columns if c.startswith("item_")] + ["score"]
    pd.testing.assert_frame_equal(fast[items].astype("float64"), slow[items].astype("float64"))


def test_the_write_paths_read_of_the_scores_equals_a_plain_orm_read(engine) -> None:  # type: ignore[no-untyped-def]
    # 520 patients (more than one chunk of ids), items, dates and two arrival times; then rows the
    # same transaction has written but not committed (COPY / the driver read through its connection)
    rows = [(f"P{p:04d}", "t.x", w, "WAI-SR", 30 + (p + w) % 20) for p in range(520) for w in (1, 2, 3)]
    frame = scores_frame(rows)
    frame["administered_on"] = [dt.date(2026, 1, 5) + dt.timedelta(weeks=int(w) - 1) for w in frame["week"]]
    for k in range(1, 13):
        frame[f"item_{k}"] = [float((p + k) % 5 + 1) if p % 7 else float("nan") for p in range(len(frame))]
    frame["score"] = frame[[f"item_{k}" for k in range(1, 13)]].sum(axis=1).where(
        frame["item_1"].notna(), frame["score"]).astype(float)
    import_retrying(engine, actor=SYSTEM, scores=frame)
    import_retrying(engine, actor=SYSTEM, scores=scores_frame([("P0003", "t.x", 4, "SPIN", 41)]))
    with transaction(engine) as session:
        _same_scores(flagstore.scores_for_flags(session), _scores_through_the_orm(session))
        ids = sorted(session.scalars(text("SELECT id FROM patients")).all())
        _same_scores(flagstore.scores_for_flags(session, patient_ids=ids[:510]),
                     _scores_through_the_orm(session, ids[:510]))
        assert flagstore.scores_for_flags(session, patient_ids=[]).empty
        session.execute(text("DELETE FROM scores WHERE week = 3"))
        _same_scores(flagstore.scores_for_flags(session), _scores_through_the_orm(session))
        session.rollback()


def test_the_caseload_reads_no_improvement_yet_shows_the_same_table(demo_db: str) -> None:
    """Leaving the kinds the caseload drops unread in SQL changes nothing it shows."""
    from core.meeting import NOT_ALERTS, caseload_table
    from db.caseload import read_alerts

    engine = make_engine(demo_db)
    with session_factory(engine)() as session:
        every = read_alerts(session, actor=SYSTEM, today=TODAY)
        alerts = read_alerts(session, actor=SYSTEM, today=TODAY, without_kinds=NOT_ALERTS)
        sara = read_alerts(session, actor=_actor(session, "supervisor.sara"), today=TODAY, without_kinds=NOT_ALERTS)
    engine.dispose()
    assert every["kind"].eq("improvement").sum() > 10 and not alerts["kind"].isin(NOT_ALERTS).any()
    assert len(alerts) < len(every)
    pd.testing.assert_frame_equal(caseload_table(alerts), caseload_table(every))
    assert set(sara["patient_id"]) < set(alerts["patient_id"])  # the access rule still holds


# --------------------------------------------------------------------------- stored per-patient summaries
@pytest.mark.parametrize("name", ["admin", "supervisor.sara", "therapist.anna"])
def test_the_stored_summaries_give_the_caseload_list_of_the_scores(demo_db: str, name: str) -> None:
    """My patients from the stored summaries equals My patients computed from every score."""
    from core.caseload import SUMMARY_INSTRUMENTS, attention_table
    from core.notices import patient_notices
    from db import summaries
    from db.queries import risk_item_coverage

    engine = make_engine(demo_db)
    with session_factory(engine)() as session:
        actor = _actor(session, name)
        scores = read_scores(session, actor=actor, instruments=list(SUMMARY_INSTRUMENTS))
        summary, ranges = summaries.read(session, actor=actor)
        patients, flags = list_patients(session, actor=actor), read_flags(session, actor=actor, today=TODAY)
        coverage = risk_item_coverage(session, actor=actor)
    engine.dispose()
    from_scores = attention_table(patients, flags, scores=scores,
                                  notices=patient_notices(patients, coverage=coverage, scores=scores))
    stored = attention_table(patients, flags, summary=summary,
                             notices=patient_notices(patients, coverage=coverage, ranges=ranges))
    pd.testing.assert_frame_equal(stored, from_scores)
    assert stored["alliance_trend"].map(len).gt(0).all() and stored["clinical_range"].ne("").any()
    assert set(summary.index) == set(patients["patient_id"])


def test_check_names_the_first_patient_whose_stored_summary_differs(writable_demo: str) -> None:
    engine = make_engine(writable_demo)
    with transaction(engine) as session:
        session.execute(text("UPDATE patient_summaries SET latest_alliance = latest_alliance + 1 WHERE patient_id = "
                             "(SELECT id FROM patients WHERE code = 'P00031')"))
    engine.dispose()
    assert _check(writable_demo) == "P00031"
    _cli_ok("refresh-flags", "--db", writable_demo)
    assert _check(writable_demo) is None


def test_an_upgraded_clinic_gets_its_summaries_on_first_start(writable_demo: str) -> None:
    """The migration makes the table empty; the first start finds the flags not current (the
    summaries' revision is part of what they were computed for) and fills it once."""
    engine = make_engine(writable_demo)
    with transaction(engine) as session:
        session.execute(text("DELETE FROM patient_summaries"))
        session.execute(text(f"UPDATE settings SET value = '2/r{flagstore.RULES_REVISION}' "
                             f"WHERE key = '{flagstore.COMPUTED_FOR}'"))
    assert _check(writable_demo) is not None
    assert flagstore.ensure_current(engine) is True
    with session_factory(engine)() as session:
        n = session.scalar(text("SELECT count(*) FROM patient_summaries"))
    engine.dispose()
    assert n == 60 and _check(writable_demo) is None


def test_stored_flags_read_back_awkward_text_exactly_and_bind_the_code(writable_demo: str) -> None:
    """PostgreSQL reads the flags by COPY in CSV (db.flagstore._copied): commas, quotes, line
    breaks and an empty subscale come back as stored, and a code is a bound value, not SQL."""
    engine = make_engine(writable_demo)
    awkward = 'Alliance fell, "sharply"\nsee the note; 50% of it'
    with transaction(engine) as session:
        session.execute(text("UPDATE flags SET explanation = :e, subscale = '' WHERE id = (SELECT min(id) FROM flags "
                             "WHERE patient_id = (SELECT id FROM patients WHERE code = 'P00001'))"), {"e": awkward})
    with session_factory(engine)() as session:
        flags = flagstore.read_stored(session, actor=SYSTEM, patient_code="P00001")
        assert awkward in flags["explanation"].tolist() and "" in flags["subscale"].dropna().tolist()
        assert flagstore.read_stored(session, actor=SYSTEM, patient_code="P00001' OR '1'='1").empty
        everyone = flagstore.read_stored(session, actor=SYSTEM)
    engine.dispose()
    assert len(everyone) > len(flags) > 0 and everyone["raised_at"].notna().all()
    assert str(everyone["raised_at"].dtype) == "datetime64[us, UTC]" and everyone["confirmed"].dtype == "boolean"


def test_the_bulk_insert_stores_awkward_values_exactly(writable_demo: str) -> None:
    """db.columnar.insert_columns (PostgreSQL: one CSV by COPY; SQLite: executemany) stores text
    with commas, quotes and line breaks, an empty text apart from NULL, floats to the last bit,
    -0.0, booleans, dates and aware times as the ORM would."""
    from db.columnar import insert_columns

    engine = make_engine(writable_demo)
    awkward = 'Alliance fell, "sharply"\nsee the note; 50% of it, \\N and \'quoted\''
    floats = [0.1 + 0.2, -0.0, 1e-300, 2.0 / 3.0]
    when = dt.datetime(2026, 11, 23, 9, 30, 1, 123456, tzinfo=dt.UTC)
    with transaction(engine) as session:
        pid, version = session.execute(text("SELECT p.id, (SELECT max(version) FROM rule_sets) FROM patients p "
                                            "WHERE p.code = 'P00001'")).one()
        session.execute(text("DELETE FROM flags WHERE patient_id = :p"), {"p": pid})
        n = len(floats)
        insert_columns(session, StoredFlag.__table__, {
            "patient_id": [pid] * n, "week": [901, 902, 903, 904], "instrument": ["WAI-SR"] * n,
            "kind": ["rupture"] * n, "rule": ["below_expected"] * n, "severity": ["high"] * n,
            "score": floats, "baseline": [None, 1.5, None, 2.0], "drop": floats, "status": ["open"] * n,
            "drop_sd": [None] * n, "subscale": ["", None, "bond", 'a,"b"\nc'], "subscale_drop": [None] * n,
            "symptom_instrument": [None] * n, "symptom_change_next_week": [None] * n,
            "confirmed": [True, False, None, True], "repaired_week": [None, 905, None, None],
            "explanation": [awkward, "", "plain", "é ü –"],
            "administered_on": [dt.date(2026, 11, 23), None, None, None],
            "rules_version": [version] * n, "raised_at": [when] * n})
    with session_factory(engine)() as session:
        rows = session.execute(select(StoredFlag).where(StoredFlag.patient_id == pid).order_by(StoredFlag.week)
                               ).scalars().all()
        got = [(r.score, r.baseline, r.subscale, r.confirmed, r.repaired_week, r.explanation, r.administered_on,
                r.raised_at.replace(tzinfo=dt.UTC) if r.raised_at.tzinfo is None else r.raised_at) for r in rows]
    engine.dispose()
    assert got == [
        (floats[0], None, "", True, None, awkward, dt.date(2026, 11, 23), when),
        (floats[1], 1.5, None, False, 905, "", None, when),
        (floats[2], None, "bond", None, None, "plain", None, when),
        (floats[3], 2.0, 'a,"b"\nc', True, None, "é ü –", None, when),
    ]
    if writable_demo.startswith("postgresql"):  # SQLite keeps an integral REAL as an integer: -0.0 reads 0.0
        assert str(got[1][0]) == "-0.0"
