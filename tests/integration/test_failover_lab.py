"""Region failover on the real lab: watch, quorum probes, fencing, TSIG updates to the
regions' knotd servers (one per region, written and read by quorum).

Deployment "hdfo" (subnets 10.94.x): east (primary, hot), west (hot), north (cold: its
app host is configured, then stopped). Tests run in file order on one deployment. The
region-down test also scrapes the watch's Prometheus metrics (--metrics, on loopback).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hadeploy.targets.lab.podman import podman_env
from tests.conftest import HADEPLOY, run_cli
from tests.integration.test_lab import podman

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NAME = "hdfo"
ZONE = "hdfo.test"
# one authoritative server per region; three regions, so no witness
DNS_SERVERS = {"east": "10.94.1.6", "west": "10.94.2.6", "north": "10.94.3.6"}
VIP = {"east": "10.94.1.10", "west": "10.94.2.10", "north": "10.94.3.10"}
CONFIG = f"""\
name: {NAME}
dns: {{zone: {ZONE}, record: app, ttl: 2}}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.94.1.0/24}}
  - {{name: west, role: secondary, hosts: 1, lab_subnet: 10.94.2.0/24}}
  - {{name: north, role: secondary, hosts: 1, standby: cold, lab_subnet: 10.94.3.0/24}}
failover: {{probe_interval: 1.0, probe_timeout: 0.8, failure_threshold: 3, quorum: 2,
           hold_down: 5, min_interval: 0}}
