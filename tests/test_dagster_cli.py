"""Dagster's own command-line tools against our definitions, run as a user runs them.

Each command is a subprocess with ``DAGSTER_HOME`` in a temporary directory (holding the project's
``planexe_assets/deploy/dagster.local.yaml``), ``PLANEXE_HOME`` and ``DATABASE_URL`` (SQLite) set. Plans are created
first with ``planexe_assets.lifecycle.plans.create_plan`` (offline model, fast mode to keep the suite lean) and
their partition added, as the issue describes; one test covers a partition key with no plan behind it.

- ``dagster job execute ... -j full_plan_job --tags '{"dagster/partition": ...}'``: the whole plan;
- ``dagster asset materialize --select ... --partition ...``: a chosen set of assets;
- re-materialising one asset, and one asset plus everything downstream of it (``plan_type*``), and
  ``planexe resume``: files and rows are rewritten in place (same row ids, no duplicates), and nothing
  upstream is touched;
- ``dagster job backfill ... --partitions a,b`` with ``dagster-daemon run`` running.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, STEP_BY_NAME, step_file
from planexe_assets.dagster_defs.checks import verify_files, verify_json
from planexe_assets.dagster_defs.instance_config import LOCAL_CONFIG
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import pipeline_steps
from resources import migrate
from resources.database import DatabaseService, make_engine
from resources.plan_store import PlanStore

REPO = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).with_name("dagster"))
DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))
# The `planexe` console script's entry point, run by this interpreter (in a development checkout the
# script may live outside the virtualenv's bin directory).
PLANEXE = [sys.executable, "-c", "from planexe_assets.cli.app import app; app(prog_name='planexe')"]
MODULE = ["-m", "planexe_assets.definitions"]
PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."
ALL_STEPS = [s.name for s in pipeline_steps()]
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

pytestmark = pytest.mark.slow


class CliEnv:
    """A temporary PLANEXE_HOME + DAGSTER_HOME + SQLite database, and helpers to use them."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "planexe_home"
        self.dagster_home = root / "dagster_home"
        self.dagster_home.mkdir(parents=True)
        (self.dagster_home / "dagster.yaml").write_bytes(LOCAL_CONFIG.read_bytes())
        self.url = f"sqlite:///{root / 'app.db'}"
        migrate.upgrade(self.url)
        self.db = DatabaseService(make_engine(self.url))
        self.store = PlanStore(self.db, self.home / "runs")
        self.env = {
            **os.environ,
            "PLANEXE_HOME": str(self.home),
            "DAGSTER_HOME": str(self.dagster_home),
            "DATABASE_URL": self.url,
        }
        self.env.pop("PLANEXE_TEST_POSTGRES_URL", None)
        self._instance: DagsterInstance | None = None

    @property
    def instance(self) -> DagsterInstance:
        if self._instance is None:
            self._instance = DagsterInstance.from_config(str(self.dagster_home))
        return self._instance

    def create(self, plan_id: str, add_partition: bool = True) -> None:
        create_plan(
            self.db,
            PlanRequest(prompt=PROMPT, model="offline", fast=True, plan_id=plan_id),
            runs_root=self.home / "runs",
        )
        if add_partition:
            self.instance.add_dynamic_partitions("plans", [plan_id])

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def latest_run(self):
        return self.instance.get_run_records(limit=1)[0].dagster_run

    def events(self, run_id: str, event_type: DagsterEventType) -> list:
        records = self.instance.get_records_for_run(run_id, of_type=event_type).records
        return [r.event_log_entry.dagster_event for r in records]

    def materialized(self, run_id: str) -> set[str]:
        return {e.asset_key.path[-1] for e in self.events(run_id, DagsterEventType.ASSET_MATERIALIZATION)}

    def failed_checks(self, run_id: str) -> list[str]:
        evaluations = [
            e.event_specific_data for e in self.events(run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        assert evaluations, "the run evaluated no asset checks"
        return [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed]

    def rows(self, plan_id: str) -> dict:
        return {r.filename: r for r in self.db.get_plan_content(plan_id)}

    def assert_files_match_rows(self, plan_id: str) -> None:
        for name in ALL_STEPS:
            step = STEP_BY_NAME[name]
            verified = verify_files(self.store, plan_id, step)
            assert verified.passed, verified.all_problems()
            assert verify_json(step, verified.contents) == []
        on_disk = {p.name for p in self.store.run_dir(plan_id).iterdir()}
        assert on_disk == set(self.rows(plan_id)), on_disk ^ set(self.rows(plan_id))


def _said(done: subprocess.CompletedProcess) -> str:
    return (done.stdout + done.stderr)[-4000:]


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> CliEnv:
    env = CliEnv(tmp_path_factory.mktemp("dagster_cli"))
    yield env
    env.db.close()


@pytest.fixture(scope="module")
def executed(cli):
    """``dagster job execute`` of a whole plan (shared by the re-run tests below)."""
    cli.create("cli_job")
    done = cli.run(
        DAGSTER,
        "job",
        "execute",
        *MODULE,
        "-j",
        "full_plan_job",
        "--tags",
        json.dumps({"dagster/partition": "cli_job"}),
    )
    return done, cli.latest_run()


def test_job_execute_runs_the_whole_plan(cli, executed):
    done, run = executed
    assert done.returncode == 0, _said(done)
    assert run.status == DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == "cli_job"
    assert cli.materialized(run.run_id) == set(ALL_STEPS)
    assert cli.failed_checks(run.run_id) == []
    plan = cli.db.get_plan("cli_job")
    assert plan.status == "completed" and plan.progress_percentage == 100
    assert plan.last_run_id == run.run_id
    cli.assert_files_match_rows("cli_job")
    assert (cli.store.run_dir("cli_job") / step_file("report")).stat().st_size > 10_000
    # Materialised per plan: the partition, not the whole asset, is what the instance records.
    event = cli.instance.get_latest_materialization_event(AssetKey("report"))
    assert event.asset_materialization.partition == "cli_job"


def test_asset_materialize_runs_only_the_selected_assets(cli):
    cli.create("cli_assets")
    selected = ["start_time", "setup", "identify_purpose", "plan_type"]
    done = cli.run(
        DAGSTER, "asset", "materialize", *MODULE, "--select", ",".join(selected), "--partition", "cli_assets"
    )
    assert done.returncode == 0, _said(done)
    run = cli.latest_run()
    assert run.status == DagsterRunStatus.SUCCESS
    assert cli.materialized(run.run_id) == set(selected)
    assert cli.failed_checks(run.run_id) == []
    expected = {n for s in selected for n in STEP_BY_NAME[s].filenames}
    assert set(cli.rows("cli_assets")) == expected
    assert {p.name for p in cli.store.run_dir("cli_assets").iterdir()} == expected
    assert cli.db.get_plan("cli_assets").progress_message == f"{len(selected)} of {len(ALL_STEPS)} steps"


def test_a_partition_without_a_plan_row_is_refused_before_any_step(cli):
    """Dagster's tools take any partition key. A run for a key with no plan behind it fails at once,
    before its resources are set up, saying what to do once and without a traceback (it used to say
    it four times in 227 lines). (A plan row without a partition gets its partition at that point
    instead: tests/test_run_partitions.py runs that case.)"""
    ghost = cli.run(
        DAGSTER,
        "job",
        "execute",
        *MODULE,
        "-j",
        "full_plan_job",
        "--tags",
        json.dumps({"dagster/partition": "ghost_plan"}),
    )
    assert ghost.returncode != 0
    said = " ".join((ghost.stdout + ghost.stderr).split())
    assert said.count("ghost_plan, which has no row in plans; create the plan first") == 1, said
    assert "Traceback" not in said and len((ghost.stdout + ghost.stderr).splitlines()) < 40, said
    run = cli.latest_run()
    assert run.status == DagsterRunStatus.FAILURE and cli.materialized(run.run_id) == set()
    assert not cli.instance.has_dynamic_partition("plans", "ghost_plan")
    assert not (cli.home / "runs" / "ghost_plan").exists()


# -- re-running part of a finished plan -------------------------------------------------------------


def _descendants(name: str) -> set[str]:
    found = {name}
    for step in pipeline_steps():  # topological order
        if any(d in found for d in step.deps):
            found.add(step.name)
    return found


def test_rematerializing_one_asset_rewrites_its_rows_in_place(cli, executed):
    assert executed[0].returncode == 0, _said(executed[0])
    before = cli.rows("cli_job")
    done = cli.run(
        DAGSTER, "asset", "materialize", *MODULE, "--select", "plan_type", "--partition", "cli_job"
    )
    assert done.returncode == 0, _said(done)
    run = cli.latest_run()
    assert cli.materialized(run.run_id) == {"plan_type"}
    after = cli.rows("cli_job")
    # The completion marker is dropped when a run starts working on the plan and written again when
    # every step is stored (runner.py); every output row keeps its id.
    outputs = set(before) - {PIPELINE_COMPLETE_FILENAME}
    assert set(after) == set(before), "rows appeared or disappeared"
    assert {n: after[n].id for n in outputs} == {n: before[n].id for n in outputs}, (
        "rows were not updated in place"
    )
    own = set(STEP_BY_NAME["plan_type"].filenames)
    assert {n for n in outputs if after[n].run_id == run.run_id} == own
    assert all(after[n].run_id == before[n].run_id for n in outputs - own)
    cli.assert_files_match_rows("cli_job")


def test_rematerializing_an_asset_and_its_downstream_touches_nothing_upstream(cli, executed):
    assert executed[0].returncode == 0, _said(executed[0])
    before = cli.rows("cli_job")
    done = cli.run(
        DAGSTER, "asset", "materialize", *MODULE, "--select", "plan_type*", "--partition", "cli_job"
    )
    assert done.returncode == 0, _said(done)
    run = cli.latest_run()
    redone = _descendants("plan_type")
    assert cli.materialized(run.run_id) == redone
    assert {"setup", "identify_purpose", "redline_gate", "premise_attack", "start_time"}.isdisjoint(redone)
    assert cli.failed_checks(run.run_id) == []
    after = cli.rows("cli_job")
    # Same set of files and the same row ids; per-item files may differ in number between runs.
    fixed = {n for s in pipeline_steps() for n in s.filenames}
    assert {n: after[n].id for n in fixed} == {n: before[n].id for n in fixed}
    assert len(after) == len(cli.db.get_plan_files("cli_job")), "plan_files and plan_content disagree"
    rewritten = {n for s in redone for n in STEP_BY_NAME[s].filenames}
    assert all(after[n].run_id == run.run_id for n in rewritten)
    assert all(after[n].run_id == before[n].run_id for n in fixed - rewritten)
    cli.assert_files_match_rows("cli_job")
    assert cli.db.get_plan("cli_job").status == "completed"


def test_planexe_resume_redoes_only_the_missing_step_and_its_downstream(cli, executed):
    assert executed[0].returncode == 0, _said(executed[0])
    lost = STEP_BY_NAME["swot_analysis"]
    for name in lost.filenames:  # as if the step had failed: neither file nor row
        (cli.store.run_dir("cli_job") / name).unlink()
    cli.db.delete_plan_content("cli_job", lost.filenames)
    before = cli.rows("cli_job")

    done = cli.run(*PLANEXE, "resume", "cli_job", "--quiet")
    assert done.returncode == 0, _said(done)
    run = cli.latest_run()
    redone = _descendants("swot_analysis")
    assert cli.materialized(run.run_id) == redone
    assert f"materialising {len(redone)} step(s)" in " ".join(done.stdout.split())
    after = cli.rows("cli_job")
    assert set(lost.filenames) <= set(after)
    untouched = {n for s in pipeline_steps() if s.name not in redone for n in s.filenames}
    assert all(after[n].id == before[n].id and after[n].run_id == before[n].run_id for n in untouched)
    assert all(after[n].id == before[n].id for n in before if n in after and n != PIPELINE_COMPLETE_FILENAME)
    cli.assert_files_match_rows("cli_job")
    assert cli.db.get_plan("cli_job").status == "completed"

    nothing = cli.run(*PLANEXE, "resume", "cli_job", "--quiet")
    assert nothing.returncode == 0 and "every step is already materialised" in nothing.stdout


# -- backfill through the daemon ------------------------------------------------------------------


def _stop_group(process: subprocess.Popen) -> None:
    """Stop the daemon and the processes it started (its own process group, made at start)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)  # the daemon shuts down on SIGINT
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_job_backfill_of_two_plans_runs_through_the_daemon(cli, tmp_path):
    from planexe_assets.dagster_defs.sensors import LAUNCH_SENSOR_NAME

    plans = ["backfill_a", "backfill_b"]
    for plan_id in plans:
        cli.create(plan_id)
    # These plans are created pending, which the launch sensor would also pick up; this test is
    # about the backfill, so the operator switches the sensor off first (state kept in the instance).
    stopped = cli.run(DAGSTER, "sensor", "stop", LAUNCH_SENSOR_NAME, *MODULE)
    assert stopped.returncode == 0, _said(stopped)

    log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115 - closed in finally
    daemon = subprocess.Popen(
        [DAEMON, "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=cli.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so the runs it launches stop with it
    )
    try:
        done = cli.run(
            DAGSTER,
            "job",
            "backfill",
            *MODULE,
            "-j",
            "full_plan_job",
            "--partitions",
            ",".join(plans),
            "--noprompt",
        )
        assert done.returncode == 0, _said(done)
        match = re.search(r"Launched backfill job `([^`]+)`", done.stdout)
        assert match, done.stdout
        backfill_id = match.group(1)

        deadline = time.monotonic() + 900
        while True:
            runs = cli.instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
            if len(runs) == len(plans) and all(r.status in TERMINAL for r in runs):
                break
            assert daemon.poll() is None, (
                "the daemon exited: " + (tmp_path / "daemon.log").read_text()[-3000:]
            )
            assert time.monotonic() < deadline, f"backfill runs still {[r.status for r in runs]}"
            time.sleep(2)
    finally:
        _stop_group(daemon)
        log.close()

    assert sorted(r.tags["dagster/partition"] for r in runs) == plans
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), [(r.run_id, r.status) for r in runs]
    for run in runs:
        assert cli.materialized(run.run_id) == set(ALL_STEPS)
        assert cli.failed_checks(run.run_id) == []
    for plan_id in plans:
        plan = cli.db.get_plan(plan_id)
        assert plan.status == "completed", (plan_id, plan.status, plan.error_message)
        assert plan.last_run_id in {r.run_id for r in runs}
        cli.assert_files_match_rows(plan_id)
