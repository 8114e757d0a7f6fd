#!/usr/bin/env python3
"""Client-observed recovery from a lost region, and false failovers on a short blink, for
several failover policies (probe interval, probe timeout, failure threshold, DNS TTL).

Deployment "hdrec" (subnets 10.81.x): east and west, hot, one app host each, no database
tier (this measures detection and DNS; a database promotion adds its own time, see
benchmarks/data_failover.py). For each profile the deployment is built with that policy
(`up` reconfigures the probers), a `hadeploy watch` runs, and:

  kills   every container of the active region killed (load balancers, app host, its
          prober) while the drills' client posts and reads an item every 50 ms through the
          app's DNS name, keeping each answer for its TTL, with a 1 s request timeout; the
          client-observed RTO is the fault → first good answer after the last failure,
          split with the audit log into detection, decision, the failover's phases and
          client convergence. The region is started again before the next round.
  blinks  the active region's load balancers frozen (podman pause) for 1.2 s, then thawed:
          any failover during a blink round is a false failover.

Usage:  .venv/bin/python benchmarks/recovery.py [--kills 10] [--blinks 10]
                                                [--profiles default,fast]
Writes benchmarks/results/recovery.json and .md. Removes its deployment at the end.
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
sys.path.insert(0, str(REPO / "cli"))

from hadeploy import drill  # noqa: E402

NAME, ZONE = "hdrec", "hdrec.test"
DNS = [("10.81.1.6", 53), ("10.81.2.6", 53), ("10.81.0.53", 53)]  # east, west, witness
VIPS = {"east": "10.81.1.10", "west": "10.81.2.10"}
PROFILES = {
    # the lab defaults until 2026-11-29 (the measurement that replaced them: docs/benchmarks.md)
    "default": {"probe_interval": 1.0, "probe_timeout": 0.8, "failure_threshold": 3, "ttl": 5},
    "ttl2": {"probe_interval": 1.0, "probe_timeout": 0.8, "failure_threshold": 3, "ttl": 2},
    # probes twice as often, one more failure needed: a 1.2 s blink fails at most 3 probes
    "fast": {"probe_interval": 0.5, "probe_timeout": 0.4, "failure_threshold": 4, "ttl": 2},
    # the same without the extra failure: a 1.2 s blink can fail 3 probes in a row
    "fast3": {"probe_interval": 0.5, "probe_timeout": 0.4, "failure_threshold": 3, "ttl": 2},
    # "fast" with a 1 s TTL: the lab defaults since 2026-11-29
    "fast1": {"probe_interval": 0.5, "probe_timeout": 0.4, "failure_threshold": 4, "ttl": 1},
}
HD = [sys.executable, "-m", "hadeploy"]
BLINK = 1.2


def config(p: dict[str, float]) -> str:
    return f"""\
name: {NAME}
dns: {{zone: {ZONE}, record: app, ttl: {p['ttl']}}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.81.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.81.2.0/24}}
failover: {{probe_interval: {p['probe_interval']}, probe_timeout: {p['probe_timeout']},
           failure_threshold: {p['failure_threshold']}, quorum: 2, hold_down: 5,
           min_interval: 0}}
