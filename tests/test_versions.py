"""Code versions and data versions (planexe_assets/lifecycle/versions.py) and Dagster's staleness built on them.

The pure part: a step's code version changes when its prompt, response model, renderer or template
changes, and so do the versions of the steps downstream of it, nothing else; versions are the same in
another process. The Dagster part runs an offline plan on an ephemeral instance, changes one prompt,
and asks Dagster's own staleness resolver (what the UI's "Unsynced" and "Materialize stale" use)
which partitions are stale; re-materializing exactly those makes the plan fresh again, and a
re-materialization that writes the same content leaves its downstream assets fresh.
"""

import json
import os
import subprocess
import sys

import pytest
from dagster import AssetKey, DagsterInstance
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from planexe_assets.lifecycle import versions
from planexe_assets.lifecycle.runner import pipeline_steps
from planexe_assets.steps import purpose

NAMES = [s.name for s in pipeline_steps()]


def _downstream(name: str) -> set[str]:
    found: set[str] = set()
    for step in pipeline_steps():  # table order is topological
        if name in step.deps or found & set(step.deps):
            found.add(step.name)
    return found


def _changed(before: dict, after: dict) -> set[str]:
    return {n for n in NAMES if before[n].code_version != after[n].code_version}


def test_code_versions_are_the_same_in_another_process():
    here = {n: v.code_version for n, v in versions.step_versions(NAMES).items()}
    script = (
        "import json; from planexe_assets.lifecycle import versions; from planexe_assets.lifecycle.runner import pipeline_steps; "
        "print(json.dumps({n: v.code_version for n, v in versions.step_versions([s.name for s in pipeline_steps()]).items()}))"
    )
    for seed in ("0", "12345"):  # another hash seed: set and dict orders must not leak into versions
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=300,
            check=True,
        ).stdout
        assert json.loads(out) == here
    assert len(set(here.values())) == len(NAMES)  # every step has its own version


def test_a_changed_prompt_changes_that_step_and_its_downstream_only(monkeypatch):
    before = versions.step_versions(NAMES)
    monkeypatch.setattr(
        purpose, "PURPOSE_SYSTEM_PROMPT", purpose.PURPOSE_SYSTEM_PROMPT + "\nAnswer briefly.\n"
    )
    after = versions.step_versions(NAMES)
    assert _changed(before, after) == {"identify_purpose"} | _downstream("identify_purpose")
    own = {n for n in NAMES if before[n].fingerprint.digest != after[n].fingerprint.digest}
    assert own == {"identify_purpose"}
    prompt = {p.name for p in after["identify_purpose"].fingerprint.parts if p.kind == "prompt"}
    assert prompt == {"planexe_assets.steps.purpose.PURPOSE_SYSTEM_PROMPT"}
    # The downstream set is large (plan_type, levers, ..., report), not just the direct children.
    assert {"plan_type", "potential_levers", "report"} <= _changed(before, after)
    assert "premise_attack" not in _changed(before, after) and "setup" not in _changed(before, after)


def test_response_model_renderer_and_template_changes_change_the_version(monkeypatch):
    before = versions.step_versions(NAMES)

    class PlanPurposeInfo(purpose.PlanPurposeInfo):  # one more field in the schema sent to the model
        audience: str = ""

    monkeypatch.setattr(purpose, "PlanPurposeInfo", PlanPurposeInfo)
    assert "identify_purpose" in _changed(before, versions.step_versions(NAMES))
    monkeypatch.undo()

    def render_identify_purpose(info):  # a renderer with different output
        return f"Purpose: {info.purpose}\n"

    monkeypatch.setattr(purpose, "render_identify_purpose", render_identify_purpose)
    assert _changed(before, versions.step_versions(NAMES)) == {"identify_purpose"} | _downstream(
        "identify_purpose"
    )
    monkeypatch.undo()

    original = dict(versions._data_files())
    template = {**original, "report.html.j2": original["report.html.j2"] + "<!-- changed -->"}
    monkeypatch.setattr(versions, "_data_files", lambda: template)
    assert _changed(before, versions.step_versions(NAMES)) == {"report"}
    script = {**original, "gantt_viewer.js": original["gantt_viewer.js"] + "\n// changed\n"}
    monkeypatch.setattr(versions, "_data_files", lambda: script)
    # The schedule inlines the viewer script, and so does the report: both change.
    assert _changed(before, versions.step_versions(NAMES)) == {"schedule"} | _downstream("schedule")
    assert "report" in _downstream("schedule")


