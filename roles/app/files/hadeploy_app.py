#!/usr/bin/python3
"""hadeploy demo application: a small JSON item store on shared storage.

Standard library only (Python 3.11). Configured through environment variables, which
systemd loads from /etc/hadeploy/app.env:

    HADEPLOY_REGION, HADEPLOY_HOST, HADEPLOY_VERSION, HADEPLOY_DATA_DIR,
    HADEPLOY_PORT (8080), HADEPLOY_BIND (0.0.0.0), HADEPLOY_HEALTH_PATH (/healthz)

Endpoints (all answers are JSON):
    GET  /              200 {"region", "host", "version"}
    POST /items         201 {"id", "region", "host"} once the item is durably stored
    GET  /items/<id>    200 the stored item plus "served_by", or 404
    GET  <health path>  200 if the data directory is writable right now, else 503
    GET  /readyz        200 while the process serves requests
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ITEM_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Config:
    region: str
    host: str
    version: str
    data_dir: Path
    port: int = 8080
    bind: str = "0.0.0.0"  # all addresses: haproxy on the LB hosts must reach it
    health_path: str = "/healthz"

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

    def put(self, item_id: str, item: dict[str, Any]) -> None:
        data = json.dumps(item, sort_keys=True, separators=(",", ":")).encode()
        self._write_durably(f"{item_id}.json", data)

    def get(self, item_id: str) -> dict[str, Any] | None:
        try:
            item: dict[str, Any] = json.loads((self.items_dir / f"{item_id}.json").read_bytes())
        except FileNotFoundError:
            return None
        return item

    def probe(self) -> None:
        """Raise OSError unless a file can be created, synced and removed right now."""
        fd, tmp = tempfile.mkstemp(prefix=".probe-", dir=self.items_dir)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)


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
            self.server.store.probe()
        except OSError as exc:
            self.send_json(
                503,
                {
                    "status": "unhealthy",
                    "reason": f"data dir not writable: {exc}",
                    "host": cfg.host,
                    "region": cfg.region,
                },
            )
            return
        self.send_json(
            200, {"status": "ok", "host": cfg.host, "region": cfg.region, "version": cfg.version}
        )

    def get_item(self, item_id: str) -> None:
        if not valid_item_id(item_id):
            self.send_error_json(404, "no such item")
            return
        try:
            item = self.server.store.get(item_id)
        except (OSError, ValueError) as exc:
            self.send_error_json(503, f"cannot read item: {exc}")
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
        try:
            self.server.store.put(item_id, item)
        except OSError as exc:
            # 503 lets the load balancer retry on another host.
            self.send_error_json(503, f"cannot store item: {exc}")
            return
        cfg = self.config
        self.send_json(201, {"id": item_id, "region": cfg.region, "host": cfg.host})


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = ItemStore(config.data_dir)
        self.store.ensure_dir()
        super().__init__((config.bind, config.port), AppHandler)


def make_server(config: Config) -> AppServer:
    return AppServer(config)


def main() -> int:
    config = Config.from_env()
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
