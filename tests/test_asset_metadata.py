"""What the Dagster UI shows about a step (planexe_assets/dagster_defs/asset_metadata.py): previews, tags, owners."""

import json

import pytest
from dagster import AssetKey
from hypothesis import given, settings
from hypothesis import strategies as st

from planexe_assets.core import step_file
from planexe_assets.dagster_defs import asset_metadata as am
from planexe_assets.lifecycle.runner import pipeline_steps
from resources.config import ConfigError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=40) | st.dictionaries(st.text(max_size=20), children, max_size=40)
    ),
    max_leaves=400,
)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_a_json_preview_is_always_valid_json_within_the_limit(value):
    text = json.dumps(value)
    body, note = am.json_preview(text, 2000)
    parsed = json.loads(body)  # never cut mid-structure
    assert len(body) <= 2000 or note.endswith("its outline")
    if not note:
        assert parsed == value


def test_a_long_json_file_is_shortened_with_markers_and_labelled():
    data = {
        "levers": [{"name": f"lever {i}", "description": "x" * 500} for i in range(40)],
        "metadata": {"a": 1},
    }
    preview = am.preview({step_file("potential_levers", "clean"): json.dumps(data)}, limit=3000)
    header, _, rest = preview.partition("\n\n")
    assert header.startswith("**`002-10-potential_levers.json`** · JSON ·") and "shortened" in header
    body = rest.removeprefix("```json\n").removesuffix("\n```")
    shown = json.loads(body)
    assert shown["levers"][-1].endswith("more items") and shown["levers"][0]["description"].endswith("…")


def test_markdown_and_invalid_json_previews_are_cut_at_a_boundary():
    text = "\n\n".join(f"Paragraph {i}: " + "words " * 40 for i in range(50))
    preview = am.preview({"a.md": text}, limit=1000)
    assert preview.startswith("**`a.md`** · Markdown ·")
    assert "more bytes in the file" in preview
    body = preview.split("---\n\n", 1)[1].split("\n\n*…")[0]
    assert body.endswith("words")  # a whole paragraph, not half a word
    fenced = "intro\n\n```\n" + "code line\n" * 500 + "```\n"
    body, cut = am.clip_text(fenced, 600)
    assert cut and body.count("```") % 2 == 0
    body, note = am.json_preview("{not json" + " x" * 3000, 500)
    assert "not valid JSON" in note and len(body) <= 500


def test_markdown_is_preferred_and_html_shows_its_outline():
    files = {"x_raw.json": "{}", "x.md": "# Title\n", "x.html": "<h2>One</h2>"}
    assert am.main_file(files) == "x.md"
    html = "<details><summary>Executive <b>Summary</b></summary>..</details><details><summary>Pitch</summary></details>"
    assert am.html_outline(html) == ["Executive Summary", "Pitch"]
    assert am.html_outline("<h2>A</h2><p>x</p><h2>B &amp; C</h2>") == ["A", "B & C"]


def test_report_preview_names_the_file_and_lists_the_sections(tmp_path):
    html = "<details><summary>Executive Summary</summary></details><details><summary>Gantt Overview</summary></details>"
    text = am.report_preview(html, tmp_path / step_file("report"))
    assert "2 sections" in text and "1. Executive Summary\n2. Gantt Overview" in text
    assert (tmp_path / step_file("report")).as_uri() in text


def test_prompt_tag_is_one_trimmed_line():
    assert am.prompt_tag("  Open a\n bakery\t in Aarhus ") == "Open a bakery in Aarhus"
    long = "word " * 100
    tag = am.prompt_tag(long)
    assert len(tag) <= am.PROMPT_TAG_LIMIT and tag.endswith("word…") and "\n" not in tag
    assert am.prompt_tag(None) == ""


def test_owners_come_from_the_environment_and_are_checked(monkeypatch):
    assert am.asset_owners() == ["team:planexe"]
    monkeypatch.setenv(am.OWNERS_ENV, "team:plans, ana@example.org")
    assert am.asset_owners() == ["team:plans", "ana@example.org"]
    monkeypatch.setenv(am.OWNERS_ENV, "just a name")
    with pytest.raises(ConfigError, match="PLANEXE_ASSET_OWNERS"):
        am.asset_owners()


def test_every_asset_has_a_description_owners_code_references_and_a_code_version():
    from planexe_assets.definitions import defs

    versions = set()
    for step in pipeline_steps():
        spec = next(iter(defs.resolve_assets_def(AssetKey(step.name)).specs))
        assert spec.description == step.description and 40 <= len(step.description) <= 300, step.name
        assert not spec.description.startswith("PlanExe "), step.name
        assert spec.owners == ["team:planexe"]
        refs = spec.metadata["dagster/code_references"].code_references
        assert refs[0].file_path.endswith(".py") and refs[0].label.startswith("step function ")
        assert refs[1].label == "step table row" and refs[1].file_path.endswith("step_table.py")
        assert spec.code_version and len(spec.code_version) == 16
        assert spec.code_version in spec.metadata["code_version_covers"].value
        versions.add(spec.code_version)
    assert len(versions) == len(pipeline_steps())
