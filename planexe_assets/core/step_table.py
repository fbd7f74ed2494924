"""The steps of the plan pipeline, as data, and the file names they write: the 61 steps of PlanExe's
2025 Luigi pipeline (``legacy``) and the 11 steps of upstream's 2026 pipeline added around them.

One row per step: the asset name, PlanExe's Luigi class name, its stage, its LLM call shape, its
``requires()`` mapping (PlanExe's dict keys -> upstream asset name; the empty key means PlanExe's
``requires()`` returns a single task), its ``output()`` targets (PlanExe's output keys -> file name),
its side files (our keys -> file name, or a per-item template where ``{}`` is the 1-based index) and
a short description in our own words of what the step produces (shown as the Dagster asset's
description). These are facts of the reference pipeline; the Dagster assets and the Luigi tasks are
both built from this table, and ``tests/test_parity.py`` checks the table against the reference edges.

The 61 legacy steps keep PlanExe's 2025 ``requires()`` and file names exactly (``LEGACY_STEPS``). The
added steps (``ADDED_STEPS``, ``legacy=False``: prompt screening, constraint extraction and the six
constraint checks, domain classification, prompt adherence, self audit) follow upstream's 2026
``requires()``, with upstream's ``InitialPlanRawTask`` (the bare prompt) served by ``setup``, whose
``001-2-plan.txt`` is the prompt exactly as given; their files use the numbered names upstream gave
them before it dropped the prefixes, and the ones that never had one (domain, adherence) take the
prefix of their neighbours. A legacy step may read an added step through ``extra_requires`` (our
edges beside PlanExe's ``requires()``), so its reference edges stay as they are: the report reads
every added step that way. Those inputs are optional: they order the graph like any edge, and the
step gets what is stored (a plan imported from a 2025 run has none of them, and its report is still
rebuilt from what it has).

Every other module names a step's files through the table: ``step_file("identify_purpose", "raw")``,
``STEP_BY_NAME["expert_review"].side_file("criticism_raw", 2)``. A step's response models per output
key are declared where its function is registered (``planexe_assets.steps.register``).

Nothing here imports anything of ours, nor Dagster or Luigi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

TEMPLATE_SLOT = "{}"


def matches_template(name: str, template: str) -> bool:
    """Whether ``name`` is the file ``template`` names: the same name, or, for a per-item template,
    the template with its ``{}`` filled by a number."""
    if TEMPLATE_SLOT not in template:
        return name == template
    prefix, suffix = template.split(TEMPLATE_SLOT)
    middle = name[len(prefix) : len(name) - len(suffix)]
    return name.startswith(prefix) and name.endswith(suffix) and middle.isdigit()


def fill_template(template: str, index: int) -> str:
    """``"016-1-{}-expert_criticism_raw.json"`` with the 1-based ``index`` in place of ``{}``."""
    if TEMPLATE_SLOT not in template:
        raise ValueError(f"{template!r} is not a per-item template")
    return template.replace(TEMPLATE_SLOT, str(index))


@dataclass(frozen=True)
class Step:
    name: str
    luigi_class: str
    stage: str
    llm_calls: str  # none | one | several | per_item
    requires: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    # Files beside the outputs: our key -> a file name, or a per-item template with ``{}``.
    side_files: Mapping[str, str] = field(default_factory=dict)
    # What the step produces for the plan, in one or two sentences (the Dagster asset's description).
    description: str = ""
    # One of the 61 tasks of PlanExe's 2025 pipeline (False: a 2026 step added around them).
    legacy: bool = True
    # Our edges beside PlanExe's requires() (key -> upstream step): inputs a legacy step reads from an
    # added step. They order both graphs like ``requires``, but are optional: the step gets the files
    # that are stored (none for a plan imported from a run that predates the added step).
    extra_requires: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = set(self.outputs) & set(self.side_files)
        if clash:
            raise ValueError(f"step {self.name}: keys {sorted(clash)} name both an output and a side file")
        shared = set(self.requires) & set(self.extra_requires)
        if shared:
            raise ValueError(
                f"step {self.name}: keys {sorted(shared)} are in both requires and extra_requires"
            )

    @property
    def group(self) -> str:
        """Dagster group name: the stage with separators made identifier-safe."""
        return self.stage.replace("/", "_")

    @property
    def all_requires(self) -> Mapping[str, str]:
        """Every input key -> upstream step: PlanExe's requires(), then our ``extra_requires``."""
        return {**self.requires, **self.extra_requires}

    @property
    def deps(self) -> tuple[str, ...]:
        """Distinct upstream step names, in PlanExe's requires() order (then ``extra_requires``)."""
        seen: dict[str, None] = {}
        for upstream in self.all_requires.values():
            seen.setdefault(upstream, None)
        return tuple(seen)

    @property
    def required_deps(self) -> tuple[str, ...]:
        """The upstream steps whose outputs must all be stored before this step can run (PlanExe's
        requires(); ``extra_requires`` inputs are optional)."""
        return tuple(dict.fromkeys(self.requires.values()))

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(self.outputs.values())

    @property
    def side_outputs(self) -> tuple[str, ...]:
        """The side files' names and templates, in table order (the reference's ``side_outputs``)."""
        return tuple(self.side_files.values())

    @property
    def uses_llm(self) -> bool:
        return self.llm_calls != "none"

    def output(self, key: str = "") -> str:
        """The file name of output ``key`` (PlanExe's output key; ``""`` for a single output)."""
        try:
            return self.outputs[key]
        except KeyError:
            raise KeyError(f"step {self.name} has no output {key!r}; it has {sorted(self.outputs)}") from None

    def side_file(self, key: str, index: int | None = None) -> str:
        """The side file ``key``: its name, or for a per-item template the file of item ``index``
        (1-based; without ``index``, the template itself)."""
        try:
            template = self.side_files[key]
        except KeyError:
            raise KeyError(
                f"step {self.name} has no side file {key!r}; it has {sorted(self.side_files)}"
            ) from None
        if index is None or TEMPLATE_SLOT not in template:
            if index is not None:
                raise ValueError(f"side file {key!r} of step {self.name} is not per-item: {template}")
            return template
        return fill_template(template, index)

    def file(self, key: str = "", index: int | None = None) -> str:
        """Output ``key`` or side file ``key`` (the keys of the two never clash)."""
        if key in self.outputs and index is None:
            return self.outputs[key]
        if key in self.side_files:
            return self.side_file(key, index)
        raise KeyError(
            f"step {self.name} has no output or side file {key!r}; "
            f"outputs {sorted(self.outputs)}, side files {sorted(self.side_files)}"
        )

    def owns(self, filename: str) -> bool:
        """Whether ``filename`` is one of this step's outputs or side files."""
        return filename in self.outputs.values() or any(
            matches_template(filename, t) for t in self.side_outputs
        )


