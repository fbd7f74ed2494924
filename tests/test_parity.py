"""The step table, the Dagster asset graph and the Luigi requires() graph are the reference graph.

``tests/fixtures/reference_tasks.json`` holds the reference facts (PlanExe's class names, requires()
keys -> classes, output() keys -> file names) extracted from ``shared/reference/tasks.json``.
"""

import json
from pathlib import Path

import pytest
from dagster import AssetKey

from legacy_luigi.tasks import TASK_CLASSES, FullPlanPipeline
from planexe_assets.core import (
    FULL_PLAN_PIPELINE_REQUIRES,
    PIPELINE_COMPLETE_FILENAME,
    STEP_BY_NAME,
    STEPS,
)
from planexe_assets.definitions import defs
from planexe_assets.lifecycle.runner import pipeline_steps

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "reference_tasks.json").read_text())
REF_TASKS = [t for t in REFERENCE if not t["aggregate"]]
REF_AGGREGATE = next(t for t in REFERENCE if t["aggregate"])
CLASS_TO_ASSET = {t["luigi_class"]: t["asset"] for t in REFERENCE}
SHARED_TASKS_JSON = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tasks.json"


def test_fixture_matches_shared_reference_when_present():
    if not SHARED_TASKS_JSON.exists():
        pytest.skip("shared/reference/tasks.json is not beside this checkout")
    shared = json.loads(SHARED_TASKS_JSON.read_text())
    assert [t["luigi_class"] for t in shared] == [t["luigi_class"] for t in REFERENCE]
    for s, r in zip(shared, REFERENCE, strict=True):
        assert s["requires"] == r["requires"]
        assert {k: o["filename"] for k, o in s["outputs"].items()} == r["outputs"]
        assert [o["filename"] for o in s["side_outputs"]] == r["side_outputs"]


def test_step_table_is_the_reference():
    assert len(STEPS) == len(REF_TASKS) == 61
    for step, ref in zip(STEPS, REF_TASKS, strict=True):
        assert (step.name, step.luigi_class, step.stage, step.llm_calls) == (
            ref["asset"], ref["luigi_class"], ref["stage"], ref["llm_calls"]
        )
        assert dict(step.requires) == {k: CLASS_TO_ASSET[c] for k, c in ref["requires"].items()}
        assert dict(step.outputs) == ref["outputs"]
        assert list(step.side_outputs) == ref["side_outputs"]
    assert dict(FULL_PLAN_PIPELINE_REQUIRES) == {k: CLASS_TO_ASSET[c] for k, c in REF_AGGREGATE["requires"].items()}
    assert REF_AGGREGATE["outputs"] == {"": PIPELINE_COMPLETE_FILENAME}


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
        assert node.metadata["output_files"].value == list(step.filenames) if hasattr(node.metadata["output_files"], "value") else node.metadata["output_files"] == list(step.filenames)


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
        if list(ref["requires"]) == [""]:
            assert type(reqs).__name__ == ref["requires"][""]
        else:
            assert {k: type(v).__name__ for k, v in reqs.items()} == ref["requires"]
        outputs = task.output()
        if list(ref["outputs"]) == [""]:
            assert Path(outputs.path) == run_dir / ref["outputs"][""]
        else:
            assert {k: Path(v.path).name for k, v in outputs.items()} == ref["outputs"]
            assert all(Path(v.path).parent == run_dir for v in outputs.values())
        # clone() passes every significant parameter down, as PlanExe's tasks do
        for upstream in (reqs.values() if isinstance(reqs, dict) else [reqs]):
            assert upstream.run_id_dir == task.run_id_dir and upstream.llm_models == task.llm_models
            assert upstream.speedvsdetail == task.speedvsdetail


def test_luigi_aggregate(tmp_path):
    task = FullPlanPipeline(run_id_dir=tmp_path / "p")
    expected = {k: c for k, c in REF_AGGREGATE["requires"].items() if CLASS_TO_ASSET[c] in TASK_CLASSES}
    assert {k: type(v).__name__ for k, v in task.requires().items()} == expected
    assert Path(task.output().path).name == PIPELINE_COMPLETE_FILENAME
