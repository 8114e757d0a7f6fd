"""``hadeploy status``: probe every host and endpoint, ask the DNS server which region
is active. The document built here is a versioned contract (docs/status-schema.md),
defined by the models below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from hadeploy.config import Deployment
from hadeploy.dns.base import DnsProvider, WriterRecord
from hadeploy.dns.rfc2136 import Rfc2136Provider
from hadeploy.errors import HadeployError
from hadeploy.health import ProbeResult, probe_many
from hadeploy.topology import BACKUP_REPO_PORT, NO_WRITER, HostKind, RegionTopology, Topology

if TYPE_CHECKING:
    from hadeploy.data import Archiving, DataState, Integrity, Slot

LB_HEALTH_PATH = "/lb-health"  # haproxy's monitor-uri (roles/haproxy)
LB_HEADER = "x-hadeploy-lb"  # set by haproxy on every response (roles/haproxy)
PATRONI_PORT = 8008  # every database host's Patroni REST API (roles/postgresql)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DnsServerStatus(_Doc):
    name: str  # the region it lives in, or "witness"
    address: str  # address:port
    serial: int | None  # the zone's SOA serial it serves
    answer: list[str] | None  # the app record it serves
    writer: str | None  # the writer record it serves
    error: str | None  # why it could not be asked
    agrees: bool  # serves the newest serial and answer


class DnsStatus(_Doc):
    server: str
    port: int
    zone: str
    record: str
    ttl: int
    answer: list[str]
    error: str | None
    # The region the writer record names ('-': none, while a failover moves writes;
    # None: the provider keeps no writer record). Not the active region: degraded.
    writer: str | None = None
    # Every authoritative server (RFC 2136 only; [] for Route 53): one that does not
    # answer or does not agree makes the deployment degraded.
    servers: list[DnsServerStatus] = []


class EndpointStatus(_Doc):
    status: int | None
    latency_ms: float
    error: str | None


class HostStatus(_Doc):
    name: str
    address: str
    kind: Literal["lb", "app", "db", "backup"]
    healthy: bool
    standby: bool
    status: int | None
    latency_ms: float
    error: str | None
    container: str | None = None  # lab only: podman state (running, exited, missing)


class DataMemberStatus(_Doc):
    name: str
    role: Literal["primary", "replica", "standby_leader", "unknown"]
    state: str
    position: int | None  # WAL position (bytes): written (primary) or replayed (standby)
    error: str | None


class SlotStatus(_Doc):
    name: str
    active: bool  # a standby streams through it right now
    wal_status: str | None  # reserved / extended / unreserved / lost (PostgreSQL's words)
    retained_bytes: int | None  # WAL the slot keeps on the leader's disk


class IntegrityStatus(_Doc):
    checked_at: str | None  # the last scheduled pg_amcheck on the leader (None: never)
    ok: bool | None  # that check found nothing (None: never ran, or unreadable)
    findings: list[str]  # what it reported
    checksum_failures: int | None  # PostgreSQL's live data-checksum failure count
    error: str | None  # the check, or reading it, failed


class FilesBackupStatus(_Doc):
    """A region's shared-storage backups (restic, in another region's backup host)."""

    last_backup_at: str | None
    last_backup_age_seconds: float | None
    snapshot: str | None
    files: int | None
    last_backup_error: str | None
    last_verify_at: str | None
    last_verify_ok: bool | None
    last_verify_age_seconds: float | None
    last_verify_error: str | None
    problems: list[str]


class BackupStatus(_Doc):
    """A region's backup repository (regions[].backup): its newest good backup and last
    restore test, against the policy in data.backup."""

    last_backup_at: str | None  # the newest backup that succeeded (with its marker)
    last_backup_label: str | None
    last_backup_age_seconds: float | None
    last_backup_error: str | None  # the most recent attempt failed (why)
    last_verify_at: str | None
    last_verify_ok: bool | None  # None: never restore-tested
    last_verify_label: str | None
    last_verify_age_seconds: float | None
    last_verify_error: str | None
    split_brain: bool = False  # the archive refused WAL: two primaries on one timeline?
    problems: list[str]  # why this repository makes the deployment degraded (empty: none)
    error: str | None = None  # the backup host could not be asked
    files: FilesBackupStatus | None = None  # the region's shared storage (restic)


class ArchivingStatus(_Doc):
    """Continuous WAL archiving on a leader (PostgreSQL's pg_stat_archiver): whether every
    segment reaches the backup repositories."""

    mode: str  # archive_mode: "off" when backups are off
    in_recovery: bool  # a standby region's leader: it does not archive, its primary does
    archived: int
    last_archived_wal: str | None
    last_archived_at: str | None
    failed: int  # failed attempts since the server started (retries included)
    last_failed_wal: str | None
    last_failed_at: str | None
    failing: bool  # the last attempt failed and none succeeded since
    waiting: int  # segments ready and not yet archived
    error: str | None  # pgBackRest's message for the failing push
    split_brain: bool  # the repository refused a segment it holds with another content


class DataStatus(_Doc):
    """A region's database cluster (regions[].data)."""

    cluster: str
    role: Literal["primary", "standby", "down", "unknown"]
    leader: str | None
    timeline: int | None
    position: int | None
    lag_bytes: int | None  # a standby region: how far behind the primary region
    lag_seconds: float | None  # 0 when caught up, else age of the last replayed commit
    members: list[DataMemberStatus]
    # Replication slots on the leader; None when they could not be read (the error says why).
    slots: list[SlotStatus] | None = None
    slots_error: str | None = None
    # Corruption checks on the leader: None when the target cannot read them (aws).
    integrity: IntegrityStatus | None = None
    # WAL archiving on the leader: None when the target cannot read it (aws) or it failed
    # (archiving_error says why).
    archiving: ArchivingStatus | None = None
    archiving_error: str | None = None


class RegionStatus(_Doc):
    name: str
    role: Literal["primary", "secondary"]
    standby: Literal["hot", "warm", "cold"]
    active: bool
    vip: str
    url: str
    healthy: bool
    lb_master: str | None
    serving_expected: bool
    fenced: bool
    promoted: bool
    endpoint: EndpointStatus
    hosts: list[HostStatus]
    history: dict[str, Any] | None
    data: DataStatus | None = None
    backup: BackupStatus | None = None


class DrillStatus(_Doc):
    """The last drill of one scenario ('hadeploy drill', from the audit log)."""

    scenario: str
    at: str
    met: bool  # the deployment's objectives were met
    rto_seconds: float | None  # client-observed recovery (None: never recovered)
    rpo_seconds: float
    failed: int  # failed requests
    requests: int
    lost_writes: int
    report: str | None  # the Markdown report


class ReconcileStatus(_Doc):
    """What 'hadeploy reconcile' last did (<state>/reconcile.json): the revision of the
    followed branch the deployment is in sync with, and the last attempt's result."""

    repo: str
    branch: str
    path: str
    revision: str | None  # the revision last applied successfully (None: none yet)
    applied_at: str | None  # when it was last applied
    result: Literal["ok", "failed", "refused"]  # the last attempt's outcome
    error: str | None
    stage: Literal["fetch", "verify", "config", "plan", "apply"] | None  # where it failed
    attempts: int  # attempts at `head` (failures in a row while it fails)
    head: str | None  # the branch head of the last attempt (== revision when in sync)
    drift_seen: bool  # `revision` drifted after it was applied and was applied again
    drift_at: str | None
    checked_at: str  # the reconciler's last check (also when there was nothing to do)


class StatusDoc(_Doc):
    """``hadeploy status --json``, schema version 1."""

    schema_version: Literal[1] = 1
    deployment: str
    target: Literal["lab", "aws"]
    checked_at: str
    active_region: str | None
    healthy: bool
    degraded: bool
    history_error: str | None = None
    dns: DnsStatus
    regions: list[RegionStatus]
    drills: list[DrillStatus] = []  # the last drill of each scenario, by scenario
    reconcile: ReconcileStatus | None = None  # null: no 'hadeploy reconcile' applied here

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=False)


