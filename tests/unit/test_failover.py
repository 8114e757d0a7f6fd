"""The failover engine with a fake DNS provider and fake region operations: its safety
rules as rules (fence before DNS, nothing changed before a refusal, nothing written by a dry
run), journal/resume, state files that cannot be trusted, audit.
(The real thing runs on the lab in tests/integration.)"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from hadeploy import config, failover, topology
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.failover import FailoverContext, FailoverRequest
from hadeploy.health import ProbeResult
from hadeploy.quorum import Seen, Vote, assess
from hadeploy.state import JOURNAL, StateDir, StateError
from hadeploy.targets import Fenced
from hadeploy.targets.lab.naming import lab_topology

DEP = config.from_regions(["east", "west"])
TOPO = lab_topology(DEP)
EAST, WEST = TOPO.region("east").vip, TOPO.region("west").vip


class Recorder(list[str]):
    """One ordered record of every change the fakes make, across DNS and regions."""


class FakeDns:
    verify_timeout = 10.0

    def __init__(self, answer: list[str], recorder: Recorder, *, crash_on_replace: bool = False,
                 writable: bool = True) -> None:
        self.answer, self.log, self.crash, self.writable = answer, recorder, crash_on_replace, \
            writable

    def read(self, record: str) -> list[str]:
        return list(self.answer)

    def check_writable(self) -> None:
        if not self.writable:
            raise HadeployError("no TSIG key", code=ExitCode.ENVIRONMENT)

    def replace(self, record: str, ttl: int, addresses: list[str]) -> None:
        if self.crash:
            raise KeyboardInterrupt  # the process dies between fence and DNS
        self.log.append(f"dns {','.join(addresses)}")
        self.answer = list(addresses)

    def wait_visible(self, record: str, addresses: list[str], timeout: float = 10) -> float:
        assert self.answer == addresses
        return 0.0


class FakeOps:
    prepare_timeout = 60.0
    lease = None  # no self-fencing (aws); the lab's lease: test_failover_lease below
    data = None  # a deployment without a database tier (the data moves: test_data_moves.py)

    def __init__(self, recorder: Recorder, state: StateDir | None = None) -> None:
        self.log, self.state = recorder, state

    def prepare(self, region, timeout):
        self.log.append(f"prepare {region.name}")
        return []

    def wait_writable(self, region, timeout):
        self.log.append(f"writable {region.name}")
        return f"{region.name} takes writes"

    def fence(self, region, timeout):
        if self.state is not None:
            self.state.set_region_flag("fenced", region.name, True)  # needs the lock
        self.log.append(f"fence {region.name}")
        return Fenced("fenced", True)


@pytest.fixture
def healthy(monkeypatch):
    """Every probe succeeds unless the test flips ``state['ok']``."""
    state = {"ok": True}

    def fake_probe(url, timeout=1.0):
        return ProbeResult(url, state["ok"], 200 if state["ok"] else None, 1.0)
    monkeypatch.setattr(failover, "probe", fake_probe)
    monkeypatch.setattr(failover, "fetch_prober", lambda url, timeout: None)
    return state


def world(tmp_path: Path, answer: list[str] | None = None, **dns_kw) -> tuple[
        FailoverContext, Recorder, FakeDns]:
    rec = Recorder()
    state = StateDir(tmp_path / "demo")
    dns = FakeDns([EAST] if answer is None else answer, rec, **dns_kw)
    return FailoverContext(DEP, state, TOPO, dns, FakeOps(rec, state)), rec, dns


def audit(state: StateDir) -> list[dict]:
    return list(state.audit_records())


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under root with its mode and content (directories: empty content)."""
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_mode, b"" if path.is_dir()
                                                else path.read_bytes())
    return out


# --- the rules, as rules ---------------------------------------------------------------------

def test_the_old_primary_is_fenced_before_dns_moves(tmp_path: Path, healthy):
    """One recorder sees both fakes: swapping fence and DNS in the engine fails this."""
    ctx, rec, dns = world(tmp_path)
    out = failover.failover(ctx, FailoverRequest(to="west", reason="drill"))
    assert out.result == "done" and dns.answer == [WEST]
    assert rec == ["prepare west", "fence east", f"dns {WEST}"]
    assert rec.index("fence east") < rec.index(f"dns {WEST}")


