"""FHIR R4 intake over HTTP on the app's own server (issue 17; docs/data-formats.md).

``GET /fhir/metadata``
    A minimal CapabilityStatement (no token needed).
``POST /fhir/QuestionnaireResponse``
    One QuestionnaireResponse, or a Bundle of type ``transaction`` of them, with
    ``Authorization: Bearer TOKEN`` (``manage.py create-api-client``). The body goes through the
    very path of ``manage.py import-fhir`` (``db.writes.read_upload``, then
    ``db.writes.import_retrying``): the same validation, all or nothing, flags updated in the
    same transaction. A resent identical resource changes nothing (200, with a note); one that
    would change a stored score is refused with 409 unless the client may replace
    (``--can-replace``), which then follows the ``--replace`` rules (old value kept in the trail).

Every answer that is not a success is an OperationOutcome naming the resource and element and
saying what is wrong and how to fix it: 400 (not JSON, not a QuestionnaireResponse or transaction
Bundle), 401 (no, unknown or revoked token; nothing is read or written), 409 (conflict with a
stored score), 413 (body over ``ALLIANCE_FHIR_MAX_BYTES``, refused before parsing: by its
Content-Length, and by stopping the read at the limit), 422 (the resources do not validate), 503
(concurrent writers kept winning; send again). Any other request under ``/fhir/`` (a read, another
resource type or method) gets 401 without a valid token and 403 with one. Every request of an
authenticated client is in the audit trail as ``fhir_request`` under ``api:NAME``; a refused token
as ``api_auth_failed``. The blocking work runs in Starlette's thread pool.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.validation import MAX_REPORTED_ERRORS, RowError, more_problems
from db import audit
from db.api_clients import Client, authenticate, client_actor
from db.engine import transaction
from db.writes import ConcurrentWrite, ImportPlan, import_retrying, read_upload
from ui.session import get_engine

MAX_BYTES_ENV = "ALLIANCE_FHIR_MAX_BYTES"
DEFAULT_MAX_BYTES = 1_000_000
FHIR_JSON = "application/fhir+json"
METADATA_PATH = "/fhir/metadata"
INTAKE_PATH = "/fhir/QuestionnaireResponse"


def max_bytes() -> int:
    """The body size limit: ``ALLIANCE_FHIR_MAX_BYTES`` (bytes), default 1 MB."""
    try:
        value = int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))
    except ValueError:
        return DEFAULT_MAX_BYTES
    return value if value > 0 else DEFAULT_MAX_BYTES


class Refusal(Exception):
    """An answer other than success: the HTTP status and the OperationOutcome's issues."""

    def __init__(self, status: int, issues: list[dict[str, Any]]) -> None:
        super().__init__(issues[0]["diagnostics"] if issues else str(status))
        self.status = status
        self.issues = issues


def issue(diagnostics: str, *, code: str = "invalid", severity: str = "error",
          expression: str | None = None) -> dict[str, Any]:
    """One ``OperationOutcome.issue``."""
    out: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        out["expression"] = [expression]
    return out


def outcome(status: int, issues: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Response:
    """An OperationOutcome response."""
    return JSONResponse({"resourceType": "OperationOutcome", "issue": issues}, status_code=status,
                        media_type=FHIR_JSON, headers={"Cache-Control": "no-store", **(headers or {})})


def capability_statement() -> dict[str, Any]:
    """What this server offers: creating QuestionnaireResponse resources, and transactions of them."""
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-03", "kind": "instance",
        "software": {"name": "Alliance Monitor"},
        "implementation": {"description": "Alliance Monitor FHIR intake: weekly questionnaire scores"},
        "fhirVersion": "4.0.1", "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "POST one QuestionnaireResponse, or a Bundle of type transaction of them (all or "
                             "nothing), with Authorization: Bearer TOKEN (manage.py create-api-client).",
            "security": {"cors": False, "description": "Bearer token per client (Authorization: Bearer TOKEN).",
                         "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                            "restful-security-service", "code": "OAuth",
                                                  "display": "OAuth"}],
                                      "text": "Bearer token issued by the clinic's admin"}]},
            "resource": [{"type": "QuestionnaireResponse", "interaction": [{"code": "create"}],
                          "versioning": "no-version", "updateCreate": False}],
            "interaction": [{"code": "transaction"}],
        }],
    }


