"""LLM faults at the pipeline level: one model misbehaving, every model failing, and resuming.

The models are OpenAI-compatible endpoints of the HTTP stub (``tests/llm/stub_server.py``) listed in
an ``llm_config.json`` that ``PLANEXE_LLM_CONFIG`` points at, the way a user configures real ones. The
stub answers like the offline provider, except where a fault is injected for one step's requests.
"""

from __future__ import annotations

import json
import socket

import pytest
from dagster import DagsterEventType, DagsterInstance
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, STEP_BY_NAME, StepError, step_file
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.dagster_defs.resources import LLMResource
from planexe_assets.dagster_defs.step_policies import llm_retry_policy
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import StepRunner, missing_steps_with_downstream
from resources.config import runs_dir
from resources.plan_store import PlanStore
from tests.llm.stub_server import Drop, Hang, Raw, Reply, Status
from tests.reliability.conftest import PROMPT
from tests.reliability.support import (
    OfflineModel,
    assert_files_equal_rows,
    schema_name,
    seed_steps,
    steps_before,
)

PURPOSE_SCHEMA = "PlanPurposeInfo"  # identify_purpose's response model


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NO_CHOICES = Raw(
    json.dumps({"id": "x", "object": "chat.completion", "model": "flaky", "choices": []}).encode(),
    "application/json",
)

# fault name -> (the injected action, the error code recorded for it, whether it is retried on the
# same model (transient) or repaired once (an unusable reply))
FAULTS = {
    "429-retry-after": (Status(429, "rate limited", {"Retry-After": "1"}), "http_429"),
    "500": (Status(500, "upstream exploded"), "http_500"),
    "timeout": (Hang(1.5), "timeout"),
    "connection-refused": (None, "connection_error"),  # the model's base_url points at a closed port
    "non-json": (Reply("Sure! Here is the purpose you asked for: business."), "invalid_json"),
    "schema-invalid-json": (Reply('{"purpose": 42, "topic": []}'), "schema_validation"),
    "truncated-json": (Reply('{"purpose": "Business", "purpose_detai', finish_reason="length"), "truncated"),
    "empty-choice-list": (NO_CHOICES, "no_choices"),
}


def _purpose_fault(action, times: int | None):
    """Inject ``action`` into identify_purpose's requests: the first ``times`` of them, or all (None)."""
    seen = {"n": 0}

    def fault(body):
        if schema_name(body) != PURPOSE_SCHEMA:
            return None
        seen["n"] += 1
        if times is None or seen["n"] <= times:
            return action
        return None

    return fault


