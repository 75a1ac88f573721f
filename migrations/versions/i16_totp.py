"""console users' optional TOTP second factor

- users: ``totp_secret`` (base32, NULL: not enrolled) and ``totp_last_step``, the time
  step of the last code accepted, so a code is good once (a code seen over a shoulder or
  in a proxy log cannot be replayed within its 30 seconds), across processes.

Revision ID: i16_totp
Revises: i20_sla
Create Date: 2026-12-07 02:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i16_totp"
down_revision = "i20_sla"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("totp_secret", sa.String(64), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
