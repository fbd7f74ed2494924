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
# Messages name paths and ids that users copy: long lines wrap in the terminal, never mid-word.
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
    state = "up to date" if current == head else f"behind (head is {head}); run: planexe db upgrade"
    console.print(f"{redact_url(url)}: revision {current or 'none'} — {state}")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


# -- plans ------------------------------------------------------------------------------------------
def _service():
    from resources.database import get_database_service

    try:
        return get_database_service()
    except ConfigError as exc:
        fail(str(exc))


def _require_schema(db) -> None:
    from resources import migrate

    try:
        current = migrate.current_revision(str(db.engine.url.render_as_string(hide_password=False)))
    except Exception as exc:  # noqa: BLE001
        fail(f"cannot reach the database {redact_url(database_url())}: {exc}")
        return
    if current != migrate.head_revision():
        fail(f"the database {redact_url(database_url())} is at revision {current or 'none'}; run `planexe db upgrade` first")


@app.command("plan")
def plan_command(
    prompt: str = typer.Argument(None, help="The goal, in plain English. Use --prompt-file for a long one."),
    prompt_file: str = typer.Option(None, "--prompt-file", help="Read the prompt from this UTF-8 file."),
    model: str = typer.Option("auto", "--model", help="Model id from llm_config.json, 'offline', or 'auto'."),
    fast: bool = typer.Option(False, "--fast", help="fast_but_skip_details: fewer drafts, durations, WBS level 3 items and review rounds."),
    plan_id: str = typer.Option(None, "--plan-id", help="Plan id (letters, digits, _ and -; at most 64). Default: generated."),
    quiet: bool = typer.Option(False, "--quiet", help="No live progress display."),
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
        help="Stop the plan after the diagnostics when the redline gate's verdict is REFUSE (status "
        "refused). Default: PLANEXE_REFUSE_ON_REDLINE, else advisory only, as in PlanExe.",
    ),
) -> None:
    """Create a plan and materialise all its assets in this process, with live progress."""
    import uuid
    from pathlib import Path

    from planexe_assets.plans import PlanInputError, PlanRequest, create_plan, read_prompt_file
    from resources.llm import LLMConfigError
    from resources.plan_ids import InvalidPlanId

    if (prompt is None) == (prompt_file is None):
        fail("give the prompt as an argument or with --prompt-file (one of them)", code=2)
    try:
        text = prompt if prompt is not None else read_prompt_file(Path(prompt_file))
        db = _service()
        _require_schema(db)
        # Run now: the row is claimed by this run's id, so the plan sensor leaves it alone.
        run_id = None if queue else str(uuid.uuid4())
        request = PlanRequest(
            prompt=text, model=model, fast=fast, plan_id=plan_id, claimed_by_run=run_id,
            refuse_on_redline=refuse_on_redline,
        )
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
    console.print(f"plan [bold]{plan.plan_id}[/] created; run directory {plan.output_dir}")
    _run_and_report(db, plan.plan_id, steps=None, quiet=quiet, run_id=run_id)


@app.command("resume")
def resume_command(
    plan_id: str = typer.Argument(..., help="The plan to continue."),
    quiet: bool = typer.Option(False, "--quiet", help="No live progress display."),
) -> None:
    """Materialise the steps of a plan that are missing (failed or never ran), and what depends on them."""
    from planexe_assets.runner import missing_steps_with_downstream
    from resources.plan_ids import InvalidPlanId, validate_plan_id

    try:
        validate_plan_id(plan_id)
    except InvalidPlanId as exc:
        fail(str(exc), code=2)
    db = _service()
    _require_schema(db)
    plan = db.get_plan(plan_id)
    if plan is None:
        fail(f"no plan {plan_id}", code=2)
    steps = missing_steps_with_downstream(db, plan_id)
    if not steps:
        console.print(f"plan {plan_id}: every step is already materialised")
        return
    run_id = None
    if plan.status == "pending" and plan.last_run_id is None:
        # A queued plan: claim it for this run so the plan sensor does not launch it as well.
        import uuid

        run_id = str(uuid.uuid4())
        db.update_plan(plan_id, {"last_run_id": run_id})
    console.print(f"plan {plan_id}: materialising {len(steps)} step(s): {', '.join(steps)}")
    _run_and_report(db, plan_id, steps=steps, quiet=quiet, run_id=run_id)


