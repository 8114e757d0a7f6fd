"""Region failover by DNS: safe to run by hand, from a script, or from ``watch``.

Phases (each idempotent; a journal makes a killed run resumable):

  guards   target exists and is not already active (else: nothing to do)
  prepare  warm/cold target: start its app hosts; lift its fence; wait until they serve
  health   target healthy by quorum of vantage points (``--force`` skips only this)
  fence    the writer record names no region; the old primary refuses writes; when it
           cannot be reached, wait until its own lease has run out (it fences itself)
  dns      one atomic change of the app record (and the writer record) to the target
  verify   the authoritative server serves the new answer

Never imports pulumi or ansible: it depends on the DNS provider, the probes and the
target's small region operations only (:class:`hadeploy.targets.Runtime`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from hadeploy.config import Deployment
from hadeploy.dns.base import DnsProvider, WriterRecord
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.health import probe
from hadeploy.quorum import (
    Assessment,
    LocalVantage,
    Seen,
    Vote,
    assess,
    fetch_prober,
    votes_from_prober,
)
from hadeploy.state import Journal, StateDir, StateError, current_user, utc_now
from hadeploy.targets import DataOps, ExtraVotes, RegionOps, Runtime
from hadeploy.topology import NO_WRITER, RegionTopology, Topology, lease_bound

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
    # A crash failover may lose more than data.rpo_budget, or an unknown amount (audited).
    allow_data_loss: bool = False
    # What watch saw of the target in the round that decided this failover: when it is no
    # older than one probe interval and nothing had to be started, the health guard uses it
    # instead of probing again.
    seen: Seen | None = None


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
    data: dict[str, Any] | None = None  # what happened to the database tier
    # When the writer record was cleared (monotonic): an unreachable old primary has
    # fenced itself one lease after it (not serialized).
    writer_cleared_at: float | None = None
    _dns: Any = field(default=None, repr=False)  # the provider (its writes, for the audit)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "result": self.result, "from": self.from_region,
                "to": self.to_region, "reason": self.reason, "forced": self.forced,
                "resumed": self.resumed,
                "phases": {k: round(v, 3) for k, v in self.phases.items()},
                # the order they ran in (the audit log sorts keys; drills lay them out)
                "phase_order": [k for k in self.phases if k != "total"],
                "actions": self.actions, "health": self.health,
                "dns": {"before": self.dns_before, "after": self.dns_after,
                        # each change: its serial and which servers had it, when (s)
                        "writes": [w.to_dict() for w in getattr(self._dns, "writes", [])]},
                "data": self.data, "error": self.error}


def region_votes(topo: Topology, dep: Deployment, *, local: LocalVantage | None = None,
                 timeout: float | None = None, extra: ExtraVotes | None = None,
                 only: str | None = None, skip_probers: Collection[str] = ()
                 ) -> tuple[list[Vote], dict[str, Any]]:
    """One probe round: this machine probes every region (``only``: that one); every
    prober is asked (but those of the regions in ``skip_probers``); ``extra`` adds the
    target's own observers (each one vote per region)."""
    from concurrent.futures import ThreadPoolExecutor

    timeout = timeout if timeout is not None else dep.failover.probe_timeout
    local = local or LocalVantage()
    urls = {r.name: f"{r.url}{dep.app.health_path}" for r in topo.regions
            if only is None or r.name == only}
    probers = {r.name: r.prober for r in topo.regions
               if r.prober and r.name not in skip_probers}
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
                  origin, req.to, req.reason, req.force, dns_before=answer, resumed=resumed,
                  _dns=ctx.dns)
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
    _prepare_and_check(ctx, req, out, target)
    rejoin = None
    if ctx.ops.data is not None and target.data is not None:
        rejoin = _move_data(ctx, req, out, target, old, ctx.ops.data)
    else:
        _fence(ctx, out, old, target)
    _move_dns(ctx, out, target)
    if rejoin is not None and ctx.ops.data is not None:
        # After DNS: the old primary region (paused, its leader stopped at the token)
        # follows the new one; a failure leaves it paused, which is safe, and is reported.
        t = time.monotonic()
        try:
            done = ctx.ops.data.settle(rejoin, target, salvage=False) or "already a standby"
        except HadeployError as exc:
            done = f"did not rejoin yet ({exc.message}); 'hadeploy up' or 'watch' retries"
        out.actions.append(f"database of {rejoin.name}: {done}")
        out.phases["rejoin"] = time.monotonic() - t


def _prepare_and_check(ctx: FailoverContext, req: FailoverRequest, out: Outcome,
                       target: RegionTopology) -> None:
    t = time.monotonic()
    # A cold AWS region needs minutes to boot instances: the target says how long to wait.
    out.actions += ctx.ops.prepare(target, timeout=ctx.ops.prepare_timeout)
    out.phases["prepare"] = time.monotonic() - t

    started_something = bool(out.actions)
    t = time.monotonic()
    fresh = _fresh(ctx, req, target)
    seen = fresh if not started_something else None
    verdict = seen.assessment if seen is not None else _wait_healthy(ctx, target, fresh)
    out.health = {**verdict.to_dict(), "source": "probed" if seen is None else
                  f"watch's round {time.time() - seen.at:.2f} s before"}
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


