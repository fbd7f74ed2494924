"""Run our Alembic migrations from Python (the CLI's ``planexe db ...`` and the tests use this).

``alembic.ini`` sits at the repository root; when the package is installed elsewhere, the
configuration is built from the packaged ``migrations`` folder instead, so ``planexe db upgrade``
works from any directory.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from resources.config import database_url
from resources.database import check_sqlite_location, make_engine, sqlite_file

VERSION_TABLE = "planexe_alembic_version"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str | None = None) -> Config:
    ini = _REPO_ROOT / "alembic.ini"
    cfg = Config(str(ini)) if ini.exists() else Config()
    cfg.set_main_option("script_location", str(_REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    """The database's revision, None if it has no tables yet. Only reads: a SQLite file that does not
    exist yet is not created (nor its directory)."""
    path = sqlite_file(database_url(url))
    if path is not None and not path.exists():
        check_sqlite_location(database_url(url))  # a place where it could never be created is an error
        return None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migrations folder has no revision; the installation is incomplete")
    return head


def is_up_to_date(url: str | None = None) -> bool:
    return current_revision(url) == head_revision()
