"""questions_and_answers and premortem, driven by the recorded real answers of two PlanExe runs."""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser

import pytest

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.doc_notes import NOTES_MARKER, split_notes
from planexe_assets.steps.qa import (
    PremortemAnalysis,
    QuestionAnswerPair,
    QuestionsAndAnswers,
    merge_question_rounds,
    render_premortem,
    render_questions_and_answers,
    render_questions_and_answers_html,
    risk_level,
    run_premortem,
    run_questions_and_answers,
)
from tests.support.replay import ReplayLLM, all_strings, context_for, inputs_from_run, load_run_json, norm

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
QA_FIELDS = ("question_answer_pairs", "summary")
PREMORTEM_FIELDS = ("assumptions_to_kill", "failure_modes")


def assert_all_strings_in(document: str, value) -> None:
    haystack = norm(document.replace("\\|", "|"))
    missing = [s for s in all_strings(value) if norm(s) not in haystack]
    assert not missing, f"lost {len(missing)} strings, e.g. {missing[0][:120]!r}"


def recorded_qa(run: str) -> dict:
    raw = load_run_json(run, step_file("questions_and_answers", "raw"))
    return {k: raw[k] for k in QA_FIELDS}


def qa_rounds(run: str) -> list[dict]:
    """The two turns of the recorded run: PlanExe stored them merged (pairs offset, summaries joined)."""
    data = recorded_qa(run)
    pairs = data["question_answer_pairs"]
    half = len(pairs) // 2
    first_summary, second_summary = data["summary"].split("\n\n", 1)
    second = [dict(p, item_index=n) for n, p in enumerate(pairs[half:], start=1)]
    return [
        {"question_answer_pairs": pairs[:half], "summary": first_summary},
        {"question_answer_pairs": second, "summary": second_summary},
    ]


def recorded_premortem(run: str) -> dict:
    raw = load_run_json(run, step_file("premortem", "raw"))
    return {k: raw[k] for k in PREMORTEM_FIELDS}


def premortem_rounds(run: str) -> list[dict]:
    """Three turns of three assumptions and three failure modes each, as the model answered them."""
    data = recorded_premortem(run)
    return [
        {
            "assumptions_to_kill": data["assumptions_to_kill"][i * 3 : i * 3 + 3],
            "failure_modes": data["failure_modes"][i * 3 : i * 3 + 3],
        }
        for i in range(3)
    ]


