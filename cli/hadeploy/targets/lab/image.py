"""The lab's base image, built locally with debootstrap (no registry is needed).

The image is tagged with a hash of its recipe (package list, mirror, fix-ups), so it is
rebuilt only when the recipe changes and reused otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from hadeploy.errors import ExitCode, HadeployError
from hadeploy.targets.lab import podman

IMAGE_REPO = "localhost/hadeploy-lab"
SUITE = "bookworm"

# Everything a lab host may run: the same packages the roles install on real VMs (there
# they come from apt at configure time; here they are baked in so `up` stays offline).
PACKAGES = (
    "python3", "python3-apt", "iproute2", "procps", "haproxy", "keepalived", "curl",
    "ca-certificates", "rsync", "systemd", "systemd-sysv", "dbus", "iputils-ping",
    "knot", "knot-dnsutils", "netcat-openbsd", "openssh-server",
    # the database tier: PostgreSQL under Patroni with an etcd per region; the app's driver
    "postgresql-15", "patroni", "python3-etcd", "etcd-server", "etcd-client",
    "python3-psycopg2",
    # backups: pgBackRest (database, WAL archive) and restic (shared storage)
    "pgbackrest", "restic",
)

# Units that are installed by the packages but must only run where a role enables them,
# or that cannot work inside a container.
DISABLED_UNITS = ("haproxy.service", "keepalived.service", "knot.service",
                  "postgresql.service", "patroni.service", "etcd.service")
# What package scripts create that a role must create itself: Debian's default cluster
# (Patroni runs initdb) and etcd's single-node data directory (a role writes the cluster).
REMOVED_PATHS = ("etc/postgresql/15/main", "var/lib/postgresql/15/main",
                 "var/lib/etcd/default")
PG_CREATECLUSTER_CONF = "create_main_cluster = false\n"
MASKED_UNITS = (
    "systemd-udevd.service", "systemd-udev-trigger.service", "getty@tty1.service",
    "console-getty.service", "systemd-timesyncd.service", "apt-daily.timer",
    "apt-daily-upgrade.timer", "e2scrub_reap.service", "e2scrub_all.timer",
)

# haproxy's unit sandboxing needs CAP_SYS_ADMIN, which lab containers do not get.
HAPROXY_DROPIN = "[Service]\nBindReadOnlyPaths=\nProtectSystem=false\nProtectHome=false\n"
# Host keys are made per container at first boot, never baked into the shared image.
SSH_DROPIN = ("[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
              "ExecStartPre=/usr/sbin/sshd -t\n")
SSHD_CONFIG = ("PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
               "KbdInteractiveAuthentication no\nUseDNS no\nMaxStartups 100:30:200\n")

RECIPE_VERSION = "7"


def default_mirror() -> str:
    """The Debian mirror this machine already uses (the only one reachable offline)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            m = re.match(r"deb\s+(\S+)\s+\S+\s+main", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def recipe(mirror: str | None = None) -> dict[str, object]:
    return {
        "version": RECIPE_VERSION, "suite": SUITE, "mirror": mirror or default_mirror(),
        "packages": sorted(PACKAGES), "disabled": list(DISABLED_UNITS),
        "masked": list(MASKED_UNITS), "haproxy_dropin": HAPROXY_DROPIN,
        "ssh_dropin": SSH_DROPIN, "sshd_config": SSHD_CONFIG,
        "removed": list(REMOVED_PATHS), "createcluster": PG_CREATECLUSTER_CONF,
    }


def recipe_hash(mirror: str | None = None) -> str:
    blob = json.dumps(recipe(mirror), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def image_ref(mirror: str | None = None) -> str:
    return f"{IMAGE_REPO}:{recipe_hash(mirror)}"


def ensure_image(log: Callable[[str], None] = lambda _m: None, *, rebuild: bool = False) -> str:
    """Return the image reference, building the image first if its recipe changed."""
    ref = image_ref()
    if not rebuild and podman.image_labels(ref) is not None:
        return ref
    build_image(ref, log)
    return ref


def _chroot_fixups(root: Path) -> None:
    dropin = root / "etc/systemd/system/haproxy.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "hadeploy-lab.conf").write_text(HAPROXY_DROPIN)
    ssh_dropin = root / "etc/systemd/system/ssh.service.d"
    ssh_dropin.mkdir(parents=True, exist_ok=True)
    (ssh_dropin / "hadeploy-lab.conf").write_text(SSH_DROPIN)
    (root / "etc/ssh/sshd_config.d/hadeploy-lab.conf").write_text(SSHD_CONFIG)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    wants = root / "etc/systemd/system/multi-user.target.wants"
    for unit in DISABLED_UNITS:
        (wants / unit).unlink(missing_ok=True)
        # An alias (etcd2.service → etcd.service) makes 'systemctl is-enabled' answer
        # "enabled", so a role's enable would do nothing: remove aliases of these too.
        for link in (root / "etc/systemd/system").glob("*.service"):
            if link.is_symlink() and link.readlink().name == unit:
                link.unlink()
    for rel in REMOVED_PATHS:
        shutil.rmtree(root / rel, ignore_errors=True)
    (root / "etc/postgresql-common/createcluster.conf").write_text(PG_CREATECLUSTER_CONF)
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # Empty machine-id: systemd generates one per container at boot.
    (root / "etc/machine-id").write_text("")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (root / cache).glob("*"):
            if entry.is_file():
                entry.unlink()


def build_image(ref: str, log: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        raise HadeployError("building the lab image needs root (debootstrap)",
                            hint="run as root, or run scripts/setup.sh once as root",
                            code=ExitCode.ENVIRONMENT)
    if shutil.which("debootstrap") is None:
        raise HadeployError("debootstrap is not installed; it builds the lab image",
                            hint="run scripts/setup.sh or 'apt-get install -y debootstrap'",
                            code=ExitCode.ENVIRONMENT)
    mirror = default_mirror()
    log(f"building lab image {ref} with debootstrap from {mirror} (about 100 s, once)")
    with tempfile.TemporaryDirectory(prefix="hadeploy-image-") as tmp:
        root = Path(tmp) / "root"
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, str(root), mirror],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise HadeployError(
                f"debootstrap failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}",
                hint=f"check that the Debian mirror {mirror} is reachable",
                code=ExitCode.ENVIRONMENT)
        _chroot_fixups(root)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."],
                               stdout=subprocess.PIPE)
        assert tar.stdout is not None
        imp = subprocess.run(
            [podman.require_podman(), "import",
             "--change", 'CMD ["/lib/systemd/systemd"]',
             "--change", "STOPSIGNAL SIGRTMIN+3",
             "--change", f"LABEL io.hadeploy.recipe={recipe_hash()}",
             "-", ref],
            stdin=tar.stdout, env=podman.podman_env(), capture_output=True, text=True,
            check=False,
        )
        tar.stdout.close()
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise HadeployError(f"podman import of the lab image failed: {imp.stderr.strip()}",
                                code=ExitCode.ENVIRONMENT)
    log(f"lab image {ref} built")
