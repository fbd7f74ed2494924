"""make/distill/review assumptions and the consolidation against the recorded real PlanExe runs."""

from __future__ import annotations

import json
import threading

import pytest
from pydantic import BaseModel

from planexe_assets.core import (
    STEP_BY_NAME,
    PipelineStopRequested,
    StepError,
    StepInputs,
    UpstreamFiles,
    step_file,
)
from planexe_assets.steps.assumptions import (
    CONSOLIDATED_SECTIONS,
    AssumptionReview,
    DistilledAssumptions,
    MadeAssumptions,
    extract_shortened,
    render_distill_assumptions,
    render_make_assumptions,
    render_review_assumptions,
    run_consolidate_assumptions_markdown,
    run_distill_assumptions,
    run_make_assumptions,
    run_review_assumptions,
    shortening_budget,
)
from planexe_assets.steps.doc_notes import NOTES_MARKER, split_notes
from tests.support.replay import (
    ReplayLLM,
    all_strings,
    context_for,
    inputs_from_run,
    load_run_file,
    load_run_json,
    norm,
)

RUNS = ["20250321_silo", "20260310_hong_kong_game"]

# step -> (recorded raw file, response model, renderer, step function)
STEPS = {
    "make_assumptions": (
        step_file("make_assumptions", "raw"),
        MadeAssumptions,
        render_make_assumptions,
        run_make_assumptions,
    ),
    "distill_assumptions": (
        step_file("distill_assumptions", "raw"),
        DistilledAssumptions,
        render_distill_assumptions,
        run_distill_assumptions,
    ),
    "review_assumptions": (
        step_file("review_assumptions", "raw"),
        AssumptionReview,
        render_review_assumptions,
        run_review_assumptions,
    ),
}

# The upstream markdown behind each consolidated section, by section title.
SECTION_FILES = {
    "Purpose": step_file("identify_purpose", "markdown"),
    "Plan Type": step_file("plan_type", "markdown"),
    "Physical Locations": step_file("physical_locations", "markdown"),
    "Currency Strategy": step_file("currency_strategy", "markdown"),
    "Identify Risks": step_file("identify_risks", "markdown"),
    "Make Assumptions": step_file("make_assumptions", "markdown"),
    "Distill Assumptions": step_file("distill_assumptions", "markdown"),
    "Review Assumptions": step_file("review_assumptions", "markdown"),
}


def recorded_answer(run: str, step: str) -> dict:
    raw = load_run_json(run, STEPS[step][0])
    return {k: v for k, v in raw.items() if k not in ("metadata", "system_prompt", "user_prompt")}


def with_file(inputs: StepInputs, key: str, filename: str, text: str | None) -> StepInputs:
    """A copy of ``inputs`` with one upstream file replaced (or removed when ``text`` is None)."""
    by_key = {k: inputs[k] for k in inputs}
    contents = dict(by_key[key].contents)
    if text is None:
        contents.pop(filename, None)
    else:
        contents[filename] = text
    by_key[key] = UpstreamFiles(step=by_key[key].step, contents=contents)
    return StepInputs(by_key)


def recorded_short_sections(run: str) -> dict[str, str]:
    """The recorded shortened text of each section, cut out of PlanExe's short file."""
    lines = load_run_file(run, step_file("consolidate_assumptions_markdown", "short")).splitlines()
    titles = [s.title for s in CONSOLIDATED_SECTIONS]
    starts = []
    search_from = 0
    for title in titles:
        index = lines.index(f"# {title}", search_from)
        starts.append(index)
        search_from = index + 1
    sections = {}
    for n, title in enumerate(titles):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        sections[title] = "\n".join(lines[starts[n] + 1 : end]).strip()
    return sections


def section_of(messages) -> str:
    """Which consolidated section a shortening call is about, from the bundle's file name."""
    user = messages[-1]["content"]
    for section in CONSOLIDATED_SECTIONS:
        if user.startswith(f"File '{section.pseudo_name}':"):
            return section.title
    raise AssertionError(f"unknown shortening request: {user[:80]!r}")


