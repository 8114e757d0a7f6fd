#!/usr/bin/env python3
"""Start a lab DNS server's knotd only after it holds the newest zone it can find.

A server that was down (crashed, stopped, its region lost) missed every change made
meanwhile; started as it was, it would answer the old app record — even for a moment.
So before knotd runs, this asks every peer for the zone (AXFR signed with the
deployment's key, 1 s per peer, all at once) and, when a peer's SOA serial is higher than
the zone file's, writes that peer's zone in its place. Every change hadeploy counts
reached a majority of the servers, so the newest one is on a peer that answers unless a
majority is gone too; then the server starts with what it has, and `hadeploy up` or
`watch` brings it forward once the others are back.

Standard library only (it runs in the lab image with python3 and knot-dnsutils' kdig).
Configuration: a JSON file with ``zone`` and ``peers`` (addresses); the key in a file of
its own (``hmac-sha256:name:secret``, mode 0600) that kdig reads — never a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CONF = "/etc/hadeploy-dns/sync.json"
KNOT_CONF = "/etc/hadeploy-dns/knot.conf"
KEY_FILE = "/etc/hadeploy-dns/tsig.key"
ZONES = "/var/lib/knot/zones"


def parse(text: str) -> tuple[int | None, list[str]]:
    """A zone's SOA serial and its records, one per line, from a zone file in the
    ``name ttl [class] type rdata`` form (knot's and hadeploy's) or kdig's AXFR output
    (comments, the TSIG record and the closing SOA left out)."""
    serial, records = None, []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("$", ";")) or len(fields) < 4:
            continue
        at = 3 if fields[2] in ("IN", "ANY", "CH") else 2
        rtype = fields[at].upper()
        if rtype == "TSIG":
            continue
        if rtype == "SOA":
            if serial is not None:
                continue  # an AXFR ends with the SOA it started with
            try:
                serial = int(fields[at + 3])
            except (IndexError, ValueError):
                return None, []
        records.append(line.strip())
    return serial, records


def transfer(peer: str, zone: str, key: str) -> tuple[int | None, list[str], str]:
    """``key``: the key file's path."""
    try:
        done = subprocess.run(["kdig", "-k", key, f"@{peer}", "+timeout=1", "+retry=0",
                               zone, "AXFR"], capture_output=True, text=True, timeout=4,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, [], f"{type(exc).__name__}"
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines()
        why = next((x for x in lines if "ERROR" in x), f"kdig exit {done.returncode}")
        return None, [], why.lstrip("; ").strip()[:120]
    serial, records = parse(done.stdout)
    return serial, records, "" if serial is not None else "no SOA in the transfer"


def sync(conf: dict[str, Any]) -> str:
    zone = str(conf["zone"]).rstrip(".") + "."
    path = Path(ZONES) / f"{zone.rstrip('.')}.zone"
    try:
        own, _ = parse(path.read_text(encoding="utf-8"))
    except OSError:
        own = None
    peers = [str(p) for p in conf.get("peers") or []]
    if not peers:
        return f"serial {own}: no peers"
    with ThreadPoolExecutor(max_workers=len(peers)) as pool:
        got = dict(zip(peers, pool.map(lambda p: transfer(p, zone, KEY_FILE), peers),
                       strict=True))
    heard = {p: r for p, r in got.items() if r[0] is not None}
    silent = ", ".join(f"{p} ({r[2]})" for p, r in got.items() if r[0] is None)
    best = max(heard.items(), key=lambda kv: kv[1][0] or 0, default=None)
    if best is None or (own is not None and (best[1][0] or 0) <= own):
        return (f"serial {own} is the newest of {len(heard)} peer(s) that answered"
                + (f"; silent: {silent}" if silent else ""))
    tmp = path.with_suffix(".sync")
    tmp.write_text(f";; from {best[0]} at start (hadeploy)\n" + "\n".join(best[1][1]) + "\n",
                   encoding="utf-8")
    tmp.replace(path)
    return (f"took serial {best[1][0]} from {best[0]} (had {own})"
            + (f"; silent: {silent}" if silent else ""))


def main() -> int:
    try:
        with open(CONF, encoding="utf-8") as f:
            conf = json.load(f)
        print(f"hadeploy-dns-start: {sync(conf)}", flush=True)
    except Exception as exc:  # never keep the server down for want of a sync
        print(f"hadeploy-dns-start: no sync ({type(exc).__name__}: {exc})", flush=True)
    Path("/run/knot").mkdir(parents=True, exist_ok=True)
    os.execvp("knotd", ["knotd", "-c", KNOT_CONF])  # noqa: S606 - becomes the server
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
