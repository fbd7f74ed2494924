"""The step table, the Dagster asset graph and the Luigi requires() graph are the reference graph.

``tests/fixtures/reference_tasks.json`` holds the reference facts of the 61 legacy steps (PlanExe's
class names, requires() keys -> classes, output() keys -> file names) extracted from
``shared/reference/tasks.json``; ``tests/fixtures/reference_tasks_2026.json`` those of the upstream
2026 tasks we run around them, extracted from ``shared/reference/upstream_2026_tasks.json``.
"""

import json
import re
from pathlib import Path

import pytest
from dagster import AssetKey

from legacy_luigi.tasks import TASK_CLASSES, FullPlanPipeline
from planexe_assets.core import (
    ADDED_STEPS,
    FULL_PLAN_PIPELINE_REQUIRES,
    LEGACY_FULL_PLAN_PIPELINE_REQUIRES,
    LEGACY_STEPS,
    PIPELINE_COMPLETE_FILENAME,
    STEP_BY_NAME,
    STEPS,
)
from planexe_assets.core.contract import SpeedVsDetail
from planexe_assets.definitions import defs
from planexe_assets.lifecycle.runner import pipeline_steps

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "reference_tasks.json").read_text())
REF_TASKS = [t for t in REFERENCE if not t["aggregate"]]
REF_AGGREGATE = next(t for t in REFERENCE if t["aggregate"])
CLASS_TO_ASSET = {t["luigi_class"]: t["asset"] for t in REFERENCE}
SHARED_TASKS_JSON = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tasks.json"

REFERENCE_2026 = json.loads((Path(__file__).parent / "fixtures" / "reference_tasks_2026.json").read_text())[
    "tasks"
]
SHARED_2026_JSON = SHARED_TASKS_JSON.parent / "upstream_2026_tasks.json"
# Where we run an upstream 2026 task differently, and why (README, "The 2026 steps"):
# upstream's bare-prompt input task is our setup step (001-2-plan.txt is the prompt exactly as given) ...
UPSTREAM_TO_OURS = {"InitialPlanRawTask": "setup", "TriageLeversTask": "deduplicate_levers"}
# ... the triage check reads our deduplicated levers under PlanExe's dedupe key ...
RENAMED_KEYS = {("deduplicated_levers_constraint", "triage_levers"): "deduplicate_levers"}
# ... and the self audit's nineteen items fan out concurrently instead of running in sequence.
CALL_SHAPES = {"self_audit": "per_item"}


def test_fixture_matches_shared_reference_when_present():
    if not SHARED_TASKS_JSON.exists():
        pytest.skip("shared/reference/tasks.json is not beside this checkout")
    shared = json.loads(SHARED_TASKS_JSON.read_text())
    assert [t["luigi_class"] for t in shared] == [t["luigi_class"] for t in REFERENCE]
    for s, r in zip(shared, REFERENCE, strict=True):
        assert s["requires"] == r["requires"]
        assert {k: o["filename"] for k, o in s["outputs"].items()} == r["outputs"]
        assert [o["filename"] for o in s["side_outputs"]] == r["side_outputs"]


# Files a legacy step writes beside PlanExe's 2025 outputs: the report's markdown twin (upstream's
# 2026 ReportTask writes report.md; ours is numbered like its neighbour).
OUR_SIDE_FILES = {"report": ["029-report.md"]}


def test_step_table_is_the_reference():
    assert len(LEGACY_STEPS) == len(REF_TASKS) == 61
    for step, ref in zip(LEGACY_STEPS, REF_TASKS, strict=True):
        assert (step.name, step.luigi_class, step.stage, step.llm_calls) == (
            ref["asset"],
            ref["luigi_class"],
            ref["stage"],
            ref["llm_calls"],
        )
        assert dict(step.requires) == {k: CLASS_TO_ASSET[c] for k, c in ref["requires"].items()}
        assert dict(step.outputs) == ref["outputs"]
        assert list(step.side_outputs) == ref["side_outputs"] + OUR_SIDE_FILES.get(step.name, [])
    assert dict(LEGACY_FULL_PLAN_PIPELINE_REQUIRES) == {
        k: CLASS_TO_ASSET[c] for k, c in REF_AGGREGATE["requires"].items()
    }
    assert REF_AGGREGATE["outputs"] == {"": PIPELINE_COMPLETE_FILENAME}


