"""The spine on the real lab: podman containers, haproxy + keepalived, Ansible, knotd.

One deployment ("hdtest", subnets 10.92.x so a user's demo on 10.91.x is never touched) is
built once and exercised step by step; the tests run in file order. Stale objects of an
interrupted earlier run are removed first, and everything is removed at the end. It has no
database tier: the app, the load balancers, rolling changes, drills and GitOps are what it
is for (every Ansible run is about half as long without one); test_data_lab.py builds a
deployment with the full database tier and backups, as `up` makes by default.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NAME = "hdtest"
CONFIG = f"""\
name: {NAME}
dns: {{zone: hdtest.test, record: app, ttl: 2}}
regions:
  - {{name: east, role: primary, hosts: 2, lab_subnet: 10.92.1.0/24}}
  - {{name: west, role: secondary, hosts: 2, lab_subnet: 10.92.2.0/24}}
data: {{enabled: false}}  # the database tier and backups: test_data_lab.py
lab: {{control_subnet: 10.92.0.0/24}}
"""
NORTH = "  - {name: north, role: secondary, hosts: 2, standby: warm, lab_subnet: 10.92.3.0/24}\n"
EAST_VIP, WEST_VIP, NORTH_VIP, DNS_SERVER = "10.92.1.10", "10.92.2.10", "10.92.3.10", "10.92.0.53"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    from hadeploy.targets.lab.podman import podman_env

    return subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                          check=check, timeout=120)


def lab_objects() -> dict[str, list[str]]:
    label = f"label=io.hadeploy.deployment={NAME}"
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                           check=True).stdout
    return {
        "containers": podman("ps", "-aq", "--filter", label).stdout.split(),
        "networks": podman("network", "ls", "-q", "--filter", label).stdout.split(),
        "volumes": podman("volume", "ls", "-q", "--filter", label).stdout.split(),
        "rules": [r for r in rules.splitlines() if f"hadeploy:{NAME}" in r],
    }


@dataclass
class Lab:
    workdir: Path
    state: Path
    outputs: list[str] = field(default_factory=list)
    started: dict[str, int] = field(default_factory=dict)  # app process start times

    def cli(self, *args: str, timeout: float = 900, input_: str | None = None,
            env: dict[str, str] | None = None):
        r = run_cli(*args, cwd=self.workdir, env={"HADEPLOY_STATE_DIR": str(self.state),
                                                  **(env or {})},
                    timeout=timeout, input_=input_)
        self.outputs += [r.out, r.err]
        return r

    def json(self, *args: str) -> dict:
        r = self.cli(*args, "--json")
        assert r.rc == 0, f"hadeploy {' '.join(args)} failed ({r.rc}):\n{r.err}"
        return json.loads(r.out)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    for tool in ("podman", "iptables"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/setup.sh (CI does)"
    from hadeploy.targets.lab.target import destroy

    destroy(NAME)  # whatever an interrupted earlier run left behind
    work = tmp_path_factory.mktemp("lab")
    (work / "hadeploy.yaml").write_text(CONFIG)
    yield Lab(work, work / "state")
    destroy(NAME)
    assert lab_objects() == {"containers": [], "networks": [], "volumes": [], "rules": []}


def get_json(host: str, path: str, port: int = 80) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}  # haproxy lowercases names
        return resp.status, json.loads(resp.read() or b"{}"), headers
    finally:
        conn.close()


def post_json(host: str, path: str, body: dict, port: int = 80) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


PLANTED = f"planted-{uuid.uuid4().hex}"  # a "cloud secret" in hadeploy's environment


class CmdlineWatch:
    """Samples every process's command line while a run goes on."""

    def __init__(self, needle: str) -> None:
        self.needle, self.hits, self.samples = needle.encode(), [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if self.needle in (proc / "cmdline").read_bytes():
                        self.hits.append(proc.name)
                except OSError:
                    continue
            self.samples += 1
            self._stop.wait(0.2)

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_up_builds_two_regions(lab, measurements):
    start = time.monotonic()
    with CmdlineWatch(PLANTED) as cmdlines:
        r = lab.cli("up", "--json", env={"AWS_SECRET_ACCESS_KEY": PLANTED,
                                         "HADEPLOY_TEST_TOKEN": PLANTED})
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    measurements["cold up, 2 regions x 2 app hosts (s)"] = round(time.monotonic() - start, 1)
    assert cmdlines.samples > 10 and cmdlines.hits == [], "a secret on a command line"
    assert doc["changed"] and doc["configured"]
    assert doc["ansible"]["failures"] == [] and len(doc["ansible"]["hosts"]) == 8
    assert doc["dns"]["answer"] == [EAST_VIP]
    objs = lab_objects()
    # 2 x (2 lb + 2 app + prober + dns) + the witness dns
    assert len(objs["containers"]) == 13
    assert len(objs["networks"]) == 3 and len(objs["volumes"]) == 2 and objs["rules"]


def test_status_json_contract(lab):
    doc = lab.json("status")
    assert doc["active_region"] == "east" and doc["healthy"] is True
    servers = doc["dns"].pop("servers")
    assert doc["dns"] == {"server": "10.92.1.6", "port": 53, "zone": "hdtest.test",
                          "record": "app.hdtest.test.", "ttl": 2, "answer": [EAST_VIP],
                          "error": None, "writer": "east"}
    # two regions: a server in each and the witness next to this machine, all agreeing
    assert [(s["name"], s["address"]) for s in servers] == [
        ("east", "10.92.1.6:53"), ("west", "10.92.2.6:53"), ("witness", f"{DNS_SERVER}:53")]
    assert all(s["agrees"] and s["answer"] == [EAST_VIP] and s["writer"] == "east"
               and s["error"] is None for s in servers), servers
    assert len({s["serial"] for s in servers}) == 1
    assert [r["name"] for r in doc["regions"]] == ["east", "west"]
    for region, vip in zip(doc["regions"], (EAST_VIP, WEST_VIP), strict=True):
        assert region["vip"] == vip and region["url"] == f"http://{vip}"
        assert region["healthy"] is True
        assert region["lb_master"] in {f"hd-{NAME}-{region['name']}-lb1",
                                       f"hd-{NAME}-{region['name']}-lb2"}
        kinds = sorted(h["kind"] for h in region["hosts"])
        assert kinds == ["app", "app", "lb", "lb"]
        assert all(h["healthy"] and h["container"] == "running" for h in region["hosts"])
    assert doc["regions"][0]["role"] == "primary" and doc["regions"][1]["role"] == "secondary"
    human = lab.cli("status")
    assert human.rc == 0 and "active region east" in human.out


def test_dns_server_answers_directly_and_refuses_unsigned_updates(lab):
    import dns.message
    import dns.query
    import dns.rcode
    import dns.update

    q = dns.message.make_query("app.hdtest.test.", "A")
    resp = dns.query.udp(q, DNS_SERVER, timeout=2)
    assert [a.address for rr in resp.answer for a in rr] == [EAST_VIP]
    assert resp.flags & 0x0400, "answer must be authoritative (AA)"
    upd = dns.update.UpdateMessage("hdtest.test.")
    upd.replace("app", 2, "A", WEST_VIP)
    assert dns.query.tcp(upd, DNS_SERVER, timeout=2).rcode() == dns.rcode.NOTAUTH
    resp = dns.query.udp(q, DNS_SERVER, timeout=2)
    assert [a.address for rr in resp.answer for a in rr] == [EAST_VIP]


def test_tsig_key_is_private_and_never_printed(lab):
    key_file = lab.state / NAME / "dns" / "tsig.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = json.loads(key_file.read_text())["secret"]
    assert all(secret not in out for out in lab.outputs)
    artifacts = lab.state / NAME / "ansible"
    assert any(p.name == "command" for p in artifacts.rglob("*")), "no artifact to check"
    for path in artifacts.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="ignore"), path


