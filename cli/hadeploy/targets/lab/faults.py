"""Faults a drill injects into a lab deployment, and how the lab brings the victims back:
a host is a container, so a crash is ``podman kill`` (SIGKILL to systemd and everything
under it, no shutdown) and a reboot is ``podman start`` (systemd starts the enabled
services: the app, haproxy and keepalived, Patroni)."""

from __future__ import annotations

import time
from collections.abc import Callable

from hadeploy.errors import ExitCode, HadeployError
from hadeploy.status import StatusDoc
from hadeploy.targets.lab import podman
from hadeploy.targets.lab.naming import dns_container


class LabFaults:
    def __init__(self, deployment: str, status: Callable[[], StatusDoc]) -> None:
        self.deployment, self.status = deployment, status

    def choose(self, scenario: str, doc: StatusDoc) -> tuple[list[str], str, str | None]:
        """The containers a scenario hits on the deployment as ``doc`` shows it: (victims,
        what is done, the region hit)."""
        region = next((r for r in doc.regions if r.active), None)
        if scenario == "dns":
            name = dns_container(self.deployment)
            return [name], f"restarted the DNS server {name} (killed, then started)", None
        if region is None:
            raise HadeployError("no region is active (the DNS answer names none): there is "
                                "nothing serving to drill against",
                                hint="'hadeploy status' shows why; 'hadeploy up' repairs",
                                code=ExitCode.REFUSED)
        if scenario == "app-host":
            apps = [h.name for h in region.hosts if h.kind == "app" and h.healthy]
            if not apps:
                raise HadeployError(f"{region.name} has no healthy app host",
                                    code=ExitCode.REFUSED)
            return [apps[0]], f"killed app host {apps[0]}", region.name
        if scenario == "lb":
            if not region.lb_master:
                raise HadeployError(f"no load balancer of {region.name} says it holds the "
                                    "VIP", hint="'hadeploy status' shows the region's "
                                    "load balancers", code=ExitCode.REFUSED)
            return ([region.lb_master], f"killed {region.lb_master}, the load balancer "
                    "holding the VIP", region.name)
        if scenario == "db-host":
            if region.data is None:
                raise HadeployError("this deployment has no database tier",
                                    hint="drill app-host, lb or dns", code=ExitCode.BAD_INPUT)
            if region.data.leader is None:
                raise HadeployError(f"{region.name}'s database has no leader",
                                    code=ExitCode.REFUSED)
            return ([region.data.leader], f"killed {region.data.leader}, the database "
                    "leader", region.name)
        raise HadeployError(f"unknown scenario {scenario!r}", code=ExitCode.BAD_INPUT)

    def inject(self, scenario: str, victims: list[str], down: float = 2.0) -> None:
        podman.run(["kill", *victims])
        if scenario == "dns":  # a restart: the server comes back by itself
            time.sleep(down)
            podman.run(["start", *victims])

    def heal(self, victims: list[str], timeout: float = 120.0) -> str:
        """Start the victims again and wait until status sees them healthy."""
        podman.run(["start", *victims])
        deadline = time.monotonic() + timeout
        while True:
            doc = self.status()
            sick = [h.name for r in doc.regions for h in r.hosts
                    if h.name in victims and not h.healthy]
            if dns_container(self.deployment) in victims and doc.dns.error:
                sick.append(f"DNS ({doc.dns.error})")
            if not sick:
                return f"started {', '.join(victims)}: healthy again"
            if time.monotonic() > deadline:
                raise HadeployError(f"{', '.join(sick)} not healthy {timeout:.0f} s after "
                                    "being started again", hint="'hadeploy up' repairs "
                                    "the deployment", code=ExitCode.FAILED)
            time.sleep(1.0)
