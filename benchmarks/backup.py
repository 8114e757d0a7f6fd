#!/usr/bin/env python3
"""Backups measured on the real lab: throughput against plain tar/cp of the same data
directory, restore-test (verify) time, and point-in-time accuracy.

Deployment "hdbbench" (subnets 10.83.x): east (primary) and west, one database host each,
a backup host per region. Steps, all in one run (ratios, not absolute numbers, matter on a
noisy machine):

  demo     `backup run --type full --region east` and `backup verify` on the demo data set
  load     add --size thousand items of about 1 kB (generated on the primary)
  copy     baselines on the database host: `tar -cf` of the data directory (without pg_wal,
           as pgBackRest) into a file and `rsync -a` of it (local disk, no network, no
           compression, no encryption), then the same tar streamed to the backup host
           (`tar | podman exec -i … cat`)
  backup   `backup run --type full --region east` (over TLS, lz4, AES-256, 2 processes)
  restore  `pgbackrest restore` of that backup into the scratch directory of the backup
           host, against `tar -xf` of the tar file on the database host
  verify   `backup verify` of the big backup (checksums, restore, recovery, marker, amcheck)
  pitr     --pitr rounds: items written 1 s apart, a target between two of them, restored
           to the scratch server: every item acknowledged before the target present, none
           after it

Usage:  .venv/bin/python benchmarks/backup.py [--size 850] [--pitr 5] [--keep]
Writes benchmarks/results/backup.json and .md; removes its deployment unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.labclient import request  # noqa: E402

NAME = "hdbbench"
VIP = "10.83.1.10"
DB, BACKUP = f"hd-{NAME}-east-db1", f"hd-{NAME}-east-backup"
PG_DATA = "/var/lib/postgresql/15/main"
CONFIG = f"""\
name: {NAME}
dns: {{zone: {NAME}.test, record: app, ttl: 1}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.83.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.83.2.0/24}}
data: {{hosts: 1}}
lab: {{control_subnet: 10.83.0.0/24}}
"""
HD = [sys.executable, "-m", "hadeploy"]
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "cli/hadeploy/targets/lab/containers.conf")}


def sh(argv: list[str], *, check: bool = True, timeout: float = 7200, **kw) -> str:
    proc = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=timeout,
                          check=False, **kw)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed: {proc.stderr[-800:]}")
    return proc.stdout


def timed(argv: list[str], **kw) -> tuple[float, str]:
    start = time.monotonic()
    out = sh(argv, **kw)
    return time.monotonic() - start, out


def on(host: str, script: str, user: str = "root", **kw) -> str:
    return sh(["podman", "exec", "-u", user, host, "sh", "-c", script], **kw)


def hd(work: Path, *args: str) -> dict:
    out = sh([*HD, *args, "--json"], cwd=work, timeout=7200)
    return json.loads(out)


def data_mb() -> float:
    """The data directory without pg_wal (pgBackRest takes WAL from the archive, and the
    baselines leave it out too)."""
    return int(on(DB, f"du -sb --exclude=pg_wal {PG_DATA} | cut -f1")) / 1e6


# A live data directory changes while it is read: GNU tar then exits 1 (and goes on).
TAR = ["tar", "--warning=no-file-changed", "--exclude=./pg_wal"]


def demo(work: Path) -> dict:
    for n in range(200):
        request(VIP, "POST", "/items", {"id": f"demo-{n}", "note": "x" * 100})
    size = data_mb()
    t, _ = timed([*HD, "backup", "run", "--type", "full", "--region", "east"], cwd=work)
    v = hd(work, "backup", "verify", "--region", "east")
    return {"data_mb": round(size, 1), "backup_s": round(t, 2), "verify_s": v["seconds"],
            "verify_steps": v["steps"], "verified": v["ok"]}


def load(size_mb: int) -> dict:
    rows = size_mb * 1000  # about 1 kB per row with its index entry
    t, _ = timed(["podman", "exec", "-u", "postgres", DB, "psql", "-X", "-q", "-d",
                  "hadeploy", "-c",
                  "INSERT INTO items (id, body, region) SELECT 'bulk-' || g, "
                  "jsonb_build_object('pad', repeat(md5(g::text), 28)), 'east' FROM "
                  f"generate_series(1, {rows}) g; CHECKPOINT"])
    return {"rows": rows, "seconds": round(t, 1), "data_mb": round(data_mb(), 1)}


def throughput(work: Path) -> dict:
    size = data_mb()
    on(DB, "rm -rf /tmp/bench && mkdir -p /tmp/bench")
    tar_s, _ = timed(["podman", "exec", DB, *TAR, "-cf", "/tmp/bench/data.tar", "-C",
                      PG_DATA, "."], check=False)
    cp_s, _ = timed(["podman", "exec", DB, "rsync", "-a", "--exclude=pg_wal", PG_DATA + "/",
                     "/tmp/bench/copy/"], check=False)
    on(DB, "rm -rf /tmp/bench/copy")
    stream_s, _ = timed(["sh", "-c", f"podman exec {DB} {' '.join(TAR)} -cf - -C {PG_DATA} . "
                         f"| podman exec -i {BACKUP} sh -c 'cat > /tmp/stream.tar'"],
                        check=False)
    on(BACKUP, "rm -f /tmp/stream.tar")
    start = time.monotonic()
    run = hd(work, "backup", "run", "--type", "full", "--region", "east")["east"]
    run_s = time.monotonic() - start
    backup_s = run["backup_seconds"]  # pgBackRest's backup alone (no marker, no files)
    on(DB, "rm -rf /tmp/bench/untar && mkdir /tmp/bench/untar")
    untar_s, _ = timed(["podman", "exec", DB, "tar", "-xf", "/tmp/bench/data.tar", "-C",
                        "/tmp/bench/untar"])
    on(DB, "rm -rf /tmp/bench")
    on(BACKUP, "rm -rf /var/lib/postgresql/hadeploy-scratch && mkdir -p "
               "/var/lib/postgresql/hadeploy-scratch/data && chmod 700 "
               "/var/lib/postgresql/hadeploy-scratch/data", user="postgres")
    restore_s, _ = timed(["podman", "exec", "-u", "postgres", BACKUP, "pgbackrest",
                          f"--stanza=hd-{NAME}", "--config=/etc/pgbackrest/scratch.conf",
                          "--archive-mode=off", "--type=immediate", "restore"])
    on(BACKUP, "rm -rf /var/lib/postgresql/hadeploy-scratch", user="postgres")
    listing = hd(work, "backup", "list")["repositories"]["east"]["backups"][-1]

    def mbps(seconds: float) -> float:
        return round(size / seconds, 1)
    return {
        "data_mb": round(size, 1),
        "tar_local_s": round(tar_s, 2), "rsync_local_s": round(cp_s, 2),
        "tar_stream_to_backup_host_s": round(stream_s, 2),
        "pgbackrest_backup_s": round(backup_s, 2),
        "backup_run_s": round(run_s, 2),  # hadeploy backup run: + marker, check, files
        "untar_local_s": round(untar_s, 2), "pgbackrest_restore_s": round(restore_s, 2),
        "repo_mb": round(listing["repo_size"] / 1e6, 1),
        "MB_per_s": {"tar": mbps(tar_s), "rsync": mbps(cp_s), "tar_stream": mbps(stream_s),
                     "backup": mbps(backup_s), "untar": mbps(untar_s),
                     "restore": mbps(restore_s)},
        "backup_vs_tar_stream": round(stream_s / backup_s, 2),
        "backup_vs_tar_local": round(tar_s / backup_s, 2),
        "restore_vs_untar": round(untar_s / restore_s, 2)}


def pitr_round(work: Path, r: int) -> dict:
    acked: list[tuple[str, float]] = []
    for n in range(6):
        item = f"pitr-{r}-{n}"
        code, _ = request(VIP, "POST", "/items", {"id": item})
        assert code == 201
        acked.append((item, time.time()))
        time.sleep(1.0)
    target = acked[2 + r % 3][1] + 0.4  # between two acknowledged writes
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(target)) + \
        f".{int(target % 1 * 1e6):06d}Z"
    doc = hd(work, "restore", "--to-scratch", "--time", stamp, "--region", "east")
    ids = ",".join(f"'{i}'" for i, _ in acked)
    found = set(on(BACKUP, doc["connect"] + " -X -A -t -c \"SELECT id FROM items "
                   f"WHERE id IN ({ids})\"", user="postgres").split())
    expected = {i for i, at in acked if at < target}
    on(BACKUP, "python3 /usr/local/lib/hadeploy/backup.py scratch stop", user="postgres")
    return {"target": stamp, "expected": len(expected), "found": len(found),
            "exact": found == expected, "restore_s": round(sum(doc["steps"].values()), 2)}


def report(results: dict, size: int) -> str:
    t, demo_ = results["throughput"], results["demo"]
    return "\n".join([
        f"# Backups ({time.strftime('%Y-%m-%d')}, `benchmarks/backup.py --size {size}`)", "",
        f"- demo data set ({demo_['data_mb']} MB): full backup {demo_['backup_s']} s, "
        f"verify {demo_['verify_s']} s",
        f"- {t['data_mb']} MB data directory: tar {t['tar_local_s']} s, rsync {t['rsync_local_s']} "
        f"s, tar streamed to the backup host {t['tar_stream_to_backup_host_s']} s; "
        f"pgBackRest full backup {t['pgbackrest_backup_s']} s (repository {t['repo_mb']} "
        f"MB): {t['backup_vs_tar_stream']}x the streamed tar, {t['backup_vs_tar_local']}x "
        f"the local tar; `hadeploy backup run` {t['backup_run_s']} s with the marker, the "
        "archive check and the files backup",
        f"- restore {t['pgbackrest_restore_s']} s vs untar {t['untar_local_s']} s: "
        f"{t['restore_vs_untar']}x",
        f"- verify of the big backup: {results['verify_big']['seconds']} s "
        f"{results['verify_big']['steps']}",
        f"- point in time: {results['pitr']['exact']} of {len(results['pitr']['rounds'])} "
        "restores exact"]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=850,
                    help="thousands of 1-kB rows to load (850: a data directory of ~1 GB)")
    ap.add_argument("--pitr", type=int, default=5, help="point-in-time rounds")
    ap.add_argument("--keep", action="store_true", help="keep the deployment")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hdbbench-"))
    (work / "hadeploy.yaml").write_text(CONFIG)
    ENV["HADEPLOY_STATE_DIR"] = str(work / "state")
    results: dict = {"size_mb_requested": args.size}
    try:
        t, _ = timed([*HD, "up", "--json"], cwd=work)
        results["cold_up_s"] = round(t, 1)
        results["demo"] = demo(work)
        print("demo", results["demo"], flush=True)
        results["load"] = load(args.size)
        print("load", results["load"], flush=True)
        results["throughput"] = throughput(work)
        print("throughput", results["throughput"], flush=True)
        v = hd(work, "backup", "verify", "--region", "east")
        results["verify_big"] = {"seconds": v["seconds"], "steps": v["steps"], "ok": v["ok"],
                                 "items": v.get("restored", {}).get("items")}
        print("verify", results["verify_big"], flush=True)
        rounds = []
        for r in range(args.pitr):
            rounds.append(pitr_round(work, r))
            print("pitr", rounds[-1], flush=True)
        results["pitr"] = {"rounds": rounds, "exact": sum(r["exact"] for r in rounds)}
    finally:
        if not args.keep:
            sh([*HD, "down", "--delete-backups", "--yes"], cwd=work, check=False)
    (REPO / "benchmarks/results/backup.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results, args.size)
    (REPO / "benchmarks/results/backup.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
