"""The lab target's plan: desired objects diffed against a live state, without podman.

``plan`` prints this diff and ``up`` applies it, so these are the rules of both: a
converged deployment (warm and cold regions included) has no changes, a standby host
stopped on purpose is no change, a prober is not a host, DNS moved by a failover is left
alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hadeploy import config, targets
from hadeploy.dns.rfc2136 import TsigKey
from hadeploy.state import StateDir
from hadeploy.targets.lab.target import LabLive, LabTarget, LiveContainer

DEP = config.parse({
    "name": "demo",
    "regions": [
        {"name": "east", "role": "primary", "hosts": 2, "lab_subnet": "10.91.1.0/24"},
        {"name": "west", "role": "secondary", "hosts": 2, "standby": "warm",
         "lab_subnet": "10.91.2.0/24"},
        {"name": "south", "role": "secondary", "hosts": 1, "standby": "cold",
         "lab_subnet": "10.91.3.0/24"},
    ],
    "failover": {"quorum": 2},
})


@pytest.fixture
def target(tmp_path: Path) -> LabTarget:
    state = StateDir(tmp_path / "demo")
    TsigKey.generate("hadeploy-demo").save(state.path / "dns" / "tsig.json")
    return LabTarget(DEP, state)


def converged(target: LabTarget) -> LabLive:
    """The live state 'up' leaves behind: everything desired exists as desired."""
    desired = target.desired()
    topo = target.topology()
    containers = {d.name: LiveContainer(d.spec, "running" if d.running else "exited", d.region)
                  for d in desired if d.kind == "container"}
    fw = next(d for d in desired if d.kind == "firewall")
    return LabLive(
        image=True, containers=containers, db_passwords=True, db_ca=True, backup_key=True,
        db_certs={d.name: d.spec for d in desired if d.kind == "certificate" and d.region},
        networks={d.name for d in desired if d.kind == "network"},
        volumes={d.name for d in desired if d.kind == "volume"},
        firewall={tuple(p) for p in json.loads(fw.spec)}, ssh_key=True,
        tsig_key=TsigKey.load(target.tsig_path),
        converged={d.name: d.spec for d in desired if d.kind == "configuration"},
        dns_answer=[topo.region("east").vip])


def changes(target: LabTarget, live: LabLive, **kw) -> list[str]:
    return [str(c) for c in target.diff(target.desired(), live, **kw).changes]


def test_a_converged_lab_with_warm_and_cold_regions_has_no_changes(target):
    live = converged(target)
    stopped = sorted(n for n, c in live.containers.items() if c.state != "running")
    assert stopped == ["hd-demo-south-app1", "hd-demo-west-app2"]  # standby, on purpose
    plan = target.diff(target.desired(), live)
    assert plan.changes == [] and plan.notes == []


def test_plan_is_the_same_list_up_applies(target):
    """targets.plan() is what both commands call: the diff of desired against live."""
    live = converged(target)
    del live.containers["hd-demo-east-app1"]
    target.live = lambda: live  # type: ignore[method-assign]
    assert [str(c) for c in targets.plan(target).changes] == changes(target, live)


def test_every_kind_of_drift_is_one_change(target):
    live = converged(target)
    live.containers["hd-demo-east-app1"] = LiveContainer("old-spec", "running", "east")
    live.containers["hd-demo-east-lb2"] = LiveContainer(
        live.containers["hd-demo-east-lb2"].spec, "exited", "east")
    live.containers["hd-demo-west-app2"] = LiveContainer(
        live.containers["hd-demo-west-app2"].spec, "running", "west")  # a standby left on
    live.networks.discard("hd-demo-south")
    assert changes(target, live) == [
        "start container hd-demo-east-lb2 (exited)",
        "recreate container hd-demo-east-app1 (its specification changed)",
        "stop container hd-demo-west-app2 (standby)",
        "create network hd-demo-south (10.91.3.0/24)",
        "configure configuration east (hosts created or restarted)",
    ]


def test_a_recreated_prober_is_not_a_reason_to_configure(target):
    live = converged(target)
    live.containers["hd-demo-east-probe"] = LiveContainer("old", "running", "east")
    assert changes(target, live) == [
        "recreate container hd-demo-east-probe (its specification changed)"]


def test_configuration_drift_and_unhealthy_hosts_configure_only_their_region(target):
    live = converged(target)
    live.converged["west"] = "older"
    live.unhealthy["south"] = ["hd-demo-south-lb1"]
    assert changes(target, live) == [
        "configure configuration west (configuration changed)",
        "configure configuration south (unhealthy: hd-demo-south-lb1)"]
    assert len(changes(target, converged(target), converge=True)) == 3


def test_dns_moved_by_a_failover_is_not_a_change(target):
    live = converged(target)
    live.dns_answer = [target.topology().region("west").vip]
    assert changes(target, live) == []
    live.dns_answer = []
    assert changes(target, live) == [
        "point record app.hadeploy.test. (at east (10.91.1.10) unless it names a region)"]


def test_a_new_deployment_is_built_in_dependency_order(target):
    plan = target.diff(target.desired(), LabLive(podman=True))
    order = [c.kind for c in plan.changes]
    assert order[:5] == ["image", "key", "key", "network", "container"]  # DNS servers first
    assert order[-1] == "record" and order.count("configuration") == 3
    # three regions: one server in each, no witness
    assert [c.name for c in plan.changes[4:7]] == ["hd-demo-east-dns", "hd-demo-west-dns",
                                                   "hd-demo-south-dns"]


def test_objects_of_removed_regions_are_notes_not_changes(target):
    live = converged(target)
    live.containers["hd-demo-north-lb1"] = LiveContainer("x", "running", "north")
    plan = target.diff(target.desired(), live)
    assert plan.changes == []
    assert plan.notes == ["region 'north' exists but is not in the desired state; left alone "
                          "by 'up'"]


def test_desired_state_reads_nothing_it_should_not_write(target, tmp_path):
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    target.desired()
    target.diff(target.desired(), converged(target))
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


# --- drift (plan --drift) and a database whose Patroni was stopped ---------------------------

def test_drift_found_on_a_host_configures_its_region_and_names_it(target):
    from hadeploy.configure import DriftItem

    live = converged(target)
    assert changes(target, live) == []
    live.drift = {"east": [DriftItem("hd-demo-east-lb1", "Write the haproxy configuration",
                                     "/etc/haproxy/haproxy.cfg"),
                           DriftItem("hd-demo-east-lb2", "Enable and start keepalived")]}
    assert changes(target, live) == [
        "configure configuration east (drift: hd-demo-east-lb1: Write the haproxy "
        "configuration (/etc/haproxy/haproxy.cfg) and 1 more)"]


def test_a_cluster_whose_patroni_stopped_everywhere_is_started_and_settled(tmp_path):
    """Its hosts run, no member's Patroni answers: started again, the boot fence pauses it,
    so it is settled before Ansible (whose app checks read it). Hosts that restart are the
    other rule's case; a standby region's stopped hosts are no case at all."""
    from hadeploy.data import DataState
    from hadeploy.patroni import ClusterView, Member

    dep = config.parse({"name": "demo", "regions": [
        {"name": "east", "role": "primary", "hosts": 1, "lab_subnet": "10.91.1.0/24"},
        {"name": "west", "role": "secondary", "hosts": 1, "lab_subnet": "10.91.2.0/24"}],
        "data": {"hosts": 1}, "failover": {"quorum": 1}})
    state = StateDir(tmp_path / "demo")
    TsigKey.generate("hadeploy-demo").save(state.path / "dns" / "tsig.json")
    lab = LabTarget(dep, state)
    live = converged(lab)
    live.data = {
        "east": DataState("east", "hd-demo-east", ClusterView([Member(
            "hd-demo-east-db1", "10.91.1.13", role="primary", state="running")])),
        "west": DataState("west", "hd-demo-west", ClusterView([Member(
            "hd-demo-west-db1", "10.91.2.13", error="ConnectionRefusedError")]))}
    assert changes(lab, live) == [
        "settle database west (Patroni does not run on its hosts: start it and make it "
        "standby of east)"]
    live.containers["hd-demo-west-db1"] = LiveContainer(
        live.containers["hd-demo-west-db1"].spec, "exited", "west")
    assert "settle database west" not in " ".join(changes(lab, live))


def test_a_dns_server_that_lags_or_is_no_longer_wanted_is_a_change(target):
    """A server behind the newest serial is brought forward by 'up' (so 'plan' says so);
    the witness of a deployment whose regions became odd in number is removed, not left
    answering outside the NS set."""
    live = converged(target)
    live.dns_stale = ["west"]
    live.containers["hd-demo-dns"] = LiveContainer("x", "running", None)  # three regions now
    assert changes(target, live) == [
        "resync dns hd-demo-west-dns (behind the newest serial: given the newest records)",
        "remove container hd-demo-dns (a DNS server this deployment no longer has)"]
    assert target.diff(target.desired(), live).notes == []
