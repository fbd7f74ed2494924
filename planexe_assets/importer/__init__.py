"""Importing a run directory made by PlanExe's Luigi pipeline (``planexe import-run``).

A PlanExe run is one flat directory of ``NNN-M-name.ext`` files (see the step table), plus what the
2025/2026 releases add around the steps: ``expected_filenames1.json``, ``001-3-planexe_metadata.json``,
``usage_metrics.jsonl`` (one line per LLM call), ``activity_overview.json``, the self audit
(``029-1-self_audit_raw.json``, ``029-2-self_audit.md``), ``999-pipeline_complete.txt`` and, in 2026,
the report under the name ``030-report.html``.

The import has three parts, each usable on its own:

1. ``scan_run`` (``scan.py``) reads and checks everything and writes nothing;
2. ``import_run`` (``write.py``) writes the application side: the plan row, every file through the
   dual writer, the usage rows and totals; a failure part-way removes what it wrote;
3. ``record_in_dagster`` (``record.py``, the only part that imports Dagster) adds the plan's
   partition and a runless materialization per complete step; ``rematerialize_plan`` re-runs the
   deterministic downstream steps from the imported files.

``import_run_into_dagster`` is the three in a row: what ``planexe import-run`` does.
"""

from planexe_assets.importer.record import (
    DETERMINISTIC_DOWNSTREAM,
    RematerializeOutcome,
    import_run_into_dagster,
    record_in_dagster,
    rematerialize_plan,
)
from planexe_assets.importer.scan import (
    DERIVABLE,
    IMPORTED_STAGE,
    PLAN_FILE,
    START_TIME_FILE,
    STOP_FLAG_FILE,
    USAGE_FILE,
    RunImportError,
    ScannedRun,
    UsageRecord,
    default_plan_id,
    scan_run,
    stage_for,
)
from planexe_assets.importer.write import ImportResult, import_run

__all__ = [
    "DERIVABLE",
    "DETERMINISTIC_DOWNSTREAM",
    "IMPORTED_STAGE",
    "PLAN_FILE",
    "START_TIME_FILE",
    "STOP_FLAG_FILE",
    "USAGE_FILE",
    "ImportResult",
    "RematerializeOutcome",
    "RunImportError",
    "ScannedRun",
    "UsageRecord",
    "default_plan_id",
    "import_run",
    "import_run_into_dagster",
    "record_in_dagster",
    "rematerialize_plan",
    "scan_run",
    "stage_for",
]
