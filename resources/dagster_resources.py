"""Dagster resources over the plain-Python layers."""

from __future__ import annotations

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
