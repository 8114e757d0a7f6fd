"""Region failover by DNS: safe to run by hand, from a script, or from ``watch``.

Phases (each idempotent; a journal makes a killed run resumable):

  guards   target exists and is not already active (else: nothing to do)
  prepare  warm/cold target: start its app hosts; lift its fence; wait until they serve
  health   target healthy by quorum of vantage points (``--force`` skips only this)
  fence    old primary refuses writes (best effort when it is unreachable: it is down)
  dns      one atomic change of the app record to the target's endpoint
  verify   the authoritative server serves the new answer

Never imports pulumi or ansible: it depends on the DNS provider, the probes and the
target's small region operations only.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hadeploy.config import Deployment
from hadeploy.dns.base import DnsProvider
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.health import probe
from hadeploy.quorum import Assessment, LocalVantage, Vote, assess, fetch_prober, votes_from_prober
from hadeploy.state import StateDir
from hadeploy.topology import RegionTopology, Topology

Log = Callable[[str], None]
# More vantage points than this machine and the probers (aws: Route 53's health checkers).
ExtraVotes = Callable[[Topology], list[Vote]]
JOURNAL = "failover-journal.json"


class RegionOps(Protocol):
    """What a target can do to one region during a failover (lab: podman + haproxy)."""

    # Seconds ``prepare`` may wait for a started standby (lab: 60; aws: instances boot).
    prepare_timeout: float

    def prepare(self, region: RegionTopology, timeout: float) -> list[str]: ...

    def fence(self, region: RegionTopology, timeout: float) -> str: ...


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


def _journal(state: StateDir) -> Path:
    return state.path / JOURNAL


def read_journal(state: StateDir) -> dict[str, Any] | None:
    try:
        doc = json.loads(_journal(state).read_text())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _write_journal(state: StateDir, doc: dict[str, Any]) -> None:
    tmp = _journal(state).with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(_journal(state))


def active_region(topo: Topology, answer: list[str]) -> str | None:
    names = [r.name for r in topo.regions if r.vip in answer]
    return names[0] if len(names) == 1 else None


def plan(topo: Topology, dns: DnsProvider, to: str) -> tuple[str | None, list[str]]:
    if to not in {r.name for r in topo.regions}:
        raise HadeployError(f"unknown region '{to}'",
                            hint=f"regions of '{topo.deployment}': "
                            f"{', '.join(r.name for r in topo.regions)}",
                            code=ExitCode.BAD_INPUT)
    answer = dns.read(topo.dns.record)
    return active_region(topo, answer), answer


def failover(dep: Deployment, topo: Topology, state: StateDir, dns: DnsProvider,
             ops: RegionOps, *, to: str, reason: str, force: bool = False,
             dry_run: bool = False, confirm: Callable[[str], None] = lambda _q: None,
             log: Log = lambda _m: None, operation: str = "failover",
             extra_votes: ExtraVotes | None = None) -> Outcome:
    """Move the app record to region ``to``. Raises HadeployError on refusal/failure
    (after writing the audit record); returns the outcome on success."""
    t0 = time.monotonic()
    with state.lock(operation):
        phases: dict[str, float] = {"lock": time.monotonic() - t0}
        journal = read_journal(state)
        t = time.monotonic()
        current, answer = plan(topo, dns, to)
        resumed = journal is not None and journal.get("to") == to
        from_region = journal["from"] if resumed and journal else current
        out = Outcome(journal["id"] if resumed and journal else uuid.uuid4().hex[:12],
                      "failed", from_region, to, reason, force, phases, dns_before=answer,
                      resumed=resumed)
        phases["plan"] = time.monotonic() - t
        if current == to and not resumed:
            out.result, out.dns_after = "already-active", answer
            log(f"{to} is already the active region ({', '.join(answer)}); nothing to do")
            _audit(state, out, operation)
            return out
        target = topo.region(to)
        old = topo.region(from_region) if from_region else None
        log(f"plan: move {topo.dns.fqdn} from {from_region or 'nowhere'} "
            f"({', '.join(answer) or 'no answer'}) to {to} ({target.vip}); "
            f"fence {from_region or 'nothing'}" + (" [resuming]" if resumed else ""))
        if dry_run:
            out.result = "dry-run"
            return out
        confirm(f"Move traffic for {topo.dns.fqdn} from {from_region or 'nowhere'} to {to}?")
        if not resumed:
            _write_journal(state, {"id": out.id, "from": from_region, "to": to,
                                   "reason": reason, "started": time.time(),
                                   "user": getpass.getuser()})
        try:
            _run_phases(dep, topo, state, dns, ops, out, target, old, force, log, extra_votes)
        except HadeployError as exc:
            out.error = exc.message
            out.result = "refused" if exc.code in (ExitCode.REFUSED,) else "failed"
            if exc.code is ExitCode.REFUSED:
                # Nothing was changed: a refused run leaves no journal behind.
                with suppress(FileNotFoundError):
                    _journal(state).unlink()
            _audit(state, out, operation)
            raise
        out.result = "done"
        _journal(state).unlink(missing_ok=True)
        phases["total"] = time.monotonic() - t0
        _audit(state, out, operation)
        return out


def _run_phases(dep: Deployment, topo: Topology, state: StateDir, dns: DnsProvider,
                ops: RegionOps, out: Outcome, target: RegionTopology,
                old: RegionTopology | None, force: bool, log: Log,
                extra_votes: ExtraVotes | None = None) -> None:
    t = time.monotonic()
    # A cold AWS region needs minutes to boot instances: the target says how long to wait.
    out.actions += ops.prepare(target, timeout=ops.prepare_timeout)
    out.phases["prepare"] = time.monotonic() - t

    t = time.monotonic()
    # A region that was just started or unfenced needs a few probe intervals before every
    # vantage point has seen it healthy; give them that long, not more.
    patience = max(3 * dep.failover.probe_interval, 2.0)
    while True:
        votes, _ = region_votes(topo, dep, extra=extra_votes)
        verdict: Assessment = assess(target.name, votes, dep.failover)
        if verdict.healthy or time.monotonic() - t > patience:
            break
        time.sleep(min(0.25, dep.failover.probe_interval))
    out.health = verdict.to_dict()
    out.phases["health"] = time.monotonic() - t
    if not verdict.healthy:
        if not force:
            raise HadeployError(
                f"target region '{target.name}' is not healthy by quorum "
                f"({verdict.healthy_votes} of {verdict.responding} vantage points see it "
                "healthy)", hint="fix the target region first, or pass --force to move "
                "traffic anyway (recorded in the audit log)", code=ExitCode.REFUSED)
        log(f"--force: moving traffic to {target.name} although it is not healthy by quorum")
        out.actions.append("health guard overridden by --force")

    if old is not None and old.name != target.name:
        t = time.monotonic()
        result = ops.fence(old, timeout=5)
        out.actions.append(f"fence {old.name}: {result}")
        out.phases["fence"] = time.monotonic() - t
        log(f"fence {old.name}: {result}")

    t = time.monotonic()
    dns.replace(topo.dns.record, topo.dns.ttl, [target.vip])
    out.phases["dns"] = time.monotonic() - t
    t = time.monotonic()
    dns.wait_visible(topo.dns.record, [target.vip],
                     timeout=dns.verify_timeout)
    out.dns_after = [target.vip]
    out.phases["verify"] = time.monotonic() - t
    log(f"{topo.dns.fqdn} now answers {target.vip} ({target.name}); verified on "
        "the authoritative server")


def _audit(state: StateDir, out: Outcome, operation: str) -> None:
    state.append_audit({"operation": operation, "user": getpass.getuser(),
                        "host": socket.gethostname(),
                        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "finished_at": time.time(), **out.to_dict()})