def test_secrets_of_the_environment_land_nowhere_in_the_state(lab):
    """ansible-runner copies its environment into artifacts/<id>/command: only the
    variables Ansible needs are passed, so a cloud secret in hadeploy's environment is
    in no file of the state directory (and was on no command line, see the first test)."""
    files = [p for p in (lab.state / NAME).rglob("*") if p.is_file()]
    assert len(files) > 10
    found = [str(p) for p in files if PLANTED.encode() in p.read_bytes()]
    assert found == []


def test_items_written_in_the_active_region_are_served_by_every_app_host(lab):
    """Without a database tier the region's shared storage holds the items: east takes the
    write and both of its app hosts serve it; west refuses writes at its load balancers
    (their lease agents: the writer record names east). With a database tier west serves
    it too: test_data_lab.py."""
    item_id = f"it-{uuid.uuid4().hex[:8]}"
    status, body = post_json(EAST_VIP, "/items", {"id": item_id, "sku": "X1"})
    assert status == 201 and body["region"] == "east"
    served_by, deadline = set(), time.time() + 10
    while len(served_by) < 2 and time.time() < deadline:  # round robin over 2 hosts
        status, item, _ = get_json(EAST_VIP, f"/items/{item_id}")
        assert status == 200 and item["sku"] == "X1"
        served_by.add(item["served_by"])
    assert served_by == {f"hd-{NAME}-east-app1", f"hd-{NAME}-east-app2"}
    for vip, region in ((EAST_VIP, "east"), (WEST_VIP, "west")):
        status, root, headers = get_json(vip, "/")
        assert root["region"] == region and "x-hadeploy-lb" in headers
    status, body = post_json(WEST_VIP, "/items", {"id": item_id + "-w"})
    assert status == 503 and "not the writer" in body["error"], body


