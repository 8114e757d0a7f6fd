"""Configure the hosts: render the inventory from the topology, run a playbook through
ansible-runner, and show compact progress (one live line, then one line per host).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hadeploy import paths
from hadeploy.config import Deployment
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.state import atomic_write
from hadeploy.topology import RUNTIME_VARS, Topology, inventory_text, render_inventory

# The only variables of hadeploy's own environment that Ansible gets: nothing else (cloud
# credentials, tokens) reaches Ansible or its artifacts on disk.
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "TZ")


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class DriftItem:
    """One task that Ansible's check mode says would change a host: the host differs from
    what the roles make it."""

    host: str
    task: str
    path: str | None = None  # the file, when the task manages one
    diff: str = ""  # a unified diff (before → after), cut to DIFF_LINES lines

    def __str__(self) -> str:
        return f"{self.host}: {self.task}" + (f" ({self.path})" if self.path else "")

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "task": self.task, "path": self.path, "diff": self.diff}


DIFF_LINES = 40


def diff_text(diffs: Any) -> tuple[str | None, str]:
    """Ansible's ``diff`` result (one dict or a list of them, with before/after and their
    headers) as (the file it names, a unified diff of at most DIFF_LINES lines)."""
    import difflib

    path: str | None = None
    lines: list[str] = []
    for d in diffs if isinstance(diffs, list) else [diffs]:
        if not isinstance(d, dict):
            continue
        before, after = d.get("before"), d.get("after")
        header = str(d.get("before_header") or "")  # the file on the host (after: the source)
        if header and path is None and header.startswith("/"):
            path = header
        if isinstance(before, str) and isinstance(after, str):
            lines += difflib.unified_diff(before.splitlines(), after.splitlines(),
                                          str(d.get("before_header") or "before"),
                                          str(d.get("after_header") or "after"),
                                          lineterm="", n=1)
        elif before is not None or after is not None:
            lines.append(f"- {json.dumps(before, sort_keys=True, default=str)[:300]}")
            lines.append(f"+ {json.dumps(after, sort_keys=True, default=str)[:300]}")
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more lines)"]
    return path, "\n".join(lines)


@dataclass
class PlaybookResult:
    playbook: str
    rc: int
    seconds: float
    hosts: dict[str, HostStats] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    drift: list[DriftItem] = field(default_factory=list)  # check mode: what would change

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "rc": self.rc, "seconds": round(self.seconds, 1),
                "changed": self.changed,
                "hosts": {n: vars(s) for n, s in sorted(self.hosts.items())},
                "failures": self.failures}


def write_inventory(topo: Topology, dep: Deployment, state: Path,
                    extra: dict[str, str] | None = None) -> Path:
    """Render ``<state>/inventory/`` (hosts.yml + the target's group_vars); return it."""
    inv = state / "inventory"
    atomic_write(inv / "hosts.yml", inventory_text(topo, dep, extra))
    src = paths.inventory_dir(topo.target) / "group_vars"
    dst = inv / "group_vars"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return inv


def region_fingerprints(topo: Topology, dep: Deployment, playbook: str,
                        extra: dict[str, str] | None = None) -> dict[str, str]:
    """Per region, a hash of everything that decides its hosts' configuration: the roles,
    the playbooks, the target's group vars and the region's own inventory variables.
    Regions are converged independently: repairing one never touches another; adding one
    changes the others' fingerprints only through their database hosts' variables (a slot
    for the newcomer, its replication access).
    """
    shared = hashlib.sha256()
    roots = [paths.inventory_dir(topo.target), paths.roles_dir(),
             paths.playbook(playbook).parent]
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()
                           and "__pycache__" not in p.parts):
            shared.update(str(path.relative_to(root)).encode())
            shared.update(path.read_bytes())
    inv = render_inventory(topo, dep, extra)["all"]
    out = {}
    for region in topo.regions:
        hostvars = {h.name: {k: v for k, v in inv["children"][h.kind]["hosts"][h.name].items()
                             if k not in RUNTIME_VARS} for h in region.hosts}
        digest = shared.copy()
        digest.update(json.dumps([inv["vars"], hostvars], sort_keys=True).encode())
        out[region.name] = digest.hexdigest()
    return out


