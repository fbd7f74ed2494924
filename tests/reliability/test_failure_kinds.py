"""Dagster's retry policy follows the failure's kind, through real materializations.

A permanent failure (HTTP 400 naming the context length) runs the step once; a content failure (a
model that loops until max_tokens) at most once more (``PLANEXE_LLM_STEP_CONTENT_RETRIES``); a
transient one gets every retry of the policy. The step failure carries the kind in its metadata.
"""

from __future__ import annotations

import pytest
from dagster import DagsterEventType, DagsterInstance

from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.dagster_defs.step_policies import llm_retry_policy
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from tests.llm.stub_server import Reply, Status
from tests.reliability.conftest import PROMPT
from tests.reliability.support import OfflineModel, schema_name

PURPOSE_SCHEMA = "PlanPurposeInfo"
TOO_LONG = (
    "This model's maximum context length is 4096 tokens. However, you requested 5120 tokens "
    "(5000 in the messages, 120 in the completion). Please reduce the length of the messages or completion."
)
LOOP = '{"purpose": "business", "purpose_detailed": "' + "we bake bread and we sell bread and " * 40


def _purpose_requests(stub) -> list:
    return [s for s in stub.seen() if schema_name(s.body) == PURPOSE_SCHEMA]


def _run_purpose(app_db, plan_id: str):
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="auto", plan_id=plan_id))
    instance = DagsterInstance.ephemeral()
    outcome = run_plan_in_process(plan_id, instance, steps=["setup", "identify_purpose"], log_level="ERROR")
    events = {
        kind: [e for e in instance.all_logs(outcome.run_id, of_type=kind) if e.step_key == "identify_purpose"]
        for kind in (DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_UP_FOR_RETRY)
    }
    return outcome, events


def _failure_metadata(event) -> dict:
    data = event.dagster_event.step_failure_data.user_failure_data
    return {key: value.value for key, value in data.metadata.items()}


@pytest.fixture
def purpose_fault(stub, stub_config, fast_retries, monkeypatch):
    """``serve(action)``: identify_purpose's requests get ``action``, every other request an offline answer."""
    monkeypatch.setenv("PLANEXE_LLM_BREAKER_FAILURES", "1000")  # this module counts Dagster's retries

    def serve(action, **arguments):
        stub_config(["solo"], overrides={"solo": arguments})
        stub.script(
            "solo",
            then=OfflineModel(fault=lambda body: action if schema_name(body) == PURPOSE_SCHEMA else None),
        )

    return serve


def test_http_400_context_length_runs_the_step_once(app_db, stub, purpose_fault):
    assert llm_retry_policy() is not None and llm_retry_policy().max_retries >= 1  # the policy is on
    purpose_fault(Status(400, TOO_LONG), max_retries=3)

    outcome, events = _run_purpose(app_db, "too_long")

    assert not outcome.success and outcome.failed_steps == ["identify_purpose"]
    assert events[DagsterEventType.STEP_UP_FOR_RETRY] == []
    assert len(_purpose_requests(stub)) == 1  # neither the executor nor Dagster asked again
    [failure] = events[DagsterEventType.STEP_FAILURE]
    metadata = _failure_metadata(failure)
    assert metadata["failure_kind"] == "permanent" and metadata["recoverable"] is False
    assert metadata["retry_allowed"] is False
    description = failure.dagster_event.step_failure_data.user_failure_data.description
    assert "maximum context length is 4096 tokens" in description and "solo" in description
    rows = app_db.get_plan_interactions("too_long", stage="identify_purpose")
    assert [(r.status, r.error_code, r.response_metadata["failure_kind"]) for r in rows] == [
        ("failed", "context_length", "permanent")
    ]
    plan = app_db.get_plan("too_long")
    assert plan.status == "failed" and "context length" in plan.error_message


@pytest.mark.parametrize(("content_retries", "expected_runs"), [(None, 2), ("0", 1)])
def test_a_model_that_loops_gets_a_bounded_number_of_step_retries(
    app_db, stub, purpose_fault, monkeypatch, content_retries, expected_runs
):
    if content_retries is not None:
        monkeypatch.setenv("PLANEXE_LLM_STEP_CONTENT_RETRIES", content_retries)
    purpose_fault(Reply(LOOP, finish_reason="length"), max_tokens=300)

    outcome, events = _run_purpose(app_db, "loops")

    assert not outcome.success and outcome.failed_steps == ["identify_purpose"]
    # One request per step run: a looping reply is not re-sent with a larger max_tokens.
    assert len(_purpose_requests(stub)) == expected_runs
    assert len(events[DagsterEventType.STEP_UP_FOR_RETRY]) == expected_runs - 1
    [failure] = events[DagsterEventType.STEP_FAILURE]
    metadata = _failure_metadata(failure)
    assert (metadata["failure_kind"], metadata["recoverable"], metadata["retry_allowed"]) == (
        "content",
        True,
        False,
    )
    assert metadata["retry_number"] == expected_runs - 1
    rows = app_db.get_plan_interactions("loops", stage="identify_purpose")
    assert {(r.error_code, r.response_metadata["failure_kind"]) for r in rows} == {("looping", "content")}