def _fence(ctx: FailoverContext, out: Outcome, old: RegionTopology | None,
           target: RegionTopology) -> None:
    """Fence before DNS: the old primary refuses writes before any client is sent away
    from it, so no client can write to two regions. The writer record is cleared first;
    an old primary that cannot be reached fences itself once it cannot confirm it is the
    writer, and writes move elsewhere only after that (its lease)."""
    if old is None or old.name == target.name:
        return
    t = time.monotonic()
    _clear_writer(ctx, out)
    result = ctx.ops.fence(old, timeout=5)
    out.actions.append(f"fence {old.name}: {result}")
    out.phases["fence"] = time.monotonic() - t
    ctx.log(f"fence {old.name}: {result}")
    lease = ctx.ops.lease
    if result.certain or not lease:
        return
    if out.writer_cleared_at is None:
        raise HadeployError(
            f"{old.name} could not be fenced: its load balancers did not answer and the "
            "writer record could not be cleared, so it may still take writes; moving "
            f"writes to {target.name} now could split the data in two",
            hint="once the DNS server answers, re-run the same 'hadeploy failover' (it "
            "resumes); if the old region is certainly down, its lease runs out by itself",
            code=ExitCode.FAILED)
    bound = lease_bound(lease)
    wait = out.writer_cleared_at + bound - time.monotonic()
    t = time.monotonic()
    if wait > 0:
        ctx.log(f"{old.name} could not be reached: waiting {wait:.1f} s until its lease "
                "has run out (its load balancers refuse writes once they cannot confirm "
                "their region is the writer)")
        time.sleep(wait)
    out.phases["lease"] = time.monotonic() - t
    out.actions.append(f"{old.name} unreachable: writes move after its lease ran out "
                       f"({bound:.2f} s after the writer record was cleared)")


def _writer_dns(ctx: FailoverContext) -> WriterRecord | None:
    return ctx.dns if isinstance(ctx.dns, WriterRecord) else None


def _clear_writer(ctx: FailoverContext, out: Outcome) -> None:
    """The writer record names no region (once per failover): every region's lease agents
    stop renewing. A failure is noted; it matters only when the old primary is also out
    of reach (see :func:`_fence`)."""
    writer = _writer_dns(ctx)
    if writer is None or out.writer_cleared_at is not None:
        return
    try:
        writer.set_writer(ctx.topology.dns.writer_record, NO_WRITER)
    except HadeployError as exc:
        out.actions.append(f"writer record not cleared: {exc.message}")
        return
    out.writer_cleared_at = time.monotonic()


def _move_dns(ctx: FailoverContext, out: Outcome, target: RegionTopology) -> None:
    t = time.monotonic()
    record = ctx.topology.dns.record
    writer = _writer_dns(ctx)
    if writer is not None:  # one atomic update: traffic and the right to write move together
        writer.replace(record, ctx.topology.dns.ttl, [target.vip],
                       writer=(ctx.topology.dns.writer_record, target.name))
    else:
        ctx.dns.replace(record, ctx.topology.dns.ttl, [target.vip])
    out.phases["dns"] = time.monotonic() - t
    t = time.monotonic()
    ctx.dns.wait_visible(record, [target.vip], timeout=ctx.dns.verify_timeout)
    out.dns_after = [target.vip]
    out.phases["verify"] = time.monotonic() - t
    if ctx.ops.lease and writer is not None:
        t = time.monotonic()
        done = ctx.ops.wait_writable(target, timeout=lease_bound(ctx.ops.lease))
        out.phases["writable"] = time.monotonic() - t
        if done:
            out.actions.append(done)
    ctx.log(f"{ctx.topology.dns.fqdn} now answers {target.vip} ({target.name}); verified on "
            "the authoritative server")