def replay_shortenings(run: str) -> ReplayLLM:
    """Answers each shortening call with the real model's recorded reply for that section."""
    recorded = recorded_short_sections(run)

    def responder(messages, response_model, label):
        assert response_model is None
        text = recorded[section_of(messages)]
        # PlanExe stored the text between the markers; one recorded reply was cut off after the start marker.
        return text if "[START_MARKDOWN]" in text else f"[START_MARKDOWN]\n{text}\n[END_MARKDOWN]"

    return ReplayLLM(responder=responder)


# ---------------------------------------------------------------------------------------------------
# Response models and renderers against both recorded runs
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_response_model_parses_recorded_output(run: str, step: str) -> None:
    model: type[BaseModel] = STEPS[step][1]
    value = model.model_validate(recorded_answer(run, step))
    assert value.model_dump(mode="json") == recorded_answer(run, step)


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_renderer_keeps_every_string(run: str, step: str) -> None:
    _, model, render, _ = STEPS[step]
    value = model.model_validate(recorded_answer(run, step))
    markdown = norm(render(value))
    missing = [s for s in all_strings(value.model_dump(mode="json")) if norm(s) not in markdown]
    assert missing == []


def test_review_renderer_marks_missing_sensitivity() -> None:
    answer = recorded_answer("20250321_silo", "review_assumptions")
    answer["issues"][0].pop("sensitivity")
    markdown = render_review_assumptions(AssumptionReview.model_validate(answer))
    assert "**Sensitivity:** _not quantified_" in markdown


# ---------------------------------------------------------------------------------------------------
# make / distill / review, replaying the recorded real answers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_step_replays_recorded_answer(run: str, step: str) -> None:
    _, model, render, fn = STEPS[step]
    llm = ReplayLLM(answers=[recorded_answer(run, step)])
    result = fn(context_for(step, llm, run=run), inputs_from_run(step, run))

    result.check_against(STEP_BY_NAME[step])
    assert len(llm.calls) == 1
    outputs = STEP_BY_NAME[step].outputs
    raw = json.loads(result.files[outputs["raw"]])
    assert set(raw) >= {"metadata", "system_prompt", "user_prompt"}
    value = model.model_validate({k: v for k, v in raw.items() if k in model.model_fields})
    assert value.model_dump(mode="json") == recorded_answer(run, step)
    assert result.files[outputs["markdown"]] == render(value)

    system, user = llm.calls[0]["messages"]
    plan = load_run_file(run, step_file("setup")).strip()
    assert plan in user["content"] and plan not in system["content"]
    assert raw["system_prompt"] == system["content"] and raw["user_prompt"] == user["content"]


@pytest.mark.parametrize("run", RUNS)
def test_make_assumptions_clean_file_matches_planexe(run: str) -> None:
    llm = ReplayLLM(answers=[recorded_answer(run, "make_assumptions")])
    result = run_make_assumptions(
        context_for("make_assumptions", llm, run=run), inputs_from_run("make_assumptions", run)
    )
    assert json.loads(result.files[step_file("make_assumptions", "clean")]) == load_run_json(
        run, step_file("make_assumptions", "clean")
    )
    user = llm.calls[0]["messages"][1]["content"]
    for name in (
        step_file("physical_locations", "markdown"),
        step_file("currency_strategy", "markdown"),
        step_file("identify_risks", "markdown"),
    ):
        assert load_run_file(run, name).strip() in user


@pytest.mark.parametrize("step", ["make_assumptions", "distill_assumptions"])
def test_current_year_is_in_the_system_prompt(step: str) -> None:
    llm = ReplayLLM(answers=[recorded_answer("20250321_silo", step)])
    STEPS[step][3](context_for(step, llm, run="20250321_silo"), inputs_from_run(step, "20250321_silo"))
    system = llm.calls[0]["messages"][0]["content"]
    assert "2026" in system and "{current_year}" not in system