DB_HEALTH_PATH = "/health"  # Patroni: 200 while PostgreSQL runs under it


def host_url(kind: HostKind, address: str, dep: Deployment) -> str:
    if kind is HostKind.LB:
        return f"http://{address}{LB_HEALTH_PATH}"
    if kind is HostKind.DB:
        return f"http://{address}:{PATRONI_PORT}{DB_HEALTH_PATH}"
    if kind is HostKind.BACKUP:
        return f"tcp://{address}:{BACKUP_REPO_PORT}"
    return f"http://{address}:{dep.app.port}{dep.app.health_path}"


def _endpoint(r: ProbeResult) -> EndpointStatus:
    return EndpointStatus(status=r.status, latency_ms=round(r.latency_ms, 1), error=r.error)


SlotReader = Callable[[RegionTopology, str], "list[Slot]"]


@dataclass(frozen=True)
class DataReaders:
    """How a target shows its database tier in ``status``. ``observe``: its own view of
    every region's cluster (aws: Aurora's) instead of the members' Patroni API; ``slots``:
    how to read a leader's replication slots (targets that can run a command there)."""

    observe: Callable[[], dict[str, DataState]] | None = None
    slots: SlotReader | None = None
    integrity: Callable[[RegionTopology, str], Integrity] | None = None
    archiving: Callable[[RegionTopology, str], Archiving] | None = None
    # every backup host's last backup and restore test: region → the host's answer
    backups: Callable[[], dict[str, dict[str, Any]]] | None = None


