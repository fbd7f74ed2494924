"""Asset checks: run-directory files agree with plan_content rows, JSON outputs match their models.

The Dagster tests run one offline plan on an ephemeral instance (module-scoped, with explicit
resources so every test sees the same database and run directory), then tamper with it and check
that the blocking checks stop the downstream assets.
"""

import itertools
import json
import os
from datetime import UTC
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    define_asset_job,
    in_process_executor,
)
from sqlalchemy import update

from planexe_assets.core import STEP_BY_NAME, STEPS, Fields, Items, OneOf, Reader, matches_template, step_file
from planexe_assets.dagster_defs.checks import (
    FILES_CHECK,
    JSON_CHECK,
    LOCAL_ABSENT,
    LOCAL_DIFFERS,
    LOCAL_MATCHES,
    LOCAL_STALE,
    VERDICTS_CHECK,
    build_plan_checks,
    constraint_verdicts,
    json_outputs_of_table,
    json_problems,
    spec_for,
    step_has_json,
    verify_files,
    verify_json,
)
from planexe_assets.dagster_defs.io_manager import PlanContentIOManager
from planexe_assets.dagster_defs.resources import DatabaseResource, LLMResource
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import pipeline_steps
from planexe_assets.steps import output_models, register
from planexe_assets.steps.constraint_matrix import CONSTRAINT_CHECK_STEPS
from planexe_assets.steps.purpose import PlanPurposeInfo
from resources import migrate
from resources.database import DatabaseService, make_engine
from resources.models import PlanContent
from resources.plan_store import PlanStore

FIXTURE_RUNS = Path(__file__).parent / "fixtures" / "planexe_runs"
PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."
PLAN_ID = "checked_plan"


def _owner(filename: str):
    for step in STEPS:
        if any(matches_template(filename, t) for t in (*step.filenames, *step.side_outputs)):
            return step
    return None


# -- the mapping ------------------------------------------------------------------------------------


def _declared_models() -> dict[str, tuple]:
    """Every JSON output (file name or per-item template) -> the layouts its step registered."""
    return {name: specs for s in STEPS for name, specs in output_models(s.name).items()}


def test_every_json_output_of_the_step_table_has_a_spec():
    declared = json_outputs_of_table()
    assert len(declared) > 60
    assert [n for n in declared if spec_for(n) is None] == []
    assert sorted(_declared_models()) == sorted(declared), "specs for files no step writes"


def test_register_refuses_a_json_output_without_a_model_and_unknown_keys():
    with pytest.raises(ValueError, match="JSON files without a model"):
        register("identify_purpose")
    with pytest.raises(ValueError, match="no output or side file"):
        register("identify_purpose", models={"raw": PlanPurposeInfo, "rwa": PlanPurposeInfo})
    with pytest.raises(ValueError, match="not JSON"):
        register("identify_purpose", models={"raw": PlanPurposeInfo, "markdown": PlanPurposeInfo})
    with pytest.raises(KeyError, match="not a step of the step table"):
        register("no_such_step")


def test_specs_use_the_step_modules_models():
    """Models and readers come from the step modules, declared where each step registers."""
    models = set()
    for specs in _declared_models().values():
        for spec in specs:
            layouts = spec.layouts if isinstance(spec, OneOf) else (spec,)
            for layout in layouts:
                if isinstance(layout, (Fields, Items)):
                    models.add(layout.model)
                else:
                    assert isinstance(layout, Reader)
                    assert layout.read.__module__.startswith("planexe_assets.steps.")
    assert models and all(m.__module__.startswith("planexe_assets.steps.") for m in models)


@pytest.mark.parametrize("run", sorted(p.name for p in FIXTURE_RUNS.iterdir() if p.is_dir()))
def test_recorded_planexe_runs_validate(run):
    """Real PlanExe outputs (2025 and 2026 releases) pass, including their nested 'response' layouts."""
    checked = 0
    for path in sorted((FIXTURE_RUNS / run).glob("*.json")):
        step = _owner(path.name)
        if step is None:
            continue  # files PlanExe writes that no step of ours declares
        assert json_problems(step, path.name, path.read_text(encoding="utf-8")) == [], path.name
        checked += 1
    assert checked > 60


