"""Reading and checking a PlanExe run directory; nothing is written (``scan_run``).

Both naming eras are read: the numbered files of 2025 and early 2026 (``001-2-plan.txt``, ...) and the
unnumbered files PlanExe writes since April 2026 (``plan.txt``, ``plan_raw.json``,
``triaged_levers_raw.json``, ...), which are stored under our numbered names (``importer/names.py``).

The directory exists and holds the plan's prompt file; the plan id (default: the directory name) is
valid; every file is a regular, non-hidden file of valid UTF-8 text without NUL characters (so its
``plan_content`` row holds it byte for byte); the prompt is a usable prompt. The start-time file
gives the plan's creation time and the server's UTC offset, which turns ``usage_metrics.jsonl``'s
local timestamps into UTC. One output PlanExe renders from another is restored when missing
(``DERIVABLE``): the Q&A HTML fragment, rendered from the run's own answers by the step's renderer.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, Step, step_file, step_for_filename
from planexe_assets.importer.names import (
    PLAN_RAW_2026,
    PLAN_TXT_2026,
    TRIAGED_RAW_2026,
    UNNUMBERED,
    is_unnumbered_run,
    prompt_from_plan_raw,
    triaged_to_deduplicated,
)
from planexe_assets.lifecycle.plans import PlanInputError, validate_prompt
from planexe_assets.lifecycle.runner import pipeline_steps
from planexe_assets.steps.qa import QuestionsAndAnswers, render_questions_and_answers_html
from resources.plan_ids import InvalidPlanId, validate_plan_id

PLAN_FILE = step_file("setup")
START_TIME_FILE = step_file("start_time")
USAGE_FILE = "usage_metrics.jsonl"
STOP_FLAG_FILE = "pipeline_stop_requested.txt"
IMPORTED_STAGE = "imported"

# Files no step of the table names, whose writer is still known.
STAGE_OF_KNOWN_FILES: Mapping[str, str] = {
    PIPELINE_COMPLETE_FILENAME: "full_plan_pipeline",  # as StepRunner stores our own marker
    "030-report.html": "report",  # PlanExe 2026 renamed the report of ReportTask
    PLAN_RAW_2026: "setup",  # the bare prompt (upstream's InitialPlanRawTask; ours is setup)
    TRIAGED_RAW_2026: "deduplicate_levers",  # TriageLevers replaced DeduplicateLevers upstream
}


class RunImportError(ValueError):
    """The directory cannot be imported; the message says why. Nothing has been written."""


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
    renamed: dict[str, str] = field(default_factory=dict)  # our name -> the 2026 file's own name

    @property
    def all_files(self) -> dict[str, str]:
        return {**self.files, **self.derived}

    @property
    def stopped(self) -> bool:
        return STOP_FLAG_FILE in self.files

    def expected_steps(self) -> list[Step]:
        """The steps this run's pipeline had (``expected_steps``)."""
        return expected_steps(set(self.all_files), unnumbered=bool(self.renamed))

    def complete_steps(self) -> list[Step]:
        """Expected steps (dependency order) whose every output() file is present."""
        present = self.all_files
        return [s for s in self.expected_steps() if all(name in present for name in s.filenames)]

    def incomplete_steps(self) -> dict[str, list[str]]:
        """Expected steps missing some output() file -> the missing names."""
        present = self.all_files
        return {
            s.name: [n for n in s.filenames if n not in present]
            for s in self.expected_steps()
            if not all(n in present for n in s.filenames)
        }


# The steps upstream added in 2026 (SelfAudit dates from November 2025, so a run without them may
# still have it).
SELF_AUDIT_STEP = "self_audit"


def expected_steps(present: set[str], unnumbered: bool = False) -> list[Step]:
    """The pipeline steps a PlanExe run is judged complete against, in dependency order.

    The 61 steps of the 2025 pipeline always; the steps added around them when the run is of the
    unnumbered era or has a file of any step added in 2026; otherwise only those added steps the run
    has a file of (a numbered run from before them cannot lack them). ``planexe resume`` still adds
    the others to an imported plan.
    """
    steps = pipeline_steps()
    added = [s for s in steps if not s.legacy]
    of_2026 = any(s.name != SELF_AUDIT_STEP and _has_a_file(s, present) for s in added)
    if unnumbered or of_2026:
        return list(steps)
    return [s for s in steps if s.legacy or _has_a_file(s, present)]


def _has_a_file(step: Step, present: set[str]) -> bool:
    return any(name in present for name in (*step.filenames, *step.side_outputs))


def default_plan_id(source: Path) -> str:
    return Path(source).resolve().name


def scan_run(source: Path | str, plan_id: str | None = None) -> ScannedRun:
    """Read and check a PlanExe run directory. Raises ``RunImportError``; never writes."""
    source = Path(source).expanduser()
    if not source.exists():
        raise RunImportError(f"{source} does not exist")
    if not source.is_dir():
        raise RunImportError(f"{source} is not a directory")
    if not any((source / name).is_file() for name in (PLAN_FILE, PLAN_TXT_2026, PLAN_RAW_2026)):
        raise RunImportError(
            f"{source} does not look like a PlanExe run directory: {PLAN_FILE} (the plan's prompt; "
            f"{PLAN_TXT_2026} or {PLAN_RAW_2026} in a 2026 run) is missing"
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
    renamed: dict[str, str] = {}
    derived, derived_from = {}, {}
    if is_unnumbered_run(set(files)):
        files, renamed, derived, derived_from = _from_unnumbered(files, warnings)

    prompt = _check_prompt({**files, **derived}[PLAN_FILE])
    created_at, utc_offset = _start_time(files.get(START_TIME_FILE), warnings)
    usage = _parse_usage(files.get(USAGE_FILE), utc_offset, warnings)
    restored, restored_from = _derive_missing({**files, **derived}, warnings)
    derived.update(restored)
    derived_from.update(restored_from)
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
        renamed=renamed,
    )


