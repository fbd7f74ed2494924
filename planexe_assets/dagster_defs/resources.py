"""Dagster resources over the plain-Python layers."""

from dagster import ConfigurableResource
from pydantic import Field

from resources.config import database_url, redact_url
from resources.database import DatabaseService, get_database_service


class DatabaseResource(ConfigurableResource):
    """The application database: Dagster's equivalent of PlanExe's ``PlanTask.get_database_service()``.

    ``url`` defaults to ``DATABASE_URL`` (or SQLite under ``PLANEXE_HOME``) when left empty. The
    resource never migrates: run ``planexe db upgrade`` (Alembic) first.
    """

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (sqlite:///... or postgresql+psycopg://...); empty means DATABASE_URL.",
    )

    def get_database_service(self) -> DatabaseService:
        return get_database_service(self.url)

    @property
    def resolved_url_for_display(self) -> str:
        return redact_url(database_url(self.url))


class LLMResource(ConfigurableResource):
    """The LLM layer: model list from ``llm_config.json``, retries, fallback, recording.

    ``model`` is the default when a plan's row names none; a plan created with ``--model X`` uses X.
    Executors are shared per process and model list (see ``resources.llm_access``), so the
    per-provider in-flight limit holds across the steps of concurrent plans in one process.
    """

    model: str = Field(
        default="auto",
        description="Model id from llm_config.json, or 'auto' (every prioritized model, in order).",
    )
    config_path: str | None = Field(
        default=None,
        description="Path of llm_config.json; empty means PLANEXE_LLM_CONFIG or the packaged default.",
    )

    def caller_factory(self, db: DatabaseService, should_stop=None):
        """``should_stop``: polled before every LLM attempt (a stop raises ``PipelineStopRequested``)."""
        from resources.llm_access import (
            llm_access,  # deferred: resources.llm loads the openai client, which loading the definitions does not need
        )

        access = llm_access(self.config_path, db)
        return lambda plan_id, stage, plan_model: access.caller(
            plan_id, stage, plan_model or self.model, should_stop
        )
