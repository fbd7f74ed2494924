"""Writes tests/fixtures/planexe_2026_run: the files a 2026 PlanExe run adds, for the silo prompt.

Run from the repository root: ``python -m tests.support.make_2026_fixture``. Field names and file
names are the reference's (shared/reference/upstream_2026_tasks.json); the content is written for the
silo prompt of tests/fixtures/planexe_runs/20250321_silo (not a recorded upstream run); the markdown
files are rendered by our renderers. The triage file is the silo run's deduplication, reclassified.
"""

import json
from pathlib import Path

from planexe_assets.core import step_file
from planexe_assets.steps.adherence import AdherenceResult, Directive, render_prompt_adherence
from planexe_assets.steps.constraints import ConstraintExtractionResult, render_constraints
from planexe_assets.steps.domain import ClassifiedDomain, render_classified_domain
from planexe_assets.steps.screening import PromptScreeningResult, render_screening
from planexe_assets.steps.self_audit import ChecklistAnswerCleaned, render_self_audit

OUT = Path("tests/fixtures/planexe_2026_run")
SILO = Path("tests/fixtures/planexe_runs/20250321_silo")
prompt = (SILO / step_file("setup")).read_text()
bare = prompt.split("\n\n")[0].removeprefix("Plan:\n")
META = {"llm_classname": "OpenRouter", "duration": 3, "response_byte_count": 512}


