"""`planexe import-run`: recorded PlanExe runs become plans, plan_content rows, usage rows and
Dagster materializations; the deterministic downstream assets then re-materialise from them.

The full recorded run ``tests/fixtures/planexe_runs_full/20260310_hong_kong_game`` (every file of a
2026 PlanExe run, copied from ../shared/fixtures/planexe_runs) is the main subject; the other recorded
run is checked too when ../shared is present.
"""

import csv
import io
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.core import (
    PIPELINE_COMPLETE_FILENAME,
    STEP_BY_NAME,
    STEPS,
    step_file,
    step_for_filename,
)
from planexe_assets.dagster_defs.partitions import PLANS_PARTITIONS_NAME
from planexe_assets.dagster_defs.runs import add_plan_partition
from planexe_assets.importer import (
    DETERMINISTIC_DOWNSTREAM,
    IMPORTED_STAGE,
    RunImportError,
    import_run,
    import_run_into_dagster,
    record_in_dagster,
    rematerialize_plan,
    scan_run,
    stage_for,
)
from resources.database import get_database_service, sha256_text
from tests.support.runs_2026 import assemble_2026_run

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FULL_RUN = FIXTURES / "planexe_runs_full" / "20260310_hong_kong_game"
SUBSET_RUN = FIXTURES / "planexe_runs" / "20260310_hong_kong_game"
SHARED_RUNS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "planexe_runs"
OTHER_SHARED_RUN = SHARED_RUNS / "20250321_silo"

# The recorded runs had their HTML outputs removed: the schedule pages and the report are missing.
MISSING_IN_RECORDINGS = {"schedule", "report"}
# The recorded runs (up to March 2026) predate the steps upstream added in 2026; the Hong Kong run has
# the self audit (November 2025). An import does not count the others against the run.
NOT_IN_RECORDINGS = {s.name for s in STEPS if not s.legacy and s.name != "self_audit"}


@pytest.fixture
def app_db(db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    return get_database_service(db_url)


@pytest.fixture
def sqlite_db(sqlite_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    return get_database_service(sqlite_url)


def _source_files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir()}


def _latest(instance, step: str, plan_id: str):
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(step), asset_partitions=[plan_id]), limit=1
    ).records
    return records[0] if records else None


def _assert_imported_byte_for_byte(db, plan_id: str, source: Path, run_dir: Path) -> dict:
    rows = {r.filename: r for r in db.get_plan_content(plan_id)}
    for name, data in _source_files(source).items():
        row = rows[name]
        assert row.content.encode("utf-8") == data, name
        assert row.content_hash == sha256_text(row.content) and row.content_size_bytes == len(data), name
        assert (run_dir / name).read_bytes() == data, name
    assert sorted(f.filename for f in db.get_plan_files(plan_id)) == sorted(rows)
    return rows


# ---------------------------------------------------------------------------------------------------
# The full recorded run
# ---------------------------------------------------------------------------------------------------


