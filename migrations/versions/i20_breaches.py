"""cases: every SLA breach (sla_breaches), and the due time the sweep last recorded as breached

``sla_breached_target``/``sla_breached_at`` keep the first breach (the documented API
field); ``sla_breaches`` lists each target missed, with its due time. Existing cases
keep their first breach in the old columns (readers fold it in), and the sweep's marker
starts at it so that breach is not recorded, nor told, twice.

Revision ID: i20_breaches
Revises: i19_contacts
Create Date: 2026-12-07 04:55:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i20_breaches'
down_revision = 'i19_contacts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("sla_breaches", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("sla_breach_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE cases SET sla_breach_seen_at = sla_breached_at WHERE sla_breached_target IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("sla_breach_seen_at")
        batch.drop_column("sla_breaches")
