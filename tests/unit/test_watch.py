"""The watch loop's decisions, with fake probes/DNS: no flapping, min interval, fences."""

from __future__ import annotations

from pathlib import Path

import pytest

from hadeploy import config, failover
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.health import ProbeResult
from hadeploy.state import StateDir
from hadeploy.targets import Fenced, Runtime
from hadeploy.targets.lab.naming import lab_topology
from hadeploy.watch import Watcher

DEP = config.parse({**config.from_regions(["east", "west"]).model_dump(mode="json"),
                    "failover": {"probe_interval": 0.1, "probe_timeout": 0.05,
                                 "failure_threshold": 3, "quorum": 1, "hold_down": 0,
                                 "min_interval": 300}})


class World:
    def __init__(self, tmp: Path, monkeypatch) -> None:
        self.state = StateDir(tmp / "demo")
        self.up = {"east": True, "west": True}
        self.active = "east"
        self.failovers: list[str] = []
        self.refenced: list[str] = []

        def fake_probe(url, timeout=1.0):
            region = next(r.name for r in lab_topology(DEP).regions if url.startswith(r.url))
            ok = self.up[region]
            return ProbeResult(url, ok, 200 if ok else None, 1.0)
        monkeypatch.setattr(failover, "probe", fake_probe)
        monkeypatch.setattr(failover, "fetch_prober", lambda url, timeout: None)

    def topology(self):
        flags = self.state.region_flags()
        return lab_topology(DEP, promoted=flags.names("promoted"), fenced=flags.names("fenced"))

    def watcher(self) -> Watcher:
        world = self

        def do_failover(to, reason, seen=None):
            with self.state.lock("failover"):
                self.failovers.append(to)
                self.active = to
                self.state.set_region_flag("fenced", "east" if to == "west" else "west", True)

        class Dns:
            def read(self, record):
                return [world.topology().region(world.active).vip]

        class Ops:
            data = None

            def fence(self, region, timeout):
                world.state.set_region_flag("fenced", region.name, True)  # needs the lock
                world.refenced.append(region.name)
                return Fenced("fenced", True)

        runtime = Runtime(topology=self.topology, dns=lambda topo: Dns(),
                          region_ops=lambda topo: Ops(), status=lambda t: None)
        return Watcher(DEP, self.state, runtime, do_failover, log=lambda m: None)

    def decisions(self) -> list[str]:
        return [r.get("decision", "") for r in self.state.audit_records()]


@pytest.fixture
def world(tmp_path, monkeypatch):
    return World(tmp_path, monkeypatch)


def rounds(w: Watcher, n: int) -> None:
    from hadeploy.history import History

    h = History(w.state.path / "history.sqlite")
    for _ in range(n):
        w.round(h)
    h.close()


def test_fails_over_after_threshold_only(world):
    w = world.watcher()
    rounds(w, 2)
    world.up["east"] = False
    rounds(w, 2)
    assert world.failovers == []  # 2 failures < threshold 3
    rounds(w, 1)
    assert world.failovers == ["west"]


def test_blink_below_threshold_does_nothing(world):
    w = world.watcher()
    world.up["east"] = False
    rounds(w, 2)
    world.up["east"] = True
    rounds(w, 5)
    assert world.failovers == []


def test_min_interval_prevents_flapping_and_no_auto_failback(world):
    w = world.watcher()
    world.up["east"] = False
    rounds(w, 3)
    assert world.failovers == ["west"]
    world.up["east"], world.up["west"] = True, False  # now west dies: too soon to move again
    rounds(w, 5)
    assert world.failovers == ["west"]
    assert any("holding" in d for d in world.decisions())
    world.up["west"] = True
    rounds(w, 5)
    assert world.failovers == ["west"], "never fails back on its own by default"


def test_no_failover_when_no_other_region_is_healthy(world):
    w = world.watcher()
    world.up = {"east": False, "west": False}
    rounds(w, 4)
    assert world.failovers == []
    assert any("no other region is healthy" in d for d in world.decisions())


def test_a_fenced_region_that_comes_back_is_fenced_again(world):
    w = world.watcher()
    world.up["east"] = False
    rounds(w, 3)
    assert world.failovers == ["west"] and world.refenced == []
    world.up["east"] = True  # restarted by someone: its haproxy came back unfenced
    rounds(w, 1)
    assert world.refenced == ["east"]


def test_refence_waits_for_the_lock_and_retries(world):
    """A re-fence is a change of region state: it runs under the deployment lock, so it
    never interleaves with a failover; while the lock is held it waits for a later round."""
    w = world.watcher()
    world.up["east"] = False
    rounds(w, 3)
    world.up["east"] = True
    with world.state.lock("failover"):  # another run (here: this process) holds the lock
        rounds(w, 1)
    assert world.refenced == []
    rounds(w, 1)
    assert world.refenced == ["east"]


def test_a_second_watcher_is_refused(world):
    import threading

    w = world.watcher()
    with world.state.lock("watch", name="watch.lock"), pytest.raises(HadeployError) as info:
        w.run(threading.Event(), max_seconds=0.1)
    assert info.value.code is ExitCode.LOCKED


def test_probe_history_is_kept(world):
    w = world.watcher()
    rounds(w, 3)
    from hadeploy.history import History

    h = History(world.state.path / "history.sqlite")
    assert len(h.recent("east", 10)) == 3 and h.summary("west")["vantages"]["cli"]["ok"] == 3
    h.close()


def test_watch_brings_a_lagging_dns_server_forward_but_not_under_someone_elses_lock(world):
    """Every 5 s, under the deployment lock: a server that missed a change (here: the
    witness, down during it) gets the newest records under the newest serial."""
    from hadeploy.dns.rfc2136 import Rfc2136Provider, TsigKey
    from hadeploy.topology import NameServer
    from tests.dnsfake import FakeAuthority

    key = TsigKey.generate("hadeploy-demo")
    topo = world.topology()
    fakes = [FakeAuthority(topo.dns.zone, key) for _ in range(3)]
    try:
        provider = Rfc2136Provider([NameServer(n, "127.0.0.1", f.port) for n, f in
                                    zip(("east", "west", "witness"), fakes, strict=True)],
                                   topo.dns.zone, key, timeout=0.3)
        east = topo.region("east").vip
        provider.replace(topo.dns.record, 1, [east], writer=(topo.dns.writer_record, "east"))
        fakes[2].down = True
        provider.replace(topo.dns.record, 1, [topo.region("west").vip],
                         writer=(topo.dns.writer_record, "west"))
        world.active = "west"
        fakes[2].down = False
        w = world.watcher()
        w.runtime.dns = lambda topo: provider
        with world.state.lock("failover"):  # someone else's change may be under way
            rounds(w, 1)
        assert fakes[2].get(topo.dns.record, "A") == [east]
        w.last_resync = 0.0
        rounds(w, 1)
        assert fakes[2].get(topo.dns.record, "A") == [topo.region("west").vip]
        assert fakes[2].serial == fakes[0].serial
        assert any(d.startswith("DNS server witness brought from serial")
                   for d in world.decisions())
    finally:
        for fake in fakes:
            fake.close()
