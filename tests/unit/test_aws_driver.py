"""The AWS driver's orchestration with a fake workspace (no Pulumi CLI, no AWS): which
stacks, in which order, with which inputs, how many at once; that a plan creates no stack;
that the app secret never travels as stack config; and the environment errors a user sees
when the Pulumi CLI, AWS credentials or the state backend are missing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from hadeploy.config import AwsSettings, Deployment
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.infra.settings import check_deployment, load_stack_config
from hadeploy.targets.aws.driver import (
    PulumiWorkspace,
    StackFailed,
    Stacks,
    StackSpec,
    aws_credentials_available,
    pulumi_state,
)
from hadeploy.topology import Host, HostKind, render_inventory
from tests.infra_mock_program import deployment


def load(n: int = 2, standby: str = "warm", **aws: Any) -> tuple[Deployment, AwsSettings]:
    return load_stack_config(deployment(n, standby, **aws))


class FakeWorkspace:
    """Records every call; stacks 'exist' once an up succeeded."""

    def __init__(self, *, fail: set[str] | None = None, delay: float = 0.0,
                 existing: dict[str, dict[str, Any]] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.stacks: dict[str, dict[str, Any]] = dict(existing or {})
        self.secrets: dict[str, dict[str, str]] = {}  # stack -> its secret configuration
        self.fail = fail or set()
        self.delay = delay
        self.running = 0
        self.max_running = 0
        self.lock = threading.Lock()

    def _enter(self, op: str, spec: StackSpec) -> None:
        with self.lock:
            self.calls.append((op, spec.name, {"config": dict(spec.inputs), "spec": spec}))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        if (op, spec.name) in self.fail or spec.name in self.fail:
            raise StackFailed(f"{op} of {spec.name} failed: boom")

    def check(self) -> str:
        return "tester"

    def outputs(self, spec: StackSpec) -> dict[str, Any] | None:
        return self.stacks.get(spec.name)

    def config_secret(self, spec: StackSpec, key: str) -> str | None:
        return self.secrets.get(spec.name, {}).get(key)

    def preview(self, spec: StackSpec) -> dict[str, int]:
        assert spec.name in self.stacks, "a preview must never create a stack"
        self._enter("preview", spec)
        return {"same": 50, "update": 1}

    def up(self, spec: StackSpec) -> dict[str, Any]:
        self._enter("up", spec)
        self.secrets.setdefault(spec.name, {}).update(spec.secrets() if spec.secrets else {})
        if spec.region is None:
            outputs = {"zone_id": "ZONE", "name_servers": ["ns-1.awsdns-01.org."]}
        else:
            aws_region = spec.inputs["aws:region"]
            outputs = {"alb_dns_name": f"alb-{spec.region}.elb.amazonaws.com",
                       "alb_zone_id": "ZALB", "efs_id": f"fs-{spec.region}",
                       "efs_dns_name": f"fs-{spec.region}.efs.{aws_region}.amazonaws.com",
                       "efs_mount_source": f"fs-{spec.region}.efs.{aws_region}.amazonaws.com:/",
                       "vpc_cidr": "10.100.0.0/16", "aws_region": aws_region,
                       "host_tag": {"key": "hadeploy:hosts", "value": f"demo-{spec.region}"}}
            # As the program does: the primary creates the global database, a secondary
            # joins it once the driver says it exists.
            doc = json.loads(spec.inputs["hadeploy:deployment"])
            primary = next(r["name"] for r in doc["regions"] if r["role"] == "primary")
            if (doc.get("data") or {}).get("enabled") and (
                    spec.region == primary
                    or spec.inputs.get("hadeploy:globalDbReady") == "true"):
                outputs.update(db_global_cluster_id="hd-demo",
                               db_cluster_id=f"hd-demo-{spec.region}",
                               db_endpoint=f"hd-demo-{spec.region}.cluster-x.rds",
                               db_reader_endpoint=f"hd-demo-{spec.region}.cluster-ro-x.rds")
        self.stacks[spec.name] = outputs
        return outputs

    def destroy(self, spec: StackSpec) -> bool:
        self._enter("destroy", spec)
        return self.stacks.pop(spec.name, None) is not None

    def ops(self, op: str | None = None) -> list[tuple[str, str]]:
        return [(o, name) for o, name, _ in self.calls if op is None or o == op]

    def config(self, op: str, stack: str, nth: int = 0) -> dict[str, Any]:
        return [c for o, name, c in self.calls if (o, name) == (op, stack)][nth]["config"]


def target(dep: Deployment, settings: AwsSettings, ws: FakeWorkspace, **kw: Any) -> Stacks:
    kw.setdefault("env", {"PATH": "/usr/bin"})
    return Stacks(dep, settings=settings, workspace=ws, credentials=lambda: True,
                  log=kw.pop("log", lambda _m: None), **kw)


# --- order and config ----------------------------------------------------------------------

def test_first_up_builds_regions_then_dns_with_a_second_pass_for_replication():
    dep, settings = load(2)
    ws = FakeWorkspace()
    report = target(dep, settings, ws).up()
    ups = ws.ops("up")
    assert sorted(ups[:2]) == [("up", "demo-eu-west-1"), ("up", "demo-us-east-1")]
    # Neither peer existed before: both regions run again once it does.
    assert sorted(ups[2:4]) == sorted(ups[:2])
    assert ups[4:] == [("up", "demo-global")]
    assert ws.config("up", "demo-us-east-1", 0)["hadeploy:peerReady"] == "false"
    second = ws.config("up", "demo-us-east-1", 1)
    assert second["hadeploy:peerReady"] == "true"
    assert second["hadeploy:peerEfsId"] == "fs-eu-west-1"  # the writer replicates into it
    assert ws.config("up", "demo-eu-west-1", 1)["hadeploy:peerEfsId"] == ""
    assert report.failed == {}
    assert [s.passes for s in report.stacks] == [2, 2, 1]


def test_secondaries_join_the_global_database_in_a_second_pass_and_never_leave_it():
    dep, settings = load(3, "warm", data=True)
    ws = FakeWorkspace()
    report = target(dep, settings, ws).up()
    for region in ("eu-west-1", "ap-southeast-2"):
        assert ws.config("up", f"demo-{region}", 0)["hadeploy:globalDbReady"] == "false"
        assert ws.config("up", f"demo-{region}", 1)["hadeploy:globalDbReady"] == "true"
    assert {r.name: r.data.cluster for r in report.topology.regions if r.data} == {
        r.name: f"hd-demo-{r.name}" for r in dep.regions}
    assert report.topology.data_primary_region.name == "us-east-1"
    assert {n: r.db_cluster_id for n, r in report.operate.regions.items()} == {
        r.name: f"hd-demo-{r.name}" for r in dep.regions}
    # The primary's stack cannot be read (its region is down): a secondary that joined
    # keeps its cluster in its program instead of deleting its copy of the data.
    del ws.stacks["demo-us-east-1"]
    ws.calls.clear()
    target(dep, settings, ws).up()
    assert ws.config("up", "demo-eu-west-1", 0)["hadeploy:globalDbReady"] == "true"


def test_converged_up_is_one_pass_per_stack():
    dep, settings = load(3)
    ws = FakeWorkspace()
    target(dep, settings, ws).up()
    ws.calls.clear()
    target(dep, settings, ws).up()
    assert sorted(ws.ops("up")) == sorted([("up", f"demo-{r.name}") for r in dep.regions]
                                          + [("up", "demo-global")])
    assert ws.ops("up")[-1] == ("up", "demo-global")


def test_regional_inputs_name_region_and_deployment_but_never_the_secret():
    dep, settings = load(2)
    ws = FakeWorkspace()
    target(dep, settings, ws, app_secret=lambda: "hunter22-planted").up()
    call = next(c for o, n, c in ws.calls if (o, n) == ("up", "demo-eu-west-1"))
    inputs = call["spec"].inputs
    assert inputs["aws:region"] == "eu-west-1" and inputs["hadeploy:region"] == "eu-west-1"
    parsed, parsed_settings = load_stack_config(
        __import__("json").loads(inputs["hadeploy:deployment"]))
    assert parsed == dep and parsed_settings == settings
    assert call["spec"].project == "hadeploy-regional"
    glob = next(c for o, n, c in ws.calls if n == "demo-global")
    assert glob["spec"].project == "hadeploy-global"
    assert glob["config"]["aws:region"] == "us-east-1"
    assert not any("hunter22" in v for _o, _n, c in ws.calls for v in c["config"].values())


def test_the_program_gets_the_secret_in_process(monkeypatch):
    """The inline program receives the secret from the driver (a closure), so it is never
    a 'pulumi config set --secret' argument visible in /proc/<pid>/cmdline."""
    import hadeploy.infra.regional as regional

    seen: list[Any] = []
    monkeypatch.setattr(regional, "regional_program",
                        lambda dep, region, settings, inputs=None: seen.append(inputs))
    dep, settings = load(2)
    spec = target(dep, settings, FakeWorkspace(), app_secret=lambda: "hunter22").regional_spec(
        "us-east-1", {"efs_id": "fs-peer"})
    spec.program()
    assert seen[0].app_secret == "hunter22" and seen[0].peer_efs_id == "fs-peer"
    assert seen[0].peer_ready is True


def test_secret_is_never_logged():
    dep, settings = load(2)
    ws, logged = FakeWorkspace(), []
    target(dep, settings, ws, app_secret=lambda: "hunter22", log=logged.append).up()
    assert logged and not any("hunter22" in line for line in logged)


def test_destroy_removes_dns_first_then_the_regions():
    dep, settings = load(3)
    ws = FakeWorkspace()
    target(dep, settings, ws).up()
    ws.calls.clear()
    report = target(dep, settings, ws).destroy()
    ops = ws.ops("destroy")
    assert ops[0] == ("destroy", "demo-global")
    assert sorted(ops[1:]) == sorted(("destroy", f"demo-{r.name}") for r in dep.regions)
    assert report.failed == {} and ws.stacks == {}


def _teardown_ups(ws: FakeWorkspace) -> dict[str, dict[str, Any]]:
    return {name: c["config"] for o, name, c in ws.calls
            if o == "up" and "hadeploy:teardownStamp" in c["config"]}


def test_down_keeps_backups_updating_every_region_for_its_teardown_first():
    dep, settings = load(2)
    ws = FakeWorkspace()
    target(dep, settings, ws).up()
    ws.calls.clear()
    report = target(dep, settings, ws).destroy(stamp="20250101-000000")
    assert ws.ops()[0] == ("destroy", "demo-global")
    # Every region is updated once for its teardown before any region is destroyed ...
    assert sorted(ws.ops()[1:3]) == [("up", "demo-eu-west-1"), ("up", "demo-us-east-1")]
    assert sorted(ws.ops()[3:]) == [("destroy", "demo-eu-west-1"), ("destroy", "demo-us-east-1")]
    ups = _teardown_ups(ws)
    assert set(ups) == {"demo-us-east-1", "demo-eu-west-1"}
    assert {c["hadeploy:deleteBackups"] for c in ups.values()} == {"false"}
    assert {c["hadeploy:teardownStamp"] for c in ups.values()} == {"20250101-000000"}
    # ... without EFS replication: no pair binds two stacks while they are destroyed.
    assert ups["demo-us-east-1"]["hadeploy:peerEfsId"] == ""
    assert report.failed == {} and ws.stacks == {}
    kept = " ".join(report.notes)
    assert "vault hd-demo-us-east-1 (us-east-1)" in kept and "--delete-backups" in kept
    assert "bucket hd-demo-123456789012-eu-west-1" in kept


def test_down_delete_backups_updates_the_stacks_to_empty_and_delete_them():
    dep, settings = load(2, data=True)
    ws = FakeWorkspace()
    target(dep, settings, ws).up()
    ws.calls.clear()
    report = target(dep, settings, ws).destroy(delete_backups=True)
    ups = _teardown_ups(ws)
    assert {c["hadeploy:deleteBackups"] for c in ups.values()} == {"true"}
    assert len(ups) == 2 and report.failed == {}
    assert "backups deleted" in report.notes[0]


def test_the_teardown_reaches_the_program(monkeypatch):
    import hadeploy.infra.regional as regional
    from hadeploy.infra.settings import Teardown

    seen: list[Any] = []
    monkeypatch.setattr(regional, "regional_program",
                        lambda dep, region, settings, inputs=None: seen.append(inputs))
    dep, settings = load(2)
    stacks = target(dep, settings, FakeWorkspace())
    stacks.regional_spec("us-east-1", {"efs_id": "fs-peer"}, False,
                         Teardown(delete_backups=True, stamp="s1")).program()
    stacks.regional_spec("us-east-1", {"efs_id": "fs-peer"}).program()
    assert seen[0].teardown == Teardown(True, "s1") and seen[0].peer_efs_id is None
    assert seen[1].teardown is None and seen[1].peer_efs_id == "fs-peer"


def test_with_a_database_the_writer_goes_last():
    """Aurora refuses to delete a global database's writer while other members exist."""
    dep, settings = load(3, data=True)
    ws = FakeWorkspace()
    target(dep, settings, ws).up()
    ws.calls.clear()
    target(dep, settings, ws).destroy()
    destroys = ws.ops("destroy")[1:]
    assert sorted(destroys[:2]) == [("destroy", "demo-ap-southeast-2"),
                                    ("destroy", "demo-eu-west-1")]
    assert destroys[2] == ("destroy", "demo-us-east-1")
    # After a switchover to eu-west-1: its writer goes after the stack owning the global
    # cluster (which detaches it: GlobalCluster.force_destroy).
    stacks = target(dep, settings, FakeWorkspace())
    assert stacks.destroy_waves("eu-west-1") == [["ap-southeast-2"], ["us-east-1"],
                                                 ["eu-west-1"]]
    assert stacks.destroy_waves(None) == [["eu-west-1", "ap-southeast-2"], ["us-east-1"]]
    plain, plain_settings = load(3)
    assert target(plain, plain_settings, FakeWorkspace()).destroy_waves("eu-west-1") == [
        ["us-east-1", "eu-west-1", "ap-southeast-2"]]


