"""`hadeploy watch --metrics`: the address, the metrics of a watcher's rounds and decisions,
the slower status gather, a real scrape over loopback, and the shipped alert rules
(promtool) and Grafana dashboard."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hadeploy import config
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.metrics import (
    DEFAULT_PORT,
    ListenAddr,
    WatchMetrics,
    monitoring_file,
    parse_addr,
    serve,
)
from hadeploy.state import StateDir
from hadeploy.status import BackupStatus, DrillStatus, FilesBackupStatus, StatusDoc
from tests.unit.test_watch import DEP, World, rounds

MONITORING = Path(__file__).resolve().parents[2] / "cli" / "hadeploy" / "monitoring"
PROMTOOL = Path(sys.executable).parent / "promtool"


def samples(registry) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape: (name, labels without 'deployment') → value."""
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            assert labels.pop("deployment", DEP.name) == DEP.name, s
            out[(s.name, frozenset(labels.items()))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


# --- the address ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "host", "port"), [
    ("", "127.0.0.1", DEFAULT_PORT),
    ("9470", "127.0.0.1", 9470),
    ("127.0.0.1:9468", "127.0.0.1", 9468),
    ("0.0.0.0:9100", "0.0.0.0", 9100),
    ("localhost", "localhost", DEFAULT_PORT),
    ("metrics.example.internal:80", "metrics.example.internal", 80),
    ("[::1]:9468", "::1", 9468),
    ("[::]", "::", DEFAULT_PORT),
])
def test_addresses_that_parse(text, host, port):
    assert parse_addr(text) == ListenAddr(host, port)


@pytest.mark.parametrize(("text", "why"), [
    (":9468", "no host"),
    ("127.0.0.1:", "port"),
    ("127.0.0.1:99999", "1 to 65535"),
    ("127.0.0.1:0", "1 to 65535"),
    ("127.0.0.1:http", "port"),
    ("::1", "brackets"),
    ("[::1", "brackets"),
    ("[::1]9468", "brackets"),
    ("[nonsense]:1", "not an IPv6 address"),
    ("bad host:1", "neither an IP address"),
    ("a:b:c", "brackets"),
])
def test_addresses_refused_with_a_hint(text, why):
    with pytest.raises(HadeployError) as info:
        parse_addr(text)
    assert info.value.code is ExitCode.BAD_INPUT
    assert why in info.value.message and repr(text) in info.value.message
    assert "--metrics 127.0.0.1:9468" in (info.value.hint or "")


def test_loopback_is_told_apart():
    assert parse_addr("9468").loopback and parse_addr("[::1]:1").loopback
    assert parse_addr("localhost").loopback
    assert not parse_addr("0.0.0.0:1").loopback and not parse_addr("10.0.0.1:1").loopback
    assert str(parse_addr("[::1]:9")) == "[::1]:9"
    assert parse_addr("9").url == "http://127.0.0.1:9/metrics"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HadeployError) as info:
            serve(WatchMetrics(DEP).registry, ListenAddr("127.0.0.1", port))
    assert info.value.code is ExitCode.BAD_INPUT
    assert f"127.0.0.1:{port}: the port is in use" in info.value.message
    assert f"--metrics 127.0.0.1:{port + 1}" in (info.value.hint or "")


def test_an_address_of_another_machine_is_a_clear_error():
    with pytest.raises(HadeployError) as info:  # TEST-NET-1: never an address of this host
        serve(WatchMetrics(DEP).registry, ListenAddr("192.0.2.1", free_port()))
    assert "not an address of this machine" in info.value.message
    assert info.value.code is ExitCode.BAD_INPUT


def test_cli_refuses_a_bad_address_before_anything(cli):
    r = cli("watch", "--metrics", "127.0.0.1:http")
    assert r.rc == 2, r.err
    assert "error: --metrics '127.0.0.1:http' is not an address" in r.err
    assert "fix: pass a port" in r.err and "Traceback" not in r.err


