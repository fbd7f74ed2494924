"""Running one plan one way, in a fresh process, and timing it from the outside.

Every contender is a child process started the way a user would start it (``python -m legacy_luigi``,
or ``bench.run_plan`` for the Dagster job and the no-orchestrator baseline), so interpreter start-up
and imports count for all of them alike. The wall time is measured by this process around the child.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field

from bench.environment import REPO, BenchHome
from bench.lower_bound import LowerBound, compute_lower_bound
from planexe_assets.core import ADDED_STEPS

ADDED_STEP_NAMES = tuple(s.name for s in ADDED_STEPS)


@dataclass
class ContenderResult:
    name: str
    plan_id: str
    wall_seconds: float
    inner_seconds: float | None  # time spent executing, after imports (when the child reports it)
    ok: bool
    status: str
    calls: int = 0
    bound: LowerBound | None = None
    detail: str = ""
    extra: dict = field(default_factory=dict)


def _finish(
    home: BenchHome, name: str, plan_id: str, wall: float, inner: float | None, returncode: int, output: str
) -> ContenderResult:
    from resources.database import get_database_service

    db = get_database_service(home.app_db_url)
    plan = db.get_plan(plan_id)
    rows = db.get_plan_interactions(plan_id)
    status = plan.status if plan is not None else "missing"
    ok = returncode == 0 and status == "completed"
    bound = compute_lower_bound(rows) if rows else None
    extra = {}
    if rows:
        # The same plan's bound with the 2026 steps' calls taking no time: what they add to it.
        extra["bound_without_2026"] = compute_lower_bound(rows, free_stages=ADDED_STEP_NAMES)
    detail = "" if ok else (plan.error_message if plan is not None and plan.error_message else output[-1500:])
    return ContenderResult(name, plan_id, wall, inner, ok, status, len(rows), bound, detail or "", extra)


def run_child(
    home: BenchHome,
    name: str,
    plan_id: str,
    argv: list[str],
    env_extra: dict[str, str] | None = None,
    timeout: float = 3600,
) -> ContenderResult:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env=home.env(**(env_extra or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - started
    inner = None
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            inner = json.loads(line[len("BENCH ") :]).get("seconds")
    return _finish(home, name, plan_id, wall, inner, done.returncode, done.stdout + done.stderr)


def run_dagster(
    home: BenchHome,
    plan_id: str,
    executor: str = "threads",
    max_concurrent: int | None = None,
    name: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> ContenderResult:
    argv = ["-m", "bench.run_plan", "dagster", plan_id, "--executor", executor]
    if max_concurrent:
        argv += ["--max-concurrent", str(max_concurrent)]
    return run_child(home, name or f"dagster ({executor})", plan_id, argv, env_extra)


def run_luigi(
    home: BenchHome, plan_id: str, workers: int, planexe_mode: bool, name: str | None = None
) -> ContenderResult:
    """``python -m legacy_luigi``; ``planexe_mode`` runs every fan-out's items one at a time, as PlanExe does."""
    env = {"PLANEXE_FANOUT_CONCURRENCY": "1"} if planexe_mode else {}
    label = name or f"luigi workers={workers}" + (" (PlanExe mode)" if planexe_mode else "")
    return run_child(
        home, label, plan_id, ["-m", "legacy_luigi", "--plan-id", plan_id, "--workers", str(workers)], env
    )


def run_direct(home: BenchHome, plan_id: str) -> ContenderResult:
    return run_child(home, "no orchestrator", plan_id, ["-m", "bench.run_plan", "direct", plan_id])