def test_a_region_whose_teardown_failed_is_not_destroyed_nor_what_it_binds():
    dep, settings = load(3, data=True)
    ws = FakeWorkspace()
    target(dep, settings, ws).up()
    ws.calls.clear()
    ws.fail = {("up", "demo-ap-southeast-2")}
    report = target(dep, settings, ws).destroy()
    # eu-west-1 goes in the first wave; the primary must wait for ap-southeast-2.
    assert ws.ops("destroy") == [("destroy", "demo-global"), ("destroy", "demo-eu-west-1")]
    assert "teardown update failed" in report.failed["demo-ap-southeast-2"]
    assert any("us-east-1 left in place" in n for n in report.notes)
    # Without a database only the EFS pair binds: the primary's replica waits for it.
    dep, settings = load(3)
    ws = FakeWorkspace()
    target(dep, settings, ws).up()
    ws.calls.clear()
    ws.fail = {("up", "demo-us-east-1")}
    report = target(dep, settings, ws).destroy()
    assert ws.ops("destroy") == [("destroy", "demo-global"), ("destroy", "demo-ap-southeast-2")]
    assert any("eu-west-1 left in place" in n for n in report.notes)
    assert set(report.failed) == {"demo-us-east-1"}


def test_the_aws_target_passes_delete_backups_and_the_writer(tmp_path):
    from hadeploy.state import StateDir
    from hadeploy.targets.aws.target import AwsTarget

    dep, _ = load(2, data=True)
    seen: dict[str, Any] = {}

    class Recorder:
        def destroy(self, **kw: Any) -> Any:
            seen.update(kw)
            from hadeploy.targets.aws.driver import AwsReport

            return AwsReport("destroy", notes=["kept: vault hd-demo-us-east-1"])

    state = StateDir(tmp_path / "demo")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "regions.json").write_text('{"data_primary": "eu-west-1"}')
    logged: list[str] = []
    AwsTarget(dep, state, stacks=Recorder()).destroy(logged.append, delete_backups=True)
    assert seen == {"delete_backups": True, "writer": "eu-west-1"}
    assert logged == ["note: kept: vault hd-demo-us-east-1"]


