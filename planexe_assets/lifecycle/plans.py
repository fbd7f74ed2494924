"""Creating plans: everything is validated before anything is written.

Used by the CLI, the Luigi entry point and tests. No Dagster import: registering the plan as a
Dagster partition is the launcher's job (``planexe_assets.dagster_defs.launch``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from planexe_assets.core import SpeedVsDetail
from planexe_assets.lifecycle.redline import env_refuse_on_redline
from resources.config import runs_dir
from resources.database import DatabaseService
from resources.models import Plan, PlanStatus
from resources.plan_ids import new_plan_id, run_dir_for, validate_plan_id

# A prompt is a goal and its context, not a document dump: PlanExe's longest recorded prompts are a
# few KB. Above this limit the plan is refused (every step repeats the prompt to the model).
MAX_PROMPT_BYTES = 64 * 1024


class PlanInputError(ValueError):
    """The request to create a plan is unusable; the message says why."""


@dataclass(frozen=True)
class PlanRequest:
    prompt: str
    model: str = "auto"
    fast: bool = False
    plan_id: str | None = None
    user_id: str | None = None
    # The run that will execute the plan right away (CLI, Luigi). Stored as ``last_run_id`` in the
    # same INSERT, so the plan sensor never launches a second run for it; leave it None to queue the
    # plan for the sensor (``planexe plan --queue``).
    claimed_by_run: str | None = None
    # Stop the plan on a REFUSE verdict of the redline gate (planexe_assets/lifecycle/redline.py); None means
    # the PLANEXE_REFUSE_ON_REDLINE environment variable decides (default: advisory only).
    refuse_on_redline: bool | None = None


def validate_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise PlanInputError("the prompt must be text")
    if not prompt.strip():
        raise PlanInputError("the prompt is empty: describe the goal of the plan")
    size = len(prompt.encode("utf-8"))
    if size > MAX_PROMPT_BYTES:
        raise PlanInputError(
            f"the prompt is {size:,} bytes; the limit is {MAX_PROMPT_BYTES:,} bytes (describe the goal, "
            "don't paste whole documents)"
        )
    if "\x00" in prompt:
        raise PlanInputError("the prompt contains a NUL character")
    return prompt


def read_prompt_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlanInputError(f"cannot read prompt file {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanInputError(
            f"prompt file {path} is not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r})"
        ) from None


def validate_model_choice(model: str) -> None:
    """Fail before any plan work if the model id is unknown or its API key variable is missing."""
    from resources.llm.config import (  # deferred: resources.llm loads the openai client, which loading the definitions does not need
        load_llm_config,
        resolve_models,
    )

    resolve_models(load_llm_config(), model)


def create_plan(db: DatabaseService, request: PlanRequest, runs_root: Path | None = None) -> Plan:
    prompt = validate_prompt(request.prompt)
    plan_id = validate_plan_id(request.plan_id) if request.plan_id is not None else new_plan_id()
    validate_model_choice(request.model)
    refuse_on_redline = request.refuse_on_redline
    if refuse_on_redline is None:
        refuse_on_redline = env_refuse_on_redline()
    root = runs_root or runs_dir()
    run_dir = run_dir_for(plan_id, root)
    if db.get_plan(plan_id) is not None:
        raise PlanInputError(f"plan {plan_id} already exists; use `planexe resume {plan_id}` to continue it")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlanInputError(f"cannot create the runs directory {root}: {exc.strerror}") from None
    probe = root / f".write-probe-{plan_id}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PlanInputError(f"the runs directory {root} is not writable: {exc.strerror}") from None
    # A leftover at the plan's own path (a file, or a directory this process cannot write) would only
    # fail the first step; refuse now.
    if run_dir.exists() and not run_dir.is_dir():
        raise PlanInputError(
            f"the run directory {run_dir} exists and is not a directory; remove it or pick another plan id"
        )
    if run_dir.is_dir() and not os.access(run_dir, os.W_OK | os.X_OK):
        raise PlanInputError(f"the run directory {run_dir} is not writable")
    return db.create_plan(
        {
            "plan_id": plan_id,
            "user_id": request.user_id,
            "prompt": prompt,
            "llm_model": request.model,
            "speed_vs_detail": (
                SpeedVsDetail.FAST_BUT_SKIP_DETAILS if request.fast else SpeedVsDetail.ALL_DETAILS_BUT_SLOW
            ).value,
            "status": PlanStatus.PENDING,
            "output_dir": str(run_dir),
            "last_run_id": request.claimed_by_run,
            "refuse_on_redline": bool(refuse_on_redline),
        }
    )
