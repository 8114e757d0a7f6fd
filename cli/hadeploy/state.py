"""A deployment's state directory: the one owner of its locks, atomic writes, audit records
and state files.

Layout of ``<state root>/<deployment>/`` (mode 0700):
  deployment.json        the validated desired state last applied (status/down read it)
  topology.json          what the target built
  regions.json           region states a failover recorded: promoted, fenced
  failover-journal.json  an unfinished failover (removed when it completes)
  converged.json         fingerprint of the configuration Ansible last converged, per region
  reconcile.json         what 'hadeploy reconcile' last applied from git, and its result
  dns/                   TSIG key and knotd configuration (0600), zone files
  ssh/                   the deployment's SSH key and the hosts' known_hosts
  inventory/             the generated Ansible inventory (hosts.yml + group_vars)
  ansible/               ansible-runner's private data dir (artifacts of the last runs)
  history.sqlite         probe history (written by ``watch``)
  lock, watch.lock       held (flock) by the run that changes the deployment / by ``watch``
  audit.jsonl            one line per state-changing run or decision (kept by ``down``)

Every file here is written atomically (temporary file, fsync, rename) and private to the
owner by default. Every file that is read back is validated by a model: a file that cannot
be trusted stops the operation with its path and a fix, before anything is changed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import getpass
import json
import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hadeploy.errors import ExitCode, HadeployError

if TYPE_CHECKING:
    from hadeploy.config import Deployment

KEEP_ON_DOWN = {"audit.jsonl", "lock"}
BACKUP_DIR = "backup"  # the backup repositories' key and records: kept by 'down' by default
JOURNAL = "failover-journal.json"
RegionFlag = Literal["promoted", "fenced"]
M = TypeVar("M", bound=BaseModel)


# --- time: one format for every record ---------------------------------------------------

def utc_now() -> str:
    """Now as ISO 8601 UTC with milliseconds (``2026-11-28T10:47:15.123Z``): the one
    timestamp format of audit records, locks, journals and state files."""
    return format_time(_dt.datetime.now(_dt.UTC))


def format_time(moment: _dt.datetime) -> str:
    return moment.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> float:
    """Unix time of a timestamp written by :func:`utc_now` (or the older whole-second
    form); raises ValueError for anything else."""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return _dt.datetime.strptime(text, fmt).replace(tzinfo=_dt.UTC).timestamp()
        except ValueError:
            continue
    raise ValueError(f"not a timestamp: {text[:40]!r}")


# --- errors -----------------------------------------------------------------------------

class StateError(HadeployError):
    """A state file or directory that cannot be used; nothing was changed."""

    def __init__(self, path: Path, problem: str, hint: str) -> None:
        super().__init__(f"{path}: {problem}", hint=hint, code=ExitCode.BAD_INPUT)
        self.path = path


def _os_problem(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


# --- atomic, private writes -------------------------------------------------------------

def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o600) -> None:
    """Write ``path`` so that a reader sees the old or the new content, never a mix,
    even when the process dies mid-way; the file has ``mode`` from its first byte."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.is_dir():
            raise StateError(path, "is a directory, expected a file",
                             f"move it away (mv {path} {path}.bak) and re-run")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _write_synced(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, raw, mode)
        tmp.replace(path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StateError(path, f"cannot be written ({_os_problem(exc)})",
                         "check the permissions and free space of the state directory"
                         ) from None


def _write_synced(path: Path, flags: int, data: bytes, mode: int) -> None:
    """Write ``data`` through a fresh descriptor (never following a link), then fsync."""
    fd = os.open(path, flags | os.O_NOFOLLOW, mode)
    try:
        if flags & os.O_TRUNC:
            os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_if_changed(path: Path, text: str, *, mode: int = 0o600) -> bool:
    """:func:`atomic_write` unless the file already holds ``text``; whether it wrote."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.is_file() and path.read_text() == text:
            return False
    atomic_write(path, text, mode=mode)
    return True


def read_text(path: Path, *, limit: int = 16 * 1024 * 1024) -> str | None:
    """A state file's text, or None when it does not exist. Anything else that is wrong
    with it (a directory, a FIFO, unreadable, binary, huge) is a :class:`StateError`."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(path, f"cannot be read ({_os_problem(exc)})",
                         "check the state directory's permissions") from None
    if not stat.S_ISREG(st.st_mode):
        raise StateError(path, "is not a regular file",
                         f"move it away (mv {path} {path}.bak) and re-run")
    if st.st_size > limit:
        raise StateError(path, f"is {st.st_size} bytes, far more than hadeploy writes",
                         f"move it away (mv {path} {path}.bak) and re-run")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) \
            else f"cannot be read ({_os_problem(exc)})"
        raise StateError(path, problem, f"move it away (mv {path} {path}.bak) and re-run"
                         ) from None