def test_cli_refuses_a_port_in_use_before_probing(cli, tmp_path):
    StateDir.for_deployment("demo", tmp_path / "state").save_deployment(
        config.from_regions(["east", "west"]))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("watch", "--metrics", f"127.0.0.1:{port}", "--max-seconds", "0")
    assert r.rc == 2, r.err
    assert f"error: cannot serve metrics on 127.0.0.1:{port}: the port is in use" in r.err
    assert "Traceback" not in r.err
    assert not (tmp_path / "state" / "demo" / "history.sqlite").exists(), "nothing probed"
    assert not (tmp_path / "state" / "demo" / "audit.jsonl").exists(), "no watch started"


def test_cli_prints_the_shipped_rules_and_dashboard(cli):
    r = cli("watch", "--print-alert-rules")
    assert r.rc == 0 and r.out == (MONITORING / "alerts.yml").read_text()
    r = cli("watch", "--print-dashboard")
    assert r.rc == 0 and json.loads(r.out)["uid"] == "hadeploy-watch"


# --- a watcher's rounds and decisions ------------------------------------------------------

@pytest.fixture
def world(tmp_path, monkeypatch):
    return World(tmp_path, monkeypatch)


def watcher(world: World) -> tuple[object, WatchMetrics]:
    m = WatchMetrics(DEP)
    w = world.watcher()
    w.observer = m
    return w, m


def test_rounds_show_probes_regions_and_the_active_region(world):
    w, m = watcher(world)
    rounds(w, 2)
    found = samples(m.registry)
    assert value(found, "hadeploy_active_region", region="east") == 1
    assert value(found, "hadeploy_active_region", region="west") == 0
    assert value(found, "hadeploy_probe_up", region="east", vantage="cli") == 1
    assert value(found, "hadeploy_region_up", region="west") == 1
    assert value(found, "hadeploy_region_fenced", region="east") == 0
    assert value(found, "hadeploy_dns_up") == 1
    assert value(found, "hadeploy_probes_total", region="east", vantage="cli",
                 result="ok") == 2
    assert value(found, "hadeploy_probe_latency_seconds_count", region="east",
                 vantage="cli") == 2
    assert value(found, "hadeploy_probe_latency_seconds_bucket", region="east",
                 vantage="cli", le="0.005") == 2  # the fake probe takes 1 ms
    assert value(found, "hadeploy_watch_rounds_total") == 2
    assert value(found, "hadeploy_failovers_total", to="west", cause="active_down") == 0
    info = [dict(k[1]) for k in found if k[0] == "hadeploy_build_info"]
    assert len(info) == 1 and info[0]["target"] == "lab" and info[0]["version"]


def test_a_failover_is_counted_and_the_views_follow_it(world):
    w, m = watcher(world)
    rounds(w, 1)
    world.up["east"] = False
    rounds(w, 4)
    assert world.failovers == ["west"]
    found = samples(m.registry)
    assert value(found, "hadeploy_failovers_total", to="west", cause="active_down") == 1
    assert value(found, "hadeploy_failovers_total", to="east", cause="active_down") == 0
    assert value(found, "hadeploy_active_region", region="west") == 1
    assert value(found, "hadeploy_region_up", region="east") == 0
    assert value(found, "hadeploy_region_down_votes", region="east") == 1
    assert value(found, "hadeploy_region_fenced", region="east") == 1
    assert value(found, "hadeploy_probe_up", region="east", vantage="cli") == 0
    assert value(found, "hadeploy_probes_total", region="east", vantage="cli",
                 result="fail") == 4
    assert value(found, "hadeploy_last_failover_timestamp_seconds") > 0
    assert value(found, "hadeploy_probe_latency_seconds_count", region="east",
                 vantage="cli") == 1, "only successful probes have a latency"


def test_refusals_are_counted_once_per_episode_by_reason(world):
    w, m = watcher(world)
    world.up["east"] = False
    rounds(w, 3)
    world.up["east"], world.up["west"] = True, False  # too soon after the failover
    rounds(w, 6)
    found = samples(m.registry)
    assert value(found, "hadeploy_failover_refusals_total", reason="min_interval") == 1
    assert value(found, "hadeploy_failover_refusals_total", reason="no_healthy_region") == 0


