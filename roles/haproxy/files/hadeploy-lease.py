#!/usr/bin/python3
"""hadeploy lease agent: a load balancer fences its own region when it loses the writer lease.

A TXT record ``_writer.<app record>`` in the deployment's zone names the one region allowed
to take writes ("-": none). The failover CLI sets it to "-" when it fences an old region and
to the target region in the same DNS update that moves the app record. This agent reads it
directly from the authoritative server(s) and keeps haproxy's self-fence ACL (writes refused
with 503 while it lists 0.0.0.0/0) on or off, so a region cut off from DNS stops taking
writes on its own, even when the CLI cannot reach it to fence it.

Every ``--interval`` seconds every ``--server`` is asked (UDP, RD bit off, all in parallel,
for at most ``--timeout`` seconds per round). With N servers, a majority is N // 2 + 1:

- a majority answered and a majority named this region: the lease is renewed, not fenced;
- a majority answered naming something else (another region, "-", no record): fenced at once;
- otherwise: fenced once the last renewal is older than ``--lease``, else unchanged.

Only authoritative answers (AA bit) count; NXDOMAIN and an empty answer mean "no writer".
The lease is timed from when the confirming queries were *sent*, and the agent starts with
no lease ("never confirmed": its first round fences unless a majority confirms). Hence the
bound the CLI relies on:

    An agent that stops hearing the servers fences at most lease + interval + timeout after
    its last confirmation (so at most that long after the record changed); one that hears
    the record change (from a majority of the servers) fences within interval + timeout.

(Plus the time to write a small file and send one command to haproxy's admin socket.) A
round ends as soon as a majority of the servers gave the same answer, so a silent minority
does not slow it down. A split answer (no value from a majority) is treated like silence.

A state is applied by writing the ACL file (atomically) and switching haproxy at run time
through its admin socket; both are re-asserted every 5 s (haproxy may have reloaded). A
state file (JSON) is written on every transition and at least every 5 s. SIGTERM exits 0
and leaves the ACL as it is. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import secrets
import select
import signal
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

TYPE_TXT = 16
CLASS_IN = 1
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3
NO_WRITER = "-"
MAX_TIMEOUT = 0.5  # the longest per-round query timeout
REASSERT = 5.0  # seconds between re-assertions of the applied state (and state file writes)
# At start, silence is not yet a decision: the first rounds of a booting host may find no
# network. For up to this long the agent keeps the ACL as haproxy loads it from the file
# (what the agent last applied) and asks again; the first answer from a majority — or the
# end of this grace — is its first decision, after which it tells systemd it is ready
# (Type=notify: haproxy is ordered after it, so a rebooted load balancer takes the VIP back
# only once its lease state is decided).
START_GRACE = 3.0
ADMIN_TIMEOUT = 0.5  # haproxy's admin socket is local: it answers in milliseconds


# -- DNS wire format ------------------------------------------------------------------------

class NotOurs(ValueError):
    """A datagram that is not the answer to our query (wrong ID or question): ignored."""


class Unusable(ValueError):
    """The answer to our query, but not a usable one (error code, truncated, malformed)."""


def normalize_name(name: str) -> str:
    """Lower-case absolute name (trailing dot); ValueError if it is not a valid DNS name."""
    name = name.strip().lower()
    if not name or name == ".":
        raise ValueError("empty name")
    labels = name.rstrip(".").split(".")
    for label in labels:
        if not label or len(label.encode("ascii", "strict")) > 63:
            raise ValueError(f"bad label {label!r} in {name!r}")
    if len(encode_name(labels)) > 255:
        raise ValueError(f"name too long: {name!r}")
    return ".".join(labels) + "."


def encode_name(labels: list[str]) -> bytes:
    return b"".join(bytes([len(lb)]) + lb.encode("ascii") for lb in labels) + b"\0"


def build_query(qname: str, qid: int) -> bytes:
    """A TXT query for ``qname`` with ID ``qid``, RD bit off (we ask the authority itself)."""
    labels = normalize_name(qname).rstrip(".").split(".")
    header = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0)
    return header + encode_name(labels) + struct.pack("!HH", TYPE_TXT, CLASS_IN)


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The (lower-case, absolute) name at ``offset`` and the offset after it (compression)."""
    labels: list[str] = []
    end = None
    for _ in range(128):  # bounds a pointer loop
        if offset >= len(data):
            raise ValueError("name runs past the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise ValueError("truncated pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise ValueError("bad label type")
        offset += 1
        if length == 0:
            return ".".join(labels).lower() + ".", end if end is not None else offset
        if offset + length > len(data):
            raise ValueError("label runs past the message")
        labels.append(data[offset:offset + length].decode("latin-1"))
        offset += length
    raise ValueError("compression loop")


def txt_strings(rdata: bytes) -> str:
    """The character-strings of one TXT rdata, joined."""
    parts, pos = [], 0
    while pos < len(rdata):
        length = rdata[pos]
        if pos + 1 + length > len(rdata):
            raise ValueError("character-string runs past the rdata")
        parts.append(rdata[pos + 1:pos + 1 + length])
        pos += 1 + length
    return b"".join(parts).decode("utf-8", "replace")


def _question(data: bytes, qname: str) -> int:
    """Check the question matches ours; the offset of the answer section."""
    try:
        name, pos = read_name(data, 12)
        qtype, qclass = struct.unpack_from("!HH", data, pos)
    except (ValueError, struct.error) as exc:
        raise NotOurs(f"unreadable question: {exc}") from None
    if name != qname or qtype != TYPE_TXT or qclass != CLASS_IN:
        raise NotOurs(f"question is {name} type {qtype} class {qclass}")
    return pos + 4


def _answers(data: bytes, pos: int, count: int, qname: str) -> set[str]:
    values: set[str] = set()
    try:
        for _ in range(count):
            name, pos = read_name(data, pos)
            rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
            pos += 10
            if pos + rdlength > len(data):
                raise ValueError("rdata runs past the message")
            if name == qname and rtype == TYPE_TXT and rclass == CLASS_IN:
                values.add(txt_strings(data[pos:pos + rdlength]).strip())
            pos += rdlength
    except (ValueError, struct.error) as exc:
        raise Unusable(f"malformed answer: {exc}") from None
    return values


def parse_response(data: bytes, qid: int, qname: str) -> str:
    """The writer named by a response to ``build_query(qname, qid)``.

    Returns the record's value, "-" (NO_WRITER) for "-", an empty value, NXDOMAIN or no
    TXT record; "ambiguous(a,b)" when several values are published. Raises NotOurs for a
    datagram that does not answer our query (keep waiting), Unusable for an answer that
    cannot be counted (error code, truncated, not authoritative, malformed).
    """
    qname = normalize_name(qname)
    if len(data) < 12:
        raise NotOurs("shorter than a DNS header")
    rid, flags, qdcount, ancount, _ns, _ar = struct.unpack_from("!HHHHHH", data)
    if rid != qid or not flags & FLAG_QR or (flags >> 11) & 0xF or qdcount != 1:
        raise NotOurs("not a response to our query")
    pos = _question(data, qname)
    rcode = flags & 0xF
    if rcode not in (RCODE_NOERROR, RCODE_NXDOMAIN):
        raise Unusable(f"rcode {rcode}")
    if flags & FLAG_TC:
        raise Unusable("truncated")
    if not flags & FLAG_AA:
        raise Unusable("not authoritative")
    if rcode == RCODE_NXDOMAIN:
        return NO_WRITER
    values = {v or NO_WRITER for v in _answers(data, pos, ancount, qname)}
    if not values:
        return NO_WRITER
    if len(values) > 1:
        return f"ambiguous({','.join(sorted(values))})"
    return values.pop()


# -- The rule ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    fenced: bool
    renewed: bool  # the lease is confirmed by this round (last_ok := the round's start)
    writer: str | None  # the value a majority of the configured servers gave, or None
    reason: str


def decide(answers: Mapping[str, str | None], region: str, *, fenced: bool,
           last_ok: float | None, now: float, lease: float) -> Decision:
    """Apply the lease rule to one round.

    ``answers``: one entry per configured server, the writer it named ("-": none) or None
    when it gave no usable answer. ``fenced``: the current state; ``last_ok``: monotonic
    time of the last confirmation (None: never).
    """
    total = len(answers)
    need = total // 2 + 1
    heard = {server: w for server, w in answers.items() if w is not None}
    counts = Counter(heard.values())
    writer = next((w for w, c in counts.items() if c >= need), None)
    if len(heard) >= need:
        naming = [server for server, w in heard.items() if w == region]
        if len(naming) >= need:
            verb = "names" if len(naming) == 1 else "name"
            return Decision(False, True, region,
                            f"lease renewed: {', '.join(naming)} {verb} {region}")
        if len(heard) - len(naming) >= need:
            other = writer or max((w for w in counts if w != region), key=lambda w: counts[w])
            what = "no writer (-)" if other == NO_WRITER else f"writer is {other}"
            return Decision(True, False, writer, f"{what}: fenced")
        why = f"no majority of {total} server(s) agrees on a writer"
    else:
        why = f"no answer from a majority of {total} server(s)"
    if last_ok is None:
        return Decision(True, False, writer, f"no lease yet: {why}: fenced")
    age = now - last_ok
    if age > lease:
        return Decision(True, False, writer, f"lease lost: {why} for {age:.1f} s: fenced")
    return Decision(fenced, False, writer, f"lease held: {why} for {age:.1f} s")


# -- Input and output ----------------------------------------------------------------------

@dataclass(frozen=True)
class Server:
    text: str  # as given (the name in logs and in the state file)
    family: int
    address: tuple[str, int]


def parse_server(text: str) -> Server:
    """ "ADDR:PORT" (IPv6: "[ADDR]:PORT"); ADDR must be an IP address, PORT defaults to 53."""
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad server {text!r} (expected [IPV6]:PORT)")
        port = rest[1:] if rest else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bad server {text!r}: {host!r} is not an IP address") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"bad server {text!r}: port {port!r} is not 1..65535")
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return Server(text, family, (str(ip), int(port)))


def query_all(servers: list[Server], qname: str, timeout: float) -> dict[str, str | None]:
    """Ask every server at once; each one's writer, or None (no usable answer in time).

    Returns as soon as a majority of the servers gave the same answer (the others cannot
    change the decision), else when all answered or ``timeout`` is over: a silent minority
    does not slow the rounds down.
    """
    results: dict[str, str | None] = {s.text: None for s in servers}
    pending: dict[socket.socket, tuple[Server, int]] = {}
    need = len(servers) // 2 + 1
    deadline = time.monotonic() + timeout
    try:
        for server in servers:
            qid = secrets.randbits(16)
            sock = socket.socket(server.family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect(server.address)  # only its answers; ICMP errors surface
                sock.send(build_query(qname, qid))
            except OSError:
                sock.close()
                continue
            pending[sock] = (server, qid)
        while pending:
            left = deadline - time.monotonic()
            counts = Counter(w for w in results.values() if w is not None)
            if left <= 0 or max(counts.values(), default=0) >= need:
                break
            ready, _, _ = select.select(list(pending), [], [], left)
            for sock in ready:
                server, qid = pending[sock]
                try:
                    results[server.text] = parse_response(sock.recv(4096), qid, qname)
                except (BlockingIOError, NotOurs):
                    continue  # keep waiting for the real answer
                except (OSError, Unusable):
                    pass  # no usable answer from this server this round
                del pending[sock]
                sock.close()
    finally:
        for sock in pending:
            sock.close()
    return results


def write_atomic(path: str, content: str) -> None:
    """Replace ``path`` by a file holding ``content`` (temp file in the same directory)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def haproxy_switch(sock_path: str, acl: str, fenced: bool) -> None:
    """Switch the ACL at run time through haproxy's admin socket; OSError on failure."""
    cmd = f"clear acl {acl}" + (f"; add acl {acl} 0.0.0.0/0" if fenced else "")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(ADMIN_TIMEOUT)
        sock.connect(sock_path)
        sock.sendall(cmd.encode() + b"\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    text = reply.decode("utf-8", "replace").strip()
    if text and not text.startswith("Done"):
        raise OSError(f"haproxy said: {text[:200]}")


def log(message: str) -> None:
    print(message, flush=True)  # stdout: journald


# -- The agent -----------------------------------------------------------------------------

class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.servers: list[Server] = args.server
        self.fenced = True  # "never confirmed"
        self.last_ok: float | None = None  # monotonic
        self.writer: str | None = None
        self.reason = "starting"
        self.since = time.time()
        self.started = False
        self.ready = False
        self.born = time.monotonic()
        self.applied: bool | None = None  # the state haproxy confirmed (None: unknown)
        self.asserted = -math.inf
        self.state_written = -math.inf
        self.error: str | None = None
        self.error_logged = -math.inf

    def step(self) -> None:
        """One round: ask, decide, apply, record."""
        start = time.monotonic()
        answers = query_all(self.servers, self.args.record, self.args.timeout)
        now = time.monotonic()
        d = decide(answers, self.args.region, fenced=self.fenced, last_ok=self.last_ok,
                   now=now, lease=self.args.lease)
        if d.renewed:
            self.last_ok = start  # the answers reflect the record no earlier than this
        if d.writer is not None:
            self.writer = d.writer
        if not self.started and not d.renewed and d.writer is None \
                and now - self.born < START_GRACE:
            return  # silence at start: ask again before the first decision
        self.reason = d.reason
        changed = d.fenced != self.fenced or not self.started
        if changed:
            log(("" if self.started else "start: ") + d.reason)
            self.fenced, self.since, self.started = d.fenced, time.time(), True
        first = changed and not self.ready
        self.apply(now)
        if changed or now - self.state_written >= REASSERT:
            self.write_state(now)
        if first:
            sd_notify("READY=1")
            self.ready = True

    def apply(self, now: float) -> None:
        if self.applied == self.fenced and now - self.asserted < REASSERT:
            return
        try:
            want = "0.0.0.0/0\n" if self.fenced else ""
            try:
                with open(self.args.acl) as fh:
                    current = fh.read()
            except FileNotFoundError:
                current = None
            if current != want:
                write_atomic(self.args.acl, want)
            haproxy_switch(self.args.socket, self.args.acl, self.fenced)
        except OSError as exc:
            self.applied = None  # retried next round
            error = f"applying {'fenced' if self.fenced else 'not fenced'} failed: {exc}"
            if error != self.error or now - self.error_logged >= REASSERT:
                log(error)
                self.error, self.error_logged = error, now
            return
        if self.error is not None:
            log(f"applied {'fenced' if self.fenced else 'not fenced'} (haproxy answers again)")
            self.error = None
        self.applied, self.asserted = self.fenced, now

    def write_state(self, now: float) -> None:
        wall = time.time()
        state = {
            "region": self.args.region,
            "fenced": self.fenced,
            "reason": self.reason,
            "writer": self.writer,
            "last_ok": None if self.last_ok is None else wall - (now - self.last_ok),
            "since": self.since,
            "lease": self.args.lease,
            "servers": [s.text for s in self.servers],
            "updated": wall,
        }
        try:
            os.makedirs(os.path.dirname(self.args.state) or ".", exist_ok=True)
            write_atomic(self.args.state, json.dumps(state, indent=1) + "\n")
        except OSError as exc:
            log(f"cannot write {self.args.state}: {exc}")
        self.state_written = now

    def run(self) -> None:
        while True:
            start = time.monotonic()
            try:
                self.step()
            except OSError as exc:  # never crash the loop on a network or socket error
                log(f"round failed: {exc}")
            time.sleep(max(0.0, start + self.args.interval - time.monotonic()))


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) ``message``; nothing when not run by systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log(f"cannot notify systemd: {exc}")


# -- Command line --------------------------------------------------------------------------

def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _server(text: str) -> Server:
    try:
        return parse_server(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _record(text: str) -> str:
    try:
        return normalize_name(text)
    except (ValueError, UnicodeError) as exc:
        raise argparse.ArgumentTypeError(f"bad record {text!r}: {exc}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hadeploy-lease.py",
        description="Keep haproxy's self-fence ACL on unless a majority of the authoritative "
                    "DNS servers name this region in the writer TXT record.")
    parser.add_argument("--server", action="append", type=_server, required=True,
                        metavar="ADDR:PORT",
                        help="authoritative server ADDR:PORT (repeat for several)")
    parser.add_argument("--record", type=_record, required=True,
                        metavar="FQDN",
                        help="the writer TXT record, e.g. _writer.app.example.com.")
    parser.add_argument("--region", required=True, metavar="NAME",
                        help="this load balancer's region")
    parser.add_argument("--lease", type=_positive, required=True, metavar="SECONDS",
                        help="seconds without confirmation before fencing")
    parser.add_argument("--interval", type=_positive, default=0.25, metavar="SECONDS",
                        help="seconds between rounds (default 0.25)")
    parser.add_argument("--timeout", type=_positive, default=MAX_TIMEOUT, metavar="SECONDS",
                        help=f"query timeout per round, at most {MAX_TIMEOUT} (default)")
    parser.add_argument("--acl", required=True, metavar="PATH", help="the self-fence ACL file")
    parser.add_argument("--socket", required=True, metavar="PATH", help="haproxy's admin socket")
    parser.add_argument("--state", default="/run/hadeploy/lease.json", metavar="PATH",
                        help="state file (JSON; default /run/hadeploy/lease.json)")
    args = parser.parse_args(argv)
    if args.timeout > MAX_TIMEOUT:
        parser.error(f"--timeout must be at most {MAX_TIMEOUT} s")
    region = args.region.strip()
    if not region or region == NO_WRITER or any(c.isspace() for c in region):
        parser.error(f"--region {args.region!r}: a region name (not '-', no spaces)")
    texts = [s.text for s in args.server]
    if len(set(texts)) != len(texts):
        parser.error("--server: the same server twice (it would count twice)")
    for option in ("acl", "socket", "state"):
        if not getattr(args, option).strip():
            parser.error(f"--{option} must not be empty")
    return args


def _terminate(signum: int, _frame: object) -> None:
    log(f"stopping ({signal.Signals(signum).name}); the ACL is left as it is")
    raise SystemExit(0)  # leave the ACL as it is


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    servers = ", ".join(s.text for s in args.server)
    log(f"lease agent for region {args.region}: TXT {args.record} from {servers}; "
        f"lease {args.lease:g} s, interval {args.interval:g} s, timeout {args.timeout:g} s")
    Agent(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