def test_import_full_recorded_run(app_db, isolated_home):
    plan_id = FULL_RUN.name
    instance = DagsterInstance.ephemeral()
    result = import_run_into_dagster(app_db, instance, FULL_RUN)
    run_dir = isolated_home / "runs" / plan_id
    source = _source_files(FULL_RUN)

    # The plan row.
    plan = app_db.get_plan(plan_id)
    assert plan.prompt.encode("utf-8") == source[step_file("setup")]
    assert plan.created_at == datetime(2026, 3, 10, 19, 21, 45)  # 001-1-start_time.json, server_iso_utc
    assert plan.output_dir == str(run_dir)
    complete = [s.name for s in STEPS if s.name not in MISSING_IN_RECORDINGS | NOT_IN_RECORDINGS]
    assert result.complete_steps == complete
    assert set(result.incomplete_steps) == MISSING_IN_RECORDINGS
    expected = len(STEPS) - len(NOT_IN_RECORDINGS)
    assert plan.status == "failed" and plan.progress_message == f"{len(complete)} of {expected} steps"
    assert (
        "schedule (026-1-schedule_gantt_mermaid.html, 026-2-schedule_gantt_dhtmlx.html)" in plan.error_message
    )
    assert "report (029-report.html)" in plan.error_message
    last_call = max(
        datetime.fromisoformat(json.loads(line)["timestamp"])
        for line in source["usage_metrics.jsonl"].decode().splitlines()
    )
    assert (
        plan.completed_at == last_call == datetime(2026, 3, 10, 19, 34, 10, 265436)
    )  # the server ran on UTC

    # Every file, byte for byte, with the stage of the step that writes it.
    rows = _assert_imported_byte_for_byte(app_db, plan_id, FULL_RUN, run_dir)
    assert len(source) == 171
    for name in source:
        step = step_for_filename(name)
        assert rows[name].stage == (step.name if step else stage_for(name)), name
    assert rows[step_file("estimate_task_durations", "chunk_raw", 7)].stage == "estimate_task_durations"
    assert rows[step_file("expert_review", "experts_raw")].stage == "expert_review"
    assert rows[step_file("draft_documents_to_create", "draft_raw", 10)].stage == "draft_documents_to_create"
    for extra in (
        "usage_metrics.jsonl",
        "activity_overview.json",
        "expected_filenames1.json",
        "001-3-planexe_metadata.json",
    ):
        assert rows[extra].stage == IMPORTED_STAGE, extra
    # PlanExe's self audit (numbered era) is our self_audit step's output
    assert (
        rows[step_file("self_audit", "raw")].stage
        == rows[step_file("self_audit", "markdown")].stage
        == "self_audit"
    )
    assert rows[PIPELINE_COMPLETE_FILENAME].stage == "full_plan_pipeline"
    assert {r.run_id for r in rows.values()} == {result.import_id}

    # The Q&A fragment was removed from the recording; it is rendered from the run's own answers.
    qa = json.loads(source[step_file("questions_and_answers", "raw")])
    html = rows[step_file("questions_and_answers", "html")]
    assert html.stage == "questions_and_answers" and step_file("questions_and_answers", "html") not in source
    assert set(rows) == set(source) | {step_file("questions_and_answers", "html")}
    for pair in qa["question_answer_pairs"]:
        assert f"<strong>Q{pair['item_index']}.</strong>" in html.content
    assert "Creative Vision vs. Commercial Viability." in html.content
    assert result.derived_from == {
        step_file("questions_and_answers", "html"): step_file("questions_and_answers", "raw")
    }

    # usage_metrics.jsonl -> llm_interactions (one per line) and plan_metrics, cross-checked against
    # PlanExe's own activity_overview.json.
    lines = [json.loads(line) for line in source["usage_metrics.jsonl"].decode().splitlines() if line.strip()]
    overview = json.loads(source["activity_overview.json"])
    interactions = app_db.get_plan_interactions(plan_id)
    assert len(interactions) == len(lines) == 171
    for row, line in zip(interactions, lines, strict=True):
        assert row.stage == IMPORTED_STAGE and row.status == "completed"
        assert (row.llm_model, row.input_tokens, row.output_tokens) == (
            line["model"],
            line["input_tokens"],
            line["output_tokens"],
        )
        assert row.response_metadata["cost_usd"] == line["cost_usd"]
        assert row.completed_at == datetime.fromisoformat(line["timestamp"])  # the server ran on UTC
        assert abs((row.completed_at - row.started_at).total_seconds() - line["duration_seconds"]) < 1e-3
    assert sum(r.input_tokens for r in interactions) == overview["total_input_tokens"]
    assert sum(r.output_tokens for r in interactions) == overview["total_output_tokens"]
    for model, totals in overview["models"].items():
        assert sum(1 for r in interactions if r.llm_model == model) == totals["calls"]
    metrics = app_db.get_plan_metrics(plan_id)
    assert metrics.total_llm_calls == 171 and metrics.total_tokens_used == overview["total_tokens"]
    assert metrics.total_cost_usd == pytest.approx(overview["total_cost"])
    assert app_db.usage_by_stage(plan_id)[IMPORTED_STAGE]["completed"] == 171

    # Dagster: the partition, one materialization per complete step, none for the others.
    assert instance.has_dynamic_partition(PLANS_PARTITIONS_NAME, plan_id)
    storage_ids = {}
    for step in STEPS:
        record = _latest(instance, step.name, plan_id)
        if step.name in MISSING_IN_RECORDINGS | NOT_IN_RECORDINGS:
            assert record is None, step.name
            continue
        assert record is not None, step.name
        event = record.asset_materialization
        assert event.partition == plan_id and record.run_id == ""  # runless
        meta = event.metadata
        assert meta["imported_from"].value == str(FULL_RUN.resolve())
        assert meta["files"].value == list(step.filenames)
        assert meta["sha256"].value == {n: sha256_text(rows[n].content) for n in step.filenames}
        storage_ids[step.name] = record.storage_id
    assert (
        _latest(instance, "estimate_task_durations", plan_id)
        .asset_materialization.metadata["per_item_files"]
        .value
        == 12
    )
    assert (
        "restored_files" in _latest(instance, "questions_and_answers", plan_id).asset_materialization.metadata
    )

    # Lineage: the asset graph has PlanExe's requires() edges; every materialised asset's parents are
    # materialised, and earlier (so the UI shows nothing as out of date).
    from planexe_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for step in STEPS:
        parents = {k.to_user_string() for k in graph.get(AssetKey(step.name)).parent_keys}
        assert parents == set(step.deps), step.name
        if step.name in storage_ids:
            for parent in parents:
                assert storage_ids[parent] < storage_ids[step.name], (parent, step.name)


