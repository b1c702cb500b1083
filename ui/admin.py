"""Streamlit glue for the admin page: uncached reads and audited changes of accounts.

Nothing here is cached: account lists and the audit trail must show the very latest state, and
they are small. Every change runs one ``db.accounts`` (or ``db.writes``) function in its own
transaction; a refusal comes back as the sentence to show, and nothing is half-written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from core import clock
from core.caseload import STATUS_WORDS
from core.exporting import to_csv_bytes
from core.markdown import text
from db import accounts, audit, mfa
from db.access import SYSTEM, Actor
from db.engine import session_factory, transaction
from db.models import PATIENT_STATUSES, ROLES
from db.queries import list_patients
from db.writes import PermissionDenied, create_account, set_patient_calendar
from ui.session import get_engine

_FLASH = "admin_flash"


def account_table(actor: Actor) -> pd.DataFrame:
    """Every account (admins only; see ``db.accounts.account_table``)."""
    with session_factory(get_engine())() as session:
        return accounts.account_table(session, actor=actor)


def mfa_required(actor: Actor) -> list[str]:
    """The roles that must use two-step login (``db.mfa.required_roles``), in the order of ROLES."""
    with session_factory(get_engine())() as session:
        required = mfa.required_roles(session)
    return [r for r in ROLES if r in required]


def patient_table(actor: Actor) -> pd.DataFrame:
    """The patients the admin may see (all), with their therapist."""
    with session_factory(get_engine())() as session:
        return list_patients(session, actor=actor)


#: Statuses in the order the admin chooses them.
STATUSES = list(PATIENT_STATUSES)


def status_words(status: str) -> str:
    """A status as the admin reads it (``dropped_out`` -> "dropped out (discharged)")."""
    return STATUS_WORDS.get(status, status).capitalize()


def known(value: Any) -> bool:
    """True unless ``value`` is missing (None, NaN, NaT, <NA>)."""
    return not pd.isna(value)


def day(value: Any) -> dt.date | None:
    """A stored date as a ``datetime.date`` (``None`` when missing)."""
    return None if pd.isna(value) else pd.Timestamp(value).date()


def day_text(values: pd.Series) -> pd.Series:
    """Dates as ``YYYY-MM-DD`` text, blank where missing (a table column of one type)."""
    return pd.to_datetime(values, errors="coerce").dt.strftime("%Y-%m-%d").fillna("")


def save_calendar(actor: Actor, *, code: str, reason: str | None = None, **fields: Any) -> str | None:
    """Set a patient's calendar or add a patient (``db.writes.set_patient_calendar``); see :func:`change`."""
    created = fields.get("create", False)
    done = (f"Added patient {code.strip()}." if created else f"Saved the calendar of {code}.")
    return change(actor, set_patient_calendar, done, code=code, reason=reason or None, **fields)


def change(actor: Actor, action: Callable[..., Any], done: str, **kwargs: Any) -> str | None:
    """Run ``action(session, actor=actor, **kwargs)`` in a transaction.

    Returns ``None`` on success (and keeps ``done`` to show after the rerun), else the error
    sentence; on an error nothing is written.
    """
    try:
        with transaction(get_engine()) as session:
            action(session, actor=actor, **kwargs)
    except (ValueError, PermissionDenied) as exc:
        return str(exc)
    st.session_state[_FLASH] = done
    return None


def finish(error: str | None) -> None:
    """Show ``error``, or rerun so that the page shows the change (and its success message)."""
    if error:
        st.error(text(error))  # a sentence that may quote what the admin typed: shown as text
    else:
        st.rerun()


def add_account(actor: Actor, **kwargs: Any) -> str | None:
    """Create an account (``db.writes.create_account``); see :func:`change`. On success the next
    "Add account" form is a fresh, empty one (:func:`add_account_form`); a refusal keeps the
    typed fields, so the admin corrects what the sentence names."""
    error = change(actor, create_account, f"Added the account {kwargs.get('name')}.", **kwargs)
    if error is None:
        st.session_state[_ADD_FORM] = add_account_form() + 1
    return error


_ADD_FORM = "add_account_form"


def add_account_form() -> int:
    """The number of the current "Add account" form (its widget keys end with it)."""
    return int(st.session_state.get(_ADD_FORM, 0))


