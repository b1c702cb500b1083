"""AppTest of /entry and /import over a private copy of the demo clinic (these pages write)."""

from __future__ import annotations

from sqlalchemy import select

from db.access import Actor
from db.engine import make_engine, session_factory, transaction
from db.entry import save_entry
from db.models import Account, AuditEvent, Patient, Score
from tests.app.conftest import is_login_form, main_text

GAD = [1, 2, 0, 3, 1, 1, 2]


def _stored(url: str, code: str, instrument: str, week: int) -> Score | None:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        score = s.scalar(select(Score).join(Patient, Score.patient_id == Patient.id)
                         .where(Patient.code == code, Score.instrument == instrument, Score.week == week))
    engine.dispose()
    return score


def _entry(app_as, name: str):  # type: ignore[no-untyped-def]
    at = app_as(name, script="pages/entry.py")
    at.query_params["patient"] = "P00001"
    return at.run()


def _choose(at, instrument: str, week: int):  # type: ignore[no-untyped-def]
    at.selectbox[1].set_value(instrument).run()
    at.number_input[0].set_value(week).run()
    return at


def test_therapist_enters_items_sees_total_and_subscales_and_saves(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    at = _choose(_entry(app_as, "therapist.anna"), "GAD-7", 40)
    assert not at.exception
    assert at.selectbox[0].value == "P00001"
    for n, v in enumerate(GAD):
        at.number_input(key=f"item|P00001|GAD-7|40|{n + 1}").set_value(v)
    at.run()
    assert at.metric[0].label == "Total" and at.metric[0].value == "10"
    at.button[0].click().run()
    assert "Saved GAD-7 week 40 for patient P00001." in main_text(at)
    score = _stored(writable_demo, "P00001", "GAD-7", 40)
    assert score is not None and score.total == 10 and score.items == GAD and score.source == "entry"


def test_wai_subscales_show_while_typing(app_as) -> None:  # type: ignore[no-untyped-def]
    at = _choose(_entry(app_as, "therapist.anna"), "WAI-SR", 41)
    for n in (3, 5, 7, 9):  # the bond items
        at.number_input(key=f"item|P00001|WAI-SR|41|{n}").set_value(4)
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Total": "–", "Task": "–", "Bond": "16", "Goal": "–"}


def test_editing_asks_for_a_reason_and_keeps_the_old_value_in_the_trail(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    at = _choose(_entry(app_as, "therapist.anna"), "WAI-SR", 1)
    old = _stored(writable_demo, "P00001", "WAI-SR", 1)
    assert old is not None
    assert "Week 1 already has a WAI-SR for patient P00001" in main_text(at)
    at.radio[0].set_value("Total only").run()
    new_total = 12.0 if old.total != 12 else 13.0
    at.number_input(key="total|P00001|WAI-SR|1").set_value(new_total).run()
    at.button[0].click().run()
    assert "needs a reason" in main_text(at)
    at.text_input(key="reason|P00001|WAI-SR|1").set_value("typing error on the paper form").run()
    at.button[0].click().run()
    assert "Changed WAI-SR week 1 for patient P00001." in main_text(at)
    assert _stored(writable_demo, "P00001", "WAI-SR", 1).total == new_total  # type: ignore[union-attr]
    engine = make_engine(writable_demo)
    with session_factory(engine)() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "change_score")
                          .order_by(AuditEvent.id.desc())).first()
    assert event is not None and f'"old": {old.total}' in event.detail and "typing error" in event.detail


def test_a_lost_race_says_so_and_offers_a_reload(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    at = _choose(_entry(app_as, "therapist.anna"), "WAI-SR", 2)
    engine = make_engine(writable_demo)
    with session_factory(engine)() as s:
        sara = Actor.from_account(s.scalars(select(Account).where(Account.name == "supervisor.sara")).one())
    with transaction(engine) as s:  # the supervisor saves first
        save_entry(s, actor=sara, code="P00001", instrument="WAI-SR", week=2, total=33, read_version=1,
                   reason="from the paper form")
    at.radio[0].set_value("Total only").run()
    at.number_input(key="total|P00001|WAI-SR|2").set_value(50.0).run()
    at.text_input(key="reason|P00001|WAI-SR|2").set_value("mine").run()
    at.button[0].click().run()
    assert "Someone else changed the WAI-SR of week 2 for patient P00001 by supervisor.sara" in main_text(at)
    assert _stored(writable_demo, "P00001", "WAI-SR", 2).total == 33  # type: ignore[union-attr]
    at.button[1].click().run()  # reload
    assert "total 33" in main_text(at)


def test_entry_lists_only_visible_patients_and_refuses_others(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna", script="pages/entry.py").run()
    options = at.selectbox[0].options
    assert "P00001" in options and "P00002" not in options
    at = app_as("therapist.anna", script="pages/entry.py")
    at.query_params["patient"] = "P00002"
    at.run()
    assert at.selectbox[0].value is None and not at.metric


def test_import_is_for_admins_only(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna", script="pages/import.py").run()
    assert "not part of your role" in main_text(at) and not at.file_uploader
    at = app_as(None, script="pages/import.py").run()
    assert is_login_form(at)


def test_import_previews_errors_then_conflicts_then_imports(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    old = _stored(writable_demo, "P00001", "WAI-SR", 1)
    assert old is not None
    other = 12 if old.total != 12 else 13
    at = app_as("admin", script="pages/import.py").run()
    bad = b"patient_id,therapist_id,week,instrument,score\nP00001,therapist.anna,0,WAI-SR,99\n"
    at.file_uploader[0].set_value(("bad.csv", bad, "text/csv")).run()
    assert "cannot be imported: 2 problems" in main_text(at)
    errors = at.dataframe[0].value
    assert errors["where"].tolist() == ["row 2", "row 2"] and set(errors["column"]) == {"week", "score"}

    good = (f"patient_id;therapist_id;week;instrument;score\nP00001;therapist.anna;1;WAI-SR;{other}\n"
            f"P09999;therapist.anna;1;SPIN;20\n").encode()
    at.file_uploader[0].set_value(("good.csv", good, "text/csv")).run()
    assert [m.value for m in at.metric] == ["1", "0", "1"]
    assert _stored(writable_demo, "P09999", "SPIN", 1) is None  # the preview wrote nothing
    import_button = next(b for b in at.button if b.label == "Import")
    assert import_button.disabled
    at.checkbox[0].check().run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert "Imported good.csv: 1 new, 0 unchanged, 1 replaced." in main_text(at)
    assert _stored(writable_demo, "P09999", "SPIN", 1) is not None
    assert _stored(writable_demo, "P00001", "WAI-SR", 1).total == other  # type: ignore[union-attr]


def test_import_accepts_fhir_json(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    import json

    from core.fhir import WEEK_EXTENSION

    resource = {"resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": "http://loinc.org/q/69737-5", "subject": {"identifier": {"value": "P00001"}},
                "extension": [{"url": WEEK_EXTENSION, "valueInteger": 45}],
                "item": [{"linkId": "70274-6", "answer": [{"valueInteger": 9}]}]}
    at = app_as("admin", script="pages/import.py").run()
    at.file_uploader[0].set_value(("one.json", json.dumps(resource).encode(), "application/json")).run()
    assert [m.value for m in at.metric] == ["1", "0", "0"]
    next(b for b in at.button if b.label == "Import").click().run()
    assert "Imported one.json: 1 new" in main_text(at)
    score = _stored(writable_demo, "P00001", "GAD-7", 45)
    assert score is not None and score.source == "fhir" and score.total == 9
