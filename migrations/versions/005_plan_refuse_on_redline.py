"""plans.refuse_on_redline: a REFUSE verdict of the redline gate stops the plan.

PlanExe's redline gate is advisory. A plan created with ``planexe plan --refuse-on-redline`` (or with
``PLANEXE_REFUSE_ON_REDLINE=1``) keeps that choice here, so every later run of it (``planexe resume``,
the Dagster UI, the Luigi twin) applies the gate the same way. Existing plans stay advisory.

Revision ID: 005
Revises: 004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "005"
down_revision = "004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(
            sa.Column("refuse_on_redline", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("refuse_on_redline")
