"""The failover engine's database moves, with fake data operations sharing one recorder with
the DNS and region fakes: a switchover when the old primary's database answers (freeze,
replay, promote, DNS, rejoin — in that order), a crash failover bounded by the RPO budget,
and a resumed run that reuses the demotion token instead of stopping a database twice.
(The real moves run against Patroni in tests/integration/test_data_lab.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hadeploy import config, failover
from hadeploy.data import DataState
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.failover import FailoverContext, FailoverRequest
from hadeploy.health import ProbeResult
from hadeploy.history import DataRow, History, history_path
from hadeploy.patroni import ClusterView, Member
from hadeploy.state import JOURNAL, StateDir
from hadeploy.targets import Fenced
from hadeploy.targets.lab.naming import lab_topology
from tests.unit.test_failover import FakeDns, Recorder

DEP = config.from_regions(["east", "west"])
TOPO = lab_topology(DEP)
EAST, WEST = TOPO.region("east").vip, TOPO.region("west").vip


def cluster(role: str) -> ClusterView:
    if role == "down":
        return ClusterView([Member("db1", "10.0.0.1", error="ConnectionRefusedError")])
    member_role = {"primary": "primary", "standby": "standby_leader"}[role]
    return ClusterView([Member("db1", "10.0.0.1", role=member_role, state="running",
                               location=100 if role == "primary" else None,
                               replayed=90 if role == "standby" else None)])


class FakeData:
    def __init__(self, rec: Recorder, roles: dict[str, str]) -> None:
        self.rec, self.roles = rec, roles
        self.not_streaming: set[str] = set()

    def observe(self) -> dict[str, DataState]:
        return {name: DataState(name, f"hd-demo-{name}", cluster(role))
                for name, role in self.roles.items()}

    def wait_streaming(self, new, timeout):
        self.rec.append(f"streaming {new.name}")
        if new.name in self.not_streaming:
            raise HadeployError(f"{new.name}'s database does not stream",
                                code=ExitCode.REFUSED)
        return 0.0

    def freeze(self, old):
        self.rec.append(f"freeze {old.name}")
        return 4242

    def switch(self, old, new, token):
        self.rec.append(f"switch {old.name}->{new.name} past {token}")
        self.roles[new.name], self.roles[old.name] = "primary", "standby"
        return 0.1

    def promote(self, new):
        self.rec.append(f"promote {new.name}")
        self.roles[new.name] = "primary"
        return 0.1

    def settle(self, region, primary, *, salvage, wait=0.0):
        self.rec.append(f"settle {region.name} as standby of {primary.name}"
                        + (" with salvage" if salvage else ""))
        return "resumed as a standby"


class FakeOps:
    prepare_timeout = 60.0
    lease = None

    def __init__(self, rec: Recorder, state: StateDir, data: FakeData) -> None:
        self.rec, self.state, self.data = rec, state, data

    def prepare(self, region, timeout):
        return []

    def fence(self, region, timeout):
        self.state.set_region_flag("fenced", region.name, True)
        self.rec.append(f"fence {region.name}")
        return Fenced("fenced", True)


@pytest.fixture(autouse=True)
def healthy(monkeypatch):
    monkeypatch.setattr(failover, "probe",
                        lambda url, timeout=1.0: ProbeResult(url, True, 200, 1.0))
    monkeypatch.setattr(failover, "fetch_prober", lambda url, timeout: None)


def world(tmp_path: Path, roles: dict[str, str], **kw) -> tuple[FailoverContext, Recorder]:
    rec = Recorder()
    state = StateDir(tmp_path / "demo")
    dep = config.parse({**DEP.model_dump(mode="json"), "data": kw}) if kw else DEP
    ctx = FailoverContext(dep, state, TOPO, FakeDns([EAST], rec),
                          FakeOps(rec, state, FakeData(rec, roles)))
    return ctx, rec


def test_switchover_order_fence_freeze_promote_dns_rejoin(tmp_path: Path):
    ctx, rec = world(tmp_path, {"east": "primary", "west": "standby"})
    out = failover.failover(ctx, FailoverRequest(to="west", reason="drill"))
    assert rec == ["streaming west", "fence east", "freeze east",
                   "switch east->west past 4242", f"dns {WEST}", "settle east as standby of west"]
    assert out.data == {"mode": "switchover", "from": "east", "token": 4242, "lost": 0}
    assert ctx.state.region_flags().data_primary == "west"
    assert set(out.phases) >= {"data", "fence", "freeze", "promote", "dns", "rejoin"}


def test_crash_failover_is_refused_without_an_estimate(tmp_path: Path):
    ctx, rec = world(tmp_path, {"east": "down", "west": "standby"})
    with pytest.raises(HadeployError) as info:
        failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert info.value.code is ExitCode.REFUSED and "--allow-data-loss" in (info.value.hint or "")
    assert rec == [], "a refused failover changes nothing"
    assert not ctx.state.file(JOURNAL).exists()
    assert ctx.state.region_flags().data_primary is None


def test_crash_failover_within_the_budget_promotes_and_marks_the_old_region(tmp_path: Path):
    ctx, rec = world(tmp_path, {"east": "down", "west": "standby"}, rpo_budget=5)
    db = History(history_path(ctx.state.path))
    db.add_data([DataRow(time.time() - 2, "west", "standby", 90, 8192, 0.4)])
    db.close()
    out = failover.failover(ctx, FailoverRequest(to="west", reason="east burned"))
    assert rec == ["fence east", "promote west", f"dns {WEST}"]
    assert out.data["mode"] == "failover" and out.data["estimate"]["seconds"] == 0.4
    assert out.data["estimate"]["bytes"] == 8192 and out.data["estimate"]["source"] == "watch"
    flags = ctx.state.region_flags()
    assert flags.data_primary == "west" and flags.rejoin == ("east",)
    audit = list(ctx.state.audit_records())[-1]
    assert audit["data"]["estimate"]["seconds"] == 0.4  # the estimate is audited


def test_crash_failover_beyond_the_budget_needs_allow_data_loss(tmp_path: Path):
    ctx, rec = world(tmp_path, {"east": "down", "west": "standby"}, rpo_budget=1)
    db = History(history_path(ctx.state.path))
    db.add_data([DataRow(time.time() - 2, "west", "standby", 90, 10**6, 3.5)])
    db.close()
    with pytest.raises(HadeployError, match=r"about 3.5 s"):
        failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert rec == []
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x", allow_data_loss=True))
    assert "promote west" in rec and out.data["allowed"] is True


def killed_switchover(ctx: FailoverContext) -> None:
    """The journal a switchover east -> west leaves when killed after freezing east (its
    demotion token 777)."""
    ctx.state.ensure()
    ctx.state.file(JOURNAL).write_text(json.dumps(
        {"version": 1, "id": "abcdef012345", "from": "east", "to": "west", "reason": "x",
         "operation": "failover", "started": "2026-11-28T10:00:00.000Z", "user": "ops",
         "data_token": 777}))


def test_a_resumed_switchover_reuses_the_token(tmp_path: Path):
    """Killed after the old primary's database was stopped: the re-run must not try to stop
    it again (it is down), it waits for the recorded token."""
    ctx, rec = world(tmp_path, {"east": "primary", "west": "standby"})
    killed_switchover(ctx)
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert out.resumed and "freeze east" not in rec
    assert "switch east->west past 777" in rec


def test_a_switchover_killed_after_its_switch_still_rejoins_the_old_primary(tmp_path: Path):
    """Killed between the switch and DNS (what 'drill operator' does): the re-run finds the
    target already primary, moves DNS, and the old primary region still follows it."""
    ctx, rec = world(tmp_path, {"east": "standby", "west": "primary"})
    killed_switchover(ctx)
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert out.resumed and rec == ["fence east", f"dns {WEST}",
                                   "settle east as standby of west"]
    assert out.data == {"mode": "already-primary", "region": "west", "from": "east"}


def test_the_target_already_taking_writes_moves_only_traffic(tmp_path: Path):
    ctx, rec = world(tmp_path, {"east": "standby", "west": "primary"})
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert rec == ["fence east", f"dns {WEST}"]
    assert out.data == {"mode": "already-primary", "region": "west"}


def test_slots_are_read_on_the_leader_and_reported_per_region(monkeypatch):
    """status shows the WAL each slot retains; a region whose slots cannot be read says why
    instead of failing the whole status."""
    from hadeploy import data, status
    from hadeploy.data import Clusters

    calls = []

    def run(host, argv, *, user="root", timeout=60.0):
        calls.append((host.name, user, argv[-1]))
        if "west" in host.name:
            return 2, "psql: error: connection refused"
        return 0, "standby_north|f||\nstandby_west|t|reserved|16384\n"

    clusters = Clusters(TOPO, "pw", run)
    east_db = TOPO.region("east").of_kind(data.HostKind.DB)[0].name
    slots = clusters.slots(TOPO.region("east"), east_db)
    assert slots == [data.Slot("standby_north", False, None, None),
                     data.Slot("standby_west", True, "reserved", 16384)]
    assert calls[0][:2] == (east_db, "postgres") and "pg_replication_slots" in calls[0][2]

    views = {"east": "primary", "west": "standby"}
    monkeypatch.setattr(data, "observe", lambda topo, timeout: {
        name: DataState(name, f"hd-demo-{name}", ClusterView([Member(
            next(h.name for h in topo.region(name).of_kind(data.HostKind.DB)), "10.0.0.1",
            role="primary" if role == "primary" else "standby_leader", state="running")]))
        for name, role in views.items()})
    doc = status.data_status(TOPO, 1.0, status.DataReaders(slots=clusters.slots))
    assert [s.retained_bytes for s in doc["east"].slots or []] == [None, 16384]
    assert doc["west"].slots is None and "connection refused" in (doc["west"].slots_error or "")
    assert status.data_status(TOPO, 1.0)["east"].slots is None  # a target without a reader


def test_integrity_is_read_on_the_leader_and_corruption_degrades_status(monkeypatch):
    from hadeploy import data, status
    from hadeploy.data import Clusters

    answers = {"east": '{"at": "2026-11-28T15:00:00Z", "ok": true, "findings": []}\n0\n',
               "west": "null\n2\n"}

    def run(host, argv, *, user="root", timeout=60.0):
        assert user == "postgres" and "pg_stat_database" in argv[-1]
        return 0, answers["east" if "east" in host.name else "west"]

    clusters = Clusters(TOPO, "pw", run)
    db = {r: TOPO.region(r).of_kind(data.HostKind.DB)[0].name for r in ("east", "west")}
    ok = clusters.integrity(TOPO.region("east"), db["east"])
    assert ok.ok is True and not ok.corrupt and ok.checked_at == "2026-11-28T15:00:00Z"
    never = clusters.integrity(TOPO.region("west"), db["west"])
    assert never.checked_at is None and never.corrupt  # 2 live checksum failures

    monkeypatch.setattr(data, "observe", lambda topo, timeout: {
        name: DataState(name, f"hd-demo-{name}", ClusterView([Member(
            db[name], "10.0.0.1", role=role, state="running")]))
        for name, role in (("east", "primary"), ("west", "standby_leader"))})
    docs = status.data_status(TOPO, 1.0, status.DataReaders(integrity=clusters.integrity))
    assert docs["east"].integrity.ok is True
    assert docs["west"].integrity.checksum_failures == 2
    line, style = status._integrity_line(docs["west"].integrity.model_dump())
    assert "CORRUPTION" in line and "2 data-checksum failure(s)" in line and style == "red"
    answers["east"] = "garbage\n0\n"
    with pytest.raises(HadeployError, match="unreadable"):
        clusters.integrity(TOPO.region("east"), db["east"])


def test_wal_archiving_is_read_on_the_leader_and_a_refused_push_degrades_status(monkeypatch):
    from hadeploy import data, status
    from hadeploy.data import Clusters

    ok = ("on|f|12|00000001000000000000000C|2026-11-28T15:00:00Z|0|||f\n0\n\n")
    refused = ("on|f|12|00000001000000000000000C|2026-11-28T15:00:00Z|3|"
               "00000001000000000000000D|2026-11-28T15:01:00Z|t\n2\n[045] WAL file "
               "00000001000000000000000D already exists in the repo1 archive with a "
               "different checksum\n")
    answers = {"east": ok, "west": "on|t|0|||0|||f\n0\n\n"}

    def run(host, argv, *, user="root", timeout=60.0):
        assert user == "postgres" and "pg_stat_archiver" in argv[-1]
        return 0, answers["east" if "east" in host.name else "west"]

    clusters = Clusters(TOPO, "pw", run)
    db = {r: TOPO.region(r).of_kind(data.HostKind.DB)[0].name for r in ("east", "west")}
    wal = clusters.archiving(TOPO.region("east"), db["east"])
    assert wal.archived == 12 and not wal.failing and wal.error is None
    assert wal.last_archived_at == "2026-11-28T15:00:00Z" and wal.last_failed_wal is None

    monkeypatch.setattr(data, "observe", lambda topo, timeout: {
        name: DataState(name, f"hd-demo-{name}", ClusterView([Member(
            db[name], "10.0.0.1", role=role, state="running")]))
        for name, role in (("east", "primary"), ("west", "standby_leader"))})
    readers = status.DataReaders(archiving=clusters.archiving)
    docs = status.data_status(TOPO, 1.0, readers)
    assert docs["east"].archiving.failing is False and docs["west"].archiving.in_recovery
    assert "ok (12 segment(s)" in status._archiving_line(
        docs["east"].archiving.model_dump(), None)[0]
    assert "standby does not archive" in status._archiving_line(
        docs["west"].archiving.model_dump(), None)[0]

    answers["east"] = refused
    east = status.data_status(TOPO, 1.0, readers)["east"].archiving
    assert east.failing and east.split_brain and east.waiting == 2
    line, style = status._archiving_line(east.model_dump(), None)
    assert "FAILING since 2026-11-28T15:01:00Z" in line and "SPLIT BRAIN" in line
    assert style == "red"
    # a push failing for another reason (a repository down) is not called a split brain
    answers["east"] = refused.replace("[045] WAL file", "[049] unable to connect; file")\
        .replace("already exists in the repo1 archive with a different checksum", "x")
    east = status.data_status(TOPO, 1.0, readers)["east"].archiving
    assert east.failing and not east.split_brain

    answers["east"] = "ERROR: no such thing\n"
    doc = status.data_status(TOPO, 1.0, readers)["east"]
    assert doc.archiving is None and "reading the WAL archiver" in (doc.archiving_error or "")
    assert "unknown" in status._archiving_line(None, doc.archiving_error)[0]


def test_a_switchover_to_a_region_that_does_not_stream_yet_is_refused_before_any_change(
        tmp_path: Path):
    """The old primary's last write reaches only a standby streaming when it stops: a
    region that rejoined moments ago is waited for, and refused (nothing fenced, frozen
    or moved) when it does not stream in time."""
    ctx, rec = world(tmp_path, {"east": "primary", "west": "standby"})
    ctx.ops.data.not_streaming.add("west")
    with pytest.raises(HadeployError) as err:
        failover.failover(ctx, FailoverRequest(to="west", reason="drill"))
    assert err.value.code is ExitCode.REFUSED
    assert rec == ["streaming west"]
    assert ctx.state.region_flags().fenced == ()