def test_rematerialize_deterministic_assets_from_real_outputs(sqlite_db, isolated_home):
    plan_id = FULL_RUN.name
    instance = DagsterInstance.ephemeral()
    result = import_run_into_dagster(sqlite_db, instance, FULL_RUN)
    source = _source_files(FULL_RUN)
    run_dir = isolated_home / "runs" / plan_id

    outcome = rematerialize_plan(instance, plan_id, result.complete_steps, db=sqlite_db)
    assert outcome.success, outcome.failed_steps
    assert outcome.steps == list(DETERMINISTIC_DOWNSTREAM) and outcome.skipped == {}

    plan = sqlite_db.get_plan(plan_id)
    # Complete with the steps of its own pipeline; the 2026 steps it predates (they call a model)
    # are not counted against it, and `planexe resume` would add them.
    assert all(STEP_BY_NAME[name].uses_llm for name in NOT_IN_RECORDINGS)
    expected = len(STEPS) - len(NOT_IN_RECORDINGS)
    assert plan.status == "completed" and plan.progress_message == f"{expected} of {expected} steps"
    rows = {r.filename: r for r in sqlite_db.get_plan_content(plan_id)}
    for name in (
        step_file("schedule", "mermaid_html"),
        step_file("schedule", "dhtmlx_html"),
        step_file("schedule", "machai_csv"),
        step_file("report"),
    ):
        assert rows[name].run_id == outcome.run_id and rows[name].stage in ("schedule", "report")
        assert (run_dir / name).read_bytes() == rows[name].content.encode("utf-8")
    for step in DETERMINISTIC_DOWNSTREAM:
        record = _latest(instance, step, plan_id)
        assert record.run_id == outcome.run_id, step

    # Our WBS steps read PlanExe's level 1/2/3 files and rebuild PlanExe's own trees exactly.
    for name in (
        step_file("wbs_project_level1_and_level2"),
        step_file("wbs_project_level1_and_level2_and_level3", "full"),
    ):
        assert json.loads(rows[name].content) == json.loads(source[name]), name
    # The LLM outputs stay as imported.
    for name in (
        step_file("executive_summary", "markdown"),
        step_file("wbs_level3"),
        step_file("estimate_task_durations"),
    ):
        assert rows[name].content.encode("utf-8") == source[name]

    # The schedule: every task of the real WBS, day 0 from 001-1-start_time.json.
    tree = json.loads(source[step_file("wbs_project_level1_and_level2_and_level3", "full")])
    titles = []

    def walk(node):
        titles.append(node["description"])
        for child in node.get("task_children", []):
            walk(child)

    walk(tree["wbs_project"])
    table = list(csv.DictReader(io.StringIO(rows[step_file("schedule", "machai_csv")].content)))
    assert len(table) == len(titles) == 168
    assert set(titles) == {re.sub(r" \(\d+\)$", "", r["project_name"]) for r in table}
    assert table[0]["project_start_date"] == "3/10/2026"
    assert "Hong Kong Game" in rows[step_file("schedule", "dhtmlx_html")].content

    # The report: the real title, the real documents, the restored Q&A, the new Gantt pages.
    report = rows[step_file("report")].content
    assert "<title>Hong Kong Game</title>" in report
    assert "The Game: Hong Kong" in report  # executive summary
    assert "Creative Vision vs. Commercial Viability." in report  # Q&A
    assert "Gantt Interactive" in report
    # Every section is there but the two of steps the run predates (screening, constraints, adherence
    # came in 2026); the self audit is the run's own.
    toc = report[report.index('<nav class="toc"') : report.index("</nav>")]
    absent = re.findall(r'href="#([a-z-]+)">[^<]+</a> <span class="na">\(not available\)', toc)
    assert absent == ["prompt-adherence", "constraints"]
    assert 'Prompt Screening</h2>\n        <p class="not-available">' in report
    assert report.count('<p class="not-available">') == 3
    assert rows[step_file("report", "markdown")].content.startswith("# Hong Kong Game\n")
    assert sqlite_db.get_plan_content_by_filename(plan_id, PIPELINE_COMPLETE_FILENAME) is not None


