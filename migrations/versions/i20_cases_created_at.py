"""cases_created_at: an index for the SLA report's period

The SLA report (console, API, the sla-report job's gauges) reads the cases opened in a
period, four weeks by default. Without an index on ``created_at`` each report read the
whole table: at 1,000,000 cases over two years, SQLite scanned every row (EXPLAIN: SCAN
cases, ~140 ms of CPU for the count alone) and PostgreSQL ran a sequential scan.

Revision ID: i20_cases_created_at
Revises: i20_activity_tally
Create Date: 2026-12-07 08:05:00
"""

from alembic import op

revision = 'i20_cases_created_at'
down_revision = 'i20_activity_tally'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_cases_created_at"), "cases", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cases_created_at"), table_name="cases")
