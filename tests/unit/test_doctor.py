"""hadeploy doctor's logic against a fake machine: no podman, no root, no network."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hadeploy import doctor
from hadeploy.cli import app
from hadeploy.doctor import Check, Proc, System
from hadeploy.targets.lab import podman

CONF = """[containers]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
INFO = {"host": {"ociRuntime": {"name": "runc", "path": "/usr/bin/runc"},
                 "cgroupVersion": "v1", "cgroupManager": "cgroupfs", "networkBackend": "cni"},
        "store": {"graphRoot": "/var/lib/containers/storage", "graphDriverName": "overlay"}}
NET = json.dumps([{"name": "x", "subnets": [{"subnet": "10.89.3.0/24", "gateway": "10.89.3.1"}]}])
INIT_ERR = ("Error: container-init binary not found on the host: stat "
            "/usr/libexec/podman/catatonit: no such file or directory")


class FakeSystem(System):
    """A healthy Debian 12 lab machine; tests break one thing at a time."""

    def __init__(self) -> None:
        self.environ = {"PATH": "/usr/bin", "HOME": "/root"}
        self.euid = 0
        self.binaries = {n: f"/usr/bin/{n}" for n in (
            "podman", "runc", "iptables", "ssh", "ssh-keygen", "git", "debootstrap", "gpgv")}
        self.executables = {"/usr/bin/runc", doctor.DEFAULT_INIT_PATH,
                            "/venv/bin/ansible-playbook",
                            *(f"/usr/lib/cni/{p}" for p in doctor.CNI_PLUGINS)}
        self.files = {str(podman.CONTAINERS_CONF): CONF,
                      "/proc/sys/net/ipv4/ip_forward": "1\n", doctor.KEYRING: "keys"}
        self.writable_paths = {"/proc/sys/net/ipv4/ip_forward"}
        self.free = 50 * 1024**3
        self.modules = {"ansible_runner", *doctor.AWS_MODULES}
        self.calls: list[list[str]] = []
        self.answers: list[tuple[Callable[[list[str]], bool], Proc]] = []

    def answer(self, when: Callable[[list[str]], bool], proc: Proc) -> None:
        self.answers.insert(0, (when, proc))

    def geteuid(self) -> int:
        return self.euid

    def which(self, name: str) -> str | None:
        return self.binaries.get(name)

    def run(self, cmd: Sequence[str], *, env=None, timeout: float = 30) -> Proc:
        cmd = list(cmd)
        self.calls.append(cmd)
        for when, proc in self.answers:
            if when(cmd):
                return proc
        args = cmd[1:]
        if args[:1] == ["--version"]:
            return Proc(0, {"podman": "podman version 4.3.1\n",
                            "runc": "runc version 1.1.5\n",
                            "iptables": "iptables v1.8.9 (nf_tables)\n"}.get(
                                Path(cmd[0]).name, "x 1\n"))
        if args[:1] == ["info"]:
            return Proc(0, json.dumps(INFO))
        if args[:2] == ["network", "inspect"]:
            return Proc(0, NET)
        if args[:1] == ["exec"]:
            return Proc(0, "running\n")
        if args[:3] == ["-t", "nat", "-S"]:
            return Proc(0, "-P PREROUTING ACCEPT\n")
        if args[:1] == ["-V"]:
            return Proc(0, "", "OpenSSH_9.2p1\n")
        return Proc(0)

    def is_executable(self, path: str) -> bool:
        return path in self.executables

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.executables

    def writable(self, path: str) -> bool:
        return path in self.writable_paths

    def free_bytes(self, path: str) -> tuple[str, int]:
        return path, self.free

    def has_module(self, name: str) -> bool:
        return name in self.modules

    def python_bin(self) -> Path:
        return Path("/venv/bin")


def podman_calls(fake: FakeSystem, *words: str) -> list[list[str]]:
    return [c for c in fake.calls if c[0] == "/usr/bin/podman" and c[1:1 + len(words)]
            == list(words)]


def by_id(checks: list[Check]) -> dict[str, Check]:
    return {c.id: c for c in checks}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    monkeypatch.setattr("hadeploy.targets.lab.image.image_ref",
                        lambda mirror=None: "localhost/hadeploy-lab:test")
    return FakeSystem()


# --- pure helpers -------------------------------------------------------------------------

