"""``hadeploy status``: probe every host and endpoint, ask the DNS server which region
is active. The JSON document built here is a documented contract (docs/status-schema.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hadeploy.config import Deployment
from hadeploy.dns.base import DnsProvider
from hadeploy.dns.rfc2136 import Rfc2136Provider, TsigKey
from hadeploy.errors import HadeployError
from hadeploy.health import ProbeResult, probe_many
from hadeploy.topology import Topology

SCHEMA_VERSION = 1
LB_HEALTH_PATH = "/lb-health"  # haproxy's monitor-uri (roles/haproxy)
LB_HEADER = "x-hadeploy-lb"  # set by haproxy on every response (roles/haproxy)


def host_url(kind: str, address: str, dep: Deployment) -> str:
    if kind == "lb":
        return f"http://{address}{LB_HEALTH_PATH}"
    return f"http://{address}:{dep.app.port}{dep.app.health_path}"


def dns_provider(topo: Topology, state: Path) -> Rfc2136Provider:
    key_path = state / "dns" / "tsig.json"
    key = TsigKey.load(key_path) if key_path.exists() else None
    return Rfc2136Provider(topo.dns.server, topo.dns.port, topo.dns.zone, key)


def collect(topo: Topology, dep: Deployment, state: Path, *, timeout: float = 1.0,
            container_states: dict[str, str] | None = None, dns: DnsProvider | None = None,
            host_health: dict[str, ProbeResult] | None = None) -> dict[str, Any]:
    """``dns``: the provider to ask (default: the lab's RFC 2136 server). ``host_health``:
    host name → result when the target knows its hosts' health better than a probe from
    here (aws: the ALB's target health); then hosts are not probed."""
    urls: list[str] = []
    for region in topo.regions:
        urls.append(f"{region.url}{dep.app.health_path}")
        if host_health is None:
            urls += [host_url(h.kind, h.address, dep) for h in region.hosts]
    results = probe_many(urls, timeout)

    dns_doc: dict[str, Any] = {"server": topo.dns.server, "port": topo.dns.port,
                               "zone": topo.dns.zone, "record": topo.dns.fqdn,
                               "ttl": topo.dns.ttl, "answer": [], "error": None}
    try:
        dns_doc["answer"] = (dns or dns_provider(topo, state)).read(topo.dns.record)
    except HadeployError as exc:
        dns_doc["error"] = exc.message
    active = [r.name for r in topo.regions if r.vip in dns_doc["answer"]]
    history = _history(state, [r.name for r in topo.regions])

    regions: list[dict[str, Any]] = []
    for region in topo.regions:
        vip = results[f"{region.url}{dep.app.health_path}"]
        hosts = []
        for h in region.hosts:
            r = (host_health.get(h.name) or ProbeResult(h.name, False, None, 0.0, "unknown")
                 if host_health is not None else results[host_url(h.kind, h.address, dep)])
            entry: dict[str, Any] = {"name": h.name, "address": h.address, "kind": h.kind,
                                     "healthy": r.ok, "standby": h.standby, "status": r.status,
                                     "latency_ms": round(r.latency_ms, 1), "error": r.error}
            if container_states is not None:
                entry["container"] = container_states.get(h.name, "missing")
            hosts.append(entry)
        regions.append({
            "name": region.name, "role": region.role, "standby": region.standby,
            "active": region.name in active, "vip": region.vip, "url": region.url,
            "healthy": vip.ok, "lb_master": vip.headers.get(LB_HEADER),
            "serving_expected": region.serving_expected, "fenced": region.fenced,
            "promoted": region.promoted,
            "endpoint": {"status": vip.status, "latency_ms": round(vip.latency_ms, 1),
                         "error": vip.error},
            "hosts": hosts,
            "history": history.get(region.name),
        })
    return {
        "schema_version": SCHEMA_VERSION, "deployment": topo.deployment, "target": topo.target,
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "active_region": active[0] if len(active) == 1 else None,
        "healthy": all(r["healthy"] for r in regions if r["serving_expected"] or r["active"])
        and len(active) == 1,
        "degraded": any(not h["healthy"] and not (h["standby"] and h.get("container") != "running")
                        for r in regions for h in r["hosts"]),
        "dns": dns_doc, "regions": regions,
    }


def _history(state: Path, regions: list[str]) -> dict[str, Any]:
    """Recent probe history per region (written by 'watch'); {} when there is none."""
    from hadeploy.history import History, history_path

    path = history_path(state)
    if not path.exists():
        return {}
    db = History(path)
    try:
        return {r: db.summary(r, window=300) for r in regions}
    finally:
        db.close()


def render_text(doc: dict[str, Any]) -> Any:
    """A rich renderable for humans (the JSON document stays the contract)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    dns = doc["dns"]
    answer = ", ".join(dns["answer"]) or "(no answer)"
    head = Text.assemble(
        ("deployment ", "dim"), (doc["deployment"], "bold"), ("  target ", "dim"),
        doc["target"], ("  active region ", "dim"),
        (doc["active_region"] or "NONE", "bold green" if doc["active_region"] else "bold red"),
        "\n", ("dns ", "dim"), f"{dns['record']} @ {dns['server']}:{dns['port']} → {answer}",
        *((("  ", ""), (dns["error"], "red")) if dns["error"] else ()),
    )
    lines: list[Any] = [head]
    for region in doc["regions"]:
        mark = ("● ", "bold green") if region["active"] else ("  ", "")
        health = ("healthy", "green") if region["healthy"] else (
            f"UNHEALTHY ({region['endpoint']['error'] or region['endpoint']['status']})", "red")
        lines.append(Text.assemble(
            "\n", mark, (region["name"], "bold"), f"  {region['role']}, {region['standby']}  ",
            (region["url"], ""), "  ", health, ("  lb master ", "dim"),
            region["lb_master"] or "-", ("  FENCED (refuses writes)", "yellow")
            if region["fenced"] else ""))
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 4))
        for host in region["hosts"]:
            if host["healthy"]:
                ok = Text("ok", "green")
            elif host["standby"] and host.get("container") != "running":
                ok = Text("standby (stopped)", "dim")
            else:
                why = host.get("container") if host.get("container") not in (None, "running") \
                    else (host["error"] or host["status"] or "")
                ok = Text(f"DOWN {why}".strip(), "red")
            table.add_row(host["name"], host["kind"], host["address"], ok)
        lines.append(table)
        hist = region.get("history") or {}
        if hist.get("vantages"):
            parts = [f"{v} {d['availability'] * 100:.1f}% of {d['probes']}"
                     for v, d in hist["vantages"].items()]
            lines.append(Text(f"    probes, last {hist['window_seconds'] / 60:.0f} min: "
                              + ", ".join(parts), "dim"))
    return Group(*lines)


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)
