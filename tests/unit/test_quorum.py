"""Quorum rules: one partitioned observer never causes a failover; stale votes don't count."""

from __future__ import annotations

import pytest

from hadeploy.config import FailoverPolicy
from hadeploy.health import ProbeResult
from hadeploy.quorum import HoldDown, LocalVantage, Vote, assess, votes_from_prober

POLICY = FailoverPolicy(failure_threshold=3, quorum=2, hold_down=10)


def vote(vantage: str, ok: bool, fails: int = 0, region: str = "east") -> Vote:
    return Vote(vantage, region, ok, fails, 0 if not ok else 5, 0.0)


def test_down_needs_quorum_of_vantages_at_threshold():
    assert assess("east", [vote("cli", False, 3), vote("probe@west", False, 3)], POLICY).down
    # one partitioned observer alone: no
    assert not assess("east", [vote("cli", False, 9), vote("probe@west", True)], POLICY).down
    # both failing but below threshold: not yet
    assert not assess("east", [vote("cli", False, 2), vote("probe@west", False, 3)], POLICY).down


def test_votes_for_other_regions_are_ignored():
    votes = [vote("cli", False, 3), vote("probe@west", False, 3, region="north")]
    assert not assess("east", votes, POLICY).down


def test_healthy_counts_responding_vantages_only():
    # the other region's prober is gone: the one responding vantage decides
    assert assess("west", [vote("cli", True, region="west")], POLICY).healthy
    assert not assess("west", [vote("cli", False, 1, region="west")], POLICY).healthy
    assert not assess("west", [], POLICY).healthy
    mixed = [vote("cli", True, region="west"), vote("probe@east", False, 1, region="west")]
    assert not assess("west", mixed, POLICY).healthy


def test_local_vantage_counts_consecutive_results():
    v = LocalVantage()
    bad = ProbeResult("u", False, None, 1.0, "timeout")
    good = ProbeResult("u", True, 200, 1.0)
    assert [v.observe("east", bad).consecutive_failures for _ in range(3)] == [1, 2, 3]
    after = v.observe("east", good)
    assert after.consecutive_failures == 0 and after.consecutive_successes == 1


def test_stale_prober_results_do_not_vote():
    doc = {"vantage": "probe@west", "targets": {
        "east": {"ok": False, "consecutive_failures": 5, "consecutive_successes": 0,
                 "last_at": 100.0},
        "north": {"ok": True, "consecutive_failures": 0, "consecutive_successes": 2,
                  "last_at": 90.0},
        "south": {"ok": None, "last_at": None}}}
    votes = votes_from_prober(doc, max_age=5, now=102.0)
    assert [(v.region, v.vantage, v.consecutive_failures) for v in votes] == [
        ("east", "probe@west", 5)]


@pytest.mark.parametrize("quorum,expected", [(1, True), (2, True), (3, False)])
def test_quorum_setting_is_honoured(quorum, expected):
    policy = FailoverPolicy(failure_threshold=1, quorum=quorum)
    votes = [vote("cli", False, 1), vote("probe@west", False, 1), vote("probe@north", True)]
    assert assess("east", votes, policy).down is expected


def test_hold_down():
    h = HoldDown(hold_down=10)
    healthy = assess("east", [vote("cli", True), vote("probe@west", True)], POLICY)
    sick = assess("east", [vote("cli", False, 3), vote("probe@west", False, 3)], POLICY)
    h.update(healthy, 0)
    assert not h.back("east", 9) and h.back("east", 10)
    h.update(sick, 11)
    h.update(healthy, 12)
    assert not h.back("east", 21) and h.back("east", 22)
