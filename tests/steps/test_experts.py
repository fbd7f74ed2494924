"""expert_review: finder conversation, concurrent consultations, side files and markdown.

Replayed against two recorded PlanExe runs: the finder's two recorded rounds (split by the
``expert_count`` PlanExe stored per round) and the two recorded consultations.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.doc_notes import split_notes
from planexe_assets.steps.experts import (
    CRITICISM_PROMPT,
    FINDER_FOLLOW_UP,
    FINDER_PROMPT,
    MAX_EXPERTS_CONSULTED,
    ConsultationResult,
    ExpertConsultation,
    ProposedExperts,
    render_expert_review,
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
STEP = "expert_review"
MARKDOWN = step_file("expert_review")
EXPERTS_RAW, EXPERTS_CLEAN = step_file("expert_review", "experts_raw"), step_file("expert_review", "experts")
CRITICISM = step_file("expert_review", "criticism_raw")


def _finder_rounds(run: str) -> list[dict]:
    raw = load_run_json(run, EXPERTS_RAW)
    first = raw["metadata"]["result1"]["expert_count"]
    return [{"experts": raw["experts"][:first]}, {"experts": raw["experts"][first:]}]


def _consultations(run: str) -> list[dict]:
    return [load_run_json(run, CRITICISM.format(n)) for n in (1, 2)]


def _responder(run: str, fail: set[str] = frozenset()):
    rounds, consultations = _finder_rounds(run), _consultations(run)

    def respond(messages, response_model, label):
        if label in fail:
            raise StepError(f"every model failed for {label} (scripted)")
        if label == "expert_finder_1":
            return rounds[0]
        if label == "expert_finder_2":
            return rounds[1]
        if label.startswith("expert_criticism_"):
            return consultations[int(label.rsplit("_", 1)[1]) - 1]
        raise AssertionError(f"unexpected call {label}")

    return respond


def _run(run: str, llm, fast: bool = False):
    result = step_function(STEP)(context_for(STEP, llm, run=run, fast=fast), inputs_from_run(STEP, run))
    result.check_against(STEP_BY_NAME[STEP])
    return result


def _rendered_from_recorded(run: str) -> tuple[str, list[str]]:
    """The markdown for the recorded experts and consultations, and every string they hold."""
    experts_raw = load_run_json(run, EXPERTS_RAW)
    experts = load_run_json(run, EXPERTS_CLEAN)
    consultations = [ExpertConsultation.model_validate(c) for c in _consultations(run)]
    results = [
        ConsultationResult(expert=e, consultation=c) for e, c in zip(experts, consultations, strict=False)
    ]
    rounds = [
        experts_raw["metadata"]["result1"]["expert_count"],
        experts_raw["metadata"]["result2"]["expert_count"],
    ]
    markdown = render_expert_review(experts, results, rounds=rounds)
    strings = all_strings(ProposedExperts.model_validate(experts_raw).model_dump(mode="json"))
    strings += all_strings([c.model_dump(mode="json") for c in consultations])
    return markdown, strings


# --- models and renderer --------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_models_parse_recorded_outputs(run):
    experts = ProposedExperts.model_validate(load_run_json(run, EXPERTS_RAW))
    assert len(experts.experts) == 8
    for n in (1, 2):
        consultation = ExpertConsultation.model_validate(load_run_json(run, CRITICISM.format(n)))
        assert consultation.negative_feedback_list and consultation.user_primary_actions
        assert all(item.feedback_problem_tags for item in consultation.negative_feedback_list)


def test_consultation_model_rejects_tags_given_as_one_string():
    raw = load_run_json(RUNS[0], CRITICISM.format(1))
    raw["negative_feedback_list"][0]["feedback_problem_tags"] = "geotechnical"
    with pytest.raises(ValidationError):
        ExpertConsultation.model_validate(raw)


@pytest.mark.parametrize("run", RUNS)
def test_renderer_keeps_every_string(run):
    markdown, strings = _rendered_from_recorded(run)
    assert len(strings) > 60
    normalised = _norm(markdown)
    assert not [s for s in strings if _norm(s) not in normalised]


@pytest.mark.parametrize("run", RUNS)
def test_renderer_states_found_and_consulted_counts(run):
    markdown, _ = _rendered_from_recorded(run)
    assert "proposed **8** experts over 2 rounds (4 + 4)" in markdown
    assert "**2** were consulted" in markdown
    assert "The other 6 are listed at the end and were not consulted." in markdown
    not_consulted = markdown.split("## Experts not consulted", 1)[1]
    for expert in load_run_json(run, EXPERTS_CLEAN)[2:]:
        assert _norm(expert["title"]) in not_consulted


# --- the step -------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_step_replays_recorded_answers(run):
    llm = ReplayLLM(responder=_responder(run))
    result = _run(run, llm)

    assert set(result.files) == {MARKDOWN}
    assert set(result.side_files) == {EXPERTS_RAW, EXPERTS_CLEAN, CRITICISM.format(1), CRITICISM.format(2)}
    labels = [call["label"] for call in llm.calls]
    assert labels[:2] == ["expert_finder_1", "expert_finder_2"]
    assert sorted(labels[2:]) == ["expert_criticism_1", "expert_criticism_2"]
    assert len(llm.calls) == 2 + MAX_EXPERTS_CONSULTED == 4

    # The finder is one conversation: the second turn carries the first answer.
    first, second = llm.calls[0]["messages"], llm.calls[1]["messages"]
    assert [m["role"] for m in first] == ["system", "user"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[:2] == first
    assert json.loads(second[2]["content"]) == _finder_rounds(run)[0]
    assert second[3]["content"] == FINDER_FOLLOW_UP.strip()
    assert first[0]["content"] == FINDER_PROMPT.strip()
    assert load_run_file(run, step_file("swot_analysis", "markdown")).strip() in first[1]["content"]

    recorded = load_run_json(run, EXPERTS_RAW)
    experts_raw = json.loads(result.side_files[EXPERTS_RAW])
    assert experts_raw["experts"] == recorded["experts"]
    assert [experts_raw["metadata"][k]["expert_count"] for k in ("result1", "result2")] == [4, 4]
    assert experts_raw["user_prompt"] == first[1]["content"]

    # Ids are uuid4s made here; everything else matches PlanExe's clean list.
    clean = json.loads(result.side_files[EXPERTS_CLEAN])
    recorded_clean = load_run_json(run, EXPERTS_CLEAN)
    assert [{k: v for k, v in e.items() if k != "id"} for e in clean] == [
        {k: v for k, v in e.items() if k != "id"} for e in recorded_clean
    ]
    assert len({e["id"] for e in clean}) == 8
    assert all(uuid.UUID(e["id"]).version == 4 for e in clean)

    # Each consulted expert gets the same documents and its own profile, in the user message.
    criticism_calls = {call["label"]: call["messages"] for call in llm.calls[2:]}
    for n, expert in enumerate(clean[:2], start=1):
        system, user = (m["content"] for m in criticism_calls[f"expert_criticism_{n}"])
        assert system == CRITICISM_PROMPT.strip()
        assert expert["title"] not in system
        assert f"Title: {expert['title']}" in user
        assert first[1]["content"] in user
        written = json.loads(result.side_files[CRITICISM.format(n)])
        recorded_answer = _consultations(run)[n - 1]
        assert written["negative_feedback_list"] == recorded_answer["negative_feedback_list"]
        assert written["expert_id"] == expert["id"]
        assert {"metadata", "system_prompt", "user_prompt"} <= set(written)

    markdown = result.files[MARKDOWN]
    assert "**8** experts" in markdown and "**2** were consulted" in markdown
    assert result.notes["experts_found"] == 8
    assert result.notes["experts_consulted"] == 2
    assert result.notes["failed_consultations"] == []


class _BarrierLLM:
    """Delegates to a ReplayLLM, but each consultation waits until both are in flight."""

    def __init__(self, inner: ReplayLLM):
        self.inner = inner
        self.barrier = threading.Barrier(MAX_EXPERTS_CONSULTED, timeout=10)

    def structured(self, messages, response_model, *, label=None):
        if label and label.startswith("expert_criticism_"):
            self.barrier.wait()  # raises BrokenBarrierError if the calls ran one after the other
        return self.inner.structured(messages, response_model, label=label)

    def text(self, messages, *, label=None):
        return self.inner.text(messages, label=label)

    @property
    def usage(self):
        return self.inner.usage


def test_consultations_run_concurrently():
    run = RUNS[1]
    result = _run(run, _BarrierLLM(ReplayLLM(responder=_responder(run))))
    assert result.notes["failed_consultations"] == []


def test_fast_mode_changes_nothing():
    run = RUNS[0]
    llm = ReplayLLM(responder=_responder(run))
    result = _run(run, llm, fast=True)
    assert len(llm.calls) == 4
    assert len([n for n in result.side_files if n.startswith("016-1-")]) == MAX_EXPERTS_CONSULTED


# --- failures -------------------------------------------------------------------------------------


def test_a_failed_consultation_is_reported():
    run = RUNS[0]
    llm = ReplayLLM(responder=_responder(run, fail={"expert_criticism_2"}))
    result = _run(run, llm)
    assert CRITICISM.format(1) in result.side_files
    assert CRITICISM.format(2) not in result.side_files
    markdown = result.files[MARKDOWN]
    second_title = json.loads(result.side_files[EXPERTS_CLEAN])[1]["title"]
    assert f"## 2. {second_title} (consultation failed)" in markdown
    body, notes = split_notes(markdown)
    assert "every model failed" not in body and "(the reason is in the notes at the end)" in body
    assert (
        notes
        == f"- Consultation 2 ({second_title}) failed: StepError: every model failed for expert_criticism_2 (scripted)"
    )
    assert "every model failed for expert_criticism_2" in markdown
    assert result.notes["failed_consultations"] == [second_title]


def test_every_consultation_failing_fails_the_step():
    run = RUNS[0]
    llm = ReplayLLM(responder=_responder(run, fail={"expert_criticism_1", "expert_criticism_2"}))
    with pytest.raises(StepError, match="every expert consultation failed"):
        _run(run, llm)


def test_a_failed_second_finder_round_keeps_the_first_rounds_experts():
    run = RUNS[1]
    llm = ReplayLLM(responder=_responder(run, fail={"expert_finder_2"}))
    result = _run(run, llm)
    experts_raw = json.loads(result.side_files[EXPERTS_RAW])
    assert len(experts_raw["experts"]) == 4
    assert "error" in experts_raw["metadata"]["result2"]
    markdown = result.files[MARKDOWN]
    assert "proposed **4** experts over 1 round (4)" in markdown
    assert "second round of the expert search failed" in split_notes(markdown)[1]
    assert result.notes["finder_error"]


def test_the_first_round_must_propose_an_expert():
    """A first round of no experts leaves nobody to consult: its schema asks for at least one (the
    executor repairs a reply that gives none; llama.cpp's grammar cannot write one)."""
    from planexe_assets.steps.experts import FirstRoundExperts, ProposedExperts

    assert FirstRoundExperts.model_json_schema()["properties"]["experts"]["minItems"] == 1
    with pytest.raises(ValidationError, match="at least 1 item"):
        FirstRoundExperts.model_validate({"experts": []})
    assert ProposedExperts.model_validate({"experts": []}).experts == []  # the second round may find none
    run = RUNS[0]
    llm = ReplayLLM(answers=[{"experts": []}])
    with pytest.raises(ValidationError):
        _run(run, llm)
    assert llm.calls[0]["response_model"] is FirstRoundExperts


def test_a_single_expert_is_consulted_alone():
    run = RUNS[0]
    expert = _finder_rounds(run)[0]["experts"][0]
    llm = ReplayLLM(answers=[{"experts": [expert]}, {"experts": []}, _consultations(run)[0]])
    result = _run(run, llm)
    assert len(llm.calls) == 3
    assert set(result.side_files) == {EXPERTS_RAW, EXPERTS_CLEAN, CRITICISM.format(1)}
    assert "proposed **1** expert over 2 rounds (1 + 0). **1** was consulted" in result.files[MARKDOWN]
    assert "Experts not consulted" not in result.files[MARKDOWN]
