"""Importing a run directory made by PlanExe's Luigi pipeline (``planexe import-run``).

A PlanExe run is one flat directory of ``NNN-M-name.ext`` files (see the step table), plus what the
2025/2026 releases add around the steps: ``expected_filenames1.json``, ``001-3-planexe_metadata.json``,
``usage_metrics.jsonl`` (one line per LLM call), ``activity_overview.json``, the self audit
(``029-1-self_audit_raw.json``, ``029-2-self_audit.md``), ``999-pipeline_complete.txt`` and, in 2026,
the report under the name ``030-report.html``.

The import has three parts, each usable on its own:

1. ``scan_run`` reads and checks everything and writes nothing: the directory exists and holds
   ``001-2-plan.txt``; the plan id (default: the directory name) is valid; every file is a regular,
   non-hidden file of valid UTF-8 text without NUL characters (so its ``plan_content`` row holds it
   byte for byte); the prompt is a usable prompt. ``001-1-start_time.json`` gives the plan's creation
   time and the server's UTC offset, which turns ``usage_metrics.jsonl``'s local timestamps into UTC.
   One output PlanExe renders from another is restored when missing (``DERIVABLE``): the Q&A HTML
   fragment, rendered from the run's own ``027-1`` answers by the step's renderer.
2. ``import_run`` writes the application side: the plan row, every file through the dual writer
   (``resources.plan_store``) with the stage of the step that writes it (``step_for_filename``), else
   ``"imported"``, one ``llm_interactions`` row per usage line (stage ``"imported"``: PlanExe does not
   say which step made a call) and the ``plan_metrics`` totals. The row's status is ``completed``
   when every step has all its outputs, ``stopped`` when PlanExe's stop flag is there, else
   ``failed`` with the steps that lack outputs (``planexe resume`` materialises them). Its
   ``llm_model`` is ``auto``: PlanExe's model names are not ours (they are kept in the usage rows).
   An existing plan id is refused unless ``replace``. A failure part-way removes what this import wrote.
3. ``record_in_dagster`` adds the plan's partition and reports a runless ``AssetMaterialization`` per
   step whose outputs are all present (in dependency order, with ``imported_from``, ``files`` and
   ``sha256`` metadata), so the UI shows those assets materialised, with the asset graph's lineage.
   ``rematerialize_plan`` then runs the deterministic downstream steps in process from the imported
   files. (Like any run, it replaces PlanExe's ``999-pipeline_complete.txt`` with ours once every
   step's outputs are stored, and drops it while the plan is incomplete.)

Only the Dagster helpers import Dagster, and only inside their bodies.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, STEP_BY_NAME, Step, step_for_filename
from planexe_assets.lifecycle.runner import pipeline_steps
from resources.database import DatabaseService, sha256_text
from resources.models import LLMInteraction, PlanStatus, utcnow
from resources.plan_ids import InvalidPlanId, run_dir_for, validate_plan_id
from resources.plan_store import PlanStore

log = logging.getLogger(__name__)

PLAN_FILE = "001-2-plan.txt"
START_TIME_FILE = "001-1-start_time.json"
USAGE_FILE = "usage_metrics.jsonl"
STOP_FLAG_FILE = "pipeline_stop_requested.txt"
IMPORTED_STAGE = "imported"

# Files no step of the table names, whose writer is still known.
STAGE_OF_KNOWN_FILES: Mapping[str, str] = {
    PIPELINE_COMPLETE_FILENAME: "full_plan_pipeline",  # as StepRunner stores our own marker
    "030-report.html": "report",  # PlanExe 2026 renamed the report of ReportTask
}

# The non-LLM steps downstream of the imported LLM outputs, which `--rematerialize` runs again.
DETERMINISTIC_DOWNSTREAM: tuple[str, ...] = (
    "strategic_decisions_markdown",
    "scenarios_markdown",
    "consolidate_governance",
    "team_markdown",
    "documents_to_create_and_find_markdown",
    "wbs_project_level1_and_level2",
    "wbs_project_level1_and_level2_and_level3",
    "schedule",
    "report",
)


class RunImportError(ValueError):
    """The directory cannot be imported; the message says why. Nothing has been written."""


# ---------------------------------------------------------------------------------------------------
# Scanning (reads only)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageRecord:
    """One line of PlanExe's ``usage_metrics.jsonl``: one LLM call."""

    line: int
    completed_at: datetime | None  # naive UTC
    success: bool
    model: str
    duration_seconds: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    error: str | None = None
    error_id: str | None = None

    @property
    def started_at(self) -> datetime | None:
        if self.completed_at is None:
            return None
        return self.completed_at - timedelta(seconds=self.duration_seconds or 0.0)

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@dataclass
class ScannedRun:
    source: Path
    plan_id: str
    files: dict[str, str]  # every file of the directory, name -> text, exactly as read
    derived: dict[str, str]  # outputs restored from other files of the run, name -> text
    derived_from: dict[str, str]  # restored name -> the file it was rendered from
    prompt: str
    created_at: datetime | None  # naive UTC, from 001-1-start_time.json
    usage: list[UsageRecord]
    warnings: list[str] = field(default_factory=list)

    @property
    def all_files(self) -> dict[str, str]:
        return {**self.files, **self.derived}

    @property
    def stopped(self) -> bool:
        return STOP_FLAG_FILE in self.files

    def complete_steps(self) -> list[Step]:
        """Pipeline steps (dependency order) whose every output() file is present."""
        present = self.all_files
        return [s for s in pipeline_steps() if all(name in present for name in s.filenames)]

    def incomplete_steps(self) -> dict[str, list[str]]:
        """Pipeline steps missing some output() file -> the missing names."""
        present = self.all_files
        return {
            s.name: [n for n in s.filenames if n not in present]
            for s in pipeline_steps()
            if not all(n in present for n in s.filenames)
        }