def drill(lab: Lab, measurements, scenario: str) -> dict:
    """'hadeploy drill': the fault under a client that reads and writes through the app's
    DNS name, recovery, the victim brought back, every acknowledged write read back."""
    out = lab.workdir / f"drill-{scenario}"
    r = lab.cli("drill", scenario, "--yes", "--json", "--report", str(out))
    assert r.rc == 0, r.err[-2000:] + r.out[-2000:]
    doc = json.loads(r.out)
    measurements[f"drill {scenario}: requests, failed, RTO (s)"] = (
        doc["requests"], doc["failed"], doc["rto_seconds"])
    assert doc["met"] and doc["healed"] and doc["lost_writes"] == 0, doc["problems"]
    assert doc["requests"] > 50 and doc["acked_writes"] > 20, doc
    assert doc["failed_before_fault"] == 0
    for kind in ("json", "markdown", "png"):
        assert Path(doc["reports"][kind]).stat().st_size > 100
    status = lab.json("status")
    assert status["healthy"] and scenario in {d["scenario"] for d in status["drills"]}
    return doc


def test_drill_app_host_costs_no_request(lab, measurements):
    doc = drill(lab, measurements, "app-host")
    assert doc["failed"] == 0, "haproxy retries on the region's other app host"
    assert doc["victims"] == [f"hd-{NAME}-east-app1"] and doc["region"] == "east"


def test_drill_lb_moves_the_vip(lab, measurements):
    before = lab.json("status")["regions"][0]["lb_master"]
    doc = drill(lab, measurements, "lb")
    assert doc["victims"] == [before]
    after = lab.json("status")["regions"][0]["lb_master"]
    assert after is not None and after != before
    # Requests fail only while the VIP moves: until the backup's gratuitous ARP is taken
    # (the killed container's network namespace answers with resets until podman removes
    # it, a lab artifact a dead machine does not have), then never again.
    assert doc["rto_seconds"] is not None and doc["rto_seconds"] < 4.0, doc


