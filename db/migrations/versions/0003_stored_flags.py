"""stored flags, frozen rule parameters, page visits

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Flags become the clinic's one stored record (``db.flagstore``). The tables start empty: on the
first start after this upgrade, ``db.flagstore.ensure_current`` writes rule set 1 (the
registry's literature values; for an instrument without a published SD, the clinic's own
week-1 SD as it stands at the upgrade, with that provenance) and computes every flag once.
"""

from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_sets",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_rule_sets")),
    )
    op.create_table(
        "flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("week", sa.Integer(), nullable=False),
        sa.Column("instrument", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("baseline", sa.Float(), nullable=True),
        sa.Column("drop", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("drop_sd", sa.Float(), nullable=True),
        sa.Column("subscale", sa.String(length=32), nullable=True),
        sa.Column("subscale_drop", sa.Float(), nullable=True),
        sa.Column("symptom_instrument", sa.String(length=32), nullable=True),
        sa.Column("symptom_change_next_week", sa.Float(), nullable=True),
        sa.Column("confirmed", sa.Boolean(), nullable=True),
        sa.Column("repaired_week", sa.Integer(), nullable=True),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("administered_on", sa.Date(), nullable=True),
        sa.Column("rules_version", sa.Integer(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_flags_patient_id_patients"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rules_version"], ["rule_sets.version"],
                                name=op.f("fk_flags_rules_version_rule_sets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flags")),
        sa.UniqueConstraint("patient_id", "week", "instrument", "kind",
                            name=op.f("uq_flags_patient_id_week_instrument_kind")),
    )
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.create_index("ix_flags_raised_at", ["raised_at"], unique=False)
    op.create_table(
        "page_visits",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("page", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_page_visits_account_id_accounts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "page", name=op.f("pk_page_visits")),
    )
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_week", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("weeks_stored", sa.Integer(), nullable=True))
    # per-patient facts from the scores already stored
    op.execute("UPDATE patients SET last_week = (SELECT max(week) FROM scores WHERE scores.patient_id = patients.id), "
               "weeks_stored = (SELECT count(DISTINCT week) FROM scores WHERE scores.patient_id = patients.id)")


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("weeks_stored")
        batch_op.drop_column("last_week")
    op.drop_table("page_visits")
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.drop_index("ix_flags_raised_at")
    op.drop_table("flags")
    op.drop_table("rule_sets")
