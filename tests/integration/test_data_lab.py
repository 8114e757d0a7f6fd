"""Data follows traffic, on the real lab: Patroni clusters of 3 hosts in two regions.

Deployment "hddata" (subnets 10.86.x): east is the primary region, west a standby cluster
streaming from it. A client resolves the app's name at the lab's DNS server for every
request and writes items with unique ids; every acknowledged id is recorded, and after each
event every acknowledged item must be readable from the region that takes writes — except,
after a crash failover, the ones the failover's own estimate said could be lost.
The tests run in file order on one deployment, which is removed at the end.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests import labclient
from tests.conftest import HADEPLOY
from tests.integration import test_failover_lab as failover_lab
from tests.integration.test_lab import podman
from tests.labclient import request, resolver

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NAME, ZONE, DNS_SERVER = "hddata", "hddata.test", "10.86.0.53"
VIP = {"east": "10.86.1.10", "west": "10.86.2.10"}
CONFIG = f"""\
name: {NAME}
dns: {{zone: {ZONE}, record: app, ttl: 1}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.86.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.86.2.0/24}}
data: {{hosts: 3, rpo_budget: 5}}  # backups on, as by default (more in test_backup_lab.py)
failover: {{probe_interval: 1.0, probe_timeout: 0.8, failure_threshold: 3, quorum: 1,
           hold_down: 5, min_interval: 0}}
lab: {{control_subnet: 10.86.0.0/24}}
"""


class Ctx(failover_lab.Ctx):
    def __init__(self, work: Path) -> None:
        super().__init__(work, NAME)

    def cli(self, *args: str, timeout: float = 900):
        return super().cli(*args, timeout=timeout)

    def restapi_password(self) -> str:
        """Patroni's REST API password (unsafe calls need it), from the state directory."""
        from hadeploy.dbsecrets import load_passwords

        return load_passwords(self.state / NAME)["restapi"]

    def region(self, name: str) -> dict:
        r = self.cli("status", "--json")
        return next(reg for reg in json.loads(r.out)["regions"] if reg["name"] == name)

    def data(self) -> dict[str, dict]:
        r = self.cli("status", "--json")
        return {reg["name"]: reg["data"] for reg in json.loads(r.out)["regions"]}


resolve = resolver(ZONE, DNS_SERVER)


Writer = functools.partial(labclient.Writer, resolve=resolve)


def missing(items: list[str], region: str) -> list[str]:
    """Acknowledged items that the region's database does not have (read through its VIP)."""
    return labclient.missing(items, VIP[region])


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Ctx:
    from hadeploy.targets.lab.target import deployments_present, destroy

    destroy(NAME)
    work = tmp_path_factory.mktemp("data")
    (work / "hadeploy.yaml").write_text(CONFIG)
    ctx = Ctx(work)
    yield ctx
    destroy(NAME)
    assert NAME not in deployments_present()


STATELESS = CONFIG.replace("data: {hosts: 3, rpo_budget: 5}",
                           "data: {enabled: false}")


def test_a_deployment_without_a_database_tier_keeps_items_on_shared_storage(lab):
    """What every deployment was before the data tier: one item store per region."""
    assert STATELESS != CONFIG
    (lab.work / "hadeploy.yaml").write_text(STATELESS)
    doc = lab.json("up")
    assert doc["ansible"]["failures"] == []
    for region in ("east", "west"):
        for n in range(3):
            status, _ = request(VIP[region], "POST", "/items", {"id": f"{region}-old-{n}"})
            assert status == 201
    assert request(VIP["west"], "GET", "/items/east-old-0")[0] == 404  # nothing crosses


