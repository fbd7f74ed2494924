"""Alembic: up/down/up on both databases, and the migrated schema equals the ORM metadata."""

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from resources import migrate
from resources.database import make_engine
from resources.models import Base

REPO = Path(__file__).resolve().parent.parent
APP_TABLES = {"plans", "llm_interactions", "plan_files", "plan_metrics", "plan_content"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("postgres_empty_url")


def _tables(url):
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_url):
    migrate.upgrade(empty_url)
    assert APP_TABLES <= _tables(empty_url)
    assert migrate.current_revision(empty_url) == "006"
    migrate.downgrade(empty_url, "base")
    assert _tables(empty_url) & APP_TABLES == set()
    assert migrate.current_revision(empty_url) is None
    migrate.upgrade(empty_url)
    assert migrate.current_revision(empty_url) == migrate.head_revision() == "006"


def test_version_table_is_ours(empty_url):
    migrate.upgrade(empty_url)
    tables = _tables(empty_url)
    assert "planexe_alembic_version" in tables
    assert "alembic_version" not in tables  # Dagster's PostgreSQL storage owns that name


def test_migrated_schema_matches_orm(empty_url):
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": "planexe_alembic_version"}
            )
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_plan_content_keeps_seed_indexes_and_gains_unique_key(empty_url):
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("plan_content")}
        columns = {c["name"] for c in inspect(engine).get_columns("plan_content")}
        interaction_indexes = {
            ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("llm_interactions")
        }
    finally:
        engine.dispose()
    for name in ("idx_plan_content_plan_id", "idx_plan_content_plan_id_filename", "idx_plan_content_stage"):
        assert name in indexes
    assert indexes["uq_plan_content_plan_id_filename"]["unique"]
    assert indexes["uq_plan_content_plan_id_filename"]["column_names"] == ["plan_id", "filename"]
    assert {"content_hash", "run_id", "updated_at"} <= columns
    assert interaction_indexes["idx_llm_interactions_plan_id_stage"] == ["plan_id", "stage"]


def test_003_collapses_duplicates_left_by_older_writers(empty_url):
    from sqlalchemy import text

    migrate.upgrade(empty_url, "002")
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        for i in range(3):
            conn.execute(
                text(
                    "INSERT INTO plan_content (plan_id, filename, content_type, content) VALUES ('p', 'a.md', 'markdown', :c)"
                ),
                {"c": f"v{i}"},
            )
    engine.dispose()
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT content FROM plan_content WHERE plan_id='p'")).all()
    engine.dispose()
    assert rows == [("v2",)]


def test_006_turns_cancelled_plans_into_stopped_ones_and_back(empty_url):
    """Old rows: 'cancelled' becomes 'stopped' (resumable), completed calls are counted from the
    recorded attempts; the downgrade gives 'cancelled' back and drops the new columns."""
    from sqlalchemy import text

    migrate.upgrade(empty_url, "005")
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        for plan_id, status in (("c", "cancelled"), ("f", "failed"), ("d", "completed")):
            conn.execute(
                text("INSERT INTO plans (plan_id, prompt, status) VALUES (:p, 'x', :s)"),
                {"p": plan_id, "s": status},
            )
        conn.execute(text("INSERT INTO plan_metrics (plan_id, total_llm_calls) VALUES ('c', 3)"))
        for status in ("completed", "failed", "completed"):
            conn.execute(
                text(
                    "INSERT INTO llm_interactions (plan_id, llm_model, stage, prompt_text, status) VALUES ('c', 'm', 's', 'p', :s)"
                ),
                {"s": status},
            )
    engine.dispose()
    migrate.upgrade(empty_url, "006")
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        plans = dict(conn.execute(text("SELECT plan_id, status FROM plans")).all())
        recoverable = conn.execute(text("SELECT recoverable FROM plans WHERE plan_id = 'c'")).scalar()
        completed = conn.execute(text("SELECT total_llm_calls, completed_llm_calls FROM plan_metrics")).one()
    engine.dispose()
    assert plans == {"c": "stopped", "f": "failed", "d": "completed"}
    assert recoverable in (True, 1) and tuple(completed) == (3, 2)

    migrate.downgrade(empty_url, "005")
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        plans = dict(conn.execute(text("SELECT plan_id, status FROM plans")).all())
    columns = {c["name"] for c in inspect(engine).get_columns("plans")}
    engine.dispose()
    assert plans == {"c": "cancelled", "f": "failed", "d": "completed"}
    assert not {"failure_reason", "failed_step", "recoverable"} & columns


def test_alembic_cli_from_repo_root(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {"DATABASE_URL": url, "PATH": str(Path(sys.executable).parent)}
    for args in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", *args], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "current"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert "006 (head)" in done.stdout
