"""The process that executes one plan run for ``planexe plan`` / ``planexe resume``.

``python -m planexe_assets.cli.plan_worker --plan-id ID --run-id RUN [--step NAME ...] [--control-stdin]``

The ``planexe`` command (``planexe_assets.cli.supervisor``) starts this in its own session, with its
stdout and stderr going to a log file, and shows progress from the database and Dagster's event log.
Two reasons for the separate process: Dagster's compute-log capture redirects the executing
process's stdout/stderr (a live view drawn by that process freezes), and the terminal's Ctrl-C must
reach only the ``planexe`` command, which decides what a stop means, not Dagster's helper processes.

Stopping. Any of these asks the run to stop:

- SIGTERM or SIGINT to this process (what the ``planexe`` command sends on Ctrl-C or SIGTERM);
- with ``--control-stdin`` (how the ``planexe`` command starts it): a line ``stop <reason>`` on stdin
  (the command writes why, e.g. "Ctrl-C in planexe plan", then sends SIGTERM), or the end of stdin,
  which means the command went away (it was killed, or its terminal closed);
- the run marked CANCELING or CANCELED in Dagster (the UI's Terminate, ``dagster run terminate``),
  seen by polling the run's status.

The run is registered with ``executor.cancel_on_interrupt``, so the interrupt is recorded as a stop
request (CANCELING) and the thread executor starts no new step, sets the run's stop flag (the LLM
layer stops between attempts) and waits for the steps in flight. After ``PLANEXE_STOP_GRACE_SECONDS``
(default 15) this process stops waiting: it reports the run CANCELED, marks the plan ``stopped`` and
exits; an abandoned step's half-done write leaves no file without its row (see ``plan_store``). When
the run ends by itself, the plan row is reconciled with the run's outcome (``run_end.settle_run``).

Exit status: 0 the run succeeded, 3 it failed, 4 it was stopped, 5 this process failed (see its log);
in these four cases the end is recorded. Any other status (1: an uncaught error, 2: bad arguments, or
killed by a signal) means it is not, and the ``planexe`` command records it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

EXIT_OK = 0
EXIT_FAILED = 3
EXIT_STOPPED = 4
EXIT_WORKER_ERROR = 5

GRACE_ENV = "PLANEXE_STOP_GRACE_SECONDS"
DEFAULT_GRACE_SECONDS = 15.0
_WATCH_SECONDS = 0.25
_RUN_STATUS_EVERY = 4  # watcher ticks between looks at the run's status in Dagster

log = logging.getLogger("planexe.worker")

# This module imports only the standard library at its top. Everything else (Dagster, the
# definitions, the database layer: a second or more) is imported inside the functions that use it,
# after ``main`` has installed the signal handlers, so a stop that arrives while they load is kept.


def stop_grace_seconds() -> float:
    """``PLANEXE_STOP_GRACE_SECONDS``: how long a stopped run waits for its steps in flight (0-3600)."""
    from resources.config import ConfigError

    raw = os.environ.get(GRACE_ENV, "").strip()
    if not raw:
        return DEFAULT_GRACE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{GRACE_ENV}={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"{GRACE_ENV}={raw!r} is out of range; use 0 to 3600 seconds")
    return value


class StopControl:
    """Why (and since when) this run is asked to stop; set from signal handlers and the watcher."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None
        self.since: float | None = None

    def request(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.since = time.monotonic()
            self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()


def _install_signal_handlers(control: StopControl) -> None:
    """Outside Dagster's execution (which installs its own handlers for SIGINT and SIGTERM, captured
    as an interrupt), a signal only records the stop request."""
    names = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}

    def handler(signum, _frame) -> None:
        control.request(f"{names.get(signum, signum)} to the plan worker")

    for signum in names:
        signal.signal(signum, handler)