def test_fixture_2026_matches_shared_reference_when_present():
    if not SHARED_2026_JSON.exists():
        pytest.skip("shared/reference/upstream_2026_tasks.json is not beside this checkout")
    shared = {t["asset"]: t for t in json.loads(SHARED_2026_JSON.read_text())}
    for ref in REFERENCE_2026:
        s = shared[ref["upstream_asset"]]
        assert (s["luigi_class"], s["stage"], s["llm_calls"]) == (
            ref["upstream_luigi_class"],
            ref["upstream_stage"],
            ref["upstream_llm_calls"],
        )
        assert s["requires"] == ref["upstream_requires"]
        assert {k: o["filename"] for k, o in s["outputs"].items()} == ref["upstream_outputs"]


def _ours(step_name: str, key: str, upstream_class: str) -> tuple[str, str]:
    """An upstream requires() entry as our (key, step)."""
    if upstream_class in UPSTREAM_TO_OURS:
        return RENAMED_KEYS.get((step_name, key), key), UPSTREAM_TO_OURS[upstream_class]
    return key, {s.luigi_class: s.name for s in STEPS}[upstream_class]


def test_added_steps_are_upstreams_2026_tasks():
    """Each added step is the upstream task: its class (the triage check keeps the dedupe name),
    stage, call shape, requires() (mapped onto our steps) and output keys; its files carry the
    numbered name upstream gave them, or, for the two that never had one, a numbered name of ours;
    without the prefix every name is upstream's 2026 name (the triage check's aside)."""
    assert sorted(s.name for s in ADDED_STEPS) == sorted(r["asset"] for r in REFERENCE_2026)
    for ref in REFERENCE_2026:
        step = STEP_BY_NAME[ref["asset"]]
        assert not step.legacy and not step.extra_requires
        if ref["asset"] == ref["upstream_asset"]:
            assert step.luigi_class == ref["upstream_luigi_class"]
        else:
            assert step.luigi_class == "DeduplicatedLeversConstraintTask"
        assert step.stage == ref["upstream_stage"]
        assert step.llm_calls == CALL_SHAPES.get(step.name, ref["upstream_llm_calls"])
        expected = dict(_ours(step.name, k, c) for k, c in ref["upstream_requires"].items())
        assert dict(step.requires) == expected, step.name
        assert set(step.outputs) == set(ref["upstream_outputs"])
        for key, name in step.outputs.items():
            numbered = ref["upstream_outputs_numbered_era"][key]
            assert name == (numbered or name), (step.name, key)
            assert re.fullmatch(r"\d{3}-\d+-[a-z_]+\.(json|md)", name), name
            unnumbered = name.split("-", 2)[2]
            if step.name != "deduplicated_levers_constraint":
                assert unnumbered == ref["upstream_outputs"][key], (step.name, key)


def test_file_names_are_unique_and_legacy_names_untouched():
    names = [n for s in STEPS for n in (*s.filenames, *s.side_outputs)]
    assert len(names) == len(set(names))
    legacy = {n for s in LEGACY_STEPS for n in (*s.filenames, *s.side_outputs)}
    ours = {n for names in OUR_SIDE_FILES.values() for n in names}
    assert legacy == {n for ref in REF_TASKS for n in (*ref["outputs"].values(), *ref["side_outputs"])} | ours


def test_aggregate_requires_every_step():
    assert set(FULL_PLAN_PIPELINE_REQUIRES.values()) == {s.name for s in STEPS}
    assert {
        k: v for k, v in FULL_PLAN_PIPELINE_REQUIRES.items() if k in LEGACY_FULL_PLAN_PIPELINE_REQUIRES
    } == dict(LEGACY_FULL_PLAN_PIPELINE_REQUIRES)


def test_every_step_is_implemented():
    assert [s.name for s in pipeline_steps()] == [s.name for s in STEPS]


def _dagster_graph():
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if key.path[-1] not in STEP_BY_NAME:
            continue
        out[key.path[-1]] = {p.path[-1] for p in node.parent_keys}
    return out