# The steps added from upstream's 2026 pipeline (their rows have ``legacy=False``), in table order.
ADDED_STEP_NAMES: tuple[str, ...] = (
    "screen_planning_prompt",
    "extract_constraints",
    "classify_domain",
    "potential_levers_constraint",
    "deduplicated_levers_constraint",
    "enriched_levers_constraint",
    "vital_few_levers_constraint",
    "candidate_scenarios_constraint",
    "selected_scenario_constraint",
    "prompt_adherence",
    "self_audit",
)

STEPS: tuple[Step, ...] = (
    Step(
        "start_time",
        "StartTimeTask",
        "setup",
        "none",
        requires={},
        outputs={"": "001-1-start_time.json"},
        description="When the plan was created, as JSON; the schedule counts its days from this moment.",
    ),
    Step(
        "setup",
        "SetupTask",
        "setup",
        "none",
        requires={},
        outputs={"": "001-2-plan.txt"},
        description="The plan's prompt as plain text, written from its row in the database: the document every other step starts from.",
    ),
    Step(
        "screen_planning_prompt",
        "ScreenPlanningPromptTask",
        "diagnostics",
        "one",
        requires={"": "setup"},
        outputs={"raw": "002-0-screen_planning_prompt.json", "markdown": "002-0-screen_planning_prompt.md"},
        legacy=False,
        description="Whether the prompt can carry a plan at all (USABLE or UNUSABLE), with a reason code, a confidence and a short rationale. An UNUSABLE prompt gets a warning on the report.",
    ),
    Step(
        "extract_constraints",
        "ExtractConstraintsTask",
        "context",
        "one",
        requires={"": "setup"},
        outputs={"raw": "002-0-extract_constraints_raw.json", "markdown": "002-0-extract_constraints.md"},
        legacy=False,
        description="The explicit constraints of the prompt (budgets, places, deadlines, required and banned things), each marked as wanted or to be avoided; the constraint checks test the levers and scenarios against them.",
    ),
    Step(
        "redline_gate",
        "RedlineGateTask",
        "diagnostics",
        "one",
        requires={"": "setup"},
        outputs={"raw": "002-1-redline_gate.json", "markdown": "002-2-redline_gate.md"},
        description="A safety screen of the prompt: a verdict with its category and rationale. Shown in the report as advice, or stops the plan when it runs with refuse-on-redline.",
    ),
    Step(
        "premise_attack",
        "PremiseAttackTask",
        "diagnostics",
        "several",
        requires={"": "setup"},
        outputs={"raw": "002-3-premise_attack.json", "markdown": "002-4-premise_attack.md"},
        description="Five critiques of the idea itself, one per critique lens, each arguing that the plan should not go ahead, so weak premises show up before any planning.",
    ),
    Step(
        "identify_purpose",
        "IdentifyPurposeTask",
        "context",
        "one",
        requires={"": "setup"},
        outputs={"raw": "002-5-identify_purpose_raw.json", "markdown": "002-6-identify_purpose.md"},
        description="Whether the plan is personal, business or other, with its topic and a one-sentence purpose. Later steps pick their prompt variant from it.",
    ),
    Step(
        "classify_domain",
        "ClassifyDomainTask",
        "context",
        "several",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "extract_constraints": "extract_constraints",
        },
        outputs={"raw": "002-0-classify_domain_raw.json", "markdown": "002-0-classify_domain.md"},
        legacy=False,
        description="The expert disciplines the plan draws on, each rated for importance and specificity, and the primary domain picked from them.",
    ),
    Step(
        "plan_type",
        "PlanTypeTask",
        "context",
        "one",
        requires={"setup": "setup", "identify_purpose": "identify_purpose"},
        outputs={"raw": "002-7-plan_type_raw.json", "markdown": "002-8-plan_type.md"},
        description="Whether carrying out the plan needs the physical world or can be done entirely on a computer, with the reasons. A digital plan gets no site search.",
    ),
    Step(
        "potential_levers",
        "PotentialLeversTask",
        "strategy/levers",
        "several",
        requires={"setup": "setup", "identify_purpose": "identify_purpose", "plan_type": "plan_type"},
        outputs={"raw": "002-9-potential_levers_raw.json", "clean": "002-10-potential_levers.json"},
        description="Candidate strategic levers for the plan (the big decisions that shape it), each with its options, gathered over three rounds of the conversation.",
    ),
    Step(
        "potential_levers_constraint",
        "PotentialLeversConstraintTask",
        "diagnostics",
        "one",
        requires={"extract_constraints": "extract_constraints", "potential_levers": "potential_levers"},
        outputs={"": "002-10-potential_levers_constraint.json"},
        side_files={"markdown": "002-10-potential_levers_constraint.md"},
        legacy=False,
        description="The candidate levers checked against the prompt's constraints: each constraint satisfied, violated or unclear, with evidence, and pass or fail overall.",
    ),
    Step(
        "deduplicate_levers",
        "DeduplicateLeversTask",
        "strategy/levers",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "potential_levers": "potential_levers",
        },
        outputs={"raw": "002-11-deduplicated_levers_raw.json"},
        description="The candidate levers with overlaps resolved: each one kept, absorbed into another or removed, with the reason.",
    ),
    Step(
        "deduplicated_levers_constraint",
        "DeduplicatedLeversConstraintTask",
        "diagnostics",
        "one",
        requires={"extract_constraints": "extract_constraints", "deduplicate_levers": "deduplicate_levers"},
        outputs={"": "002-11-deduplicated_levers_constraint.json"},
        side_files={"markdown": "002-11-deduplicated_levers_constraint.md"},
        legacy=False,
        description="The deduplicated levers checked against the prompt's constraints: each constraint satisfied, violated or unclear, with evidence, and pass or fail overall.",
    ),
    Step(
        "enrich_levers",
        "EnrichLeversTask",
        "strategy/levers",
        "per_item",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "deduplicate_levers": "deduplicate_levers",
        },
        outputs={"raw": "002-12-enriched_levers_raw.json"},
        description="Every remaining lever with a description and its synergies and conflicts with the other levers.",
    ),
    Step(
        "enriched_levers_constraint",
        "EnrichedLeversConstraintTask",
        "diagnostics",
        "one",
        requires={"extract_constraints": "extract_constraints", "enriched_levers": "enrich_levers"},
        outputs={"": "002-12-enriched_levers_constraint.json"},
        side_files={"markdown": "002-12-enriched_levers_constraint.md"},
        legacy=False,
        description="The enriched levers checked against the prompt's constraints: each constraint satisfied, violated or unclear, with evidence, and pass or fail overall.",
    ),
    Step(
        "focus_on_vital_few_levers",
        "FocusOnVitalFewLeversTask",
        "strategy/levers",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "enriched_levers": "enrich_levers",
        },
        outputs={"raw": "002-13-vital_few_levers_raw.json"},
        description="Every lever rated for importance, and the vital few that matter most for this plan picked out.",
    ),
    Step(
        "vital_few_levers_constraint",
        "VitalFewLeversConstraintTask",
        "diagnostics",
        "one",
        requires={
            "extract_constraints": "extract_constraints",
            "focus_on_vital_few_levers": "focus_on_vital_few_levers",
        },
        outputs={"": "002-13-vital_few_levers_constraint.json"},
        side_files={"markdown": "002-13-vital_few_levers_constraint.md"},
        legacy=False,
        description="The vital few levers checked against the prompt's constraints: each constraint satisfied, violated or unclear, with evidence, and pass or fail overall.",
    ),
    Step(
        "strategic_decisions_markdown",
        "StrategicDecisionsMarkdownTask",
        "strategy/levers",
        "none",
        requires={"enriched_levers": "enrich_levers", "levers_vital_few": "focus_on_vital_few_levers"},
        outputs={"markdown": "002-14-strategic_decisions.md"},
        description="The strategic decisions document: the vital few levers and the rest, with their options and trade-offs. Almost every later step reads it.",
    ),
    Step(
        "candidate_scenarios",
        "CandidateScenariosTask",
        "strategy/levers",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "levers_vital_few": "focus_on_vital_few_levers",
        },
        outputs={"raw": "002-15-candidate_scenarios_raw.json", "clean": "002-16-candidate_scenarios.json"},
        description="Three coherent scenarios, each choosing one option for every vital lever, checked against the levers.",
    ),
    Step(
        "candidate_scenarios_constraint",
        "CandidateScenariosConstraintTask",
        "diagnostics",
        "one",
        requires={"extract_constraints": "extract_constraints", "candidate_scenarios": "candidate_scenarios"},
        outputs={"": "002-16-candidate_scenarios_constraint.json"},
        side_files={"markdown": "002-16-candidate_scenarios_constraint.md"},
        legacy=False,
        description="The candidate scenarios checked against the prompt's constraints: each constraint satisfied, violated or unclear, with evidence, and pass or fail overall.",
    ),
    Step(
        "select_scenario",
        "SelectScenarioTask",
        "strategy/levers",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "levers_vital_few": "focus_on_vital_few_levers",
            "candidate_scenarios": "candidate_scenarios",
        },
        outputs={"raw": "002-17-selected_scenario_raw.json", "clean": "002-18-selected_scenario.json"},
        description="The scenario that fits the plan best, with a score for each candidate and the plan profile behind the choice.",
    ),
    Step(
        "selected_scenario_constraint",
        "SelectedScenarioConstraintTask",
        "diagnostics",
        "one",
        requires={"extract_constraints": "extract_constraints", "select_scenario": "select_scenario"},
        outputs={"": "002-18-selected_scenario_constraint.json"},
        side_files={"markdown": "002-18-selected_scenario_constraint.md"},
        legacy=False,
        description="The selected scenario checked against the prompt's constraints: each constraint satisfied, violated or unclear, with evidence, and pass or fail overall.",
    ),
    Step(
        "scenarios_markdown",
        "ScenariosMarkdownTask",
        "strategy/levers",
        "none",
        requires={"candidate_scenarios": "candidate_scenarios", "selected_scenario": "select_scenario"},
        outputs={"markdown": "002-19-scenarios.md"},
        description="The scenarios document: the chosen scenario and the alternatives. Almost every later step reads it.",
    ),
    Step(
        "physical_locations",
        "PhysicalLocationsTask",
        "context",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
        },
        outputs={"raw": "002-20-physical_locations_raw.json", "markdown": "002-21-physical_locations.md"},
        description="Candidate sites for the plan and the criteria a site must meet (for a digital plan, a note that none is needed).",
    ),
    Step(
        "currency_strategy",
        "CurrencyStrategyTask",
        "context",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "physical_locations": "physical_locations",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
        },
        outputs={"raw": "002-22-currency_strategy_raw.json", "markdown": "002-23-currency_strategy.md"},
        description="The currencies the plan deals in and the one to budget in, with the exchange-rate reasoning.",
    ),
    Step(
        "identify_risks",
        "IdentifyRisksTask",
        "context",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "physical_locations": "physical_locations",
            "currency_strategy": "currency_strategy",
        },
        outputs={"raw": "003-1-identify_risks_raw.json", "markdown": "003-2-identify_risks.md"},
        description="The plan's main risks, each with its likelihood, severity and mitigation.",
    ),
    Step(
        "make_assumptions",
        "MakeAssumptionsTask",
        "assumptions",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "physical_locations": "physical_locations",
            "currency_strategy": "currency_strategy",
            "identify_risks": "identify_risks",
        },
        outputs={
            "raw": "003-3-make_assumptions_raw.json",
            "clean": "003-4-make_assumptions.json",
            "markdown": "003-5-make_assumptions.md",
        },
        description="The questions the plan leaves open, each answered with an explicit assumption and an assessment of it.",
    ),
    Step(
        "distill_assumptions",
        "DistillAssumptionsTask",
        "assumptions",
        "one",
        requires={
            "setup": "setup",
            "identify_purpose": "identify_purpose",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "make_assumptions": "make_assumptions",
        },
        outputs={"raw": "003-6-distill_assumptions_raw.json", "markdown": "003-7-distill_assumptions.md"},
        description="The plan's assumptions condensed to one line each.",
    ),
    Step(
        "review_assumptions",
        "ReviewAssumptionsTask",
        "assumptions",
        "one",
        requires={
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "physical_locations": "physical_locations",
            "currency_strategy": "currency_strategy",
            "identify_risks": "identify_risks",
            "make_assumptions": "make_assumptions",
            "distill_assumptions": "distill_assumptions",
        },
        outputs={"raw": "003-8-review_assumptions_raw.json", "markdown": "003-9-review_assumptions.md"},
        description="A domain expert's review of the assumptions: the weakest ones and what to do about them.",
    ),
    Step(
        "consolidate_assumptions_markdown",
        "ConsolidateAssumptionsMarkdownTask",
        "assumptions",
        "per_item",
        requires={
            "identify_purpose": "identify_purpose",
            "plan_type": "plan_type",
            "physical_locations": "physical_locations",
            "currency_strategy": "currency_strategy",
            "identify_risks": "identify_risks",
            "make_assumptions": "make_assumptions",
            "distill_assumptions": "distill_assumptions",
            "review_assumptions": "review_assumptions",
        },
        outputs={
            "full": "003-10-consolidate_assumptions_full.md",
            "short": "003-11-consolidate_assumptions_short.md",
        },
        description="The context and assumption documents joined into a full version for the report and a short version that later steps read as the plan's assumptions.",
    ),
    Step(
        "pre_project_assessment",
        "PreProjectAssessmentTask",
        "planning",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
        },
        outputs={
            "raw": "004-1-pre_project_assessment_raw.json",
            "clean": "004-2-pre_project_assessment.json",
        },
        description="What must happen before work starts, from two simulated experts, with a go / no-go verdict.",
    ),
    Step(
        "project_plan",
        "ProjectPlanTask",
        "planning",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "preproject": "pre_project_assessment",
        },
        outputs={"raw": "005-1-project_plan_raw.json", "markdown": "005-2-project_plan.md"},
        description="The plan's goal definition: a SMART goal with dependencies, resources, risks, stakeholders and regulatory requirements. The hub most later steps read.",
    ),
    Step(
        "governance_phase1_audit",
        "GovernancePhase1AuditTask",
        "governance",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
        },
        outputs={
            "raw": "006-1-governance_phase1_audit_raw.json",
            "markdown": "006-2-governance_phase1_audit.md",
        },
        description="Where corruption or misallocation could happen in the project, and the audits and transparency measures that would catch it.",
    ),
    Step(
        "governance_phase2_bodies",
        "GovernancePhase2BodiesTask",
        "governance",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "governance_phase1_audit": "governance_phase1_audit",
        },
        outputs={
            "raw": "006-3-governance_phase2_bodies_raw.json",
            "markdown": "006-4-governance_phase2_bodies.md",
        },
        description="The internal bodies that oversee the project, with their responsibilities and membership.",
    ),
    Step(
        "governance_phase3_impl_plan",
        "GovernancePhase3ImplPlanTask",
        "governance",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "governance_phase2_bodies": "governance_phase2_bodies",
        },
        outputs={
            "raw": "006-5-governance_phase3_impl_plan_raw.json",
            "markdown": "006-6-governance_phase3_impl_plan.md",
        },
        description="The steps that set up the governance bodies, with who does them and when.",
    ),
    Step(
        "governance_phase4_decision_escalation_matrix",
        "GovernancePhase4DecisionEscalationMatrixTask",
        "governance",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "governance_phase2_bodies": "governance_phase2_bodies",
            "governance_phase3_impl_plan": "governance_phase3_impl_plan",
        },
        outputs={
            "raw": "006-7-governance_phase4_decision_escalation_matrix_raw.json",
            "markdown": "006-8-governance_phase4_decision_escalation_matrix.md",
        },
        description="Which decisions go to which governance body, and when an issue is escalated further.",
    ),
    Step(
        "governance_phase5_monitoring_progress",
        "GovernancePhase5MonitoringProgressTask",
        "governance",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "governance_phase2_bodies": "governance_phase2_bodies",
            "governance_phase3_impl_plan": "governance_phase3_impl_plan",
            "governance_phase4_decision_escalation_matrix": "governance_phase4_decision_escalation_matrix",
        },
        outputs={
            "raw": "006-9-governance_phase5_monitoring_progress_raw.json",
            "markdown": "006-10-governance_phase5_monitoring_progress.md",
        },
        description="How progress is monitored and the plan adapted: what is tracked, how often, by whom, and what triggers a change.",
    ),
    Step(
        "governance_phase6_extra",
        "GovernancePhase6ExtraTask",
        "governance",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "governance_phase1_audit": "governance_phase1_audit",
            "governance_phase2_bodies": "governance_phase2_bodies",
            "governance_phase3_impl_plan": "governance_phase3_impl_plan",
            "governance_phase4_decision_escalation_matrix": "governance_phase4_decision_escalation_matrix",
            "governance_phase5_monitoring_progress": "governance_phase5_monitoring_progress",
        },
        outputs={
            "raw": "006-11-governance_phase6_extra_raw.json",
            "markdown": "006-12-governance_phase6_extra.md",
        },
        description="An independent review of the whole governance set-up, naming its gaps and the hard questions it leaves open.",
    ),
    Step(
        "consolidate_governance",
        "ConsolidateGovernanceTask",
        "governance",
        "none",
        requires={
            "governance_phase1_audit": "governance_phase1_audit",
            "governance_phase2_bodies": "governance_phase2_bodies",
            "governance_phase3_impl_plan": "governance_phase3_impl_plan",
            "governance_phase4_decision_escalation_matrix": "governance_phase4_decision_escalation_matrix",
            "governance_phase5_monitoring_progress": "governance_phase5_monitoring_progress",
            "governance_phase6_extra": "governance_phase6_extra",
        },
        outputs={"": "006-13-consolidate_governance.md"},
        description="The six governance documents as one, under fixed headings, for the report and the review steps.",
    ),
    Step(
        "related_resources",
        "RelatedResourcesTask",
        "planning",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
        },
        outputs={"raw": "007-1-related_resources_raw.json", "markdown": "007-8-related_resources.md"},
        description="Real projects that resemble this plan, their outcomes and troubles, and where to learn more about them.",
    ),
    Step(
        "find_team_members",
        "FindTeamMembersTask",
        "team",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "preproject": "pre_project_assessment",
            "project_plan": "project_plan",
            "related_resources": "related_resources",
        },
        outputs={"raw": "008-1-find_team_members_raw.json", "clean": "008-2-find_team_members.json"},
        description="The roles the project needs, numbered, with headcount and what goes wrong without each.",
    ),
    Step(
        "enrich_team_members_with_contract_type",
        "EnrichTeamMembersWithContractTypeTask",
        "team",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "preproject": "pre_project_assessment",
            "project_plan": "project_plan",
            "find_team_members": "find_team_members",
            "related_resources": "related_resources",
        },
        outputs={
            "raw": "009-1-enrich_team_members_contract_type_raw.json",
            "clean": "009-2-enrich_team_members_contract_type.json",
        },
        description="Every role of the team with how it should be engaged (employee, contractor, and so on) and why.",
    ),
    Step(
        "enrich_team_members_with_background_story",
        "EnrichTeamMembersWithBackgroundStoryTask",
        "team",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "preproject": "pre_project_assessment",
            "project_plan": "project_plan",
            "enrich_team_members_with_contract_type": "enrich_team_members_with_contract_type",
            "related_resources": "related_resources",
        },
        outputs={
            "raw": "010-1-enrich_team_members_background_story_raw.json",
            "clean": "010-2-enrich_team_members_background_story.json",
        },
        description="Every role of the team with an example person who could fill it and their typical activities.",
    ),
    Step(
        "enrich_team_members_with_environment_info",
        "EnrichTeamMembersWithEnvironmentInfoTask",
        "team",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "preproject": "pre_project_assessment",
            "project_plan": "project_plan",
            "enrich_team_members_with_background_story": "enrich_team_members_with_background_story",
            "related_resources": "related_resources",
        },
        outputs={
            "raw": "011-1-enrich_team_members_environment_info_raw.json",
            "clean": "011-2-enrich_team_members_environment_info.json",
        },
        description="Every role of the team with the equipment and facilities it needs.",
    ),
    Step(
        "review_team",
        "ReviewTeamTask",
        "team",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "preproject": "pre_project_assessment",
            "project_plan": "project_plan",
            "enrich_team_members_with_environment_info": "enrich_team_members_with_environment_info",
            "related_resources": "related_resources",
        },
        outputs={"": "012-review_team_raw.json"},
        description="A review of the whole team: missing roles and improvements.",
    ),
    Step(
        "team_markdown",
        "TeamMarkdownTask",
        "team",
        "none",
        requires={
            "enrich_team_members_with_environment_info": "enrich_team_members_with_environment_info",
            "review_team": "review_team",
        },
        outputs={"": "013-team.md"},
        description="The team document: every role with its details, the review, and notes on answers that did not match a role.",
    ),
    Step(
        "swot_analysis",
        "SWOTAnalysisTask",
        "expert/swot",
        "one",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "identify_purpose": "identify_purpose",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "preproject": "pre_project_assessment",
            "project_plan": "project_plan",
            "related_resources": "related_resources",
        },
        outputs={"raw": "014-1-swot_analysis_raw.json", "markdown": "014-2-swot_analysis.md"},
        description="Strengths, weaknesses, opportunities and threats of the plan, framed for its purpose.",
    ),
    Step(
        "expert_review",
        "ExpertReviewTask",
        "expert/swot",
        "several",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "preproject": "pre_project_assessment",
            "project_plan": "project_plan",
            "swot_analysis": "swot_analysis",
        },
        outputs={"": "016-2-expert_criticism.md"},
        side_files={
            "experts_raw": "015-1-experts_raw.json",
            "experts": "015-2-experts.json",
            "criticism_raw": "016-1-{}-expert_criticism_raw.json",
        },
        description="Experts who should critique the plan, and the criticism of the first ones consulted (the expert list and each criticism are kept as per-item files).",
    ),
    Step(
        "data_collection",
        "DataCollectionTask",
        "planning",
        "one",
        requires={
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "related_resources": "related_resources",
            "swot_analysis": "swot_analysis",
            "team_markdown": "team_markdown",
            "expert_review": "expert_review",
        },
        outputs={"raw": "017-1-data_collection_raw.json", "markdown": "017-2-data_collection.md"},
        description="The data areas whose assumptions carry the most risk: what to collect, how to estimate it meanwhile, and who should validate it.",
    ),
    Step(
        "identify_documents",
        "IdentifyDocumentsTask",
        "documents",
        "one",
        requires={
            "identify_purpose": "identify_purpose",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "related_resources": "related_resources",
            "swot_analysis": "swot_analysis",
            "team_markdown": "team_markdown",
            "expert_review": "expert_review",
        },
        outputs={
            "raw": "017-3-identified_documents_raw.json",
            "markdown": "017-4-identified_documents.md",
            "documents_to_find": "017-5-identified_documents_to_find.json",
            "documents_to_create": "017-6-identified_documents_to_create.json",
        },
        description="The documents the team must create and the existing documents or data it must find, as two lists.",
    ),
    Step(
        "filter_documents_to_find",
        "FilterDocumentsToFindTask",
        "documents",
        "one",
        requires={
            "identify_purpose": "identify_purpose",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "identified_documents": "identify_documents",
        },
        outputs={
            "raw": "017-7-filter_documents_to_find_raw.json",
            "clean": "017-8-filter_documents_to_find_clean.json",
        },
        description="The documents to find, each rated by its impact on the first phase, with the most important ones kept.",
    ),
    Step(
        "filter_documents_to_create",
        "FilterDocumentsToCreateTask",
        "documents",
        "one",
        requires={
            "identify_purpose": "identify_purpose",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "identified_documents": "identify_documents",
        },
        outputs={
            "raw": "017-9-filter_documents_to_create_raw.json",
            "clean": "017-10-filter_documents_to_create_clean.json",
        },
        description="The documents to create, each rated by its impact on the first phase, with the most important ones kept.",
    ),
    Step(
        "draft_documents_to_find",
        "DraftDocumentsToFindTask",
        "documents",
        "per_item",
        requires={
            "identify_purpose": "identify_purpose",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "filter_documents_to_find": "filter_documents_to_find",
        },
        outputs={"": "017-12-draft_documents_to_find.json"},
        side_files={"draft_raw": "017-11-{}-draft_documents_to_find_raw.json"},
        description="A brief for each kept document to find: what it must contain and how to obtain it (one per-item file per document).",
    ),
    Step(
        "draft_documents_to_create",
        "DraftDocumentsToCreateTask",
        "documents",
        "per_item",
        requires={
            "identify_purpose": "identify_purpose",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "filter_documents_to_create": "filter_documents_to_create",
        },
        outputs={"": "017-14-draft_documents_to_create.json"},
        side_files={"draft_raw": "017-13-{}-draft_documents_to_create_raw.json"},
        description="A brief for each kept document to create: what it must contain and who should write it (one per-item file per document).",
    ),
    Step(
        "documents_to_create_and_find_markdown",
        "MarkdownWithDocumentsToCreateAndFindTask",
        "documents",
        "none",
        requires={
            "draft_documents_to_create": "draft_documents_to_create",
            "draft_documents_to_find": "draft_documents_to_find",
        },
        outputs={"": "017-15-documents_to_create_and_find.md"},
        description="The documents section of the plan: both drafted lists as one markdown document.",
    ),
    Step(
        "wbs_level1",
        "CreateWBSLevel1Task",
        "wbs",
        "one",
        requires={"project_plan": "project_plan"},
        outputs={
            "raw": "018-1-wbs_level1_raw.json",
            "clean": "018-2-wbs_level1.json",
            "project_title": "018-3-wbs_level1_project_title.json",
        },
        description="The project's title and final deliverable: the root of the work breakdown structure.",
    ),
    Step(
        "wbs_level2",
        "CreateWBSLevel2Task",
        "wbs",
        "one",
        requires={
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "project_plan": "project_plan",
            "wbs_level1": "wbs_level1",
            "data_collection": "data_collection",
        },
        outputs={"raw": "018-4-wbs_level2_raw.json", "clean": "018-5-wbs_level2.json"},
        description="The project's phases and the tasks of each phase: the first two levels below the root of the work breakdown structure.",
    ),
    Step(
        "wbs_project_level1_and_level2",
        "WBSProjectLevel1AndLevel2Task",
        "wbs",
        "none",
        requires={"wbs_level1": "wbs_level1", "wbs_level2": "wbs_level2"},
        outputs={"": "019-wbs_project_level1_and_level2.json"},
        description="The work breakdown structure so far as one tree of ids and descriptions: root, phases and their tasks.",
    ),
    Step(
        "pitch",
        "CreatePitchTask",
        "pitch",
        "one",
        requires={
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "project_plan": "project_plan",
            "wbs_project": "wbs_project_level1_and_level2",
            "related_resources": "related_resources",
        },
        outputs={"": "020-1-pitch_raw.json"},
        description="A pitch for backers: why the plan should work, who it addresses, the ask, risks, success metrics and the long-term vision.",
    ),
    Step(
        "pitch_markdown",
        "ConvertPitchToMarkdownTask",
        "pitch",
        "one",
        requires={"pitch": "pitch"},
        outputs={"raw": "020-2-pitch_to_markdown_raw.json", "markdown": "020-3-pitch.md"},
        description="The pitch laid out as a readable markdown page.",
    ),
    Step(
        "identify_task_dependencies",
        "IdentifyTaskDependenciesTask",
        "schedule",
        "one",
        requires={
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "project_plan": "project_plan",
            "wbs_level2": "wbs_level2",
            "data_collection": "data_collection",
        },
        outputs={"": "021-task_dependencies_raw.json"},
        description="For each task of the work breakdown structure that must wait, the tasks it waits for and why.",
    ),
    Step(
        "estimate_task_durations",
        "EstimateTaskDurationsTask",
        "schedule",
        "per_item",
        requires={"project_plan": "project_plan", "wbs_project": "wbs_project_level1_and_level2"},
        outputs={"": "022-2-task_durations.json"},
        side_files={"chunk_raw": "022-1-{}-task_durations_raw.json"},
        description="Duration estimates in days (best, realistic and worst case) for the tasks of the work breakdown structure, with delay risks.",
    ),
    Step(
        "wbs_level3",
        "CreateWBSLevel3Task",
        "wbs",
        "per_item",
        requires={
            "project_plan": "project_plan",
            "wbs_project": "wbs_project_level1_and_level2",
            "task_durations": "estimate_task_durations",
            "data_collection": "data_collection",
        },
        outputs={"": "023-2-wbs_level3.json"},
        side_files={"task_raw": "023-1-{}-wbs_level3_raw.json"},
        description="The tasks of the work breakdown structure split into work packages sized to the time available.",
    ),
    Step(
        "wbs_project_level1_and_level2_and_level3",
        "WBSProjectLevel1AndLevel2AndLevel3Task",
        "wbs",
        "none",
        requires={"wbs_project12": "wbs_project_level1_and_level2", "wbs_level3": "wbs_level3"},
        outputs={
            "full": "023-3-wbs_project_level1_and_level2_and_level3.json",
            "csv": "023-4-wbs_project_level1_and_level2_and_level3.csv",
        },
        description="The complete three-level work breakdown structure, as a JSON tree and a CSV table.",
    ),
    Step(
        "review_plan",
        "ReviewPlanTask",
        "summary/review",
        "several",
        requires={
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "data_collection": "data_collection",
            "related_resources": "related_resources",
            "swot_analysis": "swot_analysis",
            "team_markdown": "team_markdown",
            "pitch_markdown": "pitch_markdown",
            "expert_review": "expert_review",
            "wbs_project123": "wbs_project_level1_and_level2_and_level3",
        },
        outputs={"raw": "024-1-review_plan_raw.json", "markdown": "024-2-review_plan.md"},
        description="A critical read-through of the finished plan: answers to a fixed series of review questions.",
    ),
    Step(
        "executive_summary",
        "ExecutiveSummaryTask",
        "summary/review",
        "one",
        requires={
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "project_plan": "project_plan",
            "data_collection": "data_collection",
            "related_resources": "related_resources",
            "swot_analysis": "swot_analysis",
            "team_markdown": "team_markdown",
            "pitch_markdown": "pitch_markdown",
            "expert_review": "expert_review",
            "wbs_project123": "wbs_project_level1_and_level2_and_level3",
            "review_plan": "review_plan",
        },
        outputs={"raw": "025-1-executive_summary_raw.json", "markdown": "025-2-executive_summary.md"},
        description="The one-page executive summary that opens the report.",
    ),
    Step(
        "prompt_adherence",
        "PromptAdherenceTask",
        "summary/review",
        "several",
        requires={
            "plan_raw": "setup",
            "project_plan": "project_plan",
            "executive_summary": "executive_summary",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
        },
        outputs={"raw": "029-3-prompt_adherence_raw.json", "markdown": "029-4-prompt_adherence.md"},
        legacy=False,
        description="How faithfully the plan follows the prompt: the prompt's directives, each scored 1 to 5 with what the plan did with it, and an overall adherence percentage weighted by importance.",
    ),
    Step(
        "schedule",
        "CreateScheduleTask",
        "schedule",
        "none",
        requires={
            "start_time": "start_time",
            "wbs_level1": "wbs_level1",
            "dependencies": "identify_task_dependencies",
            "durations": "estimate_task_durations",
            "wbs_project123": "wbs_project_level1_and_level2_and_level3",
        },
        outputs={
            "mermaid_html": "026-1-schedule_gantt_mermaid.html",
            "dhtmlx_html": "026-2-schedule_gantt_dhtmlx.html",
            "machai_csv": "026-3-schedule_gantt_machai.csv",
        },
        description="The project schedule built from the work breakdown structure, durations and dependencies: a Gantt overview, an interactive Gantt page and a CSV export.",
    ),
    Step(
        "questions_and_answers",
        "QuestionsAndAnswersTask",
        "summary/review",
        "several",
        requires={
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "team_markdown": "team_markdown",
            "related_resources": "related_resources",
            "consolidate_governance": "consolidate_governance",
            "swot_analysis": "swot_analysis",
            "pitch_markdown": "pitch_markdown",
            "data_collection": "data_collection",
            "documents_to_create_and_find": "documents_to_create_and_find_markdown",
            "wbs_project123": "wbs_project_level1_and_level2_and_level3",
            "expert_review": "expert_review",
            "project_plan": "project_plan",
            "review_plan": "review_plan",
        },
        outputs={
            "raw": "027-1-questions_and_answers_raw.json",
            "markdown": "027-2-questions_and_answers.md",
            "html": "027-3-questions_and_answers.html",
        },
        description="Questions a reader of the plan would ask, answered, on its key concepts, risks and consequences (markdown and an HTML fragment for the report).",
    ),
    Step(
        "premortem",
        "PremortemTask",
        "summary/review",
        "several",
        requires={
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "team_markdown": "team_markdown",
            "related_resources": "related_resources",
            "consolidate_governance": "consolidate_governance",
            "swot_analysis": "swot_analysis",
            "pitch_markdown": "pitch_markdown",
            "data_collection": "data_collection",
            "documents_to_create_and_find": "documents_to_create_and_find_markdown",
            "wbs_project123": "wbs_project_level1_and_level2_and_level3",
            "expert_review": "expert_review",
            "project_plan": "project_plan",
            "review_plan": "review_plan",
            "questions_and_answers": "questions_and_answers",
        },
        outputs={"raw": "028-1-premortem_raw.json", "markdown": "028-2-premortem.md"},
        description="A premortem: the assumptions that would sink the project if false, and stories of how it failed.",
    ),
    Step(
        "self_audit",
        "SelfAuditTask",
        "summary/review",
        "per_item",
        requires={
            "setup": "setup",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "team_markdown": "team_markdown",
            "related_resources": "related_resources",
            "consolidate_governance": "consolidate_governance",
            "swot_analysis": "swot_analysis",
            "pitch_markdown": "pitch_markdown",
            "data_collection": "data_collection",
            "documents_to_create_and_find": "documents_to_create_and_find_markdown",
            "wbs_project123": "wbs_project_level1_and_level2_and_level3",
            "expert_review": "expert_review",
            "project_plan": "project_plan",
            "review_plan": "review_plan",
            "questions_and_answers": "questions_and_answers",
            "premortem": "premortem",
        },
        outputs={"raw": "029-1-self_audit_raw.json", "markdown": "029-2-self_audit.md"},
        legacy=False,
        description="The plan audited against a checklist of twenty red flags (broken physics, missing evidence, thin budget, legal minefields, ...), each rated low, medium or high with a justification and a mitigation.",
    ),
    Step(
        "report",
        "ReportTask",
        "report",
        "none",
        requires={
            "setup": "setup",
            "redline_gate": "redline_gate",
            "premise_attack": "premise_attack",
            "strategic_decisions_markdown": "strategic_decisions_markdown",
            "scenarios_markdown": "scenarios_markdown",
            "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
            "team_markdown": "team_markdown",
            "related_resources": "related_resources",
            "consolidate_governance": "consolidate_governance",
            "swot_analysis": "swot_analysis",
            "pitch_markdown": "pitch_markdown",
            "data_collection": "data_collection",
            "documents_to_create_and_find": "documents_to_create_and_find_markdown",
            "wbs_level1": "wbs_level1",
            "wbs_project123": "wbs_project_level1_and_level2_and_level3",
            "expert_review": "expert_review",
            "project_plan": "project_plan",
            "review_plan": "review_plan",
            "executive_summary": "executive_summary",
            "create_schedule": "schedule",
            "questions_and_answers": "questions_and_answers",
            "premortem": "premortem",
        },
        # The 2026 steps the report shows (screening banner, self audit, adherence; the extracted
        # constraints and the six checks in its Constraints section), keyed by step name.
        extra_requires={name: name for name in ADDED_STEP_NAMES},
        outputs={"": "029-report.html"},
        # report.md: the same sections as markdown, for LLMs (upstream's 2026 ReportTask writes it).
        side_files={"markdown": "029-report.md"},
        description="The final report: every document of the plan in one self-contained HTML page that works offline (22 sections, the prompt's constraints checked at every stage included), and the same sections as markdown.",
    ),
)

