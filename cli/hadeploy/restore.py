"""Point-in-time recovery of the running deployment's database (the lab's Patroni clusters).

The writable region's leader is restored in place from the backups (pgBackRest), every
other member of every region is re-seeded from it; DNS and the app are not touched. Steps,
each one safe to repeat (a failed run is finished by running ``restore`` again):

1. pause Patroni in every region (it must not promote or restart anything meanwhile), then
   stop Patroni and PostgreSQL on every member;
2. ``pgbackrest restore --delta`` on the writable region's leader, to the target;
3. start it by hand (sockets only) until recovery reaches the target and promotes it (a
   new timeline: the WAL of the old one stays in the archive), then stop it;
4. empty the region's other members, start Patroni and resume: the restored member leads
   (Patroni's failover lag limit is lifted meanwhile: the restored position is "behind"
   what the cluster last recorded) and the others clone it;
5. each standby region: members emptied, its state in etcd forgotten but its dynamic
   configuration kept, Patroni started: it is built again as a new standby cluster is,
   by cloning the primary region.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hadeploy import patroni
from hadeploy.data import PG_BIN, PG_DATA, Clusters, wait_for
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.topology import Host, HostKind, RegionTopology, Topology, stanza_name

RESTORE_POINT_RE = r"\A[A-Za-z0-9_.:-]{1,63}\Z"
RESTORE_LOG = "/var/lib/postgresql/hadeploy-restore.log"
SERVICE = "patroni"
MAX_LAG_ON_FAILOVER = 1048576  # roles/postgresql's bootstrap value (config.yml.j2)
NO_LAG_LIMIT = 1 << 40
ITEMS_SQL = "SELECT count(*) || '|' || coalesce(max(created_at)::text, '') FROM items"


@dataclass(frozen=True)
class RestoreTarget:
    """Where recovery stops: a time (UTC unless it says otherwise) or a restore point."""

    time: str | None = None  # normalised: 'YYYY-MM-DD HH:MM:SS.ffffff+00'
    name: str | None = None
    epoch: float | None = None  # the time as a POSIX timestamp

    @classmethod
    def parse(cls, time_value: str | None, name: str | None) -> RestoreTarget:
        if (time_value is None) == (name is None):
            raise HadeployError("give exactly one of --time and --name",
                                hint="e.g. --time 2026-11-28T17:05:00Z, or --name "
                                "before-migration (a restore point)", code=ExitCode.BAD_INPUT)
        if name is not None:
            if re.fullmatch(RESTORE_POINT_RE, name, re.ASCII) is None:
                raise HadeployError(f"--name {name[:70]!r} is not a restore point name",
                                    hint="1-63 letters, digits and _ . : -",
                                    code=ExitCode.BAD_INPUT)
            return cls(name=name)
        assert time_value is not None
        try:
            moment = _dt.datetime.fromisoformat(time_value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise HadeployError(f"--time {time_value[:70]!r} is not a timestamp",
                                hint="use ISO 8601, e.g. 2026-11-28T17:05:00Z or "
                                "'2026-11-28 18:05:00+01:00' (UTC when no offset is given)",
                                code=ExitCode.BAD_INPUT) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.UTC)
        utc = moment.astimezone(_dt.UTC)
        if utc.timestamp() > time.time() + 1:
            raise HadeployError(f"--time {utc:%Y-%m-%d %H:%M:%S} UTC is in the future",
                                hint="recovery can only stop at a moment that happened",
                                code=ExitCode.BAD_INPUT)
        return cls(time=utc.strftime("%Y-%m-%d %H:%M:%S.%f+00"), epoch=utc.timestamp())

    def check_reachable(self, repos: dict[str, dict[str, Any]]) -> None:
        """Refuse, before anything is touched, a target no backup can reach: no backup at
        all, or a time before the end of the oldest backup (``backup list`` answers)."""
        stops = [float(b["stopped_at"]) for r in repos.values()
                 for b in r.get("backups") or [] if b.get("stopped_at") is not None]
        if not stops:
            unreachable = [f"{n}: {r['error']}" for n, r in repos.items() if r.get("error")]
            raise HadeployError("no backup exists to restore from" + (
                f" ({'; '.join(unreachable)})" if unreachable else ""),
                hint="take one with 'hadeploy backup run'", code=ExitCode.REFUSED)
        if self.epoch is not None and self.epoch <= min(stops):
            oldest = _dt.datetime.fromtimestamp(min(stops), _dt.UTC).strftime(
                "%Y-%m-%d %H:%M:%S")
            raise HadeployError(
                f"--time {self.time} is before the oldest backup finished ({oldest} UTC): "
                "nothing can be recovered to it",
                hint="'hadeploy backup list' shows the backups; choose a later moment",
                code=ExitCode.REFUSED)

    def options(self) -> list[str]:
        if self.name is not None:
            return ["--type=name", f"--target={self.name}"]
        return ["--type=time", f"--target={self.time}"]

    def scratch_arg(self) -> str:
        return f"name={self.name}" if self.name is not None else f"time={self.time}"

    def describe(self) -> str:
        return f"restore point {self.name!r}" if self.name else f"{self.time} (UTC)"


@dataclass
class RestoreReport:
    target: str
    region: str
    leader: str
    steps: dict[str, float] = field(default_factory=dict)
    restored: dict[str, Any] = field(default_factory=dict)
    reseeded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "region": self.region, "leader": self.leader,
                "steps": self.steps, "restored": self.restored, "reseeded": self.reseeded,
                "notes": self.notes,
                "seconds": round(sum(self.steps.values()), 3)}


class PointInTimeRestore:
    def __init__(self, topo: Topology, clusters: Clusters,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        self.topo, self.clusters, self.log = topo, clusters, log
        self.run = clusters.run
        primary = topo.data_primary_region
        if primary is None:
            raise HadeployError("this deployment has no database tier to restore",
                                code=ExitCode.BAD_INPUT)
        self.primary = primary
        self.regions = [r for r in topo.regions if r.data is not None]

    def _sh(self, host: Host, what: str, argv: list[str], timeout: float = 600,
            ok: tuple[int, ...] = (0,)) -> str:
        rc, out = self.run(host, argv, user="postgres", timeout=timeout)
        if rc not in ok:
            raise HadeployError(f"{what} on {host.name} failed (exit {rc}): "
                                f"{out.strip()[-600:]}", hint=RESUME_HINT, code=ExitCode.FAILED)
        return out

    def _member(self, region: RegionTopology) -> Host:
        """Where a region's data is restored (primary) or cloned (standby): its leader, its
        first member whose Patroni answers, or (a re-run after a failure stopped Patroni
        everywhere) its first host; every other member is emptied and cloned from it."""
        view = self.clusters.view(region)
        chosen = view.leader or (view.reachable[0] if view.reachable else None)
        hosts = region.of_kind(HostKind.DB)
        host = next(h for h in hosts if h.name == chosen.name) if chosen else hosts[0]
        rc, out = self.run(host, ["true"], timeout=20)
        if rc != 0:
            raise HadeployError(f"{host.name} ({region.name}) cannot be reached: "
                                f"{out.strip()[-200:]}",
                                hint="its hosts must run: 'hadeploy status', 'hadeploy up'; "
                                "or take the region out of hadeploy.yaml",
                                code=ExitCode.FAILED)
        return host

    def restore(self, target: RestoreTarget) -> RestoreReport:
        leader = self._member(self.primary)
        standby_leaders = {r.name: self._member(r).name for r in self.regions
                           if r.name != self.primary.name}
        report = RestoreReport(target.describe(), self.primary.name, leader.name)
        self._step(report, "archive", lambda: self._archive_current(leader, report))
        self._step(report, "pause", self._pause_all)
        self._step(report, "stop", self._stop_all)
        self.log(f"restoring {leader.name} to {target.describe()}")
        self._step(report, "restore", lambda: self._sh(leader, "pgbackrest restore", [
            "pgbackrest", f"--stanza={stanza_name(self.topo.deployment)}", "--delta",
            *target.options(), "--target-action=promote", "--log-level-console=warn",
            "restore"], timeout=7200))
        self._step(report, "recovery", lambda: self._recover(leader, report))
        self._step(report, "resume_primary", lambda: self._resume_primary(leader))
        for region in self.regions:
            if region.name in standby_leaders:
                self._step(report, f"reseed_{region.name}", functools.partial(
                    self._reseed, region, standby_leaders[region.name]))
                report.reseeded.append(region.name)
        self._step(report, "replicas", lambda: self._wait_members(leader))
        return report

    def _step(self, report: RestoreReport, name: str, action: Callable[[], object]) -> None:
        start = time.monotonic()
        action()
        report.steps[name] = round(time.monotonic() - start, 3)
        self.log(f"{name}: {report.steps[name]:.1f} s")

    def _archive_current(self, leader: Host, report: RestoreReport) -> None:
        """While the primary runs: close its current WAL segment and wait until it is
        archived, so that recovery can reach a target in the last minute (segments are
        otherwise archived when full, or after archive_timeout)."""
        rc, out = self.run(leader, [f"{PG_BIN}/psql", "-X", "-A", "-t", "-c",
                                    "SELECT pg_walfile_name(pg_switch_wal()) WHERE NOT "
                                    "pg_is_in_recovery()"], user="postgres", timeout=20)
        segment = out.strip()
        if rc != 0 or not segment:
            report.notes.append("the primary was not running: the WAL it had not archived "
                                "yet is not in the backups")
            return

        def archived() -> bool:
            rc, out = self.run(leader, [f"{PG_BIN}/psql", "-X", "-A", "-t", "-c",
                                        "SELECT coalesce(last_archived_wal, '') FROM "
                                        "pg_stat_archiver"], user="postgres", timeout=10)
            return rc == 0 and out.strip()[:24] >= segment
        try:
            wait_for(f"WAL segment {segment} archived", archived, 60, interval=0.5)
        except HadeployError:
            report.notes.append(f"WAL segment {segment} was not archived within 60 s (is a "
                                "repository unreachable?): a target after it may not be "
                                "reachable")

    def _pause_all(self) -> None:
        """Pause every region whose Patroni runs (where none runs, the pause set by an
        earlier attempt is still in etcd)."""
        running = [r for r in self.regions if self.clusters.view(r).reachable]
        for region in running:
            self.clusters._patch(region, {"pause": True})
        for region in running:
            wait_for(f"Patroni pausing in {region.name}",
                     functools.partial(self._paused, region), 60)

    def _paused(self, region: RegionTopology) -> bool:
        return all(m.paused for m in self.clusters.view(region).reachable)

    def _stop_all(self) -> None:
        """Stop Patroni on every member (the pause stays in etcd: started again, it does
        nothing until hadeploy resumes it), then PostgreSQL where a paused Patroni left it
        running."""
        for region in self.regions:
            for host in region.of_kind(HostKind.DB):
                rc, out = self.run(host, ["systemctl", "stop", SERVICE], timeout=150)
                if rc != 0:
                    raise HadeployError(f"stopping Patroni on {host.name} failed: "
                                        f"{out.strip()[-300:]}", hint=RESUME_HINT,
                                        code=ExitCode.FAILED)
                # pg_ctl status: 0 running, 3 not running, 4 no data directory
                rc, _out = self.run(host, [f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "status"],
                                    user="postgres", timeout=30)
                if rc == 0:
                    self._sh(host, "stopping PostgreSQL", [
                        f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "stop", "-m", "fast", "-t", "120"],
                        timeout=150)

    def _start(self, region: RegionTopology) -> None:
        """Start Patroni on every member; wait until each answers (still paused)."""
        members = region.of_kind(HostKind.DB)
        for host in members:
            rc, out = self.run(host, ["systemctl", "start", SERVICE], timeout=150)
            if rc != 0:
                raise HadeployError(f"starting Patroni on {host.name} failed: "
                                    f"{out.strip()[-300:]}", hint=RESUME_HINT,
                                    code=ExitCode.FAILED)
        wait_for(f"Patroni answering on every member of {region.name}",
                 lambda: len(self.clusters.view(region).reachable) == len(members), 120)

    def _recover(self, leader: Host, report: RestoreReport) -> None:
        """Start the restored data directory by hand (sockets only: no client reaches it)
        until recovery reached the target and promoted it."""
        self._sh(leader, "starting the restored server", [
            f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "-l", RESTORE_LOG, "-o",
            "-c listen_addresses='' -c hot_standby=off -c synchronous_standby_names=''",
            "start"], timeout=60)

        def promoted() -> bool:
            rc, out = self.run(leader, [f"{PG_BIN}/psql", "-X", "-A", "-t", "-c",
                                        "SELECT pg_is_in_recovery()"], user="postgres",
                               timeout=10)
            if rc == 0 and out.strip() == "f":
                return True
            rc, _ = self.run(leader, [f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "status"],
                             user="postgres", timeout=10)
            if rc == 3:
                _rc, log = self.run(leader, ["tail", "-n", "8", RESTORE_LOG],
                                    user="postgres", timeout=10)
                raise HadeployError(
                    f"the restored server on {leader.name} stopped during recovery: "
                    f"{' | '.join(log.strip().splitlines())[-800:]}",
                    hint="a target before the oldest backup or after the newest archived "
                    "WAL cannot be reached: 'hadeploy backup list' shows what exists; then "
                    "run 'hadeploy restore' again with another target", code=ExitCode.FAILED)
            return False
        wait_for("recovery to the target", promoted, 7200, interval=0.5)
        out = self._sh(leader, "reading the restored data", [
            f"{PG_BIN}/psql", "-X", "-A", "-t", "-d", "hadeploy", "-c", ITEMS_SQL])
        count, _, newest = out.strip().partition("|")
        control = self.clusters.controldata(leader)
        report.restored = {"items": int(count or 0), "newest_item_at": newest or None,
                           "timeline": int(control.get("Latest checkpoint's TimeLineID", 0))}
        self._sh(leader, "stopping the restored server", [
            f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "stop", "-m", "fast", "-t", "120"],
            timeout=150)

    def _empty(self, host: Host) -> None:
        self._sh(host, "emptying the data directory", [
            "find", PG_DATA, "-mindepth", "1", "-delete"], timeout=300)

    def _resume_primary(self, leader: Host) -> None:
        for host in self.primary.of_kind(HostKind.DB):
            if host.name != leader.name:
                self._empty(host)  # Patroni clones it from the restored leader
        self._start(self.primary)
        # The restored position is behind what the cluster last recorded for its leader:
        # Patroni would refuse to promote a member that far "behind" (its failover lag
        # limit), so the limit is lifted until the restored member leads. Resumed, the
        # member starts as a replica and promotes itself (one more timeline).
        self.clusters._patch(self.primary, {"maximum_lag_on_failover": NO_LAG_LIMIT,
                                            "pause": None})

        def settled() -> bool:
            rc, out = self.run(leader, [f"{PG_BIN}/psql", "-X", "-A", "-t", "-c",
                                        "SELECT pg_is_in_recovery()"], user="postgres",
                               timeout=10)
            view = self.clusters.view(self.primary)
            return rc == 0 and out.strip() == "f" and view.primary is not None \
                and view.primary.name == leader.name
        wait_for(f"{leader.name} taking writes as the restored primary", settled, 120)
        self.clusters._patch(self.primary, {"maximum_lag_on_failover": MAX_LAG_ON_FAILOVER})
        # Clone the standby regions from a settled primary, after a checkpoint.
        self._sh(leader, "a checkpoint", [f"{PG_BIN}/psql", "-X", "-q", "-c", "CHECKPOINT"])

    def _reseed(self, region: RegionTopology, first: str) -> None:
        """A standby region built again the way Patroni builds a new standby cluster: its
        members emptied, its state in etcd forgotten (but its dynamic configuration, which
        names the primary region, kept and resumed), then Patroni started: one member
        clones the primary region and leads, the others clone it."""
        assert region.data is not None
        for host in region.of_kind(HostKind.DB):
            self._empty(host)
        host = next(h for h in region.of_kind(HostKind.DB) if h.name == first)
        self._sh(host, "forgetting the cluster's state in etcd", [
            "python3", "-c", FORGET, region.data.cluster], timeout=60)
        self._start(region)
        wait_for(f"{region.name}'s database following {self.primary.name}",
                 lambda: self.clusters.view(region).standby_leader is not None, 600,
                 interval=1)
        leader = self.clusters.view(region).standby_leader
        assert leader is not None
        self._wait_streaming(next(h for h in region.of_kind(HostKind.DB)
                                  if h.name == leader.name))

    def _streaming(self, host: Host) -> bool:
        rc, out = self.run(host, [f"{PG_BIN}/psql", "-X", "-A", "-t", "-c",
                                  "SELECT status FROM pg_stat_wal_receiver"],
                           user="postgres", timeout=10)
        return rc == 0 and out.strip() == "streaming"

    def _wait_streaming(self, host: Host, patience: float = 30.0) -> None:
        """The standby leader streams from the restored primary; one restart through
        Patroni when its WAL receiver does not come back by itself."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if self._streaming(host):
                return
            time.sleep(1)
        patroni.restart(host.address, self.clusters.password)
        wait_for(f"{host.name} streaming from the restored primary",
                 functools.partial(self._streaming, host), 60, interval=1)

    def _wait_members(self, leader: Host, timeout: float = 300) -> None:
        """Every member of every region streams again (replicas re-cloned)."""
        def running() -> bool:
            return all(m.state in ("running", "streaming")
                       for r in self.regions for m in self.clusters.view(r).members)
        wait_for("every database member running again", running, timeout, interval=1)


# Run on a member of a stopped standby cluster: delete every key of the cluster in its etcd
# but its dynamic configuration, which loses only the pause.
FORGET = """
import json, os, subprocess, sys
prefix = "/service/" + sys.argv[1] + "/"
def ctl(*args, stdin=None):
    return subprocess.run(["etcdctl", "--endpoints=http://127.0.0.1:2379",
                           "--command-timeout=5s", *args], input=stdin, text=True,
                          capture_output=True, check=True, env={**os.environ, "ETCDCTL_API": "3"})
for key in ctl("get", "--prefix", "--keys-only", prefix).stdout.split():
    if key != prefix + "config":
        ctl("del", key)
config = json.loads(ctl("get", "--print-value-only", prefix + "config").stdout or "{}")
config.pop("pause", None)
ctl("put", prefix + "config", stdin=json.dumps(config, separators=(",", ":")))
"""

RESUME_HINT = ("the database tier is paused mid-restore (no writes are taken): fix the cause "
               "and run the same 'hadeploy restore' again; it repeats every step safely")