def _run_purpose(db, plan_id: str):
    create_plan(db, PlanRequest(prompt=PROMPT, model="auto", plan_id=plan_id))
    runner = StepRunner(PlanStore(db, runs_dir()), llm_factory=LLMResource().caller_factory(db))
    runner.run(plan_id, "setup", run_id="r1")
    return runner.run(plan_id, "identify_purpose", run_id="r1")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failing_model_falls_back_to_the_next(
    fault, app_db, stub, stub_config, fast_retries, isolated_home
):
    action, code = FAULTS[fault]
    overrides = {"flaky": {"timeout": 0.5}}
    if fault == "connection-refused":
        overrides["flaky"]["base_url"] = f"http://127.0.0.1:{_closed_port()}/v1"
    stub_config(["flaky", "steady"], overrides=overrides)
    stub.script("flaky", then=OfflineModel(fault=_purpose_fault(action, None)))
    stub.script("steady", then=OfflineModel())

    execution = _run_purpose(app_db, "fallback")

    assert execution.models == ["steady"]
    raw = json.loads((isolated_home / "runs" / "fallback" / step_file("identify_purpose", "raw")).read_text())
    assert raw["metadata"]["llm_model"] == "steady"
    rows = app_db.get_plan_interactions("fallback", stage="identify_purpose")
    flaky = [r for r in rows if r.llm_model == "flaky"]
    steady = [r for r in rows if r.llm_model == "steady"]
    # max_retries 1 in the config: a transient fault is tried twice; an unusable reply is repaired once.
    assert len(flaky) == 2, [(r.error_code, r.status) for r in flaky]
    assert all(r.status == "failed" and r.error_code == code for r in flaky), [
        (r.error_code, r.error_message) for r in flaky
    ]
    assert len(steady) == 1 and steady[0].status == "completed"
    assert app_db.get_plan_metrics("fallback").total_llm_calls == len(rows) == 3
    assert_files_equal_rows(app_db, "fallback", isolated_home / "runs" / "fallback")


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "connection-refused"] + ["dropped-connection"])
def test_a_passing_fault_is_retried_on_the_same_model(
    fault, app_db, stub, stub_config, fast_retries, isolated_home
):
    action, _ = FAULTS.get(fault, (Drop(), "connection_error"))
    stub_config(["flaky", "steady"], overrides={"flaky": {"timeout": 0.5}})
    stub.script("flaky", then=OfflineModel(fault=_purpose_fault(action, 1)))
    stub.script("steady", then=OfflineModel())

    execution = _run_purpose(app_db, "retried")

    assert execution.models == ["flaky"]
    rows = app_db.get_plan_interactions("retried", stage="identify_purpose")
    assert [r.status for r in rows] == ["failed", "completed"]
    assert {r.llm_model for r in rows} == {"flaky"} and stub.seen("steady") == []
    if fault == "429-retry-after":
        first, second = stub.seen("flaky")[-2:]
        assert second.at - first.at >= 0.95, "Retry-After: 1 was not honoured"
    if fault == "truncated-json":
        sent = [s.body.get("max_tokens") for s in stub.seen("flaky")]
        assert sent[1] > (sent[0] or 0), f"a cut-off reply is retried with a larger max_tokens: {sent}"


