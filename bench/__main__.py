"""``python -m bench``: the performance benchmark of planexe-dagster; writes ``bench/RESULTS.md``.

Sections (all by default; ``--sections`` picks some):

- ``plan``: one plan side by side against one local latency server, once per latency model
  (``--latency``, default PlanExe-like log-normal and a fixed latency at the same median, both times
  ``--scale``): the Dagster job (thread executor; SQLite and PostgreSQL instance; Dagster's
  in-process executor for reference; the same job on Dagster's public ``multiprocess_executor``,
  forkserver with the definitions preloaded, and ``in_process_executor``, which decide whether the
  project's ``planexe_threads`` executor is worth keeping), ``python -m legacy_luigi`` with workers=1 and workers=8 in
  PlanExe's mode (a fan-out's items one after another; ``--contenders`` adds the Luigi runs as
  shipped, fan-outs concurrent), and the lower bound computed from the calls each run made. The
  server's answers have PlanExe's list lengths (``--shape``), so fan-outs are as wide as PlanExe's.
  Prints wall times and ratios.
- ``overhead``: the same plan at zero latency: orchestration overhead = wall time minus the time of
  the same steps run by a plain loop with no orchestrator, for Dagster's stock and this project's
  instance storage on SQLite and PostgreSQL, for both executors, and for Luigi.
- ``upserts``: ``plan_content`` upserts per second, SQLite and PostgreSQL.
- ``concurrent``: one plan, then N plans at once, queued through the plan sensor, the queued run
  coordinator and the daemon's run workers.
- ``celery``: N plans (``--celery-plans``, default 4,8) through the plan sensor on a deployment of
  separate processes (``planexe_assets/deploy/``: gRPC code server, daemon, PostgreSQL storage): on 1 and 2 Celery
  workers (``full_plan_celery_job``, RabbitMQ) and on the thread executor; broker and worker start-up
  cost per step, and the ``llm`` pool's limit across workers (``bench/celery_plans.py``). Needs
  PostgreSQL and RabbitMQ, else skipped with the reason.

PostgreSQL parts use ``PLANEXE_BENCH_POSTGRES_URL`` (else ``PLANEXE_TEST_POSTGRES_URL``, else
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and are skipped, with the reason, when it
does not answer. Everything runs in temporary homes; nothing of the user's is touched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench.environment import (
    BenchHome,
    create_bench_plan,
    latency_server,
    make_home,
    postgres_available,
    postgres_server_url,
)

PROMPT = (
    "Open a small vegan butcher shop in Copenhagen: plant-based sausages, deli slices and a lunch "
    "counter, opening within a year on a budget of 2 million DKK."
)
SECTIONS = ("plan", "overhead", "upserts", "concurrent", "celery")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
STEPS = 61


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.verdicts: list[tuple[str, str, bool | None]] = []

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(header) + " |")
        self.add("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.add("| " + " | ".join(row) + " |")
        self.add()

    def verdict(self, target: str, measured: str, met: bool | None) -> None:
        self.verdicts.append((target, measured, met))


def two_thousand_26_summary(bound, without) -> str:
    """What the steps added from PlanExe 2026 cost this plan's lower bound, and where they sit."""
    from bench.contenders import ADDED_STEP_NAMES
    from planexe_assets.steps.constraint_matrix import CONSTRAINT_CHECK_STEPS

    added = bound.seconds - without.seconds
    on_chain = [s for s in bound.critical_path if s in ADDED_STEP_NAMES and bound.step_seconds.get(s, 0) > 0]
    own = sum(bound.step_seconds[s] for s in on_chain)
    checks = [s for s in CONSTRAINT_CHECK_STEPS if s in bound.finish and "report" in bound.finish]
    slack = min((bound.slack(s, "report") for s in checks), default=None)
    text = (
        f"The 11 steps added from PlanExe 2026 lengthen the lower bound by {added:.1f} s "
        f"({without.seconds:.1f} s with their calls taking no time); on the critical chain: "
        + (", ".join(f"{s} {bound.step_seconds[s]:.1f} s" for s in on_chain) or "none")
        + f" ({own:.1f} s of their own latency)."
    )
    if slack is not None:
        text += (
            f" The six constraint checks run beside the chain they check: the last of them is done "
            f"{slack:.1f} s before the report can start."
        )
    return text


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
    except OSError:
        return "n/a"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent.parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent.parent,
        )
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- section: one plan, side by side ----------------------------------------------------------------


