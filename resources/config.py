"""Where planexe-dagster keeps its state, read from the environment.

- ``PLANEXE_HOME`` (default ``./.planexe``): the default SQLite database ``planexe.db``, the run
  directories ``runs/<plan_id>/`` and the Dagster home ``dagster/``.
- ``DATABASE_URL``: overrides the database (``sqlite:///...`` or ``postgresql+psycopg://...``).
- ``PLANEXE_LLM_CONFIG``: path of an ``llm_config.json`` (see ``resources.llm.config``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg", "postgresql+psycopg2")


class ConfigError(ValueError):
    """A setting is unusable; the message says which and why."""


def planexe_home() -> Path:
    return Path(os.environ.get("PLANEXE_HOME") or ".planexe").expanduser().resolve()


def runs_dir() -> Path:
    return planexe_home() / "runs"


def dagster_home() -> Path:
    return planexe_home() / "dagster"


def worker_identity() -> str:
    """Which process on which machine did a piece of work: ``host:pid:PLANEXE_HOME``. Recorded with
    each step's materialization and check, so a distributed run shows where every step ran."""
    return f"{socket.gethostname()}:{os.getpid()}:{planexe_home()}"


def default_database_url() -> str:
    return f"sqlite:///{planexe_home() / 'planexe.db'}"


def database_url(url: str | None = None) -> str:
    """The database URL to use: the argument, else ``DATABASE_URL``, else SQLite under ``PLANEXE_HOME``."""
    chosen = url or os.environ.get("DATABASE_URL") or default_database_url()
    return validate_database_url(chosen)


def validate_database_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"DATABASE_URL is not a database URL: {exc}") from None
    driver = parsed.drivername
    if driver == "postgresql" or driver == "postgres":
        raise ConfigError(
            "DATABASE_URL must name its PostgreSQL driver: use postgresql+psycopg://... "
            "(SQLAlchemy 2.1 no longer guesses one)"
        )
    if driver not in SUPPORTED_DRIVERS:
        raise ConfigError(
            f"DATABASE_URL scheme {driver!r} is not supported; use sqlite:///PATH or postgresql+psycopg://..."
        )
    return url


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database url>"
