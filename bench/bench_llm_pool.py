"""What the ``llm`` concurrency pool costs on the local (SQLite) Dagster instance.

``python -m bench.bench_llm_pool [--plans N]`` runs N offline fast-mode plans in-process on a
persistent instance made from ``planexe_assets/deploy/dagster.local.yaml`` as shipped (the ``llm`` pool with its
``default_limit``: every LLM step claims and releases a slot in the instance database) and on the
same file without the limit, alternating the variants so machine load hits both alike. Prints one
``BENCH {json}`` line with the wall times per variant.

Measured figures belong in the report, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=2, help="plans per variant")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="planexe-bench-pool-"))
    os.environ["PLANEXE_HOME"] = str(root / "home")
    os.environ["DATABASE_URL"] = f"sqlite:///{root / 'app.db'}"

    from dagster import DagsterInstance

    from planexe_assets.dagster_defs.instance_config import LOCAL_CONFIG
    from planexe_assets.dagster_defs.launch import run_plan_in_process
    from planexe_assets.lifecycle.plans import PlanRequest, create_plan
    from resources import migrate
    from resources.database import get_database_service

    migrate.upgrade(os.environ["DATABASE_URL"])
    db = get_database_service()
    import re

    shipped = LOCAL_CONFIG.read_text()
    limit = re.search(r"^    default_limit: (\d+)\n", shipped, re.M)
    assert limit, "planexe_assets/deploy/dagster.local.yaml changed shape; update the bench"
    unlimited = shipped.replace(limit.group(0), "")
    homes = {}
    for name, text in (("no_limit", unlimited), (f"shipped_limit_{limit.group(1)}", shipped)):
        home = root / f"dagster_{name}"
        home.mkdir()
        (home / "dagster.yaml").write_text(text)
        homes[name] = home

    times: dict[str, list[float]] = {name: [] for name in homes}
    for i in range(args.plans):
        for name, home in homes.items():
            plan_id = f"{name}_{i}"
            create_plan(
                db,
                PlanRequest(
                    prompt="Open a bakery in Oslo with a lunch counter.",
                    model="offline",
                    fast=True,
                    plan_id=plan_id,
                ),
            )
            with DagsterInstance.from_config(str(home)) as instance:
                started = time.perf_counter()
                outcome = run_plan_in_process(plan_id, instance, log_level="ERROR")
                times[name].append(time.perf_counter() - started)
            if not outcome.success:
                raise SystemExit(f"plan {plan_id} failed: {outcome.failed_steps}")
    result = {
        "bench": "llm_pool",
        "plans_per_variant": args.plans,
        "seconds": {name: [round(t, 2) for t in ts] for name, ts in times.items()},
        "median_seconds": {name: round(statistics.median(ts), 2) for name, ts in times.items()},
        "load_average": os.getloadavg()[0],
    }
    print("BENCH " + json.dumps(result))


if __name__ == "__main__":
    main()
