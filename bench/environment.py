"""Throw-away homes for the benchmark: application database, Dagster instance, LLM config, server.

Everything lives under one temporary directory (and, for PostgreSQL, in databases created for the
run and dropped after it), so a benchmark never touches a user's ``.planexe`` or Dagster home.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ENV = "PLANEXE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_MODEL = "bench-latency"


class BenchSetupError(RuntimeError):
    pass


# -- the latency server ---------------------------------------------------------------------------


@dataclass
class LatencyServerProcess:
    process: subprocess.Popen
    port: int
    latency: str
    scale: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as response:
            return json.loads(response.read())

    def calls(self) -> list[dict]:
        """The server's in-flight log: plan, stage, start and end (s since it started) of each call."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/calls", timeout=30) as response:
            return json.loads(response.read())["calls"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_latency_server(latency: str, scale: float, shape: str = "planexe") -> LatencyServerProcess:
    """Start ``bench.latency_server`` in its own process (it must not share the GIL of a contender)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.latency_server",
            "--latency",
            latency,
            "--scale",
            str(scale),
            "--shape",
            shape,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("PORT "):
        process.kill()
        err = process.stderr.read() if process.stderr else ""
        raise BenchSetupError(f"the latency server did not start: {line!r} {err[-2000:]}")
    return LatencyServerProcess(process, int(line.split()[1]), latency, scale)


@contextmanager
def latency_server(latency: str, scale: float, shape: str = "planexe") -> Iterator[LatencyServerProcess]:
    server = start_latency_server(latency, scale, shape)
    try:
        yield server
    finally:
        server.stop()


def write_llm_config(path: Path, base_url: str, in_flight: int) -> Path:
    """An ``llm_config.json`` with one OpenAI-compatible model: the latency server."""
    config = {
        BENCH_MODEL: {
            "comment": "The benchmark's local latency server (bench/latency_server.py).",
            "priority": 1,
            "class": "OpenAILike",
            "arguments": {
                "model": "bench",
                "base_url": base_url,
                "api_key": "not-needed",
                "timeout": 600.0,
                "max_retries": 0,
                "max_in_flight": in_flight,
                "structured_output": "json_schema",
            },
        }
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


# -- PostgreSQL -----------------------------------------------------------------------------------


def postgres_server_url() -> str:
    return os.environ.get(POSTGRES_ENV) or os.environ.get("PLANEXE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def postgres_available(server_url: str | None = None) -> str | None:
    """None if the PostgreSQL server answers, else why not."""
    from sqlalchemy import create_engine, text

    url = server_url or postgres_server_url()
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - reported as the reason to skip
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


def create_postgres_database(prefix: str, driver: str = "postgresql+psycopg") -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = postgres_server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(server).set(drivername=driver, database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    engine = create_engine(postgres_server_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# -- one benchmark home ---------------------------------------------------------------------------


@dataclass
class BenchHome:
    """PLANEXE_HOME, the application database, DAGSTER_HOME and the LLM config of one measurement."""

    root: Path
    app_db_url: str
    dagster_storage: str  # sqlite | postgres
    llm_config: Path
    dagster_postgres_url: str | None = None
    created_databases: list[str] = field(default_factory=list)
    owns_root: bool = False  # root is a temporary directory made for this home: close() deletes it

    @property
    def planexe_home(self) -> Path:
        return self.root / "planexe"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("DAGSTER_HOME", "DATABASE_URL", "PLANEXE_HOME", "PLANEXE_LLM_CONFIG"):
            env.pop(name, None)
        env.update(
            {
                "PLANEXE_HOME": str(self.planexe_home),
                "DATABASE_URL": self.app_db_url,
                "DAGSTER_HOME": str(self.dagster_home),
                "PLANEXE_LLM_CONFIG": str(self.llm_config),
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                "PYTHONWARNINGS": "ignore",
            }
        )
        env.update(extra)
        return env

    @contextmanager
    def activated(self) -> Iterator[None]:
        """This process's environment pointed at the home (for in-process measurements)."""
        saved = {
            k: os.environ.get(k)
            for k in ("DAGSTER_HOME", "DATABASE_URL", "PLANEXE_HOME", "PLANEXE_LLM_CONFIG")
        }
        os.environ.update(
            {
                "PLANEXE_HOME": str(self.planexe_home),
                "DATABASE_URL": self.app_db_url,
                "DAGSTER_HOME": str(self.dagster_home),
                "PLANEXE_LLM_CONFIG": str(self.llm_config),
            }
        )
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def instance(self):
        from dagster import DagsterInstance

        return DagsterInstance.from_config(str(self.dagster_home))

    def close(self) -> None:
        from resources.database import _services

        for url in [self.app_db_url, *self.created_databases]:
            service = _services.pop(url, None)
            if service is not None:
                service.close()
        for url in self.created_databases:
            try:
                drop_postgres_database(url)
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the results
                print(f"warning: could not drop {url.rsplit('/', 1)[-1]}: {exc}", file=sys.stderr)
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


def dagster_yaml(
    storage: str,
    postgres_url: str | None,
    max_concurrent_runs: int,
    pool_limit: int | None,
    pooled: bool = True,
    home: Path | None = None,
) -> str:
    """The instance config of a benchmark home: a run queue, the storage choice.

    ``pooled``: the project's storage classes (``planexe_assets/dagster_defs/instance_storage.py``); else Dagster's
    stock SQLite or dagster-postgres storage.
    """
    lines = ["# planexe-dagster benchmark instance (bench/environment.py)", "telemetry:", "  enabled: false"]
    if storage == "postgres" and not postgres_url:
        raise BenchSetupError("a PostgreSQL instance needs its URL")
    if pooled:
        from planexe_assets.dagster_defs.instance_storage import storage_config_yaml

        base_dir = str(home / "storage") if home is not None and storage == "sqlite" else None
        lines += storage_config_yaml(storage, postgres_url, base_dir).rstrip("\n").splitlines()
    elif storage == "postgres":
        lines += ["storage:", "  postgres:", f"    postgres_url: {json.dumps(postgres_url)}"]
    lines += [
        "run_coordinator:",
        "  module: dagster.core.run_coordinator",
        "  class: QueuedRunCoordinator",
        "  config:",
        "    dequeue_interval_seconds: 1",
        "concurrency:",
        "  runs:",
        f"    max_concurrent_runs: {max_concurrent_runs}",
    ]
    if pool_limit is not None:
        lines += ["  pools:", f"    default_limit: {pool_limit}", "    granularity: op"]
    lines += ["run_monitoring:", "  enabled: false"]
    return "\n".join(lines) + "\n"


def make_home(
    *,
    app_db: str = "sqlite",
    dagster_storage: str = "sqlite",
    base_url: str = "http://127.0.0.1:9/v1",
    in_flight: int = 16,
    max_concurrent_runs: int = 4,
    pool_limit: int | None = None,
    pooled_storage: bool = True,
    root: Path | None = None,
) -> BenchHome:
    """A fresh home: migrated application database, Dagster instance config, LLM config."""
    from resources import migrate

    owns_root = root is None
    root = Path(root or tempfile.mkdtemp(prefix="planexe-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    if app_db == "sqlite":
        app_url = f"sqlite:///{root / 'planexe' / 'planexe.db'}"
        (root / "planexe").mkdir(parents=True, exist_ok=True)
    elif app_db == "postgres":
        app_url = create_postgres_database("planexe_bench_app")
        created.append(app_url)
    else:
        raise BenchSetupError(f"unknown application database {app_db!r}")
    migrate.upgrade(app_url)
    dagster_pg = None
    if dagster_storage == "postgres":
        dagster_pg = create_postgres_database("planexe_bench_dagster", driver="postgresql+psycopg2")
        created.append(dagster_pg)
    elif dagster_storage != "sqlite":
        raise BenchSetupError(f"unknown Dagster storage {dagster_storage!r}")
    (root / "dagster").mkdir(parents=True, exist_ok=True)
    (root / "dagster" / "dagster.yaml").write_text(
        dagster_yaml(
            dagster_storage, dagster_pg, max_concurrent_runs, pool_limit, pooled_storage, root / "dagster"
        ),
        encoding="utf-8",
    )
    llm_config = write_llm_config(root / "llm_config.json", base_url, in_flight)
    return BenchHome(root, app_url, dagster_storage, llm_config, dagster_pg, created, owns_root)


def create_bench_plan(home: BenchHome, plan_id: str, prompt: str) -> None:
    """The plan row (model: the latency server), created in the home's application database."""
    from planexe_assets.lifecycle.plans import PlanRequest, create_plan
    from resources.database import get_database_service

    with home.activated():
        db = get_database_service(home.app_db_url)
        create_plan(db, PlanRequest(prompt=prompt, model=BENCH_MODEL, plan_id=plan_id))


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise BenchSetupError(f"timed out after {timeout:.0f} s waiting for {what}")
