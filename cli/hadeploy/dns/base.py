"""The one small interface every DNS provider implements (rfc2136, route53)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


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


@runtime_checkable
class WriterRecord(Protocol):
    """A provider that also keeps the writer record: a TXT record naming the one region
    allowed to take writes, which the regions' lease agents read (RFC 2136 only)."""

    def read_writer(self, record: str) -> str | None:
        """The region the writer record names ('-': none); None when there is no record."""

    def set_writer(self, record: str, value: str) -> None:
        """Replace the writer record (one atomic change)."""

    def replace(self, record: str, ttl: int, addresses: list[str], *,
                writer: tuple[str, str] | None = None) -> None:
        """As :meth:`DnsProvider.replace`; ``writer`` (record, value) changes the writer
        record in the same atomic update."""