async def metadata_route(request: Request) -> Response:
    """``GET /fhir/metadata``: the CapabilityStatement."""
    return JSONResponse(capability_statement(), media_type=FHIR_JSON)


# --- the intake ----------------------------------------------------------------------------------

def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _authenticate(token: str | None, address: str | None) -> Client | None:
    with transaction(get_engine()) as session:
        return authenticate(session, token=token, address=address)


def _too_large(limit: int, size: int | None = None) -> Refusal:
    said = f"The body is {size:,} bytes" if size is not None else "The body is larger than the limit"
    return Refusal(413, [issue(f"{said}; the limit is {limit:,} bytes ({MAX_BYTES_ENV}). Send fewer "
                               f"QuestionnaireResponse resources per request (split the Bundle).", code="too-long")])


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) by its Content-Length or once the stream passes ``limit``, unparsed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Refusal(400, [issue("The Content-Length header is not a number; send a well-formed HTTP "
                                      "request.", code="structure")])
        if int(declared) > limit:
            raise _too_large(limit, int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_shape(body: bytes) -> bool:
    """What the endpoint asks beyond import-fhir: a Bundle must be a transaction. True for a Bundle."""
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False  # read_upload names the problem, exactly as import-fhir does
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        return False
    if doc.get("type") != "transaction":
        raise Refusal(400, [issue(f"The Bundle is of type {doc.get('type')!r}; POST one QuestionnaireResponse or "
                                  f"a Bundle of type 'transaction' (stored all or nothing).", code="structure",
                                  expression="Bundle.type")])
    return True


#: The weekly-scores columns the validator names, as the QuestionnaireResponse elements they came from.
_ELEMENTS = {"patient_id": "subject", "therapist_id": "author", "instrument": "questionnaire",
             "week": "extension", "administered_on": "authored", "score": "item"}


def _expression(err: RowError, bundle: bool) -> str:
    """Where the problem is, as a FHIRPath-like expression (the diagnostics name it in words too)."""
    where = f"Bundle.entry[{err.row - 1}].resource" if bundle and err.row else "QuestionnaireResponse"
    column = err.column or "-"
    if column.startswith("item "):
        element = f"item.where(linkId='{column[5:]}')"
    elif column.startswith("item_"):
        element = "item"
    else:
        element = _ELEMENTS.get(column, column.split("(")[0])
    return where if element == "-" else f"{where}.{element}"


def _validation_refusal(result: Any, bundle: bool) -> Refusal:
    errors = list(result.errors)
    status = 400 if any(e.column == "resourceType" for e in errors) else 422
    issues = [issue(str(e), code="structure" if status == 400 else "invalid", expression=_expression(e, bundle))
              for e in errors]
    if more := more_problems(result):
        issues.append(issue(more, severity="information", code="informational"))
    n = result.n_errors
    issues.append(issue(f"{n:,} problem{'s' if n != 1 else ''}; nothing was written. Correct the resources and "
                        f"send them again.", severity="information", code="informational"))
    return Refusal(status, issues)


def _conflict_refusal(plan: ImportPlan, bundle: bool) -> Refusal:
    issues = [issue(str(e).split("; import with replace")[0] + "; this client may not replace stored scores.",
                    code="conflict", expression=_expression(e, bundle))
              for e in plan.errors[:MAX_REPORTED_ERRORS]]
    issues.append(issue(f"{plan.conflicts} resource{'s' if plan.conflicts != 1 else ''} would change a stored "
                        f"score; nothing was written. Send the stored values, or ask the clinic's admin for a client "
                        f"that may replace scores (manage.py create-api-client NAME --can-replace).",
                        code="conflict"))
    return Refusal(409, issues)


def _intake(client: Client, body: bytes, limit: int) -> tuple[int, dict[str, Any], str]:
    """Validate and store ``body`` (the import-fhir path): the status, the answer's JSON, a summary."""
    bundle = _check_shape(body)
    actor = client_actor(client)
    with transaction(get_engine()) as session:
        try:
            result = read_upload(session, actor=actor, data=body, name="QuestionnaireResponse.json",
                                 max_bytes=limit)
        except ValueError as exc:
            raise Refusal(400, [issue(f"{exc}", code="structure")]) from exc
        session.rollback()  # read only
    if not result.ok:
        raise _validation_refusal(result, bundle)
    try:
        plan = import_retrying(get_engine(), actor=actor, scores=result.scores, replace=client.can_replace,
                               filename=INTAKE_PATH, source="fhir", first_row=1, unit="resource")
    except ConcurrentWrite as exc:
        raise Refusal(503, [issue(str(exc), code="transient")]) from exc
    if plan.conflicts and not client.can_replace:
        raise _conflict_refusal(plan, bundle)
    return _success(plan, bundle)


def _success(plan: ImportPlan, bundle: bool) -> tuple[int, dict[str, Any], str]:
    replaced = plan.conflicts
    summary = (f"Stored {plan.new} new, {plan.unchanged} unchanged, {replaced} replaced score"
               f"{'s' if plan.new + plan.unchanged + replaced != 1 else ''}.")
    if plan.new == 0 and replaced == 0:
        summary += " Every resource was already stored with the same values; nothing changed."
    notes = [issue(n, severity="information", code="informational") for n in
             (plan.creation_note(), plan.therapist_note(), plan.risk_note(), plan.calendar_note()) if n]
    head = {"resourceType": "OperationOutcome",
            "issue": [issue(summary, severity="information", code="informational"), *notes]}
    if not bundle:
        return (201 if plan.new else 200), head, summary
    status_of = {"new": "201 Created", "unchanged": "200 OK", "conflict": "200 OK"}
    rows = plan.rows.sort_values("file_row")
    entries = [{"response": {"status": status_of[c], "outcome": {
        "resourceType": "OperationOutcome", "issue": [issue(
            {"new": "Stored.", "unchanged": "Already stored with the same values; nothing changed.",
             "conflict": "Replaced the stored score (the old value is kept in the audit trail)."}[c],
            severity="information", code="informational")]}}} for c in rows["change"]]
    return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}, summary