def load_model(path: Path, model: type[M], *, hint: str) -> M | None:
    """Read and validate a JSON state file; None when it does not exist."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the document"
        raise StateError(path, f"cannot be trusted: {where}: {first['msg'][:120]}",
                         hint) from None


# --- state files' models ----------------------------------------------------------------

class _StateModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RegionName = str  # validated against the deployment's regions by the reader


class RegionFlags(_StateModel):
    """``regions.json``: what failovers did to regions (every later ``up`` keeps it)."""

    version: Literal[1] = 1
    promoted: tuple[RegionName, ...] = ()  # a warm/cold standby scaled up to full size
    fenced: tuple[RegionName, ...] = ()  # refuses writes
    # The region whose database cluster is the writable one since the last failover;
    # None: the configured primary region.
    data_primary: RegionName | None = None
    # Regions replaced by a crash failover: when they come back, what their database wrote
    # after the new primary's last replayed position is copied aside, then they rejoin.
    rejoin: tuple[RegionName, ...] = ()

    def names(self, flag: RegionFlag) -> frozenset[str]:
        return frozenset(self.promoted if flag == "promoted" else self.fenced)

    def with_flag(self, flag: RegionFlag, region: str, on: bool) -> RegionFlags:
        names = set(self.names(flag))
        (names.add if on else names.discard)(region)
        return self.model_copy(update={flag: tuple(sorted(names))})


class Journal(_StateModel):
    """``failover-journal.json``: a failover that started and has not finished. ``from``
    is required (null when DNS named no region): a journal that forgot it would make a
    resumed run fence nothing while DNS still names the old primary."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    version: Literal[1] = 1
    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    from_region: str | None = Field(alias="from")
    to: str
    reason: str = Field(max_length=1000)
    operation: Literal["failover", "failback", "watch"] = "failover"
    started: str
    user: str = Field(max_length=256)
    # A switchover's demotion token, once the old primary's database was stopped: a
    # resumed run waits for it instead of stopping a database that is already stopped.
    data_token: int | None = Field(default=None, ge=0)


class Converged(_StateModel):
    """``converged.json``: per region, the configuration fingerprint Ansible converged."""

    version: Literal[1] = 1
    regions: dict[str, str] = Field(default_factory=dict)
    at: str | None = None


# --- the state directory ----------------------------------------------------------------

