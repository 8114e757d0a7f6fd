"""Vantage points, votes and quorum: when is a region down, when is it healthy.

Vantage points of a region R: the machine running hadeploy (``cli``) and the prober in
every *other* region (``probe@<region>``). Each keeps counts of consecutive successes and
failures of R's endpoint.

- A vantage point votes **down** after ``failure_threshold`` consecutive failures.
- R is **down** when at least ``quorum`` vantage points vote down. One partitioned
  observer can therefore never trigger a failover.
- R is **healthy** when at least one vantage point saw its last probe succeed and no
  fewer than ``min(quorum, responding vantage points)`` did. A vantage point that cannot
  be asked (its own region is gone, its answer is stale) does not vote either way.
- R is **back** after being down only once it has been healthy for ``hold_down`` seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from hadeploy.config import FailoverPolicy
from hadeploy.health import ProbeResult

CLI_VANTAGE = "cli"


@dataclass(frozen=True)
class Vote:
    vantage: str
    region: str
    ok: bool
    consecutive_failures: int
    consecutive_successes: int
    at: float
    status: int | None = None
    latency_ms: float | None = None
    error: str | None = None


@dataclass
class _Counter:
    failures: int = 0
    successes: int = 0


class LocalVantage:
    """The CLI machine's own vantage point: turns probe results into votes."""

    def __init__(self, name: str = CLI_VANTAGE) -> None:
        self.name = name
        self._counters: dict[str, _Counter] = {}

    def observe(self, region: str, result: ProbeResult, at: float | None = None) -> Vote:
        c = self._counters.setdefault(region, _Counter())
        if result.ok:
            c.successes, c.failures = c.successes + 1, 0
        else:
            c.failures, c.successes = c.failures + 1, 0
        return Vote(self.name, region, result.ok, c.failures, c.successes,
                    at if at is not None else time.time(), result.status,
                    round(result.latency_ms, 1), result.error)


def votes_from_prober(doc: dict[str, Any], max_age: float, now: float | None = None
                      ) -> list[Vote]:
    """Votes from one prober's ``/results``; stale entries are left out (no vote)."""
    now = time.time() if now is None else now
    votes = []
    for region, t in (doc.get("targets") or {}).items():
        if t.get("ok") is None or t.get("last_at") is None:
            continue
        if now - float(t["last_at"]) > max_age:
            continue
        votes.append(Vote(str(doc.get("vantage")), region, bool(t["ok"]),
                          int(t.get("consecutive_failures", 0)),
                          int(t.get("consecutive_successes", 0)), float(t["last_at"]),
                          t.get("status"), t.get("latency_ms"), t.get("error")))
    return votes


def fetch_prober(url: str, timeout: float) -> dict[str, Any] | None:
    """A prober's results, or None when it cannot be asked (it then does not vote)."""
    from hadeploy.health import probe

    result = probe(url, timeout)
    if not result.ok:
        return None
    try:
        doc = json.loads(result.body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


@dataclass(frozen=True)
class Assessment:
    region: str
    votes: tuple[Vote, ...]
    down_votes: int
    healthy_votes: int
    responding: int
    down: bool
    healthy: bool

    def to_dict(self) -> dict[str, Any]:
        return {"region": self.region, "down": self.down, "healthy": self.healthy,
                "down_votes": self.down_votes, "healthy_votes": self.healthy_votes,
                "responding": self.responding,
                "votes": [{"vantage": v.vantage, "ok": v.ok,
                           "consecutive_failures": v.consecutive_failures,
                           "consecutive_successes": v.consecutive_successes,
                           "status": v.status, "error": v.error} for v in self.votes]}


def assess(region: str, votes: list[Vote], policy: FailoverPolicy) -> Assessment:
    mine = tuple(v for v in votes if v.region == region)
    down_votes = sum(1 for v in mine if v.consecutive_failures >= policy.failure_threshold)
    healthy_votes = sum(1 for v in mine if v.ok)
    responding = len(mine)
    return Assessment(
        region, mine, down_votes, healthy_votes, responding,
        down=down_votes >= policy.quorum,
        healthy=healthy_votes >= 1 and healthy_votes >= min(policy.quorum, responding))


@dataclass(frozen=True)
class Seen:
    """A region's assessment in one probe round and when that round ran (unix time): what
    ``watch`` hands the failover it decides, so that its health guard need not probe again
    (and wait out a probe timeout on the dead region's prober) when the round is fresh."""

    assessment: Assessment
    at: float


@dataclass
class HoldDown:
    """Tracks, per region, since when it has been continuously healthy."""

    hold_down: float
    _healthy_since: dict[str, float | None] = field(default_factory=dict)

    def update(self, a: Assessment, now: float) -> None:
        if a.healthy and not a.down:
            if self._healthy_since.get(a.region) is None:
                self._healthy_since[a.region] = now
        else:
            self._healthy_since[a.region] = None

    def back(self, region: str, now: float) -> bool:
        since = self._healthy_since.get(region)
        return since is not None and now - since >= self.hold_down