def data_status(topo: Topology, timeout: float,
                readers: DataReaders | None = None) -> dict[str, DataStatus]:
    """Every region's database cluster, and the WAL each replication slot retains."""
    from concurrent.futures import ThreadPoolExecutor

    from hadeploy import data

    readers = readers or DataReaders()
    slots = readers.slots
    observed = readers.observe() if readers.observe is not None else data.observe(topo,
                                                                                  timeout)

    def read_slots(name: str) -> tuple[list[SlotStatus] | None, str | None]:
        leader = observed[name].view.leader
        if slots is None or leader is None:
            return None, None if slots is None else "no leader to ask"
        try:
            return [SlotStatus(name=s.name, active=s.active, wal_status=s.wal_status,
                               retained_bytes=s.retained_bytes)
                    for s in slots(topo.region(name), leader.name)], None
        except Exception as exc:  # reported in the document, never fatal to status
            return None, f"{type(exc).__name__}: {str(exc).strip()[:200]}"

    def read_integrity(name: str) -> IntegrityStatus | None:
        leader = observed[name].view.leader
        if readers.integrity is None or leader is None:
            return None
        try:
            found = readers.integrity(topo.region(name), leader.name)
        except Exception as exc:  # reported in the document, never fatal to status
            return IntegrityStatus(checked_at=None, ok=None, findings=[],
                                   checksum_failures=None,
                                   error=f"{type(exc).__name__}: {str(exc).strip()[:200]}")
        return IntegrityStatus(checked_at=found.checked_at, ok=found.ok,
                               findings=found.findings,
                               checksum_failures=found.checksum_failures, error=found.error)

    def read_archiving(name: str) -> tuple[ArchivingStatus | None, str | None]:
        leader = observed[name].view.leader
        if readers.archiving is None or leader is None:
            return None, None
        try:
            found = readers.archiving(topo.region(name), leader.name)
        except Exception as exc:  # reported in the document, never fatal to status
            return None, f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        return ArchivingStatus(**dataclasses.asdict(found),
                               split_brain=found.split_brain), None

    with ThreadPoolExecutor(max_workers=max(1, 3 * len(observed))) as pool:
        slot_futures = {n: pool.submit(read_slots, n) for n in observed}
        integrity_futures = {n: pool.submit(read_integrity, n) for n in observed}
        archiving_futures = {n: pool.submit(read_archiving, n) for n in observed}
        slot_docs = {n: f.result() for n, f in slot_futures.items()}
        integrity_docs = {n: f.result() for n, f in integrity_futures.items()}
        archiving_docs = {n: f.result() for n, f in archiving_futures.items()}
    out = {}
    for name, state in observed.items():
        leader = state.view.leader
        out[name] = DataStatus(
            cluster=state.cluster, role=state.role, leader=leader.name if leader else None,
            timeline=leader.timeline if leader else None, position=state.position,
            lag_bytes=state.lag_bytes, lag_seconds=state.lag_seconds,
            members=[DataMemberStatus(name=m.name, role=m.role, state=m.state,
                                      position=m.position, error=m.error)
                     for m in state.view.members],
            slots=slot_docs[name][0], slots_error=slot_docs[name][1],
            integrity=integrity_docs[name], archiving=archiving_docs[name][0],
            archiving_error=archiving_docs[name][1])
    return out


