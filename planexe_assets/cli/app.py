"""The ``planexe`` command line.

Each command imports what it uses inside its body: ``planexe --help`` and ``planexe list`` then start
without Dagster (about a second to import), Alembic or the openai client. Only light modules are
imported here.
"""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from resources.config import ConfigError, database_url, redact_url
from resources.plan_ids import InvalidPlanId, validate_plan_id

app = typer.Typer(
    help="planexe-dagster: turn a plain-English goal into a full plan, one Dagster partition per plan.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(
    help="Database schema (Alembic migrations of the application tables).", no_args_is_help=True
)
app.add_typer(db_app, name="db")

# Messages name paths and ids that users copy: long lines are left to the terminal to wrap (soft
# wrap), never broken by Rich, mid-word or otherwise. Tables are printed with soft_wrap=False.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


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
    from resources.database import sqlite_file

    missing = sqlite_file(url) is not None and not sqlite_file(url).exists()
    if missing:
        state = "no database file yet; run: planexe db upgrade"
    else:
        state = "up to date" if current == head else f"behind (head is {head}); run: planexe db upgrade"
    console.print(f"{redact_url(url)}: revision {current or 'none'} — {state}", highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


# -- plans ------------------------------------------------------------------------------------------
def _open_database():
    """The migrated application database, or a clear error. The schema is checked from the URL first,
    so checking a SQLite path that does not exist yet creates nothing (no file, no directory)."""
    from resources import migrate
    from resources.database import get_database_service

    try:
        url = database_url()
    except ConfigError as exc:
        fail(str(exc))
        return None
    try:
        current = migrate.current_revision(url)
    except ConfigError as exc:
        fail(str(exc))
        return None
    except Exception as exc:  # noqa: BLE001
        fail(f"cannot reach the database {redact_url(url)}: {exc}")
        return None
    if current != migrate.head_revision():
        fail(
            f"the database {redact_url(url)} is at revision {current or 'none'}; run `planexe db upgrade` first"
        )
    try:
        return get_database_service(url)
    except ConfigError as exc:
        fail(str(exc))
        return None


def _instance():
    from planexe_assets.dagster_defs.instance_config import InstanceConfigError
    from planexe_assets.dagster_defs.runs import default_instance

    try:
        return default_instance()
    except InstanceConfigError as exc:
        fail(str(exc))
        return None


@app.command("plan")
def plan_command(
    prompt: str = typer.Argument(None, help="The goal, in plain English. Use --prompt-file for a long one."),
    prompt_file: str = typer.Option(None, "--prompt-file", help="Read the prompt from this UTF-8 file."),
    model: str = typer.Option("auto", "--model", help="Model id from llm_config.json, 'offline', or 'auto'."),
    fast: bool = typer.Option(
        False,
        "--fast",
        help="fast_but_skip_details: fewer drafts, durations, WBS level 3 items and review rounds.",
    ),
    plan_id: str = typer.Option(
        None, "--plan-id", help="Plan id (letters, digits, _ and -; at most 64). Default: generated."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display; only the outcome."),
    queue: bool = typer.Option(
        False,
        "--queue",
        "--no-run",
        help="Only create the plan (status pending); the Dagster daemon's plan sensor launches it "
        "(`planexe ui`, or `dagster-daemon run` on a deployment).",
    ),
    refuse_on_redline: bool = typer.Option(
        None,
        "--refuse-on-redline/--advisory-redline",
        help="Stop the plan after the diagnostics when the redline gate's verdict is REFUSE or the prompt "
        "screening's is UNUSABLE (status refused). Default: PLANEXE_REFUSE_ON_REDLINE, else advisory only, "
        "as in PlanExe.",
    ),
) -> None:
    """Create a plan and materialise all its assets, showing progress as it goes.

    The run executes in a child process (its log: $PLANEXE_HOME/logs/PLAN/RUN.log). Ctrl-C (or
    SIGTERM) stops it: the steps in flight get a short grace period, the plan is marked stopped and
    `planexe resume PLAN` continues it later; a second Ctrl-C stops at once.
    """

    from planexe_assets.cli.supervisor import check_log_directory
    from planexe_assets.lifecycle.plans import PlanInputError, PlanRequest, create_plan, read_prompt_file
    from resources.llm import LLMConfigError

    if (prompt is None) == (prompt_file is None):
        fail("give the prompt as an argument or with --prompt-file (one of them)", code=2)
    try:
        text = prompt if prompt is not None else read_prompt_file(Path(prompt_file))
        db = _open_database()
        # Run now: the row is claimed by this run's id, so the plan sensor leaves it alone.
        run_id = None if queue else str(uuid.uuid4())
        request = PlanRequest(
            prompt=text,
            model=model,
            fast=fast,
            plan_id=plan_id,
            claimed_by_run=run_id,
            refuse_on_redline=refuse_on_redline,
        )
        if not queue:
            check_log_directory()
        plan = create_plan(db, request)
    except (PlanInputError, InvalidPlanId, LLMConfigError, ConfigError) as exc:
        fail(str(exc), code=2)
        return
    if queue:
        console.print(
            f"plan [bold]{plan.plan_id}[/] queued (status pending); the plan sensor of the Dagster daemon "
            f"launches it. Follow it with `planexe status {plan.plan_id}` or in `planexe ui`."
        )
        return
    console.print(f"plan [bold]{plan.plan_id}[/] created; run directory {plan.output_dir}", highlight=False)
    _run_and_report(db, plan.plan_id, steps=None, quiet=quiet, run_id=run_id, command="planexe plan")


@app.command("resume")
def resume_command(
    plan_id: str = typer.Argument(..., help="The plan to continue."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display; only the outcome."),
) -> None:
    """Materialise the steps of a plan that are missing (failed, stopped or never ran), and what depends on them.

    Progress, logs and Ctrl-C work as in `planexe plan`.
    """

    from planexe_assets.cli.supervisor import check_log_directory
    from planexe_assets.lifecycle.runner import missing_steps_with_downstream

    try:
        validate_plan_id(plan_id)
    except InvalidPlanId as exc:
        fail(str(exc), code=2)
    db = _open_database()
    plan = db.get_plan(plan_id)
    if plan is None:
        fail(f"no plan {plan_id}", code=2)
    steps = missing_steps_with_downstream(db, plan_id)
    if not steps:
        console.print(f"plan {plan_id}: every step is already materialised", highlight=False)
        return
    try:
        check_log_directory()
    except ConfigError as exc:
        fail(str(exc), code=2)
    run_id = str(uuid.uuid4())
    if plan.status == "pending" and plan.last_run_id is None:
        # A queued plan: claim it for this run so the plan sensor does not launch it as well.
        db.update_plan(plan_id, {"last_run_id": run_id})
    console.print(f"plan {plan_id}: materialising {len(steps)} step(s): {', '.join(steps)}", highlight=False)
    _run_and_report(db, plan_id, steps=steps, quiet=quiet, run_id=run_id, command="planexe resume")


def _progress_view(quiet: bool):
    from planexe_assets.cli.progress import LineView, LiveView, QuietView

    if quiet:
        return QuietView()
    if console.is_terminal:
        # Its own console: the live table lays its lines out itself (the message console soft-wraps).
        return LiveView(Console())
    return LineView(sys.stdout)


def _run_and_report(db, plan_id: str, steps, quiet: bool, run_id: str, command: str) -> None:
    from planexe_assets.cli.supervisor import Supervised, SupervisorError, supervise
    from resources.database import DatabaseUnavailable
    from resources.models import PlanStatus

    instance = _instance()
    try:
        outcome: Supervised = supervise(db, instance, plan_id, run_id, steps, _progress_view(quiet), command)
    except SupervisorError as exc:
        fail(str(exc))
        return
    try:
        plan = db.get_plan(plan_id)
    except DatabaseUnavailable as exc:
        fail(
            f"plan {plan_id} did not finish: {exc}. Nothing was reported complete; run "
            f"`planexe resume {plan_id}` once the database is back. Log of the run: {outcome.log_path}"
        )
        return
    if outcome.stop_signal is not None or (plan is not None and plan.status == PlanStatus.STOPPED):
        if plan is None or plan.status != PlanStatus.COMPLETED:
            # One line, whatever stopped it; the plan row has the details (`planexe status`).
            if outcome.stop_signal is None and plan.failure_reason:
                console.print(
                    f"plan {plan_id} {plan.failure_reason}; resume it with: planexe resume {plan_id}",
                    highlight=False,
                )
            else:
                console.print(
                    f"plan {plan_id} stopped; resume it with: planexe resume {plan_id}", highlight=False
                )
            raise typer.Exit(outcome.exit_code_for_stop)
    console.print(f"run directory: {plan.output_dir}", highlight=False)

    report = _local_report(db, plan_id)
    if report is not None:
        console.print(f"report: {report}", highlight=False)
    if plan.status == PlanStatus.COMPLETED:
        console.print(
            f"plan {plan_id} completed ({plan.progress_message}); Dagster run {run_id}", highlight=False
        )
        return
    _report_failure(plan, outcome)


def _local_report(db, plan_id: str) -> Path | None:
    """The plan's report on this machine, written from its ``plan_content`` row when this machine's
    run directory lacks it (the steps ran on other workers); None when the plan has no report."""
    from planexe_assets.core import step_file
    from resources.config import runs_dir
    from resources.plan_store import PlanStore

    name = step_file("report")
    if db.get_plan_content_by_filename(plan_id, name) is None:
        return None
    run_dir, _ = PlanStore(db, runs_dir()).materialize(plan_id, [name])
    return run_dir / name


def _report_failure(plan, outcome) -> None:
    from resources.models import PlanStatus

    plan_id = plan.plan_id
    if plan.status == PlanStatus.FAILED and plan.failure_reason:
        where = f" at {plan.failed_step}" if plan.failed_step else ""
        err_console.print(
            f"[bold red]error:[/] plan {plan_id} failed{where}: {plan.failure_reason}", highlight=False
        )
        if plan.recoverable is False:
            err_console.print(
                "not recoverable as it is: the same request would fail again; change what the error names "
                f"(model, configuration, input), then run `planexe resume {plan_id}`",
                highlight=False,
            )
        else:
            err_console.print(
                f"recoverable: `planexe resume {plan_id}` redoes the failed and missing steps",
                highlight=False,
            )
    else:
        message = plan.error_message or f"the run ended with the plan {plan.status}"
        err_console.print(f"[bold red]error:[/] plan {plan_id} {plan.status}: {message}", highlight=False)
    if outcome.settle_error:
        err_console.print(
            f"the end of the run could not be recorded: {outcome.settle_error}", highlight=False
        )
    err_console.print(f"log of the run: {outcome.log_path}", highlight=False)
    raise typer.Exit(1)


def _quiet_dagster_logs() -> None:

    for name in ("dagster", "dagster.builtin"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.command("ui")
def ui_command(
    port: int = typer.Option(3000, "--port", "-p", help="Port of the Dagster webserver."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to listen on (default: this machine only)."
    ),
    workspace: str = typer.Option(
        None, "--workspace", "-w", help="Dagster workspace file (default: the repository's workspace.yaml)."
    ),
) -> None:
    """Start the Dagster UI and daemon (`dagster dev`) on this PLANEXE_HOME's Dagster home.

    Ctrl-C, SIGTERM or SIGHUP stop `dagster dev` and its webserver, daemon and code servers (all of
    its process group), then this command exits.
    """
    from planexe_assets.cli.ui import UIConfigError, dagster_dev_command, run_dagster_dev
    from planexe_assets.dagster_defs.instance_config import InstanceConfigError

    _open_database()
    try:
        command = dagster_dev_command(port=port, host=host, workspace=workspace)
    except (UIConfigError, InstanceConfigError) as exc:
        fail(str(exc), code=2)
        return
    console.print(
        f"Dagster UI on {command.url} (DAGSTER_HOME={command.dagster_home}, database "
        f"{redact_url(database_url())}); Ctrl-C stops it.",
        highlight=False,
    )
    result = run_dagster_dev(command)
    if result.signal is not None:
        console.print(f"stopped Dagster ({result.describe()})", highlight=False)
        raise typer.Exit(0 if result.clean else 1)
    raise typer.Exit(result.returncode)


@app.command("list")
def list_command(limit: int = typer.Option(50, help="How many plans, newest first.")) -> None:
    """List plans, newest first. Plan ids are never shortened; on a narrow terminal the prompt, model,
    time and failure columns are dropped first (see `planexe status ID` for everything)."""
    db = _open_database()
    plans = db.list_plans(limit=limit)
    console.print(plans_table(plans, console.width), soft_wrap=False)


_PER_COLUMN = 3  # box edge and padding of each column of the plan list


def plans_table(plans, width: int):
    """The plan list, fitted to ``width`` columns without ever cutting a plan id."""
    rows = [_plan_row(p) for p in plans]
    order, widths, used = _fitting_columns(rows, width)
    prompt_room = width - used - _PER_COLUMN
    show_prompt = prompt_room >= 12
    table = Table(box=box.SQUARE, pad_edge=True)
    for name in order:
        table.add_column(name, no_wrap=True, min_width=widths[name] if name == "plan id" else None)
    if show_prompt:
        table.add_column("prompt", no_wrap=True, overflow="ellipsis", max_width=min(60, prompt_room))
    for r in rows:
        cells = [r[c] for c in order]
        if show_prompt:
            cells.append(r["prompt"])
        table.add_row(*cells)
    return table


def _plan_failure(plan) -> str:
    """The failure column: the failed step and whether a resume can fix it."""
    if plan.status not in ("failed", "stopped", "refused") or not (
        plan.failed_step or plan.recoverable is not None
    ):
        return ""
    resumable = {True: "resumable", False: "needs a change", None: ""}[plan.recoverable]
    return ", ".join(filter(None, [plan.failed_step, resumable]))


def _plan_row(p) -> dict[str, str]:
    return {
        "plan id": p.plan_id,
        "status": p.status,
        "progress": f"{p.progress_percentage or 0}%",
        "failure": _plan_failure(p),
        "model": p.llm_model or "",
        "created (UTC)": f"{p.created_at:%Y-%m-%d %H:%M}" if p.created_at else "",
        "prompt": " ".join(p.prompt.split()),
    }


def _fitting_columns(rows: list[dict[str, str]], width: int) -> tuple[list[str], dict[str, int], int]:
    """The columns shown (id, status and progress always; failure, time and model while they fit
    and say something), their widths, and the width they use."""
    required = ["plan id", "status", "progress"]
    optional = ["failure", "created (UTC)", "model"]  # added in this order while they fit
    widths = {name: max([len(name)] + [len(r[name]) for r in rows]) for name in required + optional}
    used = 1 + sum(widths[c] + _PER_COLUMN for c in required)
    chosen = list(required)
    for name in optional:
        if not any(r[name] for r in rows):
            continue
        if used + widths[name] + _PER_COLUMN <= width:
            chosen.append(name)
            used += widths[name] + _PER_COLUMN
    order = [c for c in ["plan id", "status", "progress", "failure", "model", "created (UTC)"] if c in chosen]
    return order, widths, used


@app.command("status")
def status_command(plan_id: str = typer.Argument(..., help="The plan.")) -> None:
    """Status, progress, failure, LLM usage and files of one plan."""
    db = _open_database()
    plan = db.get_plan(plan_id)
    if plan is None:
        fail(f"no plan {plan_id}", code=2)
    from planexe_assets.cli.progress import Usage

    console.print(
        f"[bold]{plan.plan_id}[/]  status: {plan.status}  progress: {plan.progress_percentage}% ({plan.progress_message})",
        highlight=False,
    )
    console.print(f"model: {plan.llm_model}  mode: {plan.speed_vs_detail}", highlight=False)
    console.print(f"run directory: {plan.output_dir}", highlight=False)
    if plan.failure_reason or plan.failed_step or plan.recoverable is not None:
        recoverable = {
            True: "yes (planexe resume redoes what is missing)",
            False: "no (the same request would fail again; change it first)",
            None: "unknown",
        }[plan.recoverable]
        console.print(f"[red]failure_reason:[/] {plan.failure_reason or '-'}", highlight=False)
        console.print(f"failed_step: {plan.failed_step or '-'}  recoverable: {recoverable}", highlight=False)
    if plan.error_message and plan.error_message != plan.failure_reason:
        console.print(f"[red]error:[/] {plan.error_message}", highlight=False)
    usage = sum((Usage.from_stage(e) for e in db.usage_by_stage(plan_id).values()), Usage())
    metrics = db.get_plan_metrics(plan_id)
    cost = (
        f"  cost: ${metrics.total_cost_usd or 0:.4f}"
        if metrics is not None and metrics.total_cost_usd
        else ""
    )
    console.print(usage.describe() + cost, highlight=False)
    console.print(files_table(db.get_plan_content(plan_id), console.width), soft_wrap=False)


def files_table(rows, width: int):
    """The plan's files, grouped under the step (stage) that wrote them: stage names and byte counts
    stay whole at 80 columns; the sha256 prefix shrinks first on a narrow terminal."""

    digest = 12 if width >= 100 else 8
    table = Table(title="files", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("step / file", overflow="fold")
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    stage = object()
    for row in rows:
        if row.stage != stage:
            stage = row.stage
            table.add_row(Text(row.stage or "(no stage)", style="bold"), "", "")
        table.add_row(f" {row.filename}", str(row.content_size_bytes), (row.content_hash or "")[:digest])
    return table


@app.command("show")
def show_command(
    plan_id: str = typer.Argument(..., help="The plan."),
    filename: str = typer.Argument(..., help="An output file name, e.g. 002-6-identify_purpose.md."),
) -> None:
    """Print one output file of a plan (from plan_content)."""
    db = _open_database()
    row = db.get_plan_content_by_filename(plan_id, filename)
    if row is None:
        fail(f"plan {plan_id} has no file {filename}", code=2)
    sys.stdout.write(row.content)
    if not row.content.endswith("\n"):
        sys.stdout.write("\n")


@app.command("export")
def export_command(
    plan_id: str = typer.Argument(..., help="The plan."),
    to: str = typer.Option(
        None,
        "--to",
        help="Write into DIR/<plan_id>/ instead of this machine's run directory ($PLANEXE_HOME/runs/<plan_id>/).",
        metavar="DIR",
    ),
) -> None:
    """Write every file of a plan from plan_content to a run directory on this machine.

    The database is the plan's source of truth and each machine's run directory a copy of it: export
    a plan whose steps ran on other workers (Celery, Kubernetes) to read its report here. Files that
    already match their rows are left as they are."""
    from planexe_assets.core import step_file
    from resources.config import runs_dir
    from resources.plan_store import ContentIntegrityError, PlanStore

    db = _open_database()
    if db.get_plan(plan_id) is None:
        fail(f"no plan {plan_id}", code=2)
    store = PlanStore(db, Path(to).expanduser().resolve() if to else runs_dir())
    # The store logs each restore as a repair; here writing the files is the point (summed up below).
    logging.getLogger("resources.plan_store").setLevel(logging.ERROR)
    try:
        run_dir, written = store.materialize(plan_id)
    except (ContentIntegrityError, PermissionError, OSError) as exc:
        fail(f"cannot export plan {plan_id}: {exc}")
        return
    total = len(db.get_plan_content(plan_id))
    console.print(
        f"plan {plan_id}: {total} file(s) in {run_dir} ({len(written)} written, {total - len(written)} already there)",
        highlight=False,
    )
    report = run_dir / step_file("report")
    if report.exists():
        console.print(f"report: {report}", highlight=False)


@app.command("import-run")
def import_run_command(
    directory: str = typer.Argument(..., help="A run directory made by PlanExe's Luigi pipeline."),
    plan_id: str = typer.Option(
        None, "--plan-id", help="Plan id for the import. Default: the directory's name."
    ),
    replace: bool = typer.Option(False, "--replace", help="Overwrite an existing plan with this id."),
    rematerialize: bool = typer.Option(
        False,
        "--rematerialize",
        help="Then re-run the deterministic steps (markdown, WBS trees, schedule, report).",
    ),
) -> None:
    """Import a PlanExe run: plan row, every file into plan_content, usage, Dagster materializations."""
    from planexe_assets.importer import (
        RunImportError,
        import_run,
        record_in_dagster,
        rematerialize_plan,
        scan_run,
    )

    try:
        run = scan_run(directory, plan_id)
    except RunImportError as exc:
        fail(str(exc), code=2)
        return
    db = _open_database()
    try:
        result = import_run(db, run.source, run.plan_id, replace=replace, scanned=run)
    except RunImportError as exc:
        fail(str(exc), code=2)
        return
    instance = _instance()
    reported = record_in_dagster(instance, result, run.all_files)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(
        f"imported {result.source} as plan [bold]{result.plan_id}[/]: {len(result.files)} files into "
        f"{result.run_dir} and plan_content; {len(result.complete_steps)} complete step(s) reported to "
        f"Dagster as materialized ({len(reported)} events)",
        highlight=False,
    )
    console.print(
        f"LLM usage: {result.llm_calls} calls, {result.total_tokens} tokens, ${result.total_cost_usd:.4f}",
        highlight=False,
    )
    if result.incomplete_steps:
        console.print(
            f"steps without all their outputs: {', '.join(result.incomplete_steps)}", highlight=False
        )
    if rematerialize:
        _quiet_dagster_logs()
        outcome = rematerialize_plan(instance, result.plan_id, result.complete_steps, db=db)
        for name, why in outcome.skipped.items():
            err_console.print(f"[yellow]not re-materialized:[/] {name}: {why}", highlight=False)
        if not outcome.success:
            plan = db.get_plan(result.plan_id)
            fail(
                f"re-materializing {', '.join(outcome.failed_steps)} failed: {plan.error_message if plan else ''}"
            )
        console.print(
            f"re-materialized {len(outcome.steps)} step(s): {', '.join(outcome.steps)} (Dagster run {outcome.run_id})"
        )
    plan = db.get_plan(result.plan_id)
    console.print(f"plan {plan.plan_id} {plan.status} ({plan.progress_message})", highlight=False)

    report = _local_report(db, plan.plan_id)
    if report is not None:
        console.print(f"report: {report}", highlight=False)