def _run_and_report(db, plan_id: str, steps, quiet: bool, run_id: str | None = None) -> None:
    import threading

    from planexe_assets.launch import default_instance, run_plan_in_process
    from planexe_assets.progress import ProgressView

    instance = default_instance()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = run_plan_in_process(plan_id, instance, steps=steps, log_level="ERROR", run_id=run_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"plan-{plan_id}", daemon=True)
    _quiet_dagster_logs()
    worker.start()
    if quiet:
        worker.join()
    else:
        ProgressView(db, plan_id, console).follow(worker)
    from resources.database import DatabaseUnavailable

    try:
        plan = db.get_plan(plan_id)
    except DatabaseUnavailable as exc:
        failed = outcome["result"].failed_steps if "result" in outcome else []
        fail(
            f"plan {plan_id} did not finish: {exc}"
            + (f" (failed steps: {', '.join(failed)})" if failed else "")
            + f". Nothing was reported complete; run `planexe resume {plan_id}` once the database is back."
        )
        return
    if "error" in outcome:
        fail(f"plan {plan_id} could not run: {outcome['error']}")
    result = outcome["result"]
    console.print(f"run directory: {plan.output_dir}")
    from pathlib import Path

    report = Path(plan.output_dir) / "029-report.html"
    if report.exists():
        console.print(f"report: {report}")
    if not result.success:
        fail(f"plan {plan_id} {plan.status}: {plan.error_message or 'failed steps: ' + ', '.join(result.failed_steps)}")
    console.print(f"plan {plan_id} {plan.status} ({plan.progress_message}); Dagster run {result.run_id}")
    if plan.status != "completed":
        raise typer.Exit(1)


