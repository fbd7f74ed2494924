"""The thread executor of ``full_plan_job`` (planexe_assets/dagster_defs/executor.py).

Small jobs of plain assets show the executor's contract: independent steps really run at the same
time, ``max_concurrent`` bounds them, a failed step's downstream steps never start while independent
ones finish, Dagster's retries work, and the values and materialisations equal those of Dagster's
in-process executor. The plan pipeline itself is covered below and in test_pipeline_e2e.py (whose
runs use this executor by default).
"""

import re
import threading
import time

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    IOManager,
    RetryRequested,
    asset,
    define_asset_job,
    io_manager,
    reconstructable,
)
from dagster._core.execution.api import execute_run
from dagster._core.execution.retries import RetryMode

from planexe_assets.core import step_file
from planexe_assets.dagster_defs.executor import (
    DEFAULT_MAX_CONCURRENT,
    MAX_CONCURRENT_ENV,
    ThreadedStepExecutor,
    default_max_concurrent,
    planexe_executor,
)
from planexe_assets.dagster_defs.launch import execution_run_config

# -- a small job ----------------------------------------------------------------------------------

STORE: dict[str, object] = {}
STATE: dict[str, object] = {}


class _MemoryIOManager(IOManager):
    def handle_output(self, context, obj):
        STORE[context.asset_key.to_user_string()] = obj

    def load_input(self, context):
        return STORE[context.upstream_output.asset_key.to_user_string()]


@io_manager
def memory_io_manager(_):
    return _MemoryIOManager()


def _track(name: str) -> None:
    """Count the steps running right now and remember the peak."""
    with STATE["lock"]:
        STATE["running"] += 1
        STATE["peak"] = max(STATE["peak"], STATE["running"])
        STATE["order"].append(name)


def _untrack() -> None:
    with STATE["lock"]:
        STATE["running"] -= 1


def _reset(barrier_parties: int = 3, barrier_timeout: float = 10.0) -> None:
    STORE.clear()
    STATE.clear()
    STATE.update(
        lock=threading.Lock(),
        running=0,
        peak=0,
        order=[],
        barrier=threading.Barrier(barrier_parties, timeout=barrier_timeout),
        fail=set(),
        retry_once=set(),
        attempts={},
        sleep=0.0,
    )


def _body(name: str, value: int, wait_at_barrier: bool = False) -> int:
    _track(name)
    try:
        attempts = STATE["attempts"]
        attempts[name] = attempts.get(name, 0) + 1
        if name in STATE["fail"]:
            raise RuntimeError(f"{name} failed on purpose")
        if name in STATE["retry_once"] and attempts[name] == 1:
            raise RetryRequested(max_retries=1)
        if wait_at_barrier:
            STATE["barrier"].wait()  # returns only once every party is waiting at the same time
        if STATE["sleep"]:
            time.sleep(STATE["sleep"])
        return value
    finally:
        _untrack()


@asset
def root() -> int:
    return _body("root", 1)


@asset
def left(root: int) -> int:
    return _body("left", root + 10, wait_at_barrier=True)


@asset
def middle(root: int) -> int:
    return _body("middle", root + 20, wait_at_barrier=True)


@asset
def right(root: int) -> int:
    return _body("right", root + 30, wait_at_barrier=True)


@asset
def after_left(context: AssetExecutionContext, left: int) -> int:
    context.add_output_metadata({"seen": left})
    return _body("after_left", left * 2)


@asset
def total(after_left: int, middle: int, right: int) -> int:
    return _body("total", after_left + middle + right)


FANOUT = [f"leaf_{i}" for i in range(6)]


def _leaf(name: str):
    @asset(name=name)
    def _asset(root: int) -> int:
        return _body(name, root)

    return _asset


def diamond_job():
    defs = Definitions(
        assets=[root, left, middle, right, after_left, total],
        jobs=[define_asset_job("diamond", executor_def=planexe_executor)],
        resources={"io_manager": memory_io_manager},
    )
    return defs.resolve_job_def("diamond")


def fanout_job():
    defs = Definitions(
        assets=[root, *[_leaf(n) for n in FANOUT]],
        jobs=[define_asset_job("fanout", executor_def=planexe_executor)],
        resources={"io_manager": memory_io_manager},
    )
    return defs.resolve_job_def("fanout")


def _run(job_fn, executor: str = "threads", max_concurrent: int | None = None):
    instance = DagsterInstance.ephemeral()
    recon = reconstructable(job_fn)
    job_def = recon.get_definition()
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config={"execution": execution_run_config(executor, max_concurrent)},
        job_code_origin=recon.get_python_origin(),
    )
    result = execute_run(recon, run, instance)
    return result, instance


