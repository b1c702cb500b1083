"""Alliance Monitor's command line (CONTRACT.md): ``python manage.py COMMAND``.

Exit codes: 0 success; 2 bad input (nothing written); 1 any other failure. Errors go to
stderr, one line each, naming the file row and column and a reason, never echoing health
data beyond the patient code.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:  # pandas, SQLAlchemy and the models load in the commands that use them: --help stays fast
    import pandas as pd

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Alliance Monitor: weekly alliance and symptom monitoring for therapy clinics.")

DbOption = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL; wins over ALLIANCE_DB_URL.")]
SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
DEMO_PASSWORD = "demo-password-2026"


class Fmt(enum.StrEnum):
    csv = "csv"
    json = "json"


class CsvOnly(enum.StrEnum):
    csv = "csv"


class Role(enum.StrEnum):
    therapist = "therapist"
    supervisor = "supervisor"
    admin = "admin"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _engine(db: str | None, *, migrate: bool = True):  # type: ignore[no-untyped-def]
    from db.engine import is_current, make_engine, upgrade
    from db.flagstore import ensure_current

    try:
        engine = make_engine(db)
        if migrate:
            if not is_current(engine):
                upgrade(engine)
            if ensure_current(engine):  # first start after the upgrade to stored flags
                typer.echo("Computed and stored every flag once (first start under this rule set).", err=True)
        return engine
    except ValueError as exc:
        fail(str(exc), 2)
    except Exception as exc:
        fail(f"Cannot open the database ({type(exc).__name__}: {str(exc).splitlines()[0]}); check --db or "
             f"ALLIANCE_DB_URL and that the server is running.")


def _report_problems(name: str, result) -> NoReturn:  # type: ignore[no-untyped-def]
    """Print the listed problems (the first ones by row), the count of the others, and exit 2."""
    from core.validation import more_problems

    for err in result.errors:
        typer.echo(f"{name}: {err}", err=True)
    more = more_problems(result)
    if more:
        typer.echo(f"{name}: {more}", err=True)
    typer.echo(f"{name}: {result.n_errors:,} problem{'s' if result.n_errors != 1 else ''}; nothing was written.",
               err=True)
    raise typer.Exit(2)


def _load_validated(data: bytes, name: str) -> pd.DataFrame:
    from core.validation import read_scores_file, validate_scores

    try:
        raw = read_scores_file(data, name=name)
    except ValueError as exc:
        fail(f"{name}: {exc}", 2)
    result = validate_scores(raw)
    if not result.ok:
        _report_problems(name, result)
    return result.scores


@app.command("init-db")
def init_db(db: DbOption = None) -> None:
    """Create or upgrade the schema to the newest migration."""
    from db.engine import database_url

    _engine(db)
    typer.echo(f"The database at {database_url(db).split('@')[-1]} is at the newest schema.")


def _demo_weeks_late() -> int:
    """Whole weeks from the demo's day to the last Monday on or before the clinic's day
    (``core.clock``): how far ``seed-demo`` moves every date so that the demo's active patients
    are current, not weeks overdue. 0 with ``ALLIANCE_TODAY=2026-11-23`` (as in CATALOG.md)."""
    from core import clock
    from sample_data.generate import DEMO_TODAY

    return max((clock.today() - DEMO_TODAY).days // 7, 0)


def _dated(frame: pd.DataFrame, column: str, weeks: int) -> pd.DataFrame:
    """``frame`` with the dates in ``column`` (dates or ``YYYY-MM-DD`` text) ``weeks`` weeks later,
    as dates; blanks stay blank."""
    import pandas as pd

    if not weeks:
        return frame
    day = pd.to_datetime(frame[column], errors="coerce") + pd.Timedelta(weeks=weeks)
    return frame.assign(**{column: day.dt.date.astype(object).where(day.notna(), None)})


@app.command("seed-demo")
def seed_demo(force: Annotated[bool, typer.Option("--force", help="Load even into a non-empty database.")] = False,
              if_empty: Annotated[bool, typer.Option("--if-empty", help="Do nothing (exit 0) when the "
                                                     "database already holds patients.")] = False,
              db: DbOption = None) -> None:
    """Load the synthetic demo clinic and its demo accounts (password: demo-password-2026)."""
    import pandas as pd
    from sqlalchemy import func, select

    from db import notifications
    from db.access import SYSTEM
    from db.engine import transaction
    from db.flagstore import refresh_all
    from db.models import Account, Patient
    from db.parameters import freeze_own_sd
    from db.writes import apply_import, create_account, plan_import, set_patient_details, set_setting
    from sample_data.generate import DEMO_TODAY

    engine = _engine(db)
    with transaction(engine) as session:
        n = session.scalar(select(func.count()).select_from(Patient)) or 0
        if n and if_empty:
            typer.echo(f"The database already holds {n} patients; the demo clinic was not loaded again.")
            return
        if n and not force:
            fail(f"The database already holds {n} patients; seed-demo loads only into an empty database "
                 f"(use --force to load the demo clinic anyway).", 2)
        # demo mode first: the demo accounts' public password is allowed on the demo clinic only
        set_setting(session, actor=SYSTEM, key="demo", value="1")
        # The demo accounts share a password printed in the README: a second step would guard
        # nothing, so the demo clinic requires two-step login of no role (anyone may still enrol).
        set_setting(session, actor=SYSTEM, key="mfa_required_roles", value="")
        accounts = pd.read_csv(SAMPLE_DIR / "demo_accounts.csv", dtype=str, keep_default_na=False)
        for a in accounts.itertuples(index=False):
            if session.scalar(select(Account.id).where(Account.name == a.name, Account.password_hash.is_not(None))):
                continue
            create_account(session, actor=SYSTEM, name=a.name, role=a.role, password=DEMO_PASSWORD,
                           team=a.team or None, display_name=a.display_name)
        weeks = _demo_weeks_late()
        scores = _dated(_load_validated((SAMPLE_DIR / "demo_scores.csv").read_bytes(), "demo_scores.csv"),
                        "administered_on", weeks)
        plan = plan_import(session, actor=SYSTEM, scores=scores)
        queued = notifications.last_id(session)
        counts = apply_import(session, actor=SYSTEM, plan=plan, replace=True, source="demo",
                              filename="demo_scores.csv")
        notifications.discard_since(session, actor=SYSTEM, after_id=queued)  # a loaded history mails nobody
        patients = pd.read_csv(SAMPLE_DIR / "demo_patients.csv", dtype=str)
        set_patient_details(session, actor=SYSTEM, details=_dated(patients, "start_date", weeks))
        # The demo clinic freezes its own SPIN week-1 SD (no SD is published for SPIN).
        frozen = freeze_own_sd(session, actor=SYSTEM)
        refresh_all(session)
    typer.echo(f"Loaded the demo clinic: {len(accounts)} accounts, {scores['patient_id'].nunique()} patients, "
               f"{counts['new']} new scores. Demo password for every account: {DEMO_PASSWORD}")
    latest = DEMO_TODAY + dt.timedelta(weeks=weeks)
    typer.echo(f"The demo's latest questionnaires are dated Monday {latest:%Y-%m-%d}"
               + (f" (sample_data/CATALOG.md's dates moved {weeks} weeks on, so that the demo clinic is current)."
                  if weeks else " (the dates of sample_data/CATALOG.md)."))
    typer.echo(f"Rule set {frozen.version}: " + "; ".join(f"{c} {p['source']}" for c, p in sorted(
        frozen.instruments.items()) if p["source"].startswith("this clinic")))


def _import(file: Path, *, db: str | None, dry_run: bool, replace: bool, source: str) -> None:
    """Read, validate, plan and write one file, all or nothing (import-scores, import-fhir)."""
    from db.access import SYSTEM
    from db.engine import transaction
    from db.writes import ConcurrentWrite, import_retrying, is_fhir, plan_import, read_upload

    if not file.is_file():
        fail(f"{file}: no such file; check the path.", 2)
    data = file.read_bytes()
    engine = _engine(db)
    with transaction(engine) as session:
        try:
            result = read_upload(session, actor=SYSTEM, data=data, name=file.name)
        except ValueError as exc:
            fail(f"{file.name}: {exc}", 2)
        if not result.ok:
            _report_problems(file.name, result)
        fhir = is_fhir(data, file.name)
        unit = "resource" if fhir else "row"
        if dry_run:
            plan = plan_import(session, actor=SYSTEM, scores=result.scores, first_row=1 if fhir else 2, unit=unit)
            _refuse_conflicts(file.name, plan, unit, replace=replace)
            typer.echo(f"Dry run of {file.name}: would write {_summary(plan)}; nothing was written.")
            _note_therapists(plan)
            session.rollback()
            return
    try:  # plan and write in one transaction, retried if a concurrent writer got there first
        plan = import_retrying(engine, actor=SYSTEM, scores=result.scores, replace=replace, filename=file.name,
                               source="fhir" if fhir else source, first_row=1 if fhir else 2, unit=unit)
    except ConcurrentWrite as exc:
        fail(f"{file.name}: {exc}", 1)
    _refuse_conflicts(file.name, plan, unit, replace=replace)
    typer.echo(f"Imported {file.name}: {_summary(plan)}.")
    _note_therapists(plan)


def _note_therapists(plan) -> None:  # type: ignore[no-untyped-def]
    """Say so when rows name another therapist than the caseload their patient stays on."""
    for note in (plan.creation_note(), plan.therapist_note(), plan.risk_note(), plan.calendar_note()):
        if note:
            typer.echo(f"Note: {note}")


def _summary(plan) -> str:  # type: ignore[no-untyped-def]
    return f"{plan.new} new, {plan.unchanged} unchanged, {plan.conflicts} replaced"


def _refuse_conflicts(name: str, plan, unit: str, *, replace: bool) -> None:  # type: ignore[no-untyped-def]
    """Exit 2 naming the first conflicting rows when the plan has conflicts and --replace is off."""
    from core.validation import MAX_REPORTED_ERRORS

    if plan.conflicts and not replace:
        for err in plan.errors[:MAX_REPORTED_ERRORS]:
            typer.echo(f"{name}: {err}", err=True)
        if len(plan.errors) > MAX_REPORTED_ERRORS:
            typer.echo(f"{name}: … and {len(plan.errors) - MAX_REPORTED_ERRORS:,} more conflicting {unit}s (only "
                       f"the first {MAX_REPORTED_ERRORS} are listed).", err=True)
        typer.echo(f"{name}: {plan.conflicts} {unit}s conflict with stored scores; nothing was written "
                   f"(use --replace to overwrite them).", err=True)
        raise typer.Exit(2)


DryRun = Annotated[bool, typer.Option("--dry-run", help="Check and report; write nothing.")]
Replace = Annotated[bool, typer.Option("--replace", help="Overwrite conflicting stored scores (old values stay "
                                                         "in the audit trail).")]


@app.command("import-scores")
def import_scores(file: Annotated[Path, typer.Argument(help="A weekly-scores file (CONTRACT.md): CSV, comma or "
                                                     "semicolon, UTF-8 with or without BOM; or Excel .xlsx.")],
                  dry_run: DryRun = False, replace: Replace = False, db: DbOption = None) -> None:
    """Import a weekly-scores file (CSV or .xlsx), all or nothing."""
    _import(file, db=db, dry_run=dry_run, replace=replace, source="import")


@app.command("import-fhir")
def import_fhir(file: Annotated[Path, typer.Argument(help="FHIR R4 JSON: a QuestionnaireResponse or a Bundle "
                                                   "of them (docs/data-formats.md).")],
                dry_run: DryRun = False, replace: Replace = False, db: DbOption = None) -> None:
    """Import FHIR QuestionnaireResponse resources (PHQ-9/GAD-7 by LOINC; others by fhir/ URLs), all or nothing."""
    _import(file, db=db, dry_run=dry_run, replace=replace, source="fhir")


@app.command("export")
def export(patient: Annotated[str | None, typer.Option("--patient", help="Only this patient's scores.")] = None,
           format: Annotated[CsvOnly, typer.Option("--format")] = CsvOnly.csv,
           db: DbOption = None) -> None:
    """Scores as CSV to stdout, formula-escaped; the export is audited."""
    from core.exporting import weekly_scores_csv
    from db import audit
    from db.access import SYSTEM
    from db.engine import transaction
    from db.queries import read_scores

    engine = _engine(db)
    with transaction(engine) as session:
        scores = read_scores(session, actor=SYSTEM, patient_code=patient, items_as_text=True)
        if patient is not None and scores.empty:
            fail(f"No scores for patient {patient}; check the code.", 2)
        audit.record(session, actor=SYSTEM, action="export", patient_code=patient, rows=len(scores))
    sys.stdout.buffer.write(weekly_scores_csv(scores))


@app.command("export-fhir")
def export_fhir(patient: Annotated[str, typer.Option("--patient", help="The patient whose scores to export.")],
                db: DbOption = None) -> None:
    """A patient's scores as a FHIR R4 Bundle of QuestionnaireResponse resources (JSON, stdout); audited."""
    from core.fhir import scores_to_bundle
    from db import audit
    from db.access import SYSTEM
    from db.engine import transaction
    from db.queries import read_scores

    engine = _engine(db)
    with transaction(engine) as session:
        scores = read_scores(session, actor=SYSTEM, patient_code=patient, with_items=True)
        if scores.empty:
            fail(f"No scores for patient {patient}; check the code.", 2)
        audit.record(session, actor=SYSTEM, action="export", patient_code=patient, rows=len(scores),
                     format="fhir")
    typer.echo(json.dumps(scores_to_bundle(scores), indent=1, ensure_ascii=False))


