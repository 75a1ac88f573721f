"""users: the console language and time zone each user chose on their profile

Revision ID: i21_user_locale
Revises: i20_sla_warn
Create Date: 2026-12-07 03:15:00
"""

from alembic import op
import sqlalchemy as sa


revision = "i21_user_locale"
down_revision = "i20_sla_warn"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("language", sa.String(length=5), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("timezone")
        batch.drop_column("language")
