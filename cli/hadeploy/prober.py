#!/usr/bin/env python3
"""In-region prober: a vantage point inside one region that probes the *other* regions.

Standard library only: it runs in a tiny container (lab) or on any host of a region.
It probes every target's health URL every ``interval`` seconds and serves its view on
``GET /results``:

    {"vantage": "probe@west", "interval": 1.0, "now": <unix time>,
     "targets": {"east": {"url": ..., "ok": bool, "consecutive_failures": n,
                          "consecutive_successes": n, "last_at": ts, "status": 200,
                          "latency_ms": 1.2, "error": null}}}

It is deliberately self-contained (its own small ``probe()``, like ``hadeploy.health``):
the lab bind-mounts this one file into a container that has no hadeploy installed.

Configured by a JSON file (``--config``): {"vantage": str, "interval": float,
"timeout": float, "port": int, "targets": {"<region>": "<health url>"}}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


def probe(url: str, timeout: float) -> tuple[bool, int | None, float, str | None]:
    parts = urlsplit(url)
    start = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Connection": "close",
                                                       "User-Agent": "hadeploy-prober"})
        resp = conn.getresponse()
        resp.read(65536)
        return resp.status == 200, resp.status, (time.monotonic() - start) * 1000, None
    except (OSError, http.client.HTTPException) as exc:
        return False, None, (time.monotonic() - start) * 1000, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


class Prober:
    def __init__(self, config: dict[str, Any]) -> None:
        self.vantage = str(config["vantage"])
        self.interval = float(config.get("interval", 1.0))
        self.timeout = float(config.get("timeout", 0.8))
        self.targets: dict[str, str] = dict(config["targets"])
        self.state: dict[str, dict[str, Any]] = {
            r: {"url": u, "ok": None, "consecutive_failures": 0, "consecutive_successes": 0,
                "last_at": None, "status": None, "latency_ms": None, "error": None}
            for r, u in self.targets.items()}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _probe_one(self, region: str, url: str) -> None:
        ok, status, latency, error = probe(url, self.timeout)
        with self.lock:
            s = self.state[region]
            s.update(ok=ok, status=status, latency_ms=round(latency, 1), error=error,
                     last_at=time.time())
            if ok:
                s["consecutive_successes"] += 1
                s["consecutive_failures"] = 0
            else:
                s["consecutive_failures"] += 1
                s["consecutive_successes"] = 0

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            threads = [threading.Thread(target=self._probe_one, args=(r, u), daemon=True)
                       for r, u in self.targets.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join(self.timeout + 1)
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def results(self) -> dict[str, Any]:
        with self.lock:
            return {"vantage": self.vantage, "interval": self.interval, "now": time.time(),
                    "targets": json.loads(json.dumps(self.state))}


def serve(prober: Prober, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/results":
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps(prober.results()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - region-internal
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        config = json.load(fh)
    prober = Prober(config)
    server = serve(prober, int(config.get("port", 9100)))
    signal.signal(signal.SIGTERM, lambda *_: prober.stop.set())
    signal.signal(signal.SIGINT, lambda *_: prober.stop.set())
    try:
        prober.run()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
