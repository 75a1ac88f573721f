"""kb_images: images an agent puts into a case's KB Problem/Answer

The file lives in the attachment store (by sha256) like any attachment; the row ties it
to its case, and ``discourse_url`` remembers the upload once publishing put it there, so
a retried publication does not upload it again.

Revision ID: i17_kb_images
Revises: i20_notify
Create Date: 2026-12-07 02:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i17_kb_images"
down_revision = "i20_notify"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kb_images",
        sa.Column("id", _ID, nullable=False),
        sa.Column("case_id", _ID, sa.ForeignKey("cases.id", ondelete="CASCADE",
                                                name="fk_kb_images_case_id_cases"), nullable=False),
        sa.Column("filename", sa.String(300), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("discourse_url", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kb_images"),
    )
    op.create_index("ix_kb_images_case_id", "kb_images", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_kb_images_case_id", table_name="kb_images")
    op.drop_table("kb_images")
