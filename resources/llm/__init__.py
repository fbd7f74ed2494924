"""The LLM execution layer: model config, providers, the executor, recording.

Typical wiring::

    executor = LLMExecutor.from_config(model="auto", recorder=DatabaseRecorder(db_service))
    llm = executor.for_step(plan_id, "identify_purpose", should_stop=stop_flag.is_set)
    reply = llm.structured(messages, PurposeModel, label="purpose")
"""

from resources.llm.config import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    PROVIDER_CLASSES,
    STRUCTURED_MODES,
    Cost,
    LLMConfig,
    LLMConfigError,
    MissingEnvironmentVariable,
    ModelEntry,
    load_llm_config,
    parse_llm_config,
    resolve_models,
)
from resources.llm.executor import InFlightLimiter, LLMExecutor, RetryPolicy, StepLLM
from resources.llm.offline import MARKER as OFFLINE_MARKER
from resources.llm.providers import (
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderReply,
    ProviderRequest,
    make_provider,
)
from resources.llm.recording import DatabaseRecorder, InteractionRecorder, MemoryRecorder, NullRecorder

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "OFFLINE_MARKER",
    "PROVIDER_CLASSES",
    "STRUCTURED_MODES",
    "Cost",
    "DatabaseRecorder",
    "InFlightLimiter",
    "InteractionRecorder",
    "LLMConfig",
    "LLMConfigError",
    "LLMExecutor",
    "MemoryRecorder",
    "MissingEnvironmentVariable",
    "ModelEntry",
    "NullRecorder",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "ProviderReply",
    "ProviderRequest",
    "RetryPolicy",
    "StepLLM",
    "load_llm_config",
    "make_provider",
    "parse_llm_config",
    "resolve_models",
]