@pytest.mark.skipif(not OTHER_SHARED_RUN.is_dir(), reason=f"{OTHER_SHARED_RUN} is not present")
def test_other_recorded_run_from_shared(sqlite_db, isolated_home):
    plan_id = "silo_import"
    instance = DagsterInstance.ephemeral()
    result = import_run_into_dagster(sqlite_db, instance, OTHER_SHARED_RUN, plan_id)
    source = _source_files(OTHER_SHARED_RUN)
    _assert_imported_byte_for_byte(sqlite_db, plan_id, OTHER_SHARED_RUN, isolated_home / "runs" / plan_id)
    # The silo run has the self audit's markdown (029-2) but not its raw answer (029-1): incomplete.
    assert set(result.incomplete_steps) == MISSING_IN_RECORDINGS | {"self_audit"}
    # One failed call in this run: recorded as a failed interaction with PlanExe's error.
    lines = [json.loads(x) for x in source["usage_metrics.jsonl"].decode().splitlines() if x.strip()]
    interactions = sqlite_db.get_plan_interactions(plan_id)
    assert len(interactions) == len(lines)
    failed = [r for r in interactions if r.status == "failed"]
    assert len(failed) == sum(1 for x in lines if not x["success"]) == 1
    assert failed[0].error_code == "invalid_json" and "invalid_json" in failed[0].error_message
    overview = json.loads(source["activity_overview.json"])
    assert sqlite_db.get_plan_metrics(plan_id).total_tokens_used == overview["total_tokens"]

    outcome = rematerialize_plan(instance, plan_id, result.complete_steps, db=sqlite_db)
    assert outcome.success, outcome.failed_steps
    plan = sqlite_db.get_plan(plan_id)
    # Schedule and report are rebuilt; the self audit, an LLM step, is left for `planexe resume`.
    assert plan.status == "failed" and plan.failed_step == "self_audit" and plan.recoverable
    assert (
        "<title>Silo Construction</title>"
        in sqlite_db.get_plan_content_by_filename(plan_id, step_file("report")).content
    )
    for step in STEPS:
        absent = NOT_IN_RECORDINGS | {"self_audit"}  # an LLM step: an import does not re-run it
        assert (_latest(instance, step.name, plan_id) is not None) == (step.name not in absent), step.name


# ---------------------------------------------------------------------------------------------------
# Hostile and unusual inputs
# ---------------------------------------------------------------------------------------------------


def _small_run(root: Path, name: str = "small_run") -> Path:
    """A run directory with the first steps of the recorded run."""
    run = root / name
    run.mkdir(parents=True)
    for filename in (
        step_file("start_time"),
        step_file("setup"),
        step_file("redline_gate", "raw"),
        step_file("redline_gate", "markdown"),
    ):
        shutil.copyfile(SUBSET_RUN / filename, run / filename)
    return run


def _nothing_written(db, isolated_home, instance, plan_ids=()) -> None:
    assert [p.plan_id for p in db.list_plans()] == list(plan_ids)
    runs = isolated_home / "runs"
    assert not runs.exists() or sorted(p.name for p in runs.iterdir()) == sorted(plan_ids)
    for plan in db.list_plans():
        assert not db.get_plan_content(plan.plan_id) or plan.plan_id in plan_ids
    partitions = instance.get_dynamic_partitions(PLANS_PARTITIONS_NAME)
    assert sorted(partitions) == sorted(plan_ids)


def _hostile_missing(tmp):
    return tmp / "no_such_run", "does not exist"


def _hostile_file(tmp):
    path = tmp / "a_file"
    path.write_text("x")
    return path, "is not a directory"


def _hostile_not_a_run(tmp):
    run = _small_run(tmp)
    (run / step_file("setup")).unlink()
    return run, "does not look like a PlanExe run directory: 001-2-plan.txt"


def _hostile_bad_dirname(tmp):
    return _small_run(tmp, "my run (copy)"), "invalid plan id 'my run (copy)'"


def _hostile_not_utf8(tmp):
    run = _small_run(tmp)
    (run / step_file("redline_gate", "markdown")).write_bytes("Prüfung".encode("latin-1"))
    return run, "002-2-redline_gate.md is not UTF-8 text (invalid byte b'\\xfc' at offset 2)"


def _hostile_binary(tmp):
    run = _small_run(tmp)
    (run / "log.png").write_bytes(b"PNG\x00\x01\x02")
    return run, "log.png contains NUL bytes"


def _hostile_subdirectory(tmp):
    run = _small_run(tmp)
    (run / "nested").mkdir()
    return run, "is a subdirectory"


def _hostile_empty_prompt(tmp):
    run = _small_run(tmp)
    (run / step_file("setup")).write_text("  \n")
    return run, "001-2-plan.txt: the prompt is empty"


@pytest.mark.parametrize(
    "make",
    [
        _hostile_missing,
        _hostile_file,
        _hostile_not_a_run,
        _hostile_bad_dirname,
        _hostile_not_utf8,
        _hostile_binary,
        _hostile_subdirectory,
        _hostile_empty_prompt,
    ],
)
def test_hostile_inputs_are_refused_and_nothing_is_written(sqlite_db, isolated_home, tmp_path, make):
    path, message = make(_mk(tmp_path / "src"))
    instance = DagsterInstance.ephemeral()
    with pytest.raises(RunImportError) as caught:
        import_run_into_dagster(sqlite_db, instance, path)
    assert message in str(caught.value)
    _nothing_written(sqlite_db, isolated_home, instance)


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_bad_explicit_plan_id_is_refused(sqlite_db, isolated_home, tmp_path):
    instance = DagsterInstance.ephemeral()
    with pytest.raises(RunImportError, match=r"invalid plan id '\.\./x'") as caught:
        import_run_into_dagster(sqlite_db, instance, _small_run(tmp_path), "../x")
    assert "--plan-id" not in str(caught.value)  # the id was the user's own choice
    _nothing_written(sqlite_db, isolated_home, instance)


