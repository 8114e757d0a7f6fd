"""Faults a drill injects into a lab deployment, and how the lab brings the victims back:
a host is a container, so a crash is ``podman kill`` (SIGKILL to systemd and everything
under it, no shutdown) and a reboot is ``podman start`` (systemd starts the enabled
services: the app, haproxy and keepalived, Patroni). A partition is firewall rules on
this machine (iptables, filter table, marked ``hadeploy:<deployment>:partition``) that
drop every packet between the region's subnet and anything else — the other regions, the
DNS server's network, this machine — while traffic inside the region still flows."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from hadeploy.errors import ExitCode, HadeployError
from hadeploy.status import RegionStatus, StatusDoc
from hadeploy.targets.lab import podman
from hadeploy.targets.lab.naming import WITNESS, dns_container
from hadeploy.targets.lab.target import REGION_LABEL, _iptables, remove_marked_rules

# The app role's "restart pending" marker (roles/app/vars/main.yml, __app_restart_marker).
RESTART_MARKER = "/var/lib/hadeploy/app-restart-pending"


class LabFaults:
    def __init__(self, deployment: str, status: Callable[[], StatusDoc],
                 subnets: Callable[[], dict[str, str]] | None = None,
                 start: Callable[[list[str]], None] | None = None) -> None:
        self.deployment, self.status = deployment, status
        self.subnets = subnets or dict  # region -> subnet (for a partition)
        # starts containers; the lab's gives a DNS server the newest zone first
        self.start = start or (lambda names: podman.run(["start", *names]))

    def choose(self, scenario: str, doc: StatusDoc) -> tuple[list[str], str, str | None]:
        """The containers a scenario hits on the deployment as ``doc`` shows it: (victims,
        what is done, the region hit). For 'operator' the victim is the region to move to."""
        if scenario == "dns":
            # the first server: the one a client's stub resolver asks first
            first = doc.dns.servers[0].name if doc.dns.servers else WITNESS
            name = dns_container(self.deployment, first)
            return [name], (f"restarted the DNS server {name} (killed, then started; "
                            "clients ask it first)"), None
        region = next((r for r in doc.regions if r.active), None)
        if region is None:
            raise HadeployError("no region is active (the DNS answer names none): there is "
                                "nothing serving to drill against",
                                hint="'hadeploy status' shows why; 'hadeploy up' repairs",
                                code=ExitCode.REFUSED)
        choosers = {"app-host": self._app_host, "lb": self._lb, "db-host": self._db_host,
                    "region": self._region, "upgrade": self._upgrade,
                    "operator": self._operator, "partition": self._partition}
        if scenario not in choosers:
            raise HadeployError(f"unknown scenario {scenario!r}", code=ExitCode.BAD_INPUT)
        victims, what = choosers[scenario](region, doc)
        return victims, what, region.name

    def _app_host(self, region: RegionStatus, _doc: StatusDoc) -> tuple[list[str], str]:
        apps = [h.name for h in region.hosts if h.kind == "app" and h.healthy]
        if not apps:
            raise HadeployError(f"{region.name} has no healthy app host",
                                code=ExitCode.REFUSED)
        alone = len([h for h in region.hosts if h.kind == "app"]) == 1
        return [apps[0]], f"killed app host {apps[0]}" + (
            " (the region's only app host: it cannot serve until the host is back, unless "
            "watch fails it over)" if alone else "")

    def _lb(self, region: RegionStatus, _doc: StatusDoc) -> tuple[list[str], str]:
        if not region.lb_master:
            raise HadeployError(f"no load balancer of {region.name} says it holds the VIP",
                                hint="'hadeploy status' shows the region's load balancers",
                                code=ExitCode.REFUSED)
        return [region.lb_master], f"killed {region.lb_master}, the load balancer holding the VIP"

    def _db_host(self, region: RegionStatus, _doc: StatusDoc) -> tuple[list[str], str]:
        if region.data is None:
            raise HadeployError("this deployment has no database tier",
                                hint="drill app-host, lb or dns", code=ExitCode.BAD_INPUT)
        if region.data.leader is None:
            raise HadeployError(f"{region.name}'s database has no leader",
                                code=ExitCode.REFUSED)
        return [region.data.leader], f"killed {region.data.leader}, the database leader"

    def _region(self, region: RegionStatus, doc: StatusDoc) -> tuple[list[str], str]:
        if not any(r.healthy for r in doc.regions if not r.active):
            raise HadeployError("no other region is healthy: killing the active one would be "
                                "an outage, not a drill", hint="'hadeploy status' shows the "
                                "regions", code=ExitCode.REFUSED)
        every = self.region_containers(region.name, running=True)
        return every, (f"killed every host of {region.name} ({len(every)} containers: its "
                       "load balancers, app, database and backup hosts, its prober and its "
                       "DNS server)")

    def _partition(self, region: RegionStatus, doc: StatusDoc) -> tuple[list[str], str]:
        self._region(region, doc)  # the same precondition: another region can take over
        subnet = self.subnets().get(region.name)
        if subnet is None:
            raise HadeployError(f"no subnet is known for {region.name}",
                                code=ExitCode.FAILED)
        every = self.region_containers(region.name, running=True)
        return every, (f"cut {region.name} ({subnet}) off from the other regions, the DNS "
                       "server and this machine (firewall rules); its "
                       f"{len(every)} containers keep running")

    def _upgrade(self, _region: RegionStatus, doc: StatusDoc) -> tuple[list[str], str]:
        apps = [h.name for r in doc.regions for h in r.hosts if h.kind == "app" and h.healthy]
        alone = [r.name for r in doc.regions if r.active
                 and len([h for h in r.hosts if h.kind == "app"]) == 1]
        return apps, (f"restarted {len(apps)} app host(s) through the rolling path an "
                      "upgrade takes" + (f" ({alone[0]} has one app host: it cannot serve "
                                         "while that host restarts)" if alone else ""))

    def _operator(self, region: RegionStatus, doc: StatusDoc) -> tuple[list[str], str]:
        others = [r.name for r in doc.regions if r.healthy and not r.active]
        if not others:
            raise HadeployError("no other healthy region to fail over to",
                                hint="'hadeploy status' shows the regions",
                                code=ExitCode.REFUSED)
        # back to the primary region when traffic is elsewhere, else the first other one
        to = next((r.name for r in doc.regions if r.role == "primary" and r.name in others),
                  others[0])
        return [to], (f"failover {region.name} -> {to} killed between fencing and the DNS "
                      "change, then run again")

    def region_containers(self, region: str, *, running: bool = False) -> list[str]:
        """Every container of ``region`` (a region's hosts and its prober)."""
        return sorted(c["Names"][0] for c in podman.containers(self.deployment)
                      if (c.get("Labels") or {}).get(REGION_LABEL) == region
                      and (not running or c.get("State") == "running"))

    def mark_restart(self, hosts: list[str]) -> None:
        """Leave a restart pending on each app host, as a changed app version does (the app
        role's marker): the next configuration run restarts them through its rolling play."""
        for host in hosts:
            podman.exec_(host, "sh", "-c", f"mkdir -p {RESTART_MARKER.rsplit('/', 1)[0]} && "
                         f"touch {RESTART_MARKER}")

    def partition(self, region: str) -> None:
        """Cut ``region`` off (see the module's docstring); :meth:`unpartition` undoes it."""
        subnet = self.subnets()[region]
        for chain, *match in reversed(partition_rules(subnet)):
            subprocess.run([_iptables(), "-I", chain, "1", *match, "-m", "comment",
                            "--comment", self.partition_mark, "-j",
                            "ACCEPT" if "224.0.0.0/4" in match else "DROP"],
                           check=True, capture_output=True, timeout=30)

    @property
    def partition_mark(self) -> str:
        return f"hadeploy:{self.deployment}:partition"

    def unpartition(self) -> int:
        return remove_partition_rules(self.deployment)

    def inject(self, scenario: str, victims: list[str], down: float = 2.0) -> None:
        podman.run(["kill", *victims])
        if scenario == "dns":  # a restart: the server comes back by itself
            time.sleep(down)
            self.start(victims)

    def heal(self, victims: list[str], timeout: float = 120.0) -> str:
        """Start the victims again and wait until status sees them healthy."""
        self.start(victims)
        return self.wait_healthy(victims, "started", timeout)

    def wait_healthy(self, victims: list[str], what: str, timeout: float = 120.0) -> str:
        """Wait until status sees every victim healthy (the DNS server: answering)."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.status()
            sick = [h.name for r in doc.regions for h in r.hosts
                    if h.name in victims and not h.healthy]
            if doc.dns.error and any(dns_container(self.deployment, s.name) in victims
                                     for s in doc.dns.servers):
                sick.append(f"DNS ({doc.dns.error})")
            sick += [f"DNS server {s.name} ({s.error or 'behind the others'})"
                     for s in doc.dns.servers
                     if dns_container(self.deployment, s.name) in victims and not s.agrees]
            if not sick:
                return f"{what} {', '.join(victims)}: healthy again"
            if time.monotonic() > deadline:
                raise HadeployError(f"{', '.join(sick)} not healthy {timeout:.0f} s after "
                                    f"being {what}", hint="'hadeploy up' repairs the "
                                    "deployment", code=ExitCode.FAILED)
            time.sleep(1.0)


def partition_rules(subnet: str) -> list[list[str]]:
    """(chain, match...) of the rules that cut ``subnet`` off. Traffic inside it stays:
    the bridge's frames pass the FORWARD chain too (br_netfilter), so only packets crossing
    the region's edge are dropped; its load balancers' VRRP multicast is let through."""
    return [["FORWARD", "-s", subnet, "-d", "224.0.0.0/4"],
            ["FORWARD", "-s", subnet, "!", "-d", subnet],
            ["FORWARD", "!", "-s", subnet, "-d", subnet],
            ["INPUT", "-s", subnet],
            ["OUTPUT", "-d", subnet]]


def remove_partition_rules(deployment: str) -> int:
    """Delete every filter rule of ``deployment``'s partition drills; how many."""
    return remove_marked_rules(f"hadeploy:{deployment}:partition")


# A client inside a region (run on one of its hosts): a write through the region's VIP
# every GAP seconds for DURATION seconds, each printed as "<POSIX time> <status> <item>"
# (status 0: no HTTP answer).
_INSIDE_WRITER = """
import http.client, json, sys, time
vip, tag, gap = sys.argv[1], sys.argv[2], float(sys.argv[3])
until = time.time() + float(sys.argv[4])
n = 0
while time.time() < until:
    n += 1
    item = f"{tag}-{n}"
    try:
        c = http.client.HTTPConnection(vip, 80, timeout=1)
        c.request("POST", "/items", json.dumps({"id": item}), {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        status = r.status
        c.close()
    except Exception:
        status = 0
    print(f"{time.time():.3f} {status} {item}", flush=True)
    time.sleep(gap)
"""


class InsideWriter:
    """Writes from inside a region (a client in the same network as its VIP), to see
    whether and until when the region takes writes while it is cut off."""

    def __init__(self, host: str, vip: str, tag: str, duration: float,
                 gap: float = 0.1) -> None:
        self.samples: list[tuple[float, int]] = []
        self._proc = subprocess.Popen(
            [podman.require_podman(), "exec", host, "python3", "-u", "-c", _INSIDE_WRITER,
             vip, tag, str(gap), str(duration)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=podman.podman_env())
        self._duration = duration

    def finish(self) -> list[tuple[float, int]]:
        """Wait until it has written for its whole duration; its (time, status) samples."""
        try:
            out, _ = self._proc.communicate(timeout=self._duration + 30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate()
        for line in (out or "").splitlines():
            words = line.split()
            try:
                self.samples.append((float(words[0]), int(words[1])))
            except (IndexError, ValueError):
                continue
        return self.samples