def default_plan_id(source: Path) -> str:
    return Path(source).resolve().name


def scan_run(source: Path | str, plan_id: str | None = None) -> ScannedRun:
    """Read and check a PlanExe run directory. Raises ``RunImportError``; never writes."""
    source = Path(source).expanduser()
    if not source.exists():
        raise RunImportError(f"{source} does not exist")
    if not source.is_dir():
        raise RunImportError(f"{source} is not a directory")
    if not (source / PLAN_FILE).is_file():
        raise RunImportError(
            f"{source} does not look like a PlanExe run directory: {PLAN_FILE} (the plan's prompt) is missing"
        )
    chosen = plan_id if plan_id is not None else default_plan_id(source)
    try:
        validate_plan_id(chosen)
    except InvalidPlanId as exc:
        hint = (
            ""
            if plan_id is not None
            else f" (taken from the directory name {chosen!r}; choose one with --plan-id)"
        )
        raise RunImportError(f"{exc}{hint}") from None

    files, skipped = _read_files(source)
    warnings = [f"skipped hidden file {name}" for name in skipped]

    prompt = _check_prompt(files[PLAN_FILE])
    created_at, utc_offset = _start_time(files.get(START_TIME_FILE), warnings)
    usage = _parse_usage(files.get(USAGE_FILE), utc_offset, warnings)
    derived, derived_from = _derive_missing(files, warnings)
    return ScannedRun(
        source=source.resolve(),
        plan_id=chosen,
        files=files,
        derived=derived,
        derived_from=derived_from,
        prompt=prompt,
        created_at=created_at,
        usage=usage,
        warnings=warnings,
    )


def _read_files(source: Path) -> tuple[dict[str, str], list[str]]:
    files: dict[str, str] = {}
    skipped: list[str] = []
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        name = entry.name
        if name.startswith("."):
            skipped.append(name)  # .DS_Store and the like: not PlanExe's, and never a valid output name
            continue
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            raise RunImportError(
                f"{source / name} is a symbolic link; copy the file itself into the run directory"
            )
        if stat.S_ISDIR(mode):
            raise RunImportError(
                f"{source / name} is a subdirectory; a PlanExe run directory holds only files"
            )
        if not stat.S_ISREG(mode):
            raise RunImportError(f"{source / name} is not a regular file")
        try:
            data = Path(entry.path).read_bytes()
        except OSError as exc:
            raise RunImportError(f"cannot read {source / name}: {exc.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RunImportError(
                f"{source / name} is not UTF-8 text (invalid byte {data[exc.start : exc.start + 1]!r} at offset "
                f"{exc.start}); a PlanExe run holds only text files"
            ) from None
        if "\x00" in text:
            raise RunImportError(
                f"{source / name} contains NUL bytes (offset {data.index(0)}); it is binary, not a PlanExe text file"
            )
        files[name] = text
    return files, skipped


def _check_prompt(text: str) -> str:
    from planexe_assets.lifecycle.plans import PlanInputError, validate_prompt

    try:
        return validate_prompt(text)
    except PlanInputError as exc:
        raise RunImportError(f"{PLAN_FILE}: {exc}") from None