def test_failover_phases_and_audit(tmp_path: Path, healthy):
    ctx, _rec, _dns = world(tmp_path)
    out = failover.failover(ctx, FailoverRequest(to="west", reason="drill"))
    assert set(out.phases) >= {"lock", "plan", "prepare", "health", "fence", "dns", "verify"}
    rec = audit(ctx.state)[-1]
    assert rec["from"] == "east" and rec["to"] == "west" and rec["reason"] == "drill"
    assert rec["result"] == "done" and rec["user"] and rec["forced"] is False
    assert rec["at"].endswith("Z") and len(rec["at"]) == len("2026-11-28T10:47:15.123Z")
    assert not ctx.state.file(JOURNAL).exists()
    assert ctx.state.region_flags().fenced == ("east",)


def test_already_active_is_a_no_op(tmp_path: Path, healthy):
    ctx, rec, _dns = world(tmp_path, [WEST])
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert out.result == "already-active" and rec == []


def test_unhealthy_target_is_refused_unless_forced(tmp_path: Path, healthy):
    healthy["ok"] = False
    ctx, rec, dns = world(tmp_path)
    with pytest.raises(HadeployError) as info:
        failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert info.value.code is ExitCode.REFUSED and dns.answer == [EAST]
    assert rec == ["prepare west"], "a refused run must not fence or move anything"
    assert audit(ctx.state)[-1]["result"] == "refused"
    assert not ctx.state.file(JOURNAL).exists()
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x", force=True))
    assert out.result == "done" and audit(ctx.state)[-1]["forced"] is True
    assert "health guard overridden by --force" in out.actions


def seen(region: str, ok: bool, age: float) -> Seen:
    vote = Vote("cli", region, ok, 0 if ok else 3, 3 if ok else 0, time.time() - age)
    return Seen(assess(region, [vote], DEP.failover), time.time() - age)


def test_watch_verdict_spares_the_health_guard_a_second_probe_only_when_fresh(
        tmp_path: Path, healthy, monkeypatch):
    """A failover decided by watch carries the round's verdict on the target: used as is when
    healthy and no older than one probe interval (probing again would wait out the dead
    region's prober); anything else is probed, and an unhealthy probe still refuses."""
    probes: list[str] = []
    real = failover.probe
    monkeypatch.setattr(failover, "probe", lambda url, timeout=1.0: probes.append(url)
                        or real(url, timeout))
    ctx, _rec, dns = world(tmp_path)
    out = failover.failover(ctx, FailoverRequest(to="west", reason="watch",
                                                 seen=seen("west", True, 0.1)))
    assert out.result == "done" and probes == [] and "watch's round" in out.health["source"]
    interval = DEP.failover.probe_interval
    for stale in (seen("west", True, interval + 0.5), seen("west", False, 0.1),
                  seen("east", True, 0.1)):
        dns.answer, probes[:] = [EAST], []
        out = failover.failover(ctx, FailoverRequest(to="west", reason="watch", seen=stale))
        assert out.result == "done" and probes and out.health["source"] == "probed"
    healthy["ok"] = False  # watch saw it healthy long ago; it is not any more: refused
    dns.answer = [EAST]
    with pytest.raises(HadeployError) as info:
        failover.failover(ctx, FailoverRequest(to="west", reason="watch",
                                               seen=seen("west", True, interval + 0.5)))
    assert info.value.code is ExitCode.REFUSED and dns.answer == [EAST]


def test_after_an_unfence_only_the_target_is_probed_and_silent_probers_are_not_asked(
        tmp_path: Path, healthy, monkeypatch):
    """Prepare changed something (a fence lifted): the guard probes again, but only the
    target, and not the probers that did not answer watch's round (their region is gone:
    asking would wait out their timeout)."""
    probes: list[str] = []
    asked: list[str] = []
    real = failover.probe
    monkeypatch.setattr(failover, "probe", lambda url, timeout=1.0: probes.append(url)
                        or real(url, timeout))
    monkeypatch.setattr(failover, "fetch_prober", lambda url, timeout: asked.append(url))
    ctx, _rec, _dns = world(tmp_path)
    ctx.ops.prepare = lambda region, timeout: [f"lifted the fence of {region.name}"]
    out = failover.failover(ctx, FailoverRequest(to="west", reason="watch",
                                                 seen=seen("west", True, 0.1)))
    assert out.result == "done" and out.health["source"] == "probed"
    assert probes and all(url.startswith(TOPO.region("west").url) for url in probes), probes
    assert asked == [], "both probers were silent in the round"
    probes[:], _dns.answer = [], [EAST]
    failover.failover(ctx, FailoverRequest(to="west", reason="operator"))  # no round seen
    assert len(asked) == len([r for r in TOPO.regions if r.prober])


