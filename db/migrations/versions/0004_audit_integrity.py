"""audit integrity: keyed digests, signed checkpoints, no forks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Issue 18. ``audit_events`` gains ``scheme``: every row already there keeps its unkeyed SHA-256
(``sha256``, the server default) and keeps verifying; rows written from now on are HMAC-SHA256
with the audit key kept outside the database (``db.audit``). A unique index on the ``prev_hash``
of keyed rows makes a fork of the chain impossible (older trails may hold forks left by
concurrent SQLite writers, so their rows are not covered). ``audit_head`` is the one-row counter
every writer updates first (on SQLite that takes the write lock before the previous hash is
read); ``audit_checkpoints`` holds the signed checkpoints, append-only like the trail.

SQLite: a batch operation that recreates ``audit_events`` (the downgrade's drop of a column)
drops its triggers with the old table, so the append-only triggers are dropped before and
created again after every batch operation on it.
"""

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

AUDIT_MESSAGE = "The audit trail is append-only: rows cannot be changed or deleted."
KEYED = "scheme = 'hmac-sha256'"


def upgrade() -> None:
    _drop_guards("audit_events")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scheme", sa.String(length=16), server_default="sha256", nullable=False))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("uq_audit_events_prev_hash_keyed", ["prev_hash"], unique=True,
                              sqlite_where=sa.text(KEYED), postgresql_where=sa.text(KEYED))
    _create_guards("audit_events")
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.execute("INSERT INTO audit_head (id, n) SELECT 1, count(*) FROM audit_events")
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("head_id", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("legacy_rows", sa.Integer(), nullable=False),
        sa.Column("legacy_digest", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    _create_guards("audit_checkpoints")


def downgrade() -> None:
    _drop_guards("audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_head")
    _drop_guards("audit_events")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("uq_audit_events_prev_hash_keyed")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("scheme")
    _create_guards("audit_events")


# The guards of audit_events have the names migration 0001 gave them, so its downgrade still
# finds them; audit_checkpoints gets the same pair under its own names.
def _names(table: str) -> tuple[str, str, str]:
    if table == "audit_events":
        return "audit_events_no_", "audit_events_refuse", "audit_events_append_only"
    return f"{table}_no_", f"{table}_refuse", f"{table}_append_only"


def _create_guards(table: str) -> None:
    sqlite_prefix, function, trigger = _names(table)
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {sqlite_prefix}{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{AUDIT_MESSAGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{AUDIT_MESSAGE}'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )


def _drop_guards(table: str) -> None:
    sqlite_prefix, function, trigger = _names(table)
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {sqlite_prefix}update")
        op.execute(f"DROP TRIGGER IF EXISTS {sqlite_prefix}delete")
    elif dialect == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        if table != "audit_events":  # 0001's function stays for 0001's own triggers
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
