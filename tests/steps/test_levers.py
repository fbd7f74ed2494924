"""The lever chain: potential -> deduplicate -> enrich -> vital few -> strategic decisions markdown.

Every step is replayed with the real model answers of two recorded PlanExe runs, and the outputs
are compared with what PlanExe made of those same answers.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from planexe_assets.core import STEP_BY_NAME, FailureKind, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.doc_notes import split_notes
from planexe_assets.steps.levers import (
    FOLLOW_UP_PROMPTS,
    BatchCharacterizationResult,
    DeduplicationAnalysis,
    LeverAssessment,
    LeverProposals,
    VitalLeversAssessmentResult,
    render_strategic_decisions,
    select_vital_levers,
)
from tests.support.replay import ReplayLLM, all_strings, context_for, inputs_from_run, load_run_json
from tests.support.replay import missing_from as _missing

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
POTENTIAL_RAW = step_file("potential_levers", "raw")
POTENTIAL_CLEAN = step_file("potential_levers", "clean")
DEDUP_RAW = step_file("deduplicate_levers", "raw")
ENRICHED_RAW = step_file("enrich_levers", "raw")
VITAL_RAW = step_file("focus_on_vital_few_levers", "raw")
DECISIONS_MD = step_file("strategic_decisions_markdown", "markdown")


def _replace_input(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    by_key = dict(inputs.items())
    old = by_key[key]
    by_key[key] = UpstreamFiles(step=old.step, contents={**old.contents, filename: text})
    return StepInputs(by_key)


def _run(step: str, llm, run: str, inputs: StepInputs | None = None):
    return step_function(step)(context_for(step, llm, run=run), inputs or inputs_from_run(step, run))


class BarrierLLM:
    """Holds every structured call at a barrier: the calls only proceed if all are in flight at once."""

    def __init__(self, inner: ReplayLLM, parties: int):
        self.inner = inner
        self.calls = inner.calls
        self.barrier = threading.Barrier(parties, timeout=10)

    def structured(self, messages, response_model, *, label=None):
        self.barrier.wait()
        return self.inner.structured(messages, response_model, label=label)

    def text(self, messages, *, label=None):
        return self.inner.text(messages, label=label)

    @property
    def usage(self):
        return self.inner.usage


# --- potential_levers ------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_potential_levers_model_parses_every_recorded_turn(run):
    raw = load_run_json(run, POTENTIAL_RAW)
    assert len(raw["responses"]) == 3
    for answer in raw["responses"]:
        details = LeverProposals.model_validate(answer)
        assert len(details.levers) == 5
        assert all(len(lever.options) == 3 for lever in details.levers)


@pytest.mark.parametrize("run", RUNS)
def test_potential_levers_step_holds_a_three_turn_conversation(run):
    raw = load_run_json(run, POTENTIAL_RAW)
    llm = ReplayLLM(answers=list(raw["responses"]))
    result = _run("potential_levers", llm, run)

    result.check_against(STEP_BY_NAME["potential_levers"])
    assert set(result.files) == {POTENTIAL_RAW, POTENTIAL_CLEAN}
    assert len(llm.calls) == 3
    roles = [[m["role"] for m in call["messages"]] for call in llm.calls]
    assert roles == [
        ["system", "user"],
        ["system", "user", "assistant", "user"],
        ["system", "user", "assistant", "user", "assistant", "user"],
    ]
    second, third = llm.calls[1]["messages"], llm.calls[2]["messages"]
    assert json.loads(second[2]["content"])["levers"][0]["name"] == raw["responses"][0]["levers"][0]["name"]
    assert second[3]["content"] == FOLLOW_UP_PROMPTS[0]
    assert json.loads(third[4]["content"])["summary"] == raw["responses"][1]["summary"]
    assert third[5]["content"] == FOLLOW_UP_PROMPTS[1]
    user = llm.calls[0]["messages"][1]["content"]
    assert all(f"File '{name}':" in user for name in ("plan.txt", "purpose.md", "plan_type.md"))

    clean = json.loads(result.files[POTENTIAL_CLEAN])
    recorded = load_run_json(run, POTENTIAL_CLEAN)
    strip_id = [{k: v for k, v in lever.items() if k != "lever_id"} for lever in clean]
    assert strip_id == [{k: v for k, v in lever.items() if k != "lever_id"} for lever in recorded]
    ids = [lever["lever_id"] for lever in clean]
    assert len(set(ids)) == 15
    assert all(uuid.UUID(i).version == 4 for i in ids)
    # Fresh ids every run, never the model's numbering.
    assert not set(ids) & {lever["lever_id"] for lever in recorded}

    written = json.loads(result.files[POTENTIAL_RAW])
    assert written["levers"] == clean
    assert len(written["responses"]) == 3 and len(written["metadata"]) == 3
    assert result.notes == {"lever_count": 15, "levers_per_turn": [5, 5, 5]}


def test_potential_levers_step_fails_when_a_turn_fails():
    run = RUNS[0]
    raw = load_run_json(run, POTENTIAL_RAW)

    def respond(messages, response_model, label):
        if "turn 2" in label:
            raise StepError("potential_levers: every model failed")
        return raw["responses"][0]

    with pytest.raises(StepError, match="every model failed"):
        _run("potential_levers", ReplayLLM(responder=respond), run)


def test_potential_levers_step_notes_a_short_turn():
    run = RUNS[1]
    raw = load_run_json(run, POTENTIAL_RAW)
    short = {**raw["responses"][2], "levers": raw["responses"][2]["levers"][:4]}
    result = _run(
        "potential_levers", ReplayLLM(answers=[raw["responses"][0], raw["responses"][1], short]), run
    )
    assert len(json.loads(result.files[POTENTIAL_CLEAN])) == 14
    assert "[5, 5, 4]" in result.notes["warning"]


# --- deduplicate_levers ----------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_dedup_model_parses_recorded_decisions(run):
    raw = load_run_json(run, DEDUP_RAW)
    analysis = DeduplicationAnalysis.model_validate({"decisions": raw["response"]})
    assert len(analysis.decisions) == 15


@pytest.mark.parametrize("run", RUNS)
def test_dedup_step_keeps_what_planexe_kept(run):
    raw = load_run_json(run, DEDUP_RAW)
    llm = ReplayLLM(answers=[{"decisions": raw["response"]}])
    result = _run("deduplicate_levers", llm, run)

    result.check_against(STEP_BY_NAME["deduplicate_levers"])
    assert set(result.files) == {DEDUP_RAW}
    assert len(llm.calls) == 1
    written = json.loads(result.files[DEDUP_RAW])
    assert written["deduplicated_levers"] == raw["deduplicated_levers"]
    assert len(written["removed_levers"]) == 8
    assert written["undecided_levers"] == [] and written["unknown_decisions"] == []
    assert written["decisions"] == raw["response"]
    user = llm.calls[0]["messages"][1]["content"]
    assert "File 'levers.json':" in user
    assert all(lever["lever_id"] in user for lever in load_run_json(run, POTENTIAL_CLEAN))
    assert result.notes == {"levers_in": 15, "levers_kept": 7, "levers_removed": 8}


def test_dedup_step_reports_undecided_and_unknown_levers():
    run = RUNS[0]
    decisions = load_run_json(run, DEDUP_RAW)["response"]
    undecided = decisions[0]  # an "absorb" decision, now missing
    answer = decisions[1:] + [
        {"lever_id": "[offline] lever-99", "classification": "remove", "justification": "x"}
    ]
    result = _run("deduplicate_levers", ReplayLLM(answers=[{"decisions": answer}]), run)
    written = json.loads(result.files[DEDUP_RAW])

    kept = {lever["lever_id"]: lever for lever in written["deduplicated_levers"]}
    assert undecided["lever_id"] in kept
    assert "no decision" in kept[undecided["lever_id"]]["deduplication_justification"]
    assert [u["lever_id"] for u in written["undecided_levers"]] == [undecided["lever_id"]]
    assert [u["lever_id"] for u in written["unknown_decisions"]] == ["[offline] lever-99"]
    assert result.notes["undecided_levers_kept"] == ["Resource Allocation Strategy"]
    assert result.notes["decisions_for_unknown_ids"] == ["[offline] lever-99"]


def test_dedup_step_fails_when_nothing_survives():
    run = RUNS[1]
    decisions = [{**d, "classification": "remove"} for d in load_run_json(run, DEDUP_RAW)["response"]]
    with pytest.raises(StepError, match="nothing is left") as caught:
        _run("deduplicate_levers", ReplayLLM(answers=[{"decisions": decisions}]), run)
    assert caught.value.kind is FailureKind.CONTENT  # another sample may keep some: the step may retry


def test_dedup_step_rejects_a_broken_lever_list():
    run = RUNS[0]
    inputs = _replace_input(
        inputs_from_run("deduplicate_levers", run), "potential_levers", POTENTIAL_CLEAN, '{"a": 1}'
    )
    llm = ReplayLLM(answers=[])
    with pytest.raises(StepError, match="expected a list of levers") as caught:
        _run("deduplicate_levers", llm, run, inputs)
    assert llm.calls == []
    assert caught.value.kind is FailureKind.PERMANENT  # bad upstream data: retrying this step cannot help


# --- enrich_levers ---------------------------------------------------------------------------------


def _recorded_batches(run: str) -> list[dict]:
    """The recorded characterisations, regrouped into the batches of five the step sends."""
    levers = load_run_json(run, ENRICHED_RAW)["characterized_levers"]
    items = [
        {k: lever[k] for k in ("lever_id", "description", "synergy_text", "conflict_text")}
        for lever in levers
    ]
    return [{"characterizations": items[i : i + 5]} for i in range(0, len(items), 5)]


def _batch_responder(batches: list[dict], fail: set[int] = frozenset()):
    def respond(messages, response_model, label):
        number = int(label.split("batch ", 1)[1].split("/")[0])
        if number in fail:
            raise StepError(f"enrich_levers: every model failed for batch {number}")
        return batches[number - 1]

    return respond


@pytest.mark.parametrize("run", RUNS)
def test_enrich_model_parses_recorded_characterisations(run):
    for batch in _recorded_batches(run):
        BatchCharacterizationResult.model_validate(batch)


@pytest.mark.parametrize("run", RUNS)
def test_enrich_step_runs_batches_concurrently_and_matches_planexe(run):
    batches = _recorded_batches(run)
    assert len(batches) == 2
    llm = BarrierLLM(ReplayLLM(responder=_batch_responder(batches)), parties=2)
    result = _run("enrich_levers", llm, run)

    result.check_against(STEP_BY_NAME["enrich_levers"])
    assert set(result.files) == {ENRICHED_RAW}
    assert len(llm.calls) == 2
    written = json.loads(result.files[ENRICHED_RAW])
    assert written["characterized_levers"] == load_run_json(run, ENRICHED_RAW)["characterized_levers"]
    assert written["uncharacterized_levers"] == [] and written["ignored_characterizations"] == []
    assert [b["status"] for b in written["batches"]] == ["ok", "ok"]
    assert [len(b["lever_ids"]) for b in written["batches"]] == [5, 2]
    assert len(written["metadata"]) == 2
    for call in llm.calls:
        user = call["messages"][1]["content"]
        assert "File 'all_levers.json':" in user and "File 'levers_to_characterize.json':" in user
    assert result.notes == {"batches": 2, "batches_failed": 0, "levers_characterized": 7}


def test_enrich_step_reports_a_failed_batch_and_unknown_ids():
    run = RUNS[0]
    batches = _recorded_batches(run)
    first = batches[0]["characterizations"]
    unknown = {**first[0], "lever_id": "[offline] 12"}
    batches[0] = {"characterizations": [unknown, *first[1:]]}
    result = _run("enrich_levers", ReplayLLM(responder=_batch_responder(batches, fail={2})), run)
    written = json.loads(result.files[ENRICHED_RAW])

    assert len(written["characterized_levers"]) == 4
    reasons = {lever["lever_id"]: lever["reason"] for lever in written["uncharacterized_levers"]}
    assert len(reasons) == 3
    assert "no usable characterisation" in reasons[first[0]["lever_id"]]
    assert sum("batch 2 failed" in r for r in reasons.values()) == 2
    assert written["ignored_characterizations"] == [
        {"batch": 1, "lever_id": "[offline] 12", "problem": "unknown lever_id"}
    ]
    assert [b["status"] for b in written["batches"]] == ["ok", "failed"]
    assert "every model failed for batch 2" in written["batches"][1]["error"]
    assert result.notes["batches_failed"] == 1
    assert len(result.notes["levers_not_characterized"]) == 3


def test_enrich_step_fails_when_every_batch_fails():
    run = RUNS[1]
    with pytest.raises(StepError, match="every batch failed"):
        _run("enrich_levers", ReplayLLM(responder=_batch_responder([], fail={1, 2})), run)


def test_enrich_step_rejects_dedup_json_without_levers():
    run = RUNS[1]
    inputs = _replace_input(
        inputs_from_run("enrich_levers", run), "deduplicate_levers", DEDUP_RAW, '{"response": []}'
    )
    with pytest.raises(StepError, match="deduplicated_levers"):
        _run("enrich_levers", ReplayLLM(answers=[]), run, inputs)


# --- focus_on_vital_few_levers ---------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_vital_model_parses_recorded_assessment(run):
    result = VitalLeversAssessmentResult.model_validate(load_run_json(run, VITAL_RAW)["response"])
    assert len(result.lever_assessments) == 7


@pytest.mark.parametrize("run", RUNS)
def test_vital_step_picks_what_planexe_picked(run):
    raw = load_run_json(run, VITAL_RAW)
    llm = ReplayLLM(answers=[raw["response"]])
    result = _run("focus_on_vital_few_levers", llm, run)

    result.check_against(STEP_BY_NAME["focus_on_vital_few_levers"])
    assert set(result.files) == {VITAL_RAW}
    assert len(llm.calls) == 1
    written = json.loads(result.files[VITAL_RAW])
    assert [lever["lever_id"] for lever in written["levers"]] == [
        lever["lever_id"] for lever in raw["levers"]
    ]
    assert written["lever_assessments"] == raw["response"]["lever_assessments"]
    assert written["summary"] == raw["response"]["summary"]
    assert written["unassessed_levers"] == [] and written["vital_without_assessment"] == []


def test_vital_selection_fills_up_with_unassessed_levers_and_reports_them():
    levers = [{"lever_id": f"id-{n}", "name": f"Lever {n}"} for n in range(7)]
    assessments = [
        LeverAssessment(
            lever_id="ID-3 ", lever_name="Lever 3", strategic_importance="Low", justification="j"
        ),
        LeverAssessment(
            lever_id="id-5", lever_name="Lever 5", strategic_importance="critical", justification="j"
        ),
        LeverAssessment(
            lever_id="ghost", lever_name="Ghost", strategic_importance="Critical", justification="j"
        ),
        LeverAssessment(
            lever_id="id-5", lever_name="Lever 5", strategic_importance="Low", justification="again"
        ),
    ]
    selection = select_vital_levers(levers, assessments, target=5)
    assert [lever["lever_id"] for lever in selection.vital] == ["id-0", "id-1", "id-2", "id-3", "id-5"]
    assert selection.vital_without_assessment == ["id-0", "id-1", "id-2"]
    assert [u["lever_id"] for u in selection.unassessed] == ["id-0", "id-1", "id-2", "id-4", "id-6"]
    assert [a["lever_id"] for a in selection.unknown_assessments] == ["ghost"]
    assert [a["justification"] for a in selection.duplicate_assessments] == ["again"]


def test_vital_step_rejects_enriched_json_without_levers():
    run = RUNS[0]
    inputs = _replace_input(
        inputs_from_run("focus_on_vital_few_levers", run), "enriched_levers", ENRICHED_RAW, "[]"
    )
    with pytest.raises(StepError, match="characterized_levers"):
        _run("focus_on_vital_few_levers", ReplayLLM(answers=[]), run, inputs)


# --- strategic_decisions_markdown ------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_strategic_decisions_from_recorded_planexe_files(run):
    result = _run("strategic_decisions_markdown", ReplayLLM(answers=[]), run)
    result.check_against(STEP_BY_NAME["strategic_decisions_markdown"])
    markdown = result.files[DECISIONS_MD]

    enriched = load_run_json(run, ENRICHED_RAW)["characterized_levers"]
    vital = load_run_json(run, VITAL_RAW)
    shown = [{k: v for k, v in lever.items() if k != "deduplication_justification"} for lever in enriched]
    assert not _missing(all_strings(shown) + all_strings(vital["response"]), markdown)

    primary, secondary = markdown.split("## Secondary Decisions")
    vital_ids = [lever["lever_id"] for lever in vital["levers"]]
    for number, lever_id in enumerate(vital_ids, start=1):
        assert f"`{lever_id}`" in primary
        assert primary.index(f"### Decision {number}:") < primary.index(f"`{lever_id}`")
    others = [lever["lever_id"] for lever in enriched if lever["lever_id"] not in vital_ids]
    assert len(others) == 2 and all(f"`{i}`" in secondary for i in others)
    assert "### Decision 7:" in secondary
    assert result.notes == {"primary_decisions": 5, "secondary_decisions": 2}


def test_strategic_decisions_from_our_own_outputs_with_gaps():
    """Run enrich (one batch failing) and vital few (one unknown id) ourselves, then render."""
    run = RUNS[1]
    enrich = _run(
        "enrich_levers", ReplayLLM(responder=_batch_responder(_recorded_batches(run), fail={2})), run
    )
    assessment = load_run_json(run, VITAL_RAW)["response"]
    ghost = {**assessment["lever_assessments"][0], "lever_id": "[offline] 7", "lever_name": "Ghost lever"}
    answer = {**assessment, "lever_assessments": [*assessment["lever_assessments"], ghost]}
    inputs = _replace_input(
        inputs_from_run("focus_on_vital_few_levers", run),
        "enriched_levers",
        ENRICHED_RAW,
        enrich.files[ENRICHED_RAW],
    )
    vital = _run("focus_on_vital_few_levers", ReplayLLM(answers=[answer]), run, inputs)

    md_inputs = inputs_from_run("strategic_decisions_markdown", run)
    md_inputs = _replace_input(md_inputs, "enriched_levers", ENRICHED_RAW, enrich.files[ENRICHED_RAW])
    md_inputs = _replace_input(md_inputs, "levers_vital_few", VITAL_RAW, vital.files[VITAL_RAW])
    markdown = _run("strategic_decisions_markdown", ReplayLLM(answers=[]), run, md_inputs).files[DECISIONS_MD]

    enriched = json.loads(enrich.files[ENRICHED_RAW])
    for lever in enriched["uncharacterized_levers"]:
        section = markdown[markdown.index(f"`{lever['lever_id']}`") :]
        assert "not described" in section.split("### Decision")[0]
    body, notes = split_notes(markdown)
    assert "### Ratings that matched no lever" in notes and "[offline] 7" in notes
    assert "Ratings that matched no lever" not in body
    assert markdown.count("### Decision ") == 7


def test_strategic_decisions_renderer_marks_unrated_picks():
    lever = {"lever_id": "a", "name": "Funding", "options": ["x", "y"], "description": "d"}
    markdown = render_strategic_decisions([lever], [lever], [], "", vital_without_assessment=["a"])
    assert "not rated by the model; chosen to fill" in markdown
    assert "1. x\n2. y" in markdown
    assert "_No other levers._" in markdown


def test_strategic_decisions_rejects_a_broken_vital_file():
    run = RUNS[0]
    inputs = _replace_input(
        inputs_from_run("strategic_decisions_markdown", run), "levers_vital_few", VITAL_RAW, "{oops"
    )
    with pytest.raises(StepError, match="not valid JSON"):
        _run("strategic_decisions_markdown", ReplayLLM(answers=[]), run, inputs)
