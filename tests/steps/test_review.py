"""review_plan and executive_summary, driven by the recorded real answers of two PlanExe runs."""

from __future__ import annotations

import json

import pytest

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.doc_notes import split_notes
from planexe_assets.steps.review import (
    EXECUTIVE_SUMMARY_SECTIONS,
    FAST_REVIEW_QUESTION_COUNT,
    REVIEW_QUESTIONS,
    ExecutiveSummary,
    ReviewAnswer,
    ReviewBullets,
    render_executive_summary,
    render_review_plan,
    run_executive_summary,
    run_review_plan,
)
from tests.support.replay import ReplayLLM, all_strings, context_for, inputs_from_run, load_run_json, norm

RUNS = ["20250321_silo", "20260310_hong_kong_game"]


def assert_all_strings_in(markdown: str, value) -> None:
    haystack = norm(markdown)
    missing = [s for s in all_strings(value) if norm(s) not in haystack]
    assert not missing, f"markdown lost {len(missing)} strings, e.g. {missing[0][:120]!r}"


def recorded_review(run: str) -> list[dict]:
    return load_run_json(run, step_file("review_plan", "raw"))["question_answers_list"]


def recorded_summary(run: str) -> dict:
    raw = load_run_json(run, step_file("executive_summary", "raw"))
    return {k: v for k, v in raw.items() if k in ExecutiveSummary.model_fields}


def replace_upstream(inputs: StepInputs, key: str, filename: str, text: str | None) -> StepInputs:
    """A copy of ``inputs`` with one upstream file replaced (``None`` removes it)."""
    by_key = dict(inputs.items())
    upstream = by_key[key]
    contents = dict(upstream.contents)
    if text is None:
        contents.pop(filename, None)
    else:
        contents[filename] = text
    by_key[key] = UpstreamFiles(step=upstream.step, contents=contents)
    return StepInputs(by_key)


def expected_files(step: str) -> set[str]:
    return set(STEP_BY_NAME[step].outputs.values())


# --- the question series ----------------------------------------------------------------------------


def test_sixteen_distinct_questions_cover_the_reference_topics():
    assert len(REVIEW_QUESTIONS) == 16
    assert len({q.question for q in REVIEW_QUESTIONS}) == 16
    titles = [q.title for q in REVIEW_QUESTIONS]
    # The recorded runs asked the same topics in the same order.
    assert titles == [item["title"] for item in recorded_review(RUNS[0])]
    assert FAST_REVIEW_QUESTION_COUNT == 3


def test_both_steps_are_registered():
    assert step_function("review_plan") is run_review_plan
    assert step_function("executive_summary") is run_executive_summary


# --- response models against recorded real outputs --------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_review_models_parse_recorded_output(run):
    items = recorded_review(run)
    assert len(items) == 16
    for item in items:
        assert (
            ReviewBullets.model_validate({"bullet_points": item["answers"]}).bullet_points == item["answers"]
        )
        assert ReviewAnswer.model_validate(item).error is None


@pytest.mark.parametrize("run", RUNS)
def test_executive_summary_model_parses_recorded_output(run):
    summary = ExecutiveSummary.model_validate(recorded_summary(run))
    assert summary.focus_and_context.strip()


def test_review_bullets_reject_empty_answer():
    with pytest.raises(ValueError):
        ReviewBullets.model_validate({"bullet_points": []})


# --- renderers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_review_markdown_keeps_every_string(run):
    items = [ReviewAnswer.model_validate(i) for i in recorded_review(run)]
    markdown = render_review_plan(items)
    assert_all_strings_in(markdown, recorded_review(run))
    assert markdown.count("## Review ") == 16
    assert "## Review 16: Automation Opportunities" in markdown


@pytest.mark.parametrize("run", RUNS)
def test_executive_summary_markdown_keeps_every_string_in_order(run):
    data = recorded_summary(run)
    markdown = render_executive_summary(ExecutiveSummary.model_validate(data))
    assert_all_strings_in(markdown, data)
    positions = [markdown.index(f"## {heading}\n") for _, heading in EXECUTIVE_SUMMARY_SECTIONS]
    assert positions == sorted(positions)


def test_executive_summary_list_gets_a_blank_line_before_it():
    fields = {name: "text" for name in ExecutiveSummary.model_fields}
    fields["key_deliverables_and_outcomes"] = "Key deliverables:\n- first\n- second"
    markdown = render_executive_summary(ExecutiveSummary.model_validate(fields))
    assert "Key deliverables:\n\n- first\n- second" in markdown


# --- review_plan step ---------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_review_plan_replays_recorded_answers(run):
    recorded = recorded_review(run)
    llm = ReplayLLM(answers=[{"bullet_points": item["answers"]} for item in recorded])
    result = run_review_plan(context_for("review_plan", llm, run=run), inputs_from_run("review_plan", run))

    result.check_against(STEP_BY_NAME["review_plan"])
    assert set(result.files) == expected_files("review_plan")
    assert len(llm.calls) == 16
    raw = json.loads(result.files[step_file("review_plan", "raw")])
    assert [i["answers"] for i in raw["question_answers_list"]] == [i["answers"] for i in recorded]
    assert [i["title"] for i in raw["question_answers_list"]] == [q.title for q in REVIEW_QUESTIONS]
    assert len(raw["metadata"]["metadata_list"]) == 16
    assert {"system_prompt", "user_prompt"} <= set(raw)
    assert result.notes["failed_questions"] == []

    # One growing conversation: system, then user/assistant pairs, the new question last.
    for number, call in enumerate(llm.calls, start=1):
        roles = [m["role"] for m in call["messages"]]
        assert roles == ["system"] + ["user", "assistant"] * (number - 1) + ["user"]
        assert REVIEW_QUESTIONS[number - 1].question in call["messages"][-1]["content"]
    # The documents are data in the first user turn, never in the system prompt.
    first = llm.calls[0]["messages"]
    plan_text = inputs_from_run("review_plan", run)["project_plan"].text("markdown")
    assert plan_text.strip()[:200] in first[1]["content"]
    assert plan_text.strip()[:200] not in first[0]["content"]
    assert "File 'work-breakdown-structure.csv'" in first[1]["content"]
    assert "File 'review-plan.md'" not in first[1]["content"]
    # The second call carries the first answer as the assistant turn.
    assert json.loads(llm.calls[1]["messages"][2]["content"])["bullet_points"] == recorded[0]["answers"]

    assert_all_strings_in(result.files[step_file("review_plan", "markdown")], raw["question_answers_list"])


