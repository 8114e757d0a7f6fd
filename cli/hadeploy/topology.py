"""Topology: what a target built (regions → hosts, endpoints, storage, DNS), and the one
place where it is rendered into an Ansible inventory.

A target turns a ``Deployment`` into a ``Topology``; configuration, status and failover
only ever look at the ``Topology``, so they work the same on every target.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from hadeploy.config import Deployment, Role, Standby, Target

APP_DATA_DIR = "/srv/hadeploy/shared"
LB_PRIORITIES = (150, 100)


class HostKind(StrEnum):
    LB = "lb"  # a load balancer (haproxy, and keepalived where the target needs a VIP)
    APP = "app"  # an application host
    DB = "db"  # a database host (PostgreSQL under Patroni, with the region's etcd)
    BACKUP = "backup"  # the region's backup repository (pgBackRest) and restore tests


class StorageType(StrEnum):
    VOLUME = "volume"  # lab: a podman volume mounted on every app host of the region
    EFS = "efs"  # aws: an EFS file system


@dataclass(frozen=True)
class Host:
    name: str  # the inventory name (lab: the container name)
    address: str
    kind: HostKind
    region: str
    standby: bool = False  # kept stopped while its region is a warm/cold standby


@dataclass(frozen=True)
class SharedStorage:
    type: StorageType
    source: str  # lab: volume name; aws: the EFS mount source, '<DNS name>:/'
    path: str = APP_DATA_DIR


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class RegionData:
    """A region's database cluster as its clients see it."""

    cluster: str  # the Patroni scope, e.g. hd-demo-east
    write: Endpoint  # the cluster's writable primary (none answers in a standby region)
    read: Endpoint  # any readable member
    api_port: int = 8008  # every member's Patroni REST API


@dataclass(frozen=True)
class RegionTopology:
    name: str
    role: Role
    standby: Standby
    vip: str  # the region's public endpoint address (lab: VRRP virtual IP)
    url: str  # the region's public endpoint, e.g. http://10.91.1.10
    subnet: str
    router_id: int
    storage: SharedStorage
    hosts: tuple[Host, ...] = field(default_factory=tuple)
    prober: str | None = None  # URL of the in-region prober's /results (a vantage point)
    fenced: bool = False  # refuses writes: traffic was moved away by a failover
    promoted: bool = False  # a warm/cold standby scaled up to full size by a failover
    data: RegionData | None = None  # the database tier, when the deployment has one
    data_primary: bool = False  # its database cluster is the writable one (others stream)

    @property
    def serving_expected(self) -> bool:
        """A cold standby (all app hosts stopped on purpose) is not expected to serve."""
        return any(not h.standby for h in self.of_kind(HostKind.APP))

    def of_kind(self, kind: HostKind) -> list[Host]:
        return [h for h in self.hosts if h.kind == kind]


@dataclass(frozen=True)
class NameServer:
    """One authoritative server of the zone: ``name`` is the region it lives in, or
    ``witness`` for the tie-breaker next to the CLI machine."""
    name: str
    address: str
    port: int = 53


@dataclass(frozen=True)
class DnsEndpoint:
    server: str  # the first server (what one line of output names)
    port: int
    zone: str
    record: str
    ttl: int
    # Every authoritative server the CLI writes to by quorum (RFC 2136); empty: the one
    # ``server`` (Route 53, whose four name servers are Route 53's business).
    servers: tuple[NameServer, ...] = ()

    @property
    def name_servers(self) -> tuple[NameServer, ...]:
        return self.servers or (NameServer("dns", self.server, self.port),)

    @property
    def fqdn(self) -> str:
        return f"{self.record}.{self.zone}."

    @property
    def writer_record(self) -> str:
        """The TXT record naming the one region allowed to take writes ('-': none), read
        by each load balancer's lease agent (relative to the zone)."""
        return f"{WRITER_PREFIX}{self.record}"


