"""plan_content identity: unique (plan_id, filename), content_hash, run_id, updated_at; query indexes.

Also makes plan_files unique per (plan_id, filename) and plan_metrics unique per plan_id, so the
IO manager and the usage roll-up can upsert instead of appending duplicates, and indexes
llm_interactions on (plan_id, stage) for per-asset usage queries.

Duplicates left by older writers are collapsed first (the newest row of each key is kept), so the
unique indexes can be created on a database that already holds data.

Revision ID: 003
Revises: 002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "003"
down_revision = "002"
branch_labels = None
depends_on = None


def _drop_duplicates(table: str, key: str) -> None:
    op.execute(sa.text(f"DELETE FROM {table} WHERE id NOT IN (SELECT MAX(id) FROM {table} GROUP BY {key})"))


def upgrade() -> None:
    with op.batch_alter_table("plan_content") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("run_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
    _drop_duplicates("plan_content", "plan_id, filename")
    op.create_index("uq_plan_content_plan_id_filename", "plan_content", ["plan_id", "filename"], unique=True)

    _drop_duplicates("plan_files", "plan_id, filename")
    op.create_index("uq_plan_files_plan_id_filename", "plan_files", ["plan_id", "filename"], unique=True)

    _drop_duplicates("plan_metrics", "plan_id")
    op.create_index("uq_plan_metrics_plan_id", "plan_metrics", ["plan_id"], unique=True)

    op.create_index("idx_llm_interactions_plan_id_stage", "llm_interactions", ["plan_id", "stage"])


def downgrade() -> None:
    op.drop_index("idx_llm_interactions_plan_id_stage", table_name="llm_interactions")
    op.drop_index("uq_plan_metrics_plan_id", table_name="plan_metrics")
    op.drop_index("uq_plan_files_plan_id_filename", table_name="plan_files")
    op.drop_index("uq_plan_content_plan_id_filename", table_name="plan_content")
    with op.batch_alter_table("plan_content") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("run_id")
        batch.drop_column("content_hash")
