"""macros: canned responses with bodies in es / pt / en, actions and a usage count

Revision ID: i21_macros
Revises: i20_assignment
Create Date: 2026-12-07 02:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = "i21_macros"
down_revision = "i20_assignment"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "macros",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=False),
        sa.Column("body_es", sa.Text(), nullable=True),
        sa.Column("body_pt", sa.Text(), nullable=True),
        sa.Column("body_en", sa.Text(), nullable=True),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("usage_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_macros")),
        sa.UniqueConstraint("owner", "name", name=op.f("uq_macros_owner_name")),
    )


def downgrade() -> None:
    op.drop_table("macros")
