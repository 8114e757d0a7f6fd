"""The database tier across regions: what every region's cluster is doing, and the moves
a failover makes with it (promote a standby region, demote the old primary region).

Every region runs a Patroni cluster; exactly one of them takes writes (the *data primary*),
the others are standby clusters streaming from it. The switch between the two is Patroni's
dynamic ``standby_cluster`` setting, changed through any member's REST API: setting it
demotes a whole region (its leader becomes a standby leader), clearing it promotes one.

Lag is measured two ways, both from Patroni's answers: bytes (the primary's write position
minus what the standby region replayed) and seconds (0 when nothing is missing, else the age
of the last commit the standby replayed; the heartbeat row commits every second on the
primary, so that age is never stale for lack of writes).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hadeploy import patroni
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.topology import Host, HostKind, RegionTopology, Topology, slot_name

if TYPE_CHECKING:
    from hadeploy.state import StateDir
    from hadeploy.targets import DataOps


@dataclass(frozen=True)
class DataState:
    region: str
    cluster: str
    view: patroni.ClusterView
    lag_bytes: int | None = None
    lag_seconds: float | None = None

    @property
    def role(self) -> str:
        return self.view.role

    @property
    def position(self) -> int | None:
        leader = self.view.leader
        return leader.position if leader else None


def observe(topo: Topology, timeout: float = 2.0) -> dict[str, DataState]:
    """Every region's cluster, asked at once; lag of each standby region against the
    region that takes writes (the one Patroni calls primary, else the recorded one)."""
    regions = [r for r in topo.regions if r.data is not None]
    hosts = [(h.name, h.address) for r in regions for h in r.of_kind(HostKind.DB)]
    port = regions[0].data.api_port if regions and regions[0].data else 8008
    answers = {m.name: m for m in patroni.members(hosts, port, timeout)}
    views = {r.name: patroni.ClusterView([answers[h.name] for h in r.of_kind(HostKind.DB)])
             for r in regions}
    writer = next((v.primary for v in views.values() if v.primary is not None), None)
    now = time.time()
    out = {}
    for region in regions:
        view = views[region.name]
        lag_bytes = lag_seconds = None
        leader = view.standby_leader
        if leader is not None and writer is not None and writer.location is not None \
                and leader.replayed is not None:
            lag_bytes = max(0, writer.location - leader.replayed)
            lag_seconds = 0.0 if lag_bytes == 0 or leader.replayed_at is None else round(
                max(0.0, now - leader.replayed_at), 3)
        assert region.data is not None
        out[region.name] = DataState(region.name, region.data.cluster, view, lag_bytes,
                                      lag_seconds)
    return out


def _addresses(region: RegionTopology) -> list[str]:
    return [h.address for h in region.of_kind(HostKind.DB)]


def standby_config(primary: RegionTopology, standby: RegionTopology) -> dict[str, object]:
    """Patroni's standby_cluster section: stream from the primary region's members
    through this region's permanent slot."""
    return {"host": ",".join(_addresses(primary)), "port": 5432,
            "primary_slot_name": slot_name(standby.name),
            "create_replica_methods": ["basebackup"]}


def primary_slots(topo: Topology, primary: RegionTopology) -> dict[str, object]:
    """Patroni's permanent ``slots`` of the primary region: one physical slot per standby
    region. Only the primary keeps them: on a standby leader a slot never advances and
    holds WAL until max_slot_wal_keep_size invalidates it."""
    return {slot_name(r.name): {"type": "physical"} for r in topo.regions
            if r.data is not None and r.name != primary.name}


def settle_region(data: DataOps, state: StateDir, region: RegionTopology,
                  primary: RegionTopology, *, wait: float = 0.0) -> str | None:
    """Put ``region``'s database in its role (``up`` and ``watch`` both do). A region marked
    for rejoin (its primary was deposed by a crash failover) gets a salvage copy first and
    loses the mark once its cluster answered; one that does not answer stays marked for the
    next try. What was done, or None."""
    marked = region.name in state.region_flags().rejoin
    done = data.settle(region, primary, salvage=marked, wait=wait)
    if marked and (done is not None or data.observe()[region.name].view.reachable):
        state.set_rejoin(region.name, False)
    return done


