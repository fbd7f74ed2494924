"""Asset checks on every plan asset: the stored outputs are intact and well-formed.

Two checks per asset, evaluated per plan (partition):

- ``files_match_rows``: every output file of the step (its ``output()`` files and its per-item files)
  has a ``plan_content`` row whose ``content_hash`` is the sha256 of its content, and the file in the
  run directory has that same sha256. Read-only: unlike ``PlanStore.read`` it repairs nothing, so a
  file edited or deleted by hand, or a row changed behind the dual writer's back, is reported.
- ``json_valid`` (assets with JSON outputs): each JSON file parses and validates against the model
  its step produced it with (``JSON_OUTPUT_SPECS``). Raw files keep the response fields at the top
  level beside bookkeeping keys (``metadata``, ``system_prompt``, ``user_prompt``, ...); only the
  response fields are validated. Derived files (clean lists, WBS trees, the start time) are read with
  the same reader the downstream step uses, so a passing check means the downstream step can read it.

A check of an asset that other assets depend on is blocking: when it fails, the run does not go on
to the downstream assets (Dagster skips them). The plain-Python functions (``verify_files``,
``verify_json``) are what the Dagster checks call; tests and tools can call them directly.

No ``from __future__ import annotations``: Dagster inspects the check functions' annotations.
"""

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    PreviewWarning,
    multi_asset_check,
)
from pydantic import BaseModel, Field, ValidationError

from planexe_assets.core.contract import StepError, UpstreamFiles, _matches_template
from planexe_assets.core.step_table import STEPS, Step
from planexe_assets.dagster_defs.assets import IO_MANAGER_KEY
from planexe_assets.dagster_defs.partitions import plans_partitions
from planexe_assets.steps import (
    assumptions,
    data_collection,
    diagnostics,
    documents,
    durations,
    experts,
    governance,
    levers,
    locations,
    pitch,
    planning,
    purpose,
    qa,
    related_resources,
    review,
    scenarios,
    schedule,
    swot,
    team,
    wbs,
    wbs_tree,
)
from resources.database import sha256_text
from resources.plan_store import PlanStore

FILES_CHECK = "files_match_rows"
JSON_CHECK = "json_valid"


# ---------------------------------------------------------------------------------------------------
# What a JSON file must look like
# ---------------------------------------------------------------------------------------------------