class Watcher(threading.Thread):
    """Turns stop requests into an interrupt of the run, and gives up on the steps in flight after the
    grace period."""

    def __init__(self, control: StopControl, instance, db, plan_id: str, run_id: str, grace: float):
        super().__init__(name="planexe-stop-watcher", daemon=True)
        self.control = control
        self.instance = instance
        self.db = db
        self.plan_id = plan_id
        self.run_id = run_id
        self.grace = grace
        self.executing = threading.Event()  # set while Dagster executes the run in the main thread
        self.finished = threading.Event()  # set once the main thread settles the run
        self.settle_lock = threading.Lock()  # one side settles the run: the main thread or _give_up
        self.acknowledged = False  # the executor has seen the interrupt

    def run(self) -> None:
        from planexe_assets.dagster_defs.executor import stop_requested

        ticks = 0
        while not self.finished.wait(_WATCH_SECONDS):
            ticks += 1
            try:
                if not self.control.requested:
                    self._look_for_a_stop(ticks)
                if stop_requested(self.run_id):
                    self.acknowledged = True
                    self.control.request("an interrupt of the run")
                if not self.control.requested:
                    continue
                if self.executing.is_set() and not self.acknowledged:
                    # Dagster's handler turns SIGINT into the interrupt its executor polls; repeat until
                    # the executor has seen one (the first may come before the handler is installed).
                    os.kill(os.getpid(), signal.SIGINT)
                if self.control.since is not None and time.monotonic() - self.control.since > self.grace:
                    self._give_up()
            except Exception:  # noqa: BLE001 - the watcher must not die; the log says what happened
                log.exception("stop watcher")

    def _look_for_a_stop(self, ticks: int) -> None:
        if ticks % _RUN_STATUS_EVERY:
            return
        from dagster import DagsterRunStatus

        run = self.instance.get_run_by_id(self.run_id)
        if run is not None and run.status in (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED):
            self.control.request("the Dagster run was terminated")

    def _give_up(self) -> None:
        from planexe_assets.dagster_defs.run_end import settle_run

        if not self.settle_lock.acquire(blocking=False) or self.finished.is_set():
            return  # the main thread is settling the run itself
        log.warning(
            "run %s: steps still in flight %.0f s after the stop request; abandoning them",
            self.run_id,
            self.grace,
        )
        settle_run(self.instance, self.db, self.plan_id, self.run_id, stopped_by=self.control.reason)
        logging.shutdown()
        os._exit(EXIT_STOPPED)


def _read_control(control: StopControl, stream) -> None:
    """The ``planexe`` command's control channel: ``stop <reason>`` lines; end of input = it is gone."""
    for line in stream:
        command, _, reason = line.strip().partition(" ")
        if command == "stop":
            control.request(reason or "a stop request")
    control.request("the planexe command that started the run has exited")


def main(argv: list[str] | None = None) -> int:
    control = StopControl()
    _install_signal_handlers(control)  # first: a stop may come while the imports below run

    parser = argparse.ArgumentParser(
        prog="python -m planexe_assets.cli.plan_worker", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--plan-id", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument(
        "--step", action="append", dest="steps", help="a step to materialise (repeat); default: all"
    )
    parser.add_argument(
        "--control-stdin", action="store_true", help="read stop requests from stdin; its end stops the run"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info(
        "plan %s, run %s, pid %d, steps: %s",
        args.plan_id,
        args.run_id,
        os.getpid(),
        ", ".join(args.steps or ["all"]),
    )

    from planexe_assets.dagster_defs.executor import cancel_on_interrupt
    from planexe_assets.dagster_defs.launch import run_plan_in_process
    from planexe_assets.dagster_defs.run_end import settle_run
    from planexe_assets.dagster_defs.runs import default_instance
    from resources.database import get_database_service
    from resources.models import PlanStatus

    instance = default_instance()
    db = get_database_service()
    if args.control_stdin:
        threading.Thread(
            target=_read_control, args=(control, sys.stdin), name="planexe-control", daemon=True
        ).start()
    watcher = Watcher(control, instance, db, args.plan_id, args.run_id, stop_grace_seconds())
    watcher.start()
    cancel_on_interrupt(args.run_id)
    died: str | None = None
    try:
        if not control.requested:
            watcher.executing.set()
            try:
                outcome = run_plan_in_process(
                    args.plan_id, instance, steps=args.steps, log_level="INFO", run_id=args.run_id
                )
            finally:
                watcher.executing.clear()
            log.info(
                "run %s ended: success=%s, failed steps: %s",
                outcome.run_id,
                outcome.success,
                outcome.failed_steps,
            )
    except BaseException as exc:  # noqa: BLE001 - recorded on the run and the plan, and in this log
        log.exception("the run raised")
        died = f"{type(exc).__name__}: {exc}"
    with watcher.settle_lock:
        watcher.finished.set()
        cancel_on_interrupt(args.run_id, False)
        try:
            settled = settle_run(
                instance,
                db,
                args.plan_id,
                args.run_id,
                stopped_by=control.reason if control.requested else None,
                died=died,
            )
        except Exception:  # noqa: BLE001 - e.g. the database is gone; the planexe command reports it
            log.exception("could not record the end of run %s", args.run_id)
            return EXIT_WORKER_ERROR
    log.info("settled: run %s, plan %s", settled.run_status, settled.plan_status)
    if died is not None and not control.requested:
        return EXIT_WORKER_ERROR
    if settled.plan_status == PlanStatus.STOPPED or (
        control.requested and settled.plan_status != PlanStatus.COMPLETED
    ):
        return EXIT_STOPPED
    from dagster import DagsterRunStatus

    return EXIT_OK if settled.run_status == DagsterRunStatus.SUCCESS else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
