"""plans.last_run_id: the run (Dagster run id or Luigi build id) that last worked on the plan.

Several steps of one run may finish or fail concurrently; knowing the run lets a failure stay a
failure for the rest of that run, while a new run starts the plan afresh.

Revision ID: 004
Revises: 003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "004"
down_revision = "003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("last_run_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("last_run_id")
