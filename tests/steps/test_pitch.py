"""pitch and pitch_markdown, replayed against two recorded PlanExe runs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, FailureKind, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.doc_notes import split_notes
from planexe_assets.steps.pitch import (
    END_MARKER,
    START_MARKER,
    ProjectPitch,
    extract_marked_markdown,
    normalise_bullets,
    render_pitch,
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
PITCH_RAW = step_file("pitch")
MARKDOWN_RAW = step_file("pitch_markdown", "raw")
MARKDOWN = step_file("pitch_markdown", "markdown")


def _with_file(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    by_key = dict(inputs.items())
    upstream = by_key[key]
    by_key[key] = UpstreamFiles(step=upstream.step, contents={**upstream.contents, filename: text})
    return StepInputs(by_key)


@pytest.mark.parametrize("run", RUNS)
def test_pitch_model_and_renderer(run):
    raw = load_run_json(run, PITCH_RAW)
    pitch = ProjectPitch.model_validate(raw)
    assert pitch.call_to_action == raw["call_to_action"]
    markdown = _norm(render_pitch(pitch))
    strings = all_strings(pitch.model_dump())
    assert len(strings) == 10
    assert [s for s in strings if _norm(s) not in markdown] == []
    assert "## Long Term Vision" in markdown
    with pytest.raises(ValidationError):
        ProjectPitch.model_validate({"pitch": "only this"})


@pytest.mark.parametrize("run", RUNS)
def test_pitch_step_replays_recorded_answer(run):
    raw = load_run_json(run, PITCH_RAW)
    llm = ReplayLLM(answers=[raw])
    ctx = context_for("pitch", llm, run=run)
    result = step_function("pitch")(ctx, inputs_from_run("pitch", run))
    result.check_against(STEP_BY_NAME["pitch"])
    assert len(llm.calls) == 1
    record = json.loads(result.files[PITCH_RAW])
    assert {k: record[k] for k in ProjectPitch.model_fields} == {k: raw[k] for k in ProjectPitch.model_fields}
    assert {"metadata", "system_prompt", "user_prompt"} <= set(record)
    user = record["user_prompt"]
    for name in (
        "strategic_decisions.md",
        "scenarios.md",
        "project-plan.md",
        "work-breakdown-structure.json",
        "related-resources.md",
    ):
        assert f"File '{name}':" in user
    tree = load_run_json(run, step_file("wbs_project_level1_and_level2"))
    assert json.dumps(tree, separators=(",", ":"), ensure_ascii=False) in user
    assert tree["wbs_project"]["description"] not in record["system_prompt"]
    assert result.notes["empty_fields"] == []


def test_pitch_step_rejects_bad_wbs():
    inputs = _with_file(
        inputs_from_run("pitch", RUNS[0]), "wbs_project", step_file("wbs_project_level1_and_level2"), "[]"
    )
    with pytest.raises(StepError, match="JSON object"):
        step_function("pitch")(context_for("pitch", ReplayLLM(answers=[])), inputs)


@pytest.mark.parametrize("run", RUNS)
def test_pitch_markdown_step_replays_recorded_answer(run):
    recorded = load_run_json(run, MARKDOWN_RAW)
    llm = ReplayLLM(answers=[recorded["response_content"]])
    ctx = context_for("pitch_markdown", llm, run=run)
    result = step_function("pitch_markdown")(ctx, inputs_from_run("pitch_markdown", run))
    result.check_against(STEP_BY_NAME["pitch_markdown"])
    assert len(llm.calls) == 1 and llm.calls[0]["response_model"] is None  # a free-text call
    markdown = result.files[MARKDOWN]
    assert markdown.strip() == load_run_file(run, MARKDOWN).strip()
    assert START_MARKER not in markdown and END_MARKER not in markdown
    record = json.loads(result.files[MARKDOWN_RAW])
    assert set(record) == {"response_content", "markdown", "metadata", "system_prompt", "user_prompt"}
    assert record["response_content"] == recorded["response_content"]
    assert record["markdown"] == markdown
    sent = json.loads(record["user_prompt"].split("\n", 1)[1])
    assert sent == {k: v for k, v in load_run_json(run, PITCH_RAW).items() if k != "metadata"}
    assert result.notes["markers_found"] is True


def test_marker_extraction_variants():
    assert extract_marked_markdown(f"Sure!\n{START_MARKER}\n# T\n\nBody\n{END_MARKER}\nBye") == (
        "# T\n\nBody",
        True,
    )
    assert extract_marked_markdown(f"{START_MARKER}\n# T\nCut off") == ("# T\nCut off", False)
    assert extract_marked_markdown("# Just markdown\n") == ("# Just markdown", False)
    assert extract_marked_markdown(f"{START_MARKER}\n```markdown\n# T\n- a\n```\n{END_MARKER}") == (
        "# T\n- a",
        True,
    )
    assert extract_marked_markdown(f"# T\n{END_MARKER}") == ("# T", False)


def test_bullets_are_normalised():
    text = "## Goals\nWe aim to:\n* one\n  + nested\n• two\n**Bold** stays\n- three\n\n```\n* code\n```"
    assert normalise_bullets(text) == (
        "## Goals\nWe aim to:\n\n- one\n  - nested\n- two\n**Bold** stays\n\n- three\n\n```\n* code\n```"
    )


def test_pitch_markdown_without_markers_keeps_whole_reply_and_empty_reply_falls_back():
    run = RUNS[0]
    llm = ReplayLLM(answers=["# Pitch\n\nThe case.\n* point"])
    result = step_function("pitch_markdown")(
        context_for("pitch_markdown", llm, run=run), inputs_from_run("pitch_markdown", run)
    )
    assert result.files[MARKDOWN] == "# Pitch\n\nThe case.\n\n- point\n"
    assert result.notes["markers_found"] is False
    # No usable markdown (Gemma 3 270M echoed the instructions until max_tokens): the pitch as the
    # pitch step rendered it, with a note saying why.
    empty = step_function("pitch_markdown")(
        context_for("pitch_markdown", ReplayLLM(answers=[f"{START_MARKER}\n \n{END_MARKER}"]), run=run),
        inputs_from_run("pitch_markdown", run),
    )
    pitch = ProjectPitch.model_validate(inputs_from_run("pitch_markdown", run)["pitch"].json())
    document, notes = split_notes(empty.files[MARKDOWN])
    assert document.strip() == render_pitch(pitch).strip()
    assert "returned no markdown for the pitch" in notes and "unpolished" in notes
    assert empty.notes["fallback"]

    class Down:
        def text(self, messages, *, label=None, max_tokens=None):
            raise StepError("every model failed (transient)", kind=FailureKind.TRANSIENT)

    with pytest.raises(StepError, match="transient"):  # an outage is not papered over
        step_function("pitch_markdown")(
            context_for("pitch_markdown", Down(), run=run), inputs_from_run("pitch_markdown", run)
        )


def test_pitch_markdown_rejects_bad_pitch():
    inputs = _with_file(inputs_from_run("pitch_markdown", RUNS[0]), "pitch", PITCH_RAW, '{"pitch": "x"}')
    with pytest.raises(StepError, match="not a valid pitch"):
        step_function("pitch_markdown")(context_for("pitch_markdown", ReplayLLM(answers=[])), inputs)
