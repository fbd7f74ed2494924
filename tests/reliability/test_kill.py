"""A run killed with SIGKILL in the middle of a fan-out step loses nothing and leaves nothing half-written.

``planexe resume`` runs as a child process (as a user runs it) against the HTTP stub, whose replies to
``review_plan`` (a step that makes many LLM calls) are slow. Once several of those calls are recorded,
the process that executes the run (the plan worker the command started) gets SIGKILL. Then the run
directory and the database must agree byte for byte (no truncated file, no file without its row, no
duplicate row), the ``planexe`` command must record the death (the Dagster run failed, the plan failed
and recoverable) and name the worker's log, and resuming must finish the plan while redoing only the
steps the killed run had not finished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.core import PIPELINE_COMPLETE_FILENAME
from planexe_assets.dagster_defs.runs import default_instance
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import missing_steps_with_downstream, pipeline_steps
from resources.config import runs_dir
from resources.plan_store import TEMP_PREFIX, PlanStore
from tests.reliability.conftest import PROMPT
from tests.reliability.support import (
    OfflineModel,
    assert_files_equal_rows,
    schema_name,
    seed_steps,
    steps_before,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the plan worker's process id in /proc"),
]
REPO = Path(__file__).resolve().parents[2]
FAN_OUT = "review_plan"


def plan_workers(plan_id: str) -> list[int]:
    """Process ids of the plan workers running ``plan_id`` (from /proc: their command lines)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"planexe_assets.cli.plan_worker" in argv and plan_id.encode() in argv:
            found.append(int(entry.name))
    return found


def _finished_steps(db, plan_id: str) -> dict[str, set[str]]:
    """Step name -> the run ids on its rows, for every step whose outputs are all stored."""
    rows = {r.filename: r for r in db.get_plan_content(plan_id)}
    return {
        s.name: {rows[f].run_id for f in s.filenames}
        for s in pipeline_steps()
        if all(f in rows for f in s.filenames)
    }


def test_sigkill_during_a_fan_out_then_resume(app_db, stub, stub_config, offline_template, isolated_home):
    stub_config(["m1"])
    slow = {"on": True}
    stub.script(
        "m1",
        then=OfflineModel(
            latency=lambda body: 0.4 if slow["on"] and schema_name(body) == "ReviewBullets" else 0.0
        ),
    )
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="killed"))
    seeded = steps_before("identify_task_dependencies")
    seed_steps(PlanStore(app_db, runs_dir()), "killed", offline_template, seeded, run_id="seed")
    run_dir = isolated_home / "runs" / "killed"

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from planexe_assets.cli.app import app; app()",
            "resume",
            "killed",
            "--quiet",
        ],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            calls = app_db.get_plan_interactions("killed", stage=FAN_OUT)
            if len(calls) >= 3 and any(c.status == "completed" for c in calls):
                break
            assert child.poll() is None, (
                f"the run ended before the fan-out: {child.stdout.read().decode()[-3000:]}"
            )
            assert time.monotonic() < deadline, "the fan-out never started"
            time.sleep(0.05)
        [worker] = plan_workers("killed")
        os.kill(worker, signal.SIGKILL)
        said = child.communicate(timeout=120)[0].decode()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        child.stdout.close()
    # The command outlived its worker, recorded what happened and said where to look.
    assert child.returncode == 1, said
    assert "Traceback" not in said and "log of the run:" in said, said
    assert "planexe resume killed" in " ".join(said.split()), said

    # The moment of death: the fan-out had started but not finished; what is on disk is whole.
    calls = app_db.get_plan_interactions("killed", stage=FAN_OUT)
    assert any(c.status == "pending" for c in calls) or len(calls) < 16
    finished = _finished_steps(app_db, "killed")
    assert FAN_OUT not in finished
    killed_run = {run for name, runs in finished.items() if name not in seeded for run in runs}
    assert len(killed_run) == 1, killed_run  # the steps the killed run finished all carry its run id
    killed_run_id = killed_run.pop()
    assert {"identify_task_dependencies", "estimate_task_durations", "wbs_level3"} <= set(finished)
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert_files_equal_rows(app_db, "killed", run_dir)  # ignores temporaries, which are never read
    plan = app_db.get_plan("killed")
    assert PIPELINE_COMPLETE_FILENAME not in {r.filename for r in app_db.get_plan_content("killed")}
    assert (plan.status, plan.recoverable) == ("failed", True), (plan.status, plan.failure_reason)
    assert "SIGKILL" in plan.failure_reason or "SIGKILL" in (plan.error_message or ""), plan.failure_reason
    assert FAN_OUT in plan.failure_reason and plan.failed_step, plan.failure_reason  # what was running
    run = default_instance().get_run_by_id(killed_run_id)
    assert run is not None and run.status.value == "FAILURE"
    assert not [c for c in app_db.get_plan_interactions("killed") if c.status == "pending"], (
        "open attempts were closed"
    )

    todo = missing_steps_with_downstream(app_db, "killed")
    assert todo[0] == FAN_OUT and not set(todo) & set(finished)

    slow["on"] = False
    result = CliRunner().invoke(app, ["resume", "killed", "--quiet"])
    assert result.exit_code == 0, result.output

    after = _finished_steps(app_db, "killed")
    assert set(after) == {s.name for s in pipeline_steps()}
    for name, runs in finished.items():
        assert after[name] == runs, f"{name} was redone although the killed run had finished it"
    redone = {run for name in todo for run in after[name]}
    assert len(redone) == 1 and redone.isdisjoint({killed_run_id, "seed"})
    plan = app_db.get_plan("killed")
    assert plan.status == "completed" and plan.progress_percentage == 100
    rows = assert_files_equal_rows(app_db, "killed", run_dir)
    assert PIPELINE_COMPLETE_FILENAME in rows
    assert not any(p.name.startswith(TEMP_PREFIX) for p in run_dir.iterdir()), (
        f"temporaries left behind: {leftovers}"
    )