# The plan section's contenders, in the order they run: key -> (Dagster executor, row label) for the
# Dagster job, key -> (workers, PlanExe mode) for Luigi. "dagster" (thread executor, SQLite instance)
# is the reference every other row is compared with and always runs; "dagster_pg" runs on a
# PostgreSQL instance, the others on the SQLite one.
DAGSTER_RUNS = {
    "dagster": ("threads", "Dagster job, thread executor, SQLite instance"),
    "dagster_pg": ("threads", "Dagster job, thread executor, PostgreSQL instance"),
    "dagster_inproc": ("in_process", "Dagster job, in-process executor (reference)"),
    "dagster_multiprocess": (
        "multiprocess",
        "Dagster job, Dagster's multiprocess_executor (forkserver, preloaded)",
    ),
    "dagster_public_inproc": ("public_in_process", "Dagster job, Dagster's in_process_executor"),
}
LUIGI_RUNS = {
    "luigi1": (1, True),
    "luigi8": (8, True),
    "luigi1_shipped": (1, False),
    "luigi8_shipped": (8, False),
}
CONTENDERS = tuple(key for key in (*DAGSTER_RUNS, *LUIGI_RUNS) if key != "dagster")
# The first latency model runs these besides the Dagster job on SQLite (which always runs); later
# models (a second view of the same plan) run the Luigi baselines of the targets only.
DEFAULT_CONTENDERS = (
    "dagster_pg",
    "dagster_inproc",
    "dagster_multiprocess",
    "dagster_public_inproc",
    "luigi1",
    "luigi8",
)
# Dagster's public executors against the project's planexe_threads (issue 15): the custom executor
# stays only if it beats the best of them by more than this fraction of their wall time.
EXECUTOR_MARGIN = 0.10
PUBLIC_EXECUTOR_CONTENDERS = ("dagster_multiprocess", "dagster_public_inproc")
LATER_MODEL_CONTENDERS = ("luigi1", "luigi8")


def section_plan(report: Report, args, pg_reason: str | None) -> None:
    for index, model in enumerate(args.latency_models):
        wanted = args.contender_set or set(DEFAULT_CONTENDERS if index == 0 else LATER_MODEL_CONTENDERS)
        plan_side_by_side(report, args, pg_reason, model, wanted, tag=f"m{index}")


def plan_side_by_side(report: Report, args, pg_reason: str | None, model, wanted: set[str], tag: str) -> None:
    report.add(f"## One plan, side by side (latency: {model.describe()})")
    report.add()
    with latency_server(model.spec, model.scale, args.shape) as server:
        results, server_stats, where_it_goes = _run_side_by_side(server, args, pg_reason, wanted, tag)

    by_key = dict(results)
    dagster = by_key["dagster"]
    bound = dagster.bound.seconds if dagster.bound else None
    _side_by_side_table(report, results, dagster, bound)
    _lower_bound_notes(report, results, dagster)
    if where_it_goes is not None:
        _critical_path_table(report, dagster, where_it_goes)
    _server_and_failures(report, server_stats, results)
    where = f" ({model.short()})"
    if bound:
        report.verdict(
            "one plan within 1.2x the lower bound" + where,
            f"{dagster.wall_seconds / bound:.2f}x",
            dagster.ok and dagster.wall_seconds <= 1.2 * bound,
        )
    _executor_verdict(report, by_key, dagster, where)
    _luigi_verdicts(report, by_key, dagster, where)