def _response_fields(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``model`` (by name or alias): the response part."""
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
    return {k: v for k, v in data.items() if k in names}


def _at(data: Any, key: str | None) -> Any:
    if key is None:
        return data
    if not isinstance(data, dict):
        raise StepError(f"expected a JSON object with key {key!r}, found {type(data).__name__}")
    if key not in data:
        raise StepError(f"key {key!r} is missing")
    return data[key]


def _validation_summary(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
    ]
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Fields:
    """A JSON object (or the object at ``at``) whose response fields validate against ``model``."""

    model: type[BaseModel]
    at: str | None = None

    def describe(self) -> str:
        where = f" at {self.at!r}" if self.at else ""
        return f"{_model_name(self.model)} (response fields{where})"

    def validate(self, data: Any, text: str, step: Step, filename: str) -> None:
        obj = _at(data, self.at)
        if not isinstance(obj, dict):
            raise StepError(f"expected a JSON object, found {type(obj).__name__}")
        try:
            self.model.model_validate(_response_fields(self.model, obj))
        except ValidationError as exc:
            raise StepError(f"not a valid {self.model.__name__}: {_validation_summary(exc)}") from None


@dataclass(frozen=True)
class Items:
    """A JSON list (or the list at ``at``) of objects, each validating against ``model``."""

    model: type[BaseModel]
    at: str | None = None

    def describe(self) -> str:
        where = f" at {self.at!r}" if self.at else ""
        return f"list of {_model_name(self.model)}{where}"

    def validate(self, data: Any, text: str, step: Step, filename: str) -> None:
        items = _at(data, self.at)
        if not isinstance(items, list):
            raise StepError(f"expected a list, found {type(items).__name__}")
        for position, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise StepError(f"item {position} is {type(item).__name__}, expected a JSON object")
            try:
                self.model.model_validate(_response_fields(self.model, item))
            except ValidationError as exc:
                raise StepError(
                    f"item {position} is not a valid {self.model.__name__}: {_validation_summary(exc)}"
                ) from None


@dataclass(frozen=True)
class Reader:
    """Read with a step module's own reader (it raises ``StepError``), as the downstream step does.

    ``takes``: ``"data"`` (the decoded JSON), ``"text"`` (the file's text) or ``"upstream"`` (an
    ``UpstreamFiles`` of the producing step holding just this file, as the downstream step gets it).
    """

    read: Callable[..., Any]
    takes: str = "data"

    def describe(self) -> str:
        return f"{self.read.__module__.rsplit('.', 1)[-1]}.{self.read.__name__}"

    def validate(self, data: Any, text: str, step: Step, filename: str) -> None:
        if self.takes == "text":
            self.read(text)
        elif self.takes == "upstream":
            self.read(UpstreamFiles(step=step, contents={filename: text}))
        else:
            self.read(data)


@dataclass(frozen=True)
class OneOf:
    """Any one of several layouts: ours first, then PlanExe's (imported runs nest the response under
    ``response``). Fails with the problems of every layout when none fits."""

    layouts: tuple[Fields | Items | Reader, ...]

    def describe(self) -> str:
        return " or ".join(layout.describe() for layout in self.layouts)

    def validate(self, data: Any, text: str, step: Step, filename: str) -> None:
        problems = []
        for layout in self.layouts:
            try:
                layout.validate(data, text, step, filename)
                return
            except StepError as exc:
                problems.append(f"as {layout.describe()}: {exc}")
        raise StepError("; ".join(problems))


Spec = Fields | Items | Reader | OneOf


def _or_planexe(model: type[BaseModel], nested: str = "response") -> OneOf:
    """Our raw layout (response fields at the top level) or PlanExe's (the response under ``nested``)."""
    return OneOf((Fields(model), Fields(model, at=nested)))


def _model_name(model: type[BaseModel]) -> str:
    return f"{model.__module__.rsplit('.', 1)[-1]}.{model.__name__}"


# Stored record formats that no step module has a model for (the step writes them as dicts).


class ExpertRecord(BaseModel):
    """One entry of ``015-2-experts.json`` (``experts.clean_expert``)."""

    id: str
    title: str
    knowledge: str
    why: str
    what: str
    skills: str
    search_query: str


class PitchMarkdownRecord(BaseModel):
    """``020-2-pitch_to_markdown_raw.json``: a free-text reply and the markdown taken from it."""

    response_content: str
    markdown: str = Field(min_length=1)


# Readers for files whose downstream reader needs a little unwrapping.


def _deduplicated_levers(data: Any) -> None:
    levers.read_lever_list(_at(data, "deduplicated_levers"), "deduplicated levers")


def _potential_levers(data: Any) -> None:
    levers.read_lever_list(data, "potential levers")


def _enriched_levers(data: Any) -> None:
    levers.read_enriched_levers(data, "enriched levers")


def _vital_few(data: Any) -> None:
    levers.read_vital_few(data, "vital few levers")


def _candidates(data: Any) -> None:
    scenarios.read_candidates(data)


def _purpose(data: Any) -> None:
    swot.read_purpose(data, "identify_purpose raw")


