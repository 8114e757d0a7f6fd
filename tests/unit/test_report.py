"""`hadeploy report`: availability per region from the probe history and the audit log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hadeploy import config
from hadeploy.history import History, ProbeRow, history_path
from hadeploy.report import build, covered, incidents, render_text
from hadeploy.state import StateDir

DEP = config.from_regions(["east", "west"])
T0 = float(int(time.time()) - 5000)  # the history keeps 7 days: older rows are pruned


def utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"


def recorded(root: Path, t0: float) -> StateDir:
    """Two watch sessions: t0..t0+100 (east down 43..62, a failover to west at 45) and
    t0+200..t0+300 (west down from 290, still down when the records end)."""
    state = StateDir.for_deployment(DEP.name, root)
    state.save_deployment(DEP)
    h = History(history_path(state.path))
    rows = []
    for start in (0, 200):
        for s in range(101):
            t = t0 + start + s
            for region in ("east", "west"):
                ok = not (region == "east" and 40 <= start + s < 60) and not (
                    region == "west" and start + s >= 288)
                rows += [ProbeRow(t, "cli", region, ok, 200 if ok else None, 1.5, None),
                         ProbeRow(t + 0.2, f"probe@{'west' if region == 'east' else 'east'}",
                                  region, ok, None, 2.5, None)]
    h.add(rows)
    h.close()
    audit = [
        {"operation": "watch", "at": utc(t0), "decision": "watch started (probe every 1.0 s)"},
        {"operation": "watch", "at": utc(t0 + 43), "decision": "region east is down by quorum",
         "region": "east", "state": "down"},
        {"operation": "failover", "at": utc(t0 + 45), "result": "done", "from": "east",
         "to": "west", "reason": "watch: east down by quorum (2/2 vantage points)",
         "user": "root"},
        {"operation": "watch", "at": utc(t0 + 62), "decision": "region east is up by quorum",
         "region": "east", "state": "up"},
        {"operation": "watch", "at": utc(t0 + 100), "decision": "watch stopped after 100 rounds"},
        {"operation": "failover", "at": utc(t0 + 150), "result": "refused", "to": "east",
         "error": "east is not healthy"},
        {"operation": "failover", "at": utc(t0 + 160), "result": "refused", "to": "east",
         "error": "replication lag over the budget"},
        {"operation": "watch", "at": utc(t0 + 160.5), "action": "failover-failed", "to": "east",
         "decision": "failover to east did not happen: replication lag over the budget"},
        {"operation": "watch", "at": utc(t0 + 200), "decision": "watch started (probe ...)"},
        {"operation": "watch", "at": utc(t0 + 290), "decision": "region west is down by quorum",
         "region": "west", "state": "down"},
        {"operation": "watch", "at": utc(t0 + 291), "decision": "west is down and no other "
         "region is healthy: DNS left as it is", "region": "west", "action": "none"},
        "not json",
    ]
    (state.path / "audit.jsonl").write_text("\n".join(
        json.dumps(r) if isinstance(r, dict) else r for r in audit) + "\n")
    return state


def test_availability_is_down_time_within_observed_time(tmp_path):
    t0 = T0
    doc = build(DEP, recorded(tmp_path, t0), t0 - 10, t0 + 400)
    east, west = doc.regions
    assert east.observed_seconds == pytest.approx(200)  # two sessions of 100 s; the gap is not
    assert east.downtime_seconds == pytest.approx(19)
    assert east.availability == pytest.approx(1 - 19 / 200)
    assert [(i.start - t0, i.end - t0, i.ended) for i in east.incidents] == [
        (pytest.approx(43), pytest.approx(62), "up by quorum")]
    assert west.incidents[0].ended == "ongoing" and west.downtime_seconds == pytest.approx(10)
    assert east.probes["cli"] == {"probes": 202, "ok": 182, "availability": round(182 / 202, 6),
                                  "avg_latency_ms": 1.5}
    assert [(f["from"], f["to"]) for f in doc.failovers] == [("east", "west")]
    assert [r["action"] for r in doc.refusals] == ["refused", "refused", "none"], \
        "watch's word on a refused run is not a second refusal"


def test_a_window_clips_incidents_and_observations(tmp_path):
    t0 = T0
    doc = build(DEP, recorded(tmp_path, t0), t0 + 50, t0 + 250)
    east = doc.regions[0]
    assert east.observed_seconds == pytest.approx(100)  # 50..100 and 200..250
    assert east.downtime_seconds == pytest.approx(12)  # 50..62
    assert doc.failovers == [] and len(doc.refusals) == 2  # the refusals at 150 and 160


def test_an_incident_open_when_watch_stopped_ends_there():
    audit = [{"operation": "watch", "at": utc(10), "region": "a", "state": "down"},
             {"operation": "watch", "at": utc(20), "decision": "watch stopped after 9 rounds"},
             {"operation": "watch", "at": utc(30), "region": "b", "state": "down"},
             {"operation": "watch", "at": utc(40), "decision": "watch started (...)"}]
    found = [(i.region, i.start, i.end, i.ended) for i in incidents(audit, 100)]
    assert found == [("a", 10, 20, "watch stopped"), ("b", 30, 40, "watch restarted")]


def test_probes_further_apart_than_the_gap_leave_time_unobserved():
    assert covered([0, 1, 2, 30, 31, 100], 10) == [(0, 2), (30, 31)]
    assert covered([], 10) == []


def test_the_text_names_regions_incidents_and_failovers(tmp_path):
    t0 = T0
    text = render_text(build(DEP, recorded(tmp_path, t0), t0 - 10, t0 + 400))
    assert "east" in text and "90.500%" in text and "95.000%" in text
    day = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + 43))
    back = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + 62))
    assert f"east: {day}Z → {back}Z (19 s, up by quorum)" in text
    assert "failover east → west" in text and "failovers not made: 3" in text


def test_cli_report_json_and_png(cli, tmp_path):
    recorded(tmp_path / "state", time.time() - 1000)
    png = tmp_path / "availability.png"
    r = cli("report", "--since", "1d", "--json", "--png", str(png))
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    east = doc["regions"][0]
    assert east["name"] == "east" and east["availability"] == pytest.approx(0.905)
    assert east["incidents"][0]["seconds"] == pytest.approx(19, abs=0.01)
    assert doc["failovers"][0]["to"] == "west" and doc["png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("report", "--since", "30s")  # only the end of the second session is in it
    assert r.rc == 0 and "nothing was observed" in r.out, r.out


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "7x"], "error: --since: '7x' is not a duration"),
    (["--since", "0d"], "error: --since: '0d' is not a duration"),
    (["--png", "/nonexistent-dir/a.png"], "which is not a directory"),
])
def test_cli_report_refuses_bad_options(cli, tmp_path, args, message):
    recorded(tmp_path / "state", time.time() - 1000)
    r = cli("report", *args)
    assert r.rc == 2 and message in r.err and "fix:" in r.err, r.err
    assert "Traceback" not in r.err


def test_cli_report_without_history_says_how_to_get_one(cli, tmp_path):
    StateDir.for_deployment("demo", tmp_path / "state").save_deployment(DEP)
    r = cli("report")
    assert r.rc == 2 and "no probe history for 'demo'" in r.err
    assert "run 'hadeploy watch'" in r.err
