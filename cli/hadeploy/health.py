"""HTTP health probes (stdlib only: the failover path must stay light and dependable)."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ProbeResult:
    url: str
    ok: bool
    status: int | None
    latency_ms: float
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _tls_context() -> ssl.SSLContext:
    """Verify the certificate chain but not the name: a region's endpoint is probed by
    its load balancer's own name (an ALB's), while its certificate names the app."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    return ctx


def probe(url: str, timeout: float = 1.0) -> ProbeResult:
    """GET ``url`` (http or https); healthy means HTTP 200 within ``timeout``. A
    ``tcp://host:port`` URL: healthy means the port accepts a connection (a server that
    does not speak HTTP, e.g. pgBackRest's TLS server)."""
    parts = urlsplit(url)
    start = time.monotonic()
    if parts.scheme == "tcp":
        try:
            socket.create_connection((parts.hostname or "", parts.port or 0), timeout).close()
            return ProbeResult(url, True, None, (time.monotonic() - start) * 1000)
        except OSError as exc:
            return ProbeResult(url, False, None, (time.monotonic() - start) * 1000,
                               f"{type(exc).__name__}: {exc}".strip())
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443,
                                           timeout=timeout, context=_tls_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80,
                                          timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Connection": "close",
                                                       "User-Agent": "hadeploy-probe"})
        resp = conn.getresponse()
        body = resp.read(65536)
        latency = (time.monotonic() - start) * 1000
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return ProbeResult(url, resp.status == 200, resp.status, latency, None, headers, body)
    except (OSError, http.client.HTTPException) as exc:
        latency = (time.monotonic() - start) * 1000
        return ProbeResult(url, False, None, latency, f"{type(exc).__name__}: {exc}".strip())
    finally:
        conn.close()


def probe_many(urls: list[str], timeout: float = 1.0) -> dict[str, ProbeResult]:
    """Probe concurrently: the whole batch costs one timeout, not one per URL."""
    if not urls:
        return {}
    with ThreadPoolExecutor(max_workers=min(32, len(urls))) as pool:
        results = list(pool.map(lambda u: probe(u, timeout), urls))
    return {r.url: r for r in results}