def _detail_words(detail: object) -> str:
    """An audit row's JSON detail as "field: value; …" (lists joined, at most 12 items shown)."""
    if not isinstance(detail, str) or not detail:
        return ""
    try:
        data = json.loads(detail)
    except ValueError:
        return detail
    if not isinstance(data, dict):
        return str(data)

    def value(v: object) -> str:
        if v is None or v == "":
            return "—"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, list):
            shown = ", ".join(value(x) for x in v[:12])
            return shown + (f" and {len(v) - 12} more" if len(v) > 12 else "")
        if isinstance(v, dict):
            return ", ".join(f"{k.replace('_', ' ')} {value(x)}" for k, x in v.items())
        return str(v)

    return "; ".join(f"{k.replace('_', ' ')}: {value(v)}" for k, v in data.items())


def readable_trail(events: pd.DataFrame) -> pd.DataFrame:
    """The audit rows for the viewer: ``action_words`` ("view clinic") and ``details`` (the JSON
    detail field by field, e.g. "team: North; started from: —") added; nothing dropped."""
    return events.assign(action_words=events["action"].astype(str).str.replace("_", " ", regex=False),
                         details=events["detail"].map(_detail_words).astype(str),
                         patient_code=events["patient_code"].astype(object).where(events["patient_code"].notna(), ""))


