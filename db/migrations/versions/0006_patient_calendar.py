"""a patient's treatment calendar: paused and discharged, with the day the status began

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Issue 13. ``patients.status`` also takes ``paused`` and ``discharged`` (besides ``active``,
``completed`` and ``dropped_out``), and ``patients.status_since`` keeps the day the status
began. The calendar stops there: a paused patient's treatment week stays at the week of the
pause day, a discharged patient's at their last stored week, so neither raises new missed or
repair alerts (``core.caseload.current_weeks``). Existing rows keep their status, with no day.
"""

from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NEW = "status IN ('active', 'paused', 'completed', 'dropped_out', 'discharged')"
OLD = "status IN ('active', 'completed', 'dropped_out')"


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_since", sa.Date(), nullable=True))
        batch_op.drop_constraint(op.f("ck_patients_status"), type_="check")
        batch_op.create_check_constraint("status", NEW)


def downgrade() -> None:
    op.execute("UPDATE patients SET status = 'active' WHERE status = 'paused'")
    op.execute("UPDATE patients SET status = 'completed' WHERE status = 'discharged'")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_patients_status"), type_="check")
        batch_op.create_check_constraint("status", OLD)
        batch_op.drop_column("status_since")
