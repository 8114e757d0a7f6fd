#!/usr/bin/python3
"""hadeploy backups on a backup host (run as postgres by systemd timers and by hadeploy).

  backup.py full|diff|incr   take a backup into this region's repository, then its marker
  backup.py verify [LABEL]   restore a backup (default: the newest) into a scratch server,
                             check its marker and items, pg_amcheck; record the result
  backup.py list             the repository's backups, markers and restore tests (JSON)
  backup.py scratch TARGET   restore into the scratch server and leave it running
                             (TARGET: latest | time=<timestamp> | name=<restore point> |
                             set=<label>); backup.py scratch stop
  backup.py last             the last backup's and the last restore test's records (JSON)
  backup.py first            in a repository without backups: a full backup, then verify

A *marker* is written after every backup: one transaction on the writable primary that
records the number of items and a hash of them while writers wait (see the database's
``hadeploy_backup_mark``), and the WAL up to it is archived before the marker counts. A
restore test recovers exactly to that transaction and must find the same items.

Every command prints one JSON document on stdout; exit 0 when it succeeded, 1 when not.
Settings: /etc/pgbackrest/hadeploy.json (written by the pgbackrest role).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

BIN = "/usr/lib/postgresql/15/bin"
SETTINGS = os.environ.get("HADEPLOY_BACKUP_SETTINGS", "/etc/pgbackrest/hadeploy.json")
# The same expression as hadeploy_backup_mark in the database (roles/postgresql).
ITEMS_SQL = ("SELECT count(*) || '|' || md5(coalesce(string_agg(md5(i.id || ':' || "
             "i.body::text), '' ORDER BY i.id), '')) FROM items i")
PG_CTL_TIMEOUT = 3600
LOCK_PATIENCE = 7200  # seconds a backup waits for another region's backup to finish
SCRATCH_CONF = "/etc/pgbackrest/scratch.conf"  # the repository, and the scratch server


class Failed(Exception):
    """A step failed; the message says which and why."""


def settings() -> dict[str, Any]:
    with open(SETTINGS) as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(argv: list[str], timeout: float = 7200, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def checked(what: str, argv: list[str], timeout: float = 7200) -> str:
    proc = run(argv, timeout)
    if proc.returncode != 0:
        text = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
        raise Failed(f"{what} failed (exit {proc.returncode}): {text}")
    return proc.stdout


def write_json(path: str, doc: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, sort_keys=True, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def pgbackrest(cfg: dict[str, Any], *args: str) -> list[str]:
    return ["pgbackrest", f"--stanza={cfg['stanza']}", *args]


def info(cfg: dict[str, Any]) -> dict[str, Any]:
    out = checked("pgbackrest info", pgbackrest(cfg, "--output=json", "info"), 120)
    stanzas = json.loads(out)
    return stanzas[0] if stanzas else {}


# --- backup ------------------------------------------------------------------------------

def marker(cfg: dict[str, Any], label: str) -> dict[str, Any]:
    """Write the backup's marker on the writable primary (whichever region has it)."""
    conninfo = (f"host={','.join(cfg['db_hosts'])} port=5432 dbname={cfg['database']} "
                f"user=backup sslmode=verify-full sslrootcert={cfg['ca_file']} "
                "target_session_attrs=read-write connect_timeout=3")
    out = checked("writing the backup's marker on the primary", [
        f"{BIN}/psql", "-X", "-q", "-A", "-t", "-F", "|", "-d", conninfo, "-c",
        f"SELECT * FROM hadeploy_backup_mark('{label}')"], 120).strip()
    xid, items, items_hash, at = out.split("|")
    return {"label": label, "xid": int(xid), "items": int(items), "items_hash": items_hash,
            "at": at}


