"""The opt-in redline gate: with refuse-on-redline a REFUSE verdict of the redline gate, or an UNUSABLE
one of the prompt screening, stops the plan after the two gate steps.

The model behind the plan is the HTTP stub; its answers to the redline gate's request (response model
``Decision``) and to the screening's (``PromptScreeningResult``, USABLE unless a test says otherwise)
are the verdicts under test, every other request gets an offline-style answer.
"""

from __future__ import annotations

import json

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance
from typer.testing import CliRunner

from legacy_luigi.__main__ import main as luigi_main
from planexe_assets.cli.app import app
from planexe_assets.core import STEP_BY_NAME, STEPS, step_file
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.dagster_defs.runs import default_instance
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.redline import REFUSE_ENV
from tests.llm.stub_server import Status
from tests.reliability.conftest import PROMPT
from tests.reliability.support import OfflineModel, schema_name

REFUSE = {
    "verdict": "REFUSE",
    "rationale_short": "The goal asks for step-by-step help to build an untraceable firearm.",
    "violation_category": "Weapons",
    "violation_claim": "Manufacturing untraceable weapons for others.",
    "violation_capability_uplift": True,
    "violation_severity": "High",
}
ALLOW = {"verdict": "ALLOW", "rationale_short": "An ordinary business plan."}
USABLE = {"verdict": "USABLE", "reason": "usable", "confidence": "high", "rationale": "A concrete goal."}
UNUSABLE = {
    "verdict": "UNUSABLE",
    "reason": "placeholder_or_test",
    "confidence": "high",
    "rationale": "The request is a template placeholder, not a goal.",
}
GATE_FILES = set(STEP_BY_NAME["redline_gate"].filenames) | set(
    STEP_BY_NAME["screen_planning_prompt"].filenames
)
SETUP_FILES = set(STEP_BY_NAME["start_time"].filenames) | set(STEP_BY_NAME["setup"].filenames)
FIRST_STEPS = [
    "start_time",
    "setup",
    "redline_gate",
    "screen_planning_prompt",
    "premise_attack",
    "identify_purpose",
]
GATE_STAGES = {"redline_gate", "screen_planning_prompt"}


def _verdict_model(verdict: dict, screening: dict) -> OfflineModel:
    answers = {"Decision": verdict, "PromptScreeningResult": screening}
    return OfflineModel(
        mutate=lambda text, body: (
            json.dumps(answers[schema_name(body)]) if schema_name(body) in answers else text
        )
    )


@pytest.fixture
def gate_stub(stub, stub_config, monkeypatch):
    monkeypatch.delenv(REFUSE_ENV, raising=False)
    stub_config(["m1"])

    def serve(verdict: dict, screening: dict = USABLE) -> None:
        stub.reset()
        stub.script("m1", then=_verdict_model(verdict, screening))

    return serve


def _stages(db, plan_id: str) -> set[str]:
    return {i.stage for i in db.get_plan_interactions(plan_id)}


def _said(result) -> str:
    return " ".join((result.output or "").split())


