"""Database backups (pgBackRest): every region's backup host keeps a repository; the
primary archives WAL to all of them; each backup host takes full and differential backups
of whichever region's cluster takes writes, writes a *marker* after each one, and tests
restores into a scratch server. This module is the CLI's side: the repository key, and
reading and driving the backup hosts (through ``roles/pgbackrest/files/backup.py``).

In ``<state>/backup/`` (kept by ``down`` unless ``--delete-backups``):
  repo-<id>.key   the repositories' encryption passphrase (0600), one per incarnation of
                  the deployment: ``<id>`` is derived from its database CA, and the
                  repository lives in ``/var/lib/pgbackrest/<id>`` on every backup host.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from hadeploy import dbsecrets
from hadeploy.state import BACKUP_DIR, atomic_write

SCRIPT = "/usr/local/lib/hadeploy/backup.py"  # roles/pgbackrest


def backup_dir(state: Path) -> Path:
    return state / BACKUP_DIR


def repo_id(state: Path) -> str:
    """The repository directory of this incarnation (what the pgbackrest role computes)."""
    return hashlib.sha256(dbsecrets.ca_path(state).read_bytes()).hexdigest()[:12]


def key_path(state: Path) -> Path:
    return backup_dir(state) / f"repo-{repo_id(state)}.key"


def has_repo_key(state: Path) -> bool:
    return dbsecrets.ca_path(state).exists() and key_path(state).exists()


def ensure_repo_key(state: Path) -> bool:
    """The repositories' passphrase (after the CA exists); whether it was created."""
    if key_path(state).exists():
        return False
    atomic_write(key_path(state), secrets.token_urlsafe(48))
    return True
