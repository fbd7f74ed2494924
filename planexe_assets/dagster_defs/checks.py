"""Asset checks on every plan asset: the stored outputs are intact and well-formed.

Two checks per asset (a third on the six constraint checks), evaluated per plan (partition):

- ``files_match_rows``: every output file of the step (its ``output()`` files and its per-item files)
  has a ``plan_content`` row whose ``content_hash`` is the sha256 of its content, and the copy in
  the checking process's run directory, when there is one, has that same sha256. The rows are the
  source of truth and the run directory their cache (each worker of a multi-machine deployment has
  its own), so a file absent from this machine passes, and so does a copy older than its row (left
  by an earlier run before another machine re-ran the step; the next reader restores it).
  Read-only: unlike ``PlanStore.read`` it repairs nothing, so a file edited by hand after its row
  was written, a file without a row, or a row changed behind the dual writer's back is reported.
- ``json_valid`` (assets with JSON outputs): each JSON file parses and validates against the model
  its step produced it with (declared with the step: ``register(..., models=...)``, see
  ``planexe_assets.steps``). Raw files keep the response fields at the top
  level beside bookkeeping keys (``metadata``, ``system_prompt``, ``user_prompt``, ...); only the
  response fields are validated. Derived files (clean lists, WBS trees, the start time) are read with
  the same reader the downstream step uses, so a passing check means the downstream step can read it.

- ``constraint_verdicts`` (the six constraint checks, ``steps/constraint_matrix.py``): the check
  step's verdicts, one per constraint of the prompt. It fails with severity WARN when any constraint
  is ``violated`` at that stage (the UI shows the warning on the asset; the plan goes on, as
  upstream's), and lists the violated constraints with their evidence. Never blocking.

A check of an asset that other assets depend on is blocking (``constraint_verdicts`` excepted): when it fails, the run does not go on
to the downstream assets (Dagster skips them). The plain-Python functions (``verify_files``,
``verify_json``) are what the Dagster checks call; tests and tools can call them directly.

No ``from __future__ import annotations``: Dagster inspects the check functions' annotations.
"""

import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    PreviewWarning,
    multi_asset_check,
)

from planexe_assets.core import STEPS, Fields, OutputSpec, Reader, Step, StepError, matches_template
from planexe_assets.dagster_defs.assets import IO_MANAGER_KEY
from planexe_assets.dagster_defs.partitions import plans_partitions
from planexe_assets.lifecycle.runner import pipeline_steps
from planexe_assets.steps import models_for
from planexe_assets.steps.constraint_matrix import CONSTRAINT_CHECK_STEPS, check_items, parse_json_object
from resources.config import worker_identity
from resources.database import sha256_text
from resources.plan_store import PlanStore

FILES_CHECK = "files_match_rows"
JSON_CHECK = "json_valid"
VERDICTS_CHECK = "constraint_verdicts"


# ---------------------------------------------------------------------------------------------------
# Whether a JSON file is what its step declares (``register(..., models=...)`` in its stage module)
# ---------------------------------------------------------------------------------------------------


def spec_for(filename: str) -> tuple[OutputSpec, ...] | None:
    """The layouts an output file must satisfy, per-item templates matched; ``None`` if it has none."""
    return models_for(filename)


def _skipped_call(data: Any) -> bool:
    """A raw file that records a deliberately skipped LLM call (e.g. locations of a digital plan)."""
    meta = data.get("metadata") if isinstance(data, dict) else None
    return isinstance(meta, dict) and meta.get("llm_call_skipped") is True


def json_problems(step: Step, filename: str, text: str) -> list[str]:
    """Why ``text`` (the content of ``filename``) is not a valid output of ``step``; empty if it is."""
    specs = spec_for(filename)
    if specs is None:
        return [f"{filename}: no JSON spec is registered for this file"]
    text_only = all(isinstance(spec, Reader) and spec.takes == "text" for spec in specs)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if not text_only:  # a text reader (start time, project title) also takes PlanExe's plain text
            return [f"{filename}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"]
        data = None
    problems = []
    for spec in specs:
        if isinstance(spec, Fields) and _skipped_call(data):
            continue  # no model answered; the record only keeps the response's shape
        try:
            spec.validate(data, text, step, filename)
        except StepError as exc:
            problems.append(f"{filename} ({spec.describe()}): {exc}")
        except Exception as exc:  # noqa: BLE001 - a reader tripping over an odd shape is a finding too
            problems.append(f"{filename} ({spec.describe()}): {type(exc).__name__}: {exc}")
    return problems


