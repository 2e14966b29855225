"""The due-time buckets of expiry and keepalives (common/due.py)."""

from __future__ import annotations

from regswitch.common.due import DueIds


def test_an_id_is_never_due_early_and_at_most_one_resolution_late() -> None:
    q = DueIds(0.25)
    q.push("a", 10.1)
    q.push("b", 10.0)
    q.push("c", 10.2)
    q.push("d", 11.0)
    assert len(q) == 4
    assert q.due(10.0) == ["b"]  # exactly on time
    assert q.due(10.2) == []  # a and c wait for their bucket (10.25)
    assert sorted(q.due(10.25)) == ["a", "c"]
    assert q.due(10.9) == [] and len(q) == 1
    assert q.due(12.0) == ["d"] and len(q) == 0


def test_buckets_come_in_time_order_and_ahead_tells_which_are_to_come() -> None:
    q = DueIds(1.0)
    late, early = q.push("late", 20.0), q.push("early", 5.5)
    assert q.ahead(late, 19.0) and not q.ahead(early, 6.0)
    assert q.due_buckets(30.0) == [(early, ["early"]), (late, ["late"])]