def test_no_healthy_region_and_a_refused_failover_are_refusals(world, tmp_path, monkeypatch):
    w, m = watcher(world)
    world.up = {"east": False, "west": False}
    rounds(w, 4)
    assert value(samples(m.registry), "hadeploy_failover_refusals_total",
                 reason="no_healthy_region") == 1

    def refuse(to, reason, seen=None):
        raise HadeployError("replication lag over the budget", code=ExitCode.REFUSED)

    world2 = World(tmp_path / "2", monkeypatch)
    w2, m2 = watcher(world2)
    w2.do_failover = refuse
    world2.up["east"] = False
    rounds(w2, 3)
    found = samples(m2.registry)
    assert value(found, "hadeploy_failover_refusals_total", reason="refused") == 1
    assert value(found, "hadeploy_failovers_total", to="west", cause="active_down") == 0


def test_a_probers_result_read_twice_is_counted_once():
    from hadeploy.quorum import Vote
    from hadeploy.targets.lab.naming import lab_topology
    from hadeploy.watch import RoundView

    m = WatchMetrics(DEP)
    vote = Vote("probe@west", "east", True, 0, 5, at=1000.0, status=200, latency_ms=3.0)
    for at in (1000.5, 1001.5):  # the watcher asked before the prober probed again
        m.round(RoundView(at, lab_topology(DEP), [vote], {}, {}, "east", None, 0.0))
    found = samples(m.registry)
    assert value(found, "hadeploy_probes_total", region="east", vantage="probe@west",
                 result="ok") == 1
    assert value(found, "hadeploy_probe_up", region="east", vantage="probe@west") == 1


def test_unreadable_dns_drops_the_active_region_and_says_so(world):
    w, m = watcher(world)

    class Broken:
        def read(self, record):
            raise HadeployError("SERVFAIL")

    w.runtime.dns = lambda topo: Broken()
    rounds(w, 1)
    found = samples(m.registry)
    assert value(found, "hadeploy_dns_up") == 0
    assert not [k for k in found if k[0] == "hadeploy_active_region"]


def test_replication_lag_comes_from_the_rounds():
    from hadeploy.targets.lab.naming import lab_topology
    from hadeploy.watch import RoundView

    m = WatchMetrics(DEP)
    data = {"east": SimpleNamespace(role="primary", lag_bytes=None, lag_seconds=None),
            "west": SimpleNamespace(role="standby", lag_bytes=4096, lag_seconds=2.5)}
    m.round(RoundView(1.0, lab_topology(DEP), [], {}, data, "east", None, 0.0))
    found = samples(m.registry)
    assert value(found, "hadeploy_replication_lag_bytes", region="west") == 4096
    assert value(found, "hadeploy_replication_lag_seconds", region="west") == 2.5
    assert value(found, "hadeploy_replication_lag_seconds", region="east") is None
    assert value(found, "hadeploy_database_up", region="east") == 1
    assert value(found, "hadeploy_rpo_budget_seconds") == DEP.data.rpo_budget


def test_a_broken_observer_never_breaks_the_round(world):
    w, m = watcher(world)
    logged = []
    m.log = logged.append
    m._round_metrics = lambda view: 1 / 0
    rounds(w, 3)
    assert value(samples(m.registry), "hadeploy_gather_errors_total", source="watch") == 3
    assert len(logged) == 1 and "ZeroDivisionError" in logged[0]


# --- the status gather ---------------------------------------------------------------------