@app.command("create-user")
def create_user(name: Annotated[str, typer.Argument(help="Account name (login).")],
                role: Annotated[Role, typer.Option("--role")],
                team: Annotated[str | None, typer.Option("--team")] = None,
                password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                             help="Read the password from stdin.")] = False,
                display_name: Annotated[str | None, typer.Option("--display-name")] = None,
                email: Annotated[str | None, typer.Option("--email")] = None,
                db: DbOption = None) -> None:
    """Add an account (password read from stdin)."""
    from db.access import SYSTEM
    from db.engine import transaction
    from db.writes import create_account

    if not password_stdin:
        fail("Give the password on standard input with --password-stdin (it is never taken as an argument).", 2)
    password = sys.stdin.readline().rstrip("\r\n")
    engine = _engine(db)
    try:
        with transaction(engine) as session:
            create_account(session, actor=SYSTEM, name=name, role=role.value, password=password, team=team,
                           display_name=display_name, email=email)
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(f"Created the {role.value} account {name}" + (f" in team {team}." if team else "."))


@app.command("mfa-require")
def mfa_require(roles: Annotated[str, typer.Option("--roles", help="Comma-separated roles that must use two-step "
                                                   "login, e.g. admin,supervisor; none for no role.")],
                db: DbOption = None) -> None:
    """Set which roles must use two-step login (TOTP) after their password; others may enrol."""
    from db import mfa
    from db.access import SYSTEM
    from db.engine import transaction

    try:
        chosen = mfa.parse_roles(roles)
    except ValueError as exc:
        fail(str(exc), 2)
    engine = _engine(db)
    with transaction(engine) as session:
        mfa.set_required_roles(session, actor=SYSTEM, roles=chosen)
    named = ", ".join(r for r in ("therapist", "supervisor", "admin") if r in chosen)
    typer.echo(f"Two-step login is now required for: {named}. Each such account without it sets it up at its next "
               f"login." if named else "Two-step login is now required for no role (any account may still turn it on).")