def _events(result, kind: DagsterEventType) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type == kind]


# -- the contract ---------------------------------------------------------------------------------


def test_independent_steps_run_at_the_same_time():
    _reset(barrier_parties=3)
    result, _ = _run(diamond_job)
    assert result.success
    # left, middle and right each wait at a three-party barrier: they got past it, so all three were
    # running at once.
    assert STATE["peak"] >= 3
    assert STORE["total"] == (11 * 2) + 21 + 31


def test_in_process_executor_runs_one_step_at_a_time():
    """The same job under Dagster's in-process executor cannot pass the barrier (the contrast that
    shows the barrier test measures concurrency)."""
    _reset(barrier_parties=3, barrier_timeout=0.5)
    result, _ = _run(diamond_job, executor="in_process")
    assert not result.success
    assert STATE["peak"] == 1
    assert set(_events(result, DagsterEventType.STEP_FAILURE)) >= {"left"}


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_max_concurrent_bounds_the_steps_in_flight(limit):
    _reset()
    STATE["sleep"] = 0.15
    result, _ = _run(fanout_job, max_concurrent=limit)
    assert result.success
    assert STATE["peak"] == limit
    assert sorted(STORE) == sorted(["root", *FANOUT])


def test_failure_skips_downstream_and_lets_independent_steps_finish():
    _reset(barrier_parties=2)  # left fails before the barrier: middle and right meet there
    STATE["fail"] = {"left"}
    result, instance = _run(diamond_job)
    assert not result.success
    assert _events(result, DagsterEventType.STEP_FAILURE) == ["left"]
    started = set(_events(result, DagsterEventType.STEP_START))
    assert "after_left" not in started and "total" not in started
    assert set(_events(result, DagsterEventType.STEP_SUCCESS)) == {"root", "middle", "right"}
    assert "after_left" not in STORE and "total" not in STORE
    assert instance.get_latest_materialization_event(AssetKey("after_left")) is None
    run = instance.get_run_by_id(result.run_id)
    assert run.is_failure


def test_retry_requested_by_a_step_is_honoured():
    _reset(barrier_parties=3)
    STATE["retry_once"] = {"middle"}
    # middle's first attempt raises before the barrier; left and right wait there for its retry.
    result, _ = _run(diamond_job)
    assert result.success
    assert STATE["attempts"]["middle"] == 2
    assert _events(result, DagsterEventType.STEP_UP_FOR_RETRY) == ["middle"]
    assert STORE["total"] == 22 + 21 + 31


def test_a_retry_started_before_the_failed_attempts_worker_finished(monkeypatch):
    """The failed attempt's worker is still busy after its STEP_UP_FOR_RETRY (its hooks run) when the
    retry, with no delay, is already started: the late end of the first worker must not be taken for
    the end of the second attempt (which made the run fail with DagsterUnknownStepStateError)."""
    from planexe_assets.dagster_defs import executor as executor_module

    real_trigger_hook = executor_module.trigger_hook

    def slow_after_a_retry_request(step_context, step_events):
        if any(event.is_step_up_for_retry for event in step_events):
            time.sleep(0.5)  # the run's thread meanwhile starts the retry
        return real_trigger_hook(step_context, step_events)

    monkeypatch.setattr(executor_module, "trigger_hook", slow_after_a_retry_request)
    _reset(barrier_parties=3)
    STATE["retry_once"] = {"middle"}
    STATE["sleep"] = 1.0  # the second attempt is still running when the first worker ends
    result, _ = _run(diamond_job)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert STATE["attempts"]["middle"] == 2
    assert STORE["total"] == 22 + 21 + 31


def test_results_equal_the_in_process_executor():
    def outcome(executor: str) -> tuple[dict, dict, set]:
        _reset(barrier_parties=1)  # no waiting: both executors can run the job
        result, instance = _run(diamond_job, executor=executor)
        assert result.success
        values = dict(STORE)
        metadata = {
            key: {
                k: v.value
                for k, v in instance.get_latest_materialization_event(
                    AssetKey(key)
                ).asset_materialization.metadata.items()
            }
            for key in values
        }
        return values, metadata, set(_events(result, DagsterEventType.ASSET_MATERIALIZATION))

    assert outcome("threads") == outcome("in_process")


