"""One plan, one way, in this process: the contender processes the benchmark starts and times.

``python -m bench.run_plan dagster PLAN_ID [--executor threads|in_process|multiprocess|public_in_process]
[--max-concurrent N]`` runs ``full_plan_job`` for the plan on the instance of ``DAGSTER_HOME``: on the
project's executor (``threads``, ``in_process``) or on Dagster's public ``multiprocess_executor`` and
``in_process_executor`` (``bench/public_executors.py``); ``python -m bench.run_plan
direct PLAN_ID`` runs every step with ``StepRunner.run`` in table order, no orchestrator at all (the
baseline that orchestration overhead is measured against). The last line printed is ``BENCH {json}``
with the time spent executing (after imports) and the outcome.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

#: Dagster's own executors (bench/public_executors.py), beside the project's threads and in_process.
PUBLIC_EXECUTORS = ("multiprocess", "public_in_process")


def run_dagster(plan_id: str, executor: str, max_concurrent: int | None) -> dict:
    from dagster import DagsterInstance

    from planexe_assets.dagster_defs.launch import run_plan_in_process

    instance = DagsterInstance.get()
    if executor in PUBLIC_EXECUTORS:
        from bench.public_executors import run_plan_on_public_executor
        from planexe_assets.dagster_defs.executor import default_max_concurrent

        started = time.perf_counter()
        outcome = run_plan_on_public_executor(
            plan_id, instance, executor, max_concurrent or default_max_concurrent()
        )
    else:
        started = time.perf_counter()
        outcome = run_plan_in_process(
            plan_id, instance, log_level="ERROR", executor=executor, max_concurrent=max_concurrent
        )
    return {
        "seconds": time.perf_counter() - started,
        "success": outcome.success,
        "run_id": outcome.run_id,
        "failed_steps": outcome.failed_steps,
    }


def run_direct(plan_id: str) -> dict:
    import uuid

    from planexe_assets.lifecycle.runner import StepRunner, pipeline_steps
    from resources.config import runs_dir
    from resources.database import get_database_service
    from resources.llm_access import llm_access
    from resources.plan_store import PlanStore

    db = get_database_service()
    store = PlanStore(db, runs_dir())
    access = llm_access(None, db)
    runner = StepRunner(store, llm_factory=lambda pid, stage, model: access.caller(pid, stage, model))
    run_id = f"direct-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    failed: list[str] = []
    for step in pipeline_steps():
        try:
            runner.run(plan_id, step.name, run_id=run_id)
        except Exception as exc:  # noqa: BLE001 - reported in the result
            failed.append(f"{step.name}: {type(exc).__name__}: {exc}"[:300])
            break
    return {
        "seconds": time.perf_counter() - started,
        "success": not failed,
        "run_id": run_id,
        "failed_steps": failed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("how", choices=["dagster", "direct"])
    parser.add_argument("plan_id")
    parser.add_argument("--executor", default="threads", choices=["threads", "in_process", *PUBLIC_EXECUTORS])
    parser.add_argument("--max-concurrent", type=int, default=None)
    args = parser.parse_args(argv)
    before = resource.getrusage(resource.RUSAGE_SELF)
    if args.how == "dagster":
        result = run_dagster(args.plan_id, args.executor, args.max_concurrent)
    else:
        result = run_direct(args.plan_id)
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print("BENCH " + json.dumps(result), flush=True)
    return 0 if result["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
