"""server-side login sessions: one row per login, referenced by a hashed cookie token

Revision ID: 0007_login_sessions
Revises: 0006
Create Date: 2026-12-03

Issue 14. A login used to live in one browser tab's Streamlit session (a reload asked for the
password again, and a Streamlit session id was enough to take it over). ``login_sessions`` keeps
each login on the server: the SHA-256 of the random token in the browser's HttpOnly cookie (the
token itself is never stored), the account, when it began, was last used and expires, the
browser (user agent) and address, and when and why it ended (``db.sessions``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_login_sessions"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_agent", sa.String(length=256), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint("method IN ('password', 'sso')", name=op.f("ck_login_sessions_method")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_login_sessions_account_id_accounts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
    )
    op.create_index("ix_login_sessions_account_live", "login_sessions", ["account_id", "revoked_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_login_sessions_account_live", table_name="login_sessions")
    op.drop_table("login_sessions")
