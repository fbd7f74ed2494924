"""How a plan ends, as ``planexe plan`` / ``planexe status`` report it, driven as a user drives them.

- A step that fails for good records what, where and whether resuming can help (``failure_reason``,
  ``failed_step``, ``recoverable``, as PlanExe's MCP ``plan_status``): a model that rejects every
  request (HTTP 400) is not recoverable without a change; a transient error is.
- A run stopped from Dagster (the UI's Terminate, ``dagster run terminate``: the run becomes
  CANCELING) stops the CLI's worker too, and the plan ends ``stopped``, the run CANCELED.
- When the ``planexe`` command itself is killed (SIGKILL, nothing can be cleaned up by it), its worker
  notices and stops the run the same way instead of running on unseen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from typer.testing import CliRunner

import planexe_assets.steps as steps_pkg
from planexe_assets.cli.app import app
from planexe_assets.core import FailureKind, StepError
from planexe_assets.dagster_defs.instance_config import prepare_dagster_home
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from tests.llm.stub_server import Status, StubLLMServer
from tests.reliability.support import OfflineModel, schema_name, write_llm_config

REPO = Path(__file__).resolve().parent.parent
PLANEXE = [
    sys.executable,
    "-c",
    "import sys; from planexe_assets.cli.app import app; sys.argv[0] = 'planexe'; app()",
]
PROMPT = "Open a bakery in Oslo"
KEY_VAR = "PLANEXE_TEST_STUB_KEY"


@pytest.fixture
def stub():
    server = StubLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def cli_env(app_db, isolated_home, tmp_path, stub, monkeypatch):
    """The environment of a `planexe` command: this test's home, database, Dagster home and a stub model."""
    monkeypatch.setenv(KEY_VAR, "sk-test-lifecycle-0123456789")
    config = write_llm_config(tmp_path / "llm_config.json", stub.base_url, ["m1"], key_var=KEY_VAR)
    monkeypatch.setenv("PLANEXE_LLM_CONFIG", str(config))
    monkeypatch.setenv("DAGSTER_HOME", str(isolated_home / "dagster"))
    prepare_dagster_home()  # the same home the command prepares, so this test can read its runs
    env = dict(os.environ)
    env.pop("PLANEXE_TEST_POSTGRES_URL", None)
    return env


def _status(plan_id: str) -> str:
    result = CliRunner().invoke(app, ["status", plan_id])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_a_model_that_rejects_every_request_fails_the_plan_for_good(cli_env, app_db, stub):
    stub.script("m1", then=Status(400, "This model's maximum context length is 2048 tokens"))
    done = subprocess.run(
        [*PLANEXE, "plan", PROMPT, "--model", "auto", "--fast", "--plan-id", "rejected"],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    said = " ".join(done.stderr.split())
    assert "Traceback" not in done.stdout + done.stderr
    plan = app_db.get_plan("rejected")
    assert plan.status == "failed" and plan.recoverable is False
    assert plan.failed_step and "maximum context length" in plan.failure_reason
    assert f"plan rejected failed at {plan.failed_step}:" in said and "not recoverable as it is" in said
    assert "log of the run:" in said and "/logs/rejected/" in said
    shown = _status("rejected")
    assert f"failed_step: {plan.failed_step}" in shown and "recoverable: no" in shown
    assert "failure_reason: StepError:" in shown and "maximum context length" in shown


def test_a_transient_failure_is_recoverable_and_status_says_so(app_db, monkeypatch):
    """What the LLM layer raises when every model is unreachable (a transient StepError)."""
    steps_pkg.implemented_steps()

    def unreachable(ctx, inputs):
        raise StepError(
            "step identify_purpose: every model failed (connection refused)", kind=FailureKind.TRANSIENT
        )

    monkeypatch.setitem(steps_pkg._REGISTRY, "identify_purpose", unreachable)
    monkeypatch.setenv("PLANEXE_LLM_STEP_RETRIES", "0")
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="outage"))
    outcome = run_plan_in_process(
        "outage",
        DagsterInstance.ephemeral(),
        steps=["start_time", "setup", "identify_purpose"],
        log_level="ERROR",
    )
    assert not outcome.success
    plan = app_db.get_plan("outage")
    assert (plan.status, plan.failed_step, plan.recoverable) == ("failed", "identify_purpose", True)
    shown = _status("outage")
    assert "failed_step: identify_purpose" in shown and "recoverable: yes" in shown
    assert (
        "failure_reason: StepError: step identify_purpose: every model failed (connection refused)" in shown
    )


def _slow_plan(cli_env, stub, plan_id: str, *, slow_schema: str = "PlanPurposeInfo") -> subprocess.Popen:
    """`planexe plan` (piped) whose identify_purpose call takes 2 s, so the run is caught mid-way."""
    stub.script(
        "m1", then=OfflineModel(latency=lambda body: 2.0 if schema_name(body) == slow_schema else 0.0)
    )
    return subprocess.Popen(
        [*PLANEXE, "plan", PROMPT, "--model", "auto", "--fast", "--plan-id", plan_id],
        cwd=REPO,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_the_run(plan_id: str, process: subprocess.Popen):
    deadline = time.monotonic() + 120
    with DagsterInstance.get() as instance:
        while True:
            records = instance.get_run_records(RunsFilter(tags={"dagster/partition": plan_id}), limit=1)
            if records and records[0].dagster_run.status == DagsterRunStatus.STARTED:
                return records[0].dagster_run
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.1)


def test_terminating_the_dagster_run_stops_the_cli_run(cli_env, app_db, stub):
    process = _slow_plan(cli_env, stub, "terminated_in_ui")
    try:
        run = _wait_for_the_run("terminated_in_ui", process)
        time.sleep(1)
        with DagsterInstance.get() as instance:
            # What the UI's Terminate does for a run no code server launched: ask it to stop.
            instance.report_run_canceling(instance.get_run_by_id(run.run_id))
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, out
    assert "Traceback" not in out
    assert out.count("resume it with: planexe resume terminated_in_ui") == 1, out
    assert "the Dagster run was terminated" in out
    plan = app_db.get_plan("terminated_in_ui")
    assert plan.status == "stopped" and plan.recoverable is True
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the plan worker in /proc")
def test_a_killed_cli_command_does_not_leave_its_run_going(cli_env, app_db, stub):
    process = _slow_plan(cli_env, stub, "orphaned")
    try:
        run = _wait_for_the_run("orphaned", process)
        os.kill(process.pid, signal.SIGKILL)  # no handler runs: only the worker can clean up
        process.wait(timeout=10)
        deadline = time.monotonic() + 60
        while app_db.get_plan("orphaned").status not in ("stopped", "failed", "completed"):
            assert time.monotonic() < deadline, app_db.get_plan("orphaned").status
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()
    plan = app_db.get_plan("orphaned")
    assert (
        plan.status == "stopped" and "planexe command that started the run has exited" in plan.failure_reason
    )
    with DagsterInstance.get() as instance:
        deadline = time.monotonic() + 30
        while instance.get_run_by_id(run.run_id).status != DagsterRunStatus.CANCELED:
            assert time.monotonic() < deadline, instance.get_run_by_id(run.run_id).status
            time.sleep(0.2)