def collect(topo: Topology, dep: Deployment, state: Path, *, dns: DnsProvider,
            timeout: float = 1.0, container_states: dict[str, str] | None = None,
            host_health: dict[str, ProbeResult] | None = None,
            data: DataReaders | None = None) -> StatusDoc:
    """``dns``: the provider to ask. ``host_health``: host name → result when the target
    knows its hosts' health better than a probe from here (aws: the ALB's target health);
    then hosts are not probed. ``container_states``: the lab's podman states. ``data``:
    how the target reads its database tier (:class:`DataReaders`)."""
    from concurrent.futures import ThreadPoolExecutor

    from hadeploy.state import utc_now

    urls: list[str] = []
    for region in topo.regions:
        urls.append(f"{region.url}{dep.app.health_path}")
        if host_health is None:
            urls += [host_url(h.kind, h.address, dep) for h in region.hosts]
    with_data = (data is not None and data.observe is not None) or any(
        r.data is not None and r.of_kind(HostKind.DB) for r in topo.regions)
    with ThreadPoolExecutor(max_workers=2) as pool:  # the databases' view while probing
        data_future = pool.submit(data_status, topo, timeout, data) if with_data else None
        backup_future = pool.submit(data.backups) if data is not None and data.backups \
            else None
        results = probe_many(urls, timeout)
        databases = data_future.result() if data_future is not None else {}
        repos = backup_future.result() if backup_future is not None else {}
    backups = {name: backup_status(name, answer, dep) for name, answer in
               repos.items() if name != FILES_KEY}
    for name, answer in (repos.get(FILES_KEY) or {}).items():
        if name in backups:
            files = files_status(answer, dep)
            backups[name].files = files
            backups[name].problems += [f"files: {p}" for p in files.problems]

    dns_doc = DnsStatus(server=topo.dns.server, port=topo.dns.port, zone=topo.dns.zone,
                        record=topo.dns.fqdn, ttl=topo.dns.ttl, answer=[], error=None)
    try:
        if isinstance(dns, Rfc2136Provider):
            _servers(dns, topo, dns_doc)
        else:
            dns_doc.answer = dns.read(topo.dns.record)
            if isinstance(dns, WriterRecord):
                dns_doc.writer = dns.read_writer(topo.dns.writer_record) or NO_WRITER
    except HadeployError as exc:
        dns_doc.error = exc.message
    active = [r.name for r in topo.regions if r.vip in dns_doc.answer]
    writer_astray = dns_doc.writer is not None and active != [dns_doc.writer]
    history, history_error = _history(state, [r.name for r in topo.regions])

    regions: list[RegionStatus] = []
    for region in topo.regions:
        vip = results[f"{region.url}{dep.app.health_path}"]
        hosts = []
        for h in region.hosts:
            r = (host_health.get(h.name) or ProbeResult(h.name, False, None, 0.0, "unknown")
                 if host_health is not None else results[host_url(h.kind, h.address, dep)])
            hosts.append(HostStatus(
                name=h.name, address=h.address, kind=h.kind.value, healthy=r.ok,
                standby=h.standby, status=r.status, latency_ms=round(r.latency_ms, 1),
                error=r.error, container=None if container_states is None
                else container_states.get(h.name, "missing")))
        regions.append(RegionStatus(
            name=region.name, role=region.role.value, standby=region.standby.value,
            active=region.name in active, vip=region.vip, url=region.url, healthy=vip.ok,
            lb_master=vip.headers.get(LB_HEADER), serving_expected=region.serving_expected,
            fenced=region.fenced, promoted=region.promoted, endpoint=_endpoint(vip),
            hosts=hosts, history=history.get(region.name),
            data=databases.get(region.name), backup=backups.get(region.name)))
    return StatusDoc(
        deployment=topo.deployment, target=topo.target.value, checked_at=utc_now(),
        active_region=active[0] if len(active) == 1 else None,
        healthy=all(r.healthy for r in regions if r.serving_expected or r.active)
        and len(active) == 1,
        degraded=any(not h.healthy and not (h.standby and h.container != "running")
                     for r in regions for h in r.hosts)
        or any(r.data is not None and r.data.role in ("down", "unknown") for r in regions)
        or any(r.data is not None and r.data.integrity is not None and (
            r.data.integrity.ok is False or (r.data.integrity.checksum_failures or 0) > 0)
            for r in regions)
        or any(r.data is not None and r.data.archiving is not None
               and r.data.archiving.failing for r in regions)
        or any(r.backup is not None and bool(r.backup.problems) for r in regions)
        or writer_astray or any(not s.agrees for s in dns_doc.servers),
        history_error=history_error, dns=dns_doc, regions=regions, drills=_drills(state),
        reconcile=reconcile_status(state))


