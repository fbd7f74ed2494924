"""The critical-path method over an activity-on-node network, in exact decimal arithmetic.

Pure functions, no I/O and no knowledge of the WBS: the ``schedule`` step turns the work breakdown
structure into ``Activity`` and ``Link`` values and reads back one ``Timing`` per activity.

- Links carry one of the four precedence types with a lag (days, may be negative):
  ``FS`` successor starts after the predecessor finishes, ``SS`` starts after it starts,
  ``FF`` finishes after it finishes, ``SF`` finishes after it starts.
- ``topological_order`` is Kahn's algorithm with ties broken by input order, so the same network
  always gives the same order. A cycle raises ``CycleError`` naming the activities on it.
- ``compute_schedule`` runs the forward pass (early start/finish, nothing before day 0), the backward
  pass (late start/finish against the project finish or a deadline) and derives total float. It then
  re-checks every link against both the early and the late dates: a violated link or negative float
  is recorded as a warning on the result, never silently ignored.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)


class LinkType(StrEnum):
    FS = "FS"  # finish-to-start
    SS = "SS"  # start-to-start
    FF = "FF"  # finish-to-finish
    SF = "SF"  # start-to-finish


class NetworkError(ValueError):
    """The network itself is malformed: repeated ids, links to unknown activities, bad durations."""


class CycleError(NetworkError):
    """The links form a cycle, so no activity on it can ever start."""

    def __init__(self, cycle: Sequence[str], names: Mapping[str, str] | None = None):
        self.cycle = tuple(cycle)
        names = names or {}
        path = " -> ".join(_label(node, names) for node in (*self.cycle, self.cycle[0]))
        super().__init__(f"the dependencies form a cycle, so none of these tasks can be scheduled: {path}")


def _label(activity_id: str, names: Mapping[str, str]) -> str:
    name = names.get(activity_id, "")
    return f"{name!r} ({activity_id})" if name else repr(activity_id)


def to_decimal(value: int | Decimal | float | str, what: str) -> Decimal:
    """A finite Decimal; floats go through ``str`` so 0.1 stays 0.1."""
    if isinstance(value, bool):
        raise NetworkError(f"{what} must be a number, not a bool")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError as exc:
        raise NetworkError(f"{what} is not a number: {value!r}") from exc
    if not number.is_finite():
        raise NetworkError(f"{what} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class Activity:
    id: str
    duration: Decimal
    name: str = ""  # for messages only

    def __post_init__(self) -> None:
        duration = to_decimal(self.duration, f"duration of activity {self.id!r}")
        if duration < 0:
            raise NetworkError(f"activity {self.id!r} has a negative duration ({duration})")
        object.__setattr__(self, "duration", duration)


@dataclass(frozen=True)
class Link:
    predecessor: str
    successor: str
    type: LinkType = LinkType.FS
    lag: Decimal = ZERO

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", LinkType(self.type))
        object.__setattr__(
            self, "lag", to_decimal(self.lag, f"lag of link {self.predecessor}->{self.successor}")
        )

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        lag = "" if self.lag == 0 else f"{'+' if self.lag > 0 else ''}{self.lag}"
        names = names or {}
        return f"{_label(self.predecessor, names)} -> {_label(self.successor, names)} ({self.type}{lag})"


@dataclass(frozen=True)
class Timing:
    es: Decimal  # early start
    ef: Decimal  # early finish
    ls: Decimal  # late start
    lf: Decimal  # late finish

    @property
    def total_float(self) -> Decimal:
        return self.ls - self.es

    @property
    def critical(self) -> bool:
        """No room to slip without moving the project finish (or the deadline)."""
        return self.total_float <= 0


@dataclass(frozen=True)
class Schedule:
    order: tuple[str, ...]  # a topological order of the activity ids
    timings: Mapping[str, Timing]
    finish: Decimal  # the latest early finish: the project's length from day 0
    deadline: Decimal | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def critical_ids(self) -> list[str]:
        return [a for a in self.order if self.timings[a].critical]


# ---------------------------------------------------------------------------------------------------
# Validation and ordering
# ---------------------------------------------------------------------------------------------------


def _check_network(activities: Sequence[Activity], links: Sequence[Link]) -> dict[str, Activity]:
    by_id: dict[str, Activity] = {}
    for activity in activities:
        if activity.id in by_id:
            raise NetworkError(f"activity id {activity.id!r} appears more than once")
        by_id[activity.id] = activity
    for link in links:
        for end in (link.predecessor, link.successor):
            if end not in by_id:
                raise NetworkError(f"link {link.describe()} names unknown activity {end!r}")
    return by_id


def topological_order(
    ids: Sequence[str], links: Iterable[Link], names: Mapping[str, str] | None = None
) -> list[str]:
    """Kahn's algorithm: repeatedly take the earliest-listed activity whose predecessors are all placed.

    Raises ``CycleError`` with one concrete cycle when some activities can never be placed.
    """
    position = {activity_id: i for i, activity_id in enumerate(ids)}
    successors: dict[str, list[str]] = {activity_id: [] for activity_id in ids}
    in_degree = dict.fromkeys(ids, 0)
    for link in links:
        successors[link.predecessor].append(link.successor)
        in_degree[link.successor] += 1
    ready = [position[a] for a in ids if in_degree[a] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        current = ids[heapq.heappop(ready)]
        order.append(current)
        for successor in successors[current]:
            in_degree[successor] -= 1
            if in_degree[successor] == 0:
                heapq.heappush(ready, position[successor])
    if len(order) < len(ids):
        raise CycleError(_one_cycle({a for a in ids if in_degree[a] > 0}, links), names)
    return order


def _one_cycle(stuck: set[str], links: Iterable[Link]) -> list[str]:
    """A cycle among the activities Kahn could not place.

    Each of them still has a predecessor that is stuck too, so walking backwards from any of them
    must revisit an activity; the part of the walk from that first repeat is a cycle.
    """
    stuck_predecessor: dict[str, str] = {}
    for link in links:
        if link.successor in stuck and link.predecessor in stuck:
            stuck_predecessor.setdefault(link.successor, link.predecessor)
    current = min(stuck)  # deterministic start
    walk: list[str] = []
    seen: dict[str, int] = {}
    while current not in seen:
        seen[current] = len(walk)
        walk.append(current)
        current = stuck_predecessor[current]
    cycle = walk[seen[current] :]
    cycle.reverse()  # predecessor first, as the links run
    return cycle


# ---------------------------------------------------------------------------------------------------
# Forward and backward passes
# ---------------------------------------------------------------------------------------------------


def _earliest_start_after(link: Link, pred_es: Decimal, pred_ef: Decimal, duration: Decimal) -> Decimal:
    """The earliest start of the successor that this link allows, given the predecessor's early dates."""
    es, ef = pred_es, pred_ef
    if link.type is LinkType.FS:
        return ef + link.lag
    if link.type is LinkType.SS:
        return es + link.lag
    if link.type is LinkType.FF:
        return ef + link.lag - duration
    return es + link.lag - duration  # SF


