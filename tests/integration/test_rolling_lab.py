"""Rolling changes on the real lab: an app upgrade, a haproxy change and a keepalived change
applied by 'hadeploy up' while a client writes and reads through the active VIP; no request
may fail. And a host that does not come back stops the roll.

Deployment "hdroll" (subnets 10.85.x), stateless (items on each region's shared storage),
two regions of two app hosts; the tests run in file order and the deployment is removed at
the end.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration import test_failover_lab as failover_lab
from tests.integration.test_lab import podman
from tests.labclient import Load, missing

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NAME = "hdroll"
VIP = {"east": "10.85.1.10", "west": "10.85.2.10"}
APPS = {f"hd-{NAME}-{r}-app{i}": f"10.85.{n}.{20 + i}" for r, n in (("east", 1), ("west", 2))
        for i in (1, 2)}
CONFIG = f"""\
name: {NAME}
dns: {{zone: {NAME}.test, record: app, ttl: 1}}
regions:
  - {{name: east, role: primary, hosts: 2, lab_subnet: 10.85.1.0/24}}
  - {{name: west, role: secondary, hosts: 2, lab_subnet: 10.85.2.0/24}}
app: {{version: VERSION}}
data: {{enabled: false}}
lab: {{control_subnet: 10.85.0.0/24}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> failover_lab.Ctx:
    from hadeploy.targets.lab.target import deployments_present, destroy

    destroy(NAME)
    work = tmp_path_factory.mktemp("rolling")
    ctx = failover_lab.Ctx(work, NAME)
    configure(ctx, "1.0.0")
    yield ctx
    destroy(NAME)
    assert NAME not in deployments_present()


def configure(lab: failover_lab.Ctx, version: str, extra: str = "") -> None:
    path: Path = lab.work / "hadeploy.yaml"
    path.write_text(CONFIG.replace("VERSION", version) + extra)


def versions() -> dict[str, str]:
    out = {}
    for host, address in APPS.items():
        try:
            with urllib.request.urlopen(f"http://{address}:8080/", timeout=3) as resp:
                out[host] = json.loads(resp.read())["version"]
        except OSError:
            out[host] = "down"
    return out


def started_at(host: str) -> int:
    """When the app's process started (µs of the kernel's monotonic clock, which every
    container shares)."""
    return int(podman("exec", host, "systemctl", "show", "hadeploy-app.service", "-p",
                      "ExecMainStartTimestampMonotonic", "--value").stdout.strip())


def haproxy(lb: str, command: str) -> str:
    """A command on haproxy's runtime API of load balancer ``lb``."""
    script = ("import socket,sys; s=socket.socket(socket.AF_UNIX); "
              "s.connect('/run/haproxy/admin.sock'); s.sendall(sys.argv[1].encode()+b'\\n'); "
              "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")
    return podman("exec", lb, "python3", "-c", script, command).stdout


def server_states(lb: str) -> dict[str, str]:
    """Server → UP / DOWN / MAINT / DRAIN, as haproxy's stats say."""
    out = {}
    for line in haproxy(lb, "show stat").splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == "hadeploy_app" and fields[1].startswith("hd-"):
            out[fields[1]] = fields[17]
    return out


def rolled_up(lab: failover_lab.Ctx, load: Load) -> None:
    """'up' under load: it succeeds, no request fails, every acknowledged write is there."""
    with load:
        time.sleep(1)
        r = lab.cli("up", "--yes")
        time.sleep(1)
    assert r.rc == 0, r.err[-3000:]
    assert load.requests > 100, load.requests
    assert load.failures == [], load.failures[:10]
    assert missing(load.acked, VIP["east"]) == []


def test_up(lab, measurements):
    start = time.monotonic()
    r = lab.cli("up", "--yes")
    assert r.rc == 0, r.err[-3000:]
    measurements["rolling lab: cold up, 2 regions x 2 app hosts (s)"] = round(
        time.monotonic() - start, 1)
    assert set(versions().values()) == {"1.0.0"}


def test_an_app_upgrade_rolls_host_by_host_standby_region_first(lab, measurements):
    before = {h: started_at(h) for h in APPS}
    configure(lab, "1.1.0")
    load = Load("upgrade", VIP["east"])
    start = time.monotonic()
    rolled_up(lab, load)
    measurements["rolling app upgrade: requests, failed, seconds"] = (
        load.requests, len(load.failures), round(time.monotonic() - start, 1))
    assert set(versions().values()) == {"1.1.0"}
    after = {h: started_at(h) for h in APPS}
    assert all(after[h] > before[h] for h in APPS), "every app host restarted"
    # one at a time, the region that does not serve first
    assert sorted(APPS, key=after.get) == [f"hd-{NAME}-west-app1", f"hd-{NAME}-west-app2",
                                           f"hd-{NAME}-east-app1", f"hd-{NAME}-east-app2"]
    # and nothing restarts when nothing changed
    assert lab.cli("up", "--yes").rc == 0
    assert {h: started_at(h) for h in APPS} == after


def test_load_balancer_changes_reload_without_a_failed_request(lab, measurements):
    east_lbs = [f"hd-{NAME}-east-lb1", f"hd-{NAME}-east-lb2"]
    configure(lab, "1.1.0", "lb: {check_interval: 1, timeout_server: 10, "
                            "vrrp_advert_interval: 0.5}\n")
    load = Load("lb-change", VIP["east"])
    rolled_up(lab, load)
    measurements["load balancer reloads: requests, failed"] = (load.requests,
                                                               len(load.failures))
    assert len(load.lbs) == 1, f"the VIP stayed where it was: {load.lbs}"
    for lb in east_lbs:
        cfg = podman("exec", lb, "cat", "/etc/haproxy/haproxy.cfg").stdout
        assert "inter 1000ms" in cfg and "timeout server 10000ms" in cfg
        assert "advert_int 0.5" in podman("exec", lb, "cat",
                                          "/etc/keepalived/keepalived.conf").stdout


def test_a_host_that_does_not_come_back_stops_the_roll(lab):
    first = f"hd-{NAME}-west-app1"  # the first host in roll order
    dropin = "/etc/systemd/system/hadeploy-app.service.d/broken.conf"
    podman("exec", first, "sh", "-c", f"mkdir -p {Path(dropin).parent} && printf "
           "'[Service]\\nExecStartPre=/bin/false\\n' > " + dropin)
    podman("exec", first, "systemctl", "daemon-reload")
    configure(lab, "1.2.0")
    try:
        r = lab.cli("up", "--yes")
        assert r.rc != 0
        assert first in r.err and "rolling restart stopped" in r.err, r.err[-3000:]
        assert "Traceback" not in r.err
        now = versions()
        assert now.pop(first) == "down" and set(now.values()) == {"1.1.0"}, (
            "the roll stopped at the first host", now)
        west_lbs = [f"hd-{NAME}-west-lb1", f"hd-{NAME}-west-lb2"]
        for lb in west_lbs:
            states = server_states(lb)
            assert states[first] == "MAINT" and states[f"hd-{NAME}-west-app2"] == "UP", states
        with Load("stopped-roll", VIP["west"]) as load:  # the region still serves
            time.sleep(2)
        assert load.requests > 10 and load.failures == [], load.failures[:5]
    finally:
        podman("exec", first, "sh", "-c", f"rm -f {dropin} && systemctl daemon-reload")
    # fixed: the next 'up' resumes the roll where it stopped
    load = Load("resumed", VIP["east"])
    rolled_up(lab, load)
    assert set(versions().values()) == {"1.2.0"}
    for lb in [f"hd-{NAME}-west-lb1", f"hd-{NAME}-west-lb2"]:
        assert set(server_states(lb).values()) == {"UP"}
