#!/usr/bin/env python3
"""What clients and failovers see when DNS servers die, with an authoritative server in
every region (and the witness: two regions, three servers).

Deployment "hddns" (subnets 10.79.x): east and west, hot, one app host each, no database
tier, probes every 0.5 s (four failures), DNS TTL 1 s.

  resolver  a real client: glibc's getaddrinfo() in a container on the control network,
            every 100 ms for 14 s, its resolv.conf listing east's, west's and the witness's
            server in that order. East's server (the first listed) is killed 3 s in and
            started again 6 s later. Three resolv.conf variants: glibc's defaults
            (timeout 5 s, 2 attempts), `options timeout:1`, `options timeout:1 rotate`.
            Reported: lookups, failed lookups, lookup time while the server was down.
  region    the active region killed with its DNS server under `hadeploy watch`, with two
            drill clients in the same run: one resolves through every server, the active
            region's first (its stub resolver waits 1 s on the dead server, then asks the
            next), the other only through the witness, which a region loss does not touch
            — what a single control-network server gave before there was one per region.
            Reported: each client's RTO (fault → served again, 3 s of good answers after).
  failover  `hadeploy failover` with every server up, then with the target's own server
            killed (it misses the change); then that server is started with `podman start`
            and asked at once: its first answer must already be the new record.

Usage:  .venv/bin/python benchmarks/dns_servers.py [--rounds 3]
Writes benchmarks/results/dns_servers.json and .md. Removes its deployment at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "cli"))
sys.path.insert(0, str(REPO / "benchmarks"))

from recovery import pct, podman  # noqa: E402  (the same helpers)

from hadeploy import drill  # noqa: E402

NAME, ZONE = "hddns", "hddns.test"
SERVERS = {"east": "10.79.1.6", "west": "10.79.2.6", "witness": "10.79.0.53"}
VIPS = {"east": "10.79.1.10", "west": "10.79.2.10"}
HD = [sys.executable, "-m", "hadeploy"]
CONFIG = f"""\
name: {NAME}
dns: {{zone: {ZONE}, record: app, ttl: 1}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.79.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.79.2.0/24}}
failover: {{probe_interval: 0.5, probe_timeout: 0.4, failure_threshold: 4, quorum: 2,
           hold_down: 5, min_interval: 0}}
data: {{enabled: false}}
objectives: {{rto: 30, rpo: 60}}
lab: {{control_subnet: 10.79.0.0/24}}
"""
# Runs inside the client container: getaddrinfo() every 100 ms, one JSON line per lookup.
LOOKUPS = """
import json, socket, sys, time
end = time.time() + float(sys.argv[1])
while time.time() < end:
    t = time.time()
    try:
        got = sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[2], 80, socket.AF_INET)})
    except OSError:
        got = None
    print(json.dumps({"at": t, "ms": (time.time() - t) * 1000, "answer": got}), flush=True)
    time.sleep(max(0.0, 0.1 - (time.time() - t)))