def test_the_version_covers_what_the_step_sends_and_renders():
    fp = versions.step_versions(NAMES)["identify_purpose"].fingerprint
    names = {(p.kind, p.name.rsplit(".", 1)[-1]) for p in fp.parts}
    assert ("prompt", "PURPOSE_SYSTEM_PROMPT") in names
    assert ("response model", "PlanPurposeInfo") in names
    assert ("function", "render_identify_purpose") in names and ("function", "run_identify_purpose") in names
    assert ("step table row", "identify_purpose") in names
    assert "PLAN_TYPE_SYSTEM_PROMPT" not in {n for _, n in names}  # the same module's other step
    report = {(p.kind, p.name) for p in versions.step_versions(NAMES)["report"].fingerprint.parts}
    assert ("data file", "report.html.j2") in report
    assert "1 prompt (PURPOSE_SYSTEM_PROMPT)" in fp.summary()


def test_data_version_is_the_content_hash():
    a = versions.data_version({"x.md": "hello", "y.json": "{}"})
    assert a == versions.data_version({"y.json": "{}", "x.md": "hello"})  # order-free
    assert a != versions.data_version({"x.md": "hello!", "y.json": "{}"})
    assert a != versions.data_version({"z.md": "hello", "y.json": "{}"})  # names count
    # A raw file's call bookkeeping (model, duration, tokens) is no content; everything else is.
    one = json.dumps({"topic": "bakery", "metadata": {"duration": 1.2, "input_tokens": 10}})
    two = json.dumps({"topic": "bakery", "metadata": {"duration": 3.4, "input_tokens": 11}})
    three = json.dumps({"topic": "bakeries", "metadata": {"duration": 1.2, "input_tokens": 10}})
    assert versions.data_version({"r.json": one}) == versions.data_version({"r.json": two})
    assert versions.data_version({"r.json": one}) != versions.data_version({"r.json": three})
    assert versions.data_version({"r.md": one}) != versions.data_version({"r.md": two})  # only JSON files


# -- Dagster's staleness -------------------------------------------------------------------------------
PLAN = "stale_plan"


def _statuses(instance, defs) -> dict[str, StaleStatus]:
    resolver = CachingStaleStatusResolver(
        instance, defs.resolve_asset_graph(), loading_context=LoadingContextForTest(instance)
    )
    return {name: resolver.get_status(AssetKey(name), PLAN) for name in NAMES}


def _stale(instance, defs) -> set[str]:
    return {name for name, status in _statuses(instance, defs).items() if status == StaleStatus.STALE}


def _latest(instance, name: str) -> int:
    """Storage id of the asset's latest materialization for the plan."""
    from dagster import AssetRecordsFilter

    filter_ = AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[PLAN])
    return instance.fetch_materializations(filter_, limit=1).records[0].storage_id


def _refresh_request(instance, defs, run_id):
    """What plan_refresh_sensor asks for after the refresh run ``run_id`` succeeded."""
    from dagster import DagsterEventType, build_run_status_sensor_context

    from planexe_assets.dagster_defs.refresh import plan_refresh_sensor

    run = instance.get_run_by_id(run_id)
    [event] = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_SUCCESS).records
    context = build_run_status_sensor_context(
        sensor_name="plan_refresh_sensor",
        dagster_event=event.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        repository_def=defs.get_repository_def(),
    )
    return plan_refresh_sensor(context)


