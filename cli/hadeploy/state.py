"""A deployment's state directory and its lock.

Layout of ``<state root>/<deployment>/`` (mode 0700):
  deployment.json   the validated desired state last applied (status/down read it)
  topology.json     what the target built
  converged.json    fingerprint of the configuration Ansible last converged
  dns/              TSIG key and knotd configuration (0600), zone files
  inventory/        the generated Ansible inventory (hosts.yml + group_vars)
  ansible/          ansible-runner's private data dir (artifacts of the last runs)
  lock              held (flock) by the run that changes the deployment
  audit.jsonl       one line per state-changing run (kept by ``down``)
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hadeploy.config import Deployment
from hadeploy.errors import ExitCode, HadeployError

KEEP_ON_DOWN = {"audit.jsonl", "lock"}


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.chmod(0o700)
        return self.path

    @property
    def exists(self) -> bool:
        return (self.path / "deployment.json").exists()

    def save_deployment(self, dep: Deployment) -> None:
        self.ensure()
        _atomic_write(self.path / "deployment.json", dep.model_dump_json(indent=2))

    def load_deployment(self) -> Deployment:
        from hadeploy.config import parse

        path = self.path / "deployment.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise HadeployError(f"no deployment found in {self.path}",
                                hint="run 'hadeploy up --regions east,west' (or pass --config "
                                "and --state-dir of an existing deployment)",
                                code=ExitCode.BAD_INPUT) from None
        except ValueError as exc:
            raise HadeployError(f"{path} is corrupt ({exc})", hint="run 'hadeploy up' with "
                                "your config to rewrite it", code=ExitCode.FAILED) from None
        return parse(data, str(path))

    def save_json(self, name: str, doc: Any) -> None:
        self.ensure()
        _atomic_write(self.path / name, json.dumps(doc, indent=2))

    def region_flags(self) -> dict[str, frozenset[str]]:
        """Region states recorded by failovers: ``promoted`` (standby scaled up) and
        ``fenced`` (refusing writes). Keyword arguments for ``lab_topology``."""
        try:
            doc = json.loads((self.path / "regions.json").read_text())
        except (OSError, ValueError):
            doc = {}
        return {"promoted": frozenset(doc.get("promoted", [])),
                "fenced": frozenset(doc.get("fenced", []))}

    def set_region_flag(self, flag: str, region: str, on: bool) -> None:
        flags = {k: set(v) for k, v in self.region_flags().items()}
        (flags[flag].add if on else flags[flag].discard)(region)
        self.save_json("regions.json", {k: sorted(v) for k, v in flags.items()})

    def append_audit(self, record: dict[str, Any]) -> None:
        self.ensure()
        line = json.dumps(record, sort_keys=True)
        with open(self.path / "audit.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def clear(self) -> None:
        """Forget what ``down`` removed; keep the audit trail."""
        if not self.path.exists():
            return
        for entry in self.path.iterdir():
            if entry.name in KEEP_ON_DOWN:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    @contextlib.contextmanager
    def lock(self, operation: str) -> Iterator[None]:
        """Exclusive lock for changing runs; a second run is refused and told who holds it."""
        self.ensure()
        path = self.path / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(path)
                raise HadeployError(
                    f"deployment is locked by {holder}",
                    hint="wait for that run to finish; a lock is released automatically "
                    "when its process exits", code=ExitCode.LOCKED) from None
            info = {"pid": os.getpid(), "user": getpass.getuser(),
                    "host": socket.gethostname(), "operation": operation,
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another run (holder unknown)"
    return (f"'{info.get('operation')}' run by {info.get('user')}@{info.get('host')} "
            f"(pid {info.get('pid')}) since {info.get('since')}")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
