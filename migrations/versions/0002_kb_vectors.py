"""kb_vectors: persisted sentence vectors of KB passages

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 02:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kb_vectors',
    sa.Column('key', sa.LargeBinary(length=32), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_kb_vectors'))
    )


def downgrade() -> None:
    op.drop_table('kb_vectors')
