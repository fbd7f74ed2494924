"""The run directory is a cache of ``plan_content``: two PLANEXE_HOMEs (two workers, two machines)
share one application database, and a step on one is checked, and followed by its downstream step,
on the other. Nothing fails that would pass on one machine; each side's files are restored from the
rows when a step needs them, and ``planexe export`` writes a whole plan on a third machine.
"""

import itertools

import pytest
from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job, in_process_executor
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.core import STEP_BY_NAME, step_file
from planexe_assets.dagster_defs.checks import FILES_CHECK, JSON_CHECK
from planexe_assets.dagster_defs.io_manager import PlanContentIOManager
from planexe_assets.dagster_defs.resources import DatabaseResource, LLMResource
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from resources import migrate
from resources.plan_store import PlanStore

PLAN_ID = "two_homes"
PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."


@pytest.fixture
def two_homes(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    homes = {name: tmp_path / name for name in ("worker_a", "worker_b", "reader")}
    from planexe_assets.definitions import defs

    database = DatabaseResource(url=url)
    db = database.get_database_service()
    create_plan(
        db, PlanRequest(prompt=PROMPT, model="offline", plan_id=PLAN_ID), runs_root=homes["worker_a"] / "runs"
    )
    instance = DagsterInstance.ephemeral()  # Dagster's storage is shared by both "machines", as in production
    instance.add_dynamic_partitions("plans", [PLAN_ID])
    jobs = itertools.count()

    def run_on(home: str, selection):
        """A run of ``selection`` in a process whose PLANEXE_HOME is ``homes[home]``."""
        monkeypatch.setenv("PLANEXE_HOME", str(homes[home]))
        resources = {
            "database": database,
            "llm": LLMResource(),
            # No runs_root: each worker's run directories are under its own PLANEXE_HOME.
            "plan_content_io_manager": PlanContentIOManager(database=database),
        }
        job = define_asset_job(
            f"on_{home}_{next(jobs)}", selection=selection, executor_def=in_process_executor
        )
        scoped = Definitions(
            assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=resources
        )
        return scoped.resolve_job_def(job.name).execute_in_process(
            tags={"dagster/partition": PLAN_ID}, instance=instance, raise_on_error=False
        )

    return {"run_on": run_on, "homes": homes, "db": db}


def _evaluations(result):
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def _files(home, step_name):
    return {name: (home / "runs" / PLAN_ID / name).exists() for name in STEP_BY_NAME[step_name].filenames}


def test_a_step_on_one_home_is_checked_and_continued_on_the_other(two_homes):
    run_on, homes, db = two_homes["run_on"], two_homes["homes"], two_homes["db"]

    first = run_on("worker_a", AssetSelection.assets("setup", "identify_purpose"))
    assert first.success
    assert all(_files(homes["worker_a"], "identify_purpose").values())
    assert not (homes["worker_b"] / "runs").exists()

    # On B: the checks of A's steps, then the next step, in one run (the checks are blocking).
    second = run_on(
        "worker_b",
        AssetSelection.checks_for_assets("setup", "identify_purpose") | AssetSelection.assets("plan_type"),
    )
    assert second.success
    evaluations = _evaluations(second)
    # The checks of A's steps, and of plan_type (selected with its asset), all pass on B.
    assert {k: e.passed for k, e in evaluations.items()} == {
        ("setup", FILES_CHECK): True,
        ("identify_purpose", FILES_CHECK): True,
        ("identify_purpose", JSON_CHECK): True,
        ("plan_type", FILES_CHECK): True,
        ("plan_type", JSON_CHECK): True,
    }, {k: e.description for k, e in evaluations.items()}
    files_check = evaluations[("identify_purpose", FILES_CHECK)]
    local = files_check.metadata["local_copies"].value
    assert local["absent"] == 2 and local["differs"] == 0  # checked against the rows, not B's files
    assert str(homes["worker_b"]) in files_check.metadata["worker"].value
    [materialization] = second.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert materialization.asset_key.path[-1] == "plan_type"
    assert str(homes["worker_b"]) in metadata["worker"].value
    assert metadata["run_dir"].value == str(homes["worker_b"] / "runs" / PLAN_ID)
    # plan_type read its inputs from plan_content, which restored them into B's run directory.
    assert all(_files(homes["worker_b"], "identify_purpose").values())
    assert all(_files(homes["worker_b"], "plan_type").values())

    # Back on A, which never had plan_type's files: its checks pass, and the next step runs.
    third = run_on(
        "worker_a", AssetSelection.checks_for_assets("plan_type") | AssetSelection.assets("potential_levers")
    )
    assert third.success
    assert all(e.passed for e in _evaluations(third).values()), {
        k: e.description for k, e in _evaluations(third).items()
    }
    assert {e.asset_key.path[-1] for e in third.get_asset_materialization_events()} == {"potential_levers"}

    # A file edited by hand on B after its row was written is still caught there.
    edited = homes["worker_b"] / "runs" / PLAN_ID / step_file("plan_type", "markdown")
    edited.write_text("edited by hand\n", encoding="utf-8")
    caught = run_on("worker_b", AssetSelection.checks_for_assets("plan_type"))
    evaluation = _evaluations(caught)[("plan_type", FILES_CHECK)]
    assert not evaluation.passed and step_file("plan_type", "markdown") in evaluation.description

    # Rows: one per file, whoever wrote it.
    names = [row.filename for row in db.get_plan_content(PLAN_ID)]
    assert len(names) == len(set(names))


def test_planexe_export_writes_the_plan_from_its_rows_on_the_machine_that_asks(two_homes, monkeypatch):
    run_on, homes, db = two_homes["run_on"], two_homes["homes"], two_homes["db"]
    assert run_on("worker_a", AssetSelection.assets("setup", "identify_purpose")).success
    assert run_on("worker_b", AssetSelection.assets("plan_type")).success

    monkeypatch.setenv("PLANEXE_HOME", str(homes["reader"]))
    out = CliRunner().invoke(app, ["export", PLAN_ID])
    assert out.exit_code == 0, out.output
    rows = db.get_plan_content(PLAN_ID)
    run_dir = homes["reader"] / "runs" / PLAN_ID
    assert f"{len(rows)} file(s) in {run_dir} ({len(rows)} written, 0 already there)" in " ".join(
        out.output.split()
    )
    for row in rows:
        assert (run_dir / row.filename).read_text(encoding="utf-8") == row.content

    again = CliRunner().invoke(app, ["export", PLAN_ID, "--to", str(homes["reader"] / "copy")])
    assert again.exit_code == 0, again.output
    assert (homes["reader"] / "copy" / PLAN_ID / step_file("plan_type", "markdown")).exists()
    store = PlanStore(db, homes["reader"] / "runs")
    assert store.materialize(PLAN_ID) == (run_dir, [])  # nothing left to write

    missing = CliRunner().invoke(app, ["export", "nobody_here"])
    assert missing.exit_code == 2 and "no plan nobody_here" in missing.output