def test_destroy_leaves_the_regions_when_dns_cannot_be_removed():
    dep, settings = load(2)
    ws = FakeWorkspace(fail={("destroy", "demo-global")})
    report = target(dep, settings, ws).destroy()
    assert ws.ops("destroy") == [("destroy", "demo-global")]
    assert list(report.failed) == ["demo-global"]
    with pytest.raises(HadeployError) as err:
        report.raise_for_failures()
    assert err.value.code is ExitCode.FAILED


def test_regional_stacks_run_concurrently_but_bounded():
    dep, settings = load(6, parallel=2)
    ws = FakeWorkspace(delay=0.05)
    target(dep, settings, ws).up()
    assert ws.max_running == 2


# --- a broken region blocks nobody ---------------------------------------------------------

def test_a_failed_secondary_does_not_stop_the_others_or_dns():
    dep, settings = load(3)
    ws = FakeWorkspace(fail={"demo-eu-west-1"})
    report = target(dep, settings, ws).up()
    assert list(report.failed) == ["demo-eu-west-1"]
    assert ("up", "demo-ap-southeast-2") in ws.ops() and ws.ops()[-1] == ("up", "demo-global")
    glob = ws.config("up", "demo-global")
    assert glob["hadeploy:regions"] == '["us-east-1", "ap-southeast-2"]'
    assert report.notes == ["DNS built without eu-west-1 (never deployed)"]
    assert report.topology is not None
    assert [r.name for r in report.topology.regions] == ["us-east-1", "ap-southeast-2"]
    with pytest.raises(HadeployError, match="demo-eu-west-1"):
        report.raise_for_failures()