@pytest.mark.parametrize("to", ["mars", "", "west\n", "WEST"])
def test_unknown_or_empty_region_is_bad_input_before_anything(tmp_path: Path, healthy, to):
    ctx, rec, _dns = world(tmp_path)
    with pytest.raises(HadeployError) as info:
        failover.failover(ctx, FailoverRequest(to=to, reason="x"))
    assert info.value.code is ExitCode.BAD_INPUT and rec == []
    assert not ctx.state.path.exists()


def test_an_unsendable_change_is_refused_before_fencing(tmp_path: Path, healthy):
    ctx, rec, _dns = world(tmp_path, writable=False)
    with pytest.raises(HadeployError) as info:
        failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert info.value.code is ExitCode.ENVIRONMENT and rec == []


def test_dry_run_takes_no_lock_and_writes_nothing(tmp_path: Path, healthy):
    ctx, rec, _dns = world(tmp_path)
    ctx.state.ensure()
    ctx.state.path.chmod(0o755)  # a dry run must not even fix the mode
    before = snapshot(tmp_path)
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x", dry_run=True))
    assert out.result == "dry-run" and out.from_region == "east" and rec == []
    assert snapshot(tmp_path) == before


def test_dry_run_of_a_missing_state_dir_creates_nothing(tmp_path: Path, healthy):
    ctx, _rec, _dns = world(tmp_path)
    failover.failover(ctx, FailoverRequest(to="west", reason="x", dry_run=True))
    assert list(tmp_path.iterdir()) == []


# --- journal and resume ----------------------------------------------------------------------

def test_killed_between_phases_then_rerun_converges(tmp_path: Path, healthy):
    ctx, rec, _dns = world(tmp_path, crash_on_replace=True)
    with pytest.raises(KeyboardInterrupt):
        failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    journal = ctx.state.read_journal()
    assert journal and journal.from_region == "east" and journal.to == "west"
    ctx.dns = FakeDns([EAST], rec)
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert out.resumed and out.result == "done" and ctx.dns.answer == [WEST]
    assert ctx.state.read_journal() is None


def test_killed_after_dns_change_resumes_instead_of_no_op(tmp_path: Path, healthy):
    """DNS already moved but the run died before verifying: the re-run finishes it."""
    ctx, rec, _dns = world(tmp_path, [WEST])
    ctx.state.ensure()
    ctx.state.file(JOURNAL).write_text(json.dumps(
        {"version": 1, "id": "abcdef012345", "from": "east", "to": "west", "reason": "x",
         "operation": "failover", "started": "2026-11-28T10:00:00.000Z", "user": "ops"}))
    out = failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert out.resumed and out.result == "done" and out.id == "abcdef012345"
    assert "fence east" in rec  # fencing is re-applied (idempotent)


@pytest.mark.parametrize("journal", [
    {"id": "abcdef012345", "to": "west", "reason": "x", "started": "t", "user": "u"},  # no from
    {"id": "abc", "from": "east", "to": "west", "reason": "x", "started": "t", "user": "u"},
    {"id": "abcdef012345", "from": "mars", "to": "west", "reason": "x", "started": "t",
     "user": "u"},
    "{not json",
    [],
])
def test_a_journal_that_cannot_be_trusted_stops_before_any_change(tmp_path: Path, healthy,
                                                                  journal):
    ctx, rec, dns = world(tmp_path)
    ctx.state.ensure()
    path = ctx.state.file(JOURNAL)
    path.write_text(journal if isinstance(journal, str) else json.dumps(journal))
    with pytest.raises(StateError) as info:
        failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert str(path) in info.value.message and info.value.hint
    assert info.value.code is ExitCode.BAD_INPUT
    assert rec == [] and dns.answer == [EAST]


@pytest.mark.parametrize("content", ["garbage", '{"fenced": "east"}', '{"fenced": [1]}',
                                     '{"version": 1, "fenced": ["east"], "extra": 1}'])
def test_garbage_region_flags_stop_the_operation(tmp_path: Path, healthy, content):
    """A regions.json that cannot be read must not silently forget that a region is fenced."""
    ctx, rec, _dns = world(tmp_path)
    ctx.state.ensure()
    ctx.state.file("regions.json").write_text(content)
    with pytest.raises(StateError, match=r"regions\.json"):
        failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert rec == []


# --- self-fencing: the writer record and the lease -----------------------------------------