@dataclass(frozen=True)
class Topology:
    deployment: str
    target: Target
    dns: DnsEndpoint
    regions: tuple[RegionTopology, ...]

    def region(self, name: str) -> RegionTopology:
        return next(r for r in self.regions if r.name == name)

    def region_of_address(self, address: str) -> RegionTopology | None:
        return next((r for r in self.regions if r.vip == address), None)

    def active_region(self, answer: list[str]) -> str | None:
        """The one region a DNS answer names, or None (no region, or several)."""
        names = [r.name for r in self.regions if r.vip in answer]
        return names[0] if len(names) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(json.dumps(asdict(self)))  # enums as their values
        return doc

    @classmethod
    def from_dict(cls, doc: Any) -> Topology:
        """The inverse of :meth:`to_dict` (``<state>/topology.json``); raises ValueError
        naming what is wrong when ``doc`` is not a topology."""
        try:
            regions = []
            for r in doc["regions"]:
                fields = dict(r)
                storage = r["storage"]
                fields["storage"] = SharedStorage(StorageType(storage["type"]),
                                                  str(storage["source"]),
                                                  str(storage.get("path", APP_DATA_DIR)))
                fields["role"], fields["standby"] = Role(r["role"]), Standby(r["standby"])
                fields["hosts"] = tuple(Host(str(h["name"]), str(h["address"]),
                                             HostKind(h["kind"]), str(h["region"]),
                                             bool(h.get("standby", False)))
                                        for h in r.get("hosts") or ())
                data = r.get("data")
                fields["data"] = None if data is None else RegionData(
                    str(data["cluster"]), Endpoint(**data["write"]), Endpoint(**data["read"]),
                    int(data.get("api_port", 8008)))
                regions.append(RegionTopology(**fields))
            dns = doc["dns"]
            endpoint = DnsEndpoint(str(dns["server"]), int(dns["port"]), str(dns["zone"]),
                                   str(dns["record"]), int(dns["ttl"]), tuple(
                                       NameServer(str(s["name"]), str(s["address"]),
                                                  int(s["port"]))
                                       for s in dns.get("servers") or ()))
            return cls(str(doc["deployment"]), Target(doc["target"]), endpoint,
                       tuple(regions))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a topology ({type(exc).__name__}: {str(exc)[:120]})"
                             ) from None

    def with_flags(self, *, promoted: frozenset[str] = frozenset(),
                   fenced: frozenset[str] = frozenset(),
                   data_primary: str | None = None) -> Topology:
        """The same topology with the region states a failover recorded."""
        primary = data_primary or next((r.name for r in self.regions if r.data_primary),
                                       None)
        return replace(self, regions=tuple(
            replace(r, promoted=r.name in promoted, fenced=r.name in fenced,
                    data_primary=r.data is not None and r.name == primary)
            for r in self.regions))

    def roll_order(self) -> list[RegionTopology]:
        """The order in which a change that restarts services rolls through the regions:
        the ones not serving first, the one serving writes (the database's primary region,
        else the primary region unless a failover moved traffic away) last."""
        def serving(r: RegionTopology) -> bool:
            if any(x.data is not None for x in self.regions):
                return r.data_primary
            return not r.fenced and (r.promoted or r.role is Role.PRIMARY)
        return sorted(self.regions, key=serving)  # stable: region order otherwise

    @property
    def data_primary_region(self) -> RegionTopology | None:
        """The region whose database cluster takes writes (None: no database tier)."""
        return next((r for r in self.regions if r.data_primary), None)


# --- inventory: the one place that maps the topology onto the roles' variables ----------

