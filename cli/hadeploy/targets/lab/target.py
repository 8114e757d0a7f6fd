"""The lab target: every region is a podman network with two load-balancer hosts, N app
hosts, a prober and a shared-storage volume; one knotd container is the zone's
authoritative server. Every host runs systemd, so the same roles configure it as a VM.

Everything created carries the label ``io.hadeploy.deployment=<name>`` (containers,
networks, volumes) or the iptables comment ``hadeploy:<name>`` (firewall rules), so that
``down`` and the tests' clean-up remove exactly what a deployment created, even when its
state directory is gone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hadeploy import backup, configure, dbsecrets
from hadeploy.config import Deployment
from hadeploy.configure import DriftItem
from hadeploy.data import DataState, settle_region
from hadeploy.dns.rfc2136 import Rfc2136Provider, Snapshot, TsigKey
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.state import StateDir, write_if_changed
from hadeploy.status import FILES_KEY, DataReaders, StatusDoc, collect, host_url
from hadeploy.targets import ApplyHooks, Change, Desired, Drift, Plan, Runtime
from hadeploy.targets.lab import image, knot, naming, podman
from hadeploy.topology import Host, HostKind, NameServer, RegionTopology, Topology, region_group

Log = Callable[[str], None]
PROBER_SOURCE = Path(__file__).resolve().parents[2] / "prober.py"
DNS_START_SOURCE = Path(__file__).resolve().parent / "dns_start.py"
SPEC_LABEL = "io.hadeploy.spec"
REGION_LABEL = "io.hadeploy.region"
PLAYBOOK = "site.yml"
BACKUP_REPO_PATH = "/var/lib/pgbackrest"  # the backup host's repository (its volume)
TLS_KINDS = (HostKind.DB, HostKind.BACKUP)  # hosts with a certificate from the deployment CA


def _quiet(_message: str) -> None:
    return None


def _digest(value: Any, size: int = 16) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:size]


def ssh_key_path(state: Path) -> Path:
    return state / "ssh" / "id_ed25519"


def known_hosts_path(state: Path) -> Path:
    return state / "ssh" / "known_hosts"


def connection_vars(state: Path) -> dict[str, str]:
    """Ansible reaches lab hosts like VMs: SSH as root with the deployment's own key, host
    keys checked strictly against the ones collected from each container at boot. The
    roles read the database tier's secrets on the controller, from ``hadeploy_db_dir``."""
    return {"ansible_ssh_private_key_file": str(ssh_key_path(state)),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts_path(state)} "
                                       "-o StrictHostKeyChecking=yes",
            "hadeploy_db_dir": str(dbsecrets.db_dir(state)),
            "hadeploy_backup_dir": str(backup.backup_dir(state)),
            "hadeploy_known_hosts": str(known_hosts_path(state))}


# --- what exists ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveContainer:
    spec: str | None
    state: str
    region: str | None


@dataclass
class LabLive:
    """What exists on this machine for one deployment (read-only observation)."""

    podman: bool = True
    image: bool = False
    containers: dict[str, LiveContainer] = field(default_factory=dict)
    networks: set[str] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)
    firewall: set[tuple[str, str]] = field(default_factory=set)
    ssh_key: bool = False
    tsig_key: TsigKey | None = None
    db_passwords: bool = False
    db_ca: bool = False
    backup_key: bool = False
    db_certs: dict[str, str] = field(default_factory=dict)  # host → digest of its names
    data: dict[str, DataState] = field(default_factory=dict)  # each region's cluster now
    converged: dict[str, str] = field(default_factory=dict)
    unhealthy: dict[str, list[str]] = field(default_factory=dict)
    dns_answer: list[str] | None = None  # None: the server could not be asked
    dns_error: str | None = None
    dns_stale: list[str] = field(default_factory=list)  # servers behind the newest serial
    drift: dict[str, list[DriftItem]] = field(default_factory=dict)  # check_drift's findings

    def running(self, name: str) -> bool:
        """Whether the container ``name`` exists and runs."""
        have = self.containers.get(name)
        return have is not None and have.state == "running"


@dataclass
class LabReport:
    """What ``up`` did on the lab (``up --json``; see docs/cli.md)."""

    deployment: str
    topology: Topology
    plan: list[Change] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unmanaged_regions: list[str] = field(default_factory=list)
    configured: bool = False
    configure_reason: str = ""
    ansible: dict[str, Any] | None = None
    dns_answer: list[str] = field(default_factory=list)
    dns_changed: bool = False
    data: list[str] = field(default_factory=list)  # databases put back in their roles
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.started or self.recreated or self.stopped
                    or self.removed or self.data
                    or self.dns_changed or (self.ansible and self.ansible["changed"]))

    def to_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "target": "lab", "changed": self.changed,
                "plan": [str(c) for c in self.plan],
                "created": self.created, "started": self.started,
                "recreated": self.recreated, "stopped": self.stopped,
                "removed": self.removed,
                "unmanaged_regions": self.unmanaged_regions,
                "configured": self.configured, "configure_reason": self.configure_reason,
                "ansible": self.ansible, "data": self.data,
                "dns": {"record": self.topology.dns.fqdn, "answer": self.dns_answer,
                        "changed": self.dns_changed},
                "seconds": round(self.seconds, 1)}

    def summary(self) -> list[str]:
        lines = []
        ans = self.ansible
        if ans:
            lines.append(f"ansible: {len(ans['hosts'])} hosts, changed={ans['changed']}, "
                         f"{ans['seconds']} s ({self.configure_reason})")
        made = len(self.created) + len(self.recreated) + len(self.started)
        active = self.topology.active_region(self.dns_answer)
        if self.changed:
            lines.append(f"[green]up[/]: {made} object(s) created/restarted, "
                         f"{self.topology.dns.fqdn} → {', '.join(self.dns_answer)} "
                         f"({active or '?'}) in {self.seconds:.1f} s")
        else:
            hosts = sum(len(r.hosts) for r in self.topology.regions)
            why = (f"Ansible reported changed=0 on {len(ans['hosts'])} hosts" if ans
                   else f"{hosts} hosts healthy, configuration unchanged")
            lines.append(f"[green]up[/]: no changes ({why}) in {self.seconds:.1f} s")
        lines += [f"[yellow]note[/]: region '{r}' exists but is not in the desired state; "
                  "left alone (remove it with 'hadeploy down' of the whole deployment)"
                  for r in self.unmanaged_regions]
        return lines


# --- the target ----------------------------------------------------------------------------

