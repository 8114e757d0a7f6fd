"""Data follows traffic, on the real lab: Patroni clusters of 3 hosts in two regions.

Deployment "hddata" (subnets 10.86.x): east is the primary region, west a standby cluster
streaming from it. A client resolves the app's name at the lab's DNS server for every
request and writes items with unique ids; every acknowledged id is recorded, and after each
event every acknowledged item must be readable from the region that takes writes — except,
after a crash failover, the ones the failover's own estimate said could be lost.

Backups are on, as a new user gets them: each region has a backup host with an encrypted
pgBackRest repository, every WAL segment goes to both, and the shared storage is backed up
with restic to the other region. After the failovers the backups are restored, damaged,
refused and verified here too.
The tests run in file order on one deployment, which is removed at the end (backups too).
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

NAME, ZONE = "hddata", "hddata.test"
DNS_SERVERS = ["10.86.1.6", "10.86.2.6", "10.86.0.53"]  # east's, west's, the witness
VIP = {"east": "10.86.1.10", "west": "10.86.2.10"}
CONFIG = f"""\
name: {NAME}
dns: {{zone: {ZONE}, record: app, ttl: 1}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.86.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.86.2.0/24}}
data: {{hosts: 3, rpo_budget: 5}}  # backups on, as by default
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


resolve = resolver(ZONE, DNS_SERVERS)


Writer = functools.partial(labclient.Writer, resolve=resolve)


def missing(items: list[str], region: str) -> list[str]:
    """Acknowledged items that the region's database does not have (read through its VIP)."""
    return labclient.missing(items, VIP[region])


def psql(host: str, sql: str) -> str:
    return podman("exec", "-u", "postgres", host, "/usr/lib/postgresql/15/bin/psql", "-X",
                  "-q", "-A", "-t", "-d", "hadeploy", "-c", sql).stdout.strip()


def status_json(lab: Ctx) -> dict:
    return json.loads(lab.cli("status", "--json").out)


def backups(lab: Ctx) -> dict[str, dict]:
    return {r["name"]: r["backup"] for r in status_json(lab)["regions"]}


def write(ids: list[str], region: str = "east") -> None:
    for item in ids:
        code, body = request(VIP[region], "POST", "/items", {"id": item})
        assert code == 201, (item, code, body)


def present(ids: list[str], region: str) -> list[str]:
    return [i for i in ids if request(VIP[region], "GET", f"/items/{i}")[0] == 200]


def address(lab: Ctx, name: str) -> str:
    return next(h["address"] for reg in status_json(lab)["regions"] for h in reg["hosts"]
                if h["name"] == name)


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


# Without the lease (failover.lease: 0) every region takes writes into its own store, as
# deployments did before self-fencing; the next test turns both on.
STATELESS = CONFIG.replace("data: {hosts: 3, rpo_budget: 5}",
                           "data: {enabled: false}").replace("min_interval: 0}",
                                                             "min_interval: 0, lease: 0}")


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
    assert status == 503 and "not the writer" in body["error"], "west's lease agents"
    status, body = request(address(lab, f"hd-{NAME}-west-app1"), "POST", "/items",
                           {"id": "order-2"}, port=8080)
    assert status == 503 and "read-only region" in body["error"], "and west's app itself"
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




def test_a_backup_list_shows_both_repositories_and_nothing_in_them_reads_as_data(lab):
    listing = lab.json("backup", "list")["repositories"]
    assert [r["repo"] for r in listing.values()] == [1, 2]
    for repo in listing.values():
        first = repo["backups"][0]  # taken and restore-tested by up
        assert first["type"] == "full" and first["verified"]["ok"] is True, first
        for backup in repo["backups"]:
            assert backup["marker"]["items"] >= 0 and backup["marker"]["xid"] > 0, backup
    # the repository is encrypted: nothing in it reads as the database's text
    plain = podman("exec", f"hd-{NAME}-east-backup", "sh", "-c",
                   "grep -rl -e hadeploy -e PG_VERSION /var/lib/pgbackrest/*/east | head -3",
                   check=False).stdout
    assert plain.strip() == "", plain


def test_restore_brings_back_every_item_deleted_by_mistake(lab, measurements):
    before = [f"keep-{n}" for n in range(30)]
    write(before)
    time.sleep(1.5)
    target = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    time.sleep(1.5)
    after = [f"late-{n}" for n in range(10)]
    write(after)
    leader = lab.data()["east"]["leader"]
    assert psql(leader, "DELETE FROM items RETURNING 1").count("1") >= 40  # the mistake
    assert present(before, "east") == []
    start = time.monotonic()
    r = lab.cli("restore", "--time", target, "--reason", "items deleted", "--yes", "--json")
    measurements["restore to a point in time, 2 regions of 3 database hosts (s)"] = round(
        time.monotonic() - start, 1)
    assert r.rc == 0, r.err[-2000:] + r.out[-2000:]
    report = json.loads(r.out)
    assert report["reseeded"] == ["west"] and report["restored"]["items"] >= 30
    assert present(before, "east") == before  # every item back
    assert present(after, "east") == []  # and none written after the target
    deadline = time.time() + 20
    while present(before, "west") != before and time.time() < deadline:
        time.sleep(0.5)
    assert present(before, "west") == before  # the standby region follows the restored one
    write(["after-restore"])  # the restored primary takes writes again
    assert [a["operation"] for a in lab.audit()][-2:] == ["restore-start", "restore"]
    data = lab.data()
    assert data["east"]["role"] == "primary" and data["west"]["role"] == "standby"
    assert sum(m["role"] == "replica" for m in data["east"]["members"]) == 2, data["east"]


