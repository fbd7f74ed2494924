"""A production-shaped deployment on one machine, as separate processes: the code location as its own
gRPC server, the daemon (and optionally the webserver) against PostgreSQL storage, and Celery workers
of ``full_plan_celery_job`` with RabbitMQ as broker, each worker with its own ``PLANEXE_HOME``.

Used by ``tests/test_distributed.py`` (plans complete, steps spread over the workers, a worker killed
mid-run) and by the benchmark's ``celery`` section. The configuration is ``planexe_assets/deploy/``'s:
``dagster.postgres.yaml`` as every ``dagster.yaml``, ``workspace.grpc.yaml`` (its port changed to a
free one) and ``celery_worker.yaml``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.environment import REPO, BenchSetupError

DEPLOY = REPO / "planexe_assets" / "deploy"
DEFAULT_BROKER_URL = "pyamqp://guest:guest@127.0.0.1:5672//"
BROKER_ENV = "PLANEXE_TEST_CELERY_BROKER_URL"
CELERY_QUEUE = "dagster"  # dagster_celery's queue (dagster_celery.make_app)


def broker_url() -> str:
    return os.environ.get(BROKER_ENV) or DEFAULT_BROKER_URL


def broker_problem(url: str | None = None) -> str | None:
    """None when the broker answers, else why not (for a skip reason)."""
    from kombu import Connection

    try:
        with Connection(url or broker_url(), connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"{type(exc).__name__}: {exc}"
    return None


def purge_broker_queue(url: str | None = None) -> int:
    """Drop messages a previous, interrupted run left in dagster_celery's queue (they name runs and
    databases that no longer exist). Returns how many."""
    from kombu import Connection

    with Connection(url or broker_url(), connect_timeout=3) as conn:
        channel = conn.channel()
        try:
            return channel.queue_purge(CELERY_QUEUE) or 0
        except Exception:  # noqa: BLE001 - the queue does not exist yet: nothing to purge
            return 0
        finally:
            channel.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(name: str, *fallback: str) -> list[str]:
    executable = Path(sys.executable).with_name(name)
    return [str(executable)] if executable.exists() else [sys.executable, *fallback]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path
    planexe_home: Path | None = None
    killed: bool = False  # by kill_hard, on purpose

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def kill_hard(self) -> None:
        """SIGKILL to the process and everything it started (its own process group): a lost machine."""
        self.killed = True
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:  # whatever is left in the group (run workers, pool children)
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class CeleryDeployment:
    """Processes of one deployment; ``env`` holds what every process shares."""

    root: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)
    grpc_port: int = 0
    workspace: Path | None = None
    pool_size: int | None = None  # Dagster storage connections kept per storage kind and process

    @classmethod
    def prepare(
        cls,
        root: Path,
        *,
        app_db_url: str,
        dagster_postgres_url: str,
        llm_config: Path,
        broker: str | None = None,
        sensor_interval: int = 1,
        pool_size: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> CeleryDeployment:
        """``pool_size``: the storage's ``pool_size`` (idle connections per storage kind and
        process; the deploy file leaves its default of 4): a PostgreSQL server shared with other
        work may not have slots for ten processes' worth of the default."""
        root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for name in ("DAGSTER_HOME", "PLANEXE_HOME", "DATABASE_URL", "PLANEXE_LLM_CONFIG"):
            env.pop(name, None)
        env.update(
            {
                "DATABASE_URL": app_db_url,
                "PLANEXE_DAGSTER_POSTGRES_URL": dagster_postgres_url,
                "PLANEXE_LLM_CONFIG": str(llm_config),
                "PLANEXE_CELERY_BROKER_URL": broker or broker_url(),
                "PLANEXE_PLAN_EXECUTOR": "celery",
                "PLANEXE_PLAN_SENSOR_INTERVAL": str(sensor_interval),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                "PYTHONWARNINGS": "ignore",
            }
        )
        env.update(extra_env or {})
        deployment = cls(root=root, env=env, pool_size=pool_size)
        deployment.install_instance(deployment.dagster_home("control"))
        deployment.grpc_port = free_port()
        workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text(encoding="utf-8"))
        workspace["load_from"][0]["grpc_server"]["port"] = deployment.grpc_port
        deployment.workspace = root / "workspace.yaml"
        deployment.workspace.write_text(yaml.safe_dump(workspace), encoding="utf-8")
        return deployment

    def dagster_home(self, name: str) -> Path:
        return self.root / name / "dagster"

    def planexe_home(self, name: str) -> Path:
        return self.root / name / "planexe"

    def install_instance(self, dagster_home: Path) -> Path:
        """planexe_assets/deploy/dagster.postgres.yaml as ``dagster_home/dagster.yaml`` (with ``pool_size``)."""
        from planexe_assets.dagster_defs.instance_config import install_instance_config

        path = install_instance_config(dagster_home, "postgres", overwrite=True)
        if path is None:
            raise BenchSetupError("planexe_assets/deploy/dagster.postgres.yaml was not installed")
        if self.pool_size is not None:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
            config["storage"]["custom"]["config"].update({"pool_size": self.pool_size, "max_overflow": 8})
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def _start(self, name: str, command: list[str], home: str, **extra: str) -> Process:
        dagster_home = self.dagster_home(home)
        self.install_instance(dagster_home)
        env = dict(
            self.env, DAGSTER_HOME=str(dagster_home), PLANEXE_HOME=str(self.planexe_home(home)), **extra
        )
        self.planexe_home(home).mkdir(parents=True, exist_ok=True)
        log_path = self.root / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one group per process: stop or kill it with all it started
            )
        process = Process(name, popen, log_path, self.planexe_home(home))
        self.processes.append(process)
        return process

    # -- the processes ----------------------------------------------------------------------------
    def start_code_server(self, timeout: float = 180) -> Process:
        process = self._start(
            "code_server",
            [
                *_command("dagster", "-m", "dagster"),
                "code-server",
                "start",
                "-m",
                "planexe_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.grpc_port),
                "--location-name",
                "planexe_assets.definitions",
            ],
            "control",
        )
        self._wait_for_port(self.grpc_port, process, timeout)
        return process

    def start_daemon(self) -> Process:
        return self._start(
            "daemon",
            [*_command("dagster-daemon", "-m", "dagster._daemon"), "run", "-w", str(self.workspace)],
            "control",
        )

    def start_webserver(self, timeout: float = 180) -> tuple[Process, int]:
        port = free_port()
        process = self._start(
            "webserver",
            [
                *_command("dagster-webserver", "-m", "dagster_webserver"),
                "-w",
                str(self.workspace),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            "control",
        )
        self._wait_for_port(port, process, timeout)
        return process, port

    def start_worker(self, name: str, concurrency: int = 2) -> Process:
        """``dagster-celery worker start`` with planexe_assets/deploy/celery_worker.yaml, its own PLANEXE_HOME and
        DAGSTER_HOME (the same instance configuration)."""
        return self._start(
            name,
            [
                *_command("dagster-celery", "-m", "dagster_celery.cli"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(DEPLOY / "celery_worker.yaml"),
                "-n",
                name,
                "--",
                f"--concurrency={concurrency}",
                "--without-gossip",
                "--without-mingle",
            ],
            name,
        )

    def wait_for_workers(self, workers: list[Process], timeout: float = 180) -> None:
        """Until each worker's log says it is ready to take tasks."""
        deadline = time.monotonic() + timeout
        pending = list(workers)
        while pending and time.monotonic() < deadline:
            for worker in list(pending):
                if not worker.alive():
                    raise BenchSetupError(f"Celery worker {worker.name} exited:\n{worker.log_tail()}")
                if " ready." in worker.log_tail(20000):
                    pending.remove(worker)
            time.sleep(0.5)
        if pending:
            raise BenchSetupError(
                f"Celery worker(s) {', '.join(w.name for w in pending)} not ready after {timeout:.0f}s:\n"
                + pending[0].log_tail()
            )

    def _wait_for_port(self, port: int, process: Process, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise BenchSetupError(f"{process.name} exited:\n{process.log_tail()}")
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.5)
        raise BenchSetupError(
            f"{process.name} did not listen on {port} within {timeout:.0f}s:\n{process.log_tail()}"
        )

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.alive() and not process.killed:
                raise BenchSetupError(
                    f"{process.name} exited ({process.popen.returncode}):\n{process.log_tail()}"
                )

    def stop(self) -> None:
        # Workers and the daemon first (they hold runs), the code server last.
        for process in sorted(self.processes, key=lambda p: p.name == "code_server"):
            process.stop()
