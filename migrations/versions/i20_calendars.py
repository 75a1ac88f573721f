"""calendar_overrides: business-hours calendars edited by admins in the console (over config's)

Revision ID: i20_calendars
Revises: i20_sla_report
Create Date: 2026-12-07 05:55:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i20_calendars'
down_revision = 'i20_sla_report'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendar_overrides",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(120), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("calendar_overrides")