def test_dns_is_left_alone_when_the_primary_never_came_up():
    dep, settings = load(2)
    ws = FakeWorkspace(fail={"demo-us-east-1"})
    report = target(dep, settings, ws).up()
    assert ("up", "demo-global") not in ws.ops()
    assert set(report.failed) == {"demo-us-east-1", "demo-global"}


def test_preview_touches_only_stacks_that_exist():
    dep, settings = load(2)
    ws = FakeWorkspace()
    stacks = target(dep, settings, ws)
    regional, glob = stacks.current()
    report = stacks.preview(regional, glob)
    assert ws.ops() == [] and report.stacks == []  # nothing exists: nothing previewed
    target(dep, settings, ws).up()
    ws.calls.clear()
    regional, glob = stacks.current()
    stacks.preview(regional, glob)
    assert sorted(ws.ops()) == [("preview", "demo-eu-west-1"), ("preview", "demo-global"),
                                ("preview", "demo-us-east-1")]
    assert ws.ops()[-1] == ("preview", "demo-global") and ws.ops("up") == []


# --- topology --------------------------------------------------------------------------------

def test_topology_comes_from_stack_outputs():
    dep, settings = load(2)
    seen = []

    def lister(region: str, aws_region: str, key: str, value: str) -> list[Host]:
        seen.append((region, aws_region, key, value))
        return [Host(f"i-{region}", "10.100.128.10", HostKind.APP, region)]

    report = target(dep, settings, FakeWorkspace(), host_lister=lister).up()
    topo = report.topology
    assert topo is not None and topo.target == "aws"
    east = topo.region("us-east-1")
    assert east.vip == "alb-us-east-1.elb.amazonaws.com"
    assert east.url == "https://alb-us-east-1.elb.amazonaws.com"
    assert (east.storage.type, east.storage.source) == (
        "efs", "fs-us-east-1.efs.us-east-1.amazonaws.com:/")
    assert east.hosts == (Host("i-us-east-1", "10.100.128.10", HostKind.APP, "us-east-1"),)
    assert ("eu-west-1", "eu-west-1", "hadeploy:hosts", "demo-eu-west-1") in seen
    assert topo.dns.server == "ns-1.awsdns-01.org" and topo.dns.fqdn == "app.example.com."