def _latest_finish_before(link: Link, succ_ls: Decimal, succ_lf: Decimal, duration: Decimal) -> Decimal:
    """The latest finish of the predecessor that this link allows, given the successor's late dates."""
    if link.type is LinkType.FS:
        return succ_ls - link.lag
    if link.type is LinkType.SS:
        return succ_ls - link.lag + duration
    if link.type is LinkType.FF:
        return succ_lf - link.lag
    return succ_lf - link.lag + duration  # SF


def _violation(
    link: Link, pred_start: Decimal, pred_finish: Decimal, succ_start: Decimal, succ_finish: Decimal
) -> Decimal:
    """How many days the successor's dates fall short of what the link demands (0 when it holds)."""
    if link.type is LinkType.FS:
        short = pred_finish + link.lag - succ_start
    elif link.type is LinkType.SS:
        short = pred_start + link.lag - succ_start
    elif link.type is LinkType.FF:
        short = pred_finish + link.lag - succ_finish
    else:
        short = pred_start + link.lag - succ_finish
    return max(short, ZERO)


def compute_schedule(
    activities: Sequence[Activity],
    links: Sequence[Link],
    *,
    deadline: int | Decimal | None = None,
) -> Schedule:
    """Early and late dates, float and warnings for every activity (day 0 is the project start).

    Without a ``deadline`` the late dates are measured back from the project's early finish, so the
    float is never negative and the critical activities have exactly zero float. A deadline earlier
    than the early finish gives negative float, which is reported.
    """
    by_id = _check_network(activities, links)
    names = {a.id: a.name for a in activities if a.name}
    ids = [a.id for a in activities]
    order = topological_order(ids, links, names)

    incoming: dict[str, list[Link]] = {a: [] for a in ids}
    outgoing: dict[str, list[Link]] = {a: [] for a in ids}
    for link in links:
        incoming[link.successor].append(link)
        outgoing[link.predecessor].append(link)

    early = _forward_pass(order, by_id, incoming)
    finish = max((ef for _, ef in early.values()), default=ZERO)
    end = finish if deadline is None else to_decimal(deadline, "deadline")
    late = _backward_pass(order, by_id, outgoing, end)

    timings = {a: Timing(es=early[a][0], ef=early[a][1], ls=late[a][0], lf=late[a][1]) for a in ids}
    warnings = _warnings(order, links, timings, names, finish, None if deadline is None else end)
    return Schedule(
        order=tuple(order),
        timings=timings,
        finish=finish,
        deadline=None if deadline is None else end,
        warnings=tuple(warnings),
    )