def test_configuration():
    assert default_max_concurrent() == DEFAULT_MAX_CONCURRENT
    assert execution_run_config("threads", 3) == {"config": {"threads": {"max_concurrent": 3}}}
    assert execution_run_config("in_process") == {"config": {"in_process": {}}}
    with pytest.raises(ValueError, match="unknown executor"):
        execution_run_config("processes")
    with pytest.raises(ValueError, match="at least 1"):
        execution_run_config("threads", 0)
    with pytest.raises(ValueError, match="at least 1"):
        ThreadedStepExecutor(retries=RetryMode.DISABLED, max_concurrent=0)


@pytest.mark.parametrize("raw, expected", [("3", 3), (" 12 ", 12), ("", DEFAULT_MAX_CONCURRENT)])
def test_max_concurrent_from_environment(monkeypatch, raw, expected):
    monkeypatch.setenv(MAX_CONCURRENT_ENV, raw)
    assert default_max_concurrent() == expected


@pytest.mark.parametrize("raw", ["0", "-2", "many"])
def test_bad_max_concurrent_environment_is_refused(monkeypatch, raw):
    monkeypatch.setenv(MAX_CONCURRENT_ENV, raw)
    with pytest.raises(ValueError, match=MAX_CONCURRENT_ENV):
        default_max_concurrent()


# -- the plan pipeline under concurrent steps -------------------------------------------------------

PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."


@pytest.mark.slow
def test_a_step_failing_beside_running_steps_leaves_the_plan_failed(app_db, monkeypatch):
    """Re-running a finished plan where one step fails while an independent step is still running:
    the independent step's progress update must not turn the failed plan back into a completed one,
    even though every file of the earlier run is still stored."""
    import planexe_assets.steps as steps_pkg
    from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, StepError
    from planexe_assets.dagster_defs.launch import run_plan_in_process
    from planexe_assets.lifecycle.plans import PlanRequest, create_plan
    from planexe_assets.steps import implemented_steps

    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="again", fast=True))
    instance = DagsterInstance.ephemeral()
    first = run_plan_in_process("again", instance, log_level="ERROR")
    assert first.success and app_db.get_plan("again").status == "completed"

    registry = implemented_steps()
    slow_premise = registry["premise_attack"]

    def broken(ctx, inputs):
        raise StepError("plan_type: injected failure")

    def slow(ctx, inputs):
        time.sleep(1.5)  # still running when plan_type has failed (and used up its retries)
        return slow_premise(ctx, inputs)

    monkeypatch.setitem(steps_pkg._REGISTRY, "plan_type", broken)
    monkeypatch.setitem(steps_pkg._REGISTRY, "premise_attack", slow)
    second = run_plan_in_process("again", instance, log_level="ERROR")
    assert not second.success and set(second.failed_steps) == {"plan_type"}
    plan = app_db.get_plan("again")
    assert plan.status == "failed", plan.status
    assert plan.last_run_id == second.run_id and "injected failure" in plan.error_message
    assert app_db.get_plan_content_by_filename("again", PIPELINE_COMPLETE_FILENAME) is None
    # premise_attack did finish, in this run, beside the failure.
    assert {r.run_id for r in app_db.get_plan_content("again") if r.filename.startswith("002-3-")} == {
        second.run_id
    }


_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_DURATION = re.compile(r'("duration[A-Za-z_]*"\s*:\s*)[0-9.eE+-]+')
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: UTC|Z)?")
# Files that record when or how fast the run went (the same facts, other values).
_TIMING_FILES = {step_file("start_time")}


def _normalised(text: str) -> str:
    order: dict[str, int] = {}
    text = _UUID.sub(lambda m: f"<id{order.setdefault(m.group(0), len(order))}>", text)
    text = _TIMESTAMP.sub("<time>", text)  # e.g. the report's "Plan created ..." line
    return _DURATION.sub(r"\g<1>0", text)


