"""RFC 2136 dynamic updates signed with TSIG (dnspython): the lab's knotd servers and any
on-prem BIND, Knot or PowerDNS servers.

The zone has several authoritative servers, every one a primary that receives the same
signed UPDATE from the CLI (no hidden primary that could itself be the single point of
failure). The provider works by quorum, with N servers and a majority of N // 2 + 1:

- **read**: ask every server at once; a majority must answer; the answer of the highest
  SOA serial among them wins (every change that counted reached a majority, and any two
  majorities share a server, so the newest counted change is always among the answers);
- **write**: one UPDATE per server, each carrying the new records *and* the SOA with one
  serial chosen by the CLI (greater than any serial a majority reports, and at least the
  Unix time), so every server that has a change has it under the same serial; the change
  counts when a majority acknowledged it, and the provider says which servers had it;
- **resync**: a server that answers with an older serial (it was down or cut off during a
  change) gets the newest answer under the newest serial, as a DNS secondary would after
  comparing serials.
"""

from __future__ import annotations

import base64
import json
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hadeploy.errors import ExitCode, HadeployError
from hadeploy.topology import NameServer

ALGORITHM = "hmac-sha256"
WRITER_TTL = 1  # the lease agents ask the server itself; no resolver should keep it
GRACE = 0.05  # once a majority answered, the seconds the others get before we go on

T = TypeVar("T")


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


@dataclass
class ServerState:
    """What one server answers now (``error`` set: it did not)."""
    name: str
    address: str
    port: int
    serial: int | None = None
    answer: list[str] | None = None  # the A record set
    writer: str | None = None  # the writer record's value, None when it has none
    soa: Any = None  # the SOA rdata (a write bumps its serial)
    ttl: int | None = None  # the A record set's TTL
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def content(self) -> tuple[tuple[str, ...], str | None]:
        return tuple(self.answer or ()), self.writer


@dataclass
class Snapshot:
    """Every server's state at one moment, and what the quorum makes of it."""
    servers: list[ServerState]
    majority: int

    @property
    def answering(self) -> list[ServerState]:
        return [s for s in self.servers if s.ok]

    @property
    def newest(self) -> ServerState | None:
        """The answering server with the highest serial, when a majority answered."""
        answering = self.answering
        if len(answering) < self.majority:
            return None
        return max(answering, key=lambda s: (s.serial or 0, s.name))

    def stale(self) -> list[ServerState]:
        """Answering servers that do not serve the newest serial and answer."""
        best = self.newest
        if best is None:
            return []
        return [s for s in self.answering if s.serial != best.serial
                or s.content() != best.content()]

    def agree(self) -> bool:
        """Every server answers, with one serial and one answer."""
        return all(s.ok for s in self.servers) and not self.stale()


@dataclass
class WriteResult:
    """Which servers acknowledged one change, and when (seconds after it was sent)."""
    serial: int
    records: list[str]
    had: dict[str, float] = field(default_factory=dict)
    missed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"serial": self.serial, "records": self.records,
                "had": {k: round(v, 3) for k, v in sorted(self.had.items())},
                "missed": dict(sorted(self.missed.items()))}