def test_existing_plan_is_refused_unless_replace(sqlite_db, isolated_home, tmp_path):
    instance = DagsterInstance.ephemeral()
    run = _small_run(tmp_path)
    usage = [
        json.dumps(
            {
                "timestamp": "2026-03-10T19:21:47",
                "success": True,
                "model": "m",
                "duration_seconds": 1.5,
                "input_tokens": 10,
                "output_tokens": 5,
                "cost_usd": 0.001,
            }
        )
    ] * 3
    (run / "usage_metrics.jsonl").write_text("\n".join(usage) + "\n")
    first = import_run_into_dagster(sqlite_db, instance, run)
    assert first.complete_steps == ["start_time", "setup", "redline_gate"]
    before = {r.filename: r.content for r in sqlite_db.get_plan_content("small_run")}

    (run / step_file("redline_gate", "markdown")).write_text("changed")
    with pytest.raises(RunImportError, match="plan small_run already exists; pass --replace"):
        import_run_into_dagster(sqlite_db, instance, run)
    assert {r.filename: r.content for r in sqlite_db.get_plan_content("small_run")} == before
    assert len(sqlite_db.get_plan_interactions("small_run")) == 3
    _nothing_written(sqlite_db, isolated_home, instance, ["small_run"])

    (run / step_file("redline_gate", "raw")).unlink()
    second = import_run_into_dagster(sqlite_db, instance, run, replace=True)
    assert second.replaced and second.complete_steps == ["start_time", "setup"]
    rows = {r.filename: r.content for r in sqlite_db.get_plan_content("small_run")}
    assert (
        rows[step_file("redline_gate", "markdown")] == "changed"
        and step_file("redline_gate", "raw") not in rows
    )
    assert not (isolated_home / "runs" / "small_run" / step_file("redline_gate", "raw")).exists()
    assert len(sqlite_db.get_plan_interactions("small_run")) == 3  # replaced, not added
    assert sqlite_db.get_plan_metrics("small_run").total_llm_calls == 3
    # Dagster's SQLite event log cannot wipe one partition: the asset the new import lacks is named.
    assert (
        _latest(instance, "redline_gate", "small_run").storage_id
        < _latest(instance, "setup", "small_run").storage_id
    )
    assert any("earlier materialization" in w and w.endswith(": redline_gate") for w in second.warnings)
    assert (
        _latest(instance, "setup", "small_run").asset_materialization.metadata["import_id"].value
        == second.import_id
    )


def test_run_directory_of_unknown_plan_is_not_overwritten(sqlite_db, isolated_home, tmp_path):
    leftover = isolated_home / "runs" / "small_run"
    leftover.mkdir(parents=True)
    (leftover / "notes.txt").write_text("mine")
    with pytest.raises(RunImportError, match="already holds files of no known plan"):
        import_run(sqlite_db, _small_run(tmp_path))
    assert (leftover / "notes.txt").read_text() == "mine" and sqlite_db.list_plans() == []


def test_importing_a_run_already_in_place(sqlite_db, isolated_home):
    """A PlanExe run copied into $PLANEXE_HOME/runs/<id> is imported where it is, files untouched."""
    run = _small_run(isolated_home / "runs")
    before = _source_files(run)
    result = import_run(sqlite_db, run)
    assert result.run_dir == run.resolve() and _source_files(run) == before
    assert {r.filename for r in sqlite_db.get_plan_content("small_run")} == set(before)


def test_line_endings_and_byte_order_marks_are_kept(sqlite_db, isolated_home, tmp_path):
    run = _small_run(tmp_path)
    data = "\ufeff# Redline gate\r\n\r\nVerdict: ALLOW — ok\r\n".encode()
    (run / step_file("redline_gate", "markdown")).write_bytes(data)
    (run / "log.txt").write_bytes(b"line one\rline two\n")
    import_run(sqlite_db, run)
    for name in (step_file("redline_gate", "markdown"), "log.txt"):
        row = sqlite_db.get_plan_content_by_filename("small_run", name)
        assert row.content.encode("utf-8") == (run / name).read_bytes(), name
        assert (isolated_home / "runs" / "small_run" / name).read_bytes() == (run / name).read_bytes(), name
    assert sqlite_db.get_plan_content_by_filename("small_run", "log.txt").stage == IMPORTED_STAGE


