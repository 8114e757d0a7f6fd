"""Thin, typed wrapper around the podman CLI with the project-local configuration.

podman's global configuration is never touched: every call carries
``CONTAINERS_CONF`` pointing at the file shipped next to this module (cgroupfs,
runc, file events logger: what works on cgroup-v1/hybrid hosts without CAP_SYS_RESOURCE),
or at ``$HADEPLOY_CONTAINERS_CONF`` when that is set (an override of the whole file,
docs/doctor.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hadeploy.errors import ExitCode, HadeployError

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
CONTAINERS_CONF_ENV = "HADEPLOY_CONTAINERS_CONF"
LABEL = "io.hadeploy.deployment"
BACKUP_LABEL = "io.hadeploy.backup"  # a volume holding a backup repository: kept by down
INIT_MISSING = "container-init binary not found"
INIT_PACKAGE = "catatonit"


def containers_conf() -> Path:
    """The containers.conf every podman call uses: ``$HADEPLOY_CONTAINERS_CONF`` if set,
    else the project's own file. podman reads only this file (not /etc/containers/)."""
    override = os.environ.get(CONTAINERS_CONF_ENV)
    return Path(override) if override else CONTAINERS_CONF


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(containers_conf())
    return env


def failure_hint(stderr: str) -> str:
    """How to fix a failed podman call, from what podman said."""
    if INIT_MISSING in stderr:
        return (f"podman's container init ('--init') is missing: install it with 'apt-get "
                f"install -y --no-install-recommends {INIT_PACKAGE}' (scripts/setup.sh does), "
                f"or point init_path in {containers_conf()} at an existing init binary")
    return ("run 'hadeploy doctor' to check this machine (podman, runtime, network backend, "
            "container init); a stale object from an interrupted run is removed by "
            "'hadeploy down --yes'")


def require_podman() -> str:
    exe = shutil.which("podman")
    if exe is None:
        raise HadeployError(
            "podman is not installed; the lab target runs every host as a podman container",
            hint="run scripts/setup.sh (installs podman, runc, catatonit, debootstrap, "
            "iptables) or 'apt-get install -y --no-install-recommends podman runc catatonit "
            "containernetworking-plugins debootstrap iptables'",
            code=ExitCode.ENVIRONMENT,
        )
    return exe


def run(args: Sequence[str], *, check: bool = True, input_: bytes | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [require_podman(), *args]
    proc = subprocess.run(
        cmd, env=podman_env(), capture_output=True, text=input_ is None, input=input_,
        timeout=timeout, check=False,
    )
    if check and proc.returncode != 0:
        stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(
            errors="replace")
        raise HadeployError(
            f"podman {' '.join(args[:3])} failed (exit {proc.returncode}): {stderr.strip()[:800]}",
            hint=failure_hint(stderr),
            code=ExitCode.ENVIRONMENT,
        )
    return proc  # type: ignore[return-value]


def run_json(args: Sequence[str]) -> Any:
    out = run(args).stdout
    return json.loads(out) if out.strip() else []


def containers(deployment: str | None = None) -> list[dict[str, Any]]:
    """Containers (running or not) labelled for ``deployment`` (or for any deployment)."""
    label = f"{LABEL}={deployment}" if deployment else LABEL
    return list(run_json(["ps", "-a", "--filter", f"label={label}", "--format", "json"]))


def networks(deployment: str | None = None) -> list[dict[str, Any]]:
    label = f"{LABEL}={deployment}" if deployment else LABEL
    return list(run_json(["network", "ls", "--filter", f"label={label}", "--format", "json"]))


def volumes(deployment: str | None = None) -> list[dict[str, Any]]:
    label = f"{LABEL}={deployment}" if deployment else LABEL
    return list(run_json(["volume", "ls", "--filter", f"label={label}", "--format", "json"]))


def image_labels(ref: str) -> dict[str, str] | None:
    proc = run(["image", "inspect", ref, "--format", "{{json .Labels}}"], check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout) or {}


def exec_(container: str, *cmd: str, check: bool = True,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run(["exec", container, *cmd], check=check, timeout=timeout)
