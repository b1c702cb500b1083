"""The audit trail: append-only rows, each chained to the one before and signed with a key that
lives outside the database.

Every row written since migration 0004 carries (scheme ``hmac-sha256``)::

    hash = HMAC-SHA256(key, prev_hash | at | actor | action | patient_code | detail)

with the first row chained to ``GENESIS``. Rows written before 0004 carry scheme ``sha256`` (the
same payload, unkeyed SHA-256) and keep verifying; none may follow a keyed row.

What each part guards against (issue 18; docs/security.md):

- **Edits and deletions** through SQL: database triggers refuse UPDATE and DELETE; made around
  them, they break the chain, and :func:`verify_chain` names the first broken row.
- **Forgery**: without the key nobody can compute a keyed hash, so a row appended or a trail
  re-chained behind the app's back fails at its first row.
- **Truncation**: signed *checkpoints* (table ``audit_checkpoints``: row count, head row and
  hash, and a digest sealing the unkeyed rows) are written at the first keyed row, every
  :data:`CHECKPOINT_EVERY` rows, at every verify, backup and restore; rows cut from the end
  show as a "missing tail" against the latest checkpoint. An empty trail in a database that
  holds patients is refused.
- **Forks**: writers serialise on the chain before they read the previous hash (PostgreSQL: an
  advisory transaction lock; SQLite: the database write lock, taken by updating the one-row
  ``audit_head`` counter first), and the unique ``prev_hash`` of keyed rows makes a fork
  impossible in the schema. Unkeyed rows may branch off one of the rows just before them:
  concurrent SQLite writers left such forks before 0004; they are reported, not refused.

What it cannot do: someone who can write the database may cut the newest rows *and* the
checkpoints after them back to an earlier consistent state. Keep the line that ``audit --verify``
prints (count and head hash) outside the machine from time to time (docs/security.md).

The key: ``ALLIANCE_AUDIT_KEY`` (the key itself, at least 32 characters), else the file named by
``ALLIANCE_AUDIT_KEY_FILE``, else ``data/audit.key`` in the project folder (beside the default
SQLite database), created with mode 600 on first use. A missing key is never replaced silently
while keyed rows exist. No health data go into ``detail`` beyond patient codes, instruments and
weeks, except the old and new value of a changed score.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, func, insert, inspect, select, update
from sqlalchemy.orm import Session

from db.access import Actor
from db.models import KEYED_SCHEME, AuditCheckpoint, AuditEvent, AuditHead, Patient, utcnow

GENESIS = "0" * 64
LEGACY_SCHEME = "sha256"
#: A checkpoint is signed every this many rows (and at every verify, backup and restore).
CHECKPOINT_EVERY = 100
#: Actions whose row is sealed by a checkpoint at once.
SEALED_ACTIONS = frozenset({"backup", "restore"})
#: PostgreSQL advisory-lock key that serialises writers of the chain.
_CHAIN_LOCK = 0x41_4C_4C_49
#: How far back an unkeyed row may branch off (the forks concurrent writers left before 0004).
_FORK_WINDOW = 1000

KEY_ENV = "ALLIANCE_AUDIT_KEY"
KEY_FILE_ENV = "ALLIANCE_AUDIT_KEY_FILE"
DEFAULT_KEY_FILE = Path(__file__).resolve().parent.parent / "data" / "audit.key"
MIN_KEY_CHARS = 32

log = logging.getLogger(__name__)
_key_cache: dict[Path, tuple[int, bytes]] = {}


class AuditKeyError(ValueError):
    """The audit key is missing (while signed rows exist), too short, or unreadable: a sentence
    saying what to do. Nothing can be audited until it is fixed."""


# --- The key ------------------------------------------------------------------------------------

def key_path() -> Path:
    """The key file in use (``$ALLIANCE_AUDIT_KEY_FILE`` or ``data/audit.key``)."""
    return Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE)


def key_source() -> str:
    """Where the key comes from, for messages."""
    return f"${KEY_ENV}" if os.environ.get(KEY_ENV) else f"the key file {key_path()}"


def _checked(text: str, where: str) -> bytes:
    value = text.strip()
    if len(value) < MIN_KEY_CHARS:
        raise AuditKeyError(f"The audit key in {where} has {len(value)} characters; it needs at least "
                            f"{MIN_KEY_CHARS}. Make one with: python -c 'import secrets; "
                            f"print(secrets.token_hex(32))'.")
    return value.encode("utf-8")


def _create_key_file(path: Path) -> None:
    """Write a new random key to ``path`` (mode 600), atomically: a concurrent creator loses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process made it first: theirs is used
    except FileExistsError:
        return
    else:
        log.warning("Created a new audit key in %s; keep a copy apart from the database's backups "
                    "(docs/operations.md).", path)
    finally:
        tmp.unlink()