def _servers(dns: Rfc2136Provider, topo: Topology, doc: DnsStatus) -> None:
    """Every server's answer, serial and agreement; the answer and writer of the quorum
    (the newest serial a majority answers). Raises when no majority answers."""
    snap = dns.snapshot(topo.dns.record, topo.dns.writer_record, wait_all=True)
    best = snap.newest
    stale = {s.name for s in snap.stale()}
    doc.servers = [DnsServerStatus(name=s.name, address=f"{s.address}:{s.port}",
                                   serial=s.serial, answer=s.answer, writer=s.writer,
                                   error=s.error, agrees=s.ok and s.name not in stale)
                   for s in snap.servers]
    if best is None:
        raise dns.no_majority(snap)
    doc.answer = list(best.answer or [])
    doc.writer = best.writer or NO_WRITER


def _utc(at: float | None) -> str | None:
    """A POSIX time as the backup records write it (None stays None)."""
    import time

    return None if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def backup_status(region: str, answer: dict[str, Any], dep: Deployment) -> BackupStatus:
    """A backup host's ``last`` answer against the policy (data.backup)."""
    import time

    from hadeploy.backup import freshness

    if answer.get("error") and "last_backup" not in answer:
        return BackupStatus(
            last_backup_at=None, last_backup_label=None, last_backup_age_seconds=None,
            last_backup_error=None, last_verify_at=None, last_verify_ok=None,
            last_verify_label=None, last_verify_age_seconds=None, last_verify_error=None,
            problems=["its backup host does not answer"], error=str(answer["error"])[:300])
    fresh = freshness(region, answer)
    now = time.time()

    return BackupStatus(
        last_backup_at=_utc(fresh.backup_at), last_backup_label=fresh.backup_label,
        last_backup_age_seconds=None if fresh.backup_at is None
        else round(now - fresh.backup_at, 1),
        last_backup_error=fresh.backup_error, last_verify_at=_utc(fresh.verify_at),
        last_verify_ok=fresh.verify_ok, last_verify_label=fresh.verify_label,
        last_verify_age_seconds=None if fresh.verify_at is None
        else round(now - fresh.verify_at, 1),
        last_verify_error=fresh.verify_error, split_brain=fresh.split_brain,
        problems=fresh.problems(dep.data.backup, now))


FILES_KEY = "_files"  # in a backups reader's answer: region → the files backup's answer


