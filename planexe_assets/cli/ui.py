"""``planexe ui``: the Dagster UI and daemon (``dagster dev``) for this PLANEXE_HOME.

The command line and environment are built here (testable without starting anything); the CLI
runs them. The webserver listens on 127.0.0.1 only: the UI can launch runs that spend LLM credit,
so exposing it is a deliberate act (``--host``), never a default.
"""

from __future__ import annotations

import os
import signal as signals
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from planexe_assets.dagster_defs.instance_config import prepare_dagster_home, show_llm_pool
from resources.config import planexe_home

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKSPACE = REPO_ROOT / "workspace.yaml"
DEFINITIONS_MODULE = "planexe_assets.definitions"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000


class UIConfigError(ValueError):
    """The UI cannot be started with these settings; the message says why."""


@dataclass(frozen=True)
class DevCommand:
    argv: list[str]
    env: dict[str, str]
    dagster_home: Path
    url: str


def dagster_dev_command(
    port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, workspace: str | os.PathLike | None = None
) -> DevCommand:
    """``dagster dev -w workspace.yaml -h HOST -p PORT`` with DAGSTER_HOME and PLANEXE_HOME made absolute.

    The Dagster home is prepared (created, local ``dagster.yaml`` installed if absent) exactly as the
    CLI's in-process runs prepare it, so plans run from the CLI show up in the UI, and the ``llm``
    pool is registered so the UI's Concurrency page lists it from the start.
    """
    if not 1 <= port <= 65535:
        raise UIConfigError(f"port {port} is not a TCP port (1-65535)")
    home = prepare_dagster_home()
    show_llm_pool(home)
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(home)
    # The code server and run workers resolve the default database and run directories from
    # PLANEXE_HOME; pin it so they agree with this process whatever their working directory.
    env["PLANEXE_HOME"] = str(planexe_home())
    # The code server, daemon and run workers import this same copy of the code (dagster.yaml may
    # name a storage class in it), installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "dagster", "dev", "-h", host, "-p", str(port)]
    if workspace is not None:
        path = Path(workspace).expanduser().resolve()
        if not path.is_file():
            raise UIConfigError(f"workspace file {path} does not exist")
        argv += ["-w", str(path)]
    elif DEFAULT_WORKSPACE.is_file():
        argv += ["-w", str(DEFAULT_WORKSPACE)]
    else:  # an installed wheel has no workspace.yaml: load the definitions module directly
        argv += ["-m", DEFINITIONS_MODULE]
    shown_host = f"[{host}]" if ":" in host else host
    return DevCommand(argv=argv, env=env, dagster_home=home, url=f"http://{shown_host}:{port}")


# -- running it ---------------------------------------------------------------------------------------
# How long `dagster dev` gets to shut its webserver and daemon down after the interrupt (it waits up to
# 60 s for each of them itself), before its whole process group is terminated, then killed.
STOP_TIMEOUT_SECONDS = 90.0
TERMINATE_TIMEOUT_SECONDS = 10.0
# Its code server shuts down a moment after `dagster dev` itself (about a second here).
DRAIN_SECONDS = 15.0
_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@dataclass(frozen=True)
class DevResult:
    returncode: int | None
    signal: int | None  # the signal that asked `planexe ui` to stop, if any
    clean: bool  # `dagster dev` shut down by itself and left no process of its group behind
    escalation: str | None = None  # what had to be done instead ("terminated", "killed")

    def describe(self) -> str:
        name = signals.Signals(self.signal).name if self.signal is not None else "exit"
        how = (
            "it shut down cleanly" if self.clean else f"its processes had to be {self.escalation or 'killed'}"
        )
        return f"{name}: {how}"


def run_dagster_dev(command: DevCommand, stop_timeout: float = STOP_TIMEOUT_SECONDS) -> DevResult:
    """Run ``dagster dev`` in its own process group until it exits or this process gets SIGINT, SIGTERM
    or SIGHUP; then interrupt it (it stops its webserver and daemon), wait, and make sure nothing of
    its process group (webserver, daemon, code servers) is left: SIGTERM, then SIGKILL, to the group.

    The group is its own (a new session), so a Ctrl-C in the terminal reaches this process only, and
    this process decides how ``dagster dev`` is stopped, whichever signal came in.
    """

    def default_signals() -> None:  # in the child: a shell may have started us with SIGINT ignored
        signals.signal(signals.SIGINT, signals.SIG_DFL)
        signals.signal(signals.SIGTERM, signals.SIG_DFL)

    child = subprocess.Popen(
        command.argv, env=command.env, start_new_session=True, preexec_fn=default_signals
    )
    received: list[int] = []
    previous = _trap_stop_signals(received)
    try:
        while child.poll() is None and not received:
            try:
                child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        if not received:
            _end_group(child.pid, signals.SIGKILL)  # it exited on its own: leave nothing behind
            return DevResult(child.returncode, None, True)
        escalation = _interrupt(child, received, stop_timeout)
        escalation = _clear_group(child.pid, received, escalation)
        return DevResult(child.returncode, received[0], escalation is None, escalation)
    finally:
        for signum, handler in previous.items():
            signals.signal(signum, handler)


def _trap_stop_signals(received: list[int]) -> dict:
    """Record SIGINT/SIGTERM/SIGHUP in ``received`` instead of dying (main thread only); returns the
    handlers to restore."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in _STOP_SIGNALS:
            signum = getattr(signals, name)
            previous[signum] = signals.signal(signum, lambda s, _f: received.append(s))
    return previous


def _interrupt(child, received: list[int], stop_timeout: float) -> str | None:
    """SIGINT to ``dagster dev``; if it does not stop in time (or a second signal comes), SIGTERM and
    then SIGKILL to its group. Returns what had to be done beyond the interrupt, if anything."""
    child.send_signal(signals.SIGINT)
    if _wait_for(child, stop_timeout, lambda: len(received) > 1):
        return None
    _end_group(child.pid, signals.SIGTERM)
    if _wait_for(child, TERMINATE_TIMEOUT_SECONDS, lambda: False):
        return "terminated"
    _end_group(child.pid, signals.SIGKILL)
    child.wait()
    return "killed"


def _clear_group(pgid: int, received: list[int], escalation: str | None) -> str | None:
    """Children that outlive `dagster dev` (they are still in its process group) get a moment to
    follow it, then are terminated, then killed. Returns the escalation so far."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while _group_alive(pgid) and time.monotonic() < deadline and len(received) < 2:
        time.sleep(0.1)
    if not _group_alive(pgid):
        return escalation
    escalation = escalation or "terminated"
    _end_group(pgid, signals.SIGTERM)
    deadline = time.monotonic() + TERMINATE_TIMEOUT_SECONDS
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        escalation = "killed"
        _end_group(pgid, signals.SIGKILL)
    return escalation


def _wait_for(child, seconds: float, give_up) -> bool:
    """Wait until ``child`` exits (True) or ``seconds`` pass / ``give_up()`` (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not give_up():
        try:
            child.wait(timeout=0.2)
            return True
        except subprocess.TimeoutExpired:
            continue
    return child.poll() is not None


def group_members(pgid: int) -> list[int] | None:
    """Live (non-zombie) processes of process group ``pgid``, from /proc; None where there is no /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    members = group_members(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
