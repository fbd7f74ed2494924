"""Instance configuration files (planexe_assets/deploy/) and ``planexe ui``.

Fast tests check the two ``dagster.yaml`` variants load as Dagster instances with the run queue and
the ``llm`` pool, and how the Dagster home is chosen and prepared. One slow test starts
``planexe ui`` for real and asks its webserver, over GraphQL, for the daemon, the sensors and the
schedule.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.instance.config import dagster_instance_config
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.cli.ui import DEFAULT_WORKSPACE, UIConfigError, dagster_dev_command
from planexe_assets.dagster_defs.instance_config import (
    DAGSTER_POSTGRES_URL_ENV,
    LOCAL_CONFIG,
    POSTGRES_CONFIG,
    InstanceConfigError,
    install_instance_config,
    prepare_dagster_home,
    show_llm_pool,
)
from planexe_assets.dagster_defs.runs import ensure_dagster_home

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_dagster_home(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def test_local_config_is_a_sqlite_instance_with_a_run_queue_and_the_llm_pool(tmp_path):
    home = tmp_path / "dh"
    assert install_instance_config(home) == home / "dagster.yaml"
    assert (home / "dagster.yaml").read_bytes() == LOCAL_CONFIG.read_bytes()
    with DagsterInstance.from_config(str(home)) as instance:
        from dagster._core.storage.runs import SqliteRunStorage

        assert isinstance(instance.run_storage, SqliteRunStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == 2
        assert config.pool_config.pool_granularity.value == "op"
        assert config.pool_config.default_pool_limit == 8
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert instance.event_log_storage.get_concurrency_keys() == set()
        assert not instance.telemetry_enabled
        assert instance.run_monitoring_enabled


def test_the_llm_pool_is_listed_with_its_limit_before_any_run(tmp_path):
    home = tmp_path / "dh"
    install_instance_config(home)
    assert show_llm_pool(home) == 8
    assert show_llm_pool(home) == 8  # idempotent
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.event_log_storage.get_concurrency_keys() == {"llm"}
        instance.event_log_storage.set_concurrency_slots("llm", 3)  # `dagster instance concurrency set`
    assert show_llm_pool(home) == 3  # an explicit limit is kept


def test_postgres_config_reads_its_url_from_the_environment_and_caps_llm_steps(tmp_path, monkeypatch):
    home = tmp_path / "dh"
    install_instance_config(home, "postgres")
    assert (home / "dagster.yaml").read_bytes() == POSTGRES_CONFIG.read_bytes()
    monkeypatch.setenv(
        DAGSTER_POSTGRES_URL_ENV, "postgresql+psycopg2://dagster:secret@db.invalid:5432/dagster"
    )
    config, _ = dagster_instance_config(str(home))  # validated against Dagster's schema; nothing connects
    assert config["storage"]["custom"]["class"] == "PlanexePostgresStorage"  # pooled dagster-postgres
    assert config["storage"]["custom"]["config"]["postgres_url"] == {"env": DAGSTER_POSTGRES_URL_ENV}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 4
    assert config["concurrency"]["pools"] == {"default_limit": 4, "granularity": "op"}


@pytest.mark.postgres
def test_postgres_config_makes_a_postgres_instance(tmp_path, monkeypatch, postgres_empty_url):
    from sqlalchemy.engine import make_url

    home = tmp_path / "dh"
    install_instance_config(home, "postgres")
    url = (
        make_url(postgres_empty_url)
        .set(drivername="postgresql+psycopg2")
        .render_as_string(hide_password=False)
    )
    monkeypatch.setenv(DAGSTER_POSTGRES_URL_ENV, url)
    with DagsterInstance.from_config(str(home)) as instance:
        from dagster_postgres.run_storage import PostgresRunStorage

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 4
        instance.event_log_storage.initialize_concurrency_limit_to_default("llm")
        assert instance.event_log_storage.get_concurrency_info("llm").slot_count == 4


def test_install_keeps_an_existing_file_and_refuses_unknown_variants(tmp_path):
    home = tmp_path / "dh"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    assert install_instance_config(home) is None
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"
    assert install_instance_config(home, "postgres", overwrite=True) == home / "dagster.yaml"
    assert (home / "dagster.yaml").read_bytes() == POSTGRES_CONFIG.read_bytes()
    assert [p.name for p in home.iterdir()] == ["dagster.yaml"], "no temporary file left behind"
    with pytest.raises(InstanceConfigError, match="unknown instance config 'k8s'"):
        install_instance_config(home, "k8s")


def test_a_package_without_its_config_file_is_an_error_not_dagsters_defaults(tmp_path, monkeypatch):
    from planexe_assets.dagster_defs import instance_config

    monkeypatch.setitem(instance_config.VARIANTS, "local", tmp_path / "missing" / "dagster.local.yaml")
    home = tmp_path / "dh"
    with pytest.raises(
        InstanceConfigError, match="dagster.local.yaml cannot be read .*reinstall planexe-dagster"
    ):
        install_instance_config(home)
    assert not (home / "dagster.yaml").exists()


def test_dagster_home_defaults_under_planexe_home_and_cli_and_ui_agree(isolated_home, no_dagster_home):
    home = prepare_dagster_home()
    assert home == isolated_home.resolve() / "dagster"
    assert os.environ["DAGSTER_HOME"] == str(home)
    assert (home / "dagster.yaml").read_bytes() == LOCAL_CONFIG.read_bytes()
    assert ensure_dagster_home() == str(home)


def test_an_explicit_dagster_home_is_honoured_and_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", "relative_home")
    assert prepare_dagster_home() == tmp_path / "relative_home"
    assert (tmp_path / "relative_home" / "dagster.yaml").exists()


def test_dev_command_listens_on_loopback_with_the_workspace(
    isolated_home, no_dagster_home, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)  # the relative PLANEXE_HOME below must not land in the checkout
    monkeypatch.setenv("PLANEXE_HOME", "relative_planexe")  # children must not depend on the cwd
    command = dagster_dev_command(port=3999)
    argv = command.argv
    assert argv[:4] == [sys.executable, "-m", "dagster", "dev"]
    assert argv[argv.index("-h") + 1] == "127.0.0.1" and argv[argv.index("-p") + 1] == "3999"
    assert argv[argv.index("-w") + 1] == str(DEFAULT_WORKSPACE)
    assert command.url == "http://127.0.0.1:3999"
    assert command.env["DAGSTER_HOME"] == str(command.dagster_home)
    assert Path(command.env["PLANEXE_HOME"]).is_absolute()
    assert command.env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
    assert command.dagster_home == Path(command.env["PLANEXE_HOME"]) / "dagster"
    with pytest.raises(UIConfigError, match="not a TCP port"):
        dagster_dev_command(port=70000)
    with pytest.raises(UIConfigError, match="does not exist"):
        dagster_dev_command(workspace="no/such/workspace.yaml")


def test_ui_refuses_an_unmigrated_database(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = CliRunner().invoke(app, ["ui"])
    assert result.exit_code == 1 and "planexe db upgrade" in result.output


# -- the real thing ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


UI_QUERY = """
{
  instance {
    daemonHealth { allDaemonStatuses { daemonType healthy required } }
    concurrencyLimits { concurrencyKey slotCount }
  }
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        sensors { name sensorState { status } }
        schedules { name cronSchedule scheduleState { status } }
      }
    }
  }
}
"""


@pytest.mark.slow
def _descendants(pid: int) -> set[int]:
    """Every live (non-zombie) process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if state[state.rindex(")") + 2] != "Z":
            alive.add(pid)
    return alive


