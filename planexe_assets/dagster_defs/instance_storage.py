"""Dagster instance storage that keeps its database connections: ``storage: custom:`` in dagster.yaml.

A run of ``full_plan_job`` writes about 1,500 events and makes about 7,000 storage calls (61 steps,
each with its inputs, outputs, materialisation, partition checks and data-version lookups). Dagster's
stock storages open a new connection for every call: the SQLite ones even build a new SQLAlchemy
engine per call (measured: 8,200 engines and connections per run, about two thirds of the run's
orchestration time at zero LLM latency), and dagster-postgres uses ``NullPool`` (a new authenticated
server connection per call, about 3,300 per run). These subclasses change only that:

- ``PlanexeSqliteStorage``: the same files as Dagster's default SQLite storage (``base_dir``, default
  ``$DAGSTER_HOME``, where Dagster keeps them when dagster.yaml names no storage), but each database
  file's engine is made once and keeps a small pool of connections (the per-run event-log shards in
  a bounded LRU, disposed when evicted or wiped), and commits sync the WAL at checkpoints
  (``synchronous``: NORMAL, as the application database does; FULL is Dagster's default). After each
  event it touches the run's ``.db`` file, which Dagster's event-log watcher (the UI's live run
  page) watches: with connections kept open the events would stay in the ``-wal`` file and the run
  page would stop updating (``PooledSqliteEventLogStorage._notify_watchers``);
- ``PlanexePostgresStorage``: dagster-postgres with a ``QueuePool`` (``pool_size``/``max_overflow``,
  pre-ping, recycled hourly) instead of ``NullPool`` for its run, event-log and schedule storages,
  one pool per storage kind and process whatever the number of instances (``_SharedPgEngines``);
- both remember, for ``partition_cache_seconds``, that a dynamic partition exists: Dagster checks the
  run's partition key for every step event and input (about 2,200 checks per run, each one a table
  inspection plus a query). Only positive answers are kept, and adding or deleting partitions through
  this storage clears them.

Everything else (schema, migrations, queries, watchers) is Dagster's. Select them in dagster.yaml:

.. code-block:: yaml

    storage:
      custom:
        module: planexe_assets.dagster_defs.instance_storage
        class: PlanexeSqliteStorage      # or PlanexePostgresStorage (same config as `storage: postgres:`)
        config: {}
"""

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy
import yaml
from dagster import EventLogEntry, Field, IntSource, StringSource
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from planexe_assets.dagster_defs._internals import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    ConcurrencySlotsTable,
    ConcurrencySlotStatus,
    ConfigurableClassData,
    DagsterSqliteStorage,
    MayHaveInstanceWeakref,
    SqliteEventLogStorage,
    SqliteRunStorage,
    SqliteScheduleStorage,
    check,
    create_engine,
    create_pg_engine,
    event_logs_directory,
    get_token_provider_from_config,
    mkdir_p,
    pg_config,
    pg_url_from_config,
    runs_directory,
    schedule_directory,
)

DEFAULT_PARTITION_CACHE_SECONDS = 30.0
SQLITE_ENGINE_CACHE = 16  # per-run event-log shards whose engines stay open
SQLITE_POOL_SIZE = 2
# Dagster's SQLite databases are in WAL mode; NORMAL syncs the WAL at checkpoints instead of at every
# commit (the application database does the same). A power cut can lose the last events, never
# corrupt the files. FULL restores Dagster's default.
DEFAULT_SQLITE_SYNCHRONOUS = "NORMAL"
SQLITE_SYNCHRONOUS_CHOICES = ("NORMAL", "FULL")
POSTGRES_POOL_SIZE = 4
POSTGRES_MAX_OVERFLOW = 12
POSTGRES_POOL_RECYCLE_SECONDS = 3600


