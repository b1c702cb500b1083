"""FHIR R4 QuestionnaireResponse: LOINC-coded PHQ-9/GAD-7, our published Questionnaires, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.questionnaire import Questionnaire

from core import fhir
from core.validation import validate_scores

ROOT = Path(__file__).resolve().parents[2]
PHQ_ITEMS = ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"]


def _qr(questionnaire: str, items: list[dict], **extra: object) -> dict:
    return {"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": questionnaire,
            "subject": {"identifier": {"value": "P00007"}}, "item": items, **extra}


def _week(n: int) -> list[dict]:
    return [{"url": fhir.WEEK_EXTENSION, "valueInteger": n}]


def _read(resource: dict) -> tuple[pd.DataFrame, tuple]:
    return fhir.read_responses(json.dumps(resource).encode())


@pytest.mark.parametrize("code", ["WAI-SR", "WAI-P", "SPIN"])
def test_published_questionnaires_match_the_registry_and_are_valid_r4(code: str) -> None:
    path = ROOT / "fhir" / f"Questionnaire-{code}.json"
    published = json.loads(path.read_text(encoding="utf-8"))
    assert published == fhir.build_questionnaire(code), f"{path} drifted; regenerate it (fhir/README.md)"
    model = Questionnaire.model_validate(published)
    assert model.url == f"https://alliance-monitor.org/fhir/Questionnaire/{code}"
    assert all(i.text.startswith("Item") for i in model.item[:-1])  # no copyrighted wording


def test_phq9_by_loinc_with_answer_codes_nested_group_and_subject_reference() -> None:
    answers = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9", "LA6568-5", "LA6568-5", "LA6569-3", "LA6568-5",
               "LA6569-3"]
    group = {"linkId": "/44249-1", "item": [
        {"linkId": f"/44249-1/{link}", "answer": [{"valueCoding": {"system": "http://loinc.org", "code": a}}]}
        for link, a in zip(PHQ_ITEMS, answers, strict=True)]}
    resource = _qr("http://loinc.org/q/44249-1", [group], extension=_week(3), authored="2026-02-02T10:00:00Z")
    resource["subject"] = {"reference": "Patient/P00007"}
    resource["author"] = {"identifier": {"value": "therapist.anna"}}
    table, errors = _read(resource)
    assert errors == ()
    result = validate_scores(table.drop(columns="authored"), first_row=1, unit="resource")
    assert result.ok, result.errors
    row = result.scores.iloc[0]
    assert (row["patient_id"], row["therapist_id"], row["instrument"], row["week"]) == ("P00007", "therapist.anna",
                                                                                         "PHQ-9", 3)
    assert row["score"] == 8.0 and row["item_9"] == 1.0
    assert str(row["administered_on"]) == "2026-02-02"


def test_gad7_total_only_by_loinc_total_code() -> None:
    table, errors = _read(_qr("http://loinc.org/q/69737-5|2.72", [{"linkId": "70274-6",
                                                                  "answer": [{"valueInteger": 12}]}],
                              extension=_week(1), author={"reference": "Practitioner/ther.x"}))
    assert errors == ()
    assert table.loc[0, ["instrument", "score", "week", "therapist_id"]].tolist() == ["GAD-7", "12", "1", "ther.x"]


def test_bundle_with_our_canonical_url_and_errors_named_per_resource() -> None:
    wai = _qr(f"{fhir.CANONICAL_BASE}/Questionnaire/WAI-SR",
              [{"linkId": f"item-{n}", "answer": [{"valueInteger": 4}]} for n in range(1, 13)], extension=_week(2))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": wai},
        {"resource": {"resourceType": "Patient", "id": "x"}},
        {"resource": _qr("http://example.org/Questionnaire/BDI", [], extension=_week(1))},
        {"resource": _qr("http://loinc.org/q/69737-5", [{"linkId": "99999-9", "answer": [{"valueInteger": 1}]}],
                         extension=_week(1))},
        {"resource": {**_qr("http://loinc.org/q/69737-5", [], extension=_week(1)), "status": "in-progress"}},
        {"resource": {**_qr("http://loinc.org/q/69737-5", [{"linkId": "70274-6",
                                                             "answer": [{"valueString": "high"}]}])}},
    ]}
    table, errors = fhir.read_responses(json.dumps(bundle).encode())
    assert table.loc[0, "score"] == "" and table.loc[0, "item_12"] == "4"
    where = {(e.row, e.column) for e in errors}
    assert (2, "resourceType") in where
    assert (3, "questionnaire") in where
    assert (4, "item 99999-9") in where
    assert (5, "status") in where
    assert (6, "item 70274-6") in where
    assert 1 not in {e.row for e in errors}
    assert all(str(e).startswith(f"resource {e.row}, column ") for e in errors)


@pytest.mark.parametrize(("data", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a FHIR resource"),
    (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', "holds no entries"),
    ("{\"resourceType\": \"Bundle\"}".encode("utf-16"), "not UTF-8"),
])
def test_unreadable_files_raise_a_sentence(data: bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        fhir.read_responses(data)


def test_invalid_fhir_is_reported_with_its_element() -> None:
    table, errors = _read({"resourceType": "QuestionnaireResponse", "status": "completed",
                           "authored": "not a date"})
    assert len(errors) == 1 and errors[0].row == 1 and "authored" in errors[0].column


def test_week_from_authored_and_start_date() -> None:
    table = pd.DataFrame({"patient_id": ["P1", "P1", "P1", "P2", "P1"], "week": ["", "", "", "", "7"],
                          "authored": ["2026-01-05", "2026-01-11", "2026-01-12", "2026-01-12", "2026-01-05"]},
                         dtype="string")
    starts = pd.Series({"P1": pd.Timestamp("2026-01-05").date()})
    out = fhir.fill_weeks(table, start_dates=starts)
    assert out["week"].tolist() == ["1", "1", "2", "", "7"]


def test_export_reads_back_unchanged() -> None:
    scores = pd.DataFrame({
        "patient_id": ["P1", "P1", "P2", "P2"], "therapist_id": ["ther.a", "ther.a", "ther.b", "ther.b"],
        "instrument": ["PHQ-9", "WAI-SR", "GAD-7", "SPIN"], "week": [1, 2, 5, 5],
        "score": [10.0, 37.0, 7.0, 30.0],  # whole: the validator refuses 37.5 (issue 18)
        "administered_on": [pd.Timestamp("2026-03-02").date(), None, None, None]})
    items = np.full((4, 9), np.nan)
    items[0, :9] = [1, 1, 1, 1, 1, 1, 1, 1, 2]
    items[2, :7] = [1] * 7
    for n in range(9):
        scores[f"item_{n + 1}"] = items[:, n]
    bundle = fhir.scores_to_bundle(scores)
    Bundle.model_validate(bundle)
    legacy = fhir.scores_to_bundle(scores.assign(score=[10.0, 37.5, 7.0, 30.0]))  # a stored non-whole total
    assert legacy["entry"][1]["resource"]["item"][-1]["answer"] == [{"valueDecimal": 37.5}]
    assert bundle["entry"][0]["resource"]["questionnaire"] == "http://loinc.org/q/44249-1"
    assert bundle["entry"][0]["resource"]["item"][0]["linkId"] == "44250-9"
    table, errors = fhir.read_responses(json.dumps(bundle).encode())
    assert errors == ()
    back = validate_scores(table.drop(columns="authored"), first_row=1, unit="resource")
    assert back.ok, back.errors
    cols = ["patient_id", "therapist_id", "instrument", "week", "score"]
    pd.testing.assert_frame_equal(back.scores[cols], scores[cols], check_dtype=False)
    assert back.scores["administered_on"].tolist()[0] == scores["administered_on"][0]
    np.testing.assert_array_equal(back.scores[[f"item_{n}" for n in range(1, 10)]].to_numpy(), items)


def test_an_item_answered_twice_is_an_error_naming_it() -> None:
    items = [{"linkId": link, "answer": [{"valueInteger": 1}]} for link in PHQ_ITEMS]
    _, errors = _read(_qr("http://loinc.org/q/44249-1", [*items, {"linkId": "item-1", "answer": [{"valueInteger": 3}]}],
                          extension=_week(1)))
    assert [(e.row, e.column) for e in errors] == [(1, "item item-1")]
    assert "answered twice" in errors[0].reason