def dump(name, data):
    (OUT / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write(name, text):
    (OUT / name).write_text(text, encoding="utf-8")


dump("plan_raw.json", {"prompt": bare})

screen = {
    "verdict": "USABLE",
    "reason": "usable",
    "confidence": "high",
    "rationale": "A concrete, if dystopian, construction and governance project with a clear scope (144 floors) and funding model.",
}
dump(
    "screen_planning_prompt.json",
    {**screen, "metadata": META, "system_prompt": "(screening instructions)", "user_prompt": bare},
)
write("screen_planning_prompt.md", render_screening(PromptScreeningResult.model_validate(screen)))

constraints = {
    "constraints": [
        {"classification": "positive", "constraint_text": "The complex spans 144 underground floors."},
        {
            "classification": "positive",
            "constraint_text": "Funding comes from government allocations and private investment from elite stakeholders.",
        },
        {
            "classification": "positive",
            "constraint_text": "The silo generates its own power and recycles its water and air.",
        },
        {
            "classification": "negative",
            "constraint_text": "Residents must not receive uncontrolled information about the outside world.",
        },
    ]
}
dump(
    "extract_constraints_raw.json",
    {**constraints, "metadata": META, "system_prompt": "(extraction instructions)", "user_prompt": prompt},
)
write("extract_constraints.md", render_constraints(ConstraintExtractionResult.model_validate(constraints)))

texts = [c["constraint_text"] for c in constraints["constraints"]]
kinds = [c["classification"] for c in constraints["constraints"]]


def check(statuses, evidence, summary):
    items = [
        {
            "constraint_text": t,
            "constraint_classification": k,
            "status": s,
            "evidence": e,
            "explanation": (
                "The stage output contradicts the constraint."
                if s == "violated"
                else "The stage output is consistent with the constraint."
                if s == "satisfied"
                else "The stage output does not address the constraint."
            ),
        }
        for t, k, s, e in zip(texts, kinds, statuses, evidence, strict=True)
    ]
    overall = "fail" if "violated" in statuses else "pass"
    return {
        "constraint_violations": items,
        "overall_status": overall,
        "summary": summary,
        "metadata": {**META, "stage_name": "x"},
        "system_prompt": "(checker instructions)",
        "user_prompt": "(constraints and stage output)",
    }


ok_evidence = [
    "Options assume the full 144-level layout.",
    "Funding Model lever: public-private partnership.",
    "Resource Management Philosophy lever: closed-loop systems.",
    "Information Control lever keeps the outside hidden.",
]
dump(
    "potential_levers_constraint.json",
    check(
        ["unclear", "satisfied", "satisfied", "satisfied"],
        ok_evidence,
        "The levers fit the prompt; the floor count is not discussed.",
    ),
)
dump(
    "triaged_levers_constraint.json",
    check(
        ["unclear", "satisfied", "satisfied", "satisfied"],
        ok_evidence,
        "The triaged levers keep the prompt's funding and self-sufficiency.",
    ),
)
dump(
    "enriched_levers_constraint.json",
    check(
        ["unclear", "satisfied", "satisfied", "violated"],
        ok_evidence[:3] + ["Option: 'Open information policy with curated access to outside news'."],
        "One enriched lever proposes opening information about the outside world.",
    ),
)
dump(
    "vital_few_levers_constraint.json",
    check(
        ["unclear", "satisfied", "satisfied", "violated"],
        ok_evidence[:3] + ["Vital lever 'Information Control Policy' keeps the open-access option."],
        "The vital few still carry the open-information option.",
    ),
)
dump(
    "candidate_scenarios_constraint.json",
    check(
        ["satisfied", "violated", "satisfied", "satisfied"],
        [
            "All scenarios keep the 144-floor design.",
            "Scenario 'Pioneer': crowdfunded by future residents.",
            ok_evidence[2],
            ok_evidence[3],
        ],
        "One candidate scenario replaces elite funding by crowdfunding.",
    ),
)
dump(
    "selected_scenario_constraint.json",
    check(
        ["satisfied", "satisfied", "satisfied", "satisfied"],
        [
            "Selected scenario: 144-level vertical build.",
            "Blended government and private capital.",
            ok_evidence[2],
            "Information stays controlled by the silo council.",
        ],
        "The selected scenario respects every constraint.",
    ),
)

domain = {
    "primary_domain": "Underground civil engineering",
    "secondary_domains": ["Closed ecological life support", "Security and surveillance"],
    "domain_fits": [
        {
            "domain": "Underground civil engineering",
            "importance": 5,
            "specificity": 5,
            "role": "outcome",
            "reason": "The silo is a deep multi-level structure.",
        },
        {
            "domain": "Closed ecological life support",
            "importance": 5,
            "specificity": 4,
            "role": "method",
            "reason": "Air, water and food must be recycled indefinitely.",
        },
        {
            "domain": "Security and surveillance",
            "importance": 4,
            "specificity": 3,
            "role": "constraint",
            "reason": "Rules are enforced by surveillance.",
        },
    ],
    "rationale": "The plan stands or falls with building and sustaining the structure itself.",
}
dump(
    "classify_domain_raw.json",
    {
        **domain,
        "warnings": [],
        "metadata": META,
        "system_prompt": "(domain instructions)",
        "user_prompt": prompt,
    },
)
write("classify_domain.md", render_classified_domain(ClassifiedDomain.model_validate(domain)))

answers = [
    {
        "index": 1,
        "title": "Violates Known Physics",
        "subtitle": "Does the project require a major, unpredictable discovery in fundamental science to succeed?",
        "justification": "Deep excavation, closed-loop life support and geothermal power are established engineering; no physical law is broken.",
        "mitigation": "None needed; keep independent engineering review of the life-support loop.",
        "level": "low",
    },
    {
        "index": 2,
        "title": "No Real-World Proof",
        "subtitle": "Has a comparable system been built and run at this scale?",
        "justification": "No closed habitat has sustained thousands of people indefinitely; Biosphere 2 failed with eight.",
        "mitigation": "Run a staged pilot habitat for 200 residents for two years before full occupancy.",
        "level": "high",
    },
    {
        "index": 6,
        "title": "Money Issues",
        "subtitle": "Is the funding realistic and committed?",
        "justification": "Elite private funding is assumed but no commitments or amounts are named.",
        "mitigation": "Secure signed letters of intent covering the first construction phase.",
        "level": "medium",
    },
]
dump("self_audit_raw.json", {"checklist_answers_cleaned": answers, "metadata": META})
write("self_audit.md", render_self_audit([ChecklistAnswerCleaned.model_validate(a) for a in answers]))

directives = [
    {
        "directive_index": 1,
        "directive_type": "requirement",
        "text": "multi-level underground complex for thousands",
        "importance_5": 5,
    },
    {"directive_index": 2, "directive_type": "constraint", "text": "144 floors", "importance_5": 4},
    {
        "directive_index": 3,
        "directive_type": "requirement",
        "text": "own power, water recycling, air filtration",
        "importance_5": 4,
    },
    {
        "directive_index": 4,
        "directive_type": "constraint",
        "text": "government and elite private funding",
        "importance_5": 3,
    },
    {
        "directive_index": 5,
        "directive_type": "intent",
        "text": "dystopian, controlled environment",
        "importance_5": 3,
    },
]
scores = [
    {
        "directive_index": 1,
        "adherence_5": 5,
        "category": "fully_honored",
        "evidence": "Residential, agricultural and industrial zones for 10,000 residents.",
        "explanation": "Central to the plan.",
    },
    {
        "directive_index": 2,
        "adherence_5": 4,
        "category": "partially_honored",
        "evidence": "Phased build of the first 60 levels.",
        "explanation": "Only the first phase is detailed.",
    },
    {
        "directive_index": 3,
        "adherence_5": 5,
        "category": "fully_honored",
        "evidence": "Geothermal plant and closed-loop water.",
        "explanation": "Fully covered.",
    },
    {
        "directive_index": 4,
        "adherence_5": 5,
        "category": "fully_honored",
        "evidence": "Public-private partnership.",
        "explanation": "As asked.",
    },
    {
        "directive_index": 5,
        "adherence_5": 2,
        "category": "softened",
        "evidence": "Emphasis on resident wellbeing and transparency.",
        "explanation": "The controlled, dystopian character is toned down.",
    },
]
md = render_prompt_adherence(
    [Directive.model_validate(d) for d in directives], [AdherenceResult.model_validate(s) for s in scores]
)
dump(
    "prompt_adherence_raw.json",
    {
        "directives": directives,
        "scores": scores,
        "metadata": {"phase1": META, "phase2": META},
        "system_prompt_phase1": "(directive instructions)",
        "system_prompt_phase2": "(grading instructions)",
        "user_prompt": bare,
        "markdown": md,
    },
)
write("prompt_adherence.md", md)

dedup = json.loads((SILO / step_file("deduplicate_levers", "raw")).read_text())
kept = {lever["lever_id"] for lever in dedup["deduplicated_levers"]}
decisions = []
for i, d in enumerate(dedup["response"]):
    cls = ("primary" if i % 3 else "secondary") if d["classification"] == "keep" else "remove"
    decisions.append({"lever_id": d["lever_id"], "classification": cls, "justification": d["justification"]})
triaged = [
    {
        **lever,
        "classification": next(x["classification"] for x in decisions if x["lever_id"] == lever["lever_id"]),
    }
    for lever in dedup["deduplicated_levers"]
]
assert all(t["lever_id"] in kept for t in triaged)
dump(
    "triaged_levers_raw.json",
    {
        "response": decisions,
        "triaged_levers": triaged,
        "metadata": dedup.get("metadata", []),
        "system_prompt": "(triage instructions)",
        "user_prompt": "(levers)",
    },
)