def test_running_plan_is_not_replaced(sqlite_db, tmp_path):
    run = _small_run(tmp_path)
    import_run(sqlite_db, run)
    sqlite_db.update_plan("small_run", {"status": "running"})
    with pytest.raises(RunImportError, match="is running"):
        import_run(sqlite_db, run, replace=True)
    assert sqlite_db.get_plan("small_run").status == "running"


def test_failure_while_writing_removes_the_partial_import(sqlite_db, isolated_home, tmp_path, monkeypatch):
    import planexe_assets.importer.write as importer

    def broken(db, run):
        raise RuntimeError("database went away")

    monkeypatch.setattr(importer, "_store_usage", broken)
    with pytest.raises(RuntimeError, match="database went away"):
        import_run(sqlite_db, _small_run(tmp_path))
    assert sqlite_db.list_plans() == [] and sqlite_db.get_plan_content("small_run") == []
    assert not any((isolated_home / "runs" / "small_run").iterdir())


def test_planexe_2026_names_timestamps_and_bad_usage_lines(tmp_path):
    run = _small_run(tmp_path)
    (run / step_file("start_time")).write_text(
        json.dumps(
            {
                "server_iso_utc": "2026-01-02T08:00:00Z",
                "server_iso_local": "2026-01-02T10:00:00+02:00",
                "server_timezone_name": "EET",
            }
        )
    )
    (run / "usage_metrics.jsonl").write_text(
        json.dumps(
            {
                "timestamp": "2026-01-02T10:00:05.500000",
                "success": False,
                "model": "x",
                "duration_seconds": 5,
                "error": "rate_limited",
                "error_id": "abc",
            }
        )
        + "\n"
        + '{"timestamp": "2026-01-02T10:00:09", "success": "yes", "model": "x"}\n'
        + '{"timestamp": "2026-01-02T10:01:00", "succ'  # a truncated last line
    )
    for name in ("030-report.html", ".DS_Store"):
        (run / name).write_text("{}" if name.endswith(".json") else "x")
    scanned = scan_run(run)
    assert scanned.created_at == datetime(2026, 1, 2, 8, 0)
    assert [u.line for u in scanned.usage] == [1]
    usage = scanned.usage[0]
    assert usage.completed_at == datetime(2026, 1, 2, 8, 0, 5, 500000)  # local +02:00 -> UTC
    assert usage.started_at == datetime(2026, 1, 2, 8, 0, 0, 500000)
    assert not usage.success and usage.error == "rate_limited" and usage.error_id == "abc"
    assert any(
        "skipped 2 malformed line(s)" in w and "line 2" in w and "line 3" in w for w in scanned.warnings
    )
    assert "skipped hidden file .DS_Store" in scanned.warnings and ".DS_Store" not in scanned.files
    assert stage_for("030-report.html") == "report"
    assert stage_for(step_file("self_audit", "markdown")) == "self_audit"
    assert "report" not in [s.name for s in scanned.complete_steps()]  # 030 is PlanExe's report, not ours

    # PlanExe's FastAPI service writes the start time as a bare utcnow().isoformat() string.
    (run / step_file("start_time")).write_text(json.dumps("2025-09-30T21:15:03.123456"))
    assert scan_run(run).created_at == datetime(2025, 9, 30, 21, 15, 3, 123456)
    (run / step_file("start_time")).write_text("not json")
    assert any("001-1-start_time.json is unreadable" in w for w in scan_run(run).warnings)


def test_rematerialize_skips_steps_whose_inputs_were_not_imported(sqlite_db, isolated_home, tmp_path):
    instance = DagsterInstance.ephemeral()
    result = import_run_into_dagster(sqlite_db, instance, _small_run(tmp_path))
    outcome = rematerialize_plan(instance, result.plan_id, result.complete_steps)
    assert outcome.steps == [] and outcome.success and outcome.run_id is None
    assert set(outcome.skipped) == set(DETERMINISTIC_DOWNSTREAM)
    assert "enrich_levers" in outcome.skipped["strategic_decisions_markdown"]


def test_record_in_dagster_is_idempotent_for_the_partition(sqlite_db, tmp_path):
    instance = DagsterInstance.ephemeral()
    add_plan_partition(instance, "small_run")
    result = import_run(sqlite_db, _small_run(tmp_path))
    record_in_dagster(instance, result)
    record_in_dagster(instance, result)
    assert instance.get_dynamic_partitions(PLANS_PARTITIONS_NAME) == ["small_run"]
    assert STEP_BY_NAME["setup"].filenames == (step_file("setup"),)


# ---------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------