@pytest.mark.slow
def test_plan_outputs_equal_in_process_execution_and_in_flight_limit_holds(app_db, tmp_path, monkeypatch):
    """The whole pipeline under both executors, same prompt, same (deterministic) model: the same
    files with the same contents, ids aside. Under the thread executor, concurrent fan-outs of
    concurrent steps never exceed the LLM executor's per-endpoint in-flight limit."""
    from bench.environment import write_llm_config
    from bench.latency_server import LatencyModel, LatencyServer
    from planexe_assets.dagster_defs.launch import run_plan_in_process
    from planexe_assets.lifecycle.plans import PlanRequest, create_plan

    server = LatencyServer(LatencyModel.parse("fixed:0.03"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    limit = 3
    try:
        config = write_llm_config(
            tmp_path / "llm_config.json", f"http://127.0.0.1:{server.port}/v1", in_flight=limit
        )
        monkeypatch.setenv("PLANEXE_LLM_CONFIG", str(config))
        contents = {}
        for executor in ("in_process", "threads"):
            plan_id = f"same_{executor}"
            create_plan(app_db, PlanRequest(prompt=PROMPT, model="bench-latency", plan_id=plan_id, fast=True))
            before = server.stats.snapshot()["requests"]
            outcome = run_plan_in_process(
                plan_id, DagsterInstance.ephemeral(), log_level="ERROR", executor=executor
            )
            assert outcome.success, outcome.failed_steps
            assert app_db.get_plan(plan_id).status == "completed"
            contents[executor] = {
                row.filename: _normalised(row.content)
                for row in app_db.get_plan_content(plan_id)
                if row.filename not in _TIMING_FILES
            }
            calls = len(app_db.get_plan_interactions(plan_id))
            assert server.stats.snapshot()["requests"] - before == calls
        stats = server.stats.snapshot()
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(contents["threads"]) == sorted(contents["in_process"])
    different = [
        name for name in contents["threads"] if contents["threads"][name] != contents["in_process"][name]
    ]
    assert different == []
    assert 2 <= stats["peak_in_flight"] <= limit


@pytest.mark.slow
def test_interrupt_stops_new_steps_and_the_steps_in_flight(tmp_path):
    """SIGINT to a process running a plan (as ``dagster run terminate`` delivers it to a run worker):
    no step starts afterwards, the steps in flight stop at their next LLM attempt, the run ends
    canceled and the plan is not left looking complete."""
    import signal
    import subprocess
    import sys

    from dagster import DagsterRunStatus

    from bench.environment import REPO, create_bench_plan, make_home
    from bench.latency_server import LatencyModel, LatencyServer
    from resources.database import get_database_service

    server = LatencyServer(LatencyModel.parse("fixed:0.4"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    home = make_home(base_url=f"http://127.0.0.1:{server.port}/v1", in_flight=8, root=tmp_path / "home")
    try:
        create_bench_plan(home, "stopme", PROMPT)
        db = get_database_service(home.app_db_url)
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.run_plan", "dagster", "stopme"],
            cwd=REPO,
            env=home.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(db.get_plan_interactions("stopme")) < 6:
            assert child.poll() is None, child.communicate()
            time.sleep(0.2)
        # What a termination request does: mark the run CANCELING, then signal its process.
        instance = home.instance()
        (run,) = instance.get_runs()
        instance.report_run_canceling(run)
        child.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        out, err = child.communicate(timeout=120)
        assert child.returncode != 0, out
        assert time.monotonic() - interrupted_at < 60
        run = instance.get_run_by_id(run.run_id)
        assert run.status == DagsterRunStatus.CANCELED, (run.status, err[-2000:])
        plan = db.get_plan("stopme")
        assert plan.status in ("stopped", "running", "failed") and plan.status != "completed"
        assert plan.progress_percentage < 100
        # Nothing started after the stop was seen: every step that started also ended (success or
        # failure), none is left half-way.
        records = instance.get_records_for_run(run.run_id, limit=100000).records
        started = {
            r.event_log_entry.step_key
            for r in records
            if r.event_log_entry.dagster_event_type == DagsterEventType.STEP_START
        }
        ended = {
            r.event_log_entry.step_key
            for r in records
            if r.event_log_entry.dagster_event_type
            in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE)
        }
        assert started and started == ended
        assert "report" not in started
    finally:
        server.shutdown()
        server.server_close()
        home.close()


@pytest.mark.parametrize("raw, expected", [("", 64), ("1", 1), ("32", 32)])
def test_fanout_concurrency_setting(monkeypatch, raw, expected):
    from planexe_assets.lifecycle.runner import FANOUT_ENV, fanout_concurrency

    monkeypatch.setenv(FANOUT_ENV, raw)
    assert fanout_concurrency() == expected


@pytest.mark.parametrize("raw", ["0", "-1", "lots"])
def test_bad_fanout_concurrency_is_refused(monkeypatch, raw):
    from planexe_assets.core import StepError
    from planexe_assets.lifecycle.runner import FANOUT_ENV, fanout_concurrency

    monkeypatch.setenv(FANOUT_ENV, raw)
    with pytest.raises(StepError, match=FANOUT_ENV):
        fanout_concurrency()