STEP_BY_NAME: Mapping[str, Step] = MappingProxyType({s.name: s for s in STEPS})
LEGACY_STEPS: tuple[Step, ...] = tuple(s for s in STEPS if s.legacy)
ADDED_STEPS: tuple[Step, ...] = tuple(s for s in STEPS if not s.legacy)

# FullPlanPipeline.requires() of PlanExe's 2025 pipeline: its keys, mapped to step names.
LEGACY_FULL_PLAN_PIPELINE_REQUIRES: Mapping[str, str] = MappingProxyType(
    {
        "start_time": "start_time",
        "setup": "setup",
        "redline_gate": "redline_gate",
        "premise_attack": "premise_attack",
        "identify_purpose": "identify_purpose",
        "plan_type": "plan_type",
        "potential_levers": "potential_levers",
        "deduplicate_levers": "deduplicate_levers",
        "enriched_levers": "enrich_levers",
        "focus_on_vital_few_levers": "focus_on_vital_few_levers",
        "strategic_decisions_markdown": "strategic_decisions_markdown",
        "candidate_scenarios": "candidate_scenarios",
        "select_scenario": "select_scenario",
        "scenarios_markdown": "scenarios_markdown",
        "physical_locations": "physical_locations",
        "currency_strategy": "currency_strategy",
        "identify_risks": "identify_risks",
        "make_assumptions": "make_assumptions",
        "assumptions": "distill_assumptions",
        "review_assumptions": "review_assumptions",
        "consolidate_assumptions_markdown": "consolidate_assumptions_markdown",
        "pre_project_assessment": "pre_project_assessment",
        "project_plan": "project_plan",
        "governance_phase1_audit": "governance_phase1_audit",
        "governance_phase2_bodies": "governance_phase2_bodies",
        "governance_phase3_impl_plan": "governance_phase3_impl_plan",
        "governance_phase4_decision_escalation_matrix": "governance_phase4_decision_escalation_matrix",
        "governance_phase5_monitoring_progress": "governance_phase5_monitoring_progress",
        "governance_phase6_extra": "governance_phase6_extra",
        "consolidate_governance": "consolidate_governance",
        "related_resources": "related_resources",
        "find_team_members": "find_team_members",
        "enrich_team_members_with_contract_type": "enrich_team_members_with_contract_type",
        "enrich_team_members_with_background_story": "enrich_team_members_with_background_story",
        "enrich_team_members_with_environment_info": "enrich_team_members_with_environment_info",
        "review_team": "review_team",
        "team_markdown": "team_markdown",
        "swot_analysis": "swot_analysis",
        "expert_review": "expert_review",
        "data_collection": "data_collection",
        "identified_documents": "identify_documents",
        "filter_documents_to_find": "filter_documents_to_find",
        "filter_documents_to_create": "filter_documents_to_create",
        "draft_documents_to_find": "draft_documents_to_find",
        "draft_documents_to_create": "draft_documents_to_create",
        "documents_to_create_and_find": "documents_to_create_and_find_markdown",
        "wbs_level1": "wbs_level1",
        "wbs_level2": "wbs_level2",
        "wbs_project12": "wbs_project_level1_and_level2",
        "pitch_raw": "pitch",
        "pitch_markdown": "pitch_markdown",
        "dependencies": "identify_task_dependencies",
        "durations": "estimate_task_durations",
        "wbs_level3": "wbs_level3",
        "wbs_project123": "wbs_project_level1_and_level2_and_level3",
        "plan_evaluator": "review_plan",
        "executive_summary": "executive_summary",
        "create_schedule": "schedule",
        "questions_and_answers": "questions_and_answers",
        "premortem": "premortem",
        "report": "report",
    }
)
# The aggregate of our pipeline: the legacy keys, then every added step under its own name (upstream's
# FullPlanPipeline requires each 2026 task too; the constraint checks are required by nothing else).
FULL_PLAN_PIPELINE_REQUIRES: Mapping[str, str] = MappingProxyType(
    {**LEGACY_FULL_PLAN_PIPELINE_REQUIRES, **{s.name: s.name for s in ADDED_STEPS}}
)
PIPELINE_COMPLETE_FILENAME = "999-pipeline_complete.txt"