def test_drill_dns_restart(lab, measurements):
    doc = drill(lab, measurements, "dns")
    # the first server (east's, the one the client asks first) is down for 2 s: the
    # client's stub resolver asks the next one, so no request fails
    assert doc["victims"] == [f"hd-{NAME}-east-dns"], doc
    assert doc["failed"] == 0 and doc["rto_seconds"] < 10, doc


def test_up_repairs_then_second_up_changes_nothing(lab, measurements):
    podman("kill", f"hd-{NAME}-east-app1", f"hd-{NAME}-east-lb2")
    doc = lab.json("up")
    assert doc["changed"] and sorted(doc["started"]) == [f"container hd-{NAME}-east-app1",
                                                         f"container hd-{NAME}-east-lb2"]
    assert doc["created"] == [] and doc["recreated"] == []
    assert doc["configured"] and set(doc["ansible"]["hosts"]) <= {
        f"hd-{NAME}-east-{h}" for h in ("lb1", "lb2", "app1", "app2")}
    start = time.monotonic()
    doc = lab.json("up")
    measurements["unchanged re-run of up (s)"] = round(time.monotonic() - start, 1)
    assert doc["changed"] is False and doc["configured"] is False, doc
    assert json.loads(lab.cli("status", "--json").out)["healthy"] is True


def test_plan_after_up_has_no_changes(lab):
    doc = lab.json("plan")
    assert doc["changes"] == [], doc


APPS = {f"hd-{NAME}-{r}-app{i}": f"10.92.{n}.{20 + i}" for r, n in (("east", 1), ("west", 2))
        for i in (1, 2)}


def app_versions() -> dict[str, str]:
    out = {}
    for host, address in APPS.items():
        try:
            out[host] = get_json(address, "/", port=8080)[1]["version"]
        except OSError:
            out[host] = "down"
    return out


def app_started_at(host: str) -> int:
    """When the app's process started (µs of the kernel's monotonic clock, which every
    container shares)."""
    return int(podman("exec", host, "systemctl", "show", "hadeploy-app.service", "-p",
                      "ExecMainStartTimestampMonotonic", "--value").stdout.strip())


def haproxy_states(lb: str) -> dict[str, str]:
    """App server → UP / DOWN / MAINT / DRAIN, from haproxy's runtime API on ``lb``."""
    script = ("import socket; s=socket.socket(socket.AF_UNIX); "
              "s.connect('/run/haproxy/admin.sock'); s.sendall(b'show stat\\n'); "
              "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")
    out = {}
    for line in podman("exec", lb, "python3", "-c", script).stdout.splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == "hadeploy_app" and fields[1].startswith("hd-"):
            out[fields[1]] = fields[17]
    return out


def configure(lab: Lab, version: str, extra: str = "") -> None:
    (lab.workdir / "hadeploy.yaml").write_text(
        CONFIG.replace("data: ", f"app: {{version: {version}}}\n" + extra + "data: "))


LB_CHANGE = "lb: {check_interval: 1, timeout_server: 10, vrrp_advert_interval: 0.5}\n"


def lease_journals(region: str) -> dict[str, str]:
    """The lease agents' logs of a region's load balancers (what a failure report needs)."""
    return {lb: podman("exec", lb, "journalctl", "-u", "hadeploy-lease", "--no-pager", "-n",
                       "12", check=False).stdout[-1500:]
            for lb in (f"hd-{NAME}-{region}-lb1", f"hd-{NAME}-{region}-lb2")}


def up_under_load(lab: Lab, tag: str, rc: int = 0):
    """'up' while a client (the drills' client, pinned to the active VIP) posts items and
    reads them back: it exits ``rc``, no request fails, every acknowledged write is there."""
    from hadeploy.drill import Client
    from tests.labclient import missing

    load = Client(tag, lambda: (EAST_VIP, 3600.0), timeout=5.0).start()
    try:
        time.sleep(1)
        start = time.monotonic()
        r = lab.cli("up", "--yes")
        seconds = time.monotonic() - start
        time.sleep(1)
    finally:
        load.stop()
    assert r.rc == rc, r.err[-3000:]
    assert len(load.samples) > 100, len(load.samples)
    failed = [s for s in load.samples if not s.ok]
    assert failed == [], (failed[:3], failed[-1:], lease_journals("east"))
    assert missing([item for item, *_ in load.acked], EAST_VIP) == []
    return r, load, seconds