def test_distill_reads_the_clean_assumptions_compactly() -> None:
    run = "20260310_hong_kong_game"
    llm = ReplayLLM(answers=[recorded_answer(run, "distill_assumptions")])
    run_distill_assumptions(
        context_for("distill_assumptions", llm, run=run), inputs_from_run("distill_assumptions", run)
    )
    user = llm.calls[0]["messages"][1]["content"]
    clean = load_run_json(run, step_file("make_assumptions", "clean"))
    assert "File 'assumptions.json':\n" + json.dumps(clean, separators=(",", ":"), ensure_ascii=False) in user


def test_distill_reads_our_own_make_assumptions_output() -> None:
    run = "20250321_silo"
    made = run_make_assumptions(
        context_for(
            "make_assumptions", ReplayLLM(answers=[recorded_answer(run, "make_assumptions")]), run=run
        ),
        inputs_from_run("make_assumptions", run),
    )
    inputs = inputs_from_run("distill_assumptions", run)
    for name, text in made.files.items():
        inputs = with_file(inputs, "make_assumptions", name, text)
    llm = ReplayLLM(answers=[recorded_answer(run, "distill_assumptions")])
    result = run_distill_assumptions(context_for("distill_assumptions", llm, run=run), inputs)
    assert result.notes["assumptions_in"] == 8


@pytest.mark.parametrize(
    "clean", ["{broken", json.dumps({"question": "q"}), json.dumps([]), json.dumps([{"question": "q"}])]
)
def test_distill_rejects_bad_clean_assumptions(clean: str) -> None:
    inputs = with_file(
        inputs_from_run("distill_assumptions", "20250321_silo"),
        "make_assumptions",
        step_file("make_assumptions", "clean"),
        clean,
    )
    llm = ReplayLLM(answers=[])
    with pytest.raises(StepError, match=step_file("make_assumptions", "clean")):
        run_distill_assumptions(context_for("distill_assumptions", llm, run="20250321_silo"), inputs)
    assert llm.calls == []


def test_review_includes_the_plan_and_all_nine_documents() -> None:
    run = "20260310_hong_kong_game"
    llm = ReplayLLM(answers=[recorded_answer(run, "review_assumptions")])
    run_review_assumptions(
        context_for("review_assumptions", llm, run=run), inputs_from_run("review_assumptions", run)
    )
    user = llm.calls[0]["messages"][1]["content"]
    assert user.startswith("File 'plan.txt':\n" + load_run_file(run, step_file("setup")).strip())
    for name in (
        step_file("identify_purpose", "markdown"),
        step_file("plan_type", "markdown"),
        step_file("strategic_decisions_markdown", "markdown"),
        step_file("scenarios_markdown", "markdown"),
        *SECTION_FILES.values(),
    ):
        if name != step_file("review_assumptions", "markdown"):
            assert load_run_file(run, name).strip() in user


def test_review_reports_a_missing_document() -> None:
    run = "20250321_silo"
    inputs = with_file(
        inputs_from_run("review_assumptions", run),
        "currency_strategy",
        step_file("currency_strategy", "markdown"),
        None,
    )
    llm = ReplayLLM(answers=[recorded_answer(run, "review_assumptions")])
    result = run_review_assumptions(context_for("review_assumptions", llm, run=run), inputs)
    user = llm.calls[0]["messages"][1]["content"]
    assert "Problem with document 'Currency Strategy'" in user
    raw = json.loads(result.files[step_file("review_assumptions", "raw")])
    assert list(raw["missing_documents"]) == ["Currency Strategy"]
    notes = split_notes(result.files[step_file("review_assumptions", "markdown")])[1]
    assert notes.startswith("### Documents missing from this review\n\n- Currency Strategy: ")
    assert result.notes["missing_documents"] == ["Currency Strategy"]