def _run_side_by_side(server, args, pg_reason: str | None, wanted: set[str], tag: str):
    """Runs the wanted contenders (and always the Dagster job on SQLite) against ``server``, each in
    a home of its own instance storage; returns the ``(key, result)`` pairs in run order, the
    server's request statistics and the critical-path breakdown of the first run (or None)."""
    homes: list[BenchHome] = []
    results = []
    try:
        sqlite_home = make_home(base_url=server.base_url, in_flight=args.in_flight)
        homes.append(sqlite_home)
        pg_home = None
        if pg_reason is None and "dagster_pg" in wanted:
            pg_home = make_home(
                base_url=server.base_url, in_flight=args.in_flight, dagster_storage="postgres"
            )
            homes.append(pg_home)
        for key in _selected_contenders(wanted, with_postgres=pg_home is not None):
            home = pg_home if key == "dagster_pg" else sqlite_home
            results.append((key, _run_contender(key, home, f"bench_{tag}_{key}")))
        server_stats = server.stats()
        where_it_goes = _critical_path_breakdown(sqlite_home, results)
    finally:
        for home in homes:
            home.close()
    return results, server_stats, where_it_goes


def _selected_contenders(wanted: set[str], with_postgres: bool) -> list[str]:
    """The keys to run, in table order: "dagster" always, "dagster_pg" only with a PostgreSQL home."""
    return [
        key
        for key in (*DAGSTER_RUNS, *LUIGI_RUNS)
        if key == "dagster" or (key in wanted and (key != "dagster_pg" or with_postgres))
    ]


def _run_contender(key: str, home: BenchHome, plan_id: str):
    """Creates ``plan_id`` in ``home`` and runs it with the contender ``key`` (see ``DAGSTER_RUNS``
    and ``LUIGI_RUNS``)."""
    from bench.contenders import run_dagster, run_luigi

    create_bench_plan(home, plan_id, PROMPT)
    print(f"... {key}", flush=True)
    if key in DAGSTER_RUNS:
        executor, name = DAGSTER_RUNS[key]
        result = run_dagster(home, plan_id, executor, name=name)
    else:
        workers, planexe_mode = LUIGI_RUNS[key]
        result = run_luigi(home, plan_id, workers, planexe_mode=planexe_mode)
    print(
        f"    {result.name}: {result.wall_seconds:.1f} s, {result.status}, {result.calls} calls", flush=True
    )
    return result


def _critical_path_breakdown(sqlite_home: BenchHome, results):
    """Where the first run's wall time went along its critical chain; None unless it completed with a
    lower bound."""
    first = results[0][1] if results else None
    if first is None or not first.ok or first.bound is None:
        return None
    from bench.critical_path import breakdown
    from resources.database import get_database_service

    instance = sqlite_home.instance()
    try:
        return breakdown(
            instance,
            get_database_service(sqlite_home.app_db_url),
            first.plan_id,
            first.bound,
            first.wall_seconds,
            first.inner_seconds,
        )
    finally:
        instance.dispose()


def _side_by_side_table(report: Report, results, dagster, bound: float | None) -> None:
    rows = []
    for _key, r in results:
        ratio_bound = f"{r.wall_seconds / bound:.2f}x" if bound else "–"
        vs_dagster = f"{r.wall_seconds / dagster.wall_seconds:.2f}x" if dagster.wall_seconds else "–"
        calls = f"{r.calls} / {r.bound.serial_seconds:.1f} s" if r.bound else str(r.calls)
        rows.append(
            [r.name, _s(r.wall_seconds), _s(r.inner_seconds), r.status, calls, ratio_bound, vs_dagster]
        )
    rows.append(
        [
            "**lower bound** (longest latency-weighted chain of the Dagster run's calls)",
            _s(bound),
            "",
            "",
            "",
            "1.00x",
            "",
        ]
    )
    report.table(
        [
            "contender",
            "wall",
            "executing (after imports)",
            "plan",
            "calls / sum of latencies",
            "x lower bound",
            "x Dagster",
        ],
        rows,
    )