def test_up_adds_the_database_tier_and_imports_the_items_of_every_region(lab, measurements):
    (lab.work / "hadeploy.yaml").write_text(CONFIG)
    start = time.monotonic()
    doc = lab.json("up")
    measurements["up adding a 3-host database tier to 2 running regions (s)"] = round(
        time.monotonic() - start, 1)
    assert doc["ansible"]["failures"] == []
    old = [f"{region}-old-{n}" for region in ("east", "west") for n in range(3)]
    assert missing(old, "east") == []
    deadline = time.time() + 10
    while missing(old, "west") and time.time() < deadline:
        time.sleep(0.5)
    assert missing(old, "west") == []
    for region in ("east", "west"):
        items = podman("exec", f"hd-{NAME}-{region}-app1", "ls", "-A",
                       "/srv/hadeploy/shared/items").stdout.split()
        assert {f"{region}-old-{n}.json" for n in range(3)} <= set(items), "files are kept"
        assert ".imported-to-database" in items
    assert lab.json("plan")["changes"] == []
    data = lab.data()
    assert data["east"]["role"] == "primary" and data["west"]["role"] == "standby"
    assert sum(m["role"] == "replica" for m in data["east"]["members"]) == 2
    assert data["west"]["lag_bytes"] is not None
    # Both regions' backup hosts took and proved their first backup: with three database
    # hosts per region they must not keep locking each other out (pgBackRest locks the
    # stanza host by host).
    for region in ("east", "west"):
        backup = lab.region(region)["backup"]
        assert backup["last_backup_label"] and backup["last_verify_ok"] is True, backup


def test_items_written_in_east_are_read_in_west_and_west_refuses_writes(lab):
    status, body = request(VIP["east"], "POST", "/items", {"id": "order-1", "qty": 3})
    assert status == 201 and body["region"] == "east"
    deadline = time.time() + 10
    while request(VIP["west"], "GET", "/items/order-1")[0] != 200 and time.time() < deadline:
        time.sleep(0.2)
    status, item = request(VIP["west"], "GET", "/items/order-1")
    assert status == 200 and item["qty"] == 3
    status, body = request(VIP["west"], "POST", "/items", {"id": "order-2"})
    assert status == 503 and "read-only region" in body["error"]
    status, health = request(VIP["west"], "GET", "/healthz")
    assert status == 200 and health["database"] == "replica", "a correct standby is healthy"


def test_losing_the_leader_database_host_loses_no_acknowledged_write(lab, measurements):
    """'hadeploy drill db-host': the leader killed under a client that writes and reads
    through the app's DNS name; Patroni promotes the synchronous replica once the dead
    leader's key expires (ttl 10 s); the drill starts the killed host again, which rejoins
    as a replica, and reads every acknowledged write back."""
    leader = lab.data()["east"]["leader"]
    r = lab.cli("drill", "db-host", "--yes", "--json", "--report", str(lab.work / "drill"))
    assert r.rc == 0, r.err[-2000:] + r.out[-2000:]
    doc = json.loads(r.out)
    measurements["drill db-host (east leader killed): RTO (s) / failed / acked"] = (
        doc["rto_seconds"], doc["failed"], doc["acked_writes"])
    assert doc["victims"] == [leader] and doc["met"] and doc["healed"], doc["problems"]
    assert doc["lost_writes"] == 0 and doc["acked_writes"] > 20
    data = lab.data()["east"]
    assert data["leader"] not in (None, leader)
    assert {m["name"]: m["state"] for m in data["members"]}[leader] in ("running",
                                                                         "streaming")


def test_a_switchover_under_load_loses_nothing_and_the_old_primary_follows(lab, measurements):
    with Writer("switch") as writer:
        time.sleep(2)
        out = lab.json("failover", "--to", "west", "--yes", "--reason", "test switchover")
        time.sleep(3)
    assert out["data"]["mode"] == "switchover" and out["data"]["lost"] == 0
    measurements["switchover under load: write pause (s) / acked / phases"] = (
        round(writer.pause(), 2), len(writer.acked),
        {k: out["phases"].get(k) for k in ("freeze", "promote", "dns", "rejoin")})
    assert missing([i for i, _, _ in writer.acked], "west") == []
    assert {r for _, _, r in writer.acked} == {"east", "west"}
    data = lab.data()
    assert data["west"]["role"] == "primary" and data["east"]["role"] == "standby"


def test_failback_loses_nothing_either(lab):
    with Writer("back") as writer:
        time.sleep(1)
        out = lab.json("failback", "--yes")
        time.sleep(2)
    assert out["data"]["mode"] == "switchover"
    assert missing([i for i, _, _ in writer.acked], "east") == []
    assert lab.data()["east"]["role"] == "primary"