def status_doc() -> StatusDoc:
    base = {"last_backup_at": "2024-01-01T00:00:00Z", "last_backup_error": None,
            "last_verify_at": "2024-01-01T00:00:00Z", "last_verify_error": None}
    files = FilesBackupStatus(**base, last_backup_age_seconds=100.0, snapshot="abc", files=3,
                              last_verify_ok=False, last_verify_age_seconds=50.0,
                              problems=[])
    backup = BackupStatus(**base, last_backup_label="full", last_backup_age_seconds=3600.0,
                          last_verify_ok=True, last_verify_label="full",
                          last_verify_age_seconds=7200.0, problems=["files: x"], files=files)
    doc = {"deployment": DEP.name, "target": "lab", "checked_at": "2024-01-01T00:00:00Z",
           "active_region": "east", "healthy": True, "degraded": True,
           "dns": {"server": "x", "port": 53, "zone": "z", "record": "app", "ttl": 5,
                   "answer": [], "error": None}, "regions": []}
    region = {"name": "east", "role": "primary", "standby": "hot", "active": True,
              "vip": "1.2.3.4", "url": "http://1.2.3.4", "healthy": True, "lb_master": None,
              "serving_expected": True, "fenced": False, "promoted": False,
              "endpoint": {"status": 200, "latency_ms": 1.0, "error": None}, "hosts": [],
              "history": None}
    return StatusDoc.model_validate({
        **doc, "regions": [{**region, "backup": backup.model_dump()},
                           {**region, "name": "west", "backup": None}],
        "drills": [DrillStatus(scenario="lb", at="2024-01-01T00:00:00Z", met=False,
                               rto_seconds=42.5, rpo_seconds=0.0, failed=3, requests=90,
                               lost_writes=2, report=None).model_dump(),
                   DrillStatus(scenario="dns", at="2024-01-01T00:00:00Z", met=True,
                               rto_seconds=None, rpo_seconds=0.0, failed=0, requests=9,
                               lost_writes=0, report=None).model_dump()]})


def test_the_status_gather_exposes_backups_and_drills():
    m = WatchMetrics(DEP, status=status_doc)
    m.gather()
    found = samples(m.registry)
    age = value(found, "hadeploy_backup_age_seconds", region="east", kind="database")
    assert 3600 <= age < 3700, "the age keeps growing from when it was read"
    assert value(found, "hadeploy_backup_age_seconds", region="east", kind="files") >= 100
    assert value(found, "hadeploy_backup_verify_age_seconds", region="east",
                 kind="database") >= 7200
    assert value(found, "hadeploy_backup_verify_ok", region="east", kind="database") == 1
    assert value(found, "hadeploy_backup_verify_ok", region="east", kind="files") == 0
    assert value(found, "hadeploy_backup_problems", region="east") == 1
    assert value(found, "hadeploy_backup_max_age_seconds") == 26 * 3600
    assert value(found, "hadeploy_drill_objectives_met", scenario="lb") == 0
    assert value(found, "hadeploy_drill_objectives_met", scenario="dns") == 1
    assert value(found, "hadeploy_drill_rto_seconds", scenario="lb") == 42.5
    assert value(found, "hadeploy_drill_rto_seconds", scenario="dns") is None
    assert value(found, "hadeploy_drill_lost_writes", scenario="lb") == 2
    assert value(found, "hadeploy_drill_timestamp_seconds", scenario="lb") == 1704067200
    assert value(found, "hadeploy_status_degraded") == 1
    assert value(found, "hadeploy_gather_last_success_timestamp_seconds", source="status") > 0


def test_a_failing_gather_is_counted_logged_once_and_recovers():
    logged: list[str] = []
    calls = {"n": 0}

    def status():
        calls["n"] += 1
        if calls["n"] <= 3:
            raise HadeployError("the DNS server does not answer")
        return status_doc()

    m = WatchMetrics(DEP, status=status, log=logged.append)
    for _ in range(3):
        m.gather()
    found = samples(m.registry)
    assert value(found, "hadeploy_gather_errors_total", source="status") == 3
    assert not [k for k in found if k[0] == "hadeploy_gather_last_success_timestamp_seconds"]
    assert len(logged) == 1 and "the DNS server does not answer" in logged[0]
    m.gather()
    assert value(samples(m.registry), "hadeploy_drill_lost_writes", scenario="lb") == 2
    assert logged[-1] == "metrics: gathering status data works again"


