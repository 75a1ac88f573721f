"""agent_states: the agent's email and notification preferences

Revision ID: i20_notify
Revises: i21_macros
Create Date: 2026-12-07 03:15:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i20_notify'
down_revision = 'i21_macros'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_states") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("notify", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_states") as batch:
        batch.drop_column("notify")
        batch.drop_column("email")