data: {{enabled: false}}  # the failover engine alone; data moves are test_data_lab's
# Without a data tier an item stays in the region that took it: a drill that moves traffic
# reads the last seconds' writes back from another region and counts them lost (it must).
objectives: {{rto: 30, rpo: 60}}
lab: {{control_subnet: 10.94.0.0/24}}
"""


class Ctx:
    """A lab deployment driven through the CLI from its work directory."""

    def __init__(self, work: Path, name: str = NAME) -> None:
        self.work, self.state, self.name = work, work / "state", name
        self.env = {"HADEPLOY_STATE_DIR": str(self.state)}

    def cli(self, *args: str, timeout: float = 600):
        return run_cli(*args, cwd=self.work, env=self.env, timeout=timeout)

    def json(self, *args: str) -> dict:
        r = self.cli(*args, "--json")
        assert r.rc == 0, f"hadeploy {' '.join(args)} failed ({r.rc}):\n{r.err}"
        return json.loads(r.out)

    def audit(self) -> list[dict]:
        path = self.state / self.name / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def watch(self, seconds: float, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*HADEPLOY, "watch", "--max-seconds", str(seconds), *extra],
                                cwd=self.work, env={**os.environ, **self.env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answer() -> list[str]:
    """What a majority of the authoritative servers answers (the newest serial)."""
    from hadeploy.dns.rfc2136 import Rfc2136Provider
    from hadeploy.topology import NameServer

    servers = [NameServer(name, address) for name, address in DNS_SERVERS.items()]
    return Rfc2136Provider(servers, ZONE, None, timeout=1).read("app")


def answer_of(server: str) -> list[str]:
    import dns.message
    import dns.query

    resp = dns.query.udp(dns.message.make_query(f"app.{ZONE}.", "A"), DNS_SERVERS[server],
                         timeout=1)
    return sorted(a.address for rr in resp.answer for a in rr)


@pytest.fixture(scope="module")
def fo(tmp_path_factory) -> Ctx:
    from hadeploy.targets.lab.target import destroy

    destroy(NAME)
    work = tmp_path_factory.mktemp("fo")
    (work / "hadeploy.yaml").write_text(CONFIG)
    ctx = Ctx(work)
    doc = ctx.json("up")
    assert doc["dns"]["answer"] == [VIP["east"]]
    assert doc["stopped"] == [f"container hd-{NAME}-north-app1"], \
        "a cold standby is stopped after setup"
    yield ctx
    destroy(NAME)


def test_cold_standby_is_reported_as_standby(fo):
    r = fo.cli("status", "--json")
    doc = json.loads(r.out)
    assert r.rc == 0 and doc["healthy"] and not doc["degraded"], doc
    north = next(x for x in doc["regions"] if x["name"] == "north")
    assert north["serving_expected"] is False and north["healthy"] is False
    app = next(h for h in north["hosts"] if h["kind"] == "app")
    assert app["standby"] is True and app["container"] == "exited"


def test_only_signed_updates_with_the_right_key_are_accepted(fo):
    import dns.query
    import dns.rcode
    import dns.tsig
    import dns.tsigkeyring
    import dns.update

    unsigned = dns.update.UpdateMessage(f"{ZONE}.")
    unsigned.replace("app", 2, "A", VIP["west"])
    assert dns.query.tcp(unsigned, DNS_SERVERS["east"], timeout=2).rcode() == dns.rcode.NOTAUTH
    key = json.loads((fo.state / NAME / "dns" / "tsig.json").read_text())
    wrong = dns.update.UpdateMessage(
        f"{ZONE}.", keyring=dns.tsigkeyring.from_text({key["name"]: "c2VjcmV0c2VjcmV0c2VjcmV0"}),
        keyname=key["name"], keyalgorithm=dns.tsig.HMAC_SHA256)
    wrong.replace("app", 2, "A", VIP["west"])
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(wrong, DNS_SERVERS["east"], timeout=2)
    assert answer() == [VIP["east"]]
    # the right key, from anywhere but this machine (a host of the deployment): refused
    host = f"hd-{NAME}-west-app1"
    subprocess.run(["podman", "exec", "-i", host, "sh", "-c", "umask 077; cat > /tmp/k"],
                   input=f"hmac-sha256:{key['name']}:{key['secret']}\n", text=True,
                   env=podman_env(), check=True, timeout=60)
    r = podman("exec", host, "sh", "-c",
               f"printf 'server {DNS_SERVERS['east']}\\nzone {ZONE}.\\nupdate delete app.{ZONE}. A"
               f"\\nupdate add app.{ZONE}. 2 A {VIP['west']}\\nsend\\n' | knsupdate -k /tmp/k; "
               "rc=$?; rm -f /tmp/k; exit $rc", check=False)
    said = r.stdout + r.stderr
    assert r.returncode != 0 and any(code in said for code in ("NOTAUTH", "REFUSED", "BADKEY")), \
        said[-600:]
    assert [answer_of(name) for name in DNS_SERVERS] == [[VIP["east"]]] * 3


def test_a_blink_shorter_than_the_threshold_changes_nothing(fo):
    lbs = [f"hd-{NAME}-east-lb1", f"hd-{NAME}-east-lb2"]
    watch = fo.watch(9)
    time.sleep(3)
    podman("pause", *lbs)
    time.sleep(1.2)
    podman("unpause", *lbs)
    _out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    assert answer() == [VIP["east"]]
    assert not [a for a in fo.audit() if a.get("operation") == "failover"], err


class Metrics:
    """One scrape of a watch's /metrics, parsed (the deployment label checked, dropped)."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.text = text
        self.values: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = dict(s.labels)
                if s.name.startswith("hadeploy_"):
                    assert labels.pop("deployment") == NAME, s
                self.values[(s.name, frozenset(labels.items()))] = s.value

    def get(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, frozenset(labels.items())))

    def named(self, name: str) -> dict[frozenset, float]:
        return {labels: v for (n, labels), v in self.values.items() if n == name}


