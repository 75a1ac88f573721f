"""agent_states (capacity, sectors, availability of each agent) and an index for
counting an agent's open cases, for automatic assignment

Revision ID: i20_assignment
Revises: i16_totp
Create Date: 2026-12-07 02:50:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i20_assignment'
down_revision = 'i16_totp'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_states",
        sa.Column("username", sa.String(80), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("sectors", sa.String(2000), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("console_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("away_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("telegram_user_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["username"], ["users.username"], name=op.f("fk_agent_states_username_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_agent_states")),
        sa.UniqueConstraint("telegram_user_id", name=op.f("uq_agent_states_telegram_user_id")),
    )
    op.create_index("ix_cases_assigned_agent_activity", "cases", ["assigned_agent", "activity"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cases_assigned_agent_activity", table_name="cases")
    op.drop_table("agent_states")
