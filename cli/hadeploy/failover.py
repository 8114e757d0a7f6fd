"""Region failover by DNS: safe to run by hand, from a script, or from ``watch``.

Phases (each idempotent; a journal makes a killed run resumable):

  guards   target exists and is not already active (else: nothing to do)
  prepare  warm/cold target: start its app hosts; lift its fence; wait until they serve
  health   target healthy by quorum of vantage points (``--force`` skips only this)
  fence    old primary refuses writes (best effort when it is unreachable: it is down)
  dns      one atomic change of the app record to the target's endpoint
  verify   the authoritative server serves the new answer

Never imports pulumi or ansible: it depends on the DNS provider, the probes and the
target's small region operations only (:class:`hadeploy.targets.Runtime`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from hadeploy.config import Deployment
from hadeploy.dns.base import DnsProvider
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.health import probe
from hadeploy.quorum import Assessment, LocalVantage, Vote, assess, fetch_prober, votes_from_prober
from hadeploy.state import Journal, StateDir, StateError, current_user, utc_now
from hadeploy.targets import ExtraVotes, RegionOps, Runtime
from hadeploy.topology import RegionTopology, Topology

Log = Callable[[str], None]
Operation = Literal["failover", "failback"]


def _quiet(_message: str) -> None:
    return None


@dataclass
class FailoverContext:
    """Everything a failover acts on: the deployment, its state, what the target's
    runtime provides (topology, DNS provider, region operations, extra vantage points),
    and how to talk to the operator."""

    dep: Deployment
    state: StateDir
    topology: Topology
    dns: DnsProvider
    ops: RegionOps
    extra_votes: ExtraVotes | None = None
    log: Log = _quiet
    confirm: Callable[[str], None] = _quiet

    @classmethod
    def of(cls, dep: Deployment, state: StateDir, runtime: Runtime, *, log: Log = _quiet,
           confirm: Callable[[str], None] = _quiet) -> FailoverContext:
        topo = runtime.topology()
        return cls(dep, state, topo, runtime.dns(topo), runtime.region_ops(topo),
                   runtime.extra_votes, log, confirm)


@dataclass(frozen=True)
class FailoverRequest:
    to: str
    reason: str
    force: bool = False  # skip ONLY the target-health guard (audited)
    dry_run: bool = False  # print the plan; take no lock, write nothing
    operation: Operation = "failover"


@dataclass
class Outcome:
    id: str
    result: str  # done | already-active | dry-run | refused | failed
    from_region: str | None
    to_region: str
    reason: str
    forced: bool
    phases: dict[str, float] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    health: dict[str, Any] | None = None
    dns_before: list[str] = field(default_factory=list)
    dns_after: list[str] = field(default_factory=list)
    error: str | None = None
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "result": self.result, "from": self.from_region,
                "to": self.to_region, "reason": self.reason, "forced": self.forced,
                "resumed": self.resumed,
                "phases": {k: round(v, 3) for k, v in self.phases.items()},
                "actions": self.actions, "health": self.health,
                "dns": {"before": self.dns_before, "after": self.dns_after},
                "error": self.error}


def region_votes(topo: Topology, dep: Deployment, *, local: LocalVantage | None = None,
                 timeout: float | None = None, extra: ExtraVotes | None = None
                 ) -> tuple[list[Vote], dict[str, Any]]:
    """One probe round: this machine probes every region; every prober is asked;
    ``extra`` adds the target's own observers (each one vote per region)."""
    from concurrent.futures import ThreadPoolExecutor

    timeout = timeout if timeout is not None else dep.failover.probe_timeout
    local = local or LocalVantage()
    urls = {r.name: f"{r.url}{dep.app.health_path}" for r in topo.regions}
    probers = {r.name: r.prober for r in topo.regions if r.prober}
    with ThreadPoolExecutor(max_workers=max(1, len(urls) + len(probers))) as pool:
        local_f = {name: pool.submit(probe, url, timeout) for name, url in urls.items()}
        prober_f = {name: pool.submit(fetch_prober, url, timeout)
                    for name, url in probers.items()}
        extra_f = pool.submit(extra, topo) if extra is not None else None
        now = time.time()
        votes = [local.observe(name, f.result(), now) for name, f in local_f.items()]
        docs = {name: f.result() for name, f in prober_f.items()}
        if extra_f is not None:
            votes += extra_f.result()
    max_age = max(3 * dep.failover.probe_interval, 2.0)
    for doc in docs.values():
        if doc is not None:
            votes += votes_from_prober(doc, max_age)
    return votes, docs