# Inventory variables that a failover changes at run time, on the hosts themselves (the
# fence's ACL file, the database cluster's role): re-running Ansible for them would change
# nothing, so they are left out of the configuration fingerprints. (The database role is
# read by Patroni only when a cluster is first created; the host items are imported through
# matters once, when a deployment first gains its database tier.)
BACKUP_REPO_PORT = 8432  # pgBackRest's TLS server, on database and backup hosts
# The load balancers' lease agents (roles/haproxy/files/hadeploy-lease.py) ask every
# LEASE_INTERVAL seconds, with a LEASE_TIMEOUT per round; one that stops hearing the DNS
# server refuses writes at most lease + LEASE_INTERVAL + LEASE_TIMEOUT after its last answer.
WRITER_PREFIX = "_writer."
NO_WRITER = "-"
LEASE_INTERVAL, LEASE_TIMEOUT = 0.25, 0.5


def lease_bound(lease: float) -> float:
    """Seconds after which an agent that can no longer confirm its region is the writer
    has fenced it for sure."""
    return lease + LEASE_INTERVAL + LEASE_TIMEOUT


RUNTIME_VARS = frozenset({"haproxy_fenced", "postgresql_primary", "postgresql_primary_hosts",
                          "app_import_host"})


def stanza_name(deployment: str) -> str:
    """The pgBackRest stanza of a deployment: one for every region's cluster (they are one
    PostgreSQL system, so the new primary after a failover archives to the same stanza)."""
    return f"hd-{deployment}"


def backup_hosts(topo: Topology) -> list[Host]:
    """Every region's backup host, in region order (repository N is the N-th)."""
    return [h for r in topo.regions for h in r.of_kind(HostKind.BACKUP)]


def files_repository(topo: Topology, region: str) -> Host | None:
    """Where a region's shared-storage backups go: the next region's backup host (region
    order, wrapping); the region's own when it is the only one."""
    hosts = backup_hosts(topo)
    regions = [h.region for h in hosts]
    if region not in regions:
        return None
    return hosts[(regions.index(region) + 1) % len(hosts)]


def files_backed_up(region: RegionTopology) -> bool:
    """Whether the region's shared storage is backed up: by its first app host, while that
    host runs (a cold standby region's hosts are stopped, and write nothing)."""
    apps = region.of_kind(HostKind.APP)
    return bool(apps) and not apps[0].standby and bool(region.of_kind(HostKind.BACKUP))


def slot_name(region: str) -> str:
    """The replication slot a standby region streams through, on the primary cluster."""
    return "standby_" + region.replace("-", "_")


def render_inventory(topo: Topology, dep: Deployment,
                     extra: dict[str, str] | None = None) -> dict[str, Any]:
    """An Ansible YAML inventory: groups ``lb``, ``app``, ``db``, ``backup`` and
    ``region_<name>``.

    Every role variable is set here, per host, from the topology; roles never compute
    topology. Target-specific settings (connection, keepalived on/off, storage type) come
    from ``inventories/<target>/group_vars`` and from the topology itself; ``extra``: what
    the target adds for every host (the connection, the controller paths of secrets).
    """
    groups: dict[str, dict[str, Any]] = {"lb": {}, "app": {}, "db": {}, "backup": {}}
    region_groups: dict[str, dict[str, Any]] = {}
    # Hosts are listed in roll order (the plays that restart services one host at a time
    # take them in inventory order); inventory_text keeps that order.
    for region in topo.roll_order():
        members: dict[str, Any] = {}
        for kind, hostvars in ((HostKind.LB, _lb_vars), (HostKind.APP, _app_vars),
                               (HostKind.DB, _db_vars), (HostKind.BACKUP, _backup_vars)):
            for index, host in enumerate(region.of_kind(kind)):
                hv = _common_vars(topo, host)
                hv.update(hostvars(topo, dep, region, index))
                groups[kind.value][host.name] = hv
                members[host.name] = {}
        region_groups[region_group(region.name)] = {"hosts": members}
    children: dict[str, Any] = {name: {"hosts": hosts} for name, hosts in groups.items()}
    children.update(region_groups)
    return {"all": {"vars": {"hadeploy_deployment": topo.deployment,
                             "hadeploy_target": topo.target, **(extra or {})},
                    "children": children}}


