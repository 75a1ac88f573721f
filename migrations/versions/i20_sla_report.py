"""cases: how each SLA target ended (met or missed) and how long it took, for the SLA report

``first_response_minutes`` and ``resolution_minutes`` are business minutes of the case's
policy calendar from the opening, less the time the case waited for the customer: the
same measure the targets count in. Only core.sla knows the calendars, so they are written
when the first reply and the close happen; they cannot be derived in SQL afterwards.

Existing cases: whether each target was met is derived from the recorded due times (the
comparison core.sla makes); their durations stay unknown (NULL) and are left out of the
report's medians.

Revision ID: i20_sla_report
Revises: i20_breaches
Create Date: 2026-12-07 05:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i20_sla_report'
down_revision = 'i20_breaches'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("first_response_minutes", sa.Float(), nullable=True))
        batch.add_column(sa.Column("first_response_met", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("resolution_minutes", sa.Float(), nullable=True))
        batch.add_column(sa.Column("resolution_met", sa.Boolean(), nullable=True))
    cases = sa.table("cases", sa.column("first_response_at"), sa.column("first_response_due_at"),
                     sa.column("first_response_met"), sa.column("closed_at"), sa.column("activity"),
                     sa.column("resolution_due_at"), sa.column("resolution_met"))
    op.execute(cases.update()
               .where(cases.c.first_response_at.is_not(None), cases.c.first_response_due_at.is_not(None))
               .values(first_response_met=cases.c.first_response_at <= cases.c.first_response_due_at))
    op.execute(cases.update()
               .where(cases.c.activity == "closed", cases.c.closed_at.is_not(None),
                      cases.c.resolution_due_at.is_not(None))
               .values(resolution_met=cases.c.closed_at <= cases.c.resolution_due_at))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        for name in ("resolution_met", "resolution_minutes", "first_response_met", "first_response_minutes"):
            batch.drop_column(name)