# ---------------------------------------------------------------------------------------------------
# Verifying one step's outputs of one plan (plain Python)
# ---------------------------------------------------------------------------------------------------


#: What the run directory of the checking process holds for a file (``FileReport.local``).
LOCAL_MATCHES = "matches"  # the file is there and is its row's content
LOCAL_ABSENT = "absent"  # not materialised on this machine (the step ran elsewhere): not a problem
LOCAL_STALE = "stale"  # an older copy, written before its row last changed: readers restore it
LOCAL_DIFFERS = "differs"  # changed after its row was written (edited by hand): a problem


@dataclass
class FileReport:
    filename: str
    sha256: str | None = None
    problems: list[str] = field(default_factory=list)
    local: str | None = None  # one of the LOCAL_* values once the row was found


@dataclass
class StepVerification:
    step: Step
    plan_id: str
    files: list[FileReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    contents: dict[str, str] = field(default_factory=dict)  # filename -> row content (for the JSON check)

    @property
    def passed(self) -> bool:
        return not self.problems and all(not f.problems for f in self.files)

    def all_problems(self) -> list[str]:
        return self.problems + [p for f in self.files for p in f.problems]


def step_output_names(store: PlanStore, plan_id: str, step: Step) -> tuple[list[str], list[str]]:
    """(required, present per-item) file names of a step for a plan.

    Required: the step's ``output()`` files and its fixed-name side files. Per-item files (``{}``
    templates) vary per run; those the plan has rows for are checked.
    """
    required = list(step.filenames) + [t for t in step.side_outputs if "{}" not in t]
    templates = [t for t in step.side_outputs if "{}" in t]
    per_item: list[str] = []
    if templates:
        known = sorted({row.filename for row in store.db.get_plan_files(plan_id)})
        per_item = [name for name in known if any(matches_template(name, t) for t in templates)]
    return required, per_item


def verify_files(store: PlanStore, plan_id: str, step: Step) -> StepVerification:
    """Compare each output file of ``step`` with its ``plan_content`` row by sha256. Changes nothing."""
    result = StepVerification(step=step, plan_id=plan_id)
    if store.db.get_plan(plan_id) is None:
        result.problems.append(f"plan {plan_id} has no row in plans")
        return result
    required, per_item = step_output_names(store, plan_id, step)
    rows = store.db.get_contents(plan_id, required + per_item)
    run_dir = store.run_dir(plan_id)
    for name in required + per_item:
        report = FileReport(filename=name)
        result.files.append(report)
        row = rows.get(name)
        if row is None:
            report.problems.append(f"{name}: no plan_content row")
            if (run_dir / name).exists():
                report.problems.append(f"{name}: the run directory has the file but the database has no row")
            continue
        digest = sha256_text(row.content)
        report.sha256 = digest
        if row.content_hash and row.content_hash != digest:
            report.problems.append(
                f"{name}: the row's content does not match its stored sha256 "
                f"(stored {row.content_hash[:12]}, computed {digest[:12]})"
            )
        result.contents[name] = row.content
        report.local = _local_copy(run_dir / name, row, row.content_hash or digest, report.problems)
    return result


def _local_copy(path, row, expected: str, problems: list[str]) -> str:
    """Compare the run directory's copy of a file with its row (``expected``: the row's sha256).

    The run directory is a cache of ``plan_content``: each worker has its own, so a file is absent
    where its step did not run, and a copy left by an earlier run elsewhere is stale once another
    machine re-ran the step. Neither is a problem (any reader restores the file from the row). A
    copy newer than its row that differs from it was changed behind the writer's back: a problem.
    """
    try:
        data = path.read_bytes()
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return LOCAL_ABSENT
    except OSError as exc:
        problems.append(f"{path.name}: cannot read {path}: {exc.strerror}")
        return LOCAL_DIFFERS
    file_digest = hashlib.sha256(data).hexdigest()
    if file_digest == expected:
        return LOCAL_MATCHES
    row_written = row.updated_at or row.created_at
    if row_written is not None and modified < row_written.replace(tzinfo=UTC).timestamp():
        return LOCAL_STALE
    problems.append(
        f"{path.name}: the file's sha256 {file_digest[:12]} differs from its row's {expected[:12]} "
        f"({len(data)} bytes on disk, {row.content_size_bytes} in the row)"
    )
    return LOCAL_DIFFERS


def json_outputs(names: Iterable[str]) -> list[str]:
    return [n for n in names if n.endswith(".json")]


def verify_json(step: Step, contents: Mapping[str, str]) -> list[str]:
    """Problems of the step's JSON outputs (``contents``: filename -> text, e.g. from ``verify_files``)."""
    problems: list[str] = []
    for name in json_outputs(contents):
        problems.extend(json_problems(step, name, contents[name]))
    return problems


def step_has_json(step: Step) -> bool:
    return any(name.endswith(".json") for name in (*step.filenames, *step.side_outputs))


def _steps_with_downstream(steps: Sequence[Step]) -> set[str]:
    return {dep for s in steps for dep in s.deps}


@dataclass
class ConstraintVerdicts:
    """What one constraint check said: counts per status, the violated items, and any problem."""

    counts: dict[str, int] = field(default_factory=dict)
    violated: list[dict[str, str]] = field(default_factory=list)
    overall_status: str = ""
    problem: str = ""  # why the verdicts could not be read

    @property
    def passed(self) -> bool:
        return not self.problem and not self.violated


def constraint_verdicts(text: str | None) -> ConstraintVerdicts:
    """The verdicts in a constraint check's JSON (``constraint_violations``, ``overall_status``)."""
    data, problem = parse_json_object(text)
    if data is None:
        return ConstraintVerdicts(problem=problem)
    items = check_items(data)
    counts = {
        status: sum(1 for i in items if i["status"] == status)
        for status in ("satisfied", "violated", "unclear")
    }
    return ConstraintVerdicts(
        counts=counts,
        violated=[i for i in items if i["status"] == "violated"],
        overall_status=str(data.get("overall_status") or ""),
    )


def _json_result(step: Step, plan_id: str, files: StepVerification) -> AssetCheckResult:
    """``json_valid``: the step's stored JSON files against its response models."""
    names = json_outputs(files.contents)
    schema_problems = verify_json(step, files.contents)
    missing = [n for n in json_outputs(f.filename for f in files.files) if n not in files.contents]
    schema_problems += [f"{n}: no stored content to validate" for n in missing]
    return AssetCheckResult(
        asset_key=step.name,
        check_name=JSON_CHECK,
        passed=not schema_problems,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{len(names)} JSON file(s) of plan {plan_id} are valid"
            if not schema_problems
            else f"{len(schema_problems)} problem(s): {schema_problems[0]}"
        ),
        metadata={
            "plan_id": plan_id,
            "json_files": len(names),
            "models": {n: ", ".join(s.describe() for s in spec_for(n) or ()) for n in names},
            "problems": _problems_metadata(schema_problems),
        },
    )