def test_refuse_with_the_flag_stops_the_plan_after_the_gate(app_db, stub, gate_stub, isolated_home):
    gate_stub(REFUSE)
    result = CliRunner().invoke(app, ["plan", PROMPT, "--plan-id", "gated", "--refuse-on-redline", "--quiet"])

    assert result.exit_code == 1, result.output
    said = _said(result)
    assert "gated refused" in said and "refused by the redline gate" in said and "untraceable firearm" in said
    plan = app_db.get_plan("gated")
    assert plan.refuse_on_redline is True
    assert plan.status == "refused"
    assert plan.error_message.startswith(
        "refused by the redline gate (verdict REFUSE; Weapons, severity High)"
    )
    assert "untraceable firearm" in plan.error_message
    # Only the gate and what it needs ran; the gate's files say why, and say the plan was stopped.
    stored = {r.filename: r.content for r in app_db.get_plan_content("gated")}
    assert set(stored) == SETUP_FILES | GATE_FILES
    assert "stopped it after the diagnostics" in stored[step_file("redline_gate", "markdown")]
    assert json.loads(stored[step_file("redline_gate", "raw")])["verdict"] == "REFUSE"
    assert _stages(app_db, "gated") == GATE_STAGES
    assert sorted(schema_name(s.body) for s in stub.seen()) == [
        "Decision",
        "PromptScreeningResult",
    ]  # nothing else
    assert sorted(p.name for p in (isolated_home / "runs" / "gated").iterdir()) == sorted(stored)

    # Dagster: the gate materialised, the steps beside it failed without retries, the rest never ran.
    instance = default_instance()
    run = instance.get_runs()[0]
    failed = {e.step_key for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)}
    # Every step that needs only the prompt, but the two gate steps, fails closed beside the gates.
    beside_gates = {
        s.name for s in STEPS if s.deps and set(s.deps) <= {"setup"} and s.name not in GATE_STAGES
    }
    assert {"premise_attack", "identify_purpose", "extract_constraints"} <= beside_gates
    assert failed == beside_gates
    assert not list(instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY))
    materialized = {
        e.dagster_event.asset_key.path[-1]
        for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert materialized == {"start_time", "setup", "redline_gate", "screen_planning_prompt"}
    gate_event = instance.get_latest_materialization_event(AssetKey("redline_gate")).asset_materialization
    assert gate_event.metadata["note_verdict"].value == "REFUSE"
    assert gate_event.metadata["note_advisory_only"].value is False

    # Resuming a refused plan refuses again, without any LLM call.
    again = CliRunner().invoke(app, ["resume", "gated", "--quiet"])
    assert again.exit_code == 1 and "refused by the redline gate" in _said(again)
    assert app_db.get_plan("gated").status == "refused"
    assert len(stub.seen()) == 2 and set(r.filename for r in app_db.get_plan_content("gated")) == set(stored)


def test_the_environment_switch_gates_plans(app_db, stub, gate_stub, monkeypatch):
    gate_stub(REFUSE)
    monkeypatch.setenv(REFUSE_ENV, "1")
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="env_gated"))
    monkeypatch.delenv(REFUSE_ENV)  # stored on the row: later runs are gated without the variable
    plan = app_db.get_plan("env_gated")
    assert plan.refuse_on_redline is True
    outcome = run_plan_in_process(
        "env_gated", DagsterInstance.ephemeral(), steps=FIRST_STEPS, log_level="CRITICAL"
    )
    assert set(outcome.failed_steps) == {"premise_attack", "identify_purpose"}
    assert app_db.get_plan("env_gated").status == "refused"
    assert _stages(app_db, "env_gated") == GATE_STAGES


def test_the_switch_where_steps_run_gates_an_advisory_plan(app_db, stub, gate_stub, monkeypatch):
    gate_stub(REFUSE)
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="late_gate"))
    assert app_db.get_plan("late_gate").refuse_on_redline is False
    monkeypatch.setenv(REFUSE_ENV, "yes")
    outcome = run_plan_in_process(
        "late_gate", DagsterInstance.ephemeral(), steps=FIRST_STEPS, log_level="CRITICAL"
    )
    assert set(outcome.failed_steps) == {"premise_attack", "identify_purpose"}
    assert app_db.get_plan("late_gate").status == "refused"


def test_without_the_gate_refuse_stays_advisory(app_db, stub, gate_stub, monkeypatch):
    gate_stub(REFUSE)
    monkeypatch.setenv(REFUSE_ENV, "1")
    result = CliRunner().invoke(
        app, ["plan", PROMPT, "--plan-id", "advisory", "--advisory-redline", "--queue"]
    )
    assert result.exit_code == 0, result.output
    monkeypatch.delenv(REFUSE_ENV)
    plan = app_db.get_plan("advisory")
    assert plan.refuse_on_redline is False
    outcome = run_plan_in_process(
        "advisory", DagsterInstance.ephemeral(), steps=FIRST_STEPS, log_level="CRITICAL"
    )
    assert outcome.success, outcome.failed_steps
    assert app_db.get_plan("advisory").status == "running"  # six steps done, nothing refused
    assert _stages(app_db, "advisory") == GATE_STAGES | {"premise_attack", "identify_purpose"}
    markdown = app_db.get_plan_content_by_filename("advisory", step_file("redline_gate", "markdown")).content
    assert "advisory: the plan was still generated" in markdown


def test_allow_with_the_gate_on_runs_the_plan(app_db, stub, gate_stub):
    gate_stub(ALLOW)
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="allowed", refuse_on_redline=True))
    outcome = run_plan_in_process(
        "allowed", DagsterInstance.ephemeral(), steps=FIRST_STEPS, log_level="CRITICAL"
    )
    assert outcome.success, outcome.failed_steps
    assert _stages(app_db, "allowed") == GATE_STAGES | {"premise_attack", "identify_purpose"}
    assert app_db.get_plan("allowed").status == "running"


