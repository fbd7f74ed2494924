"""The 61 steps of PlanExe's Luigi pipeline, as data.

One row per step: the asset name, PlanExe's Luigi class name, its stage, its LLM call shape, its
``requires()`` mapping (PlanExe's dict keys -> upstream asset name; the empty key means PlanExe's
``requires()`` returns a single task), its ``output()`` targets (PlanExe's output keys -> file name)
and its per-item side files (``{}`` is the 1-based index). These are facts of the reference pipeline;
the Dagster assets and the Luigi tasks are both built from this table, and
``tests/test_parity.py`` checks the table against the reference edges.

Nothing here imports Dagster or Luigi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Step:
    name: str
    luigi_class: str
    stage: str
    llm_calls: str  # none | one | several | per_item
    requires: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    side_outputs: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        """Dagster group name: the stage with separators made identifier-safe."""
        return self.stage.replace("/", "_")

    @property
    def deps(self) -> tuple[str, ...]:
        """Distinct upstream step names, in PlanExe's requires() order."""
        seen: dict[str, None] = {}
        for upstream in self.requires.values():
            seen.setdefault(upstream, None)
        return tuple(seen)

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(self.outputs.values())

    @property
    def uses_llm(self) -> bool:
        return self.llm_calls != "none"


STEPS: tuple[Step, ...] = (
    Step(
        "start_time",
        "StartTimeTask",
        "setup",
        "none",
        requires={},
        outputs={"": "001-1-start_time.json"},
        side_outputs=(),
    ),
    Step(
        "setup",
        "SetupTask",
        "setup",
        "none",
        requires={},
        outputs={"": "001-2-plan.txt"},
        side_outputs=(),
    ),
    Step(
        "redline_gate",
        "RedlineGateTask",
        "diagnostics",
        "one",
        requires={"": "setup"},
        outputs={"raw": "002-1-redline_gate.json", "markdown": "002-2-redline_gate.md"},
        side_outputs=(),
    ),
    Step(
        "premise_attack",
        "PremiseAttackTask",
        "diagnostics",
        "several",
        requires={"": "setup"},
        outputs={"raw": "002-3-premise_attack.json", "markdown": "002-4-premise_attack.md"},
        side_outputs=(),
    ),
    Step(
        "identify_purpose",
        "IdentifyPurposeTask",
        "context",
        "one",
        requires={"": "setup"},
        outputs={"raw": "002-5-identify_purpose_raw.json", "markdown": "002-6-identify_purpose.md"},
        side_outputs=(),
    ),
    Step(
        "plan_type",
        "PlanTypeTask",
        "context",
        "one",
        requires={"setup": "setup", "identify_purpose": "identify_purpose"},
        outputs={"raw": "002-7-plan_type_raw.json", "markdown": "002-8-plan_type.md"},
        side_outputs=(),
    ),
    Step(
        "potential_levers",
        "PotentialLeversTask",
        "strategy/levers",
        "several",
        requires={"setup": "setup", "identify_purpose": "identify_purpose", "plan_type": "plan_type"},
        outputs={"raw": "002-9-potential_levers_raw.json", "clean": "002-10-potential_levers.json"},
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
    ),
    Step(
        "strategic_decisions_markdown",
        "StrategicDecisionsMarkdownTask",
        "strategy/levers",
        "none",
        requires={"enriched_levers": "enrich_levers", "levers_vital_few": "focus_on_vital_few_levers"},
        outputs={"markdown": "002-14-strategic_decisions.md"},
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
    ),
    Step(
        "scenarios_markdown",
        "ScenariosMarkdownTask",
        "strategy/levers",
        "none",
        requires={"candidate_scenarios": "candidate_scenarios", "selected_scenario": "select_scenario"},
        outputs={"markdown": "002-19-scenarios.md"},
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(
            "015-1-experts_raw.json",
            "015-2-experts.json",
            "016-1-{}-expert_criticism_raw.json",
        ),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=("017-11-{}-draft_documents_to_find_raw.json",),
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
        side_outputs=("017-13-{}-draft_documents_to_create_raw.json",),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
    ),
    Step(
        "wbs_project_level1_and_level2",
        "WBSProjectLevel1AndLevel2Task",
        "wbs",
        "none",
        requires={"wbs_level1": "wbs_level1", "wbs_level2": "wbs_level2"},
        outputs={"": "019-wbs_project_level1_and_level2.json"},
        side_outputs=(),
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
        side_outputs=(),
    ),
    Step(
        "pitch_markdown",
        "ConvertPitchToMarkdownTask",
        "pitch",
        "one",
        requires={"pitch": "pitch"},
        outputs={"raw": "020-2-pitch_to_markdown_raw.json", "markdown": "020-3-pitch.md"},
        side_outputs=(),
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
        side_outputs=(),
    ),
    Step(
        "estimate_task_durations",
        "EstimateTaskDurationsTask",
        "schedule",
        "per_item",
        requires={"project_plan": "project_plan", "wbs_project": "wbs_project_level1_and_level2"},
        outputs={"": "022-2-task_durations.json"},
        side_outputs=("022-1-{}-task_durations_raw.json",),
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
        side_outputs=("023-1-{}-wbs_level3_raw.json",),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        side_outputs=(),
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
        outputs={"": "029-report.html"},
        side_outputs=(),
    ),
)

STEP_BY_NAME: Mapping[str, Step] = MappingProxyType({s.name: s for s in STEPS})

# FullPlanPipeline.requires(): PlanExe's keys for the aggregate, mapped to step names.
FULL_PLAN_PIPELINE_REQUIRES: Mapping[str, str] = MappingProxyType(
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
PIPELINE_COMPLETE_FILENAME = "999-pipeline_complete.txt"

assert len(STEPS) == 61, len(STEPS)


def step(name: str) -> Step:
    try:
        return STEP_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}") from None


def step_for_filename(filename: str) -> Step | None:
    """The step whose output() (or per-item side file template) produces ``filename``."""
    for s in STEPS:
        if filename in s.outputs.values():
            return s
    for s in STEPS:
        for template in s.side_outputs:
            if "{}" in template:
                prefix, suffix = template.split("{}")
                middle = (
                    filename[len(prefix) : len(filename) - len(suffix)]
                    if filename.startswith(prefix) and filename.endswith(suffix)
                    else ""
                )
                if middle.isdigit():
                    return s
            elif template == filename:
                return s
    return None


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
