"""cases: sla_warned_at, the due time the agent was last warned about (once per due time)

Revision ID: i20_sla_warn
Revises: i17_budget_process
Create Date: 2026-12-07 03:20:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i20_sla_warn'
down_revision = 'i17_budget_process'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("sla_warned_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("sla_warned_at")
