"""identify_purpose and plan_type: models, renderers and steps, replayed against two recorded runs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.purpose import (
    PlanPurpose,
    PlanPurposeInfo,
    PlanType,
    PlanTypeAssessment,
    render_identify_purpose,
    render_plan_type,
)
from tests.support.replay import (
    ReplayLLM,
    all_strings,
    context_for,
    inputs_from_run,
    load_run_file,
    load_run_json,
)
from tests.support.replay import (
    missing_from as _missing,
)

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
PURPOSE_RAW = step_file("identify_purpose", "raw")
PURPOSE_MD = step_file("identify_purpose", "markdown")
TYPE_RAW = step_file("plan_type", "raw")
TYPE_MD = step_file("plan_type", "markdown")


# --- identify_purpose ------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_purpose_model_parses_recorded_output(run):
    raw = load_run_json(run, PURPOSE_RAW)
    info = PlanPurposeInfo.model_validate(raw)
    assert info.purpose == PlanPurpose.BUSINESS
    assert info.topic == raw["topic"]
    assert info.purpose_detailed == raw["purpose_detailed"]


def test_purpose_model_tolerates_case_and_rejects_other_values():
    base = {"topic": "t", "purpose_detailed": "d"}
    assert PlanPurposeInfo.model_validate({**base, "purpose": " Personal "}).purpose == PlanPurpose.PERSONAL
    with pytest.raises(ValidationError):
        PlanPurposeInfo.model_validate({**base, "purpose": "hobby"})


@pytest.mark.parametrize("run", RUNS)
def test_purpose_renderer_keeps_every_string(run):
    info = PlanPurposeInfo.model_validate(load_run_json(run, PURPOSE_RAW))
    markdown = render_identify_purpose(info)
    assert not _missing(all_strings(info.model_dump(mode="json")), markdown)


def test_purpose_renderer_explains_other_at_length():
    other = render_identify_purpose(PlanPurposeInfo(topic="t", purpose_detailed="d", purpose="other"))
    business = render_identify_purpose(PlanPurposeInfo(topic="t", purpose_detailed="d", purpose="business"))
    assert "**Purpose:** other" in other and "research" in other
    assert len(other) > len(business)


@pytest.mark.parametrize("run", RUNS)
def test_purpose_step_replays_recorded_answer(run):
    raw = load_run_json(run, PURPOSE_RAW)
    llm = ReplayLLM(answers=[raw])
    result = step_function("identify_purpose")(
        context_for("identify_purpose", llm, run=run), inputs_from_run("identify_purpose", run)
    )
    result.check_against(STEP_BY_NAME["identify_purpose"])
    assert set(result.files) == {PURPOSE_RAW, PURPOSE_MD}
    assert len(llm.calls) == 1
    written = json.loads(result.files[PURPOSE_RAW])
    # Later steps read these three keys at the top level of the raw file.
    assert {k: written[k] for k in ("topic", "purpose_detailed", "purpose")} == {
        k: raw[k] for k in ("topic", "purpose_detailed", "purpose")
    }
    assert set(written) == {
        "topic",
        "purpose_detailed",
        "purpose",
        "metadata",
        "system_prompt",
        "user_prompt",
    }
    assert load_run_file(run, step_file("setup")).strip() in llm.calls[0]["messages"][1]["content"]
    assert result.notes == {"purpose": "business"}


# --- plan_type -------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_plan_type_model_parses_recorded_output(run):
    raw = load_run_json(run, TYPE_RAW)
    details = PlanTypeAssessment.model_validate(raw)
    assert details.plan_type == PlanType.PHYSICAL
    assert details.explanation == raw["explanation"]


@pytest.mark.parametrize("run", RUNS)
def test_plan_type_renderer_keeps_every_string(run):
    details = PlanTypeAssessment.model_validate(load_run_json(run, TYPE_RAW))
    markdown = render_plan_type(details)
    assert not _missing(all_strings(details.model_dump(mode="json")), markdown)
    digital = render_plan_type(PlanTypeAssessment(explanation="x", plan_type="digital"))
    assert "digital" in digital and digital != markdown


@pytest.mark.parametrize("run", RUNS)
def test_plan_type_step_replays_recorded_answer(run):
    raw = load_run_json(run, TYPE_RAW)
    llm = ReplayLLM(answers=[raw])
    result = step_function("plan_type")(
        context_for("plan_type", llm, run=run), inputs_from_run("plan_type", run)
    )
    result.check_against(STEP_BY_NAME["plan_type"])
    assert set(result.files) == {TYPE_RAW, TYPE_MD}
    assert len(llm.calls) == 1
    written = json.loads(result.files[TYPE_RAW])
    assert written["plan_type"] == "physical"
    user = llm.calls[0]["messages"][1]["content"]
    assert user.startswith("File 'plan.txt':")
    assert "File 'purpose.md':" in user
    assert load_run_file(run, PURPOSE_MD).strip() in user


def test_plan_type_step_fails_clearly_without_the_purpose_markdown():
    run = RUNS[0]
    inputs = inputs_from_run("plan_type", run)
    purpose = inputs["identify_purpose"]
    stripped = UpstreamFiles(step=purpose.step, contents={PURPOSE_RAW: purpose.contents[PURPOSE_RAW]})
    broken = StepInputs({"setup": inputs["setup"], "identify_purpose": stripped})
    llm = ReplayLLM(answers=[load_run_json(run, TYPE_RAW)])
    with pytest.raises(StepError, match=PURPOSE_MD):
        step_function("plan_type")(context_for("plan_type", llm, run=run), broken)
    assert llm.calls == []
