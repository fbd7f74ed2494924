"""The pooled Dagster instance storage (planexe_assets/dagster_defs/instance_storage.py), SQLite and PostgreSQL."""

import multiprocessing
import time

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    DynamicPartitionsDefinition,
    asset,
    define_asset_job,
)

from planexe_assets.dagster_defs.instance_storage import (
    PlanexePostgresStorage,
    PlanexeSqliteStorage,
    PooledSqliteEventLogStorage,
    storage_config_yaml,
)

parts = DynamicPartitionsDefinition(name="things")


@asset(partitions_def=parts)
def first() -> int:
    return 1


@asset(partitions_def=parts)
def second(first: int) -> int:
    return first + 1


def _defs() -> Definitions:
    return Definitions(assets=[first, second], jobs=[define_asset_job("both", partitions_def=None)])


def _home(tmp_path, storage_block: str):
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(storage_block + "telemetry:\n  enabled: false\n", encoding="utf-8")
    return home


def _materialise(instance, key: str) -> None:
    job = _defs().resolve_job_def("both")
    if not instance.has_dynamic_partition("things", key):
        instance.add_dynamic_partitions("things", [key])
    result = job.execute_in_process(instance=instance, partition_key=key)
    assert result.success


def _exercise(home) -> None:
    """Runs, events, materialisations and partitions written by one instance, read by a second one
    (another process would build its own), then the partition cache and its invalidation."""
    with DagsterInstance.from_config(str(home)) as instance:
        _materialise(instance, "a")
        _materialise(instance, "b")
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.is_success for r in runs)
    with DagsterInstance.from_config(str(home)) as other:
        assert len(other.get_runs()) == 2
        event = other.get_latest_materialization_event(AssetKey("second"))
        assert event is not None and event.asset_materialization.partition == "b"
        assert set(other.get_dynamic_partitions("things")) == {"a", "b"}
        storage = other.event_log_storage
        assert storage.has_dynamic_partition("things", "a")
        assert storage.has_dynamic_partition("things", "a")  # answered from the cache
        other.delete_dynamic_partition("things", "a")
        assert not storage.has_dynamic_partition("things", "a")  # deleting cleared the cache
        assert not storage.has_dynamic_partition("things", "zzz")


def test_sqlite_storage_round_trip(tmp_path, monkeypatch):
    home = _home(tmp_path, storage_config_yaml("sqlite", base_dir=str(tmp_path / "dagster_home" / "storage")))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    _exercise(home)
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(
            instance.get_ref().storage_data.rehydrate(as_type=PlanexeSqliteStorage), PlanexeSqliteStorage
        )
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)