def scrape_until(port: int, ready, seconds: float = 30) -> Metrics:
    """Scrape until ``ready(metrics)`` (or the deadline: the caller asserts on the last)."""
    deadline, last = time.monotonic() + seconds, Metrics("")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                last = Metrics(r.read().decode())
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet
        if ready(last):
            break
        time.sleep(0.3)
    return last


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_drill_region_under_watch_fails_over_and_clients_follow(fo, measurements):
    """'hadeploy drill region' while 'watch --metrics' runs (the drill uses that watch): every
    container of east killed under the drill's TTL-honouring client; watch fails over by
    quorum; the drill splits the client's RTO with the audit log, then starts east again
    and rejoins it with 'up'. The metrics are scraped before and while east is down."""
    port = free_port()
    watch = fo.watch(300, "--metrics", f"127.0.0.1:{port}")
    time.sleep(3)
    before = scrape_until(port, lambda m: m.get("hadeploy_status_healthy") is not None
                          and m.get("hadeploy_probe_up", region="east",
                                    vantage="probe@west") is not None)
    (fo.work / "metrics-before.txt").write_text(before.text)
    assert before.get("hadeploy_active_region", region="east") == 1, before.text
    assert before.get("hadeploy_active_region", region="west") == 0
    assert before.get("hadeploy_region_up", region="east") == 1
    assert before.get("hadeploy_region_up", region="west") == 1
    assert before.get("hadeploy_probe_up", region="east", vantage="cli") == 1
    assert before.get("hadeploy_probe_up", region="east", vantage="probe@west") == 1
    assert before.get("hadeploy_probe_up", region="west", vantage="probe@east") == 1
    assert before.get("hadeploy_region_serving_expected", region="north") == 0
    assert before.get("hadeploy_region_fenced", region="east") == 0
    assert before.get("hadeploy_status_healthy") == 1
    assert before.get("hadeploy_probe_latency_seconds_count", region="east", vantage="cli") > 0
    assert sum(before.named("hadeploy_failovers_total").values()) == 0
    drill = subprocess.Popen([*HADEPLOY, "drill", "region", "--yes", "--json", "--report",
                              str(fo.work / "drill-region")], cwd=fo.work,
                             env={**os.environ, **fo.env}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        # while east is still down: the drill waits for 3 s of good answers before it
        # starts east again
        during = scrape_until(port, lambda m: m.get("hadeploy_active_region", region="west")
                              == 1 and m.get("hadeploy_region_up", region="east") == 0, 60)
        out, err = drill.communicate(timeout=600)
    finally:
        drill.kill()
    (fo.work / "metrics-during.txt").write_text(during.text)
    watch.send_signal(signal.SIGTERM)
    _out, werr = watch.communicate(timeout=30)
    assert watch.returncode == 0, f"watch must exit cleanly on SIGTERM:\n{werr}"
    assert f"watch: metrics on http://127.0.0.1:{port}/metrics" in werr
    assert drill.returncode == 0, err[-3000:] + out[-3000:]
    doc = json.loads(out)
    assert doc["met"] and doc["healed"] and doc["serving"] == "west", doc["problems"]
    assert doc["lost_writes"] > 0, "east's items are not in west: no data tier"
    assert f"hd-{NAME}-east-app1" in doc["victims"] and f"hd-{NAME}-east-lb1" in doc["victims"]
    split = doc["rto_split"]
    assert {"detection", "decision", "fence", "dns", "client convergence"} <= set(split), split
    assert sum(split.values()) == pytest.approx(doc["rto_seconds"], abs=0.05), split
    measurements["drill region: client RTO (s) / failed / split"] = (
        doc["rto_seconds"], doc["failed"], split)
    assert answer() == [VIP["west"]]
    assert during.get("hadeploy_failovers_total", to="west", cause="active_down") == 1, \
        during.text
    assert sum(during.named("hadeploy_failovers_total").values()) == 1
    assert during.get("hadeploy_active_region", region="east") == 0
    assert during.get("hadeploy_region_fenced", region="east") == 1
    assert during.get("hadeploy_probe_up", region="east", vantage="cli") == 0
    assert during.get("hadeploy_probe_up", region="west", vantage="probe@east") is None, \
        "east's prober is gone with its region: it has no vote, hence no value"
    assert during.get("hadeploy_last_failover_timestamp_seconds") > 0
    assert sum(during.named("hadeploy_failover_refusals_total").values()) == 0
    measurements["watch metrics: series in one scrape"] = len(during.values)
    records = fo.audit()
    decisions = [a["decision"] for a in records if a.get("operation") == "watch"]
    assert any(d.startswith("region east is down by quorum") for d in decisions), decisions
    drill_start = max(i for i, a in enumerate(records) if a["operation"] == "drill-start")
    assert not [a for a in records[drill_start:] if a["operation"] == "watch" and
                a["decision"].startswith("watch started")], "the drill used the running watch"
    done = [a for a in records if a.get("operation") == "failover" and a["result"] == "done"]
    assert len(done) == 1 and done[0]["from"] == "east" and done[0]["to"] == "west"
    assert "unreachable" in " ".join(done[0]["actions"])  # east's LBs are gone
    assert decisions[-1].startswith("watch stopped")
    hist = sqlite_rows(fo.state / NAME / "history.sqlite")
    assert hist["east"]["failures"] >= 3 and hist["east"]["vantages"] >= 2


def test_report_shows_the_outage_and_the_failover(fo):
    png = fo.work / "availability.png"
    doc = fo.json("report", "--since", "1h", "--png", str(png))
    east = next(r for r in doc["regions"] if r["name"] == "east")
    west = next(r for r in doc["regions"] if r["name"] == "west")
    # one incident, ended when east came back ('drill region' starts it again while watch
    # runs) or, if that took less than the hold-down, when watch stopped
    assert [i["ended"] in ("up by quorum", "watch stopped") for i in east["incidents"]] == [
        True], east
    assert 0 < east["downtime_seconds"] < east["observed_seconds"], east
    assert 0 < east["availability"] < 1 and west["availability"] == 1, doc["regions"]
    assert east["probes"]["cli"]["ok"] < east["probes"]["cli"]["probes"]
    assert [(f["from"], f["to"]) for f in doc["failovers"]] == [("east", "west")]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def sqlite_rows(path: Path) -> dict[str, dict[str, int]]:
    import sqlite3

    db = sqlite3.connect(path)
    out = {}
    for region, fails, vantages in db.execute(
            "SELECT region, SUM(1 - ok), COUNT(DISTINCT vantage) FROM probes GROUP BY region"):
        out[region] = {"failures": fails, "vantages": vantages}
    db.close()
    return out


def test_up_after_a_failover_does_not_move_traffic_back(fo):
    doc = fo.json("up")  # east is back (the drill started it): nothing to change
    assert doc["dns"]["answer"] == [VIP["west"]] and doc["dns"]["changed"] is False
    status = json.loads(fo.cli("status", "--json").out)
    east = next(r for r in status["regions"] if r["name"] == "east")
    assert status["active_region"] == "west" and east["fenced"] is True
    assert {"cli", "probe@west"} <= set(east["history"]["vantages"]), east["history"]
    conn = http.client.HTTPConnection(VIP["east"], 80, timeout=3)
    conn.request("POST", "/items", json.dumps({"id": "late"}), {"Content-Type":
                                                                "application/json"})
    assert conn.getresponse().status == 503, "a fenced region refuses writes after up"


def test_concurrent_failovers_to_a_cold_region_exactly_one_proceeds(fo, measurements):
    procs = [subprocess.Popen([*HADEPLOY, "failover", "--to", "north", "--reason", f"r{i}",
                               "--json"], cwd=fo.work, env={**os.environ, **fo.env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for i in range(2)]
    results = [(p.wait(120), p.communicate()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    docs = [json.loads(out) for _, (out, _) in results if out.strip()]
    done = [d for d in docs if d.get("result") == "done"]
    assert len(done) == 1, results
    other = [d for d in docs if d is not done[0]]
    assert codes == [0, 4] or other[0]["result"] == "already-active", results
    measurements["concurrent failovers (exit codes)"] = codes
    assert any("standby host" in a for a in done[0]["actions"]), done[0]
    assert answer() == [VIP["north"]]
    status, body = get(VIP["north"], "/")
    assert status == 200 and body["region"] == "north"


def get(host: str, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, 80, timeout=3)
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"{}")


KILL_BEFORE_DNS = """
import os, signal, sys
from pathlib import Path
from hadeploy import config, failover, targets
from hadeploy.state import StateDir

dep = config.load(Path("hadeploy.yaml"))
state = StateDir(Path(sys.argv[1]))
ctx = failover.FailoverContext.of(dep, state, targets.for_deployment(dep, state).runtime())
real = ctx.dns

class Dying:
    verify_timeout = 10.0
    read = real.read
    check_writable = real.check_writable
    def replace(self, *a):
        os.kill(os.getpid(), signal.SIGKILL)   # killed between fencing and the DNS change

ctx.dns = Dying()
failover.failover(ctx, failover.FailoverRequest(to="west", reason="kill test"))
"""


def test_a_run_killed_between_phases_converges_on_rerun(fo):
    r = subprocess.run([sys.executable, "-c", KILL_BEFORE_DNS, str(fo.state / NAME)],
                       cwd=fo.work, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert answer() == [VIP["north"]], "killed before the DNS change"
    journal = json.loads((fo.state / NAME / "failover-journal.json").read_text())
    assert journal["from"] == "north" and journal["to"] == "west"
    doc = fo.json("failover", "--to", "west", "--yes")
    assert doc["resumed"] is True and doc["result"] == "done" and doc["id"] == journal["id"]
    assert answer() == [VIP["west"]]
    assert not (fo.state / NAME / "failover-journal.json").exists()


def test_failback_lifts_the_fence_and_returns_to_the_primary(fo):
    doc = fo.json("failback", "--yes", "--reason", "east repaired")
    assert doc["result"] == "done" and doc["to"] == "east"
    assert any("lifted the fence of east" in a for a in doc["actions"]), doc
    assert answer() == [VIP["east"]]
    conn = http.client.HTTPConnection(VIP["east"], 80, timeout=3)
    conn.request("POST", "/items", json.dumps({"id": "back"}), {"Content-Type":
                                                                "application/json"})
    assert conn.getresponse().status == 201
    r = fo.cli("failover", "--to", "east", "--json")
    assert r.rc == 0 and json.loads(r.out)["result"] == "already-active"


def test_one_dns_server_down_names_resolve_and_a_failover_counts_without_it(fo, measurements):
    """north's DNS server is killed: a client's stub resolver moves on to the next server,
    status is degraded and names it, a failover succeeds by quorum and says north missed
    it; 'up' starts north's server with the newest zone, so its very first answers are
    already the new record; then back to east."""
    from tests.labclient import resolver

    victim = f"hd-{NAME}-north-dns"
    podman("kill", victim)
    try:
        first_north = resolver(ZONE, [DNS_SERVERS["north"], DNS_SERVERS["east"]])
        start = time.monotonic()
        assert first_north() == VIP["east"]
        measurements["a stub resolver whose first server is down: lookup (s)"] = round(
            time.monotonic() - start, 2)
        doc = json.loads(fo.cli("status", "--json").out)
        assert doc["degraded"] and doc["active_region"] == "east", doc["dns"]
        north = next(x for x in doc["dns"]["servers"] if x["name"] == "north")
        assert north["error"] and not north["agrees"]
        start = time.monotonic()
        done = fo.json("failover", "--to", "west", "--yes", "--reason", "dns drill")
        measurements["failover with one DNS server down (s)"] = round(
            time.monotonic() - start, 2)
        assert done["result"] == "done", done
        writes = done["dns"]["writes"]
        assert writes and all(list(w["missed"]) == ["north"] for w in writes), writes
        assert all(sorted(w["had"]) == ["east", "west"] for w in writes), writes
        assert answer() == [VIP["west"]]
    finally:
        up = fo.json("up")
    assert f"container {victim}" in up["started"], up
    assert answer_of("north") == [VIP["west"]]  # never the old record once it is back
    doc = json.loads(fo.cli("status", "--json").out)
    assert all(x["agrees"] for x in doc["dns"]["servers"]), doc["dns"]
    assert len({x["serial"] for x in doc["dns"]["servers"]}) == 1
    back = fo.json("failover", "--to", "east", "--yes", "--reason", "back")
    assert back["result"] == "done" and answer() == [VIP["east"]]
    assert json.loads(fo.cli("status", "--json").out)["healthy"]


def test_drill_operator_kills_a_failover_before_dns_and_the_rerun_finishes_it(fo, measurements):
    """'hadeploy drill operator': a failover from east (active again) killed by SIGKILL at
    its DNS change, after fencing; the drill runs it again, which resumes the journal."""
    r = fo.cli("drill", "operator", "--yes", "--json", "--report",
               str(fo.work / "drill-operator"))
    assert r.rc == 0, r.err[-3000:] + r.out[-3000:]
    doc = json.loads(r.out)
    assert doc["met"] and doc["serving"] == "west" and doc["victims"] == ["west"], doc
    assert "failover killed before DNS" in doc["phases"], doc["phases"]
    measurements["drill operator: client RTO (s) / failed"] = (doc["rto_seconds"],
                                                               doc["failed"])
    assert answer() == [VIP["west"]]
    assert not (fo.state / NAME / "failover-journal.json").exists()
    last = [a for a in fo.audit() if a.get("operation") == "failover"][-1]
    assert last["result"] == "done" and last["resumed"] is True and last["to"] == "west"


def test_drill_partition_the_cut_off_region_stops_taking_writes_by_itself(fo, measurements):
    """'hadeploy drill partition': west (active since the operator drill) is cut off from
    the other regions (their DNS servers with them) and this machine by firewall rules while
    its hosts run. The drill's watch fails over; the failover cannot reach west's load
    balancers, so it waits out their lease; west's lease agents, hearing only west's own
    DNS server (one of three, no majority), refuse writes within the lease — before east
    takes its first. Then the cut is lifted
    and 'up' brings west back, fenced."""
    r = fo.cli("drill", "partition", "--yes", "--json", "--report",
               str(fo.work / "drill-partition"), timeout=900)
    assert r.rc == 0, r.err[-3000:] + r.out[-3000:]
    doc = json.loads(r.out)
    assert doc["met"] and doc["serving"] == "east" and doc["region"] == "west", doc["problems"]
    cut = doc["isolation"]
    bound = cut["lease_bound"]
    assert bound == pytest.approx(5.75)  # the default lease, 5 s
    # west took writes from inside for a while (nobody could tell it otherwise) ...
    assert cut["inside_writes"] > 20 and cut["refusing_from"] is not None, cut
    # ... and stopped within its lease, before east acknowledged anything
    assert cut["refusing_from"] <= bound + 0.5, cut
    assert cut["overlap_seconds"] is not None and cut["overlap_seconds"] < 0, cut
    assert "failover: lease" in doc["phases"], doc["phases"]
    assert doc["rto_split"]["lease"] >= 4.0, doc["rto_split"]
    measurements["drill partition: client RTO (s) / lease wait (s) / west refusing from (s)"] = (
        doc["rto_seconds"], doc["rto_split"]["lease"], cut["refusing_from"])
    assert answer() == [VIP["east"]]
    listing = subprocess.run(["iptables", "-S"], capture_output=True, text=True,
                             check=True).stdout
    assert f"hadeploy:{NAME}:partition" not in listing, "the cut was not lifted"
    status = fo.json("status")
    assert status["dns"]["writer"] == "east" and status["active_region"] == "east"
    west = next(x for x in status["regions"] if x["name"] == "west")
    assert west["fenced"] and west["healthy"], west
    failover = [a for a in fo.audit() if a.get("operation") == "failover"][-1]
    assert failover["to"] == "east" and any("west unreachable" in a
                                            for a in failover["actions"]), failover
