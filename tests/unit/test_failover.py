"""The failover engine with a fake DNS provider and fake region operations: guards,
journal/resume, audit. (The real thing runs on the lab in tests/integration.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hadeploy import config, failover
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.health import ProbeResult
from hadeploy.state import StateDir
from hadeploy.topology import lab_topology

DEP = config.from_regions(["east", "west"])
TOPO = lab_topology(DEP)
EAST, WEST = TOPO.region("east").vip, TOPO.region("west").vip


class FakeDns:
    verify_timeout = 10.0

    def __init__(self, answer: list[str], crash_on_replace: bool = False) -> None:
        self.answer, self.crash, self.replaced = answer, crash_on_replace, 0

    def read(self, record: str) -> list[str]:
        return list(self.answer)

    def replace(self, record: str, ttl: int, addresses: list[str]) -> None:
        if self.crash:
            raise KeyboardInterrupt  # the process dies between fence and DNS
        self.replaced += 1
        self.answer = list(addresses)

    def wait_visible(self, record: str, addresses: list[str], timeout: float = 10) -> float:
        assert self.answer == addresses
        return 0.0


class FakeOps:
    prepare_timeout = 60.0

    def __init__(self) -> None:
        self.calls: list[str] = []

    def prepare(self, region, timeout):
        self.calls.append(f"prepare {region.name}")
        return []

    def fence(self, region, timeout):
        self.calls.append(f"fence {region.name}")
        return "fenced"


@pytest.fixture
def healthy(monkeypatch):
    """Every probe succeeds unless the test flips ``state['ok']``."""
    state = {"ok": True}

    def fake_probe(url, timeout=1.0):
        return ProbeResult(url, state["ok"], 200 if state["ok"] else None, 1.0)
    monkeypatch.setattr(failover, "probe", fake_probe)
    monkeypatch.setattr(failover, "fetch_prober", lambda url, timeout: None)
    return state


def audit(state: StateDir) -> list[dict]:
    return [json.loads(line) for line in (state.path / "audit.jsonl").read_text().splitlines()]


def test_failover_fences_before_dns_and_audits(tmp_path: Path, healthy):
    state, dns, ops = StateDir(tmp_path), FakeDns([EAST]), FakeOps()
    out = failover.failover(DEP, TOPO, state, dns, ops, to="west", reason="drill")
    assert out.result == "done" and dns.answer == [WEST] and dns.replaced == 1
    assert ops.calls == ["prepare west", "fence east"]
    assert set(out.phases) >= {"lock", "plan", "prepare", "health", "fence", "dns", "verify"}
    rec = audit(state)[-1]
    assert rec["from"] == "east" and rec["to"] == "west" and rec["reason"] == "drill"
    assert rec["result"] == "done" and rec["user"] and rec["forced"] is False
    assert not (state.path / failover.JOURNAL).exists()


def test_already_active_is_a_no_op(tmp_path: Path, healthy):
    dns, ops = FakeDns([WEST]), FakeOps()
    out = failover.failover(DEP, TOPO, StateDir(tmp_path), dns, ops, to="west", reason="x")
    assert out.result == "already-active" and dns.replaced == 0 and ops.calls == []


def test_unhealthy_target_is_refused_unless_forced(tmp_path: Path, healthy):
    healthy["ok"] = False
    state, dns, ops = StateDir(tmp_path), FakeDns([EAST]), FakeOps()
    with pytest.raises(HadeployError) as info:
        failover.failover(DEP, TOPO, state, dns, ops, to="west", reason="x")
    assert info.value.code is ExitCode.REFUSED and dns.answer == [EAST]
    assert "fence east" not in ops.calls, "a refused run must not fence anything"
    assert audit(state)[-1]["result"] == "refused"
    out = failover.failover(DEP, TOPO, state, dns, ops, to="west", reason="x", force=True)
    assert out.result == "done" and audit(state)[-1]["forced"] is True
    assert "health guard overridden by --force" in out.actions


def test_unknown_region_is_bad_input(tmp_path: Path, healthy):
    with pytest.raises(HadeployError) as info:
        failover.failover(DEP, TOPO, StateDir(tmp_path), FakeDns([EAST]), FakeOps(),
                          to="mars", reason="x")
    assert info.value.code is ExitCode.BAD_INPUT


def test_dry_run_changes_nothing(tmp_path: Path, healthy):
    dns, ops = FakeDns([EAST]), FakeOps()
    out = failover.failover(DEP, TOPO, StateDir(tmp_path), dns, ops, to="west", reason="x",
                            dry_run=True)
    assert out.result == "dry-run" and dns.replaced == 0 and ops.calls == []


def test_killed_between_phases_then_rerun_converges(tmp_path: Path, healthy):
    state, ops = StateDir(tmp_path), FakeOps()
    with pytest.raises(KeyboardInterrupt):
        failover.failover(DEP, TOPO, state, FakeDns([EAST], crash_on_replace=True), ops,
                          to="west", reason="x")
    journal = failover.read_journal(state)
    assert journal and journal["from"] == "east" and journal["to"] == "west"
    dns = FakeDns([EAST])
    out = failover.failover(DEP, TOPO, state, dns, FakeOps(), to="west", reason="x")
    assert out.resumed and out.result == "done" and dns.answer == [WEST]
    assert failover.read_journal(state) is None


def test_killed_after_dns_change_resumes_instead_of_no_op(tmp_path: Path, healthy):
    """DNS already moved but the run died before verifying: the re-run finishes it."""
    state = StateDir(tmp_path)
    state.ensure()
    (state.path / failover.JOURNAL).write_text(json.dumps(
        {"id": "abc", "from": "east", "to": "west", "reason": "x"}))
    ops = FakeOps()
    out = failover.failover(DEP, TOPO, state, FakeDns([WEST]), ops, to="west", reason="x")
    assert out.resumed and out.result == "done" and out.id == "abc"
    assert "fence east" in ops.calls  # fencing is re-applied (idempotent)