def test_init_path_comes_from_the_containers_section_or_podmans_default():
    assert doctor.init_path({}) == "/usr/libexec/podman/catatonit"
    assert doctor.init_path({"containers": {"log_driver": "k8s-file"}}) == \
        "/usr/libexec/podman/catatonit"
    assert doctor.init_path({"containers": {"init_path": "/opt/tini"}}) == "/opt/tini"
    assert doctor.init_path({"containers": {"init_path": ""}}) == doctor.DEFAULT_INIT_PATH
    assert doctor.init_path({"engine": {"init_path": "/opt/tini"}}) == doctor.DEFAULT_INIT_PATH


@pytest.mark.parametrize(("stderr", "check_id"), [
    (INIT_ERR, "container-init"),
    ('Error: default OCI runtime "runc" not found: invalid argument', "oci-runtime"),
    ('plugin type="bridge" failed (add): failed to find plugin "bridge" in path [/usr/lib/cni]',
     "network-backend"),
    ('could not find "netavark" in one of [/usr/libexec/podman]', "network-backend"),
    ('failed to locate iptables: exec: "iptables": executable file not found in $PATH',
     "iptables"),
    ("Error: could not find a working conmon binary", "podman-info"),
    ("write /var/lib/containers/x: no space left on device", "disk-images"),
    ("Error: localhost/hadeploy-lab:abc: image not known", "lab-image"),
    ("Error: something nobody has seen before", None),
])
def test_podman_error_texts_map_to_the_check_that_explains_them(stderr, check_id):
    assert doctor.classify(stderr) == check_id


def test_podman_env_honours_the_containers_conf_override(monkeypatch, tmp_path):
    monkeypatch.delenv(podman.CONTAINERS_CONF_ENV, raising=False)
    assert podman.podman_env()["CONTAINERS_CONF"] == str(podman.CONTAINERS_CONF)
    monkeypatch.setenv(podman.CONTAINERS_CONF_ENV, str(tmp_path / "c.conf"))
    assert podman.podman_env()["CONTAINERS_CONF"] == str(tmp_path / "c.conf")
    assert podman.containers_conf() == tmp_path / "c.conf"


def test_podman_failure_hint_names_the_package_for_a_missing_init():
    assert "apt-get install -y --no-install-recommends catatonit" in \
        podman.failure_hint(INIT_ERR)
    assert "hadeploy doctor" in podman.failure_hint("Error: something else")


# --- lab checks on a fake machine -----------------------------------------------------------

def test_a_healthy_machine_passes_every_lab_check_and_cleans_up(fake):
    checks = doctor.run_checks("lab", system=fake)
    assert [c.id for c in checks] == doctor.check_ids("lab")
    assert {c.id: c.status for c in checks if c.status != "ok"} == {}
    assert doctor.exit_code(checks) == 0
    created = podman_calls(fake, "network", "create")
    assert len(created) == 1 and created[0][-1].startswith("hd-doctor-")
    net = created[0][-1]
    runs = podman_calls(fake, "run")
    init_run = next(r for r in runs if "--init" in r)
    host_run = next(r for r in runs if "--systemd=always" in r)
    assert init_run[init_run.index("--ip") + 1] == "10.89.3.10"
    assert host_run[host_run.index("--ip") + 1] == "10.89.3.11"
    assert host_run[host_run.index("--mac-address") + 1] == "02:48:0a:59:03:0b"
    assert host_run[-1] == "/lib/systemd/systemd" and "--tmpfs" in host_run
    removed = podman_calls(fake, "rm", "-f")
    assert removed and all(n.startswith(f"{net}-") for n in removed[0][5:])
    assert podman_calls(fake, "network", "rm", "-f", net)


def test_missing_init_fails_container_init_and_names_catatonit(fake):
    fake.executables.discard(doctor.DEFAULT_INIT_PATH)
    fake.answer(lambda c: "--init" in c, Proc(125, "", INIT_ERR))
    checks = by_id(doctor.run_checks("lab", system=fake))
    assert checks["container-init"].status == "fail"
    assert "catatonit" in checks["container-init"].fix
    assert checks["container-run"].status == "fail"
    assert "see check 'container-init'" in checks["container-run"].detail
    assert checks["systemd-boot"].status == "ok"
    assert doctor.exit_code(checks.values()) == 6
    assert podman_calls(fake, "network", "rm", "-f")  # cleaned up even so


def test_a_run_failure_blames_the_check_that_owns_the_cause(fake):
    # The binary exists where the config says, yet podman cannot use it: the real run wins.
    fake.answer(lambda c: "--init" in c, Proc(125, "", INIT_ERR))
    checks = by_id(doctor.run_checks("lab", system=fake))
    assert checks["container-init"].status == "fail"
    assert "podman says" in checks["container-init"].detail


