"""Patroni's REST API, as the CLI machine sees every database host of every region.

Standard library only (the failover path must stay light): ``GET /patroni`` for a member's
role and WAL positions, ``GET``/``PATCH /config`` for the cluster's dynamic configuration
(the standby_cluster switch that promotes or demotes a whole region). Unsafe calls carry
the deployment's REST password (basic auth); it is never logged.
"""

from __future__ import annotations

import base64
import datetime as _dt
import http.client
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hadeploy.errors import ExitCode, HadeployError

API_USER = "hadeploy"


@dataclass(frozen=True)
class Member:
    """One database host as Patroni reports it (``error`` set when it did not answer)."""

    name: str
    address: str
    role: str = "unknown"  # primary | replica | standby_leader | unknown
    state: str = "unknown"  # running | starting | stopped | ...
    timeline: int | None = None
    location: int | None = None  # a primary's current WAL write position
    received: int | None = None  # a standby's received and replayed positions
    replayed: int | None = None
    replayed_at: float | None = None  # unix time of the last replayed commit
    paused: bool = False  # the cluster is in maintenance mode (Patroni does not act)
    error: str | None = None

    @property
    def position(self) -> int | None:
        """How far this member's data goes: its write position, or what it replayed."""
        return self.location if self.location is not None else self.replayed


def _request(address: str, port: int, method: str, path: str, timeout: float,
             body: Any = None, password: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    headers = {"Connection": "close", "User-Agent": "hadeploy"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if password is not None:
        token = base64.b64encode(f"{API_USER}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read(1 << 20)
    finally:
        conn.close()
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = raw.decode(errors="replace")[:200]
    return resp.status, doc


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def member(name: str, address: str, port: int = 8008, timeout: float = 2.0) -> Member:
    """``GET /patroni`` of one host; a host that does not answer is a Member with error."""
    try:
        status, doc = _request(address, port, "GET", "/patroni", timeout)
    except (OSError, http.client.HTTPException) as exc:
        return Member(name, address, error=f"{type(exc).__name__}: {exc}".strip()[:200])
    if not isinstance(doc, dict):
        return Member(name, address, error=f"HTTP {status}: not a Patroni answer")
    xlog = doc.get("xlog") or {}
    role = {"master": "primary", "primary": "primary", "replica": "replica",
            "standby_leader": "standby_leader"}.get(str(doc.get("role")), "unknown")
    return Member(name, address, role=role, state=str(doc.get("state", "unknown")),
                  timeline=doc.get("timeline"), location=xlog.get("location"),
                  received=xlog.get("received_location"),
                  replayed=xlog.get("replayed_location"),
                  replayed_at=_timestamp(xlog.get("replayed_timestamp")),
                  paused=doc.get("pause") is True)


def members(hosts: Iterable[tuple[str, str]], port: int = 8008,
            timeout: float = 2.0) -> list[Member]:
    """Every (name, address) asked at once: the whole batch costs one timeout."""
    hosts = list(hosts)
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        return list(pool.map(lambda h: member(h[0], h[1], port, timeout), hosts))


def restart(address: str, password: str, *, port: int = 8008, timeout: float = 120.0) -> None:
    """Restart one member's PostgreSQL through Patroni (it waits for the restart)."""
    try:
        status, doc = _request(address, port, "POST", "/restart", timeout, {}, password)
    except (OSError, http.client.HTTPException) as exc:
        raise HadeployError(f"restarting PostgreSQL on {address} failed: "
                            f"{type(exc).__name__}: {exc}", code=ExitCode.FAILED) from None
    if status != 200:
        raise HadeployError(f"restarting PostgreSQL on {address} failed: HTTP {status} "
                            f"{str(doc)[:160]}", code=ExitCode.FAILED)


def patch_config(addresses: Iterable[str], body: dict[str, Any], password: str, *,
                 port: int = 8008, timeout: float = 3.0) -> str:
    """PATCH the cluster's dynamic configuration through the first member that answers
    (any member writes it to the region's etcd); the address that took it."""
    errors: list[str] = []
    for address in addresses:
        try:
            status, doc = _request(address, port, "PATCH", "/config", timeout, body, password)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{address}: {type(exc).__name__}")
            continue
        if status == 200:
            return address
        errors.append(f"{address}: HTTP {status} {str(doc)[:120]}")
    raise HadeployError("no member accepted the configuration change "
                        f"({'; '.join(errors) or 'no member'})",
                        hint="check the region's database hosts ('hadeploy status')",
                        code=ExitCode.FAILED)


@dataclass
class ClusterView:
    """A region's cluster from its members' answers."""

    members: list[Member] = field(default_factory=list)

    @property
    def reachable(self) -> list[Member]:
        """Members whose Patroni answers (whatever their PostgreSQL does)."""
        return [m for m in self.members if m.error is None]

    @property
    def answering(self) -> list[Member]:
        """Members whose PostgreSQL runs."""
        return [m for m in self.reachable if m.state == "running"]

    @property
    def paused(self) -> bool:
        """The cluster is in maintenance mode (as any reachable member reports)."""
        return any(m.paused for m in self.reachable)

    @property
    def primary(self) -> Member | None:
        return next((m for m in self.answering if m.role == "primary"), None)

    @property
    def standby_leader(self) -> Member | None:
        return next((m for m in self.answering if m.role == "standby_leader"), None)

    @property
    def leader(self) -> Member | None:
        return self.primary or self.standby_leader

    @property
    def role(self) -> str:
        """primary (takes writes) | standby (streams from another region) | down."""
        if self.primary is not None:
            return "primary"
        if self.standby_leader is not None:
            return "standby"
        return "down" if not self.answering else "unknown"
