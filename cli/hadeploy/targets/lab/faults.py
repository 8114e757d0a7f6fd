"""Faults a drill injects into a lab deployment, and how the lab brings the victims back:
a host is a container, so a crash is ``podman kill`` (SIGKILL to systemd and everything
under it, no shutdown) and a reboot is ``podman start`` (systemd starts the enabled
services: the app, haproxy and keepalived, Patroni)."""

from __future__ import annotations

import time
from collections.abc import Callable

from hadeploy.errors import ExitCode, HadeployError
from hadeploy.status import RegionStatus, StatusDoc
from hadeploy.targets.lab import podman
from hadeploy.targets.lab.naming import dns_container
from hadeploy.targets.lab.target import REGION_LABEL

# The app role's "restart pending" marker (roles/app/vars/main.yml, __app_restart_marker).
RESTART_MARKER = "/var/lib/hadeploy/app-restart-pending"


class LabFaults:
    def __init__(self, deployment: str, status: Callable[[], StatusDoc]) -> None:
        self.deployment, self.status = deployment, status

    def choose(self, scenario: str, doc: StatusDoc) -> tuple[list[str], str, str | None]:
        """The containers a scenario hits on the deployment as ``doc`` shows it: (victims,
        what is done, the region hit). For 'operator' the victim is the region to move to."""
        if scenario == "dns":
            name = dns_container(self.deployment)
            return [name], f"restarted the DNS server {name} (killed, then started)", None
        region = next((r for r in doc.regions if r.active), None)
        if region is None:
            raise HadeployError("no region is active (the DNS answer names none): there is "
                                "nothing serving to drill against",
                                hint="'hadeploy status' shows why; 'hadeploy up' repairs",
                                code=ExitCode.REFUSED)
        choosers = {"app-host": self._app_host, "lb": self._lb, "db-host": self._db_host,
                    "region": self._region, "upgrade": self._upgrade,
                    "operator": self._operator}
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
                       "load balancers, app, database and backup hosts, its prober)")

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

    def inject(self, scenario: str, victims: list[str], down: float = 2.0) -> None:
        podman.run(["kill", *victims])
        if scenario == "dns":  # a restart: the server comes back by itself
            time.sleep(down)
            podman.run(["start", *victims])

    def heal(self, victims: list[str], timeout: float = 120.0) -> str:
        """Start the victims again and wait until status sees them healthy."""
        podman.run(["start", *victims])
        return self.wait_healthy(victims, "started", timeout)

    def wait_healthy(self, victims: list[str], what: str, timeout: float = 120.0) -> str:
        """Wait until status sees every victim healthy (the DNS server: answering)."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.status()
            sick = [h.name for r in doc.regions for h in r.hosts
                    if h.name in victims and not h.healthy]
            if dns_container(self.deployment) in victims and doc.dns.error:
                sick.append(f"DNS ({doc.dns.error})")
            if not sick:
                return f"{what} {', '.join(victims)}: healthy again"
            if time.monotonic() > deadline:
                raise HadeployError(f"{', '.join(sick)} not healthy {timeout:.0f} s after "
                                    f"being {what}", hint="'hadeploy up' repairs the "
                                    "deployment", code=ExitCode.FAILED)
            time.sleep(1.0)
