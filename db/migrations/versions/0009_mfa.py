"""two-step login (TOTP): an account's encrypted secret, its recovery codes and the login challenges

Revision ID: 0009_mfa
Revises: 0008_api_clients
Create Date: 2026-12-04

Issue 14 (MFA). ``mfa_enrolments`` keeps each enrolled account's TOTP secret, encrypted with a
key derived from the audit key (``db.mfa``), when it was confirmed and the last time step a code
was accepted for (a code is never accepted twice). ``mfa_recovery_codes`` holds the argon2id
hashes of the ten single-use recovery codes. ``mfa_challenges`` is the five-minute step between a
right password and the code: the SHA-256 of the challenge cookie's token, the account, whether it
verifies or enrols, where to go next, and how many wrong codes were typed. The clinic's setting
``mfa_required_roles`` lives in ``settings`` (no row: admins must use two-step login).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_mfa"
down_revision = "0008_api_clients"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mfa_enrolments",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_mfa_enrolments_account_id_accounts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_mfa_enrolments")),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_mfa_recovery_codes_account_id_accounts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_recovery_codes")),
    )
    op.create_index(op.f("ix_mfa_recovery_codes_account_id"), "mfa_recovery_codes", ["account_id"], unique=False)
    op.create_table(
        "mfa_challenges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("next_path", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.CheckConstraint("purpose IN ('verify', 'enrol')", name=op.f("ck_mfa_challenges_purpose")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_mfa_challenges_account_id_accounts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_challenges")),
    )
    op.create_index(op.f("ix_mfa_challenges_account_id"), "mfa_challenges", ["account_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_mfa_challenges_account_id"), table_name="mfa_challenges")
    op.drop_table("mfa_challenges")
    op.drop_index(op.f("ix_mfa_recovery_codes_account_id"), table_name="mfa_recovery_codes")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_enrolments")
