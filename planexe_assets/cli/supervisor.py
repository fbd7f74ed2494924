"""``planexe plan`` / ``planexe resume`` as a supervisor of the process that runs the plan.

The run executes in a child process (``python -m planexe_assets.cli.plan_worker``), started in its own
session: the terminal's Ctrl-C reaches this process only, never Dagster's helper processes in the
child. The child's stdout and stderr (Dagster's logs, warnings, tracebacks) go to a log file,
``$PLANEXE_HOME/logs/<plan_id>/<run_id>.log``; the terminal gets the progress view this process draws
from the database and the run's event log (``planexe_assets.cli.progress``), at least once a second.

Stopping (SIGINT, i.e. Ctrl-C, SIGTERM, SIGHUP): the first signal writes ``stop <reason>`` to the
child's stdin and sends it SIGTERM. The child stops launching steps, lets the steps in flight finish
for ``PLANEXE_STOP_GRACE_SECONDS``, reports the Dagster run CANCELED, marks the plan ``stopped`` and
exits. This process waits that long plus a margin; a second signal, or the wait running out, kills
the child's process group (SIGKILL) and records the same end itself (``run_end.settle_run``).
A child that dies on its own (killed, crashed) is recorded the same way: the Dagster run FAILURE,
the plan ``failed`` and recoverable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from planexe_assets.cli.plan_worker import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, stop_grace_seconds
from planexe_assets.cli.progress import RunProgress
from planexe_assets.dagster_defs.run_end import settle_run
from resources.config import ConfigError, planexe_home

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.5  # progress is redrawn at least this often
KILL_MARGIN_SECONDS = 20.0  # beyond the child's own grace period, before it is killed
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
SIGNAL_REASON = {
    signal.SIGINT: "Ctrl-C",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP: the terminal closed",
}


class SupervisorError(RuntimeError):
    """The run could not be started (no log directory, ...); the message says why."""


@dataclass(frozen=True)
class Supervised:
    run_id: str
    log_path: Path
    worker_exit: int | None  # the child's exit status (negative: killed by that signal)
    stop_signal: int | None  # the signal that asked this process to stop, if any
    forced: bool  # the child was killed (a second signal, or it did not stop in time)
    settle_error: str | None = None  # recording the end failed (e.g. the database is gone)

    @property
    def exit_code_for_stop(self) -> int:
        return SIGNAL_EXIT.get(self.stop_signal, 1) if self.stop_signal is not None else 1


def log_path_for(plan_id: str, run_id: str) -> Path:
    return planexe_home() / "logs" / plan_id / f"{run_id}.log"


def _open_log(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")  # noqa: SIM115 - handed to the child, closed below
    except OSError as exc:
        where = path.parent if not path.parent.is_dir() else path
        raise SupervisorError(
            f"cannot write the run's log {path}: {where} is not writable ({exc.strerror or exc}); "
            "make PLANEXE_HOME writable or point it elsewhere"
        ) from None


def worker_command(plan_id: str, run_id: str, steps: Sequence[str] | None) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "planexe_assets.cli.plan_worker",
        "--plan-id",
        plan_id,
        "--run-id",
        run_id,
        "--control-stdin",
    ]
    for step in steps or ():
        argv += ["--step", step]
    return argv


def worker_environment() -> dict[str, str]:
    """This process's environment with the homes made absolute (the child may resolve paths from
    another directory) and this copy of the code importable."""
    env = dict(os.environ)
    env["PLANEXE_HOME"] = str(planexe_home())
    if os.environ.get("DAGSTER_HOME"):
        env["DAGSTER_HOME"] = str(Path(os.environ["DAGSTER_HOME"]).expanduser().resolve())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Signals:
    """Records SIGINT / SIGTERM / SIGHUP instead of dying on them (main thread only; elsewhere, as in
    a test calling the CLI from a thread, the default handlers stay)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_EXIT:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.received.append(signum)

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def supervise(
    db, instance, plan_id: str, run_id: str, steps: Sequence[str] | None, view, command: str
) -> Supervised:
    """Run the plan in a child process and show its progress until it ends; never raises on a stop.

    ``command`` names this command in the reason a stop records ("Ctrl-C in planexe plan").
    """
    grace = stop_grace_seconds()
    path = log_path_for(plan_id, run_id)
    log = _open_log(path)
    progress = RunProgress(db, instance, plan_id, run_id)
    with _Signals() as signals:  # from before the child exists: a Ctrl-C is never a traceback
        try:
            child = subprocess.Popen(
                worker_command(plan_id, run_id, steps),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=worker_environment(),
                start_new_session=True,
            )
        finally:
            log.close()
        with view:
            stop_signal, forced = _follow(child, signals, progress, view, grace, command)
            settle_error = _settle_if_needed(
                db, instance, plan_id, run_id, child.returncode, stop_signal, forced, command
            )
            _show(view, progress)
    return Supervised(run_id, path, child.returncode, stop_signal, forced, settle_error)


