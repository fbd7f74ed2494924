"""The ``planexe`` command line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from resources.config import ConfigError, database_url, redact_url

app = typer.Typer(
    help="planexe-dagster: turn a plain-English goal into a full plan, one Dagster partition per plan.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations of the application tables).", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the application tables (alembic upgrade)."""
    from resources import migrate

    try:
        url = database_url()
        migrate.upgrade(url, revision)
        console.print(f"database {redact_url(url)} at revision {migrate.current_revision(url)}")
    except ConfigError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - report, don't dump a trace at a user
        fail(f"migration failed on {redact_url(database_url())}: {exc}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. 002 or base.")) -> None:
    """Migrate the application tables down to REVISION (alembic downgrade)."""
    from resources import migrate

    try:
        url = database_url()
        migrate.downgrade(url, revision)
        console.print(f"database {redact_url(url)} at revision {migrate.current_revision(url)}")
    except ConfigError as exc:
        fail(str(exc))


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and whether it is the newest."""
    from resources import migrate

    try:
        url = database_url()
        current = migrate.current_revision(url)
        head = migrate.head_revision()
    except ConfigError as exc:
        fail(str(exc))
        return
    except Exception as exc:  # noqa: BLE001
        fail(f"cannot read {redact_url(database_url())}: {exc}")
        return
    state = "up to date" if current == head else f"behind (head is {head}); run: planexe db upgrade"
    console.print(f"{redact_url(url)}: revision {current or 'none'} — {state}")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
