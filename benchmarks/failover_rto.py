#!/usr/bin/env python3
"""RTO of a lab region failover, measured N times (default 10), broken down.

Deployment "hdrto" (subnets 10.95.x): east and west, hot, one app host each, no database
tier (traffic only; benchmarks/data_failover.py measures failovers that move data); probes
every 1 s, failure threshold 3, quorum 2, TTL 2 s, no minimum interval between failovers.
A `hadeploy watch` runs for the whole benchmark. Each round kills every container of
the active region (LBs, app host, its prober) while a client resolves the app name at the
lab's DNS server for every request and GETs it every 50 ms; then the killed region is
restarted and the next round kills the other one.

Phases (from the audit log's timestamps and the client's own log):
  detection     kill → watch decides "<region> is down by quorum"
  decision      that decision → the failover run starts
  dns change    the TSIG update (failover phase 'dns')
  verification  until the authoritative server serves it (phase 'verify')
  first success kill → first request served by the other region (the client-seen RTO)

Usage:  .venv/bin/python benchmarks/failover_rto.py [rounds]
Writes benchmarks/results/failover-rto.json and .md. Removes its deployment at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME, ZONE, DNS = "hdrto", "hdrto.test", "10.95.0.53"
CONFIG = f"""\
name: {NAME}
dns: {{zone: {ZONE}, record: app, ttl: 2}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.95.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.95.2.0/24}}
failover: {{probe_interval: 1.0, probe_timeout: 0.8, failure_threshold: 3, quorum: 2,
           hold_down: 5, min_interval: 0}}
lab: {{control_subnet: 10.95.0.0/24}}
data: {{enabled: false}}
"""
HD = [sys.executable, "-m", "hadeploy"]


def podman(*args: str) -> str:
    env = {**os.environ, "CONTAINERS_CONF": str(REPO / "cli/hadeploy/targets/lab/containers.conf")}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                          check=True).stdout


def resolve() -> str | None:
    import dns.message
    import dns.query

    try:
        r = dns.query.udp(dns.message.make_query(f"app.{ZONE}.", "A"), DNS, timeout=0.5)
        return next(a.address for rr in r.answer for a in rr)
    except Exception:
        return None


class Client(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.log: list[tuple[float, str | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            region = None
            addr = resolve()
            if addr:
                try:
                    c = http.client.HTTPConnection(addr, 80, timeout=0.5)
                    c.request("GET", "/")
                    resp = c.getresponse()
                    if resp.status == 200:
                        region = json.loads(resp.read())["region"]
                    c.close()
                except Exception:
                    region = None
            self.log.append((time.time(), region))
            time.sleep(0.05)


def healthy(vip: str) -> bool:
    try:
        c = http.client.HTTPConnection(vip, 80, timeout=0.5)
        c.request("GET", "/healthz")
        return c.getresponse().status == 200
    except OSError:
        return False


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def one_round(i: int, client: Client, audit: Path, vips: dict[str, str]) -> dict[str, object]:
    """Kill every container of the active region; time each phase until a client is served
    by the other region; bring the region back."""
    from hadeploy.state import parse_time

    active = next(r for r, v in vips.items() if resolve() == v)
    other = next(r for r in vips if r != active)
    containers = podman("ps", "-q", "--filter", f"label=io.hadeploy.region={active}",
                        "--filter", f"label=io.hadeploy.deployment={NAME}").split()
    seen = len(audit.read_text().splitlines())
    kill_at = time.time()
    podman("kill", *containers)
    deadline = time.time() + 30
    served = None
    while time.time() < deadline and served is None:
        served = next((t for t, r in client.log if t > kill_at and r == other), None)
        time.sleep(0.05)
    time.sleep(0.5)
    new = [json.loads(x) for x in audit.read_text().splitlines()[seen:]]
    down = next(a for a in new if a.get("decision", "").startswith(f"region {active} is down"))
    start = next(a for a in new if a.get("action") == "failover")
    fo = next(a for a in new if a.get("operation") == "failover")
    failed = sum(1 for t, r in client.log if kill_at < t <= (served or kill_at) and r is None)
    row = {"round": i + 1, "from": active, "to": other,
           "detection": parse_time(down["at"]) - kill_at,
           "decision": parse_time(start["at"]) - parse_time(down["at"]),
           "prepare+health+fence": sum(fo["phases"].get(k, 0) for k in
                                       ("prepare", "health", "fence")),
           "dns change": fo["phases"]["dns"], "verification": fo["phases"]["verify"],
           "first success": (served - kill_at) if served else None,
           "failed requests": failed, "result": fo["result"]}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
          file=sys.stderr)
    podman("start", *containers)  # bring the region back for the next round
    while not healthy(vips[active]):
        time.sleep(0.5)
    time.sleep(6)  # let every vantage point see it healthy (hold-down 5 s)
    return row


def write_results(results: list[dict[str, object]]) -> None:
    keys = ["detection", "decision", "prepare+health+fence", "dns change", "verification",
            "first success"]
    values = {k: [float(str(r[k])) for r in results if r[k] is not None] for k in keys}
    summary = {k: {"p50": round(pct(values[k], 0.5), 3), "p95": round(pct(values[k], 0.95), 3)}
               for k in keys}
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "failover-rto.json").write_text(json.dumps({"rounds": results,
                                                       "summary": summary}, indent=2))
    lines = ["| phase | p50 (s) | p95 (s) |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['p50']:.3f} | {v['p95']:.3f} |" for k, v in summary.items()]
    (out / "failover-rto.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    work = Path(tempfile.mkdtemp(prefix="hdrto-"))
    (work / "hadeploy.yaml").write_text(CONFIG)
    env = {**os.environ, "HADEPLOY_STATE_DIR": str(work / "state")}
    audit = work / "state" / NAME / "audit.jsonl"
    vips = {"east": "10.95.1.10", "west": "10.95.2.10"}
    results = []
    watch = None
    try:
        subprocess.run([*HD, "down", "--yes"], cwd=work, env=env, check=True,
                       capture_output=True)
        print("building the deployment ...", file=sys.stderr)
        subprocess.run([*HD, "up", "-q"], cwd=work, env=env, check=True, capture_output=True)
        watch = subprocess.Popen([*HD, "watch"], cwd=work, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        client = Client()
        client.start()
        time.sleep(4)
        results = [one_round(i, client, audit, vips) for i in range(rounds)]
        client.stop.set()
    finally:
        if watch:
            watch.terminate()
            watch.wait(30)
        subprocess.run([*HD, "down", "--yes"], cwd=work, env=env, capture_output=True,
                       check=False)
    write_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