def _lower_bound_notes(report: Report, results, dagster) -> None:
    bounds = {key: r.bound.seconds for key, r in results if r.bound}
    report.add(
        "Lower bound recomputed from each run's own calls: "
        + ", ".join(f"{key} {value:.1f} s" for key, value in bounds.items())
        + ". Identical calls and latencies in every run are the point of the latency server's seeding."
    )
    if dagster.bound:
        report.add()
        report.add(f"Critical chain: {dagster.bound.summary()}.")
        report.add()
        report.add(
            f"Ceiling: the sum of this plan's latencies is {dagster.bound.serial_seconds / dagster.bound.seconds:.2f}x "
            "its lower bound, so no orchestrator can be more than that much faster than one call at a time "
            "(Luigi workers=1 in PlanExe mode) on this plan."
        )
        without = dagster.extra.get("bound_without_2026")
        if without is not None:
            report.add()
            report.add(two_thousand_26_summary(dagster.bound, without))
        if dagster.bound.fanout_capped:
            report.add(
                f"Fan-outs that may have been cut into waves by their thread pool: {', '.join(dagster.bound.fanout_capped)}."
            )


def _critical_path_table(report: Report, dagster, where_it_goes) -> None:
    report.add()
    report.add(
        f"Where the Dagster job's {dagster.wall_seconds:.1f} s went, along the critical chain "
        f"({where_it_goes.chain_steps} steps, {where_it_goes.chain_llm_steps} of them calling the LLM; "
        "`bench/critical_path.py`):"
    )
    report.add()
    report.table(["part", "seconds", "share of wall"], where_it_goes.rows(dagster.wall_seconds))


def _server_and_failures(report: Report, server_stats, results) -> None:
    report.add()
    report.add(
        f"Latency server: {server_stats['requests']} requests, at most {server_stats['peak_in_flight']} in flight at once."
    )
    report.add()
    failed = [r.name for _, r in results if not r.ok]
    if failed:
        report.add(
            f"**Not completed:** {', '.join(failed)}: "
            + "; ".join(f"{r.name}: {r.detail[:300]}" for _, r in results if not r.ok)
        )
        report.add()


def _executor_verdict(report: Report, by_key, dagster, where: str) -> None:
    """planexe_threads against the fastest of Dagster's public executors that completed (issue 15)."""
    public = [by_key[key] for key in PUBLIC_EXECUTOR_CONTENDERS if key in by_key and by_key[key].ok]
    if not (public and dagster.ok):
        return
    best = min(public, key=lambda r: r.wall_seconds)
    gain = 1 - dagster.wall_seconds / best.wall_seconds
    report.add(
        f"Executors: `planexe_threads` took {dagster.wall_seconds:.1f} s, the best of Dagster's public executors "
        f"({best.name}) {best.wall_seconds:.1f} s: the custom executor is {gain * 100:.0f}% faster "
        f"(it is kept only above {EXECUTOR_MARGIN * 100:.0f}%)."
    )
    report.add()
    report.verdict(
        f"planexe_threads > {EXECUTOR_MARGIN * 100:.0f}% faster than Dagster's best public executor{where}",
        f"{gain * 100:.0f}% ({best.wall_seconds:.1f} s -> {dagster.wall_seconds:.1f} s)",
        gain > EXECUTOR_MARGIN,
    )


def _luigi_verdicts(report: Report, by_key, dagster, where: str) -> None:
    for key, label, target in (
        ("luigi1", "Luigi workers=1 (PlanExe mode)", 2.5),
        ("luigi8", "Luigi workers=8 (PlanExe mode)", 1.8),
    ):
        other = by_key.get(key)
        if other is not None:
            ratio = other.wall_seconds / dagster.wall_seconds
            report.verdict(
                f">= {target}x faster than {label}{where}",
                f"{ratio:.2f}x",
                dagster.ok and other.ok and ratio >= target,
            )


# -- section: orchestration overhead -----------------------------------------------------------------