def test_a_crash_failover_by_watch_loses_at_most_what_it_estimated(lab, measurements):
    watch = subprocess.Popen([*HADEPLOY, "watch", "--max-seconds", "60"], cwd=lab.work,
                             env={**os.environ, **lab.env}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)  # watch observes the database tier every round
        with Writer("crash") as writer:
            time.sleep(2)
            east = podman("ps", "-q", "--filter", "label=io.hadeploy.region=east",
                          "--filter", f"label=io.hadeploy.deployment={NAME}").stdout.split()
            killed_at = time.time()
            podman("kill", *east)
            deadline = time.time() + 40
            while time.time() < deadline and not any(r == "west" for _, _, r in
                                                     writer.acked):
                time.sleep(0.2)
            time.sleep(1)
    finally:
        watch.terminate()
        watch.wait(30)
    done = [a for a in lab.audit() if a["operation"] == "failover" and a.get("result") == "done"
            and a.get("to") == "west" and (a.get("data") or {}).get("mode") == "failover"]
    assert done, "watch failed over to west"
    estimate = done[-1]["data"]["estimate"]
    assert estimate["source"] == "watch" and estimate["seconds"] is not None
    lost = missing([i for i, _, _ in writer.acked], "west")
    acked_at = {i: t for i, t, _ in writer.acked}
    measurements["crash failover: lost acked writes / estimate (s, bytes)"] = (
        len(lost), estimate["seconds"], estimate["bytes"])
    # Every lost write was acknowledged within the estimated window before the crash.
    assert all(killed_at - acked_at[i] <= estimate["seconds"] + 1.0 for i in lost), (
        lost, estimate)
    assert lab.data()["west"]["role"] == "primary"


def test_the_old_primary_comes_back_fenced_and_rejoins_with_a_salvage_copy(lab):
    east = podman("ps", "-aq", "--filter", "label=io.hadeploy.region=east",
                  "--filter", f"label=io.hadeploy.deployment={NAME}").stdout.split()
    podman("start", *east)
    db_hosts = [f"10.86.1.{13 + i}" for i in range(3)]
    writable_seen = False
    deadline = time.time() + 45
    paused = False
    while time.time() < deadline and not paused:
        states = []
        for address in db_hosts:
            try:
                conn = http.client.HTTPConnection(address, 8008, timeout=1)
                conn.request("GET", "/patroni")
                doc = json.loads(conn.getresponse().read())
                states.append(doc)
            except (OSError, ValueError):
                continue
        writable_seen |= any(d.get("role") in ("master", "primary") and d.get("state") == "running"
                             for d in states)
        paused = len(states) == 3 and all(d.get("pause") for d in states)
        time.sleep(0.5)
    assert paused, "the old primary's cluster came back paused by its boot fence"
    assert not writable_seen, "the deposed primary never ran writable"
    doc = lab.json("up")
    assert any("salvage copies" in d for d in doc["data"]), doc["data"]
    assert lab.data()["east"]["role"] == "standby"
    out = lab.json("failback", "--yes")
    assert out["data"]["mode"] == "switchover" and out["data"]["lost"] == 0
    assert lab.data()["east"]["role"] == "primary"
    status, _ = request(VIP["east"], "POST", "/items", {"id": "after-everything"})
    assert status == 201


def test_backups_keep_working_after_a_crash_failover_and_a_failback(lab, measurements):
    """Two new timelines later (west promoted by watch, east promoted again by failback),
    the primary archives to the same stanza, nothing is refused as a split brain, and an
    incremental backup of it is good."""
    leader = lab.data()["east"]["leader"]
    psql(leader, "SELECT pg_switch_wal()")  # the segment holding 'after-everything'
    deadline = time.time() + 60
    while True:
        wal = lab.data()["east"]["archiving"]
        if wal and not wal["failing"] and wal["archived"] > 0 and wal["waiting"] == 0:
            break
        assert time.time() < deadline, wal
        time.sleep(1)
    assert wal["split_brain"] is False and wal["in_recovery"] is False, wal
    start = time.monotonic()
    r = lab.cli("backup", "run", "--type", "incr", "--region", "east", "--json")
    measurements["incremental backup after the failovers, 3 database hosts (s)"] = round(
        time.monotonic() - start, 1)
    assert r.rc == 0, r.err[-2000:] + r.out[-2000:]
    backup = lab.region("east")["backup"]
    assert backup["last_backup_label"].endswith("I") and backup["problems"] == [], backup
    assert json.loads(lab.cli("status", "--json").out)["degraded"] is False


