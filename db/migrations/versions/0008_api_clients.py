"""integration clients of the FHIR endpoint: one row per client, holding the hash of its bearer token

Revision ID: 0008_api_clients
Revises: 0007_login_sessions
Create Date: 2026-12-03

Issue 17. A treatment platform posts QuestionnaireResponse resources to ``POST
/fhir/QuestionnaireResponse`` with ``Authorization: Bearer TOKEN``. ``api_clients`` keeps each
client an admin created (``manage.py create-api-client``): its name, the SHA-256 of the random
token (the token itself is shown once and never stored), whether it may replace stored scores,
who created it and when, when it was last used and when it was revoked (``db.api_clients``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_api_clients"
down_revision = "0007_login_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("can_replace", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("name", name=op.f("uq_api_clients_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_clients_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("api_clients")
