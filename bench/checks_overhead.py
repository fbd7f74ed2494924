"""What the asset checks cost: a full offline plan with and without them, and the checks alone.

``python -m bench.checks_overhead [--plans N]`` creates N offline plans per variant in a temporary
PLANEXE_HOME (SQLite app database, ephemeral Dagster instance) and materialises each, on Dagster's
in-process executor, with a job that selects every asset and its checks and with one that selects
the assets only (``AssetSelection.all().without_checks()``), alternating. Then it times evaluating
all checks of one finished plan with the plain functions (``verify_files`` + ``verify_json``), no
Dagster. Prints one ``BENCH {json}`` line.

Measured figures belong in the report, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=2, help="plans per variant (the first warms caches)")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="planexe-bench-checks-")
    os.environ["PLANEXE_HOME"] = home
    os.environ["DATABASE_URL"] = f"sqlite:///{home}/planexe.db"

    from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job, in_process_executor

    from planexe_assets import definitions
    from planexe_assets.dagster_defs.checks import verify_files, verify_json
    from planexe_assets.lifecycle.plans import PlanRequest, create_plan
    from planexe_assets.lifecycle.runner import pipeline_steps
    from resources import migrate
    from resources.config import runs_dir
    from resources.database import get_database_service
    from resources.plan_store import PlanStore

    migrate.upgrade(os.environ["DATABASE_URL"])
    db = get_database_service()
    instance = DagsterInstance.ephemeral()
    base = definitions.defs
    jobs = {
        "with_checks": define_asset_job(
            "with_checks", AssetSelection.all(), executor_def=in_process_executor
        ),
        "without_checks": define_asset_job(
            "without_checks", AssetSelection.all().without_checks(), executor_def=in_process_executor
        ),
    }
    bench_defs = Definitions(
        assets=list(base.assets or []),
        asset_checks=list(base.asset_checks or []),
        jobs=list(jobs.values()),
        resources=dict(base.resources or {}),
    )
    timings: dict[str, list[float]] = {name: [] for name in jobs}
    for round_number in range(args.plans):
        for name in jobs:
            plan_id = f"{name}_{round_number}"
            create_plan(
                db,
                PlanRequest(
                    prompt="Open a vegan butcher shop in Copenhagen", model="offline", plan_id=plan_id
                ),
            )
            instance.add_dynamic_partitions("plans", [plan_id])
            started = time.perf_counter()
            result = bench_defs.resolve_job_def(name).execute_in_process(
                partition_key=plan_id,
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
            timings[name].append(time.perf_counter() - started)
            assert result.success, f"{name} run of {plan_id} failed"

    store = PlanStore(db, runs_dir())
    plan_id = "with_checks_0"
    started = time.perf_counter()
    problems = 0
    for step in pipeline_steps():
        verified = verify_files(store, plan_id, step)
        problems += len(verified.all_problems()) + len(verify_json(step, verified.contents))
    plain_seconds = time.perf_counter() - started
    assert problems == 0, f"{problems} problem(s) in a fresh offline plan"

    report = {
        "plans_per_variant": args.plans,
        "with_checks_seconds": [round(t, 2) for t in timings["with_checks"]],
        "without_checks_seconds": [round(t, 2) for t in timings["without_checks"]],
        "median_overhead_seconds": round(
            statistics.median(timings["with_checks"]) - statistics.median(timings["without_checks"]), 2
        ),
        "plain_check_all_steps_seconds": round(plain_seconds, 3),
        "steps": len(pipeline_steps()),
    }
    print("BENCH " + json.dumps(report))


if __name__ == "__main__":
    main()