def backup(cfg: dict[str, Any], kind: str) -> dict[str, Any]:
    start = time.monotonic()
    record: dict[str, Any] = {"type": kind, "started_at": now(), "region": cfg["region"],
                              "repo": cfg["repo"], "ok": False}
    try:
        # One backup of a stanza at a time (pgBackRest locks it on the database hosts):
        # another region's backup host may be taking one; wait for it.
        deadline = time.monotonic() + LOCK_PATIENCE
        while True:
            proc = run(pgbackrest(cfg, f"--type={kind}", "--log-level-console=info",
                                  "backup"))
            if proc.returncode == 0 or "unable to acquire lock" not in proc.stdout + \
                    proc.stderr or time.monotonic() > deadline:
                break
            record["waited_for_lock"] = True
            # A random pause: every region's backup host starts at the same moment (the
            # first backup of 'up', the same timer), and with several database hosts each
            # may lock some of them and fail; fixed pauses kept them colliding forever.
            time.sleep(random.uniform(3, 20))
        if proc.returncode != 0:
            text = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
            record["error_code"] = proc.returncode
            if proc.returncode == 45 or "ERROR: [045]" in text:
                # The archive already holds different WAL for this position: two servers
                # wrote one timeline (a split brain), or the stanza belongs to another system.
                record["split_brain"] = True
            raise Failed(f"pgbackrest backup failed (exit {proc.returncode}): {text}")
        record["backup_seconds"] = round(time.monotonic() - start, 3)
        newest = info(cfg).get("backup", [])[-1]
        label = newest["label"]
        record.update(label=label, size=newest["info"]["size"],
                      repo_size=newest["info"]["repository"]["delta"])
        t = time.monotonic()
        mark = marker(cfg, label)
        # Forces a WAL switch and waits until the segment with the marker is archived here.
        checked("pgbackrest check (archiving the marker's WAL)",
                pgbackrest(cfg, "check"), 300)
        record["marker_seconds"] = round(time.monotonic() - t, 3)
        write_json(f"{cfg['state_dir']}/markers/{label}.json", mark)
        record.update(ok=True, marker=mark)
    except (Failed, subprocess.TimeoutExpired, ValueError, IndexError, KeyError) as exc:
        record["error"] = str(exc)
    record["finished_at"] = now()
    record["seconds"] = round(time.monotonic() - start, 3)
    write_json(f"{cfg['state_dir']}/last-backup.json", record)
    if record["ok"]:
        write_json(f"{cfg['state_dir']}/last-good-backup.json", record)
    return record


# --- restore into the scratch server ----------------------------------------------------

def scratch_psql(cfg: dict[str, Any], sql: str, database: str = "postgres") -> str:
    return checked(f"psql on the scratch server ({sql[:40]})", [
        f"{BIN}/psql", "-X", "-q", "-A", "-t", "-h", cfg["scratch_dir"] + "/socket",
        "-p", str(cfg["scratch_port"]), "-d", database, "-c", sql], 600).strip()


def scratch_stop(cfg: dict[str, Any]) -> None:
    data = cfg["scratch_dir"] + "/data"
    if os.path.exists(f"{data}/postmaster.pid"):
        run([f"{BIN}/pg_ctl", "-D", data, "stop", "-m", "immediate", "-w"], 120)