def test_json_problems_name_the_file_the_model_and_the_field():
    step = STEP_BY_NAME["plan_type"]
    name = step_file("plan_type", "raw")
    good = {"explanation": "Needs a shop.", "plan_type": "physical", "metadata": {}, "user_prompt": "x"}
    assert json_problems(step, name, json.dumps(good)) == []

    missing = json_problems(step, name, json.dumps({"explanation": "no type"}))
    assert (
        len(missing) == 1
        and name in missing[0]
        and "PlanTypeAssessment" in missing[0]
        and "plan_type" in missing[0]
    )

    wrong = json_problems(step, name, json.dumps({**good, "plan_type": "spaceship"}))
    assert len(wrong) == 1 and "plan_type" in wrong[0]

    broken = json_problems(step, name, '{"explanation": ')
    assert len(broken) == 1 and "not valid JSON" in broken[0]

    items = json_problems(
        STEP_BY_NAME["make_assumptions"],
        step_file("make_assumptions", "clean"),
        json.dumps([{"question": "q"}]),
    )
    assert len(items) == 1 and "item 1" in items[0] and "CleanAssumption" in items[0]


def test_per_item_files_match_their_template():
    assert (
        spec_for(step_file("expert_review", "criticism_raw", 7))
        is output_models("expert_review")[step_file("expert_review", "criticism_raw")]
    )
    assert spec_for("016-1-x-expert_criticism_raw.json") is None
    assert json_problems(STEP_BY_NAME["setup"], "unknown.json", "{}")[0].endswith(
        "no JSON spec is registered for this file"
    )


def test_skipped_location_call_of_a_digital_plan_passes():
    """A digital plan's locations file records a skipped call (no candidates); that is not a failure."""
    record = {
        "has_location_in_plan": False,
        "requirements_for_the_physical_locations": [],
        "physical_locations": [],
        "location_summary": "Not applicable: the plan is purely digital.",
        "metadata": {"llm_call_skipped": True, "reason": "digital"},
    }
    step = STEP_BY_NAME["physical_locations"]
    assert json_problems(step, step_file("physical_locations", "raw"), json.dumps(record)) == []
    record["metadata"] = {"llm_model": "x"}
    assert json_problems(step, step_file("physical_locations", "raw"), json.dumps(record))


def test_downstream_guarding_checks_are_blocking():
    checks = build_plan_checks()
    assert len(checks) == len(pipeline_steps())
    downstream = {d for s in pipeline_steps() for d in s.deps}
    seen = set()
    for definition in checks:
        for spec in definition.check_specs:
            seen.add(spec.key)
            if spec.name == VERDICTS_CHECK:  # a warning about the plan's content, never a gate
                assert not spec.blocking and spec.asset_key.path[-1] in CONSTRAINT_CHECK_STEPS
                continue
            assert spec.blocking == (spec.asset_key.path[-1] in downstream), spec.key
            assert spec.partitions_def is not None
    assert STEP_BY_NAME["report"].name not in downstream
    for step in pipeline_steps():
        assert AssetCheckKey(AssetKey(step.name), FILES_CHECK) in seen
        assert (AssetCheckKey(AssetKey(step.name), JSON_CHECK) in seen) == step_has_json(step)
        assert (AssetCheckKey(AssetKey(step.name), VERDICTS_CHECK) in seen) == (
            step.name in CONSTRAINT_CHECK_STEPS
        )


# -- plain verification of files and rows ----------------------------------------------------------