@pytest.mark.slow
def test_every_model_failing_fails_the_asset_and_resume_starts_there(
    app_db, stub, stub_config, fast_retries, offline_template, isolated_home, monkeypatch
):
    """A plan whose ``pitch`` fails on every model: the asset fails naming the step and the models,
    the plan is failed, the steps that do not need ``pitch`` still finish, and ``planexe resume``
    redoes exactly ``pitch`` and what depends on it."""
    # Counts Dagster's retries: the circuit breaker (tested in tests/llm/test_robustness.py) stays
    # closed, or it would skip some of the 503s depending on how other steps' successes interleave.
    monkeypatch.setenv("PLANEXE_LLM_BREAKER_FAILURES", "1000")
    stub_config(["m-primary", "m-backup"])
    broken = {"on": True}

    def pitch_down(body):
        return (
            Status(503, "pitch model overloaded")
            if broken["on"] and schema_name(body) == "ProjectPitch"
            else None
        )

    stub.script("m-primary", then=OfflineModel(fault=pitch_down))
    stub.script("m-backup", then=OfflineModel(fault=pitch_down))

    plan = create_plan(app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="faulty"))
    store = PlanStore(app_db, runs_dir())
    seed_steps(store, plan.plan_id, offline_template, steps_before("pitch"), run_id="seed")
    first_todo = missing_steps_with_downstream(app_db, "faulty")
    assert first_todo[0] == "pitch"

    instance = DagsterInstance.ephemeral()
    first = run_plan_in_process("faulty", instance, steps=first_todo, log_level="ERROR")

    assert not first.success and first.failed_steps == ["pitch"]
    failure = next(
        e
        for e in instance.all_logs(first.run_id, of_type=DagsterEventType.STEP_FAILURE)
        if e.step_key == "pitch"
    )
    message = failure.dagster_event.event_specific_data.error.to_string()
    assert "step pitch" in message and "every model failed" in message
    assert "m-primary" in message and "m-backup" in message and "HTTP 503" in message
    row = app_db.get_plan("faulty")
    assert row.status == "failed"
    assert (
        row.error_message.startswith("pitch:")
        and "m-primary" in row.error_message
        and "m-backup" in row.error_message
    )
    # Retries as configured: per Dagster attempt, each model is tried 1 + max_retries (1) times.
    policy = llm_retry_policy()
    attempts = 1 + (policy.max_retries if policy else 0)
    pitch_calls = [s for s in stub.seen() if schema_name(s.body) == "ProjectPitch"]
    assert len([s for s in pitch_calls if s.model == "m-primary"]) == 2 * attempts
    assert len([s for s in pitch_calls if s.model == "m-backup"]) == 2 * attempts

    stored = {r.filename: r for r in app_db.get_plan_content("faulty")}
    downstream = [
        "pitch_markdown",
        "review_plan",
        "executive_summary",
        "prompt_adherence",
        "questions_and_answers",
    ]
    downstream += ["premortem", "self_audit", "report"]  # adherence reads the summary, the audit the pitch
    independent = ["identify_task_dependencies", "estimate_task_durations", "wbs_level3", "schedule"]
    for name in downstream + ["pitch"]:
        assert not any(f in stored for f in STEP_BY_NAME[name].filenames), (
            f"{name} has outputs after pitch failed"
        )
    for name in independent:
        assert all(stored[f].run_id == first.run_id for f in STEP_BY_NAME[name].filenames), name
    assert PIPELINE_COMPLETE_FILENAME not in stored

    todo = missing_steps_with_downstream(app_db, "faulty")
    assert todo == ["pitch", *downstream]

    broken["on"] = False
    result = CliRunner().invoke(app, ["resume", "faulty", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "completed" in result.output

    final = {r.filename: r for r in app_db.get_plan_content("faulty")}
    resumed_run = final[step_file("pitch")].run_id
    assert resumed_run not in (None, "seed", first.run_id)
    for name in todo:
        assert {final[f].run_id for f in STEP_BY_NAME[name].filenames} == {resumed_run}, name
    for name in independent:
        assert {final[f].run_id for f in STEP_BY_NAME[name].filenames} == {first.run_id}, f"{name} was redone"
    for name in steps_before("pitch"):
        assert {final[f].run_id for f in STEP_BY_NAME[name].filenames} == {"seed"}, f"{name} was redone"
    plan = app_db.get_plan("faulty")
    assert plan.status == "completed" and plan.error_message is None and plan.progress_percentage == 100
    assert PIPELINE_COMPLETE_FILENAME in final
    assert missing_steps_with_downstream(app_db, "faulty") == []
    assert_files_equal_rows(app_db, "faulty", isolated_home / "runs" / "faulty")


def test_a_step_failing_while_the_run_stops_leaves_the_plan_stopped(
    app_db, stub, stub_config, fast_retries, isolated_home
):
    """Ctrl-C while a step's last attempt is failing: the failure arrives after the stop request, and
    no retry will follow. The plan is being stopped (resumable), so it must not show ``failed``."""
    stub_config(["flaky"])
    stub.script("flaky", then=OfflineModel(fault=_purpose_fault(Status(500, "upstream exploded"), None)))
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="stopping"))
    stop = {"requested": False}
    runner = StepRunner(
        PlanStore(app_db, runs_dir()),
        llm_factory=LLMResource().caller_factory(app_db),
        should_stop=lambda: stop["requested"],
    )
    runner.run("stopping", "setup", run_id="r1")
    stop["requested"] = True
    with pytest.raises(StepError):
        runner.run("stopping", "identify_purpose", run_id="r1")
    plan = app_db.get_plan("stopping")
    assert plan.status == "stopped" and plan.failed_step == "identify_purpose" and plan.recoverable, (
        plan.status
    )
    assert plan.error_message.startswith("stopped during identify_purpose")
