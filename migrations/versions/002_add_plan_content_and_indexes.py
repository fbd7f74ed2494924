"""Add plan_content (the content of every output file) and its indexes.

Revision ID: 002
Revises: 001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "002"
down_revision = "001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plan_content",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plan_id", sa.String(255), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("stage", sa.String(100), nullable=True),
        sa.Column("content_type", sa.String(50), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_size_bytes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True, server_default=sa.text("CURRENT_TIMESTAMP")),
    )
    op.create_index("idx_plan_content_plan_id", "plan_content", ["plan_id"])
    op.create_index("idx_plan_content_plan_id_filename", "plan_content", ["plan_id", "filename"])
    op.create_index("idx_plan_content_stage", "plan_content", ["stage"])


def downgrade() -> None:
    op.drop_index("idx_plan_content_stage", table_name="plan_content")
    op.drop_index("idx_plan_content_plan_id_filename", table_name="plan_content")
    op.drop_index("idx_plan_content_plan_id", table_name="plan_content")
    op.drop_table("plan_content")
