"""Time the phases of ``planexe import-run`` on a recorded PlanExe run.

``python -m bench.import_run [RUN_DIR] [--persistent]`` imports RUN_DIR (default: the full recorded
run under tests/fixtures) into a fresh SQLite database under a temporary PLANEXE_HOME and prints the
seconds spent scanning, writing the plan/files/usage, reporting the Dagster materializations and
re-materializing the deterministic steps. ``--persistent`` uses an on-disk Dagster instance (as the
CLI does) instead of an ephemeral one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DEFAULT_RUN = (
    Path(__file__).resolve().parent.parent
    / "tests"
    / "fixtures"
    / "planexe_runs_full"
    / "20260310_hong_kong_game"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default=str(DEFAULT_RUN))
    parser.add_argument("--persistent", action="store_true", help="on-disk Dagster instance, as the CLI uses")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="planexe-bench-import-") as home:
        os.environ["PLANEXE_HOME"] = home
        os.environ["DAGSTER_HOME"] = str(Path(home) / "dagster")
        os.environ.pop("DATABASE_URL", None)
        from dagster import DagsterInstance

        from planexe_assets import importer
        from resources import migrate
        from resources.config import database_url
        from resources.database import get_database_service

        migrate.upgrade(database_url())
        db = get_database_service()
        timings: dict[str, float] = {}

        started = time.perf_counter()
        run = importer.scan_run(args.run_dir)
        timings["scan"] = time.perf_counter() - started

        started = time.perf_counter()
        result = importer.import_run(db, run.source, run.plan_id, scanned=run)
        timings["plan, files, usage"] = time.perf_counter() - started

        started = time.perf_counter()
        if args.persistent:
            from planexe_assets.dagster_defs.runs import default_instance

            instance = default_instance()
        else:
            instance = DagsterInstance.ephemeral()
        timings["dagster instance"] = time.perf_counter() - started

        started = time.perf_counter()
        events = importer.record_in_dagster(instance, result, run.all_files)
        timings["materialization events"] = time.perf_counter() - started

        started = time.perf_counter()
        outcome = importer.rematerialize_plan(instance, result.plan_id, result.complete_steps, db=db)
        timings["re-materialize"] = time.perf_counter() - started

        print(
            f"{run.source.name}: {len(result.files)} files, {result.llm_calls} usage rows, "
            f"{len(events)} events, {len(outcome.steps)} steps re-materialized "
            f"({'ok' if outcome.success else 'FAILED ' + ', '.join(outcome.failed_steps)}); "
            f"instance: {'persistent' if args.persistent else 'ephemeral'}"
        )
        for phase, seconds in timings.items():
            print(f"  {phase:<24} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
