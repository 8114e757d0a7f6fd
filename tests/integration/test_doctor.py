"""hadeploy doctor on this machine, for real: podman, the lab image, a container run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from hadeploy.targets.lab.podman import CONTAINERS_CONF, podman_env
from tests.conftest import run_cli

pytestmark = pytest.mark.lab


def leftovers() -> dict[str, list[str]]:
    """Every podman object named like doctor's (hd-doctor-*)."""
    def names(*args: str) -> list[str]:
        out = subprocess.run(["podman", *args], env=podman_env(), capture_output=True,
                             text=True, check=True).stdout
        return [n for n in out.split() if n.startswith("hd-doctor-")]
    return {"containers": names("ps", "-a", "--format", "{{.Names}}"),
            "networks": names("network", "ls", "--format", "{{.Name}}")}


def _podman(*args: str) -> None:
    subprocess.run(["podman", *args], env=podman_env(), capture_output=True, check=False)


@pytest.fixture
def no_leftovers():
    """After the test: doctor left no hd-doctor-* object (any found is removed, then the
    test fails)."""
    before = leftovers()  # from an interrupted earlier run: removed, not blamed on this one
    yield
    found = leftovers()
    try:
        assert {k: sorted(set(v) - set(before[k])) for k, v in found.items()} == \
            {"containers": [], "networks": []}
    finally:
        if found["containers"]:
            _podman("rm", "-f", "-t", "0", *found["containers"])
        for net in found["networks"]:
            _podman("network", "rm", "-f", net)


@pytest.mark.usefixtures("no_leftovers")
def test_doctor_passes_on_this_machine(tmp_path: Path, measurements):
    start = time.monotonic()
    r = run_cli("doctor", "--json", cwd=tmp_path, timeout=120)
    seconds = time.monotonic() - start
    measurements["doctor lab (s)"] = round(seconds, 2)
    assert r.rc == 0, r.out + r.err
    doc = json.loads(r.out)
    assert doc["target"] == "lab" and doc["ok"] is True
    statuses = {c["id"]: c["status"] for c in doc["checks"]}
    assert {"root", "podman", "podman-info", "oci-runtime", "network-backend",
            "container-init", "lab-image", "debootstrap", "container-run", "systemd-boot",
            "iptables", "ip-forward", "disk-images", "disk-state", "ssh",
            "ansible"} <= set(statuses)
    assert set(statuses.values()) <= {"ok", "warn"}, statuses
    assert statuses["container-run"] == "ok" and statuses["systemd-boot"] == "ok"


@pytest.mark.usefixtures("no_leftovers")
def test_doctor_names_the_missing_container_init(tmp_path: Path):
    conf = tmp_path / "containers.conf"
    text = CONTAINERS_CONF.read_text()
    assert "[containers]\n" in text
    conf.write_text(text.replace("[containers]\n",
                                 '[containers]\ninit_path = "/nonexistent/catatonit"\n', 1))
    env = {"HADEPLOY_CONTAINERS_CONF": str(conf)}
    r = run_cli("doctor", "--json", cwd=tmp_path, env=env, timeout=120)
    assert r.rc == 6, r.out + r.err
    checks = {c["id"]: c for c in json.loads(r.out)["checks"]}
    assert checks["container-init"]["status"] == "fail"
    assert "/nonexistent/catatonit" in checks["container-init"]["detail"]
    assert "catatonit" in checks["container-init"]["fix"]
    # the real run hit podman's own error, and says which check explains it
    assert checks["container-run"]["status"] == "fail"
    assert "container-init binary not found" in checks["container-run"]["detail"]
    assert "container-init" in checks["container-run"]["detail"]

    t = run_cli("doctor", cwd=tmp_path, env=env, timeout=120)
    assert t.rc == 6
    assert "✗ container-init:" in t.out
    assert re.search(r"fix: apt-get install -y --no-install-recommends catatonit", t.out)
    assert "Traceback" not in t.err


def test_doctor_for_aws_fails_honestly_without_the_pulumi_cli(tmp_path: Path):
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "pulumi").exists())
    r = run_cli("doctor", "--target", "aws", "--json", cwd=tmp_path, env={"PATH": path},
                timeout=120)
    assert r.rc == 6, r.out + r.err
    assert "Traceback" not in r.err
    doc = json.loads(r.out)
    checks = {c["id"]: c for c in doc["checks"]}
    assert doc["target"] == "aws" and doc["ok"] is False
    assert checks["pulumi-cli"]["status"] == "fail"
    assert "pulumi" in checks["pulumi-cli"]["detail"]
    assert checks["pulumi-backend"] == {**checks["pulumi-backend"], "status": "fail",
                                        "detail": "needs the pulumi CLI"}
    assert checks["aws-packages"]["status"] == "ok"
