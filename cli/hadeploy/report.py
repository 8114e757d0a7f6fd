"""``hadeploy report``: availability per region over a window, from what ``watch`` recorded.

- **observed**: the time ``watch`` was probing, from its own probes in the probe history
  (``<state>/history.sqlite``, vantage ``cli``): consecutive probes less than
  :func:`max_gap` apart cover the time between them; a longer gap is time nobody watched.
- **incidents**: the periods a region was down by quorum, from watch's decisions in the
  audit log ("region X is down by quorum" until "... is up by quorum"); an incident still
  open when that watch stopped ends there (nobody saw the rest).
- **availability** = 1 - (incident time within observed time) / observed time.
- **failovers** and **refusals** from the audit log: completed failovers/failbacks (by watch
  or by hand), and the failovers watch held or could not make.

Per vantage point the share of successful probes is reported too (the raw signal).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hadeploy.config import Deployment
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.history import History, HistoryError, history_path
from hadeploy.quorum import CLI_VANTAGE
from hadeploy.state import StateDir, parse_time

Interval = tuple[float, float]


@dataclass
class Incident:
    region: str
    start: float
    end: float
    ended: str  # "up by quorum" | "watch stopped" | "watch restarted" | "ongoing"

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class RegionReport:
    name: str
    observed_seconds: float
    downtime_seconds: float
    availability: float | None  # None: never observed in the window
    probes: dict[str, dict[str, Any]]  # vantage → probes, ok, availability, avg_latency_ms
    incidents: list[Incident] = field(default_factory=list)
    observed: list[Interval] = field(default_factory=list)


@dataclass
class Report:
    deployment: str
    since: float
    until: float
    regions: list[RegionReport]
    failovers: list[dict[str, Any]]
    refusals: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        def utc(at: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))

        return {
            "deployment": self.deployment, "since": utc(self.since), "until": utc(self.until),
            "window_seconds": round(self.until - self.since, 1),
            "regions": [{
                "name": r.name,
                "availability": None if r.availability is None else round(r.availability, 6),
                "observed_seconds": round(r.observed_seconds, 1),
                "downtime_seconds": round(r.downtime_seconds, 1),
                "incidents": [{"start": utc(i.start), "end": utc(i.end),
                               "seconds": round(i.seconds, 1), "ended": i.ended}
                              for i in r.incidents],
                "probes": r.probes} for r in self.regions],
            "failovers": self.failovers, "refusals": self.refusals}


def max_gap(dep: Deployment) -> float:
    """Two probes of watch further apart than this leave the time between unobserved."""
    return max(10.0, 5 * dep.failover.probe_interval)


def build(dep: Deployment, state: StateDir, since: float, until: float) -> Report:
    path = history_path(state.path)
    if not path.exists():
        raise HadeployError(f"no probe history for '{dep.name}' ({path} does not exist)",
                            hint="run 'hadeploy watch': it records every probe; the report "
                            "covers the time it ran", code=ExitCode.BAD_INPUT)
    db = History(path, read_only=True)
    try:
        regions = {r.name: _region(db, r.name, since, until, max_gap(dep))
                   for r in dep.regions}
    except sqlite3.Error as exc:
        raise HistoryError(path, exc) from None
    finally:
        db.close()
    audit = [r for r in state.audit_records() if _at(r) is not None]
    for incident in incidents(audit, until):
        region = regions.get(incident.region)
        if region is None or incident.end <= since or incident.start >= until:
            continue
        clipped = Incident(incident.region, max(incident.start, since),
                           min(incident.end, until), incident.ended)
        region.incidents.append(clipped)
    for region in regions.values():
        down = _overlap([(i.start, i.end) for i in region.incidents], region.observed)
        region.downtime_seconds = down
        region.availability = None if region.observed_seconds <= 0 else max(
            0.0, 1 - down / region.observed_seconds)
    in_window = [r for r in audit if since <= (_at(r) or 0) <= until]
    return Report(dep.name, since, until, list(regions.values()),
                  failovers=[_failover(r) for r in in_window
                             if r.get("operation") in ("failover", "failback")
                             and r.get("result") == "done"],
                  refusals=_refusals(in_window))


def _at(record: dict[str, Any]) -> float | None:
    try:
        return parse_time(str(record.get("at")))
    except ValueError:
        return None


def _region(db: History, name: str, since: float, until: float, gap: float) -> RegionReport:
    rows = db.db.execute(
        "SELECT vantage, COUNT(*), SUM(ok), AVG(latency_ms) FROM probes WHERE region = ? "
        "AND ts >= ? AND ts <= ? GROUP BY vantage ORDER BY vantage", (name, since, until))
    probes = {v: {"probes": n, "ok": int(ok or 0),
                  "availability": round((ok or 0) / n, 6) if n else None,
                  "avg_latency_ms": None if lat is None else round(lat, 1)}
              for v, n, ok, lat in rows}
    stamps = db.db.execute("SELECT ts FROM probes WHERE region = ? AND vantage = ? AND "
                           "ts >= ? AND ts <= ? ORDER BY ts",
                           (name, CLI_VANTAGE, since, until))
    observed = covered((t for (t,) in stamps), gap)
    return RegionReport(name, sum(b - a for a, b in observed), 0.0, None, probes,
                        observed=observed)


def covered(stamps: Any, gap: float) -> list[Interval]:
    """The periods covered by probe times: neighbours at most ``gap`` apart join."""
    out: list[Interval] = []
    for t in stamps:
        if out and t - out[-1][1] <= gap:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return [(a, b) for a, b in out if b > a]


def incidents(audit: list[dict[str, Any]], now: float) -> list[Incident]:
    """Down periods by quorum, from watch's decisions (oldest first)."""
    out: list[Incident] = []
    open_: dict[str, float] = {}

    def close(at: float, why: str) -> None:
        for region, start in sorted(open_.items()):
            out.append(Incident(region, start, at, why))
        open_.clear()

    for record in audit:
        if record.get("operation") != "watch":
            continue
        at = _at(record) or 0.0
        decision = str(record.get("decision", ""))
        region, state = record.get("region"), record.get("state")
        if isinstance(region, str) and state == "down":
            open_.setdefault(region, at)
        elif isinstance(region, str) and state == "up" and region in open_:
            out.append(Incident(region, open_.pop(region), at, "up by quorum"))
        elif decision.startswith("watch stopped"):
            close(at, "watch stopped")
        elif decision.startswith("watch started"):
            close(at, "watch restarted")
    close(now, "ongoing")
    return sorted(out, key=lambda i: (i.start, i.region))