# Every JSON output of the pipeline -> what it must satisfy (all specs must pass). Keys are output
# file names, or per-item templates with ``{}`` (the 1-based index). ``tests/test_checks.py`` checks
# that every JSON file named in the step table is here and that a real run's files pass.
JSON_OUTPUT_SPECS: dict[str, tuple[Spec, ...]] = {
    "001-1-start_time.json": (Reader(schedule.parse_day_zero, takes="text"),),
    "002-1-redline_gate.json": (Fields(diagnostics.Decision),),
    "002-3-premise_attack.json": (Items(diagnostics.DocumentDetails, at="response_list"),),
    "002-5-identify_purpose_raw.json": (Fields(purpose.PlanPurposeInfo), Reader(_purpose)),
    "002-7-plan_type_raw.json": (Fields(purpose.DocumentDetails),),
    "002-9-potential_levers_raw.json": (Items(levers.DocumentDetails, at="responses"),),
    "002-10-potential_levers.json": (Reader(_potential_levers),),
    "002-11-deduplicated_levers_raw.json": (
        OneOf((Fields(levers.DeduplicationAnalysis), Items(levers.LeverDecision, at="response"))),
        Reader(_deduplicated_levers),
    ),
    "002-12-enriched_levers_raw.json": (
        Items(levers.LeverCharacterization, at="characterized_levers"),
        Reader(_enriched_levers),
    ),
    "002-13-vital_few_levers_raw.json": (_or_planexe(levers.VitalLeversAssessmentResult), Reader(_vital_few)),
    "002-15-candidate_scenarios_raw.json": (_or_planexe(scenarios.ScenarioAnalysisResult),),
    "002-16-candidate_scenarios.json": (Fields(scenarios.ScenarioAnalysisResult), Reader(_candidates)),
    "002-17-selected_scenario_raw.json": (_or_planexe(scenarios.ScenarioSelectionResult),),
    "002-18-selected_scenario.json": (Fields(scenarios.ScenarioSelectionResult),),
    "002-20-physical_locations_raw.json": (Fields(locations.PhysicalLocations),),
    "002-22-currency_strategy_raw.json": (Fields(locations.CurrencyStrategy),),
    "003-1-identify_risks_raw.json": (Fields(locations.IdentifiedRisks),),
    "003-3-make_assumptions_raw.json": (Fields(assumptions.MadeAssumptions),),
    "003-4-make_assumptions.json": (Items(assumptions.CleanAssumption),),
    "003-6-distill_assumptions_raw.json": (Fields(assumptions.DistilledAssumptions),),
    "003-8-review_assumptions_raw.json": (Fields(assumptions.AssumptionReview),),
    "004-1-pre_project_assessment_raw.json": (Fields(planning.ExpertDetails),),
    "004-2-pre_project_assessment.json": (Fields(planning.PreProjectAssessment),),
    "005-1-project_plan_raw.json": (Fields(planning.GoalDefinition),),
    "006-1-governance_phase1_audit_raw.json": (Fields(governance.GovernanceAudit),),
    "006-3-governance_phase2_bodies_raw.json": (Fields(governance.GovernanceBodies),),
    "006-5-governance_phase3_impl_plan_raw.json": (Fields(governance.GovernanceImplementationPlan),),
    "006-7-governance_phase4_decision_escalation_matrix_raw.json": (
        Fields(governance.DecisionEscalationMatrix),
    ),
    "006-9-governance_phase5_monitoring_progress_raw.json": (Fields(governance.GovernanceMonitoring),),
    "006-11-governance_phase6_extra_raw.json": (Fields(governance.GovernanceReview),),
    "007-1-related_resources_raw.json": (Fields(related_resources.DocumentDetails),),
    "008-1-find_team_members_raw.json": (Fields(team.TeamMemberList),),
    "008-2-find_team_members.json": (Reader(team.load_roles, takes="upstream"),),
    "009-1-enrich_team_members_contract_type_raw.json": (Fields(team.ContractTypeDetails),),
    "009-2-enrich_team_members_contract_type.json": (Reader(team.load_roles, takes="upstream"),),
    "010-1-enrich_team_members_background_story_raw.json": (Fields(team.TeamDetails),),
    "010-2-enrich_team_members_background_story.json": (Reader(team.load_roles, takes="upstream"),),
    "011-1-enrich_team_members_environment_info_raw.json": (Fields(team.EnvironmentDetails),),
    "011-2-enrich_team_members_environment_info.json": (Reader(team.load_roles, takes="upstream"),),
    "012-review_team_raw.json": (Fields(team.TeamReview),),
    "014-1-swot_analysis_raw.json": (_or_planexe(swot.SWOTAnalysis, nested="response_conduct"),),
    "015-1-experts_raw.json": (Fields(experts.ExpertDetails),),
    "015-2-experts.json": (Items(ExpertRecord),),
    "016-1-{}-expert_criticism_raw.json": (Fields(experts.ExpertConsultation),),
    "017-1-data_collection_raw.json": (Fields(data_collection.DataCollectionPlan),),
    "017-3-identified_documents_raw.json": (Fields(documents.IdentifiedDocuments),),
    "017-5-identified_documents_to_find.json": (Items(documents.FindDocumentItem),),
    "017-6-identified_documents_to_create.json": (Items(documents.CreateDocumentItem),),
    "017-7-filter_documents_to_find_raw.json": (Fields(documents.DocumentImpactAssessmentResult),),
    "017-8-filter_documents_to_find_clean.json": (Items(documents.FindDocumentItem),),
    "017-9-filter_documents_to_create_raw.json": (Fields(documents.DocumentImpactAssessmentResult),),
    "017-10-filter_documents_to_create_clean.json": (Items(documents.CreateDocumentItem),),
    "017-11-{}-draft_documents_to_find_raw.json": (Fields(documents.DocumentDraft),),
    "017-12-draft_documents_to_find.json": (Items(documents.FindDocumentItem),),
    "017-13-{}-draft_documents_to_create_raw.json": (Fields(documents.DocumentDraft),),
    "017-14-draft_documents_to_create.json": (Items(documents.CreateDocumentItem),),
    "018-1-wbs_level1_raw.json": (Fields(wbs.WBSLevel1),),
    "018-2-wbs_level1.json": (Reader(wbs_tree.parse_level1_clean),),
    "018-3-wbs_level1_project_title.json": (Reader(wbs_tree.parse_project_title, takes="text"),),
    "018-4-wbs_level2_raw.json": (Fields(wbs.WorkBreakdownStructure),),
    "018-5-wbs_level2.json": (Reader(wbs_tree.parse_level2_clean),),
    "019-wbs_project_level1_and_level2.json": (Reader(wbs_tree.parse_wbs_project),),
    "020-1-pitch_raw.json": (Fields(pitch.ProjectPitch),),
    "020-2-pitch_to_markdown_raw.json": (Fields(PitchMarkdownRecord),),
    "021-task_dependencies_raw.json": (
        Fields(durations.DependencyMapping),
        Reader(schedule.parse_dependencies),
    ),
    "022-1-{}-task_durations_raw.json": (Fields(durations.TimeEstimates),),
    "022-2-task_durations.json": (Reader(durations.parse_task_durations),),
    "023-1-{}-wbs_level3_raw.json": (Fields(wbs.WBSTaskDetails),),
    "023-2-wbs_level3.json": (Reader(wbs.parse_level3),),
    "023-3-wbs_project_level1_and_level2_and_level3.json": (Reader(wbs_tree.parse_wbs_project),),
    "024-1-review_plan_raw.json": (Items(review.ReviewAnswer, at="question_answers_list"),),
    "025-1-executive_summary_raw.json": (Fields(review.ExecutiveSummary),),
    "027-1-questions_and_answers_raw.json": (Fields(qa.QuestionsAndAnswers),),
    "028-1-premortem_raw.json": (Fields(qa.PremortemAnalysis),),
}