def replace_upstream(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    by_key = dict(inputs.items())
    upstream = by_key[key]
    by_key[key] = UpstreamFiles(step=upstream.step, contents={**upstream.contents, filename: text})
    return StepInputs(by_key)


def by_label(answers: dict):
    """A responder for labelled calls: ``answers[label]`` is a dict answer or an exception to raise."""

    def responder(messages, response_model, label):
        answer = answers[label]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return responder


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


def test_steps_are_registered():
    assert step_function("questions_and_answers") is run_questions_and_answers
    assert step_function("premortem") is run_premortem


# --- response models against recorded real outputs --------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_qa_model_parses_recorded_output(run):
    qa = QuestionsAndAnswers.model_validate(recorded_qa(run))
    assert [p.item_index for p in qa.question_answer_pairs] == list(range(1, 11))
    for answer in qa_rounds(run):
        QuestionsAndAnswers.model_validate(answer)


@pytest.mark.parametrize("run", RUNS)
def test_premortem_model_parses_recorded_output(run):
    analysis = PremortemAnalysis.model_validate(recorded_premortem(run))
    assert len(analysis.assumptions_to_kill) == 9 and len(analysis.failure_modes) == 9
    assert all(fm.likelihood_5 and fm.impact_5 for fm in analysis.failure_modes)


def test_premortem_model_rejects_out_of_scale_ratings():
    item = recorded_premortem(RUNS[0])["failure_modes"][0]
    with pytest.raises(ValueError):
        PremortemAnalysis.model_validate(
            {
                "assumptions_to_kill": recorded_premortem(RUNS[0])["assumptions_to_kill"][:1],
                "failure_modes": [dict(item, likelihood_5=7)],
            }
        )


# --- renderers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_qa_markdown_and_html_keep_every_string(run):
    data = recorded_qa(run)
    qa = QuestionsAndAnswers.model_validate(data)
    assert_all_strings_in(render_questions_and_answers(qa), data)
    fragment = render_questions_and_answers_html(qa)
    text = html.unescape(fragment)
    for pair in data["question_answer_pairs"]:
        assert norm(pair["question"]) in norm(text.replace("<br>", " "))
        assert norm(pair["answer"]) in norm(text.replace("<br>", " "))
    assert fragment.count('<div class="question-answer-pair">') == 10


@pytest.mark.parametrize("run", RUNS)
def test_premortem_markdown_keeps_every_string(run):
    data = recorded_premortem(run)
    markdown = render_premortem(PremortemAnalysis.model_validate(data))
    assert_all_strings_in(markdown, data)
    assert "## Assumptions to Kill" in markdown and "### FM1: " in markdown


def test_risk_level_thresholds():
    assert risk_level(4, 5) == "CRITICAL (20/25)"
    assert risk_level(3, 5) == "CRITICAL (15/25)"
    assert risk_level(3, 4) == "HIGH (12/25)"
    assert risk_level(3, 3) == "HIGH (9/25)"
    assert risk_level(2, 4) == "MEDIUM (8/25)"
    assert risk_level(2, 2) == "MEDIUM (4/25)"
    assert risk_level(1, 3) == "LOW (3/25)"
    assert risk_level(None, 5) == "Not rated"


def test_qa_html_escapes_model_text():
    hostile = QuestionsAndAnswers(
        question_answer_pairs=[
            QuestionAnswerPair(
                item_index=1,
                question='What about <script>alert("q")</script>?',
                answer='See <img src=x onerror="alert(1)"> and <a href="javascript:alert(2)">this</a>\nsecond line',
                rationale="<b>bold</b>",
            )
        ],
        summary="<script>alert('s')</script>",
    )
    fragment = render_questions_and_answers_html(hostile, failures=["<svg onload=alert(3)>"])
    parser = TagCollector()
    parser.feed(fragment)
    tags = {tag for tag, _ in parser.tags}
    # The page's own frame (the shared base template) and the notes block; nothing from the model.
    frame = {"html", "head", "meta", "title", "style", "body", "header", "h1", "main", "article"}
    assert tags <= frame | {"div", "p", "strong", "br", "details", "summary", "ul", "li"}, tags
    assert not [attr for _, attrs in parser.tags for attr, _ in attrs if attr.startswith("on")]
    assert "<script" not in fragment and "<img" not in fragment and "<svg" not in fragment
    assert "<li>&lt;svg onload=alert(3)&gt;</li>" in fragment  # the failure, in the notes, as text
    assert "&lt;script&gt;alert(&#34;q&#34;)&lt;/script&gt;" in fragment
    assert "onerror=&#34;alert(1)&#34;" in fragment
    # The one piece of markup we add: line breaks inside an answer.
    assert "this&lt;/a&gt;<br>\nsecond line" in fragment


# --- questions_and_answers step ---------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_questions_and_answers_replays_recorded_turns(run):
    llm = ReplayLLM(answers=qa_rounds(run))
    result = run_questions_and_answers(
        context_for("questions_and_answers", llm, run=run), inputs_from_run("questions_and_answers", run)
    )
    result.check_against(STEP_BY_NAME["questions_and_answers"])
    assert set(result.files) == set(STEP_BY_NAME["questions_and_answers"].outputs.values())
    assert len(llm.calls) == 2
    first, second = (call["messages"] for call in llm.calls)
    assert [m["role"] for m in first] == ["system", "user"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert json.loads(second[2]["content"])["summary"] == qa_rounds(run)[0]["summary"]
    assert "File 'review-plan.md'" in first[1]["content"]
    assert "File 'review-plan.md'" not in first[0]["content"]

    raw = json.loads(result.files[step_file("questions_and_answers", "raw")])
    assert {k: raw[k] for k in QA_FIELDS} == recorded_qa(run)
    assert len(raw["metadata"]) == 2 and "failed_rounds" not in raw
    assert result.notes["rounds_completed"] == 2 and result.notes["pairs"] == 10
    assert_all_strings_in(result.files[step_file("questions_and_answers", "markdown")], recorded_qa(run))
    assert (
        result.files[step_file("questions_and_answers", "html")].count('<div class="question-answer-pair">')
        == 10
    )


def test_questions_and_answers_reports_failed_follow_up():
    run = RUNS[1]
    llm = ReplayLLM(
        responder=by_label(
            {
                "questions_and_answers_1": qa_rounds(run)[0],
                "questions_and_answers_2": StepError("questions_and_answers: every model failed (a: 500)"),
            }
        )
    )
    result = run_questions_and_answers(
        context_for("questions_and_answers", llm, run=run), inputs_from_run("questions_and_answers", run)
    )
    assert len(llm.calls) == 2
    raw = json.loads(result.files[step_file("questions_and_answers", "raw")])
    assert [p["item_index"] for p in raw["question_answer_pairs"]] == [1, 2, 3, 4, 5]
    assert "every model failed" in raw["failed_rounds"][0]
    # The failure is a note at the end of both documents, never above the answers.
    body, notes = split_notes(result.files[step_file("questions_and_answers", "markdown")])
    assert body.startswith("## Summary") and "every model failed" not in body
    assert notes.startswith("- Follow-up round (risks, ethics and wider consequences) failed: ")
    page = result.files[step_file("questions_and_answers", "html")]
    assert page.index('<div class="question-answer-pair">') < page.index('<details class="doc-notes">')
    assert "every model failed" in page[page.index('<details class="doc-notes">') :]
    assert result.notes["rounds_completed"] == 1 and len(result.notes["failed_rounds"]) == 1


def test_questions_and_answers_first_turn_failure_fails_the_step():
    llm = ReplayLLM(responder=by_label({"questions_and_answers_1": StepError("all models failed")}))
    with pytest.raises(StepError, match="all models failed"):
        run_questions_and_answers(
            context_for("questions_and_answers", llm, run=RUNS[0]),
            inputs_from_run("questions_and_answers", RUNS[0]),
        )


def test_merge_renumbers_and_joins_summaries():
    rounds = [QuestionsAndAnswers.model_validate(r) for r in qa_rounds(RUNS[0])]
    assert [p.item_index for p in rounds[1].question_answer_pairs] == [1, 2, 3, 4, 5]
    merged = merge_question_rounds(rounds)
    assert [p.item_index for p in merged.question_answer_pairs] == list(range(1, 11))
    assert merged.summary == recorded_qa(RUNS[0])["summary"]


def test_questions_and_answers_rejects_blank_upstream():
    inputs = replace_upstream(
        inputs_from_run("questions_and_answers", RUNS[0]),
        "pitch_markdown",
        step_file("pitch_markdown", "markdown"),
        "",
    )
    with pytest.raises(StepError, match=step_file("pitch_markdown", "markdown")):
        run_questions_and_answers(
            context_for("questions_and_answers", ReplayLLM(answers=[]), run=RUNS[0]), inputs
        )


# --- premortem step -----------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_premortem_replays_recorded_rounds(run):
    llm = ReplayLLM(answers=premortem_rounds(run))
    result = run_premortem(context_for("premortem", llm, run=run), inputs_from_run("premortem", run))
    result.check_against(STEP_BY_NAME["premortem"])
    assert set(result.files) == set(STEP_BY_NAME["premortem"].outputs.values())
    assert len(llm.calls) == 3
    for number, call in enumerate(llm.calls, start=1):
        roles = [m["role"] for m in call["messages"]]
        assert roles == ["system"] + ["user", "assistant"] * (number - 1) + ["user"]
    assert "A4, A5, A6" in llm.calls[1]["messages"][-1]["content"]
    assert "A7, A8, A9" in llm.calls[2]["messages"][-1]["content"]
    first_user = llm.calls[0]["messages"][1]["content"]
    assert "File 'questions-and-answers.md'" in first_user and "File 'review-plan.md'" in first_user

    raw = json.loads(result.files[step_file("premortem", "raw")])
    recorded = recorded_premortem(run)
    assert raw["assumptions_to_kill"] == recorded["assumptions_to_kill"]
    expected_modes = [
        dict(fm, failure_mode_index=n) for n, fm in enumerate(recorded["failure_modes"], start=1)
    ]
    assert raw["failure_modes"] == expected_modes
    assert len(raw["metadata"]) == 3
    assert not {"failed_rounds", "relabelled_assumptions", "unknown_root_causes"} & set(raw)
    markdown = result.files[step_file("premortem", "markdown")]
    assert_all_strings_in(markdown, recorded)
    assert "### FM9: " in markdown and NOTES_MARKER not in markdown


def test_premortem_fast_mode_runs_one_round():
    run = RUNS[0]
    llm = ReplayLLM(answers=premortem_rounds(run)[:1])
    result = run_premortem(
        context_for("premortem", llm, run=run, fast=True), inputs_from_run("premortem", run)
    )
    assert len(llm.calls) == 1
    raw = json.loads(result.files[step_file("premortem", "raw")])
    assert [a["assumption_id"] for a in raw["assumptions_to_kill"]] == ["A1", "A2", "A3"]
    assert result.notes["rounds_requested"] == 1 and result.notes["rounds_completed"] == 1


def test_premortem_reports_failed_round_and_relabels_the_next():
    run = RUNS[1]
    rounds = premortem_rounds(run)
    llm = ReplayLLM(
        responder=by_label(
            {
                "premortem_1": rounds[0],
                "premortem_2": StepError("premortem: every model failed (a: timeout)"),
                "premortem_3": rounds[2],  # labelled A7..A9 by the model
            }
        )
    )
    result = run_premortem(context_for("premortem", llm, run=run), inputs_from_run("premortem", run))
    assert len(llm.calls) == 3
    # The failed turn is left out of the conversation, and round 3 is asked for the next free ids.
    third = llm.calls[2]["messages"]
    assert len(third) == 1 + 2 + 1 and "A4, A5, A6" in third[-1]["content"]

    raw = json.loads(result.files[step_file("premortem", "raw")])
    assert [a["assumption_id"] for a in raw["assumptions_to_kill"]] == [f"A{n}" for n in range(1, 7)]
    assert [fm["root_cause_assumption_id"] for fm in raw["failure_modes"][3:]] == ["A4", "A5", "A6"]
    assert raw["assumptions_to_kill"][3]["statement"] == rounds[2]["assumptions_to_kill"][0]["statement"]
    assert "Round 2 of 3 failed" in raw["failed_rounds"][0]
    assert len(raw["relabelled_assumptions"]) == 3
    assert result.notes["rounds_completed"] == 2
    markdown = result.files[step_file("premortem", "markdown")]
    # The premortem opens with its text; what went wrong is grouped in the notes at the end.
    body, notes = split_notes(markdown)
    assert body.startswith("A premortem starts") and "Round 2 of 3 failed" not in body
    assert "### Rounds that failed\n\n- Round 2 of 3 failed" in notes
    assert "### Assumption ids renumbered\n\n- Round 3: assumption 'A7' became A4." in notes


def test_premortem_first_round_failure_fails_the_step():
    llm = ReplayLLM(responder=by_label({"premortem_1": StepError("every model failed")}))
    with pytest.raises(StepError):
        run_premortem(context_for("premortem", llm, run=RUNS[0]), inputs_from_run("premortem", RUNS[0]))


def test_premortem_reports_unknown_root_cause_ids(caplog):
    """Offline-style answers: arbitrary labels and a root cause that names no assumption."""
    round_one = premortem_rounds(RUNS[0])[0]
    answer = {
        "assumptions_to_kill": [
            dict(a, assumption_id=f"[offline] x{n}") for n, a in enumerate(round_one["assumptions_to_kill"])
        ],
        "failure_modes": [
            dict(round_one["failure_modes"][0], root_cause_assumption_id="[offline] x1"),
            dict(
                round_one["failure_modes"][1],
                root_cause_assumption_id="A42",
                owner=None,
                likelihood_5=None,
                tripwires=None,
                playbook=None,
                stop_rule=None,
            ),
        ],
    }
    llm = ReplayLLM(answers=[answer])
    result = run_premortem(
        context_for("premortem", llm, run=RUNS[0], fast=True), inputs_from_run("premortem", RUNS[0])
    )
    raw = json.loads(result.files[step_file("premortem", "raw")])
    assert [fm["root_cause_assumption_id"] for fm in raw["failure_modes"]] == ["A2", "A42"]
    assert result.notes["unknown_root_causes"] == [
        "FM2 names root cause 'A42', which is not one of the listed assumptions."
    ]
    markdown = result.files[step_file("premortem", "markdown")]
    assert "A42 (not a listed assumption)" in markdown
    # The diagnostic is the last thing in the document, not its first lines.
    body, notes = split_notes(markdown)
    assert "which is not one of the listed assumptions" not in body
    assert "- FM2 names root cause 'A42', which is not one of the listed assumptions." in notes
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "premortem: root causes that name no listed assumption: "
        "FM2 names root cause 'A42', which is not one of the listed assumptions."
    ]
    assert "Not rated" in markdown and "Unassigned" in markdown and "_None given._" in markdown


def test_premortem_rejects_blank_qa_upstream():
    inputs = replace_upstream(
        inputs_from_run("premortem", RUNS[0]),
        "questions_and_answers",
        step_file("questions_and_answers", "markdown"),
        " ",
    )
    with pytest.raises(StepError, match=step_file("questions_and_answers", "markdown")):
        run_premortem(context_for("premortem", ReplayLLM(answers=[]), run=RUNS[0]), inputs)
