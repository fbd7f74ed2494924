"""SQLAlchemy 2 models of the application tables.

Column names and types follow PlanExe's schema (``planexe_api/database.py`` and its Alembic 001/002);
what this project adds is listed per table. Migrations in ``migrations/versions`` create exactly this
schema; ``tests/test_migrations.py`` checks that Alembic autogenerate finds no difference.

Times are stored as naive UTC ``DateTime`` values, as PlanExe does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC now, the form every DateTime column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


# llm_interactions.status of a call that was never sent (circuit breaker open, prompt over the
# context window): kept on record, but not an attempt in any count.
NOT_SENT = "skipped"


class PlanStatus:
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    # Stopped on purpose (Ctrl-C or SIGTERM of `planexe plan`/`resume`, a cancelled Dagster run,
    # PlanExe's stop flag); `planexe resume` continues it. Distinct from failed. Migration 006 turned
    # the rows of the older name "cancelled" into this.
    STOPPED = "stopped"
    REFUSED = "refused"  # the redline gate refused the plan (opt-in)

    ALL = (PENDING, RUNNING, COMPLETED, FAILED, STOPPED, REFUSED)
    FINISHED = (COMPLETED, FAILED, STOPPED, REFUSED)


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True, index=True)
    user_id: Mapped[str | None] = mapped_column(String(255), index=True)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    llm_model: Mapped[str | None] = mapped_column(String(255))
    speed_vs_detail: Mapped[str] = mapped_column(
        String(50), nullable=False, default="all_details_but_slow", server_default="all_details_but_slow"
    )
    openrouter_api_key_hash: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(
        String(50), nullable=False, default="pending", server_default="pending"
    )
    progress_percentage: Mapped[int | None] = mapped_column(Integer, default=0, server_default=text("0"))
    progress_message: Mapped[str | None] = mapped_column(Text, default="", server_default="")
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    output_dir: Mapped[str | None] = mapped_column(String(500))
    estimated_duration_minutes: Mapped[float | None] = mapped_column(Float)
    actual_duration_minutes: Mapped[float | None] = mapped_column(Float)
    # Added: the run (Dagster run id / Luigi build id) that last worked on this plan.
    last_run_id: Mapped[str | None] = mapped_column(String(64))
    # Added: a REFUSE verdict of the redline gate stops this plan (see planexe_assets/lifecycle/redline.py).
    refuse_on_redline: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # Added (the names of PlanExe's MCP plan_status): why the plan failed or was stopped, the step
    # where it happened, and whether `planexe resume` can succeed without changing anything (False:
    # a permanent error such as a rejected request or bad data; see steps.base.FailureKind). Cleared
    # when the plan runs again.
    failure_reason: Mapped[str | None] = mapped_column(Text)
    failed_step: Mapped[str | None] = mapped_column(String(255))
    recoverable: Mapped[bool | None] = mapped_column(Boolean)


class LLMInteraction(Base):
    """One attempt of one LLM call. Added: index on (plan_id, stage)."""

    __tablename__ = "llm_interactions"
    __table_args__ = (Index("idx_llm_interactions_plan_id_stage", "plan_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    llm_model: Mapped[str] = mapped_column(String(255), nullable=False)
    stage: Mapped[str] = mapped_column(String(100), nullable=False)
    prompt_text: Mapped[str] = mapped_column(Text, nullable=False)
    prompt_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    response_text: Mapped[str | None] = mapped_column(Text)
    response_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(
        String(50), nullable=False, default="pending", server_default="pending"
    )
    started_at: Mapped[datetime | None] = mapped_column(
        DateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(50))


class PlanFile(Base):
    """A file of a plan's run directory. Added: unique (plan_id, filename), so re-runs update in place."""

    __tablename__ = "plan_files"
    __table_args__ = (Index("uq_plan_files_plan_id_filename", "plan_id", "filename", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    file_type: Mapped[str] = mapped_column(String(50), nullable=False)
    file_size_bytes: Mapped[int | None] = mapped_column(Integer)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    content_summary: Mapped[str | None] = mapped_column(Text)
    generated_by_stage: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    file_path: Mapped[str] = mapped_column(String(500), nullable=False)


class PlanMetrics(Base):
    """Per-plan roll-up of LLM usage. Added: unique plan_id (one row per plan, incremented atomically)
    and ``completed_llm_calls``.

    ``total_llm_calls`` counts attempts (every ``llm_interactions`` row, failed ones included), as
    PlanExe does; ``completed_llm_calls`` the attempts that returned a usable answer, i.e. the calls
    that succeeded. It is set from ``llm_interactions`` when a run ends (``plan_sync``).
    """

    __tablename__ = "plan_metrics"
    __table_args__ = (Index("uq_plan_metrics_plan_id", "plan_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    total_llm_calls: Mapped[int | None] = mapped_column(Integer, default=0, server_default=text("0"))
    completed_llm_calls: Mapped[int | None] = mapped_column(Integer, default=0, server_default=text("0"))
    total_tokens_used: Mapped[int | None] = mapped_column(Integer, default=0, server_default=text("0"))
    total_cost_usd: Mapped[float | None] = mapped_column(Float, default=0.0, server_default=text("0"))
    plan_complexity_score: Mapped[float | None] = mapped_column(Float)
    plan_completeness_score: Mapped[float | None] = mapped_column(Float)
    user_rating: Mapped[int | None] = mapped_column(Integer)
    user_feedback: Mapped[str | None] = mapped_column(Text)
    peak_memory_mb: Mapped[float | None] = mapped_column(Float)
    cpu_time_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )


class PlanContent(Base):
    """The content of every output file, beside the file itself.

    Added over the reference: unique (plan_id, filename), ``content_hash`` (sha256 of the UTF-8
    content), ``run_id`` (the Dagster run or Luigi invocation that wrote it) and ``updated_at``.
    """

    __tablename__ = "plan_content"
    __table_args__ = (
        Index("idx_plan_content_plan_id", "plan_id"),
        Index("idx_plan_content_plan_id_filename", "plan_id", "filename"),
        Index("idx_plan_content_stage", "stage"),
        Index("uq_plan_content_plan_id_filename", "plan_id", "filename", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(255), nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    stage: Mapped[str | None] = mapped_column(String(100))
    content_type: Mapped[str] = mapped_column(String(50), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    content_size_bytes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    content_hash: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


CONTENT_TYPES = {".json": "json", ".md": "markdown", ".html": "html", ".csv": "csv", ".txt": "txt"}


def content_type_for(filename: str) -> str:
    for suffix, kind in CONTENT_TYPES.items():
        if filename.endswith(suffix):
            return kind
    return "unknown"
