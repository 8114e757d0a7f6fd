"""Failure drills: a fault injected into a live deployment while a client reads and writes
through the app's DNS name, and what that client saw.

The client behaves like a real one: it resolves the app's name at the deployment's DNS
server and keeps the answer for the record's TTL, posts new items and reads each one back.
Every request is kept as a :class:`Sample`; :func:`analyze` turns the samples into the
client-observed recovery time (RTO) and :func:`lost_writes` the acknowledged writes that
cannot be read afterwards into the data lost (RPO). Nothing here knows how a fault is
injected: the target does (lab: podman), see ``hadeploy.targets.lab.faults``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# scenario -> what it does (the lab implements every one listed here), in the order
# 'drill all' runs them: the ones that leave traffic where it is first; then 'region' moves
# it away from the active region and 'operator' moves it on (back, with two regions).
SCENARIOS: dict[str, str] = {
    "app-host": "kill one app host of the active region",
    "lb": "kill the load balancer holding the active region's virtual IP",
    "db-host": "kill the database leader of the active region",
    "dns": "restart the authoritative DNS server",
    "upgrade": "restart every app host the way an upgrade does (rolling, drained one by one)",
    "region": "kill every host of the active region; watch fails over",
    "operator": "kill a failover between fencing and the DNS change, then run it again",
    "partition": "cut the active region off from everyone while its hosts run; watch fails "
                 "over; the isolated region must stop taking writes by itself",
}
# Drills after which the app's name answers another region.
MOVES_TRAFFIC = frozenset({"region", "operator", "partition"})
ZERO_FAILURES = frozenset({"upgrade"})  # a planned change: not one request may fail
# The order a failover's phases run in (for audit records that do not say it themselves).
PHASE_ORDER = ("lock", "plan", "prepare", "health", "data", "streaming", "fence", "lease",
               "freeze", "promote", "dns", "verify", "writable", "rejoin")
# A client that saw this long a run of good answers after the last failure has recovered.
SETTLED = 3.0


@dataclass(frozen=True)
class Sample:
    at: float  # when the request finished (POSIX time)
    method: str  # GET or POST
    ok: bool
    address: str | None  # where the client sent it (None: no DNS answer)
    detail: str  # HTTP status (and the start of a failure's body), or the error
    via: str | None = None  # the load balancer that answered (its X-HADeploy-LB header)
    status: int | None = None  # the HTTP status; None when no answer came


Resolve = Callable[[], tuple[str | None, float]]  # (first A record or None, TTL seconds)


def dns_resolver(servers: Sequence[tuple[str, int]], name: str,
                 timeout: float = 1.0) -> Resolve:
    """The first A record of ``name`` and its TTL, as a stub resolver with several name
    servers asks (resolv.conf ``options timeout:1``, no ``rotate``): the servers in order,
    each for ``timeout`` seconds, the next one when it does not answer. None when none
    answers (retried after a second)."""
    def ask(server: str, port: int) -> Any:
        import dns.exception
        import dns.message
        import dns.query

        try:
            return dns.query.udp(dns.message.make_query(name, "A"), server, port=port,
                                 timeout=timeout)
        except (dns.exception.DNSException, OSError):
            return None

    def resolve() -> tuple[str | None, float]:
        import dns.rdatatype

        for server, port in servers:
            resp = ask(server, port)
            if resp is None or resp.rcode() not in (0, 3):  # SERVFAIL, REFUSED: the next
                continue
            for rrset in resp.answer:
                if rrset.rdtype == dns.rdatatype.A:
                    return next(iter(rrset)).address, float(rrset.ttl)
            return None, 1.0  # an answer without the record: no other server is asked
        return None, 1.0
    return resolve


class Client:
    """Posts a new item, then reads it back (unless ``read_back`` is off), ``gap`` seconds
    apart, through the address the DNS answer gives for as long as its TTL lasts."""

    def __init__(self, tag: str, resolve: Resolve, *, port: int = 80, gap: float = 0.05,
                 timeout: float = 2.0, read_back: bool = True) -> None:
        self.tag, self.resolve, self.port, self.gap, self.timeout = (
            tag, resolve, port, gap, timeout)
        self.read_back = read_back
        self.samples: list[Sample] = []
        # (item id, when acknowledged, the region the app said it was written in)
        self.acked: list[tuple[str, float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="drill-client")
        self._address: str | None = None
        self._expires = 0.0

    def _where(self) -> str | None:
        now = time.monotonic()
        if self._address is None or now >= self._expires:
            self._address, ttl = self.resolve()
            self._expires = now + max(ttl, 0.0)
        return self._address

    def request(self, method: str, path: str, body: dict[str, Any] | None = None
                ) -> dict[str, Any] | None:
        """The answer's JSON body ({} when it is not JSON) when the status was 200/201;
        None for any failure. Either way the request is kept as a sample."""
        address = self._where()
        if address is None:
            self.samples.append(Sample(time.time(), method, False, None, "no DNS answer"))
            return None
        conn = http.client.HTTPConnection(address, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            ok = resp.status in (200, 201)
            # a refusal says why (haproxy's and the app's errors are short JSON)
            detail = str(resp.status) if ok else \
                f"{resp.status} {raw[:120].decode('utf-8', 'replace')}".strip()
            self.samples.append(Sample(time.time(), method, ok, address, detail,
                                       resp.getheader("X-HADeploy-LB"), resp.status))
            if not ok:
                return None
            try:
                doc = json.loads(raw or b"{}")
            except ValueError:
                return {}
            return doc if isinstance(doc, dict) else {}
        except (OSError, http.client.HTTPException) as exc:
            self.samples.append(Sample(time.time(), method, False, address,
                                       f"{type(exc).__name__}: {str(exc)[:80]}"))
            return None
        finally:
            conn.close()

    def _run(self) -> None:
        for n in itertools.count(1):
            if self._stop.is_set():
                return
            item = f"{self.tag}-{n}"
            answer = self.request("POST", "/items", {"id": item})
            if answer is not None:
                region = answer.get("region")
                self.acked.append((item, time.time(),
                                   region if isinstance(region, str) else None))
                if self.read_back:
                    self._stop.wait(self.gap)
                    self.request("GET", f"/items/{item}")
            self._stop.wait(self.gap)

    def start(self) -> Client:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass(frozen=True)
class Outage:
    """What the client saw around a fault."""

    requests: int
    failed: int
    failed_before_fault: int
    first_failure: float | None
    last_failure: float | None
    recovered_at: float | None  # first good answer after the last failure (None: never)
    rto_seconds: float | None  # recovered_at - fault (0: no request failed; None: never)
    settled: bool  # at least SETTLED seconds of good answers after the last failure


def analyze(samples: Sequence[Sample], fault_at: float, ended_at: float) -> Outage:
    """Client-observed recovery: from the fault to the first good answer after the last
    failure; ``settled`` when good answers then continued for :data:`SETTLED` seconds."""
    after = [s for s in samples if s.at >= fault_at]
    failures = [s for s in after if not s.ok]
    before = sum(1 for s in samples if s.at < fault_at and not s.ok)
    if not failures:
        return Outage(len(samples), 0, before, None, None, fault_at, 0.0,
                      ended_at - fault_at >= SETTLED)
    last = failures[-1].at
    good = next((s.at for s in after if s.ok and s.at > last), None)
    return Outage(len(samples), len(failures), before, failures[0].at, last, good,
                  None if good is None else round(good - fault_at, 3),
                  good is not None and ended_at - last >= SETTLED)


def lost_writes(acked: Sequence[tuple[str, float, str | None]],
                readable: Callable[[str], bool]) -> list[tuple[str, float]]:
    """Acknowledged writes (id, when, ...) that cannot be read back: (id, when)."""
    return [(item, at) for item, at, *_ in acked if not readable(item)]


def rpo_seconds(lost: Sequence[tuple[str, float]], fault_at: float) -> float:
    """How much acknowledged data was lost, as time: from the oldest lost write to the
    fault (0 when nothing was lost)."""
    return round(max(0.0, fault_at - min(at for _, at in lost)), 3) if lost else 0.0


def timeline(samples: Sequence[Sample], start: float, bucket: float = 0.1
             ) -> list[tuple[float, int, int]]:
    """(seconds since ``start``, good, failed) per ``bucket`` seconds."""
    counts: dict[int, list[int]] = {}
    for s in samples:
        # rounded first: 0.30000000000000004 s is the fourth bucket, not the third
        slot = counts.setdefault(math.floor(round((s.at - start) / bucket, 6)), [0, 0])
        slot[0 if s.ok else 1] += 1
    return [(round(k * bucket, 3), v[0], v[1]) for k, v in sorted(counts.items())]


@dataclass
class Report:
    scenario: str
    deployment: str
    target: str
    started_at: str  # UTC, ISO 8601
    fault: str  # what was done, e.g. "killed hd-demo-east-app1"
    victims: list[str]
    region: str | None  # the region the fault hit
    phases: dict[str, float]  # phase -> seconds after the start of the drill
    requests: int
    failed: int
    failed_by_method: dict[str, int]
    failed_before_fault: int
    rto_seconds: float | None
    settled: bool
    acked_writes: int
    lost_writes: int
    lost_sample: list[str]
    rpo_seconds: float
    objectives: dict[str, float]
    met: bool
    problems: list[str]  # why the objectives were not met, or the drill is in doubt
    healed: bool
    heal: str  # what bringing the victims back did
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    # Where the RTO went: consecutive segments from the fault to the client's recovery
    # (detection, decision, the failover's own phases, client convergence), seconds.
    rto_split: dict[str, float] = field(default_factory=dict)
    serving: str | None = None  # the region the app's name answers after the drill
    # partition: what a client inside the cut-off region saw (see :func:`isolation`)
    isolation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def audit_marks(records: Sequence[dict[str, Any]], since: float) -> list[tuple[float, str]]:
    """Events a recovery is made of, from the audit records written after ``since``
    (POSIX time): watch's verdict and decision, and every phase of each failover that
    completed (its record holds each phase's duration, in the order they ran)."""
    from hadeploy.state import parse_time

    marks: list[tuple[float, str]] = []
    for rec in records:
        try:
            at = parse_time(str(rec.get("at")))
        except ValueError:
            continue
        if at < since:
            continue
        if rec.get("operation") == "watch" and rec.get("state") == "down":
            marks.append((at, f"detected: {rec.get('region')} down"))
        elif rec.get("operation") == "watch" and rec.get("action") == "failover":
            marks.append((at, f"decided: fail over to {rec.get('to')}"))
        elif rec.get("operation") in ("failover", "failback") and rec.get("result") == "done" \
                and isinstance(rec.get("phases"), dict):
            phases = {k: float(v) for k, v in rec["phases"].items()
                      if isinstance(v, int | float)}
            t = at - phases.pop("total", sum(phases.values()))
            order = rec.get("phase_order")
            if not isinstance(order, list):  # written before the order was recorded
                order = sorted(phases, key=lambda k: (PHASE_ORDER.index(k)
                                                      if k in PHASE_ORDER else 99, k))
            for name in order:
                if name in phases:
                    t += phases[name]
                    marks.append((t, f"failover: {name}"))
            marks.append((at, f"{rec['operation']} to {rec.get('to')} done"))
    return sorted(marks)


def rto_split(fault_at: float, recovered_at: float | None, marks: Sequence[tuple[float, str]]
              ) -> dict[str, float]:
    """The client-observed RTO as consecutive segments: each ends at a mark between the
    fault and the client's recovery, named after what ended it (the last: the client's
    convergence, i.e. the DNS TTL and its retries). Empty when the client never failed, or
    when nothing the deployment recorded happened in between (a recovery inside a region:
    haproxy, keepalived, Patroni do not write to the audit log)."""
    if recovered_at is None or not any(fault_at <= at <= recovered_at for at, _ in marks):
        return {}
    names = {"detected": "detection", "decided": "decision"}
    split: dict[str, float] = {}
    last = fault_at
    for at, label in sorted(marks):
        if not fault_at <= at <= recovered_at:
            continue
        kind, _, rest = label.partition(": ")
        if kind == "failover":
            name = rest
        elif label.endswith(" done"):  # a failover's time outside its named phases
            name = "failover, other"
        else:
            name = names.get(kind, label)
        split[name] = round(split.get(name, 0.0) + at - last, 3)
        last = at
    split["client convergence"] = round(recovered_at - last, 3)
    return split


def judge(outage: Outage, rpo: float, objectives: dict[str, float],
          scenario: str | None = None) -> list[str]:
    """Why the drill did not meet the deployment's objectives (empty: it did)."""
    problems = []
    if scenario in ZERO_FAILURES and outage.failed:
        problems.append(f"{outage.failed} request(s) failed: '{scenario}' is a planned "
                        "change and must not fail any")
    if outage.rto_seconds is None or not outage.settled:
        problems.append("the client did not recover (no run of good answers after the "
                        "last failure)")
    elif outage.rto_seconds > objectives["rto"]:
        problems.append(f"recovery took {outage.rto_seconds:.1f} s, the objective is "
                        f"{objectives['rto']:g} s")
    if rpo > objectives["rpo"]:
        problems.append(f"acknowledged writes lost over {rpo:.1f} s, the objective is "
                        f"{objectives['rpo']:g} s")
    if outage.failed_before_fault:
        problems.append(f"{outage.failed_before_fault} request(s) failed before the fault: "
                        "the deployment was not healthy when the drill started")
    return problems


OK_STATUS = (200, 201)


def isolation(inside: Sequence[tuple[float, int]], cut_at: float,
              outside_acked: Sequence[float], bound: float | None) -> tuple[dict[str, Any],
                                                                              list[str]]:
    """What a client inside a region cut off at ``cut_at`` saw of its writes (``inside``:
    (POSIX time, HTTP status; 0 = no answer)), against the first write another region
    acknowledged to the outside client after the cut (``outside_acked``: times). ``bound``:
    the seconds within which the region should refuse writes by itself (None: no lease).
    The facts, and the problems: the region never stopped, stopped later than its bound,
    or took a write after another region had taken one (two writers: split brain)."""
    after = [(t, st) for t, st in inside if t > cut_at]
    acked = [t for t, st in after if st in OK_STATUS]
    last_ack = max(acked, default=None)
    refusing = min((t for t, st in after if st not in OK_STATUS
                    and (last_ack is None or t > last_ack)), default=None)
    first_other = min((t for t in outside_acked if t > cut_at), default=None)

    def rel(at: float | None) -> float | None:
        return None if at is None else round(at - cut_at, 3)
    doc: dict[str, Any] = {
        "inside_writes": len(after), "acknowledged_after_cut": len(acked),
        "last_acknowledged": rel(last_ack), "refusing_from": rel(refusing),
        "other_region_first_write": rel(first_other), "lease_bound": bound,
        "overlap_seconds": (round(last_ack - first_other, 3)
                            if last_ack is not None and first_other is not None else None)}
    problems = []
    if not after:
        problems.append("no write from inside the isolated region was observed after the cut")
    elif refusing is None:
        problems.append(f"the isolated region still took writes {after[-1][0] - cut_at:.1f} s "
                        "after the cut, when the drill stopped looking")
    elif bound is not None and last_ack is not None and last_ack - cut_at > bound + 1.0:
        problems.append(f"the isolated region took writes for {last_ack - cut_at:.1f} s "
                        f"after the cut, longer than its lease ({bound:.2f} s)")
    if last_ack is not None and first_other is not None and last_ack >= first_other:
        problems.append(f"two regions took writes: the isolated one until +{last_ack - cut_at:.2f}"
                        f" s, another from +{first_other - cut_at:.2f} s (split brain)")
    return doc, problems


def render_markdown(report: Report) -> str:
    r = report
    rto = "never" if r.rto_seconds is None else f"{r.rto_seconds:.2f} s"
    lines = [
        f"# Drill `{r.scenario}` on {r.deployment} ({r.target}), {r.started_at}",
        "",
        f"**{'MET' if r.met else 'NOT MET'}** — objectives: RTO ≤ {r.objectives['rto']:g} s, "
        f"RPO ≤ {r.objectives['rpo']:g} s.",
        "",
        f"- fault: {r.fault}" + (f" (region {r.region})" if r.region else ""),
        f"- requests: {r.requests}, failed: {r.failed} "
        f"({', '.join(f'{m} {n}' for m, n in sorted(r.failed_by_method.items())) or 'none'})",
        f"- client-observed recovery (RTO): {rto}"
        + ("" if r.settled else " — did not settle"),
        f"- acknowledged writes: {r.acked_writes}, lost: {r.lost_writes} (RPO "
        f"{r.rpo_seconds:.2f} s)" + (f": {', '.join(r.lost_sample)}" if r.lost_sample else ""),
        f"- healed: {'yes' if r.healed else 'NO'} ({r.heal})",
        *([f"- traffic is now served by **{r.serving}**"] if r.serving else []),
        "",
        "| phase | seconds after the start |",
        "|---|---:|",
        *[f"| {name} | {at:.2f} |" for name, at in r.phases.items()],
    ]
    if r.rto_split:
        lines += ["", "Where the recovery time went:", "",
                  "| segment | seconds |", "|---|---:|",
                  *[f"| {name} | {sec:.2f} |" for name, sec in r.rto_split.items()]]
    if r.isolation:
        i = r.isolation

        def at(v: float | None) -> str:
            return "never" if v is None else f"+{v:.2f} s"
        lines += ["", "Inside the cut-off region (a client on one of its hosts, writing "
                  "through its VIP):", "",
                  f"- writes tried after the cut: {i['inside_writes']}, acknowledged: "
                  f"{i['acknowledged_after_cut']} (the last at "
                  f"{at(i['last_acknowledged'])}; not on the new primary)",
                  f"- refusing writes from: {at(i['refusing_from'])} (lease bound "
                  + ("none" if i["lease_bound"] is None else f"{i['lease_bound']:.2f} s") + ")",
                  f"- the other region's first acknowledged write: "
                  f"{at(i['other_region_first_write'])}"
                  + ("" if i["overlap_seconds"] is None else
                     f" (gap after the isolated region's last: {-i['overlap_seconds']:.2f} s)")]
    if r.problems:
        lines += ["", "Problems:", *[f"- {p}" for p in r.problems]]
    return "\n".join(lines) + "\n"


def render_png(report: Report, path: Path) -> None:
    """Requests per 100 ms, good and failed, while the client ran; the drill's events
    marked (a failover's phases as one shaded span; events after the client stopped, such
    as the heal, named under the chart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [t for t, _, _ in report.timeline]
    end = (max(xs) + 0.5) if xs else max(report.phases.values(), default=1.0)
    fig, ax = plt.subplots(figsize=(10, 3.8), dpi=100)
    try:
        ax.bar(xs, [g for _, g, _ in report.timeline], width=0.1, align="edge",
               color="#3a7d44", label="good")
        ax.bar(xs, [f for _, _, f in report.timeline], width=0.1, align="edge",
               bottom=[g for _, g, _ in report.timeline], color="#c0392b", label="failed")
        inside = {k: v for k, v in report.phases.items() if v <= end}
        steps = [v for k, v in inside.items() if k.startswith("failover: ")]
        if steps:
            ax.axvspan(min(steps) - 0.02, max(steps) + 0.02, color="#f0b27a", alpha=0.5,
                       label="failover (phases: see the report)")
        events = [(k, v) for k, v in inside.items() if not k.startswith("failover: ")]
        for n, (name, at) in enumerate(events):
            ax.axvline(at, color="#555555", linestyle="--", linewidth=0.8)
            ax.annotate(name, (at, 1.0 - 0.22 * (n % 4)), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=7, color="#333333")
        later = [f"{k} at {v:.1f} s" for k, v in report.phases.items() if v > end]
        rto = "never" if report.rto_seconds is None else f"{report.rto_seconds:.2f} s"
        ax.set_title(f"drill {report.scenario} on {report.deployment}: {report.failed} of "
                     f"{report.requests} requests failed, RTO {rto}, "
                     f"{report.lost_writes} acknowledged writes lost", fontsize=9)
        ax.set_xlim(0, end)
        ax.set_xlabel("seconds since the drill started"
                      + (f" (after the client stopped: {', '.join(later)})" if later else ""))
        ax.set_ylabel("requests per 100 ms")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def write_reports(report: Report, directory: Path) -> dict[str, str]:
    """report.json, report.md and timeline.png in ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "report.json", "markdown": directory / "report.md",
             "png": directory / "timeline.png"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    paths["markdown"].write_text(render_markdown(report))
    render_png(report, paths["png"])
    return {k: str(v) for k, v in paths.items()}
