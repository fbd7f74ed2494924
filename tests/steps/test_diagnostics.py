"""redline_gate and premise_attack: models, renderers and steps, replayed against two recorded runs."""

from __future__ import annotations

import json
import threading

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.diagnostics import (
    LENSES,
    REDLINE_SYSTEM_PROMPT,
    Decision,
    LensResult,
    PremiseCritique,
    Verdict,
    ViolationCategory,
    render_premise_attack,
    render_redline_gate,
)
from planexe_assets.steps.doc_notes import split_notes
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
REDLINE_RAW = step_file("redline_gate", "raw")
REDLINE_MD = step_file("redline_gate", "markdown")
PREMISE_RAW = step_file("premise_attack", "raw")
PREMISE_MD = step_file("premise_attack", "markdown")


# --- redline_gate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_redline_model_parses_recorded_output(run):
    raw = load_run_json(run, REDLINE_RAW)
    decision = Decision.model_validate(raw)
    assert decision.verdict.value == raw["verdict"]
    assert decision.rationale_short == raw["rationale_short"]
    assert decision.violation_capability_uplift is False


def test_redline_model_tolerates_case_but_rejects_unknown_verdicts():
    assert Decision.model_validate({"verdict": "allow"}).verdict == Verdict.ALLOW
    assert Decision.model_validate(
        {"verdict": "REFUSE", "violation_category": "weapons"}
    ).violation_category == (ViolationCategory.WEAPONS)
    with pytest.raises(ValidationError):
        Decision.model_validate({"verdict": "MAYBE"})


@pytest.mark.parametrize("run", RUNS)
def test_redline_renderer_keeps_every_string(run):
    decision = Decision.model_validate(load_run_json(run, REDLINE_RAW))
    markdown = render_redline_gate(decision)
    assert not _missing(all_strings(decision.model_dump(mode="json")), markdown)
    assert "Gives real capability uplift:** No" in markdown


def test_redline_renderer_shows_a_full_violation():
    decision = Decision(
        verdict=Verdict.REFUSE,
        rationale_short="Asks for a synthesis route.",
        violation_category=ViolationCategory.BIORISK,
        violation_claim="Provides pathogen enhancement steps.",
        violation_capability_uplift=True,
        violation_severity="High",
    )
    markdown = render_redline_gate(decision)
    assert not _missing(all_strings(decision.model_dump(mode="json")), markdown)
    assert "🔴" in markdown and "advisory" in markdown
    assert "Gives real capability uplift:** Yes" in markdown


@pytest.mark.parametrize("run", RUNS)
def test_redline_step_replays_recorded_answer(run):
    raw = load_run_json(run, REDLINE_RAW)
    llm = ReplayLLM(answers=[raw])
    result = step_function("redline_gate")(
        context_for("redline_gate", llm, run=run), inputs_from_run("redline_gate", run)
    )

    result.check_against(STEP_BY_NAME["redline_gate"])
    assert set(result.files) == {REDLINE_RAW, REDLINE_MD}
    assert len(llm.calls) == 1
    written = json.loads(result.files[REDLINE_RAW])
    assert written["verdict"] == raw["verdict"]
    assert written["metadata"]["llm_model"] == "replay"
    assert written["system_prompt"] == REDLINE_SYSTEM_PROMPT.strip()
    plan = load_run_file(run, step_file("setup")).strip()
    sent = llm.calls[0]["messages"]
    assert sent[0]["role"] == "system" and plan not in sent[0]["content"]
    assert sent[1]["role"] == "user" and plan in sent[1]["content"]
    assert result.notes["verdict"] == raw["verdict"]
    assert raw["rationale_short"] in result.files[REDLINE_MD]


# --- premise_attack --------------------------------------------------------------------------------


def _recorded_by_lens(run: str) -> dict[str, dict]:
    raw = load_run_json(run, PREMISE_RAW)
    names = [m["system_prompt_name"] for m in raw["metadata"]["models"]]
    assert names == [lens.name for lens in LENSES]
    return dict(zip(names, raw["response_list"], strict=True))


@pytest.mark.parametrize("run", RUNS)
def test_premise_model_parses_every_recorded_lens(run):
    for name, answer in _recorded_by_lens(run).items():
        critique = PremiseCritique.model_validate(answer)
        assert critique.reasons and critique.second_order_effects and critique.evidence, name
        assert critique.bottom_line == answer["bottom_line"]


