"""single sign-on bound to the provider's identity, not the e-mail alone

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Issue 14. ``accounts`` gains ``sso_issuer`` and ``sso_subject``: the OpenID Connect issuer and
subject that logged in to the account first (``db.auth.authenticate_sso``). From then on the
account answers to that identity only; the e-mail address matches only an account not yet bound.
One identity can be bound to one account (a unique index on both columns). Existing accounts
start unbound; their next single sign-on binds them.
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sso_issuer", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("sso_subject", sa.String(length=255), nullable=True))
        batch_op.create_index("uq_accounts_sso_identity", ["sso_issuer", "sso_subject"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index("uq_accounts_sso_identity")
        batch_op.drop_column("sso_subject")
        batch_op.drop_column("sso_issuer")
