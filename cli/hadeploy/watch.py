"""``hadeploy watch``: probe continuously, fail over when the active region is down by
quorum, never flap, never fail back unless the policy says so.

It depends only on the DNS data plane and the probes (this machine + the probers in the
other regions): a region whose hosts, load balancers and APIs are all gone is exactly the
case it handles. Every decision — not every probe — goes to the audit log; every probe
goes to the history database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hadeploy.config import Deployment, Standby
from hadeploy.data import DataState, settle_region
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.history import DataRow, History, ProbeRow, history_path
from hadeploy.quorum import Assessment, HoldDown, LocalVantage, Seen, Vote, assess
from hadeploy.state import StateDir, parse_time
from hadeploy.targets import DataOps, Runtime
from hadeploy.topology import Topology

Log = Callable[[str], None]
FailOver = Callable[[str, str, Seen | None], Any]  # (target, reason, what watch saw) -> outcome
RESYNC_EVERY = 5.0  # seconds between checks that every DNS server has the newest change


@dataclass
class WatchStats:
    rounds: int = 0
    failovers: list[dict[str, Any]] = field(default_factory=list)
    decisions: int = 0


@dataclass(frozen=True)
class RoundView:
    """What one round saw, for an observer (``watch --metrics``)."""

    at: float
    topology: Topology
    votes: list[Vote]
    verdicts: dict[str, Assessment]
    data: dict[str, DataState]
    active: str | None  # the region DNS names (None: none, several, or unreadable)
    dns_error: str | None  # the DNS answer could not be read
    last_failover: float  # unix time of the last failover/failback (0: none known)


class WatchObserver:
    """Told what the watcher sees and does; the default observes nothing. ``cause`` of a
    failover: 'active_down' or 'auto_failback'; ``reason`` of a refusal: 'min_interval' or
    'no_healthy_region' (once per episode, like the audit log's decisions)."""

    def round(self, view: RoundView) -> None:
        return None

    def failover(self, to: str, cause: str, error: HadeployError | None) -> None:
        return None

    def refused(self, reason: str) -> None:
        return None


def last_failover_at(state: StateDir) -> float:
    """Unix time of the last completed failover/failback (from the audit log), or 0."""
    last = 0.0
    for rec in state.audit_records():
        if rec.get("operation") in {"failover", "failback"} and rec.get("result") == "done":
            try:
                last = max(last, parse_time(str(rec.get("at"))))
            except ValueError:
                continue
    return last


class Watcher:
    def __init__(self, dep: Deployment, state: StateDir, runtime: Runtime,
                 fail_over: FailOver, log: Log, observer: WatchObserver | None = None
                 ) -> None:
        self.dep, self.state, self.runtime, self.log = dep, state, runtime, log
        self.observer = observer or WatchObserver()
        self.policy = dep.failover
        self.do_failover = fail_over
        self.local = LocalVantage()
        self.hold = HoldDown(self.policy.hold_down)
        self.down: dict[str, bool] = {}
        self.episode_noted: set[str] = set()
        self.to_refence: set[str] = set()
        self.last_failover = last_failover_at(state)
        self.stats = WatchStats()
        self.last_resync = 0.0

    def decide(self, reason: str, **fields: Any) -> None:
        self.stats.decisions += 1
        self.log(reason)
        self.state.audit("watch", decision=reason, **fields)

    def read_active(self, topo: Topology) -> str | None:
        return topo.active_region(self.runtime.dns(topo).read(topo.dns.record))

    def round(self, history: History) -> None:
        from hadeploy.failover import region_votes

        topo = self.runtime.topology()
        data = self.runtime.region_ops(topo).data
        with ThreadPoolExecutor(max_workers=1) as pool:  # the database tier, meanwhile
            observed = pool.submit(data.observe) if data is not None else None
            votes, _ = region_votes(topo, self.dep, local=self.local,
                                    extra=self.runtime.extra_votes)
            states = observed.result() if observed is not None else {}
        now = time.time()
        history.add(ProbeRow(v.at, v.vantage, v.region, v.ok, v.status, v.latency_ms, v.error)
                    for v in votes)
        history.add_data(DataRow(now, name, st.role, st.position, st.lag_bytes,
                                 st.lag_seconds) for name, st in states.items())
        verdicts = {r.name: assess(r.name, votes, self.policy) for r in topo.regions}
        for name, a in verdicts.items():
            self.hold.update(a, now)
            if a.down != self.down.get(name, False):
                self.down[name] = a.down
                state = "down" if a.down else "up"
                self.decide(f"region {name} is {state} by quorum "
                            f"({a.down_votes} down / {a.responding} vantage points)",
                            region=name, state=state, votes=a.to_dict()["votes"])
                if not a.down:
                    self.episode_noted.discard(name)
                    self.to_refence.add(name)
        if self.stats.rounds == 0:
            self.to_refence |= {name for name, a in verdicts.items() if not a.down}
        self._enforce_fences(topo, unsettled(topo, states))
        self.stats.rounds += 1

        def seen(active: str | None, dns_error: str | None) -> None:
            self.observer.round(RoundView(now, topo, votes, verdicts, states, active,
                                          dns_error, self.last_failover))

        try:
            active = self.read_active(topo)
        except HadeployError as exc:
            seen(None, exc.message)
            if "dns" not in self.episode_noted:
                self.episode_noted.add("dns")
                self.decide(f"cannot read the DNS answer: {exc.message}")
            return
        self.episode_noted.discard("dns")
        seen(active, None)
        self._resync_dns(topo, now)
        if active is None:
            return
        if verdicts[active].down:
            self._maybe_fail_over(topo, active, verdicts, now)
        elif (self.policy.auto_failback and active != self.dep.primary.name
              and self.hold.back(self.dep.primary.name, now)
              and now - self.last_failover >= self.policy.min_interval):
            self._fail_over(self.dep.primary.name,
                            f"watch: auto failback, {self.dep.primary.name} healthy for "
                            f"{self.policy.hold_down:.0f} s", cause="auto_failback",
                            seen=Seen(verdicts[self.dep.primary.name], now))

    def _resync_dns(self, topo: Topology, now: float) -> None:
        """Every :data:`RESYNC_EVERY` seconds, bring an authoritative server that missed a
        change (it was down or cut off) up to date — under the deployment lock, so never
        against a failover's change; skipped while someone else holds it."""
        from hadeploy.dns.rfc2136 import Rfc2136Provider

        if now - self.last_resync < RESYNC_EVERY:
            return
        self.last_resync = now
        dns = self.runtime.dns(topo)
        if not isinstance(dns, Rfc2136Provider) or len(dns.servers) < 2:
            return
        try:
            with self.state.lock("watch: DNS resync"):
                lines = dns.resync(topo.dns.record, topo.dns.writer_record, wait_all=False)
        except HadeployError as exc:
            if exc.code is not ExitCode.LOCKED:
                self.log(f"DNS resync: {exc.message}")
            return
        for line in lines:
            self.decide(line, action="dns-resync")

    def _enforce_fences(self, topo: Topology, unsettled_data: list[str]) -> None:
        """A region fenced while it was unreachable comes back with its own (unfenced)
        configuration: fence it again before it can take a stray write; its database
        (paused by its boot fence, or running as a primary it no longer is) is settled in
        its role. Under the deployment lock, like every change of region state; while a
        failover holds the lock, this waits for the next round."""
        todo = sorted(r for r in self.to_refence if topo.region(r).fenced)
        self.to_refence -= set(self.to_refence) - set(todo)
        if not todo and not unsettled_data:
            return
        try:
            with self.state.lock("watch: re-fence"):
                topo = self.runtime.topology()  # what the lock holder may have changed
                ops = self.runtime.region_ops(topo)
                for region in todo:
                    self.to_refence.discard(region)
                    if topo.region(region).fenced:
                        result = ops.fence(topo.region(region), timeout=5)
                        self.decide(f"re-applied the fence of {region}: {result}",
                                    region=region, action="fence")
                self._settle_data(topo, ops.data, unsettled_data)
        except HadeployError as exc:
            if exc.code is not ExitCode.LOCKED:
                raise
            self.log(f"re-fence of {', '.join(todo + unsettled_data)} waits: {exc.message}")

    def _settle_data(self, topo: Topology, data: DataOps | None, regions: list[str]) -> None:
        primary = topo.data_primary_region
        if data is None or primary is None:
            return
        for region in regions:
            try:
                result = settle_region(data, self.state, topo.region(region), primary)
            except HadeployError as exc:
                self.decide(f"the database of {region} could not be settled: {exc.message}",
                            region=region, action="data")
                continue
            if result is not None:
                self.decide(f"the database of {region}: {result}", region=region,
                            action="data")

    def _maybe_fail_over(self, topo: Topology, active: str, verdicts: dict[str, Assessment],
                         now: float) -> None:
        wait = self.policy.min_interval - (now - self.last_failover)
        if wait > 0:
            if active not in self.episode_noted:
                self.episode_noted.add(active)
                self.decide(f"{active} is down but the last failover was less than "
                            f"{self.policy.min_interval:.0f} s ago: holding for {wait:.0f} s",
                            region=active, action="hold")
                self.observer.refused("min_interval")
            return
        order = {Standby.HOT: 0, Standby.WARM: 1, Standby.COLD: 2}
        candidates = sorted(
            (r for r in self.dep.regions if r.name != active and verdicts[r.name].healthy
             and not verdicts[r.name].down),
            key=lambda r: (order[r.standby], self.dep.regions.index(r)))
        if not candidates:
            cold = [r.name for r in self.dep.regions if r.name != active
                    and r.standby is not Standby.HOT and not verdicts[r.name].down]
            if cold:  # a cold/warm region cannot answer health checks before it is started
                self._fail_over(cold[0], f"watch: {active} down by quorum; starting "
                                f"standby {cold[0]}")
            elif active not in self.episode_noted:
                self.episode_noted.add(active)
                self.decide(f"{active} is down and no other region is healthy: DNS left as "
                            "it is", region=active, action="none")
                self.observer.refused("no_healthy_region")
            return
        target = candidates[0].name
        self._fail_over(target, f"watch: {active} down by quorum "
                        f"({verdicts[active].down_votes}/{verdicts[active].responding} "
                        f"vantage points)", seen=Seen(verdicts[target], now))

    def _fail_over(self, target: str, reason: str, cause: str = "active_down",
                   seen: Seen | None = None) -> None:
        self.decide(f"failing over to {target}: {reason}", action="failover", to=target)
        try:
            out = self.do_failover(target, reason, seen)
        except HadeployError as exc:
            self.decide(f"failover to {target} did not happen: {exc.message}",
                        action="failover-failed", to=target)
            self.observer.failover(target, cause, exc)
            return
        self.last_failover = time.time()
        self.observer.failover(target, cause, None)
        self.stats.failovers.append(out.to_dict() if hasattr(out, "to_dict") else {})

    def run(self, stop: threading.Event, max_seconds: float | None = None) -> WatchStats:
        with self.state.lock("watch", name="watch.lock",
                             holder_hint="run one watcher per deployment"):
            history = History(history_path(self.state.path))
            self.decide(f"watch started (probe every {self.policy.probe_interval} s, "
                        f"threshold {self.policy.failure_threshold}, quorum "
                        f"{self.policy.quorum}, min interval {self.policy.min_interval:.0f} s, "
                        f"auto failback {self.policy.auto_failback})")
            started = time.monotonic()
            next_at = time.monotonic()
            try:
                while not stop.is_set():
                    if max_seconds is not None and time.monotonic() - started > max_seconds:
                        break
                    self.round(history)
                    next_at += self.policy.probe_interval
                    stop.wait(max(0.0, next_at - time.monotonic()))
            finally:
                history.close()
                self.decide(f"watch stopped after {self.stats.rounds} rounds, "
                            f"{len(self.stats.failovers)} failover(s)")
        return self.stats


def unsettled(topo: Topology, states: dict[str, DataState]) -> list[str]:
    """Regions whose database is not in its role: the data primary paused (its boot
    fence), any other region paused or running as a primary."""
    primary = topo.data_primary_region
    out = []
    for name, state in sorted(states.items()):
        paused = state.view.paused
        if primary is not None and name == primary.name:
            if paused:
                out.append(name)
        elif paused or state.role == "primary":
            out.append(name)
    return out
