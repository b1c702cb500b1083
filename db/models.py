"""SQLAlchemy 2.0 models of the clinic database.

The schema changes only through Alembic migrations (``db/migrations``); ``tests/db`` runs
upgrade -> downgrade -> upgrade and ``alembic check`` against these models.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("therapist", "supervisor", "admin")
PATIENT_STATUSES = ("active", "paused", "completed", "dropped_out", "discharged")
SCORE_SOURCES = ("import", "entry", "fhir", "demo")


def utcnow() -> dt.datetime:
    """Timezone-aware now in UTC (every stored timestamp is UTC)."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Account(Base):
    """A person who logs in: therapist, supervisor or admin."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("role IN ('therapist', 'supervisor', 'admin')", name="role"),
                      Index("uq_accounts_sso_identity", "sso_issuer", "sso_subject", unique=True))

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    #: The OpenID Connect identity (issuer, subject) bound at the first single sign-on (db.auth).
    sso_issuer: Mapped[str | None] = mapped_column(String(512))
    sso_subject: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Bumped on password change or deactivation: every older session is logged out.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    patients: Mapped[list[Patient]] = relationship(back_populates="therapist")


class LoginSession(Base):
    """One login of one account in one browser (``db.sessions``).

    ``id`` is the SHA-256 hex digest of the random token in the browser's HttpOnly cookie; the
    token itself is never stored, so a copy of the database logs nobody in. A row is live while
    ``revoked_at`` is empty, ``expires_at`` (absolute lifetime) is ahead and ``last_seen_at`` is
    within the idle timeout; rows are kept after they end (who was logged in, from what, until
    when, and why it ended).
    """

    __tablename__ = "login_sessions"
    __table_args__ = (CheckConstraint("method IN ('password', 'sso')", name="method"),
                      Index("ix_login_sessions_account_live", "account_id", "revoked_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(16), default="password")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    user_agent: Mapped[str] = mapped_column(String(256), default="")
    address: Mapped[str] = mapped_column(String(64), default="unknown")
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    revoke_reason: Mapped[str | None] = mapped_column(String(32))


class MfaEnrolment(Base):
    """An account's two-step login (TOTP, RFC 6238; ``db.mfa``): at most one per account.

    ``secret`` is the base32 TOTP secret encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a
    key derived from the audit key (``db.mfa.secret_box``), so a copy of the database alone
    cannot make codes. ``confirmed_at`` is empty while an enrolment waits for its first code;
    ``last_step`` is the newest 30-second time step a code was accepted for, so the same code
    (or an older one) is never accepted twice.
    """

    __tablename__ = "mfa_enrolments"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column()
    last_step: Mapped[int | None] = mapped_column(Integer)
    last_used_at: Mapped[dt.datetime | None] = mapped_column()


class MfaRecoveryCode(Base):
    """One single-use recovery code of an account (argon2id hash; the code is shown once)."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column()


class MfaChallenge(Base):
    """The step between a right password and the code (``db.mfa``): five minutes, used once.

    ``id`` is the SHA-256 of the random token in the browser's HttpOnly ``alliance_mfa`` cookie.
    ``purpose`` is ``verify`` (type a code) or ``enrol`` (a role that requires two-step login,
    not yet enrolled); ``failures`` counts wrong codes typed against it.
    """

    __tablename__ = "mfa_challenges"
    __table_args__ = (CheckConstraint("purpose IN ('verify', 'enrol')", name="purpose"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    next_path: Mapped[str] = mapped_column(String(512), default="/")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column()
    failures: Mapped[int] = mapped_column(Integer, default=0)


class Patient(Base):
    """A patient, known only by a clinic code (pseudonym)."""

    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'paused', 'completed', 'dropped_out', 'discharged')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    therapist_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    start_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="active")
    #: The day the status began (a pause or a discharge stops the calendar there); ``None``: not recorded.
    status_since: Mapped[dt.date | None] = mapped_column(Date)
    planned_weeks: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: Stored per-patient facts, kept by ``db.flagstore`` in the same transaction as the scores:
    #: the last treatment week with any score and how many weeks have one (``None``: no scores).
    last_week: Mapped[int | None] = mapped_column(Integer)
    weeks_stored: Mapped[int | None] = mapped_column(Integer)

    therapist: Mapped[Account | None] = relationship(back_populates="patients")