@app.command("reset-mfa")
def reset_mfa(name: Annotated[str, typer.Argument(help="The account whose two-step login to remove.")],
              reason: Annotated[str | None, typer.Option("--reason", help="Kept in the audit trail.")] = None,
              db: DbOption = None) -> None:
    """Remove an account's two-step login (a lost phone) and log it out everywhere."""
    from db import mfa
    from db.access import SYSTEM
    from db.engine import transaction

    engine = _engine(db)
    try:
        with transaction(engine) as session:
            ended = mfa.reset_mfa(session, actor=SYSTEM, name=name, reason=reason)
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(f"Reset the two-step login of {name} and ended its {ended} open session{'s' if ended != 1 else ''}; "
               f"at its next login it sets two-step login up again if its role requires it.")


@app.command("assign")
def assign(patient: Annotated[str, typer.Argument(help="Patient code.")],
           therapist: Annotated[str, typer.Option("--therapist", help="Therapist's account name.")],
           db: DbOption = None) -> None:
    """Put a patient on a therapist's caseload."""
    from db.access import SYSTEM
    from db.engine import transaction
    from db.writes import assign_patient

    engine = _engine(db)
    try:
        with transaction(engine) as session:
            assign_patient(session, actor=SYSTEM, code=patient, therapist=therapist)
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(f"Patient {patient} is now on {therapist}'s caseload.")