def state_root(override: Path | None = None) -> Path:
    """``--state-dir``, else ``$HADEPLOY_STATE_DIR``, else ``./.hadeploy`` (like
    ``.terraform/``); absolute. A root that exists but is not a directory is refused."""
    env = os.environ.get("HADEPLOY_STATE_DIR")
    root = override if override is not None else (Path(env) if env else Path(".hadeploy"))
    root = root.absolute()
    if root.exists() and not root.is_dir():
        raise StateError(root, "is not a directory (it is the state root)",
                         "pass --state-dir (or HADEPLOY_STATE_DIR) naming a directory")
    return root


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._locked: set[str] = set()

    @classmethod
    def for_deployment(cls, name: str, root: Path | None = None) -> StateDir:
        """The state directory of deployment ``name`` under the state root. The name is
        validated and the path must stay inside the root (no ``..``, no symlink out)."""
        from hadeploy.config import validate_name

        validate_name(name, "deployment")
        base = state_root(root)
        path = base / name
        real_base = base.resolve() if base.exists() else base
        if path.exists() or path.is_symlink():
            real = path.resolve()
            if real.parent != real_base:
                raise StateError(path, f"resolves to {real}, outside the state root {base}",
                                 "remove the link; state directories live in the state root")
            if not real.is_dir():
                raise StateError(path, "is not a directory",
                                 f"move it away (mv {path} {path}.bak) and re-run")
        return cls(path)

    # -- the directory --------------------------------------------------------------------

    def ensure(self) -> Path:
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            if stat.S_IMODE(self.path.stat().st_mode) != 0o700:
                self.path.chmod(0o700)
        except FileExistsError:
            raise StateError(self.path, "is not a directory",
                             f"move it away (mv {self.path} {self.path}.bak)") from None
        except OSError as exc:
            raise StateError(self.path, f"cannot be created ({_os_problem(exc)})",
                             "pass --state-dir naming a writable directory") from None
        return self.path

    @property
    def exists(self) -> bool:
        return (self.path / "deployment.json").exists()

    def file(self, name: str) -> Path:
        return self.path / name

    def write(self, name: str, data: str | bytes, *, mode: int = 0o600) -> None:
        self.ensure()
        atomic_write(self.path / name, data, mode=mode)

    def save_json(self, name: str, doc: Any) -> None:
        self.write(name, json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def save_model(self, name: str, model: BaseModel) -> None:
        self.write(name, model.model_dump_json(indent=2, by_alias=True) + "\n")

    def load_json(self, name: str) -> Any:
        """A JSON state file (None when missing); corrupt JSON is a StateError."""
        path = self.path / name
        text = read_text(path)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise StateError(path, f"is not valid JSON ({exc})",
                             "run 'hadeploy up' to rewrite it") from None

    # -- the desired state last applied ------------------------------------------------

    def save_deployment(self, dep: Deployment) -> None:
        self.write("deployment.json", dep.model_dump_json(indent=2) + "\n")

    def load_deployment(self) -> Deployment:
        from hadeploy.config import ConfigError, parse

        path = self.path / "deployment.json"
        doc = self.load_json("deployment.json")
        if doc is None:
            raise HadeployError(f"no deployment found in {self.path}",
                                hint="run 'hadeploy up --regions east,west' (or pass --config "
                                "and --state-dir of an existing deployment)",
                                code=ExitCode.BAD_INPUT)
        try:
            dep = parse(doc, str(path))
        except ConfigError as exc:
            raise StateError(path, f"cannot be trusted: {exc.message}",
                             "run 'hadeploy up --config <your hadeploy.yaml>' to rewrite "
                             "it") from None
        if dep.name != self.path.name:
            raise StateError(path, f"names deployment '{dep.name}', but lies in the state "
                             f"directory of '{self.path.name}'",
                             "restore the right file, or re-run 'hadeploy up' with its config")
        return dep

    # -- region flags (under the lock) ------------------------------------------------

    def region_flags(self, regions: set[str] | None = None) -> RegionFlags:
        """The recorded region states; ``regions``: the names they may mention."""
        path = self.path / "regions.json"
        flags = load_model(path, RegionFlags, hint="restore it, or remove it and re-run "
                           "the last failover (it re-applies fencing)") or RegionFlags()
        if regions is not None:
            unknown = sorted((set(flags.promoted) | set(flags.fenced)) - regions)
            if unknown:
                raise StateError(path, f"names region(s) {', '.join(unknown)} that the "
                                 "deployment does not have", "restore it, or remove those "
                                 "names if the regions were really removed")
        return flags

    def set_region_flag(self, flag: RegionFlag, region: str, on: bool) -> None:
        """Record a region state; only under the deployment lock (no lost update)."""
        self.require_lock()
        flags = self.region_flags()
        new = flags.with_flag(flag, region, on)
        if new != flags:
            self.save_model("regions.json", new)

    def set_rejoin(self, region: str, on: bool) -> None:
        """Record that ``region``'s database must be salvaged and rejoined (under the lock)."""
        self.require_lock()
        flags = self.region_flags()
        names = set(flags.rejoin)
        (names.add if on else names.discard)(region)
        if set(flags.rejoin) != names:
            self.save_model("regions.json",
                            flags.model_copy(update={"rejoin": tuple(sorted(names))}))

    def set_data_primary(self, region: str) -> None:
        """Record which region's database cluster takes writes (under the lock)."""
        self.require_lock()
        flags = self.region_flags()
        if flags.data_primary != region:
            self.save_model("regions.json", flags.model_copy(update={"data_primary": region}))

    # -- failover journal -----------------------------------------------------------

    def read_journal(self) -> Journal | None:
        return load_model(self.path / JOURNAL, Journal,
                          hint="it records an unfinished failover: inspect it, then remove "
                          "it and re-run 'hadeploy failover --to <region>' (fencing and the "
                          "DNS change are idempotent)")

    def write_journal(self, journal: Journal) -> None:
        self.require_lock()
        self.save_model(JOURNAL, journal)

    def clear_journal(self) -> None:
        self.require_lock()
        (self.path / JOURNAL).unlink(missing_ok=True)

    # -- converged fingerprints -----------------------------------------------------

    def converged(self) -> dict[str, str]:
        found = load_model(self.path / "converged.json", Converged,
                           hint="remove it; the next 'hadeploy up' configures every region")
        return dict(found.regions) if found else {}

    def save_converged(self, fingerprints: dict[str, str]) -> None:
        current = self.converged()
        current.update(fingerprints)
        self.save_model("converged.json", Converged(regions=current, at=utc_now()))

    # -- audit ----------------------------------------------------------------------

    def audit(self, operation: str, **fields: Any) -> dict[str, Any]:
        """Append one record to ``audit.jsonl`` (fsynced) and return it. Every record has
        ``operation``, ``at`` (:func:`utc_now`), ``user``, ``host`` and ``pid``."""
        record = {"operation": operation, "at": utc_now(), "user": current_user(),
                  "host": socket.gethostname(), "pid": os.getpid(), **fields}
        self.ensure()
        path = self.path / "audit.jsonl"
        try:
            _write_synced(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                          (json.dumps(record, sort_keys=True) + "\n").encode(), 0o600)
        except OSError as exc:
            raise StateError(path, f"cannot be appended to ({_os_problem(exc)})",
                             "check the state directory; the audit log must be writable"
                             ) from None
        return record

    def audit_records(self, *, operation: str | None = None) -> Iterator[dict[str, Any]]:
        """Every readable record, oldest first (a torn last line is skipped); with
        ``operation``, only that operation's records (lines that cannot be one are not
        even parsed: the log grows with every run)."""
        text = read_text(self.path / "audit.jsonl", limit=1 << 30)
        needle = json.dumps(operation) if operation is not None else None
        for line in (text or "").splitlines():
            if needle is not None and needle not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (
                    operation is None or record.get("operation") == operation):
                yield record

    # -- forgetting -----------------------------------------------------------------

    def clear(self, *, keep_backups: bool = False) -> None:
        """Forget what ``down`` removed; keep the audit trail (and the lock being held),
        and with ``keep_backups`` what restoring the kept backups needs."""
        if not self.path.is_dir():
            return
        keep = KEEP_ON_DOWN | ({BACKUP_DIR} if keep_backups else set())
        for entry in self.path.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # -- locks ----------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return "lock" in self._locked

    def require_lock(self) -> None:
        if not self.locked:
            raise RuntimeError("state change outside the deployment lock")  # a bug, not input

    def lock_holder(self, name: str) -> str | None:
        """Who holds lock ``name`` right now (another process), or None when it is free."""
        path = self.path / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None  # never taken, or unreadable: nobody can be holding it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_holder(path)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def lock(self, operation: str, *, name: str = "lock",
             holder_hint: str = "wait for that run to finish; a lock is released "
             "automatically when its process exits") -> Iterator[None]:
        """Exclusive ``flock`` for changing runs; a second run is refused (exit 4) and
        told who holds it. The kernel releases it when the holder dies: no stale locks."""
        self.ensure()
        path = self.path / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StateError(path, f"cannot be opened as a lock file ({_os_problem(exc)})",
                             f"move it away (mv {path} {path}.bak) and re-run") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise HadeployError(f"deployment '{self.path.name}' is locked by "
                                    f"{_read_holder(path)}", hint=holder_hint,
                                    code=ExitCode.LOCKED) from None
            info = {"pid": os.getpid(), "user": current_user(), "host": socket.gethostname(),
                    "operation": operation, "since": utc_now()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            self._locked.add(name)
            try:
                yield
            finally:
                self._locked.discard(name)
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text()[:4096] or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info:
        return "another run (holder unknown)"
    return (f"'{info.get('operation')}' run by {info.get('user')}@{info.get('host')} "
            f"(pid {info.get('pid')}) since {info.get('since')}")