class Score(Base):
    """One questionnaire of one patient in one treatment week."""

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("patient_id", "instrument", "week"),
        CheckConstraint("week >= 1", name="week_positive"),
        Index("ix_scores_instrument_week", "instrument", "week"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    instrument: Mapped[str] = mapped_column(String(32))
    week: Mapped[int] = mapped_column(Integer)
    administered_on: Mapped[dt.date | None] = mapped_column(Date)
    total: Mapped[float] = mapped_column(Float)
    #: Item responses in order, item 1 first; NULL when only a total was entered.
    items: Mapped[list[int] | None] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16), default="import")
    entered_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    entered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: Optimistic version: an edit must name the version it read.
    version: Mapped[int] = mapped_column(Integer, default=1)


class FlagNote(Base):
    """A therapist's action on a flag: addressed in feedback (with a note) or reopened."""

    __tablename__ = "flag_notes"
    __table_args__ = (
        CheckConstraint("action IN ('addressed', 'reopened')", name="action"),
        Index("ix_flag_notes_key", "patient_id", "instrument", "week", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    instrument: Mapped[str] = mapped_column(String(32))
    week: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    by_account: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RuleSet(Base):
    """One version of the clinic's frozen rule parameters (``db.parameters``).

    ``params`` is JSON: ``{"instruments": {CODE: {"sd", "r", "source"}}}``, the reliable-change
    SD and r of each instrument with where each number comes from. A new version is written
    whenever a parameter changes (e.g. the admin freezes the clinic's own week-1 SD); every
    stored flag names the version that raised it. Rows are never changed.
    """

    __tablename__ = "rule_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    params: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")


class PatientSummary(Base):
    """What a caseload list shows of a patient's course, stored with the flags (``db.flagstore``).

    ``core.caseload.course_summary`` and ``core.notices.clinical_range`` of the patient's scores
    of ``core.caseload.SUMMARY_INSTRUMENTS``, kept by every write in its transaction, so that My
    patients and Patients read 10,000 short rows instead of every score (issue 19). Trends and
    clinical-range rows are JSON text. No row: the patient has no score of those instruments.
    """

    __tablename__ = "patient_summaries"

    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True)
    latest_alliance: Mapped[float | None] = mapped_column(Float)
    latest_program: Mapped[float | None] = mapped_column(Float)
    main_symptom: Mapped[str | None] = mapped_column(String(32))
    latest_symptom: Mapped[float | None] = mapped_column(Float)
    alliance_trend: Mapped[str] = mapped_column(Text)
    symptom_trend: Mapped[str] = mapped_column(Text)
    last_questionnaire: Mapped[int | None] = mapped_column(Integer)
    clinical_range: Mapped[str] = mapped_column(Text)