def trail_csv(actor: Actor, events: pd.DataFrame) -> Callable[[], bytes]:
    """A ``st.download_button`` data callable: the shown audit rows as CSV (formula-escaped), the
    export itself recorded in the trail when it is downloaded."""
    engine = get_engine()

    def make() -> bytes:
        with transaction(engine) as session:
            audit.record(session, actor=actor, action="export", what="audit trail", rows=len(events), format="csv")
        out = events.assign(at=pd.to_datetime(events["at"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return to_csv_bytes(out)

    return make


def flash() -> str | None:
    """The success message of the last change, once."""
    return st.session_state.pop(_FLASH, None)


def audit_actions(actor: Actor) -> list[str]:
    """The distinct actions in the audit trail (admins only)."""
    with session_factory(get_engine())() as session:
        return accounts.audit_actions(session, actor=actor)


def trail(actor: Actor, **filters: Any) -> pd.DataFrame:
    """The filtered audit trail; the viewing itself is audited once per session and filter
    combination."""
    with session_factory(get_engine())() as session:
        frame = accounts.audit_trail(session, actor=actor, **filters)
    key = repr(sorted(filters.items()))
    seen: set[str] = st.session_state.setdefault("audited_trail_views", set())
    if key not in seen:
        with transaction(get_engine()) as session:
            audit.record(session, actor=actor, action="view_audit",
                         **{f"filter_{k}": v for k, v in filters.items() if v not in (None, "")})
        seen.add(key)
    return frame


def verify(actor: Actor) -> tuple[bool, str]:
    """Check the audit trail's hash chain (admins only; the check is audited)."""
    if actor.role != "admin":
        raise PermissionDenied("Only an admin may do this; ask your clinic's admin.")
    with transaction(get_engine()) as session:  # an intact trail gets a signed checkpoint
        report = audit.verify_and_checkpoint(session)
    with transaction(get_engine()) as session:
        audit.record(session, actor=actor, action="verify_audit", ok=report.ok)
    return report.ok, report.message


def today() -> dt.date:
    return clock.today()


# --- Backups: when they ran, from the audit trail ---------------------------------------------
#: docs/operations.md asks for a daily backup; a last backup older than this gets a warning.
BACKUP_DUE = dt.timedelta(days=2)
BACKUP_ACTIONS = ("backup", "restore")


def backup_history(actor: Actor, *, limit: int = 50) -> pd.DataFrame:
    """The last ``limit`` backups and restores recorded in the audit trail, newest first (admins
    only): ``at``, ``actor``, ``action``, ``file`` and ``rows`` (audit rows the copy held)."""
    with session_factory(get_engine())() as session:
        frames = [accounts.audit_trail(session, actor=actor, action=action, limit=limit) for action in BACKUP_ACTIONS]
    events = pd.concat(frames, ignore_index=True).sort_values("id", ascending=False).head(limit)
    details = [json.loads(d) if isinstance(d, str) and d else {} for d in events["detail"]]
    return pd.DataFrame({
        "at": events["at"].to_numpy(), "actor": events["actor"].to_numpy(), "action": events["action"].to_numpy(),
        "file": [str(d.get("file", "")) for d in details],
        "rows": pd.array([d.get("rows", d.get("restored_rows")) for d in details], dtype="Int64")})


def backup_state(history: pd.DataFrame, *, dialect: str, now: dt.datetime) -> tuple[str, str]:
    """``(level, sentence)`` about the last backup: ``"ok"``, ``"warning"`` or ``"info"``; the sentence
    is Markdown, its user parts (account, file name) escaped.

    On PostgreSQL, backups are made with ``pg_dump`` outside the app and are not in the trail, so
    the page says so rather than warn of a backup it cannot see."""
    if dialect != "sqlite":
        return "info", ("This clinic's database is PostgreSQL: its backups are made with pg_dump on the database "
                        "server (docs/operations.md) and are not recorded here; check them there.")
    made = history[history["action"] == "backup"]
    if made.empty:
        return "warning", ("No backup of this database is recorded. Run `python manage.py backup FILE` (daily, with "
                           "the copy kept off this machine; docs/operations.md).")
    last = pd.Timestamp(made["at"].iloc[0])
    age = now - last.to_pydatetime()
    who = made["actor"].iloc[0]
    by = "from the command line" if who == SYSTEM.name else f"by {text(who)}"
    when = f"{last:%Y-%m-%d %H:%M} UTC {by}, to {text(made['file'].iloc[0])}"
    if age > BACKUP_DUE:
        return "warning", (f"The last backup was {age.days} days ago ({when}). Run `python manage.py backup FILE` "
                           "now and schedule it daily (docs/operations.md).")
    return "ok", f"Last backup: {when}."


def database_dialect() -> str:
    """``sqlite`` or ``postgresql``: which backup advice applies."""
    return get_engine().dialect.name


# --- Rule parameters: the clinic's frozen, versioned numbers ----------------------------------

def parameter_table(actor: Actor) -> tuple[int | None, pd.DataFrame, pd.DataFrame]:
    """The rule set in force (version, one row per instrument with its provenance) and the
    week-1 scores the clinic has per instrument (to judge whether its own SD can be frozen)."""
    from db.parameters import rule_sets, week1_sds

    if actor.role != "admin" or not actor.active:
        return None, pd.DataFrame(), pd.DataFrame()
    with session_factory(get_engine())() as session:
        sets = rule_sets(session)
        own = week1_sds(session)
    if not sets:
        return None, pd.DataFrame(), pd.DataFrame()
    current = sets[-1]
    def num(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    rows = [{"instrument": code, "sd": num(p.get("sd"), ".2f"), "r": num(p.get("r"), ".2f"),
             "rc": num(p.get("rc"), "g"), "source": p["source"]} for code, p in sorted(current.instruments.items())]
    history = pd.DataFrame([{"version": s.version, "created_at": s.created_at, "created_by": s.created_by,
                             "note": s.note} for s in reversed(sets)])
    table = pd.DataFrame(rows)
    week1 = {c: f"{n} (SD {sd:.2f})" for c, (n, sd) in own.items()}
    table["week1"] = table["instrument"].map(week1).astype(object).fillna("none")
    return current.version, table[["instrument", "sd", "r", "rc", "week1", "source"]], history


def freeze(actor: Actor, instruments: list[str]) -> str | None:
    """Freeze the clinic's own week-1 SD of ``instruments`` and recompute every flag once, in one
    transaction; ``None`` on success, else the sentence to show."""
    from db.parameters import freeze_own_sd

    if not instruments:
        return "Choose at least one instrument whose week-1 SD to freeze."
    return _new_rule_set(
        lambda session: freeze_own_sd(session, actor=actor, instruments=instruments),
        lambda info, n: (f"Rule set {info.version} is in force: froze the clinic's own SD of "
                         f"{', '.join(instruments)}; {n} flags recomputed and stored."))


def course_table(actor: Actor) -> pd.DataFrame:
    """The expected courses in force (alliance: ``below_expected``; symptoms: ``not_on_track``), with sources."""
    from db.parameters import course_defaults, current_rule_set

    if actor.role != "admin" or not actor.active:
        return pd.DataFrame()
    with session_factory(get_engine())() as session:
        current = current_rule_set(session)
    course = {**course_defaults(current), **(current.course if current else {})}
    rows = []
    for code, p in sorted(course.items()):
        if "week_means" in p:  # an alliance course (below_expected)
            rows.append({"instrument": code, "course": "mean by week " + ", ".join(f"{v:.1f}" for v in p["week_means"]),
                         "spread": f"week to week {p['within_sd']:.2f} (weight {p['prior_weeks']:.1f} weeks)",
                         "source": p["source"]})
        else:  # a symptom course (not_on_track)
            unit = "log-week" if p["time"] == "log" else "week"
            rows.append({"instrument": code, "course": f"{p['slope']:+.2f} per {unit} from the intake "
                                                       f"({p['intake_slope']:+.3f} per intake point above "
                                                       f"{p['intake_mean']:.1f})",
                         "spread": f"rates {p['slope_sd']:.2f}, weeks {p['resid_sd']:.2f}", "source": p["source"]})
    return pd.DataFrame(rows)


def rule_table(actor: Actor) -> pd.DataFrame:
    """Every rule parameter with the release's default and the value in force."""
    from db.parameters import current_rule_set, rule_settings_table

    if actor.role != "admin" or not actor.active:
        return pd.DataFrame()
    with session_factory(get_engine())() as session:
        current = current_rule_set(session)
    if current is None:
        return pd.DataFrame()
    rows = rule_settings_table(current)
    return pd.DataFrame([{"rule": r["rule"], "param": r["param"] or "(value)", "value": str(r["value"]),
                          "default": str(r["default"]), "changed": "changed" if r["changed"] else ""} for r in rows])


def _new_rule_set(write: Callable[[Any], Any], done: Callable[[Any, int], str]) -> str | None:
    """Write a new rule set with ``write(session)`` and recompute every flag once, in one transaction;
    ``None`` on success (the flash says ``done(info, n)``), else the sentence to show."""
    from db.flagstore import refresh_all

    try:
        with transaction(get_engine()) as session:
            info = write(session)
            n = refresh_all(session)
    except (ValueError, PermissionError) as exc:
        return str(exc)
    st.session_state[_FLASH] = done(info, n)
    return None


def set_rule(actor: Actor, *, rule: str, param: str, value: str, reason: str) -> str | None:
    """Change one rule setting (a new rule set) and recompute every flag once; ``None`` on success."""
    from db.parameters import parse_value
    from db.parameters import set_rule as store_rule

    name = None if param in ("(on/off)", "(value)") else param
    return _new_rule_set(
        lambda session: store_rule(session, actor=actor, rule=rule, param=name, value=parse_value(value),
                                   reason=reason),
        lambda info, n: f"Rule set {info.version} is in force ({info.note}); {n} flags recomputed and stored.")


def freeze_course(actor: Actor) -> str | None:
    """Freeze the clinic's own expected alliance course and recompute every flag once; ``None`` on success."""
    from db.parameters import freeze_course as store_course

    return _new_rule_set(
        lambda session: store_course(session, actor=actor),
        lambda info, n: (f"Rule set {info.version} is in force: froze the clinic's own expected alliance course; "
                         f"{n} flags recomputed and stored."))


# --- API clients of the FHIR endpoint (db.api_clients) ----------------------------------------

_NEW_TOKEN = "admin_new_api_token"


def api_client_table(actor: Actor) -> pd.DataFrame:
    """Every API client, live and revoked (``db.api_clients.list_clients``)."""
    from db.api_clients import list_clients

    with session_factory(get_engine())() as session:
        return list_clients(session, actor=actor)


def create_api_client(actor: Actor, *, name: str, can_replace: bool) -> str | None:
    """Add an API client; its token is kept for the next run only (:func:`new_token`), so the page
    shows it once. Returns the error sentence, or ``None``."""
    from db.api_clients import create_client

    try:
        with transaction(get_engine()) as session:
            client, token = create_client(session, actor=actor, name=name, can_replace=can_replace)
    except (ValueError, PermissionDenied) as exc:
        return str(exc)
    st.session_state[_NEW_TOKEN] = (client.name, token)
    st.session_state[_FLASH] = f"Added the API client {client.name}."
    return None


def new_token() -> tuple[str, str] | None:
    """The (name, token) of the client created by the last run, once: it is forgotten here."""
    return st.session_state.pop(_NEW_TOKEN, None)


def revoke_api_client(actor: Actor, name: str) -> str | None:
    """End an API client at once (``db.api_clients.revoke_client``); see :func:`change`."""
    from db.api_clients import revoke_client

    return change(actor, revoke_client, f"Revoked the API client {name}; its token is refused from now on.",
                  name=name)


# --- Alert e-mails (db.notifications, mail.smtp) ----------------------------------------------

def notification_status(actor: Actor) -> tuple[str | None, dict[str, int], pd.DataFrame]:
    """Whether alert e-mails can be sent (``None``, or the sentence saying why not and how to fix
    it), the queue's counts by state, and the rows that need an admin (admins only)."""
    from core.notifications import event_label
    from db import notifications
    from mail.smtp import NOT_CONFIGURED, public_url, smtp_settings

    try:
        problem = None if smtp_settings() is not None else NOT_CONFIGURED
    except ValueError as exc:
        problem = f"Alert e-mails are not sent: {exc}"
    with session_factory(get_engine())() as session:
        counts = notifications.queue_counts(session, actor=actor)
        rows = notifications.problem_rows(session, actor=actor)
    if problem is None and not public_url():
        problem = ("Alert e-mails are sent, but their links have no address: set ALLIANCE_PUBLIC_URL to the "
                   "app's address (such as https://alliance.clinic.org) so that a link opens the patient page.")
    return problem, counts, rows.assign(event=rows["event"].map(event_label))