@pytest.mark.parametrize("run", RUNS)
def test_premise_renderer_keeps_every_string(run):
    recorded = _recorded_by_lens(run)
    results = [
        LensResult(lens=lens, critique=PremiseCritique.model_validate(recorded[lens.name])) for lens in LENSES
    ]
    markdown = render_premise_attack(results)
    strings = [s for r in results for s in all_strings(r.critique.model_dump(mode="json"))]
    assert len(strings) > 50
    assert not _missing(strings, markdown)
    positions = [markdown.index(f"Lens {n} of 5: {lens.name}") for n, lens in enumerate(LENSES, start=1)]
    assert positions == sorted(positions)


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


def _lens_responder(recorded: dict[str, dict], failing: set[str] = frozenset()):
    def respond(messages, response_model, label):
        name = label.split(":", 1)[1]
        if name in failing:
            raise StepError(f"all models failed for lens {name}")
        return recorded[name]

    return respond


@pytest.mark.parametrize("run", RUNS)
def test_premise_step_runs_five_lenses_concurrently(run):
    recorded = _recorded_by_lens(run)
    # All five calls must be in flight at once to pass the barrier; a sequential step would break it.
    llm = BarrierLLM(ReplayLLM(responder=_lens_responder(recorded)), parties=len(LENSES))
    ctx = context_for("premise_attack", llm, run=run)
    result = step_function("premise_attack")(ctx, inputs_from_run("premise_attack", run))

    result.check_against(STEP_BY_NAME["premise_attack"])
    assert set(result.files) == {PREMISE_RAW, PREMISE_MD}
    assert len(llm.calls) == 5
    # Concurrent calls arrive in any order, so compare labels as a set.
    assert sorted(c["label"] for c in llm.calls) == sorted(f"premise_attack:{lens.name}" for lens in LENSES)
    user_prompts = {c["messages"][1]["content"] for c in llm.calls}
    assert len(user_prompts) == 1
    system_prompts = {c["messages"][0]["content"] for c in llm.calls}
    assert len(system_prompts) == 5

    written = json.loads(result.files[PREMISE_RAW])
    assert [r["lens_name"] for r in written["response_list"]] == [lens.name for lens in LENSES]
    for entry in written["response_list"]:
        assert entry["core_thesis"] == recorded[entry["lens_name"]]["core_thesis"]
    assert written["failed_lenses"] == []
    assert len(written["metadata"]["models"]) == 5
    assert len(written["system_prompt_list"]) == 5
    assert result.notes == {"lenses_ok": 5, "lenses_failed": []}


def test_premise_step_reports_a_failed_lens():
    run = RUNS[1]
    recorded = _recorded_by_lens(run)
    llm = ReplayLLM(responder=_lens_responder(recorded, failing={"Cascade"}))
    result = step_function("premise_attack")(
        context_for("premise_attack", llm, run=run), inputs_from_run("premise_attack", run)
    )
    written = json.loads(result.files[PREMISE_RAW])
    assert [r["lens_name"] for r in written["response_list"]] == [
        "Integrity",
        "Accountability",
        "Spectrum",
        "Escalation",
    ]
    assert written["failed_lenses"][0]["lens_name"] == "Cascade"
    assert written["failed_lenses"][0]["lens_number"] == 4
    assert "all models failed for lens Cascade" in written["failed_lenses"][0]["error"]
    markdown = result.files[PREMISE_MD]
    cascade = markdown[markdown.index("Lens 4 of 5: Cascade") : markdown.index("Lens 5 of 5")]
    assert "produced no critique" in cascade and "all models failed" not in cascade
    body, notes = split_notes(markdown)
    assert notes.startswith("- Lens 4 (Cascade) produced no critique: ") and "all models failed" in notes
    assert result.notes["lenses_failed"] == ["Cascade"]


def test_premise_step_fails_when_every_lens_fails():
    run = RUNS[0]
    llm = ReplayLLM(responder=_lens_responder({}, failing={lens.name for lens in LENSES}))
    with pytest.raises(StepError, match="every lens failed"):
        step_function("premise_attack")(
            context_for("premise_attack", llm, run=run), inputs_from_run("premise_attack", run)
        )