def files_status(answer: dict[str, Any], dep: Deployment) -> FilesBackupStatus:
    import time

    from hadeploy.backup import freshness

    now = time.time()
    if answer.get("error") and "last_backup" not in answer:
        return FilesBackupStatus(
            last_backup_at=None, last_backup_age_seconds=None, snapshot=None, files=None,
            last_backup_error=None, last_verify_at=None, last_verify_ok=None,
            last_verify_age_seconds=None, last_verify_error=str(answer["error"])[:300],
            problems=["its app host does not answer"])
    fresh = freshness("", answer)
    good_doc = answer.get("last_good_backup")
    good: dict[str, Any] = good_doc if isinstance(good_doc, dict) else {}

    return FilesBackupStatus(
        last_backup_at=_utc(fresh.backup_at), snapshot=good.get("snapshot"),
        files=good.get("files"), last_backup_age_seconds=None if fresh.backup_at is None
        else round(now - fresh.backup_at, 1), last_backup_error=fresh.backup_error,
        last_verify_at=_utc(fresh.verify_at), last_verify_ok=fresh.verify_ok,
        last_verify_age_seconds=None if fresh.verify_at is None
        else round(now - fresh.verify_at, 1), last_verify_error=fresh.verify_error,
        problems=fresh.problems(dep.data.backup, now))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _backup_line(repo: dict[str, Any]) -> tuple[str, str]:
    """The status line of a region's backups, and its style."""
    verify = ("never" if repo["last_verify_ok"] is None else
              f"{'ok' if repo['last_verify_ok'] else 'FAILED'} "
              f"{_age(repo['last_verify_age_seconds'])}")
    text = (f"    backups: newest {repo['last_backup_label'] or '-'} "
            f"{_age(repo['last_backup_age_seconds'])}, restore test {verify}")
    files = repo.get("files")
    if files:
        text += f"; files {files['snapshot'] or '-'} {_age(files['last_backup_age_seconds'])}"
    if repo["problems"]:
        text += f" — {'; '.join(repo['problems'])}"
    return text, "yellow" if repo["problems"] else "dim"


def _integrity_line(check: dict[str, Any]) -> tuple[str, str]:
    """The status line of a leader's corruption checks, and its style."""
    failures = check.get("checksum_failures") or 0
    if check.get("ok") is False or failures:
        what = "; ".join([*check.get("findings", [])[:2],
                          *([f"{failures} data-checksum failure(s)"] if failures else []),
                          *([check["error"]] if check.get("error") else [])])
        return f"      integrity: CORRUPTION ({what[:300]})", "red"
    if check.get("error"):
        return f"      integrity: unknown ({check['error']})", "yellow"
    if check.get("checked_at") is None:
        return ("      integrity: not checked here yet (pg_amcheck runs on the writable "
                "primary, on a timer)", "dim")
    return f"      integrity: ok (pg_amcheck at {check['checked_at']})", "dim"


def _archiving_line(wal: dict[str, Any] | None, error: str | None) -> tuple[str, str]:
    """The status line of a leader's WAL archiving, and its style."""
    if wal is None:
        return f"      WAL archiving: unknown ({error})", "yellow"
    if wal["mode"] == "off":
        return "      WAL archiving: off (backups are off)", "dim"
    if wal["in_recovery"]:
        return "      WAL archiving: by the primary region (a standby does not archive)", "dim"
    if wal["failing"]:
        alarm = "SPLIT BRAIN? the repository refused a segment it holds with other content; "\
            if wal["split_brain"] else ""
        return (f"      WAL archiving: FAILING since {wal['last_failed_at']} "
                f"({wal['last_failed_wal']}, {wal['waiting']} segment(s) waiting; {alarm}"
                f"{(wal['error'] or 'no message from pgBackRest')[:300]})", "red")
    return (f"      WAL archiving: ok ({wal['archived']} segment(s), last "
            f"{wal['last_archived_wal'] or '-'} at {wal['last_archived_at'] or '-'}"
            + (f", {wal['waiting']} waiting" if wal["waiting"] else "") + ")", "dim")


