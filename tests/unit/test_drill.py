"""Drills: what a client saw, turned into RTO, RPO and a verdict; the reports."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from hadeploy import drill
from hadeploy.drill import Sample


def samples(spec: str, start: float = 100.0, step: float = 0.1) -> list[Sample]:
    """'+' a good request, '-' a failed one, one every ``step`` seconds from ``start``."""
    return [Sample(start + i * step, "POST" if i % 2 else "GET", c == "+", "10.0.0.1",
                   "201" if c == "+" else "503") for i, c in enumerate(spec)]


def test_no_failure_is_an_rto_of_zero():
    out = drill.analyze(samples("+" * 60), fault_at=101.0, ended_at=106.0)
    assert out.failed == 0 and out.rto_seconds == 0.0 and out.settled


def test_rto_runs_from_the_fault_to_the_first_good_answer_after_the_last_failure():
    # good until 101.0, failures at 101.0..101.9 (a good one in between), then good
    spec = "+" * 10 + "---+------" + "+" * 40
    out = drill.analyze(samples(spec), fault_at=101.0, ended_at=106.0)
    assert out.failed == 9 and out.first_failure == pytest.approx(101.0)
    assert out.last_failure == pytest.approx(101.9) and out.rto_seconds == pytest.approx(1.0)
    assert out.settled and out.failed_before_fault == 0
    # the run ended too soon after the last failure: not settled
    assert not drill.analyze(samples(spec), fault_at=101.0, ended_at=103.0).settled
    # never recovered
    never = drill.analyze(samples("+" * 10 + "-" * 20), fault_at=101.0, ended_at=104.0)
    assert never.rto_seconds is None and not never.settled


def test_failures_before_the_fault_are_counted_and_judged():
    out = drill.analyze(samples("+-" + "+" * 60), fault_at=101.0, ended_at=106.3)
    assert out.failed_before_fault == 1 and out.failed == 0
    problems = drill.judge(out, 0.0, {"rto": 30, "rpo": 0})
    assert problems and "before the fault" in problems[0]


def test_rpo_is_the_span_of_lost_acknowledged_writes_before_the_fault():
    acked = [("a", 90.0), ("b", 98.5), ("c", 99.5), ("d", 101.0)]
    lost = drill.lost_writes(acked, lambda item: item in ("a", "d"))
    assert lost == [("b", 98.5), ("c", 99.5)]
    assert drill.rpo_seconds(lost, fault_at=100.0) == 1.5
    assert drill.rpo_seconds([], fault_at=100.0) == 0.0


def test_judge_compares_with_the_objectives():
    spec = "+" * 10 + "-" * 25 + "+" * 40
    out = drill.analyze(samples(spec), fault_at=101.0, ended_at=108.0)
    assert drill.judge(out, 0.0, {"rto": 5, "rpo": 0}) == []
    slow = drill.judge(out, 0.0, {"rto": 1, "rpo": 0})
    assert slow and "recovery took 2.5 s, the objective is 1 s" in slow[0]
    lossy = drill.judge(out, 2.0, {"rto": 5, "rpo": 1})
    assert lossy and "lost over 2.0 s" in lossy[0]


def test_timeline_buckets_requests_per_100_ms():
    rows = drill.timeline(samples("++-+", step=0.05), start=100.0)
    assert rows == [(0.0, 2, 0), (0.1, 1, 1)]


def report(**over) -> drill.Report:
    base: dict = {
        "scenario": "app-host", "deployment": "demo", "target": "lab",
        "started_at": "2026-11-28T20:00:00Z", "fault": "killed hd-demo-east-app1",
        "victims": ["hd-demo-east-app1"], "region": "east",
        "phases": {"fault": 2.0, "healed": 9.5}, "requests": 200, "failed": 0,
        "failed_by_method": {}, "failed_before_fault": 0, "rto_seconds": 0.0,
        "settled": True, "acked_writes": 100, "lost_writes": 0, "lost_sample": [],
        "rpo_seconds": 0.0, "objectives": {"rto": 30.0, "rpo": 0.0}, "met": True,
        "problems": [], "healed": True, "heal": "started hd-demo-east-app1: healthy again",
        "timeline": drill.timeline(samples("+" * 100), start=100.0)}
    base.update(over)
    return drill.Report(**base)


def test_reports_are_written_as_json_markdown_and_png(tmp_path: Path):
    paths = drill.write_reports(report(), tmp_path / "r")
    doc = json.loads(Path(paths["json"]).read_text())
    assert doc["scenario"] == "app-host" and doc["met"] is True
    md = Path(paths["markdown"]).read_text()
    assert "**MET**" in md and "killed hd-demo-east-app1 (region east)" in md
    assert "| fault | 2.00 |" in md
    assert Path(paths["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = drill.render_markdown(report(met=False, problems=["recovery took 40.0 s"],
                                       rto_seconds=40.0))
    assert "**NOT MET**" in bad and "- recovery took 40.0 s" in bad


class _App(BaseHTTPRequestHandler):
    items: ClassVar[set[str]] = set()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.items.add(body["id"])
        self._answer(201)

    def do_GET(self):
        self._answer(200 if self.path.rsplit("/", 1)[-1] in self.items else 404)

    def _answer(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_the_client_writes_reads_back_and_honours_the_ttl():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    asked = []

    def resolve():
        asked.append(1)
        return "127.0.0.1", 3600.0
    try:
        client = drill.Client("t", resolve, port=server.server_address[1], gap=0.01)
        client.start()
        import time

        time.sleep(0.5)
        client.stop()
    finally:
        server.shutdown()
    assert len(client.acked) > 5 and all(s.ok for s in client.samples)
    assert {s.method for s in client.samples} == {"GET", "POST"}
    assert len(asked) == 1, "one resolution within the TTL"
    assert drill.lost_writes(client.acked, lambda i: i in _App.items) == []


def test_a_client_without_a_dns_answer_records_failures():
    client = drill.Client("t", lambda: (None, 0.0))
    assert client.request("GET", "/") is None
    assert client.samples[-1].detail == "no DNS answer"


def test_status_shows_the_last_drill_of_each_scenario(tmp_path: Path):
    from hadeploy.status import _drill_line, _drills

    records = [{"operation": "drill", "scenario": "lb", "at": "t1", "met": False,
                "rto_seconds": 40.0, "rpo_seconds": 0, "failed": 9, "requests": 90,
                "lost_writes": 0, "report": "/r1.md"},
               {"operation": "up", "at": "t2"},
               {"operation": "drill", "scenario": "lb", "at": "t3", "met": True,
                "rto_seconds": 0.4, "rpo_seconds": 0, "failed": 2, "requests": 90,
                "lost_writes": 0, "report": "/r2.md"},
               {"operation": "drill", "scenario": "app-host", "at": "t4", "met": True,
                "rto_seconds": 0.0, "rpo_seconds": 0, "failed": 0, "requests": 50,
                "lost_writes": 0, "report": None}]
    (tmp_path / "audit.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records) + "\n{torn")
    drills = _drills(tmp_path)
    assert [(d.scenario, d.at) for d in drills] == [("app-host", "t4"), ("lb", "t3")]
    line, style = _drill_line(drills[1].model_dump())
    assert "drill lb: met at t3 (RTO 0.40 s, 2 of 90 requests failed" in line
    assert style == "dim"
    assert _drills(tmp_path / "missing") == []


def test_drill_refuses_bad_input_with_exit_codes(cli, tmp_path: Path):
    r = cli("drill", "meteor", "--yes")
    assert r.rc == 2 and "app-host" in r.err and "Traceback" not in r.err
    r = cli("drill", "app-host", "--yes")  # nothing built here
    assert r.rc == 2 and "no deployment found" in r.err and "Traceback" not in r.err
    r = cli("drill", "lb", "--yes", "--timeout", "0")
    assert r.rc == 2 and "--timeout" in r.err


def test_an_unwritable_report_directory_is_refused_before_any_fault(tmp_path: Path):
    from hadeploy.commands.drill import _writable
    from hadeploy.errors import HadeployError

    _writable(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(HadeployError, match=r"cannot be created|not a writable directory"):
        _writable(tmp_path / "file")


def _at(seconds: float) -> str:
    import datetime as dt

    from hadeploy.state import format_time

    return format_time(dt.datetime.fromtimestamp(seconds, dt.UTC))


def test_the_rto_is_split_into_detection_decision_failover_phases_and_convergence():
    fault = 1_800_000_000.0
    records = [
        {"operation": "watch", "at": _at(fault - 50), "state": "down", "region": "old"},
        {"operation": "watch", "at": _at(fault + 3.0), "decision": "region east is down by "
         "quorum", "state": "down", "region": "east"},
        {"operation": "watch", "at": _at(fault + 3.1), "action": "failover", "to": "west"},
        {"operation": "failover", "at": _at(fault + 3.6), "result": "done", "to": "west",
         "phases": {"dns": 0.1, "fence": 0.2, "plan": 0.05, "total": 0.5, "verify": 0.1},
         "phase_order": ["plan", "fence", "dns", "verify"]},
        {"operation": "failback", "at": _at(fault + 30), "result": "done", "to": "east",
         "phases": {"dns": 0.1, "fence": 0.2, "plan": 0.05, "total": 0.5}},  # no order
        {"operation": "failover", "at": _at(fault + 9.0), "result": "refused", "phases": {}},
    ]
    marks = drill.audit_marks(records, since=fault)
    assert [label for _, label in marks] == [
        "detected: east down", "decided: fail over to west", "failover: plan",
        "failover: fence", "failover: dns", "failover: verify", "failover to west done",
        "failover: plan", "failover: fence", "failover: dns", "failback to east done"]
    split = drill.rto_split(fault, fault + 5.6, marks)
    assert split == pytest.approx({"detection": 3.0, "decision": 0.1, "plan": 0.05,
                                   "fence": 0.2, "dns": 0.1, "verify": 0.1,
                                   "failover, other": 0.05, "client convergence": 2.0},
                                  abs=0.002)
    assert sum(split.values()) == pytest.approx(5.6, abs=0.01)  # nothing missing
    assert drill.rto_split(fault, None, marks) == {}
    assert drill.rto_split(fault + 60, fault + 65, marks) == {}  # nothing recorded


def test_a_planned_change_fails_its_drill_on_any_failed_request():
    spec = "+" * 10 + "-" + "+" * 40
    out = drill.analyze(samples(spec), fault_at=101.0, ended_at=106.0)
    assert drill.judge(out, 0.0, {"rto": 30, "rpo": 0}) == []
    problems = drill.judge(out, 0.0, {"rto": 30, "rpo": 0}, "upgrade")
    assert problems and "must not fail any" in problems[0]


def test_the_report_shows_where_the_recovery_time_went(tmp_path: Path):
    report = drill.Report(
        scenario="region", deployment="demo", target="lab", started_at="t", fault="f",
        victims=["a"], region="east", phases={"fault": 2.0}, requests=10, failed=3,
        failed_by_method={"GET": 3}, failed_before_fault=0, rto_seconds=5.6, settled=True,
        acked_writes=4, lost_writes=0, lost_sample=[], rpo_seconds=0.0,
        objectives={"rto": 30, "rpo": 0}, met=True, problems=[], healed=True, heal="ok",
        timeline=[(0.0, 1, 0), (2.1, 0, 1)], rto_split={"detection": 3.0,
                                                         "client convergence": 2.6},
        serving="west")
    text = drill.render_markdown(report)
    assert "| detection | 3.00 |" in text and "served by **west**" in text
    paths = drill.write_reports(report, tmp_path / "r")
    assert json.loads(Path(paths["json"]).read_text())["rto_split"]["detection"] == 3.0


def test_drill_all_runs_what_the_deployment_has():
    from hadeploy.commands.drill import plan_all
    from hadeploy.config import from_regions, parse_region_list

    two = from_regions(parse_region_list("east,west"), name="d")
    assert plan_all(two) == list(drill.SCENARIOS)
    one = from_regions(parse_region_list("east"), name="d")
    stateless = one.model_copy(update={"data": one.data.model_copy(update={"enabled": False})})
    assert plan_all(stateless) == ["app-host", "lb", "dns", "upgrade"]


def test_drill_schedule_prints_units_that_run_the_chosen_drills(cli, tmp_path: Path):
    cfg = tmp_path / "hadeploy.yaml"
    cfg.write_text("name: sched\nregions:\n"
                   "  - {name: east, role: primary, lab_subnet: 10.71.1.0/24}\n"
                   "  - {name: west, role: secondary, lab_subnet: 10.71.2.0/24}\n")
    r = cli("drill", "schedule", "--config", str(cfg))
    assert r.rc == 0, r.err
    assert "OnCalendar=Wed *-*-* 10:00:00" in r.out and "Type=oneshot" in r.out
    runs = [line for line in r.out.splitlines() if line.startswith("ExecStart=")]
    assert [line.split(" drill ")[1].split()[0] for line in runs] == [
        "app-host", "lb", "db-host", "dns", "upgrade"]  # not the ones that move traffic
    assert all(f"--config {cfg}" in line and "--yes" in line for line in runs)
    r = cli("drill", "schedule", "region", "--cron", "0 10 * * 3", "--config", str(cfg))
    assert r.rc == 0 and r.out.count("\n0 10 * * 3 root cd ") == 1, r.out
    assert "drill region --yes" in r.out and "move traffic" in r.out
    for bad in (["--cron", "every day"], ["--on-calendar", "tomorrow; rm -rf /"],
                ["meteor"]):
        r = cli("drill", "schedule", *bad, "--config", str(cfg))
        assert r.rc == 2 and "Traceback" not in r.err, (bad, r.err)
    r = cli("drill", "lb", "extra", "--config", str(cfg))
    assert r.rc == 2 and "unexpected argument" in r.err


def test_the_drills_watch_defers_to_a_running_one(tmp_path: Path):
    import subprocess
    import sys

    from hadeploy.state import StateDir

    state = StateDir(tmp_path / "d")
    assert state.lock_holder("watch.lock") is None  # never taken
    with state.lock("watch", name="watch.lock"):
        pass
    assert state.lock_holder("watch.lock") is None  # taken and released
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from hadeploy.state import StateDir; s = StateDir(Path(sys.argv[1])); "
         "cm = s.lock('watch', name='watch.lock'); cm.__enter__(); print('held', flush=True); "
         "time.sleep(30)", str(state.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert "'watch' run by" in (state.lock_holder("watch.lock") or "")
    finally:
        holder.kill()
        holder.wait()
    assert state.lock_holder("watch.lock") is None


def test_isolation_judges_when_the_cut_off_region_stopped_taking_writes():
    """The partition drill's verdict from the inside writer's samples: a region that
    stopped within its lease and before the other region's first write passes; one that
    kept taking writes, stopped late, or overlapped with the new writer fails."""
    cut = 100.0
    good = [(99.9, 201), (100.5, 201), (103.0, 201), (105.2, 503), (106.0, 503), (108.0, 503)]
    doc, problems = drill.isolation(good, cut, [99.0, 109.0, 110.0], bound=5.75)
    assert problems == []
    assert doc["acknowledged_after_cut"] == 2 and doc["last_acknowledged"] == 3.0
    assert doc["refusing_from"] == 5.2 and doc["other_region_first_write"] == 9.0
    assert doc["overlap_seconds"] == -6.0
    # never stopped
    _, problems = drill.isolation([(101.0, 201), (110.0, 201)], cut, [109.0], bound=5.75)
    assert any("still took writes" in p for p in problems)
    assert any("split brain" in p for p in problems)
    # stopped, but later than its lease allows
    late = [(101.0, 201), (108.0, 201), (109.0, 503)]
    _, problems = drill.isolation(late, cut, [120.0], bound=5.75)
    assert problems == ["the isolated region took writes for 8.0 s after the cut, longer "
                        "than its lease (5.75 s)"]
    # a write the new region took before the isolated one's last
    _, problems = drill.isolation(good, cut, [102.0], bound=5.75)
    assert any("two regions took writes" in p for p in problems)
    # nothing seen from inside: no verdict can be given
    _, problems = drill.isolation([(99.0, 201)], cut, [], bound=5.75)
    assert problems == ["no write from inside the isolated region was observed after the cut"]


def test_a_partition_drops_only_what_crosses_the_regions_edge():
    from hadeploy.targets.lab.faults import partition_rules

    rules = partition_rules("10.94.1.0/24")
    assert ["FORWARD", "-s", "10.94.1.0/24", "!", "-d", "10.94.1.0/24"] in rules
    assert ["FORWARD", "!", "-s", "10.94.1.0/24", "-d", "10.94.1.0/24"] in rules
    assert ["INPUT", "-s", "10.94.1.0/24"] in rules and ["OUTPUT", "-d", "10.94.1.0/24"] in rules
    # no rule matches traffic inside the region (bridged frames pass FORWARD too)
    assert not any(r[1:] == ["-s", "10.94.1.0/24", "-d", "10.94.1.0/24"] for r in rules)
    # VRRP multicast stays (the first rule, an ACCEPT, comes before the drops)
    assert rules[0] == ["FORWARD", "-s", "10.94.1.0/24", "-d", "224.0.0.0/4"]


def test_the_read_back_stops_at_a_404_whatever_its_body_says():
    """A write that is not there answers 404 with a JSON body: final at once. (Since the
    client records the start of a refusal's body, a check of the detail text for "404"
    had retried every lost item ten times: two minutes per drill that loses writes.)"""
    from hadeploy.commands.drill import _readable

    class Missing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": "no such item"}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Missing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = drill.Client("read-back", lambda: ("127.0.0.1", 60.0),
                              port=server.server_address[1])
        start = time.monotonic()
        assert _readable(client, "lost-1") is False
        assert len(client.samples) == 1 and client.samples[0].status == 404
        assert client.samples[0].detail.startswith("404 {")
        assert time.monotonic() - start < 0.4  # no retry, no sleep
    finally:
        server.shutdown()
        server.server_close()
