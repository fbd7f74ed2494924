"""The documents branch, replayed against the real model answers of two recorded PlanExe runs."""

from __future__ import annotations

import json
import re
import threading
import uuid

import pytest

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.doc_notes import split_notes
from planexe_assets.steps.documents import (
    DRAFT_ERROR_KEY,
    DRAFT_FIELDS,
    FIND,
    PREFERRED_DOCUMENT_COUNT,
    DocumentDraft,
    DocumentImpact,
    DocumentImpactAssessmentResult,
    IdentifiedDocuments,
    PlanPurpose,
    filter_system_prompt,
    identify_system_prompt,
    render_documents_to_create_and_find,
    render_identified_documents,
    screen_documents,
)
from tests.support.replay import (
    ReplayLLM,
    all_strings,
    context_for,
    inputs_from_run,
    load_run_json,
)
from tests.support.replay import (
    norm as _norm,
)

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
PURPOSE_FILE = step_file("identify_purpose", "raw")

IDENTIFY_RAW = step_file("identify_documents", "raw")
IDENTIFY_MD = step_file("identify_documents", "markdown")
TO_FIND = step_file("identify_documents", "documents_to_find")
TO_CREATE = step_file("identify_documents", "documents_to_create")

# step -> (raw answer, clean list it reads, clean list it writes)
FILTERS = {
    "filter_documents_to_find": (
        step_file("filter_documents_to_find", "raw"),
        TO_FIND,
        step_file("filter_documents_to_find", "clean"),
    ),
    "filter_documents_to_create": (
        step_file("filter_documents_to_create", "raw"),
        TO_CREATE,
        step_file("filter_documents_to_create", "clean"),
    ),
}
# step -> (filtered list it reads, side-file prefix, consolidated output)
DRAFTS = {
    "draft_documents_to_find": (
        step_file("filter_documents_to_find", "clean"),
        "017-11",
        step_file("draft_documents_to_find"),
    ),
    "draft_documents_to_create": (
        step_file("filter_documents_to_create", "clean"),
        "017-13",
        step_file("draft_documents_to_create"),
    ),
}
MARKDOWN_OUT = step_file("documents_to_create_and_find_markdown")


def _missing_strings(value, markdown: str) -> list[str]:
    flat = _norm(markdown)
    return [s for s in all_strings(value) if _norm(s) not in flat]