def _forward_pass(
    order: Sequence[str], by_id: Mapping[str, Activity], incoming: Mapping[str, list[Link]]
) -> dict[str, tuple[Decimal, Decimal]]:
    """Early (start, finish) of every activity, in topological order: as soon as its links allow."""
    early: dict[str, tuple[Decimal, Decimal]] = {}
    for activity_id in order:
        duration = by_id[activity_id].duration
        start = ZERO  # nothing starts before the project does
        for link in incoming[activity_id]:
            start = max(start, _earliest_start_after(link, *early[link.predecessor], duration))
        early[activity_id] = (start, start + duration)
    return early


def _backward_pass(
    order: Sequence[str], by_id: Mapping[str, Activity], outgoing: Mapping[str, list[Link]], end: Decimal
) -> dict[str, tuple[Decimal, Decimal]]:
    """Late (start, finish) of every activity, in reverse order: as late as its links and ``end`` allow."""
    late: dict[str, tuple[Decimal, Decimal]] = {}
    for activity_id in reversed(order):
        duration = by_id[activity_id].duration
        latest_finish = end
        for link in outgoing[activity_id]:
            succ_ls, succ_lf = late[link.successor]
            latest_finish = min(latest_finish, _latest_finish_before(link, succ_ls, succ_lf, duration))
        late[activity_id] = (latest_finish - duration, latest_finish)
    return late


def _warnings(
    order: Sequence[str],
    links: Sequence[Link],
    timings: Mapping[str, Timing],
    names: Mapping[str, str],
    finish: Decimal,
    deadline: Decimal | None,
) -> list[str]:
    warnings: list[str] = []
    if deadline is not None and finish > deadline:
        warnings.append(f"the network needs {finish} days but the deadline is day {deadline}")
    warnings.extend(link_violations(links, timings, names))
    for activity_id in order:
        total_float = timings[activity_id].total_float
        if total_float < 0:
            warnings.append(f"activity {_label(activity_id, names)} has negative float ({total_float} days)")
    return warnings


def link_violations(
    links: Iterable[Link], timings: Mapping[str, Timing], names: Mapping[str, str] | None = None
) -> list[str]:
    """Every link that the early dates or the late dates of ``timings`` fail to honour, with the shortfall.

    ``compute_schedule`` runs this on its own result as a self-check; it is also how dates that were
    adjusted by hand (or imported) can be checked against the network.
    """
    names = names or {}
    out: list[str] = []
    for link in links:
        pred, succ = timings[link.predecessor], timings[link.successor]
        for label, dates in (
            ("early", (pred.es, pred.ef, succ.es, succ.ef)),
            ("late", (pred.ls, pred.lf, succ.ls, succ.lf)),
        ):
            short = _violation(link, *dates)
            if short > 0:
                out.append(f"link {link.describe(names)} is violated by {short} days in the {label} dates")
    return out
