"""What a failover does to a lab region: prepare a target, fence an old primary.

Fencing is two things: the intent is recorded first (``regions.json``, so every later
``up`` renders ``haproxy_fenced: true`` for that region), then each load balancer's
fencing ACL is switched at run time through haproxy's admin socket. Fencing a region
whose hosts are gone cannot reach them; that is reported, not fatal: a dead region
takes no writes anyway.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from hadeploy import dbsecrets
from hadeploy.data import Clusters
from hadeploy.health import probe
from hadeploy.targets import DataOps
from hadeploy.targets.lab import podman
from hadeploy.topology import Host, HostKind, RegionTopology, Topology

if TYPE_CHECKING:
    from hadeploy.targets.lab.target import LabTarget

FENCE_ACL = "/etc/haproxy/fenced.acl"
ADMIN_SOCKET = "/run/haproxy/admin.sock"

_SWITCH = f"""
import socket, sys
on = sys.argv[1] == "on"
with open({FENCE_ACL!r}, "w") as fh:
    fh.write("0.0.0.0/0\\n" if on else "")
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect({ADMIN_SOCKET!r})
cmd = "clear acl {FENCE_ACL}" + ("; add acl {FENCE_ACL} 0.0.0.0/0" if on else "")
s.sendall(cmd.encode() + b"\\n")
s.recv(4096)
"""


class LabRegionOps:
    """:class:`hadeploy.targets.RegionOps` for the lab."""

    prepare_timeout = 60.0  # start + boot + health of standby containers: seconds

    def __init__(self, target: LabTarget, topo: Topology) -> None:
        self.target, self.topo = target, topo
        self.dep, self.state = target.dep, target.state
        self._data: DataOps | None = None

    @property
    def data(self) -> DataOps | None:
        """The regions' Patroni clusters (read on first use: the REST password)."""
        if self._data is None and self.dep.data.enabled:
            password = dbsecrets.load_passwords(self.state.path)["restapi"]
            self._data = Clusters(self.topo, password, podman_run,
                                  observe_timeout=self.dep.failover.probe_timeout)
        return self._data

    def _switch(self, region: RegionTopology, on: bool, timeout: float) -> list[str]:
        """Switch the fencing ACL on every LB of the region; return the failures."""
        def one(name: str) -> str | None:
            try:
                proc = podman.exec_(name, "python3", "-c", _SWITCH, "on" if on else "off",
                                    check=False, timeout=timeout)
            except Exception as exc:
                return f"{name}: {type(exc).__name__}"
            return None if proc.returncode == 0 else f"{name}: {proc.stderr.strip()[:120]}"
        lbs = [h.name for h in region.of_kind(HostKind.LB)]
        with ThreadPoolExecutor(max_workers=len(lbs) or 1) as pool:
            return [f for f in pool.map(one, lbs) if f]

    def fence(self, region: RegionTopology, timeout: float) -> str:
        self.state.set_region_flag("fenced", region.name, True)
        failures = self._switch(region, True, timeout)
        lbs = len(region.of_kind(HostKind.LB))
        if not failures:
            return f"fenced ({lbs}/{lbs} load balancers refuse writes)"
        if len(failures) == lbs:
            return f"unreachable, recorded as fenced ({'; '.join(failures)})"
        return f"partly fenced ({lbs - len(failures)}/{lbs}): {'; '.join(failures)}"

    def prepare(self, region: RegionTopology, timeout: float) -> list[str]:
        actions: list[str] = []
        standby = [h for h in region.hosts if h.standby]
        if standby:
            started = self.target.set_running(standby, True)
            self.state.set_region_flag("promoted", region.name, True)
            if started:
                actions.append(f"started {len(started)} standby host(s) of {region.name}")
        if region.fenced:
            failures = self._switch(region, False, timeout=10)
            if not failures:
                self.state.set_region_flag("fenced", region.name, False)
                actions.append(f"lifted the fence of {region.name}")
            else:
                actions.append(f"could not lift the fence of {region.name}: {failures}")
        if standby or region.fenced:
            actions.append(self._wait_serving(region, timeout))
        return actions

    def _wait_serving(self, region: RegionTopology, timeout: float) -> str:
        """Wait until every app host and the region's endpoint answer healthy."""
        urls = [f"http://{h.address}:{self.dep.app.port}{self.dep.app.health_path}"
                for h in region.of_kind(HostKind.APP)] + [f"{region.url}{self.dep.app.health_path}"]
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if all(probe(u, 1.0).ok for u in urls):
                return f"{region.name} serving after {time.monotonic() - start:.1f} s"
            time.sleep(0.25)
        return f"{region.name} not fully healthy after {timeout:.0f} s"


def podman_run(host: Host, argv: list[str], *, user: str = "root",
               timeout: float = 60.0) -> tuple[int, str]:
    """A command on a lab host (as ``user``): exit code and output (stdout + stderr)."""
    proc = podman.run(["exec", "--user", user, host.name, *argv], check=False,
                      timeout=timeout)
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")