def test_sqlite_storage_defaults_to_dagster_home_and_reads_stock_data(tmp_path, monkeypatch):
    """Same directories and schema as Dagster's default storage: a home switched over keeps its runs.
    Without base_dir the files go to the instance's own home (no DAGSTER_HOME needed)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with DagsterInstance.from_config(str(home)) as stock:  # no dagster.yaml: Dagster's own SQLite storage
        _materialise(stock, "old")
        old_run = stock.get_runs()[0].run_id
    (home / "dagster.yaml").write_text(
        storage_config_yaml("sqlite") + "telemetry:\n  enabled: false\n", encoding="utf-8"
    )
    with DagsterInstance.from_config(str(home)) as pooled:
        assert isinstance(pooled.event_log_storage, PooledSqliteEventLogStorage)
        assert pooled.get_run_by_id(old_run) is not None
        assert (
            pooled.get_latest_materialization_event(AssetKey("second")).asset_materialization.partition
            == "old"
        )
        _materialise(pooled, "new")
        assert len(pooled.get_runs()) == 2
    assert {"runs", "runs.db"} <= {p.name for p in (home / "history").iterdir()}  # Dagster's own layout


def test_sqlite_storage_refuses_a_bad_synchronous_setting(tmp_path):
    with pytest.raises(Exception, match="synchronous"):
        PlanexeSqliteStorage(str(tmp_path / "s"), synchronous="OFF")


def _write_events(home: str, run_id: str, count: int) -> None:
    """A run worker's part (another process): ``count`` engine events, then the run's end."""
    with DagsterInstance.from_config(home) as instance:
        run = instance.get_run_by_id(run_id)
        for i in range(count):
            instance.report_engine_event(f"event {i}", run)
            time.sleep(0.02)
        instance.report_run_failed(run, "the last event")


def test_sqlite_run_page_watcher_sees_every_event_another_process_writes(tmp_path, monkeypatch):
    """The UI's run page streams a run's events through Dagster's event-log watcher, which reacts to
    changes of the run's ``.db`` file. With connections kept open the events stay in the ``-wal``
    file, and the watcher saw none of them (measured: 0 of 21) until the storage touched the file
    after each write."""
    from dagster._core.test_utils import create_run_for_test

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = _home(tmp_path, storage_config_yaml("sqlite"))
    count = 20
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        run = create_run_for_test(instance, job_name="watched")
        seen: list[str] = []
        instance.watch_event_logs(run.run_id, None, lambda event, _cursor: seen.append(event.message))
        writer = multiprocessing.get_context("spawn").Process(
            target=_write_events, args=(str(home), run.run_id, count)
        )
        writer.start()
        writer.join(timeout=120)
        assert writer.exitcode == 0
        deadline = time.monotonic() + 10
        while len(seen) < count + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(instance.all_logs(run.run_id)) == count + 1
        assert len(seen) == count + 1, f"the watcher saw {len(seen)} of {count + 1} events"
        assert seen[-1] == "the last event"


@pytest.fixture
def postgres_home(tmp_path, postgres_server):
    """(a Dagster home on the project's PostgreSQL storage, its database URL); dropped afterwards."""
    from tests.conftest import create_postgres_database, drop_postgres_database

    url = create_postgres_database(postgres_server, prefix="planexe_dg")
    dagster_url = url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
    try:
        yield _home(tmp_path, storage_config_yaml("postgres", postgres_url=dagster_url)), url
    finally:
        drop_postgres_database(postgres_server, url)


@pytest.mark.postgres
def test_postgres_storage_round_trip(postgres_home):
    home, _url = postgres_home
    _exercise(home)
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(
            instance.get_ref().storage_data.rehydrate(as_type=PlanexePostgresStorage),
            PlanexePostgresStorage,
        )
        engine = instance.event_log_storage._engine
        assert type(engine.pool).__name__ == "QueuePool"
        before = engine.pool.checkedin() + engine.pool.checkedout()
        for _ in range(20):
            instance.get_runs(limit=1)
            instance.event_log_storage.has_dynamic_partition("things", "b")
        # Connections are reused: twenty rounds of calls did not open twenty connections.
        assert engine.pool.checkedin() + engine.pool.checkedout() <= max(before, 1) + 1


@pytest.mark.postgres
def test_postgres_instances_of_one_process_share_their_pools(postgres_home, postgres_server):
    """A Celery worker builds an instance per step (``DagsterInstance.from_ref``) and never disposes
    it: the instances share one pool per storage kind, so the server's connections stay bounded."""
    from sqlalchemy import create_engine, text

    from planexe_assets.dagster_defs.instance_storage import shared_pg_engines

    home, url = postgres_home
    server = create_engine(postgres_server)
    try:
        with DagsterInstance.from_config(str(home)) as first:
            ref = first.get_ref()
        before = shared_pg_engines.open_engines()
        leaked = [DagsterInstance.from_ref(ref) for _ in range(15)]
        for instance in leaked:
            instance.get_runs(limit=1)
            instance.event_log_storage.has_dynamic_partition("things", "b")
        assert shared_pg_engines.open_engines() - before <= 3  # run, event log, schedule
        name = url.rsplit("/", 1)[-1]
        with server.connect() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            ).scalar()
        assert count <= 3 * 4, f"{count} server connections for 15 instances"
        for instance in leaked:
            instance.dispose()
        assert shared_pg_engines.open_engines() == before  # the last one disposed closes the pools
    finally:
        server.dispose()