def _drills(state: Path) -> list[DrillStatus]:
    """The last drill of each scenario, from the audit log (unreadable records skipped)."""
    from hadeploy.state import StateDir, StateError

    last: dict[str, DrillStatus] = {}
    try:
        for record in StateDir(state).audit_records(operation="drill"):
            try:
                last[record["scenario"]] = DrillStatus(
                    scenario=record["scenario"], at=record["at"], met=bool(record["met"]),
                    rto_seconds=record.get("rto_seconds"),
                    rpo_seconds=record.get("rpo_seconds") or 0.0,
                    failed=int(record.get("failed") or 0),
                    requests=int(record.get("requests") or 0),
                    lost_writes=int(record.get("lost_writes") or 0),
                    report=record.get("report"))
            except (ValueError, KeyError, TypeError):
                continue
    except StateError:
        return []  # status never fails on the audit log; the commands that write it do
    return [last[k] for k in sorted(last)]


def reconcile_status(state: Path) -> ReconcileStatus | None:
    """The reconciler's record (reconcile.json), or None when there is none or it cannot
    be read (status never fails on it; the reconciler rewrites it)."""
    from hadeploy.reconcile import read_record
    from hadeploy.state import StateDir, StateError

    try:
        record = read_record(StateDir(state))
    except StateError:
        return None
    if record is None:
        return None
    return ReconcileStatus(**record.model_dump(exclude={"version"}))


def _history(state: Path, regions: list[str]) -> tuple[dict[str, Any], str | None]:
    """Recent probe history per region (written by 'watch'), read-only; ({}, None) when
    there is none, ({}, why) when the database cannot be read."""
    from hadeploy.history import HistoryError, history_path, read_summaries

    path = history_path(state)
    if not path.exists():
        return {}, None
    try:
        return read_summaries(path, regions, window=300), None
    except HistoryError as exc:
        return {}, exc.message


def _server_line(server: dict[str, Any]) -> Any:
    """One authoritative server: its answer and serial, or why it does not agree."""
    from rich.text import Text

    state = ((server["error"], "red") if server["error"] else (
        f"serial {server['serial']} → {', '.join(server['answer'] or []) or '(none)'}"
        f", writer {server['writer'] or '(none)'}", "" if server["agrees"] else "bold yellow"))
    return Text.assemble(("    ns ", "dim"), (server["name"], "bold"),
                         f" {server['address']}  ", state,
                         "" if server["agrees"] or server["error"] else
                         ("  BEHIND (resynced by 'up' or 'watch')", "yellow"))