def check_region(topo: Topology, name: str) -> RegionTopology:
    if name not in {r.name for r in topo.regions}:
        shown = repr(name[:40]) if name else "an empty name"
        raise HadeployError(f"unknown region {shown}",
                            hint=f"regions of '{topo.deployment}': "
                            f"{', '.join(r.name for r in topo.regions)}",
                            code=ExitCode.BAD_INPUT)
    return topo.region(name)


def _trusted(journal: Journal | None, ctx: FailoverContext) -> Journal | None:
    """A journal that names regions the deployment does not have cannot be resumed."""
    if journal is None:
        return None
    known = {r.name for r in ctx.topology.regions}
    for region in (journal.from_region, journal.to):
        if region is not None and region not in known:
            raise StateError(ctx.state.file("failover-journal.json"),
                             f"names region '{region[:40]}' that the deployment does not have",
                             "inspect it, then remove it and re-run 'hadeploy failover --to "
                             "<region>' (fencing and the DNS change are idempotent)")
    return journal


def failover(ctx: FailoverContext, req: FailoverRequest) -> Outcome:
    """Move the app record to region ``req.to``. Raises HadeployError on refusal/failure
    (after writing the audit record); returns the outcome on success. Everything that can
    be checked is checked before the first change: the region, the state files, that the
    DNS provider can send a change."""
    target = check_region(ctx.topology, req.to)
    # State files that cannot be trusted stop us here, before a lock file is created.
    ctx.state.region_flags()
    _trusted(ctx.state.read_journal(), ctx)
    ctx.dns.check_writable()
    if req.dry_run:  # a read-only look: no lock, no file, no audit
        out = _start(ctx, req, "dry-run")
        if out.result != "already-active":
            out.result = "dry-run"
        return out
    t0 = time.monotonic()
    with ctx.state.lock(req.operation):
        lock_wait = time.monotonic() - t0
        out = _start(ctx, req, uuid.uuid4().hex[:12])
        out.phases = {"lock": lock_wait, **out.phases}
        if out.result == "already-active":
            ctx.state.audit(req.operation, **out.to_dict())
            return out
        old = ctx.topology.region(out.from_region) if out.from_region else None
        ctx.confirm(f"Move traffic for {ctx.topology.dns.fqdn} from "
                    f"{out.from_region or 'nowhere'} to {req.to}?")
        if not out.resumed:
            ctx.state.write_journal(Journal(id=out.id, from_region=out.from_region, to=req.to,
                                            reason=req.reason[:1000], operation=req.operation,
                                            started=utc_now(), user=current_user()))
        try:
            _run_phases(ctx, req, out, target, old)
        except HadeployError as exc:
            out.error = exc.message
            out.result = "refused" if exc.code is ExitCode.REFUSED else "failed"
            if exc.code is ExitCode.REFUSED:
                ctx.state.clear_journal()  # nothing was changed: leave no journal behind
            ctx.state.audit(req.operation, **out.to_dict())
            raise
        out.result = "done"
        ctx.state.clear_journal()
        out.phases["total"] = time.monotonic() - t0
        ctx.state.audit(req.operation, **out.to_dict())
        return out


