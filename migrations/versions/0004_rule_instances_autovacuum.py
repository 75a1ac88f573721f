"""rule_instances: let autovacuum follow each scheduler tick

The manager panel counts an operator's surveys with index-only scans, which skip the
table only on pages the visibility map marks all-visible. A tick that opens or expires
ten thousand surveys clears those marks on the pages it touches, and with the default
scale factor (0.2) autovacuum waits for 200,000 dead rows per million before it sets
them again: days, at a few ticks like that a day. Meanwhile the panel reads the table
too (benchmark, 1,000,000 sales: p95 50 ms right after the tick, 26 ms once vacuumed).
At 0.005 autovacuum runs within its nap time (a minute) after such a tick; the vacuum
visits only the pages the tick changed. SQLite has no such setting.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 09:50:00
"""

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rule_instances SET (autovacuum_vacuum_scale_factor = 0.005, "
                   "autovacuum_analyze_scale_factor = 0.01)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rule_instances RESET (autovacuum_vacuum_scale_factor, "
                   "autovacuum_analyze_scale_factor)")