def section_overhead(report: Report, args, pg_reason: str | None) -> None:
    report.add("## Orchestration overhead at zero latency")
    report.add()
    measured: dict[str, float] = {}
    with latency_server("fixed:0", 1.0, args.shape) as server:
        configs = [("sqlite", True), ("sqlite", False)]
        if pg_reason is None:
            configs += [("postgres", True), ("postgres", False)]
        homes: list[BenchHome] = []
        try:
            base = make_home(base_url=server.base_url, in_flight=args.in_flight)
            homes.append(base)
            rows, baseline = _overhead_baselines(base)
            for storage, pooled in configs:
                home = make_home(
                    base_url=server.base_url,
                    in_flight=args.in_flight,
                    dagster_storage=storage,
                    pooled_storage=pooled,
                )
                homes.append(home)
                rows += _overhead_dagster_rows(home, storage, pooled, baseline, measured)
        finally:
            for home in homes:
                home.close()
    report.table(
        ["orchestrator", "Dagster instance storage", "wall", "executing", "overhead", "per asset", "plan"],
        rows,
    )
    report.add(
        "Overhead = the run's execution time minus the plain loop's (same steps, same zero-latency server, "
        "same SQLite application database), i.e. what the orchestrator adds: events, run and event-log "
        "storage, IO-manager bookkeeping, scheduling. Wall times include interpreter start-up and imports."
    )
    report.add()
    _overhead_verdicts(report, measured)


def _overhead_baselines(base: BenchHome) -> tuple[list[list[str]], float]:
    """The plain loop over the steps and Luigi workers=1 in ``base``: their table rows and the plain
    loop's execution time, which every Dagster run's overhead is measured from."""
    from bench.contenders import run_direct, run_luigi

    create_bench_plan(base, "zero_direct", PROMPT)
    direct = run_direct(base, "zero_direct")
    create_bench_plan(base, "zero_luigi", PROMPT)
    luigi = run_luigi(base, "zero_luigi", 1, planexe_mode=False, name="Luigi workers=1")
    baseline = direct.inner_seconds or direct.wall_seconds
    luigi_overhead = luigi.wall_seconds - direct.wall_seconds
    rows = [
        [
            "no orchestrator (plain loop over the steps)",
            "–",
            _s(direct.wall_seconds),
            _s(baseline),
            "0 (baseline)",
            "–",
            direct.status,
        ],
        [
            "Luigi workers=1",
            "–",
            _s(luigi.wall_seconds),
            "–",
            f"{luigi_overhead:.1f} s (wall vs wall)",
            f"{luigi_overhead / STEPS:.3f} s",
            luigi.status,
        ],
    ]
    return rows, baseline


def _overhead_dagster_rows(
    home: BenchHome, storage: str, pooled: bool, baseline: float, measured: dict[str, float]
) -> list[list[str]]:
    """Runs the Dagster job in ``home`` with each executor of the storage configuration (the stock
    storage with the in-process one only); records each overhead in ``measured`` by
    ``storage/pooled|stock/executor`` and returns the table rows."""
    from bench.contenders import run_dagster

    rows = []
    label = "project storage (pooled)" if pooled else "Dagster's stock storage"
    for executor in ("in_process", "threads"):
        if not pooled and executor == "threads":
            continue
        plan_id = f"zero_{storage}_{'pooled' if pooled else 'stock'}_{executor}"
        create_bench_plan(home, plan_id, PROMPT)
        print(f"... {plan_id}", flush=True)
        r = run_dagster(home, plan_id, executor)
        inner = r.inner_seconds or r.wall_seconds
        overhead = inner - baseline
        measured[f"{storage}/{'pooled' if pooled else 'stock'}/{executor}"] = overhead
        rows.append(
            [
                f"Dagster, {executor.replace('_', '-')} executor",
                f"{'SQLite' if storage == 'sqlite' else 'PostgreSQL'}, {label}",
                _s(r.wall_seconds),
                _s(inner),
                f"{overhead:.1f} s",
                f"{overhead / STEPS:.3f} s",
                r.status,
            ]
        )
    return rows


def _overhead_verdicts(report: Report, measured: dict[str, float]) -> None:
    for storage in ("sqlite", "postgres"):
        for executor in ("threads", "in_process"):
            key = f"{storage}/pooled/{executor}"
            if key in measured:
                name = "SQLite" if storage == "sqlite" else "PostgreSQL"
                report.verdict(
                    f"overhead <= 15 s, {name} instance, {executor.replace('_', '-')} executor",
                    f"{measured[key]:.1f} s",
                    measured[key] <= 15.0,
                )


