"""Process-wide LLM executors, one per (config file, model choice, database).

An executor owns the per-provider in-flight limits and the structured-output downgrades it learned,
so every step of every plan running in this process shares one executor per model choice.
"""

from __future__ import annotations

import threading

from resources.database import DatabaseService
from resources.llm import DatabaseRecorder, LLMExecutor, load_llm_config, resolve_models
from resources.llm.config import LLMConfig


class LLMAccess:
    def __init__(self, config_path: str | None, db: DatabaseService | None):
        self.config_path = config_path
        self.db = db
        self._config: LLMConfig | None = None
        self._executors: dict[str, LLMExecutor] = {}
        self._lock = threading.Lock()

    def config(self) -> LLMConfig:
        if self._config is None:
            self._config = load_llm_config(self.config_path)
        return self._config

    def executor(self, model: str | list[str] | tuple[str, ...]) -> LLMExecutor:
        """The executor of one model choice: ``"auto"``, one id, or an ordered list of ids (Luigi's ``llm_models``)."""
        names = [model] if isinstance(model, str) else list(model)
        key = ",".join(names)
        with self._lock:
            executor = self._executors.get(key)
            if executor is None:
                if len(names) == 1:
                    models = resolve_models(self.config(), names[0])
                else:
                    models = []
                    for name in names:
                        for entry in resolve_models(self.config(), name):
                            if entry.id not in {m.id for m in models}:
                                models.append(entry)
                recorder = DatabaseRecorder(self.db) if self.db is not None else None
                executor = LLMExecutor(models, recorder=recorder)
                self._executors[key] = executor
            return executor

    def caller(self, plan_id: str, stage: str, model: str | None, should_stop=None):
        return self.executor(model or "auto").for_step(plan_id, stage, should_stop)


_access: dict[tuple[str | None, int], LLMAccess] = {}
_access_lock = threading.Lock()


def llm_access(config_path: str | None, db: DatabaseService | None) -> LLMAccess:
    key = (config_path, id(db))
    with _access_lock:
        access = _access.get(key)
        if access is None:
            access = LLMAccess(config_path, db)
            _access[key] = access
        return access