def test_cli_import_run_with_rematerialize(sqlite_db, isolated_home, tmp_path, monkeypatch):
    """The CLI on a persistent Dagster instance (slow on SQLite: fsync per event), so a small run:
    the levers outputs, from which only the strategic-decisions markdown can be re-materialized."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    run = _small_run(tmp_path)
    for name in (step_file("enrich_levers", "raw"), step_file("focus_on_vital_few_levers", "raw")):
        shutil.copyfile(FULL_RUN / name, run / name)
    result = CliRunner().invoke(app, ["import-run", str(run), "--plan-id", "levers", "--rematerialize"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "as plan levers: 6 files" in output
    assert "5 complete step(s) reported to Dagster as materialized (5 events)" in output
    assert "not re-materialized: scenarios_markdown: upstream step(s) without all their outputs" in output
    assert "re-materialized 1 step(s): strategic_decisions_markdown" in output
    assert "plan levers failed (6 of 61 steps)" in output
    assert "materialises them" in sqlite_db.get_plan("levers").error_message
    assert sqlite_db.get_plan_content_by_filename(
        "levers", step_file("strategic_decisions_markdown", "markdown")
    ).stage == ("strategic_decisions_markdown")

    again = CliRunner().invoke(app, ["import-run", str(run), "--plan-id", "levers"])
    assert again.exit_code == 2 and "already exists; pass --replace" in " ".join(again.output.split())


@pytest.mark.parametrize(
    "args, message",
    [
        (["import-run", "/nonexistent/run"], "does not exist"),
        (["import-run", str(SUBSET_RUN), "--plan-id", "a/b"], "invalid plan id 'a/b'"),
    ],
)
def test_cli_import_run_refuses_bad_input(sqlite_db, isolated_home, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert sqlite_db.list_plans() == [] and not (isolated_home / "runs").exists()


# ---------------------------------------------------------------------------------------------------
# A run of the unnumbered era (2026): plan_raw.json, triaged_levers_raw.json, no number prefixes
# ---------------------------------------------------------------------------------------------------


def test_usage_lines_past_what_one_call_can_take_are_skipped(sqlite_db, isolated_home, tmp_path):
    """Found by the fuzz test in CI: a token count past SQLite's 64-bit integers, and a duration
    reaching before year 1, crashed the import. Such lines are corrupt: skipped with a warning."""
    run = _small_run(tmp_path)
    good = {"model": "m", "timestamp": "2026-03-10T19:30:00+02:00", "success": True, "input_tokens": 7}
    lines = [
        good,
        {**good, "input_tokens": 9.223372036854776e18},
        {**good, "duration_seconds": 63908767801.0},
        {**good, "timestamp": "0001-01-01T00:00:01", "duration_seconds": 5},
        {**good, "cost_usd": float("inf")},
    ]
    (run / "usage_metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    scanned = scan_run(run)
    assert [u.line for u in scanned.usage] == [1]
    warning = next(w for w in scanned.warnings if "malformed line" in w)
    assert "skipped 4 malformed line(s)" in warning
    assert "input_tokens is 9.223372036854776e+18, more than one call can take" in warning
    assert "duration_seconds is 63908767801.0" in warning and "before year 1" in warning
    assert "cost_usd is inf, not a finite number" in warning
    result = import_run(sqlite_db, run, scanned=scanned)
    assert result.llm_calls == 1 and len(sqlite_db.get_plan_interactions("small_run")) == 1


def test_scan_maps_every_unnumbered_file_to_our_step(tmp_path):
    run = assemble_2026_run(tmp_path / "silo_2026")
    scanned = scan_run(run)
    # Every file of ours is stored under our numbered name; the run's own name is kept in `renamed`.
    assert scanned.renamed[step_file("setup")] == "plan.txt"
    assert scanned.renamed[step_file("screen_planning_prompt", "raw")] == "screen_planning_prompt.json"
    assert scanned.renamed[step_file("deduplicated_levers_constraint")] == "triaged_levers_constraint.json"
    assert scanned.renamed[step_file("prompt_adherence", "markdown")] == "prompt_adherence.md"
    for ours, theirs in scanned.renamed.items():
        assert step_for_filename(ours) is not None and (run / theirs).is_file() and not (run / ours).exists()
    unnumbered_left = [
        n for n in scanned.files if not re.match(r"\d{3}-", n) and step_for_filename(n) is None
    ]
    assert sorted(unnumbered_left) == ["plan_raw.json", "triaged_levers_raw.json"]
    assert (
        stage_for("plan_raw.json") == "setup" and stage_for("triaged_levers_raw.json") == "deduplicate_levers"
    )
    # TriageLevers' output becomes the deduplication record enrich_levers reads: both surviving
    # classes kept, the triage class beside our own.
    dedup_name = step_file("deduplicate_levers", "raw")
    qa_html = step_file("questions_and_answers", "html")  # removed from the recording, rendered again
    assert scanned.derived_from == {
        dedup_name: "triaged_levers_raw.json",
        qa_html: step_file("questions_and_answers", "raw"),
    }
    dedup = json.loads(scanned.derived[dedup_name])
    triaged = json.loads((run / "triaged_levers_raw.json").read_text())
    assert dedup["deduplicated_levers"] == triaged["triaged_levers"]
    assert {d["classification"] for d in dedup["response"]} == {"keep", "remove"}
    assert {d["triage_classification"] for d in dedup["response"]} == {"primary", "secondary", "remove"}
    assert [d["lever_id"] for d in dedup["removed_levers"]] == [
        d["lever_id"] for d in triaged["response"] if d["classification"] == "remove"
    ]
    # Each of our files validates against its step's models, the translated one included.
    from planexe_assets.dagster_defs.checks import json_problems

    for name, text in scanned.all_files.items():
        step = step_for_filename(name)
        if step is not None and name.endswith(".json") and not step.legacy:
            assert json_problems(step, name, text) == [], name
    assert json_problems(STEP_BY_NAME["deduplicate_levers"], dedup_name, scanned.derived[dedup_name]) == []
    assert scanned.prompt == (run / "plan.txt").read_text()
    assert [s.name for s in scanned.expected_steps()] == [s.name for s in STEPS]
    assert set(scanned.incomplete_steps()) == MISSING_IN_RECORDINGS  # the silo recording has no HTML


def test_import_2026_run_and_rematerialize_the_report_with_its_constraints(
    sqlite_db, isolated_home, tmp_path
):
    run = assemble_2026_run(tmp_path / "silo_2026")
    instance = DagsterInstance.ephemeral()
    result = import_run_into_dagster(sqlite_db, instance, run)
    plan_id = "silo_2026"
    rows = {r.filename: r for r in sqlite_db.get_plan_content(plan_id)}
    assert rows[step_file("screen_planning_prompt", "raw")].stage == "screen_planning_prompt"
    assert (
        rows[step_file("selected_scenario_constraint")].content
        == (run / "selected_scenario_constraint.json").read_text()
    )
    assert rows["plan_raw.json"].stage == "setup"
    assert rows[step_file("deduplicate_levers", "raw")].stage == "deduplicate_levers"
    assert (
        "screen_planning_prompt.json" not in rows
        and (isolated_home / "runs" / plan_id / step_file("setup")).is_file()
    )
    assert set(result.incomplete_steps) == MISSING_IN_RECORDINGS
    assert _latest(instance, "deduplicated_levers_constraint", plan_id) is not None
    plan = sqlite_db.get_plan(plan_id)
    assert plan.status == "failed" and plan.progress_message == f"{len(STEPS) - 2} of {len(STEPS)} steps"

    outcome = rematerialize_plan(instance, plan_id, result.complete_steps, db=sqlite_db)
    assert outcome.success, outcome.failed_steps
    assert "report" in outcome.steps and "deduplicate_levers" not in outcome.steps
    plan = sqlite_db.get_plan(plan_id)
    assert plan.status == "completed" and plan.progress_percentage == 100
    report = sqlite_db.get_plan_content_by_filename(plan_id, step_file("report")).content
    toc = report[report.index('<nav class="toc"') : report.index("</nav>")]
    assert "not available" not in toc and "Prompt Adherence" in toc and "Constraints" in toc
    assert '<details class="section" id="constraints" open>' in report
    assert "Scenario &#39;Pioneer&#39;: crowdfunded by future residents." in report
    assert "<h2>Prompt Screening</h2>" in report and '<aside class="banner-unusable"' not in report
    markdown = sqlite_db.get_plan_content_by_filename(plan_id, step_file("report", "markdown")).content
    assert "# Constraints" in markdown and "**Overall adherence: 86%**" in markdown


def test_2026_run_with_only_plan_raw_and_conflicting_twins(sqlite_db, tmp_path):
    run = assemble_2026_run(tmp_path / "raw_only", with_plan_txt=False)
    scanned = scan_run(run)
    assert scanned.derived_from[step_file("setup")] == "plan_raw.json"
    assert scanned.prompt == json.loads((run / "plan_raw.json").read_text())["prompt"]
    assert any("taken from plan_raw.json" in w for w in scanned.warnings)

    (run / "plan_raw.json").write_text(json.dumps({"goal": "x"}))
    with pytest.raises(
        RunImportError, match=r"no plan.txt, and its plan_raw.json does not hold the prompt .*keys: goal"
    ):
        scan_run(run)

    twin = assemble_2026_run(tmp_path / "twin")
    shutil.copyfile(twin / "screen_planning_prompt.json", twin / step_file("screen_planning_prompt", "raw"))
    with pytest.raises(
        RunImportError, match="screen_planning_prompt.json and 002-0-screen_planning_prompt.json are both"
    ):
        scan_run(twin)
    assert sqlite_db.list_plans() == []
