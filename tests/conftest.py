"""Shared fixtures: migrated SQLite and PostgreSQL databases, an isolated PLANEXE_HOME.

PostgreSQL tests read the server URL from ``PLANEXE_TEST_POSTGRES_URL`` (``.ci/run`` sets it) and
create a throw-away database per test session on that server. Without the variable they skip with a
reason; in CI (``CI=true``) a missing or unreachable server is an error, never a skip.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from resources import migrate
from resources.database import DatabaseService, make_engine

POSTGRES_ENV = "PLANEXE_TEST_POSTGRES_URL"

# LLM-calling assets keep their Dagster retry policy in tests, without its backoff wait (read when
# the definitions are built; see planexe_assets/dagster_defs/step_policies.py).
os.environ.setdefault("PLANEXE_LLM_STEP_RETRY_DELAY", "0")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own PLANEXE_HOME and no inherited DATABASE_URL."""
    home = tmp_path / "planexe_home"
    monkeypatch.setenv("PLANEXE_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return home


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def app_db(sqlite_url, monkeypatch):
    """The migrated SQLite application database, also as ``DATABASE_URL`` (what the steps, the CLI
    and the Dagster resources use when given no URL)."""
    from resources.database import get_database_service

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    return get_database_service(sqlite_url)


@pytest.fixture
def resources(sqlite_url):
    """Dagster resources for sensor and schedule evaluations: the application database."""
    from planexe_assets.dagster_defs.resources import DatabaseResource

    return {"database": DatabaseResource(url=sqlite_url)}


@pytest.fixture
def instance():
    """An ephemeral Dagster instance (in memory)."""
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as inst:
        yield inst


def _postgres_server_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{POSTGRES_ENV} is not set; CI must run the PostgreSQL tests (.ci/run sets it)")
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV}=postgresql+psycopg://user@host:port/db (see .ci/run)"
        )
    return url


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = _postgres_server_url()
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"PostgreSQL at {make_url(url).render_as_string(hide_password=True)} is unreachable: {exc}"
            )
        pytest.skip(f"PostgreSQL at {make_url(url).render_as_string(hide_password=True)} is unreachable")
    finally:
        engine.dispose()
    return url


def create_postgres_database(server_url: str, prefix: str = "planexe_t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def postgres_empty_url(postgres_server):
    url = create_postgres_database(postgres_server)
    yield url
    from resources.database import _services

    service = _services.pop(url, None)
    if service is not None:
        service.close()
    drop_postgres_database(postgres_server, url)


@pytest.fixture
def postgres_url(postgres_empty_url) -> str:
    migrate.upgrade(postgres_empty_url)
    return postgres_empty_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db(db_url):
    service = DatabaseService(make_engine(db_url))
    yield service
    service.close()
