"""FHIR R4 QuestionnaireResponse in and out, through the ``fhir.resources`` models.

Which package: ``fhir.resources`` 8 ships R5 as its default models and R4B and STU3 as
subpackages. R4B (4.3.0) is the technical correction of R4 (4.0.1) whose
QuestionnaireResponse is unchanged from R4, so R4 resources validate against it as they are;
R5 changed QuestionnaireResponse (``questionnaire`` required, answers and statuses reworked).
This module therefore uses ``fhir.resources.R4B`` (docs/data-formats.md says more).

How a resource maps to a weekly score (documented in docs/data-formats.md):

* **instrument**: ``questionnaire`` (canonical URL, ``|version`` ignored). PHQ-9 and GAD-7
  by their LOINC panels (``http://loinc.org/q/44249-1``, ``…/69737-5``; also a bare LOINC
  code or ``Questionnaire/44249-1``); our other instruments by the canonical URLs of the
  Questionnaire definitions published in ``fhir/`` (``CANONICAL_BASE/Questionnaire/WAI-SR``).
* **patient**: ``subject.identifier.value``, else the id of ``subject.reference``
  (``Patient/P00042``).
* **therapist**: ``author.identifier.value`` or the id of ``author.reference``; when absent
  the patient's therapist in the database (filled in by the database layer).
* **week**: the extension ``WEEK_EXTENSION`` (``valueInteger``); when absent, from
  ``authored`` relative to the patient's start date: ``week = days // 7 + 1`` (filled in by
  the database layer, which knows start dates).
* **items**: by ``linkId`` (the LOINC item codes for PHQ-9/GAD-7, e.g. ``44250-9`` or
  ``/44250-9``; ``item-N`` for ours); the total by the LOINC total code (``44261-6``,
  ``70274-6``) or ``total``. Answers: ``valueInteger``, ``valueDecimal``, or ``valueCoding``
  with the LOINC answer codes LA6568-5/LA6569-3/LA6570-1/LA6571-9 (0-3) or a numeric code.

The result is a table of text cells in the weekly-scores format, checked afterwards by the
one validator (:func:`core.validation.validate_scores`) like every other way in.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from pydantic import ValidationError

from core import instruments
from core.validation import MAX_BYTES, RowError

#: The project's namespace for canonical URLs (Questionnaires, extensions, identifier systems).
CANONICAL_BASE = "https://alliance-monitor.org/fhir"
WEEK_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/treatment-week"
PATIENT_SYSTEM = f"{CANONICAL_BASE}/sid/patient-code"
THERAPIST_SYSTEM = f"{CANONICAL_BASE}/sid/account-name"
LOINC = "http://loinc.org"
#: LOINC item codes, item 1 first (LOINC panels 44249-1 and 69737-5).
LOINC_ITEMS = {
    "PHQ-9": ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3",
              "44260-8"),
    "GAD-7": ("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"),
}
#: LOINC answer list LL358-3 (PHQ-9/GAD-7): not at all, several days, more than half, nearly every day.
LOINC_ANSWERS = {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}
ACCEPTED_STATUS = ("completed", "amended")
_ID_RE = re.compile(r"[^A-Za-z0-9.-]")


def questionnaire_url(code: str) -> str:
    """The canonical URL that identifies instrument ``code`` in a QuestionnaireResponse."""
    inst = instruments.get(code)
    if inst.loinc_panel:
        return f"{LOINC}/q/{inst.loinc_panel}"
    return f"{CANONICAL_BASE}/Questionnaire/{inst.code}"


def item_link_ids(code: str) -> list[str]:
    """``linkId`` of each item, item 1 first (LOINC item codes where LOINC defines them)."""
    inst = instruments.get(code)
    return list(LOINC_ITEMS.get(inst.code, [f"item-{n}" for n in range(1, inst.n_items + 1)]))


def total_link_id(code: str) -> str:
    """``linkId`` of the total score (the LOINC total code where there is one)."""
    return instruments.get(code).loinc_total or "total"


def _instrument_by_url() -> dict[str, str]:
    table: dict[str, str] = {}
    for code, inst in instruments.registry().items():
        table[questionnaire_url(code)] = code
        table[f"{CANONICAL_BASE}/Questionnaire/{code}"] = code
        if inst.loinc_panel:
            for form in (inst.loinc_panel, f"{LOINC}/{inst.loinc_panel}", f"Questionnaire/{inst.loinc_panel}"):
                table[form] = code
    return table


def build_questionnaire(code: str) -> dict[str, Any]:
    """The FHIR R4 Questionnaire the project publishes for instrument ``code`` (``fhir/``).

    Item texts are "Item N" unless the registry holds licensed wording (WAI-SR and SPIN
    wording is copyrighted and not shipped). Validated with the R4B model before returning.
    """
    inst = instruments.get(code)
    items = [{"linkId": link, "text": inst.item_label(n), "type": "integer", "required": True,
              "extension": [
                  {"url": "http://hl7.org/fhir/StructureDefinition/minValue", "valueInteger": inst.item_min},
                  {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": inst.item_max}]}
             for n, link in enumerate(item_link_ids(code), start=1)]
    items.append({"linkId": total_link_id(code), "text": "Total score (sum of the items)", "type": "decimal",
                  "readOnly": True})
    resource = {
        "resourceType": "Questionnaire",
        "id": _ID_RE.sub("-", code.lower()),
        "url": questionnaire_url(code),
        "version": "1",
        "name": _ID_RE.sub("", code.replace("-", "_")),
        "title": inst.name,
        "status": "active",
        "publisher": "Alliance Monitor (open source)",
        "description": f"{inst.name}. {inst.n_items} items scored {inst.item_min}-{inst.item_max}; total "
                       f"{inst.total_min:g}-{inst.total_max:g}, "
                       f"{'higher is better' if inst.higher_is_better else 'higher is worse'}. "
                       f"Reference: {inst.reference}.",
        "subjectType": ["Patient"],
        "item": items,
    }
    Questionnaire.model_validate(resource)
    return resource


def _resources(data: bytes, max_bytes: int) -> Iterator[tuple[int, Any]]:
    """(number, raw JSON object) of each resource: a single resource or a Bundle's entries."""
    if len(data) > max_bytes:
        raise ValueError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. "
                         f"Split it into smaller files.")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ValueError("resource 1, column -: the file is not UTF-8 text; save the FHIR JSON as UTF-8.") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"resource 1, column -: the file is not valid JSON (line {exc.lineno}, column "
                         f"{exc.colno}: {exc.msg}); export it again as FHIR JSON.") from exc
    if not isinstance(doc, dict) or "resourceType" not in doc:
        raise ValueError("resource 1, column resourceType: the file is not a FHIR resource; give a "
                         "QuestionnaireResponse or a Bundle of them.")
    if doc["resourceType"] == "Bundle":
        entries = doc.get("entry") or []
        if not isinstance(entries, list) or not entries:
            raise ValueError("resource 1, column entry: the Bundle holds no entries; add QuestionnaireResponse "
                             "resources.")
        for number, entry in enumerate(entries, start=1):
            yield number, entry.get("resource") if isinstance(entry, dict) else None
    else:
        yield 1, doc


