"""Shared helpers of the 2026 step tests: the realistic answers and inputs that mix a recorded run's
files with files the added steps write.

The recorded runs (``tests/fixtures/planexe_runs``) predate the 2026 steps, so their answers were
written for this repository from the reference's field names, against the Hong Kong run's prompt and
outputs (``tests/fixtures/answers_2026/<run>/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planexe_assets.core import STEP_BY_NAME, StepInputs, StepResult, UpstreamFiles
from planexe_assets.steps import step_function
from tests.support.replay import FIXTURES, ReplayLLM, context_for

RUN = "20260310_hong_kong_game"
ANSWERS = Path(__file__).resolve().parent.parent / "fixtures" / "answers_2026" / RUN


def answer(name: str) -> Any:
    return json.loads((ANSWERS / name).read_text(encoding="utf-8"))


def inputs_with(step_name: str, produced: dict[str, str] | None = None, run: str = RUN) -> StepInputs:
    """The step's inputs: the recorded run's files, plus ``produced`` (file name -> text) for the
    files of added steps the recorded run does not have."""
    produced = produced or {}
    step = STEP_BY_NAME[step_name]
    by_key = {}
    for key, upstream_name in step.all_requires.items():
        upstream = STEP_BY_NAME[upstream_name]
        contents = {}
        for filename in upstream.outputs.values():
            if filename in produced:
                contents[filename] = produced[filename]
            elif (FIXTURES / run / filename).exists():
                contents[filename] = (FIXTURES / run / filename).read_text(encoding="utf-8")
        by_key[key] = UpstreamFiles(step=upstream, contents=contents)
    return StepInputs(by_key)


def run_step(
    step_name: str, llm: ReplayLLM, produced: dict[str, str] | None = None, *, fast: bool = False
) -> StepResult:
    result = step_function(step_name)(
        context_for(step_name, llm, run=RUN, fast=fast), inputs_with(step_name, produced)
    )
    result.check_against(STEP_BY_NAME[step_name])
    return result


def constraint_files() -> dict[str, str]:
    """The files ``extract_constraints`` writes for the recorded run's prompt (its realistic answer replayed)."""
    return dict(
        run_step("extract_constraints", ReplayLLM(answers=[answer("extract_constraints.json")])).files
    )
