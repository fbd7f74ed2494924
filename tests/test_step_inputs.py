"""A step's inputs: PlanExe's requires() are required, ``extra_requires`` (the report reading the 2026
steps) optional: loaded when stored, left out otherwise."""

from __future__ import annotations

import pytest

from planexe_assets.core import ADDED_STEPS, STEP_BY_NAME, StepError
from planexe_assets.lifecycle.runner import StepRunner
from resources.plan_store import ContentIntegrityError


class DictStore:
    """The one ``PlanStore`` method ``load_inputs`` uses, over a dict of stored files."""

    db = None

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.required_flags: list[bool] = []

    def read(self, plan_id, filenames, *, required=True):
        names = list(filenames)
        self.required_flags.append(required)
        missing = [n for n in names if n not in self.files]
        if missing and required:
            raise ContentIntegrityError(f"no stored content for {', '.join(missing)}")
        return {n: self.files[n] for n in names if n in self.files}


REPORT = STEP_BY_NAME["report"]
REQUIRED_FILES = {f: f"content of {f}" for name in REPORT.required_deps for f in STEP_BY_NAME[name].filenames}


def test_the_report_reads_the_2026_steps_as_optional_inputs():
    assert set(REPORT.extra_requires.values()) == {s.name for s in ADDED_STEPS}
    assert set(REPORT.deps) == set(REPORT.required_deps) | {s.name for s in ADDED_STEPS}
    screening = STEP_BY_NAME["screen_planning_prompt"]
    store = DictStore({**REQUIRED_FILES, **{f: "{}" for f in screening.filenames}})
    inputs = StepRunner(store, llm_factory=None).load_inputs("p", REPORT)

    assert set(inputs) == set(REPORT.requires) | set(REPORT.extra_requires)
    assert (
        inputs["premortem"].text("markdown") == f"content of {STEP_BY_NAME['premortem'].output('markdown')}"
    )
    assert inputs["screen_planning_prompt"].text("raw") == "{}"
    assert inputs["self_audit"].contents == {}
    with pytest.raises(StepError, match="was not loaded"):
        inputs["self_audit"].text("markdown")
    assert store.required_flags == [True, False]


def test_a_missing_required_input_still_fails():
    files = dict(REQUIRED_FILES)
    files.pop(STEP_BY_NAME["premortem"].output("markdown"))
    with pytest.raises(ContentIntegrityError, match="premortem"):
        StepRunner(DictStore(files), llm_factory=None).load_inputs("p", REPORT)


def test_a_step_without_extra_inputs_makes_one_read():
    step = STEP_BY_NAME["selected_scenario_constraint"]
    files = {f: "x" for name in step.deps for f in STEP_BY_NAME[name].filenames}
    store = DictStore(files)
    inputs = StepRunner(store, llm_factory=None).load_inputs("p", step)
    assert set(inputs) == {"extract_constraints", "select_scenario"} and store.required_flags == [True]
