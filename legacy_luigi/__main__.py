"""``python -m legacy_luigi --plan-id ID [--workers N]``: run a plan with Luigi's local scheduler."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from dataclasses import replace

import luigi


def main(argv: list[str] | None = None) -> int:
    from planexe_assets.plans import PlanInputError, PlanRequest, create_plan
    from resources.config import ConfigError, runs_dir
    from resources.database import get_database_service
    from resources.llm import LLMConfigError
    from resources.plan_ids import InvalidPlanId, run_dir_for, validate_plan_id

    parser = argparse.ArgumentParser(prog="python -m legacy_luigi", description=__doc__)
    parser.add_argument("--plan-id", required=True, help="The plan (its row must exist, or give --prompt).")
    parser.add_argument("--workers", type=int, default=1, help="Luigi workers (PlanExe runs with 1).")
    parser.add_argument("--prompt", help="Create the plan with this prompt if it does not exist.")
    parser.add_argument("--model", default=None, help="Model id or 'auto' (default: the plan's model).")
    parser.add_argument("--fast", action="store_true", help="fast_but_skip_details (default: the plan's mode).")
    args = parser.parse_args(argv)

    build_id = f"luigi-{uuid.uuid4().hex[:12]}"
    try:
        plan_id = validate_plan_id(args.plan_id)
        db = get_database_service()
        plan = db.get_plan(plan_id)
        if plan is None:
            if not args.prompt:
                parser.error(f"no plan {plan_id}; create it with `planexe plan` or pass --prompt")
            # Claimed by this build from the start, so the Dagster plan sensor does not launch it too.
            request = PlanRequest(prompt=args.prompt, model=args.model or "auto", fast=args.fast, plan_id=plan_id)
            plan = create_plan(db, replace(request, claimed_by_run=build_id))
    except (InvalidPlanId, PlanInputError, LLMConfigError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from legacy_luigi.tasks import FullPlanPipeline, SpeedVsDetailEnum

    os.environ["PLANEXE_LUIGI_BUILD_ID"] = build_id

    speed = SpeedVsDetailEnum.FAST_BUT_SKIP_DETAILS if args.fast else SpeedVsDetailEnum(plan.speed_vs_detail)
    models = [args.model or plan.llm_model or "auto"]
    task = FullPlanPipeline(run_id_dir=run_dir_for(plan_id, runs_dir()), speedvsdetail=speed, llm_models=models)
    if _gated(plan):
        # A gated plan (planexe_assets/redline.py) runs nothing past the gate before its verdict: build
        # the gate alone first, so no worker starts another step beside it.
        from legacy_luigi.tasks import TASK_CLASSES

        gate = TASK_CLASSES["redline_gate"](run_id_dir=task.run_id_dir, speedvsdetail=speed, llm_models=models)
        luigi.build([gate], local_scheduler=True, workers=1, log_level="WARNING")
        plan = db.get_plan(plan_id)
        if plan.status == "refused":
            print(f"plan {plan_id}: refused: {plan.error_message}", file=sys.stderr)
            return 1
    ok = luigi.build([task], local_scheduler=True, workers=args.workers, log_level="WARNING")
    plan = db.get_plan(plan_id)
    print(f"plan {plan_id}: {plan.status} ({plan.progress_message}); run directory {plan.output_dir}")
    return 0 if ok and plan.status == "completed" else 1


def _gated(plan) -> bool:
    from planexe_assets.redline import gate_enabled
    from resources.config import ConfigError

    try:
        return gate_enabled(plan)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