def wait_for(what: str, check: Callable[[], bool], timeout: float,
             interval: float = 0.2) -> float:
    """Poll ``check`` until it holds; the seconds it took (HadeployError on timeout)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise HadeployError(f"{what} did not happen within {timeout:.0f} s",
                                hint="see 'hadeploy status' for the database hosts",
                                code=ExitCode.FAILED)
        time.sleep(interval)
    return time.monotonic() - start


class HostRun(Protocol):
    """Runs a command on a database host (lab: podman exec; a VM: ssh): (rc, output)."""

    def __call__(self, host: Host, argv: list[str], *, user: str = "root",
                 timeout: float = 60.0) -> tuple[int, str]: ...


PG_BIN = "/usr/lib/postgresql/15/bin"
PG_DATA = "/var/lib/postgresql/15/main"


# What each slot holds back, on a primary or on a standby leader (whose position is what
# it replayed); wal_status says whether max_slot_wal_keep_size already cut the slot off.
SLOTS_SQL = ("SELECT slot_name, active, coalesce(wal_status, ''), coalesce(pg_wal_lsn_diff("
             "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
             "ELSE pg_current_wal_lsn() END, restart_lsn)::bigint::text, '') "
             "FROM pg_replication_slots ORDER BY slot_name")


INTEGRITY_RESULT = "/var/lib/postgresql/hadeploy-integrity.json"  # roles/postgresql
CHECKSUM_SQL = "SELECT coalesce(sum(checksum_failures), 0) FROM pg_stat_database"
# The last check's JSON (or null), then the live checksum failure count: one command.
INTEGRITY_READ = (f"cat {INTEGRITY_RESULT} 2>/dev/null || echo null; "
                  + shlex.join([f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-d", "hadeploy",
                                "-c", CHECKSUM_SQL]))


# The WAL archiver on a leader (pg_stat_archiver), the segments waiting for it, and the
# last error pgBackRest's asynchronous push left in its spool: one command, four lines.
ARCHIVER_SQL = ("SELECT current_setting('archive_mode'), pg_is_in_recovery(), archived_count, "
                "coalesce(last_archived_wal, ''), coalesce(to_char(last_archived_time AT TIME "
                "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), failed_count, "
                "coalesce(last_failed_wal, ''), coalesce(to_char(last_failed_time AT TIME ZONE "
                "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
                "coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false) "
                "FROM pg_stat_archiver")
ARCHIVER_READ = ("set -e; " + shlex.join([f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-F", "|",
                                          "-d", "hadeploy", "-c", ARCHIVER_SQL])
                 + f"; ls {PG_DATA}/pg_wal/archive_status | grep -c '[.]ready$' || true"
                 "; ls -t /var/spool/pgbackrest/archive/*/out/*.error 2>/dev/null | head -1 "
                 "| xargs -r awk 'NR == 1 { printf \"[%03d]\", $1; next } { printf \" %s\", $0 }' "
                 "| cut -c1-600; echo")
# pgBackRest's alarm for two primaries writing one timeline: a segment already in the
# repository with another checksum (error 045) - a push refused, never overwritten.
SPLIT_BRAIN_MARKS = ("[045]", "already exists in the repo")


@dataclass(frozen=True)
class Archiving:
    """Continuous WAL archiving on a leader: whether the segments reach the backup
    repositories. ``failing``: the last attempt failed and none succeeded since."""

    mode: str  # archive_mode (off: backups are off)
    in_recovery: bool  # a standby leader does not archive (its primary region does)
    archived: int
    last_archived_wal: str | None
    last_archived_at: str | None
    failed: int
    last_failed_wal: str | None
    last_failed_at: str | None
    failing: bool
    waiting: int  # segments ready for the archiver and not yet archived
    error: str | None  # what pgBackRest said about the last failed push

    @property
    def split_brain(self) -> bool:
        return self.failing and any(m in (self.error or "") for m in SPLIT_BRAIN_MARKS)


@dataclass(frozen=True)
class Integrity:
    checked_at: str | None  # the last scheduled check (None: never ran on this leader)
    ok: bool | None
    findings: list[str]  # what pg_amcheck reported (the first 20 lines)
    checksum_failures: int  # PostgreSQL's live count of data-checksum failures
    error: str | None = None  # the check could not run

    @property
    def corrupt(self) -> bool:
        return self.ok is False or self.checksum_failures > 0


@dataclass(frozen=True)
class Slot:
    name: str
    active: bool
    wal_status: str | None  # reserved, extended, unreserved or lost
    retained_bytes: int | None  # None: the slot never reserved WAL


def lsn_to_int(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class Clusters:
    """The moves a failover makes with the database tier of a topology.

    Switchover (the old primary region answers), with zero acknowledged writes lost by
    construction: :meth:`freeze` pauses Patroni in the old region and stops its leader
    cleanly (a fast shutdown flushes and streams every committed transaction; the shutdown
    checkpoint's position is the *demotion token*); :meth:`switch` waits until the new
    region replayed past the token, makes the old region a standby cluster of the new one
    (it is paused: nothing happens yet) and promotes the new one; :meth:`release` resumes
    the old region, whose leader then follows the new primary without a rewind.

    Crash failover (the old region is gone): :meth:`promote`. When the old region comes
    back its cluster starts paused (the boot fence); :meth:`salvage` keeps a copy of the
    data the old primary had (what a rewind throws away), then :meth:`release` resumes it
    as a standby (Patroni rewinds it).
    """

    def __init__(self, topo: Topology, password: str, run: HostRun, timeout: float = 3.0,
                 observe_timeout: float = 1.0) -> None:
        self.topo, self.password, self.run, self.timeout = topo, password, run, timeout
        # A failover observes every region first, a dead one included: keep that short.
        self.observe_timeout = observe_timeout

    def view(self, region: RegionTopology) -> patroni.ClusterView:
        port = region.data.api_port if region.data else 8008
        return patroni.ClusterView(patroni.members(
            [(h.name, h.address) for h in region.of_kind(HostKind.DB)], port, self.timeout))

    def observe(self) -> dict[str, DataState]:
        return observe(self.topo, self.observe_timeout)

    def _patch(self, region: RegionTopology, body: dict[str, object]) -> None:
        patroni.patch_config(_addresses(region), body, self.password, timeout=self.timeout)

    @staticmethod
    def _host(region: RegionTopology, name: str) -> Host:
        return next(h for h in region.of_kind(HostKind.DB) if h.name == name)

    def slots(self, region: RegionTopology, leader: str) -> list[Slot]:
        """The replication slots on ``leader`` and the WAL each one holds back (bytes from
        the slot's restart position to the server's current position)."""
        rc, out = self.run(self._host(region, leader), [
            f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-F", "|", "-c", SLOTS_SQL],
            user="postgres", timeout=self.timeout)
        if rc != 0:
            raise HadeployError(f"reading the replication slots on {leader} failed: "
                                f"{out.strip()[:200]}", code=ExitCode.FAILED)
        slots = []
        for line in out.splitlines():
            fields = line.split("|")
            if len(fields) == 4:
                name, active, wal_status, retained = fields
                slots.append(Slot(name, active == "t", wal_status or None,
                                  int(retained) if retained else None))
        return slots

    def integrity(self, region: RegionTopology, leader: str) -> Integrity:
        """The last scheduled integrity check (pg_amcheck, written by the hosts' timer) and
        PostgreSQL's live data-checksum failure count, read on ``leader``."""
        rc, out = self.run(self._host(region, leader), ["sh", "-c", INTEGRITY_READ],
                           user="postgres", timeout=self.timeout)
        lines = out.strip().splitlines()
        if rc != 0 or len(lines) < 2:
            raise HadeployError(f"reading the integrity check on {leader} failed: "
                                f"{out.strip()[:200]}", code=ExitCode.FAILED)
        try:
            last = json.loads(lines[0])
            live = int(lines[-1])
        except ValueError as exc:
            raise HadeployError(f"the integrity check on {leader} left an unreadable "
                                f"result: {exc}", code=ExitCode.FAILED) from None
        if not isinstance(last, dict):
            return Integrity(None, None, [], live, None)
        return Integrity(str(last.get("at")), last.get("ok") is True,
                         [str(f) for f in last.get("findings") or []], live,
                         last.get("error"))

    def archiving(self, region: RegionTopology, leader: str) -> Archiving:
        """The WAL archiver on ``leader``: counts, the last success and failure, segments
        waiting, and pgBackRest's last push error."""
        rc, out = self.run(self._host(region, leader), ["sh", "-c", ARCHIVER_READ],
                           user="postgres", timeout=self.timeout)
        lines = out.rstrip("\n").split("\n")
        fields = lines[0].split("|") if lines else []
        if rc != 0 or len(lines) < 2 or len(fields) != 9:
            raise HadeployError(f"reading the WAL archiver on {leader} failed: "
                                f"{out.strip()[:200]}", code=ExitCode.FAILED)
        mode, recovery, archived, a_wal, a_at, failed, f_wal, f_at, failing = fields
        return Archiving(mode=mode, in_recovery=recovery == "t", archived=int(archived),
                         last_archived_wal=a_wal or None, last_archived_at=a_at or None,
                         failed=int(failed), last_failed_wal=f_wal or None,
                         last_failed_at=f_at or None, failing=failing == "t",
                         waiting=int(lines[1] or 0),
                         error=(lines[2].strip() or None) if len(lines) > 2
                         and failing == "t" else None)

    def controldata(self, host: Host) -> dict[str, str]:
        rc, out = self.run(host, [f"{PG_BIN}/pg_controldata", PG_DATA], user="postgres",
                           timeout=20)
        if rc != 0:
            raise HadeployError(f"pg_controldata on {host.name} failed: {out.strip()[:200]}",
                                code=ExitCode.FAILED)
        return {k.strip(): v.strip() for k, v in
                (line.split(":", 1) for line in out.splitlines() if ":" in line)}

    # -- switchover ---------------------------------------------------------------------

    def wait_streaming(self, new: RegionTopology, timeout: float) -> float:
        """``new``'s standby leader streams from the primary (pg_stat_wal_receiver): a
        region that rejoined seconds ago may still be starting, and the old primary's
        shutdown checkpoint — the token a switchover waits for — is sent only to standbys
        connected when it stops."""
        def streaming() -> bool:
            leader = self.view(new).standby_leader
            if leader is None:
                return False
            rc, out = self.run(self._host(new, leader.name), [
                f"{PG_BIN}/psql", "-X", "-At", "-c",
                "SELECT status FROM pg_stat_wal_receiver"], user="postgres", timeout=10)
            return rc == 0 and out.strip() == "streaming"
        start = time.monotonic()
        while not streaming():
            if time.monotonic() - start > timeout:
                raise HadeployError(
                    f"{new.name}'s database does not stream from the primary (after "
                    f"{timeout:.0f} s): a switchover now would wait for a write it cannot "
                    "receive", hint="it may have rejoined moments ago: run the failover "
                    "again in a few seconds; 'hadeploy status' shows its lag",
                    code=ExitCode.REFUSED)
            time.sleep(0.2)
        return time.monotonic() - start

    def freeze(self, old: RegionTopology, timeout: float = 60.0) -> int:
        """Stop writes in ``old`` cleanly; its demotion token (a WAL position)."""
        self._patch(old, {"pause": True})
        wait_for(f"Patroni pausing in {old.name}",
                 lambda: all(m.paused for m in self.view(old).reachable), timeout)
        leader = self.view(old).primary
        if leader is None:
            raise HadeployError(f"{old.name}'s database has no running primary to stop",
                                hint="its cluster is down: fail over without it "
                                "(a crash failover)", code=ExitCode.FAILED)
        host = self._host(old, leader.name)
        # A checkpoint now keeps the shutdown checkpoint (inside the write pause) short.
        self.run(host, [f"{PG_BIN}/psql", "-X", "-q", "-c", "CHECKPOINT"], user="postgres",
                 timeout=timeout)
        _rc, out = self.run(host, [f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "stop", "-m", "fast",
                                   "-t", str(int(timeout))], user="postgres", timeout=timeout)
        control = self.controldata(host)
        if control.get("Database cluster state") != "shut down":
            raise HadeployError(f"{leader.name} did not shut down cleanly ({out.strip()[:200]};"
                                f" state {control.get('Database cluster state')})",
                                code=ExitCode.FAILED)
        return lsn_to_int(control["Latest checkpoint location"])

    def switch(self, old: RegionTopology, new: RegionTopology, token: int,
               timeout: float = 60.0) -> float:
        """Promote ``new`` once it replayed past ``token``; ``old`` (paused) will follow it
        when released. Seconds until ``new`` takes writes."""
        start = time.monotonic()

        def replayed() -> bool:
            leader = self.view(new).standby_leader
            return leader is not None and (leader.replayed or 0) > token
        if self.view(new).primary is None:
            wait_for(f"{new.name}'s database replaying the old primary's last write",
                     replayed, timeout, interval=0.02)
        self._patch(old, {"standby_cluster": standby_config(new, old), "slots": None})
        self._patch(new, {"standby_cluster": None, "slots": primary_slots(self.topo, new)})
        wait_for(f"the promotion of {new.name}'s database",
                 lambda: self.view(new).primary is not None, timeout, interval=0.02)
        return time.monotonic() - start

    # -- crash failover and rejoin --------------------------------------------------------

    def promote(self, new: RegionTopology, timeout: float = 60.0) -> float:
        """Make ``new``'s standby cluster the one that takes writes (its source is gone)."""
        if self.view(new).primary is not None:
            return 0.0
        self._patch(new, {"standby_cluster": None, "slots": primary_slots(self.topo, new)})
        return wait_for(f"the promotion of {new.name}'s database",
                        lambda: self.view(new).primary is not None, timeout)

    def salvage(self, region: RegionTopology) -> list[str]:
        """Copy the data directory of every member that stopped as a primary (what a rewind
        would throw away); where the copies are, as host:path."""
        kept = []
        for host in region.of_kind(HostKind.DB):
            try:
                state = self.controldata(host).get("Database cluster state")
            except HadeployError:
                continue
            if state not in ("in production", "shut down"):
                continue
            path = f"/var/lib/postgresql/salvage/{int(time.time())}-{host.name}.tar.gz"
            rc, out = self.run(host, ["sh", "-c", f"umask 077 && mkdir -p "
                                      f"{path.rsplit('/', 1)[0]} && tar -czf {path} -C "
                                      f"{PG_DATA} ."], user="postgres", timeout=600)
            if rc != 0:
                raise HadeployError(f"the salvage copy on {host.name} failed: "
                                    f"{out.strip()[:200]}", hint="the region stays paused; "
                                    "free space on the host and run again",
                                    code=ExitCode.FAILED)
            kept.append(f"{host.name}:{path}")
        return kept

    def release(self, region: RegionTopology, primary: RegionTopology,
                timeout: float = 120.0) -> str:
        """Resume a paused cluster in the role the deployment says: the primary again, or
        a standby of ``primary``."""
        if region.name == primary.name:
            self._patch(region, {"pause": None})
            wait_for(f"{region.name}'s database taking writes again",
                     lambda: self.view(region).primary is not None, timeout)
            return "resumed as the primary"
        self._patch(region, {"standby_cluster": standby_config(primary, region),
                             "slots": None, "pause": None})
        wait_for(f"{region.name}'s database following {primary.name}",
                 lambda: self.view(region).standby_leader is not None, timeout)
        self._repair_stuck(region)
        return f"resumed as a standby of {primary.name}"

    def _repair_stuck(self, region: RegionTopology, patience: float = 20.0) -> None:
        """Patroni 3.0.2 can leave a member whose timeline diverged running without
        streaming; a Patroni restart makes it compare timelines and rewind."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if all(m.role in ("standby_leader", "replica") for m in self.view(region).reachable):
                return
            time.sleep(1)
        for member in self.view(region).reachable:
            if member.role not in ("standby_leader", "replica"):
                self.run(self._host(region, member.name), ["systemctl", "restart", "patroni"])

    def settle(self, region: RegionTopology, primary: RegionTopology, *,
               salvage: bool, wait: float = 0.0) -> str | None:
        """Put ``region``'s cluster in the role the deployment says, from whatever state it
        came back in: paused by the boot fence, or (back quickly enough to keep its leader
        key) running as a primary that must not take another write. What was done, or
        None when it already is as it should be. ``wait``: seconds to wait for members
        that do not answer yet (hosts that were just started)."""
        members = len(region.of_kind(HostKind.DB))
        if wait > 0:
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and len(self.view(region).reachable) < members:
                time.sleep(1)
        view = self.view(region)
        paused = view.paused
        if not view.reachable:
            return None  # nothing answers: nothing to do until it comes back
        if region.name == primary.name:
            return self.release(region, primary) if paused else None
        if view.role == "standby" and not paused:
            return None
        if view.primary is not None:  # a deposed primary came back writable: stop it first
            self.freeze(region)
        elif not paused:
            self._patch(region, {"pause": True})
        kept = self.salvage(region) if salvage else []
        done = self.release(region, primary)
        return done + (f"; salvage copies: {', '.join(kept)}" if kept else "")