@pytest.fixture
def small_store(db_url, tmp_path):
    """One step's files written through the dual writer, on SQLite and (with a server) PostgreSQL."""
    db = DatabaseService(make_engine(db_url))
    store = PlanStore(db, tmp_path / "runs")
    create_plan(db, PlanRequest(prompt=PROMPT, model="offline", plan_id="small"), runs_root=tmp_path / "runs")
    source = FIXTURE_RUNS / "20250321_silo"
    names = STEP_BY_NAME["plan_type"].filenames
    store.write(
        "small", "plan_type", {n: (source / n).read_text(encoding="utf-8") for n in names}, run_id="r1"
    )
    yield store
    db.close()


def test_verify_files_passes_then_reports_each_kind_of_disagreement(small_store):
    step = STEP_BY_NAME["plan_type"]
    run_dir = small_store.run_dir("small")
    ok = verify_files(small_store, "small", step)
    assert ok.passed and len(ok.files) == 2 and all(f.sha256 for f in ok.files)
    assert verify_json(step, ok.contents) == []

    raw, markdown = step.filenames
    (run_dir / markdown).write_text("edited by hand\n", encoding="utf-8")
    (run_dir / raw).unlink()
    report = verify_files(small_store, "small", step)
    problems = report.all_problems()
    assert not report.passed and len(problems) == 1
    assert markdown in problems[0] and "differs from its row" in problems[0]
    # The run directory is a cache of the rows: a file this machine never got is no problem.
    assert {f.filename: f.local for f in report.files} == {raw: LOCAL_ABSENT, markdown: LOCAL_DIFFERS}
    assert (run_dir / markdown).read_text(encoding="utf-8") == "edited by hand\n", "the check must not repair"
    assert not (run_dir / raw).exists()

    small_store.repair("small", small_store.read("small", step.filenames))
    assert verify_files(small_store, "small", step).passed
    with small_store.db.session() as s:  # a row changed behind the dual writer's back
        s.execute(update(PlanContent).where(PlanContent.filename == raw).values(content='{"x": 1}'))
    bad_row = verify_files(small_store, "small", step).all_problems()
    assert any("does not match its stored sha256" in p for p in bad_row)

    unknown = verify_files(small_store, "nobody", step)
    assert not unknown.passed and "no row in plans" in unknown.all_problems()[0]


def test_a_copy_older_than_its_row_is_stale_not_a_problem(small_store):
    """Another machine re-ran the step: this machine's copy predates the row and differs from it."""
    step = STEP_BY_NAME["plan_type"]
    raw, markdown = step.filenames
    path = small_store.run_dir("small") / markdown
    path.write_text("written by an earlier run on this machine\n", encoding="utf-8")
    row = small_store.db.get_plan_content_by_filename("small", markdown)
    before = row.updated_at.replace(tzinfo=UTC).timestamp() - 60
    os.utime(path, (before, before))
    report = verify_files(small_store, "small", step)
    assert report.passed, report.all_problems()
    assert {f.filename: f.local for f in report.files} == {raw: LOCAL_MATCHES, markdown: LOCAL_STALE}
    # A reader restores it; then it matches.
    small_store.read("small", [markdown])
    assert verify_files(small_store, "small", step).files[1].local == LOCAL_MATCHES


def test_verify_files_reports_a_file_without_a_row(small_store):
    step = STEP_BY_NAME["identify_purpose"]
    (small_store.run_dir("small") / step.filenames[0]).write_text("{}", encoding="utf-8")
    problems = verify_files(small_store, "small", step).all_problems()
    assert any("has the file but the database has no row" in p for p in problems)
    assert any(step.filenames[1] in p and "no plan_content row" in p for p in problems)