def test_hosts_mount_the_efs_root_not_the_bare_dns_name():
    """Role shared_storage mounts ``shared_storage_source`` as an NFS source: ``<dns name>:/``
    (``mount -t nfs4 fs-….amazonaws.com /srv/…`` without ``:/`` is no NFS source)."""
    dep, settings = load(2)

    def lister(region: str, *_: str) -> list[Host]:
        return [Host(f"i-{region}", "10.100.128.10", HostKind.APP, region)]

    ws = FakeWorkspace()
    topo = target(dep, settings, ws, host_lister=lister).up().topology
    assert topo is not None
    hostvars = render_inventory(topo, dep)["all"]["children"]["app"]["hosts"]
    assert {h: v["shared_storage_source"] for h, v in hostvars.items()} == {
        "i-us-east-1": "fs-us-east-1.efs.us-east-1.amazonaws.com:/",
        "i-eu-west-1": "fs-eu-west-1.efs.eu-west-1.amazonaws.com:/"}
    assert {v["shared_storage_type"] for v in hostvars.values()} == {"efs"}
    # A stack from before the efs_mount_source output: the source is still "<dns name>:/".
    for outputs in ws.stacks.values():
        outputs.pop("efs_mount_source", None)
    older = target(dep, settings, ws, host_lister=lister).topology(
        {r.name: ws.stacks[f"demo-{r.name}"] for r in dep.regions}, None)
    assert older.region("eu-west-1").storage.source == (
        "fs-eu-west-1.efs.eu-west-1.amazonaws.com:/")


