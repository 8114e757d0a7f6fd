#!/usr/bin/env python3
"""What happens to writes when the database tier moves, measured on the real lab.

Deployment "hddbench" (subnets 10.84.x): east and west, one app host each, a 3-host
Patroni cluster per region (west a standby cluster of east), `data.rpo_budget` 5 s, DNS
TTL 1 s. A client resolves the app's name at the lab's DNS server for every request and
POSTs items with unique ids; every acknowledged id is recorded and afterwards looked up in
the region that takes writes.

  steady      one client writing back to back for --steady seconds: writes/s, and the
              standby region's lag (bytes, seconds) from `status --json` every second
  switchover  `failover --to <other>` under load, --rounds times, alternating: acknowledged
              writes lost (goal 0), the write pause (longest gap between two acks), the
              failover's own phase timings
  leader kill SIGKILL the active region's database leader under load: lost, write pause
  crash       SIGKILL every container of the active region under load while `watch` runs:
              lost vs the estimate the failover recorded, and the client-observed RTO
              (kill -> first write acknowledged by the other region); then the region is
              started again and `up` rejoins it (its time is recorded), and `failback`

Usage:  .venv/bin/python benchmarks/data_failover.py [--rounds 4] [--steady 30]
Writes benchmarks/results/data-failover.json and .md. Removes its deployment at the end.
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
sys.path.insert(0, str(REPO))  # the lab client the data-tier tests use
from tests.labclient import Writer, missing, resolver  # noqa: E402

NAME, ZONE = "hddbench", "hddbench.test"
DNS = ["10.84.1.6", "10.84.2.6", "10.84.0.53"]  # east's, west's and the witness
VIP = {"east": "10.84.1.10", "west": "10.84.2.10"}
CONFIG = f"""\
name: {NAME}
dns: {{zone: {ZONE}, record: app, ttl: 1}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.84.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.84.2.0/24}}
data: {{hosts: 3, rpo_budget: 5}}
failover: {{probe_interval: 1.0, probe_timeout: 0.8, failure_threshold: 3, quorum: 2,
           hold_down: 5, min_interval: 0}}
