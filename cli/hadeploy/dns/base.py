"""The one small interface every DNS provider implements (rfc2136, route53)."""

from __future__ import annotations

from typing import Protocol


class DnsProvider(Protocol):
    # Seconds a failover waits in ``wait_visible`` (RFC 2136: 10; Route 53: 120).
    verify_timeout: float

    def read(self, record: str) -> list[str]:
        """What the authoritative servers answer for ``record`` now ([] if nothing)."""

    def replace(self, record: str, ttl: int, addresses: list[str]) -> None:
        """Replace the record's answer in one atomic change; never with an empty answer."""

    def wait_visible(self, record: str, addresses: list[str], timeout: float = 10.0) -> float:
        """Wait until the authoritative servers serve ``addresses``; seconds waited."""

    def check_writable(self) -> None:
        """Raise HadeployError when a change could not even be sent (no key, no zone):
        a failover calls it before its first change, never after fencing."""
