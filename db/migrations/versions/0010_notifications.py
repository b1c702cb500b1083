"""alert e-mails: an outbox of notifications and each account's choice (immediate, digest, off)

Revision ID: 0010_notifications
Revises: 0009_mfa
Create Date: 2026-12-03

Issue 17. When a write raises an urgent or high flag, the patient's therapist (and for risk items
and unrepaired ruptures their supervisor) gets an e-mail naming the patient code, the kind and a
link. ``notifications`` is the outbox: one row per recipient and alert, written in the
transaction that stored the flag (``db.flagstore``), sent after the commit by ``manage.py
send-notifications`` with retries (``attempts``, ``next_attempt_at``, ``sent_at``,
``last_error``). ``notification_settings`` keeps each account's choice; no row means immediate.
Self-contained: it creates two tables and touches no other.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_notifications"
down_revision = "0009_mfa"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_settings",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_digest_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("mode IN ('immediate', 'digest', 'off')", name=op.f("ck_notification_settings_mode")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_notification_settings_account_id_accounts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_notification_settings")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("instrument", sa.String(length=32), nullable=False),
        sa.Column("week", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed', 'undeliverable', 'off')",
                           name=op.f("ck_notifications_status")),
        sa.CheckConstraint("audience IN ('therapist', 'supervisor')", name=op.f("ck_notifications_audience")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_notifications_account_id_accounts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_notifications_patient_id_patients"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("account_id", "patient_id", "instrument", "week", "event",
                            name=op.f("uq_notifications_account_id_patient_id_instrument_week_event")),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("notification_settings")