def _race_two_claims(instance, competitor) -> tuple[str, str]:
    """Two claims of the last free slot interleaved as two processes can interleave them: the
    competitor claims between this instance's select of a free slot and its update of it.
    Returns (this claim's slot status, the competitor's)."""
    storage = instance.event_log_storage
    storage.set_concurrency_slots("llm", 1)
    # Both steps were assigned the one slot: two processes asked "is a slot unassigned?" at once (the
    # queue's own check-then-insert race). Dagster relies on the slot rows to settle it.
    for run_id, step_key in (("run_a", "step_a"), ("run_b", "step_b")):
        storage.add_pending_step("llm", run_id, step_key, should_assign=True)
    real = storage.index_connection
    outcome: dict[str, str] = {}

    class Interleaved:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, statement, *args, **kwargs):
            is_update = str(statement).lstrip().upper().startswith("UPDATE")
            if is_update and "competitor" not in outcome:
                status = competitor.event_log_storage.claim_concurrency_slot("llm", "run_b", "step_b")
                outcome["competitor"] = status.slot_status.name
            return self.conn.execute(statement, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.conn, name)

    from contextlib import contextmanager

    @contextmanager
    def interleaved():
        with real() as conn:
            yield Interleaved(conn)

    storage.index_connection = interleaved
    try:
        mine = storage.claim_concurrency_slot("llm", "run_a", "step_a").slot_status.name
    finally:
        storage.index_connection = real
    held = storage.get_concurrency_info("llm").claimed_slots
    assert [(s.run_id, s.step_key) for s in held] == [("run_b", "step_b")]
    return mine, outcome["competitor"]


def test_a_pool_slot_is_never_claimed_twice_sqlite(tmp_path, monkeypatch):
    """Dagster's claim selects a free slot row and then updates it by id, under autocommit: two
    processes could both take one slot, and the benchmark saw 5 LLM steps at once under a limit of 4.
    The pooled storage updates the row only while it is still free."""
    home = _home(tmp_path, storage_config_yaml("sqlite"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.from_config(str(home)) as instance, DagsterInstance.from_config(str(home)) as other:
        assert _race_two_claims(instance, other) == ("BLOCKED", "CLAIMED")


@pytest.mark.postgres
def test_a_pool_slot_is_never_claimed_twice_postgres(postgres_home):
    home, _url = postgres_home
    with DagsterInstance.from_config(str(home)) as instance, DagsterInstance.from_config(str(home)) as other:
        assert _race_two_claims(instance, other) == ("BLOCKED", "CLAIMED")


def _open_instance(home: str, ready) -> None:
    ready.wait()
    with DagsterInstance.from_config(home) as instance:
        instance.get_runs(limit=1)


def test_processes_opening_a_fresh_home_at_once_create_its_databases_once(tmp_path):
    """Seen in a full-suite run: a plan worker and the test polling its run opened a fresh Dagster
    home together, both created the runs database and stamped it, and every later open failed with
    "Version table 'alembic_version' has more than one head present". Creation is one at a time."""
    import sqlite3

    home = _home(tmp_path, storage_config_yaml("sqlite"))
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    openers = [context.Process(target=_open_instance, args=(str(home), ready)) for _ in range(6)]
    for process in openers:
        process.start()
    ready.set()
    for process in openers:
        process.join(120)
    assert [p.exitcode for p in openers] == [0] * 6
    for database in home.rglob("*.db"):
        with sqlite3.connect(database) as conn:
            tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
            if "alembic_version" in tables:
                assert conn.execute("select count(*) from alembic_version").fetchone()[0] == 1, database