def _move_data(ctx: FailoverContext, req: FailoverRequest, out: Outcome,
               target: RegionTopology, old: RegionTopology | None,
               data: DataOps) -> RegionTopology | None:
    """Move the writable database to ``target`` together with the traffic. A switchover
    when a region's primary answers (zero acknowledged writes lost, by construction), a
    crash failover otherwise (refused beyond data.rpo_budget unless --allow-data-loss).
    Returns the region to rejoin after the DNS change (a switchover's old primary)."""
    t = time.monotonic()
    states = data.observe()
    out.phases["data"] = time.monotonic() - t
    writer = next((name for name, s in states.items() if s.role == "primary"), None)
    if writer == target.name:
        out.data = {"mode": "already-primary", "region": target.name}
        _fence(ctx, out, old, target)
        ctx.state.set_data_primary(target.name)
        journal = ctx.state.read_journal()
        if journal is not None and journal.data_token is not None and old is not None \
                and old.name != target.name:
            # A switchover killed after its switch and before DNS: the old primary region
            # (paused, its leader stopped at the token) still has to follow the new one.
            out.data["from"] = old.name
            return old
        return None
    if writer is not None:
        source = ctx.topology.region(writer)
        journal = ctx.state.read_journal()
        if journal is None or journal.data_token is None:  # not frozen yet: it must follow
            t = time.monotonic()
            data.wait_streaming(target, timeout=30.0)
            out.phases["streaming"] = time.monotonic() - t
        _fence(ctx, out, source, target)
        if old is not None and old.name != source.name:
            _fence(ctx, out, old, target)
        _switchover(ctx, out, source, target, data)
        return source
    estimate = _estimate_loss(ctx, target)
    within = estimate["seconds"] is not None and estimate["seconds"] <= ctx.dep.data.rpo_budget
    out.data = {"mode": "failover", "estimate": estimate,
                "rpo_budget": ctx.dep.data.rpo_budget, "allowed": req.allow_data_loss}
    if not within and not req.allow_data_loss:
        what = ("an unknown amount" if estimate["seconds"] is None else
                f"about {estimate['seconds']} s ({estimate['bytes']} bytes)")
        raise HadeployError(
            f"no database of any region answers as the primary: failing over to "
            f"{target.name} may lose {what} of acknowledged writes, more than "
            f"data.rpo_budget ({ctx.dep.data.rpo_budget:g} s) allows",
            hint="if the old primary region is really gone, pass --allow-data-loss "
            "(audited, with this estimate); 'hadeploy watch' keeps the observations that "
            "make the estimate", code=ExitCode.REFUSED)
    _fence(ctx, out, old, target)
    t = time.monotonic()
    data.promote(target)
    out.phases["promote"] = time.monotonic() - t
    ctx.state.set_data_primary(target.name)
    if old is not None and old.name != target.name:
        ctx.state.set_rejoin(old.name, True)
    out.actions.append(f"database of {target.name} promoted (crash failover; estimated "
                       f"loss {estimate['seconds']} s / {estimate['bytes']} bytes)")
    return None


def _switchover(ctx: FailoverContext, out: Outcome, source: RegionTopology,
                target: RegionTopology, data: DataOps) -> None:
    journal = ctx.state.read_journal()
    token = journal.data_token if journal is not None else None
    t = time.monotonic()
    if token is None:
        token = data.freeze(source)
        if journal is not None:
            ctx.state.write_journal(journal.model_copy(update={"data_token": token}))
    out.phases["freeze"] = time.monotonic() - t
    t = time.monotonic()
    data.switch(source, target, token)
    out.phases["promote"] = time.monotonic() - t
    ctx.state.set_data_primary(target.name)
    out.data = {"mode": "switchover", "from": source.name, "token": token, "lost": 0}
    out.actions.append(f"database moved from {source.name} to {target.name} with zero "
                       f"acknowledged writes lost (replayed past token {token})")


def _estimate_loss(ctx: FailoverContext, target: RegionTopology) -> dict[str, Any]:
    """What a crash failover to ``target`` loses: the lag it had at the last observation
    ``watch`` recorded while a primary answered (within 5 minutes), else unknown."""
    from hadeploy.history import History, HistoryError, history_path

    path = history_path(ctx.state.path)
    if path.exists():
        try:
            db = History(path, read_only=True)
            try:
                row = db.last_lag(target.name, time.time() - 300)
            finally:
                db.close()
        except HistoryError:
            row = None
        if row is not None:
            return {"bytes": row.lag_bytes, "seconds": row.lag_seconds,
                    "observed_at": row.ts, "source": "watch"}
    return {"bytes": None, "seconds": None, "observed_at": None,
            "source": "no observation in the last 5 minutes (is 'hadeploy watch' running?)"}


def _fresh(ctx: FailoverContext, req: FailoverRequest, target: RegionTopology) -> Seen | None:
    """Watch's own verdict on the target, when it is healthy and no older than one probe
    interval: probing again would see the same, after waiting out the probe timeout of
    every vantage point in the region that just went down."""
    seen = req.seen
    if (seen is None or seen.assessment.region != target.name or not seen.assessment.healthy
            or seen.assessment.down
            or not 0 <= time.time() - seen.at <= ctx.dep.failover.probe_interval):
        return None
    return seen


def _wait_healthy(ctx: FailoverContext, target: RegionTopology,
                  seen: Seen | None = None) -> Assessment:
    """A region that was just started or unfenced needs a few probe intervals before every
    vantage point has seen it healthy; give them that long, not more. Only the target is
    probed; the probers that did not answer watch's fresh round (``seen``: their region
    just went down) are not asked again, so no round waits out their timeout."""
    policy = ctx.dep.failover
    patience = max(3 * policy.probe_interval, 2.0)
    silent: set[str] = set()
    if seen is not None:
        answered = {v.vantage for v in seen.assessment.votes}
        silent = {r.name for r in ctx.topology.regions
                  if r.prober and f"probe@{r.name}" not in answered}
    t = time.monotonic()
    while True:
        votes, _ = region_votes(ctx.topology, ctx.dep, extra=ctx.extra_votes,
                                only=target.name, skip_probers=silent)
        verdict = assess(target.name, votes, policy)
        if verdict.healthy or time.monotonic() - t > patience:
            return verdict
        time.sleep(min(0.25, policy.probe_interval))
