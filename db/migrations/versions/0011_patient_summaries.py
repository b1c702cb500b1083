"""patient summaries: what a caseload list shows of each course, stored with the flags

Revision ID: 0011_patient_summaries
Revises: 0010_notifications
Create Date: 2026-12-07

Issue 19. One row per patient with scores: latest alliance, programme and main symptom scores,
the sparkline points (JSON), the latest week and the clinical-range states (JSON), kept by
``db.flagstore`` in every write's transaction. Created empty: the first start after the upgrade
finds the stored flags not current (``db.flagstore.is_current``, the summaries' revision is part
of it) and computes flags and summaries once. Self-contained: it creates one table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_patient_summaries"
down_revision = "0010_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_summaries",
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("latest_alliance", sa.Float(), nullable=True),
        sa.Column("latest_program", sa.Float(), nullable=True),
        sa.Column("main_symptom", sa.String(length=32), nullable=True),
        sa.Column("latest_symptom", sa.Float(), nullable=True),
        sa.Column("alliance_trend", sa.Text(), nullable=False),
        sa.Column("symptom_trend", sa.Text(), nullable=False),
        sa.Column("last_questionnaire", sa.Integer(), nullable=True),
        sa.Column("clinical_range", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_patient_summaries_patient_id_patients"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patient_summaries")),
    )


def downgrade() -> None:
    op.drop_table("patient_summaries")