def _replace(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    """A copy of ``inputs`` with one upstream file's content replaced."""
    by_key = dict(inputs.items())
    upstream = by_key[key]
    by_key[key] = UpstreamFiles(step=upstream.step, contents={**upstream.contents, filename: text})
    return StepInputs(by_key)


def _with_purpose(inputs: StepInputs, purpose: str) -> StepInputs:
    data = json.loads(inputs["identify_purpose"].text("raw"))
    data["purpose"] = purpose
    return _replace(inputs, "identify_purpose", PURPOSE_FILE, json.dumps(data))


def _system(llm: ReplayLLM, call: int = 0) -> str:
    return llm.calls[call]["messages"][0]["content"]


def _user(llm: ReplayLLM, call: int = 0) -> str:
    return llm.calls[call]["messages"][1]["content"]


def _strip_ids(documents: list[dict]) -> list[dict]:
    return [{k: v for k, v in doc.items() if k != "id"} for doc in documents]


# --------------------------------------------------------------------------------------------------
# identify_documents
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_identify_model_parses_recorded_output(run):
    raw = load_run_json(run, IDENTIFY_RAW)
    found = IdentifiedDocuments.model_validate(raw)
    assert len(found.documents_to_create) == len(raw["documents_to_create"]) > 0
    assert len(found.documents_to_find) == len(raw["documents_to_find"]) > 0
    assert found.documents_to_create[0].document_template_secondary is None


@pytest.mark.parametrize("run", RUNS)
def test_identify_renderer_keeps_every_string(run):
    raw = load_run_json(run, IDENTIFY_RAW)
    to_create, to_find = load_run_json(run, TO_CREATE), load_run_json(run, TO_FIND)
    markdown = render_identified_documents(to_create, to_find)
    response = IdentifiedDocuments.model_validate(raw).model_dump(mode="json")
    assert not _missing_strings(response, markdown)
    for doc in (*to_create, *to_find):
        assert doc["id"] in markdown
    assert markdown.count("### Create Document ") == len(to_create)
    assert markdown.count("### Find Document ") == len(to_find)


@pytest.mark.parametrize("run", RUNS)
def test_identify_step_replays_recorded_answer(run):
    raw = load_run_json(run, IDENTIFY_RAW)
    llm = ReplayLLM(answers=[raw])
    ctx = context_for("identify_documents", llm, run=run)
    result = step_function("identify_documents")(ctx, inputs_from_run("identify_documents", run))

    result.check_against(STEP_BY_NAME["identify_documents"])
    assert set(result.files) == {IDENTIFY_RAW, IDENTIFY_MD, TO_FIND, TO_CREATE}
    assert len(llm.calls) == 1
    to_find, to_create = json.loads(result.files[TO_FIND]), json.loads(result.files[TO_CREATE])

    # Same documents as PlanExe's clean lists, with fresh Python-made uuid4 ids, id first.
    assert _strip_ids(to_find) == _strip_ids(load_run_json(run, TO_FIND))
    assert _strip_ids(to_create) == _strip_ids(load_run_json(run, TO_CREATE))
    ids = [doc["id"] for doc in (*to_find, *to_create)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids)
    assert all(next(iter(doc)) == "id" for doc in (*to_find, *to_create))

    written = json.loads(result.files[IDENTIFY_RAW])
    assert written["documents_to_find"] == raw["documents_to_find"]
    assert {"metadata", "system_prompt", "user_prompt"} <= set(written)
    assert result.files[IDENTIFY_MD] == render_identified_documents(to_create, to_find)
    assert "File 'expert-review.md':" in _user(llm)
    assert _system(llm) == identify_system_prompt(PlanPurpose.BUSINESS)
    assert result.notes["purpose"] == "business"


def test_identify_joins_second_pass_lists():
    run = RUNS[1]
    raw = load_run_json(run, IDENTIFY_RAW)
    raw["documents_to_create_part2"] = raw["documents_to_create"][:1]
    raw["documents_to_find_part2"] = raw["documents_to_find"][:2]
    llm = ReplayLLM(answers=[raw])
    result = step_function("identify_documents")(
        context_for("identify_documents", llm, run=run), inputs_from_run("identify_documents", run)
    )
    to_create, to_find = json.loads(result.files[TO_CREATE]), json.loads(result.files[TO_FIND])
    assert len(to_create) == len(raw["documents_to_create"]) + 1
    assert len(to_find) == len(raw["documents_to_find"]) + 2
    assert to_find[-1]["document_name"] == raw["documents_to_find"][1]["document_name"]
    assert to_find[-1]["id"] != to_find[1]["id"]  # a repeated document still gets its own id
    assert result.notes["from_second_pass"] == 3


@pytest.mark.parametrize("purpose", ["personal", "other", "Personal"])
def test_identify_prompt_variant_follows_purpose(purpose):
    run = RUNS[0]
    llm = ReplayLLM(answers=[load_run_json(run, IDENTIFY_RAW)])
    inputs = _with_purpose(inputs_from_run("identify_documents", run), purpose)
    step_function("identify_documents")(context_for("identify_documents", llm, run=run), inputs)
    expected = identify_system_prompt(PlanPurpose(purpose.lower()))
    assert _system(llm) == expected
    assert expected != identify_system_prompt(PlanPurpose.BUSINESS)


@pytest.mark.parametrize("bad", ['{"purpose": "hobby"}', '{"topic": "x"}', "[1, 2]", "not json"])
def test_identify_rejects_bad_purpose(bad):
    run = RUNS[0]
    llm = ReplayLLM(answers=[load_run_json(run, IDENTIFY_RAW)])
    inputs = _replace(inputs_from_run("identify_documents", run), "identify_purpose", PURPOSE_FILE, bad)
    with pytest.raises(StepError):
        step_function("identify_documents")(context_for("identify_documents", llm, run=run), inputs)
    assert llm.calls == []


# --------------------------------------------------------------------------------------------------
# filter_documents_to_find / filter_documents_to_create
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("name", FILTERS)
def test_filter_model_parses_recorded_output(run, name):
    raw = load_run_json(run, FILTERS[name][0])
    result = DocumentImpactAssessmentResult.model_validate(raw)
    assert [d.id for d in result.document_list] == [d["id"] for d in raw["document_list"]]
    assert result.summary == raw["summary"]


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("name", FILTERS)
def test_filter_step_reproduces_recorded_selection(run, name):
    raw_name, source, clean_name = FILTERS[name]
    raw = load_run_json(run, raw_name)
    llm = ReplayLLM(answers=[raw])
    result = step_function(name)(context_for(name, llm, run=run), inputs_from_run(name, run))

    result.check_against(STEP_BY_NAME[name])
    assert set(result.files) == {raw_name, clean_name}
    assert len(llm.calls) == 1
    # Same kept subset, same order, same document dicts as PlanExe wrote.
    assert json.loads(result.files[clean_name]) == load_run_json(run, clean_name)

    documents = load_run_json(run, source)
    written = json.loads(result.files[raw_name])
    assert written["document_list"] == raw["document_list"]
    assert written["document_ids"] == [d["id"] for d in documents]
    assert written["selection"]["unknown_ids"] == []
    assert {"metadata", "system_prompt", "user_prompt"} <= set(written)

    # The model sees integers 0..n-1 and names/descriptions, never the uuids.
    user = _user(llm)
    block = user.split("File 'documents.json':\n", 1)[1].split("\n\n", 1)[0]
    sent = json.loads(block)
    assert [d["id"] for d in sent] == list(range(len(documents)))
    assert [d["document_name"] for d in sent] == [d["document_name"] for d in documents]
    assert not any(d["id"] in user for d in documents)
    assert "File 'project-plan.md':" in user


def test_filter_reports_invented_duplicate_and_missing_ids():
    run, name = RUNS[0], "filter_documents_to_find"
    documents = load_run_json(run, TO_FIND)
    answer = {
        "document_list": [
            {"id": 2, "rationale": "gates the site choice", "impact_rating": "Critical"},
            {"id": 2, "rationale": "again", "impact_rating": "Low"},
            {"id": 99, "rationale": "an id the model made up", "impact_rating": "Critical"},
            {"id": -1, "rationale": "another", "impact_rating": "High"},
            {"id": 4, "rationale": "useful", "impact_rating": "medium"},
        ],
        "summary": "partial answer",
    }
    llm = ReplayLLM(answers=[answer])
    result = step_function(name)(context_for(name, llm, run=run), inputs_from_run(name, run))

    raw = json.loads(result.files[step_file("filter_documents_to_find", "raw")])
    selection = raw["selection"]
    assert selection["unknown_ids"] == [99, -1]
    assert selection["duplicate_ids"] == [2]
    unrated = [d["id"] for i, d in enumerate(documents) if i not in (2, 4)]
    assert selection["unrated_ids"] == unrated
    assert result.notes["unknown_ids"] == [99, -1]
    assert result.notes["unrated"] == len(unrated)
    # Critical (2), then Medium (4), then the unrated bucket fills up to the preferred count.
    kept = json.loads(result.files[step_file("filter_documents_to_find", "clean")])
    assert [d["id"] for d in kept] == [d["id"] for d in documents]
    assert selection["kept_ids"] == [d["id"] for d in kept]


def test_screen_keeps_whole_buckets_until_preferred_count():
    def result(ratings):
        return DocumentImpactAssessmentResult(
            document_list=[{"id": i, "rationale": "r", "impact_rating": r} for i, r in enumerate(ratings)],
            summary="s",
        )

    assert PREFERRED_DOCUMENT_COUNT == 5
    six_critical = screen_documents(7, result(["Critical"] * 6 + ["High"]))
    assert six_critical.kept_indexes == [0, 1, 2, 3, 4, 5]
    mixed = screen_documents(7, result(["Low", "High", "Critical", "Medium", "High", "Medium", "Low"]))
    assert mixed.kept_indexes == [1, 2, 3, 4, 5]  # 1 Critical + 2 High < 5, so all Medium join
    few = screen_documents(3, result(["Low", "Low", "High"]))
    assert few.kept_indexes == [0, 1, 2]
    assert screen_documents(0, result([])).kept_indexes == []
    assert screen_documents(2, result([])).unrated_indexes == [0, 1]


def test_filter_prompt_variants_differ_by_purpose():
    prompts = {filter_system_prompt(p, FIND) for p in PlanPurpose}
    assert len(prompts) == 3
    run, name = RUNS[1], "filter_documents_to_create"
    llm = ReplayLLM(answers=[load_run_json(run, FILTERS[name][0])])
    inputs = _with_purpose(inputs_from_run(name, run), "personal")
    step_function(name)(context_for(name, llm, run=run), inputs)
    assert "personal project" in _system(llm)


def test_filter_with_no_documents_makes_no_call():
    run, name = RUNS[0], "filter_documents_to_create"
    inputs = _replace(inputs_from_run(name, run), "identified_documents", TO_CREATE, "[]")
    llm = ReplayLLM(answers=[])
    result = step_function(name)(context_for(name, llm, run=run), inputs)
    result.check_against(STEP_BY_NAME[name])
    assert llm.calls == []
    assert json.loads(result.files[step_file("filter_documents_to_create", "clean")]) == []
    assert json.loads(result.files[step_file("filter_documents_to_create", "raw")])["metadata"] == {
        "llm_calls": 0
    }


@pytest.mark.parametrize("bad", ['{"documents": []}', '["just a name"]', '[{"document_name": "no id"}]', "{"])
def test_filter_rejects_bad_upstream(bad):
    run, name = RUNS[0], "filter_documents_to_find"
    inputs = _replace(inputs_from_run(name, run), "identified_documents", TO_FIND, bad)
    llm = ReplayLLM(answers=[load_run_json(run, FILTERS[name][0])])
    with pytest.raises(StepError):
        step_function(name)(context_for(name, llm, run=run), inputs)
    assert llm.calls == []


# --------------------------------------------------------------------------------------------------
# draft_documents_to_find / draft_documents_to_create
# --------------------------------------------------------------------------------------------------

_UUID = re.compile(r'"id":"([0-9a-f-]{36})"')


def _recorded_drafts(run: str, name: str) -> dict[str, dict]:
    """document id -> the real model's draft for it, from the recorded per-document raw files."""
    source, prefix, _ = DRAFTS[name]
    documents = load_run_json(run, source)
    suffix = name + "_raw.json"
    return {
        doc["id"]: load_run_json(run, f"{prefix}-{i}-{suffix}") for i, doc in enumerate(documents, start=1)
    }


def _responder(drafts: dict[str, dict], fail_ids: frozenset[str] = frozenset()):
    """Answers each concurrent call with the recorded draft of the document named in its document.json."""

    def respond(messages, response_model, label):
        block = messages[1]["content"].split("File 'document.json':\n", 1)[1].split("\n", 1)[0]
        doc_id = _UUID.search(block).group(1)
        if doc_id in fail_ids:
            raise StepError(f"all models failed for {doc_id}")
        return drafts[doc_id]

    return respond


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("name", DRAFTS)
def test_draft_model_parses_recorded_outputs(run, name):
    for draft in _recorded_drafts(run, name).values():
        parsed = DocumentDraft.model_validate(draft)
        assert parsed.essential_information and parsed.worst_case_scenario


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("name", DRAFTS)
def test_draft_step_reproduces_recorded_consolidation(run, name):
    source, prefix, consolidated_name = DRAFTS[name]
    documents = load_run_json(run, source)
    llm = ReplayLLM(responder=_responder(_recorded_drafts(run, name)))
    result = step_function(name)(context_for(name, llm, run=run), inputs_from_run(name, run))

    result.check_against(STEP_BY_NAME[name])
    assert set(result.files) == {consolidated_name}
    assert len(llm.calls) == len(documents)
    assert sorted(c["label"] for c in llm.calls) == sorted(
        f"{name}:{i}" for i in range(1, len(documents) + 1)
    )
    assert json.loads(result.files[consolidated_name]) == load_run_json(run, consolidated_name)
    expected_side = {f"{prefix}-{i}-{name}_raw.json" for i in range(1, len(documents) + 1)}
    assert set(result.side_files) == expected_side
    first = json.loads(result.side_files[f"{prefix}-1-{name}_raw.json"])
    assert first["document_id"] == documents[0]["id"]
    assert set(DRAFT_FIELDS) | {"metadata", "system_prompt", "user_prompt"} <= set(first)
    assert "File 'document.json':" in first["user_prompt"]
    assert result.notes["failed"] == []


@pytest.mark.parametrize("name", DRAFTS)
def test_draft_fast_mode_drafts_first_two_and_keeps_the_rest(name):
    run = RUNS[1]
    source, prefix, consolidated_name = DRAFTS[name]
    documents = load_run_json(run, source)
    assert len(documents) > 2
    llm = ReplayLLM(responder=_responder(_recorded_drafts(run, name)))
    result = step_function(name)(context_for(name, llm, run=run, fast=True), inputs_from_run(name, run))

    assert len(llm.calls) == 2
    consolidated = json.loads(result.files[consolidated_name])
    recorded = load_run_json(run, consolidated_name)
    assert consolidated[:2] == recorded[:2]
    assert consolidated[2:] == documents[2:]  # undrafted, unchanged
    assert set(result.side_files) == {f"{prefix}-1-{name}_raw.json", f"{prefix}-2-{name}_raw.json"}
    assert result.notes["skipped_fast_mode"] == len(documents) - 2


class _BarrierLLM:
    """Delegates to a ReplayLLM, but holds the first two calls until both are in flight at once."""

    def __init__(self, inner: ReplayLLM, labels: set[str]):
        self.inner = inner
        self.labels = labels
        self.barrier = threading.Barrier(len(labels), timeout=10)

    def structured(self, messages, response_model, *, label=None):
        if label in self.labels:
            self.barrier.wait()  # raises BrokenBarrierError if the calls ran one after the other
        return self.inner.structured(messages, response_model, label=label)

    def text(self, messages, *, label=None):
        return self.inner.text(messages, label=label)

    @property
    def usage(self):
        return self.inner.usage


def test_draft_runs_concurrently():
    run, name = RUNS[1], "draft_documents_to_create"
    inner = ReplayLLM(responder=_responder(_recorded_drafts(run, name)))
    llm = _BarrierLLM(inner, {f"{name}:1", f"{name}:2"})
    result = step_function(name)(context_for(name, llm, run=run, fast=True), inputs_from_run(name, run))
    assert result.notes["drafted"] == 2
    assert result.notes["failed"] == []


@pytest.mark.parametrize("name", DRAFTS)
def test_draft_failure_is_reported_not_dropped(name):
    run = RUNS[0]
    source, prefix, consolidated_name = DRAFTS[name]
    documents = load_run_json(run, source)
    failing = documents[1]["id"]
    llm = ReplayLLM(responder=_responder(_recorded_drafts(run, name), frozenset({failing})))
    result = step_function(name)(context_for(name, llm, run=run), inputs_from_run(name, run))

    consolidated = json.loads(result.files[consolidated_name])
    assert len(consolidated) == len(documents)
    assert consolidated[1]["id"] == failing
    assert "all models failed" in consolidated[1][DRAFT_ERROR_KEY]
    assert not any(field in consolidated[1] for field in DRAFT_FIELDS)
    assert all(DRAFT_ERROR_KEY not in doc for i, doc in enumerate(consolidated) if i != 1)
    assert f"{prefix}-2-{name}_raw.json" not in result.side_files
    assert len(result.side_files) == len(documents) - 1
    assert result.notes["failed"][0]["id"] == failing
    markdown = (
        render_documents_to_create_and_find(consolidated, [])
        if "create" in name
        else render_documents_to_create_and_find([], consolidated)
    )
    body, notes = split_notes(markdown)
    assert "Drafting failed" in body and "all models failed" not in body
    assert "drafting failed: " in notes and "all models failed" in notes


def test_draft_all_failing_raises():
    run, name = RUNS[0], "draft_documents_to_find"
    documents = load_run_json(run, DRAFTS[name][0])
    llm = ReplayLLM(responder=_responder({}, frozenset(d["id"] for d in documents)))
    with pytest.raises(StepError, match="every document draft failed"):
        step_function(name)(context_for(name, llm, run=run), inputs_from_run(name, run))


def test_draft_rejects_bad_upstream():
    run, name = RUNS[0], "draft_documents_to_create"
    inputs = _replace(
        inputs_from_run(name, run), "filter_documents_to_create", DRAFTS[name][0], '{"oops": 1}'
    )
    with pytest.raises(StepError, match="JSON list"):
        step_function(name)(context_for(name, ReplayLLM(answers=[]), run=run), inputs)


# --------------------------------------------------------------------------------------------------
# documents_to_create_and_find_markdown
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_markdown_step_renders_every_string(run):
    name = "documents_to_create_and_find_markdown"
    result = step_function(name)(
        context_for(name, ReplayLLM(answers=[]), run=run), inputs_from_run(name, run)
    )
    result.check_against(STEP_BY_NAME[name])
    markdown = result.files[MARKDOWN_OUT]
    to_create = load_run_json(run, DRAFTS["draft_documents_to_create"][2])
    to_find = load_run_json(run, DRAFTS["draft_documents_to_find"][2])
    assert not _missing_strings([to_create, to_find], markdown)
    assert markdown.count("## Create Document ") == len(to_create)
    assert markdown.count("## Find Document ") == len(to_find)
    assert markdown.index("# Documents to Create") < markdown.index("# Documents to Find")
    assert "Not drafted" not in markdown
    assert result.notes == {
        "documents_to_create": len(to_create),
        "documents_to_find": len(to_find),
        "failed_drafts": 0,
        "undrafted": 0,
    }


def test_markdown_shows_undrafted_documents_and_extra_fields():
    run = RUNS[0]
    documents = load_run_json(run, step_file("filter_documents_to_find", "clean"))
    undrafted = dict(documents[0])
    extra = {**documents[1], "impact_note": "kept by hand", "document_template_primary": None}
    markdown = render_documents_to_create_and_find([], [undrafted, extra])
    assert "Not drafted" in markdown
    assert "**Impact Note:** kept by hand" in markdown
    assert not _missing_strings([undrafted, extra], markdown)
    assert "_No documents._" in markdown


def test_markdown_step_rejects_bad_upstream():
    run, name = RUNS[1], "documents_to_create_and_find_markdown"
    inputs = _replace(
        inputs_from_run(name, run), "draft_documents_to_find", DRAFTS["draft_documents_to_find"][2], "[42]"
    )
    with pytest.raises(StepError, match="not an object"):
        step_function(name)(context_for(name, ReplayLLM(answers=[]), run=run), inputs)


def test_impact_enum_matches_reference():
    assert [level.value for level in DocumentImpact] == ["Critical", "High", "Medium", "Low"]
