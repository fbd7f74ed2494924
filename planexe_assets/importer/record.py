"""Recording an imported run in Dagster, and re-running its deterministic steps.

``record_in_dagster`` adds the plan's partition and reports a runless ``AssetMaterialization`` per
step whose outputs are all present (in dependency order, with ``imported_from``, ``files`` and
``sha256`` metadata), so the UI shows those assets materialised, with the asset graph's lineage.
``rematerialize_plan`` then runs the deterministic downstream steps in process from the imported
files. (Like any run, it replaces PlanExe's ``999-pipeline_complete.txt`` with ours once every
step's outputs are stored, and drops it while the plan is incomplete.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import AssetKey, AssetMaterialization, AssetRecordsFilter, MetadataValue

from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, STEP_BY_NAME, Step
from planexe_assets.dagster_defs._internals import DATA_VERSION_IS_USER_PROVIDED_TAG, DATA_VERSION_TAG
from planexe_assets.dagster_defs.asset_metadata import preview as asset_preview
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.dagster_defs.runs import add_plan_partition
from planexe_assets.importer.scan import expected_steps, scan_run
from planexe_assets.importer.write import ImportResult, _failure_fields, _status, import_run
from planexe_assets.lifecycle.runner import COMPLETION_TEXT, pipeline_steps
from planexe_assets.lifecycle.versions import data_version
from resources.database import DatabaseService
from resources.models import PlanStatus, utcnow
from resources.plan_store import PlanStore

log = logging.getLogger(__name__)

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


def record_in_dagster(
    instance, result: ImportResult, store_contents: Mapping[str, str] | None = None
) -> list[str]:
    """Add the plan's partition; report a runless materialization per complete step, upstream first.

    On ``--replace``, the partition's earlier materializations are wiped first, so no asset shows a
    materialization the new import does not back. Returns the asset names reported.
    """
    add_plan_partition(instance, result.plan_id)
    if result.replaced:
        _forget_replaced(instance, result)
    reported: list[str] = []
    for name in result.complete_steps:
        s = STEP_BY_NAME[name]
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=AssetKey(name),
                partition=result.plan_id,
                description=f"Imported from the PlanExe run {result.source}",
                metadata=_import_metadata(result, s, store_contents),
                tags=_import_tags(result, s, store_contents),
            )
        )
        reported.append(name)
    return reported


def _import_metadata(
    result: ImportResult, s: Step, store_contents: Mapping[str, str] | None
) -> dict[str, Any]:
    """An imported step's materialization metadata: where its files came from, their hashes, which
    ones were rendered from another file, and a preview when the contents are at hand."""
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
    return metadata


def _import_tags(result: ImportResult, s: Step, store_contents: Mapping[str, str] | None) -> dict[str, str]:
    files = result.step_files(s)
    tags = {"planexe/imported": "true"}
    if store_contents is not None and all(n in store_contents for n in files):
        # The content's data version, as a run of the step records it: a re-run that writes the
        # same content does not make downstream assets stale.
        tags[DATA_VERSION_TAG] = data_version({n: store_contents[n] for n in files})
        tags[DATA_VERSION_IS_USER_PROVIDED_TAG] = "true"
    return tags


def _forget_replaced(instance, result: ImportResult) -> None:
    """``--replace``: wipe the partition's earlier materializations where the event storage can.

    Dagster's SQLite and PostgreSQL event logs cannot wipe one partition of an asset; there, the
    steps that the new import no longer backs keep their earlier materialization, and a warning
    names them.
    """
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
    available = set(complete_steps)
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for name in DETERMINISTIC_DOWNSTREAM:
        s = STEP_BY_NAME[name]
        missing = [d for d in s.required_deps if d not in available and d not in chosen]
        if missing:
            skipped[name] = f"upstream step(s) without all their outputs: {', '.join(missing)}"
            continue
        chosen.append(name)
    if not chosen:
        return RematerializeOutcome([], skipped, True, None, [])
    outcome = run_plan_in_process(plan_id, instance, steps=chosen, log_level=log_level)
    if db is not None and outcome.success:
        _settle_status(db, plan_id, outcome.run_id)
    return RematerializeOutcome(chosen, skipped, outcome.success, outcome.run_id, outcome.failed_steps)


def _expected_and_incomplete(db: DatabaseService, plan_id: str) -> tuple[list[Step], dict[str, list[str]]]:
    """The steps the imported plan is judged against (``expected_steps`` of what is stored), and
    those of them missing an output file -> the missing names."""
    everything = [n for s in pipeline_steps() for n in (*s.filenames, *s.side_outputs) if "{}" not in n]
    steps = expected_steps(set(db.stored_filenames(plan_id, everything)))
    present = db.stored_filenames(plan_id, [n for s in steps for n in s.filenames])
    incomplete = {
        s.name: [n for n in s.filenames if n not in present]
        for s in steps
        if not all(n in present for n in s.filenames)
    }
    return steps, incomplete


def _settle_status(db: DatabaseService, plan_id: str, run_id: str | None) -> None:
    plan = db.get_plan(plan_id)
    if plan is None or plan.status != PlanStatus.RUNNING:
        return
    steps, incomplete = _expected_and_incomplete(db, plan_id)
    status, message = _status(plan_id, incomplete, stopped=False)
    done = len(steps) - len(incomplete)
    db.update_plan(
        plan_id,
        {
            "status": status,
            "error_message": message,
            "completed_at": utcnow(),
            # Progress over the steps the imported run is judged against (``expected_steps``).
            "progress_percentage": int(100 * done / len(steps)) if steps else 0,
            "progress_message": f"{done} of {len(steps)} steps",
            **_failure_fields(status, incomplete, False),
        },
    )
    if status == PlanStatus.COMPLETED and plan.output_dir:
        # The runner writes the completion marker only when all of our steps are stored; an imported
        # run is complete with the steps of its own pipeline.
        store = PlanStore(db, Path(plan.output_dir).parent)
        store.write(
            plan_id, "full_plan_pipeline", {PIPELINE_COMPLETE_FILENAME: COMPLETION_TEXT}, run_id=run_id
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