def _lb_vars(topo: Topology, dep: Deployment, region: RegionTopology,
             index: int) -> dict[str, Any]:
    apps = region.of_kind(HostKind.APP)
    return {
        "haproxy_frontend_port": 80,
        "haproxy_backends": [{"name": h.name, "address": h.address, "port": dep.app.port}
                             for h in apps],
        "haproxy_health_path": dep.app.health_path,
        "haproxy_db_backends": [{"name": h.name, "address": h.address}
                                for h in region.of_kind(HostKind.DB)],
        "haproxy_db_write_port": region.data.write.port if region.data else 5432,
        "haproxy_db_read_port": region.data.read.port if region.data else 5433,
        "haproxy_db_api_port": region.data.api_port if region.data else 8008,
        "keepalived_vip": region.vip,
        "keepalived_vip_prefix": ipaddress.IPv4Network(region.subnet).prefixlen,
        "keepalived_router_id": region.router_id,
        "keepalived_priority": LB_PRIORITIES[index % len(LB_PRIORITIES)],
        "haproxy_fenced": region.fenced,
        "haproxy_lease": dep.failover.lease,
        "haproxy_lease_servers": [f"{s.address}:{s.port}" for s in topo.dns.name_servers],
        "haproxy_lease_record": f"{topo.dns.writer_record}.{topo.dns.zone}.",
        "haproxy_lease_region": region.name,
        "haproxy_lease_interval": LEASE_INTERVAL,
        "haproxy_check_inter": _ms(dep.load_balancers.check_interval),
        "haproxy_timeout_server": _ms(dep.load_balancers.timeout_server),
        "keepalived_advert_int": dep.load_balancers.vrrp_advert_interval,
    }


def _ms(seconds: float) -> str:
    """haproxy's time format."""
    return f"{round(seconds * 1000)}ms"


def _app_vars(topo: Topology, dep: Deployment, region: RegionTopology,
              index: int) -> dict[str, Any]:
    data = region.data
    writer = topo.data_primary_region
    importer = writer.of_kind(HostKind.APP) if writer is not None else []
    return {
        "app_load_balancers": [h.name for h in region.of_kind(HostKind.LB)],
        "app_port": dep.app.port,
        "app_health_path": dep.app.health_path,
        "app_version": dep.app.version,
        "app_region": region.name,
        "app_data_dir": region.storage.path,
        "app_db": None if data is None else {
            "write_host": data.write.host, "write_port": data.write.port,
            "read_host": data.read.host, "read_port": data.read.port},
        "app_import_files": data is not None and index == 0 and bool(importer),
        "app_import_host": importer[0].name if data is not None and importer else "",
        **_restic_vars(topo, dep, region, index),
        "shared_storage_path": region.storage.path,
        "shared_storage_type": region.storage.type,
        "shared_storage_source": "" if region.storage.type is StorageType.VOLUME
        else region.storage.source,
    }


def _restic_vars(topo: Topology, dep: Deployment, region: RegionTopology,
                 index: int) -> dict[str, Any]:
    """The region's first app host backs the shared storage up (restic, over SFTP to
    another region's backup host); not in a cold standby region (no app host runs there,
    so nothing is written)."""
    repo = files_repository(topo, region.name) if index == 0 and files_backed_up(region) \
        else None
    return {"restic_enabled": repo is not None,
            "restic_repo_host": {} if repo is None else {"name": repo.name,
                                                         "address": repo.address},
            "restic_source": region.name, "restic_path": region.storage.path,
            "restic_schedule": dep.data.backup.files,
            "restic_schedule_verify": dep.data.backup.verify}