def spec_for(filename: str) -> tuple[Spec, ...] | None:
    """The specs of an output file, matching per-item templates; ``None`` if the file has none."""
    if filename in JSON_OUTPUT_SPECS:
        return JSON_OUTPUT_SPECS[filename]
    for template, specs in JSON_OUTPUT_SPECS.items():
        if "{}" in template and _matches_template(filename, template):
            return specs
    return None


def _skipped_call(data: Any) -> bool:
    """A raw file that records a deliberately skipped LLM call (e.g. locations of a digital plan)."""
    meta = data.get("metadata") if isinstance(data, dict) else None
    return isinstance(meta, dict) and meta.get("llm_call_skipped") is True


def json_problems(step: Step, filename: str, text: str) -> list[str]:
    """Why ``text`` (the content of ``filename``) is not a valid output of ``step``; empty if it is."""
    specs = spec_for(filename)
    if specs is None:
        return [f"{filename}: no JSON spec is registered for this file"]
    text_only = all(isinstance(spec, Reader) and spec.takes == "text" for spec in specs)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if not text_only:  # a text reader (start time, project title) also takes PlanExe's plain text
            return [f"{filename}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"]
        data = None
    problems = []
    for spec in specs:
        if isinstance(spec, Fields) and _skipped_call(data):
            continue  # no model answered; the record only keeps the response's shape
        try:
            spec.validate(data, text, step, filename)
        except StepError as exc:
            problems.append(f"{filename} ({spec.describe()}): {exc}")
        except Exception as exc:  # noqa: BLE001 - a reader tripping over an odd shape is a finding too
            problems.append(f"{filename} ({spec.describe()}): {type(exc).__name__}: {exc}")
    return problems