def test_a_slow_gather_does_not_hold_the_rounds(world):
    import threading

    release = threading.Event()
    w, m = watcher(world)
    m.status = lambda: (release.wait(30), status_doc())[1]
    stop = threading.Event()
    thread = m.start(stop)
    rounds(w, 3)  # while the gather hangs
    assert value(samples(m.registry), "hadeploy_watch_rounds_total") == 3
    release.set()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


# --- a real scrape -------------------------------------------------------------------------

def test_a_scrape_over_http_while_watch_runs(world):
    import threading

    w, m = watcher(world)
    port = free_port()
    server = serve(m.registry, ListenAddr("127.0.0.1", port))
    try:
        stop = threading.Event()
        world.up["east"] = False
        runner = threading.Thread(target=w.run, args=(stop, 30), daemon=True)
        runner.start()
        found: dict = {}
        for _ in range(300):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            found = {(s.name, s.labels.get("to"), s.labels.get("cause")): s.value
                     for f in text_string_to_metric_families(text) for s in f.samples}
            if found.get(("hadeploy_failovers_total", "west", "active_down")) == 1:
                break
            stop.wait(0.1)
        stop.set()
        runner.join(10)
    finally:
        server.shutdown()
        server.server_close()
    assert found.get(("hadeploy_failovers_total", "west", "active_down")) == 1
    assert "# TYPE hadeploy_probe_latency_seconds histogram" in text
    assert "_created" not in text


# --- the shipped rules and dashboard -------------------------------------------------------

def populated() -> set[str]:
    """The names of every sample a watch can expose."""
    from hadeploy.targets.lab.naming import lab_topology
    from hadeploy.watch import RoundView

    m = WatchMetrics(DEP, status=status_doc)
    from hadeploy.quorum import Vote
    vote = Vote("cli", "east", True, 0, 1, at=1.0, latency_ms=2.0)
    data = {"west": SimpleNamespace(role="standby", lag_bytes=1, lag_seconds=1.0)}
    from hadeploy.quorum import assess
    verdicts = {r.name: assess(r.name, [vote], DEP.failover) for r in DEP.regions}
    m.round(RoundView(1.0, lab_topology(DEP), [vote], verdicts, data, "east", None, 5.0))
    m.gather()
    return {name for name, _ in samples(m.registry)}


def referenced(text: str) -> set[str]:
    return set(re.findall(r"\b(hadeploy_[a-z_]+)", text))


def test_every_metric_the_rules_and_dashboard_use_exists():
    exposed = populated()
    rules = yaml.safe_load(monitoring_file("alerts.yml"))
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    dashboard = json.loads(monitoring_file("grafana-dashboard.json"))
    panel_exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    used = referenced(exprs) | referenced(panel_exprs)
    assert used - exposed == set()
    assert {"hadeploy_active_region", "hadeploy_region_up", "hadeploy_failovers_total",
            "hadeploy_replication_lag_seconds", "hadeploy_backup_age_seconds",
            "hadeploy_backup_verify_ok", "hadeploy_drill_objectives_met"} <= referenced(exprs)
    missing = {n for n in exposed if n.startswith("hadeploy_")} - referenced(panel_exprs) - {
        "hadeploy_probe_latency_seconds_count", "hadeploy_probe_latency_seconds_sum",
        "hadeploy_build_info", "hadeploy_watch_rounds_total", "hadeploy_region_down_votes",
        "hadeploy_region_serving_expected", "hadeploy_dns_up", "hadeploy_database_up",
        "hadeploy_status_healthy", "hadeploy_status_degraded", "hadeploy_backup_problems",
        "hadeploy_backup_max_age_seconds", "hadeploy_backup_verify_max_age_seconds",
        "hadeploy_drill_timestamp_seconds", "hadeploy_objective_rpo_seconds",
        "hadeploy_gather_duration_seconds", "hadeploy_last_failover_timestamp_seconds"}
    assert missing == set(), "a metric nobody looks at"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {p["type"] for p in dashboard["panels"]} <= {"row", "stat", "timeseries",
                                                        "state-timeline"}


