"""Several plans at once through the daemon: the plan sensor, the queued run coordinator, run workers.

This is the production path for concurrent plans: a client queues plans (``plans`` rows with status
``pending`` and no run, as ``planexe plan --queue`` does); the daemon's ``plan_launch_sensor`` turns
each into a ``full_plan_job`` run request; the ``QueuedRunCoordinator`` (``max_concurrent_runs``)
dequeues the runs; the default run launcher starts one run worker process per run, which executes the
plan with the job's thread executor. Measured: from queueing the plans until every plan's row says
``completed``, for one plan and then for N plans, against the same latency server.

The daemon is started once and warmed up (its first sensor tick loads the code location) before the
first measurement, so both measurements pay the same per-run costs: sensor interval, dequeue
interval, run worker start-up (a fresh Python process that imports Dagster and the definitions).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.environment import REPO, BenchHome, BenchSetupError, create_bench_plan

SENSOR_NAME = "plan_launch_sensor"


@dataclass
class BatchResult:
    plans: int
    wall_seconds: float
    statuses: dict[str, str]
    per_plan_seconds: dict[str, float]

    @property
    def ok(self) -> bool:
        return all(s == "completed" for s in self.statuses.values())


class Daemon:
    def __init__(self, home: BenchHome, sensor_interval: int = 1):
        self.home = home
        self.log_path = home.root / "daemon.log"
        executable = Path(sys.executable).with_name("dagster-daemon")
        command = [str(executable)] if executable.exists() else [sys.executable, "-m", "dagster._daemon"]
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command, "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=home.env(PLANEXE_PLAN_SENSOR_INTERVAL=str(sensor_interval)),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_sensor_ticked(self, timeout: float = 300) -> None:
        """Until the plan sensor has evaluated once (the code location is loaded)."""
        instance = self.home.instance()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchSetupError(
                    f"dagster-daemon exited ({self.process.returncode}); see {self.log_path}"
                )
            for state in instance.all_instigator_state():
                if state.name == SENSOR_NAME and instance.get_ticks(
                    state.instigator_origin_id, state.selector_id, limit=1
                ):
                    return
            time.sleep(1)
        raise BenchSetupError(f"the plan sensor did not tick within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def run_batch(home: BenchHome, prefix: str, count: int, prompt: str, timeout: float) -> BatchResult:
    """Queue ``count`` plans at once and wait until all have ended."""
    from resources.database import get_database_service

    db = get_database_service(home.app_db_url)
    plan_ids = [f"{prefix}_{i + 1}" for i in range(count)]
    started = time.perf_counter()
    for plan_id in plan_ids:
        create_bench_plan(home, plan_id, prompt)
    finished: dict[str, float] = {}
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(finished) < count and time.monotonic() < deadline:
        for plan_id in plan_ids:
            if plan_id in finished:
                continue
            plan = db.get_plan(plan_id)
            if plan is not None and plan.status in ("completed", "failed", "stopped", "refused"):
                finished[plan_id] = time.perf_counter() - started
                statuses[plan_id] = plan.status
        time.sleep(0.5)
    for plan_id in plan_ids:
        if plan_id not in statuses:
            plan = db.get_plan(plan_id)
            statuses[plan_id] = f"timeout ({plan.status if plan else 'missing'})"
    wall = max(finished.values()) if len(finished) == count else time.perf_counter() - started
    return BatchResult(count, wall, statuses, finished)