class WriterDns(FakeDns):
    """A provider that keeps the writer record too (the lab's RFC 2136 server)."""

    def __init__(self, *a, clear_fails: bool = False, **kw) -> None:
        super().__init__(*a, **kw)
        self.writer, self.clear_fails = "east", clear_fails

    def read_writer(self, record: str) -> str | None:
        assert record == TOPO.dns.writer_record
        return self.writer

    def set_writer(self, record: str, value: str) -> None:
        assert record == TOPO.dns.writer_record
        if self.clear_fails:
            raise HadeployError("DNS server did not answer", code=ExitCode.ENVIRONMENT)
        self.log.append(f"writer {value}")
        self.writer = value

    def replace(self, record: str, ttl: int, addresses: list[str], *,
                writer: tuple[str, str] | None = None) -> None:
        assert writer is not None and writer[0] == TOPO.dns.writer_record
        self.log.append(f"dns {','.join(addresses)} writer {writer[1]}")
        self.answer, self.writer = list(addresses), writer[1]


class PartitionedOps(FakeOps):
    """The old primary's load balancers run but cannot be reached: fencing is uncertain."""

    def __init__(self, recorder: Recorder, state: StateDir, lease: float | None) -> None:
        super().__init__(recorder, state)
        self.lease = lease

    def fence(self, region, timeout):
        self.state.set_region_flag("fenced", region.name, True)
        self.log.append(f"fence {region.name} (unreachable)")
        return Fenced("unreachable, recorded as fenced", False)


def lease_world(tmp_path: Path, ops_lease: float | None, monkeypatch, **dns_kw):
    rec = Recorder()
    state = StateDir(tmp_path / "demo")
    dns = WriterDns([EAST], rec, **dns_kw)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        rec.append("wait")
        slept.append(seconds)
    monkeypatch.setattr(failover.time, "sleep", sleep)
    ctx = FailoverContext(DEP, state, TOPO, dns, PartitionedOps(rec, state, ops_lease))
    return ctx, rec, dns, slept


def test_an_unreachable_old_primary_keeps_writes_until_its_lease_has_run_out(
        tmp_path: Path, healthy, monkeypatch):
    """Writer cleared first, then the (failed) fence, then a wait of the lease's bound
    counted from the clearing, and only then traffic and the right to write move, in one
    update. Waiting before clearing, or not at all, fails this."""
    ctx, rec, dns, slept = lease_world(tmp_path, 5.0, monkeypatch)
    out = failover.failover(ctx, FailoverRequest(to="west", reason="partition"))
    assert out.result == "done"
    assert rec == ["prepare west", "writer -", "fence east (unreachable)", "wait",
                   f"dns {WEST} writer west", "writable west"]
    bound = topology.lease_bound(5.0)
    assert len(slept) == 1 and bound - 0.5 < slept[0] <= bound
    assert dns.writer == "west" and "lease" in out.phases
    assert any("lease ran out" in a for a in out.actions)


def test_a_certain_fence_or_a_target_without_leases_does_not_wait(
        tmp_path: Path, healthy, monkeypatch):
    ctx, rec, _dns, slept = lease_world(tmp_path, None, monkeypatch)  # aws: no agents
    failover.failover(ctx, FailoverRequest(to="west", reason="x"))
    assert slept == [] and rec[-1] == f"dns {WEST} writer west"
    ctx2, rec2, _dns, slept2 = lease_world(tmp_path / "2", 5.0, monkeypatch)
    ctx2.ops = FakeOps(rec2, ctx2.state)  # every load balancer fenced: certain
    ctx2.ops.lease = 5.0
    failover.failover(ctx2, FailoverRequest(to="west", reason="x"))
    assert slept2 == [] and rec2 == ["prepare west", "writer -", "fence east",
                                     f"dns {WEST} writer west", "writable west"]


def test_no_move_when_the_old_primary_is_unreachable_and_the_writer_cannot_be_cleared(
        tmp_path: Path, healthy, monkeypatch):
    """Its agents might still hear the DNS server and keep their lease: moving writes
    now could let two regions take them. The run fails before the DNS change, resumable."""
    ctx, rec, dns, slept = lease_world(tmp_path, 5.0, monkeypatch, clear_fails=True)
    with pytest.raises(HadeployError) as err:
        failover.failover(ctx, FailoverRequest(to="west", reason="partition"))
    assert err.value.code is ExitCode.FAILED and "could not be fenced" in err.value.message
    assert dns.answer == [EAST] and dns.writer == "east" and slept == []
    assert ctx.state.file(JOURNAL).exists()
    assert not any(r.startswith("dns") for r in rec)
