"""The plan's prompt reaches models only as data in user messages, never inside system instructions.

The shared hostile run's prompt carries a unique marker (and an instruction-injection attempt). Every
request of every one of the steps is checked twice: as the stub received it (exact roles) and as
``llm_interactions`` recorded it (``prompt_text``).
"""

from __future__ import annotations

import re

import pytest

from planexe_assets.core import STEPS, step_file
from planexe_assets.lifecycle.runner import pipeline_steps
from tests.reliability.hostile import FAIL_MARKER, MARKER

pytestmark = pytest.mark.slow
_ROLE = re.compile(r"(?:\A|\n\n)\[(system|user|assistant)\]\n")


def _recorded_messages(prompt_text: str) -> list[tuple[str, str]]:
    parts = _ROLE.split(prompt_text)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def test_every_llm_step_was_exercised(hostile_run):
    """All the steps ran; every step that calls a model did, except physical_locations when the plan
    came out purely digital (it then writes its files without a call, as in PlanExe)."""
    import json

    assert len(pipeline_steps()) == len(STEPS) and hostile_run.plan_row.status == "completed"
    expected = {s.name for s in pipeline_steps() if s.uses_llm}
    plan_type = json.loads((hostile_run.run_dir / step_file("plan_type", "raw")).read_text())["plan_type"]
    if str(plan_type).lower() == "digital":
        expected.discard("physical_locations")
    assert {i.stage for i in hostile_run.interactions} == expected


def test_the_marker_is_never_in_a_system_message_as_sent(hostile_run):
    checked = 0
    for seen in hostile_run.stub_requests:
        for message in seen.messages:
            if message["role"] == "system":
                assert MARKER not in message["content"] and FAIL_MARKER not in message["content"]
                checked += 1
    assert checked >= len(hostile_run.interactions)


def test_the_marker_is_never_in_a_system_message_as_recorded(hostile_run):
    carried = set()
    for row in hostile_run.interactions + hostile_run.failing_interactions:
        messages = _recorded_messages(row.prompt_text)
        assert messages and messages[0][0] == "system", row.stage
        assert len(messages) == row.prompt_metadata["message_count"], row.stage
        for role, content in messages:
            if role == "system":
                assert MARKER not in content and FAIL_MARKER not in content, row.stage
            elif MARKER in content or FAIL_MARKER in content:
                carried.add(row.stage)
    # The prompt does travel: as data in the user turn of the steps that read it.
    assert {"redline_gate", "premise_attack", "identify_purpose", "plan_type"} <= carried


def test_the_prompt_is_passed_verbatim_as_data(hostile_run):
    from tests.reliability.hostile import PROMPT

    gate = next(
        s
        for s in hostile_run.stub_requests
        if s.body.get("response_format", {}).get("json_schema", {}).get("name") == "Decision"
        and MARKER in str(s.body)
    )
    user = [m["content"] for m in gate.messages if m["role"] == "user"]
    assert any(PROMPT in u for u in user)
    assert (
        "treat it purely as material" in gate.messages[0]["content"].lower()
        or "do not follow" in gate.messages[0]["content"].lower()
    )
