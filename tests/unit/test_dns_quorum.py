"""The RFC 2136 provider works by quorum over several authoritative servers: reads take
the newest serial a majority answers, writes count when a majority took them (every
server with the change has it under one serial), and a server that missed changes is
brought up to date — never back in time."""

from __future__ import annotations

import time

import pytest

from hadeploy.dns.rfc2136 import Rfc2136Provider, TsigKey
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.topology import NameServer
from tests.dnsfake import FakeAuthority

ZONE = "hadeploy.test"
KEY = TsigKey.generate("hadeploy-test")


@pytest.fixture
def servers():
    made = [FakeAuthority(ZONE, KEY) for _ in range(3)]
    for fake in made:
        fake.set("app", "A", 5, "10.0.1.10")
        fake.set("_writer.app", "TXT", 1, '"east"')
    yield made
    for fake in made:
        fake.close()


def provider(fakes: list[FakeAuthority], key: TsigKey | None = KEY) -> Rfc2136Provider:
    names = ["east", "west", "witness"]
    return Rfc2136Provider([NameServer(names[i], "127.0.0.1", f.port)
                            for i, f in enumerate(fakes)], ZONE, key, timeout=0.3)


def test_a_write_reaches_every_server_under_one_serial(servers):
    p = provider(servers)
    p.replace("app", 5, ["10.0.2.10"], writer=("_writer.app", "west"))
    assert [f.get("app", "A") for f in servers] == [["10.0.2.10"]] * 3
    assert [f.get("_writer.app", "TXT") for f in servers] == [['"west"']] * 3
    serials = {f.serial for f in servers}
    assert len(serials) == 1 and serials.pop() >= int(time.time()) - 5
    assert sorted(p.writes[-1].had) == ["east", "west", "witness"]
    assert p.read("app") == ["10.0.2.10"] and p.read_writer("_writer.app") == "west"


def test_one_server_down_the_change_still_counts_and_says_who_missed_it(servers):
    servers[0].down = True
    p = provider(servers)
    start = time.monotonic()
    p.replace("app", 5, ["10.0.2.10"], writer=("_writer.app", "west"))
    took = time.monotonic() - start
    assert servers[0].get("app", "A") == ["10.0.1.10"]  # the dead one missed it
    assert servers[1].get("app", "A") == servers[2].get("app", "A") == ["10.0.2.10"]
    write = p.writes[-1]
    assert sorted(write.had) == ["west", "witness"] and list(write.missed) == ["east"]
    assert took < 0.3 + 0.2  # a silent server costs at most its timeout, not more
    assert p.read("app") == ["10.0.2.10"]
    assert p.wait_visible("app", ["10.0.2.10"], timeout=2) < 1


def test_without_a_majority_nothing_is_sent_and_the_error_names_the_servers(servers):
    servers[0].down = servers[1].down = True
    p = provider(servers)
    before = servers[2].serial
    with pytest.raises(HadeployError) as err:
        p.replace("app", 5, ["10.0.2.10"])
    assert err.value.code is ExitCode.ENVIRONMENT
    assert "only 1 of 3 DNS servers answered" in err.value.message
    assert "east" in err.value.message and "west" in err.value.message
    assert servers[2].serial == before and servers[2].get("app", "A") == ["10.0.1.10"]
    with pytest.raises(HadeployError):
        p.read("app")  # a failover reads first: it stops there, before any change


def test_a_read_takes_the_newest_serial_of_a_majority(servers):
    # west and the witness took a change east missed: east is outvoted however it answers
    for fake in servers[1:]:
        fake.set("app", "A", 5, "10.0.2.10")
        fake.set(f"{ZONE}.", "SOA", 300, f"ns-a.{ZONE}. h.{ZONE}. 50 3600 600 86400 5")
    p = provider(servers)
    assert p.read("app") == ["10.0.2.10"]
    snap = p.snapshot("app", "_writer.app", wait_all=True)
    assert [s.name for s in snap.stale()] == ["east"] and not snap.agree()
    # with west down, east and the witness are a majority and the newest still wins
    servers[1].down = True
    assert p.read("app") == ["10.0.2.10"]


def test_resync_brings_a_lagging_server_forward_never_back(servers):
    p = provider(servers)
    servers[0].down = True
    p.replace("app", 5, ["10.0.2.10"], writer=("_writer.app", "west"))
    newest = servers[1].serial
    servers[0].down = False
    lines = p.resync("app", "_writer.app")
    assert len(lines) == 1 and lines[0].startswith("DNS server east brought from serial 1")
    assert servers[0].get("app", "A") == ["10.0.2.10"]
    assert servers[0].get("_writer.app", "TXT") == ['"west"']
    assert servers[0].serial == newest  # the same serial as the others: consistent
    assert p.snapshot("app", "_writer.app", wait_all=True).agree()
    assert p.resync("app", "_writer.app") == []  # nothing left to do


def test_resync_never_overwrites_a_change_that_reached_the_server_meanwhile(servers):
    p = provider(servers)
    servers[0].set("app", "A", 5, "10.0.9.9")  # east answers something else, serial 1
    snap = p.snapshot("app", "_writer.app", wait_all=True)
    # ... and before the resync's update arrives, a newer change reaches east
    servers[0].set(f"{ZONE}.", "SOA", 300, f"ns-a.{ZONE}. h.{ZONE}. 77 3600 600 86400 5")
    stale = next(s for s in snap.servers if s.name == "east")
    result = p._send([p.servers[0]], [("app", 5, "A", ["10.0.1.10"])],
                     stale.soa.replace(serial=2), need=1, prereqs={"east": stale.soa})
    assert "NXRRSET" in result.missed["east"]
    assert servers[0].get("app", "A") == ["10.0.9.9"] and servers[0].serial == 77


def test_same_serial_different_answer_gets_everyone_a_new_serial(servers):
    servers[0].set("app", "A", 5, "10.0.9.9")  # a clash: serial 1 everywhere
    p = provider(servers)
    lines = p.resync("app", "_writer.app")
    assert lines
    assert len({f.serial for f in servers}) == 1 and servers[0].serial > 1
    assert len({tuple(f.get("app", "A")) for f in servers}) == 1


def test_a_write_refused_by_a_majority_fails_and_names_who_has_it(servers):
    p = provider(servers, key=TsigKey.generate("hadeploy-test"))  # not the servers' key
    with pytest.raises(HadeployError) as err:
        p.set_writer("_writer.app", "-")
    assert "only 0 of 3 DNS servers took the change" in err.value.message
    assert "servers that have it: none" in err.value.message
    assert [f.get("_writer.app", "TXT") for f in servers] == [['"east"']] * 3


def test_an_unsigned_update_is_refused():
    fake = FakeAuthority(ZONE, KEY)
    try:
        p = Rfc2136Provider([NameServer("east", "127.0.0.1", fake.port)], ZONE, None,
                            timeout=0.3)
        with pytest.raises(HadeployError) as err:
            p.replace("app", 5, ["10.0.2.10"])
        assert "REFUSED" in err.value.message
    finally:
        fake.close()
