"""The critical-path method: hand-checked networks plus property-based tests on random DAGs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planexe_assets.steps.cpm import (
    Activity,
    CycleError,
    Link,
    LinkType,
    NetworkError,
    Timing,
    compute_schedule,
    link_violations,
    topological_order,
)

D = Decimal


def _times(schedule, activity_id):
    t = schedule.timings[activity_id]
    return (t.es, t.ef, t.ls, t.lf, t.total_float)


# ---------------------------------------------------------------------------------------------------
# Hand-checked networks
# ---------------------------------------------------------------------------------------------------


def test_textbook_network_forward_backward_and_float():
    #   A(3) -> B(2) -> D(4)
    #   A(3) -> C(6) -> D(4)      C is on the critical path, B has 4 days of float.
    activities = [Activity("A", 3), Activity("B", 2), Activity("C", 6), Activity("D", 4)]
    links = [Link("A", "B"), Link("A", "C"), Link("B", "D"), Link("C", "D")]
    schedule = compute_schedule(activities, links)
    assert schedule.finish == 13
    assert _times(schedule, "A") == (0, 3, 0, 3, 0)
    assert _times(schedule, "B") == (3, 5, 7, 9, 4)
    assert _times(schedule, "C") == (3, 9, 3, 9, 0)
    assert _times(schedule, "D") == (9, 13, 9, 13, 0)
    assert schedule.critical_ids() == ["A", "C", "D"]
    assert schedule.warnings == ()
    assert all(isinstance(v, Decimal) for t in schedule.timings.values() for v in (t.es, t.ef, t.ls, t.lf))


@pytest.mark.parametrize(
    ("link_type", "lag", "succ_es"),
    [
        (LinkType.FS, 0, 5),  # starts when P (0-5) finishes
        (LinkType.FS, 2, 7),
        (LinkType.SS, 1, 1),  # starts a day after P starts
        (LinkType.FF, 0, 2),  # finishes with P: 5 - 3
        (LinkType.FF, -4, 0),  # would start before day 0: held at 0
        (LinkType.SF, 4, 1),  # finishes 4 days after P starts: 4 - 3
    ],
)
def test_each_link_type_with_lag(link_type, lag, succ_es):
    schedule = compute_schedule([Activity("P", 5), Activity("S", 3)], [Link("P", "S", link_type, lag)])
    assert schedule.timings["S"].es == succ_es
    assert schedule.timings["S"].ef == succ_es + 3
    assert schedule.warnings == ()


def test_decimal_durations_stay_exact():
    schedule = compute_schedule([Activity("A", D("0.1")), Activity("B", D("0.2"))], [Link("A", "B")])
    assert schedule.finish == D("0.3")  # not 0.30000000000000004


def test_deadline_gives_negative_float_and_warnings():
    schedule = compute_schedule(
        [Activity("A", 4, "Dig"), Activity("B", 4, "Pour")], [Link("A", "B")], deadline=6
    )
    assert schedule.timings["A"].total_float == -2 and schedule.timings["B"].total_float == -2
    assert schedule.critical_ids() == ["A", "B"]
    assert any("needs 8 days but the deadline is day 6" in w for w in schedule.warnings)
    assert any("'Dig' (A) has negative float (-2 days)" in w for w in schedule.warnings)


def test_link_violations_report_dates_that_break_a_link():
    link = Link("A", "B", LinkType.FS, 1)
    ok = {"A": Timing(D(0), D(3), D(0), D(3)), "B": Timing(D(4), D(6), D(4), D(6))}
    assert link_violations([link], ok) == []
    early_clash = {"A": Timing(D(0), D(3), D(0), D(3)), "B": Timing(D(2), D(4), D(4), D(6))}
    assert link_violations([link], early_clash, {"A": "Dig", "B": "Pour"}) == [
        "link 'Dig' (A) -> 'Pour' (B) (FS+1) is violated by 2 days in the early dates"
    ]


def test_kahn_order_is_stable_and_follows_links():
    ids = ["d", "c", "b", "a"]
    links = [Link("a", "b"), Link("c", "b")]
    # Ready activities are taken in input order: d, c, a; b only once a and c are placed.
    assert topological_order(ids, links) == ["d", "c", "a", "b"]


def test_cycle_is_refused_with_the_tasks_named():
    activities = [
        Activity("a", 1, "Design"),
        Activity("b", 1, "Build"),
        Activity("c", 1, "Test"),
        Activity("d", 1),
    ]
    links = [Link("a", "b"), Link("b", "c"), Link("c", "a"), Link("c", "d")]
    with pytest.raises(CycleError) as caught:
        compute_schedule(activities, links)
    assert set(caught.value.cycle) == {"a", "b", "c"}
    message = str(caught.value)
    for name in ("'Design' (a)", "'Build' (b)", "'Test' (c)"):
        assert name in message
    assert "cycle" in message and "'d'" not in message


def test_self_link_is_a_cycle():
    with pytest.raises(CycleError, match="'x'"):
        compute_schedule([Activity("x", 2)], [Link("x", "x", LinkType.SS)])


@pytest.mark.parametrize(
    ("activities", "links", "message"),
    [
        ([Activity("a", 1), Activity("a", 2)], [], "more than once"),
        ([Activity("a", 1)], [Link("a", "zzz")], "unknown activity 'zzz'"),
    ],
)
def test_malformed_networks_are_refused(activities, links, message):
    with pytest.raises(NetworkError, match=message):
        compute_schedule(activities, links)


def test_bad_durations_and_lags_are_refused():
    with pytest.raises(NetworkError, match="negative duration"):
        Activity("a", -1)
    with pytest.raises(NetworkError, match="finite"):
        Activity("a", D("NaN"))
    with pytest.raises(NetworkError, match="not a number"):
        Link("a", "b", LinkType.FS, "soon")
    with pytest.raises(ValueError):
        Link("a", "b", "XX")


def test_empty_network():
    schedule = compute_schedule([], [])
    assert schedule.finish == 0 and schedule.order == () and schedule.warnings == ()


# ---------------------------------------------------------------------------------------------------
# Property-based tests
# ---------------------------------------------------------------------------------------------------

LINK_TYPES = list(LinkType)


@st.composite
def random_dags(draw, max_size: int = 18):
    """A random DAG: links only go from lower to higher rank; activities are listed shuffled."""
    n = draw(st.integers(min_value=1, max_value=max_size))
    durations = draw(st.lists(st.integers(min_value=0, max_value=20), min_size=n, max_size=n))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=3 * n)) if pairs else []
    links = [
        Link(
            f"t{i}",
            f"t{j}",
            draw(st.sampled_from(LINK_TYPES)),
            draw(st.integers(min_value=-3, max_value=5)),
        )
        for i, j in chosen
    ]
    activities = [Activity(f"t{i}", durations[i], f"Task {i}") for i in range(n)]
    activities = draw(st.permutations(activities))
    return activities, links


def _bound(link: Link, pred: Timing, duration: Decimal) -> Decimal:
    """The earliest start the link allows (the definition, written independently of the module)."""
    return {
        LinkType.FS: pred.ef + link.lag,
        LinkType.SS: pred.es + link.lag,
        LinkType.FF: pred.ef + link.lag - duration,
        LinkType.SF: pred.es + link.lag - duration,
    }[link.type]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_dags())
def test_random_dags_respect_every_link(network):
    activities, links = network
    schedule = compute_schedule(activities, links)
    durations = {a.id: a.duration for a in activities}
    timings = schedule.timings
    position = {a: i for i, a in enumerate(schedule.order)}
    assert sorted(schedule.order) == sorted(durations)

    for link in links:
        pred, succ = timings[link.predecessor], timings[link.successor]
        assert position[link.predecessor] < position[link.successor]
        if link.type is LinkType.FS:
            # No task starts before its predecessors finish (plus the lag).
            assert succ.es >= pred.ef + link.lag
            assert succ.ls >= pred.lf + link.lag
        assert succ.es >= _bound(link, pred, durations[link.successor])

    for activity_id, t in timings.items():
        d = durations[activity_id]
        assert t.es >= 0 and t.ef == t.es + d and t.lf == t.ls + d
        assert t.total_float >= 0 and t.lf <= schedule.finish
        # The forward pass is tight: a task that does not start on day 0 is held back by a link.
        if t.es > 0:
            incoming = [link for link in links if link.successor == activity_id]
            assert any(_bound(link, timings[link.predecessor], d) == t.es for link in incoming)
    assert schedule.finish == max(t.ef for t in timings.values())
    assert schedule.warnings == ()


@settings(max_examples=200, deadline=None)
@given(random_dags())
def test_critical_tasks_have_zero_float_and_one_ends_the_project(network):
    activities, links = network
    schedule = compute_schedule(activities, links)
    critical = schedule.critical_ids()
    assert critical, "some task must finish on the project's last day"
    for activity_id, t in schedule.timings.items():
        assert (activity_id in critical) == (t.total_float == 0)
    assert any(schedule.timings[a].ef == schedule.finish for a in critical)


@settings(max_examples=200, deadline=None)
@given(random_dags(max_size=12), st.data())
def test_random_cycles_are_refused_with_a_real_cycle(network, data):
    activities, links = network
    ids = sorted(a.id for a in activities)
    loop = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids), unique=True))
    cycle_links = [Link(a, b) for a, b in zip(loop, loop[1:] + loop[:1], strict=True)]
    all_links = links + cycle_links
    with pytest.raises(CycleError) as caught:
        compute_schedule(activities, all_links)
    cycle = caught.value.cycle
    assert cycle
    linked = {(link.predecessor, link.successor) for link in all_links}
    for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        assert (a, b) in linked, f"{a}->{b} is not a link, so {cycle} is not a cycle"
    names = {a.id: a.name for a in activities}
    for activity_id in cycle:
        assert f"'{names[activity_id]}' ({activity_id})" in str(caught.value)
