#!/usr/bin/env python3
"""Rolling changes measured on the real lab: requests that fail while `hadeploy up` applies
an app upgrade and a load-balancer change, against restarting every app host of the
serving region at once (what `up` did before it rolled), under the same client in one run.

Deployment "hdrbench" (subnets 10.82.x): east (primary) and west, two app hosts each, one
database host per region (backups off: not what is measured). The client posts an item and
reads it back through east's VIP every 50 ms (the drills' client, hadeploy.drill.Client); a
request fails on a transport error or any status but 200/201. Every acknowledged write is
looked up at the end.

  at-once   every east app host restarted at the same moment (systemctl restart, in
            parallel), 8 s of load around it
  upgrade   app.version changed, `hadeploy up` under load (the rolling play)
  lb        lb.check_interval / timeout_server / vrrp_advert_interval changed, `up` under
            load (haproxy and keepalived reload, one load balancer at a time)

Usage:  .venv/bin/python benchmarks/rolling.py [--rounds 3] [--keep]
Writes benchmarks/results/rolling.json and .md; removes its deployment unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.labclient import missing  # noqa: E402

from hadeploy.drill import Client  # noqa: E402

NAME = "hdrbench"
VIP = "10.82.1.10"
EAST_APPS = [f"hd-{NAME}-east-app1", f"hd-{NAME}-east-app2"]
CONFIG = f"""\
name: {NAME}
dns: {{zone: {NAME}.test, record: app, ttl: 1}}
regions:
  - {{name: east, role: primary, hosts: 2, lab_subnet: 10.82.1.0/24}}
  - {{name: west, role: secondary, hosts: 2, lab_subnet: 10.82.2.0/24}}
app: {{version: VERSION}}
data: {{hosts: 1, backup: {{enabled: false}}}}
lab: {{control_subnet: 10.82.0.0/24}}
"""
LB_SETTINGS = ("lb: {check_interval: 0.5, timeout_server: 5, vrrp_advert_interval: 0.2}\n",
               "lb: {check_interval: 1, timeout_server: 10, vrrp_advert_interval: 0.5}\n")
HD = [sys.executable, "-m", "hadeploy"]
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "cli/hadeploy/targets/lab/containers.conf")}


def sh(argv: list[str], *, check: bool = True, timeout: float = 1800,
       env: dict[str, str] | None = None, **kw) -> str:
    proc = subprocess.run(argv, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed: {proc.stderr[-1500:]}")
    return proc.stdout


def write_config(work: Path, version: str, lb: str) -> None:
    (work / "hadeploy.yaml").write_text(CONFIG.replace("VERSION", version) + lb)


def measured(tag: str, action) -> dict:
    """``action`` under load: requests, failures, acknowledged writes lost, seconds."""
    load = Client(tag, lambda: (VIP, 3600.0), timeout=5.0).start()
    try:
        time.sleep(1)
        start = time.monotonic()
        action()
        seconds = time.monotonic() - start
        time.sleep(1)
    finally:
        load.stop()
    failed = [s for s in load.samples if not s.ok]
    return {"requests": len(load.samples), "failed": len(failed),
            "failures": [f"{s.method} {s.detail}" for s in failed[:5]],
            "lost": len(missing([i for i, *_ in load.acked], VIP)),
            "seconds": round(seconds, 1)}


def restart_at_once() -> None:
    with ThreadPoolExecutor(len(EAST_APPS)) as pool:
        list(pool.map(lambda h: sh(["podman", "exec", h, "systemctl", "restart",
                                    "hadeploy-app.service"]), EAST_APPS))
    time.sleep(6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"{NAME}-work"
    work.mkdir(exist_ok=True)
    henv = {**ENV, "HADEPLOY_STATE_DIR": str(work / "state")}

    def up() -> None:
        sh([*HD, "up", "--yes"], cwd=work, env=henv)

    sh([*HD, "down", "--yes", "--delete-backups"], cwd=work, env=henv, check=False)
    write_config(work, "1.0.0", LB_SETTINGS[0])
    start = time.monotonic()
    up()
    cold = round(time.monotonic() - start, 1)
    rows = []
    try:
        for n in range(1, args.rounds + 1):
            print(f"[rolling] round {n}: at once", file=sys.stderr)
            rows.append({"round": n, "step": "at-once", **measured(f"once{n}", restart_at_once)})
            print(f"[rolling] round {n}: upgrade", file=sys.stderr)
            write_config(work, f"1.{n}.0", LB_SETTINGS[(n - 1) % 2])
            rows.append({"round": n, "step": "upgrade", **measured(f"up{n}", up)})
            print(f"[rolling] round {n}: lb change", file=sys.stderr)
            write_config(work, f"1.{n}.0", LB_SETTINGS[n % 2])
            rows.append({"round": n, "step": "lb", **measured(f"lb{n}", up)})
    finally:
        if not args.keep:
            sh([*HD, "down", "--yes", "--delete-backups"], cwd=work, env=henv, check=False)
    out = REPO / "benchmarks" / "results"
    doc = {"cold_up_seconds": cold, "rows": rows,
           "machine": f"{os.cpu_count()} CPUs", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                     time.gmtime())}
    (out / "rolling.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["| round | step | requests | failed | acked writes lost | seconds |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['round']} | {r['step']} | {r['requests']} | {r['failed']} | {r['lost']} "
              f"| {r['seconds']} |" for r in rows]
    (out / "rolling.md").write_text(f"cold up: {cold} s\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