# -- section: upserts ---------------------------------------------------------------------------------


def section_upserts(report: Report, args, pg_reason: str | None) -> None:
    import tempfile

    from bench.environment import create_postgres_database, drop_postgres_database
    from bench.upserts import measure_upserts
    from resources import migrate

    report.add("## plan_content upserts per second")
    report.add()
    results = []
    with tempfile.TemporaryDirectory(prefix="planexe-bench-upserts-") as tmp:
        url = f"sqlite:///{tmp}/upserts.db"
        migrate.upgrade(url)
        results.append(measure_upserts(url, "SQLite", files=args.upsert_files))
    if pg_reason is None:
        url = create_postgres_database("planexe_bench_upserts")
        try:
            migrate.upgrade(url)
            results.append(measure_upserts(url, "PostgreSQL", files=args.upsert_files))
        finally:
            from resources.database import _services

            service = _services.pop(url, None)
            if service is not None:
                service.close()
            drop_postgres_database(url)
    report.table(
        ["database", "files", "new rows / s", "updated rows / s", "dual writes / s (file + rows)"],
        [
            [
                r.backend,
                f"{r.files} x {r.size} B",
                f"{r.insert_per_second:.0f}",
                f"{r.update_per_second:.0f}",
                f"{r.dual_write_per_second:.0f}",
            ]
            for r in results
        ],
    )
    report.add(
        "One file per transaction (a step's output), each upsert writing its plan_content and plan_files rows."
    )
    report.add()


# -- section: concurrent plans -------------------------------------------------------------------------


def section_concurrent(report: Report, args, pg_reason: str | None) -> None:
    from bench.concurrent_plans import Daemon, run_batch

    n = args.concurrent_plans
    model = args.latency_models[0]
    report.add(f"## {n} plans at once through the queued run coordinator (latency: {model.describe()})")
    report.add()
    with latency_server(model.spec, model.scale, args.shape) as server:
        home = make_home(base_url=server.base_url, in_flight=args.in_flight, max_concurrent_runs=n)
        daemon = None
        try:
            daemon = Daemon(home)
            daemon.wait_until_sensor_ticked()
            print("... daemon ready; one plan", flush=True)
            one = run_batch(home, "queued_one", 1, PROMPT, timeout=args.timeout)
            print(f"    {one.wall_seconds:.1f} s {one.statuses}", flush=True)
            print(f"... {n} plans", flush=True)
            many = run_batch(home, "queued_many", n, PROMPT, timeout=args.timeout)
            print(f"    {many.wall_seconds:.1f} s {many.statuses}", flush=True)
            stats = server.stats()
        finally:
            if daemon is not None:
                daemon.stop()
            home.close()
    ratio = many.wall_seconds / one.wall_seconds
    report.table(
        ["plans queued at once", "wall (queued -> last plan completed)", "each plan", "statuses"],
        [
            [
                "1",
                _s(one.wall_seconds),
                ", ".join(_s(v) for v in one.per_plan_seconds.values()),
                ", ".join(one.statuses.values()),
            ],
            [
                str(n),
                _s(many.wall_seconds),
                ", ".join(_s(v) for v in sorted(many.per_plan_seconds.values())),
                ", ".join(many.statuses.values()),
            ],
        ],
    )
    report.add(
        f"{n} plans took {ratio:.2f}x the time of one. Instance: SQLite (project storage), QueuedRunCoordinator with "
        f"max_concurrent_runs={n}, dequeue interval 1 s, plan sensor interval 1 s, no `llm` pool limit; each run in its "
        f"own run worker process with the thread executor. Latency server: at most {stats['peak_in_flight']} requests in flight."
    )
    report.add()
    report.verdict(
        f"{n} concurrent plans < 1.5x one plan", f"{ratio:.2f}x", one.ok and many.ok and ratio < 1.5
    )