def test_review_needs_the_plan_prompt() -> None:
    llm = ReplayLLM(answers=[])
    ctx = context_for("review_assumptions", llm)  # no run, no prompt
    with pytest.raises(StepError, match="plan prompt"):
        run_review_assumptions(ctx, inputs_from_run("review_assumptions", "20250321_silo"))
    assert llm.calls == []


# ---------------------------------------------------------------------------------------------------
# consolidate_assumptions_markdown
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("fast", [False, True])
def test_consolidate_replays_recorded_shortenings(run: str, fast: bool) -> None:
    llm = replay_shortenings(run)
    step = "consolidate_assumptions_markdown"
    result = run_consolidate_assumptions_markdown(
        context_for(step, llm, run=run, fast=fast), inputs_from_run(step, run)
    )

    result.check_against(STEP_BY_NAME[step])
    assert len(llm.calls) == 8  # speed-vs-detail has no effect on this step
    assert sorted(call["label"] for call in llm.calls) == sorted(
        f"shorten:{s.key}" for s in CONSOLIDATED_SECTIONS
    )
    full = result.files[step_file("consolidate_assumptions_markdown", "full")]
    short = result.files[step_file("consolidate_assumptions_markdown", "short")]
    titles = [s.title for s in CONSOLIDATED_SECTIONS]
    assert [line[2:] for line in full.splitlines() if line.startswith("# ")] == titles
    assert [line[2:] for line in short.splitlines() if line.startswith("# ")] == titles
    for title, name in SECTION_FILES.items():
        assert f"# {title}\n\n{load_run_file(run, name).strip()}" in full
    recorded = recorded_short_sections(run)
    cut_off = [title for title, text in recorded.items() if "[START_MARKDOWN]" in text]
    for title, text in recorded.items():
        if title in cut_off:
            # The real reply stopped after the start marker: the full text is kept, the notes say so.
            original = load_run_file(run, SECTION_FILES[title]).strip()
            assert f"# {title}\n\n{original}" in short
            notes = short[short.index(NOTES_MARKER) :]
            assert f"- {title}: the shortened reply ended without its end marker" in notes
        else:
            expected = extract_shortened(f"[START_MARKDOWN]{text}[END_MARKDOWN]")
            assert f"# {title}\n\n{expected.markdown}" in short
    assert "[START_MARKDOWN]" not in short
    assert result.notes["failed_sections"] == {}
    assert result.notes["unterminated_replies"] == cut_off
    assert result.notes["shortened"] == 8 - len(cut_off)
    # Each reply is bounded by its section's length: a reply that reaches the bound shortened nothing.
    sections = {f"shorten:{s.key}": s.title for s in CONSOLIDATED_SECTIONS}
    for call in llm.calls:
        title = sections[call["label"]]
        original = load_run_file(run, SECTION_FILES[title]).strip()
        assert call["max_tokens"] == shortening_budget(original) >= 512
        # The real models' replies fit their bounds (at 4 characters a token), even the one that
        # made the 150-character purpose ten times longer.
        assert len(recorded[title]) // 4 < call["max_tokens"]
    # Each call sees one section as data and the same instruction.
    for call in llm.calls:
        system, user = call["messages"]
        assert system["content"] == llm.calls[0]["messages"][0]["content"]
        assert user["content"].count("File '") == 1
    if run == "20260310_hong_kong_game":
        # The real model's reply for this section stopped after the start marker.
        assert cut_off == ["Physical Locations"]
    else:
        assert cut_off == [] and "**" not in short