def render_text(status: StatusDoc) -> Any:
    """A rich renderable for humans (the JSON document stays the contract)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    doc = status.model_dump(mode="json")
    dns = doc["dns"]
    answer = ", ".join(dns["answer"]) or "(no answer)"
    head = Text.assemble(
        ("deployment ", "dim"), (doc["deployment"], "bold"), ("  target ", "dim"),
        doc["target"], ("  active region ", "dim"),
        (doc["active_region"] or "NONE", "bold green" if doc["active_region"] else "bold red"),
        "\n", ("dns ", "dim"), f"{dns['record']} @ {dns['server']}:{dns['port']} → {answer}",
        *((("  ", ""), (dns["error"], "red")) if dns["error"] else ()),
        *((("  writer ", "dim"), (dns["writer"], "" if [dns["writer"]] == [
            r["name"] for r in doc["regions"] if r["active"]] else "bold yellow"))
          if dns.get("writer") else ()),
    )
    lines: list[Any] = [head, *(_server_line(s) for s in dns.get("servers") or [])]
    for region in doc["regions"]:
        mark = ("● ", "bold green") if region["active"] else ("  ", "")
        health = ("healthy", "green") if region["healthy"] else (
            f"UNHEALTHY ({region['endpoint']['error'] or region['endpoint']['status']})", "red")
        lines.append(Text.assemble(
            "\n", mark, (region["name"], "bold"), f"  {region['role']}, {region['standby']}  ",
            (region["url"], ""), "  ", health, ("  lb master ", "dim"),
            region["lb_master"] or "-", ("  FENCED (refuses writes)", "yellow")
            if region["fenced"] else ""))
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 4))
        for host in region["hosts"]:
            if host["healthy"]:
                ok = Text("ok", "green")
            elif host["standby"] and host.get("container") != "running":
                ok = Text("standby (stopped)", "dim")
            else:
                why = host.get("container") if host.get("container") not in (None, "running") \
                    else (host["error"] or host["status"] or "")
                ok = Text(f"DOWN {why}".strip(), "red")
            table.add_row(host["name"], host["kind"], host["address"], ok)
        lines.append(table)
        data = region.get("data")
        if data:
            where = (f"leader {data['leader']}" if data["leader"] else "no leader")
            behind = "" if data["lag_bytes"] is None else (
                f", {data['lag_bytes']} B / {data['lag_seconds']} s behind")
            style = "red" if data["role"] in ("down", "unknown") else "dim"
            lines.append(Text(f"    database: {data['role']} ({where}{behind})", style))
            for slot in data.get("slots") or []:
                held = "no WAL reserved" if slot["retained_bytes"] is None else (
                    f"retains {slot['retained_bytes']} B of WAL")
                lines.append(Text(f"      slot {slot['name']}: "
                                  f"{'active' if slot['active'] else 'INACTIVE'}, {held}"
                                  + (f" ({slot['wal_status']})" if slot["wal_status"] else ""),
                                  "dim" if slot["active"] else "yellow"))
            if data.get("slots_error"):
                lines.append(Text(f"      slots: unknown ({data['slots_error']})", "yellow"))
            check = data.get("integrity")
            if check:
                lines.append(Text(*_integrity_line(check)))
            archiving = data.get("archiving") or {}
            if (archiving or data.get("archiving_error")) and archiving.get("mode") != "off":
                lines.append(Text(*_archiving_line(data.get("archiving"),
                                                   data.get("archiving_error"))))
        if region.get("backup"):
            lines.append(Text(*_backup_line(region["backup"])))
        hist = region.get("history") or {}
        if hist.get("vantages"):
            parts = [f"{v} {d['availability'] * 100:.1f}% of {d['probes']}"
                     for v, d in hist["vantages"].items()]
            lines.append(Text(f"    probes, last {hist['window_seconds'] / 60:.0f} min: "
                              + ", ".join(parts), "dim"))
    lines += [Text(*_drill_line(drill)) for drill in doc.get("drills") or []]
    lines += [Text(*reconcile_line(rec)) for rec in [doc.get("reconcile")] if rec]
    return Group(*lines)


def reconcile_line(rec: dict[str, Any]) -> tuple[str, str]:
    """The status line of the GitOps reconciler, and its style."""
    synced = (f"in sync with {rec['revision'][:12]} (applied {rec['applied_at']})"
              if rec["revision"] else "nothing applied yet")
    text = f"reconcile: {rec['repo']} {rec['branch']}:{rec['path']}: {synced}"
    if rec["drift_seen"]:
        text += f"; drift seen and corrected at {rec['drift_at']}"
    if rec["result"] != "ok":
        head = (rec["head"] or "?")[:12]
        text += (f"; {rec['result'].upper()} at {head} ({rec['stage']}, attempt "
                 f"{rec['attempts']}): "
                 f"{(rec['error'] or '')[:300]}")
    text += f"; last check {rec['checked_at']}"
    return text, "dim" if rec["result"] == "ok" else "yellow" if rec["result"] == "failed" \
        else "red"


def _drill_line(drill: dict[str, Any]) -> tuple[str, str]:
    rto = "never" if drill["rto_seconds"] is None else f"{drill['rto_seconds']:.2f} s"
    return (f"drill {drill['scenario']}: {'met' if drill['met'] else 'NOT MET'} at "
            f"{drill['at']} (RTO {rto}, {drill['failed']} of {drill['requests']} requests "
            f"failed, {drill['lost_writes']} acknowledged writes lost)",
            "dim" if drill["met"] else "yellow")


