#!/usr/bin/python3
"""hadeploy demo application: a small JSON item store.

Python 3.11, standard library plus psycopg2 (Debian's python3-psycopg2) when a database is
configured. Configured through environment variables, which systemd loads from
/etc/hadeploy/app.env:

    HADEPLOY_REGION, HADEPLOY_HOST, HADEPLOY_VERSION, HADEPLOY_DATA_DIR,
    HADEPLOY_PORT (8080), HADEPLOY_BIND (0.0.0.0), HADEPLOY_HEALTH_PATH (/healthz)
    HADEPLOY_DB_WRITE, HADEPLOY_DB_READ (host:port of the region's writable primary and of
    any readable member), HADEPLOY_DB_NAME, HADEPLOY_DB_USER, HADEPLOY_DB_PASSWORD_FILE,
    HADEPLOY_DB_CA: with these, items live in PostgreSQL (and follow a region failover);
    without, one JSON file per item on the region's shared storage.

Endpoints (all answers are JSON):
    GET  /              200 {"region", "host", "version"}
    POST /items         201 {"id", "region", "host"} once the item is durably stored (an id
                        the client chose makes a retry idempotent: 200 "existing": true);
                        503 in a standby region (its database is read-only)
    GET  /items         200 {"count", "digest"}: how many items, and an md5 of their ids
    GET  /items/<id>    200 the stored item plus "served_by", or 404
    GET  <health path>  200 if the region can serve right now, or once promoted (storage
                        writable, or read-only as a whole: a replica; the database
                        readable: a correct standby region is healthy), else 503
    GET  /readyz        200 while the process serves requests
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ITEM_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class DbConfig:
    write: tuple[str, int]  # the region's writable primary (through haproxy on the VIP)
    read: tuple[str, int]  # any readable member
    name: str
    user: str
    password: str
    ca_file: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DbConfig | None:
        if not env.get("HADEPLOY_DB_WRITE"):
            return None
        password = Path(env["HADEPLOY_DB_PASSWORD_FILE"]).read_text().strip()
        return cls(_host_port(env["HADEPLOY_DB_WRITE"]),
                   _host_port(env.get("HADEPLOY_DB_READ") or env["HADEPLOY_DB_WRITE"]),
                   env.get("HADEPLOY_DB_NAME", "hadeploy"), env.get("HADEPLOY_DB_USER", "app"),
                   password, env["HADEPLOY_DB_CA"])

    def __repr__(self) -> str:  # never the password
        return f"DbConfig(write={self.write}, read={self.read}, name={self.name!r})"


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


@dataclass(frozen=True)
class Config:
    region: str
    host: str
    version: str
    data_dir: Path
    port: int = 8080
    bind: str = "0.0.0.0"  # all addresses: haproxy on the LB hosts must reach it
    health_path: str = "/healthz"
    db: DbConfig | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        return cls(
            region=env.get("HADEPLOY_REGION", "local"),
            host=env.get("HADEPLOY_HOST", os.uname().nodename),
            version=env.get("HADEPLOY_VERSION", "0.0.0"),
            data_dir=Path(env.get("HADEPLOY_DATA_DIR", "/srv/hadeploy/shared")),
            port=int(env.get("HADEPLOY_PORT", "8080")),
            bind=env.get("HADEPLOY_BIND", "0.0.0.0"),
            health_path=env.get("HADEPLOY_HEALTH_PATH", "/healthz"),
            db=DbConfig.from_env(env),
        )


def valid_item_id(item_id: object) -> bool:
    return isinstance(item_id, str) and ITEM_ID_RE.fullmatch(item_id) is not None


class ItemStore:
    """Items as one JSON file each under <data_dir>/items, written crash-safely."""

    def __init__(self, data_dir: Path) -> None:
        self.items_dir = Path(data_dir) / "items"

    def ensure_dir(self) -> None:
        with contextlib.suppress(OSError):  # the health check reports what is wrong
            self.items_dir.mkdir(mode=0o770, parents=True, exist_ok=True)

    def _fsync_dir(self) -> None:
        fd = os.open(self.items_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_durably(self, name: str, data: bytes) -> None:
        # Temp file in the same directory, fsync, atomic rename, fsync the directory:
        # a reader (on any host sharing the storage) sees the old file or the new one.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.items_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o640)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.items_dir / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fsync_dir()

    def put(self, item_id: str, item: dict[str, Any], region: str = "") -> bool:
        """Store the item; False when an item with this id was already stored (a retry)."""
        existed = (self.items_dir / f"{item_id}.json").exists()
        if not existed:
            data = json.dumps(item, sort_keys=True, separators=(",", ":")).encode()
            self._write_durably(f"{item_id}.json", data)
        return not existed

    def summary(self) -> dict[str, Any]:
        ids = sorted(p.name.removesuffix(".json") for p in self.items_dir.glob("*.json"))
        return {"count": len(ids), "digest": hashlib.md5(",".join(ids).encode(),
                                                         usedforsecurity=False).hexdigest()}

    def get(self, item_id: str) -> dict[str, Any] | None:
        try:
            item: dict[str, Any] = json.loads((self.items_dir / f"{item_id}.json").read_bytes())
        except FileNotFoundError:
            return None
        return item

    def probe(self) -> dict[str, Any]:
        """Raise OSError unless a file can be created, synced and removed right now — or
        the storage is read-only as a whole (EROFS) and readable: a replica (on aws an EFS
        replication destination) serves reads now and takes writes once a failover
        promotes it, so it is ready, and says so."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".probe-", dir=self.items_dir)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
            os.listdir(self.items_dir)  # readable, or this raises too
            return {"store": "files", "storage": "read-only (a replica until promoted)"}
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
        return {"store": "files", "storage": "writable"}