def test_review_plan_fast_mode_asks_three_questions():
    run = RUNS[1]
    recorded = recorded_review(run)
    llm = ReplayLLM(answers=[{"bullet_points": item["answers"]} for item in recorded[:3]])
    result = run_review_plan(
        context_for("review_plan", llm, run=run, fast=True), inputs_from_run("review_plan", run)
    )
    assert len(llm.calls) == 3
    raw = json.loads(result.files[step_file("review_plan", "raw")])
    assert [i["title"] for i in raw["question_answers_list"]] == [q.title for q in REVIEW_QUESTIONS[:3]]
    assert result.files[step_file("review_plan", "markdown")].count("## Review ") == 3


def test_review_plan_reports_a_failed_later_question_and_continues():
    run = RUNS[0]
    recorded = recorded_review(run)
    failing = REVIEW_QUESTIONS[4].title

    def responder(messages, response_model, label):
        number = int(label.rsplit("_", 1)[1])
        if number == 5:
            raise StepError("review_plan: every model failed (replay-a: timeout)")
        return {"bullet_points": recorded[number - 1]["answers"]}

    llm = ReplayLLM(responder=responder)
    result = run_review_plan(context_for("review_plan", llm, run=run), inputs_from_run("review_plan", run))
    assert len(llm.calls) == 16
    raw = json.loads(result.files[step_file("review_plan", "raw")])
    failed = raw["question_answers_list"][4]
    assert failed["title"] == failing and failed["answers"] == [] and "every model failed" in failed["error"]
    assert len(raw["metadata"]["metadata_list"]) == 15
    assert result.notes["failed_questions"] == [failing]
    markdown = result.files[step_file("review_plan", "markdown")]
    assert f"## Review 5: {failing}\n\n_Question:_" in markdown
    body, notes = split_notes(markdown)
    assert "**Not answered:**" in body and "timeout" not in body
    assert (
        notes
        == f"- Review 5 ({failing}) was not answered: review_plan: every model failed (replay-a: timeout)"
    )
    # The failed turn is not part of the conversation that follows.
    sixth = llm.calls[5]["messages"]
    assert len(sixth) == 1 + 2 * 4 + 1
    assert all(REVIEW_QUESTIONS[4].question not in m["content"] for m in sixth)


def test_review_plan_fails_when_the_first_question_fails():
    def responder(messages, response_model, label):
        raise StepError("review_plan: every model failed")

    llm = ReplayLLM(responder=responder)
    with pytest.raises(StepError, match="every model failed"):
        run_review_plan(context_for("review_plan", llm, run=RUNS[0]), inputs_from_run("review_plan", RUNS[0]))
    assert len(llm.calls) == 1


@pytest.mark.parametrize(
    ("key", "filename", "text", "message"),
    [
        (
            "swot_analysis",
            step_file("swot_analysis", "markdown"),
            "  \n",
            "014-2-swot_analysis.md .* is empty",
        ),
        ("team_markdown", step_file("team_markdown"), None, "013-team.md .* was not loaded"),
    ],
)
def test_review_plan_rejects_bad_upstream(key, filename, text, message):
    inputs = replace_upstream(inputs_from_run("review_plan", RUNS[0]), key, filename, text)
    llm = ReplayLLM(answers=[])
    with pytest.raises(StepError, match=message):
        run_review_plan(context_for("review_plan", llm, run=RUNS[0]), inputs)
    assert llm.calls == []


# --- executive_summary step ---------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_executive_summary_replays_recorded_answer(run):
    llm = ReplayLLM(answers=[recorded_summary(run)])
    result = run_executive_summary(
        context_for("executive_summary", llm, run=run), inputs_from_run("executive_summary", run)
    )
    result.check_against(STEP_BY_NAME["executive_summary"])
    assert set(result.files) == expected_files("executive_summary")
    assert len(llm.calls) == 1
    raw = json.loads(result.files[step_file("executive_summary", "raw")])
    assert {k: raw[k] for k in ExecutiveSummary.model_fields} == recorded_summary(run)
    assert {"metadata", "system_prompt", "user_prompt"} <= set(raw)
    user = llm.calls[0]["messages"][1]["content"]
    assert "File 'review-plan.md'" in user
    assert "File 'review-plan.md'" not in llm.calls[0]["messages"][0]["content"]
    assert_all_strings_in(result.files[step_file("executive_summary", "markdown")], recorded_summary(run))


def test_executive_summary_rejects_blank_review():
    inputs = replace_upstream(
        inputs_from_run("executive_summary", RUNS[1]), "review_plan", step_file("review_plan", "markdown"), ""
    )
    with pytest.raises(StepError, match=step_file("review_plan", "markdown")):
        run_executive_summary(context_for("executive_summary", ReplayLLM(answers=[]), run=RUNS[1]), inputs)