def _follow(
    child: subprocess.Popen, signals: _Signals, progress, view, grace: float, command: str
) -> tuple[int | None, bool]:
    """Show progress until the child exits; turn signals into a stop request, then a kill.
    Returns (the first stop signal, whether the child was killed)."""
    stop_signal: int | None = None
    forced = False
    deadline: float | None = None
    try:
        while child.poll() is None:
            tick = time.monotonic()
            if signals.received and stop_signal is None:
                stop_signal = signals.received[0]
                _ask_to_stop(child, f"{SIGNAL_REASON[stop_signal]} in {command}")
                deadline = tick + grace + KILL_MARGIN_SECONDS
                progress.stopping = True
                view.note = (
                    f"stopping: the steps in flight get up to {grace:.0f} s to finish; "
                    "press Ctrl-C again to stop at once"
                )
            if len(signals.received) > 1 or (deadline is not None and tick > deadline):
                _kill_group(child)
                forced = True
                break
            _show(view, progress)
            _wait(child, POLL_SECONDS - (time.monotonic() - tick))
    finally:
        if child.poll() is None and stop_signal is None and not forced:  # this process is failing
            _kill_group(child)
            forced = True
    child.wait()
    _kill_group(child)  # Dagster's helper processes (compute-log tails) go with the child
    return stop_signal, forced


def _show(view, progress) -> None:
    try:
        view.show(progress.poll())
    except Exception as exc:  # noqa: BLE001 - a progress read failing must not end the run
        view.note = f"progress could not be read: {type(exc).__name__}: {exc}"


def _ask_to_stop(child: subprocess.Popen, reason: str) -> None:
    try:
        child.stdin.write(f"stop {reason}\n".encode())
        child.stdin.flush()
    except (BrokenPipeError, OSError):
        pass  # the child is already gone
    try:
        child.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(child: subprocess.Popen, seconds: float) -> None:
    try:
        child.wait(timeout=max(0.01, seconds))
    except subprocess.TimeoutExpired:
        pass


def _settle_if_needed(db, instance, plan_id, run_id, returncode, stop_signal, forced, command) -> str | None:
    """Record the run's end when the child could not (killed, crashed); None, or why recording failed."""
    if not forced and returncode in (EXIT_OK, EXIT_FAILED, EXIT_STOPPED):
        return None  # the child recorded the end (EXIT_WORKER_ERROR: it tried and could not)
    if returncode is not None and returncode < 0:
        died = f"the plan worker was killed by signal {signal.Signals(-returncode).name}"
    else:
        died = f"the plan worker exited with status {returncode} (see its log)"
    stopped_by = f"{SIGNAL_REASON[stop_signal]} in {command}" if stop_signal is not None else None
    try:
        settle_run(instance, db, plan_id, run_id, stopped_by=stopped_by, died=died)
    except Exception as exc:  # noqa: BLE001 - reported by the caller
        return f"{type(exc).__name__}: {exc}"
    return None


def check_log_directory() -> None:
    """Fail early (before a plan row is written) when the runs' log directory cannot be created."""
    directory = planexe_home() / "logs"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {directory} (for the run logs): {exc.strerror or exc}; make PLANEXE_HOME writable"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"the log directory {directory} is not writable; make PLANEXE_HOME writable")