# -- section: Celery workers ---------------------------------------------------------------------------


def section_celery(report: Report, args, pg_reason: str | None) -> None:
    import tempfile

    from bench.celery_cluster import broker_problem
    from bench.celery_plans import HEADER, POOL_LIMIT, describe, run_configuration

    model = args.latency_models[0]
    report.add(f"## Plans on Celery workers and on the thread executor (latency: {model.describe()})")
    report.add()
    reason = pg_reason or broker_problem()
    if reason is not None:
        report.add(f"Skipped: needs PostgreSQL and RabbitMQ ({reason}).")
        report.add()
        return
    rows = []
    batches = []
    with tempfile.TemporaryDirectory(prefix="planexe-bench-celery-") as tmp:
        for n in args.celery_plan_counts:
            for label, workers in (("threads", 0), ("celery_1_worker", 1), ("celery_2_workers", 2)):
                print(f"... {n} plans, {label}", flush=True)
                with latency_server(model.spec, model.scale, args.shape) as server:
                    batch = run_configuration(
                        f"{label}_{n}",
                        plans=n,
                        workers=workers,
                        root=Path(tmp),
                        latency_server=server,
                        prompt=PROMPT,
                        in_flight=args.in_flight,
                        timeout=args.timeout,
                    )
                batch.label = label
                print(f"    {batch.wall_seconds:.1f} s {batch.statuses}", flush=True)
                rows.append(describe(batch))
                batches.append(batch)
    report.table(HEADER, rows)
    report.add(
        "Each row is a fresh deployment of `planexe_assets/deploy/` as separate processes: PostgreSQL for both stores, the code "
        "location as a gRPC server, the daemon (plan sensor every 1 s, `max_concurrent_runs` 4), plans queued as "
        "`pending` rows in fast mode. Celery: `full_plan_celery_job`, each worker `--concurrency 4` with its own "
        "`PLANEXE_HOME`, RabbitMQ as broker; threads: `full_plan_job` in each run's process. Broker wait: the run "
        "process submitting a step -> a worker starting it (includes waiting for a free worker process); worker "
        "start: that -> the step's STEP_START. Most LLM steps at once: from the runs' step events, across all "
        f"runs and workers, against the instance's `llm` pool limit of {POOL_LIMIT}. Steps calling the server: "
        "from the latency server's in-flight log, which names the plan and step of every call (the "
        "`X-PlanExe-Plan-Id` and `X-PlanExe-Stage` headers), the distinct steps with a call in flight, at "
        "most at any moment and at most in each tenth of the batch's time; peak requests: the latency "
        "server's most requests in flight (a fan-out step sends several at once)."
    )
    report.add()
    held = all(max(b.max_llm_steps, b.max_steps_at_server) <= POOL_LIMIT for b in batches)
    report.verdict(
        f"`llm` pool limit {POOL_LIMIT} holds across Celery workers (step events; server log)",
        ", ".join(f"{b.label} x{b.plans}: {b.max_llm_steps}; {b.max_steps_at_server}" for b in batches),
        held and all(b.ok for b in batches),
    )


# -- main -------------------------------------------------------------------------------------------