class ReadOnlyRegion(Exception):
    """No writable database in this region: it is a standby, writes go to the active one."""


class DbStore:
    """Items in the region's PostgreSQL cluster, reached through haproxy on the region's
    VIP: writes to the member Patroni calls primary, reads from any readable member. One
    connection per thread and endpoint, verified TLS (the deployment's CA), SCRAM."""

    # Ride out a planned leader change (about a second). A crashed leader is replaced only
    # when its key expires (Patroni's ttl, 10 s): longer than a request should hang, so
    # those writes get a 503 the client retries.
    WRITE_RETRY_SECONDS = 3.0

    def __init__(self, db: DbConfig) -> None:
        import psycopg2  # only where a database is configured

        self.psycopg2 = psycopg2
        self.db = db
        self.local = threading.local()

    def _dsn(self, which: str) -> dict[str, Any]:
        host, port = self.db.write if which == "write" else self.db.read
        return {"host": host, "port": port, "dbname": self.db.name, "user": self.db.user,
                "password": self.db.password, "sslmode": "verify-full",
                "sslrootcert": self.db.ca_file, "connect_timeout": 2,
                "application_name": "hadeploy-app", "keepalives": 1,
                "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2}

    def _run(self, which: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction; reconnect once if the connection
        was cut (haproxy closes sessions of a member that stopped being healthy)."""
        for attempt in (1, 2):
            conn = getattr(self.local, which, None)
            try:
                if conn is None or conn.closed:
                    conn = self.psycopg2.connect(**self._dsn(which))
                    conn.autocommit = True
                    setattr(self.local, which, conn)
                with conn.cursor() as cur:
                    cur.execute(sql, args)
                    return cur.fetchall() if cur.description else []
            except (self.psycopg2.OperationalError, self.psycopg2.InterfaceError):
                if conn is not None:
                    conn.close()
                setattr(self.local, which, None)
                if attempt == 2:
                    raise
        return []  # not reached

    def put(self, item_id: str, item: dict[str, Any], region: str = "") -> bool:
        """Insert the item; False when this id was already stored (a retry). Retries for a
        few seconds while the region has no writable primary (an election)."""
        deadline = time.monotonic() + self.WRITE_RETRY_SECONDS
        while True:
            try:
                rows = self._run("write", "INSERT INTO items (id, body, region) VALUES "
                                 "(%s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
                                 (item_id, json.dumps(item, sort_keys=True), region))
                return bool(rows)
            except self.psycopg2.errors.ReadOnlySqlTransaction as exc:
                raise ReadOnlyRegion(str(exc).strip()) from None
            except (self.psycopg2.OperationalError, self.psycopg2.InterfaceError) as exc:
                if time.monotonic() >= deadline or self._standby_region(region):
                    raise ReadOnlyRegion(f"no writable database: {str(exc).strip()[:200]}"
                                         ) from None
                time.sleep(0.2)

    def _standby_region(self, region: str) -> bool:
        """This region's database is a standby of another region's (its replayed heartbeat
        was written elsewhere): no election will make it writable, answer at once."""
        try:
            rows = self._run("read", "SELECT pg_is_in_recovery() AND (SELECT region FROM "
                             "heartbeat WHERE id = 1) IS DISTINCT FROM %s", (region,))
        except self.psycopg2.Error:
            return False
        return bool(rows and rows[0][0])

    def get(self, item_id: str) -> dict[str, Any] | None:
        """Read from any readable member; an item a replica does not have yet is looked up
        on the primary too, so a client reads its own acknowledged writes (items never
        change once written, so a replica's copy is never stale)."""
        rows = self._run("read", "SELECT body FROM items WHERE id = %s", (item_id,))
        if not rows:
            try:
                rows = self._run("write", "SELECT body FROM items WHERE id = %s", (item_id,))
            except self.psycopg2.Error:  # no writable member here (a standby region)
                return None
        if not rows:
            return None
        body = rows[0][0]
        return dict(body) if isinstance(body, dict) else dict(json.loads(body))

    def summary(self) -> dict[str, Any]:
        rows = self._run("read", "SELECT count(*), md5(coalesce(string_agg(id, ',' ORDER BY "
                         "id), '')) FROM items")
        return {"count": rows[0][0], "digest": rows[0][1]}

    def probe(self) -> dict[str, Any]:
        """Raise unless the region's database answers a read; what it says about itself."""
        rows = self._run("read", "SELECT pg_is_in_recovery(), (SELECT region FROM heartbeat "
                         "WHERE id = 1), now() - (SELECT at FROM heartbeat WHERE id = 1)")
        standby, writer, behind = rows[0]
        return {"store": "postgresql", "database": "replica" if standby else "primary",
                "writer_region": writer,
                "behind_seconds": None if behind is None else round(
                    behind.total_seconds(), 3)}


class AppHandler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"  # keep-alive with haproxy
    server_version = "hadeploy-app"
    timeout = 30  # idle keep-alive connections do not hold a thread forever

    # -- helpers ---------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.server.config

    def send_json(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body, sort_keys=True).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-HADeploy-Host", self.config.host)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_json(self, status: int, reason: str) -> None:
        self.send_json(status, {"error": reason, "host": self.config.host})

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # One line per request, but not for the load balancers' health checks.
        if self.path != self.config.health_path:
            sys.stdout.write(f'{self.address_string()} "{self.requestline}" {code}\n')
            sys.stdout.flush()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # -- routes ----------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == self.config.health_path:
            self.health()
        elif path == "/":
            cfg = self.config
            self.send_json(200, {"region": cfg.region, "host": cfg.host, "version": cfg.version})
        elif path == "/readyz":
            self.send_json(200, {"status": "ready", "host": self.config.host})
        elif path in ("/items", "/items/"):
            self.list_items()
        elif path.startswith("/items/"):
            self.get_item(path.removeprefix("/items/"))
        else:
            self.send_error_json(404, "not found")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] not in ("/items", "/items/"):
            self.discard_body()
            self.send_error_json(404, "not found")
            return
        self.post_item()

    def health(self) -> None:
        cfg = self.config
        try:
            storage = self.server.files.probe()["storage"]
            detail = {**self.server.store.probe(), "storage": storage}
        except Exception as exc:  # any failure means: not ready to serve
            self.send_json(503, {"status": "unhealthy", "reason": f"{type(exc).__name__}: "
                                 f"{str(exc).strip()[:300]}", "host": cfg.host,
                                 "region": cfg.region})
            return
        self.send_json(200, {"status": "ok", "host": cfg.host, "region": cfg.region,
                             "version": cfg.version, **detail})

    def list_items(self) -> None:
        try:
            self.send_json(200, self.server.store.summary())
        except Exception as exc:  # reported, the load balancer retries
            self.send_error_json(503, f"cannot list items: {type(exc).__name__}")

    def get_item(self, item_id: str) -> None:
        if not valid_item_id(item_id):
            self.send_error_json(404, "no such item")
            return
        try:
            item = self.server.store.get(item_id)
        except Exception as exc:  # storage or database: 503, LB retries
            self.send_error_json(503, f"cannot read item: {type(exc).__name__}: "
                                 f"{str(exc).strip()[:200]}")
            return
        if item is None:
            self.send_error_json(404, "no such item")
            return
        self.send_json(200, {**item, "served_by": self.config.host})

    def read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self.send_error_json(413 if length > 0 else 400, "bad Content-Length")
            return None
        return self.rfile.read(length)

    def discard_body(self) -> None:
        with contextlib.suppress(ValueError):
            length = int(self.headers.get("Content-Length", "0"))
            if 0 < length <= MAX_BODY_BYTES:
                self.rfile.read(length)
                return
        self.close_connection = True

    def post_item(self) -> None:
        raw = self.read_body()
        if raw is None:
            return
        try:
            item = json.loads(raw)
        except ValueError:
            self.send_error_json(400, "body is not valid JSON")
            return
        if not isinstance(item, dict):
            self.send_error_json(400, "body must be a JSON object")
            return
        item_id = item.get("id")
        if item_id is None:
            item_id = uuid.uuid4().hex
        elif not valid_item_id(item_id):
            self.send_error_json(400, "id must match ^[A-Za-z0-9_-]{1,64}$")
            return
        item["id"] = item_id
        cfg = self.config
        try:
            created = self.server.store.put(item_id, item, cfg.region)
        except ReadOnlyRegion as exc:
            self.send_json(503, {"error": "read-only region: writes go to the active region",
                                 "detail": str(exc)[:300], "host": cfg.host,
                                 "region": cfg.region})
            return
        except Exception as exc:  # 503 lets the load balancer retry elsewhere
            self.send_error_json(503, f"cannot store item: {type(exc).__name__}: "
                                 f"{str(exc).strip()[:200]}")
            return
        body = {"id": item_id, "region": cfg.region, "host": cfg.host}
        self.send_json(201 if created else 200, body if created else {**body, "existing": True})


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, config: Config) -> None:
        self.config = config
        self.files = ItemStore(config.data_dir)
        self.files.ensure_dir()
        self.store: ItemStore | DbStore = DbStore(config.db) if config.db else self.files
        super().__init__((config.bind, config.port), AppHandler)


def make_server(config: Config) -> AppServer:
    return AppServer(config)


# -- moving items from the shared storage into the database ---------------------------
# A deployment built before it had a database tier kept items as files on each region's
# shared storage. When it gains the tier, Ansible runs ``export-files`` on one app host of
# every region, feeds what it printed to ``import-items`` on an app host of the region whose
# database is writable, then runs ``mark-imported`` where the files are. The files are kept
# (never deleted); the marker only stops a second export.

IMPORT_MARKER = ".imported-to-database"


def export_files(config: Config, out: Any = None) -> int:
    """Print one JSON line {"id", "item", "region"} per item file not imported yet."""
    out = out or sys.stdout
    files = ItemStore(config.data_dir)
    if (files.items_dir / IMPORT_MARKER).exists() or not files.items_dir.is_dir():
        return 0
    count = 0
    for path in sorted(files.items_dir.glob("*.json")):
        item_id = path.name.removesuffix(".json")
        try:
            item = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"skipping {path}: {type(exc).__name__}: {exc}\n")
            continue
        if not valid_item_id(item_id) or not isinstance(item, dict):
            sys.stderr.write(f"skipping {path}: not an item this app wrote\n")
            continue
        out.write(json.dumps({"id": item_id, "item": item, "region": config.region},
                             sort_keys=True) + "\n")
        count += 1
    return count


