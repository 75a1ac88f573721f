"""cases.budget_mode "process": the case follows the process's budget mode

In the seeds the budget mode ("Lista de productos") belongs to the post-sale process,
``[cases] budget_mode``; a case keeps a mode of its own only when an agent set it. Cases
that never had a budget (still ``not_used``, no lines) follow the process from now on;
any other mode was an agent's choice and stays. A value, not NULL: making the column
nullable would rebuild ``cases`` on SQLite and lose its full-text triggers.

Revision ID: i17_budget_process
Revises: i17_kb_images
Create Date: 2026-12-07 03:05:00
"""

from alembic import op

revision = "i17_budget_process"
down_revision = "i17_kb_images"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE cases SET budget_mode = 'process' WHERE budget_mode = 'not_used' "
               "AND NOT EXISTS (SELECT 1 FROM budget_lines WHERE budget_lines.case_id = cases.id)")


def downgrade() -> None:
    op.execute("UPDATE cases SET budget_mode = 'not_used' WHERE budget_mode = 'process'")