def test_the_shared_storage_is_backed_up_to_the_other_region_and_restores(lab):
    app = f"hd-{NAME}-east-app1"
    podman("exec", app, "sh", "-c", "mkdir -p /srv/hadeploy/shared/docs && "
           "head -c 300000 /dev/urandom > /srv/hadeploy/shared/docs/report.bin && "
           "sha256sum /srv/hadeploy/shared/docs/report.bin > /root/report.sha")
    runs = lab.json("backup", "run", "--region", "east")
    files = runs["east"]["files"]
    assert files["ok"] and files["repository"].startswith(f"hd-{NAME}-west-backup:"), files
    podman("exec", app, "rm", "/srv/hadeploy/shared/docs/report.bin")  # lost by mistake
    out = podman("exec", app, "python3", "/usr/local/lib/hadeploy/files-backup.py",
                 "restore", "latest", "/root/restored").stdout
    assert json.loads(out)["ok"] is True
    podman("exec", app, "sh", "-c", "cd /root/restored && sed 's| /srv| srv|' "
           "/root/report.sha | sha256sum -c -")
    # the repository on the other region's backup host is restic's, not readable files
    west = podman("exec", f"hd-{NAME}-west-backup", "sh", "-c",
                  "ls /var/lib/pgbackrest/files-*/east").stdout.split()
    assert {"config", "data", "index", "keys", "snapshots"} <= set(west)
    # the account the app hosts use on the backup host can only speak SFTP
    denied = podman("exec", app, "ssh", "-i", "/etc/hadeploy/restic/id_ed25519", "-o",
                    "UserKnownHostsFile=/etc/hadeploy/restic/known_hosts", "-o",
                    "BatchMode=yes", f"restic@{address(lab, f'hd-{NAME}-west-backup')}", "id",
                    check=False)
    assert "uid=" not in denied.stdout


def test_a_bad_restore_target_is_refused_before_anything_changes(lab):
    for args, words in ((["--time", "yesterday"], "not a timestamp"),
                        (["--time", "2999-01-01T00:00:00Z"], "in the future"),
                        (["--name", "x y"], "not a restore point name"),
                        ([], "exactly one of")):
        r = lab.cli("restore", *args, "--yes")
        assert r.rc == 2 and words in r.err and "Traceback" not in r.err, (args, r.err)


def test_verify_fails_loudly_on_a_damaged_backup_and_status_degrades(lab):
    west = f"hd-{NAME}-west-backup"
    podman("exec", west, "sh", "-c",
           "f=$(ls -d /var/lib/pgbackrest/*/west/backup/*/2*F | tail -1); "
           "g=$(find $f/pg_data/base -type f -size +8k | head -1); "
           "printf garbage | dd of=$g bs=1 seek=200 conv=notrunc 2>/dev/null")
    r = lab.cli("backup", "verify", "--region", "west", "--json")
    assert r.rc == 1, r.out
    doc = json.loads(r.out)
    assert doc["ok"] is False and "damage" in doc["error"], doc
    repo = backups(lab)["west"]
    assert repo["last_verify_ok"] is False and repo["problems"], repo
    assert status_json(lab)["degraded"] is True
    assert lab.cli("status").rc != 0
    # a new backup, proven, puts it right
    assert lab.cli("backup", "run", "--region", "west", "--type", "full").rc == 0
    assert lab.cli("backup", "verify", "--region", "west").rc == 0
    assert backups(lab)["west"]["problems"] == []


