"""Database backups (pgBackRest): every region's backup host keeps a repository; the
primary archives WAL to all of them; each backup host takes full and differential backups
of whichever region's cluster takes writes, writes a *marker* after each one, and tests
restores into a scratch server. This module is the CLI's side: the repository key, and
reading and driving the backup hosts (through ``roles/pgbackrest/files/backup.py``).

In ``<state>/backup/`` (kept by ``down`` unless ``--delete-backups``):
  repo-<id>.key   the repositories' encryption passphrase (0600), one per incarnation of
                  the deployment: ``<id>`` is derived from its database CA, and the
                  repository lives in ``/var/lib/pgbackrest/<id>`` on every backup host.
  files-<id>.key  the password of the shared storage's restic repositories (0600), and
  files-<id>-ssh  the SSH key (ed25519, 0600; ``.pub`` next to it) an app host writes its
                  region's files with, over SFTP, to another region's backup host.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hadeploy import dbsecrets
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.state import BACKUP_DIR, atomic_write
from hadeploy.topology import HostKind, RegionTopology, Topology, files_backed_up

if TYPE_CHECKING:
    from hadeploy.config import BackupConfig
    from hadeploy.data import HostRun

SCRIPT = "/usr/local/lib/hadeploy/backup.py"  # roles/pgbackrest
FILES_SCRIPT = "/usr/local/lib/hadeploy/files-backup.py"  # roles/restic


def backup_dir(state: Path) -> Path:
    return state / BACKUP_DIR


def repo_id(state: Path) -> str:
    """The repository directory of this incarnation (what the pgbackrest role computes)."""
    return hashlib.sha256(dbsecrets.ca_path(state).read_bytes()).hexdigest()[:12]


def key_path(state: Path) -> Path:
    return backup_dir(state) / f"repo-{repo_id(state)}.key"


def files_key_path(state: Path) -> Path:
    return backup_dir(state) / f"files-{repo_id(state)}.key"


def files_ssh_path(state: Path) -> Path:
    return backup_dir(state) / f"files-{repo_id(state)}-ssh"


def has_repo_key(state: Path) -> bool:
    return dbsecrets.ca_path(state).exists() and all(
        p.exists() for p in (key_path(state), files_key_path(state), files_ssh_path(state)))


def ensure_repo_key(state: Path) -> bool:
    """The repositories' passphrases and the files backup's SSH key (after the CA exists);
    whether anything was created."""
    created = False
    for path in (key_path(state), files_key_path(state)):
        if not path.exists():
            atomic_write(path, secrets.token_urlsafe(48))
            created = True
    if not files_ssh_path(state).exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        atomic_write(files_ssh_path(state), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption()))
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
        atomic_write(files_ssh_path(state).with_suffix(".pub"), public + b"\n", mode=0o644)
        created = True
    return created


# --- the backup hosts ----------------------------------------------------------------------

def _json_line(out: str) -> dict[str, Any] | None:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                return None
            return doc if isinstance(doc, dict) else None
    return None


def parse_time(value: Any) -> float | None:
    """A record's UTC time ('2026-11-28T17:17:39Z') as a POSIX timestamp."""
    if not isinstance(value, str):
        return None
    try:
        return _dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=_dt.UTC).timestamp()
    except ValueError:
        return None