def _materialize(instance, defs, names) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        partition_key=PLAN,
        asset_selection=[AssetKey(n) for n in names],
        raise_on_error=False,
    )
    assert result.success


@pytest.mark.slow
def test_dagster_staleness_after_a_prompt_change_and_after_identical_output(app_db, monkeypatch):
    from planexe_assets.dagster_defs.launch import run_plan_in_process
    from planexe_assets.definitions import build_definitions, defs
    from planexe_assets.lifecycle.plans import PlanRequest, create_plan

    create_plan(app_db, PlanRequest(prompt="Open a small bakery in Aarhus.", model="offline", plan_id=PLAN))
    with DagsterInstance.ephemeral() as instance:
        assert run_plan_in_process(PLAN, instance).success
        assert set(_statuses(instance, defs).values()) == {StaleStatus.FRESH}

        # A changed prompt: that asset and everything downstream of it are stale, nothing else.
        monkeypatch.setattr(
            purpose, "PURPOSE_SYSTEM_PROMPT", purpose.PURPOSE_SYSTEM_PROMPT + "\nAnswer briefly.\n"
        )
        changed = build_definitions()
        stale = _stale(instance, changed)
        assert stale == {"identify_purpose"} | _downstream("identify_purpose")
        resolver = CachingStaleStatusResolver(
            instance, changed.resolve_asset_graph(), loading_context=LoadingContextForTest(instance)
        )
        [cause] = resolver.get_stale_causes(AssetKey("identify_purpose"), PLAN)
        assert cause.reason == "has a new code version"

        # "Materialize stale" for the plan: the refresh_plan job reports exactly those, and
        # plan_refresh_sensor requests one run of them; after it the plan is fresh again.
        refresh = changed.resolve_job_def("refresh_plan").execute_in_process(
            run_config={"ops": {"refresh_request": {"config": {"plan_id": PLAN}}}}, instance=instance
        )
        assert refresh.success and set(refresh.output_for_node("refresh_request")) == stale
        request = _refresh_request(instance, changed, refresh.run_id)
        assert request.partition_key == PLAN and request.run_key == f"refresh:{refresh.run_id}"
        assert [k.path[-1] for k in request.asset_selection] == [
            s.name for s in pipeline_steps() if s.name in stale
        ]
        before = {n: _latest(instance, n) for n in NAMES}
        _materialize(instance, changed, [k.path[-1] for k in request.asset_selection])
        after = {n: _latest(instance, n) for n in NAMES}
        assert {n for n in NAMES if before[n] != after[n]} == stale
        assert set(_statuses(instance, changed).values()) == {StaleStatus.FRESH}

        # Re-materializing a step that writes the same content (the offline model answers the same
        # request the same way) keeps its downstream assets fresh ...
        _materialize(instance, changed, ["identify_purpose"])
        assert _stale(instance, changed) == set()
        # A refresh now finds nothing to do.
        fresh = changed.resolve_job_def("refresh_plan").execute_in_process(
            run_config={"ops": {"refresh_request": {"config": {"plan_id": PLAN}}}}, instance=instance
        )
        assert fresh.output_for_node("refresh_request") == []
        assert "up to date" in _refresh_request(instance, changed, fresh.run_id).skip_message
        # ... and one that writes new content (new uuid4 lever ids) makes its children stale.
        _materialize(instance, changed, ["potential_levers"])
        children = {s.name for s in pipeline_steps() if "potential_levers" in s.deps}
        assert "deduplicate_levers" in children
        assert _stale(instance, changed) == children
        resolver = CachingStaleStatusResolver(
            instance, changed.resolve_asset_graph(), loading_context=LoadingContextForTest(instance)
        )
        [cause] = resolver.get_stale_causes(AssetKey("deduplicate_levers"), PLAN)
        assert cause.reason == "has a new dependency data version"
