"""plans: failure_reason, failed_step, recoverable; status 'cancelled' becomes 'stopped'; completed LLM calls.

- ``failure_reason`` / ``failed_step`` / ``recoverable`` say what went wrong, where, and whether
  ``planexe resume`` can succeed without a change (the names of PlanExe's MCP ``plan_status``).
  Filled when a plan fails or is stopped, cleared when it runs again.
- A plan stopped on purpose (Ctrl-C, SIGTERM, a cancelled Dagster run) has the status ``stopped``,
  distinct from ``failed``. Rows an older version marked ``cancelled`` meant exactly that and are
  converted; the downgrade converts them back.
- ``plan_metrics.completed_llm_calls``: LLM calls that returned a usable answer, beside
  ``total_llm_calls`` (every attempt, failed ones included, as PlanExe counts them).

Revision ID: 006
Revises: 005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "006"
down_revision = "005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("failure_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("failed_step", sa.String(255), nullable=True))
        batch.add_column(sa.Column("recoverable", sa.Boolean(), nullable=True))
    with op.batch_alter_table("plan_metrics") as batch:
        batch.add_column(
            sa.Column("completed_llm_calls", sa.Integer(), nullable=True, server_default=sa.text("0"))
        )
    op.execute(
        sa.text(
            "UPDATE plans SET status = 'stopped', recoverable = :yes WHERE status = 'cancelled'"
        ).bindparams(yes=True)
    )
    # What the old rows already tell: the completed attempts of finished plans.
    op.execute(
        sa.text(
            "UPDATE plan_metrics SET completed_llm_calls = (SELECT COUNT(*) FROM llm_interactions "
            "WHERE llm_interactions.plan_id = plan_metrics.plan_id AND llm_interactions.status = 'completed')"
        )
    )


def downgrade() -> None:
    op.execute(sa.text("UPDATE plans SET status = 'cancelled' WHERE status = 'stopped'"))
    with op.batch_alter_table("plan_metrics") as batch:
        batch.drop_column("completed_llm_calls")
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("recoverable")
        batch.drop_column("failed_step")
        batch.drop_column("failure_reason")
