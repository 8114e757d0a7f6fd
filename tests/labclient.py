"""A client of a lab deployment's app, as the data-tier tests and benchmark use it: the
drills' client (``hadeploy.drill.Client``) resolving the app's name at the lab's DNS server
for every request, POSTing unique items; then look the acknowledged ids up in a region."""

from __future__ import annotations

import http.client
import itertools
import json
import time
from collections.abc import Callable

from hadeploy.drill import Client


def resolver(zone: str, servers: list[str], record: str = "app") -> Callable[[], str | None]:
    """The first A record of <record>.<zone>, asking ``servers`` in order as a stub
    resolver does (0.5 s each), or None (no answer from any)."""
    def ask(server: str):
        import dns.message
        import dns.query

        try:
            return dns.query.udp(dns.message.make_query(f"{record}.{zone}.", "A"), server,
                                 timeout=0.5)
        except Exception:
            return None

    def resolve() -> str | None:
        for server in servers:
            resp = ask(server)
            if resp is not None:
                found = [a.address for rr in resp.answer for a in rr]
                return found[0] if found else None
        return None
    return resolve


def request(host: str, method: str, path: str, body: dict | None = None,
            timeout: float = 3.0, port: int = 80) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw or b"{}")
        except ValueError:  # haproxy's own error pages are HTML
            return resp.status, {"raw": raw[:200].decode(errors="replace")}
    finally:
        conn.close()


class Writer(Client):
    """The drills' client writing only (no read-back), resolving the app's name for every
    request (no cache), ``gap`` seconds apart; ``acked`` is (id, time, region that
    answered)."""

    def __init__(self, tag: str, resolve: Callable[[], str | None], gap: float = 0.02,
                 timeout: float = 3.0) -> None:
        super().__init__(tag, lambda: (resolve(), 0.0), gap=gap, timeout=timeout,
                         read_back=False)

    def __enter__(self) -> Writer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def failed(self) -> int:
        return sum(1 for s in list(self.samples) if not s.ok)

    @property
    def ids(self) -> list[str]:
        return [i for i, _, _ in self.acked]

    def acked_after(self, moment: float, region: str | None = None) -> float | None:
        """When the first write acknowledged after ``moment`` (by ``region``) was."""
        return next((t for _, t, r in list(self.acked)
                     if t > moment and region in (None, r)), None)

    def pause(self) -> float:
        """The longest gap between two acknowledgements (the write pause)."""
        times = [t for _, t, _ in self.acked]
        return round(max((b - a for a, b in itertools.pairwise(times)), default=0.0), 3)


def missing(items: list[str], vip: str) -> list[str]:
    """Acknowledged items that the region behind ``vip`` does not have (a 5xx is retried
    for up to 5 s; a 404 is final)."""
    lost = []
    for item in items:
        status = 0
        for _attempt in range(10):
            status, _ = request(vip, "GET", f"/items/{item}")
            if status in (200, 404):
                break
            time.sleep(0.5)
        if status != 200:
            lost.append(item)
    return lost