def _audit_request(client: Client, address: str | None, status: int, **detail: Any) -> None:
    with transaction(get_engine()) as session:
        audit.record(session, actor=client_actor(client), action="fhir_request", status=status, address=address,
                     **detail)


def _no_token() -> Response:
    return outcome(401, [issue("The request carries no valid bearer token (missing, unknown or revoked); send "
                               "Authorization: Bearer TOKEN with a token from manage.py create-api-client. "
                               "Nothing was written.", code="login")],
                   headers={"WWW-Authenticate": 'Bearer realm="fhir"'})


async def intake_route(request: Request) -> Response:
    """``POST /fhir/QuestionnaireResponse`` (module docstring)."""
    address = _address(request)
    client = await run_in_threadpool(_authenticate, _bearer(request), address)
    if client is None:
        return _no_token()
    limit = max_bytes()
    try:
        body = await _read_body(request, limit)
        status, answer, summary = await run_in_threadpool(_intake, client, body, limit)
    except Refusal as refusal:
        await run_in_threadpool(_audit_request, client, address, refusal.status,
                                problem=refusal.issues[0]["diagnostics"][:300])
        return outcome(refusal.status, refusal.issues)
    await run_in_threadpool(_audit_request, client, address, status, outcome=summary)
    return JSONResponse(answer, status_code=status, media_type=FHIR_JSON, headers={"Cache-Control": "no-store"})


async def other_route(request: Request) -> Response:
    """Every other request under ``/fhir/`` (a read, another resource type, another method): 401
    without a valid token, 403 with one, since a client may only send scores. Never the app's page."""
    address = _address(request)
    client = await run_in_threadpool(_authenticate, _bearer(request), address)
    if client is None:
        return _no_token()
    await run_in_threadpool(_audit_request, client, address, 403, problem=f"{request.method} {request.url.path}")
    return outcome(403, [issue(f"This client may only send scores (POST {INTAKE_PATH}, one QuestionnaireResponse "
                               f"or a transaction Bundle); {request.method} {request.url.path} is not offered, and "
                               "no route reads patient data. Nothing was read or written.", code="forbidden")])


FHIR_ROUTES = [
    Route(METADATA_PATH, metadata_route, methods=["GET"]),
    Route(INTAKE_PATH, intake_route, methods=["POST"]),
    Route("/fhir/{rest:path}", other_route, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
]