def load_key(*, create: bool = False) -> bytes | None:
    """The audit key, or ``None`` when there is none yet (and ``create`` is false).

    Raises :class:`AuditKeyError` (a sentence) for a key that is too short or a file that cannot be read.
    """
    if os.environ.get(KEY_ENV):
        return _checked(os.environ[KEY_ENV], f"${KEY_ENV}")
    path = key_path()
    try:
        try:
            stat = path.stat()
        except FileNotFoundError:
            if not create:
                return None
            _create_key_file(path)
            stat = path.stat()
    except OSError as exc:
        raise AuditKeyError(f"The audit key file {path} cannot be read or made ({exc.strerror}); check the folder's "
                            f"owner and permissions, or set {KEY_ENV}.") from exc
    cached = _key_cache.get(path)
    if cached is not None and cached[0] == stat.st_mtime_ns:
        return cached[1]
    if stat.st_mode & 0o077:
        log.warning("The audit key file %s can be read by other users (mode %o); restrict it with chmod 600.",
                    path, stat.st_mode & 0o777)
    try:
        key = _checked(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise AuditKeyError(f"The audit key file {path} cannot be read ({exc.strerror}); check its owner and "
                         f"permissions, or set {KEY_ENV}.") from exc
    _key_cache[path] = (stat.st_mtime_ns, key)
    return key


def _has_keyed_rows(conn: Connection) -> bool:
    found = conn.execute(select(AuditEvent.id).where(AuditEvent.scheme == KEYED_SCHEME).limit(1)).first()
    return found is not None or conn.execute(select(AuditCheckpoint.id).limit(1)).first() is not None


def missing_key_message() -> str:
    return (f"The audit key is missing ({key_source()} does not exist), but this trail has rows signed with it. "
            f"Restore the key from its separate backup (docs/operations.md) or set {KEY_ENV}; a new key "
            f"would make every signed row fail verification.")


def signing_key(session: Session) -> bytes:
    """The key to sign with; created on first use, but never while signed rows exist without it."""
    key = load_key()
    if key is None:
        if _has_keyed_rows(session.connection()):
            raise AuditKeyError(missing_key_message())
        key = load_key(create=True)
    assert key is not None  # load_key(create=True) returns a key or raises
    return key


def key_problem(engine: Engine) -> str | None:
    """Why nothing can be audited on ``engine`` (a sentence), or ``None`` when the key is usable.

    For the app's start: a missing key is reported before anyone tries to log in.
    """
    try:
        if load_key() is not None:
            return None
        with engine.connect() as conn:
            if inspect(conn).has_table("audit_checkpoints") and _has_keyed_rows(conn):
                return missing_key_message()
    except AuditKeyError as exc:
        return str(exc)
    return None


# --- Digests ------------------------------------------------------------------------------------

def _stamp(at: dt.datetime) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _payload(prev_hash: str, at: dt.datetime, actor: str, action: str, patient_code: str | None,
             detail: str) -> bytes:
    return "\x1f".join([prev_hash, _stamp(at), actor, action, patient_code or "", detail]).encode("utf-8")


def _digest(prev_hash: str, at: dt.datetime, actor: str, action: str,
            patient_code: str | None, detail: str) -> str:
    """The unkeyed SHA-256 of rows written before migration 0004 (scheme ``sha256``)."""
    return hashlib.sha256(_payload(prev_hash, at, actor, action, patient_code, detail)).hexdigest()


def _keyed_digest(key: bytes, prev_hash: str, at: dt.datetime, actor: str, action: str,
                  patient_code: str | None, detail: str) -> str:
    """HMAC-SHA256 with the audit key (scheme ``hmac-sha256``)."""
    return hmac.new(key, _payload(prev_hash, at, actor, action, patient_code, detail), hashlib.sha256).hexdigest()


def _checkpoint_signature(key: bytes, *, at: dt.datetime, reason: str, rows: int, head_id: int, head_hash: str,
                          legacy_rows: int, legacy_digest: str) -> str:
    payload = "\x1f".join(["checkpoint", _stamp(at), reason, str(rows), str(head_id), head_hash, str(legacy_rows),
                           legacy_digest])
    return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


def _seal(hashes: Iterable[str]) -> str:
    """SHA-256 over the unkeyed rows' hashes in order (what a checkpoint's ``legacy_digest`` seals)."""
    digest = hashlib.sha256()
    for value in hashes:
        digest.update(value.encode("ascii"))
    return digest.hexdigest()


# --- Writing ------------------------------------------------------------------------------------

def _lock_chain(session: Session) -> int:
    """Serialise writers of the chain (in the caller's transaction); returns the new row count.

    The UPDATE is the first write of the transaction on SQLite (the legacy ``sqlite3`` driver
    begins the transaction just before it), so it takes the database's write lock before the
    previous hash is read. It touches no table the ``data_revision`` counter watches.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK})")
    n = conn.execute(update(AuditHead).where(AuditHead.id == 1).values(n=AuditHead.n + 1)
                     .returning(AuditHead.n)).scalar()
    if n is None:  # the counter row is gone (never in normal use): start it again from the trail
        n = (conn.execute(select(func.count()).select_from(AuditEvent)).scalar() or 0) + 1
        conn.execute(insert(AuditHead).values(id=1, n=n))
    return int(n)


def record(session: Session, *, actor: Actor | str, action: str,
           patient_code: str | None = None, at: dt.datetime | None = None,
           **detail: Any) -> AuditEvent:
    """Append one event (in the caller's transaction).

    ``action`` is a short verb such as ``login``, ``login_failed``, ``view_patient``,
    ``view_caseload_list``, ``view_score``, ``import``, ``change_score``, ``export``,
    ``create_account``, ``backup``, ``restore``.
    """
    key = signing_key(session)
    n = _lock_chain(session)
    last = session.execute(select(AuditEvent.hash, AuditEvent.scheme).order_by(AuditEvent.id.desc()).limit(1)).first()
    prev, prev_scheme = (last[0], last[1]) if last is not None else (GENESIS, None)
    name = actor if isinstance(actor, str) else actor.name
    at = at or utcnow()
    body = json.dumps(detail, sort_keys=True, default=str, ensure_ascii=False)
    event = AuditEvent(at=at, actor=name, action=action, patient_code=patient_code, detail=body, prev_hash=prev,
                       hash=_keyed_digest(key, prev, at, name, action, patient_code, body), scheme=KEYED_SCHEME)
    session.add(event)
    session.flush()
    if prev_scheme != KEYED_SCHEME or n % CHECKPOINT_EVERY == 0 or action in SEALED_ACTIONS:
        reason = ("first keyed row" if prev_scheme != KEYED_SCHEME else action if action in SEALED_ACTIONS
                  else f"every {CHECKPOINT_EVERY} rows")
        _write_checkpoint(session, key, reason=reason, rows=n, head_id=event.id, head_hash=event.hash)
    return event


def _write_checkpoint(session: Session, key: bytes, *, reason: str, rows: int, head_id: int, head_hash: str,
                      legacy: tuple[int, str] | None = None) -> AuditCheckpoint:
    """Sign and store a checkpoint; the unkeyed rows' seal is copied from the latest checkpoint
    (or, the first time, computed from those rows)."""
    if legacy is None:
        latest = session.execute(select(AuditCheckpoint.legacy_rows, AuditCheckpoint.legacy_digest)
                                 .order_by(AuditCheckpoint.id.desc()).limit(1)).first()
        if latest is not None:
            legacy = (int(latest[0]), str(latest[1]))
        else:
            hashes = list(session.scalars(select(AuditEvent.hash).where(AuditEvent.scheme == LEGACY_SCHEME)
                                          .order_by(AuditEvent.id)))
            legacy = (len(hashes), _seal(hashes))
    at = utcnow()
    point = AuditCheckpoint(at=at, reason=reason[:32], rows=rows, head_id=head_id, head_hash=head_hash,
                            legacy_rows=legacy[0], legacy_digest=legacy[1],
                            signature=_checkpoint_signature(key, at=at, reason=reason[:32], rows=rows,
                                                            head_id=head_id, head_hash=head_hash,
                                                            legacy_rows=legacy[0], legacy_digest=legacy[1]))
    session.add(point)
    session.flush()
    return point


def read_events(session: Session, *, since: dt.datetime | None = None) -> pd.DataFrame:
    """The trail as a frame (oldest first), optionally from ``since`` (UTC) on."""
    stmt = select(AuditEvent.id, AuditEvent.at, AuditEvent.actor, AuditEvent.action,
                  AuditEvent.patient_code, AuditEvent.detail).order_by(AuditEvent.id)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    rows = session.execute(stmt).all()
    frame = pd.DataFrame(rows, columns=["id", "at", "actor", "action", "patient_code", "detail"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


# --- Verifying ----------------------------------------------------------------------------------

@dataclass
class ChainReport:
    """The outcome of :func:`check_chain`: ``ok`` and a sentence, and what was verified."""

    ok: bool
    message: str
    rows: int = 0
    head_id: int = 0
    head_hash: str = GENESIS
    legacy_rows: int = 0
    legacy_digest: str = field(default_factory=lambda: _seal([]))
    forks: int = 0
    checkpoints: int = 0


class _Broken(Exception):
    """A verification failure; the message names the first bad row (or the missing tail)."""


def _when(at: dt.datetime) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    return f"{at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def _read_checkpoints(conn: Connection, key: bytes | None) -> list[Any]:
    """Every checkpoint, oldest first, each signature checked."""
    if not inspect(conn).has_table("audit_checkpoints"):
        return []
    points = list(conn.execute(select(AuditCheckpoint.__table__).order_by(AuditCheckpoint.id)))
    if points and key is None:
        raise _Broken(missing_key_message())
    for p in points:
        expected = _checkpoint_signature(key or b"", at=p.at, reason=p.reason, rows=p.rows, head_id=p.head_id,
                                         head_hash=p.head_hash, legacy_rows=p.legacy_rows,
                                         legacy_digest=p.legacy_digest)
        if not hmac.compare_digest(expected, p.signature):
            raise _Broken(f"Audit checkpoint {p.id} of {_when(p.at)} was changed or forged: its signature does "
                          f"not match the audit key ({key_source()}). If the key was replaced, restore the one the "
                          f"trail was written with.")
    if len({(p.legacy_rows, p.legacy_digest) for p in points}) > 1:
        raise _Broken("The audit checkpoints disagree about the rows written before the keyed scheme; the "
                      "checkpoint table was tampered with.")
    return points


class _Walk:
    """One pass over the rows in id order: links, schemes and digests; remembers the rows at the
    positions the checkpoints name."""

    def __init__(self, key: bytes | None, sealed_legacy: int | None, positions: set[int]) -> None:
        self.key, self.sealed_legacy, self.positions = key, sealed_legacy, positions
        self.prev, self.rows, self.last_id, self.forks = GENESIS, 0, 0, 0
        self.keyed_seen = False
        self.legacy = hashlib.sha256()
        self.legacy_rows = 0
        self.recent: deque[str] = deque([GENESIS], maxlen=_FORK_WINDOW)
        self.recent_set = {GENESIS}
        self.at_position: dict[int, tuple[int, str]] = {}

    def step(self, ev: Any) -> None:
        scheme = getattr(ev, "scheme", LEGACY_SCHEME)
        if scheme == KEYED_SCHEME:
            self._keyed(ev)
        elif scheme == LEGACY_SCHEME:
            self._legacy(ev)
        else:
            raise _Broken(f"Audit row {ev.id} names an unknown digest scheme {scheme!r}: it was not written by "
                          f"Alliance Monitor.")
        self.rows += 1
        self.prev, self.last_id = ev.hash, ev.id
        if self.rows in self.positions:
            self.at_position[self.rows] = (ev.id, ev.hash)

    def _keyed(self, ev: Any) -> None:
        self.keyed_seen = True
        if ev.prev_hash != self.prev:
            raise _Broken(f"Audit row {ev.id} does not follow the row before it: a row was removed "
                          f"or inserted out of order before id {ev.id}.")
        if self.key is None:
            raise _Broken(missing_key_message())
        expected = _keyed_digest(self.key, ev.prev_hash, ev.at, ev.actor, ev.action, ev.patient_code, ev.detail)
        if not hmac.compare_digest(expected, ev.hash):
            raise _Broken(f"Audit row {ev.id} was changed after it was written, or forged: its hash does not match "
                          f"its content under the audit key ({key_source()}).")

    def _legacy(self, ev: Any) -> None:
        if self.keyed_seen or (self.sealed_legacy is not None and self.legacy_rows >= self.sealed_legacy):
            raise _Broken(f"Audit row {ev.id} carries the unkeyed hash of rows written before the keyed scheme, "
                          f"but comes after signed rows: it was added behind the app's back (forged).")
        if ev.prev_hash != self.prev:
            if ev.prev_hash not in self.recent_set:
                raise _Broken(f"Audit row {ev.id} does not follow the row before it: a row was removed "
                              f"or inserted out of order before id {ev.id}.")
            self.forks += 1  # branches off a recent row: concurrent writers before 0004 (issue 18)
        if _digest(ev.prev_hash, ev.at, ev.actor, ev.action, ev.patient_code, ev.detail) != ev.hash:
            raise _Broken(f"Audit row {ev.id} was changed after it was written (its hash does not match).")
        if len(self.recent) == self.recent.maxlen:
            self.recent_set.discard(self.recent[0])
        self.recent.append(ev.hash)
        self.recent_set.add(ev.hash)
        self.legacy.update(ev.hash.encode("ascii"))
        self.legacy_rows += 1


def _compare_with_checkpoints(walk: _Walk, points: list[Any]) -> None:
    """Every checkpoint must still hold: its rows there, its head at its place, the unkeyed rows sealed."""
    if walk.keyed_seen and not points:
        raise _Broken("The audit trail has signed rows but no checkpoint, although the first signed row always "
                      "writes one: the checkpoints were deleted.")
    for p in reversed(points):  # the newest first: a cut-off tail is named against the latest checkpoint
        if p.rows > walk.rows:
            ends = f"ends at row {walk.last_id}" if walk.rows else "is empty"
            raise _Broken(f"Missing tail: the trail {ends} but the checkpoint of {_when(p.at)} says {p.rows} rows "
                          f"(up to row {p.head_id}): {p.rows - walk.rows} rows were deleted from its end. Restore "
                          f"the database from a backup and keep this one for investigation.")
        if walk.at_position.get(p.rows) != (p.head_id, p.head_hash):
            found = walk.at_position.get(p.rows, (None, ""))[0]
            raise _Broken(f"Audit row {p.head_id} is not where the checkpoint of {_when(p.at)} puts it (row number "
                          f"{p.rows} of the trail is now row {found}): rows were removed, inserted or rewritten "
                          f"before it.")
    if points and (walk.legacy_rows, walk.legacy.hexdigest()) != (points[0].legacy_rows, points[0].legacy_digest):
        raise _Broken(f"The {points[0].legacy_rows} rows written before the keyed scheme were changed or removed "
                      f"after the checkpoint of {_when(points[0].at)} sealed them (the trail now has "
                      f"{walk.legacy_rows} such rows).")


def _refuse_emptied(conn: Connection, walk: _Walk) -> None:
    if walk.rows:
        return
    patients = conn.execute(select(func.count()).select_from(Patient)).scalar() or 0
    if patients:
        raise _Broken(f"The audit trail is empty, but the database holds {patients} patients, whose import was "
                      f"audited: the trail was deleted. Restore the database from a backup and keep this one for "
                      f"investigation.")


def check_chain(conn: Connection, *, key: bytes | None) -> ChainReport:
    """Check every row's link and digest and every checkpoint (any schema revision from 0001 on).

    ``key`` is the audit key (``None`` when there is none: then only unkeyed rows can verify).
    """
    table = AuditEvent.__table__
    present = {c["name"] for c in inspect(conn).get_columns("audit_events")}
    try:
        points = _read_checkpoints(conn, key)
        walk = _Walk(key, points[0].legacy_rows if points else None, {p.rows for p in points})
        stmt = select(*[c for c in table.c if c.name in present]).order_by(table.c.id)
        for ev in conn.execute(stmt, execution_options={"yield_per": 2000}):  # this statement only
            walk.step(ev)
        _compare_with_checkpoints(walk, points)
        _refuse_emptied(conn, walk)
    except _Broken as exc:
        return ChainReport(ok=False, message=str(exc))
    return ChainReport(ok=True, message=_intact(walk, points), rows=walk.rows, head_id=walk.last_id,
                       head_hash=walk.prev, legacy_rows=walk.legacy_rows, legacy_digest=walk.legacy.hexdigest(),
                       forks=walk.forks, checkpoints=len(points))


def _intact(walk: _Walk, points: list[Any]) -> str:
    message = f"The audit trail is intact: {walk.rows} rows, every hash and link checks out"
    if points:
        latest = points[-1]
        message += (f", and so do its {len(points)} signed checkpoints (the latest, of {_when(latest.at)}, "
                    f"says {latest.rows} rows)")
    message += f". Head: row {walk.last_id}, hash {walk.prev[:16]}."
    if walk.legacy_rows:
        message += (f" The first {walk.legacy_rows} rows were written before the keyed scheme (plain SHA-256, "
                    f"which anyone could recompute; checkpoints seal them from now on)")
        message += (f"; {walk.forks} of them branch off an earlier row, as concurrent writers left them before "
                    f"the fix." if walk.forks else ".")
    return message


def verify_chain(session: Session) -> tuple[bool, str]:
    """Check every row's hash and link and every checkpoint. Returns ``(ok, message)`` naming the
    first broken row, the missing tail, or a trail emptied in a database that holds patients."""
    try:
        key = load_key()
    except ValueError as exc:
        return False, str(exc)
    report = check_chain(session.connection(), key=key)
    return report.ok, report.message


def verify_and_checkpoint(session: Session, *, reason: str = "verify") -> ChainReport:
    """:func:`check_chain`, and when the trail is intact, a checkpoint of what was verified."""
    try:
        key = load_key()
    except ValueError as exc:
        return ChainReport(ok=False, message=str(exc))
    report = check_chain(session.connection(), key=key)
    if report.ok and report.rows:
        _write_checkpoint(session, signing_key(session), reason=reason, rows=report.rows, head_id=report.head_id,
                          head_hash=report.head_hash, legacy=(report.legacy_rows, report.legacy_digest))
    return report


def trail_head(conn: Connection) -> tuple[int, int, str]:
    """``(rows, last id, last hash)`` of a trail as it is, checked or not (``(0, 0, GENESIS)`` when
    empty or when the table does not exist)."""
    if not inspect(conn).has_table("audit_events"):
        return 0, 0, GENESIS
    rows = conn.execute(select(func.count()).select_from(AuditEvent)).scalar() or 0
    last = conn.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    return int(rows), (int(last[0]) if last else 0), (str(last[1]) if last else GENESIS)