# -- the Dagster checks on an ephemeral instance ---------------------------------------------------


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One offline plan materialised with every asset and check; shared by the tests below."""
    root = tmp_path_factory.mktemp("checks")
    url = f"sqlite:///{root / 'app.db'}"
    migrate.upgrade(url)
    from planexe_assets.definitions import defs

    database = DatabaseResource(url=url)
    resources = {
        "database": database,
        "llm": LLMResource(),
        "plan_content_io_manager": PlanContentIOManager(database=database, runs_root=str(root / "runs")),
    }
    db = database.get_database_service()
    create_plan(db, PlanRequest(prompt=PROMPT, model="offline", plan_id=PLAN_ID), runs_root=root / "runs")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("plans", [PLAN_ID])
    jobs = itertools.count()

    def run(selection):
        """A run of ``selection`` (assets and/or checks) for the plan, as the UI or CLI would launch it."""
        job = define_asset_job(
            f"selection_{next(jobs)}", selection=selection, executor_def=in_process_executor
        )
        scoped = Definitions(
            assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=resources
        )
        # The partition as a run tag, as `dagster job execute --tags` and the UI pass it (a job that
        # selects only checks has no partitions definition of its own to validate a partition_key).
        return scoped.resolve_job_def(job.name).execute_in_process(
            tags={"dagster/partition": PLAN_ID}, instance=instance, raise_on_error=False
        )

    result = run(AssetSelection.all())
    return {
        "result": result,
        "run": run,
        "instance": instance,
        "store": PlanStore(db, root / "runs"),
    }


def _evaluations(result):
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def test_every_check_passes_on_a_fresh_plan(checked):
    result = checked["result"]
    assert result.success
    evaluations = _evaluations(result)
    expected = (
        {(s.name, FILES_CHECK) for s in pipeline_steps()}
        | {(s.name, JSON_CHECK) for s in pipeline_steps() if step_has_json(s)}
        | {(name, VERDICTS_CHECK) for name in CONSTRAINT_CHECK_STEPS}
    )
    assert set(evaluations) == expected
    # The offline model's verdicts are random: a constraint check may warn about a violation.
    failed = {
        key: e.description for key, e in evaluations.items() if not e.passed and key[1] != VERDICTS_CHECK
    }
    assert failed == {}
    for name in CONSTRAINT_CHECK_STEPS:
        verdicts = evaluations[(name, VERDICTS_CHECK)]
        assert verdicts.severity == AssetCheckSeverity.WARN
        assert verdicts.passed == (verdicts.metadata["violated"].value == 0), name
    files = evaluations[("expert_review", FILES_CHECK)]
    assert files.metadata["files_checked"].value >= 4  # the markdown plus per-item raw files
    assert files.metadata["plan_id"].value == PLAN_ID
    schema = evaluations[("identify_documents", JSON_CHECK)]
    assert schema.metadata["json_files"].value == 3
    assert "IdentifiedDocuments" in schema.metadata["models"].value[step_file("identify_documents", "raw")]
    # The UI shows the results per plan: each execution is recorded against the partition.
    record = checked["instance"].event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey("plan_type"), JSON_CHECK), limit=1
    )[0]
    assert record.run_id == result.run_id and record.partition == PLAN_ID


def _materialized(result) -> set[str]:
    return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def test_tampered_file_fails_its_check_and_blocks_downstream(checked):
    store: PlanStore = checked["store"]
    step = STEP_BY_NAME["plan_type"]
    path = store.run_dir(PLAN_ID) / step_file("plan_type", "markdown")
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "\nA line nobody wrote through the pipeline.\n", encoding="utf-8")
    try:
        run = checked["run"](
            AssetSelection.checks_for_assets("plan_type") | AssetSelection.assets("potential_levers")
        )
        assert not run.success
        evaluation = _evaluations(run)[("plan_type", FILES_CHECK)]
        assert not evaluation.passed and step_file("plan_type", "markdown") in evaluation.description
        assert evaluation.blocking
        assert _evaluations(run)[("plan_type", JSON_CHECK)].passed  # the row itself is fine
        assert "potential_levers" not in _materialized(run), "a failed blocking check must stop downstream"
    finally:
        store.repair(PLAN_ID, store.read(PLAN_ID, step.filenames))
    again = checked["run"](
        AssetSelection.checks_for_assets("plan_type") | AssetSelection.assets("potential_levers")
    )
    assert again.success and "potential_levers" in _materialized(again)


def test_invalid_json_written_consistently_fails_the_schema_check_and_blocks(checked):
    """A file and row that agree (hash passes) but break the response model: the schema check stops it."""
    store: PlanStore = checked["store"]
    name = step_file("plan_type", "raw")
    original = store.read(PLAN_ID, [name])[name]
    broken = json.loads(original)
    broken["plan_type"] = "interplanetary"
    store.write(PLAN_ID, "plan_type", {name: json.dumps(broken, indent=2)}, run_id="tamper")
    try:
        run = checked["run"](
            AssetSelection.checks_for_assets("plan_type") | AssetSelection.assets("potential_levers")
        )
        evaluations = _evaluations(run)
        assert evaluations[("plan_type", FILES_CHECK)].passed
        schema = evaluations[("plan_type", JSON_CHECK)]
        assert not schema.passed and "plan_type" in schema.description and name in schema.description
        assert "potential_levers" not in _materialized(run)
    finally:
        store.write(PLAN_ID, "plan_type", {name: original}, run_id="restore")
    assert verify_json(STEP_BY_NAME["plan_type"], store.read(PLAN_ID, [name])) == []


def test_leaf_asset_checks_do_not_block(checked):
    """The report has no downstream asset: its checks report but never gate anything."""
    store: PlanStore = checked["store"]
    path = store.run_dir(PLAN_ID) / step_file("report")
    original = path.read_bytes()
    path.write_bytes(original + b"<!-- edited -->")
    try:
        run = checked["run"](AssetSelection.checks_for_assets("report"))
        evaluation = _evaluations(run)[("report", FILES_CHECK)]
        assert not evaluation.passed and not evaluation.blocking
        assert run.success, "a failed non-blocking check does not fail the run"
    finally:
        path.write_bytes(original)


def test_a_violated_constraint_warns_on_its_check_asset(checked):
    """Each constraint check is an asset check too: WARN (not blocking) when a constraint is violated."""
    store: PlanStore = checked["store"]
    name = step_file("enriched_levers_constraint")
    original = store.read(PLAN_ID, [name])[name]
    record = json.loads(original)
    item = {
        "constraint_text": "No nuclear power.",
        "constraint_classification": "negative",
        "status": "violated",
        "evidence": "Lever 'Energy Source': small modular reactor.",
        "explanation": "A banned technology is offered as an option.",
    }
    satisfied = {
        **item,
        "constraint_text": "Budget under EUR 2M.",
        "status": "satisfied",
        "constraint_classification": "positive",
    }
    record.update(constraint_violations=[item, satisfied], overall_status="fail")
    store.write(PLAN_ID, "enriched_levers_constraint", {name: json.dumps(record, indent=2)}, run_id="violate")
    try:
        run = checked["run"](AssetSelection.checks_for_assets("enriched_levers_constraint"))
        evaluations = _evaluations(run)
        assert evaluations[("enriched_levers_constraint", JSON_CHECK)].passed
        verdicts = evaluations[("enriched_levers_constraint", VERDICTS_CHECK)]
        assert not verdicts.passed and verdicts.severity == AssetCheckSeverity.WARN and not verdicts.blocking
        assert (
            "1 constraint(s) of the prompt violated" in verdicts.description
            and "No nuclear power." in verdicts.description
        )
        meta = verdicts.metadata
        assert (meta["violated"].value, meta["satisfied"].value, meta["overall_status"].value) == (
            1,
            1,
            "fail",
        )
        assert "small modular reactor" in meta["violations"].value
        assert run.success, "a warning does not fail the run"
    finally:
        store.write(PLAN_ID, "enriched_levers_constraint", {name: original}, run_id="restore")


def test_constraint_verdicts_of_odd_files():
    assert constraint_verdicts(None).problem == "not produced"
    assert "not valid JSON" in constraint_verdicts("{").problem
    clean = constraint_verdicts(json.dumps({"constraint_violations": [], "overall_status": "pass"}))
    assert clean.passed and clean.counts == {"satisfied": 0, "violated": 0, "unclear": 0}