def _answer_value(answer: Any) -> float | None:
    if answer.valueInteger is not None:
        return float(answer.valueInteger)
    if answer.valueDecimal is not None:
        return float(answer.valueDecimal)
    coding = answer.valueCoding
    if coding is not None and coding.code is not None:
        if coding.code in LOINC_ANSWERS:
            return float(LOINC_ANSWERS[coding.code])
        try:
            return float(coding.code)
        except ValueError:
            return None
    return None


def _flatten(items: list[Any] | None) -> Iterator[Any]:
    for item in items or []:
        if item.answer:
            yield item
        yield from _flatten(item.item)
        for answer in item.answer or []:
            yield from _flatten(answer.item)


def _ref_id(ref: Any) -> str:
    if ref is None:
        return ""
    if ref.identifier is not None and ref.identifier.value:
        return str(ref.identifier.value).strip()
    if ref.reference:
        return str(ref.reference).rstrip("/").split("/")[-1].strip()
    return ""


def _text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def read_responses(data: bytes, *, max_bytes: int = MAX_BYTES) -> tuple[pd.DataFrame, tuple[RowError, ...]]:
    """Read FHIR JSON (one QuestionnaireResponse or a Bundle of them) as a weekly-scores table.

    Returns
    -------
    table, errors
        ``table`` has text cells: ``patient_id, therapist_id, week, instrument, score,
        administered_on, authored, item_1 …`` (``therapist_id``/``week`` may be empty: the
        database layer fills them from the patient's therapist and start date, then drops
        ``authored``); one row per resource, in order. ``errors`` name the resource number
        (1-based, the Bundle entry) and the element, as ``RowError(unit="resource")``.

    Raises
    ------
    ValueError
        When the file is not readable FHIR JSON at all.
    """
    by_url = _instrument_by_url()
    rows: list[dict[str, str]] = []
    errors: list[RowError] = []

    def err(n: int, column: str, reason: str) -> None:
        errors.append(RowError(n, column, reason, "resource"))

    for number, raw in _resources(data, max_bytes):
        row: dict[str, str] = {"patient_id": "", "therapist_id": "", "week": "", "instrument": "", "score": "",
                               "administered_on": "", "authored": ""}
        rows.append(row)
        if not isinstance(raw, dict) or raw.get("resourceType") != "QuestionnaireResponse":
            kind = raw.get("resourceType") if isinstance(raw, dict) else "missing"
            err(number, "resourceType", f"is {kind}, not a QuestionnaireResponse; only QuestionnaireResponse "
                                        f"resources can be imported.")
            continue
        try:
            qr = QuestionnaireResponse.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "-"
            err(number, where, f"is not valid FHIR R4 ({first['msg']}); fix the resource.")
            continue
        if qr.status not in ACCEPTED_STATUS:
            err(number, "status", f"is {qr.status!r}; only completed (or amended) questionnaires are imported.")
        url = (qr.questionnaire or "").split("|")[0].strip()
        code = by_url.get(url)
        if code is None:
            err(number, "questionnaire", "does not name a known instrument; use the LOINC panel "
                                         "(http://loinc.org/q/44249-1 for PHQ-9, …/69737-5 for GAD-7) or a "
                                         "Questionnaire URL published in fhir/.")
            continue
        row["instrument"] = code
        row["patient_id"] = _ref_id(qr.subject)
        if not row["patient_id"]:
            err(number, "subject", "names no patient; give subject.identifier.value (the patient code).")
        row["therapist_id"] = _ref_id(qr.author)
        for ext in qr.extension or []:
            if ext.url == WEEK_EXTENSION:
                row["week"] = "" if ext.valueInteger is None else str(ext.valueInteger)
                if ext.valueInteger is None:
                    err(number, "extension(treatment-week)", "has no valueInteger; give the week as a whole number.")
        if qr.authored is not None:
            authored = qr.authored
            row["authored"] = (authored.date() if isinstance(authored, dt.datetime) else authored).isoformat()
            row["administered_on"] = row["authored"]
        link_to_column = {link: f"item_{n}" for n, link in enumerate(item_link_ids(code), start=1)}
        link_to_column |= {f"item-{n}": f"item_{n}" for n in range(1, len(link_to_column) + 1)}
        link_to_column |= {f"item_{n}": f"item_{n}" for n in range(1, len(link_to_column) + 1)}
        link_to_column[total_link_id(code)] = "score"
        link_to_column["total"] = "score"
        answered: set[str] = set()
        for item in _flatten(qr.item):
            link = str(item.linkId).rstrip("/").split("/")[-1].strip()
            column = link_to_column.get(link)
            if column is None:
                err(number, f"item {link}", f"is not an item of {code}; check the linkId.")
                continue
            if column in answered:
                err(number, f"item {link}", "is answered twice in this resource; give each item once.")
                continue
            answered.add(column)
            value = _answer_value(item.answer[0])
            if value is None or len(item.answer) != 1:
                err(number, f"item {link}", "needs exactly one numeric answer (valueInteger, valueDecimal or a "
                                            "LOINC answer code).")
                continue
            row[column] = _text(value)
    table = pd.DataFrame(rows).fillna("").astype("string")
    items = sorted((c for c in table.columns if c.startswith("item_")), key=lambda c: int(c[5:]))
    base = ["patient_id", "therapist_id", "week", "instrument", "score", "administered_on", "authored"]
    return table[base + items], tuple(errors)