def _overlap(spans: list[Interval], observed: list[Interval]) -> float:
    total = 0.0
    for a, b in spans:
        for c, d in observed:
            total += max(0.0, min(b, d) - max(a, c))
    return total


def _failover(record: dict[str, Any]) -> dict[str, Any]:
    return {"at": record.get("at"), "operation": record.get("operation"),
            "from": record.get("from"), "to": record.get("to"),
            "reason": record.get("reason"), "user": record.get("user")}


def _is_refusal(record: dict[str, Any]) -> bool:
    if record.get("operation") == "watch":
        return record.get("action") in ("hold", "none", "failover-failed")
    return record.get("operation") in ("failover", "failback") and record.get(
        "result") in ("refused", "failed")


def _refusals(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failovers not made. A watch's "failover to X did not happen" right after the
    failover's own refused/failed record is the same event, told twice: kept once."""
    out: list[dict[str, Any]] = []
    last_run: dict[str, float] = {}  # target → time of its last refused/failed record
    for record in records:
        if not _is_refusal(record):
            continue
        at, to = _at(record) or 0.0, str(record.get("to"))
        if record.get("operation") != "watch":
            last_run[to] = at
        elif record.get("action") == "failover-failed" and at - last_run.get(to, -1e9) <= 5:
            continue
        out.append(_refusal(record))
    return out


def _refusal(record: dict[str, Any]) -> dict[str, Any]:
    what = record.get("decision") or record.get("error") or record.get("result")
    return {"at": record.get("at"), "operation": record.get("operation"),
            "action": record.get("action") or record.get("result"),
            "region": record.get("region") or record.get("to"), "what": str(what)[:300]}


# --- output ----------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _second(at: Any) -> str:
    """An audit time to the second: 2024-01-01T00:00:00.123456Z → 2024-01-01T00:00:00Z."""
    text = str(at)
    return text[:19] + "Z" if len(text) > 20 and text[19] == "." else text


def render_text(report: Report) -> str:
    doc = report.to_dict()
    lines = [f"availability of '{report.deployment}' from {doc['since']} to {doc['until']} "
             f"({_duration(report.until - report.since)}), as 'hadeploy watch' saw it", ""]
    lines.append(f"  {'region':<12} {'available':>10} {'observed':>10} {'down':>9} "
                 f"{'incidents':>9}  probes ok per vantage point")
    for r in report.regions:
        share = "-" if r.availability is None else f"{r.availability * 100:.3f}%"
        vantages = ", ".join(f"{v} {p['availability'] * 100:.2f}% of {p['probes']}"
                             for v, p in r.probes.items() if p["availability"] is not None)
        lines.append(f"  {r.name:<12} {share:>10} {_duration(r.observed_seconds):>10} "
                     f"{_duration(r.downtime_seconds):>9} {len(r.incidents):>9}  "
                     f"{vantages or '-'}")
    incidents = [i for r in doc["regions"] for i in r["incidents"]]
    if incidents:
        lines += ["", "incidents (down by quorum):"]
        for r in doc["regions"]:
            lines += [f"  {r['name']}: {i['start']} → {i['end']} ({_duration(i['seconds'])}, "
                      f"{i['ended']})" for i in r["incidents"]]
    lines += ["", f"failovers: {len(report.failovers) or 'none'}"]
    lines += [f"  {_second(f['at'])}  {f['operation']} {f['from'] or '?'} → {f['to']}  "
              f"({f['reason'] or '-'})" for f in report.failovers]
    if report.refusals:
        lines += ["", f"failovers not made: {len(report.refusals)}"]
        lines += [f"  {_second(x['at'])}  {x['what']}" for x in report.refusals]
    if not any(r.observed_seconds for r in report.regions):
        lines += ["", "nothing was observed in this window: was 'hadeploy watch' running?"]
    return "\n".join(lines) + "\n"


def render_png(report: Report, path: Path) -> None:
    """One row per region: observed and up (green), down by quorum (red), not observed
    (blank); failovers as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import datetime as dt

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def day(at: float) -> float:
        return float(mdates.date2num(dt.datetime.fromtimestamp(at, dt.UTC)))  # type: ignore[no-untyped-call]

    def width(a: float, b: float) -> float:
        return (b - a) / 86400

    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.6 * len(report.regions)), dpi=100)
    try:
        labels = []
        for row, r in enumerate(report.regions):
            ax.broken_barh([(day(a), width(a, b)) for a, b in r.observed], (row - 0.35, 0.7),
                           color="#3a7d44")
            down = [(max(i.start, a), min(i.end, b)) for i in r.incidents
                    for a, b in r.observed if min(i.end, b) > max(i.start, a)]
            visible = (report.until - report.since) / 1000  # a short outage stays visible
            ax.broken_barh([(day(a), width(a, a + max(b - a, visible))) for a, b in down],
                           (row - 0.35, 0.7), color="#c0392b")
            share = "no data" if r.availability is None else f"{r.availability * 100:.2f}%"
            labels.append(f"{r.name}\n{share}")
        for f in report.failovers:
            try:
                at = day(parse_time(str(f["at"])))
            except ValueError:
                continue
            ax.axvline(at, color="#555555", linestyle="--", linewidth=0.8)
            ax.annotate(f"→ {f['to']}", (at, 1), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=7, color="#333333")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.invert_yaxis()
        ax.set_xlim(day(report.since), day(report.until))
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(  # type: ignore[no-untyped-call]
            ax.xaxis.get_major_locator()))
        ax.set_xlabel("UTC; green: observed up, red: down by quorum (at least 1/1000 of the "
                      "window wide), blank: not observed", fontsize=8)
        ax.set_title(f"{report.deployment}: availability per region, "
                     f"{_duration(report.until - report.since)} to "
                     f"{report.to_dict()['until']}, {len(report.failovers)} failover(s)",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
