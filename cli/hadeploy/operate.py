"""The one place that picks, per target, what ``status``, ``failover``/``failback`` and
``watch`` operate on: the topology, the DNS provider, the region operations and any extra
vantage points.

- lab: the topology derived from the Deployment, RFC 2136 on the lab's DNS server, podman
  + haproxy region operations, this machine and the in-region probers as vantage points.
- aws: ``<state>/topology.json`` and ``<state>/aws.json`` (written by ``up``), Route 53,
  ALB listener rules + Auto Scaling (:mod:`hadeploy.targets.aws.ops`), this machine and
  Route 53's health checkers as vantage points.

Never imports pulumi or ansible (a unit test checks it): the failover path must work while
a region and its control plane are gone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hadeploy.config import Deployment, Target
from hadeploy.dns.base import DnsProvider
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.failover import ExtraVotes, RegionOps
from hadeploy.state import StateDir
from hadeploy.topology import Host, Topology

ENDPOINT_ENV = ("HADEPLOY_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL")  # moto, LocalStack
ROUTE53_VOTES_ENV = "HADEPLOY_ROUTE53_VOTES"  # "0": Route 53's checkers do not vote


@dataclass
class Operation:
    dep: Deployment
    state: StateDir
    topology: Callable[[], Topology]
    dns: Callable[[Topology], DnsProvider]
    ops: Callable[[Topology], RegionOps]
    status: Callable[[float], dict[str, Any]]
    extra_votes: ExtraVotes | None = None


def aws_endpoint_url() -> str | None:
    return next((os.environ[k] for k in ENDPOINT_ENV if os.environ.get(k)), None)


def for_deployment(dep: Deployment, state: StateDir) -> Operation:
    if dep.target is Target.AWS:
        return _aws(dep, state)
    return _lab(dep, state)


def require_built(dep: Deployment, state: StateDir) -> None:
    if not state.exists:
        raise HadeployError(f"deployment '{dep.name}' has not been built",
                            hint="run 'hadeploy up' first", code=ExitCode.BAD_INPUT)


# --- lab ---------------------------------------------------------------------------------

def _lab(dep: Deployment, state: StateDir) -> Operation:
    from hadeploy import status as st
    from hadeploy.topology import lab_topology

    def topology() -> Topology:
        return lab_topology(dep, **state.region_flags())

    def ops(topo: Topology) -> RegionOps:
        from hadeploy.targets.lab.ops import LabRegionOps

        return LabRegionOps(dep, state, topo)

    def status(timeout: float) -> dict[str, Any]:
        from hadeploy.targets.lab.driver import container_states

        return st.collect(topology(), dep, state.path, timeout=timeout,
                          container_states=container_states(dep.name))

    return Operation(dep, state, topology, lambda t: st.dns_provider(t, state.path), ops,
                     status)


# --- aws ---------------------------------------------------------------------------------

def _load(state: StateDir, name: str, dep: Deployment) -> dict[str, Any]:
    path = state.path / name
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise HadeployError(f"deployment '{dep.name}' has not been built on aws ({path} is "
                            "missing)", hint="run 'hadeploy up' (a successful up writes "
                            "topology.json and aws.json)", code=ExitCode.BAD_INPUT) from None
    except (OSError, ValueError) as exc:
        raise HadeployError(f"{path} cannot be read: {exc}",
                            hint="run 'hadeploy up' again to rewrite it",
                            code=ExitCode.BAD_INPUT) from None
    if not isinstance(doc, dict):
        raise HadeployError(f"{path} is not a JSON object", hint="run 'hadeploy up' again",
                            code=ExitCode.BAD_INPUT)
    return doc


def route53_provider(doc: dict[str, Any], endpoint_url: str | None) -> Any:
    from hadeploy.dns.route53 import Endpoint, Route53Provider

    mode = str(doc.get("mode") or "plain")
    if mode not in ("plain", "failover"):
        raise HadeployError(f"Route 53 record mode '{mode}' (aws.mode active-weighted) is not "
                            "operated by hadeploy yet", hint="use aws.mode: active-passive "
                            "for status/failover/watch", code=ExitCode.NOT_AVAILABLE)
    endpoints = {name: Endpoint(str(r["alb_dns_name"]), str(r.get("alb_zone_id") or ""),
                                r.get("health_check_id"))
                 for name, r in (doc.get("regions") or {}).items()}
    return Route53Provider(str(doc["zone"]), zone_id=doc.get("zone_id"),
                           mode=mode,  # type: ignore[arg-type]
                           endpoints=endpoints, endpoint_url=endpoint_url)


def _aws(dep: Deployment, state: StateDir) -> Operation:
    from hadeploy import status as st
    from hadeploy.targets.aws.ops import AwsRegionOps, Route53Checkers

    doc = _load(state, "aws.json", dep)
    base = Topology.from_dict(_load(state, "topology.json", dep))
    endpoint = aws_endpoint_url()

    def topology() -> Topology:
        return base.with_flags(**state.region_flags())

    def dns(_topo: Topology) -> DnsProvider:
        provider: DnsProvider = route53_provider(doc, endpoint)
        return provider

    def ops(_topo: Topology) -> AwsRegionOps:
        return AwsRegionOps(dep, state, doc, endpoint_url=endpoint)

    def status(timeout: float) -> dict[str, Any]:
        topo, health = _live_hosts(topology(), ops(topology()), timeout)
        return st.collect(topo, dep, state.path, timeout=timeout, dns=dns(topo),
                          host_health=health)

    extra = None
    if os.environ.get(ROUTE53_VOTES_ENV, "1") != "0":
        extra = Route53Checkers(doc, endpoint_url=endpoint)
    return Operation(dep, state, topology, dns, ops, status, extra)


def _live_hosts(topo: Topology, ops: Any, timeout: float) -> tuple[Topology, dict[str, Any]]:
    """On AWS a region's hosts are its target group's targets, as the ALB sees them now
    (private addresses are not reachable from here; the ALB's health check is the truth).
    A region whose API does not answer keeps the hosts ``up`` saw, reported unknown."""
    from concurrent.futures import ThreadPoolExecutor

    from hadeploy.health import ProbeResult

    def one(region: Any) -> tuple[Any, dict[str, str] | str]:
        try:
            return region, dict(ops.target_health(region, timeout=max(2.0, timeout)))
        except Exception as exc:  # reported per host, never fatal
            return region, f"{type(exc).__name__}: {exc}"

    health: dict[str, Any] = {}
    regions = []
    with ThreadPoolExecutor(max_workers=max(1, len(topo.regions))) as pool:
        for region, states in pool.map(one, topo.regions):
            if isinstance(states, str):
                for h in region.hosts:
                    health[h.name] = ProbeResult(f"elb:{h.name}", False, None, 0.0,
                                                 f"target health unknown: {states}")
                regions.append(region)
                continue
            known = {h.name: h for h in region.hosts}
            hosts = tuple(known.get(i) or Host(i, "", "app", region.name) for i in sorted(states))
            for instance, state in states.items():
                health[instance] = ProbeResult(f"elb:{instance}", state == "healthy", None,
                                               0.0, None if state == "healthy"
                                               else f"target {state}")
            regions.append(replace(region, hosts=hosts))
    return replace(topo, regions=tuple(regions)), health
