"""Initial tables: plans, llm_interactions, plan_files, plan_metrics.

Revision ID: 001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plan_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("llm_model", sa.String(255), nullable=True),
        sa.Column("speed_vs_detail", sa.String(50), nullable=False, server_default="all_details_but_slow"),
        sa.Column("openrouter_api_key_hash", sa.String(255), nullable=True),
        sa.Column("status", sa.String(50), nullable=False, server_default="pending"),
        sa.Column("progress_percentage", sa.Integer(), nullable=True, server_default=sa.text("0")),
        sa.Column("progress_message", sa.Text(), nullable=True, server_default=""),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("output_dir", sa.String(500), nullable=True),
        sa.Column("estimated_duration_minutes", sa.Float(), nullable=True),
        sa.Column("actual_duration_minutes", sa.Float(), nullable=True),
    )
    op.create_index("ix_plans_plan_id", "plans", ["plan_id"], unique=True)
    op.create_index("ix_plans_user_id", "plans", ["user_id"])

    op.create_table(
        "llm_interactions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plan_id", sa.String(255), nullable=False),
        sa.Column("llm_model", sa.String(255), nullable=False),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("prompt_text", sa.Text(), nullable=False),
        sa.Column("prompt_metadata", sa.JSON(), nullable=True),
        sa.Column("response_text", sa.Text(), nullable=True),
        sa.Column("response_metadata", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(50), nullable=False, server_default="pending"),
        sa.Column("started_at", sa.DateTime(), nullable=True, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(50), nullable=True),
    )
    op.create_index("ix_llm_interactions_plan_id", "llm_interactions", ["plan_id"])

    op.create_table(
        "plan_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plan_id", sa.String(255), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("file_type", sa.String(50), nullable=False),
        sa.Column("file_size_bytes", sa.Integer(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("content_summary", sa.Text(), nullable=True),
        sa.Column("generated_by_stage", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("file_path", sa.String(500), nullable=False),
    )
    op.create_index("ix_plan_files_plan_id", "plan_files", ["plan_id"])

    op.create_table(
        "plan_metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plan_id", sa.String(255), nullable=False),
        sa.Column("total_llm_calls", sa.Integer(), nullable=True, server_default=sa.text("0")),
        sa.Column("total_tokens_used", sa.Integer(), nullable=True, server_default=sa.text("0")),
        sa.Column("total_cost_usd", sa.Float(), nullable=True, server_default=sa.text("0")),
        sa.Column("plan_complexity_score", sa.Float(), nullable=True),
        sa.Column("plan_completeness_score", sa.Float(), nullable=True),
        sa.Column("user_rating", sa.Integer(), nullable=True),
        sa.Column("user_feedback", sa.Text(), nullable=True),
        sa.Column("peak_memory_mb", sa.Float(), nullable=True),
        sa.Column("cpu_time_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True, server_default=sa.text("CURRENT_TIMESTAMP")),
    )
    op.create_index("ix_plan_metrics_plan_id", "plan_metrics", ["plan_id"])


def downgrade() -> None:
    op.drop_index("ix_plan_metrics_plan_id", table_name="plan_metrics")
    op.drop_table("plan_metrics")
    op.drop_index("ix_plan_files_plan_id", table_name="plan_files")
    op.drop_table("plan_files")
    op.drop_index("ix_llm_interactions_plan_id", table_name="llm_interactions")
    op.drop_table("llm_interactions")
    op.drop_index("ix_plans_user_id", table_name="plans")
    op.drop_index("ix_plans_plan_id", table_name="plans")
    op.drop_table("plans")
