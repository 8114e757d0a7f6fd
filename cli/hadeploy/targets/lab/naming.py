"""Lab names and addresses: deterministic, derived from the Deployment alone.

Per region subnet: gateway .1, prober .5, the region's authoritative DNS server .6, VIP
.10, load balancers .11/.12, database hosts .13 to .17, the backup host .18, app hosts .21
and up. On the control subnet: the witness DNS server at .53 (only with an even number of
regions: the tie-breaker that gives the servers an odd count). Every object is named
``hd-<deployment>-…`` so that deployments on one machine never collide.
The database tier is reached through the region's VIP: port 5432 for the writable primary,
5433 for any readable member (haproxy chooses by Patroni's health endpoints).
"""

from __future__ import annotations

import ipaddress

from hadeploy.config import Deployment, Target
from hadeploy.topology import (
    LB_PRIORITIES,
    DnsEndpoint,
    Endpoint,
    Host,
    HostKind,
    NameServer,
    RegionData,
    RegionTopology,
    SharedStorage,
    StorageType,
    Topology,
)

PROBER_PORT = 9100
PROBER_OFFSET, VIP_OFFSET, LB_OFFSET, DB_OFFSET, APP_OFFSET, DNS_OFFSET = 5, 10, 11, 13, 21, 53
REGION_DNS_OFFSET = 6
WITNESS = "witness"
BACKUP_OFFSET = 18
DB_WRITE_PORT, DB_READ_PORT = 5432, 5433
ROUTER_ID_BASE = 51


def host_name(deployment: str, region: str, part: str) -> str:
    return f"hd-{deployment}-{region}-{part}"


def dns_container(deployment: str, server: str = WITNESS) -> str:
    """A DNS server's container: the region's (``server`` a region) or the witness."""
    return f"hd-{deployment}-dns" if server == WITNESS else host_name(deployment, server, "dns")


def name_servers(dep: Deployment) -> tuple[NameServer, ...]:
    """One authoritative server per region, and a witness on the control network when the
    regions are even in number: an odd count, so that a majority always exists after the
    loss of any one server (two regions: losing either region's server leaves two of
    three)."""
    servers = [NameServer(r.name, str(ipaddress.IPv4Network(r.lab_subnet or "0.0.0.0/32")
                                      .network_address + REGION_DNS_OFFSET))
               for r in dep.regions]
    if len(servers) % 2 == 0:
        control = ipaddress.IPv4Network(dep.lab.control_subnet)
        servers.append(NameServer(WITNESS, str(control.network_address + DNS_OFFSET)))
    return tuple(servers)


def network_name(deployment: str, region: str) -> str:
    return f"hd-{deployment}-{region}"


def control_network(deployment: str) -> str:
    return f"hd-{deployment}-ctl"


def volume_name(deployment: str, region: str) -> str:
    return f"hd-{deployment}-{region}-shared"


def backup_volume(deployment: str, region: str) -> str:
    """The backup host's repository: a volume that 'down' keeps (unless --delete-backups)."""
    return f"hd-{deployment}-{region}-backup"


def prober_name(deployment: str, region: str) -> str:
    return host_name(deployment, region, "probe")


def gateway(subnet: str) -> str:
    return str(ipaddress.IPv4Network(subnet).network_address + 1)


def prober_address(subnet: str) -> str:
    return str(ipaddress.IPv4Network(subnet).network_address + PROBER_OFFSET)


def stable_mac(address: str) -> str:
    """A MAC derived from the IP: a restarted container keeps it, so its peers' ARP
    caches stay right (with a new MAC, a restarted host rejoins only after ARP expiry,
    26-75 s measured)."""
    octets = [int(o) for o in address.split(".")]
    return "02:48:" + ":".join(f"{o:02x}" for o in octets)


def running_app_hosts(hosts: int, standby: str) -> int:
    """App hosts kept running: hot all, warm half (at least one), cold none."""
    return {"hot": hosts, "warm": max(1, hosts // 2), "cold": 0}[standby]


def cluster_name(deployment: str, region: str) -> str:
    """The Patroni scope of a region's database cluster."""
    return f"hd-{deployment}-{region}"


def lab_topology(dep: Deployment, *, promoted: frozenset[str] = frozenset(),
                 fenced: frozenset[str] = frozenset(),
                 data_primary: str | None = None) -> Topology:
    """The lab's topology. ``promoted``/``fenced``/``data_primary``: region states a
    failover recorded (``data_primary`` None: the configured primary)."""
    writer = data_primary or dep.primary.name
    regions = []
    for index, region in enumerate(dep.regions):
        assert region.lab_subnet is not None  # validated for target lab
        base = ipaddress.IPv4Network(region.lab_subnet).network_address
        running = region.hosts if region.name in promoted else running_app_hosts(
            region.hosts, region.standby.value)
        hosts = [Host(host_name(dep.name, region.name, f"lb{i + 1}"),
                      str(base + LB_OFFSET + i), HostKind.LB, region.name)
                 for i in range(len(LB_PRIORITIES))]
        if dep.data.enabled:
            hosts += [Host(host_name(dep.name, region.name, f"db{i + 1}"),
                           str(base + DB_OFFSET + i), HostKind.DB, region.name)
                      for i in range(dep.data.hosts)]
            if dep.data.backup.enabled:
                hosts.append(Host(host_name(dep.name, region.name, "backup"),
                                  str(base + BACKUP_OFFSET), HostKind.BACKUP, region.name))
        hosts += [Host(host_name(dep.name, region.name, f"app{i + 1}"),
                       str(base + APP_OFFSET + i), HostKind.APP, region.name,
                       standby=i >= running)
                  for i in range(region.hosts)]
        vip = str(base + VIP_OFFSET)
        data = RegionData(cluster_name(dep.name, region.name), Endpoint(vip, DB_WRITE_PORT),
                          Endpoint(vip, DB_READ_PORT)) if dep.data.enabled else None
        prober = (f"http://{prober_address(region.lab_subnet)}:{PROBER_PORT}/results"
                  if len(dep.regions) > 1 else None)
        regions.append(RegionTopology(
            name=region.name, role=region.role, standby=region.standby, vip=vip,
            url=f"http://{vip}", subnet=region.lab_subnet, router_id=ROUTER_ID_BASE + index,
            storage=SharedStorage(StorageType.VOLUME, volume_name(dep.name, region.name)),
            hosts=tuple(hosts), prober=prober, fenced=region.name in fenced,
            promoted=region.name in promoted, data=data,
            data_primary=data is not None and region.name == writer))
    servers = name_servers(dep)
    dns = DnsEndpoint(servers[0].address, 53, dep.dns.zone, dep.dns.record, dep.dns.ttl,
                      servers)
    return Topology(dep.name, Target.LAB, dns, tuple(regions))