def _verdicts_result(step: Step, plan_id: str, contents: Mapping[str, str]) -> AssetCheckResult:
    filename = step.output("")
    verdicts = constraint_verdicts(contents.get(filename))
    if verdicts.problem:
        description = f"{filename}: verdicts not readable ({verdicts.problem})"
    elif verdicts.violated:
        first = verdicts.violated[0]["constraint_text"]
        description = (
            f"{len(verdicts.violated)} constraint(s) of the prompt violated at this stage, e.g. {first!r}"
        )
    else:
        description = f"no constraint violated ({verdicts.counts.get('satisfied', 0)} satisfied, {verdicts.counts.get('unclear', 0)} unclear)"
    lines = [
        f"- **{v['constraint_text']}**: {v['evidence'] or v['explanation'] or 'no evidence given'}"
        for v in verdicts.violated
    ]
    return AssetCheckResult(
        asset_key=step.name,
        check_name=VERDICTS_CHECK,
        passed=verdicts.passed,
        severity=AssetCheckSeverity.WARN,
        description=description[:1000],
        metadata={
            "plan_id": plan_id,
            "overall_status": verdicts.overall_status or "unknown",
            "satisfied": verdicts.counts.get("satisfied", 0),
            "violated": verdicts.counts.get("violated", 0),
            "unclear": verdicts.counts.get("unclear", 0),
            "violations": MetadataValue.md("\n".join(lines[:50]) or "none"),
        },
    )