def test_consolidate_runs_the_shortenings_concurrently() -> None:
    """All eight calls must be in flight together: a barrier of 8 only opens if they are."""
    inner = replay_shortenings("20250321_silo")
    barrier = threading.Barrier(8, timeout=10)

    class ConcurrentProbe:
        def text(self, messages, *, label=None, max_tokens=None):
            barrier.wait()
            return inner.text(messages, label=label, max_tokens=max_tokens)

        def structured(self, messages, response_model, *, label=None):
            raise AssertionError("consolidation makes free-text calls only")

        @property
        def usage(self):
            return inner.usage

    step = "consolidate_assumptions_markdown"
    result = run_consolidate_assumptions_markdown(
        context_for(step, ConcurrentProbe(), run="20250321_silo"), inputs_from_run(step, "20250321_silo")
    )
    assert result.notes["failed_sections"] == {}
    assert len(inner.calls) == 8


def test_consolidate_reports_a_failed_section() -> None:
    run = "20250321_silo"
    ok = replay_shortenings(run)

    def responder(messages, response_model, label):
        if section_of(messages) == "Currency Strategy":
            raise StepError("shorten: every model failed (replay)")
        return ok._responder(messages, response_model, label)

    llm = ReplayLLM(responder=responder)
    step = "consolidate_assumptions_markdown"
    result = run_consolidate_assumptions_markdown(context_for(step, llm, run=run), inputs_from_run(step, run))

    assert len(llm.calls) == 8
    short = result.files[step_file("consolidate_assumptions_markdown", "short")]
    currency = short.split("# Currency Strategy\n\n", 1)[1].split("\n\n# Identify Risks", 1)[0]
    assert currency == load_run_file(run, step_file("currency_strategy", "markdown")).strip()
    # Why it is unshortened is a note at the end of the document, not the section's first line.
    body, notes = split_notes(short)
    assert "Shortening failed" not in body and "shortening failed" not in body
    assert "- Currency Strategy: shortening failed (StepError: shorten: every model failed" in notes
    assert list(result.notes["failed_sections"]) == ["Currency Strategy"]
    assert result.notes["shortened"] == 7


def test_consolidate_fails_when_every_shortening_fails() -> None:
    def responder(messages, response_model, label):
        raise StepError("provider down")

    step = "consolidate_assumptions_markdown"
    with pytest.raises(StepError, match="every shortening call failed"):
        run_consolidate_assumptions_markdown(
            context_for(step, ReplayLLM(responder=responder), run="20250321_silo"),
            inputs_from_run(step, "20250321_silo"),
        )


def test_consolidate_propagates_a_stop_request() -> None:
    def responder(messages, response_model, label):
        raise PipelineStopRequested("user pressed stop")

    step = "consolidate_assumptions_markdown"
    with pytest.raises(PipelineStopRequested):
        run_consolidate_assumptions_markdown(
            context_for(step, ReplayLLM(responder=responder), run="20250321_silo"),
            inputs_from_run(step, "20250321_silo"),
        )


def test_consolidate_treats_an_empty_reply_as_a_failure() -> None:
    run = "20250321_silo"
    ok = replay_shortenings(run)

    def responder(messages, response_model, label):
        if section_of(messages) == "Purpose":
            return "[START_MARKDOWN]\n\n[END_MARKDOWN]"
        return ok._responder(messages, response_model, label)

    step = "consolidate_assumptions_markdown"
    result = run_consolidate_assumptions_markdown(
        context_for(step, ReplayLLM(responder=responder), run=run), inputs_from_run(step, run)
    )
    assert list(result.notes["failed_sections"]) == ["Purpose"]
    short = result.files[step_file("consolidate_assumptions_markdown", "short")]
    assert short.startswith("# Purpose\n\n**Purpose:** ")
    assert "- Purpose: shortening failed" in split_notes(short)[1]


def test_consolidate_reports_a_missing_document_without_calling_the_model_for_it() -> None:
    run = "20260310_hong_kong_game"
    step = "consolidate_assumptions_markdown"
    inputs = with_file(
        inputs_from_run(step, run), "distill_assumptions", step_file("distill_assumptions", "markdown"), None
    )
    llm = replay_shortenings(run)
    result = run_consolidate_assumptions_markdown(context_for(step, llm, run=run), inputs)
    assert len(llm.calls) == 7
    for name in (
        step_file("consolidate_assumptions_markdown", "full"),
        step_file("consolidate_assumptions_markdown", "short"),
    ):
        body, notes = split_notes(result.files[name])
        assert "# Distill Assumptions\n\n_Not available: the document is missing" in body
        assert "- Distill Assumptions: upstream file 003-7-distill_assumptions.md" in notes
    assert list(result.notes["missing_sections"]) == ["Distill Assumptions"]