def test_dagster_graph_equals_reference_edges():
    graph = _dagster_graph()
    implemented = {s.name for s in pipeline_steps()}
    assert set(graph) == implemented
    for name in implemented:
        assert graph[name] == set(STEP_BY_NAME[name].deps), name


def test_dagster_assets_are_partitioned_grouped_and_use_the_io_manager():
    graph = defs.resolve_asset_graph()
    for step in pipeline_steps():
        node = graph.get(AssetKey(step.name))
        assert node.partitions_def is not None and node.partitions_def.name == "plans"
        assert node.group_name == step.group
        assert (
            node.metadata["output_files"].value == list(step.filenames)
            if hasattr(node.metadata["output_files"], "value")
            else node.metadata["output_files"] == list(step.filenames)
        )


def test_luigi_graph_equals_reference(tmp_path):
    assert set(TASK_CLASSES) == {s.name for s in pipeline_steps()}
    run_dir = tmp_path / "plan_x"
    for ref in REF_TASKS:
        if ref["asset"] not in TASK_CLASSES:
            continue
        cls = TASK_CLASSES[ref["asset"]]
        assert cls.__name__ == ref["luigi_class"]
        task = cls(run_id_dir=run_dir)
        reqs = task.requires()
        step = STEP_BY_NAME[ref["asset"]]
        if list(ref["requires"]) == [""] and not step.extra_requires:
            assert type(reqs).__name__ == ref["requires"][""]
        else:
            # PlanExe's requires() exactly, plus our extra edges to added steps under their own keys
            assert {k: type(v).__name__ for k, v in reqs.items() if k in ref["requires"]} == ref["requires"]
            assert {k: type(v).__name__ for k, v in reqs.items() if k not in ref["requires"]} == {
                k: STEP_BY_NAME[name].luigi_class for k, name in step.extra_requires.items()
            }
        outputs = task.output()
        if list(ref["outputs"]) == [""]:
            assert Path(outputs.path) == run_dir / ref["outputs"][""]
        else:
            assert {k: Path(v.path).name for k, v in outputs.items()} == ref["outputs"]
            assert all(Path(v.path).parent == run_dir for v in outputs.values())
        # clone() passes every significant parameter down, as PlanExe's tasks do
        for upstream in reqs.values() if isinstance(reqs, dict) else [reqs]:
            assert upstream.run_id_dir == task.run_id_dir and upstream.llm_models == task.llm_models
            assert upstream.speedvsdetail == task.speedvsdetail


def test_luigi_added_tasks(tmp_path):
    """The 2026 tasks: class names, requires() as in the step table, output() names, parameters passed down."""
    run_dir = tmp_path / "plan_x"
    for step in ADDED_STEPS:
        task = TASK_CLASSES[step.name](run_id_dir=run_dir, speedvsdetail=SpeedVsDetail.FAST_BUT_SKIP_DETAILS)
        assert type(task).__name__ == step.luigi_class
        reqs = task.requires()
        if list(step.requires) == [""]:
            reqs = {"": reqs}
        assert {k: type(v).__name__ for k, v in reqs.items()} == {
            k: STEP_BY_NAME[name].luigi_class for k, name in step.requires.items()
        }
        assert all(r.speedvsdetail == SpeedVsDetail.FAST_BUT_SKIP_DETAILS for r in reqs.values())
        outputs = task.output()
        if list(step.outputs) == [""]:
            outputs = {"": outputs}
        assert {k: Path(v.path) for k, v in outputs.items()} == {
            k: run_dir / n for k, n in step.outputs.items()
        }


def test_luigi_aggregate(tmp_path):
    task = FullPlanPipeline(run_id_dir=tmp_path / "p")
    expected = {k: c for k, c in REF_AGGREGATE["requires"].items() if CLASS_TO_ASSET[c] in TASK_CLASSES}
    expected.update({s.name: s.luigi_class for s in ADDED_STEPS})
    assert {k: type(v).__name__ for k, v in task.requires().items()} == expected
    assert Path(task.output().path).name == PIPELINE_COMPLETE_FILENAME