def promtool() -> str:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: scripts/setup.sh extracts it from Debian's "
                    "prometheus package")
    return str(PROMTOOL)


def test_promtool_checks_the_rules():
    r = subprocess.run([promtool(), "check", "rules", str(MONITORING / "alerts.yml")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 17 rules found" in r.stdout


PROMTOOL_TESTS = """\
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'hadeploy_active_region{{deployment="d",region="east"}}'
        values: '1x10'
      - series: 'hadeploy_active_region{{deployment="d",region="west"}}'
        values: '0x10'
      - series: 'hadeploy_region_up{{deployment="d",region="east"}}'
        values: '1 1 0x8'
      - series: 'hadeploy_region_up{{deployment="d",region="west"}}'
        values: '1x10'
      - series: 'hadeploy_region_serving_expected{{deployment="d",region="west"}}'
        values: '1x10'
    alert_rule_test:
      - alertname: HadeployActiveRegionDown
        eval_time: 3m
        exp_alerts: []
      - alertname: HadeployActiveRegionDown
        eval_time: 5m
        exp_alerts:
          - exp_labels: {{severity: critical, deployment: d, region: east}}
            exp_annotations:
              summary: "Active region east of d is down by quorum"
              description: {active_down}
      - alertname: HadeployNoActiveRegion
        eval_time: 5m
        exp_alerts: []
      - alertname: HadeployRegionDown
        eval_time: 9m
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: 'hadeploy_active_region{{deployment="d",region="east"}}'
        values: '1 1 0x8'
      - series: 'hadeploy_active_region{{deployment="d",region="west"}}'
        values: '0x10'
      - series: 'hadeploy_replication_lag_seconds{{deployment="d",region="west"}}'
        values: '1 1 10x8'
      - series: 'hadeploy_rpo_budget_seconds{{deployment="d"}}'
        values: '5x10'
      - series: 'hadeploy_failovers_total{{deployment="d",to="west",cause="active_down"}}'
        values: '0 0 0 1x7'
    alert_rule_test:
      - alertname: HadeployNoActiveRegion
        eval_time: 4m
        exp_alerts:
          - exp_labels: {{severity: critical, deployment: d}}
            exp_annotations:
              summary: "DNS of d names 0 regions, not exactly one"
              description: {no_active}
      - alertname: HadeployReplicationLagAboveRpoBudget
        eval_time: 3m
        exp_alerts: []
      - alertname: HadeployReplicationLagAboveRpoBudget
        eval_time: 5m
        exp_alerts:
          - exp_labels: {{severity: warning, deployment: d, region: west}}
            exp_annotations:
              summary: "Region west of d lags 10s behind"
              description: {lag}
      - alertname: HadeployFailover
        eval_time: 2m
        exp_alerts: []
      - alertname: HadeployFailover
        eval_time: 5m
        exp_alerts:
          - exp_labels: {{severity: warning, deployment: d, to: west, cause: active_down}}
            exp_annotations:
              summary: "hadeploy watch moved d to west (active_down)"
              description: {failover}
"""


def test_promtool_unit_tests_of_four_alerts(tmp_path):
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    described = {r["alert"]: r["annotations"]["description"].replace("{{ $labels.to }}", "west")
                 for g in rules["groups"] for r in g["rules"]}
    path = tmp_path / "alerts_test.yml"
    path.write_text(PROMTOOL_TESTS.format(
        rules=json.dumps(str(MONITORING / "alerts.yml")),
        active_down=json.dumps(described["HadeployActiveRegionDown"]),
        no_active=json.dumps(described["HadeployNoActiveRegion"]),
        lag=json.dumps(described["HadeployReplicationLagAboveRpoBudget"]),
        failover=json.dumps(described["HadeployFailover"])))
    r = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