class _PartitionExistsCache:
    """Positive answers of ``has_dynamic_partition`` for a few seconds."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], float] = {}

    def get(self, name: str, key: str) -> bool:
        if self.seconds <= 0:
            return False
        with self._lock:
            at = self._known.get((name, key))
            if at is None:
                return False
            if time.monotonic() - at > self.seconds:
                del self._known[(name, key)]
                return False
            return True

    def remember(self, name: str, key: str) -> None:
        if self.seconds > 0:
            with self._lock:
                self._known[(name, key)] = time.monotonic()

    def forget(self, name: str) -> None:
        with self._lock:
            for known in [k for k in self._known if k[0] == name]:
                del self._known[known]


class _PartitionCacheMixin:
    """``has_dynamic_partition`` answered from ``_partition_cache`` when it is a known yes."""

    _partition_cache: _PartitionExistsCache

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        if self._partition_cache.get(partitions_def_name, partition_key):
            return True
        found = super().has_dynamic_partition(partitions_def_name, partition_key)  # type: ignore[misc]
        if found:
            self._partition_cache.remember(partitions_def_name, partition_key)
        return found

    def add_dynamic_partitions(self, partitions_def_name: str, partition_keys: Sequence[str]) -> None:
        self._partition_cache.forget(partitions_def_name)
        super().add_dynamic_partitions(partitions_def_name, partition_keys)  # type: ignore[misc]

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        self._partition_cache.forget(partitions_def_name)
        super().delete_dynamic_partition(partitions_def_name, partition_key)  # type: ignore[misc]


def _sqlite_engine(conn_string: str, synchronous: str):
    engine = create_engine(
        conn_string,
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=4,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )

    @sqlalchemy.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return engine


# -- SQLite -----------------------------------------------------------------------------------------
#
# Without a configured ``base_dir`` the storages are *deferred*: Dagster hands storages to the
# instance it builds, and registers them with it before any use; at registration each one takes its
# directory from the instance's root (the Dagster home, e.g. ``DagsterInstance.from_config(home)``),
# exactly where Dagster's default storage keeps the same files.

DirForRoot = Callable[[str], str]


class _SlotClaimMixin:
    """Takes a concurrency-pool slot only if it is still free when it is written.

    Dagster 1.13 claims a slot by selecting a free slot row ``FOR UPDATE`` and then updating it by id.
    Its storages run with autocommit, so the row lock ends with the select: two processes claiming
    at once can select the same free row and both write it, and the pool then has one step more
    running than its limit (measured on PostgreSQL: 8 processes claiming and freeing a pool of 4
    held 5 slots at once; the benchmark saw 5 LLM steps at once under a limit of 4). Here the update
    takes the row only where it is still free; a claim that loses the race is BLOCKED and Dagster
    asks again, as it does for any step waiting for a slot.
    """

    def _claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str):
        table = ConcurrencySlotsTable
        free = sqlalchemy.and_(
            table.c.concurrency_key == concurrency_key,
            table.c.step_key.is_(None),
            table.c.deleted == False,  # noqa: E712 - a column comparison, not a truth test
        )
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute(sqlalchemy.select(table.c.id).where(free).limit(1)).fetchone()
            if row is None:
                return ConcurrencySlotStatus.BLOCKED
            taken = conn.execute(
                table.update()
                .values(run_id=run_id, step_key=step_key)
                .where(sqlalchemy.and_(table.c.id == row[0], free))
            ).rowcount
        return ConcurrencySlotStatus.CLAIMED if taken else ConcurrencySlotStatus.BLOCKED


class PooledSqliteEventLogStorage(_SlotClaimMixin, _PartitionCacheMixin, SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log with one engine per shard file, kept open (LRU)."""

    synchronous: str = DEFAULT_SQLITE_SYNCHRONOUS

    def __init__(
        self,
        base_dir: str | None,
        inst_data: ConfigurableClassData | None = None,
        partition_cache_seconds: float = DEFAULT_PARTITION_CACHE_SECONDS,
        dir_for_root: DirForRoot | None = None,
    ):
        self._engines: OrderedDict[str, Any] = OrderedDict()
        self._partition_cache = _PartitionExistsCache(partition_cache_seconds)
        self._deferred = (dir_for_root, inst_data) if base_dir is None else None
        if base_dir is None:
            if dir_for_root is None:
                raise check.CheckError("PooledSqliteEventLogStorage needs base_dir or dir_for_root")
            MayHaveInstanceWeakref.__init__(self)
        else:
            super().__init__(base_dir, inst_data)

    def register_instance(self, instance) -> None:
        if self._deferred is not None:
            dir_for_root, inst_data = self._deferred
            self._deferred = None
            SqliteEventLogStorage.__init__(self, dir_for_root(instance.root_directory), inst_data)
        super().register_instance(instance)

    def _engine_for(self, shard: str):
        # Called under self._db_lock.
        engine = self._engines.get(shard)
        if engine is None:
            engine = _sqlite_engine(self.conn_string_for_shard(shard), self.synchronous)
            self._engines[shard] = engine
            while len(self._engines) > SQLITE_ENGINE_CACHE:
                oldest, evicted = next(iter(self._engines.items()))
                if oldest == INDEX_SHARD_NAME:
                    self._engines.move_to_end(oldest)
                    continue
                del self._engines[oldest]
                evicted.dispose()
        else:
            self._engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        with self._db_lock:
            check.str_param(shard, "shard")
            engine = self._engine_for(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def store_event(self, event: EventLogEntry) -> None:
        super().store_event(event)
        if event.run_id:
            self._notify_watchers(event.run_id)

    def _notify_watchers(self, run_id: str) -> None:
        """Touch the run's ``.db`` file once its new event is committed.

        Dagster's event-log watcher (``SqliteEventLogStorageWatchdog``, which streams a run's events
        to the UI's run page) reacts only to changes of ``<run_id>.db``, never of its ``-wal`` file.
        Dagster's own storage closes its connection after every write, and closing the last
        connection checkpoints the WAL into ``<run_id>.db``; with the connections kept open here the
        events stay in ``-wal`` until SQLite's automatic checkpoint (1,000 pages), so the run page
        showed nothing new, or froze mid-run. A new modification time is an inotify attribute
        change, which watchdog reports as a modification: the watcher then reads the committed
        event through its own connection. The write to ``-wal`` itself is no substitute: its
        notification can arrive before the commit is visible in the shared WAL index.
        """
        try:
            os.utime(self.path_for_shard(run_id))
        except OSError:  # deleted meanwhile (wipe, delete_events): nothing left to watch
            pass

    def _dispose_engines(self) -> None:
        lock = getattr(self, "_db_lock", None)
        if lock is None:  # never initialised
            return
        with lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        if self._deferred is None:
            super().dispose()
        self._dispose_engines()


@contextmanager
def _creation_lock(directory: str) -> Iterator[None]:
    """An exclusive lock across processes on ``directory`` (created if missing), for creating its
    SQLite databases."""
    import fcntl

    mkdir_p(directory)
    with open(os.path.join(directory, ".planexe-create.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _PooledSqliteEngine:
    """One engine per storage object, made on first use with the storage's ``synchronous`` setting;
    a deferred storage creates its database at registration (Dagster's ``from_local``)."""

    _conn_string: str
    synchronous: str = DEFAULT_SQLITE_SYNCHRONOUS
    _pooled_engine: Any = None
    _pooled_lock = threading.Lock()
    _dir_for_root: DirForRoot | None = None
    _stock_class: Any = None  # the Dagster class whose from_local creates and migrates the database

    @classmethod
    def deferred(cls, dir_for_root: DirForRoot):
        storage = cls("")  # the connection string is known at registration
        storage._dir_for_root = dir_for_root
        return storage

    def register_instance(self, instance) -> None:
        if self._dir_for_root is not None:
            directory = self._dir_for_root(instance.root_directory)
            # Two processes opening a fresh Dagster home at once (the CLI's worker and a test, or
            # `planexe ui` started beside a plan) could both create the database and both stamp its
            # alembic_version table: "more than one head present" for every later open. One at a time.
            with _creation_lock(directory):
                created = self._stock_class.from_local(directory)
            self._conn_string = created._conn_string
            created.dispose()
            self._dir_for_root = None
        super().register_instance(instance)  # type: ignore[misc]

    def _pooled(self):
        if self._pooled_engine is None:
            with self._pooled_lock:
                if self._pooled_engine is None:
                    if not self._conn_string:
                        raise check.CheckError(
                            f"{type(self).__name__} is used before it was registered with an instance"
                        )
                    self._pooled_engine = _sqlite_engine(self._conn_string, self.synchronous)
        return self._pooled_engine

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        if self._pooled_engine is not None:
            self._pooled_engine.dispose()
            self._pooled_engine = None


class PooledSqliteRunStorage(_PooledSqliteEngine, SqliteRunStorage):
    """Dagster's SQLite run storage with its engine made once."""

    _stock_class = SqliteRunStorage

    @contextmanager
    def connect(self) -> Iterator[Any]:
        with self._pooled().connect() as conn:
            with conn.begin():
                yield conn


class PooledSqliteScheduleStorage(_PooledSqliteEngine, SqliteScheduleStorage):
    """Dagster's SQLite schedule storage (sensor cursors, ticks) with its engine made once."""

    _stock_class = SqliteScheduleStorage

    @contextmanager
    def connect(self, run_id: str | None = None) -> Iterator[Any]:
        with self._pooled().connect() as conn:
            with conn.begin():
                yield conn


class PlanexeSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite instance storage (same directories and schema) with pooled engines.

    ``base_dir`` None: the instance's root directory (the Dagster home), as Dagster's default storage.
    """

    def __init__(
        self,
        base_dir: str | None = None,
        inst_data: ConfigurableClassData | None = None,
        partition_cache_seconds: float = DEFAULT_PARTITION_CACHE_SECONDS,
        synchronous: str = DEFAULT_SQLITE_SYNCHRONOUS,
    ):
        if synchronous not in SQLITE_SYNCHRONOUS_CHOICES:
            raise check.CheckError(
                f"synchronous must be one of {SQLITE_SYNCHRONOUS_CHOICES}, got {synchronous!r}"
            )
        self.base_dir = check.opt_str_param(base_dir, "base_dir")
        self.partition_cache_seconds = partition_cache_seconds
        if base_dir is not None:
            mkdir_p(base_dir)
            self._run_storage = PooledSqliteRunStorage.from_local(runs_directory(base_dir))
            self._event_log_storage = PooledSqliteEventLogStorage(
                event_logs_directory(base_dir), partition_cache_seconds=partition_cache_seconds
            )
            self._schedule_storage = PooledSqliteScheduleStorage.from_local(schedule_directory(base_dir))
        else:
            self._run_storage = PooledSqliteRunStorage.deferred(runs_directory)
            self._event_log_storage = PooledSqliteEventLogStorage(
                None, partition_cache_seconds=partition_cache_seconds, dir_for_root=event_logs_directory
            )
            self._schedule_storage = PooledSqliteScheduleStorage.deferred(schedule_directory)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage.synchronous = synchronous
        self._event_log_storage._dispose_engines()  # any made during set-up used the default
        self._inst_data = check.opt_inst_param(inst_data, "inst_data", ConfigurableClassData)
        # DagsterStorage.__init__ (skip DagsterSqliteStorage's, which builds the stock storages).
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def config_type(cls):
        return {
            "base_dir": Field(
                StringSource,
                is_required=False,
                description="Default: the Dagster home (where Dagster keeps these files without a storage section).",
            ),
            "partition_cache_seconds": Field(
                float, is_required=False, default_value=DEFAULT_PARTITION_CACHE_SECONDS
            ),
            "synchronous": Field(
                str,
                is_required=False,
                default_value=DEFAULT_SQLITE_SYNCHRONOUS,
                description="SQLite PRAGMA synchronous for Dagster's databases: NORMAL (default) or FULL.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]):
        return cls(
            config_value.get("base_dir") or None,
            inst_data=inst_data,
            partition_cache_seconds=float(
                config_value.get("partition_cache_seconds", DEFAULT_PARTITION_CACHE_SECONDS)
            ),
            synchronous=str(config_value.get("synchronous", DEFAULT_SQLITE_SYNCHRONOUS)).upper(),
        )

    def register_instance(self, instance) -> None:
        if self.base_dir is None:
            self.base_dir = instance.root_directory
        super().register_instance(instance)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return None

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return None

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return None


# -- PostgreSQL -------------------------------------------------------------------------------------


class _SharedPgEngines:
    """One pooled engine per process, storage kind, URL and pool size, shared by every instance that
    asks, and disposed when the last of them is.

    A process may build many instances of one configuration: a Celery worker of
    ``full_plan_celery_job`` builds one per step (``DagsterInstance.from_ref``) and never disposes
    it. With an engine each, every step would leave ``pool_size`` idle server connections behind
    until the server refuses new ones; shared, the process holds one pool per storage kind.
    Keyed by pid too: a forked child (Celery's pool processes) never uses its parent's connections.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[tuple, list[Any]] = {}  # key -> [engine, users]

    def acquire(self, storage: Any, pool_size: int, max_overflow: int) -> tuple[Any, tuple]:
        key = (os.getpid(), type(storage).__name__, storage.postgres_url, pool_size, max_overflow)
        with self._lock:
            entry = self._engines.get(key)
            if entry is None:
                engine = create_pg_engine(
                    storage.postgres_url,
                    storage._token_provider,
                    isolation_level="AUTOCOMMIT",
                    pool_size=pool_size,
                    max_overflow=max_overflow,
                    pool_pre_ping=True,
                    pool_recycle=POSTGRES_POOL_RECYCLE_SECONDS,
                )
                entry = self._engines[key] = [engine, 0]
            entry[1] += 1
            return entry[0], key

    def release(self, key: tuple) -> None:
        with self._lock:
            entry = self._engines.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._engines[key]
        entry[0].dispose()

    def open_engines(self) -> int:
        with self._lock:
            return sum(1 for key in self._engines if key[0] == os.getpid())


shared_pg_engines = _SharedPgEngines()


class _PooledPostgresEngine:
    """Swaps the ``NullPool`` engine a dagster-postgres storage made in ``__init__`` for a pooled one
    (shared within the process, see ``_SharedPgEngines``)."""

    _engine: Any

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
        pool_size: int = POSTGRES_POOL_SIZE,
        max_overflow: int = POSTGRES_MAX_OVERFLOW,
    ):
        super().__init__(
            postgres_url, should_autocreate_tables, inst_data=inst_data, token_provider=token_provider
        )  # type: ignore[call-arg]
        stock = self._engine
        self._engine, self._shared_key = shared_pg_engines.acquire(self, pool_size, max_overflow)
        stock.dispose()

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        key, self._shared_key = self._shared_key, None
        if key is not None:
            shared_pg_engines.release(key)


class PooledPostgresEventLogStorage(
    _PooledPostgresEngine, _SlotClaimMixin, _PartitionCacheMixin, PostgresEventLogStorage
):
    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
        pool_size: int = POSTGRES_POOL_SIZE,
        max_overflow: int = POSTGRES_MAX_OVERFLOW,
        partition_cache_seconds: float = DEFAULT_PARTITION_CACHE_SECONDS,
    ):
        self._partition_cache = _PartitionExistsCache(partition_cache_seconds)
        super().__init__(
            postgres_url, should_autocreate_tables, inst_data, token_provider, pool_size, max_overflow
        )


class PooledPostgresRunStorage(_PooledPostgresEngine, PostgresRunStorage):
    pass


class PooledPostgresScheduleStorage(_PooledPostgresEngine, PostgresScheduleStorage):
    pass


class PlanexePostgresStorage(DagsterPostgresStorage):
    """dagster-postgres with pooled connections. Config: that of ``storage: postgres:``, plus
    ``pool_size``, ``max_overflow`` (per storage and process) and ``partition_cache_seconds``."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
        pool_size: int = POSTGRES_POOL_SIZE,
        max_overflow: int = POSTGRES_MAX_OVERFLOW,
        partition_cache_seconds: float = DEFAULT_PARTITION_CACHE_SECONDS,
    ):
        self.postgres_url = postgres_url
        self.should_autocreate_tables = check.bool_param(should_autocreate_tables, "should_autocreate_tables")
        self._inst_data = check.opt_inst_param(inst_data, "inst_data", ConfigurableClassData)
        pool = {"pool_size": pool_size, "max_overflow": max_overflow, "token_provider": token_provider}
        self._run_storage = PooledPostgresRunStorage(postgres_url, should_autocreate_tables, **pool)
        self._event_log_storage = PooledPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, partition_cache_seconds=partition_cache_seconds, **pool
        )
        self._schedule_storage = PooledPostgresScheduleStorage(postgres_url, should_autocreate_tables, **pool)
        # DagsterStorage.__init__ (skip DagsterPostgresStorage's, which builds the stock storages).
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def config_type(cls):
        schema = dict(pg_config())
        schema["pool_size"] = Field(IntSource, is_required=False, default_value=POSTGRES_POOL_SIZE)
        schema["max_overflow"] = Field(IntSource, is_required=False, default_value=POSTGRES_MAX_OVERFLOW)
        schema["partition_cache_seconds"] = Field(
            float, is_required=False, default_value=DEFAULT_PARTITION_CACHE_SECONDS
        )
        return schema

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]):
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
            pool_size=int(config_value.get("pool_size", POSTGRES_POOL_SIZE)),
            max_overflow=int(config_value.get("max_overflow", POSTGRES_MAX_OVERFLOW)),
            partition_cache_seconds=float(
                config_value.get("partition_cache_seconds", DEFAULT_PARTITION_CACHE_SECONDS)
            ),
        )

    # Child processes rebuild this whole storage from its config (``storage: custom``), never the
    # stock component classes.
    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return None

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return None

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return None


def storage_config_yaml(kind: str, postgres_url: str | None = None, base_dir: str | None = None) -> str:
    """The ``storage:`` block selecting these classes (for generated dagster.yaml files)."""
    if kind == "sqlite":
        config = {"base_dir": base_dir} if base_dir else {}
        block = {"custom": {"module": __name__, "class": "PlanexeSqliteStorage", "config": config}}
    elif kind == "postgres":
        if not postgres_url:
            raise ValueError("a PostgreSQL storage needs its URL")
        block = {
            "custom": {
                "module": __name__,
                "class": "PlanexePostgresStorage",
                "config": {"postgres_url": postgres_url},
            }
        }
    else:
        raise ValueError(f"unknown storage kind {kind!r}")
    return yaml.safe_dump({"storage": block}, default_flow_style=False)
