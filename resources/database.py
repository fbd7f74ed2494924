"""The database layer: engine set-up and ``DatabaseService`` (PlanExe's method names).

Every method opens its own short session and commits before it returns, so a service object is
safe to share between threads (fan-out steps record LLM calls concurrently) and no transaction stays
open while a model is thinking. Writes that must be idempotent are upserts on a unique key:
``plan_content`` and ``plan_files`` on (plan_id, filename), ``plan_metrics`` on plan_id.

SQLite runs in WAL mode with a busy timeout, and write transactions start with ``BEGIN IMMEDIATE``
so two writers queue on the lock instead of failing with "database is locked" when a read
transaction tries to upgrade. PostgreSQL gets a connect timeout and pool pre-ping.

Tables come from Alembic only (``resources.migrate``); nothing here creates them.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from resources.config import ConfigError, database_url, redact_url
from resources.models import (
    NOT_SENT,
    LLMInteraction,
    Plan,
    PlanContent,
    PlanFile,
    PlanMetrics,
    content_type_for,
    utcnow,
)
from resources.plan_ids import validate_plan_id

SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 10


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names the (password-redacted) URL.

    An outage passes: its failure kind (``planexe_assets.core.failure_kind``) is transient.
    """

    kind = "transient"


def make_engine(url: str | None = None) -> Engine:
    url = database_url(url)
    if url.startswith("sqlite"):
        _ensure_sqlite_parent(url)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        _configure_sqlite(engine)
    else:
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
        )
    return engine


def sqlite_file(url: str):
    """The file of a SQLite URL (a ``Path``), or None for other databases and in-memory SQLite."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def check_sqlite_location(url: str) -> None:
    """Raise ``ConfigError`` when a SQLite database that does not exist yet could not be created
    where ``url`` puts it (its directory cannot be created, or is not writable). Creates nothing."""
    import os

    path = sqlite_file(url)
    if path is None or path.exists():
        return
    missing = path.parent
    existing = missing
    while not existing.exists() and existing != existing.parent:
        missing, existing = existing, existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    elif existing != path.parent:
        # Whether the directory can be made is only known by trying (permissions say nothing to root
        # in /proc, for example); the probe is removed at once.
        try:
            os.mkdir(missing)
            os.rmdir(missing)
        except OSError as exc:
            problem = f"{missing}: {exc.strerror or exc}"
    if problem is None:
        return
    what = "is not writable" if existing == path.parent else f"cannot be created ({problem})"
    raise ConfigError(
        f"the SQLite database {redact_url(url)} cannot be created: its directory {path.parent} {what}; "
        "point PLANEXE_HOME or DATABASE_URL somewhere writable"
    )


def _ensure_sqlite_parent(url: str) -> None:
    import os

    path = sqlite_file(url)
    if path is None:
        return
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"the SQLite database {redact_url(url)} cannot be used: its directory {parent} cannot be "
            f"created ({exc.strerror or exc})"
        ) from None
    # SQLite (in WAL mode) writes the database and its -wal and -shm files in this directory, even
    # to read: a read-only directory (e.g. a read-only PLANEXE_HOME) fails every query, and SQLite
    # only says "unable to open database file".
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the SQLite database {redact_url(url)} cannot be used: its directory {parent} is not writable "
            "(SQLite keeps the database and its -wal/-shm files there); make it writable, or point "
            "PLANEXE_HOME or DATABASE_URL somewhere writable"
        )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event decide how a transaction starts (pysqlite would otherwise
        # open deferred transactions behind our back).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get("planexe_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _rowcount(result: Result) -> int:
    """The rows a DELETE matched. ``Session.execute`` is typed as returning a ``Result``; for a DML
    statement it is a ``CursorResult``, which carries the count."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the CursorResult of a DML statement, got {type(result).__name__}")
    return result.rowcount