def test_a_refused_wal_push_degrades_status_as_a_split_brain(lab):
    """pgBackRest refuses a segment its repository holds with other content (error 45):
    two writers on one timeline. Planted here as a foreign copy of the next segment."""
    db, repo = lab.data()["east"]["leader"], f"hd-{NAME}-east-backup"
    segment = psql(db, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    archive = podman("exec", repo, "sh", "-c", f"ls -d /var/lib/pgbackrest/*/east/archive/"
                     f"hd-{NAME}/15-* | tail -1").stdout.strip()
    foreign = f"{archive}/{segment[:16]}/{segment}-{'0' * 40}.lz4"
    podman("exec", "-u", "postgres", repo, "sh", "-c",
           f"mkdir -p {archive}/{segment[:16]} && printf x > {foreign}")
    try:
        write(["before-the-refused-segment"])
        psql(db, "SELECT pg_switch_wal()")
        wal = wait_archiving(lab, lambda wal: wal["failing"])
        assert wal["split_brain"] is True and segment == wal["last_failed_wal"], wal
        assert "[045]" in wal["error"] and "different checksum" in wal["error"], wal
        assert status_json(lab)["degraded"] is True
        r = lab.cli("status")
        assert r.rc == 1 and "SPLIT BRAIN" in r.out, r.out
    finally:
        podman("exec", "-u", "postgres", repo, "sh", "-c", f"rm -f {foreign}")
    write(["after-the-refused-segment"])
    psql(db, "SELECT pg_switch_wal()")  # wakes the archiver, which retries at once
    wal = wait_archiving(lab, lambda wal: not wal["failing"])
    assert wal["waiting"] == 0 and status_json(lab)["degraded"] is False, wal


def wait_archiving(lab: Ctx, done, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        wal = lab.data()["east"]["archiving"]
        if done(wal) or time.monotonic() > deadline:
            assert done(wal), wal
            return wal
        time.sleep(1)


def test_status_degrades_when_verification_is_stale(lab):
    path: Path = lab.work / "hadeploy.yaml"
    stale = CONFIG.replace("data: {hosts: 3, rpo_budget: 5}",
                           "data: {hosts: 3, rpo_budget: 5, backup: {verify_max_age: 1s}}")
    assert stale != CONFIG
    path.write_text(stale)
    try:
        time.sleep(2)
        doc = status_json(lab)
        assert doc["degraded"] is True
        assert any("restore test older than 1s" in p for r in doc["regions"]
                   for p in (r["backup"] or {}).get("problems", []))
    finally:
        path.write_text(CONFIG)
    assert status_json(lab)["degraded"] is False


def test_restore_to_scratch_leaves_production_alone(lab):
    target = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    time.sleep(1)
    write(["after-scratch-target"])
    doc = lab.json("restore", "--to-scratch", "--time", target, "--region", "east")
    host = doc["host"]
    try:
        found = podman("exec", "-u", "postgres", host, "sh", "-c",
                       doc["connect"] + " -X -A -t -c \"SELECT count(*) FILTER (WHERE id = "
                       "'after-scratch-target'), count(*) FILTER (WHERE id = 'keep-0') FROM "
                       "items\"").stdout.strip()
        assert found == "0|1"
    finally:
        podman("exec", "-u", "postgres", host, "python3",
               "/usr/local/lib/hadeploy/backup.py", "scratch", "stop")
    assert present(["after-scratch-target"], "east") == ["after-scratch-target"]


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
    # Autovacuum is off for it and it is frozen first: a vacuum or hint bit set after the
    # damage would dirty the page in memory, and the restart's checkpoint would write the
    # good copy back over it.
    psql(leader, "CREATE TABLE canary WITH (autovacuum_enabled = off) AS SELECT g AS id, "
                 "md5(g::text) AS v FROM generate_series(1, 2000) g; "
                 "CREATE INDEX ON canary (id)")
    psql(leader, "VACUUM (FREEZE) canary")
    psql(leader, "CHECKPOINT")
    path = psql(leader, "SELECT current_setting('data_directory') || '/' || "
                        "pg_relation_filepath('canary')")
    try:
        podman("exec", leader, "dd", "if=/dev/urandom", f"of={path}", "bs=1", "seek=4000",
               "count=64", "conv=notrunc")
        restart = urllib.request.Request(
            f"http://{address(lab, leader)}:8008/restart", data=b"{}", method="POST",
            headers={"Authorization": "Basic " + base64.b64encode(
                f"hadeploy:{lab.restapi_password()}".encode()).decode()})
        with urllib.request.urlopen(restart, timeout=60) as resp:  # Patroni restarts it in place
            assert resp.status == 200
        deadline = time.time() + 60
        while time.time() < deadline and lab.data()["east"]["role"] != "primary":
            time.sleep(1)
        assert lab.data()["east"]["leader"] == leader, "restarted in place, still the leader"
        check_integrity(leader)
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


def test_plan_is_quiet_after_all_this_and_down_keeps_the_backups_unless_asked(lab):
    doc = lab.json("plan")
    assert doc["changes"] == [], doc["changes"]
    removed = lab.json("down", "--yes")["removed"]
    assert any("db1" in r for r in removed)
    volumes = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert {f"hd-{NAME}-east-backup", f"hd-{NAME}-west-backup"} <= set(volumes)
    assert list((lab.state / NAME / "backup").glob("repo-*.key")), "the key is kept too"
    assert lab.cli("down", "--delete-backups", "--yes").rc == 0
    volumes = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [v for v in volumes if v.startswith(f"hd-{NAME}-")]
    assert not (lab.state / NAME / "backup").exists()