def psql(host: str, sql: str) -> str:
    return podman("exec", "-u", "postgres", host, "/usr/lib/postgresql/15/bin/psql", "-X",
                  "-q", "-A", "-t", "-d", "hadeploy", "-c", sql).stdout.strip()


def check_integrity(host: str) -> None:
    """What the hosts' timer runs (a oneshot: returns when the check is done)."""
    podman("exec", host, "systemctl", "start", "hadeploy-integrity.service", check=False)


def test_the_integrity_check_finds_a_corrupted_page_and_status_degrades(lab):
    leader = lab.data()["east"]["leader"]
    check_integrity(leader)
    integrity = lab.data()["east"]["integrity"]
    assert integrity["ok"] is True and integrity["checked_at"], integrity
    assert lab.cli("status").rc == 0
    # A scratch table whose first heap page is overwritten on disk behind PostgreSQL's back
    # (not WAL-logged: the replicas keep a good copy), then read back from disk.
    psql(leader, "CREATE TABLE canary AS SELECT g AS id, md5(g::text) AS v "
                 "FROM generate_series(1, 2000) g; CREATE INDEX ON canary (id); CHECKPOINT")
    path = psql(leader, "SELECT current_setting('data_directory') || '/' || "
                        "pg_relation_filepath('canary')")
    try:
        podman("exec", leader, "dd", "if=/dev/urandom", f"of={path}", "bs=1", "seek=4000",
               "count=64", "conv=notrunc")
        restart = urllib.request.Request(
            f"http://{leader_address(lab, leader)}:8008/restart", data=b"{}", method="POST",
            headers={"Authorization": "Basic " + base64.b64encode(
                f"hadeploy:{lab.restapi_password()}".encode()).decode()})
        with urllib.request.urlopen(restart, timeout=60) as resp:  # Patroni restarts it in place
            assert resp.status == 200
        deadline = time.time() + 60
        while time.time() < deadline and lab.data()["east"]["role"] != "primary":
            time.sleep(1)
        check_integrity(lab.data()["east"]["leader"])
        integrity = lab.data()["east"]["integrity"]
        assert integrity["ok"] is False and integrity["findings"], integrity
        status = lab.cli("status")
        assert status.rc == 1 and "CORRUPTION" in status.out, status.out
    finally:
        host = lab.data()["east"]["leader"]
        psql(host, "DROP TABLE IF EXISTS canary")
        psql(host, "SELECT pg_stat_reset()")  # the checksum failure counter
        check_integrity(host)
    assert lab.data()["east"]["integrity"]["ok"] is True


def leader_address(lab: Ctx, name: str) -> str:
    r = json.loads(lab.cli("status", "--json").out)
    return next(h["address"] for reg in r["regions"] for h in reg["hosts"] if h["name"] == name)


def test_drill_operator_a_switchover_killed_before_dns_is_finished_by_the_rerun(lab):
    """'hadeploy drill operator': a switchover east -> west killed (SIGKILL) at its DNS
    change; the re-run resumes it, and east's database follows west again (a resumed run
    that found west already primary once left east paused for good)."""
    r = lab.cli("drill", "operator", "--yes", "--json", "--report", str(lab.work / "operator"))
    assert r.rc == 0, r.err[-3000:] + r.out[-3000:]
    doc = json.loads(r.out)
    assert doc["met"] and doc["lost_writes"] == 0 and doc["serving"] == "west", doc
    data = lab.data()
    assert data["west"]["role"] == "primary" and data["east"]["role"] == "standby", data
    assert data["east"]["leader"] is not None


def test_plan_is_quiet_after_all_this_and_down_removes_everything(lab):
    doc = lab.json("plan")
    assert doc["changes"] == [], doc["changes"]
    removed = lab.json("down", "--yes")["removed"]
    assert any("db1" in r for r in removed)
