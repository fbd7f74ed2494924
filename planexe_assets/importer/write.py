"""Writing an imported PlanExe run (``import_run``): the plan row, its files, its usage.

The plan row, every file through the dual writer (``resources.plan_store``) with the stage of the
step that writes it (``step_for_filename``), else ``"imported"``, one ``llm_interactions`` row per
usage line (stage ``"imported"``: PlanExe does not say which step made a call) and the
``plan_metrics`` totals. The row's status is ``completed`` when every step has all its outputs,
``stopped`` when PlanExe's stop flag is there, else ``failed`` with the steps that lack outputs
(``planexe resume`` materialises them). Its ``llm_model`` is ``auto``: PlanExe's model names are not
ours (they are kept in the usage rows). An existing plan id is refused unless ``replace``. A failure
part-way removes what this import wrote.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planexe_assets.core import Step
from planexe_assets.importer.scan import (
    IMPORTED_STAGE,
    STOP_FLAG_FILE,
    USAGE_FILE,
    RunImportError,
    ScannedRun,
    UsageRecord,
    scan_run,
    stage_for,
)
from planexe_assets.lifecycle.runner import pipeline_steps
from resources.config import runs_dir
from resources.database import DatabaseService, sha256_text
from resources.models import LLMInteraction, PlanStatus, utcnow
from resources.plan_ids import run_dir_for
from resources.plan_store import PlanStore

log = logging.getLogger(__name__)


@dataclass
class ImportResult:
    plan_id: str
    source: Path
    run_dir: Path
    import_id: str
    status: str
    files: dict[str, str]  # filename -> sha256 of every stored file (imported and restored)
    derived_from: dict[str, str]
    complete_steps: list[str]
    incomplete_steps: dict[str, list[str]]
    llm_calls: int
    total_tokens: int
    total_cost_usd: float
    warnings: list[str]
    replaced: bool = False

    def step_files(self, step: Step) -> list[str]:
        """The step's stored files: its outputs, then its per-item side files."""
        side = sorted(
            (n for n in self.files if step.owns(n)),
            key=_natural_key,
        )
        return [*step.filenames, *[n for n in side if n not in step.filenames]]


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def import_run(
    db: DatabaseService,
    source: Path | str,
    plan_id: str | None = None,
    *,
    runs_root: Path | None = None,
    replace: bool = False,
    scanned: ScannedRun | None = None,
) -> ImportResult:
    """Create the plan row, its ``plan_content``/``plan_files`` rows and files, its usage rows.

    Raises ``RunImportError`` (nothing written) for a directory that cannot be imported or a plan id
    that exists (unless ``replace``). A failure while writing removes what this import wrote.
    """
    run = scanned or scan_run(source, plan_id)
    root = Path(runs_root) if runs_root is not None else runs_dir()
    store = PlanStore(db, root)
    target = run_dir_for(run.plan_id, root)
    same_dir = target == run.source
    existing = db.get_plan(run.plan_id)
    _refuse_conflicts(run.plan_id, existing, target, replace=replace, same_dir=same_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunImportError(f"cannot create the runs directory {root}: {exc.strerror}") from None

    if replace:
        _clear_plan(db, run.plan_id, target, keep_files=same_dir)

    import_id = f"import-{uuid.uuid4().hex}"
    complete = run.complete_steps()
    incomplete = run.incomplete_steps()
    status, error_message = _status(run.plan_id, incomplete, run.stopped)
    plan_row = _plan_row(run, target, status, error_message, incomplete, done=len(complete))

    written: list[str] = []
    try:
        db.create_plan(plan_row)
        _write_contents(store, run, import_id, written)
        calls, tokens, cost = _store_usage(db, run)
    except BaseException:
        _undo(db, run.plan_id, target, written if not same_dir else [])
        raise

    return ImportResult(
        plan_id=run.plan_id,
        source=run.source,
        run_dir=target,
        import_id=import_id,
        status=status,
        files={name: sha256_text(text) for name, text in run.all_files.items()},
        derived_from=dict(run.derived_from),
        complete_steps=[s.name for s in complete],
        incomplete_steps=incomplete,
        llm_calls=calls,
        total_tokens=tokens,
        total_cost_usd=cost,
        warnings=list(run.warnings),
        replaced=existing is not None,
    )


def _refuse_conflicts(plan_id: str, existing: Any, target: Path, *, replace: bool, same_dir: bool) -> None:
    """Raise ``RunImportError`` when the import would overwrite a plan or files it must not."""
    if existing is not None and not replace:
        raise RunImportError(
            f"plan {plan_id} already exists; pass --replace to overwrite it, or --plan-id to import under another id"
        )
    if existing is not None and existing.status == PlanStatus.RUNNING:
        raise RunImportError(f"plan {plan_id} is running; it cannot be replaced until its run ends")
    if target.exists() and not target.is_dir():
        raise RunImportError(f"{target} exists and is not a directory; it cannot hold the plan's files")
    if existing is None and not replace and not same_dir and target.exists() and any(target.iterdir()):
        raise RunImportError(
            f"the run directory {target} already holds files of no known plan; pass --replace to overwrite them"
        )


def _plan_row(
    run: ScannedRun,
    target: Path,
    status: str,
    error_message: str | None,
    incomplete: Mapping[str, list[str]],
    done: int,
) -> dict[str, Any]:
    """The imported plan's row: status and progress from its files, times from its usage log."""
    total = len(pipeline_steps())
    ended = max((u.completed_at for u in run.usage if u.completed_at is not None), default=None)
    created = run.created_at or utcnow()
    return {
        "plan_id": run.plan_id,
        "prompt": run.prompt,
        # PlanExe's model names are not ours; the models used are kept in llm_interactions. A resume
        # of this plan uses whichever models are configured.
        "llm_model": "auto",
        "status": status,
        "error_message": error_message,
        **_failure_fields(status, incomplete, run.stopped),
        "progress_percentage": int(100 * done / total) if total else 0,
        "progress_message": f"{done} of {total} steps",
        "created_at": created,
        "started_at": created,
        "completed_at": ended,
        "actual_duration_minutes": (ended - created).total_seconds() / 60
        if ended and ended >= created
        else None,
        "output_dir": str(target),
    }


def _write_contents(store: PlanStore, run: ScannedRun, import_id: str, written: list[str]) -> None:
    """Store every file, stage by stage; ``written`` grows as files land, so a failure part-way
    knows what to remove."""
    by_stage: dict[str, dict[str, str]] = {}
    for name in sorted(run.all_files, key=_natural_key):
        by_stage.setdefault(stage_for(name), {})[name] = run.all_files[name]
    for stage, files in by_stage.items():
        store.write(run.plan_id, stage, files, run_id=import_id)
        written.extend(files)


def _status(plan_id: str, incomplete: Mapping[str, list[str]], stopped: bool) -> tuple[str, str | None]:
    if not incomplete:
        return PlanStatus.COMPLETED, None
    listed = "; ".join(f"{step} ({', '.join(names)})" for step, names in list(incomplete.items())[:6])
    more = f"; and {len(incomplete) - 6} more" if len(incomplete) > 6 else ""
    if stopped:
        return (
            PlanStatus.STOPPED,
            f"the PlanExe run was stopped ({STOP_FLAG_FILE}); missing outputs of {listed}{more}",
        )
    return PlanStatus.FAILED, (
        f"imported PlanExe run lacks the outputs of {len(incomplete)} step(s): {listed}{more}; "
        f"`planexe resume {plan_id}` materialises them"
    )


def _failure_fields(status: str, incomplete: Mapping[str, list[str]], stopped: bool) -> dict[str, Any]:
    """``failure_reason`` / ``failed_step`` / ``recoverable`` of an imported plan: outputs are missing,
    which ``planexe resume`` materialises."""
    if status == PlanStatus.COMPLETED or not incomplete:
        return {"failure_reason": None, "failed_step": None, "recoverable": None}
    first = next(iter(incomplete))
    what = "the PlanExe run was stopped" if stopped else "the imported PlanExe run is incomplete"
    return {
        "failure_reason": f"{what}: {len(incomplete)} step(s) lack outputs",
        "failed_step": first,
        "recoverable": True,
    }


def _store_usage(db: DatabaseService, run: ScannedRun) -> tuple[int, int, float]:
    """One ``llm_interactions`` row per usage line (one transaction) and the plan's totals."""
    rows = [_usage_row(run, u) for u in run.usage]
    calls = len(rows)
    tokens = sum(u.total_tokens or 0 for u in run.usage)
    cost = sum(u.cost_usd or 0.0 for u in run.usage)
    if rows:
        with db.session() as s:
            s.add_all(rows)
    if run.usage:
        db.create_plan_metrics(
            {
                "plan_id": run.plan_id,
                "total_llm_calls": calls,
                "completed_llm_calls": sum(1 for u in run.usage if u.success),
                "total_tokens_used": tokens,
                "total_cost_usd": cost,
            }
        )
    return calls, tokens, cost


def _usage_row(run: ScannedRun, u: UsageRecord) -> LLMInteraction:
    """One line of PlanExe's usage log as an ``llm_interactions`` row (without a prompt: the log
    keeps none). A one-word error (PlanExe's exception name) is also the row's error code."""
    return LLMInteraction(
        plan_id=run.plan_id,
        llm_model=u.model,
        stage=IMPORTED_STAGE,
        prompt_text="",  # PlanExe's usage log keeps no prompts
        prompt_metadata={
            "source": USAGE_FILE,
            "line": u.line,
            "imported_from": str(run.source),
            **({"planexe_error_id": u.error_id} if u.error_id else {}),
        },
        response_metadata={"cost_usd": u.cost_usd},
        status="completed" if u.success else "failed",
        started_at=u.started_at,
        completed_at=u.completed_at,
        duration_seconds=u.duration_seconds,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        total_tokens=u.total_tokens,
        error_message=None if u.success else _failure_message(u),
        error_code=None if u.success or not u.error or " " in u.error.strip() else u.error.strip()[:50],
    )


def _failure_message(u: UsageRecord) -> str:
    message = u.error or "failed call (PlanExe recorded no message)"
    return f"{message} (PlanExe error id {u.error_id})" if u.error_id else message


def _clear_plan(db: DatabaseService, plan_id: str, run_dir: Path, keep_files: bool) -> None:
    """``--replace``: the plan's rows and its run directory's files go (files first, then rows)."""
    if not keep_files and run_dir.is_dir():
        for entry in run_dir.iterdir():
            if entry.is_file() or entry.is_symlink():
                entry.unlink()
    db.delete_plan(plan_id)


def _undo(db: DatabaseService, plan_id: str, run_dir: Path, written: Iterable[str]) -> None:
    try:
        for name in written:
            (run_dir / name).unlink(missing_ok=True)
        db.delete_plan(plan_id)
    except Exception as exc:  # noqa: BLE001 - the original error is the one to report
        log.error("could not remove the partial import of %s: %s", plan_id, exc)