def _start(ctx: FailoverContext, req: FailoverRequest, new_id: str) -> Outcome:
    """Where the operation starts from: DNS now, and an unfinished run to resume."""
    t = time.monotonic()
    journal = _trusted(ctx.state.read_journal(), ctx)
    answer = ctx.dns.read(ctx.topology.dns.record)
    current = ctx.topology.active_region(answer)
    resumed = journal is not None and journal.to == req.to
    origin = journal.from_region if journal is not None and resumed else current
    out = Outcome(journal.id if journal is not None and resumed else new_id, "failed",
                  origin, req.to, req.reason, req.force, dns_before=answer, resumed=resumed)
    out.phases["plan"] = time.monotonic() - t
    if current == req.to and not resumed:
        out.result, out.dns_after = "already-active", answer
        ctx.log(f"{req.to} is already the active region ({', '.join(answer)}); nothing to do")
        return out
    ctx.log(f"plan: move {ctx.topology.dns.fqdn} from {origin or 'nowhere'} "
            f"({', '.join(answer) or 'no answer'}) to {req.to} "
            f"({ctx.topology.region(req.to).vip}); fence {origin or 'nothing'}"
            + (" [resuming]" if resumed else ""))
    return out


def _run_phases(ctx: FailoverContext, req: FailoverRequest, out: Outcome,
                target: RegionTopology, old: RegionTopology | None) -> None:
    t = time.monotonic()
    # A cold AWS region needs minutes to boot instances: the target says how long to wait.
    out.actions += ctx.ops.prepare(target, timeout=ctx.ops.prepare_timeout)
    out.phases["prepare"] = time.monotonic() - t

    t = time.monotonic()
    verdict = _wait_healthy(ctx, target)
    out.health = verdict.to_dict()
    out.phases["health"] = time.monotonic() - t
    if not verdict.healthy:
        if not req.force:
            raise HadeployError(
                f"target region '{target.name}' is not healthy by quorum "
                f"({verdict.healthy_votes} of {verdict.responding} vantage points see it "
                "healthy)", hint="fix the target region first, or pass --force to move "
                "traffic anyway (recorded in the audit log)", code=ExitCode.REFUSED)
        ctx.log(f"--force: moving traffic to {target.name} although it is not healthy by "
                "quorum")
        out.actions.append("health guard overridden by --force")

    # Fence before DNS: the old primary refuses writes before any client is sent away
    # from it, so no client can write to two regions.
    if old is not None and old.name != target.name:
        t = time.monotonic()
        result = ctx.ops.fence(old, timeout=5)
        out.actions.append(f"fence {old.name}: {result}")
        out.phases["fence"] = time.monotonic() - t
        ctx.log(f"fence {old.name}: {result}")

    t = time.monotonic()
    record = ctx.topology.dns.record
    ctx.dns.replace(record, ctx.topology.dns.ttl, [target.vip])
    out.phases["dns"] = time.monotonic() - t
    t = time.monotonic()
    ctx.dns.wait_visible(record, [target.vip], timeout=ctx.dns.verify_timeout)
    out.dns_after = [target.vip]
    out.phases["verify"] = time.monotonic() - t
    ctx.log(f"{ctx.topology.dns.fqdn} now answers {target.vip} ({target.name}); verified on "
            "the authoritative server")


def _wait_healthy(ctx: FailoverContext, target: RegionTopology) -> Assessment:
    """A region that was just started or unfenced needs a few probe intervals before every
    vantage point has seen it healthy; give them that long, not more."""
    policy = ctx.dep.failover
    patience = max(3 * policy.probe_interval, 2.0)
    t = time.monotonic()
    while True:
        votes, _ = region_votes(ctx.topology, ctx.dep, extra=ctx.extra_votes)
        verdict = assess(target.name, votes, policy)
        if verdict.healthy or time.monotonic() - t > patience:
            return verdict
        time.sleep(min(0.25, policy.probe_interval))
