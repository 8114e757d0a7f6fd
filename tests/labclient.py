"""A client of a lab deployment's app, as the data-tier tests and benchmark use it: resolve
the app's name at the lab's DNS server for every request (no cache), POST unique items and
record every acknowledgement, then look the acknowledged ids up in a region."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable


def resolver(zone: str, server: str, record: str = "app") -> Callable[[], str | None]:
    """The first A record of <record>.<zone> at ``server``, or None (no answer)."""
    def resolve() -> str | None:
        import dns.message
        import dns.query

        try:
            resp = dns.query.udp(dns.message.make_query(f"{record}.{zone}.", "A"), server,
                                 timeout=0.5)
        except Exception:
            return None
        found = [a.address for rr in resp.answer for a in rr]
        return found[0] if found else None
    return resolve


def request(host: str, method: str, path: str, body: dict | None = None,
            timeout: float = 3.0) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, 80, timeout=timeout)
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


class Writer:
    """Writes unique items through the app's DNS name, ``gap`` seconds apart; records every
    acknowledgement (id, time, region that answered)."""

    def __init__(self, tag: str, resolve: Callable[[], str | None], gap: float = 0.02,
                 timeout: float = 3.0) -> None:
        self.tag, self.resolve, self.gap, self.timeout = tag, resolve, gap, timeout
        self.acked: list[tuple[str, float, str | None]] = []
        self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for n in itertools.count(1):
            if self._stop.is_set():
                return
            item = f"{self.tag}-{n}"
            address = self.resolve()
            try:
                status, body = request(address, "POST", "/items", {"id": item},
                                       self.timeout) if address \
                    else (0, {"error": "no DNS answer"})
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, {"error": type(exc).__name__}
            if status in (200, 201):
                self.acked.append((item, time.time(), body.get("region")))
            else:
                self.failed += 1
                self.errors.append(f"{status} {str(body)[:80]}")
            self._stop.wait(self.gap)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

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

