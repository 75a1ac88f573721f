"""cases: the SLA clock (policy, due times, pause, first breach) and the nearest due time

``due_at`` is indexed: the overdue list (``due_at < now``) and the due-sorted inbox read
it in order. It is NULL for closed and paused cases, so the index holds the open ones.
Existing cases get no targets (their policy is unknown); new ones get them on opening.

Revision ID: i20_sla
Revises: i21_fulltext
Create Date: 2026-12-07 02:10:00
"""

from alembic import op
import sqlalchemy as sa

revision = 'i20_sla'
down_revision = 'i21_fulltext'
branch_labels = None
depends_on = None

_TIMES = ("first_response_due_at", "first_response_at", "next_response_due_at", "resolution_due_at",
          "sla_paused_at", "sla_breached_at", "due_at")


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("sla_policy", sa.String(80), nullable=True))
        for name in _TIMES:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sla_paused_minutes", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("sla_breached_target", sa.String(20), nullable=True))
        batch.add_column(sa.Column("due_target", sa.String(20), nullable=True))
    op.create_index(op.f("ix_cases_due_at"), "cases", ["due_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cases_due_at"), table_name="cases")
    with op.batch_alter_table("cases") as batch:
        for name in ("due_target", "sla_breached_target", "sla_paused_minutes", *reversed(_TIMES), "sla_policy"):
            batch.drop_column(name)