def _day(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date; write it YYYY-MM-DD.", 2)


@app.command("set-patient")
def set_patient(patient: Annotated[str, typer.Argument(help="Patient code.")],
                status: Annotated[str | None, typer.Option(
                    "--status", help="active, paused, discharged (or completed, dropped_out).")] = None,
                since: Annotated[str | None, typer.Option("--since", help="The day the status began (YYYY-MM-DD; "
                                                                          "default: today).")] = None,
                start_date: Annotated[str | None, typer.Option("--start-date", help="Treatment start "
                                                                                    "(YYYY-MM-DD).")] = None,
                planned_weeks: Annotated[int | None, typer.Option("--planned-weeks", min=0, max=520,
                                                                  help="0: no planned end.")] = None,
                therapist: Annotated[str | None, typer.Option("--therapist", help="Therapist's account name.")] = None,
                create: Annotated[bool, typer.Option("--create", help="Add the patient if the code is new.")] = False,
                reason: Annotated[str | None, typer.Option("--reason", help="Kept in the audit trail.")] = None,
                db: DbOption = None) -> None:
    """Set a patient's treatment calendar: start date, status (active, paused, discharged) and since when.

    The calendar decides which weeks are expected: missed questionnaires and repair windows count from
    the start date; a paused patient's calendar stops on the pause day; a discharged patient raises no
    new missed or repair alerts.
    """
    from core.caseload import STATUS_WORDS
    from db.access import SYSTEM
    from db.engine import transaction
    from db.writes import set_patient_calendar

    engine = _engine(db)
    try:
        with transaction(engine) as session:
            changed = set_patient_calendar(session, actor=SYSTEM, code=patient, status=status,
                                           status_since=_day(since, "--since"),
                                           start_date=_day(start_date, "--start-date"), planned_weeks=planned_weeks,
                                           therapist=therapist, reason=reason, create=create)
    except ValueError as exc:
        fail(str(exc), 2)
    if not changed:
        typer.echo(f"Patient {patient}: nothing to change.")
        return
    words = {"start_date": "start date", "status": "status", "status_since": "status since",
             "planned_weeks": "planned weeks", "therapist": "therapist"}

    def shown(field: str, value: object) -> str:
        if value is None:
            return "none"
        return STATUS_WORDS.get(str(value), str(value)) if field == "status" else str(value)

    typer.echo(f"Patient {patient}: " + "; ".join(f"{words[k]} {shown(k, o)} -> {shown(k, n)}"
                                                  for k, (o, n) in changed.items()) + ".")


@app.command("flags")
def flags(as_of_week: Annotated[int | None, typer.Option("--as-of-week", min=1,
                                                         help="Answer as if only weeks <= N were stored.")] = None,
          format: Annotated[Fmt, typer.Option("--format")] = Fmt.csv,
          today: Annotated[str | None, typer.Option("--today", help="Date to count treatment weeks "
                                                    "from (YYYY-MM-DD; default: today).")] = None,
          user: Annotated[str | None, typer.Option("--user", help="Exactly the flags this account sees in "
                                                   "the app.")] = None,
          db: DbOption = None) -> None:
    """Every alert the monitor raises (the clinic's stored flags), one row each, to stdout."""
    import pandas as pd

    from core.exporting import escape_formulas
    from core.flags import CONTRACT_COLUMNS
    from db.access import SYSTEM, Actor
    from db.engine import transaction
    from db.flags import read_flags
    from db.models import Account

    try:
        day = dt.date.fromisoformat(today) if today else None
    except ValueError:
        fail(f"--today {today!r} is not a date; write it YYYY-MM-DD.", 2)
    engine = _engine(db)
    with transaction(engine) as session:
        actor = SYSTEM
        if user is not None:
            from sqlalchemy import select

            account = session.scalar(select(Account).where(Account.name == user))
            if account is None:
                fail(f"There is no account {user}; check the name (manage.py create-user adds one).", 2)
            actor = Actor.from_account(account)
        table = read_flags(session, actor=actor, as_of_week=as_of_week, today=day)
    table = table.drop(columns="computed_status", errors="ignore")  # the pages' view; "status" says it here
    stored = [c for c in ("administered_on", "rules_version", "raised_at") if c in table.columns]
    extra = [c for c in table.columns if c not in CONTRACT_COLUMNS and c not in stored]
    table = table[list(CONTRACT_COLUMNS) + extra + stored]  # new columns last: old readers keep working
    if "raised_at" in table.columns:
        table["raised_at"] = pd.to_datetime(table["raised_at"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if format is Fmt.json:
        typer.echo(table.to_json(orient="records", date_format="iso", force_ascii=False))
    else:
        sys.stdout.write(escape_formulas(table).to_csv(index=False, lineterminator="\n"))


@app.command("refresh-flags")
def refresh_flags(check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 naming the first "
                                                      "patient whose stored flags differ from a fresh "
                                                      "computation.")] = False,
                  db: DbOption = None) -> None:
    """Recompute every stored flag under the current rule set (or check them)."""
    from db import flagstore
    from db.engine import transaction

    engine = _engine(db)
    with transaction(engine) as session:
        if check:
            first = flagstore.check(session)
            n = flagstore.stored_count(session)
            session.rollback()
            if first is not None:
                fail(f"The stored flags or summary of patient {first} differ from a fresh computation; run "
                     f"manage.py refresh-flags to recompute them.", 1)
            typer.echo(f"All {n} stored flags and every patient's stored summary agree with a fresh computation.")
            return
        n = flagstore.refresh_all(session)
    typer.echo(f"Recomputed and stored {n} flags.")


@app.command("freeze-parameters")
def freeze_parameters(
        instrument: Annotated[list[str] | None, typer.Option("--instrument", help="Freeze this instrument's SD "
                                                             "(repeatable; default: every instrument without "
                                                             "a published SD, e.g. SPIN).")] = None,
        min_patients: Annotated[int, typer.Option("--min-patients", min=2, help="Fewest week-1 scores "
                                                  "needed.")] = 30,
        course: Annotated[bool, typer.Option("--course", help="Freeze the clinic's own expected alliance course "
                                             "and typical within-person SD (rule below_expected) instead of an "
                                             "SD; --instrument then names alliance instruments.")] = False,
        db: DbOption = None) -> None:
    """Freeze the clinic's own week-1 SD (or, with --course, its expected alliance course) as a new
    rule set and recompute every flag once."""
    from db.access import SYSTEM
    from db.engine import transaction
    from db.flagstore import refresh_all
    from db.parameters import freeze_course, freeze_own_sd

    engine = _engine(db)
    try:
        with transaction(engine) as session:
            if course:
                info = freeze_course(session, actor=SYSTEM, instruments=instrument or None)
            else:
                info = freeze_own_sd(session, actor=SYSTEM, instruments=instrument or None,
                                     min_patients=min_patients)
            n = refresh_all(session)
    except ValueError as exc:
        fail(str(exc), 2)
    if course:
        for code, p in sorted(info.course.items()):
            typer.echo(_course_line(code, p))
    else:
        for code, p in sorted(info.instruments.items()):
            typer.echo(f"{code}: SD {p['sd'] if p['sd'] is not None else '-'}, r {p['r']}; {p['source']}")
    typer.echo(f"Rule set {info.version} is in force; {n} flags recomputed and stored.")


def _means(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values) + " (weeks 1-" + str(len(values)) + ", flat after)"


def _course_line(code: str, p: dict) -> str:
    if "week_means" in p:  # an alliance course (below_expected)
        return (f"{code}: expected course {_means(p['week_means'])}; within-person SD {p['within_sd']:g} with the "
                f"weight of {p['prior_weeks']:g} weeks; {p['source']}")
    time = "log(week)" if p["time"] == "log" else "week"
    return (f"{code}: expected change {p['slope']:+g} per {time} (intake effect {p['intake_slope']:+g} per point "
            f"above {p['intake_mean']:g}); patients differ by {p['slope_sd']:g}, weeks by {p['resid_sd']:g} points; "
            f"{p['source']}")


@app.command("set-rule")
def set_rule_command(
        rule: Annotated[str, typer.Argument(help="The rule, e.g. below_expected, repair, reliable_drop.")],
        param: Annotated[str, typer.Argument(help="Its parameter (e.g. k_sd), or on/off to switch the rule.")],
        value: Annotated[str | None, typer.Argument(help="The new value: a number, true/false or none.")] = None,
        reason: Annotated[str, typer.Option("--reason", help="Why (kept with the rule set and audited).")] = "",
        db: DbOption = None) -> None:
    """Change one rule setting as a new rule set and recompute every flag once (audited)."""
    from db.access import SYSTEM
    from db.engine import transaction
    from db.flagstore import refresh_all
    from db.parameters import parse_value, set_rule

    if value is None:  # "set-rule below_own_level on" / "set-rule rupture_requires all"
        param_name, parsed = None, parse_value(param)
    else:
        param_name, parsed = param, parse_value(value)
    engine = _engine(db)
    try:
        with transaction(engine) as session:
            info = set_rule(session, actor=SYSTEM, rule=rule, param=param_name, value=parsed, reason=reason)
            n = refresh_all(session)
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(f"Rule set {info.version} is in force ({info.note}); {n} flags recomputed and stored.")


@app.command("parameters")
def parameters(db: DbOption = None) -> None:
    """The rule sets in force and before, with the provenance of every number, and the rule settings."""
    from db.engine import transaction
    from db.parameters import course_defaults, rule_sets, rule_settings_table

    engine = _engine(db)
    with transaction(engine) as session:
        sets = rule_sets(session)
    for info in sets:
        typer.echo(f"Rule set {info.version} ({info.created_at:%Y-%m-%d %H:%M} UTC, {info.created_by}): {info.note}")
        for code, p in sorted(info.instruments.items()):
            typer.echo(f"  {code}: SD {p['sd'] if p['sd'] is not None else '-'}, r {p['r']}, "
                       f"reliable change {p['rc'] if p['rc'] is not None else 'from SD and r'}; {p['source']}")
    if not sets:
        return
    current = sets[-1]
    typer.echo(f"Expected courses in rule set {current.version} (rules below_expected and not_on_track):")
    for code, p in sorted({**course_defaults(current), **current.course}.items()):
        typer.echo("  " + _course_line(code, p))
    typer.echo(f"Rule settings in rule set {current.version} (* = changed from the release's default):")
    for row in rule_settings_table(current):
        mark = "*" if row["changed"] else " "
        name = f"{row['rule']}.{row['param']}" if row["param"] else row["rule"]
        typer.echo(f" {mark} {name} = {row['value']} (default {row['default']})")


@app.command("analyze")
def analyze(symptom: Annotated[str, typer.Option("--symptom")] = "SPIN",
            alliance: Annotated[str, typer.Option("--alliance")] = "WAI-SR",
            format: Annotated[Fmt, typer.Option("--format")] = Fmt.csv,
            db: DbOption = None) -> None:
    """The three multilevel models (total, within, between) on all stored data, and the
    sensitivity model adjusted for treatment week (JSON key "sensitivity"; CSV rows "detrended")."""
    import pandas as pd

    from core import instruments
    from core.models import WITHIN_BETWEEN_NOTE, fit_within_between
    from db.access import SYSTEM
    from db.engine import transaction
    from db.queries import read_scores

    for code in (symptom, alliance):
        try:
            instruments.get(code)
        except ValueError as exc:
            fail(str(exc), 2)
    engine = _engine(db)
    with transaction(engine) as session:
        scores = read_scores(session, actor=SYSTEM, instruments=[symptom, alliance])
    try:
        result = fit_within_between(scores, symptom=symptom, alliance=alliance)
    except ValueError as exc:
        fail(str(exc), 2)
    payload = result.to_dict()
    if format is Fmt.json:
        typer.echo(json.dumps(payload, indent=1))
        return
    # the CONTRACT models' rows as before, then the sensitivity model's; notes for people go to stderr
    models = {**payload["models"], **payload.get("sensitivity", {})}
    rows = [{"model": m, "term": t, **v} for m, model in models.items() for t, v in model["terms"].items()]
    sys.stdout.write(pd.DataFrame(rows).to_csv(index=False, lineterminator="\n", float_format="%.6g"))
    typer.echo(f"Note on within,alliance_between: {WITHIN_BETWEEN_NOTE}", err=True)
    if "detrended" in models:
        typer.echo("Note on detrended: the within model adjusted for treatment week (each patient's own "
                   "straight-line alliance course taken out, week in the model; docs/supervisor.md). When "
                   "alliance and symptoms both trend over the weeks, read its alliance_detrended_t rather than "
                   "the within model's alliance_within_t, which also counts the shared trend.", err=True)


@app.command("audit")
def audit_cmd(since: Annotated[str | None, typer.Option("--since", help="YYYY-MM-DD (UTC).")] = None,
              format: Annotated[CsvOnly, typer.Option("--format")] = CsvOnly.csv,
              verify: Annotated[bool, typer.Option("--verify", help="Check every row's link and keyed hash and "
                                                   "every signed checkpoint; exit 1 naming the first bad row or "
                                                   "the missing tail.")] = False,
              db: DbOption = None) -> None:
    """The audit trail (who viewed, changed, imported or exported what, when, in UTC)."""
    from core.exporting import to_csv_bytes
    from db import audit
    from db.engine import transaction

    try:
        start = dt.datetime.fromisoformat(since).replace(tzinfo=dt.UTC) if since else None
    except ValueError:
        fail(f"--since {since!r} is not a date; write it YYYY-MM-DD.", 2)
    engine = _engine(db)
    with transaction(engine) as session:
        if verify:  # an intact trail gets a signed checkpoint of what was verified
            report = audit.verify_and_checkpoint(session)
            if not report.ok:
                fail(report.message, 1)
            typer.echo(report.message)
            return
        events = audit.read_events(session, since=start)
    events["at"] = events["at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stdout.buffer.write(to_csv_bytes(events))


@app.command("backup")
def backup(file: Annotated[Path, typer.Argument(help="Where to write the copy.")], db: DbOption = None) -> None:
    """A consistent copy of the whole database (SQLite), audit trail included."""
    from db.backup import backup_database

    engine = _engine(db)
    try:
        message = backup_database(engine, file)
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(message)


@app.command("restore")
def restore(file: Annotated[Path, typer.Argument(help="A copy made by backup.")], db: DbOption = None) -> None:
    """Replace the database with a copy made by ``backup`` (a damaged copy is refused)."""
    from db.backup import restore_database
    from db.engine import is_current, transaction, upgrade
    from db.flagstore import refresh_all

    engine = _engine(db, migrate=False)
    try:
        message = restore_database(engine, file)
    except ValueError as exc:
        fail(str(exc), 2)
    if not is_current(engine):
        upgrade(engine)
    with transaction(engine) as session:  # the restored scores' flags, under the restored rule set
        n = refresh_all(session)
    typer.echo(f"{message} Recomputed its {n} stored flags.")



@app.command("create-api-client")
def create_api_client(name: Annotated[str, typer.Argument(help="The client's name, e.g. treatment-platform.")],
                      can_replace: Annotated[bool, typer.Option("--can-replace", help="Let the client overwrite a "
                                                                "stored score with another value (the --replace "
                                                                "rules of import-fhir).")] = False,
                      db: DbOption = None) -> None:
    """Add an integration client of the FHIR endpoint; prints its token once, alone on the last line."""
    from db.access import SYSTEM
    from db.api_clients import create_client
    from db.engine import transaction

    engine = _engine(db)
    try:
        with transaction(engine) as session:
            client, token = create_client(session, actor=SYSTEM, name=name, can_replace=can_replace)
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(f"Created the API client {client.name}" + (" (may replace stored scores)" if client.can_replace
                                                          else "") + ". Its bearer token follows; it is shown "
               "only now (only its hash is stored), so copy it into the treatment platform's settings:")
    typer.echo(token)


@app.command("revoke-api-client")
def revoke_api_client(name: Annotated[str, typer.Argument(help="The client's name.")], db: DbOption = None) -> None:
    """End an integration client at once: its token is refused from the next request on."""
    from db.access import SYSTEM
    from db.api_clients import revoke_client
    from db.engine import transaction

    engine = _engine(db)
    try:
        with transaction(engine) as session:
            revoke_client(session, actor=SYSTEM, name=name)
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(f"Revoked the API client {name}; its token is refused from now on.")


@app.command("api-clients")
def api_clients(db: DbOption = None) -> None:
    """The integration clients of the FHIR endpoint: name, can_replace, created, last used, revoked (UTC)."""
    from core.exporting import to_csv_bytes
    from db.access import SYSTEM
    from db.api_clients import list_clients
    from db.engine import transaction

    engine = _engine(db)
    with transaction(engine) as session:
        clients = list_clients(session, actor=SYSTEM)
    for col in ("created_at", "last_used_at", "revoked_at"):
        clients[col] = clients[col].map(lambda t: "" if t is None or t != t else f"{t:%Y-%m-%dT%H:%M:%SZ}")
    sys.stdout.buffer.write(to_csv_bytes(clients))


@app.command("send-notifications")
def send_notifications(once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron).")] = False,
                       interval: Annotated[int, typer.Option("--interval", min=5, help="Seconds between passes "
                                                             "when running on.")] = 60,
                       db: DbOption = None) -> None:
    """Send the queued alert e-mails (the outbox the writes fill); retries failed ones with backoff.

    Without --once it runs on, one pass every --interval seconds (a service); with --once it makes
    one pass and exits (cron). Needs ALLIANCE_SMTP_HOST and ALLIANCE_SMTP_FROM (docs/notifications.md).
    """
    import time

    from mail.smtp import NOT_CONFIGURED, public_url, smtp_settings
    from mail.worker import send_due

    try:
        settings = smtp_settings()
    except ValueError as exc:
        fail(str(exc), 2)
    if settings is None:
        fail(NOT_CONFIGURED, 1)
    engine = _engine(db)
    while True:
        result = send_due(engine, settings=settings, base_url=public_url())
        if result.sent or result.failed:
            typer.echo(f"Sent {result.sent} alert e-mail(s); {result.failed} failed and will be retried"
                       + (f" (last error: {result.last_error})." if result.failed else "."), err=bool(result.failed))
        if once:
            if not (result.sent or result.failed):
                typer.echo("No alert e-mail was due.")
            return
        time.sleep(interval)


if __name__ == "__main__":
    try:
        app()
    except ValueError as exc:
        # wherever a command audits without a usable key: one sentence. db.audit is loaded when it
        # raised one, so --help does not import it (nor SQLAlchemy and pandas behind it)
        audit = sys.modules.get("db.audit")
        if audit is None or not isinstance(exc, audit.AuditKeyError):
            raise
        typer.echo(str(exc), err=True)
        sys.exit(1)