def scratch_restore(cfg: dict[str, Any], target: list[str], steps: dict[str, float]) -> None:
    """Restore into the scratch data directory and start it until recovery ends."""
    scratch_stop(cfg)
    data, sock = cfg["scratch_dir"] + "/data", cfg["scratch_dir"] + "/socket"
    shutil.rmtree(cfg["scratch_dir"], ignore_errors=True)
    os.makedirs(data, mode=0o700)
    os.makedirs(sock, mode=0o700)
    t = time.monotonic()
    # archive-mode=off: the scratch server must never push WAL into the stanza's archive.
    checked("pgbackrest restore", pgbackrest(
        cfg, f"--config={SCRATCH_CONF}", "--archive-mode=off", "--log-level-console=warn",
        *target, "restore"))
    steps["restore"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    log = cfg["scratch_dir"] + "/postgresql.log"
    # The restored configuration is a database host's: listen on a socket only, no TLS
    # files of another host, no archiving, no hot standby parameter checks, and no
    # synchronous replica to wait for (a commit would wait forever: Patroni's
    # synchronous_standby_names came with the backup).
    options = (f"-p {cfg['scratch_port']} -c listen_addresses='' "
               "-c synchronous_standby_names='' "
               f"-c unix_socket_directories='{sock}' -c ssl=off -c archive_mode=off "
               f"-c hot_standby=off -c hba_file='{data}/pg_hba.conf' "
               f"-c ident_file='{data}/pg_ident.conf' -c logging_collector=off "
               "-c shared_buffers=64MB")
    checked("starting the scratch server", [f"{BIN}/pg_ctl", "-D", data, "-l", log, "-o",
                                            options, "start"], 120)
    deadline = time.monotonic() + PG_CTL_TIMEOUT
    while True:
        probe = run([f"{BIN}/psql", "-X", "-q", "-A", "-t", "-h", sock, "-p",
                     str(cfg["scratch_port"]), "-d", "postgres", "-c",
                     "SELECT pg_is_in_recovery()"], 10)
        if probe.returncode == 0 and probe.stdout.strip() == "f":
            break
        if run([f"{BIN}/pg_ctl", "-D", data, "status"], 10).returncode == 3:
            raise Failed("the restored server stopped during recovery: "
                         + tail(log))
        if time.monotonic() > deadline:
            raise Failed("recovery of the restored server did not finish: " + tail(log))
        time.sleep(0.2)
    steps["recovery"] = round(time.monotonic() - t, 3)


def damaged(line: str, label: str) -> bool:
    """A line of pgBackRest verify's report about this backup, or a WAL file, that is
    damaged (other backups' problems are theirs; the restore test reads the WAL it needs)."""
    if f"backup: {label}, status: invalid" in line:
        return True
    found = re.search(r"invalid checksum '([^']+)'", line)
    if found is None:
        return False
    path = found.group(1)
    return path.startswith(label + "/") or re.match(r"[0-9]{8}-[0-9]{6}F", path) is None


def tail(path: str, lines: int = 6) -> str:
    try:
        with open(path) as fh:
            return " | ".join(fh.read().strip().splitlines()[-lines:])[-1500:]
    except OSError:
        return "(no log)"


def verify(cfg: dict[str, Any], label: str | None) -> dict[str, Any]:
    start = time.monotonic()
    steps: dict[str, float] = {}
    record: dict[str, Any] = {"started_at": now(), "region": cfg["region"],
                              "repo": cfg["repo"], "ok": False, "steps": steps}
    try:
        backups = info(cfg).get("backup", [])
        if not backups:
            raise Failed("the repository holds no backup")
        chosen = next((b for b in backups if b["label"] == label), None) if label \
            else backups[-1]
        if chosen is None:
            raise Failed(f"no backup labelled {label!r} in repository {cfg['repo']}")
        label = chosen["label"]
        record["label"] = label
        mark = read_json(f"{cfg['state_dir']}/markers/{label}.json")
        if not isinstance(mark, dict):
            raise Failed(f"backup {label} has no marker (its marker step failed, or it was "
                         "not taken by hadeploy): it cannot be proven; take a new backup")
        record["marker"] = mark
        t = time.monotonic()
        # pgBackRest 2.45's verify exits 0 even when it finds damage: read its report.
        report = checked("pgbackrest verify", pgbackrest(
            cfg, f"--set={label}", "--log-level-console=info", "verify"), 3600)
        bad = [line.strip() for line in report.splitlines() if damaged(line, label)]
        if bad:
            raise Failed(f"pgbackrest verify found damage in backup {label} or its WAL: "
                         + "; ".join(bad)[:1500])
        steps["repository_checksums"] = round(time.monotonic() - t, 3)
        scratch_restore(cfg, [f"--set={label}", "--type=xid", f"--target={mark['xid']}",
                              "--target-action=promote"], steps)
        t = time.monotonic()
        found = scratch_psql(cfg, f"SELECT count(*) FROM backup_marker WHERE xid = "
                                  f"{int(mark['xid'])}", cfg["database"])
        if found != "1":
            raise Failed(f"the restored database has no marker row for transaction "
                         f"{mark['xid']}")
        items, items_hash = scratch_psql(cfg, ITEMS_SQL, cfg["database"]).split("|")
        record["restored"] = {"items": int(items), "items_hash": items_hash}
        if int(items) != mark["items"] or items_hash != mark["items_hash"]:
            raise Failed(f"the restored items differ from the marker: {items} items "
                         f"(hash {items_hash[:12]}) restored, {mark['items']} (hash "
                         f"{mark['items_hash'][:12]}) recorded at backup time")
        steps["marker_check"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        out = run([f"{BIN}/pg_amcheck", "-h", cfg["scratch_dir"] + "/socket", "-p",
                   str(cfg["scratch_port"]), "--install-missing", "--heapallindexed",
                   "-d", cfg["database"]], 3600)
        steps["amcheck"] = round(time.monotonic() - t, 3)
        if out.returncode != 0:
            raise Failed("pg_amcheck found corruption in the restored database: "
                         + (out.stdout + out.stderr).strip()[-1500:])
        record["ok"] = True
    except (Failed, subprocess.TimeoutExpired, ValueError, KeyError, OSError) as exc:
        record["error"] = str(exc)
    finally:
        scratch_stop(cfg)
        shutil.rmtree(cfg["scratch_dir"], ignore_errors=True)
    record["finished_at"] = now()
    record["seconds"] = round(time.monotonic() - start, 3)
    if record.get("label"):
        write_json(f"{cfg['state_dir']}/verify/{record['label']}.json", record)
    write_json(f"{cfg['state_dir']}/last-verify.json", record)
    return record


def scratch(cfg: dict[str, Any], target: str) -> dict[str, Any]:
    if target == "stop":
        scratch_stop(cfg)
        shutil.rmtree(cfg["scratch_dir"], ignore_errors=True)
        return {"ok": True, "stopped": True}
    kind, _, value = target.partition("=")
    options = {"latest": [], "time": ["--type=time", f"--target={value}"],
               "name": ["--type=name", f"--target={value}"],
               "set": [f"--set={value}", "--type=immediate"]}.get(kind)
    if options is None or (kind != "latest" and not value):
        raise Failed(f"unknown restore target {target!r}: use latest, time=..., name=... "
                     "or set=...")
    steps: dict[str, float] = {}
    notes = []
    if kind in ("time", "name"):
        options.append("--target-action=promote")
        # A recent target needs the WAL the primary is writing now: close that segment and
        # wait until it is archived here (best effort: the primary may be gone).
        t = time.monotonic()
        proc = run(pgbackrest(cfg, "check"), 300)
        steps["archive_current_wal"] = round(time.monotonic() - t, 3)
        if proc.returncode != 0:
            notes.append("the current WAL could not be archived first (is the primary "
                         "down?): only what was archived before is restored")
    try:
        scratch_restore(cfg, options, steps)
    except Failed:
        scratch_stop(cfg)
        raise
    return {"ok": True, "steps": steps, "notes": notes, "port": cfg["scratch_port"],
            "socket": cfg["scratch_dir"] + "/socket",
            "connect": f"psql -h {cfg['scratch_dir']}/socket -p {cfg['scratch_port']} "
                       f"-d {cfg['database']}"}


def listing(cfg: dict[str, Any]) -> dict[str, Any]:
    stanza = info(cfg)
    backups = []
    for b in stanza.get("backup", []):
        label = b["label"]
        verified = read_json(f"{cfg['state_dir']}/verify/{label}.json")
        backups.append({
            "label": label, "type": b["type"], "prior": b.get("prior"),
            "started_at": b["timestamp"]["start"], "stopped_at": b["timestamp"]["stop"],
            "size": b["info"]["size"], "repo_size": b["info"]["repository"]["delta"],
            "wal_start": b["archive"]["start"], "wal_stop": b["archive"]["stop"],
            "marker": read_json(f"{cfg['state_dir']}/markers/{label}.json"),
            "verified": None if not isinstance(verified, dict) else {
                "ok": verified.get("ok"), "at": verified.get("finished_at"),
                "error": verified.get("error")}})
    archive = [{"timeline_id": a.get("id"), "min": a.get("min"), "max": a.get("max")}
               for a in stanza.get("archive", [])]
    return {"region": cfg["region"], "repo": cfg["repo"], "stanza": cfg["stanza"],
            "status": stanza.get("status", {}).get("message"), "backups": backups,
            "archive": archive, **last(cfg)}


def last(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"last_backup": read_json(f"{cfg['state_dir']}/last-backup.json"),
            "last_good_backup": read_json(f"{cfg['state_dir']}/last-good-backup.json"),
            "last_verify": read_json(f"{cfg['state_dir']}/last-verify.json"),
            "now": now()}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cfg = settings()
    command = argv[0]
    try:
        if command in ("full", "diff", "incr"):
            doc = backup(cfg, command)
        elif command == "first":  # a new repository: a full backup, restore-tested
            doc = {"ok": True, "changed": False}
            if not info(cfg).get("backup"):
                doc = backup(cfg, "full")
                if doc["ok"]:
                    doc = {**verify(cfg, doc["label"]), "changed": True}
        elif command == "verify":
            doc = verify(cfg, argv[1] if len(argv) > 1 else None)
        elif command == "list":
            doc = listing(cfg)
        elif command == "last":
            doc = last(cfg)
        elif command == "scratch" and len(argv) > 1:
            doc = scratch(cfg, argv[1])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Failed, subprocess.TimeoutExpired) as exc:
        doc = {"ok": False, "error": str(exc)}
    print(json.dumps(doc, sort_keys=True))
    return 0 if doc.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
