"""What a failover does to a lab region: prepare a target, fence an old primary.

Fencing is two things: the intent is recorded first (``regions.json``, so every later
``up`` renders ``haproxy_fenced: true`` for that region), then each load balancer's
fencing ACL is switched at run time through haproxy's admin socket. Fencing a region
whose hosts are gone cannot reach them; that is reported, not fatal: a dead region
takes no writes anyway. A region whose hosts run but cannot be reached (a partition)
fences itself: its load balancers' lease agents refuse writes once they cannot confirm
that the DNS writer record names their region (``failover.lease``).

The lab drives its hosts with ``podman exec``, a channel no firewall can cut; so that
the lab behaves as SSH to a real host would, a host is first reached over the network
(:func:`reachable`), and one that is not is treated as unreachable.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from hadeploy import dbsecrets
from hadeploy.data import Clusters
from hadeploy.health import probe
from hadeploy.targets import DataOps, Fenced
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


# Wait on a load balancer until its lease agent lets writes through (argv: region, timeout).
_WRITABLE = """
import json, sys, time
region, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while True:
    try:
        doc = json.load(open("/run/hadeploy/lease.json"))
        if doc.get("fenced") is False and doc.get("writer") == region:
            sys.exit(0)
    except (OSError, ValueError):
        pass
    if time.time() > deadline:
        sys.exit(1)
    time.sleep(0.05)
"""


class LabRegionOps:
    """:class:`hadeploy.targets.RegionOps` for the lab."""

    prepare_timeout = 60.0  # start + boot + health of standby containers: seconds

    def __init__(self, target: LabTarget, topo: Topology) -> None:
        self.target, self.topo = target, topo
        self.dep, self.state = target.dep, target.state
        self._data: DataOps | None = None
        self.lease: float | None = self.dep.failover.lease or None

    @property
    def data(self) -> DataOps | None:
        """The regions' Patroni clusters (read on first use: the REST password)."""
        if self._data is None and self.dep.data.enabled:
            password = dbsecrets.load_passwords(self.state.path)["restapi"]
            self._data = Clusters(self.topo, password, podman_run,
                                  observe_timeout=self.dep.failover.probe_timeout)
        return self._data

    def _switch(self, region: RegionTopology, on: bool, timeout: float,
                states: dict[str, str] | None = None) -> list[str]:
        """Switch the fencing ACL on every LB of the region; return the failures (a load
        balancer known not to run is one at once: nothing to wait for on the network)."""
        def one(host: Host) -> str | None:
            if states is not None and states.get(host.name) != "running":
                return f"{host.name}: not running"
            if not reachable(host.address):
                return f"{host.name}: unreachable over the network"
            try:
                proc = podman.exec_(host.name, "python3", "-c", _SWITCH,
                                    "on" if on else "off", check=False, timeout=timeout)
            except Exception as exc:
                return f"{host.name}: {type(exc).__name__}"
            return None if proc.returncode == 0 else f"{host.name}: {proc.stderr.strip()[:120]}"
        lbs = region.of_kind(HostKind.LB)
        with ThreadPoolExecutor(max_workers=len(lbs) or 1) as pool:
            return [f for f in pool.map(one, lbs) if f]

    def fence(self, region: RegionTopology, timeout: float) -> Fenced:
        from hadeploy.targets.lab.target import container_states

        self.state.set_region_flag("fenced", region.name, True)
        states = container_states(self.dep.name)
        failures = self._switch(region, True, timeout, states)
        lbs = region.of_kind(HostKind.LB)
        if not failures:
            return Fenced(f"fenced ({len(lbs)}/{len(lbs)} load balancers refuse writes)",
                          True)
        # A load balancer that does not run takes no writes; one that runs but could not
        # be reached may, until its lease agent fences it.
        running = {h.name for h in lbs if states.get(h.name) == "running"}
        failed = {f.split(":", 1)[0] for f in failures}
        certain = not failed & running
        why = "; ".join(failures) + ("" if certain else
                                     f"; still running: {', '.join(sorted(failed & running))}")
        if len(failures) == len(lbs):
            return Fenced(f"unreachable, recorded as fenced ({why})", certain)
        return Fenced(f"partly fenced ({len(lbs) - len(failures)}/{len(lbs)}): {why}",
                      certain)

    def wait_writable(self, region: RegionTopology, timeout: float) -> str:
        """After the writer record names ``region``: wait until the lease agent of each of
        its running load balancers has seen it and lets writes through."""
        start = time.monotonic()

        def one(host: Host) -> str | None:
            rc, out = podman_run(host, ["python3", "-c", _WRITABLE, region.name,
                                        str(timeout)], timeout=timeout + 10)
            return None if rc == 0 else f"{host.name}: {out.strip()[:120] or 'still fenced'}"
        from hadeploy.targets.lab.target import container_states

        states = container_states(self.dep.name)
        lbs = [h for h in region.of_kind(HostKind.LB) if states.get(h.name) == "running"]
        with ThreadPoolExecutor(max_workers=len(lbs) or 1) as pool:
            failures = [f for f in pool.map(one, lbs) if f]
        if failures:
            return (f"{region.name}'s lease agents did not let writes through within "
                    f"{timeout:.0f} s: {'; '.join(failures)}")
        return (f"{region.name} takes writes ({len(lbs)} load balancer(s)' lease agents, "
                f"{time.monotonic() - start:.2f} s)")

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


def reachable(address: str, timeout: float = 0.3) -> bool:
    """Whether the host answers on the network from this machine, as SSH needs: a TCP
    connection to its port 22 is accepted or refused (a dropped or unroutable one: no)."""
    try:
        with socket.create_connection((address, 22), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def podman_run(host: Host, argv: list[str], *, user: str = "root",
               timeout: float = 60.0) -> tuple[int, str]:
    """A command on a lab host (as ``user``): exit code and output (stdout + stderr).
    A host that cannot be reached over the network is not run on (see the module's
    docstring): exit code 255, as ssh's."""
    if not reachable(host.address):
        return 255, f"{host.name} ({host.address}) is unreachable over the network"
    proc = podman.run(["exec", "--user", user, host.name, *argv], check=False,
                      timeout=timeout)
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")