class Rfc2136Provider:
    """Read/replace the app record (``A``) and the writer record (``TXT``) on every
    authoritative server of the zone, by quorum."""

    verify_timeout = 10.0  # seconds a failover waits for a majority to serve the change

    def __init__(self, servers: Sequence[NameServer], zone: str, key: TsigKey | None, *,
                 timeout: float = 2.0, key_path: Path | None = None) -> None:
        if not servers:
            raise ValueError("an RFC 2136 zone needs at least one server")
        self.servers = tuple(servers)
        self.majority = len(self.servers) // 2 + 1
        self.timeout = timeout
        self.zone = zone.rstrip(".") + "."
        self.key = key
        self.key_path = key_path
        self.writes: list[WriteResult] = []  # this provider's changes (the audit's record)

    @property
    def server(self) -> str:
        return self.servers[0].address

    def check_writable(self) -> None:
        if self.key is None:
            where = f" ({self.key_path})" if self.key_path else ""
            raise HadeployError(f"no TSIG key{where}: an update of {self.zone} cannot be "
                                "signed", hint="run 'hadeploy up' to create the DNS servers "
                                "and their key, or restore the key file",
                                code=ExitCode.ENVIRONMENT)

    def _fqdn(self, record: str) -> str:
        return record if record.endswith(".") else f"{record}.{self.zone}"

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self, record: str | None, writer_record: str | None = None, *,
                 wait_all: bool = False) -> Snapshot:
        """Ask every server at once for the zone's SOA and ``record`` (and the writer
        record). Returns once every server answered or failed, or — unless ``wait_all`` —
        once a majority answered and the others had :data:`GRACE` seconds more."""
        def one(server: NameServer) -> ServerState:
            import dns.rdatatype

            state = ServerState(server.name, server.address, server.port)
            soa = self.query(server, self.zone, dns.rdatatype.SOA)
            if not soa:
                raise HadeployError(f"DNS server {server.address}:{server.port} has no SOA "
                                    f"for {self.zone}", code=ExitCode.ENVIRONMENT)
            state.soa = soa[0][0]
            state.serial = int(state.soa.serial)
            if record is not None:
                sets = self.query(server, record, dns.rdatatype.A)
                state.answer = sorted(item.address for rrset in sets for item in rrset)
                state.ttl = int(sets[0].ttl) if sets else None
            if writer_record is not None:
                values = [b"".join(item.strings).decode("ascii", "replace") for rrset in
                          self.query(server, writer_record, dns.rdatatype.TXT)
                          for item in rrset]
                state.writer = values[0] if len(values) == 1 else (None if not values
                                                                    else "?")
            return state

        results = self._each(one, need=len(self.servers) if wait_all else self.majority)
        states = []
        for server in self.servers:
            got = results.get(server.name)
            if isinstance(got, ServerState):
                states.append(got)
            else:
                states.append(ServerState(server.name, server.address, server.port,
                                          error=_failure(got)))
        return Snapshot(states, self.majority)

    def _settled(self, record: str | None, writer_record: str | None = None) -> ServerState:
        snap = self.snapshot(record, writer_record)
        best = snap.newest
        if best is None:
            raise self.no_majority(snap)
        return best

    def read(self, record: str) -> list[str]:
        """The A records of the newest serial a majority of servers answers (empty if
        none)."""
        return list(self._settled(record).answer or [])

    def read_writer(self, record: str) -> str | None:
        """The writer record's value ('-': no region); None when there is none."""
        return self._settled(None, record).writer

    def query(self, server: NameServer, record: str, rdtype: Any) -> list[Any]:
        """The answer's record sets of type ``rdtype`` (empty on NXDOMAIN)."""
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        query = dns.message.make_query(self._fqdn(record), rdtype)
        query.flags &= ~0x0100  # RD off: we ask the authority, not a resolver
        try:
            resp = dns.query.udp(query, server.address, port=server.port,
                                 timeout=self.timeout)
            if resp.flags & 0x0200:  # truncated
                resp = dns.query.tcp(query, server.address, port=server.port,
                                     timeout=self.timeout)
        except (dns.exception.Timeout, OSError) as exc:
            raise self._unreachable(server, exc) from None
        rcode = resp.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return []
        if rcode != dns.rcode.NOERROR:
            raise HadeployError(f"DNS server {server.address}:{server.port} answered "
                                f"{dns.rcode.to_text(rcode)} for {self._fqdn(record)}",
                                hint=f"check that it is authoritative for {self.zone}",
                                code=ExitCode.ENVIRONMENT)
        return [rrset for rrset in resp.answer if rrset.rdtype == rdtype]

    # -- writing ---------------------------------------------------------------------------

    def replace(self, record: str, ttl: int, addresses: list[str], *,
                writer: tuple[str, str] | None = None) -> None:
        """Replace the whole A record set in one UPDATE per server (atomic on each); with
        ``writer`` (record, value), the writer record in the same UPDATE."""
        if not addresses:
            raise HadeployError("refusing to leave the app record with no address",
                                code=ExitCode.REFUSED)
        rrsets: list[tuple[str, int, str, list[str]]] = [(record, ttl, "A", addresses)]
        if writer is not None:
            rrsets.append((writer[0], WRITER_TTL, "TXT", [_txt(writer[1])]))
        self._write(rrsets)

    def set_writer(self, record: str, value: str) -> None:
        """Replace the writer record alone (a fence: '-')."""
        self._write([(record, WRITER_TTL, "TXT", [_txt(value)])])

    def write_rrsets(self, rrsets: list[tuple[str, int, str, list[str]]]) -> WriteResult:
        """Replace other record sets (name, ttl, type, values), by quorum (the lab's NS
        set and its servers' addresses)."""
        return self._write(rrsets)

    def _write(self, rrsets: list[tuple[str, int, str, list[str]]]) -> WriteResult:
        """One change, by quorum: raises unless a majority of the servers acknowledged it
        (saying which servers have it)."""
        snap = self.snapshot(None)
        best = snap.newest
        if best is None:
            raise self.no_majority(snap, "nothing was changed")
        serial = max(max(s.serial or 0 for s in snap.answering) + 1, int(time.time()))
        result = self._send(self.servers, rrsets, best.soa.replace(serial=serial))
        self.writes.append(result)
        if len(result.had) < self.majority:
            have = ", ".join(sorted(result.had)) or "none"
            why = "; ".join(f"{k}: {v}" for k, v in sorted(result.missed.items()))
            raise HadeployError(f"only {len(result.had)} of {len(self.servers)} DNS servers "
                                f"took the change of {self._names(rrsets)} (a majority is "
                                f"{self.majority}); servers that have it: {have}; {why}",
                                hint="re-run once a majority of the servers answers: the "
                                "change is idempotent ('hadeploy status' lists them)",
                                code=ExitCode.ENVIRONMENT)
        return result

    def _send(self, servers: Sequence[NameServer],
              rrsets: list[tuple[str, int, str, list[str]]], soa: Any,
              need: int | None = None, prereqs: dict[str, Any] | None = None) -> WriteResult:
        """The same UPDATE (records and SOA) to each of ``servers`` at once; ``prereqs``:
        server name → the SOA it must still serve for its update to hold."""
        t0 = time.monotonic()
        result = WriteResult(int(soa.serial), self._names(rrsets))

        def one(server: NameServer) -> float:
            self._update(server, rrsets, soa, (prereqs or {}).get(server.name))
            return time.monotonic() - t0

        got = self._each(one, need=self.majority if need is None else need,
                         servers=servers)
        for server in servers:
            value = got.get(server.name)
            if isinstance(value, float):
                result.had[server.name] = value
            else:
                result.missed[server.name] = _failure(value)
        return result

    def _names(self, rrsets: list[tuple[str, int, str, list[str]]]) -> list[str]:
        return [self._fqdn(name) for name, *_ in rrsets]

    def _update(self, server: NameServer, rrsets: list[tuple[str, int, str, list[str]]],
                soa: Any, prereq: Any = None) -> None:
        import dns.exception
        import dns.query
        import dns.rcode
        import dns.rdataset
        import dns.tsig
        import dns.tsigkeyring
        import dns.update

        kwargs = {}
        if self.key is not None:
            kwargs = {"keyring": dns.tsigkeyring.from_text({self.key.name: self.key.secret}),
                      "keyname": self.key.name, "keyalgorithm": dns.tsig.HMAC_SHA256}
        update = dns.update.UpdateMessage(self.zone, **kwargs)  # type: ignore[arg-type]
        if prereq is not None:  # holds only while the server serves this very SOA
            update.present(self.zone, dns.rdataset.from_rdata(0, prereq))
        for name, ttl, rdtype, values in rrsets:
            update.replace(self._fqdn(name), ttl, rdtype, *values)
        if soa is not None:  # the serial every server that has this change will answer
            update.replace(self.zone, dns.rdataset.from_rdata(300, soa))
        where = f"{server.address}:{server.port}"
        try:
            resp = dns.query.tcp(update, server.address, port=server.port,
                                 timeout=self.timeout)
        except dns.tsig.PeerError as exc:
            raise HadeployError(f"DNS server {where} rejected the TSIG signature "
                                f"({type(exc).__name__})", hint="the key in the state "
                                "directory does not match the server's",
                                code=ExitCode.ENVIRONMENT) from None
        except (dns.exception.Timeout, OSError, EOFError) as exc:
            raise self._unreachable(server, exc) from None
        rcode = resp.rcode()
        if rcode != dns.rcode.NOERROR:
            raise HadeployError(f"DNS server {where} refused the update of "
                                f"{', '.join(self._names(rrsets))}: {dns.rcode.to_text(rcode)}",
                                hint="check the TSIG key and the server's update ACL",
                                code=ExitCode.FAILED)

    # -- keeping the servers together ------------------------------------------------------

    def resync(self, record: str, writer_record: str | None = None, *,
               wait_all: bool = True, snap: Snapshot | None = None) -> list[str]:
        """Bring every answering server that lags (an older serial, or another answer)
        to the newest answer and serial; return what was done, one line per server.
        Needs a majority answering; a server that does not answer is left for later
        (``wait_all`` off: one that answers slower than the others is too). Each server's
        update holds only if the server still serves the SOA it was read with (an RFC 2136
        prerequisite): a resync never overwrites a change that reached it meanwhile.
        ``snap``: a snapshot of ``record`` and ``writer_record`` the caller just took."""
        snap = snap or self.snapshot(record, writer_record, wait_all=wait_all)
        best = snap.newest
        stale = snap.stale()
        if best is None or not stale:
            return []
        rrsets: list[tuple[str, int, str, list[str]]] = []
        if best.answer:
            rrsets.append((record, best.ttl or 60, "A", list(best.answer)))
        if writer_record is not None and best.writer not in (None, "?"):
            rrsets.append((writer_record, WRITER_TTL, "TXT", [_txt(str(best.writer))]))
        if not rrsets:
            return []
        # A server with the newest serial but another answer cannot take that serial
        # again: everyone gets the newest answer under a new serial instead.
        clash = any(s.serial == best.serial for s in stale)
        targets = [s for s in snap.answering if clash or s in stale]
        serial = max(s.serial or 0 for s in snap.answering) + 1 if clash else best.serial
        servers = [n for n in self.servers if n.name in {s.name for s in targets}]
        result = self._send(servers, rrsets, best.soa.replace(serial=serial),
                            need=len(servers), prereqs={s.name: s.soa for s in targets})
        self.writes.append(result)
        done = []
        for state in targets:
            if state.name in result.had:
                done.append(f"DNS server {state.name} brought from serial {state.serial} "
                            f"({', '.join(state.answer or []) or 'no answer'}, writer "
                            f"{state.writer}) to {serial} ({', '.join(best.answer or [])}, "
                            f"writer {best.writer})")
            else:
                done.append(f"DNS server {state.name} lags (serial {state.serial}) and could "
                            f"not be updated: {result.missed.get(state.name)}")
        return done

    # -- waiting ---------------------------------------------------------------------------

    def wait_visible(self, record: str, addresses: list[str], timeout: float = 10.0) -> float:
        """Poll until a majority of the servers serves exactly ``addresses``; return the
        seconds waited."""
        start = time.monotonic()
        want = sorted(addresses)
        while True:
            snap = self.snapshot(record)
            if sum(1 for s in snap.answering if s.answer == want) >= self.majority:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise HadeployError(f"{self._fqdn(record)} still does not answer {want} from "
                                    f"a majority of the DNS servers after {timeout:.0f} s",
                                    code=ExitCode.VERIFY_FAILED)
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 10.0,
                   servers: Sequence[NameServer] | None = None) -> None:
        """Wait until each of ``servers`` (default: all) answers for the zone's SOA."""
        import dns.rdatatype

        deadline = time.monotonic() + timeout
        for server in servers or self.servers:
            while True:
                try:
                    if self.query(server, self.zone, dns.rdatatype.SOA):
                        break
                    error = HadeployError(f"DNS server {server.address}:{server.port} has "
                                          f"no SOA for {self.zone}", code=ExitCode.ENVIRONMENT)
                except HadeployError as exc:
                    error = exc
                if time.monotonic() > deadline:
                    raise error
                time.sleep(0.05)

    # -- helpers ---------------------------------------------------------------------------

    def _each(self, fn: Callable[[NameServer], T], *, need: int,
              servers: Sequence[NameServer] | None = None
              ) -> dict[str, T | HadeployError | None]:
        """``fn`` on every server at once, each in its own thread. Returns once all have
        returned, or once ``need`` succeeded and the others had :data:`GRACE` seconds; a
        server still busy then is missing from the result (its thread ends on its own,
        within the timeout)."""
        servers = self.servers if servers is None else servers
        done: queue.Queue[tuple[str, Any]] = queue.Queue()

        def run(server: NameServer) -> None:
            try:
                done.put((server.name, fn(server)))
            except HadeployError as exc:
                done.put((server.name, exc))
            except Exception as exc:
                done.put((server.name, HadeployError(
                    f"DNS server {server.address}:{server.port}: {type(exc).__name__}: "
                    f"{str(exc)[:200]}", code=ExitCode.ENVIRONMENT)))

        for server in servers:
            threading.Thread(target=run, args=(server,), daemon=True,
                             name=f"dns-{server.name}").start()
        results: dict[str, Any] = {}
        succeeded, deadline = 0, None
        # Every thread ends within its queries' timeouts; the cap is only a safety net.
        cap = time.monotonic() + 4 * self.timeout + 1
        while len(results) < len(servers):
            until = cap if deadline is None else min(cap, deadline)
            try:
                name, value = done.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                break
            results[name] = value
            if not isinstance(value, HadeployError):
                succeeded += 1
                if succeeded >= need and deadline is None:
                    deadline = time.monotonic() + GRACE
        return results

    def no_majority(self, snap: Snapshot, what: str = "") -> HadeployError:
        lines = "; ".join(f"{s.name} ({s.address}): {s.error}" for s in snap.servers
                          if not s.ok)
        return HadeployError(f"only {len(snap.answering)} of {len(self.servers)} DNS servers "
                             f"answered, a majority is {self.majority}"
                             + (f" ({what})" if what else "") + f": {lines}",
                             hint="check that they run ('hadeploy status'); in the lab, "
                             "'hadeploy up' starts them", code=ExitCode.ENVIRONMENT)

    def _unreachable(self, server: NameServer, exc: BaseException) -> HadeployError:
        return HadeployError(f"DNS server {server.address}:{server.port} did not answer "
                             f"({type(exc).__name__}: {exc})",
                             hint="check that it runs ('hadeploy status'); in the lab, "
                             "'hadeploy up' starts it", code=ExitCode.ENVIRONMENT)


def _failure(value: object) -> str:
    """Why a server is missing from a round: its error, or that it had not answered when
    the majority had and the grace ran out."""
    return value.message if isinstance(value, HadeployError) else "no answer in time"