def _db_vars(topo: Topology, dep: Deployment, region: RegionTopology,
             _index: int) -> dict[str, Any]:
    data = region.data
    assert data is not None  # database hosts exist only with a data tier
    writer = topo.data_primary_region
    others = [r for r in topo.regions if r.data is not None and r.name != region.name]
    every_db = [h.address for r in topo.regions for h in r.of_kind(HostKind.DB)]
    return {
        "postgresql_cluster": data.cluster,
        "postgresql_peers": [{"name": h.name, "address": h.address}
                             for h in region.of_kind(HostKind.DB)],
        "postgresql_api_port": data.api_port,
        "postgresql_vip": region.vip,
        "postgresql_primary": region.data_primary,
        "postgresql_primary_hosts": [] if writer is None or writer.name == region.name
        else [h.address for h in writer.of_kind(HostKind.DB)],
        "postgresql_slot": slot_name(region.name),
        "postgresql_slots": [slot_name(r.name) for r in others],
        "postgresql_replication_clients": every_db,
        "postgresql_app_clients": [h.address for h in region.of_kind(HostKind.LB)],
        "postgresql_backup_clients": [h.address for h in backup_hosts(topo)],
        "postgresql_archive": bool(backup_hosts(topo)),
        "postgresql_stanza": stanza_name(topo.deployment),
        **_pgbackrest_vars(topo, dep),
        # on a database host: its repositories are remote (every backup host)
        "pgbackrest_repos": [{"name": h.name, "address": h.address, "region": h.region}
                             for h in backup_hosts(topo)],
        "pgbackrest_clients": [h.name for h in backup_hosts(topo)],
    }


def _pgbackrest_vars(topo: Topology, dep: Deployment) -> dict[str, Any]:
    return {"pgbackrest_stanza": stanza_name(topo.deployment),
            "pgbackrest_port": BACKUP_REPO_PORT,
            "pgbackrest_retention_full": dep.data.backup.retention_full}


def _backup_vars(topo: Topology, dep: Deployment, region: RegionTopology,
                 _index: int) -> dict[str, Any]:
    """A backup host keeps a repository of its own (local) and reaches every database
    host of every region (pgBackRest backs up whichever is the writable primary)."""
    backup = dep.data.backup
    every_db = [h for r in topo.regions for h in r.of_kind(HostKind.DB)]
    return {
        **_pgbackrest_vars(topo, dep),
        "pgbackrest_db_hosts": [{"name": h.name, "address": h.address, "region": h.region}
                                for h in every_db],
        "pgbackrest_clients": [h.name for h in every_db],
        "pgbackrest_repo_region": region.name,
        "pgbackrest_repo_index": 1 + [h.region for h in backup_hosts(topo)].index(region.name),
        "pgbackrest_database": "hadeploy",
        "pgbackrest_schedule_full": backup.full,
        "pgbackrest_schedule_diff": backup.diff,
        "pgbackrest_schedule_verify": backup.verify,
        "restic_sources": [r.name for r in topo.regions
                           if (repo := files_repository(topo, r.name)) is not None
                           and repo.region == region.name],
    }


def region_group(region: str) -> str:
    """The inventory group of a region's hosts (what ``--limit`` names)."""
    return f"region_{region.replace('-', '_')}"


def _common_vars(topo: Topology, host: Host) -> dict[str, Any]:
    return {"hadeploy_deployment": topo.deployment, "hadeploy_region": host.region,
            "hadeploy_address": host.address}


def inventory_text(topo: Topology, dep: Deployment, extra: dict[str, str] | None = None) -> str:
    # JSON is valid YAML: deterministic and needs no YAML dumper. Keys are sorted, but not
    # the hosts of a group: their order is the roll order.
    def ordered(node: Any, keep: bool = False) -> Any:
        if not isinstance(node, dict):
            return node
        items = node.items() if keep else sorted(node.items())
        return {k: ordered(v, keep=k == "hosts" and not keep) for k, v in items}
    return json.dumps(ordered(render_inventory(topo, dep, extra)), indent=2) + "\n"
