"""WBS steps (levels 1, 2, 3 and the assembled trees) and the WBS tree, against two recorded PlanExe runs."""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.common import dump_json
from planexe_assets.steps.wbs import (
    WBSLevel1,
    WBSTaskDetails,
    WorkBreakdownStructure,
    render_wbs_level1,
    render_wbs_level2,
    render_wbs_level3,
)
from planexe_assets.steps.wbs_tree import (
    WBSFormatError,
    WBSNode,
    parse_project_title,
    parse_wbs_project,
    render_wbs_tree,
    wbs_csv,
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
    missing_from as _missing,
)

RUNS = ["20250321_silo", "20260310_hong_kong_game"]


def _with_file(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    by_key = dict(inputs.items())
    upstream = by_key[key]
    by_key[key] = UpstreamFiles(step=upstream.step, contents={**upstream.contents, filename: text})
    return StepInputs(by_key)


def _is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------
# The tree
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_tree_round_trips_recorded_files(run):
    for filename in (
        step_file("wbs_project_level1_and_level2"),
        step_file("wbs_project_level1_and_level2_and_level3", "full"),
    ):
        data = load_run_json(run, filename)
        root = parse_wbs_project(data)
        assert {"wbs_project": root.to_dict()} == data
    root = parse_wbs_project(
        load_run_json(run, step_file("wbs_project_level1_and_level2_and_level3", "full"))
    )
    assert root.depth == 4
    assert wbs_csv(root).rstrip("\n") == load_run_file(
        run, step_file("wbs_project_level1_and_level2_and_level3", "csv")
    )


def test_tree_walks_and_rejects_bad_shapes():
    root = WBSNode("r", "Root", {"final_deliverable": "Thing"})
    a = root.add_child(WBSNode("a", "A"))
    a.add_child(WBSNode("a1", "A1"))
    root.add_child(WBSNode("b", "B"))
    assert [n.id for n, _ in root.walk()] == ["r", "a", "a1", "b"]
    assert [n.id for n in root.leaves()] == ["a1", "b"]
    assert root.parents()["a1"].id == "a" and root.parents()["r"] is None
    assert root.find("b").description == "B" and root.find("zz") is None
    assert wbs_csv(root) == "Level 1;Level 2;Level 3;Task ID\nRoot;;;r\n;A;;a\n;;A1;a1\n;B;;b\n"
    odd = WBSNode("x", 'Say "hi"; then go')
    assert wbs_csv(odd).splitlines()[1] == '"Say ""hi""; then go";x'
    with pytest.raises(WBSFormatError, match="more than once"):
        WBSNode.from_dict(
            {"id": "a", "description": "A", "task_children": [{"id": "a", "description": "again"}]}
        )
    with pytest.raises(WBSFormatError, match="no string 'id'"):
        parse_wbs_project({"wbs_project": {"description": "no id"}})
    with pytest.raises(WBSFormatError):
        parse_wbs_project(["not", "a", "tree"])
    assert isinstance(WBSFormatError("x"), StepError)


@pytest.mark.parametrize("run", RUNS)
def test_tree_renderer_keeps_every_string(run):
    data = load_run_json(run, step_file("wbs_project_level1_and_level2_and_level3", "full"))
    markdown = render_wbs_tree(parse_wbs_project(data))
    assert not _missing(all_strings(data), markdown)


@pytest.mark.parametrize("run", RUNS)
def test_project_title_reader_accepts_plain_text_and_json(run):
    recorded = load_run_file(run, step_file("wbs_level1", "project_title"))
    title = load_run_json(run, step_file("wbs_level1", "clean"))["project_title"]
    assert parse_project_title(recorded) == title  # PlanExe's plain text
    assert parse_project_title(dump_json(title)) == title  # our JSON string
    assert parse_project_title(json.dumps({"project_title": title})) == title
    assert parse_project_title("2049\n") == "2049"
    with pytest.raises(StepError):
        parse_project_title('  ""  ')


# ---------------------------------------------------------------------------------------------------
# Level 1
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_level1_model_and_renderer(run):
    raw = load_run_json(run, step_file("wbs_level1", "raw"))
    level1 = WBSLevel1.model_validate(raw)
    assert level1.project_title == raw["project_title"]
    assert not _missing(all_strings(level1.model_dump()), render_wbs_level1(level1))
    with pytest.raises(ValidationError):
        WBSLevel1.model_validate({"project_title": "  ", "final_deliverable": "x"})


@pytest.mark.parametrize("run", RUNS)
def test_level1_step_replays_recorded_answer(run):
    raw = load_run_json(run, step_file("wbs_level1", "raw"))
    llm = ReplayLLM(answers=[raw])
    ctx = context_for("wbs_level1", llm, run=run)
    result = step_function("wbs_level1")(ctx, inputs_from_run("wbs_level1", run))
    step = STEP_BY_NAME["wbs_level1"]
    result.check_against(step)
    assert len(llm.calls) == 1
    record = json.loads(result.files[step_file("wbs_level1", "raw")])
    assert record["project_title"] == raw["project_title"]
    assert {"metadata", "system_prompt", "user_prompt"} <= set(record)
    plan = load_run_json(run, step_file("project_plan", "raw"))
    name, sent = record["user_prompt"].split("\n", 1)
    assert name == "File 'project-plan.json':"
    assert json.loads(sent) == {k: v for k, v in plan.items() if k != "metadata"}
    assert plan["goal_statement"][:30] not in record["system_prompt"]
    clean = json.loads(result.files[step_file("wbs_level1", "clean")])
    assert _is_uuid4(clean["id"])
    assert clean["final_deliverable"] == raw["final_deliverable"]
    title_file = result.files[step_file("wbs_level1", "project_title")]
    assert json.loads(title_file) == raw["project_title"]
    assert parse_project_title(title_file) == raw["project_title"]


def test_level1_rejects_bad_project_plan():
    inputs = _with_file(
        inputs_from_run("wbs_level1", RUNS[0]), "project_plan", step_file("project_plan", "raw"), "[1, 2]"
    )
    with pytest.raises(StepError, match="JSON object"):
        step_function("wbs_level1")(context_for("wbs_level1", ReplayLLM(answers=[])), inputs)
    inputs = _with_file(inputs, "project_plan", step_file("project_plan", "raw"), "{not json")
    with pytest.raises(StepError, match="not valid JSON"):
        step_function("wbs_level1")(context_for("wbs_level1", ReplayLLM(answers=[])), inputs)


# ---------------------------------------------------------------------------------------------------
# Level 2
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_level2_model_and_renderer(run):
    raw = load_run_json(run, step_file("wbs_level2", "raw"))
    wbs = WorkBreakdownStructure.model_validate(raw)
    assert len(wbs.major_phase_details) == len(raw["major_phase_details"]) >= 5
    assert not _missing(all_strings(wbs.model_dump()), render_wbs_level2(wbs))


def test_level2_model_tolerates_numeric_wbs_numbers_but_needs_phases():
    wbs = WorkBreakdownStructure.model_validate(
        {
            "major_phase_details": [
                {
                    "major_phase_wbs_number": 1,
                    "major_phase_title": "Plan",
                    "subtasks": [{"subtask_wbs_number": 1.1, "subtask_title": "Write plan"}],
                }
            ]
        }
    )
    assert wbs.major_phase_details[0].major_phase_wbs_number == "1"
    assert wbs.major_phase_details[0].subtasks[0].subtask_wbs_number == "1.1"
    with pytest.raises(ValidationError):
        WorkBreakdownStructure.model_validate({"major_phase_details": []})


@pytest.mark.parametrize("run", RUNS)
def test_level2_step_replays_recorded_answer(run):
    raw = load_run_json(run, step_file("wbs_level2", "raw"))
    llm = ReplayLLM(answers=[raw])
    ctx = context_for("wbs_level2", llm, run=run)
    result = step_function("wbs_level2")(ctx, inputs_from_run("wbs_level2", run))
    result.check_against(STEP_BY_NAME["wbs_level2"])
    assert len(llm.calls) == 1
    user = llm.calls[0]["messages"][1]["content"]
    for name in (
        "strategic_decisions.md",
        "scenarios.md",
        "project-plan.md",
        "data-collection.md",
        "wbs-level1.json",
    ):
        assert f"File '{name}':" in user
    assert load_run_json(run, step_file("wbs_level1", "clean"))["project_title"] in user
    clean = json.loads(result.files[step_file("wbs_level2", "clean")])
    recorded_clean = load_run_json(run, step_file("wbs_level2", "clean"))
    assert [p["major_phase_title"] for p in clean] == [p["major_phase_title"] for p in recorded_clean]
    assert [[s["description"] for s in p["subtasks"]] for p in clean] == [
        [s["description"] for s in p["subtasks"]] for p in recorded_clean
    ]
    ids = [p["id"] for p in clean] + [s["id"] for p in clean for s in p["subtasks"]]
    assert all(_is_uuid4(i) for i in ids) and len(set(ids)) == len(ids)
    assert "major_phase_wbs_number" not in json.dumps(clean)
    raw_out = json.loads(result.files[step_file("wbs_level2", "raw")])
    assert (
        raw_out["major_phase_details"][0]["major_phase_wbs_number"]
        == raw["major_phase_details"][0]["major_phase_wbs_number"]
    )


def test_level2_rejects_bad_level1():
    inputs = _with_file(
        inputs_from_run("wbs_level2", RUNS[0]), "wbs_level1", step_file("wbs_level1", "clean"), '{"id": "x"}'
    )
    with pytest.raises(StepError, match="level-1 file is malformed"):
        step_function("wbs_level2")(context_for("wbs_level2", ReplayLLM(answers=[])), inputs)


# ---------------------------------------------------------------------------------------------------
# Levels 1 + 2
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_level12_tree_matches_recorded_run(run):
    ctx = context_for("wbs_project_level1_and_level2", ReplayLLM(answers=[]))
    result = step_function("wbs_project_level1_and_level2")(
        ctx, inputs_from_run("wbs_project_level1_and_level2", run)
    )
    result.check_against(STEP_BY_NAME["wbs_project_level1_and_level2"])
    out = json.loads(result.files[step_file("wbs_project_level1_and_level2")])
    assert out == load_run_json(run, step_file("wbs_project_level1_and_level2"))
    assert result.notes["ids_not_uuid"] == []


def test_level12_rejects_repeated_or_missing_ids():
    inputs = inputs_from_run("wbs_project_level1_and_level2", RUNS[1])
    phases = load_run_json(RUNS[1], step_file("wbs_level2", "clean"))
    phases[1]["subtasks"][0]["id"] = phases[0]["subtasks"][0]["id"]
    bad = _with_file(inputs, "wbs_level2", step_file("wbs_level2", "clean"), json.dumps(phases))
    step = step_function("wbs_project_level1_and_level2")
    with pytest.raises(StepError, match="more than once"):
        step(context_for("wbs_project_level1_and_level2", ReplayLLM(answers=[])), bad)
    del phases[0]["id"]
    bad = _with_file(inputs, "wbs_level2", step_file("wbs_level2", "clean"), json.dumps(phases))
    with pytest.raises(StepError, match="malformed"):
        step(context_for("wbs_project_level1_and_level2", ReplayLLM(answers=[])), bad)


# ---------------------------------------------------------------------------------------------------
# Level 3
# ---------------------------------------------------------------------------------------------------


def _recorded_level3_answers(run: str) -> dict[str, dict]:
    """The recorded real answers, regrouped by the task each one decomposed."""
    by_parent: dict[str, list] = defaultdict(list)
    for item in load_run_json(run, step_file("wbs_level3")):
        by_parent[item["parent_id"]].append({k: item[k] for k in ("name", "description", "resources_needed")})
    return {parent: {"subtasks": subtasks} for parent, subtasks in by_parent.items()}


def _requested_task(messages) -> str:
    last_block = messages[-1]["content"].rsplit("File 'task-to-decompose.json':\n", 1)[1]
    return json.loads(last_block)["id"]


@pytest.mark.parametrize("run", RUNS)
def test_level3_model_parses_recorded_answers(run):
    for i in (1, 2):
        raw = load_run_json(run, step_file("wbs_level3", "task_raw", i))
        details = WBSTaskDetails.model_validate(raw)
        assert len(details.subtasks) == len(raw["subtasks"]) >= 3
        assert not _missing(all_strings(details.model_dump()), render_wbs_level3(details, "Task"))
    for answer in _recorded_level3_answers(run).values():
        WBSTaskDetails.model_validate(answer)
    with pytest.raises(ValidationError):
        WBSTaskDetails.model_validate({"subtasks": []})
    one = WBSTaskDetails.model_validate(
        {"subtasks": [{"name": "Do it", "description": "", "resources_needed": "Crane"}]}
    )
    assert one.subtasks[0].resources_needed == ["Crane"]


@pytest.mark.parametrize("run", RUNS)
def test_level3_step_replays_recorded_answers_concurrently(run):
    answers = _recorded_level3_answers(run)
    llm = ReplayLLM(responder=lambda messages, model, label: answers[_requested_task(messages)])
    ctx = context_for("wbs_level3", llm, run=run)
    mapped: list[int] = []
    original_map = ctx.map_concurrent

    def spy(fn, items, **kwargs):
        items = list(items)
        mapped.append(len(items))
        return original_map(fn, items, **kwargs)

    ctx.map_concurrent = spy
    result = step_function("wbs_level3")(ctx, inputs_from_run("wbs_level3", run))
    step = STEP_BY_NAME["wbs_level3"]
    result.check_against(step)
    root = parse_wbs_project(load_run_json(run, step_file("wbs_project_level1_and_level2")))
    leaves = root.leaves()
    assert mapped == [len(leaves)]
    assert len(llm.calls) == len(leaves)
    assert sorted(result.side_files) == sorted(
        step_file("wbs_level3", "task_raw", i) for i in range(1, len(leaves) + 1)
    )
    items = json.loads(result.files[step_file("wbs_level3")])
    assert len(items) == len(load_run_json(run, step_file("wbs_level3")))
    assert [i["parent_id"] for i in items] == [
        leaf.id for leaf in leaves for _ in answers[leaf.id]["subtasks"]
    ]
    assert all(_is_uuid4(i["id"]) for i in items) and len({i["id"] for i in items}) == len(items)
    first = json.loads(result.side_files[step_file("wbs_level3", "task_raw", 1)])
    assert first["task_id"] == leaves[0].id
    assert {"subtasks", "metadata", "system_prompt", "user_prompt"} <= set(first)
    # The model sees the tree with the duration estimates attached.
    estimate = next(
        e for e in load_run_json(run, step_file("estimate_task_durations")) if e["task_id"] == leaves[0].id
    )
    assert f'"days_realistic":{estimate["days_realistic"]}' in first["user_prompt"]
    assert result.notes["failed_tasks"] == [] and result.notes["skipped_in_fast_mode"] == 0


def test_level3_fast_mode_decomposes_two_leaves():
    run = RUNS[1]
    answers = _recorded_level3_answers(run)
    llm = ReplayLLM(responder=lambda messages, model, label: answers[_requested_task(messages)])
    result = step_function("wbs_level3")(
        context_for("wbs_level3", llm, run=run, fast=True), inputs_from_run("wbs_level3", run)
    )
    assert len(llm.calls) == 2
    assert sorted(result.side_files) == [
        step_file("wbs_level3", "task_raw", 1),
        step_file("wbs_level3", "task_raw", 2),
    ]
    assert result.notes["skipped_in_fast_mode"] == 27


def test_level3_reports_a_failed_leaf_and_fails_when_all_fail():
    run = RUNS[1]
    answers = _recorded_level3_answers(run)
    leaves = parse_wbs_project(load_run_json(run, step_file("wbs_project_level1_and_level2"))).leaves()
    broken = leaves[3].id

    def responder(messages, model, label):
        task = _requested_task(messages)
        if task == broken:
            raise StepError("all models failed for this task")
        return answers[task]

    result = step_function("wbs_level3")(
        context_for("wbs_level3", ReplayLLM(responder=responder), run=run), inputs_from_run("wbs_level3", run)
    )
    assert [f["task_id"] for f in result.notes["failed_tasks"]] == [broken]
    assert "all models failed" in result.notes["failed_tasks"][0]["error"]
    assert (
        step_file("wbs_level3", "task_raw", 4) not in result.side_files
        and len(result.side_files) == len(leaves) - 1
    )
    assert broken not in {i["parent_id"] for i in json.loads(result.files[step_file("wbs_level3")])}

    def always_fail(messages, model, label):
        raise StepError("offline")

    with pytest.raises(StepError, match="every level-3 decomposition failed"):
        step_function("wbs_level3")(
            context_for("wbs_level3", ReplayLLM(responder=always_fail), run=run, fast=True),
            inputs_from_run("wbs_level3", run),
        )


def test_level3_rejects_bad_durations():
    inputs = _with_file(
        inputs_from_run("wbs_level3", RUNS[0]),
        "task_durations",
        step_file("estimate_task_durations"),
        '{"a": 1}',
    )
    with pytest.raises(StepError, match="expected a list"):
        step_function("wbs_level3")(context_for("wbs_level3", ReplayLLM(answers=[])), inputs)


# ---------------------------------------------------------------------------------------------------
# Levels 1 + 2 + 3
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_level123_tree_and_csv_match_recorded_run(run):
    ctx = context_for("wbs_project_level1_and_level2_and_level3", ReplayLLM(answers=[]))
    result = step_function("wbs_project_level1_and_level2_and_level3")(
        ctx, inputs_from_run("wbs_project_level1_and_level2_and_level3", run)
    )
    result.check_against(STEP_BY_NAME["wbs_project_level1_and_level2_and_level3"])
    full = json.loads(result.files[step_file("wbs_project_level1_and_level2_and_level3", "full")])
    assert full == load_run_json(run, step_file("wbs_project_level1_and_level2_and_level3", "full"))
    csv_text = result.files[step_file("wbs_project_level1_and_level2_and_level3", "csv")]
    assert csv_text.rstrip("\n") == load_run_file(
        run, step_file("wbs_project_level1_and_level2_and_level3", "csv")
    )
    assert csv_text.splitlines()[0] == "Level 1;Level 2;Level 3;Level 4;Task ID"
    assert result.notes["orphaned_work_packages"] == []


def test_level123_reports_orphans_and_rejects_repeated_ids():
    run = RUNS[1]
    inputs = inputs_from_run("wbs_project_level1_and_level2_and_level3", run)
    items = load_run_json(run, step_file("wbs_level3"))
    items[0]["parent_id"] = "not-a-task"
    result = step_function("wbs_project_level1_and_level2_and_level3")(
        context_for("wbs_project_level1_and_level2_and_level3", ReplayLLM(answers=[])),
        _with_file(inputs, "wbs_level3", step_file("wbs_level3"), json.dumps(items)),
    )
    assert result.notes["orphaned_work_packages"] == [
        {"id": items[0]["id"], "name": items[0]["name"], "parent_id": "not-a-task"}
    ]
    assert items[0]["id"] not in result.files[step_file("wbs_project_level1_and_level2_and_level3", "csv")]
    items[0]["parent_id"] = items[1]["parent_id"]
    items[0]["id"] = items[1]["id"]
    with pytest.raises(StepError, match="more than once"):
        step_function("wbs_project_level1_and_level2_and_level3")(
            context_for("wbs_project_level1_and_level2_and_level3", ReplayLLM(answers=[])),
            _with_file(inputs, "wbs_level3", step_file("wbs_level3"), json.dumps(items)),
        )


def test_csv_depth_follows_the_tree():
    root = parse_wbs_project(load_run_json(RUNS[0], step_file("wbs_project_level1_and_level2")))
    lines = wbs_csv(root).splitlines()
    assert lines[0] == "Level 1;Level 2;Level 3;Task ID"
    assert len(lines) == 1 + len(root.descendants()) + 1
    assert all(len(re.split(";", line)) == 4 for line in lines)