SECTION_RUNNERS = {
    "plan": section_plan,
    "overhead": section_overhead,
    "upserts": section_upserts,
    "concurrent": section_concurrent,
    "celery": section_celery,
}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    os.environ.setdefault("PLANEXE_LLM_STEP_RETRY_DELAY", "1")
    logging.disable(logging.INFO)  # Alembic's migration chatter in the set-up of every home

    pg_reason = "--skip-postgres" if args.skip_postgres else postgres_available()
    report = Report()
    started = time.perf_counter()
    _report_header(report, argv, pg_reason)
    body_start = len(report.lines)
    for name in args.section_names:
        SECTION_RUNNERS[name](report, args, pg_reason)
    summary = _targets_summary(report, started)
    report.lines[body_start:body_start] = summary
    for line in summary:
        print(line)
    args.output.write_text("\n".join(report.lines).rstrip() + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    from bench.latency_server import SHAPES

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, from {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--latency",
        default="planexe,fixed:4",
        help="comma-separated latency models, each 'planexe' (log-normal, median 4 s, p90 12 s) or "
        "'fixed:SECONDS'; the plan section runs once per model, the concurrent section uses the first "
        "(default: planexe,fixed:4, i.e. PlanExe-like and a fixed latency at the same median)",
    )
    parser.add_argument(
        "--scale", type=float, default=0.5, help="multiply every latency by this (default 0.5)"
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=64,
        help="the LLM executor's in-flight limit for the server (default 64: wider than any fan-out)",
    )
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="planexe",
        help="list lengths of the server's answers: PlanExe's, so its fan-outs are as wide as in "
        "PlanExe's recorded runs (default), or the offline faker's short lists",
    )
    parser.add_argument(
        "--contenders",
        default="",
        help=f"plan section: comma-separated subset of {', '.join(CONTENDERS)}, for every latency "
        "model (the Dagster job on SQLite always runs; default: "
        f"{', '.join(DEFAULT_CONTENDERS)} for the first model, luigi1 and luigi8 for the others)",
    )
    parser.add_argument("--concurrent-plans", type=int, default=4)
    parser.add_argument(
        "--celery-plans",
        default="4,8",
        help="celery section: comma-separated numbers of plans queued at once (default 4,8)",
    )
    parser.add_argument("--upsert-files", type=int, default=300)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds one batch of queued plans may take"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="where to write the results (default bench/RESULTS.md)"
    )
    return parser


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked; adds ``section_names``, ``latency_models`` and ``contender_set``
    (None: the defaults of each latency model). Exits with argparse's usage error on bad input."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    args.section_names = _section_names(parser, args.sections)
    args.latency_models = _latency_models(parser, args.latency, args.scale)
    args.contender_set = _contender_set(parser, args.contenders)
    try:
        args.celery_plan_counts = [int(x) for x in args.celery_plans.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--celery-plans {args.celery_plans!r} is not a list of numbers")
    return args


def _section_names(parser: argparse.ArgumentParser, text: str) -> list[str]:
    sections = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    return sections


def _latency_models(parser: argparse.ArgumentParser, text: str, scale: float) -> list:
    from bench.latency_server import LatencyModel, LatencyModelError

    try:
        models = [LatencyModel.parse(item, scale) for item in text.split(",") if item.strip()]
    except LatencyModelError as exc:
        parser.error(str(exc))
    if not models:
        parser.error("--latency names no latency model")
    return models


def _contender_set(parser: argparse.ArgumentParser, text: str) -> set[str] | None:
    contender_set = {c.strip() for c in text.split(",") if c.strip()} or None
    unknown_contenders = sorted((contender_set or set()) - set(CONTENDERS))
    if unknown_contenders:
        parser.error(f"unknown contenders {unknown_contenders}; choose from {', '.join(CONTENDERS)}")
    return contender_set


def _report_header(report: Report, argv: list[str] | None, pg_reason: str | None) -> None:
    report.add("# planexe-dagster benchmark results")
    report.add()
    report.add(
        f"Run {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} with `python -m bench "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + f"` at commit {_git_commit()}; {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average before {_load()}."
    )
    report.add(
        "PostgreSQL: "
        + (f"{postgres_server_url().split('@')[-1]}" if pg_reason is None else f"skipped ({pg_reason})")
        + "."
    )
    report.add()


def _targets_summary(report: Report, started: float) -> list[str]:
    """The targets table (each verdict: met, missed or not measured) and the run's duration."""
    summary = ["## Targets", ""]
    summary += ["| target | measured | met |", "|---|---|---|"]
    summary += [
        f"| {t} | {m} | {'yes' if ok else 'no' if ok is not None else '–'} |" for t, m, ok in report.verdicts
    ]
    summary += [
        "",
        f"Benchmark took {time.perf_counter() - started:.0f} s; load average after {_load()}.",
        "",
    ]
    return summary


if __name__ == "__main__":
    sys.exit(main())
