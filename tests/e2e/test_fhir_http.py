"""The FHIR intake over real HTTP (issue 17): ``streamlit run app.py`` on a free port over a fresh
demo clinic, on SQLite and PostgreSQL; requests with urllib and http.client, the database and
``manage.py flags`` read afterwards. No browser needed."""

from __future__ import annotations

import copy
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core import fhir
from db.engine import make_engine, session_factory
from db.models import AuditEvent, Patient, Score
from manage import app
from tests.e2e.conftest import demo_database, start_server

LIMIT = 100_000
PHQ = list(fhir.LOINC_ITEMS["PHQ-9"])
GAD = list(fhir.LOINC_ITEMS["GAD-7"])
runner = CliRunner()


@dataclass(frozen=True)
class Intake:
    base: str
    db: str
    token: str
    replacer: str
    revoked: str


def _token(db: str, *args: str) -> str:
    result = runner.invoke(app, ["create-api-client", *args, "--db", db])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def intake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    folder = tmp_path_factory.mktemp("fhir_http")
    with demo_database(request, folder, "am_fhir") as url:
        tokens = (_token(url, "platform"), _token(url, "platform-admin", "--can-replace"), _token(url, "old"))
        assert runner.invoke(app, ["revoke-api-client", "old", "--db", url]).exit_code == 0
        proc, base = start_server(url, folder / "streamlit.log", {"ALLIANCE_FHIR_MAX_BYTES": str(LIMIT)})
        try:
            yield Intake(base, url, *tokens)
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def post(base: str, body: bytes | dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/fhir+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{base}/fhir/QuestionnaireResponse", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def count(db: str, model: type = Score) -> int:
    engine = make_engine(db)
    with session_factory(engine)() as session:
        n = session.scalar(select(func.count()).select_from(model)) or 0
    engine.dispose()
    return n


def stored(db: str, code: str) -> dict[tuple[str, int], float]:
    engine = make_engine(db)
    with session_factory(engine)() as session:
        rows = session.execute(select(Score.instrument, Score.week, Score.total).join(Patient)
                               .where(Patient.code == code)).all()
    engine.dispose()
    return {(i, int(w)): float(t) for i, w, t in rows}


def qr(patient: str = "P09001", *, instrument: str = "PHQ-9", week: int | None = 1,
       answers: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    links = PHQ if instrument == "PHQ-9" else GAD
    answers = answers if answers is not None else [1] * len(links)
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "status": "completed",
        "questionnaire": f"http://loinc.org/q/{'44249-1' if instrument == 'PHQ-9' else '69737-5'}",
        "subject": {"identifier": {"system": fhir.PATIENT_SYSTEM, "value": patient}},
        "author": {"identifier": {"system": fhir.THERAPIST_SYSTEM, "value": "therapist.anna"}},
        "authored": "2026-11-30",
        "item": [{"linkId": link, "answer": [{"valueInteger": a}]} for link, a in zip(links, answers, strict=True)],
    }
    if week is not None:
        resource["extension"] = [{"url": fhir.WEEK_EXTENSION, "valueInteger": week}]
    return {**resource, **extra}


def bundle(*resources: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [
        {"resource": r, "request": {"method": "POST", "url": "QuestionnaireResponse"}} for r in resources]}


def test_metadata_is_a_capability_statement_without_a_token(intake: Intake) -> None:
    with urllib.request.urlopen(f"{intake.base}/fhir/metadata", timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/fhir+json")
        doc = json.loads(r.read())
    assert doc["resourceType"] == "CapabilityStatement" and doc["fhirVersion"] == "4.0.1"
    assert doc["rest"][0]["resource"][0]["type"] == "QuestionnaireResponse"


def test_phq9_and_gad7_land_by_loinc_raise_flags_and_a_resend_changes_nothing(intake: Intake) -> None:
    before = count(intake.db)
    status, answer = post(intake.base, qr(answers=[1, 1, 1, 1, 1, 1, 1, 1, 2]), intake.token)
    assert status == 201, answer
    assert answer["resourceType"] == "OperationOutcome" and "1 new" in answer["issue"][0]["diagnostics"]
    status, answer = post(intake.base, bundle(qr(instrument="GAD-7", answers=[3, 3, 3, 2, 2, 2, 2]),
                                              qr(week=2, answers=[2] * 9)), intake.token)
    assert status == 200, answer
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created", "201 Created"]
    assert stored(intake.db, "P09001") == {("PHQ-9", 1): 10.0, ("GAD-7", 1): 17.0, ("PHQ-9", 2): 18.0}
    assert count(intake.db) == before + 3
    flags = runner.invoke(app, ["flags", "--format", "json", "--db", intake.db])
    assert flags.exit_code == 0, flags.output
    mine = [f for f in json.loads(flags.stdout) if f["patient_id"] == "P09001"]
    assert {(f["instrument"], f["week"], f["kind"]) for f in mine} >= {("PHQ-9", 1, "risk_item"),
                                                                       ("PHQ-9", 2, "risk_item")}
    # resent: identical resources change nothing
    audit_rows = count(intake.db, AuditEvent)
    status, answer = post(intake.base, qr(answers=[1, 1, 1, 1, 1, 1, 1, 1, 2]), intake.token)
    assert status == 200 and "nothing changed" in answer["issue"][0]["diagnostics"]
    status, answer = post(intake.base, bundle(qr(instrument="GAD-7", answers=[3, 3, 3, 2, 2, 2, 2])), intake.token)
    assert status == 200 and answer["entry"][0]["response"]["status"] == "200 OK"
    assert count(intake.db) == before + 3
    assert stored(intake.db, "P09001")[("PHQ-9", 1)] == 10.0
    assert count(intake.db, AuditEvent) > audit_rows  # every request is audited, under the client's name
    engine = make_engine(intake.db)
    with session_factory(engine)() as session:
        actors = set(session.scalars(select(AuditEvent.actor).where(AuditEvent.action == "fhir_request")))
    engine.dispose()
    assert "api:platform" in actors


def test_a_changed_resource_needs_a_client_that_may_replace(intake: Intake) -> None:
    first = qr("P09002", answers=[0] * 9)
    assert post(intake.base, first, intake.token)[0] == 201
    changed = qr("P09002", answers=[1] * 9)
    status, answer = post(intake.base, changed, intake.token)
    assert status == 409, answer
    text = " ".join(i["diagnostics"] for i in answer["issue"])
    assert "P09002" in text and "may not replace" in text and "--can-replace" in text
    assert answer["issue"][0]["code"] == "conflict"
    assert stored(intake.db, "P09002") == {("PHQ-9", 1): 0.0}
    status, answer = post(intake.base, changed, intake.replacer)
    assert status == 200 and "1 replaced" in answer["issue"][0]["diagnostics"]
    assert stored(intake.db, "P09002") == {("PHQ-9", 1): 9.0}


@pytest.mark.parametrize("which", ["none", "wrong", "revoked", "basic", "empty"])
def test_missing_wrong_or_revoked_token_gets_401_and_writes_nothing(intake: Intake, which: str) -> None:
    before = count(intake.db)
    token = {"none": None, "wrong": "amc_not-a-token", "revoked": intake.revoked, "basic": None, "empty": ""}[which]
    if which == "basic":
        req = urllib.request.Request(f"{intake.base}/fhir/QuestionnaireResponse", method="POST",
                                     data=json.dumps(qr("P09003")).encode(),
                                     headers={"Authorization": "Basic dXNlcjpwYXNz"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=30)
        status, answer = caught.value.code, json.loads(caught.value.read())
    else:
        status, answer = post(intake.base, qr("P09003"), token)
    assert status == 401
    assert answer["resourceType"] == "OperationOutcome" and answer["issue"][0]["code"] == "login"
    assert "Bearer" in answer["issue"][0]["diagnostics"]
    assert count(intake.db) == before and stored(intake.db, "P09003") == {}


def request(base: str, method: str, path: str, token: str | None, body: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"{base}{path}", data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(("method", "path"), [("GET", "/fhir/QuestionnaireResponse"),
                                              ("GET", "/fhir/QuestionnaireResponse/1"),
                                              ("GET", "/fhir/Patient?identifier=P00001"),
                                              ("POST", "/fhir/Patient"), ("DELETE", "/fhir/QuestionnaireResponse"),
                                              ("POST", "/fhir/metadata")])
def test_a_client_may_only_write_scores_anything_else_is_403_and_without_a_token_401(
        intake: Intake, method: str, path: str) -> None:
    before = count(intake.db)
    body = json.dumps(qr("P09004")).encode() if method == "POST" else None
    status, answer = request(intake.base, method, path, intake.token, body)
    assert status == 403, answer
    assert answer["resourceType"] == "OperationOutcome" and answer["issue"][0]["code"] == "forbidden"
    assert "may only send scores" in answer["issue"][0]["diagnostics"]
    status, answer = request(intake.base, method, path, None, body)
    assert status == 401 and answer["issue"][0]["code"] == "login"  # never the app's page
    assert count(intake.db) == before and stored(intake.db, "P09004") == {}


def _with(resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_GOOD = qr("P09010")
_ITEMS = _GOOD["item"]
MALFORMED: dict[str, tuple[bytes | dict[str, Any], int, str]] = {
    "bad JSON": (b'{"resourceType": "QuestionnaireResponse",', 400, "not valid JSON"),
    "not UTF-8": (b'{"resourceType": "\xff\xfe"}', 400, "not UTF-8"),
    "a JSON list": (b"[1, 2]", 400, "not a FHIR resource"),
    "wrong resourceType": (_with(_GOOD, resourceType="Patient"), 400, "not a QuestionnaireResponse"),
    "no resourceType": (_with(_GOOD, resourceType=None), 400, "not a FHIR resource"),
    "unknown LOINC": (_with(_GOOD, questionnaire="http://loinc.org/q/99999-9"), 422,
                      "does not name a known instrument"),
    "item out of range": (qr("P09010", answers=[1, 1, 1, 7, 1, 1, 1, 1, 1]), 422, "outside PHQ-9's item range"),
    "negative item": (qr("P09010", answers=[-1, 1, 1, 1, 1, 1, 1, 1, 1]), 422, "outside PHQ-9's item range"),
    "duplicate items": (_with(_GOOD, item=[*_ITEMS, _ITEMS[0]]), 422, "answered twice"),
    "bad patient code": (qr("P 09010"), 422, "must be a code of letters"),
    "patient code with markup": (qr("<P09010>"), 422, "must be a code of letters"),
    "missing subject": (_with(_GOOD, subject=None), 422, "names no patient"),
    "missing authored and week": (_with(qr("P09010", week=None), authored=None), 422, "give the treatment week"),
    "week 0": (qr("P09010", week=0), 422, "whole number from 1"),
    "empty Bundle": (bundle(), 400, "holds no entries"),
    "Bundle of type collection": (bundle(_GOOD, kind="collection"), 400, "of type 'collection'"),
    "Bundle of type batch": (bundle(_GOOD, kind="batch"), 400, "'transaction'"),
    "Bundle holding a Patient": (bundle(_GOOD, {"resourceType": "Patient"}), 400, "not a QuestionnaireResponse"),
    "Bundle with one bad entry": (bundle(_GOOD, qr("P09011", answers=[9] * 9)), 422, "resource 2"),
    "same score twice in a Bundle": (bundle(_GOOD, _GOOD), 422, "P09010"),
    "status in-progress": (_with(_GOOD, status="in-progress"), 422, "only completed"),
    "unknown item": (_with(_GOOD, item=[*_ITEMS, {"linkId": "12345-6", "answer": [{"valueInteger": 1}]}]), 422,
                     "is not an item of PHQ-9"),
    "text answer": (_with(_GOOD, item=[{"linkId": PHQ[0], "answer": [{"valueString": "often"}]}, *_ITEMS[1:]]),
                    422, "numeric answer"),
    "some items missing": (_with(_GOOD, item=_ITEMS[:4]), 422, "needs all 9 item responses"),
    "total disagrees": (_with(_GOOD, item=[*_ITEMS, {"linkId": "44261-6", "answer": [{"valueInteger": 27}]}]), 422,
                        "does not equal the sum"),
    "no therapist for a new patient": (_with(_GOOD, author=None), 422, "therapist_id"),
    "not FHIR R4": (_with(_GOOD, subject="P09010"), 422, "not valid FHIR R4"),
    "week not an integer": (_with(_GOOD, extension=[{"url": fhir.WEEK_EXTENSION, "valueString": "2"}]), 422,
                            "valueInteger"),
    "huge body": (_with(_GOOD, text={"status": "generated", "div": "<div>" + "x" * (2 * LIMIT) + "</div>"}), 413,
                  f"the limit is {LIMIT:,} bytes"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_bodies_get_an_operation_outcome_and_write_nothing(intake: Intake, name: str) -> None:
    body, status, phrase = MALFORMED[name]
    before = count(intake.db), count(intake.db, Patient)
    got, answer = post(intake.base, body, intake.token)
    assert got == status, answer
    assert answer["resourceType"] == "OperationOutcome"
    first = answer["issue"][0]
    assert first["severity"] == "error" and first["code"]
    text = " ".join(i["diagnostics"] for i in answer["issue"])
    assert phrase in text, text
    assert first["diagnostics"].rstrip().endswith(".")  # a sentence, saying how to fix it
    assert (count(intake.db), count(intake.db, Patient)) == before


def test_a_streamed_body_is_cut_off_at_the_limit(intake: Intake) -> None:
    """Without Content-Length (chunked), reading stops once the stream passes the limit."""
    before = count(intake.db)
    url = urlparse(intake.base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    chunks = (b" " * 10_000 for _ in range(3 * LIMIT // 10_000))
    conn.request("POST", "/fhir/QuestionnaireResponse", body=chunks, encode_chunked=True,
                 headers={"Authorization": f"Bearer {intake.token}", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    assert response.status == 413 and answer["resourceType"] == "OperationOutcome"
    assert "split the Bundle" in answer["issue"][0]["diagnostics"]
    assert count(intake.db) == before


def test_a_risk_item_over_http_is_mailed_after_the_response_to_therapist_and_supervisor(intake: Intake) -> None:
    """Issue 17, notifications: the POST answers before any e-mail goes; the worker then sends one
    message each to the patient's therapist and the team's supervisor, code, kind and link only."""
    import datetime as dt

    from db import accounts
    from db.access import SYSTEM
    from db.engine import transaction
    from db.models import Notification
    from mail.worker import send_due
    from tests.smtp_server import local_smtp, text_of

    engine = make_engine(intake.db)
    with transaction(engine) as session:
        accounts.set_email(session, actor=SYSTEM, name="therapist.anna", email="anna@clinic.test")
        accounts.set_email(session, actor=SYSTEM, name="supervisor.sara", email="sara@clinic.test")
    status, answer = post(intake.base, qr("P09060", answers=[2, 2, 2, 2, 1, 1, 1, 1, 3]), intake.token)
    assert status == 201, answer
    with session_factory(engine)() as session:
        queued = session.scalars(select(Notification.event).join(Patient, Patient.id == Notification.patient_id)
                                 .where(Patient.code == "P09060")).all()
    assert sorted(queued) == ["risk_item", "risk_item"]
    with local_smtp() as (inbox, settings):
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        result = send_due(engine, settings=settings, base_url="https://alliance.clinic.test", now=later)
    engine.dispose()
    mine = {r[0]: text_of(m) for r, m in inbox.messages if "P09060" in text_of(m)}
    assert set(mine) == {"anna@clinic.test", "sara@clinic.test"} and result.failed == 0
    for text in mine.values():
        assert "Risk item" in text and "https://alliance.clinic.test/patient?patient=P09060" in text
        assert "15" not in text and "3" not in text.replace("P09060", "")  # neither the total nor item 9's answer
