"""``plan`` for pipelines: --detailed-exitcode, --format markdown, and how Ansible's check-mode
diffs become drift items. (Drift on real hosts: tests/integration/test_lab.py.)"""

from __future__ import annotations

import json

from hadeploy.commands.plan import downtime, markdown
from hadeploy.configure import DIFF_LINES, diff_text
from hadeploy.targets import Change

CFG = """\
name: hdplanfmt
regions:
  - {name: east, role: primary, hosts: 1, lab_subnet: 10.71.1.0/24}
  - {name: west, role: secondary, hosts: 1, lab_subnet: 10.71.2.0/24}
lab: {control_subnet: 10.71.0.0/24}
data: {enabled: false}
"""


def test_a_file_diff_names_the_file_and_shows_the_changed_lines():
    path, text = diff_text([{"before_header": "/etc/haproxy/haproxy.cfg",
                             "after_header": "/etc/haproxy/haproxy.cfg",
                             "before": "global\n  maxconn 100\n# hand edit\n",
                             "after": "global\n  maxconn 100\n"}])
    assert path == "/etc/haproxy/haproxy.cfg"
    assert "-# hand edit" in text.splitlines() and "+# hand edit" not in text


def test_a_state_diff_is_shown_as_before_and_after():
    path, text = diff_text({"before": {"state": "stopped"}, "after": {"state": "started"}})
    assert path is None
    assert text.splitlines() == ['- {"state": "stopped"}', '+ {"state": "started"}']


def test_a_long_diff_is_cut_and_says_so():
    before = "\n".join(f"line {n}" for n in range(200))
    _, text = diff_text({"before": before, "after": "", "before_header": "/x"})
    lines = text.splitlines()
    assert len(lines) == DIFF_LINES + 1 and lines[-1].endswith("more lines)")


def test_nothing_usable_gives_an_empty_diff():
    assert diff_text([]) == (None, "")
    assert diff_text(["not a dict"]) == (None, "")


def test_downtime_is_named_from_how_up_applies_each_change():
    assert downtime(Change("configure", "configuration", "east", "east")).startswith(
        "none: restarts roll")
    assert downtime(Change("recreate", "container", "hd-x-east-lb1", "east")).startswith(
        "possible")
    assert downtime(Change("create", "container", "hd-x-south-app1", "south")) == "none"


def _doc(items, drift=None, notes=()):
    return {"deployment": "shop", "target": "lab", "items": items, "drift": drift,
            "notes": list(notes)}


def test_markdown_lists_changes_per_region_with_their_downtime():
    items = [{**Change("configure", "configuration", "west", "west",
                       "configuration changed").to_dict(), "downtime": "none: rolls"},
             {**Change("recreate", "container", "hd-shop-east-lb1", "east",
                       "its specification changed").to_dict(),
              "downtime": "possible while this region serves"}]
    text = markdown(_doc(items, notes=["a | note"]))
    assert text.startswith("### hadeploy plan: `shop` (lab)")
    assert "**2 change(s)**" in text and "1 change(s) may interrupt clients" in text
    rows = [line for line in text.splitlines() if line.startswith("| east") or
            line.startswith("| west")]
    assert rows[0].startswith("| east | recreate | container `hd-shop-east-lb1`")
    assert rows[1].endswith("| none: rolls |")
    assert "> a \\| note" in text  # a pipe cannot break the table or the quote


def test_markdown_without_changes_says_so_and_says_what_was_compared():
    assert "**No changes**" in markdown(_doc([]))
    drift = {"found": False, "items": [], "problems": [], "checked": ["h"], "seconds": 1.0}
    assert "and drift on every running host" in markdown(_doc([], drift))


def test_markdown_shows_drift_with_its_diff():
    drift = {"found": True, "checked": ["hd-shop-east-lb1"], "seconds": 9.0, "problems": [],
             "items": [{"region": "east", "host": "hd-shop-east-lb1",
                        "task": "haproxy : Render haproxy.cfg",
                        "path": "/etc/haproxy/haproxy.cfg",
                        "diff": "--- a\n+++ b\n-# hand edit"}]}
    text = markdown(_doc([], drift))
    assert "#### Drift: 1 difference(s)" in text
    assert "`hd-shop-east-lb1`: haproxy : Render haproxy.cfg (`/etc/haproxy/haproxy.cfg`)" in text
    assert "  -# hand edit" in text and "```diff" in text


def test_detailed_exitcode_is_8_with_changes_and_formats_agree(cli, tmp_path):
    """A deployment that does not exist: everything would be created."""
    cfg = tmp_path / "hadeploy.yaml"
    cfg.write_text(CFG)
    state = str(tmp_path / "state")
    plain = cli("plan", "--config", str(cfg), "--state-dir", state)
    assert plain.rc == 0, plain.err
    r = cli("plan", "--config", str(cfg), "--state-dir", state, "--detailed-exitcode",
            "--format", "json")
    assert r.rc == 8, r.err
    doc = json.loads(r.out)
    assert doc["changes"] and doc["drift"] is None
    assert all(i["downtime"] for i in doc["items"])
    md = cli("plan", "--config", str(cfg), "--state-dir", state, "--format", "markdown",
             "--detailed-exitcode")
    assert md.rc == 8 and md.out.startswith("### hadeploy plan: `hdplanfmt` (lab)")
    assert f"**{len(doc['items'])} change(s)**" in md.out
    assert not (tmp_path / "state").exists(), "plan writes nothing"
    bad = cli("plan", "--config", str(cfg), "--format", "yaml")
    assert bad.rc == 2 and "Traceback" not in bad.err