# --- the environment: CLI, credentials, backend --------------------------------------------

def test_missing_pulumi_cli_is_one_environment_error():
    dep, settings = load(2)
    aws = Stacks(dep, settings=settings, env={"PATH": "/nonexistent"},
                 credentials=lambda: True)
    with pytest.raises(HadeployError) as err:
        aws.up()
    assert err.value.code is ExitCode.ENVIRONMENT
    assert "pulumi" in err.value.message and "install" in (err.value.hint or "")


def real_workspace(settings: AwsSettings, tmp_path: Any) -> PulumiWorkspace:
    """The real workspace, its state and stack configuration under tmp_path."""
    env = {"PULUMI_CONFIG_PASSPHRASE": "correct horse", "HADEPLOY_STACKS_DIR": str(tmp_path)}
    return PulumiWorkspace(settings, env, state=pulumi_state(
        settings, env, state_root=tmp_path / "state", cwd=tmp_path))


def test_automation_api_without_the_cli_maps_to_the_same_error(monkeypatch, tmp_path):
    """The real workspace: pulumi.automation raises FileNotFoundError (no CLI here)."""
    from pulumi import automation as auto

    def no_cli(*_a: Any, **_kw: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", "pulumi")

    monkeypatch.setattr(auto, "LocalWorkspace", no_cli)
    monkeypatch.setattr(auto, "create_or_select_stack", no_cli)
    _, settings = load(2)
    ws = real_workspace(settings, tmp_path)
    (tmp_path / "state").mkdir()  # the local backend exists: whoami runs
    for call in (ws.check, lambda: ws.up(StackSpec("p", "s", lambda: None, {}))):
        with pytest.raises(HadeployError) as err:
            call()
        assert err.value.code is ExitCode.ENVIRONMENT and "not installed" in err.value.message


def test_missing_credentials_is_one_environment_error():
    dep, settings = load(2)
    ws = FakeWorkspace()
    aws = Stacks(dep, settings=settings, workspace=ws, credentials=lambda: False)
    with pytest.raises(HadeployError) as err:
        aws.up()
    assert err.value.code is ExitCode.ENVIRONMENT
    assert "credentials" in err.value.message and "AWS_PROFILE" in (err.value.hint or "")
    assert ws.calls == []  # nothing started


def test_credential_sources(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "boto3", None)  # the file-based fallback
    assert aws_credentials_available({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert aws_credentials_available({"AWS_PROFILE": "ops"})
    assert not aws_credentials_available({"AWS_ACCESS_KEY_ID": "a", "HOME": str(tmp_path)})
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    assert aws_credentials_available({"HOME": str(tmp_path)})


def test_unreachable_backend_is_one_environment_error(monkeypatch, tmp_path):
    from pulumi import automation as auto
    from pulumi.automation._cmd import CommandResult

    class Unreachable:
        def __init__(self, **_kw: Any) -> None:
            pass

        def who_am_i(self) -> Any:
            raise auto.CommandError(CommandResult(
                "", "error: failed to get whoami: dial tcp: lookup my-state.s3.amazonaws.com:"
                " no such host", 255))

    monkeypatch.setattr(auto, "LocalWorkspace", Unreachable)
    _, settings = load(2, backend_url="s3://my-state")
    with pytest.raises(HadeployError) as err:
        real_workspace(settings, tmp_path).check()
    assert err.value.code is ExitCode.ENVIRONMENT
    assert "s3://my-state" in err.value.message and "no such host" in err.value.message
    assert "aws.backend_url" in err.value.message and "aws.backend_url" in (err.value.hint or "")


def test_stack_failure_is_reported_not_raised_as_traceback(monkeypatch, tmp_path):
    from pulumi import automation as auto
    from pulumi.automation._cmd import CommandResult

    def failing(**_kw: Any) -> Any:
        raise auto.CommandError(CommandResult("", "error: creating EC2 VPC: VpcLimitExceeded",
                                              255))

    monkeypatch.setattr(auto, "create_or_select_stack", failing)
    _, settings = load(2)
    with pytest.raises(StackFailed, match="VpcLimitExceeded"):
        real_workspace(settings, tmp_path).up(StackSpec("p", "s", lambda: None, {}))


# --- configuration checks and import cost --------------------------------------------------

@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["regions"][1].pop("aws_region"), "regions[1].aws_region"),
    (lambda d: d["regions"][1].update(aws_region="us-east-1"), "regions[1].aws_region"),
    (lambda d: d["regions"][0].update(hosts=1), "regions[0].hosts"),
    (lambda d: d["aws"]["certificate_arns"].pop("eu-west-1"), "aws.certificate_arns.eu-west-1"),
    (lambda d: d["aws"]["certificate_arns"].update(
        {"eu-west-1": "arn:aws:acm:us-east-1:123456789012:certificate/x"}),
     "aws.certificate_arns.eu-west-1"),
    (lambda d: d["aws"].update(peers={"us-east-1": "mars"}), "aws.peers.us-east-1"),
])
def test_aws_specific_config_problems_name_the_field(change, field):
    raw = deployment(2)
    change(raw)
    dep, settings = load_stack_config(raw)
    with pytest.raises(HadeployError) as err:
        check_deployment(dep, settings)
    assert err.value.code is ExitCode.BAD_INPUT
    assert field in err.value.message and err.value.hint