def _parse_instant(value: str) -> datetime:
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _start_time(text: str | None, warnings: list[str]) -> tuple[datetime | None, timedelta | None]:
    """Creation time (naive UTC) and the server's UTC offset, from PlanExe's start-time file.

    PlanExe's UIs write ``{server_iso_utc, server_iso_local, server_timezone_name}``; its FastAPI
    service writes a bare ``utcnow().isoformat()`` string. Anything else is a warning, not an error:
    the file is still imported as it is.
    """
    if text is None:
        warnings.append(f"{START_TIME_FILE} is missing: the plan's creation time is the import time")
        return None, None
    try:
        data = json.loads(text)
        if isinstance(data, str):
            instant = _parse_instant(data)
            offset = instant.utcoffset() if instant.tzinfo else timedelta(0)
        elif isinstance(data, dict) and isinstance(data.get("server_iso_utc"), str):
            instant = _parse_instant(data["server_iso_utc"])
            local = data.get("server_iso_local")
            offset = _parse_instant(local).utcoffset() if isinstance(local, str) else None
        else:
            raise ValueError("neither a timestamp string nor an object with server_iso_utc")
    except (ValueError, TypeError) as exc:
        warnings.append(
            f"{START_TIME_FILE} is unreadable ({exc}): the plan's creation time is the import time"
        )
        return None, None
    if instant.tzinfo is not None:
        instant = instant.astimezone(UTC).replace(tzinfo=None)
    return instant, offset


def _parse_usage(text: str | None, utc_offset: timedelta | None, warnings: list[str]) -> list[UsageRecord]:
    """Every well-formed line of ``usage_metrics.jsonl``; malformed lines are skipped with a warning
    (a crashed PlanExe run can leave a truncated last line; the file itself is imported as it is)."""
    if text is None:
        return []
    records: list[UsageRecord] = []
    bad: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(_usage_record(number, json.loads(line), utc_offset))
        except (ValueError, TypeError) as exc:
            bad.append(f"line {number}: {str(exc)[:120]}")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.append(f"{USAGE_FILE}: skipped {len(bad)} malformed line(s): {shown}")
    return records


def _usage_record(number: int, item: Any, utc_offset: timedelta | None) -> UsageRecord:
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    model = item.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ValueError("no model")
    completed_at = None
    stamp = item.get("timestamp")
    if isinstance(stamp, str) and stamp.strip():
        instant = _parse_instant(stamp)
        if instant.tzinfo is None:
            # PlanExe writes the server's local time without an offset; 001-1 tells the offset.
            instant = instant - (utc_offset or timedelta(0))
        else:
            instant = instant.astimezone(UTC).replace(tzinfo=None)
        completed_at = instant
    success = item.get("success", True)
    if not isinstance(success, bool):
        raise ValueError(f"success is {success!r}, not true/false")
    error = item.get("error") or item.get("error_message")
    error_id = item.get("error_id")
    return UsageRecord(
        line=number,
        completed_at=completed_at,
        success=success,
        model=model.strip()[:255],
        duration_seconds=_number(item.get("duration_seconds"), float, "duration_seconds"),
        input_tokens=_number(item.get("input_tokens"), int, "input_tokens"),
        output_tokens=_number(item.get("output_tokens"), int, "output_tokens"),
        cost_usd=_number(item.get("cost_usd"), float, "cost_usd"),
        error=str(error)[:4000] if error else None,
        error_id=str(error_id)[:100] if error_id else None,
    )