lab: {{control_subnet: 10.81.0.0/24}}
data: {{enabled: false}}
"""


def podman(*args: str) -> str:
    env = {**os.environ,
           "CONTAINERS_CONF": str(REPO / "cli/hadeploy/targets/lab/containers.conf")}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                          check=True).stdout


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo), 3)


class Lab:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {**os.environ, "HADEPLOY_STATE_DIR": str(work / "state")}
        self.audit = work / "state" / NAME / "audit.jsonl"

    def run(self, *args: str, check: bool = True) -> str:
        return subprocess.run([*HD, *args], cwd=self.work, env=self.env, check=check,
                              capture_output=True, text=True).stdout

    def records(self) -> list[dict]:
        out = []
        for line in self.audit.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def active(self) -> str:
        resolve = drill.dns_resolver(DNS, f"app.{ZONE}.")
        address, _ = resolve()
        return next(r for r, v in VIPS.items() if v == address)

    def region(self, name: str, *, every: bool = False) -> list[str]:
        return podman("ps", *(["-a"] if every else []), "-q", "--filter",
                      f"label=io.hadeploy.region={name}", "--filter",
                      f"label=io.hadeploy.deployment={NAME}").split()

    def wait_healthy(self, hold: float) -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            doc = json.loads(self.run("status", "--json", check=False))  # 1: degraded
            if all(r["healthy"] for r in doc["regions"]):
                time.sleep(hold)  # every vantage point sees it back (hold-down)
                return
            time.sleep(1)
        raise SystemExit("the deployment did not become healthy again")


def kill_round(lab: Lab, n: int) -> dict:
    active = lab.active()
    victims = lab.region(active)
    client = drill.Client(f"kill-{n}", drill.dns_resolver(DNS, f"app.{ZONE}."),
                          timeout=1.0).start()
    try:
        time.sleep(3)
        fault = time.time()
        podman("kill", *victims)
        while time.time() - fault < 45:
            outage = drill.analyze(client.samples, fault, time.time())
            if outage.settled:
                break
            time.sleep(0.2)
    finally:
        client.stop()
    outage = drill.analyze(client.samples, fault, time.time())
    marks = drill.audit_marks(lab.records(), fault)
    row = {"round": n, "from": active, "rto": outage.rto_seconds, "failed": outage.failed,
           "split": drill.rto_split(fault, outage.recovered_at, marks)}
    print(json.dumps(row), file=sys.stderr)
    podman("start", *lab.region(active, every=True))
    return row


def blink_round(lab: Lab, n: int) -> dict:
    active = lab.active()
    lbs = [c for c in podman("ps", "--format", "{{.Names}}", "--filter",
                             f"label=io.hadeploy.region={active}", "--filter",
                             f"label=io.hadeploy.deployment={NAME}").split() if "-lb" in c]
    before = sum(1 for r in lab.records() if r.get("operation") == "failover")
    podman("pause", *lbs)
    time.sleep(BLINK)
    podman("unpause", *lbs)
    time.sleep(8)  # longer than any threshold x interval here: a failover would be done
    after = sum(1 for r in lab.records() if r.get("operation") == "failover")
    row = {"round": n, "region": active, "false_failovers": after - before}
    print(json.dumps(row), file=sys.stderr)
    return row


def profile(name: str, p: dict[str, float], kills: int, blinks: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hdrec-"))
    (work / "hadeploy.yaml").write_text(config(p))
    lab = Lab(work)
    watch = None
    try:
        subprocess.run([*HD, "down", "--yes"], cwd=work, env=lab.env, capture_output=True,
                       check=False)
        print(f"--- profile {name}: {p}; building ...", file=sys.stderr)
        lab.run("up", "-q")
        watch = subprocess.Popen([*HD, "watch"], cwd=work, env=lab.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5)
        blink_rows = []
        for n in range(blinks):
            blink_rows.append(blink_round(lab, n + 1))
            if blink_rows[-1]["false_failovers"]:
                lab.wait_healthy(6)
        kill_rows = []
        for n in range(kills):
            kill_rows.append(kill_round(lab, n + 1))
            lab.wait_healthy(6)
    finally:
        if watch is not None:
            watch.terminate()
            watch.wait(30)
        subprocess.run([*HD, "down", "--yes"], cwd=work, env=lab.env, capture_output=True,
                       check=False)
    rtos = [r["rto"] for r in kill_rows if r["rto"] is not None]
    seg = {k: pct([r["split"].get(k, 0.0) for r in kill_rows if r["split"]], 0.5)
           for k in ("detection", "decision", "client convergence")}
    return {"profile": name, **p, "kills": kill_rows, "blinks": blink_rows,
            "rto_p50": pct(rtos, 0.5), "rto_p95": pct(rtos, 0.95),
            "rto_max": max(rtos, default=None), "never_recovered": kills - len(rtos),
            "failed_p50": pct([float(r["failed"]) for r in kill_rows], 0.5),
            "split_p50": seg,
            "false_failovers": sum(r["false_failovers"] for r in blink_rows),
            "blink_rounds": blinks}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--blinks", type=int, default=10)
    ap.add_argument("--profiles", default="default,fast")
    args = ap.parse_args()
    names = args.profiles.split(",")
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        raise SystemExit(f"unknown profile(s) {unknown}; known: {', '.join(PROFILES)}")
    results = [profile(n, PROFILES[n], args.kills, args.blinks) for n in names]
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "recovery.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| profile | probe every / timeout / threshold / TTL | client RTO p50 | p95 | max "
             "| detection p50 | client convergence p50 | false failovers on a 1.2 s blink |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['profile']} | {r['probe_interval']} s / {r['probe_timeout']} s / "
            f"{r['failure_threshold']} / {r['ttl']} s | {r['rto_p50']} s | {r['rto_p95']} s "
            f"| {r['rto_max']} s | {r['split_p50']['detection']} s | "
            f"{r['split_p50']['client convergence']} s | {r['false_failovers']} of "
            f"{r['blink_rounds']} |")
    (out / "recovery.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