class BackupHosts:
    """Drives each region's backup host (``roles/pgbackrest/files/backup.py``, run as
    postgres): every answer is the script's JSON document."""

    def __init__(self, topo: Topology, run: HostRun) -> None:
        self.topo, self.run = topo, run

    def regions(self) -> list[RegionTopology]:
        return [r for r in self.topo.regions if r.of_kind(HostKind.BACKUP)]

    def region(self, name: str | None) -> RegionTopology:
        """The named region with a backup host; by default the data primary's region."""
        with_hosts = self.regions()
        if not with_hosts:
            raise HadeployError("this deployment keeps no database backups",
                                hint="enable data.backup (and data) in hadeploy.yaml and run "
                                "'hadeploy up'", code=ExitCode.BAD_INPUT)
        if name is None:
            primary = self.topo.data_primary_region
            return next((r for r in with_hosts if primary and r.name == primary.name),
                        with_hosts[0])
        found = next((r for r in with_hosts if r.name == name), None)
        if found is None:
            raise HadeployError(f"region {name!r} has no backup repository",
                                hint="choose one of: " + ", ".join(r.name for r in with_hosts),
                                code=ExitCode.BAD_INPUT)
        return found

    def call(self, region: RegionTopology, *args: str, timeout: float = 7200,
             files: bool = False) -> dict[str, Any]:
        """The database backup script on the region's backup host, or (``files``) the
        files backup script on the region's first app host."""
        if files:
            host, script, user = region.of_kind(HostKind.APP)[0], FILES_SCRIPT, "root"
        else:
            host, script, user = region.of_kind(HostKind.BACKUP)[0], SCRIPT, "postgres"
        rc, out = self.run(host, ["python3", script, *args], user=user, timeout=timeout)
        doc = _json_line(out)
        if doc is None:
            raise HadeployError(f"the backup host {host.name} did not answer ({rc}): "
                                f"{out.strip()[-300:] or 'no output'}",
                                hint="is it running? 'hadeploy status' shows its container; "
                                "'hadeploy up' repairs it", code=ExitCode.FAILED)
        return doc

    def each(self, *args: str, timeout: float = 60,
             files: bool = False) -> dict[str, dict[str, Any]]:
        """The same command on every region's backup host (``files``: first app host) at
        once: region → answer (an ``error`` key when it could not answer)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(region: RegionTopology) -> dict[str, Any]:
            try:
                return self.call(region, *args, timeout=timeout, files=files)
            except HadeployError as exc:
                return {"ok": False, "error": exc.message}
            except Exception as exc:  # a timeout, podman gone: reported per region
                return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        regions = [r for r in self.regions() if not files or files_backed_up(r)]
        with ThreadPoolExecutor(max_workers=max(1, len(regions))) as pool:
            return dict(zip([r.name for r in regions], pool.map(one, regions), strict=True))


@dataclass(frozen=True)
class Freshness:
    """A repository's newest good backup and last restore test, against the policy."""

    region: str
    backup_at: float | None
    backup_label: str | None
    backup_error: str | None  # the last attempt failed (its message)
    verify_at: float | None
    verify_ok: bool | None
    verify_label: str | None
    verify_error: str | None
    split_brain: bool = False

    def problems(self, policy: BackupConfig, now: float) -> list[str]:
        out = []
        if self.backup_at is None:
            out.append("no backup yet")
        elif now - self.backup_at > policy.max_age_seconds:
            out.append(f"newest backup older than {policy.max_age}")
        if self.split_brain:
            out.append("the WAL archive refused a push (two primaries wrote one timeline?)")
        if self.verify_ok is False:
            out.append(f"the last restore test failed ({(self.verify_error or '')[:160]})")
        elif self.verify_at is None:
            out.append("never restore-tested")
        elif now - self.verify_at > policy.verify_max_age_seconds:
            out.append(f"last restore test older than {policy.verify_max_age}")
        return out


def freshness(region: str, last: dict[str, Any]) -> Freshness:
    """From the script's ``last`` answer."""
    def record(key: str) -> dict[str, Any]:
        value = last.get(key)
        return value if isinstance(value, dict) else {}
    backup, verify, good = record("last_backup"), record("last_verify"), record("last_good_backup")
    return Freshness(
        region=region, backup_at=parse_time(good.get("finished_at")),
        backup_label=good.get("label"),
        backup_error=None if backup.get("ok", True) else str(backup.get("error", ""))[:300],
        verify_at=parse_time(verify.get("finished_at")),
        verify_ok=verify.get("ok") if verify else None, verify_label=verify.get("label"),
        verify_error=verify.get("error"), split_brain=bool(backup.get("split_brain")))