"""


class Lab:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {**os.environ, "HADEPLOY_STATE_DIR": str(work / "state")}

    def run(self, *args: str, check: bool = True) -> str:
        return subprocess.run([*HD, *args], cwd=self.work, env=self.env, check=check,
                              capture_output=True, text=True).stdout

    def status(self) -> dict:
        return json.loads(self.run("status", "--json", check=False))

    def wait_healthy(self, hold: float = 6.0) -> None:
        deadline = time.time() + 180
        while time.time() < deadline:
            doc = self.status()
            if all(r["healthy"] for r in doc["regions"]) and all(
                    s["agrees"] for s in doc["dns"]["servers"]):
                time.sleep(hold)
                return
            time.sleep(1)
        raise SystemExit("the deployment did not become healthy again")

    def region(self, name: str, *, every: bool = False) -> list[str]:
        return podman("ps", *(["-a"] if every else []), "--format", "{{.Names}}", "--filter",
                      f"label=io.hadeploy.region={name}", "--filter",
                      f"label=io.hadeploy.deployment={NAME}").split()


def dns_container(server: str) -> str:
    return f"hd-{NAME}-dns" if server == "witness" else f"hd-{NAME}-{server}-dns"


def resolver_round(work: Path, variant: str, options: str) -> dict:
    """glibc's resolver in a container; east's server down from +3 s to +9 s."""
    conf = work / f"resolv-{variant}.conf"
    conf.write_text("".join(f"nameserver {a}\n" for a in SERVERS.values())
                    + (f"options {options}\n" if options else ""))
    image = podman("ps", "--format", "{{.Image}}", "--filter",
                   f"name=hd-{NAME}-east-app1").split()[0]
    proc = subprocess.Popen(
        ["podman", "run", "--rm", "--network", f"hd-{NAME}-ctl", "-v",
         f"{conf}:/etc/resolv.conf:ro", image, "python3", "-c", LOOKUPS, "14", f"app.{ZONE}"],
        env={**os.environ, "CONTAINERS_CONF":
             str(REPO / "cli/hadeploy/targets/lab/containers.conf")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3 + 1.5)  # the container's own start, then 3 s of normal lookups
    down_at = time.time()
    podman("kill", dns_container("east"))
    time.sleep(6)
    up_at = time.time()
    podman("start", dns_container("east"))
    out, err = proc.communicate(timeout=120)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if not rows:
        raise SystemExit(f"no lookup ran: {err[-500:]}")
    during = [r for r in rows if down_at <= r["at"] < up_at]
    row = {"variant": variant, "options": options or "(glibc defaults)",
           "lookups": len(rows), "failed": sum(1 for r in rows if r["answer"] is None),
           "lookups_while_down": len(during),
           "failed_while_down": sum(1 for r in during if r["answer"] is None),
           "ms_while_down_p50": pct([r["ms"] for r in during], 0.5),
           "ms_while_down_max": round(max((r["ms"] for r in during), default=0), 1),
           "ms_otherwise_p50": pct([r["ms"] for r in rows if r not in during], 0.5)}
    print(json.dumps(row), file=sys.stderr)
    return row


def region_round(lab: Lab, n: int) -> dict:
    doc = lab.status()
    active = doc["active_region"]
    order = [active, *(s for s in SERVERS if s != active)]
    every = drill.Client(f"every-{n}", drill.dns_resolver(
        [(SERVERS[s], 53) for s in order], f"app.{ZONE}."), timeout=1.0).start()
    witness = drill.Client(f"witness-{n}", drill.dns_resolver(
        [(SERVERS["witness"], 53)], f"app.{ZONE}."), timeout=1.0).start()
    victims = lab.region(active)
    try:
        time.sleep(3)
        fault = time.time()
        podman("kill", *victims)
        while time.time() - fault < 60:
            if all(drill.analyze(c.samples, fault, time.time()).settled
                   for c in (every, witness)):
                break
            time.sleep(0.2)
    finally:
        every.stop()
        witness.stop()
    res = {name: drill.analyze(c.samples, fault, time.time())
           for name, c in (("every server", every), ("witness only", witness))}
    row = {"round": n, "from": active, "victims": len(victims),
           "dns server killed": dns_container(active) in victims,
           **{f"rto {k}": v.rto_seconds for k, v in res.items()},
           **{f"failed {k}": v.failed for k, v in res.items()}}
    print(json.dumps(row), file=sys.stderr)
    podman("start", *lab.region(active, every=True))
    lab.wait_healthy()
    return row


def first_answer(server: str, timeout: float = 30.0) -> tuple[list[str], float]:
    import dns.message
    import dns.query

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            resp = dns.query.udp(dns.message.make_query(f"app.{ZONE}.", "A"),
                                 SERVERS[server], timeout=0.2)
            return sorted(a.address for rr in resp.answer for a in rr), time.monotonic() - start
        except Exception:
            time.sleep(0.02)
    raise SystemExit(f"{server}'s DNS server did not answer within {timeout} s")


def failover_round(lab: Lab, n: int, *, kill_target_server: bool) -> dict:
    active = lab.status()["active_region"]
    to = next(r for r in VIPS if r != active)
    if kill_target_server:
        podman("kill", dns_container(to))
    start = time.monotonic()
    out = json.loads(lab.run("failover", "--to", to, "--yes", "--json", "--reason",
                             f"bench {n}"))
    took = time.monotonic() - start
    row = {"round": n, "to": to, "target's server down": kill_target_server,
           "seconds": round(took, 2), "phases": {k: out["phases"][k] for k in
                                                 ("dns", "verify", "total")},
           "missed": sorted({m for w in out["dns"]["writes"] for m in w["missed"]})}
    if kill_target_server:
        podman("start", dns_container(to))
        answer, waited = first_answer(to)
        row["first answer after start"] = answer
        row["first answer is the new record"] = answer == [VIPS[to]]
        row["start to first answer (s)"] = round(waited, 2)
    print(json.dumps(row), file=sys.stderr)
    lab.wait_healthy(hold=1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hddns-"))
    (work / "hadeploy.yaml").write_text(CONFIG)
    lab = Lab(work)
    watch = None
    results: dict = {"rounds": args.rounds}
    try:
        subprocess.run([*HD, "down", "--yes"], cwd=work, env=lab.env, capture_output=True,
                       check=False)
        print("building ...", file=sys.stderr)
        lab.run("up", "-q")
        lab.wait_healthy(hold=1)
        results["resolver"] = [resolver_round(work, v, o) for v, o in (
            ("defaults", ""), ("timeout1", "timeout:1"), ("timeout1-rotate", "timeout:1 rotate"))]
        lab.wait_healthy(hold=1)
        results["failover"] = []
        for n in range(args.rounds):
            results["failover"].append(failover_round(lab, 2 * n + 1, kill_target_server=False))
            results["failover"].append(failover_round(lab, 2 * n + 2, kill_target_server=True))
        watch = subprocess.Popen([*HD, "watch"], cwd=work, env=lab.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5)
        results["region"] = [region_round(lab, n + 1) for n in range(args.rounds)]
    finally:
        if watch is not None:
            watch.terminate()
            watch.wait(30)
        subprocess.run([*HD, "down", "--yes"], cwd=work, env=lab.env, capture_output=True,
                       check=False)
    for key in ("rto every server", "rto witness only"):
        values = [r[key] for r in results.get("region", []) if r[key] is not None]
        results[f"region {key} p50"] = pct(values, 0.5)
    for down in (False, True):
        values = [r["seconds"] for r in results.get("failover", [])
                  if r["target's server down"] is down]
        results[f"failover seconds p50 (a server down: {down})"] = (
            round(statistics.median(values), 2) if values else None)
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "dns_servers.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# DNS servers: one per region (benchmarks/dns_servers.py)", "",
             "| resolv.conf | lookups | failed | while down: lookups, failed, p50 ms, max ms "
             "| otherwise p50 ms |", "|---|---|---|---|---|"]
    lines += [f"| {r['options']} | {r['lookups']} | {r['failed']} | {r['lookups_while_down']}, "
              f"{r['failed_while_down']}, {r['ms_while_down_p50']}, {r['ms_while_down_max']} "
              f"| {r['ms_otherwise_p50']} |" for r in results.get("resolver", [])]
    lines += ["", "| region round | from | RTO, every server (s) | RTO, witness only (s) |",
              "|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['from']} | {r['rto every server']} | "
              f"{r['rto witness only']} |" for r in results.get("region", [])]
    lines += ["", "| failover | target's server down | s | missed | first answer after start |",
              "|---|---|---|---|---|"]
    down = "target's server down"
    lines += [f"| {r['round']} → {r['to']} | {r[down]} | {r['seconds']} | "
              f"{', '.join(r['missed']) or '-'} | {r.get('first answer after start', '-')} |"
              for r in results.get("failover", [])]
    (out / "dns_servers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