def _from_unnumbered(
    files: dict[str, str], warnings: list[str]
) -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]:
    """A 2026 run's files under our names: (files, our name -> original, derived, derived -> source).

    Unnumbered names of our files are renamed; ``plan_raw.json`` and ``triaged_levers_raw.json`` are
    kept as they are, and give ``001-2-plan.txt`` (when ``plan.txt`` is missing) and the deduplication
    record (``002-11-deduplicated_levers_raw.json``) as derived files. A numbered file beside its
    unnumbered twin is refused: which one is the run's would be a guess.
    """
    out: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for name, text in files.items():
        ours = UNNUMBERED.get(name)
        if ours is None:
            out.setdefault(name, text)
            continue
        if ours in files or ours in renamed:
            other = ours if ours in files else renamed[ours]
            raise RunImportError(f"{name} and {other} are both the file {ours}; keep one of them")
        out[ours] = text
        renamed[ours] = name
    derived: dict[str, str] = {}
    derived_from: dict[str, str] = {}
    if PLAN_FILE not in out:
        try:
            derived[PLAN_FILE] = prompt_from_plan_raw(out[PLAN_RAW_2026])
        except (ValueError, KeyError) as exc:
            raise RunImportError(
                f"the run has no {PLAN_TXT_2026}, and its {PLAN_RAW_2026} does not hold the prompt "
                f"({str(exc)[:200]}); add {PLAN_TXT_2026} with the prompt"
            ) from None
        derived_from[PLAN_FILE] = PLAN_RAW_2026
        warnings.append(f"{PLAN_FILE} (the prompt) taken from {PLAN_RAW_2026}")
    dedup = step_file("deduplicate_levers", "raw")
    if TRIAGED_RAW_2026 in out:
        if dedup in out:
            raise RunImportError(
                f"{TRIAGED_RAW_2026} and {renamed.get(dedup, dedup)} are both the deduplicated levers; keep one of them"
            )
        try:
            derived[dedup] = triaged_to_deduplicated(out[TRIAGED_RAW_2026])
        except ValueError as exc:
            warnings.append(f"{TRIAGED_RAW_2026} could not be read as deduplicated levers: {str(exc)[:200]}")
        else:
            derived_from[dedup] = TRIAGED_RAW_2026
            warnings.append(
                f"{dedup} translated from {TRIAGED_RAW_2026} (TriageLevers replaced DeduplicateLevers upstream; "
                "primary and secondary levers are kept)"
            )
    if renamed:
        warnings.append(
            f"a 2026 run with unnumbered file names: {len(renamed)} file(s) stored under our numbered names"
        )
    return out, renamed, derived, derived_from


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
        except (ValueError, TypeError, OverflowError) as exc:
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
    duration = _number(item.get("duration_seconds"), float, "duration_seconds", MAX_CALL_SECONDS)
    if completed_at is not None and completed_at - datetime.min < timedelta(seconds=duration or 0.0):
        raise ValueError(f"timestamp {stamp!r} minus its duration is before year 1")
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
        duration_seconds=duration,
        input_tokens=_number(item.get("input_tokens"), int, "input_tokens", MAX_TOKENS_PER_CALL),
        output_tokens=_number(item.get("output_tokens"), int, "output_tokens", MAX_TOKENS_PER_CALL),
        cost_usd=_number(item.get("cost_usd"), float, "cost_usd", MAX_CALL_COST_USD),
        error=str(error)[:4000] if error else None,
        error_id=str(error_id)[:100] if error_id else None,
    )


# Upper bounds of a believable LLM call: a value past them is a corrupt line, not a call, and
# would overflow the database's 64-bit integers or the datetime range.
MAX_TOKENS_PER_CALL = 10**9
MAX_CALL_SECONDS = 7 * 24 * 3600.0
MAX_CALL_COST_USD = 10**6


def _number(value: Any, kind: type, name: str, limit: float):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is {value!r}, not a number")
    if not math.isfinite(value):
        raise ValueError(f"{name} is {value}, not a finite number")
    if value < 0:
        raise ValueError(f"{name} is negative ({value})")
    if value > limit:
        raise ValueError(f"{name} is {value}, more than one call can take ({limit:g})")
    return kind(value)


# -- outputs PlanExe renders from another output of the same step -------------------------------------


def _qa_html_from_raw(raw_text: str) -> str:
    data = json.loads(raw_text)
    failures = data.get("failed_rounds") if isinstance(data, dict) else None
    failures = [str(f) for f in failures] if isinstance(failures, list) else []
    return render_questions_and_answers_html(QuestionsAndAnswers.model_validate(data), failures)


# output -> (the file it is rendered from, the renderer). Only pure renderings, with no model call.
DERIVABLE: Mapping[str, tuple[str, Callable[[str], str]]] = {
    step_file("questions_and_answers", "html"): (
        step_file("questions_and_answers", "raw"),
        _qa_html_from_raw,
    ),
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
