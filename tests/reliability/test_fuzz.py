"""Property-based fuzzing of what turns model output into files: the markdown renderers, the schedule
step (from the raw files the models produce) and the PlanExe run importer.

- Renderers: every ``render_*`` function of ``planexe_assets/steps`` that takes one response model
  (found by introspection), plus the ones that take several, gets random valid instances whose every
  free-text value carries a unique token (``model_strategies.py``). Each must render without error
  and without losing a field: every token appears in the output, apart from fields a renderer leaves
  out by design (listed below, with the reason).
- Schedule: the upstream files of a real offline run with the task-dependency and duration answers
  replaced by random (often nonsensical) ones: unknown and repeated ids, self-dependencies, cycles,
  negative and huge day counts, missing fields. The step either produces a consistent schedule or
  stops with a ``StepError``, never another exception.
- Importer: random run directories (odd names, broken JSON, invalid UTF-8, NULs, hostile usage lines)
  are either imported exactly (files, rows and run directory byte for byte, usage rows adding up)
  or refused with ``RunImportError``, never another exception, and a refusal writes nothing.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import itertools
import json
import pkgutil
import typing
import uuid
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import planexe_assets.steps as steps_pkg
from planexe_assets.core import (
    STEP_BY_NAME,
    STEPS,
    StepContext,
    StepError,
    StepInputs,
    UpstreamFiles,
    step_file,
)
from tests.reliability.html_check import inspect_html
from tests.reliability.model_strategies import instances

FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)

# Fields a renderer leaves out on purpose.
HIDDEN_BY_DESIGN = {
    # The Q&A HTML fragment shows questions and answers only, as PlanExe's does; 027-2 (markdown)
    # carries every field, and is fuzzed too.
    "qa.render_questions_and_answers_html": {"summary", "question_answer_pairs[].rationale"},
}


def _single_model_renderers() -> list[tuple[str, typing.Callable, type[BaseModel]]]:
    found = []
    for info in pkgutil.iter_modules(steps_pkg.__path__):
        module = importlib.import_module(f"planexe_assets.steps.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("render_") or fn.__module__ != module.__name__:
                continue
            hints = typing.get_type_hints(fn)
            required = [
                p for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty
            ]
            if len(required) != 1:
                continue
            model = hints.get(required[0].name)
            if isinstance(model, type) and issubclass(model, BaseModel):
                found.append((f"{info.name}.{name}", fn, model))
    return sorted(found, key=lambda item: item[0])


RENDERERS = _single_model_renderers()


def test_the_renderers_are_found():
    names = {label for label, _, _ in RENDERERS}
    assert len(RENDERERS) >= 25, names
    assert {"purpose.render_identify_purpose", "swot.render_swot", "review.render_executive_summary"} <= names


def _lost(output: str, tokens: dict[str, str], hidden: set[str] = frozenset()) -> dict[str, str]:
    return {token: path for token, path in tokens.items() if token not in output and path not in hidden}


@pytest.mark.parametrize("label, render, model", RENDERERS, ids=[label for label, _, _ in RENDERERS])
def test_renderer_keeps_every_field(label, render, model):
    hidden = HIDDEN_BY_DESIGN.get(label, set())

    @FUZZ
    @given(instances(model))
    def check(drawn_instance):
        instance, drawn = drawn_instance
        output = render(instance)
        assert isinstance(output, str) and output.strip()
        assert _lost(output, drawn.tokens, hidden) == {}

    check()


def test_scenarios_renderer_keeps_every_field():
    from planexe_assets.steps.scenarios import (
        ScenarioAnalysisResult,
        ScenarioSelectionResult,
        render_scenarios,
    )

    @FUZZ
    @given(instances(ScenarioAnalysisResult), instances(ScenarioSelectionResult), st.booleans())
    def check(candidates_drawn, selection_drawn, matching):
        (candidates, c_tokens), (selection, s_tokens) = candidates_drawn, selection_drawn
        if matching and candidates.scenarios:  # the chosen name matches a candidate, as a model's would
            selection.final_choice.chosen_scenario_name = candidates.scenarios[0].scenario_name
            s_tokens.tokens = {
                t: p for t, p in s_tokens.tokens.items() if p != "final_choice.chosen_scenario_name"
            }
        output = render_scenarios(candidates, selection)
        assert _lost(output, {**c_tokens.tokens, **s_tokens.tokens}) == {}

    check()


def test_review_plan_renderer_keeps_every_field():
    from planexe_assets.steps.review import ReviewAnswer, render_review_plan

    @FUZZ
    @given(st.lists(instances(ReviewAnswer), max_size=4))
    def check(drawn_answers):
        output = render_review_plan([answer for answer, _ in drawn_answers])
        for answer, drawn in drawn_answers:
            # A question every model failed on shows its error instead of (absent) answers.
            hidden = {"answers[]"} if answer.error is not None else set()
            assert _lost(output, drawn.tokens, hidden) == {}

    check()


def test_wbs_level3_renderer_keeps_every_field():
    from planexe_assets.steps.wbs import WBSTaskDetails, render_wbs_level3

    @FUZZ
    @given(instances(WBSTaskDetails), st.text(min_size=1, max_size=30))
    def check(drawn_details, description):
        details, drawn = drawn_details
        output = render_wbs_level3(details, description + " zzdesc")
        assert "zzdesc" in output and _lost(output, drawn.tokens) == {}

    check()


# -- the schedule step --------------------------------------------------------------------------


def _template_inputs(template: dict[str, str]) -> dict[str, str]:
    step = STEP_BY_NAME["schedule"]
    return {name: template[name] for dep in step.deps for name in STEP_BY_NAME[dep].filenames}


def _wbs_ids(node: dict) -> list[str]:
    out = [node["id"]] if "id" in node else []
    for child in node.get("task_children", []) or []:
        out.extend(_wbs_ids(child))
    return out


@st.composite
def model_answers(draw, ids: list[str]):
    """Random task-dependency and duration answers over the WBS ids (and some that do not exist)."""
    any_id = st.one_of(
        st.sampled_from(ids),
        st.sampled_from(["", "no-such-task", str(uuid.UUID(int=7))]),
        st.text(max_size=8),
    )
    words = st.text(max_size=20)
    details = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "dependent_task_id": any_id,
                    "depends_on_task_id_list": st.lists(any_id, max_size=4),
                    "depends_on_task_explanation_list": st.lists(words, max_size=4),
                }
            ),
            max_size=12,
        )
    )
    day = st.one_of(st.integers(-3, 40), st.integers(-(10**6), 10**6))
    estimates = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "task_id": any_id,
                    "delay_risks": words,
                    "mitigation_strategy": words,
                    "days_min": day,
                    "days_max": day,
                    "days_realistic": day,
                }
            ),
            max_size=15,
        )
    )
    # Sometimes a malformed answer: a wrong type where a list or object belongs.
    if draw(st.integers(0, 9)) == 0:
        details = draw(st.sampled_from([{"oops": 1}, "text", None, [1, 2]]))
    if draw(st.integers(0, 9)) == 0:
        estimates = draw(st.sampled_from([{"task_id": "x"}, "text", [{"task_id": 5}], [None]]))
    return details, estimates


@pytest.mark.slow
def test_schedule_step_is_consistent_or_refuses_clearly(offline_template):
    from planexe_assets.lifecycle.runner import NoLLM
    from planexe_assets.steps.schedule import run_schedule

    step = STEP_BY_NAME["schedule"]
    base = _template_inputs(offline_template)
    wbs = json.loads(base[step_file("wbs_project_level1_and_level2_and_level3", "full")])
    ids = _wbs_ids(wbs.get("wbs_project", wbs))
    assert len(ids) > 5
    day_zero = datetime.fromisoformat(
        json.loads(base[step_file("start_time")])["server_iso_utc"].replace("Z", "+00:00")
    ).date()
    outcomes = {"ok": 0, "refused": 0}

    @FUZZ
    @given(model_answers(ids))
    def check(answers):
        details, estimates = answers
        files = dict(base)
        files[step_file("identify_task_dependencies")] = json.dumps(
            {"task_dependency_details": details} if isinstance(details, list) else details
        )
        files[step_file("estimate_task_durations")] = json.dumps(estimates)
        inputs = StepInputs(
            {
                key: UpstreamFiles(STEP_BY_NAME[name], {f: files[f] for f in STEP_BY_NAME[name].filenames})
                for key, name in step.requires.items()
            }
        )
        ctx = StepContext(plan_id="fuzz", step=step, llm=NoLLM("schedule"))
        try:
            result = run_schedule(ctx, inputs)
        except StepError as exc:
            assert str(exc)
            outcomes["refused"] += 1
            return
        outcomes["ok"] += 1
        result.check_against(step)
        rows = list(csv.DictReader(io.StringIO(result.files[step_file("schedule", "machai_csv")])))
        assert sorted(r["project_key"] for r in rows) == sorted(ids)
        for row in rows:
            start = datetime.strptime(row["project_start_date"], "%m/%d/%Y").date()
            end = datetime.strptime(row["project_end_date"], "%m/%d/%Y").date()
            assert day_zero <= start <= end, row
            assert end - start < (date.max - date.min)  # a date, not an overflow
        for name in (step_file("schedule", "mermaid_html"), step_file("schedule", "dhtmlx_html")):
            assert inspect_html(result.files[name], name).findings == []

    check()
    assert outcomes["ok"] > 0, outcomes  # the random answers are not all refused


# -- the importer -------------------------------------------------------------------------------

STEP_FILES = sorted({name for s in STEPS for name in s.filenames})
_counter = itertools.count()

text_content = st.one_of(
    st.text(max_size=60),
    st.just(""),
    st.sampled_from(
        [
            '{"a": 1}',
            "[1, 2",
            "null",
            '{"server_iso_utc": "2026-03-10T19:21:45Z"}',
            "<script>alert(1)</script>",
        ]
    ),
)
byte_content = st.one_of(
    text_content.map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"caf\xe9", b"\xff\xfe\x00h\x00i", b"nul\x00inside", b"\xed\xa0\x80"]),
)
usage_line = st.one_of(
    st.fixed_dictionaries(
        {
            "model": st.one_of(st.text(max_size=12), st.just("openrouter-gemini"), st.integers()),
            "timestamp": st.one_of(
                st.just("2026-03-10T19:30:00"),
                st.just("2026-03-10T19:30:00+02:00"),
                st.text(max_size=10),
                st.integers(),
            ),
            "success": st.one_of(st.booleans(), st.just("yes")),
            "duration_seconds": st.one_of(
                st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**20), st.text(max_size=4)
            ),
            "input_tokens": st.one_of(
                st.integers(-(10**20), 10**20), st.floats(), st.just(None), st.text(max_size=4)
            ),
            "output_tokens": st.one_of(st.integers(0, 10**6), st.just(None)),
            "cost_usd": st.one_of(st.floats(), st.just(None)),
        }
    ).map(json.dumps),
    st.text(max_size=30),
    st.just('{"model": "m", "input_tokens": 5'),  # a truncated last line
)


@st.composite
def run_directories(draw):
    files: dict[str, bytes] = {}
    if draw(st.integers(0, 9)) > 0:
        files[step_file("setup")] = draw(
            st.one_of(
                st.just(b"Open a bakery in Oslo"),
                st.text(min_size=1, max_size=80).map(lambda t: t.encode()),
                byte_content,
            )
        )
    if draw(st.booleans()):
        files[step_file("start_time")] = draw(
            st.one_of(
                st.just(
                    b'{"server_iso_utc": "2026-03-10T19:21:45Z", "server_iso_local": "2026-03-10T20:21:45+01:00"}'
                ),
                byte_content,
            )
        )
    if draw(st.booleans()):
        files["usage_metrics.jsonl"] = "\n".join(draw(st.lists(usage_line, max_size=6))).encode()
    names = st.one_of(
        st.sampled_from(STEP_FILES),
        st.sampled_from(
            [
                "notes.txt",
                "030-report.html",
                "weird name.md",
                "ünïcode.md",
                ".DS_Store",
                "999-pipeline_complete.txt",
            ]
        ),
    )
    for name in draw(st.lists(names, max_size=8, unique=True)):
        files.setdefault(name, draw(byte_content))
    return files


def test_importer_imports_exactly_or_refuses(tmp_path, app_db, monkeypatch):
    from planexe_assets.importer import RunImportError, import_run, scan_run
    from tests.reliability.support import assert_files_equal_rows

    outcomes = {"imported": 0, "refused": 0}

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(run_directories())
    def check(files):
        plan_id = f"fuzz_{next(_counter)}"
        source = tmp_path / "sources" / plan_id
        source.mkdir(parents=True)
        for name, data in files.items():
            (source / name).write_bytes(data)
        try:
            scanned = scan_run(source)
            result = import_run(app_db, source, scanned=scanned)
        except RunImportError as exc:
            assert str(exc)
            assert app_db.get_plan(plan_id) is None and app_db.get_plan_content(plan_id) == []
            assert not (tmp_path / "runs" / plan_id).exists() or not any(
                (tmp_path / "runs" / plan_id).iterdir()
            )
            outcomes["refused"] += 1
            return
        outcomes["imported"] += 1
        run_dir = Path(result.run_dir)
        rows = assert_files_equal_rows(app_db, plan_id, run_dir)
        for name, data in files.items():
            if not name.startswith("."):
                assert rows[name].content.encode("utf-8") == data, name
        assert set(rows) == {n for n in files if not n.startswith(".")} | set(scanned.derived)
        interactions = app_db.get_plan_interactions(plan_id)
        assert len(interactions) == result.llm_calls == len(scanned.usage)
        metrics = app_db.get_plan_metrics(plan_id)
        assert (metrics.total_llm_calls if metrics else 0) == result.llm_calls
        assert app_db.get_plan(plan_id).status in ("completed", "failed", "stopped")

    monkeypatch.setenv("PLANEXE_HOME", str(tmp_path))
    check()
    assert outcomes["imported"] > 0 and outcomes["refused"] > 0, outcomes
