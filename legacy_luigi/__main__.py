"""``python -m legacy_luigi --plan-id ID [--workers N]``: run a plan with Luigi's local scheduler.

The terminal gets a short summary: the plan's status, the report, the run directory, the log file and
how many warnings it holds, and Luigi's one-line verdict. Everything else (each step's warnings about
the model's answers, Luigi's scheduling messages, a failed step's traceback) goes to the log file
``$PLANEXE_HOME/logs/<plan_id>/<build id>.log`` (build ids read ``luigi-<hex>``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import luigi

from legacy_luigi.tasks import TASK_CLASSES, FullPlanPipeline, SpeedVsDetailEnum
from planexe_assets.core import step_file
from planexe_assets.lifecycle.plans import PlanInputError, PlanRequest, create_plan
from planexe_assets.lifecycle.redline import GATE_STEPS, gate_enabled
from resources import migrate
from resources.config import ConfigError, database_url, planexe_home, redact_url, runs_dir
from resources.database import DatabaseUnavailable, get_database_service
from resources.llm import LLMConfigError
from resources.plan_ids import InvalidPlanId, run_dir_for, validate_plan_id

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m legacy_luigi",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plan-id", required=True, help="The plan (its row must exist, or give --prompt).")
    parser.add_argument("--workers", type=int, default=1, help="Luigi workers (PlanExe runs with 1).")
    parser.add_argument("--prompt", help="Create the plan with this prompt if it does not exist.")
    parser.add_argument("--model", default=None, help="Model id or 'auto' (default: the plan's model).")
    parser.add_argument(
        "--fast", action="store_true", help="fast_but_skip_details (default: the plan's mode)."
    )
    args = parser.parse_args(argv)

    build_id = f"luigi-{uuid.uuid4().hex[:12]}"
    try:
        plan_id = validate_plan_id(args.plan_id)
        db = get_database_service()
        problem = _schema_problem()
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        plan = db.get_plan(plan_id)
        if plan is None:
            if not args.prompt:
                parser.error(f"no plan {plan_id}; create it with `planexe plan` or pass --prompt")
            # Claimed by this build from the start, so the Dagster plan sensor does not launch it too.
            request = PlanRequest(
                prompt=args.prompt, model=args.model or "auto", fast=args.fast, plan_id=plan_id
            )
            plan = create_plan(db, replace(request, claimed_by_run=build_id))
    except (InvalidPlanId, PlanInputError, LLMConfigError, ConfigError, DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    os.environ["PLANEXE_LUIGI_BUILD_ID"] = build_id

    root = logging.getLogger()
    level = root.level
    try:
        log_path = _log_path(plan_id, build_id)
        handler = _log_to(log_path)
    except OSError as exc:
        print(f"error: cannot write the run log {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        return _build(db, plan, args, build_id, log_path)
    finally:
        # As it was (main() also runs inside other programs and tests).
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _build(db, plan, args, build_id: str, log_path: Path) -> int:
    plan_id = plan.plan_id
    speed = SpeedVsDetailEnum.FAST_BUT_SKIP_DETAILS if args.fast else SpeedVsDetailEnum(plan.speed_vs_detail)
    models = [args.model or plan.llm_model or "auto"]
    task = FullPlanPipeline(
        run_id_dir=run_dir_for(plan_id, runs_dir()), speedvsdetail=speed, llm_models=models
    )
    logging.getLogger("planexe.luigi").info(
        "build %s of plan %s: %s, models %s", build_id, plan_id, speed.value, models
    )
    if _gated(plan):
        # A gated plan (planexe_assets/lifecycle/redline.py) runs nothing past the gates before their verdicts:
        # build the redline gate and the prompt screening alone first, so no worker starts another step beside them.
        gates = [
            TASK_CLASSES[name](run_id_dir=task.run_id_dir, speedvsdetail=speed, llm_models=models)
            for name in GATE_STEPS
        ]
        luigi.build(gates, local_scheduler=True, workers=1)
        plan = db.get_plan(plan_id)
        if plan.status == "refused":
            print(f"plan {plan_id}: refused: {plan.error_message}", file=sys.stderr)
            print(f"log: {log_path}", file=sys.stderr)
            return 1
    result = luigi.build([task], local_scheduler=True, workers=args.workers, detailed_summary=True)
    plan = db.get_plan(plan_id)
    print(_summary(plan, log_path, result.one_line_summary))
    return 0 if result.scheduling_succeeded and plan.status == "completed" else 1


def _gated(plan) -> bool:
    try:
        return gate_enabled(plan)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def _schema_problem() -> str | None:
    """Why the application database cannot hold a plan yet (not migrated), or None."""
    url = database_url()
    try:
        current = migrate.current_revision(url)
    except Exception as exc:  # noqa: BLE001 - any failure here means the database cannot be used
        return f"cannot reach the database {redact_url(url)}: {' '.join(str(exc).split())[:300]}"
    if current != migrate.head_revision():
        return f"the database {redact_url(url)} is at revision {current or 'none'}; run `planexe db upgrade` first"
    return None


def _summary(plan, log_path: Path, luigi_verdict: str) -> str:
    """What the terminal shows at the end: a few lines, the report's path when there is one."""
    lines = [f"plan {plan.plan_id}: {plan.status} ({plan.progress_message})"]
    if plan.status != "completed" and plan.error_message:
        lines.append(f"error: {' '.join(plan.error_message.split())[:500]}")
    run_dir = Path(plan.output_dir)
    report = run_dir / step_file("report")
    if report.exists():
        lines.append(f"report: {report}")
    lines.append(f"run directory: {run_dir}")
    counts = _count_levels(log_path)
    noted = ", ".join(f"{n} {level.lower()}{'s' if n != 1 else ''}" for level, n in counts.items() if n)
    lines.append(f"log: {log_path}" + (f" ({noted})" if noted else ""))
    lines.append(f"luigi: {' '.join(luigi_verdict.split())}")
    return "\n".join(lines)


def _log_path(plan_id: str, build_id: str) -> Path:
    # Beside the Dagster worker's logs of the same plan (planexe_assets.cli.supervisor.log_path_for).
    folder = planexe_home() / "logs" / plan_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{build_id}.log"  # build ids read luigi-<hex>


def _log_to(path: Path) -> logging.Handler:
    """Send every log record (ours, Luigi's, Python warnings) to ``path`` and none to the terminal.

    Luigi is told not to configure logging (its default puts a stream handler on the terminal); the
    worker processes it forks inherit the file handler.
    """
    luigi.configuration.get_config().set("core", "no_configure_logging", "true")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler


def _count_levels(path: Path) -> dict[str, int]:
    """Warnings and errors in the log (written by every worker process, so counted from the file)."""
    counts = {"WARNING": 0, "ERROR": 0}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return counts
    for line in text.splitlines():
        # "2026-01-01 12:00:00,000 LEVEL name: message"
        parts = line.split(" ", 3)
        if len(parts) > 2 and parts[2] in counts:
            counts[parts[2]] += 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