class LabTarget:
    confirm_apply = False

    def __init__(self, dep: Deployment, state: StateDir, *, log: Log = _quiet) -> None:
        self.dep, self.state, self.log = dep, state, log
        self._desired: list[Desired] | None = None
        self._args: dict[str, list[str]] = {}

    # -- topology and names ---------------------------------------------------------------

    def topology(self) -> Topology:
        flags = self.state.region_flags()
        return naming.lab_topology(self.dep, promoted=flags.names("promoted"),
                                   fenced=flags.names("fenced"), data_primary=flags.data_primary)

    @property
    def tsig_path(self) -> Path:
        return knot.tsig_key_path(self.state.path)

    def _load_tsig(self) -> TsigKey | None:
        return TsigKey.load(self.tsig_path) if self.tsig_path.exists() else None

    def dns_provider(self, topo: Topology) -> Rfc2136Provider:
        return Rfc2136Provider(topo.dns.name_servers, topo.dns.zone, self._load_tsig(),
                               key_path=self.tsig_path)

    def dns_servers(self, topo: Topology) -> dict[str, NameServer]:
        """Container name → the DNS server it runs."""
        return {naming.dns_container(self.dep.name, s.name): s for s in topo.dns.name_servers}

    def _cli_address(self, server: NameServer, topo: Topology) -> str:
        """This machine's address on the server's network: the one source its ACL lets
        update the zone."""
        region = next((r for r in topo.regions if r.name == server.name), None)
        return naming.gateway(region.subnet if region else self.dep.lab.control_subnet)

    def _labels(self, region: str | None = None, kind: str | None = None) -> list[str]:
        labels = ["--label", f"{podman.LABEL}={self.dep.name}"]
        if region:
            labels += ["--label", f"{REGION_LABEL}={region}"]
        if kind:
            labels += ["--label", f"io.hadeploy.kind={kind}"]
        return labels

    # -- desired --------------------------------------------------------------------------

    def desired(self) -> list[Desired]:
        if self._desired is not None:
            return self._desired
        topo = self.topology()
        ref = image.image_ref()
        name = self.dep.name
        objs = [Desired("image", ref, spec=ref), Desired("key", "ssh"),
                Desired("key", "tsig"),
                Desired("network", naming.control_network(name), spec=self.dep.lab.control_subnet,
                        detail=self.dep.lab.control_subnet)]
        regions = {r.name for r in topo.regions}
        objs += [self._container(container, server.name if server.name in regions else None,
                                 self._dns_args(ref, topo, container, server),
                                 detail=f"knotd, {server.address}")
                 for container, server in self.dns_servers(topo).items()]
        if self.dep.data.enabled:
            objs += [Desired("secret", "db-passwords"), Desired("certificate", "db-ca")]
            if self.dep.data.backup.enabled:
                objs.append(Desired("secret", "backup-key",
                                    detail="the backup repositories' passphrase"))
            objs += [Desired("certificate", h.name, r.name,
                             spec=dbsecrets.names_digest(*self._cert_names(h, r)))
                     for r in topo.regions for h in r.hosts if h.kind in TLS_KINDS]
        for region in topo.regions:
            objs.append(Desired("network", naming.network_name(name, region.name), region.name,
                                spec=region.subnet, detail=region.subnet))
            objs.append(Desired("volume", region.storage.source, region.name))
            if region.of_kind(HostKind.BACKUP):
                objs.append(Desired("volume", naming.backup_volume(name, region.name),
                                    region.name, detail="backup repository (kept by down)"))
            for host in region.hosts:
                objs.append(self._container(
                    host.name, region.name, self._host_args(host, region, ref),
                    running=not host.standby,
                    detail=f"{host.kind}, {host.address}" + (", standby: configured, then "
                                                             "stopped" if host.standby else "")))
            if region.prober:
                objs.append(self._container(
                    naming.prober_name(name, region.name), region.name,
                    self._prober_args(region, ref, topo), detail="prober"))
        objs.append(Desired("firewall", f"hadeploy:{name}", spec=json.dumps(self._fw_pairs())))
        writer = topo.data_primary_region
        objs += [Desired("database", r.name, r.name, spec="primary" if r.name == writer.name
                         else f"standby of {writer.name}")
                 for r in topo.regions if r.data is not None and writer is not None]
        fingerprints = configure.region_fingerprints(topo, self.dep, PLAYBOOK,
                                                     connection_vars(self.state.path))
        objs += [Desired("configuration", r.name, r.name, spec=fingerprints[r.name])
                 for r in topo.regions]
        primary = topo.region(self.dep.primary.name)
        objs.append(Desired("record", topo.dns.fqdn, spec=primary.vip,
                            detail=f"at {primary.name} ({primary.vip}) unless it names a region"))
        self._desired = objs
        return objs

    @staticmethod
    def _cert_names(host: Host, region: RegionTopology) -> tuple[list[str], list[str]]:
        """What a database or backup host's certificate names: clients reach it by its own
        address (replication, rewind, pgBackRest) or through haproxy on the region's VIP
        (the application)."""
        return [host.name], [host.address, region.vip]

    def _container(self, name: str, region: str | None, args: list[str], *,
                   running: bool = True, detail: str = "") -> Desired:
        self._args[name] = args
        return Desired("container", name, region, spec=_digest(args), running=running,
                       detail=detail)

    def _host_args(self, host: Host, region: RegionTopology, ref: str) -> list[str]:
        args = [*self._labels(host.region, host.kind), "--hostname", host.name,
                "--network", naming.network_name(self.dep.name, host.region),
                "--ip", host.address, "--mac-address", naming.stable_mac(host.address),
                "--systemd=always", "--tmpfs", "/run", "--tmpfs", "/tmp", "--stop-timeout", "5",
                "-v", f"{ssh_key_path(self.state.path).with_suffix('.pub')}:"
                      "/root/.ssh/authorized_keys:ro"]
        if host.kind is HostKind.LB:
            args += ["--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW"]
        elif host.kind is HostKind.BACKUP:
            args += ["-v", f"{naming.backup_volume(self.dep.name, region.name)}:"
                           f"{BACKUP_REPO_PATH}"]
        else:
            args += ["-v", f"{region.storage.source}:{region.storage.path}"]
        return [*args, ref, "/lib/systemd/systemd"]

    def _prober_conf(self, region: RegionTopology, topo: Topology) -> str:
        others = {r.name: f"{r.url}{self.dep.app.health_path}" for r in topo.regions
                  if r.name != region.name}
        return json.dumps({"vantage": f"probe@{region.name}", "targets": others,
                           "interval": self.dep.failover.probe_interval,
                           "timeout": self.dep.failover.probe_timeout,
                           "port": naming.PROBER_PORT}, sort_keys=True)

    def _prober_path(self, region: str) -> Path:
        return self.state.path / "probers" / f"{region}.json"

    def _prober_args(self, region: RegionTopology, ref: str, topo: Topology) -> list[str]:
        """The region's vantage point: probes every *other* region's endpoint."""
        address = naming.prober_address(region.subnet)
        name = naming.prober_name(self.dep.name, region.name)
        return [*self._labels(region.name, "probe"),
                "--label", f"io.hadeploy.config={_digest(self._prober_conf(region, topo), 12)}",
                "--hostname", name, "--network", naming.network_name(self.dep.name, region.name),
                "--ip", address, "--mac-address", naming.stable_mac(address), "--init",
                "-v", f"{PROBER_SOURCE}:/opt/hadeploy/prober.py:ro",
                "-v", f"{self._prober_path(region.name)}:/etc/hadeploy-prober.json:ro",
                ref, "python3", "/opt/hadeploy/prober.py", "--config",
                "/etc/hadeploy-prober.json"]

    def _dns_args(self, ref: str, topo: Topology, container: str,
                  server: NameServer) -> list[str]:
        region = next((r for r in topo.regions if r.name == server.name), None)
        network = (naming.network_name(self.dep.name, region.name) if region
                   else naming.control_network(self.dep.name))
        here = knot.server_dir(self.state.path, server.name)
        key = self._load_tsig()
        # The container is recreated when its configuration changes (a digest, never the
        # secret itself: the file is bind-mounted read-only and holds the key).
        conf = (_digest(knot.knot_config(self.dep, key, self._cli_address(server, topo)))
                if key else "new-key")
        return [*self._labels(region.name if region else None, "dns"),
                "--label", f"io.hadeploy.config={conf}",
                "--hostname", container, "--network", network, "--ip", server.address,
                "--mac-address", naming.stable_mac(server.address), "--init", "--tmpfs", "/run",
                "-v", f"{here / 'knot.conf'}:{knot.CONFIG_DIR}/knot.conf:ro,Z",
                "-v", f"{here / 'sync.json'}:{knot.CONFIG_DIR}/sync.json:ro,Z",
                "-v", f"{here / 'tsig.key'}:{knot.CONFIG_DIR}/tsig.key:ro,Z",
                "-v", f"{DNS_START_SOURCE}:/opt/hadeploy/dns_start.py:ro",
                "-v", f"{here / 'zones'}:{knot.ZONES_DIR}:Z",
                ref, "python3", "/opt/hadeploy/dns_start.py"]

    def _subnets(self) -> list[str]:
        return [self.dep.lab.control_subnet, *(r.lab_subnet or "" for r in self.dep.regions)]

    def _fw_pairs(self) -> list[tuple[str, str]]:
        subnets = self._subnets()
        return [(s, d) for s in subnets for d in subnets if s != d]

    def _fw_rule(self, src: str, dst: str) -> list[str]:
        return ["POSTROUTING", "-s", src, "-d", dst, "-m", "comment", "--comment",
                f"hadeploy:{self.dep.name}", "-j", "RETURN"]

    # -- live -----------------------------------------------------------------------------

    def live(self) -> LabLive:
        live = LabLive(ssh_key=ssh_key_path(self.state.path).exists(),
                       tsig_key=self._load_tsig(), converged=self.state.converged())
        if self.dep.data.enabled:
            self._observe_secrets(live)
        if shutil.which("podman") is None:
            live.podman = False
            return live
        live.image = podman.image_labels(image.image_ref()) is not None
        for c in podman.containers(self.dep.name):
            labels = c.get("Labels") or {}
            live.containers[c["Names"][0]] = LiveContainer(
                labels.get(SPEC_LABEL), str(c.get("State", "unknown")), labels.get(REGION_LABEL))
        live.networks = {n["name"] for n in podman.networks(self.dep.name)}
        live.volumes = {v["Name"] for v in podman.volumes(self.dep.name)}
        live.firewall = firewall_pairs(self.dep.name)
        self._observe_health(live)
        if self.dep.data.enabled:
            from hadeploy.data import observe

            live.data = observe(self.topology(), timeout=1.0)
        return live

    def _observe_secrets(self, live: LabLive) -> None:
        state = self.state.path
        if dbsecrets.passwords_path(state).exists() and not dbsecrets.missing_roles(state):
            dbsecrets.load_passwords(state)  # refuses a file that cannot be used
            live.db_passwords = True
        live.db_ca = dbsecrets.ca_path(state).exists()
        live.backup_key = backup.has_repo_key(state)
        for region in self.topology().regions:
            for host in (h for h in region.hosts if h.kind in TLS_KINDS):
                names = dbsecrets.cert_names(dbsecrets.cert_path(state, host.name))
                if names is not None and dbsecrets.key_path(state, host.name).exists():
                    live.db_certs[host.name] = dbsecrets.names_digest(*names)

    def _observe_health(self, live: LabLive) -> None:
        """Hosts that run and should serve but do not answer healthy; the DNS answer."""
        from hadeploy.health import probe_many

        topo = self.topology()
        hosts = [h for r in topo.regions for h in r.hosts if not h.standby
                 and live.running(h.name)]
        urls = {h.name: host_url(h.kind, h.address, self.dep) for h in hosts}
        results = probe_many(list(urls.values()), 1.0)
        for host in hosts:
            if not results[urls[host.name]].ok:
                live.unhealthy.setdefault(host.region, []).append(host.name)
        if not any(live.running(c) for c in self.dns_servers(topo)):
            return
        provider = Rfc2136Provider(topo.dns.name_servers, topo.dns.zone, None, timeout=1.0)
        snap = provider.snapshot(topo.dns.record, topo.dns.writer_record, wait_all=True)
        best = snap.newest
        if best is None:
            live.dns_error = provider.no_majority(snap).message
            return
        live.dns_answer = list(best.answer or [])
        live.dns_stale = [s.name for s in snap.stale()]

    def check_drift(self, live: LabLive) -> Drift:
        """Ansible's check mode (``--check --diff``) over every running host of every region:
        each task that would change a host is drift (a hand-edited file, a stopped service,
        another app version). Nothing changes on the hosts and nothing is written in the
        state directory: the inventory and Ansible's artifacts live in a temporary
        directory. Standby hosts that are stopped are not compared (they are configured
        when they start)."""
        import tempfile

        start = time.monotonic()
        topo = self.topology()
        drift = Drift()
        running = [h for r in topo.regions for h in r.hosts if live.running(h.name)]
        if not running:
            drift.problems.append("no host runs: nothing to compare")
            return drift
        region_of = {h.name: h.region for h in running}
        with tempfile.TemporaryDirectory(prefix="hadeploy-drift-") as tmp:
            inventory = configure.write_inventory(topo, self.dep, Path(tmp),
                                                  connection_vars(self.state.path))
            result = configure.run_playbook(inventory, Path(tmp), PLAYBOOK, check=True,
                                            limit=",".join(sorted(region_of)))
        drift.checked = sorted(region_of)
        drift.problems = list(result.failures)
        for item in result.drift:
            if item.host in region_of:
                drift.items.setdefault(region_of[item.host], []).append(item)
        live.drift = drift.items
        drift.seconds = time.monotonic() - start
        return drift

    # -- diff -----------------------------------------------------------------------------

    def diff(self, desired: list[Desired], live: LabLive, *, converge: bool = False) -> Plan:
        plan = Plan("lab")
        if not live.podman:
            plan.notes.append("podman is not installed: every object would be created")
        topo = self.topology()
        hosts = {h.name: h for r in topo.regions for h in r.hosts}
        touched: set[str] = set()  # regions with a host created or (re)started: configure
        restarted_db: set[str] = set()  # regions whose database hosts start again
        for want in desired:
            for change in self._diff_one(want, live, topo, touched, converge, restarted_db):
                plan.changes.append(change)
                host = hosts.get(change.name)
                if host is not None and change.action != "stop" and change.region:
                    touched.add(change.region)
                    if host.kind is HostKind.DB and change.action in ("start", "recreate"):
                        restarted_db.add(change.region)
        wanted = {d.name for d in desired if d.kind == "container"}
        # a DNS server the deployment no longer has (the witness once the regions are odd
        # in number): out of the NS set and the quorum, so it goes
        servers = {naming.dns_container(self.dep.name, naming.WITNESS),
                   *(naming.dns_container(self.dep.name, r.name) for r in topo.regions)}
        gone = sorted(n for n in servers - wanted if n in live.containers)
        plan.changes += [Change("remove", "container", n, live.containers[n].region,
                                "a DNS server this deployment no longer has") for n in gone]
        plan.notes += [f"region '{r}' exists but is not in the desired state; left alone by "
                       "'up'" for r in unmanaged_regions(live.containers, wanted)]
        stray = sorted(n for n, c in live.containers.items()
                       if n not in wanted and not c.region and n not in gone)
        if stray:
            plan.notes.append(f"not in the desired state, left alone by 'up': {', '.join(stray)}")
        if live.dns_error:
            plan.notes.append(f"the DNS server did not answer: {live.dns_error}")
        return plan

    def _diff_one(self, want: Desired, live: LabLive, topo: Topology, touched: set[str],
                  converge: bool, restarted_db: set[str]) -> list[Change]:
        if want.kind == "container":
            return self._diff_container(want, live)
        if want.kind == "database":
            reason = self._settle_reason(want, live, topo, restarted_db)
            return [Change("settle", "database", want.name, want.name, reason)] if reason \
                else []
        if want.kind == "configuration":
            reason = self._configure_reason(want, live, touched, converge)
            return [Change("configure", want.kind, want.name, want.name, reason)] if reason \
                else []
        if want.kind == "record":
            names_region = live.dns_answer is not None and any(
                topo.region_of_address(a) for a in live.dns_answer)
            resync = [Change("resync", "dns", naming.dns_container(self.dep.name, name),
                             None if name == naming.WITNESS else name,
                             "behind the newest serial: given the newest records")
                      for name in live.dns_stale]
            return resync if names_region else [*resync, Change("point", "record", want.name,
                                                               detail=want.detail)]
        return self._diff_material(want, live)

    @staticmethod
    def _diff_material(want: Desired, live: LabLive) -> list[Change]:
        """Things that exist or not: the image, keys, secrets, certificates, networks,
        volumes, the firewall rules."""
        if want.kind == "certificate" and want.region is not None:
            have = live.db_certs.get(want.name)
            return [] if have == want.spec else [Change(
                "create" if have is None else "recreate", "certificate", want.name,
                want.region, "database server certificate")]
        if want.kind == "firewall":
            absent = [p for p in json.loads(want.spec) if tuple(p) not in live.firewall]
            return [Change("create", "firewall", want.name, detail=f"{len(absent)} nat rule(s)")
                    ] if absent else []
        missing = {"image": not live.image,
                   "key": not (live.ssh_key if want.name == "ssh" else live.tsig_key),
                   "secret": not (live.backup_key if want.name == "backup-key"
                                  else live.db_passwords),
                   "certificate": not live.db_ca,
                   "network": want.name not in live.networks,
                   "volume": want.name not in live.volumes}
        if want.kind not in missing:
            raise AssertionError(f"unknown desired kind {want.kind}")
        if not missing[want.kind]:
            return []
        action = "build" if want.kind == "image" else "create"
        detail = "debootstrap, about 100 s, once" if want.kind == "image" else want.detail
        return [Change(action, want.kind, want.name, want.region, detail)]

    @staticmethod
    def _diff_container(want: Desired, live: LabLive) -> list[Change]:
        have = live.containers.get(want.name)
        if have is None:
            return [Change("create", "container", want.name, want.region, want.detail)]
        if have.spec != want.spec:
            return [Change("recreate", "container", want.name, want.region,
                           "its specification changed")]
        if want.running and have.state != "running":
            return [Change("start", "container", want.name, want.region, have.state)]
        if not want.running and have.state == "running":
            return [Change("stop", "container", want.name, want.region, "standby")]
        return []

    def _settle_reason(self, want: Desired, live: LabLive, topo: Topology,
                       restarted_db: set[str]) -> str:
        """Why a region's database must be put back in its role (``want.spec``), if so."""
        from hadeploy.watch import unsettled

        region = want.name
        rejoin = " (a copy of what it wrote after the failover is kept first)" \
            if region in self.state.region_flags().rejoin else ""
        if region in unsettled(topo, live.data):
            return f"it is not {want.spec}: make it {want.spec}{rejoin}"
        if region in restarted_db and region in live.data and live.data[region].role != "down":
            return f"its hosts restart: keep it {want.spec}{rejoin}"
        if rejoin and region in live.data and live.data[region].role in ("down", "unknown"):
            # Back from a crash failover, but Patroni does not answer yet (hosts booting):
            # settling waits for it, so Ansible never finds the region still paused.
            return f"it is back from a crash failover: make it {want.spec}{rejoin}"
        if region not in restarted_db and self._patroni_stopped(topo.region(region), live):
            # Patroni stopped on every running member (by hand, a crash): started again, the
            # boot fence pauses the cluster; settled before Ansible, whose app checks read it.
            return f"Patroni does not run on its hosts: start it and make it {want.spec}"
        return ""

    @staticmethod
    def _patroni_stopped(region: RegionTopology, live: LabLive) -> bool:
        db = [h for h in region.hosts if h.kind is HostKind.DB and not h.standby]
        state = live.data.get(region.name)
        return bool(db) and state is not None and state.role == "down" and all(
            live.running(h.name) for h in db)

    @staticmethod
    def _configure_reason(want: Desired, live: LabLive, touched: set[str],
                          converge: bool) -> str:
        region = want.name
        if converge:
            return "--converge"
        if region in touched:
            return "hosts created or restarted"
        if live.converged.get(region) != want.spec:
            return "configuration changed"
        if live.unhealthy.get(region):
            return f"unhealthy: {', '.join(live.unhealthy[region])}"
        if live.drift.get(region):
            items = live.drift[region]
            return f"drift: {items[0]}" + (f" and {len(items) - 1} more" if len(items) > 1
                                           else "")
        return ""

    # -- apply ----------------------------------------------------------------------------

    def apply(self, plan: Plan, hooks: ApplyHooks) -> LabReport:
        """Apply the plan in dependency order. A failure part-way is audited and says what
        was already done: re-running 'up' converges, 'down' removes it."""
        start = time.monotonic()
        self.log = hooks.log
        self.state.save_deployment(self.dep)  # first: 'down' can clean up a failed 'up'
        topo = self.topology()
        self.state.save_json("topology.json", topo.to_dict())
        report = LabReport(self.dep.name, topo, list(plan.changes))
        try:
            self._apply_steps(plan, hooks, topo, report)
        except HadeployError as exc:
            done = report.created + report.recreated + report.started + report.stopped
            if done:
                exc.message += (f"\n(this 'up' had already done: {', '.join(done[:8])}"
                                + (f" and {len(done) - 8} more" if len(done) > 8 else "")
                                + "; re-running 'hadeploy up' converges, 'hadeploy down' "
                                "removes them)")
            self.state.audit("up", target="lab", result="failed", error=exc.message[:500],
                             done=done, seconds=round(time.monotonic() - start, 1))
            raise
        report.seconds = time.monotonic() - start
        self.state.audit("up", target="lab", result="done", changed=report.changed,
                         seconds=round(report.seconds, 1),
                         regions=[r.name for r in topo.regions],
                         changes=[str(c) for c in plan.changes])
        return report

    def _apply_steps(self, plan: Plan, hooks: ApplyHooks, topo: Topology,
                     report: LabReport) -> None:
        desired = {d.name: d for d in self.desired()}
        report.unmanaged_regions = unmanaged_regions(
            {n: LiveContainer(None, "", r) for n, r in container_regions(self.dep.name).items()},
            {d.name for d in desired.values() if d.kind == "container"})
        dns = self.dns_servers(topo)
        for change in plan.changes:
            if change.kind in ("image", "key", "secret", "certificate", "network",
                               "volume"):
                self._apply_base(change, topo, report)
        desired = {d.name: d for d in self.desired()}  # a new TSIG key changes the servers'
        self._start_dns([c for c in plan.of("create", "recreate", "start", kind="container")
                         if c.name in dns], topo, report, desired)
        self._write_prober_configs(topo)
        containers = [c for c in plan.of("create", "recreate", "start", kind="container")
                      if c.region is not None and c.name not in dns]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda c: self._apply_container(c, desired[c.name], report),
                          containers))
        if plan.of("create", kind="firewall"):
            report.created.append(f"{self._ensure_firewall()} firewall rule(s)")
        hosts = {h.name for r in topo.regions for h in r.hosts}
        booting = [c.name for c in containers if c.name in hosts]
        self._wait_booted(booting)
        states = container_states(self.dep.name)
        self._collect_host_keys([h for r in topo.regions for h in r.hosts
                                 if states.get(h.name) == "running"], refresh=set(booting))
        self._settle(plan.of("settle"), topo, report)
        resynced = self._ensure_writer(topo)  # before Ansible: the lease agents read it
        self._configure(plan.of("configure"), topo, report, hooks)
        self._settle_configured(plan.of("configure"), topo, report)
        standby = [h for r in topo.regions for h in r.hosts if h.standby]
        report.stopped = [f"container {n}" for n in self.set_running(standby, False)]
        for name in report.stopped:
            self.log(f"stopped standby {name}")
        report.dns_answer, report.dns_changed = self._ensure_record(topo)
        report.dns_changed = report.dns_changed or resynced
        for change in plan.of("remove", kind="container"):  # after the NS set left it out
            podman.run(["rm", "-f", "-t", "0", change.name])
            report.removed.append(f"container {change.name}")
            self.log(f"removed container {change.name} ({change.detail})")

    def _apply_base(self, change: Change, topo: Topology, report: LabReport) -> None:
        """The image, keys, secrets, certificates, networks and volumes, in plan order (the
        DNS servers: :meth:`_start_dns`)."""
        kind, name = change.kind, change.name
        if kind == "image":
            image.ensure_image(self.log)
        elif kind == "key" and name == "ssh":
            self._create_ssh_key()
        elif kind == "key":
            TsigKey.generate(knot.key_name(self.dep)).save(self.tsig_path)
            self._desired = None  # the DNS server's spec depends on the key
            self.desired()
        elif kind == "secret" and name == "backup-key":
            dbsecrets.ensure_ca(self.state.path, self.dep.name)  # the key is per CA
            backup.ensure_repo_key(self.state.path)
        elif kind == "secret":
            dbsecrets.ensure_passwords(self.state.path)
        elif kind == "certificate" and change.region is None:
            dbsecrets.ensure_ca(self.state.path, self.dep.name)
        elif kind == "certificate":
            assert change.region is not None  # a host's certificate
            region = topo.region(change.region)
            host = next(h for h in region.hosts if h.name == name)
            dbsecrets.ensure_server_cert(self.state.path, name, *self._cert_names(host, region))
        elif kind == "network":
            subnet = change.detail
            self._create_network(name, subnet)
        elif kind == "volume":
            backups = {naming.backup_volume(self.dep.name, r.name) for r in topo.regions}
            label = ["--label", f"{podman.BACKUP_LABEL}=1"] if name in backups else []
            podman.run(["volume", "create", *self._labels(change.region), *label, name])
        report.created.append(f"{kind} {name}")

    def _start_dns(self, changes: list[Change], topo: Topology, report: LabReport,
                   desired: dict[str, Desired]) -> None:
        """Create or start DNS servers, each with the newest zone any server has, and
        wait until they answer."""
        if not changes:
            return
        servers = self.dns_servers(topo)
        newest = knot.newest_zone(self.state.path, topo.dns)
        for change in changes:
            self._write_dns_files(servers[change.name], topo, newest)
        with ThreadPoolExecutor(max_workers=4) as pool:  # each asks its peers first (≤ 1 s)
            list(pool.map(lambda c: self._apply_container(c, desired[c.name], report),
                          changes))
        self.dns_provider(topo).wait_ready(servers=[servers[c.name] for c in changes])

    def start_containers(self, names: list[str]) -> None:
        """``podman start``, except that a DNS server is first given the newest zone (a
        server back from a crash never answers an older record than the others)."""
        topo = self.topology()
        servers = self.dns_servers(topo)
        dns = [n for n in names if n in servers]
        if dns:
            newest = knot.newest_zone(self.state.path, topo.dns)
            for name in dns:
                self._write_dns_files(servers[name], topo, newest)
        podman.run(["start", *names])

    def _apply_container(self, change: Change, want: Desired, report: LabReport) -> None:
        name = change.name
        if change.action == "start":
            podman.run(["start", name])
            report.started.append(f"container {name}")
            return
        if change.action == "recreate":
            podman.run(["rm", "-f", "-t", "0", name])
            report.recreated.append(f"container {name}")
        else:
            report.created.append(f"container {name}")
        podman.run(["run", "-d", "--name", name, "--label", f"{SPEC_LABEL}={want.spec}",
                    *self._args[name]])
        self.log(f"{change.action}d container {name}")

    def _write_dns_files(self, server: NameServer, topo: Topology,
                         newest: knot.ZoneContent | None) -> None:
        """The server's configuration, and its zone file unless it already holds the
        newest zone (``newest``; None: a new deployment, serial 1 without records)."""
        key = self._load_tsig()
        assert key is not None  # created earlier in the same plan, or already there
        here = knot.server_dir(self.state.path, server.name)
        write_if_changed(here / "knot.conf",
                         knot.knot_config(self.dep, key, self._cli_address(server, topo)))
        write_if_changed(here / "sync.json", knot.sync_config(topo.dns, server))
        write_if_changed(here / "tsig.key", knot.kdig_key(key))
        path = knot.zone_path(self.state.path, server.name, self.dep.dns.zone)
        content = newest or knot.ZoneContent(1)
        if knot.read_zone(path, topo.dns) != content:
            write_if_changed(path, knot.zone_text(topo.dns, content, self.dep.dns.ttl),
                             mode=0o644)

    def _write_prober_configs(self, topo: Topology) -> None:
        for region in topo.regions:
            if region.prober:
                write_if_changed(self._prober_path(region.name),
                                 self._prober_conf(region, topo), mode=0o644)

    def _create_ssh_key(self) -> None:
        key = ssh_key_path(self.state.path)
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"hadeploy-{self.dep.name}", "-f", str(key)], check=True,
                       capture_output=True)

    def _create_network(self, name: str, subnet: str) -> None:
        # A network of another deployment (or a leftover) on the same subnet would make
        # podman fail obscurely; say which one it is.
        for other in podman.run_json(["network", "ls", "--format", "json"]):
            for sub in other.get("subnets") or []:
                if ipaddress.IPv4Network(sub["subnet"]).overlaps(ipaddress.IPv4Network(subnet)):
                    raise HadeployError(
                        f"subnet {subnet} for network {name} overlaps podman network "
                        f"'{other['name']}' ({sub['subnet']})",
                        hint="choose other lab subnets in hadeploy.yaml, or remove that "
                        "network ('hadeploy down' if it is a hadeploy deployment)",
                        code=ExitCode.BAD_INPUT)
        podman.run(["network", "create", *self._labels(), "--subnet", subnet,
                    "--gateway", naming.gateway(subnet), name])

    def _ensure_firewall(self) -> int:
        ipt = _iptables()
        present = firewall_pairs(self.dep.name)
        added = 0
        for src, dst in self._fw_pairs():
            if (src, dst) not in present:
                rule = self._fw_rule(src, dst)
                subprocess.run([ipt, "-t", "nat", "-I", rule[0], "1", *rule[1:]],
                               check=True, capture_output=True)
                added += 1
        return added

    def _settle_configured(self, configured: list[Change], topo: Topology,
                           report: LabReport) -> None:
        """A configuration run can leave a region's database out of its role — e.g. a new
        database tier whose standby cluster came up paused under load — which the next
        'plan' would report: settle those regions now, so one 'up' converges."""
        if not configured or topo.data_primary_region is None:
            return
        from hadeploy.data import observe
        from hadeploy.watch import unsettled

        regions = {c.name for c in configured}
        todo = [r for r in unsettled(topo, observe(topo)) if r in regions]
        if todo:
            self.log(f"database of {', '.join(todo)} out of its role after configuration: "
                     "settling")
            self._settle([Change("settle", "database", r, r, "out of its role after "
                                 "configuration") for r in todo], topo, report)

    def _settle(self, changes: list[Change], topo: Topology, report: LabReport) -> None:
        """Put regions' databases back in their roles (a boot fence paused them, or a
        deposed primary came back writable): before Ansible, whose app checks read them."""
        primary = topo.data_primary_region
        if not changes or primary is None:
            return
        from hadeploy.targets.lab.ops import LabRegionOps

        data = LabRegionOps(self, topo).data
        assert data is not None  # a database change exists only with a database tier
        for change in changes:
            region = topo.region(change.name)
            if change.detail.startswith("Patroni does not run"):
                for host in (h for h in region.hosts if h.kind is HostKind.DB):
                    podman.exec_(host.name, "systemctl", "start", "--no-block", "patroni")
            done = settle_region(data, self.state, region, primary, wait=60.0)
            if done is None and region.name in self.state.region_flags().rejoin:
                raise HadeployError(
                    f"{region.name}'s database hosts did not answer within 60 s, so its "
                    f"cluster could not rejoin as a standby of {primary.name}",
                    hint="see 'hadeploy status'; once Patroni answers on those hosts, run "
                    "'hadeploy up' again (the region stays marked for rejoin)",
                    code=ExitCode.FAILED)
            report.data.append(f"database of {region.name}: {done or 'already in its role'}")
            self.log(report.data[-1])

    def _configure(self, changes: list[Change], topo: Topology, report: LabReport,
                   hooks: ApplyHooks) -> None:
        if not changes:
            return
        regions = [c.name for c in changes]
        report.configure_reason = "; ".join(f"{c.name}: {c.detail}" for c in changes)
        connection = connection_vars(self.state.path)
        inventory = configure.write_inventory(topo, self.dep, self.state.path, connection)
        hosts = sum(len(topo.region(r).hosts) for r in regions)
        self.log(f"configuring {hosts} hosts of {', '.join(regions)} "
                 f"({report.configure_reason})")
        limit = None if len(regions) == len(topo.regions) else ",".join(
            region_group(r) for r in regions)
        # Standby hosts are configured like the others, then stopped again.
        report.started += [f"container {n}" for n in self.set_running(
            [h for r in regions for h in topo.region(r).hosts if h.standby], True)]
        result = configure.run_playbook(inventory, self.state.path, PLAYBOOK, limit=limit,
                                        on_task=hooks.on_task)
        report.configured = True
        report.ansible = result.to_dict()
        if result.rc != 0 or result.failures:
            raise HadeployError(
                "configuration failed:\n  " + "\n  ".join(result.failures or [f"rc={result.rc}"]),
                hint=f"fix the cause and re-run 'hadeploy up' (it converges); Ansible's "
                f"artifacts are in {self.state.path / 'ansible'}", code=ExitCode.FAILED)
        wanted = {d.name: d.spec for d in self.desired() if d.kind == "configuration"}
        self.state.save_converged({r: wanted[r] for r in regions})

    def _ensure_writer(self, topo: Topology) -> bool:
        """The writer record names the region the app record names (a new deployment: the
        primary), unless a failover is under way: it cleared the record on purpose, and
        re-running it finishes the move. ``up`` never moves traffic, nor the right to
        write. Returns whether a DNS server had to be brought up to date."""
        provider = self.dns_provider(topo)
        snap = provider.snapshot(topo.dns.record, topo.dns.writer_record, wait_all=True)
        resynced = self._ensure_servers(provider, topo, snap)
        if self.state.read_journal() is not None:
            return resynced
        best = snap.newest  # what every answering server serves now (resync copied it)
        if best is None:
            raise provider.no_majority(snap)
        active = topo.active_region(best.answer or []) or self.dep.primary.name
        if best.writer != active:
            self.log(f"writer record: {active} takes writes")
            provider.set_writer(topo.dns.writer_record, active)
        return resynced

    def _ensure_servers(self, provider: Rfc2136Provider, topo: Topology,
                        snap: Snapshot) -> bool:
        """Every server answers the newest records under the newest serial (a server that
        was down or cut off during a change is brought up to date), and the zone's NS set
        lists every server (regions added or removed). ``snap``: every server, just asked."""
        import dns.rdatatype

        lines = provider.resync(topo.dns.record, topo.dns.writer_record, snap=snap)
        for line in lines:
            self.log(line)
            self.state.audit("dns-resync", target="lab", detail=line)
        best = snap.newest
        if best is None:
            return bool(lines)  # the caller says why
        want = sorted(knot.ns_name(s, topo.dns.zone) for s in topo.dns.name_servers)
        server = next(s for s in topo.dns.name_servers if s.name == best.name)
        have = sorted(str(r.target) for rrset in
                      provider.query(server, topo.dns.zone + ".", dns.rdatatype.NS)
                      for r in rrset)
        if have != want:
            self.log(f"zone NS set: {', '.join(want)}")
            provider.write_rrsets(
                [(f"{topo.dns.zone}.", 300, "NS", want)]
                + [(knot.ns_name(s, topo.dns.zone), 300, "A", [s.address])
                   for s in topo.dns.name_servers])
        return bool(lines)

    def _ensure_record(self, topo: Topology) -> tuple[list[str], bool]:
        """Point the app record at the primary only if it points at no known region.

        ``up`` never moves traffic: after a failover the record names another region, and
        a later ``up`` must leave it there (moving traffic is ``hadeploy failover``'s job).
        """
        provider = self.dns_provider(topo)
        answer = provider.read(topo.dns.record)
        if any(topo.region_of_address(a) for a in answer):
            return answer, False
        primary = topo.region(self.dep.primary.name)
        self.log(f"pointing {topo.dns.fqdn} at {primary.name} ({primary.vip})")
        provider.replace(topo.dns.record, topo.dns.ttl, [primary.vip])
        provider.wait_visible(topo.dns.record, [primary.vip])
        return [primary.vip], True

    # -- hosts ----------------------------------------------------------------------------

    def set_running(self, hosts: list[Host], running: bool) -> list[str]:
        """Start (and wait for boot) or stop hosts; return the names that changed."""
        states = container_states(self.dep.name)
        todo = [h.name for h in hosts if (states.get(h.name) == "running") != running]
        if not todo:
            return []
        if running:
            podman.run(["start", *todo], timeout=120)
            self._wait_booted(todo)
            self._collect_host_keys([h for h in hosts if h.name in todo], refresh=set(todo))
        else:
            podman.run(["stop", "-t", "5", *todo], timeout=120)
        return todo

    def _collect_host_keys(self, hosts: list[Host], refresh: set[str]) -> None:
        """Record each host's SSH host key (generated at its first boot) in known_hosts."""
        path = known_hosts_path(self.state.path)
        known: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    known[line.split()[0]] = line
        todo = [h for h in hosts if h.name in refresh or h.address not in known]
        if not todo:
            return

        def fetch(host: Host) -> tuple[str, str]:
            pub = podman.exec_(host.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout
            kind, blob = pub.split()[:2]
            return host.address, f"{host.address} {kind} {blob}"
        with ThreadPoolExecutor(max_workers=8) as pool:
            known.update(dict(pool.map(fetch, todo)))
        write_if_changed(path, "".join(f"{known[a]}\n" for a in sorted(known)), mode=0o644)

    def _wait_booted(self, names: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until systemd inside each new container finished booting."""
        def wait(name: str) -> None:
            deadline = time.monotonic() + timeout
            state = ""
            while time.monotonic() < deadline:
                proc = podman.exec_(name, "systemctl", "is-system-running", "--wait",
                                    check=False, timeout=timeout)
                state = (proc.stdout or "").strip() or (proc.stderr or "").strip()
                if state in {"running", "degraded"}:
                    return
                time.sleep(0.2)  # systemd not up yet ("Failed to connect to bus")
            raise HadeployError(f"container {name} did not finish booting within "
                                f"{timeout:.0f} s (systemd says '{state}')",
                                hint=f"inspect it with 'podman logs {name}'",
                                code=ExitCode.FAILED)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(wait, list(names)))

    # -- destroy and runtime ------------------------------------------------------------

    def destroy(self, log: Log, *, delete_backups: bool = False) -> list[str]:
        return destroy(self.dep.name, log, keep_backups=not delete_backups)

    def _backup_reader(self, topo: Topology) -> Callable[[], dict[str, dict[str, Any]]] | None:
        if not self.dep.data.enabled or not self.dep.data.backup.enabled:
            return None
        from hadeploy.targets.lab.ops import podman_run

        def read() -> dict[str, Any]:
            hosts = backup.BackupHosts(topo, podman_run)
            return {**hosts.each("last", timeout=10),
                    FILES_KEY: hosts.each("last", timeout=10, files=True)}
        return read

    def runtime(self) -> Runtime:
        from hadeploy.targets.lab.ops import LabRegionOps, podman_run

        def status(timeout: float) -> StatusDoc:
            topo = self.topology()
            data = LabRegionOps(self, topo).data if self.dep.data.enabled else None
            return collect(topo, self.dep, self.state.path, timeout=timeout,
                           dns=self.dns_provider(topo),
                           container_states=container_states(self.dep.name),
                           data=DataReaders(slots=data.slots, integrity=data.integrity,
                                            archiving=data.archiving,
                                            backups=self._backup_reader(topo))
                           if data is not None else None)

        return Runtime(topology=self.topology, dns=self.dns_provider,
                       region_ops=lambda topo: LabRegionOps(self, topo), status=status,
                       host_run=podman_run, start=self.start_containers)


# --- objects by label (work without a state directory) ------------------------------------

def container_states(deployment: str) -> dict[str, str]:
    return {c["Names"][0]: c.get("State", "unknown") for c in podman.containers(deployment)}


def container_regions(deployment: str) -> dict[str, str | None]:
    return {c["Names"][0]: (c.get("Labels") or {}).get(REGION_LABEL)
            for c in podman.containers(deployment)}


def unmanaged_regions(containers: dict[str, LiveContainer], wanted: set[str]) -> list[str]:
    """Regions that have containers but are not in the desired state ('up' leaves them)."""
    return sorted({c.region for n, c in containers.items() if n not in wanted and c.region})


def _iptables() -> str:
    exe = shutil.which("iptables")
    if exe is None:
        raise HadeployError("iptables is not installed", hint="run scripts/setup.sh or "
                            "'apt-get install -y iptables'", code=ExitCode.ENVIRONMENT)
    return exe


def marked_rules(mark: str, table: str = "filter") -> list[list[str]]:
    """The rules of ``table`` carrying the comment ``mark``, as ``iptables -S`` words
    (``-A CHAIN ...``)."""
    exe = shutil.which("iptables")
    if exe is None:
        return []
    listing = subprocess.run([exe, "-t", table, "-S"], capture_output=True, text=True,
                             check=False, timeout=30).stdout
    rules = []
    for line in listing.splitlines():
        words = [w.strip('"') for w in line.split()]
        if words[:1] == ["-A"] and mark in words:
            rules.append(words)
    return rules


def remove_marked_rules(mark: str, table: str = "filter") -> int:
    """Delete every rule of ``table`` carrying the comment ``mark``; how many."""
    exe = shutil.which("iptables")
    rules = marked_rules(mark, table)
    for words in rules:
        subprocess.run([str(exe), "-t", table, "-D", *words[1:]], capture_output=True,
                       check=False, timeout=30)
    return len(rules)


def _nat_rules(deployment: str) -> list[list[str]]:
    """This deployment's nat rules as ``iptables -S`` words (``-A CHAIN ...``)."""
    return marked_rules(f"hadeploy:{deployment}", "nat")


def firewall_pairs(deployment: str) -> set[tuple[str, str]]:
    """(source, destination) subnets of the deployment's RETURN rules."""
    pairs = set()
    for words in _nat_rules(deployment):
        if "-s" in words and "-d" in words:
            src, dst = words[words.index("-s") + 1], words[words.index("-d") + 1]
            pairs.add((src, dst))
    return pairs


def remove_firewall_rules(deployment: str) -> int:
    """Delete every nat rule carrying this deployment's comment; return how many."""
    return remove_marked_rules(f"hadeploy:{deployment}", "nat")


def destroy(deployment: str, log: Log = _quiet, *, keep_backups: bool = False) -> list[str]:
    """Remove every container, network, volume and firewall rule of ``deployment``; with
    ``keep_backups``, not the backup repositories' volumes."""
    removed: list[str] = []
    names = [c["Names"][0] for c in podman.containers(deployment)]
    if names:
        podman.run(["rm", "-f", "-t", "0", *names], timeout=120)
        removed += [f"container {n}" for n in names]
    for net in podman.networks(deployment):
        podman.run(["network", "rm", "-f", net["name"]])
        removed.append(f"network {net['name']}")
    for vol in podman.volumes(deployment):
        if keep_backups and (vol.get("Labels") or {}).get(podman.BACKUP_LABEL):
            log(f"kept backup repository volume {vol['Name']} ('down --delete-backups' "
                "removes it)")
            continue
        podman.run(["volume", "rm", "-f", vol["Name"]])
        removed.append(f"volume {vol['Name']}")
    rules = remove_firewall_rules(deployment)
    if rules:
        removed.append(f"{rules} firewall rule(s)")
    from hadeploy.targets.lab.faults import remove_partition_rules

    cut = remove_partition_rules(deployment)  # a partition drill that could not heal
    if cut:
        removed.append(f"{cut} partition drill rule(s)")
    for item in removed:
        log(f"removed {item}")
    return removed


def deployments_present() -> set[str]:
    """Names of every hadeploy deployment that has objects on this machine."""
    found = {c["Labels"].get(podman.LABEL) for c in podman.containers()}
    found |= {n.get("labels", {}).get(podman.LABEL) for n in podman.networks()}
    found |= {v.get("Labels", {}).get(podman.LABEL) for v in podman.volumes()}
    return {f for f in found if f}

