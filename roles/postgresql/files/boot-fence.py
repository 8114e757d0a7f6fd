#!/usr/bin/python3
"""hadeploy boot fence: a database cluster that starts cold comes up paused.

Runs before Patroni (ExecStartPre, as root). When the region's whole cluster restarts (etcd
knows the cluster, but no member holds the leader key: the region crashed or was powered
off), it pauses the cluster in Patroni's dynamic configuration before any Patroni runs, so
no member starts PostgreSQL — in particular not as a writable primary of a region that a
failover replaced while it was down. hadeploy (watch, up, failover) then releases it in the
role the deployment's state says: primary again, or a standby of the new primary region.

A member restarting while its cluster runs (the leader key is held by a member whose
Patroni answers as the running primary) and a cluster created for the first time (no
'initialize' key) start normally. A leader key whose holder does not answer is a key left
by the crash: it expires within Patroni's ttl, so the fence waits that long for either a
live leader (start normally) or no key (a cold start: pause). Exit code 0 in every case
but an unreadable etcd after 60 s (then Patroni does not start: nothing is decided unsafely).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SCOPE = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PATRONI_SCOPE", "")
PREFIX = f"/service/{SCOPE}"
MARKER = Path("/run/hadeploy/fenced-at-boot")
STALE_KEY_WAIT = 15.0  # Patroni's ttl (10 s) and a margin


def etcdctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["etcdctl", "--endpoints=http://127.0.0.1:2379",
                           "--command-timeout=3s", *args], input=stdin, capture_output=True,
                          text=True, env={**os.environ, "ETCDCTL_API": "3"}, check=False)


def value(key: str) -> str | None:
    proc = etcdctl("get", "--print-value-only", key)
    if proc.returncode != 0:
        raise OSError(proc.stderr.strip()[:200])
    return proc.stdout.strip() or None


def leader_alive(leader: str) -> bool:
    """The leader key's holder answers as a running primary (its REST API from its member
    key): the cluster runs, this member only restarts."""
    try:
        member = json.loads(value(f"{PREFIX}/members/{leader}") or "{}")
        with urllib.request.urlopen(str(member["api_url"]), timeout=2) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError, KeyError):
        return False
    return doc.get("role") in ("master", "primary") and doc.get("state") == "running"


def settled_leader() -> str | None:
    """The leader key once it is either held by a live member or gone (None)."""
    deadline = time.monotonic() + STALE_KEY_WAIT
    while True:
        leader = value(f"{PREFIX}/leader")
        if leader is None or leader_alive(leader) or time.monotonic() > deadline:
            return leader if leader is not None and leader_alive(leader) else None
        time.sleep(1)


def main() -> int:
    if not SCOPE:
        print("boot-fence: no cluster scope given", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 60
    while True:
        try:
            initialized = value(f"{PREFIX}/initialize")
            leader = settled_leader() if initialized is not None else None
            config = value(f"{PREFIX}/config")
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                print(f"boot-fence: etcd did not answer: {exc}", file=sys.stderr)
                return 1
            time.sleep(1)
    if initialized is None or leader is not None:
        print(f"boot-fence: {'new cluster' if initialized is None else 'leader ' + leader}: "
              "start normally")
        return 0
    doc = json.loads(config) if config else {}
    if doc.get("pause") is True:
        print("boot-fence: cluster already paused")
    else:
        doc["pause"] = True
        proc = etcdctl("put", f"{PREFIX}/config", stdin=json.dumps(doc, separators=(",", ":")))
        if proc.returncode != 0:
            print(f"boot-fence: cannot pause the cluster: {proc.stderr.strip()}",
                  file=sys.stderr)
            return 1
        print("boot-fence: cold start without a leader: cluster paused until hadeploy "
              "releases it")
    MARKER.parent.mkdir(parents=True, exist_ok=True)
    MARKER.write_text(f"{time.time()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
