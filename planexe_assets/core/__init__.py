"""The bottom layer: the contract between a step and whichever orchestrator runs it.

- ``step_table``: the steps as data (``STEPS``, ``STEP_BY_NAME``, ``Step``; the 61 of PlanExe's 2025
  pipeline are ``LEGACY_STEPS``, the 2026 steps added around them ``ADDED_STEPS``) and their file names
  (``step_file``, ``matches_template``, ``step_for_filename``);
- ``contract``: what a step function takes and returns (``StepContext``, ``StepInputs``,
  ``UpstreamFiles``, ``StepResult``) and the LLM caller it gets (``LLMCaller``, replies, usage);
- ``failures``: ``FailureKind``, ``StepError``, ``failure_kind`` and ``PipelineStopRequested``;
- ``fanout``: the one fan-out helper (``ctx.map_concurrent``) and its failure policy;
- ``outputs``: the layouts a step declares for its JSON outputs (``Fields``, ``Items``, ``Reader``,
  ``OneOf``).

Nothing here imports anything else of ours, nor Dagster, Luigi, SQLAlchemy or the openai client.
Import from ``planexe_assets.core``.
"""

from planexe_assets.core.contract import (
    CallUsage,
    ChatMessage,
    LLMCaller,
    SpeedVsDetail,
    StepContext,
    StepFunction,
    StepInputs,
    StepResult,
    StructuredReply,
    TextReply,
    UpstreamFiles,
    usage_metadata,
)
from planexe_assets.core.failures import (
    FailureKind,
    PipelineStopRequested,
    StepError,
    combined_kind,
    failure_kind,
    failure_kind_of_all,
)
from planexe_assets.core.fanout import Outcome, fan_out
from planexe_assets.core.outputs import (
    Fields,
    Items,
    OneOf,
    OutputModels,
    OutputSpec,
    Reader,
    as_specs,
    or_planexe,
)
from planexe_assets.core.step_table import (
    ADDED_STEPS,
    FULL_PLAN_PIPELINE_REQUIRES,
    LEGACY_FULL_PLAN_PIPELINE_REQUIRES,
    LEGACY_STEPS,
    PIPELINE_COMPLETE_FILENAME,
    STEP_BY_NAME,
    STEPS,
    Step,
    fill_template,
    matches_template,
    step,
    step_file,
    step_for_filename,
    topological_order,
)

__all__ = [
    "ADDED_STEPS",
    "FULL_PLAN_PIPELINE_REQUIRES",
    "LEGACY_FULL_PLAN_PIPELINE_REQUIRES",
    "LEGACY_STEPS",
    "PIPELINE_COMPLETE_FILENAME",
    "STEPS",
    "STEP_BY_NAME",
    "CallUsage",
    "ChatMessage",
    "FailureKind",
    "Fields",
    "Items",
    "LLMCaller",
    "OneOf",
    "Outcome",
    "OutputModels",
    "OutputSpec",
    "PipelineStopRequested",
    "Reader",
    "SpeedVsDetail",
    "Step",
    "StepContext",
    "StepError",
    "StepFunction",
    "StepInputs",
    "StepResult",
    "StructuredReply",
    "TextReply",
    "UpstreamFiles",
    "as_specs",
    "combined_kind",
    "failure_kind",
    "failure_kind_of_all",
    "fan_out",
    "fill_template",
    "matches_template",
    "or_planexe",
    "step",
    "step_file",
    "step_for_filename",
    "topological_order",
    "usage_metadata",
]