def test_a_transient_failure_gets_every_retry_of_the_policy(app_db, stub, purpose_fault):
    purpose_fault(Status(503, "overloaded"), max_retries=0)

    outcome, events = _run_purpose(app_db, "overloaded")

    retries = llm_retry_policy().max_retries
    assert not outcome.success
    assert len(_purpose_requests(stub)) == 1 + retries
    assert len(events[DagsterEventType.STEP_UP_FOR_RETRY]) == retries
    [failure] = events[DagsterEventType.STEP_FAILURE]
    assert _failure_metadata(failure)["failure_kind"] == "transient"


def test_the_step_succeeds_once_the_failure_passes(app_db, stub, purpose_fault):
    sent = {"n": 0}

    def first_fails(body):
        if schema_name(body) != PURPOSE_SCHEMA:
            return None
        sent["n"] += 1
        return Reply(LOOP, finish_reason="length") if sent["n"] == 1 else None

    purpose_fault(None)
    stub.reset()  # replace the fixture's script by one that fails only the first request
    stub.script("solo", then=OfflineModel(fault=first_fails))

    outcome, events = _run_purpose(app_db, "second_time")

    assert outcome.success and sent["n"] == 2
    assert len(events[DagsterEventType.STEP_UP_FOR_RETRY]) == 1
    assert app_db.get_plan("second_time").status != "failed"


def test_the_no_flicker_prediction_follows_the_retry_decision(monkeypatch):
    """What the asset raises (``_raised_for``) is what both Dagster and the plan row's prediction
    (``dagster_will_retry``) read, so they agree for every kind and attempt."""
    from dagster import RetryPolicy
    from sqlalchemy.exc import OperationalError

    from planexe_assets.core import STEP_BY_NAME, FailureKind, StepError
    from planexe_assets.dagster_defs.assets import _raised_for
    from planexe_assets.dagster_defs.step_policies import dagster_will_retry

    monkeypatch.delenv("PLANEXE_LLM_STEP_CONTENT_RETRIES", raising=False)
    step = STEP_BY_NAME["identify_purpose"]
    policy = RetryPolicy(max_retries=2)

    def pending(exc, n, p=policy):
        return dagster_will_retry(_raised_for(step, exc, n), n, p)

    transient = StepError("down", kind=FailureKind.TRANSIENT)
    content = StepError("loops", kind=FailureKind.CONTENT)
    permanent = StepError("too long", kind=FailureKind.PERMANENT)
    assert [pending(transient, n) for n in range(3)] == [True, True, False]
    assert [pending(content, n) for n in range(3)] == [True, False, False]
    assert [pending(permanent, n) for n in range(3)] == [False, False, False]
    assert pending(transient, 0, None) is False  # no retry policy
    assert pending(OperationalError("SELECT 1", {}, Exception("server closed the connection")), 0)


@pytest.fixture
def status_writes(monkeypatch):
    """Every ``status`` written to a plan row, in order, by any process-local database service."""
    from resources.database import DatabaseService

    writes: list[tuple[str, str]] = []
    original = DatabaseService.update_plan

    def recording(self, plan_id, data):
        if "status" in data:
            writes.append((plan_id, str(data["status"])))
        return original(self, plan_id, data)

    monkeypatch.setattr(DatabaseService, "update_plan", recording)
    return writes


@pytest.mark.parametrize(
    ("first", "kind"),
    [(Status(503, "overloaded"), "transient"), (Reply(LOOP, finish_reason="length"), "content")],
    ids=["transient", "content"],
)
def test_status_is_never_failed_while_a_retry_is_pending(
    app_db, stub, purpose_fault, status_writes, first, kind
):
    """The first attempt of identify_purpose fails (and Dagster retries it), the second succeeds: the
    plan row is never written ``failed`` in between, so no reader sees it flicker."""
    sent = {"n": 0}

    def first_fails(body):
        if schema_name(body) != PURPOSE_SCHEMA:
            return None
        sent["n"] += 1
        return first if sent["n"] == 1 else None

    purpose_fault(None, max_retries=0, max_tokens=300)
    stub.reset()
    stub.script("solo", then=OfflineModel(fault=first_fails))

    outcome, events = _run_purpose(app_db, f"pending_{kind}")

    assert outcome.success and sent["n"] == 2
    assert len(events[DagsterEventType.STEP_UP_FOR_RETRY]) == 1
    rows = app_db.get_plan_interactions(f"pending_{kind}", stage="identify_purpose")
    assert [r.response_metadata.get("failure_kind") for r in rows if r.status == "failed"] == [kind]
    written = [status for plan_id, status in status_writes if plan_id == f"pending_{kind}"]
    assert written and "failed" not in written, written


def test_status_becomes_failed_only_when_the_last_retry_failed(app_db, stub, purpose_fault, status_writes):
    """A step that fails every attempt: the plan row turns ``failed`` once, after the last attempt."""
    purpose_fault(Status(503, "overloaded"), max_retries=0)

    outcome, events = _run_purpose(app_db, "always_down")

    retries = llm_retry_policy().max_retries
    assert not outcome.success and len(events[DagsterEventType.STEP_UP_FOR_RETRY]) == retries
    written = [status for plan_id, status in status_writes if plan_id == "always_down"]
    assert written.count("failed") == 1 and written[-1] == "failed", written
    assert len(_purpose_requests(stub)) == 1 + retries  # the failed write came after every attempt
