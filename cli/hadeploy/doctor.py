"""``hadeploy doctor``: a preflight of this machine for a target (lab or aws).

Every check says what it found, why it matters and the exact command that fixes it. The
lab checks end with a real container run done the way ``up`` does it (a podman network,
a container with ``--init``, a systemd host with a fixed IP and MAC); everything that run
creates is named ``hd-doctor-*`` and removed before the checks return.

Only the standard library and light hadeploy modules are imported here; pulumi and boto3
are looked up with :func:`importlib.util.find_spec`, never imported, except by the two AWS
checks that need them (credentials through boto3's chain, the backend through the Pulumi
Automation API), and only when those are installed.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hadeploy.targets.lab import podman

Status = Literal["ok", "warn", "fail"]
TARGETS = ("lab", "aws")
DEFAULT_INIT_PATH = "/usr/libexec/podman/catatonit"
CNI_DIRS = ("/usr/local/libexec/cni", "/usr/libexec/cni", "/usr/local/lib/cni", "/usr/lib/cni",
            "/opt/cni/bin")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "firewall", "tuning")  # podman's bridge
HELPER_DIRS = ("/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/podman",
               "/usr/lib/podman")
GRAPH_ROOT_DEFAULT = "/var/lib/containers/storage"
MIN_GRAPH_FREE = 2 * 1024**3
MIN_STATE_FREE = 200 * 1024**2
PREFIX = "hd-doctor-"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SETUP = "bash scripts/setup.sh"
APT = "apt-get install -y --no-install-recommends"
AWS_MODULES = ("pulumi", "pulumi_aws", "pulumi_policy", "boto3")
PULUMI_INSTALL = "curl -fsSL https://get.pulumi.com | sh && export PATH=$HOME/.pulumi/bin:$PATH"

# What podman says when something is missing -> the check that explains it.
KNOWN_ERRORS: tuple[tuple[str, str], ...] = (
    (podman.INIT_MISSING, "container-init"),
    ("oci runtime", "oci-runtime"),
    ("failed to find plugin", "network-backend"),
    ('could not find "netavark"', "network-backend"),
    ('could not find "aardvark-dns"', "network-backend"),
    ("failed to locate iptables", "iptables"),
    ('"iptables": executable file not found', "iptables"),
    ("could not find a working conmon", "podman-info"),
    ("no space left on device", "disk-images"),
    ("image not known", "lab-image"),
)


@dataclass
class Check:
    id: str
    title: str
    status: Status
    detail: str
    why: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Proc:
    rc: int
    out: str = ""
    err: str = ""


class System:
    """Everything the checks learn about the machine; the tests substitute a fake."""

    environ: Mapping[str, str] = os.environ

    def geteuid(self) -> int:
        return os.geteuid()

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def run(self, cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
            timeout: float = 30) -> Proc:
        try:
            proc = subprocess.run(list(cmd), env=dict(env) if env is not None else None,
                                  capture_output=True, text=True, timeout=timeout,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Proc(124, "", f"timed out after {timeout:.0f} s")
        except OSError as exc:
            return Proc(127, "", str(exc))
        return Proc(proc.returncode, proc.stdout, proc.stderr)

    def is_executable(self, path: str) -> bool:
        return Path(path).is_file() and os.access(path, os.X_OK)

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def writable(self, path: str) -> bool:
        return os.access(path, os.W_OK)

    def free_bytes(self, path: str) -> tuple[str, int]:
        """Free bytes on the filesystem of ``path`` (its nearest existing parent)."""
        p = Path(path).absolute()
        while not p.exists() and p != p.parent:
            p = p.parent
        return str(p), shutil.disk_usage(p).free

    def has_module(self, name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    def python_bin(self) -> Path:
        return Path(sys.executable).parent


# --- helpers ------------------------------------------------------------------------------

def init_path(conf: Mapping[str, Any]) -> str:
    """The container init podman's ``--init`` uses, per the containers.conf in use."""
    value = (conf.get("containers") or {}).get("init_path")
    return value if isinstance(value, str) and value else DEFAULT_INIT_PATH


def classify(stderr: str) -> str | None:
    """The check a podman error text belongs to (None: not a known cause)."""
    low = stderr.lower()
    for needle, check_id in KNOWN_ERRORS:
        if needle.lower() in low:
            return check_id
    return None


