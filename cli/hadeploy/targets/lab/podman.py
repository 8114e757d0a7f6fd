"""Thin, typed wrapper around the podman CLI with the project-local configuration.

podman's global configuration is never touched: every call carries
``CONTAINERS_CONF`` pointing at the file shipped next to this module (cgroupfs,
runc, file events logger: what works on cgroup-v1/hybrid hosts without CAP_SYS_RESOURCE).
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
LABEL = "io.hadeploy.deployment"


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def require_podman() -> str:
    exe = shutil.which("podman")
    if exe is None:
        raise HadeployError(
            "podman is not installed; the lab target runs every host as a podman container",
            hint="run scripts/setup.sh (installs podman, runc, debootstrap, knot) or "
            "'apt-get install -y podman runc debootstrap iptables'",
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
            hint="check 'podman info'; a stale object from an interrupted run is removed by "
            "'hadeploy down --yes'",
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