def test_extract_shortened_tidies_the_reply() -> None:
    reply = (
        "Sure, here it is.\n[START_MARKDOWN]\n# Budget\nThe **total** is 5M.\n* first\n+ second\n"
        "## Detail\n  • nested\n[END_MARKDOWN]\nanything after"
    )
    shortened = extract_shortened(reply)
    assert shortened.markers == "complete"
    assert shortened.markdown == "## Budget\nThe total is 5M.\n\n- first\n- second\n### Detail\n\n  - nested"


def test_extract_shortened_without_markers_or_cut_off() -> None:
    assert extract_shortened("```markdown\n## A\n- b\n```").markdown == "## A\n\n- b"
    assert extract_shortened("## A\n- b").markers == "missing"
    cut = extract_shortened("[START_MARKDOWN]\n## A\n- b\n-")
    assert cut.markers == "unterminated" and cut.markdown.startswith("## A")


@pytest.mark.parametrize("run", RUNS)
def test_the_seven_steps_read_each_others_outputs(run: str) -> None:
    """Run the stage end to end on our own files (not PlanExe's), replaying the real answers."""
    from planexe_assets.steps.locations import (
        run_currency_strategy,
        run_identify_risks,
        run_physical_locations,
    )
    from tests.steps.test_locations import recorded_answer as location_answer

    produced: dict[str, str] = {}

    def inputs_for(step: str) -> StepInputs:
        inputs = inputs_from_run(step, run)
        for key in inputs:
            for name in inputs[key].step.outputs.values():
                if name in produced:
                    inputs = with_file(inputs, key, name, produced[name])
        return inputs

    chain = [
        (
            "physical_locations",
            run_physical_locations,
            ReplayLLM(answers=[location_answer(run, "physical_locations")]),
        ),
        (
            "currency_strategy",
            run_currency_strategy,
            ReplayLLM(answers=[location_answer(run, "currency_strategy")]),
        ),
        ("identify_risks", run_identify_risks, ReplayLLM(answers=[location_answer(run, "identify_risks")])),
        (
            "make_assumptions",
            run_make_assumptions,
            ReplayLLM(answers=[recorded_answer(run, "make_assumptions")]),
        ),
        (
            "distill_assumptions",
            run_distill_assumptions,
            ReplayLLM(answers=[recorded_answer(run, "distill_assumptions")]),
        ),
        (
            "review_assumptions",
            run_review_assumptions,
            ReplayLLM(answers=[recorded_answer(run, "review_assumptions")]),
        ),
        ("consolidate_assumptions_markdown", run_consolidate_assumptions_markdown, replay_shortenings(run)),
    ]
    for step, fn, llm in chain:
        result = fn(context_for(step, llm, run=run), inputs_for(step))
        result.check_against(STEP_BY_NAME[step])
        produced.update(result.files)
        assert len(llm.calls) == (8 if step == "consolidate_assumptions_markdown" else 1)
        if step in ("currency_strategy", "identify_risks", "make_assumptions", "review_assumptions"):
            # Later steps saw the location document our own first step wrote, not PlanExe's.
            assert (
                produced[step_file("physical_locations", "markdown")].strip()
                in llm.calls[0]["messages"][1]["content"]
            )
    full = produced[step_file("consolidate_assumptions_markdown", "full")]
    for name in (
        step_file("physical_locations", "markdown"),
        step_file("identify_risks", "markdown"),
        step_file("review_assumptions", "markdown"),
    ):
        assert produced[name].strip() in full
