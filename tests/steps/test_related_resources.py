"""related_resources: response model, renderer and step, replayed against two recorded PlanExe runs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.related_resources import RelatedProjects, render_related_resources
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
RAW = step_file("related_resources", "raw")
MARKDOWN = step_file("related_resources", "markdown")
STEP = "related_resources"


@pytest.mark.parametrize("run", RUNS)
def test_model_parses_recorded_output(run):
    raw = load_run_json(run, RAW)
    details = RelatedProjects.model_validate(raw)
    assert len(details.suggestion_list) == len(raw["suggestion_list"]) >= 3
    assert details.suggestion_list[0].project_name == raw["suggestion_list"][0]["project_name"]
    assert details.summary == raw["summary"]


def test_model_rejects_a_suggestion_without_its_lists():
    raw = load_run_json(RUNS[0], RAW)
    del raw["suggestion_list"][0]["success_metrics"]
    with pytest.raises(ValidationError):
        RelatedProjects.model_validate(raw)


@pytest.mark.parametrize("run", RUNS)
def test_renderer_keeps_every_string(run):
    details = RelatedProjects.model_validate(load_run_json(run, RAW))
    markdown = render_related_resources(details)
    normalised = _norm(markdown)
    strings = all_strings(details.model_dump(mode="json"))
    assert len(strings) > 20
    missing = [s for s in strings if _norm(s) not in normalised]
    assert not missing
    for position, item in enumerate(details.suggestion_list, start=1):
        assert f"## {position}. {_norm(item.project_name)}" in markdown
    assert markdown.rstrip().splitlines()[-1] == details.summary.strip().splitlines()[-1]


def test_renderer_shows_a_model_numbering_that_disagrees_with_the_order():
    raw = load_run_json(RUNS[0], RAW)
    raw["suggestion_list"][0]["item_index"] = 7
    markdown = render_related_resources(RelatedProjects.model_validate(raw))
    assert "(the model's number 7)" in markdown


@pytest.mark.parametrize("run", RUNS)
def test_step_replays_recorded_answer(run):
    raw = load_run_json(run, RAW)
    llm = ReplayLLM(answers=[raw])
    ctx = context_for(STEP, llm, run=run)
    result = step_function(STEP)(ctx, inputs_from_run(STEP, run))

    step = STEP_BY_NAME[STEP]
    result.check_against(step)
    assert set(result.files) == {RAW, MARKDOWN}
    assert result.side_files == {}
    assert len(llm.calls) == 1

    written = json.loads(result.files[RAW])
    assert written["suggestion_list"] == raw["suggestion_list"]
    assert written["summary"] == raw["summary"]
    assert set(written) == {"suggestion_list", "summary", "metadata", "system_prompt", "user_prompt"}
    assert written["metadata"]["llm_model"] == "replay"

    system, user = llm.calls[0]["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert written["system_prompt"] == system["content"]
    assert written["user_prompt"] == user["content"]
    plan_text = load_run_file(run, step_file("setup"))
    assert plan_text.strip() in user["content"]
    assert plan_text.strip()[:200] not in system["content"]
    for name in ("plan.txt", "strategic_decisions.md", "scenarios.md", "assumptions.md", "project-plan.json"):
        assert f"File '{name}':" in user["content"]
    # The project plan goes in as compact JSON without the raw file's bookkeeping.
    project_plan = load_run_json(run, step_file("project_plan", "raw"))
    assert json.dumps(project_plan["goal_statement"], ensure_ascii=False) in user["content"]
    assert '"metadata"' not in user["content"].split("File 'project-plan.json':")[1]

    assert result.files[MARKDOWN] == render_related_resources(RelatedProjects.model_validate(raw))
    assert result.notes["suggestion_count"] == len(raw["suggestion_list"])


def test_bad_project_plan_json_raises_step_error():
    run = RUNS[0]
    inputs = inputs_from_run(STEP, run)
    plan = inputs["project_plan"]
    broken = UpstreamFiles(
        step=plan.step, contents={**plan.contents, step_file("project_plan", "raw"): "{not json"}
    )
    inputs = StepInputs({**{k: inputs[k] for k in inputs}, "project_plan": broken})
    llm = ReplayLLM(answers=[load_run_json(run, RAW)])
    with pytest.raises(StepError, match=step_file("project_plan", "raw")):
        step_function(STEP)(context_for(STEP, llm, run=run), inputs)
    assert llm.calls == []
