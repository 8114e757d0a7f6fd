"""RFC 2136 dynamic updates signed with TSIG (dnspython): the lab's knotd and any
on-prem BIND, Knot or PowerDNS server.

The provider reads the current answer straight from the authoritative server, replaces
a record set in one atomic UPDATE message, and waits until the server serves it.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hadeploy.errors import ExitCode, HadeployError

ALGORITHM = "hmac-sha256"
WRITER_TTL = 1  # the lease agents ask the server itself; no resolver should keep it


def _txt(value: str) -> str:
    """A writer value (a region name or '-') as TXT presentation text."""
    if not value.isascii() or '"' in value or "\\" in value or len(value) > 63:
        raise ValueError(f"not a writer value: {value[:70]!r}")
    return f'"{value}"'


@dataclass(frozen=True)
class TsigKey:
    name: str
    secret: str  # base64
    algorithm: str = ALGORITHM

    def __repr__(self) -> str:  # never leak the secret through logs or tracebacks
        return f"TsigKey(name={self.name!r}, algorithm={self.algorithm!r}, secret=***)"

    @classmethod
    def generate(cls, name: str) -> TsigKey:
        return cls(name, base64.b64encode(secrets.token_bytes(32)).decode())

    def save(self, path: Path) -> None:
        """Write the key with mode 0600 from its first byte (never world-readable)."""
        from hadeploy.state import atomic_write

        atomic_write(path, json.dumps({"name": self.name, "algorithm": self.algorithm,
                                       "secret": self.secret}))

    @classmethod
    def load(cls, path: Path) -> TsigKey:
        """Read and validate a key file: a key that cannot be used is refused here, before
        a failover changes anything (never as a decoding error after fencing)."""
        hint = "restore it from backup, or 'hadeploy down' and 'up' to issue a new one"
        try:
            st = path.stat()
            if st.st_size > 4096 or not path.is_file():
                raise ValueError("not a small regular file")
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            key = cls(str(data["name"]), str(data["secret"]),
                      str(data.get("algorithm", ALGORITHM)))
            key.validate()
        except FileNotFoundError:
            raise HadeployError(f"TSIG key {path} is missing",
                                hint="run 'hadeploy up' to create the DNS server and its key",
                                code=ExitCode.ENVIRONMENT) from None
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
            what = type(exc).__name__ if isinstance(exc, KeyError) else str(exc)[:80]
            raise HadeployError(f"TSIG key {path} cannot be used ({what})", hint=hint,
                                code=ExitCode.BAD_INPUT) from None
        return key

    def validate(self) -> None:
        """Raise ValueError unless this is a usable HMAC-SHA256 key (never says the secret)."""
        import binascii
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", self.name):
            raise ValueError("key name is not a DNS name")
        if self.algorithm != ALGORITHM:
            raise ValueError(f"algorithm is not {ALGORITHM}")
        try:
            raw = base64.b64decode(self.secret, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("secret is not base64") from None
        if len(raw) < 16:
            raise ValueError("secret is shorter than 128 bits")


class Rfc2136Provider:
    """Read/replace one record set on an authoritative server; ``A`` records only."""

    verify_timeout = 10.0  # seconds a failover waits for the server to serve the change

    def __init__(self, server: str, port: int, zone: str, key: TsigKey | None,
                 timeout: float = 2.0, key_path: Path | None = None) -> None:
        self.server, self.port, self.timeout = server, port, timeout
        self.zone = zone.rstrip(".") + "."
        self.key = key
        self.key_path = key_path

    def check_writable(self) -> None:
        if self.key is None:
            where = f" ({self.key_path})" if self.key_path else ""
            raise HadeployError(f"no TSIG key{where}: an update of {self.zone} cannot be "
                                "signed", hint="run 'hadeploy up' to create the DNS server "
                                "and its key, or restore the key file",
                                code=ExitCode.ENVIRONMENT)

    def _fqdn(self, record: str) -> str:
        return record if record.endswith(".") else f"{record}.{self.zone}"

    def read(self, record: str) -> list[str]:
        """The A records the authoritative server serves now (empty if none)."""
        import dns.rdatatype

        return sorted(item.address for rrset in self._query(record, dns.rdatatype.A)
                      for item in rrset)

    def read_writer(self, record: str) -> str | None:
        """The writer record's value ('-': no region); None when there is none."""
        import dns.rdatatype

        values = [b"".join(item.strings).decode("ascii", "replace")
                  for rrset in self._query(record, dns.rdatatype.TXT) for item in rrset]
        return values[0] if len(values) == 1 else (None if not values else "?")

    def _query(self, record: str, rdtype: Any) -> list[Any]:
        """The answer's record sets of type ``rdtype`` (empty on NXDOMAIN)."""
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        query = dns.message.make_query(self._fqdn(record), rdtype)
        query.flags &= ~0x0100  # RD off: we ask the authority, not a resolver
        try:
            resp = dns.query.udp(query, self.server, port=self.port, timeout=self.timeout)
            if resp.flags & 0x0200:  # truncated
                resp = dns.query.tcp(query, self.server, port=self.port, timeout=self.timeout)
        except (dns.exception.Timeout, OSError) as exc:
            raise self._unreachable(exc) from None
        rcode = resp.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return []
        if rcode != dns.rcode.NOERROR:
            raise HadeployError(f"DNS server {self.server}:{self.port} answered "
                                f"{dns.rcode.to_text(rcode)} for {self._fqdn(record)}",
                                hint=f"check that it is authoritative for {self.zone}",
                                code=ExitCode.ENVIRONMENT)
        return [rrset for rrset in resp.answer if rrset.rdtype == rdtype]

    def replace(self, record: str, ttl: int, addresses: list[str], *,
                writer: tuple[str, str] | None = None) -> None:
        """Replace the whole A record set in one UPDATE (atomic on the server); with
        ``writer`` (record, value), the writer record in the same UPDATE."""
        if not addresses:
            raise HadeployError("refusing to leave the app record with no address",
                                code=ExitCode.REFUSED)
        rrsets: list[tuple[str, int, str, list[str]]] = [(record, ttl, "A", addresses)]
        if writer is not None:
            rrsets.append((writer[0], WRITER_TTL, "TXT", [_txt(writer[1])]))
        self._update(rrsets)

    def set_writer(self, record: str, value: str) -> None:
        """Replace the writer record alone (a fence: '-')."""
        self._update([(record, WRITER_TTL, "TXT", [_txt(value)])])

    def _update(self, rrsets: list[tuple[str, int, str, list[str]]]) -> None:
        import dns.exception
        import dns.query
        import dns.rcode
        import dns.tsig
        import dns.tsigkeyring
        import dns.update

        kwargs = {}
        if self.key is not None:
            kwargs = {"keyring": dns.tsigkeyring.from_text({self.key.name: self.key.secret}),
                      "keyname": self.key.name, "keyalgorithm": dns.tsig.HMAC_SHA256}
        update = dns.update.UpdateMessage(self.zone, **kwargs)  # type: ignore[arg-type]
        for name, ttl, rdtype, values in rrsets:
            update.replace(self._fqdn(name), ttl, rdtype, *values)
        try:
            resp = dns.query.tcp(update, self.server, port=self.port, timeout=self.timeout)
        except dns.tsig.PeerError as exc:
            raise HadeployError(f"DNS server {self.server}:{self.port} rejected the TSIG "
                                f"signature ({type(exc).__name__})",
                                hint="the key in the state directory does not match the "
                                "server's", code=ExitCode.ENVIRONMENT) from None
        except (dns.exception.Timeout, OSError, EOFError) as exc:
            raise self._unreachable(exc) from None
        rcode = resp.rcode()
        if rcode != dns.rcode.NOERROR:
            names = ", ".join(self._fqdn(name) for name, *_ in rrsets)
            raise HadeployError(f"DNS server {self.server}:{self.port} refused the update of "
                                f"{names}: {dns.rcode.to_text(rcode)}",
                                hint="check the TSIG key and the server's update ACL",
                                code=ExitCode.FAILED)

    def wait_visible(self, record: str, addresses: list[str], timeout: float = 10.0) -> float:
        """Poll until the server serves exactly ``addresses``; return the seconds waited."""
        start = time.monotonic()
        want = sorted(addresses)
        while True:
            if self.read(record) == want:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise HadeployError(f"{self._fqdn(record)} still does not answer {want} after "
                                    f"{timeout:.0f} s", code=ExitCode.VERIFY_FAILED)
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers for the zone's SOA."""
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                resp = dns.query.udp(dns.message.make_query(self.zone, "SOA"), self.server,
                                     port=self.port, timeout=0.5)
                if resp.rcode() == dns.rcode.NOERROR and resp.answer:
                    return
            except (dns.exception.Timeout, OSError) as exc:
                last = exc
            time.sleep(0.05)
        raise self._unreachable(last or TimeoutError("no SOA answer"))

    def _unreachable(self, exc: BaseException) -> HadeployError:
        return HadeployError(f"DNS server {self.server}:{self.port} did not answer "
                             f"({type(exc).__name__}: {exc})",
                             hint="check that it runs ('hadeploy status'); in the lab, "
                             "'hadeploy up' starts it", code=ExitCode.ENVIRONMENT)
