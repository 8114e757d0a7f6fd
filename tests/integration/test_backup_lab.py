"""Backups that are proven, on the real lab: pgBackRest repositories in two regions.

Deployment "hdbk" (subnets 10.87.x): east takes writes, west is a standby cluster; each
region has a backup host with an encrypted repository, and every WAL segment goes to both.
The tests run in file order on one deployment, which is removed at the end (backups too).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration import test_failover_lab as failover_lab
from tests.integration.test_lab import podman
from tests.labclient import request

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NAME = "hdbk"
VIP = {"east": "10.87.1.10", "west": "10.87.2.10"}
CONFIG = f"""\
name: {NAME}
dns: {{zone: {NAME}.test, record: app, ttl: 1}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.87.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.87.2.0/24}}
data: {{hosts: 1}}
failover: {{quorum: 1, hold_down: 5, min_interval: 0}}
lab: {{control_subnet: 10.87.0.0/24}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> failover_lab.Ctx:
    from hadeploy.targets.lab.target import deployments_present, destroy

    destroy(NAME)
    work = tmp_path_factory.mktemp("backup")
    (work / "hadeploy.yaml").write_text(CONFIG)
    ctx = failover_lab.Ctx(work, NAME)
    yield ctx
    destroy(NAME)  # the backup volumes too
    assert NAME not in deployments_present()


def status(lab: failover_lab.Ctx) -> dict:
    return json.loads(lab.cli("status", "--json").out)


def backups(lab: failover_lab.Ctx) -> dict[str, dict]:
    return {r["name"]: r["backup"] for r in status(lab)["regions"]}


def write(ids: list[str], region: str = "east") -> None:
    for item in ids:
        code, body = request(VIP[region], "POST", "/items", {"id": item})
        assert code == 201, (item, code, body)


def present(ids: list[str], region: str) -> list[str]:
    return [i for i in ids if request(VIP[region], "GET", f"/items/{i}")[0] == 200]


def psql(host: str, sql: str) -> str:
    return podman("exec", "-u", "postgres", host, "psql", "-X", "-A", "-t", "-d", "hadeploy",
                  "-c", sql).stdout.strip()


def test_up_takes_and_proves_the_first_backup_in_every_region(lab, measurements):
    start = time.monotonic()
    doc = lab.json("up")
    measurements["cold up, 2 regions with backups (s)"] = round(time.monotonic() - start, 1)
    assert doc["ansible"]["failures"] == []
    repos = backups(lab)
    for region in ("east", "west"):
        repo = repos[region]
        assert repo["last_backup_label"] and repo["last_verify_ok"] is True, repo
        assert repo["problems"] == [], repo
    for region in ("east", "west"):  # the shared storage too, in the other region
        files = repos[region]["files"]
        assert files["snapshot"] and files["last_verify_ok"] is True, files
    assert status(lab)["degraded"] is False
    listing = lab.json("backup", "list")["repositories"]
    assert [r["repo"] for r in listing.values()] == [1, 2]
    for repo in listing.values():
        (only,) = repo["backups"]
        assert only["type"] == "full" and only["verified"]["ok"] is True
        assert only["marker"]["items"] >= 0 and only["marker"]["xid"] > 0
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
    leader = f"hd-{NAME}-east-db1"
    assert psql(leader, "DELETE FROM items RETURNING 1").count("1") >= 40  # the mistake
    assert present(before, "east") == []
    start = time.monotonic()
    r = lab.cli("restore", "--time", target, "--reason", "items deleted", "--yes", "--json")
    measurements["restore to a point in time, 2 regions of 1 host (s)"] = round(
        time.monotonic() - start, 1)
    assert r.rc == 0, r.err
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
    data = {r["name"]: r["data"] for r in status(lab)["regions"]}
    assert data["east"]["role"] == "primary" and data["west"]["role"] == "standby"


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
                    "BatchMode=yes", "restic@10.87.2.18", "id", check=False)
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
    assert status(lab)["degraded"] is True
    assert lab.cli("status").rc != 0
    # a new backup, proven, puts it right
    assert lab.cli("backup", "run", "--region", "west", "--type", "full").rc == 0
    assert lab.cli("backup", "verify", "--region", "west").rc == 0
    assert backups(lab)["west"]["problems"] == []


def test_a_refused_wal_push_degrades_status_as_a_split_brain(lab):
    """pgBackRest refuses a segment its repository holds with other content (error 45):
    two writers on one timeline. Planted here as a foreign copy of the next segment."""
    db, repo = f"hd-{NAME}-east-db1", f"hd-{NAME}-east-backup"
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
        assert status(lab)["degraded"] is True
        r = lab.cli("status")
        assert r.rc == 1 and "SPLIT BRAIN" in r.out, r.out
    finally:
        podman("exec", "-u", "postgres", repo, "sh", "-c", f"rm -f {foreign}")
    write(["after-the-refused-segment"])
    psql(db, "SELECT pg_switch_wal()")  # wakes the archiver, which retries at once
    wal = wait_archiving(lab, lambda wal: not wal["failing"])
    assert wal["waiting"] == 0 and status(lab)["degraded"] is False, wal


def wait_archiving(lab: failover_lab.Ctx, done, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        wal = next(r for r in status(lab)["regions"] if r["name"] == "east")["data"]["archiving"]
        if done(wal) or time.monotonic() > deadline:
            assert done(wal), wal
            return wal
        time.sleep(1)


def test_backups_continue_after_a_failover(lab):
    assert lab.cli("failover", "--to", "west", "--yes", "--reason", "drill").rc == 0
    write(["written-in-west"], "west")
    r = lab.cli("backup", "run", "--type", "diff", "--json")
    assert r.rc == 0, r.out
    runs = json.loads(r.out)
    for region in ("east", "west"):
        assert runs[region]["ok"] and runs[region]["marker"]["items"] >= 31, runs[region]
    # the new primary archives to the same stanza: the east repository restores its WAL
    for region in ("east", "west"):
        doc = lab.json("backup", "verify", "--region", region)
        assert doc["ok"] is True and doc["restored"]["items"] == doc["marker"]["items"]
    assert lab.cli("failback", "--yes", "--reason", "drill over").rc == 0


def test_status_degrades_when_verification_is_stale(lab):
    path: Path = lab.work / "hadeploy.yaml"
    path.write_text(CONFIG.replace("data: {hosts: 1}",
                                   "data: {hosts: 1, backup: {verify_max_age: 1s}}"))
    try:
        time.sleep(2)
        doc = status(lab)
        assert doc["degraded"] is True
        assert any("restore test older than 1s" in p for r in doc["regions"]
                   for p in (r["backup"] or {}).get("problems", []))
    finally:
        path.write_text(CONFIG)
    assert status(lab)["degraded"] is False


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


def test_down_keeps_the_backups_unless_asked(lab):
    assert lab.cli("down", "--yes").rc == 0
    volumes = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert {f"hd-{NAME}-east-backup", f"hd-{NAME}-west-backup"} <= set(volumes)
    assert list((lab.state / NAME / "backup").glob("repo-*.key")), "the key is kept too"
    assert lab.cli("down", "--delete-backups", "--yes").rc == 0
    volumes = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [v for v in volumes if v.startswith(f"hd-{NAME}-")]
    assert not (lab.state / NAME / "backup").exists()