def _number(value: Any, kind: type, name: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is {value!r}, not a number")
    if value < 0:
        raise ValueError(f"{name} is negative ({value})")
    return kind(value)


# -- outputs PlanExe renders from another output of the same step -------------------------------------


def _qa_html_from_raw(raw_text: str) -> str:
    from planexe_assets.steps.qa import QuestionsAndAnswers, render_questions_and_answers_html

    data = json.loads(raw_text)
    failures = data.get("failed_rounds") if isinstance(data, dict) else None
    failures = [str(f) for f in failures] if isinstance(failures, list) else []
    return render_questions_and_answers_html(QuestionsAndAnswers.model_validate(data), failures)


# output -> (the file it is rendered from, the renderer). Only pure renderings, with no model call.
DERIVABLE: Mapping[str, tuple[str, Callable[[str], str]]] = {
    "027-3-questions_and_answers.html": ("027-1-questions_and_answers_raw.json", _qa_html_from_raw),
}


def _derive_missing(files: Mapping[str, str], warnings: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Restore a missing pure rendering when the rest of its step's outputs are present."""
    derived: dict[str, str] = {}
    origin: dict[str, str] = {}
    for name, (source_name, render) in DERIVABLE.items():
        if name in files or source_name not in files:
            continue
        step = step_for_filename(name)
        if step is not None and any(n not in files for n in step.filenames if n != name):
            continue  # the step is incomplete anyway; restoring one file would not help
        try:
            derived[name] = render(files[source_name])
        except Exception as exc:  # noqa: BLE001 - a bad source only means nothing is restored
            warnings.append(
                f"{name} is missing and could not be rendered from {source_name}: {str(exc)[:200]}"
            )
            continue
        origin[name] = source_name
        warnings.append(f"{name} is missing; rendered it from {source_name}")
    return derived, origin


def stage_for(filename: str) -> str:
    """The ``plan_content`` stage of an imported file: the step that writes it, else ``imported``."""
    step = step_for_filename(filename)
    if step is not None:
        return step.name
    return STAGE_OF_KNOWN_FILES.get(filename, IMPORTED_STAGE)


# ---------------------------------------------------------------------------------------------------
# Writing the plan, its files and its usage
# ---------------------------------------------------------------------------------------------------


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
    from resources.config import runs_dir

    run = scanned or scan_run(source, plan_id)
    root = Path(runs_root) if runs_root is not None else runs_dir()
    store = PlanStore(db, root)
    target = run_dir_for(run.plan_id, root)
    same_dir = target == run.source
    existing = db.get_plan(run.plan_id)
    if existing is not None and not replace:
        raise RunImportError(
            f"plan {run.plan_id} already exists; pass --replace to overwrite it, or --plan-id to import under another id"
        )
    if existing is not None and existing.status == PlanStatus.RUNNING:
        raise RunImportError(f"plan {run.plan_id} is running; it cannot be replaced until its run ends")
    if target.exists() and not target.is_dir():
        raise RunImportError(f"{target} exists and is not a directory; it cannot hold the plan's files")
    if existing is None and not replace and not same_dir and target.exists() and any(target.iterdir()):
        raise RunImportError(
            f"the run directory {target} already holds files of no known plan; pass --replace to overwrite them"
        )
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
    done, total = len(complete), len(pipeline_steps())
    ended = max((u.completed_at for u in run.usage if u.completed_at is not None), default=None)
    created = run.created_at or utcnow()
    plan_row: dict[str, Any] = {
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

    written: list[str] = []
    try:
        db.create_plan(plan_row)
        by_stage: dict[str, dict[str, str]] = {}
        for name in sorted(run.all_files, key=_natural_key):
            by_stage.setdefault(stage_for(name), {})[name] = run.all_files[name]
        for stage, files in by_stage.items():
            store.write(run.plan_id, stage, files, run_id=import_id)
            written.extend(files)
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
    rows = [
        LLMInteraction(
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
        for u in run.usage
    ]
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


# ---------------------------------------------------------------------------------------------------
# Dagster
# ---------------------------------------------------------------------------------------------------


def record_in_dagster(
    instance, result: ImportResult, store_contents: Mapping[str, str] | None = None
) -> list[str]:
    """Add the plan's partition; report a runless materialization per complete step, upstream first.

    On ``--replace``, the partition's earlier materializations are wiped first, so no asset shows a
    materialization the new import does not back. Returns the asset names reported.
    """
    from dagster import AssetKey, AssetMaterialization, MetadataValue
    from dagster._core.definitions.data_version import DATA_VERSION_IS_USER_PROVIDED_TAG, DATA_VERSION_TAG

    from planexe_assets.dagster_defs.asset_metadata import preview as asset_preview
    from planexe_assets.dagster_defs.launch import add_plan_partition
    from planexe_assets.lifecycle.versions import data_version

    add_plan_partition(instance, result.plan_id)
    if result.replaced:
        _forget_replaced(instance, result)
    reported: list[str] = []
    for name in result.complete_steps:
        s = STEP_BY_NAME[name]
        files = result.step_files(s)
        metadata: dict[str, Any] = {
            "imported_from": MetadataValue.path(str(result.source)),
            "import_id": result.import_id,
            "files": [n for n in s.filenames],
            "per_item_files": len(files) - len(s.filenames),
            "sha256": {n: result.files[n] for n in s.filenames},
            "run_dir": str(result.run_dir),
            "planexe_class": s.luigi_class,
        }
        restored = {n: result.derived_from[n] for n in s.filenames if n in result.derived_from}
        if restored:
            metadata["restored_files"] = {n: f"rendered from {src}" for n, src in restored.items()}
        if store_contents is not None:
            preview = asset_preview({n: store_contents[n] for n in s.filenames if n in store_contents})
            if preview:
                metadata["preview"] = MetadataValue.md(preview)
        tags = {"planexe/imported": "true"}
        if store_contents is not None and all(n in store_contents for n in files):
            # The content's data version, as a run of the step records it: a re-run that writes the
            # same content does not make downstream assets stale.
            tags[DATA_VERSION_TAG] = data_version({n: store_contents[n] for n in files})
            tags[DATA_VERSION_IS_USER_PROVIDED_TAG] = "true"
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=AssetKey(name),
                partition=result.plan_id,
                description=f"Imported from the PlanExe run {result.source}",
                metadata=metadata,
                tags=tags,
            )
        )
        reported.append(name)
    return reported


def _forget_replaced(instance, result: ImportResult) -> None:
    """``--replace``: wipe the partition's earlier materializations where the event storage can.

    Dagster's SQLite and PostgreSQL event logs cannot wipe one partition of an asset; there, the
    steps that the new import no longer backs keep their earlier materialization, and a warning
    names them.
    """
    from dagster import AssetKey, AssetRecordsFilter

    complete = set(result.complete_steps)
    leftover: list[str] = []
    for s in pipeline_steps():
        key = AssetKey(s.name)
        try:
            instance.wipe_asset_partitions(key, [result.plan_id])
            continue
        except Exception as exc:  # noqa: BLE001 - storages without partition wipes raise
            log.debug("cannot wipe %s/%s: %s", s.name, result.plan_id, exc)
        if s.name in complete:
            continue  # the new import reports a newer materialization
        earlier = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[result.plan_id]), limit=1
        ).records
        if earlier:
            leftover.append(s.name)
    if leftover:
        result.warnings.append(
            "Dagster's event storage cannot wipe one partition, so these assets still show their earlier "
            f"materialization although the new import lacks their outputs: {', '.join(leftover)}"
        )