def test_a_gate_without_a_verdict_fails_closed(app_db, stub, gate_stub):
    """The gate fails on every model: nothing past it runs, and the plan's error is the gate's own."""
    gate_stub(ALLOW)
    stub.reset()
    stub.script(
        "m1",
        then=OfflineModel(
            fault=lambda body: Status(500, "gate model down") if schema_name(body) == "Decision" else None
        ),
    )
    create_plan(
        app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="no_verdict", refuse_on_redline=True)
    )
    instance = DagsterInstance.ephemeral()
    outcome = run_plan_in_process("no_verdict", instance, steps=FIRST_STEPS, log_level="CRITICAL")
    assert set(outcome.failed_steps) == {"redline_gate", "premise_attack", "identify_purpose"}
    assert _stages(app_db, "no_verdict") == GATE_STAGES
    plan = app_db.get_plan("no_verdict")
    assert (
        plan.status == "failed"
        and plan.error_message.startswith("redline_gate:")
        and "gate model down" in plan.error_message
    )
    closed = next(
        e
        for e in instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_FAILURE)
        if e.step_key == "identify_purpose"
    )
    assert "has given no verdict yet" in closed.dagster_event.event_specific_data.error.to_string()


def test_invalid_switch_value_is_refused_before_work(app_db, gate_stub, monkeypatch, isolated_home):
    monkeypatch.setenv(REFUSE_ENV, "maybe")
    result = CliRunner().invoke(app, ["plan", PROMPT, "--quiet"])
    assert result.exit_code == 2 and f"{REFUSE_ENV}='maybe' is not a yes/no value" in _said(result)
    assert app_db.list_plans() == []


def test_the_luigi_twin_honours_the_gate(app_db, stub, gate_stub, capsys):
    gate_stub(REFUSE)
    create_plan(
        app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="luigi_gated", refuse_on_redline=True)
    )
    assert luigi_main(["--plan-id", "luigi_gated", "--workers", "2"]) == 1
    assert "refused by the redline gate" in capsys.readouterr().err
    assert app_db.get_plan("luigi_gated").status == "refused"
    assert _stages(app_db, "luigi_gated") == GATE_STAGES


# ---------------------------------------------------------------------------------------------------
# The prompt screening: UNUSABLE stops a gated plan like REFUSE
# ---------------------------------------------------------------------------------------------------


def test_unusable_screening_with_the_flag_stops_the_plan(app_db, stub, gate_stub, isolated_home):
    gate_stub(ALLOW, UNUSABLE)
    result = CliRunner().invoke(app, ["plan", PROMPT, "--plan-id", "junk", "--refuse-on-redline", "--quiet"])

    assert result.exit_code == 1, result.output
    said = _said(result)
    assert "junk refused" in said and "unusable for planning" in said and "template placeholder" in said
    plan = app_db.get_plan("junk")
    assert (
        plan.status == "refused"
        and plan.failed_step == "screen_planning_prompt"
        and plan.recoverable is False
    )
    assert plan.error_message.startswith(
        "refused: the prompt screening found the prompt unusable for planning "
        "(verdict UNUSABLE; placeholder or test, confidence high)"
    )
    stored = {r.filename for r in app_db.get_plan_content("junk")}
    assert stored == SETUP_FILES | GATE_FILES
    assert _stages(app_db, "junk") == GATE_STAGES

    # Resuming refuses again, without any LLM call.
    calls = len(stub.seen())
    again = CliRunner().invoke(app, ["resume", "junk", "--quiet"])
    assert again.exit_code == 1 and "unusable for planning" in _said(again)
    assert len(stub.seen()) == calls and app_db.get_plan("junk").status == "refused"


def test_unusable_screening_without_the_gate_is_advisory(app_db, stub, gate_stub):
    gate_stub(ALLOW, UNUSABLE)
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="junk_advisory"))
    outcome = run_plan_in_process(
        "junk_advisory", DagsterInstance.ephemeral(), steps=FIRST_STEPS, log_level="CRITICAL"
    )
    assert outcome.success, outcome.failed_steps
    assert app_db.get_plan("junk_advisory").status == "running"
    assert _stages(app_db, "junk_advisory") == GATE_STAGES | {"premise_attack", "identify_purpose"}


def test_the_luigi_twin_stops_on_an_unusable_screening(app_db, stub, gate_stub, capsys):
    gate_stub(ALLOW, UNUSABLE)
    create_plan(
        app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id="luigi_junk", refuse_on_redline=True)
    )
    assert luigi_main(["--plan-id", "luigi_junk", "--workers", "2"]) == 1
    assert "unusable for planning" in capsys.readouterr().err
    assert app_db.get_plan("luigi_junk").status == "refused"
    assert _stages(app_db, "luigi_junk") == GATE_STAGES
