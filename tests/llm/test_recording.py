"""Recording: llm_interactions rows and plan_metrics in a real database, and no key anywhere."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import BaseModel

from planexe_assets.core import StepError
from resources.llm import DatabaseRecorder, LLMExecutor, MemoryRecorder
from tests.llm.conftest import CANARY_KEY, FAST_RETRY, stub_entries, stub_executor
from tests.llm.stub_server import EchoAuth, Reply, Status


class Purpose(BaseModel):
    purpose: str
    topic: str


VALID = json.dumps({"purpose": "business", "topic": "bakery"})
MESSAGES = [
    {"role": "system", "content": "Classify the plan."},
    {"role": "user", "content": "Plan: a bakery."},
]
COST = {"input": 2.0, "output": 10.0}  # USD per million tokens


@pytest.fixture
def db(tmp_path):
    from resources.database import get_database_service
    from resources.migrate import upgrade

    url = "sqlite:///" + str(tmp_path / "llm.db")
    upgrade(url)
    return get_database_service(url)


def all_text(rows) -> str:
    """Every column of every row, as one string to search for secrets."""
    return "\n".join(
        json.dumps({c: getattr(r, c) for c in r.__table__.columns.keys()}, default=str) for r in rows
    )


def test_attempts_are_recorded_with_tokens_and_plan_metrics(stub, canary_env, db):
    stub.script(
        "alpha", Status(500, "upstream hiccup"), Reply("no json here", prompt_tokens=40, completion_tokens=5)
    )
    stub.script("alpha", Reply(VALID, prompt_tokens=50, completion_tokens=9))
    stub.script("alpha", Reply("# Notes", prompt_tokens=30, completion_tokens=3))
    executor = stub_executor(stub, {"alpha": {"cost": COST}}, recorder=DatabaseRecorder(db))
    llm = executor.for_step("plan_rec", "identify_purpose")

    reply = llm.structured(MESSAGES, Purpose, label="purpose")
    note = llm.text(MESSAGES, label="notes")

    rows = db.get_plan_interactions("plan_rec")
    assert [(r.status, r.error_code) for r in rows] == [
        ("failed", "http_500"),
        ("failed", "invalid_json"),
        ("completed", None),
        ("completed", None),
    ]
    assert {r.llm_model for r in rows} == {"alpha"} and {r.stage for r in rows} == {"identify_purpose"}
    assert [(r.input_tokens, r.output_tokens, r.total_tokens) for r in rows] == [
        (None, None, None),
        (40, 5, 45),
        (50, 9, 59),
        (30, 3, 33),
    ]
    first, repair, success, text_row = rows
    assert first.error_message == "HTTP 500: upstream hiccup" and first.response_text is None
    assert repair.response_text == "no json here"
    assert success.response_text == VALID
    assert text_row.response_text == "# Notes"
    for row in rows:
        assert row.started_at is not None and row.completed_at >= row.started_at
        assert row.duration_seconds is not None and row.duration_seconds >= 0
        assert row.prompt_text.startswith("[system]\nClassify the plan.")
    assert [r.prompt_metadata["attempt"] for r in rows] == [1, 2, 3, 1]
    assert success.prompt_metadata | {"call_id": None} == {
        "label": "purpose",
        "kind": "structured",
        "response_model": "Purpose",
        "structured_mode": "json_schema",
        "attempt": 3,
        "model_attempt": 3,
        "call_id": None,
        "repair_of": "invalid_json",
        "max_tokens": None,
        "timeout": 2.0,
        "temperature": None,
        "provider_class": "OpenAILike",
        "model_name": "alpha",
        "base_url": stub.base_url,
        "message_count": 4,
    }
    assert len({r.prompt_metadata["call_id"] for r in rows[:3]}) == 1
    assert success.response_metadata["finish_reason"] == "stop"
    assert success.response_metadata["cost_usd"] == pytest.approx((50 * 2 + 9 * 10) / 1e6)

    metrics = db.get_plan_metrics("plan_rec")
    assert metrics.total_llm_calls == 4
    assert metrics.total_tokens_used == 45 + 59 + 33
    assert metrics.total_cost_usd == pytest.approx(((40 + 50 + 30) * 2 + (5 + 9 + 3) * 10) / 1e6)

    # The call's usage spans its attempts; the step keeps one entry per call.
    assert (reply.usage.attempts, reply.usage.input_tokens, reply.usage.output_tokens) == (3, 90, 14)
    assert reply.usage.cost_usd == pytest.approx((90 * 2 + 14 * 10) / 1e6)
    assert reply.metadata == {
        "llm_model": "alpha",
        "duration": round(reply.usage.duration_seconds, 3),
        "input_tokens": 90,
        "output_tokens": 14,
        "attempts": 3,
    }
    assert [u.label for u in llm.usage] == ["purpose", "notes"] and note.usage.total_tokens == 33


def test_no_key_in_the_database_logs_or_errors(stub, canary_env, db, caplog):
    # alpha's server echoes the Authorization header in its 401; beta's model repeats the key in
    # its reply; gamma fails with the key in a 500. None of it may reach a row, a log line or an error.
    stub.script("alpha", then=EchoAuth(401))
    stub.script("beta", Reply(f"Your key is {CANARY_KEY}, and Bearer {CANARY_KEY}."))
    stub.script("gamma", then=Status(500, f"crash while using {CANARY_KEY}"))
    stub.script("delta", then=EchoAuth(403))
    caplog.set_level(logging.DEBUG)  # every logger, including openai's and the HTTP client's
    executor = stub_executor(stub, {"alpha": {}, "beta": {}}, recorder=DatabaseRecorder(db))
    reply = executor.for_step("plan_sec", "s").text(MESSAGES)
    assert CANARY_KEY in reply.text  # the step gets the model's answer untouched...

    failing = stub_executor(stub, {"gamma": {"max_retries": 1}, "delta": {}}, recorder=DatabaseRecorder(db))
    with pytest.raises(StepError) as caught:
        failing.for_step("plan_sec", "s").structured(MESSAGES, Purpose)

    rows = db.get_plan_interactions("plan_sec")
    assert len(rows) == 5
    assert "[REDACTED]" in rows[0].error_message and "[REDACTED]" in rows[1].response_text
    assert CANARY_KEY not in all_text(rows)  # ...but the records never hold the key
    assert CANARY_KEY not in caplog.text
    assert CANARY_KEY not in str(caught.value) and "[REDACTED]" in str(caught.value)
    assert CANARY_KEY not in repr(executor) + repr(executor.models) + repr(executor.for_step("p", "s"))
    assert any(r.name.startswith("openai") or r.name.startswith("httpx") for r in caplog.records)


def test_concurrent_calls_are_all_recorded(stub, canary_env, db):
    stub.script("alpha", then=Reply(VALID, delay=0.05, prompt_tokens=10, completion_tokens=2))
    executor = stub_executor(stub, {"alpha": {}}, recorder=DatabaseRecorder(db), in_flight=4)
    llm = executor.for_step("plan_fan", "fanout")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda i: llm.structured([*MESSAGES, {"role": "user", "content": f"item {i}"}], Purpose),
                range(12),
            )
        )
    rows = db.get_plan_interactions("plan_fan")
    assert len(rows) == 12 and {r.status for r in rows} == {"completed"}
    metrics = db.get_plan_metrics("plan_fan")
    assert (metrics.total_llm_calls, metrics.total_tokens_used) == (12, 144)
    assert len(llm.usage) == 12


def test_a_row_is_pending_while_the_call_runs(stub, canary_env):
    stub.script("alpha", Reply(VALID, delay=0.4))
    recorder = MemoryRecorder()
    executor = stub_executor(stub, {"alpha": {}}, recorder=recorder)
    worker = threading.Thread(target=lambda: executor.for_step("p", "s").structured(MESSAGES, Purpose))
    worker.start()
    deadline = time.monotonic() + 2
    while not recorder.rows and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.rows[0]["status"] == "pending" and "completed_at" not in recorder.rows[0]
    worker.join()
    assert recorder.rows[0]["status"] == "completed"


class BrokenService:
    def create_llm_interaction(self, data):
        raise RuntimeError("disk full")

    def update_llm_interaction(self, interaction_id, data):
        raise AssertionError("never called without a row id")

    def add_plan_usage(self, plan_id, calls, tokens, cost_usd):
        raise RuntimeError("disk full")


def test_a_recorder_failure_does_not_fail_the_plan(stub, canary_env, caplog):
    stub.script("alpha", Reply(VALID))
    recorder = DatabaseRecorder(BrokenService())
    executor = LLMExecutor(stub_entries(stub, {"alpha": {}}), recorder=recorder, retry=FAST_RETRY)
    with caplog.at_level(logging.WARNING, logger="planexe.llm"):
        reply = executor.for_step("p", "s").structured(MESSAGES, Purpose)
    assert reply.value.topic == "bakery"
    assert recorder.failures == 2
    assert "disk full" in caplog.text


def test_skipped_calls_are_rows_but_not_calls(stub, canary_env, db):
    """A call the circuit breaker did not send is a ``skipped`` row, with its reason and the prompt, but
    no duration and no tokens, and neither the live totals nor their recomputation count it."""
    from dataclasses import replace

    from planexe_assets.lifecycle.plan_sync import recompute_plan_metrics

    stub.script("down", then=Status(502, "bad gateway"))
    stub.script("up", then=Reply(VALID, prompt_tokens=20, completion_tokens=4))
    executor = stub_executor(
        stub,
        {"down": {"max_retries": 0}, "up": {}},
        recorder=DatabaseRecorder(db),
        retry=replace(FAST_RETRY, breaker_failures=2, breaker_cooldown=60),
    )
    llm = executor.for_step("plan_skip", "identify_purpose")
    for _ in range(4):
        llm.structured(MESSAGES, Purpose)

    rows = db.get_plan_interactions("plan_skip")
    assert [(r.llm_model, r.status) for r in rows] == [
        ("down", "failed"),
        ("up", "completed"),
        ("down", "failed"),
        ("up", "completed"),
        ("down", "skipped"),
        ("up", "completed"),
        ("down", "skipped"),
        ("up", "completed"),
    ]
    for row in (r for r in rows if r.status == "skipped"):
        assert (
            row.error_code == "circuit_open"
            and "failed 2 times in a row (last: http_502" in row.error_message
        )
        assert row.duration_seconds is None and row.total_tokens is None
        assert row.response_metadata == {"failure_kind": "transient"}
        assert row.prompt_metadata["attempt"] is None and row.prompt_text.startswith("[system]")
    live = db.get_plan_metrics("plan_skip").total_llm_calls
    assert live == 6 and recompute_plan_metrics(db, "plan_skip")[0] == 6