def _env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    passed = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    return {
        **passed,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LANG": os.environ.get("LANG") or "C.UTF-8",  # Ansible requires a UTF-8 locale
        "ANSIBLE_ROLES_PATH": str(paths.roles_dir()),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        # One SSH connection per host for the whole run, modules piped over it.
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=30s "
                            "-o ServerAliveInterval=10 -o LogLevel=ERROR",
        "ANSIBLE_TIMEOUT": "15",
    }


def run_playbook(inventory: Path, state: Path, playbook: str = "site.yml", *,
                 extravars: dict[str, Any] | None = None, limit: str | None = None,
                 on_task: Callable[[str, int], None] = lambda _t, _n: None,
                 check: bool = False) -> PlaybookResult:
    """Run ``playbook``; with ``check``, in Ansible's check mode with diffs (nothing on the
    hosts changes) and every task that would change a host collected in ``drift``."""
    if shutil.which("ansible-playbook", path=_env()["PATH"]) is None:
        raise HadeployError("ansible-playbook is not installed next to hadeploy",
                            hint="pip install ansible (scripts/setup.sh does it)",
                            code=ExitCode.ENVIRONMENT)
    import ansible_runner

    result = PlaybookResult(playbook, 1, 0.0)
    tasks_seen = 0

    def handler(event: dict[str, Any]) -> bool:
        nonlocal tasks_seen
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_task_start":
            tasks_seen += 1
            on_task(str(data.get("task", "")), tasks_seen)
        elif kind in {"runner_on_failed", "runner_on_unreachable"} and not data.get(
                "ignore_errors"):
            res = data.get("res") or {}
            detail = res.get("msg") or res.get("stderr") or res.get("reason") or ""
            result.failures.append(f"{data.get('host')}: {data.get('task')}: "
                                   f"{str(detail).strip()[:500]}")
        elif (kind == "runner_on_ok" and check and (data.get("res") or {}).get("changed")
              and "/handlers/" not in str(data.get("task_path"))):  # a handler: a consequence
            res = data.get("res") or {}
            path, text = diff_text(res.get("diff") or [])
            path = next((str(res[k]) for k in ("dest", "path") if isinstance(res.get(k), str)
                         and str(res[k]).startswith("/")), path)
            result.drift.append(DriftItem(str(data.get("host")), str(data.get("task")), path,
                                          text))
        elif kind == "playbook_on_stats":
            for attr, key in (("ok", "ok"), ("changed", "changed"), ("failed", "failures"),
                              ("unreachable", "dark"), ("skipped", "skipped")):
                for host, count in (data.get(key) or {}).items():
                    setattr(result.hosts.setdefault(host, HostStats()), attr, count)
        return False  # do not keep every event on disk twice

    private = state / "ansible"
    private.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = time.monotonic()
    config = ansible_runner.RunnerConfig(
        private_data_dir=str(private), playbook=str(paths.playbook(playbook)),
        inventory=str(inventory), envvars=_env(), extravars=extravars or {}, limit=limit,
        forks=25, quiet=True, rotate_artifacts=3, suppress_env_files=True,
        cmdline="--check --diff" if check else None,
        settings={"suppress_ansible_output": True})
    config.prepare()
    config.env = _only_passed(config.env)
    runner = ansible_runner.Runner(config=config, event_handler=handler)
    runner.run()
    result.seconds = time.monotonic() - start
    result.rc = runner.rc if runner.rc is not None else 1
    if runner.status == "failed" and not result.failures and not result.hosts:
        stdout = ""
        try:
            stdout = runner.stdout.read()[-1500:]
        except Exception:
            stdout = ""
        result.failures.append(f"ansible-playbook exited {result.rc}: {stdout.strip()}")
    return result


def _only_passed(env: dict[str, str]) -> dict[str, str]:
    """ansible-runner seeds the job's environment with the whole process environment (and
    writes it into ``artifacts/<id>/command``): keep what runner itself set and what
    :func:`_env` passes, drop everything inherited from hadeploy's environment."""
    ours = _env()
    return {k: v for k, v in env.items()
            if k in ours or os.environ.get(k) != v}
