"""Topology: what a target built (regions → hosts, endpoints, storage, DNS), and the one
place where it is rendered into an Ansible inventory.

A target turns a ``Deployment`` into a ``Topology``; configuration, status and failover
only ever look at the ``Topology``, so they work the same on every target.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hadeploy.config import Deployment, Target

APP_DATA_DIR = "/srv/hadeploy/shared"
LB_PRIORITIES = (150, 100)


@dataclass(frozen=True)
class Host:
    name: str  # the inventory name (lab: the container name)
    address: str
    kind: str  # "lb" | "app"
    region: str
    standby: bool = False  # kept stopped while its region is a warm/cold standby


@dataclass(frozen=True)
class SharedStorage:
    type: str  # "volume" (lab: a podman volume) | "efs"
    source: str  # lab: volume name; aws: the EFS file system's DNS name
    path: str = APP_DATA_DIR


@dataclass(frozen=True)
class RegionTopology:
    name: str
    role: str
    standby: str
    vip: str  # the region's public endpoint address (lab: VRRP virtual IP)
    url: str  # the region's public endpoint, e.g. http://10.91.1.10
    subnet: str
    router_id: int
    storage: SharedStorage
    hosts: tuple[Host, ...] = field(default_factory=tuple)
    prober: str | None = None  # URL of the in-region prober's /results (a vantage point)
    fenced: bool = False  # refuses writes: traffic was moved away by a failover
    promoted: bool = False  # a warm/cold standby scaled up to full size by a failover

    @property
    def serving_expected(self) -> bool:
        """A cold standby (all app hosts stopped on purpose) is not expected to serve."""
        return any(not h.standby for h in self.of_kind("app"))

    def of_kind(self, kind: str) -> list[Host]:
        return [h for h in self.hosts if h.kind == kind]


@dataclass(frozen=True)
class DnsEndpoint:
    server: str
    port: int
    zone: str
    record: str
    ttl: int

    @property
    def fqdn(self) -> str:
        return f"{self.record}.{self.zone}."


@dataclass(frozen=True)
class Topology:
    deployment: str
    target: str
    dns: DnsEndpoint
    regions: tuple[RegionTopology, ...]

    def region(self, name: str) -> RegionTopology:
        return next(r for r in self.regions if r.name == name)

    def region_of_address(self, address: str) -> RegionTopology | None:
        return next((r for r in self.regions if r.vip == address), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Topology:
        """The inverse of :meth:`to_dict` (``<state>/topology.json``)."""
        regions = []
        for r in doc["regions"]:
            fields = dict(r)
            fields["storage"] = SharedStorage(**r["storage"])
            fields["hosts"] = tuple(Host(**h) for h in r.get("hosts") or ())
            regions.append(RegionTopology(**fields))
        return cls(doc["deployment"], doc["target"], DnsEndpoint(**doc["dns"]), tuple(regions))

    def with_flags(self, *, promoted: frozenset[str] = frozenset(),
                   fenced: frozenset[str] = frozenset()) -> Topology:
        """The same topology with the region states a failover recorded."""
        return replace(self, regions=tuple(
            replace(r, promoted=r.name in promoted, fenced=r.name in fenced)
            for r in self.regions))


# --- lab addressing: deterministic, derived from the Deployment alone -------------------

def lab_host_name(deployment: str, region: str, part: str) -> str:
    return f"hd-{deployment}-{region}-{part}"


def lab_dns_container(deployment: str) -> str:
    return f"hd-{deployment}-dns"


def lab_network_name(deployment: str, region: str) -> str:
    return f"hd-{deployment}-{region}"


def lab_control_network(deployment: str) -> str:
    return f"hd-{deployment}-ctl"


def lab_volume_name(deployment: str, region: str) -> str:
    return f"hd-{deployment}-{region}-shared"


PROBER_PORT = 9100


def running_app_hosts(hosts: int, standby: str) -> int:
    """App hosts kept running: hot all, warm half (at least one), cold none."""
    return {"hot": hosts, "warm": max(1, hosts // 2), "cold": 0}[standby]


def lab_topology(dep: Deployment, *, promoted: frozenset[str] = frozenset(),
                 fenced: frozenset[str] = frozenset()) -> Topology:
    """The lab's topology: gateway .1, prober .5, VIP .10, load balancers .11/.12, app
    hosts .21+. ``promoted``/``fenced``: region states a failover recorded."""
    regions = []
    for index, region in enumerate(dep.regions):
        assert region.lab_subnet is not None  # validated for target lab
        net = ipaddress.IPv4Network(region.lab_subnet)
        base = net.network_address
        running = region.hosts if region.name in promoted else running_app_hosts(
            region.hosts, region.standby.value)
        hosts = [Host(lab_host_name(dep.name, region.name, f"lb{i + 1}"), str(base + 11 + i),
                      "lb", region.name) for i in range(len(LB_PRIORITIES))]
        hosts += [Host(lab_host_name(dep.name, region.name, f"app{i + 1}"), str(base + 21 + i),
                       "app", region.name, standby=i >= running)
                  for i in range(region.hosts)]
        vip = str(base + 10)
        prober = f"http://{base + 5}:{PROBER_PORT}/results" if len(dep.regions) > 1 else None
        regions.append(RegionTopology(
            name=region.name, role=region.role.value, standby=region.standby.value, vip=vip,
            url=f"http://{vip}", subnet=str(net), router_id=51 + index,
            storage=SharedStorage("volume", lab_volume_name(dep.name, region.name)),
            hosts=tuple(hosts), prober=prober, fenced=region.name in fenced,
            promoted=region.name in promoted))
    control = ipaddress.IPv4Network(dep.lab.control_subnet)
    dns = DnsEndpoint(str(control.network_address + 53), 53, dep.dns.zone, dep.dns.record,
                      dep.dns.ttl)
    return Topology(dep.name, Target.LAB.value, dns, tuple(regions))


def lab_gateway(subnet: str) -> str:
    return str(ipaddress.IPv4Network(subnet).network_address + 1)


# --- inventory: the one place that maps the topology onto the roles' variables ----------

def render_inventory(topo: Topology, dep: Deployment,
                     connection: dict[str, str] | None = None) -> dict[str, Any]:
    """An Ansible YAML inventory: groups ``lb``, ``app`` and ``region_<name>``.

    Every role variable is set here, per host, from the topology; roles never compute
    topology. Target-specific settings (connection, keepalived on/off, storage type) come
    from ``inventories/<target>/group_vars`` and from the topology itself.
    """
    groups: dict[str, dict[str, Any]] = {"lb": {}, "app": {}}
    region_groups: dict[str, dict[str, Any]] = {}
    for region in topo.regions:
        apps = region.of_kind("app")
        backends = [{"name": h.name, "address": h.address, "port": dep.app.port} for h in apps]
        members: dict[str, Any] = {}
        for index, host in enumerate(region.of_kind("lb")):
            hv = _common_vars(topo, host)
            hv.update({
                "haproxy_frontend_port": 80,
                "haproxy_backends": backends,
                "haproxy_health_path": dep.app.health_path,
                "keepalived_vip": region.vip,
                "keepalived_vip_prefix": ipaddress.IPv4Network(region.subnet).prefixlen,
                "keepalived_router_id": region.router_id,
                "keepalived_priority": LB_PRIORITIES[index % len(LB_PRIORITIES)],
                "haproxy_fenced": region.fenced,
            })
            groups["lb"][host.name] = hv
            members[host.name] = {}
        for host in apps:
            hv = _common_vars(topo, host)
            hv.update({
                "app_port": dep.app.port,
                "app_health_path": dep.app.health_path,
                "app_version": dep.app.version,
                "app_region": region.name,
                "app_data_dir": region.storage.path,
                "shared_storage_path": region.storage.path,
                "shared_storage_type": region.storage.type,
                "shared_storage_source": "" if region.storage.type == "volume"
                else region.storage.source,
            })
            groups["app"][host.name] = hv
            members[host.name] = {}
        region_groups[f"region_{region.name.replace('-', '_')}"] = {"hosts": members}
        # (configure.region_group() names the same group for --limit)
    children: dict[str, Any] = {name: {"hosts": hosts} for name, hosts in groups.items()}
    children.update(region_groups)
    return {"all": {"vars": {"hadeploy_deployment": topo.deployment,
                             "hadeploy_target": topo.target, **(connection or {})},
                    "children": children}}


def _common_vars(topo: Topology, host: Host) -> dict[str, Any]:
    return {"hadeploy_deployment": topo.deployment, "hadeploy_region": host.region,
            "hadeploy_address": host.address}


def inventory_text(topo: Topology, dep: Deployment,
                   connection: dict[str, str] | None = None) -> str:
    # JSON is valid YAML: deterministic and needs no YAML dumper.
    return json.dumps(render_inventory(topo, dep, connection), indent=2, sort_keys=True) + "\n"