@dataclass
class RematerializeOutcome:
    steps: list[str]
    skipped: dict[str, str]  # step -> why it was not run
    success: bool
    run_id: str | None
    failed_steps: list[str]


def rematerialize_plan(
    instance,
    plan_id: str,
    complete_steps: Iterable[str],
    db: DatabaseService | None = None,
    log_level: str = "ERROR",
) -> RematerializeOutcome:
    """Run ``DETERMINISTIC_DOWNSTREAM`` in process for the imported plan.

    A step runs when each upstream step is imported complete or runs before it; the others are
    skipped with the reason (their inputs are not all there). The run leaves a plan that still
    lacks steps ``running``; with ``db`` given, such a plan is marked failed again, naming them.
    """
    from planexe_assets.dagster_defs.launch import run_plan_in_process

    available = set(complete_steps)
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for name in DETERMINISTIC_DOWNSTREAM:
        s = STEP_BY_NAME[name]
        missing = [d for d in s.deps if d not in available and d not in chosen]
        if missing:
            skipped[name] = f"upstream step(s) without all their outputs: {', '.join(missing)}"
            continue
        chosen.append(name)
    if not chosen:
        return RematerializeOutcome([], skipped, True, None, [])
    outcome = run_plan_in_process(plan_id, instance, steps=chosen, log_level=log_level)
    if db is not None and outcome.success:
        _settle_status(db, plan_id)
    return RematerializeOutcome(chosen, skipped, outcome.success, outcome.run_id, outcome.failed_steps)


def _settle_status(db: DatabaseService, plan_id: str) -> None:
    plan = db.get_plan(plan_id)
    if plan is None or plan.status != PlanStatus.RUNNING:
        return
    steps = pipeline_steps()
    present = db.stored_filenames(plan_id, [n for s in steps for n in s.filenames])
    incomplete = {
        s.name: [n for n in s.filenames if n not in present]
        for s in steps
        if not all(n in present for n in s.filenames)
    }
    status, message = _status(plan_id, incomplete, stopped=False)
    db.update_plan(
        plan_id,
        {"status": status, "error_message": message, "completed_at": utcnow(), **_failure_fields(status, incomplete, False)},
    )


def import_run_into_dagster(
    db: DatabaseService,
    instance,
    source: Path | str,
    plan_id: str | None = None,
    *,
    runs_root: Path | None = None,
    replace: bool = False,
) -> ImportResult:
    """``scan_run`` + ``import_run`` + ``record_in_dagster``: what ``planexe import-run`` does."""
    run = scan_run(source, plan_id)
    result = import_run(db, run.source, run.plan_id, runs_root=runs_root, replace=replace, scanned=run)
    record_in_dagster(instance, result, run.all_files)
    return result
