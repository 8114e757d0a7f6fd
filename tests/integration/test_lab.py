"""The spine on the real lab: podman containers, haproxy + keepalived, Ansible, knotd.

One deployment ("hdtest", subnets 10.92.x so a user's demo on 10.91.x is never touched) is
built once and exercised step by step; the tests run in file order. Stale objects of an
interrupted earlier run are removed first, and everything is removed at the end.
"""

from __future__ import annotations

import http.client
import json
import shutil
import stat
import subprocess
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
data: {{hosts: 1, backup: {{enabled: false}}}}  # backups: test_backup_lab.py
lab: {{control_subnet: 10.92.0.0/24}}
"""
NORTH = "  - {name: north, role: secondary, hosts: 2, standby: warm, lab_subnet: 10.92.3.0/24}\n"
SOUTH = "  - {name: south, role: secondary, hosts: 1, standby: cold, lab_subnet: 10.92.4.0/24}\n"
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
    killed: list[str] = field(default_factory=list)

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


class Loop:
    """A bounded client loop against one URL (GET, or POST of unique items)."""

    def __init__(self, host: str, method: str = "GET", interval: float = 0.02,
                 max_seconds: float = 30) -> None:
        self.host, self.method, self.interval, self.max_seconds = host, method, interval, \
            max_seconds
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.fail_times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _once(self) -> None:
        conn = http.client.HTTPConnection(self.host, 80, timeout=2)
        try:
            if self.method == "POST":
                item = json.dumps({"id": uuid.uuid4().hex, "v": 1})
                conn.request("POST", "/items", item, {"Content-Type": "application/json"})
                want = 201
            else:
                conn.request("GET", "/")
                want = 200
            resp = conn.getresponse()
            resp.read()
            # POST is idempotent by id: 200 "existing" answers a retry of a stored item
            if resp.status != want and not (want == 201 and resp.status == 200):
                raise RuntimeError(f"HTTP {resp.status}")
            self.ok += 1
        except Exception as exc:
            self.failed += 1
            self.fail_times.append(time.monotonic())
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._once()
            time.sleep(self.interval)

    def __enter__(self) -> Loop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def get_json(host: str, path: str, port: int = 80) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}  # haproxy lowercases names
        return resp.status, json.loads(resp.read() or b"{}"), headers
    finally:
        conn.close()


def post_json(host: str, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, 80, timeout=3)
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
    assert doc["ansible"]["failures"] == [] and len(doc["ansible"]["hosts"]) == 10
    assert doc["dns"]["answer"] == [EAST_VIP]
    objs = lab_objects()
    assert len(objs["containers"]) == 13  # 2 x (2 lb + 2 app + db + prober) + dns
    assert len(objs["networks"]) == 3 and len(objs["volumes"]) == 2 and objs["rules"]


def test_status_json_contract(lab):
    doc = lab.json("status")
    assert doc["active_region"] == "east" and doc["healthy"] is True
    assert doc["dns"] == {"server": DNS_SERVER, "port": 53, "zone": "hdtest.test",
                          "record": "app.hdtest.test.", "ttl": 2, "answer": [EAST_VIP],
                          "error": None}
    assert [r["name"] for r in doc["regions"]] == ["east", "west"]
    for region, vip in zip(doc["regions"], (EAST_VIP, WEST_VIP), strict=True):
        assert region["vip"] == vip and region["url"] == f"http://{vip}"
        assert region["healthy"] is True
        assert region["lb_master"] in {f"hd-{NAME}-{region['name']}-lb1",
                                       f"hd-{NAME}-{region['name']}-lb2"}
        kinds = sorted(h["kind"] for h in region["hosts"])
        assert kinds == ["app", "app", "db", "lb", "lb"]
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
    """The database tier (one host per region here): east takes the write, every app host
    of east and of west (its standby cluster replays it) serves it; west refuses writes."""
    item_id = f"it-{uuid.uuid4().hex[:8]}"
    status, body = post_json(EAST_VIP, "/items", {"id": item_id, "sku": "X1"})
    assert status == 201 and body["region"] == "east"
    for vip, region in ((EAST_VIP, "east"), (WEST_VIP, "west")):
        served_by, deadline = set(), time.time() + 10
        while len(served_by) < 2 and time.time() < deadline:  # round robin over 2 hosts
            status, item, _ = get_json(vip, f"/items/{item_id}")
            if status == 200:
                assert item["sku"] == "X1"
                served_by.add(item["served_by"])
            else:
                time.sleep(0.2)  # west replays asynchronously
        assert served_by == {f"hd-{NAME}-{region}-app1", f"hd-{NAME}-{region}-app2"}
        status, root, headers = get_json(vip, "/")
        assert root["region"] == region and "x-hadeploy-lb" in headers
    status, body = post_json(WEST_VIP, "/items", {"id": item_id + "-w"})
    assert status == 503 and "read-only region" in body["error"]


def test_killing_an_app_host_costs_no_request(lab, measurements):
    with Loop(EAST_VIP, "GET") as gets, Loop(EAST_VIP, "POST") as posts:
        time.sleep(1.5)
        podman("kill", f"hd-{NAME}-east-app1")
        lab.killed.append(f"container hd-{NAME}-east-app1")
        time.sleep(4)
    measurements["app host killed: failed GET/POST requests"] = (
        f"{gets.failed}/{gets.ok + gets.failed} GET, {posts.failed}/{posts.ok + posts.failed} "
        "POST")
    assert gets.ok > 50 and posts.ok > 50
    assert gets.failed == 0, gets.errors
    assert posts.failed == 0, posts.errors
    status = lab.cli("status", "--json")  # exit 1: a host is down
    assert status.rc == 1
    east = json.loads(status.out)["regions"][0]
    app1 = next(h for h in east["hosts"] if h["name"].endswith("app1"))
    assert app1["healthy"] is False and east["healthy"] is True


def test_killing_the_master_lb_moves_the_vip(lab, measurements):
    before = json.loads(lab.cli("status", "--json").out)["regions"][0]["lb_master"]
    with Loop(EAST_VIP, "GET") as gets:
        time.sleep(1.5)
        killed_at = time.monotonic()
        podman("kill", before)
        lab.killed.append(f"container {before}")
        time.sleep(5)
    window = (gets.fail_times[-1] - killed_at) if gets.fail_times else 0.0
    measurements["master LB killed: failed requests"] = (
        f"{gets.failed}/{gets.ok + gets.failed} (last failure {window:.2f} s after the kill)")
    after = json.loads(lab.cli("status", "--json").out)["regions"][0]["lb_master"]
    assert after is not None and after != before
    # Requests fail only while the VIP moves: until the backup's gratuitous ARP is taken
    # (the killed container's network namespace answers with resets until podman removes
    # it, a lab artifact a dead machine does not have), then never again.
    assert gets.fail_times and gets.fail_times[-1] - killed_at < 4.0, gets.errors
    assert all(t >= killed_at for t in gets.fail_times), "no failure before the kill"


def test_up_repairs_then_second_up_changes_nothing(lab, measurements):
    doc = lab.json("up")
    assert doc["changed"] and sorted(doc["started"]) == sorted(lab.killed)
    assert doc["created"] == [] and doc["recreated"] == []
    assert doc["configured"] and set(doc["ansible"]["hosts"]) <= {
        f"hd-{NAME}-east-{h}" for h in ("lb1", "lb2", "app1", "app2", "db1")}
    start = time.monotonic()
    doc = lab.json("up")
    measurements["unchanged re-run of up (s)"] = round(time.monotonic() - start, 1)
    assert doc["changed"] is False and doc["configured"] is False, doc
    assert json.loads(lab.cli("status", "--json").out)["healthy"] is True


def test_converge_again_reports_changed_zero(lab, measurements):
    doc = lab.json("up", "--converge")
    measurements["second Ansible run over 10 hosts (s)"] = doc["ansible"]["seconds"]
    assert doc["configured"] and doc["ansible"]["failures"] == []
    assert doc["ansible"]["changed"] == 0, doc["ansible"]["hosts"]


def test_plan_after_up_has_no_changes(lab):
    doc = lab.json("plan")
    assert doc["changes"] == [], doc


def test_adding_regions_adds_only_those_regions_and_up_applies_the_plan(lab):
    """A warm and a cold region join: the plan names them, the probers of the other regions
    (which now probe them too), the firewall rules between subnets and the other regions'
    configuration (their databases keep a replication slot for, and accept replication from,
    the new regions' database hosts); 'up' applies exactly that plan, and on the existing
    regions only the database hosts change."""
    (lab.workdir / "hadeploy.yaml").write_text(CONFIG.replace("data: ", NORTH + SOUTH + "data: "))
    plan = lab.json("plan")
    new = ("north", "south")
    others = {f"recreate container hd-{NAME}-{r}-probe (its specification changed)"
              for r in ("east", "west")} | {
        f"configure configuration {r} (configuration changed)" for r in ("east", "west")}
    unexpected = [c for c in plan["changes"] if not any(r in c for r in new)
                  and c not in others and not c.startswith("create firewall")]
    assert plan["changes"] and unexpected == [], plan["changes"]
    assert others <= set(plan["changes"])
    doc = lab.json("up")
    assert doc["plan"] == plan["changes"], "up applies exactly the plan that plan printed"
    assert sorted(doc["recreated"]) == [f"container hd-{NAME}-east-probe",
                                        f"container hd-{NAME}-west-probe"]
    created = [c for c in doc["created"] if not c.endswith("firewall rule(s)")]
    assert created and all(any(r in c for r in new) for c in created), created
    hosts = doc["ansible"]["hosts"]
    assert set(hosts) == {f"hd-{NAME}-{r}-{h}" for r in new for h in ("lb1", "lb2", "app1",
                                                                       "db1")} | {
        f"hd-{NAME}-north-app2"} | {f"hd-{NAME}-{r}-{h}" for r in ("east", "west")
                                    for h in ("lb1", "lb2", "app1", "app2", "db1")}
    touched = {h for h, stats in hosts.items() if stats["changed"]
               and not any(r in h for r in new)}
    assert touched == {f"hd-{NAME}-east-db1", f"hd-{NAME}-west-db1"}, hosts
    # standby hosts were configured, then stopped again: north keeps 1 of 2, south none
    assert sorted(doc["stopped"]) == [f"container hd-{NAME}-north-app2",
                                      f"container hd-{NAME}-south-app1"]
    assert doc["dns"]["answer"] == [EAST_VIP] and doc["dns"]["changed"] is False
    status, root, _ = get_json(NORTH_VIP, "/")
    assert status == 200 and root["region"] == "north"
    data = {r["name"]: r["data"] for r in lab.json("status")["regions"]}
    assert {r: d["role"] for r, d in data.items()} == {
        "east": "primary", "west": "standby", "north": "standby", "south": "standby"}


def state_snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p): (p.lstat().st_mode, p.lstat().st_mtime_ns,
                     b"" if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def test_plan_says_no_changes_on_a_converged_lab_with_warm_and_cold_regions(lab):
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