def test_without_a_certificate_arn_a_known_hosted_zone_lets_the_stack_request_one():
    from hadeploy.infra.settings import plan_region

    raw = deployment(2)
    raw["aws"]["certificate_arns"].pop("eu-west-1")
    raw["aws"]["zone_id"] = "Z0123456789ABCDEFGHIJ"
    dep, settings = load_stack_config(raw)
    check_deployment(dep, settings)  # no problem: the stack requests it
    plan = plan_region(dep, settings, "eu-west-1")
    assert plan.certificate_arn == "" and plan.zone_id == "Z0123456789ABCDEFGHIJ"
    assert plan.domain == "app.example.com"
    assert plan_region(dep, settings, "us-east-1").certificate_arn.startswith("arn:aws:acm:")
    raw["aws"]["zone_id"] = None  # ... but without the zone there is nothing to validate in
    dep, settings = load_stack_config(raw)
    with pytest.raises(HadeployError) as err:
        check_deployment(dep, settings)
    assert "aws.certificate_arns.eu-west-1" in err.value.message
    assert "aws.zone_id" in err.value.hint


def test_the_driver_does_not_import_pulumi():
    code = ("import sys, hadeploy.targets.aws.driver, hadeploy.infra.settings; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pulumi', 'pulumi_aws', 'pulumi_policy', 'boto3')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