BROKEN = f"hd-{NAME}-west-app1"  # the first host in roll order (west does not serve)
DROPIN = "/etc/systemd/system/hadeploy-app.service.d/broken.conf"


def test_a_roll_stops_at_a_host_that_does_not_come_back(lab, measurements):
    """A new app version and new haproxy/keepalived settings in one 'up', under load, while
    the first host in roll order cannot start: the load balancers reload one at a time (the
    VIP stays where it is), the roll stops at that host, which stays drained, and every
    other host keeps serving the old version. No request fails."""
    lab.started = {h: app_started_at(h) for h in APPS}
    vip_holder = lab.json("status")["regions"][0]["lb_master"]
    podman("exec", BROKEN, "sh", "-c", f"mkdir -p {Path(DROPIN).parent} && printf "
           "'[Service]\\nExecStartPre=/bin/false\\n' > " + DROPIN)
    podman("exec", BROKEN, "systemctl", "daemon-reload")
    configure(lab, "1.1.0", LB_CHANGE)
    r, load, seconds = up_under_load(lab, "stopped-roll", rc=1)
    measurements["upgrade + lb change, roll stopped at a broken host: requests, up (s)"] = (
        len(load.samples), round(seconds, 1))
    assert BROKEN in r.err and "rolling restart stopped" in r.err, r.err[-3000:]
    assert "Traceback" not in r.err
    now = app_versions()
    assert now.pop(BROKEN) == "down" and set(now.values()) == {"1.0.0"}, now
    for lb in (f"hd-{NAME}-west-lb1", f"hd-{NAME}-west-lb2"):
        states = haproxy_states(lb)
        assert states[BROKEN] == "MAINT" and states[f"hd-{NAME}-west-app2"] == "UP", states
    assert {s.via for s in load.samples} == {vip_holder}, "the VIP stayed where it was"
    for lb in (f"hd-{NAME}-east-lb1", f"hd-{NAME}-east-lb2"):
        cfg = podman("exec", lb, "cat", "/etc/haproxy/haproxy.cfg").stdout
        assert "inter 1000ms" in cfg and "timeout server 10000ms" in cfg
        assert "advert_int 0.5" in podman("exec", lb, "cat",
                                          "/etc/keepalived/keepalived.conf").stdout


def test_drill_upgrade_resumes_the_roll_host_by_host_serving_region_last(lab, measurements):
    """The broken host fixed, 'hadeploy drill upgrade': every app host restarted the way a
    new version restarts it (the rolling play, drained one at a time) under the drill's
    DNS-honouring client; the stopped roll resumes with it: not one request fails, every
    host ends on the new version, the region that does not serve first."""
    podman("exec", BROKEN, "sh", "-c", f"rm -f {DROPIN} && systemctl daemon-reload")
    doc = drill(lab, measurements, "upgrade")
    assert doc["failed"] == 0 and sorted(doc["victims"]) == sorted(set(APPS) - {BROKEN}), doc
    assert "roll done" in doc["phases"], doc["phases"]
    assert set(app_versions().values()) == {"1.1.0"}
    after = {h: app_started_at(h) for h in APPS}
    assert all(after[h] > lab.started[h] for h in APPS), "every app host restarted"
    # one at a time, the region that does not serve first
    assert sorted(APPS, key=after.get) == [f"hd-{NAME}-west-app1", f"hd-{NAME}-west-app2",
                                           f"hd-{NAME}-east-app1", f"hd-{NAME}-east-app2"]
    for lb in (f"hd-{NAME}-west-lb1", f"hd-{NAME}-west-lb2"):
        assert set(haproxy_states(lb).values()) == {"UP"}