class StoredFlag(Base):
    """One flag of the clinic's one stored record (``db.flagstore``).

    The columns of ``core.flags.FLAG_COLUMNS`` except ``therapist_id`` (read from the patient,
    so a reassignment needs no recompute), plus the week's ``administered_on``, the
    ``rules_version`` that raised it and ``raised_at`` (when the data that raised it arrived).
    Only data-dependent facts are stored; the time-dependent parts (a rupture whose repair
    window passed by the calendar, the trailing run of missed questionnaires) are derived at
    read time (``core.flag_time``). Patient-level flags have ``instrument`` = "".
    """

    __tablename__ = "flags"
    __table_args__ = (
        UniqueConstraint("patient_id", "week", "instrument", "kind"),
        Index("ix_flags_raised_at", "raised_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    week: Mapped[int] = mapped_column(Integer)
    instrument: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)
    drop: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    drop_sd: Mapped[float | None] = mapped_column(Float)
    subscale: Mapped[str | None] = mapped_column(String(32))
    subscale_drop: Mapped[float | None] = mapped_column(Float)
    symptom_instrument: Mapped[str | None] = mapped_column(String(32))
    symptom_change_next_week: Mapped[float | None] = mapped_column(Float)
    confirmed: Mapped[bool | None] = mapped_column(Boolean)
    repaired_week: Mapped[int | None] = mapped_column(Integer)
    explanation: Mapped[str] = mapped_column(Text)
    administered_on: Mapped[dt.date | None] = mapped_column(Date)
    rules_version: Mapped[int] = mapped_column(ForeignKey("rule_sets.version"))
    raised_at: Mapped[dt.datetime] = mapped_column()


class PageVisit(Base):
    """When an account last opened a page (for "new since your last visit")."""

    __tablename__ = "page_visits"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    page: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


#: The digest schemes of ``AuditEvent.scheme``: unkeyed SHA-256 (rows written before migration 0004)
#: and HMAC-SHA256 with the audit key kept outside the database (every row since).
AUDIT_SCHEMES = ("sha256", "hmac-sha256")
KEYED_SCHEME = "hmac-sha256"


class AuditEvent(Base):
    """Append-only audit trail; each row's hash chains to the previous row's.

    Database triggers refuse UPDATE and DELETE (see migrations 0001 and 0004); the unique
    ``prev_hash`` of keyed rows makes a fork of the chain impossible; ``db.audit.verify_chain``
    detects a row edited, removed, forged or cut off behind their back.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        # One successor per row: two writers that read the same head cannot both append.
        # Only over keyed rows: trails written before 0004 may already hold forks (issue 18).
        Index("uq_audit_events_prev_hash_keyed", "prev_hash", unique=True,
              sqlite_where=text("scheme = 'hmac-sha256'"), postgresql_where=text("scheme = 'hmac-sha256'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    patient_code: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: How ``hash`` was computed (:data:`AUDIT_SCHEMES`); the server default marks the rows
    #: that were there before the keyed scheme (and any written by an older app version).
    scheme: Mapped[str] = mapped_column(String(16), default=KEYED_SCHEME, server_default="sha256")


class AuditHead(Base):
    """One row counting the audit trail's rows (``n``).

    Every writer of the trail updates it first: on SQLite that takes the database's write lock
    before the previous hash is read, so concurrent writers append one after the other; the
    count tells when the next checkpoint is due. Not trusted by verification.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class AuditCheckpoint(Base):
    """A signed statement "the trail had ``rows`` rows, the last one ``head_id`` with ``head_hash``".

    Written at the first keyed row, every ``db.audit.CHECKPOINT_EVERY`` rows, at every verify,
    backup and restore; append-only like the trail. ``legacy_rows``/``legacy_digest`` seal the
    rows written before the keyed scheme (SHA-256 over their hashes in order). ``signature`` is
    HMAC-SHA256 with the audit key over every other column, so only the key's holder can write
    one; ``db.audit.verify_chain`` compares the trail against every checkpoint.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(32))
    rows: Mapped[int] = mapped_column(Integer)
    head_id: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    legacy_rows: Mapped[int] = mapped_column(Integer)
    legacy_digest: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(64))


class Setting(Base):
    """Clinic-wide settings (e.g. ``demo`` = "1" on a database seeded with the demo clinic)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class DataRevision(Base):
    """One row whose counter goes up with every write to scores, patients, flag notes or accounts.

    Bumped centrally by session events (``db.engine.session_factory``), so no write path can
    forget it; cached loaders key on it, so results are recomputed once per data change and a
    rerun costs one primary-key read instead of scanning the scores table.
    """

    __tablename__ = "data_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class ApiClient(Base):
    """An integration client of the FHIR endpoint (``db.api_clients``; issue 17).

    ``token_hash`` is the SHA-256 hex digest of the random bearer token, which is shown once when
    the client is created and never stored. A client is live while ``revoked_at`` is empty; rows
    are kept after revocation (who sent what stays readable in the audit trail). A client may
    only write scores; ``can_replace`` lets it overwrite a stored score with another value (the
    ``--replace`` rules of ``import-fhir``).
    """

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(48), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    can_replace: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()


#: How an account wants its alert e-mails (``db.notifications``): one message per alert, one
#: message a day listing them, or none.
NOTIFY_MODES = ("immediate", "digest", "off")
#: The states of a queued alert e-mail (``Notification.status``).
NOTIFICATION_STATUSES = ("pending", "sent", "failed", "undeliverable", "off")


class NotificationSetting(Base):
    """An account's choice of alert e-mails (``NOTIFY_MODES``); no row: ``immediate``.

    ``last_digest_at`` is when the account's last daily digest went out.
    """

    __tablename__ = "notification_settings"
    __table_args__ = (CheckConstraint("mode IN ('immediate', 'digest', 'off')", name="mode"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), default="immediate")
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_digest_at: Mapped[dt.datetime | None] = mapped_column()


class Notification(Base):
    """One alert e-mail owed to one account: the outbox (``db.notifications``; issue 17).

    Written in the transaction that stored the flag that raised it (``db.flagstore``), once per
    recipient and alert (the unique key), and sent after the commit by ``manage.py
    send-notifications``. It holds the flag's key and the ``event`` (the flag's kind, or
    ``unrepaired_rupture``), never a score: the message names only the patient code, the kind
    and a link. A failed attempt moves ``next_attempt_at`` on (exponential backoff) and keeps
    the SMTP server's answer in ``last_error``.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed', 'undeliverable', 'off')", name="status"),
        CheckConstraint("audience IN ('therapist', 'supervisor')", name="audience"),
        UniqueConstraint("account_id", "patient_id", "instrument", "week", "event"),
        Index("ix_notifications_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    instrument: Mapped[str] = mapped_column(String(32))
    week: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))
    audience: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
