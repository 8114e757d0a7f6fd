#!/usr/bin/python3
"""hadeploy files backup on a region's first app host (run by systemd timers and hadeploy).

  files-backup.py run      back the shared storage up (restic, over SFTP to another
                           region's backup host), then keep 7 daily and 4 weekly snapshots
  files-backup.py verify   restic's own check (reading every pack), then an actual restore
                           of the newest snapshot (--verify: every file's content checked
                           against the repository) whose file list must be the snapshot's
  files-backup.py first    in a repository without snapshots: init, run, verify
  files-backup.py last     the last backup's and the last restore test's records
  files-backup.py restore SNAPSHOT DIR
                           restore a snapshot ("latest" or an id) into DIR (never in place)

One JSON document on stdout; exit 0 when it succeeded, 1 when not.
Settings: /etc/hadeploy/restic/settings.json (written by the restic role).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

SETTINGS = os.environ.get("HADEPLOY_FILES_SETTINGS", "/etc/hadeploy/restic/settings.json")


class Failed(Exception):
    pass


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def settings() -> dict[str, Any]:
    with open(SETTINGS) as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def restic(cfg: dict[str, Any], *args: str, timeout: float = 7200,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    conf = cfg["conf_dir"]
    ssh = (f"ssh -i {conf}/id_ed25519 -o UserKnownHostsFile={conf}/known_hosts "
           "-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 "
           f"restic@{cfg['host']} -s sftp")
    proc = subprocess.run(
        ["restic", "-r", f"sftp:restic@{cfg['host']}:{cfg['repository']}",
         "-o", f"sftp.command={ssh}", "--password-file", f"{conf}/password", "--no-cache",
         *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise Failed(f"restic {args[0]} failed (exit {proc.returncode}): "
                     + (proc.stderr.strip() or proc.stdout.strip())[-1200:])
    return proc


def write_json(path: str, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def snapshots(cfg: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The repository's snapshots; None when it does not exist yet."""
    proc = restic(cfg, "snapshots", "--json", check=False, timeout=120)
    if proc.returncode != 0:
        if "Is there a repository" in proc.stderr or "does not exist" in proc.stderr:
            return None
        raise Failed("restic snapshots failed: " + proc.stderr.strip()[-1200:])
    found: list[dict[str, Any]] = json.loads(proc.stdout or "[]") or []
    return found


def backup(cfg: dict[str, Any]) -> dict[str, Any]:
    start = time.monotonic()
    record: dict[str, Any] = {"started_at": now(), "region": cfg["region"], "ok": False,
                              "repository": f"{cfg['host_name']}:{cfg['repository']}"}
    try:
        if snapshots(cfg) is None:
            restic(cfg, "init", timeout=120)
            record["initialised"] = True
        out = restic(cfg, "backup", "--json", "--host", cfg["region"], "--tag", "hadeploy",
                     cfg["path"]).stdout
        summary = next((json.loads(line) for line in out.splitlines()
                        if '"message_type":"summary"' in line.replace(" ", "")), {})
        record.update(snapshot=summary.get("snapshot_id"),
                      files=summary.get("total_files_processed"),
                      bytes=summary.get("total_bytes_processed"),
                      added_bytes=summary.get("data_added"),
                      backup_seconds=round(time.monotonic() - start, 3))
        restic(cfg, "forget", "--host", cfg["region"], "--keep-daily", "7", "--keep-weekly",
               "4", "--prune")
        record["ok"] = True
    except (Failed, subprocess.TimeoutExpired, ValueError) as exc:
        record["error"] = str(exc)
    record.update(finished_at=now(), seconds=round(time.monotonic() - start, 3))
    write_json(f"{cfg['state_dir']}/last-backup.json", record)
    if record["ok"]:
        write_json(f"{cfg['state_dir']}/last-good-backup.json", record)
    return record


def verify(cfg: dict[str, Any]) -> dict[str, Any]:
    start = time.monotonic()
    steps: dict[str, float] = {}
    record: dict[str, Any] = {"started_at": now(), "region": cfg["region"], "ok": False,
                              "steps": steps}
    target = tempfile.mkdtemp(prefix="hadeploy-files-verify-")
    try:
        found = snapshots(cfg)
        if not found:
            raise Failed("the repository holds no snapshot")
        newest = found[-1]
        record["snapshot"] = newest["short_id"]
        t = time.monotonic()
        restic(cfg, "check", "--read-data")
        steps["check_read_data"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        restic(cfg, "restore", newest["id"], "--target", target, "--verify")
        steps["restore"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        listed = {json.loads(line)["path"] for line in restic(
            cfg, "ls", "--json", newest["id"]).stdout.splitlines()
            if '"struct_type":"node"' in line.replace(" ", "")
            and json.loads(line).get("type") == "file"}
        restored = {os.path.join("/", os.path.relpath(os.path.join(d, f), target))
                    for d, _dirs, files in os.walk(target) for f in files}
        if listed != restored:
            raise Failed(f"the restored files differ from the snapshot: "
                         f"{len(listed - restored)} missing, {len(restored - listed)} extra")
        record["files"] = len(restored)
        steps["compare"] = round(time.monotonic() - t, 3)
        record["ok"] = True
    except (Failed, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        record["error"] = str(exc)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    record.update(finished_at=now(), seconds=round(time.monotonic() - start, 3))
    write_json(f"{cfg['state_dir']}/last-verify.json", record)
    return record


def last(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"last_backup": read_json(f"{cfg['state_dir']}/last-backup.json"),
            "last_good_backup": read_json(f"{cfg['state_dir']}/last-good-backup.json"),
            "last_verify": read_json(f"{cfg['state_dir']}/last-verify.json"), "now": now()}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cfg = settings()
    try:
        if argv[0] == "run":
            doc = backup(cfg)
        elif argv[0] == "verify":
            doc = verify(cfg)
        elif argv[0] == "last":
            doc = last(cfg)
        elif argv[0] == "restore" and len(argv) == 3:  # SNAPSHOT TARGET_DIR (not in place)
            t = time.monotonic()
            restic(cfg, "restore", argv[1], "--target", argv[2], "--verify")
            doc = {"ok": True, "snapshot": argv[1], "target": argv[2],
                   "seconds": round(time.monotonic() - t, 3)}
        elif argv[0] == "first":
            # Configuration must not fail because another region (the repository's) is
            # down: the timer tries again, and status shows that no backup exists yet.
            doc = {"ok": True, "changed": False}
            try:
                if not snapshots(cfg):
                    doc = backup(cfg)
                    if doc["ok"]:
                        doc = {**verify(cfg), "changed": True}
            except (Failed, subprocess.TimeoutExpired) as exc:
                doc = {"ok": True, "changed": False, "warning": str(exc)[:500]}
            if not doc.get("ok"):
                doc = {"ok": True, "changed": True, "warning": doc.get("error")}
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Failed, subprocess.TimeoutExpired) as exc:
        doc = {"ok": False, "error": str(exc)}
    print(json.dumps(doc, sort_keys=True))
    return 0 if doc.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