# --- GitOps: the deployment follows a git repository ----------------------------------------

def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=hadeploy test", "-c",
                           "user.email=test@hadeploy.test", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def commit_config(lab: Lab, text: str, message: str, branch: str = "main") -> str:
    """Commit hadeploy.yaml on ``branch`` of the lab's bare repository; the new revision."""
    clone = lab.workdir / "gitops" / "clone"
    git(clone, "checkout", "-q", "-B", branch)
    (clone / "hadeploy.yaml").write_text(text)
    git(clone, "commit", "-q", "-am", message)
    git(clone, "push", "-q", "-f", "origin", f"{branch}:{branch}")
    return git(clone, "rev-parse", "HEAD")


def test_reconcile_applies_each_commit_rolling_and_refuses_an_unsigned_one(lab, measurements):
    """'hadeploy reconcile --once' from a bare repository: the revision that matches the
    deployment applies nothing; a commit that bumps the app version is rolled out by the next
    run under a client that sees not one failed request; under --require-signed an unsigned
    commit is refused and audited, and nothing changes."""
    from hadeploy.drill import Client

    repo, clone = lab.workdir / "gitops" / "repo.git", lab.workdir / "gitops" / "clone"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True,
                   capture_output=True)
    current = (lab.workdir / "hadeploy.yaml").read_text()  # as the rolling tests left it
    (clone / "hadeploy.yaml").write_text(current)
    git(clone, "add", "hadeploy.yaml")
    first = commit_config(lab, current, "the deployment as it runs")
    doc = json.loads(lab.cli("reconcile", "--repo", str(repo), "--once", "--json").out)
    assert doc["revision"] == first and doc["changes"] == [], doc
    bumped = current.replace("version: 1.1.0", "version: 1.2.0")
    assert bumped != current
    second = commit_config(lab, bumped, "app 1.2.0")
    load = Client("reconcile", lambda: (EAST_VIP, 3600.0), timeout=5.0).start()
    try:
        time.sleep(1)
        start = time.monotonic()
        r = lab.cli("reconcile", "--repo", str(repo), "--once", "--json")
        seconds = time.monotonic() - start
        time.sleep(1)
    finally:
        load.stop()
    assert r.rc == 0, r.err[-3000:]
    measurements["reconcile of an app version bump: requests, seconds"] = (
        len(load.samples), round(seconds, 1))
    assert [s for s in load.samples if not s.ok] == [] and len(load.samples) > 100
    assert set(app_versions().values()) == {"1.2.0"}
    synced = lab.json("status")["reconcile"]
    assert synced["revision"] == second and synced["result"] == "ok", synced
    signers = lab.workdir / "gitops" / "allowed_signers"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(lab.workdir / "gitops" / "signer")], check=True)
    signers.write_text("ops@hadeploy.test " + (lab.workdir / "gitops" / "signer.pub")
                       .read_text())
    unsigned = commit_config(lab, bumped.replace("version: 1.2.0", "version: 1.3.0"),
                             "app 1.3.0, unsigned")
    r = lab.cli("reconcile", "--repo", str(repo), "--once", "--require-signed",
                "--allowed-signers", str(signers))
    assert r.rc == 3 and "Traceback" not in r.err, r.err
    assert set(app_versions().values()) == {"1.2.0"}, "nothing applied"
    from hadeploy.state import StateDir

    refused = [a for a in StateDir(lab.state / NAME).audit_records(operation="reconcile")
               if a.get("result") == "refused"]
    assert refused and refused[-1]["revision"] == unsigned, refused
    commit_config(lab, bumped, "back to what runs")  # main = the deployment again
    (lab.workdir / "hadeploy.yaml").write_text(bumped)


