"""How Dagster treats the assets that call an LLM: the ``llm`` concurrency pool and a retry policy.

- Pool: every LLM-calling asset has ``pool="llm"``; the instance's pool limit (``planexe_assets/deploy/*.yaml``,
  or ``dagster instance concurrency set llm N``) caps how many of them execute at once across
  every run of the instance, whatever executor each run uses.
- Retries: the LLM executor already retries a call and falls back across models within seconds.
  This policy is the slower second line for outages that outlast that: the whole step is retried
  with exponential backoff and jitter. ``PLANEXE_LLM_STEP_RETRIES`` (default 2) and
  ``PLANEXE_LLM_STEP_RETRY_DELAY`` (seconds before the first retry, default 30; doubled each time)
  tune it when the definitions are loaded. A stop request is never retried, nor is a permanent
  failure, and a content failure at most ``PLANEXE_LLM_STEP_CONTENT_RETRIES`` times: the asset
  decides per failure (``failure_policy.py``).
- No flicker: ``dagster_will_retry`` tells the step runner, before an attempt's failure is recorded,
  whether Dagster will run the step again; only the attempt that ends the step marks the plan failed
  (``plan_sync.revive_plan_for_retry`` undoes a failure an earlier attempt recorded anyway).
"""

import os
from collections.abc import Mapping
from typing import Any

from dagster import Backoff, DagsterError, Failure, Jitter, RetryPolicy

from planexe_assets.dagster_defs.instance_config import LLM_POOL
from resources.config import ConfigError

RETRIES_ENV = "PLANEXE_LLM_STEP_RETRIES"
DELAY_ENV = "PLANEXE_LLM_STEP_RETRY_DELAY"
DEFAULT_RETRIES = 2
DEFAULT_DELAY_SECONDS = 30.0
MAX_RETRIES = 10

__all__ = ["LLM_POOL", "dagster_will_retry", "llm_retry_policy", "retries_enabled"]


def _env_number(name: str, default: float, kind: type, low: float, high: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range; use {low:g} to {high:g}")
    return value


def llm_retry_policy() -> RetryPolicy | None:
    """The retry policy of LLM-calling assets, or None when retries are turned off (``=0``)."""
    retries = int(_env_number(RETRIES_ENV, DEFAULT_RETRIES, int, 0, MAX_RETRIES))
    delay = float(_env_number(DELAY_ENV, DEFAULT_DELAY_SECONDS, float, 0, 3600))
    if retries == 0:
        return None
    return RetryPolicy(
        max_retries=retries, delay=delay, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    )


def retries_enabled(run_config: Mapping[str, Any] | None) -> bool:
    """Whether the run's executor config leaves step retries on (``retries: {disabled: {}}`` turns
    them off for every executor that takes the standard ``retries`` field; on by default)."""
    execution = (run_config or {}).get("execution") or {}
    config = execution.get("config") or {}
    for executor_config in config.values():  # {"threads": {...}} or {"in_process": {...}}
        if isinstance(executor_config, Mapping) and "disabled" in (executor_config.get("retries") or {}):
            return False
    return True


def dagster_will_retry(
    raised: BaseException, retry_number: int, policy: RetryPolicy | None, enabled: bool = True
) -> bool:
    """Whether Dagster runs a step again after its body raised ``raised`` in attempt ``retry_number``
    (0 for the first). Mirrors Dagster's op error boundary: a retry policy applies to any
    ``Exception`` except a ``Failure(allow_retries=False)`` and Dagster's own errors, until
    ``max_retries`` retries have been made."""
    if policy is None or not enabled or not isinstance(raised, Exception):
        return False
    if isinstance(raised, Failure) and not raised.allow_retries:
        return False
    if isinstance(raised, DagsterError):
        return False
    return retry_number < policy.max_retries