def _tail(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    out = " | ".join(lines[-3:])
    return out if len(out) <= limit else "…" + out[-limit:]


def _space(free: int, what: str, path: str, measured: str, need: int) -> str:
    note = "" if measured == path else f"not created yet: measured on {measured}; "
    return f"{_gib(free)} free in {what} {path} ({note}needs {_gib(need)})"


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


# --- the context shared by the checks -------------------------------------------------------

@dataclass
class Context:
    target: str
    sys: System
    conf_path: Path
    settings: Any = None  # AwsSettings of the deployment, when a config names one
    _cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def podman_env(self) -> dict[str, str]:
        env = dict(self.sys.environ)
        env["CONTAINERS_CONF"] = str(self.conf_path)
        return env

    @property
    def podman(self) -> str | None:
        return self.once("podman", lambda: self.sys.which("podman"))  # type: ignore[no-any-return]

    @property
    def conf(self) -> dict[str, Any] | str:
        """The parsed containers.conf, or why it cannot be read."""
        def load() -> dict[str, Any] | str:
            text = self.sys.read_text(str(self.conf_path))
            if text is None:
                return f"{self.conf_path} does not exist or is not readable"
            try:
                return tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                return f"{self.conf_path} is not valid TOML: {exc}"
        return self.once("conf", load)  # type: ignore[no-any-return]

    @property
    def info(self) -> dict[str, Any] | str:
        """``podman info`` with the containers.conf in use, or podman's error."""
        def load() -> dict[str, Any] | str:
            if self.podman is None:
                return "podman is not installed"
            proc = self.sys.run([self.podman, "info", "--format", "json"],
                                env=self.podman_env(), timeout=30)
            if proc.rc != 0:
                return _tail(proc.err) or f"exit {proc.rc}"
            try:
                data = json.loads(proc.out)
            except json.JSONDecodeError:
                return "podman info printed no JSON"
            return data if isinstance(data, dict) else "podman info printed no JSON"
        return self.once("info", load)  # type: ignore[no-any-return]

    @property
    def image_ref(self) -> str:
        from hadeploy.targets.lab import image

        return self.once("image_ref", image.image_ref)  # type: ignore[no-any-return]

    @property
    def image_present(self) -> bool:
        def probe() -> bool:
            if self.podman is None or not isinstance(self.info, dict):
                return False
            proc = self.sys.run([self.podman, "image", "exists", self.image_ref],
                                env=self.podman_env(), timeout=30)
            return proc.rc == 0
        return self.once("image_present", probe)  # type: ignore[no-any-return]


# --- lab checks -------------------------------------------------------------------------------

def check_root(ctx: Context) -> Check:
    uid = ctx.sys.geteuid()
    return Check("root", "running as root", "ok" if uid == 0 else "fail",
                 "uid 0" if uid == 0 else f"uid {uid}",
                 "the lab uses rootful podman (fixed IPs, bridges), iptables nat rules and "
                 "debootstrap, which all need root",
                 "" if uid == 0 else "run hadeploy as root (sudo -E hadeploy ...)")


def check_podman(ctx: Context) -> Check:
    why = "the lab target runs every host as a podman container"
    if ctx.podman is None:
        return Check("podman", "podman installed", "fail", "podman is not on PATH", why,
                     f"{APT} podman (or {SETUP})")
    proc = ctx.sys.run([ctx.podman, "--version"], timeout=15)
    version = proc.out.strip().removeprefix("podman version ").strip()
    if proc.rc != 0 or not version:
        return Check("podman", "podman installed", "fail",
                     f"{ctx.podman} --version failed: {_tail(proc.err)}", why,
                     f"{APT} --reinstall podman")
    major = re.match(r"(\d+)\.", version)
    if major and int(major.group(1)) < 4:
        return Check("podman", "podman installed", "warn",
                     f"podman {version} at {ctx.podman}; hadeploy is tested with 4.3", why,
                     f"{APT} podman (Debian 12 ships 4.3.1)")
    return Check("podman", "podman installed", "ok", f"podman {version} at {ctx.podman}", why)


def check_containers_conf(ctx: Context) -> Check:
    override = ctx.sys.environ.get(podman.CONTAINERS_CONF_ENV)
    source = f"${podman.CONTAINERS_CONF_ENV}" if override else "the project's"
    why = ("podman reads only this file (CONTAINERS_CONF): cgroupfs, runc and the file "
           "events logger make podman work on cgroup-v1 hosts")
    if isinstance(ctx.conf, str):
        fix = (f"unset {podman.CONTAINERS_CONF_ENV}, or point it at a readable copy of "
               f"{podman.CONTAINERS_CONF}") if override else "reinstall hadeploy"
        return Check("containers-conf", "podman configuration", "fail", ctx.conf, why, fix)
    return Check("containers-conf", "podman configuration", "ok",
                 f"{ctx.conf_path} ({source})", why)


def check_podman_info(ctx: Context) -> Check:
    title = "podman works with the lab's configuration"
    why = "every lab operation is a podman call with this configuration"
    info = ctx.info
    if isinstance(info, str):
        cause = classify(info)
        fix = (f"see check '{cause}'" if cause and cause != "podman-info" else
               f"{APT} conmon" if cause == "podman-info" else
               f"{SETUP}; then 'CONTAINERS_CONF={ctx.conf_path} podman info' shows the error")
        return Check("podman-info", title, "fail", info, why, fix)
    host, store = info.get("host", {}), info.get("store", {})
    runtime = (host.get("ociRuntime") or {}).get("name", "?")
    detail = (f"runtime {runtime}, cgroup {host.get('cgroupVersion', '?')} via "
              f"{host.get('cgroupManager', '?')}, network backend "
              f"{host.get('networkBackend', '?')}, storage {store.get('graphDriverName', '?')} "
              f"at {store.get('graphRoot', '?')}")
    return Check("podman-info", title, "ok", detail, why)


def check_oci_runtime(ctx: Context) -> Check:
    why = "podman starts every container through the OCI runtime the configuration names"
    conf = ctx.conf if isinstance(ctx.conf, dict) else {}
    name = (conf.get("engine") or {}).get("runtime") or "crun"
    path: str | None = None
    if isinstance(ctx.info, dict):
        rt = ctx.info.get("host", {}).get("ociRuntime") or {}
        name, path = rt.get("name", name), rt.get("path")
    if not path or not ctx.sys.is_executable(path):
        path = ctx.sys.which(name)
    if path is None:
        return Check("oci-runtime", f"OCI runtime {name}", "fail", f"{name} is not installed",
                     why, f"{APT} {name}")
    proc = ctx.sys.run([path, "--version"], timeout=15)
    version = proc.out.splitlines()[0].strip() if proc.rc == 0 and proc.out else "?"
    return Check("oci-runtime", f"OCI runtime {name}", "ok", f"{path}: {version}", why)


def check_network_backend(ctx: Context) -> Check:
    why = "every region is a podman bridge network with fixed subnets"
    conf = ctx.conf if isinstance(ctx.conf, dict) else {}
    network = conf.get("network") or {}
    backend = network.get("network_backend") or ""
    if isinstance(ctx.info, dict):
        backend = ctx.info.get("host", {}).get("networkBackend") or backend
    dirs = network.get("cni_plugin_dirs") or list(CNI_DIRS)
    if backend in ("", "cni"):
        for d in dirs:
            found = [p for p in CNI_PLUGINS if ctx.sys.is_executable(f"{d}/{p}")]
            if len(found) == len(CNI_PLUGINS):
                return Check("network-backend", "network backend (CNI)", "ok",
                             f"CNI plugins {', '.join(CNI_PLUGINS)} in {d}", why)
        if backend == "cni":
            return Check("network-backend", "network backend (CNI)", "fail",
                         f"podman uses CNI but {', '.join(CNI_PLUGINS)} are not all in one of "
                         f"{', '.join(dirs)}", why, f"{APT} containernetworking-plugins")
    helpers = conf.get("engine", {}).get("helper_binaries_dir") or list(HELPER_DIRS)
    for d in helpers:
        if ctx.sys.is_executable(f"{d}/netavark"):
            missing = "" if ctx.sys.is_executable(f"{d}/aardvark-dns") else \
                " (aardvark-dns missing: networks with DNS will fail)"
            return Check("network-backend", "network backend (netavark)",
                         "warn" if missing else "ok", f"netavark in {d}{missing}", why,
                         f"{APT} aardvark-dns" if missing else "")
    return Check("network-backend", "network backend", "fail",
                 "neither CNI plugins nor netavark found", why,
                 f"{APT} containernetworking-plugins")


def check_container_init(ctx: Context) -> Check:
    why = ("the DNS servers and the probers run with '--init'; podman refuses to start them "
           "without its container init")
    fix = f"{APT} {podman.INIT_PACKAGE}"
    if isinstance(ctx.conf, str):
        return Check("container-init", "container init (catatonit)", "fail",
                     f"unknown: {ctx.conf}", why, fix)
    path = init_path(ctx.conf)
    if not ctx.sys.is_executable(path):
        if path == DEFAULT_INIT_PATH:
            return Check("container-init", "container init (catatonit)", "fail",
                         f"{path} is missing (podman's default init_path)", why, fix)
        return Check("container-init", "container init (catatonit)", "fail",
                     f"{path} is missing (init_path in {ctx.conf_path})", why,
                     f"{fix}, then remove init_path from {ctx.conf_path} (or set it to "
                     f"{DEFAULT_INIT_PATH})")
    return Check("container-init", "container init (catatonit)", "ok", path, why)


def check_iptables(ctx: Context) -> Check:
    why = ("the lab's firewall rules (iptables -t nat) keep real client addresses between "
           "regions; podman's CNI firewall plugin uses iptables too")
    exe = ctx.sys.which("iptables")
    if exe is None:
        return Check("iptables", "iptables nat table", "fail", "iptables is not on PATH", why,
                     f"{APT} iptables")
    proc = ctx.sys.run([exe, "-t", "nat", "-S"], timeout=15)
    if proc.rc != 0:
        return Check("iptables", "iptables nat table", "fail",
                     f"iptables -t nat -S failed: {_tail(proc.err)}", why,
                     "run as root; if the kernel lacks nat support: modprobe iptable_nat")
    version = ctx.sys.run([exe, "--version"], timeout=15).out.strip() or "iptables"
    return Check("iptables", "iptables nat table", "ok",
                 f"{version}: {len(proc.out.splitlines())} nat rules readable", why)


def check_ip_forward(ctx: Context) -> Check:
    path = "/proc/sys/net/ipv4/ip_forward"
    why = "regions reach each other through the host, which must forward IPv4"
    value = (ctx.sys.read_text(path) or "").strip()
    if value == "1":
        return Check("ip-forward", "IPv4 forwarding", "ok", "net.ipv4.ip_forward = 1", why)
    fix = "sysctl -w net.ipv4.ip_forward=1"
    if value == "0" and ctx.sys.writable(path):
        return Check("ip-forward", "IPv4 forwarding", "warn",
                     "net.ipv4.ip_forward = 0 (podman's bridge sets it to 1 when it creates "
                     "a network)", why, fix)
    return Check("ip-forward", "IPv4 forwarding", "fail",
                 f"net.ipv4.ip_forward = {value or '?'} and {path} is not writable", why,
                 f"{fix} on the host (or the container/VM this runs in)")


def check_disk_images(ctx: Context) -> Check:
    root = GRAPH_ROOT_DEFAULT
    if isinstance(ctx.info, dict):
        root = ctx.info.get("store", {}).get("graphRoot") or root
    where, free = ctx.sys.free_bytes(root)
    ok = free >= MIN_GRAPH_FREE
    return Check("disk-images", "disk space for images and containers",
                 "ok" if ok else "fail",
                 _space(free, "podman's graph root", root, where, MIN_GRAPH_FREE),
                 "the lab image (~300 MB) and every host container's writable layer live "
                 "in podman's graph root",
                 "" if ok else f"free space on {where} (e.g. 'podman image prune' removes "
                 "dangling images)")


def check_disk_state(ctx: Context) -> Check:
    from hadeploy import paths

    root = str(paths.state_root())
    where, free = ctx.sys.free_bytes(root)
    ok = free >= MIN_STATE_FREE
    return Check("disk-state", "disk space for deployment state",
                 "ok" if ok else "fail",
                 _space(free, "hadeploy's state root", root, where, MIN_STATE_FREE),
                 "keys, inventories, Ansible artifacts and the deployment's history are "
                 "written under the state root",
                 "" if ok else f"free space on {where}, or set HADEPLOY_STATE_DIR to a "
                 "filesystem with room")


def check_ssh(ctx: Context) -> Check:
    why = "Ansible reaches lab hosts over SSH with a per-deployment key made by ssh-keygen"
    missing = [t for t in ("ssh", "ssh-keygen") if ctx.sys.which(t) is None]
    if missing:
        return Check("ssh", "ssh client", "fail", f"{' and '.join(missing)} not on PATH", why,
                     f"{APT} openssh-client")
    version = _tail(ctx.sys.run(["ssh", "-V"], timeout=15).err) or "ssh"
    return Check("ssh", "ssh client", "ok", f"{version}; ssh-keygen present", why)


def check_git(ctx: Context) -> Check:
    why = ("'hadeploy reconcile' fetches the deployment's repository and verifies commit "
           "signatures with git (not needed by up)")
    if ctx.sys.which("git") is None:
        return Check("git", "git", "warn", "git not on PATH", why, f"{APT} git")
    version = _tail(ctx.sys.run(["git", "--version"], timeout=15).out) or "git"
    return Check("git", "git", "ok", version, why)


def check_ansible(ctx: Context) -> Check:
    why = "hosts are configured by ansible-playbook from the same environment as hadeploy"
    bindir = ctx.sys.python_bin()
    exe = str(bindir / "ansible-playbook")
    fix = f"{bindir / 'pip'} install ansible ansible-runner ({SETUP} does it)"
    if not ctx.sys.is_executable(exe):
        return Check("ansible", "ansible-playbook", "fail", f"{exe} is missing", why, fix)
    if not ctx.sys.has_module("ansible_runner"):
        return Check("ansible", "ansible-playbook", "fail",
                     f"{exe} present, but the ansible_runner module is missing", why, fix)
    return Check("ansible", "ansible-playbook", "ok", f"{exe} (and ansible_runner)", why)


def check_debootstrap(ctx: Context) -> Check:
    why = "builds the lab image from the Debian mirror (only when the image is missing)"
    missing = [t for t in ("debootstrap", "gpgv") if ctx.sys.which(t) is None]
    if not ctx.sys.exists(KEYRING):
        missing.append("debian-archive-keyring")
    status: Status = "ok"
    if missing:
        status = "warn" if ctx.image_present else "fail"
    detail = "debootstrap, gpgv and the Debian archive keyring present" if not missing else \
        f"missing: {', '.join(missing)}" + (" (the lab image is already built)"
                                             if ctx.image_present else "")
    return Check("debootstrap", "debootstrap (image build)", status, detail, why,
                 f"{APT} debootstrap debian-archive-keyring gpgv" if missing else "")


def check_lab_image(ctx: Context) -> Check:
    why = "every lab host, the DNS servers and the probers run from this image"
    if ctx.podman is None or isinstance(ctx.info, str):
        return Check("lab-image", "lab image", "fail",
                     "unknown: podman does not work (see 'podman-info')", why, SETUP)
    if ctx.image_present:
        return Check("lab-image", "lab image", "ok", f"{ctx.image_ref} (current recipe)", why)
    return Check("lab-image", "lab image", "fail", f"{ctx.image_ref} is not built", why,
                 "run scripts/setup.sh (builds it, ~100 s)")


# --- the real container run -------------------------------------------------------------

@dataclass
class RunOutcome:
    checks: dict[str, Check]
    blame: dict[str, str] = field(default_factory=dict)  # check id -> podman's error


INIT_WHY = ("the DNS servers and probers run with '--init' on a region-style network (fixed "
            "IP and MAC)")
BOOT_WHY = "every lab host is a systemd container that must boot to 'running'"
RUN_TITLE, BOOT_TITLE = "container with --init runs", "systemd lab host boots"
BOOT_TIMEOUT = 30.0


def _container_run(ctx: Context) -> RunOutcome:
    """Do what ``up`` does, on a private network, and undo it."""
    blockers = []
    if ctx.sys.geteuid() != 0:
        blockers.append("root")
    if ctx.podman is None or isinstance(ctx.info, str):
        blockers.append("podman-info")
    elif not ctx.image_present:
        blockers.append("lab-image")
    if blockers:
        detail = f"not run: needs check(s) {', '.join(blockers)} to pass"
        return RunOutcome({
            "container-run": Check("container-run", RUN_TITLE, "warn", detail, INIT_WHY),
            "systemd-boot": Check("systemd-boot", BOOT_TITLE, "warn", detail, BOOT_WHY)})
    return ContainerRun(ctx).run()


class ContainerRun:
    """A temporary network with an ``--init`` container and a systemd host on it, like
    ``up`` makes them; everything is named ``hd-doctor-<pid>-<random>`` and removed."""

    def __init__(self, ctx: Context) -> None:
        assert ctx.podman is not None
        self.ctx, self.exe, self.env = ctx, ctx.podman, ctx.podman_env()
        tag = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.net, self.init_c, self.host_c = tag, f"{tag}-init", f"{tag}-host"
        self.blame: dict[str, str] = {}
        self.subnet: ipaddress.IPv4Network | None = None

    def pod(self, *args: str, timeout: float = 60) -> Proc:
        return self.ctx.sys.run([self.exe, *args], env=self.env, timeout=timeout)

    def run(self) -> RunOutcome:
        try:
            proc = self.pod("network", "create", "--label", "io.hadeploy.doctor=1", self.net)
            if proc.rc != 0:
                return RunOutcome({
                    "container-run": self.failed("container-run", "network create", proc),
                    "systemd-boot": Check("systemd-boot", BOOT_TITLE, "warn",
                                          "not run: no network", BOOT_WHY)}, self.blame)
            self.subnet = _subnet_of(self.pod("network", "inspect", self.net).out)
            with ThreadPoolExecutor(max_workers=2) as pool:
                init_f, host_f = pool.submit(self.run_init), pool.submit(self.run_host)
                checks = {"container-run": init_f.result(), "systemd-boot": host_f.result()}
            return RunOutcome(checks, self.blame)
        finally:
            self.pod("rm", "-f", "-t", "0", self.init_c, self.host_c, timeout=60)
            self.pod("network", "rm", "-f", self.net, timeout=60)

    def address(self, offset: int) -> list[str]:
        """``--ip``/``--mac-address`` as ``up`` gives them (none if the subnet is unknown)."""
        if self.subnet is None:
            return []
        ip = str(self.subnet.network_address + offset)
        return ["--ip", ip, "--mac-address", stable_mac(ip)]

    def failed(self, check_id: str, step: str, proc: Proc) -> Check:
        """A failed step; a known podman error also blames the check that explains it."""
        err = _tail(proc.err) or f"exit {proc.rc}"
        cause = classify(proc.err)
        if cause:
            self.blame[cause] = err
        see = f" (see check '{cause}')" if cause else ""
        title, why = (RUN_TITLE, INIT_WHY) if check_id == "container-run" else \
            (BOOT_TITLE, BOOT_WHY)
        fix = _fix_of(self.ctx, cause) if cause else \
            f"run 'podman {step}' with CONTAINERS_CONF={self.ctx.conf_path} to see the full error"
        return Check(check_id, title, "fail", f"{step} failed: {err}{see}", why, fix)

    def run_init(self) -> Check:
        t0 = time.monotonic()
        proc = self.pod("run", "--rm", "--name", self.init_c, "--network", self.net,
                        *self.address(10), "--init", "--tmpfs", "/run", self.ctx.image_ref,
                        "true")
        if proc.rc != 0:
            return self.failed("container-run", "run --init", proc)
        return Check("container-run", RUN_TITLE, "ok", f"ran on network "
                     f"{self.subnet or self.net} in {time.monotonic() - t0:.1f} s", INIT_WHY)

    def run_host(self) -> Check:
        t0 = time.monotonic()
        addressing = self.address(11)
        proc = self.pod("run", "-d", "--name", self.host_c, "--network", self.net, *addressing,
                        "--systemd=always", "--tmpfs", "/run", "--tmpfs", "/tmp",
                        "--stop-timeout", "5", self.ctx.image_ref, "/lib/systemd/systemd")
        if proc.rc != 0:
            return self.failed("systemd-boot", "run --systemd=always", proc)
        state, deadline = "", time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            proc = self.pod("exec", self.host_c, "systemctl", "is-system-running", "--wait",
                            timeout=BOOT_TIMEOUT)
            state = proc.out.strip() or _tail(proc.err)
            if state in ("running", "degraded"):
                ip = addressing[1] if addressing else "?"
                return Check("systemd-boot", BOOT_TITLE, "ok", f"systemd '{state}' after "
                             f"{time.monotonic() - t0:.1f} s (--ip {ip}, --mac-address)",
                             BOOT_WHY)
            time.sleep(0.2)
        return Check("systemd-boot", BOOT_TITLE, "fail", "systemd did not finish booting "
                     f"within {BOOT_TIMEOUT:.0f} s (says '{state}')", BOOT_WHY,
                     f"podman run --rm -it --systemd=always {self.ctx.image_ref} "
                     "/lib/systemd/systemd shows the boot; check 'podman-info' (cgroups)")


def stable_mac(address: str) -> str:
    """The MAC ``up`` gives a host of this address (lab driver's stable_mac)."""
    return "02:48:" + ":".join(f"{int(o):02x}" for o in address.split("."))


def _subnet_of(inspect_json: str) -> ipaddress.IPv4Network | None:
    try:
        doc = json.loads(inspect_json)
        return ipaddress.IPv4Network(doc[0]["subnets"][0]["subnet"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _fix_of(ctx: Context, check_id: str) -> str:
    fixes = {"container-init": f"{APT} {podman.INIT_PACKAGE}",
             "oci-runtime": f"{APT} runc",
             "network-backend": f"{APT} containernetworking-plugins",
             "iptables": f"{APT} iptables",
             "podman-info": f"{APT} conmon",
             "disk-images": "free space in podman's graph root",
             "lab-image": "run scripts/setup.sh (builds it, ~100 s)"}
    return fixes.get(check_id, SETUP)


def check_container_run(ctx: Context) -> Check:
    return ctx.once("run", lambda: _container_run(ctx)).checks["container-run"]  # type: ignore[no-any-return]


def check_systemd_boot(ctx: Context) -> Check:
    return ctx.once("run", lambda: _container_run(ctx)).checks["systemd-boot"]  # type: ignore[no-any-return]


# --- aws checks -----------------------------------------------------------------------------

def check_aws_packages(ctx: Context) -> Check:
    missing = [m for m in AWS_MODULES if not ctx.sys.has_module(m)]
    why = "the aws target drives Pulumi through its Automation API and reads Route 53 via boto3"
    if missing:
        return Check("aws-packages", "python packages of the aws extra", "fail",
                     f"not importable: {', '.join(missing)}", why,
                     f"{ctx.sys.python_bin() / 'pip'} install 'hadeploy[aws]' (from a "
                     "checkout: pip install -e '.[aws]')")
    return Check("aws-packages", "python packages of the aws extra", "ok",
                 ", ".join(AWS_MODULES), why)


def check_pulumi_cli(ctx: Context) -> Check:
    why = "the Automation API runs the pulumi CLI for every preview, update and destroy"
    exe = ctx.sys.which("pulumi")
    if exe is None:
        return Check("pulumi-cli", "pulumi CLI", "fail", "pulumi is not on PATH", why,
                     PULUMI_INSTALL)
    proc = ctx.sys.run([exe, "version"], timeout=30)
    if proc.rc != 0:
        return Check("pulumi-cli", "pulumi CLI", "fail",
                     f"'pulumi version' failed: {_tail(proc.err)}", why, PULUMI_INSTALL)
    return Check("pulumi-cli", "pulumi CLI", "ok", f"{exe} {proc.out.strip()}", why)


def check_aws_credentials(ctx: Context) -> Check:
    why = "Pulumi and boto3 act on the AWS account with these credentials"
    fix = ("aws configure (or: aws sso login --profile P && export AWS_PROFILE=P), or export "
           "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    from hadeploy.targets.aws.driver import aws_credentials_available

    try:
        found = aws_credentials_available(ctx.sys.environ)
    except Exception as exc:  # boto3's chain can fail on a broken ~/.aws/config
        return Check("aws-credentials", "AWS credentials", "fail",
                     f"looking them up failed: {exc}", why, fix)
    if found:
        return Check("aws-credentials", "AWS credentials", "ok",
                     "found (environment, shared files or boto3's chain)", why)
    return Check("aws-credentials", "AWS credentials", "fail",
                 "none in the environment, ~/.aws or boto3's chain", why, fix)


def check_pulumi_backend(ctx: Context) -> Check:
    why = ("stack state lives in the Pulumi backend (aws.backend_url, else PULUMI_BACKEND_URL, "
           "else the state directory); its secrets need PULUMI_CONFIG_PASSPHRASE or a KMS key")
    title = "Pulumi state backend"
    if ctx.sys.which("pulumi") is None:
        return Check("pulumi-backend", title, "fail", "needs the pulumi CLI", why,
                     PULUMI_INSTALL)
    if not ctx.sys.has_module("pulumi"):
        return Check("pulumi-backend", title, "fail", "needs the pulumi python package", why,
                     "pip install 'hadeploy[aws]'")
    from hadeploy.config import AwsSettings
    from hadeploy.errors import HadeployError
    from hadeploy.targets.aws.driver import PulumiWorkspace

    settings = ctx.settings or AwsSettings.model_construct(  # only the backend fields are read
        account_id="000000000000", backend_url=None, secrets_provider=None)
    result: dict[str, Any] = {}

    def who() -> None:
        try:
            result["user"] = PulumiWorkspace(settings, dict(ctx.sys.environ),
                                             lambda _m: None).check()
        except HadeployError as exc:
            result["error"] = exc
        except Exception as exc:
            result["error"] = HadeployError(str(exc))

    worker = threading.Thread(target=who, daemon=True)
    worker.start()
    worker.join(60)
    if "user" in result:
        return Check("pulumi-backend", title, "ok", f"logged in as {result['user']}", why)
    exc = result.get("error")
    if exc is None:
        return Check("pulumi-backend", title, "fail", "'pulumi whoami' did not answer in 60 s",
                     why, "check aws.backend_url (e.g. s3://<bucket>) and network access to it")
    return Check("pulumi-backend", title, "fail", exc.message, why,
                 exc.hint or "check aws.backend_url (e.g. s3://<bucket>)")


# --- registry and entry points --------------------------------------------------------------

CheckFn = Callable[[Context], Check]
LAB_CHECKS: tuple[tuple[str, CheckFn], ...] = (
    ("root", check_root), ("podman", check_podman), ("containers-conf", check_containers_conf),
    ("podman-info", check_podman_info), ("oci-runtime", check_oci_runtime),
    ("network-backend", check_network_backend), ("container-init", check_container_init),
    ("iptables", check_iptables), ("ip-forward", check_ip_forward),
    ("disk-images", check_disk_images), ("disk-state", check_disk_state), ("ssh", check_ssh),
    ("git", check_git), ("ansible", check_ansible), ("lab-image", check_lab_image),
    ("debootstrap", check_debootstrap), ("container-run", check_container_run),
    ("systemd-boot", check_systemd_boot),
)
AWS_CHECKS: tuple[tuple[str, CheckFn], ...] = (
    ("aws-packages", check_aws_packages), ("pulumi-cli", check_pulumi_cli),
    ("aws-credentials", check_aws_credentials), ("pulumi-backend", check_pulumi_backend),
)
SLOW = frozenset({"container-run", "systemd-boot", "pulumi-backend"})


def check_ids(target: str) -> list[str]:
    return [cid for cid, _ in (LAB_CHECKS if target == "lab" else AWS_CHECKS)]


def run_checks(target: str, *, containers_conf: Path | None = None,
               only: set[str] | None = None, settings: Any = None,
               system: System | None = None) -> list[Check]:
    """Run the checks of ``target`` (all, or the ids in ``only``), in their fixed order.

    ``containers_conf`` defaults to the one podman calls use (``$HADEPLOY_CONTAINERS_CONF``
    or the project's file). ``settings``: the deployment's AwsSettings (aws backend check).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (expected one of {', '.join(TARGETS)})")
    sys_ = system or System()
    conf = containers_conf or _conf_from(sys_.environ)
    ctx = Context(target, sys_, conf, settings)
    registry = LAB_CHECKS if target == "lab" else AWS_CHECKS
    checks = [_guarded(cid, fn, ctx) for cid, fn in registry if only is None or cid in only]
    run = ctx._cache.get("run")
    if isinstance(run, RunOutcome):
        _apply_blame(checks, run.blame, ctx)
    return checks


def _guarded(cid: str, fn: CheckFn, ctx: Context) -> Check:
    """A check that crashes is a failed check, not a traceback."""
    try:
        return fn(ctx)
    except Exception as exc:
        return Check(cid, cid, "fail", f"the check itself failed: {type(exc).__name__}: "
                     f"{exc}", "a check that cannot run proves nothing",
                     "report this as a hadeploy bug (with 'hadeploy doctor --json')")


def _conf_from(environ: Mapping[str, str]) -> Path:
    override = environ.get(podman.CONTAINERS_CONF_ENV)
    return Path(override) if override else podman.CONTAINERS_CONF


def _apply_blame(checks: Iterable[Check], blame: Mapping[str, str], ctx: Context) -> None:
    """A real run that failed for a known cause fails the check that owns that cause."""
    for check in checks:
        err = blame.get(check.id)
        if err is None or check.id in ("container-run", "systemd-boot"):
            continue
        if check.status != "fail":
            check.status = "fail"
            check.detail = f"{check.detail}; but podman says: {err}"
            check.fix = check.fix or _fix_of(ctx, check.id)


def failed(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]


def exit_code(checks: Iterable[Check]) -> int:
    from hadeploy.errors import ExitCode

    return int(ExitCode.ENVIRONMENT) if failed(checks) else int(ExitCode.OK)


def to_doc(target: str, checks: Sequence[Check]) -> dict[str, Any]:
    return {"target": target, "ok": not failed(checks),
            "checks": [c.to_dict() for c in checks]}


MARKS = {"ok": "✓", "warn": "!", "fail": "✗"}


def render_text(target: str, checks: Sequence[Check]) -> str:
    lines = [f"hadeploy doctor: target {target}"]
    lines += [f"{MARKS[c.status]} {c.title}: {c.detail}" for c in checks]
    bad = failed(checks)
    warned = [c for c in checks if c.status == "warn"]
    for c in bad + [w for w in warned if w.fix]:
        lines += ["", f"{MARKS[c.status]} {c.id}: {c.why}", f"  fix: {c.fix}"]
    lines += ["", f"{len(checks) - len(bad) - len(warned)} ok, {len(warned)} warning(s), "
              f"{len(bad)} failed" + ("" if bad else f": this machine is ready for {target}")]
    return "\n".join(lines)


def explain_environment_error(target: str, *, system: System | None = None) -> str | None:
    """After an environment error: the first failing quick (no container) check as a hint,
    or None when every quick check passes."""
    ids = {cid for cid in check_ids(target) if cid not in SLOW}
    bad = failed(run_checks(target, only=ids, system=system))
    if not bad:
        return None
    first = bad[0]
    more = f" ({len(bad) - 1} more failing)" if len(bad) > 1 else ""
    return (f"doctor check '{first.id}' fails: {first.detail}; fix: {first.fix}{more} "
            "(run 'hadeploy doctor' for every check)")
