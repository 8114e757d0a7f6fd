"""The lab's DNS servers: each one's configuration, and the zone a (re)starting server is
given — the newest any server has, so that it never answers an older record."""

from __future__ import annotations

from pathlib import Path

from hadeploy import config
from hadeploy.dns.rfc2136 import TsigKey
from hadeploy.targets.lab import knot
from hadeploy.targets.lab.naming import lab_topology

DEP = config.from_regions(["east", "west"])
DNS = lab_topology(DEP).dns


def test_only_signed_updates_from_this_machine_are_accepted():
    text = knot.knot_config(DEP, TsigKey.generate("hadeploy-demo"), "10.91.1.1")
    acl = text[text.index("acl:"):text.index("template:")]
    assert "key: hadeploy-demo" in acl and "address: 10.91.1.1" in acl
    assert "action: update" in acl
    # the zone file is the server's whole state: written at once, no journal to replay
    assert "zonefile-sync: 0" in text and "journal-content: none" in text
    # a restarting server transfers the zone with the key from a file, never an argument
    key = TsigKey.generate("hadeploy-demo")
    assert key.secret not in knot.sync_config(DNS, DNS.name_servers[0])
    assert knot.kdig_key(key) == f"hmac-sha256:hadeploy-demo:{key.secret}\n"


def test_a_zone_file_reads_back_what_was_written(tmp_path: Path):
    content = knot.ZoneContent(1795940000, ("10.91.2.10",), 2, "west")
    path = tmp_path / "zone"
    path.write_text(knot.zone_text(DNS, content, 2))
    assert knot.read_zone(path, DNS) == content
    text = path.read_text()
    for server in DNS.name_servers:  # every server is in the NS set, with its address
        assert f"hadeploy.test. 300 NS ns-{server.name}.hadeploy.test." in text
        assert f"ns-{server.name}.hadeploy.test. 300 A {server.address}" in text
    assert knot.read_zone(tmp_path / "missing", DNS) is None
    (tmp_path / "bad").write_text("not a zone {")
    assert knot.read_zone(tmp_path / "bad", DNS) is None


def test_a_server_starts_from_the_newest_zone_any_server_has(tmp_path: Path):
    assert knot.newest_zone(tmp_path, DNS) is None  # a new deployment
    old = knot.ZoneContent(5, ("10.91.1.10",), 2, "east")
    new = knot.ZoneContent(9, ("10.91.2.10",), 2, "west")
    for name, content in (("east", old), ("west", new), ("witness", old)):
        path = knot.zone_path(tmp_path, name, DNS.zone)
        path.parent.mkdir(parents=True)
        path.write_text(knot.zone_text(DNS, content, 2))
    assert knot.newest_zone(tmp_path, DNS) == new
    # the single server's file of a deployment made before there was one per region counts
    legacy = tmp_path / "dns" / "zones" / f"{DNS.zone}.zone"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(knot.zone_text(DNS, knot.ZoneContent(12, ("10.91.1.10",)), 2))
    assert knot.newest_zone(tmp_path, DNS).serial == 12


def test_the_start_script_reads_zone_files_and_transfers_alike():
    from hadeploy.targets.lab import dns_start

    ours = knot.zone_text(DNS, knot.ZoneContent(42, ("10.91.1.10",), 2, "east"), 2)
    serial, records = dns_start.parse(ours)
    assert serial == 42 and len(records) == len(ours.splitlines())
    axfr = """;; AXFR for hadeploy.test.
hadeploy.test.      \t300\tIN\tSOA\tns-east.hadeploy.test. h.hadeploy.test. 43 3600 600 86400 2
app.hadeploy.test.  \t2\tIN\tA\t10.91.2.10
_writer.app.hadeploy.test.\t1\tIN\tTXT\t"west"
hadeploy.test.      \t300\tIN\tSOA\tns-east.hadeploy.test. h.hadeploy.test. 43 3600 600 86400 2
k.                  \t0\tANY\tTSIG\thmac-sha256. 1795945266 300 32 drV8= 29038 NOERROR 0
;; Received 265 B (1 messages, 6 records)
"""
    serial, records = dns_start.parse(axfr)
    assert serial == 43 and len(records) == 3  # one SOA, no TSIG, no comments
    assert dns_start.parse(";; nothing\n") == (None, [])


def test_the_start_script_takes_the_newest_zone_before_knotd_answers(tmp_path, monkeypatch):
    """The peers' serials decide: a higher one replaces the zone file, a lower one or a
    silent peer does not."""
    from hadeploy.targets.lab import dns_start

    zones = tmp_path / "zones"
    zones.mkdir()
    own = knot.zone_text(DNS, knot.ZoneContent(50, ("10.91.1.10",), 2, "east"), 2)
    (zones / "hadeploy.test.zone").write_text(own)
    newer = knot.zone_text(DNS, knot.ZoneContent(60, ("10.91.2.10",), 2, "west"), 2)
    answers = {"10.91.2.6": (60, newer.splitlines(), ""), "10.91.0.53": (None, [], "timeout")}
    monkeypatch.setattr(dns_start, "ZONES", str(zones))
    monkeypatch.setattr(dns_start, "transfer", lambda peer, zone, key: answers[peer])
    conf = {"zone": "hadeploy.test.", "peers": list(answers)}
    said = dns_start.sync(conf)
    assert said.startswith("took serial 60 from 10.91.2.6 (had 50)") and "timeout" in said
    assert knot.read_zone(zones / "hadeploy.test.zone", DNS) == knot.ZoneContent(
        60, ("10.91.2.10",), 2, "west")
    answers["10.91.2.6"] = (55, own.splitlines(), "")
    assert dns_start.sync(conf).startswith("serial 60 is the newest")