def test_custom_init_path_is_read_from_the_override(fake):
    fake.files["/tmp/c.conf"] = '[containers]\ninit_path = "/nonexistent/catatonit"\n'
    fake.environ[podman.CONTAINERS_CONF_ENV] = "/tmp/c.conf"
    checks = by_id(doctor.run_checks("lab", system=fake, only={"container-init",
                                                               "containers-conf"}))
    assert set(checks) == {"container-init", "containers-conf"}
    assert "/nonexistent/catatonit" in checks["container-init"].detail
    assert "catatonit" in checks["container-init"].fix
    assert "HADEPLOY_CONTAINERS_CONF" in checks["containers-conf"].detail
    assert not fake.calls  # nothing else ran


def test_unreadable_override_fails_the_configuration_check(fake):
    fake.environ[podman.CONTAINERS_CONF_ENV] = "/nonexistent.conf"
    checks = by_id(doctor.run_checks("lab", system=fake, only={"containers-conf"}))
    assert checks["containers-conf"].status == "fail"
    assert podman.CONTAINERS_CONF_ENV in checks["containers-conf"].fix


def test_only_warnings_exit_zero(fake):
    fake.files["/proc/sys/net/ipv4/ip_forward"] = "0\n"
    checks = doctor.run_checks("lab", system=fake)
    assert {c.id: c.status for c in checks if c.status != "ok"} == {"ip-forward": "warn"}
    assert doctor.exit_code(checks) == 0
    assert doctor.to_doc("lab", checks)["ok"] is True


def test_ip_forward_off_and_read_only_fails(fake):
    fake.files["/proc/sys/net/ipv4/ip_forward"] = "0\n"
    fake.writable_paths.clear()
    check = doctor.run_checks("lab", system=fake, only={"ip-forward"})[0]
    assert check.status == "fail" and "sysctl -w net.ipv4.ip_forward=1" in check.fix


def test_debootstrap_matters_only_without_the_image(fake):
    del fake.binaries["debootstrap"]
    assert doctor.run_checks("lab", system=fake, only={"debootstrap"})[0].status == "warn"
    fake.answer(lambda c: c[1:3] == ["image", "exists"], Proc(1))
    checks = by_id(doctor.run_checks("lab", system=fake, only={"debootstrap", "lab-image"}))
    assert checks["debootstrap"].status == "fail"
    assert checks["lab-image"].status == "fail"
    assert checks["lab-image"].fix == "run scripts/setup.sh (builds it, ~100 s)"


def test_container_checks_are_not_run_without_the_image(fake):
    fake.answer(lambda c: c[1:3] == ["image", "exists"], Proc(1))
    checks = by_id(doctor.run_checks("lab", system=fake))
    assert checks["container-run"].status == "warn"
    assert "lab-image" in checks["container-run"].detail
    assert not podman_calls(fake, "network", "create")


def test_podman_info_failure_is_reported_with_its_cause(fake):
    fake.answer(lambda c: c[1:2] == ["info"],
                Proc(125, "", "Error: could not find a working conmon binary"))
    checks = by_id(doctor.run_checks("lab", system=fake))
    assert checks["podman-info"].status == "fail"
    assert checks["podman-info"].fix.endswith("conmon")
    assert checks["lab-image"].status == "fail"
    assert not podman_calls(fake, "run")


def test_missing_cni_plugins_fail_the_network_backend(fake):
    fake.executables.discard("/usr/lib/cni/portmap")
    check = doctor.run_checks("lab", system=fake, only={"network-backend"})[0]
    assert check.status == "fail" and "containernetworking-plugins" in check.fix


def test_low_disk_fails(fake):
    fake.free = 100 * 1024**2
    checks = by_id(doctor.run_checks("lab", system=fake, only={"disk-images", "disk-state"}))
    assert checks["disk-images"].status == "fail" and checks["disk-state"].status == "fail"


def test_not_root_fails(fake):
    fake.euid = 1000
    checks = by_id(doctor.run_checks("lab", system=fake))
    assert checks["root"].status == "fail"
    assert checks["container-run"].status == "warn"  # not attempted


def test_a_crashing_check_is_a_failed_check_and_cleanup_still_runs(fake):
    def boom(cmd: list[str]) -> bool:
        if cmd[1:2] == ["exec"]:
            raise RuntimeError("exec exploded")
        return False
    fake.answer(boom, Proc(0))
    checks = by_id(doctor.run_checks("lab", system=fake))
    assert checks["container-run"].status == "fail"
    assert "exec exploded" in checks["container-run"].detail
    assert podman_calls(fake, "rm", "-f") and podman_calls(fake, "network", "rm", "-f")