def _quiet_dagster_logs() -> None:
    import logging

    for name in ("dagster", "dagster.builtin"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.command("ui")
def ui_command(
    port: int = typer.Option(3000, "--port", "-p", help="Port of the Dagster webserver."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (default: this machine only)."),
    workspace: str = typer.Option(None, "--workspace", "-w", help="Dagster workspace file (default: the repository's workspace.yaml)."),
) -> None:
    """Start the Dagster UI and daemon (`dagster dev`) on this PLANEXE_HOME's Dagster home."""
    import subprocess

    from planexe_assets.instance_config import InstanceConfigError
    from planexe_assets.ui import UIConfigError, dagster_dev_command

    db = _service()
    _require_schema(db)
    try:
        command = dagster_dev_command(port=port, host=host, workspace=workspace)
    except (UIConfigError, InstanceConfigError) as exc:
        fail(str(exc), code=2)
        return
    console.print(
        f"Dagster UI on {command.url} (DAGSTER_HOME={command.dagster_home}, database "
        f"{redact_url(database_url())}); Ctrl-C stops it.",
        highlight=False,
        soft_wrap=True,
    )
    child = subprocess.Popen(command.argv, env=command.env)
    try:
        code = child.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to dagster dev too; let it shut down
        code = child.wait()
    raise typer.Exit(code)


@app.command("list")
def list_command(limit: int = typer.Option(50, help="How many plans, newest first.")) -> None:
    """List plans, newest first."""
    from rich.table import Table

    db = _service()
    _require_schema(db)
    table = Table("plan id", "status", "progress", "model", "created (UTC)", "prompt")
    for plan in db.list_plans(limit=limit):
        prompt = " ".join(plan.prompt.split())
        table.add_row(
            plan.plan_id,
            plan.status,
            f"{plan.progress_percentage or 0}%",
            plan.llm_model or "",
            f"{plan.created_at:%Y-%m-%d %H:%M}" if plan.created_at else "",
            prompt[:60] + ("…" if len(prompt) > 60 else ""),
        )
    console.print(table)


@app.command("status")
def status_command(plan_id: str = typer.Argument(..., help="The plan.")) -> None:
    """Status, progress, LLM usage and files of one plan."""
    from rich.table import Table

    db = _service()
    _require_schema(db)
    plan = db.get_plan(plan_id)
    if plan is None:
        fail(f"no plan {plan_id}", code=2)
    metrics = db.get_plan_metrics(plan_id)
    console.print(f"[bold]{plan.plan_id}[/]  status: {plan.status}  progress: {plan.progress_percentage}% ({plan.progress_message})")
    console.print(f"model: {plan.llm_model}  mode: {plan.speed_vs_detail}  run directory: {plan.output_dir}")
    if plan.error_message:
        console.print(f"[red]error:[/] {plan.error_message}", highlight=False)
    if metrics is not None:
        console.print(
            f"LLM calls: {metrics.total_llm_calls}  tokens: {metrics.total_tokens_used}  cost: ${metrics.total_cost_usd or 0:.4f}"
        )
    table = Table(title="files")
    table.add_column("file", no_wrap=True, min_width=34)
    table.add_column("stage", overflow="fold")
    table.add_column("bytes", justify="right")
    table.add_column("sha256", no_wrap=True)
    for row in db.get_plan_content(plan_id):
        table.add_row(row.filename, row.stage or "", str(row.content_size_bytes), (row.content_hash or "")[:12])
    console.print(table)


@app.command("show")
def show_command(
    plan_id: str = typer.Argument(..., help="The plan."),
    filename: str = typer.Argument(..., help="An output file name, e.g. 002-6-identify_purpose.md."),
) -> None:
    """Print one output file of a plan (from plan_content)."""
    db = _service()
    _require_schema(db)
    row = db.get_plan_content_by_filename(plan_id, filename)
    if row is None:
        fail(f"plan {plan_id} has no file {filename}", code=2)
    sys.stdout.write(row.content)
    if not row.content.endswith("\n"):
        sys.stdout.write("\n")


@app.command("import-run")
def import_run_command(
    directory: str = typer.Argument(..., help="A run directory made by PlanExe's Luigi pipeline."),
    plan_id: str = typer.Option(None, "--plan-id", help="Plan id for the import. Default: the directory's name."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite an existing plan with this id."),
    rematerialize: bool = typer.Option(
        False, "--rematerialize", help="Then re-run the deterministic steps (markdown, WBS trees, schedule, report)."
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
    from planexe_assets.launch import default_instance

    try:
        run = scan_run(directory, plan_id)
    except RunImportError as exc:
        fail(str(exc), code=2)
        return
    db = _service()
    _require_schema(db)
    try:
        result = import_run(db, run.source, run.plan_id, replace=replace, scanned=run)
    except RunImportError as exc:
        fail(str(exc), code=2)
        return
    instance = default_instance()
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
        console.print(f"steps without all their outputs: {', '.join(result.incomplete_steps)}", highlight=False)
    if rematerialize:
        _quiet_dagster_logs()
        outcome = rematerialize_plan(instance, result.plan_id, result.complete_steps, db=db)
        for name, why in outcome.skipped.items():
            err_console.print(f"[yellow]not re-materialized:[/] {name}: {why}", highlight=False)
        if not outcome.success:
            plan = db.get_plan(result.plan_id)
            fail(f"re-materializing {', '.join(outcome.failed_steps)} failed: {plan.error_message if plan else ''}")
        console.print(f"re-materialized {len(outcome.steps)} step(s): {', '.join(outcome.steps)} (Dagster run {outcome.run_id})")
    plan = db.get_plan(result.plan_id)
    console.print(f"plan {plan.plan_id} {plan.status} ({plan.progress_message})", highlight=False)
    from pathlib import Path

    report = Path(plan.output_dir) / "029-report.html"
    if report.exists():
        console.print(f"report: {report}", highlight=False)
