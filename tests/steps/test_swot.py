"""swot_analysis: model, renderer, prompt variant by purpose, and the step against two recorded runs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.swot import (
    BUSINESS_PROMPT,
    OTHER_PROMPT,
    PERSONAL_PROMPT,
    SWOTAnalysis,
    render_swot,
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
    norm as _norm,
)

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
STEP = "swot_analysis"
RAW, MARKDOWN = step_file("swot_analysis", "raw"), step_file("swot_analysis", "markdown")
PURPOSE_RAW = step_file("identify_purpose", "raw")
FIELDS = list(SWOTAnalysis.model_fields)


def _recorded_answer(run: str) -> dict:
    """PlanExe nests the SWOT answer under response_conduct in its raw file."""
    return load_run_json(run, RAW)["response_conduct"]


def _inputs_with_purpose(run: str, **changes) -> StepInputs:
    inputs = inputs_from_run(STEP, run)
    purpose = inputs["identify_purpose"]
    data = {**json.loads(purpose.contents[PURPOSE_RAW]), **changes}
    changed = UpstreamFiles(step=purpose.step, contents={**purpose.contents, PURPOSE_RAW: json.dumps(data)})
    return StepInputs({**{k: inputs[k] for k in inputs}, "identify_purpose": changed})


@pytest.mark.parametrize("run", RUNS)
def test_model_parses_recorded_output(run):
    answer = _recorded_answer(run)
    analysis = SWOTAnalysis.model_validate(answer)
    for name in FIELDS:
        assert getattr(analysis, name) == answer[name]
        assert getattr(analysis, name), name


def test_model_requires_every_list():
    answer = _recorded_answer(RUNS[0])
    del answer["threats"]
    with pytest.raises(ValidationError):
        SWOTAnalysis.model_validate(answer)


@pytest.mark.parametrize("run", RUNS)
def test_renderer_keeps_every_string(run):
    analysis = SWOTAnalysis.model_validate(_recorded_answer(run))
    markdown = render_swot(analysis, purpose="business")
    normalised = _norm(markdown)
    strings = all_strings(analysis.model_dump(mode="json"))
    assert len(strings) > 40
    assert not [s for s in strings if _norm(s) not in normalised]
    for heading in (
        "## Strengths",
        "## Weaknesses",
        "## Opportunities",
        "## Threats",
        "## Strategic objectives",
    ):
        assert heading in markdown
    assert "a business plan" in markdown


def test_renderer_marks_empty_sections():
    empty = SWOTAnalysis(**{name: [] for name in FIELDS})
    assert render_swot(empty).count("_None._") == len(FIELDS)


@pytest.mark.parametrize("run", RUNS)
def test_step_replays_recorded_answer(run):
    answer = _recorded_answer(run)
    llm = ReplayLLM(answers=[answer])
    result = step_function(STEP)(context_for(STEP, llm, run=run), inputs_from_run(STEP, run))
    result.check_against(STEP_BY_NAME[STEP])
    assert set(result.files) == {RAW, MARKDOWN}
    assert len(llm.calls) == 1

    written = json.loads(result.files[RAW])
    for name in FIELDS:
        assert written[name] == answer[name]
    recorded_purpose = load_run_json(run, PURPOSE_RAW)
    assert written["purpose"] == "business"
    assert written["topic"] == recorded_purpose["topic"]
    assert written["purpose_detailed"] == recorded_purpose["purpose_detailed"]
    assert {"metadata", "system_prompt", "user_prompt"} <= set(written)

    system, user = (m["content"] for m in llm.calls[0]["messages"])
    assert system == BUSINESS_PROMPT.strip()
    assert load_run_file(run, step_file("setup")).strip() in user
    assert load_run_file(run, step_file("related_resources", "markdown")).strip() in user
    assert f"Topic: {recorded_purpose['topic']}" in user
    assert result.files[MARKDOWN] == render_swot(SWOTAnalysis.model_validate(answer), purpose="business")


@pytest.mark.parametrize(
    "purpose, prompt",
    [("personal", PERSONAL_PROMPT), ("other", OTHER_PROMPT), (" Business ", BUSINESS_PROMPT)],
)
def test_purpose_picks_the_prompt_variant(purpose, prompt):
    run = RUNS[1]
    topic = "Restoring a village orchard"
    llm = ReplayLLM(answers=[_recorded_answer(run)])
    inputs = _inputs_with_purpose(run, purpose=purpose, topic=topic)
    result = step_function(STEP)(context_for(STEP, llm, run=run), inputs)
    system, user = (m["content"] for m in llm.calls[0]["messages"])
    assert system == prompt.strip()
    # The topic is data: in the user message, never in the instruction.
    assert topic in user and topic not in system
    assert result.notes["purpose"] == purpose.strip().lower()


def test_variants_differ():
    assert len({BUSINESS_PROMPT, PERSONAL_PROMPT, OTHER_PROMPT}) == 3


@pytest.mark.parametrize("purpose", ["commercial", None, 3])
def test_unknown_purpose_raises_step_error(purpose):
    run = RUNS[0]
    llm = ReplayLLM(answers=[_recorded_answer(run)])
    with pytest.raises(StepError, match="purpose"):
        step_function(STEP)(context_for(STEP, llm, run=run), _inputs_with_purpose(run, purpose=purpose))
    assert llm.calls == []