def test_explain_environment_error_names_the_failing_quick_check(fake):
    fake.executables.discard(doctor.DEFAULT_INIT_PATH)
    hint = doctor.explain_environment_error("lab", system=fake)
    assert hint is not None
    assert hint.startswith("doctor check 'container-init' fails: "
                           "/usr/libexec/podman/catatonit is missing")
    assert "fix: apt-get install -y --no-install-recommends catatonit" in hint
    assert "(run 'hadeploy doctor' for every check)" in hint
    assert not podman_calls(fake, "run")  # quick checks only: no container


def test_explain_environment_error_is_none_on_a_healthy_machine(fake):
    assert doctor.explain_environment_error("lab", system=fake) is None


# --- aws checks ---------------------------------------------------------------------------------

def test_aws_without_the_cli_fails_honestly(fake):
    fake.environ.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    checks = by_id(doctor.run_checks("aws", system=fake))
    assert list(checks) == ["aws-packages", "pulumi-cli", "aws-credentials", "pulumi-backend"]
    assert checks["aws-packages"].status == "ok"
    assert checks["aws-credentials"].status == "ok"
    assert checks["pulumi-cli"].status == "fail"
    assert "get.pulumi.com" in checks["pulumi-cli"].fix
    assert checks["pulumi-backend"].status == "fail"
    assert checks["pulumi-backend"].detail == "needs the pulumi CLI"


def test_aws_missing_packages_are_named(fake):
    fake.modules -= {"pulumi_aws", "boto3"}
    check = doctor.run_checks("aws", system=fake, only={"aws-packages"})[0]
    assert check.status == "fail" and "pulumi_aws, boto3" in check.detail
    assert "hadeploy[aws]" in check.fix


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="unknown target"):
        doctor.run_checks("gcp")


# --- rendering and the command --------------------------------------------------------------------

SAMPLE = [Check("root", "running as root", "ok", "uid 0", "w"),
          Check("ip-forward", "IPv4 forwarding", "warn", "0", "w2", "sysctl -w x=1"),
          Check("container-init", "container init", "fail", "missing", "w3", "apt-get x")]


def test_json_document_shape():
    doc = doctor.to_doc("lab", SAMPLE)
    assert doc["target"] == "lab" and doc["ok"] is False
    assert [set(c) for c in doc["checks"]] == [
        {"id", "title", "status", "detail", "why", "fix"}] * 3
    json.dumps(doc)


def test_text_lists_every_check_then_each_failure_with_its_fix():
    text = doctor.render_text("lab", SAMPLE)
    lines = text.splitlines()
    assert "✓ running as root: uid 0" in lines
    assert "! IPv4 forwarding: 0" in lines
    assert "✗ container init: missing" in lines
    assert "✗ container-init: w3" in lines and "  fix: apt-get x" in lines
    assert lines[-1] == "1 ok, 1 warning(s), 1 failed"


@pytest.mark.parametrize(("checks", "code"), [(SAMPLE, 6), (SAMPLE[:2], 0)])
def test_command_exit_code_and_single_json_document(monkeypatch, tmp_path, checks, code):
    seen: dict[str, object] = {}

    def fake_run(target, **kw):
        seen["target"] = target
        return checks
    monkeypatch.setattr("hadeploy.doctor.run_checks", fake_run)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == code, result.output
    doc = json.loads(result.stdout)
    assert seen["target"] == "lab" and doc["target"] == "lab"
    assert doc["ok"] is (code == 0)


AWS_SECTION = """
aws:
  account_id: "123456789012"
  certificate_arns:
    east: arn:aws:acm:us-east-1:123456789012:certificate/abc-1
    west: arn:aws:acm:eu-west-1:123456789012:certificate/abc-2
"""


def test_target_defaults_to_the_configs(monkeypatch, tmp_path):
    from hadeploy import config

    seen: list[str] = []
    monkeypatch.setattr("hadeploy.doctor.run_checks",
                        lambda target, **kw: seen.append(target) or [])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hadeploy.yaml").write_text(
        config.EXAMPLE.replace("target: lab", "target: aws").replace("  enabled: true",
                                                                      "  enabled: false")
        + AWS_SECTION)
    runner = CliRunner()
    assert runner.invoke(app, ["doctor"]).exit_code == 0
    assert runner.invoke(app, ["doctor", "--target", "lab"]).exit_code == 0
    (tmp_path / "bad.yaml").write_text("regions: [\n")
    assert runner.invoke(app, ["doctor", "--config", "bad.yaml"]).exit_code == 0
    assert seen == ["aws", "lab", "lab"]