def test_the_example_pipelines_plan_apply_and_catch_a_hand_edit(lab, measurements):
    """Every job of examples/gitops/ (GitHub Actions and GitLab CI), its shell lines in
    order, in a checkout of the lab's bare repository, with the lab's state directory as
    the runner's persistent one: the pull-request job plans a version bump as a markdown
    comment (exit 8 is not a failure there), the apply job applies main, the drift job
    fails on a hand-edited haproxy.cfg and a stopped keepalived, naming host, task and file
    with the diff, and finds nothing else; 'up --drift' puts both back."""
    from tests.pipelines import github_jobs, gitlab_jobs, run_job

    repo = lab.workdir / "gitops" / "repo.git"
    main = (lab.workdir / "hadeploy.yaml").read_text()
    commit_config(lab, main.replace("version: 1.2.0", "version: 1.3.0"), "app 1.3.0",
                  branch="bump")
    env = {"HADEPLOY_STATE_DIR": str(lab.state),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def checkout(branch: str, name: str) -> Path:
        work = lab.workdir / "gitops" / name
        subprocess.run(["git", "clone", "-q", "-b", branch, str(repo), str(work)],
                       check=True, capture_output=True)
        return work

    jobs = {"github": github_jobs(), "gitlab": gitlab_jobs()}
    for forge, forge_jobs in jobs.items():
        work = checkout("bump", f"{forge}-pr")
        r = run_job(forge_jobs["plan"], work, env)
        assert r.returncode == 0, r.stderr[-2000:]
        comment = (work / "plan.md").read_text()
        assert "| configure | configuration `east`" in comment, comment
        assert "**2 change(s)**" in comment and "none: restarts roll" in comment, comment
        r = run_job(forge_jobs["apply"], checkout("main", f"{forge}-main"), env)
        assert r.returncode == 0, r.stderr[-2000:]
    # The drift jobs of both files run the same line (an Ansible check-mode run over every
    # running host, the slow part): run it once.
    assert jobs["github"]["drift"].scripts == jobs["gitlab"]["drift"].scripts
    lb1, lb2 = f"hd-{NAME}-east-lb1", f"hd-{NAME}-east-lb2"  # one region to repair
    podman("exec", lb1, "sh", "-c", "echo '# hand edit' >> /etc/haproxy/haproxy.cfg")
    podman("exec", lb2, "systemctl", "stop", "keepalived")
    start = time.monotonic()
    r = run_job(jobs["gitlab"]["drift"], checkout("main", "drift"), env)
    measurements["drift check over 8 running hosts (s)"] = round(time.monotonic() - start, 1)
    assert r.returncode == 8, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"**east** `{lb1}`: Write the haproxy configuration (`/etc/haproxy/haproxy.cfg`)" \
        in r.stdout, r.stdout
    assert "  -# hand edit" in r.stdout and f"**east** `{lb2}`: Enable and start keepalived" \
        in r.stdout, r.stdout
    assert "**west**" not in r.stdout, r.stdout
    # Exactly the two differences, in east: on a converged lab check mode finds nothing else
    # (the roles are idempotent in check mode too), on none of the other 6 hosts.
    doc = lab.json("up", "--drift")
    assert doc["configured"] and doc["ansible"]["failures"] == []
    assert doc["configure_reason"].startswith("east: drift: hd-") and doc["configure_reason"] \
        .endswith(" and 1 more") and "west" not in doc["configure_reason"], doc["configure_reason"]
    changed = {h for h, st in doc["ansible"]["hosts"].items() if st["changed"]}
    assert changed == {lb1, lb2}, doc["ansible"]["hosts"]  # the other east hosts: unchanged
    assert "# hand edit" not in podman("exec", lb1, "cat", "/etc/haproxy/haproxy.cfg").stdout
    assert podman("exec", lb2, "systemctl", "is-active", "keepalived").stdout.strip() == "active"
    assert lab.cli("plan", "--detailed-exitcode").rc == 0


def test_adding_a_region_adds_only_that_region_and_up_applies_the_plan(lab):
    """A warm region joins: the plan names it, the probers of the other regions (which now
    probe it too), the firewall rules between subnets, the other regions' configuration
    (their load balancers' lease agents now ask its DNS server too) and the witness DNS
    server, which three regions no longer need (an odd count without it); 'up' applies
    exactly that plan, and on the existing regions only the load balancers change."""
    current = (lab.workdir / "hadeploy.yaml").read_text()  # as the rolling tests left it
    (lab.workdir / "hadeploy.yaml").write_text(current.replace("app: ", NORTH + "app: "))
    plan = lab.json("plan")
    others = {f"recreate container hd-{NAME}-{r}-probe (its specification changed)"
              for r in ("east", "west")} | {
        f"configure configuration {r} (configuration changed)" for r in ("east", "west")} | {
        f"remove container hd-{NAME}-dns (a DNS server this deployment no longer has)"}
    unexpected = [c for c in plan["changes"] if "north" not in c
                  and c not in others and not c.startswith("create firewall")]
    assert plan["changes"] and unexpected == [], plan["changes"]
    assert others <= set(plan["changes"])
    doc = lab.json("up")
    assert doc["plan"] == plan["changes"], "up applies exactly the plan that plan printed"
    assert sorted(doc["recreated"]) == [f"container hd-{NAME}-east-probe",
                                        f"container hd-{NAME}-west-probe"]
    assert doc["removed"] == [f"container hd-{NAME}-dns"]
    created = [c for c in doc["created"] if not c.endswith("firewall rule(s)")]
    assert created and all("north" in c for c in created), created
    assert f"container hd-{NAME}-north-dns" in created
    hosts = doc["ansible"]["hosts"]
    assert set(hosts) == {f"hd-{NAME}-{r}-{h}" for r in ("east", "west", "north")
                          for h in ("lb1", "lb2", "app1", "app2")}
    touched = {h for h, stats in hosts.items() if stats["changed"] and "north" not in h}
    assert touched == {f"hd-{NAME}-{r}-{h}" for r in ("east", "west")
                       for h in ("lb1", "lb2")}, hosts
    # the standby host was configured, then stopped again: north keeps 1 of 2
    assert doc["stopped"] == [f"container hd-{NAME}-north-app2"]
    assert doc["dns"]["answer"] == [EAST_VIP] and doc["dns"]["changed"] is False
    status, root, _ = get_json(NORTH_VIP, "/")
    assert status == 200 and root["region"] == "north"
    servers = lab.json("status")["dns"]["servers"]
    assert [s["name"] for s in servers] == ["east", "west", "north"], servers
    assert all(s["agrees"] for s in servers), servers


def state_snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p): (p.lstat().st_mode, p.lstat().st_mtime_ns,
                     b"" if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def test_plan_says_no_changes_on_a_converged_lab_with_a_warm_region(lab):
    before = state_snapshot(lab.state)
    doc = lab.json("plan")
    assert doc["changes"] == [], doc
    assert not [n for n in doc["notes"] if "not in the desired state" in n], doc["notes"]
    human = lab.cli("plan")
    assert human.rc == 0 and "no changes" in human.out
    status = lab.json("status")
    assert status["healthy"] is True and status["degraded"] is False, status
    dry = lab.json("failover", "--to", "west", "--dry-run")
    assert dry["result"] == "dry-run" and dry["from"] == "east"
    assert state_snapshot(lab.state) == before, "plan, status and a dry run write nothing"


def test_down_asks_then_leaves_nothing_behind(lab):
    r = lab.cli("down", input_="")
    assert r.rc == 3 and "--yes" in r.err
    assert lab_objects()["containers"], "a refused down must not remove anything"
    doc = lab.json("down", "--yes")
    assert len(doc["removed"]) >= 24
    assert lab_objects() == {"containers": [], "networks": [], "volumes": [], "rules": []}
    left = sorted(p.name for p in (lab.state / NAME).iterdir())
    assert left == ["audit.jsonl", "lock"]
    assert lab.json("down", "--yes")["removed"] == []  # idempotent