def _port_free(port: int) -> bool:
    """Nothing answers on the port, and a new server could listen there (as servers do, with
    SO_REUSEADDR: the test's own finished connections linger in TIME_WAIT)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="follows the UI's processes in /proc")
@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda p: os.killpg(p.pid, signal.SIGINT), id="ctrl-c"),  # the terminal's SIGINT
        pytest.param(lambda p: p.send_signal(signal.SIGTERM), id="sigterm"),  # a service manager, kill
    ],
)
def test_planexe_ui_serves_dagster_on_loopback(sqlite_url, isolated_home, no_dagster_home, monkeypatch, stop):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    port = _free_port()
    # `planexe ui` as a user runs it (the console script's code path, whether or not it is installed)
    planexe = [
        sys.executable,
        "-c",
        "import sys; from planexe_assets.cli.app import app; sys.argv[0] = 'planexe'; app()",
    ]
    log_path = isolated_home.parent / "ui.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*planexe, "ui", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 240
            data = None
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    data = _graphql(port, UI_QUERY)
                    daemons = {
                        d["daemonType"]: d for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]
                    }
                    if data["repositoriesOrError"]["nodes"] and daemons.get("SENSOR", {}).get("healthy"):
                        break
                except OSError:
                    pass
                time.sleep(2)
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert data is not None, log_path.read_text(errors="replace")[-3000:]
            outward = _outward_address()
            if outward is not None:  # only the loopback interface listens
                with pytest.raises(OSError), socket.create_connection((outward, port), timeout=2):
                    pass
            started = _descendants(process.pid)
            assert len(started) >= 3, started  # dagster dev, its webserver and daemon (and code servers)
            stop(process)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert not _alive(started), f"left running: {_alive(started)}\n{output[-3000:]}"
    assert _port_free(port), f"port {port} is still taken"
    assert "stopped Dagster (" in output and "shut down cleanly" in output, output[-2000:]
    assert f"Dagster UI on http://127.0.0.1:{port}" in output
    assert f"DAGSTER_HOME={isolated_home.resolve() / 'dagster'}," in "".join(output.split())
    assert (isolated_home / "dagster" / "dagster.yaml").read_bytes() == LOCAL_CONFIG.read_bytes()

    [repo] = data["repositoriesOrError"]["nodes"]
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    assert sensors == {
        "plan_launch_sensor": "RUNNING",
        "plan_run_failure_sensor": "RUNNING",
        "plan_run_canceled_sensor": "RUNNING",
        "plan_run_success_sensor": "RUNNING",
        "plan_refresh_sensor": "RUNNING",
    }
    [schedule] = repo["schedules"]
    assert schedule == {
        "name": "plan_backfill_schedule",
        "cronSchedule": "0 * * * *",
        "scheduleState": {"status": "RUNNING"},
    }
    daemons = {
        d["daemonType"]: d["healthy"]
        for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]
        if d["required"]
    }
    assert daemons.get("SENSOR") and daemons.get("SCHEDULER") and daemons.get("QUEUED_RUN_COORDINATOR"), (
        daemons
    )
    # Deployment > Concurrency lists the llm pool with the local default limit before any run.
    assert data["instance"]["concurrencyLimits"] == [{"concurrencyKey": "llm", "slotCount": 8}]


def _outward_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, it only picks an interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address