def import_items(store: Any, lines: Any) -> dict[str, int]:
    """Insert exported items (idempotent: an id already stored is left as it is)."""
    imported = existing = 0
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        if store.put(record["id"], record["item"], record.get("region", "")):
            imported += 1
        else:
            existing += 1
    return {"imported": imported, "existing": existing}


def mark_imported(config: Config, summary: str) -> None:
    files = ItemStore(config.data_dir)
    record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "summary": json.loads(summary or "{}")}
    (files.items_dir / IMPORT_MARKER).write_text(json.dumps(record, sort_keys=True) + "\n")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (systemd's EnvironmentFile, as the role writes it)."""
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            env[key.strip()] = value.strip()
    return env


def run_command(argv: list[str], config: Config) -> int:
    """The one-shot commands Ansible runs (see above); 2 on a usage error."""
    command, args = argv[0], argv[1:]
    if command == "export-files" and not args:
        export_files(config)
        return 0
    if command == "import-items" and not args:
        if config.db is None:
            sys.stderr.write("import-items: no database is configured on this host\n")
            return 2
        sys.stdout.write(json.dumps(import_items(DbStore(config.db), sys.stdin)) + "\n")
        return 0
    if command == "mark-imported" and len(args) == 1:
        mark_imported(config, args[0])
        return 0
    sys.stderr.write("usage: hadeploy_app.py [export-files | import-items | "
                     "mark-imported SUMMARY_JSON]\n")
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env: Mapping[str, str] = os.environ
    if argv[:1] == ["--env-file"] and len(argv) > 1:  # what systemd gives the service
        env = {**os.environ, **read_env_file(Path(argv[1]))}
        argv = argv[2:]
    config = Config.from_env(env)
    if argv:
        return run_command(argv, config)
    server = make_server(config)

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(
        f"hadeploy-app {config.version} serving {config.host} "
        f"({config.region}) on {config.bind}:{config.port}\n"
    )
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
