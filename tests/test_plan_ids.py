import pytest

from resources.plan_ids import InvalidPlanId, new_plan_id, run_dir_for, validate_plan_id


@pytest.mark.parametrize("good", ["a", "PlanExe_20260310_192145", "x-y_Z9", "A" * 64, "_leading_underscore"])
def test_valid_ids_pass(good):
    assert validate_plan_id(good) == good


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("", "empty"),
        ("../etc", "'.'"),
        ("..", "'.'"),
        ("a/b", "'/'"),
        ("a\\b", "'\\\\'"),
        ("/abs", "'/'"),
        ("a,b", "','"),
        ("with space", "' '"),
        ("x" * 65, "65 characters"),
        ("x" * 200, "200 characters"),
        ("plаn", "'а'"),  # Cyrillic a, a look-alike
        ("ｐlan", "'ｐ'"),  # full-width p
        ("tab\t", "'\\t'"),
        ("nul\x00", "'\\x00'"),
        ("-rf", "may not start with '-'"),
        ("a.b", "'.'"),
    ],
)
def test_hostile_ids_refused_with_reason(bad, fragment):
    with pytest.raises(InvalidPlanId) as err:
        validate_plan_id(bad)
    assert fragment in str(err.value)


@pytest.mark.parametrize("bad", [None, 5, b"abc"])
def test_non_strings_refused(bad):
    with pytest.raises(InvalidPlanId):
        validate_plan_id(bad)


def test_new_plan_ids_are_valid_and_unique():
    ids = {new_plan_id() for _ in range(200)}
    assert len(ids) == 200
    for plan_id in ids:
        validate_plan_id(plan_id)


def test_run_dir_stays_inside_root(tmp_path):
    assert run_dir_for("plan_1", tmp_path) == (tmp_path / "plan_1").resolve()
    with pytest.raises(InvalidPlanId):
        run_dir_for("../escape", tmp_path)