# ---------------------------------------------------------------------------------------------------
# Verifying one step's outputs of one plan (plain Python)
# ---------------------------------------------------------------------------------------------------


@dataclass
class FileReport:
    filename: str
    sha256: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class StepVerification:
    step: Step
    plan_id: str
    files: list[FileReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    contents: dict[str, str] = field(default_factory=dict)  # filename -> row content (for the JSON check)

    @property
    def passed(self) -> bool:
        return not self.problems and all(not f.problems for f in self.files)

    def all_problems(self) -> list[str]:
        return self.problems + [p for f in self.files for p in f.problems]


def step_output_names(store: PlanStore, plan_id: str, step: Step) -> tuple[list[str], list[str]]:
    """(required, present per-item) file names of a step for a plan.

    Required: the step's ``output()`` files and its fixed-name side files. Per-item files (``{}``
    templates) vary per run; those the plan has rows for are checked.
    """
    required = list(step.filenames) + [t for t in step.side_outputs if "{}" not in t]
    templates = [t for t in step.side_outputs if "{}" in t]
    per_item: list[str] = []
    if templates:
        known = sorted({row.filename for row in store.db.get_plan_files(plan_id)})
        per_item = [name for name in known if any(_matches_template(name, t) for t in templates)]
    return required, per_item


def verify_files(store: PlanStore, plan_id: str, step: Step) -> StepVerification:
    """Compare each output file of ``step`` with its ``plan_content`` row by sha256. Changes nothing."""
    result = StepVerification(step=step, plan_id=plan_id)
    if store.db.get_plan(plan_id) is None:
        result.problems.append(f"plan {plan_id} has no row in plans")
        return result
    required, per_item = step_output_names(store, plan_id, step)
    rows = store.db.get_contents(plan_id, required + per_item)
    run_dir = store.run_dir(plan_id)
    for name in required + per_item:
        report = FileReport(filename=name)
        result.files.append(report)
        row = rows.get(name)
        if row is None:
            report.problems.append(f"{name}: no plan_content row")
            if (run_dir / name).exists():
                report.problems.append(f"{name}: the run directory has the file but the database has no row")
            continue
        digest = sha256_text(row.content)
        report.sha256 = digest
        if row.content_hash and row.content_hash != digest:
            report.problems.append(
                f"{name}: the row's content does not match its stored sha256 "
                f"(stored {row.content_hash[:12]}, computed {digest[:12]})"
            )
        result.contents[name] = row.content
        path = run_dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            report.problems.append(f"{name}: missing from the run directory {run_dir}")
            continue
        except OSError as exc:
            report.problems.append(f"{name}: cannot read {path}: {exc.strerror}")
            continue
        file_digest = hashlib.sha256(data).hexdigest()
        expected = row.content_hash or digest
        if file_digest != expected:
            report.problems.append(
                f"{name}: the file's sha256 {file_digest[:12]} differs from its row's {expected[:12]} "
                f"({len(data)} bytes on disk, {row.content_size_bytes} in the row)"
            )
    return result


def json_outputs(names: Iterable[str]) -> list[str]:
    return [n for n in names if n.endswith(".json")]


def verify_json(step: Step, contents: Mapping[str, str]) -> list[str]:
    """Problems of the step's JSON outputs (``contents``: filename -> text, e.g. from ``verify_files``)."""
    problems: list[str] = []
    for name in json_outputs(contents):
        problems.extend(json_problems(step, name, contents[name]))
    return problems


def step_has_json(step: Step) -> bool:
    return any(name.endswith(".json") for name in (*step.filenames, *step.side_outputs))


def _steps_with_downstream(steps: Sequence[Step]) -> set[str]:
    return {dep for s in steps for dep in s.deps}


# ---------------------------------------------------------------------------------------------------
# The Dagster checks
# ---------------------------------------------------------------------------------------------------


def _problems_metadata(problems: list[str]) -> MetadataValue:
    return MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none")


def _check_for(step: Step, blocking: bool) -> AssetChecksDefinition:
    guards = (
        "blocking: downstream assets do not run when it fails"
        if blocking
        else "not blocking (no downstream asset)"
    )
    has_json = step_has_json(step)
    names = [(FILES_CHECK, "Run-directory files and plan_content rows of {} agree by sha256 ({}).")]
    if has_json:
        names.append((JSON_CHECK, "JSON outputs of {} validate against their response models ({})."))
    with warnings.catch_warnings():
        # Partitioned checks (one result per plan in the UI) are a preview feature of Dagster; the
        # Dagster version is pinned (requirements.lock), so a change cannot arrive unnoticed.
        warnings.simplefilter("ignore", PreviewWarning)
        specs = [
            AssetCheckSpec(
                name,
                asset=step.name,
                blocking=blocking,
                partitions_def=plans_partitions,
                description=text.format(step.name, guards),
            )
            for name, text in names
        ]

    @multi_asset_check(
        name=f"check_{step.name}",
        specs=specs,
        required_resource_keys={IO_MANAGER_KEY},
        description=f"Integrity and schema of the stored outputs of {step.name}, for one plan.",
        can_subset=True,  # the UI and CLI may run one check of the pair
    )
    def _plan_output_checks(context: AssetCheckExecutionContext):
        store: PlanStore = getattr(context.resources, IO_MANAGER_KEY).store()
        plan_id = context.partition_key
        selected = {key.name for key in context.selected_asset_check_keys}
        files = verify_files(store, plan_id, step)
        file_problems = files.all_problems()
        if FILES_CHECK in selected:
            yield AssetCheckResult(
                asset_key=step.name,
                check_name=FILES_CHECK,
                passed=not file_problems,
                severity=AssetCheckSeverity.ERROR,
                description=(
                    f"{len(files.files)} file(s) of plan {plan_id} match their rows"
                    if not file_problems
                    else f"{len(file_problems)} problem(s): {file_problems[0]}"
                ),
                metadata={
                    "plan_id": plan_id,
                    "files_checked": len(files.files),
                    "run_dir": str(store.run_dir(plan_id)),
                    "problems": _problems_metadata(file_problems),
                    "sha256": {f.filename: f.sha256 for f in files.files if f.sha256},
                },
            )
        if JSON_CHECK in selected:
            names = json_outputs(files.contents)
            schema_problems = verify_json(step, files.contents)
            missing = [n for n in json_outputs(f.filename for f in files.files) if n not in files.contents]
            schema_problems += [f"{n}: no stored content to validate" for n in missing]
            yield AssetCheckResult(
                asset_key=step.name,
                check_name=JSON_CHECK,
                passed=not schema_problems,
                severity=AssetCheckSeverity.ERROR,
                description=(
                    f"{len(names)} JSON file(s) of plan {plan_id} are valid"
                    if not schema_problems
                    else f"{len(schema_problems)} problem(s): {schema_problems[0]}"
                ),
                metadata={
                    "plan_id": plan_id,
                    "json_files": len(names),
                    "models": {n: ", ".join(s.describe() for s in spec_for(n) or ()) for n in names},
                    "problems": _problems_metadata(schema_problems),
                },
            )

    return _plan_output_checks


def build_plan_checks(steps: Sequence[Step] | None = None) -> list[AssetChecksDefinition]:
    """One multi-check per step (``files_match_rows``, plus ``json_valid`` when it writes JSON)."""
    if steps is None:
        from planexe_assets.lifecycle.runner import pipeline_steps

        steps = pipeline_steps()
    guarded = _steps_with_downstream(steps)
    return [_check_for(step, blocking=step.name in guarded) for step in steps]


def json_outputs_of_table() -> list[str]:
    """Every JSON file name or per-item template the step table declares."""
    return [n for s in STEPS for n in (*s.filenames, *s.side_outputs) if n.endswith(".json")]


__all__ = [
    "FILES_CHECK",
    "JSON_CHECK",
    "JSON_OUTPUT_SPECS",
    "build_plan_checks",
    "json_problems",
    "verify_files",
    "verify_json",
]