lab: {{control_subnet: 10.84.0.0/24}}
"""
HD = [sys.executable, "-m", "hadeploy"]


def podman(*args: str) -> str:
    env = {**os.environ,
           "CONTAINERS_CONF": str(REPO / "cli/hadeploy/targets/lab/containers.conf")}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                          check=True, timeout=120).stdout


def writer(tag: str, gap: float = 0.02, timeout: float = 3.0) -> Writer:
    return Writer(tag, resolver(ZONE, DNS), gap, timeout)


def lost_in(items: list[str], region: str) -> int:
    return len(missing(items, VIP[region]))


class Lab:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {**os.environ, "HADEPLOY_STATE_DIR": str(work / "state")}

    def run(self, *args: str) -> dict:
        proc = subprocess.run([*HD, *args, "--json"], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"hadeploy {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stderr[-2000:]}")
        return json.loads(proc.stdout)

    def data(self) -> dict[str, dict]:
        return {r["name"]: r["data"] for r in self.run("status")["regions"]}

    def active(self) -> str:
        return next(n for n, d in self.data().items() if d["role"] == "primary")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def steady(lab: Lab, seconds: float) -> dict:
    lag_b, lag_s = [], []
    with writer("steady", gap=0.0) as w:
        time.sleep(2)
        start, first = time.time(), len(w.acked)
        while time.time() - start < seconds:
            west = lab.data()["west"]
            if west["lag_bytes"] is not None:
                lag_b.append(west["lag_bytes"])
                lag_s.append(west["lag_seconds"])
            time.sleep(max(0.0, 1.0 - (time.time() - start) % 1.0))
        rate = (len(w.acked) - first) / (time.time() - start)
    return {"writes_per_s": round(rate, 1), "samples": len(lag_b),
            "lag_bytes_p50": pct(lag_b, 0.5), "lag_bytes_p95": pct(lag_b, 0.95),
            "lag_bytes_max": max(lag_b, default=None),
            "lag_seconds_p50": pct(lag_s, 0.5), "lag_seconds_p95": pct(lag_s, 0.95),
            "lag_seconds_max": max(lag_s, default=None),
            "acked": len(w.acked), "missing_on_west_after_load": lost_in(w.ids, "west")}


def switchover(lab: Lab, to: str) -> dict:
    with writer(f"switch-{to}-{int(time.time())}") as w:
        time.sleep(2)
        out = lab.run("failover", "--to", to, "--yes", "--reason", "benchmark switchover")
        time.sleep(3)
    return {"to": to, "lost": lost_in(w.ids, to), "acked": len(w.acked), "failed": w.failed,
            "write_pause_s": w.pause(),
            "phases": {k: out["phases"].get(k) for k in ("freeze", "promote", "dns", "rejoin")}}


def leader_kill(lab: Lab) -> dict:
    region = lab.active()
    leader = lab.data()[region]["leader"]
    with writer("leader-kill") as w:
        time.sleep(2)
        killed = time.time()
        podman("kill", leader)
        deadline = killed + 45
        while time.time() < deadline and w.acked_after(killed + 0.5, region) is None:
            time.sleep(0.2)
        time.sleep(2)
    resumed = w.acked_after(killed + 0.5, region)
    lost = lost_in(w.ids, region)
    lab.run("up")  # the killed host comes back as a replica
    return {"region": region, "lost": lost, "failed": w.failed,
            "writes_resumed_after_s": None if resumed is None else round(resumed - killed, 2)}


def region_containers(region: str, every: bool = False) -> list[str]:
    return podman("ps", *(["-a"] if every else []), "-q", "--filter",
                  f"label=io.hadeploy.region={region}", "--filter",
                  f"label=io.hadeploy.deployment={NAME}").split()


def crash(lab: Lab) -> dict:
    old = lab.active()
    new = "west" if old == "east" else "east"
    watch = subprocess.Popen([*HD, "watch", "--max-seconds", "90"], cwd=lab.work,
                             env=lab.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)  # watch observes the database tier every round
        # A request to the dead region's address hangs until its timeout: keep it short
        # (1 s), or the client's own wait would be counted as the deployment's RTO.
        with writer("crash", timeout=1.0) as w:
            time.sleep(3)
            killed = time.time()
            podman("kill", *region_containers(old))
            deadline = killed + 60
            while time.time() < deadline and w.acked_after(killed, new) is None:
                time.sleep(0.2)
            time.sleep(1)
    finally:
        watch.terminate()
        watch.wait(30)
    from hadeploy.state import parse_time

    audit = [json.loads(line) for line in
             (lab.work / "state" / NAME / "audit.jsonl").read_text().splitlines()]
    done = [a for a in audit if a["operation"] == "failover" and a.get("result") == "done"
            and a.get("to") == new and (a.get("data") or {}).get("mode") == "failover"]
    down = [a for a in audit if str(a.get("decision", "")).startswith(f"region {old} is down")
            and parse_time(a["at"]) > killed]
    first = w.acked_after(killed, new)
    result = {"from": old, "to": new, "failed_over": bool(done), "lost": lost_in(w.ids, new),
              "acked": len(w.acked), "estimate": done[-1]["data"]["estimate"] if done else None,
              "detected_after_s": round(parse_time(down[0]["at"]) - killed, 2) if down
              else None,
              "failover_done_after_s": round(parse_time(done[-1]["at"]) - killed, 2) if done
              else None,
              "failover_phases": done[-1]["phases"] if done else None,
              "client_rto_s": None if first is None else round(first - killed, 2)}
    podman("start", *region_containers(old, every=True))
    start = time.monotonic()
    result["rejoin"] = lab.run("up").get("data")
    result["rejoin_up_s"] = round(time.monotonic() - start, 1)
    result["failback"] = switchover(lab, old)
    return result


def markdown(doc: dict) -> str:
    s = doc["steady"]
    lines = [f"# Data tier under failure — {doc['measured_at']}", "",
             f"Steady load (one client, back to back, {doc['steady_seconds']} s): "
             f"{s['writes_per_s']} writes/s; west behind east p50 {s['lag_bytes_p50']} B / "
             f"{s['lag_seconds_p50']} s, p95 {s['lag_bytes_p95']} B / {s['lag_seconds_p95']} s,"
             f" max {s['lag_bytes_max']} B / {s['lag_seconds_max']} s ({s['samples']} samples)",
             "", "| switchover | lost | acked | write pause (s) | freeze | promote | dns | "
             "rejoin |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["switchovers"]:
        p = r["phases"]
        lines.append(f"| to {r['to']} | {r['lost']} | {r['acked']} | {r['write_pause_s']} | "
                     f"{p['freeze']} | {p['promote']} | {p['dns']} | {p['rejoin']} |")
    pauses = [r["write_pause_s"] for r in doc["switchovers"]]
    lines += ["", f"Write pause over {len(pauses)} switchovers: p50 "
              f"{statistics.median(pauses):.2f} s, max {max(pauses):.2f} s; lost in total: "
              f"{sum(r['lost'] for r in doc['switchovers'])}.", ""]
    k = doc["leader_kill"]
    lines.append(f"Leader kill ({k['region']}): lost {k['lost']}, writes resumed after "
                 f"{k['writes_resumed_after_s']} s, {k['failed']} requests failed.")
    c = doc["crash"]
    est = c["estimate"] or {}
    lines += ["", f"Crash of {c['from']} (every container killed) with `watch` running: failed"
              f" over {c['failed_over']}, lost {c['lost']} acknowledged writes against an "
              f"estimate of {est.get('seconds')} s / {est.get('bytes')} B; down by quorum "
              f"after {c['detected_after_s']} s, failover done after "
              f"{c['failover_done_after_s']} s (phases {c['failover_phases']}); first write "
              f"acknowledged by {c['to']} {c['client_rto_s']} s after the kill; `up` rejoined "
              f"{c['from']} in {c['rejoin_up_s']} s; failback lost {c['failback']['lost']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steady", type=float, default=30.0)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "cli"))
    from hadeploy.targets.lab.target import destroy

    destroy(NAME)
    with tempfile.TemporaryDirectory(prefix="hddbench-") as tmp:
        work = Path(tmp)
        (work / "hadeploy.yaml").write_text(CONFIG)
        lab = Lab(work)
        doc: dict = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "steady_seconds": args.steady}
        try:
            start = time.monotonic()
            lab.run("up")
            doc["cold_up_s"] = round(time.monotonic() - start, 1)
            doc["steady"] = steady(lab, args.steady)
            print(json.dumps(doc["steady"]), flush=True)
            doc["switchovers"] = []
            for n in range(args.rounds):
                doc["switchovers"].append(switchover(lab, "west" if n % 2 == 0 else "east"))
                print(json.dumps(doc["switchovers"][-1]), flush=True)
            if lab.active() != "east":
                lab.run("failover", "--to", "east", "--yes", "--reason", "benchmark")
            doc["leader_kill"] = leader_kill(lab)
            print(json.dumps(doc["leader_kill"]), flush=True)
            doc["crash"] = crash(lab)
            print(json.dumps(doc["crash"]), flush=True)
        finally:
            destroy(NAME)
    out = REPO / "benchmarks" / "results"
    (out / "data-failover.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "data-failover.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