assert len(LEGACY_STEPS) == 61, len(LEGACY_STEPS)
assert tuple(s.name for s in ADDED_STEPS) == ADDED_STEP_NAMES, [s.name for s in ADDED_STEPS]


def step(name: str) -> Step:
    try:
        return STEP_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}") from None


def step_for_filename(filename: str) -> Step | None:
    """The step whose output() (or side file, per-item template included) produces ``filename``."""
    for s in STEPS:
        if filename in s.outputs.values():
            return s
    for s in STEPS:
        if any(matches_template(filename, t) for t in s.side_outputs):
            return s
    return None


def step_file(step_name: str, key: str = "", index: int | None = None) -> str:
    """The file name of a step's output ``key`` or side file ``key`` (item ``index`` of a per-item
    template): ``step_file("identify_purpose", "raw")`` is ``002-5-identify_purpose_raw.json``."""
    return step(step_name).file(key, index)


def topological_order(names: tuple[str, ...] | None = None) -> list[str]:
    """Step names in dependency order (the table is already in PlanExe's order; this verifies it)."""
    wanted = set(names) if names is not None else set(STEP_BY_NAME)
    done: list[str] = []
    placed: set[str] = set()
    for s in STEPS:
        if s.name not in wanted:
            continue
        missing = [d for d in s.deps if d in wanted and d not in placed]
        if missing:
            raise ValueError(f"step {s.name} listed before its dependencies {missing}")
        done.append(s.name)
        placed.add(s.name)
    return done