def fill_weeks(table: pd.DataFrame, *, start_dates: pd.Series) -> pd.DataFrame:
    """Fill empty ``week`` cells from ``authored`` and the patient's start date.

    ``week = (authored - start_date).days // 7 + 1``: the start date is day 1 of week 1.
    ``start_dates`` maps patient code -> date. A row without a week, authored date or start
    date keeps its empty week (the validator then reports it). Vectorised.
    """
    out = table.copy()
    start = pd.to_datetime(out["patient_id"].map(start_dates), errors="coerce")
    authored = pd.to_datetime(out["authored"].where(out["authored"].ne("")), errors="coerce")
    days = (authored - start).dt.days
    week = (np.floor_divide(days, 7) + 1).astype("Int64").astype("string")
    need = out["week"].eq("") & week.notna()
    out["week"] = out["week"].where(~need, week).fillna("")
    return out


def scores_to_bundle(scores: pd.DataFrame) -> dict[str, Any]:
    """A Bundle (type collection) of one QuestionnaireResponse per stored score.

    ``scores`` is in the core column contract (with items where stored). Each response
    carries the patient code, the therapist's account name, the week extension,
    ``authored`` = ``administered_on`` when known, the item answers and the total, so that
    :func:`read_responses` reads it back unchanged. Each resource is validated with the R4B
    model.
    """
    entries = []
    item_cols = [c for c in scores.columns if c.startswith("item_")]
    for row in scores.itertuples(index=False):  # one resource per score: serialisation, not logic
        rec = row._asdict()
        code = rec["instrument"]
        links = item_link_ids(code)
        items = []
        values = [rec.get(c) for c in item_cols[: len(links)]]
        if values and all(v is not None and not pd.isna(v) for v in values) and len(values) == len(links):
            items = [{"linkId": link, "answer": [{"valueInteger": int(v)}]} for link, v in zip(links, values,
                                                                                               strict=True)]
        total = float(rec["score"])
        answer = {"valueInteger": int(total)} if total.is_integer() else {"valueDecimal": total}
        items.append({"linkId": total_link_id(code), "answer": [answer]})
        rid = _ID_RE.sub("-", f"{rec['patient_id']}-{code}-w{int(rec['week'])}")[:64]
        resource: dict[str, Any] = {
            "resourceType": "QuestionnaireResponse", "id": rid,
            "extension": [{"url": WEEK_EXTENSION, "valueInteger": int(rec["week"])}],
            "questionnaire": questionnaire_url(code), "status": "completed",
            "subject": {"identifier": {"system": PATIENT_SYSTEM, "value": rec["patient_id"]}},
            "item": items,
        }
        if rec.get("therapist_id") is not None and not pd.isna(rec.get("therapist_id")):
            resource["author"] = {"identifier": {"system": THERAPIST_SYSTEM, "value": rec["therapist_id"]}}
        day = rec.get("administered_on")
        if day is not None and not pd.isna(day):
            resource["authored"] = pd.Timestamp(day).date().isoformat()
        QuestionnaireResponse.model_validate(resource)
        entries.append({"fullUrl": f"urn:uuid:{_uuid(rid)}", "resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _uuid(text: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{CANONICAL_BASE}/{text}"))