def sha256_text(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class OutputRecord:
    """One output file to upsert into ``plan_content`` and ``plan_files`` together."""

    filename: str
    content: str
    stage: str
    file_path: str
    content_hash: str | None = None

    @property
    def hash(self) -> str:
        return self.content_hash or sha256_text(self.content)

    @property
    def size(self) -> int:
        return len(self.content.encode("utf-8"))


@dataclass
class UsageTotals:
    """LLM attempts recorded in ``llm_interactions`` (``attempts`` counts every try, failed and still
    pending ones included; ``completed`` the ones that returned a reply)."""

    attempts: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class DatabaseService:
    """PlanExe's ``DatabaseService`` over an engine, with short scoped sessions per call."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(planexe_read_only=True), expire_on_commit=False, autoflush=False
        )
        self.dialect = engine.dialect.name

    # -- sessions -----------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on error, always closed."""
        try:
            with self._sessions() as s, s.begin():
                yield s
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        try:
            with self._read_sessions() as s, s.begin():
                yield s
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: OperationalError) -> Exception:
        message = str(exc.orig) if exc.orig is not None else str(exc)
        if "locked" in message.lower():
            return exc  # a real contention bug, not an outage: let it surface as it is
        return DatabaseUnavailable(
            f"database {redact_url(str(self.engine.url))} is unavailable: {message.strip().splitlines()[0]}"
        )

    def ping(self) -> None:
        with self.read_session() as s:
            s.execute(select(1))

    def close(self) -> None:
        self.engine.dispose()

    # -- upsert helper ------------------------------------------------------------------------
    def _insert(self, table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # -- plans --------------------------------------------------------------------------------
    def create_plan(self, data: Mapping[str, Any]) -> Plan:
        data = dict(data)
        validate_plan_id(data.get("plan_id"))
        with self.session() as s:
            plan = Plan(**data)
            s.add(plan)
            s.flush()
            s.refresh(plan)
            return plan

    def get_plan(self, plan_id: str) -> Plan | None:
        with self.read_session() as s:
            return s.scalar(select(Plan).where(Plan.plan_id == plan_id))

    def update_plan(self, plan_id: str, data: Mapping[str, Any]) -> Plan | None:
        with self.session() as s:
            plan = s.scalar(select(Plan).where(Plan.plan_id == plan_id))
            if plan is None:
                return None
            for key, value in data.items():
                if not hasattr(Plan, key):
                    raise AttributeError(f"plans has no column {key!r}")
                setattr(plan, key, value)
            s.flush()
            s.refresh(plan)
            return plan

    def list_plans(self, user_id: str | None = None, limit: int = 100) -> list[Plan]:
        with self.read_session() as s:
            query = select(Plan).order_by(Plan.created_at.desc(), Plan.id.desc()).limit(limit)
            if user_id is not None:
                query = query.where(Plan.user_id == user_id)
            return list(s.scalars(query))

    def list_plans_by_status(self, statuses: Iterable[str], limit: int = 1000) -> list[Plan]:
        with self.read_session() as s:
            query = (
                select(Plan)
                .where(Plan.status.in_(list(statuses)))
                .order_by(Plan.created_at, Plan.id)
                .limit(limit)
            )
            return list(s.scalars(query))

    def existing_plan_ids(self, plan_ids: Iterable[str]) -> set[str]:
        """The ids among ``plan_ids`` that have a row in ``plans``."""
        wanted = list(dict.fromkeys(plan_ids))
        found: set[str] = set()
        with self.read_session() as s:
            for start in range(0, len(wanted), 500):  # stay under SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                found.update(s.scalars(select(Plan.plan_id).where(Plan.plan_id.in_(chunk))))
        return found

    def delete_plan(self, plan_id: str) -> bool:
        """Delete the plan and everything recorded for it. True if the plan existed."""
        with self.session() as s:
            for model in (LLMInteraction, PlanFile, PlanMetrics, PlanContent):
                s.execute(delete(model).where(model.plan_id == plan_id))
            result = s.execute(delete(Plan).where(Plan.plan_id == plan_id))
            return _rowcount(result) > 0

    # -- LLM interactions ---------------------------------------------------------------------
    def create_llm_interaction(self, data: Mapping[str, Any]) -> LLMInteraction:
        with self.session() as s:
            row = LLMInteraction(**dict(data))
            s.add(row)
            s.flush()
            s.refresh(row)
            return row

    def update_llm_interaction(self, interaction_id: int, data: Mapping[str, Any]) -> LLMInteraction | None:
        with self.session() as s:
            row = s.get(LLMInteraction, interaction_id)
            if row is None:
                return None
            for key, value in data.items():
                if not hasattr(LLMInteraction, key):
                    raise AttributeError(f"llm_interactions has no column {key!r}")
                setattr(row, key, value)
            s.flush()
            s.refresh(row)
            return row

    def get_plan_interactions(self, plan_id: str, stage: str | None = None) -> list[LLMInteraction]:
        with self.read_session() as s:
            query = select(LLMInteraction).where(LLMInteraction.plan_id == plan_id)
            if stage is not None:
                query = query.where(LLMInteraction.stage == stage)
            return list(s.scalars(query.order_by(LLMInteraction.id)))

    def usage_by_stage(self, plan_id: str) -> dict[str, dict[str, int]]:
        """Per stage: attempts, completed and failed attempts, and tokens in/out, for progress displays.
        Calls the circuit breaker never sent (status ``skipped``) are not attempts."""
        with self.read_session() as s:
            rows = s.execute(
                select(
                    LLMInteraction.stage,
                    LLMInteraction.status,
                    func.count(),
                    func.coalesce(func.sum(LLMInteraction.input_tokens), 0),
                    func.coalesce(func.sum(LLMInteraction.output_tokens), 0),
                )
                .where(LLMInteraction.plan_id == plan_id, LLMInteraction.status != NOT_SENT)
                .group_by(LLMInteraction.stage, LLMInteraction.status)
            ).all()
        out: dict[str, dict[str, int]] = {}
        for stage, status, count, tokens_in, tokens_out in rows:
            entry = out.setdefault(
                stage, {"attempts": 0, "completed": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0}
            )
            entry["attempts"] += count
            if status in ("completed", "failed"):
                entry[status] += count
            entry["input_tokens"] += int(tokens_in or 0)  # coalesce() makes it 0 already
            entry["output_tokens"] += int(tokens_out or 0)
        return out

    def usage_totals(
        self, plan_id: str, stage: str | None = None, since: datetime | None = None
    ) -> UsageTotals:
        """LLM usage of a plan (or one stage of it, or attempts started at or after ``since``): every
        attempt, the completed and the failed ones, tokens, and the cost the providers reported.
        Calls the circuit breaker never sent (status ``skipped``) are not attempts."""
        with self.read_session() as s:
            query = select(
                LLMInteraction.status,
                LLMInteraction.input_tokens,
                LLMInteraction.output_tokens,
                LLMInteraction.response_metadata,
            ).where(LLMInteraction.plan_id == plan_id, LLMInteraction.status != NOT_SENT)
            if stage is not None:
                query = query.where(LLMInteraction.stage == stage)
            if since is not None:
                query = query.where(LLMInteraction.started_at >= since)
            rows = s.execute(query).all()
        totals = UsageTotals()
        for status, tokens_in, tokens_out, meta in rows:
            totals.attempts += 1
            if status == "completed":
                totals.completed += 1
            elif status == "failed":
                totals.failed += 1
            totals.input_tokens += tokens_in or 0
            totals.output_tokens += tokens_out or 0
            cost = meta.get("cost_usd") if isinstance(meta, dict) else None
            if isinstance(cost, (int, float)):
                totals.cost_usd += float(cost)
        return totals

    # -- files ----------------------------------------------------------------------------------
    def create_plan_file(self, data: Mapping[str, Any]) -> PlanFile:
        """Insert or update the row of (plan_id, filename)."""
        data = dict(data)
        with self.session() as s:
            self._upsert_plan_file(s, data)
            return s.scalars(
                select(PlanFile).where(
                    PlanFile.plan_id == data["plan_id"], PlanFile.filename == data["filename"]
                )
            ).one()

    def _upsert_plan_file(self, s: Session, data: dict[str, Any]) -> None:
        data.setdefault("created_at", utcnow())
        stmt = self._insert(PlanFile).values(**data)
        updatable = {k: stmt.excluded[k] for k in data if k not in ("plan_id", "filename", "created_at")}
        s.execute(stmt.on_conflict_do_update(index_elements=["plan_id", "filename"], set_=updatable))

    def get_plan_files(self, plan_id: str) -> list[PlanFile]:
        with self.read_session() as s:
            return list(
                s.scalars(select(PlanFile).where(PlanFile.plan_id == plan_id).order_by(PlanFile.filename))
            )

    # -- metrics --------------------------------------------------------------------------------
    def create_plan_metrics(self, data: Mapping[str, Any]) -> PlanMetrics:
        """Insert or replace the given columns of the plan's single metrics row."""
        data = dict(data)
        data.setdefault("created_at", utcnow())
        with self.session() as s:
            stmt = self._insert(PlanMetrics).values(**data)
            updatable = {k: stmt.excluded[k] for k in data if k not in ("plan_id", "created_at")}
            if updatable:
                stmt = stmt.on_conflict_do_update(index_elements=["plan_id"], set_=updatable)
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=["plan_id"])
            s.execute(stmt)
            return s.scalars(select(PlanMetrics).where(PlanMetrics.plan_id == data["plan_id"])).one()

    def get_plan_metrics(self, plan_id: str) -> PlanMetrics | None:
        with self.read_session() as s:
            return s.scalar(
                select(PlanMetrics).where(PlanMetrics.plan_id == plan_id).order_by(PlanMetrics.id)
            )

    def add_plan_usage(self, plan_id: str, calls: int = 0, tokens: int = 0, cost_usd: float = 0.0) -> None:
        """Atomically add to the plan's totals, creating its metrics row on first use."""
        with self.session() as s:
            stmt = self._insert(PlanMetrics).values(
                plan_id=plan_id,
                total_llm_calls=calls,
                total_tokens_used=tokens,
                total_cost_usd=cost_usd,
                created_at=utcnow(),
            )
            table = PlanMetrics.__table__
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["plan_id"],
                    set_={
                        "total_llm_calls": func.coalesce(table.c.total_llm_calls, 0)
                        + stmt.excluded.total_llm_calls,
                        "total_tokens_used": func.coalesce(table.c.total_tokens_used, 0)
                        + stmt.excluded.total_tokens_used,
                        "total_cost_usd": func.coalesce(table.c.total_cost_usd, 0.0)
                        + stmt.excluded.total_cost_usd,
                    },
                )
            )

    # -- content --------------------------------------------------------------------------------
    def create_plan_content(self, data: Mapping[str, Any]) -> PlanContent:
        """Upsert on (plan_id, filename): a re-run replaces the row, never duplicates it."""
        data = dict(data)
        content = data["content"]
        data.setdefault("content_type", content_type_for(data["filename"]))
        data.setdefault("content_size_bytes", len(content.encode("utf-8")))
        data.setdefault("content_hash", sha256_text(content))
        with self.session() as s:
            self._upsert_content(s, data)
            return s.scalars(
                select(PlanContent).where(
                    PlanContent.plan_id == data["plan_id"], PlanContent.filename == data["filename"]
                )
            ).one()

    def _upsert_content(self, s: Session, data: dict[str, Any]) -> None:
        now = utcnow()
        data.setdefault("created_at", now)
        data["updated_at"] = now
        stmt = self._insert(PlanContent).values(**data)
        updatable = {k: stmt.excluded[k] for k in data if k not in ("plan_id", "filename", "created_at")}
        s.execute(stmt.on_conflict_do_update(index_elements=["plan_id", "filename"], set_=updatable))

    def upsert_outputs(self, plan_id: str, records: Iterable[OutputRecord], run_id: str | None) -> None:
        """Write ``plan_content`` and ``plan_files`` rows of several files in ONE transaction."""
        with self.session() as s:
            for rec in records:
                self._upsert_content(
                    s,
                    {
                        "plan_id": plan_id,
                        "filename": rec.filename,
                        "stage": rec.stage,
                        "content_type": content_type_for(rec.filename),
                        "content": rec.content,
                        "content_size_bytes": rec.size,
                        "content_hash": rec.hash,
                        "run_id": run_id,
                    },
                )
                self._upsert_plan_file(
                    s,
                    {
                        "plan_id": plan_id,
                        "filename": rec.filename,
                        "file_type": rec.filename.rsplit(".", 1)[-1] if "." in rec.filename else "unknown",
                        "file_size_bytes": rec.size,
                        "content_hash": rec.hash,
                        "generated_by_stage": rec.stage,
                        "file_path": rec.file_path,
                    },
                )

    def get_plan_content(self, plan_id: str, filename: str | None = None) -> list[PlanContent]:
        with self.read_session() as s:
            query = select(PlanContent).where(PlanContent.plan_id == plan_id)
            if filename is not None:
                query = query.where(PlanContent.filename == filename)
            return list(s.scalars(query.order_by(PlanContent.filename)))

    def get_plan_content_by_filename(self, plan_id: str, filename: str) -> PlanContent | None:
        with self.read_session() as s:
            return s.scalar(
                select(PlanContent).where(PlanContent.plan_id == plan_id, PlanContent.filename == filename)
            )

    def get_contents(self, plan_id: str, filenames: Iterable[str]) -> dict[str, PlanContent]:
        """Several files of one plan in one query, keyed by filename (missing ones absent)."""
        names = list(filenames)
        if not names:
            return {}
        with self.read_session() as s:
            rows = s.scalars(
                select(PlanContent).where(PlanContent.plan_id == plan_id, PlanContent.filename.in_(names))
            )
            return {row.filename: row for row in rows}

    def stored_filenames(self, plan_id: str, filenames: Iterable[str]) -> set[str]:
        """Which of ``filenames`` have a ``plan_content`` row (their names only; no content is read)."""
        names = list(filenames)
        if not names:
            return set()
        with self.read_session() as s:
            return set(
                s.scalars(
                    select(PlanContent.filename).where(
                        PlanContent.plan_id == plan_id, PlanContent.filename.in_(names)
                    )
                )
            )

    def delete_plan_content(self, plan_id: str, filenames: Iterable[str]) -> int:
        names = list(filenames)
        if not names:
            return 0
        with self.session() as s:
            n = _rowcount(
                s.execute(
                    delete(PlanContent).where(PlanContent.plan_id == plan_id, PlanContent.filename.in_(names))
                )
            )
            s.execute(delete(PlanFile).where(PlanFile.plan_id == plan_id, PlanFile.filename.in_(names)))
            return n


_services: dict[str, DatabaseService] = {}
_services_lock = threading.Lock()


def get_database_service(url: str | None = None) -> DatabaseService:
    """A process-wide ``DatabaseService`` per URL (engines pool connections; create one per URL).

    The plain-Python equivalent of PlanExe's ``get_database_service()`` for Luigi tasks and the CLI;
    Dagster code gets the same object through ``DatabaseResource``.
    """
    resolved = database_url(url)
    with _services_lock:
        service = _services.get(resolved)
        if service is None:
            try:
                service = DatabaseService(make_engine(resolved))
            except ConfigError:
                raise
            _services[resolved] = service
        return service


def utc_naive(value: datetime) -> datetime:
    if value.tzinfo is not None:
        from datetime import UTC

        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
