"""Backups without a lab: the policy, the backup hosts' answers, status, restore targets,
the repository key and the passwords of roles added later. (The lab test proves the rest.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hadeploy import backup, config, dbsecrets
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.restore import RestoreTarget
from hadeploy.targets.lab.naming import lab_topology
from hadeploy.topology import HostKind

DEP = config.from_regions(["east", "west"])
TOPO = lab_topology(DEP)


def utc(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))


def answer(backup_ago: float | None, verify_ago: float | None, verify_ok: bool = True,
           failed_last: bool = False) -> dict:
    good = None if backup_ago is None else {"ok": True, "label": "20261128-010000F",
                                            "finished_at": utc(backup_ago)}
    last = {"ok": False, "error": "boom", "finished_at": utc(1)} if failed_last else good
    verify = None if verify_ago is None else {"ok": verify_ok, "label": "20261128-010000F",
                                              "finished_at": utc(verify_ago),
                                              "error": None if verify_ok else "damaged"}
    return {"last_backup": last, "last_good_backup": good, "last_verify": verify}


def test_every_region_gets_a_backup_host_and_a_repository_number():
    hosts = [h for r in TOPO.regions for h in r.of_kind(HostKind.BACKUP)]
    assert [(h.name, h.address) for h in hosts] == [("hd-demo-east-backup", "10.91.1.18"),
                                                    ("hd-demo-west-backup", "10.91.2.18")]
    off = config.from_regions(["east"])
    off = off.model_copy(update={"data": off.data.model_copy(update={
        "backup": config.BackupConfig(enabled=False)})})
    assert not lab_topology(off).regions[0].of_kind(HostKind.BACKUP)


@pytest.mark.parametrize("value, seconds", [("26h", 93600), ("90m", 5400), ("8d", 691200),
                                            ("1s", 1)])
def test_durations(value, seconds):
    assert config.parse_duration(value) == seconds


@pytest.mark.parametrize("field, value, words", [
    ("max_age", "0h", "not a duration"), ("max_age", "26 hours", "not a duration"),
    ("verify_max_age", "-1d", "not a duration"),
    ("full", "Sun; rm -rf /", "not a systemd calendar expression"),
    ("retention_full", 0, "greater than or equal to 1")])
def test_a_bad_backup_policy_is_refused_with_the_field(field, value, words):
    doc = {"name": "demo", "regions": [{"name": "east"}], "data": {"backup": {field: value}}}
    with pytest.raises(HadeployError) as err:
        config.parse(doc)
    assert f"data.backup.{field}" in str(err.value) and words in str(err.value)
    assert err.value.code is ExitCode.BAD_INPUT


def test_freshness_names_every_problem_against_the_policy():
    policy = config.BackupConfig()
    now = time.time()
    assert backup.freshness("east", answer(3600, 3600)).problems(policy, now) == []
    assert backup.freshness("east", answer(None, None)).problems(policy, now) == [
        "no backup yet", "never restore-tested"]
    stale = backup.freshness("east", answer(27 * 3600, 9 * 86400)).problems(policy, now)
    assert stale == ["newest backup older than 26h", "last restore test older than 8d"]
    failed = backup.freshness("east", answer(60, 60, verify_ok=False)).problems(policy, now)
    assert failed == ["the last restore test failed (damaged)"]
    # a failed attempt keeps the age of the last good backup, and says why it failed
    fresh = backup.freshness("east", answer(600, 600, failed_last=True))
    assert fresh.backup_label == "20261128-010000F" and fresh.backup_error == "boom"
    assert fresh.problems(policy, now) == []


def test_status_shows_each_repository_and_degrades_on_a_problem():
    from hadeploy import status

    ok = status.backup_status("east", answer(60, 60), DEP)
    assert ok.problems == [] and ok.last_verify_ok is True
    assert 50 < (ok.last_backup_age_seconds or 0) < 120
    gone = status.backup_status("west", {"ok": False, "error": "podman: no container"}, DEP)
    assert gone.problems == ["its backup host does not answer"] and gone.error


def test_the_backup_hosts_answer_with_json_and_failures_are_per_region():
    calls = []

    def run(host, argv, *, user="root", timeout=60.0):
        calls.append((host.name, argv, user))
        if "west" in host.name:
            return 125, "Error: no container with name or ID found"
        return 0, "some log line\n" + json.dumps({"ok": True, "label": "L"}) + "\n"

    hosts = backup.BackupHosts(TOPO, run)
    assert hosts.region(None).name == "east"  # the writable region's repository
    answers = hosts.each("last")
    assert answers["east"] == {"ok": True, "label": "L"}
    assert answers["west"]["ok"] is False and "did not answer" in answers["west"]["error"]
    assert {c[2] for c in calls} == {"postgres"} and calls[0][1][:2] == ["python3",
                                                                          backup.SCRIPT]
    with pytest.raises(HadeployError, match="has no backup repository") as err:
        hosts.region("north")
    assert err.value.code is ExitCode.BAD_INPUT


@pytest.mark.parametrize("time_value, name, expected", [
    ("2026-11-28T17:05:00Z", None, ["--type=time", "--target=2026-11-28 17:05:00.000000+00"]),
    ("2026-11-28 18:05:00+01:00", None,
     ["--type=time", "--target=2026-11-28 17:05:00.000000+00"]),
    ("2026-11-28T17:05:00", None, ["--type=time", "--target=2026-11-28 17:05:00.000000+00"]),
    (None, "before-migration", ["--type=name", "--target=before-migration"])])
def test_restore_targets(time_value, name, expected):
    assert RestoreTarget.parse(time_value, name).options() == expected


@pytest.mark.parametrize("time_value, name, words", [
    (None, None, "exactly one of"), ("2026-11-28T17:05:00Z", "x", "exactly one of"),
    ("tomorrow", None, "not a timestamp"), ("2999-01-01T00:00:00Z", None, "in the future"),
    (None, "a name; DROP TABLE", "not a restore point name")])
def test_bad_restore_targets_are_refused(time_value, name, words):
    with pytest.raises(HadeployError, match=words) as err:
        RestoreTarget.parse(time_value, name)
    assert err.value.code is ExitCode.BAD_INPUT


def test_the_repository_key_is_per_ca_and_kept_by_down(tmp_path: Path):
    from hadeploy.state import StateDir

    state = StateDir(tmp_path / "demo")
    state.ensure()
    dbsecrets.ensure_ca(state.path, "demo")
    assert backup.ensure_repo_key(state.path) and not backup.ensure_repo_key(state.path)
    key = backup.key_path(state.path)
    assert key.stat().st_mode & 0o777 == 0o600
    with state.lock("down"):
        state.clear(keep_backups=True)
    assert key.exists() and not dbsecrets.ca_path(state.path).exists()
    with state.lock("down"):
        state.clear()
    assert not key.exists()


def test_a_passwords_file_from_before_backups_gains_the_new_role_only(tmp_path: Path):
    old = {r: f"{r}-password-0123456789" for r in dbsecrets.ROLES if r != "backup"}
    dbsecrets.db_dir(tmp_path).mkdir(parents=True)
    dbsecrets.passwords_path(tmp_path).write_text(json.dumps(old))
    assert dbsecrets.missing_roles(tmp_path) == ["backup"]
    assert dbsecrets.ensure_passwords(tmp_path) is True
    now = dbsecrets.load_passwords(tmp_path)
    assert {r: now[r] for r in old} == old and len(now["backup"]) >= 16
    assert dbsecrets.ensure_passwords(tmp_path) is False


def test_a_restore_target_no_backup_reaches_is_refused_before_anything():
    target = RestoreTarget.parse("2026-11-28T17:05:00Z", None)
    finished = target.epoch + 60  # the only backup finished a minute after the target
    with pytest.raises(HadeployError, match="before the oldest backup finished") as err:
        target.check_reachable({"east": {"backups": [{"stopped_at": finished}]},
                                "west": {"ok": False, "error": "down"}})
    assert err.value.code is ExitCode.REFUSED
    target.check_reachable({"east": {"backups": [{"stopped_at": target.epoch - 60}]}})
    with pytest.raises(HadeployError, match=r"no backup exists.*west: down"):
        target.check_reachable({"east": {"backups": []}, "west": {"error": "down"}})
    RestoreTarget.parse(None, "p").check_reachable({"east": {"backups": [{"stopped_at": 1}]}})


def test_files_go_to_another_region_and_their_problems_degrade_status():
    from hadeploy import status
    from hadeploy.topology import files_repository

    assert files_repository(TOPO, "east").name == "hd-demo-west-backup"
    assert files_repository(TOPO, "west").name == "hd-demo-east-backup"
    alone = lab_topology(config.from_regions(["east"]))
    assert files_repository(alone, "east").name == "hd-demo-east-backup"  # nowhere else
    doc = answer(60, 60)
    doc["last_good_backup"]["snapshot"] = "1f0c2a9e"
    files = status.files_status(doc, DEP)
    assert files.snapshot == "1f0c2a9e" and files.problems == []
    assert status.files_status({"ok": False, "error": "gone"}, DEP).problems == [
        "its app host does not answer"]
    assert status.files_status(answer(None, None), DEP).problems == [
        "no backup yet", "never restore-tested"]