# ---------------------------------------------------------------------------------------------------
# The Dagster checks
# ---------------------------------------------------------------------------------------------------


def _problems_metadata(problems: list[str]) -> MetadataValue:
    return MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none")


def _check_for(step: Step, blocking: bool) -> AssetChecksDefinition:
    guards = (
        "blocking: downstream assets do not run when it fails"
        if blocking
        else "not blocking (no downstream asset)"
    )
    has_json = step_has_json(step)
    names = [
        (
            FILES_CHECK,
            "plan_content rows of {} match their sha256, and so do the run directory's copies ({}).",
        )
    ]
    if has_json:
        names.append((JSON_CHECK, "JSON outputs of {} validate against their response models ({})."))
    verdict_check = step.name in CONSTRAINT_CHECK_STEPS
    with warnings.catch_warnings():
        # Partitioned checks (one result per plan in the UI) are a preview feature of Dagster; the
        # Dagster version is pinned (requirements.lock), so a change cannot arrive unnoticed.
        warnings.simplefilter("ignore", PreviewWarning)
        specs = [
            AssetCheckSpec(
                name,
                asset=step.name,
                blocking=blocking,
                partitions_def=plans_partitions,
                description=text.format(step.name, guards),
            )
            for name, text in names
        ]
        if verdict_check:
            specs.append(
                AssetCheckSpec(
                    VERDICTS_CHECK,
                    asset=step.name,
                    blocking=False,
                    partitions_def=plans_partitions,
                    description=(
                        f"No constraint of the prompt is violated at this stage ({step.name}); "
                        "WARN when one is (not blocking)."
                    ),
                )
            )

    @multi_asset_check(
        name=f"check_{step.name}",
        specs=specs,
        required_resource_keys={IO_MANAGER_KEY},
        description=f"Integrity and schema of the stored outputs of {step.name}, for one plan.",
        can_subset=True,  # the UI and CLI may run one check of the pair
    )
    def _plan_output_checks(context: AssetCheckExecutionContext):
        store: PlanStore = getattr(context.resources, IO_MANAGER_KEY).store()
        plan_id = context.partition_key
        selected = {key.name for key in context.selected_asset_check_keys}
        files = verify_files(store, plan_id, step)
        file_problems = files.all_problems()
        if FILES_CHECK in selected:
            yield AssetCheckResult(
                asset_key=step.name,
                check_name=FILES_CHECK,
                passed=not file_problems,
                severity=AssetCheckSeverity.ERROR,
                description=(
                    f"{len(files.files)} file(s) of plan {plan_id} match their rows"
                    if not file_problems
                    else f"{len(file_problems)} problem(s): {file_problems[0]}"
                ),
                metadata={
                    "plan_id": plan_id,
                    "files_checked": len(files.files),
                    "run_dir": str(store.run_dir(plan_id)),
                    "worker": worker_identity(),
                    "local_copies": {
                        state: sum(f.local == state for f in files.files)
                        for state in (LOCAL_MATCHES, LOCAL_ABSENT, LOCAL_STALE, LOCAL_DIFFERS)
                    },
                    "problems": _problems_metadata(file_problems),
                    "sha256": {f.filename: f.sha256 for f in files.files if f.sha256},
                },
            )
        if JSON_CHECK in selected:
            yield _json_result(step, plan_id, files)
        if VERDICTS_CHECK in selected:
            yield _verdicts_result(step, plan_id, files.contents)

    return _plan_output_checks


def build_plan_checks(steps: Sequence[Step] | None = None) -> list[AssetChecksDefinition]:
    """One multi-check per step (``files_match_rows``, plus ``json_valid`` when it writes JSON)."""
    if steps is None:
        steps = pipeline_steps()
    guarded = _steps_with_downstream(steps)
    return [_check_for(step, blocking=step.name in guarded) for step in steps]


def json_outputs_of_table() -> list[str]:
    """Every JSON file name or per-item template the step table declares."""
    return [n for s in STEPS for n in (*s.filenames, *s.side_outputs) if n.endswith(".json")]


__all__ = [
    "FILES_CHECK",
    "JSON_CHECK",
    "VERDICTS_CHECK",
    "constraint_verdicts",
    "build_plan_checks",
    "json_problems",
    "spec_for",
    "verify_files",
    "verify_json",
]
