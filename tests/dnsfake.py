"""A small authoritative DNS server for unit tests (dnspython): UDP and TCP on loopback,
TSIG-verified RFC 2136 updates with prerequisites, and knotd's serial rule — an update
that carries an SOA with a greater serial takes it, any other change increments it.

It can be made silent (``down``: a server that is gone) and keeps every update it
applied, so tests can tell which server had which change.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from typing import Any

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring


class FakeAuthority:
    def __init__(self, zone: str, key: Any = None, serial: int = 1) -> None:
        self.origin = dns.name.from_text(zone)
        self.keyring = (dns.tsigkeyring.from_text({key.name: key.secret})
                        if key is not None else None)
        self.rrsets: dict[tuple[dns.name.Name, int], dns.rdataset.Rdataset] = {}
        self.set(f"{zone}.", "SOA", 300, f"ns-a.{zone}. hostmaster.{zone}. {serial} 3600 "
                                         "600 86400 5")
        self.down = False
        self.updates: list[int] = []  # the serial after each applied update
        self.lock = threading.Lock()
        owner = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                out = owner.answer(data)
                if out is not None:
                    sock.sendto(out, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                head = self.request.recv(2)
                if len(head) < 2:
                    return
                (size,) = struct.unpack("!H", head)
                data = b""
                while len(data) < size:
                    chunk = self.request.recv(size - len(data))
                    if not chunk:
                        return
                    data += chunk
                out = owner.answer(data)
                if out is not None:
                    self.request.sendall(struct.pack("!H", len(out)) + out)

        self.udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        port = self.udp.server_address[1]
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
        self.port = port
        for server in (self.udp, self.tcp):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    # -- the zone --------------------------------------------------------------------------

    def set(self, name: str, rdtype: str, ttl: int, *values: str) -> None:
        owner = dns.name.from_text(name, self.origin)
        rds = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
        for v in values:
            rds.add(dns.rdata.from_text(dns.rdataclass.IN, rds.rdtype, v, self.origin,
                                        relativize=False), ttl)
        self.rrsets[(owner, rds.rdtype)] = rds

    @property
    def serial(self) -> int:
        return int(self.rrsets[(self.origin, dns.rdatatype.SOA)][0].serial)

    def get(self, name: str, rdtype: str) -> list[str]:
        rds = self.rrsets.get((dns.name.from_text(name, self.origin),
                               dns.rdatatype.from_text(rdtype)))
        return sorted(r.to_text() for r in rds) if rds else []

    # -- the protocol ----------------------------------------------------------------------

    def answer(self, wire: bytes) -> bytes | None:
        if self.down:
            return None
        try:
            msg = dns.message.from_wire(wire, keyring=self.keyring)
        except Exception:
            return None
        resp = dns.message.make_response(msg)
        resp.flags |= 0x0400  # AA
        with self.lock:
            if msg.opcode() == dns.opcode.UPDATE:
                resp.set_rcode(self._update(msg))
            else:
                q = msg.question[0]
                rds = self.rrsets.get((q.name, q.rdtype))
                if rds is not None:
                    rrset = dns.rrset.RRset(q.name, rds.rdclass, rds.rdtype)
                    rrset.update(rds)
                    resp.answer.append(rrset)
                elif not any(n == q.name for n, _ in self.rrsets):
                    resp.set_rcode(dns.rcode.NXDOMAIN)
        return resp.to_wire()

    def _update(self, msg: Any) -> int:
        if self.keyring is not None and not msg.had_tsig:
            return dns.rcode.REFUSED
        for rrset in msg.prerequisite:  # value-dependent "RRset exists" only
            have = self.rrsets.get((rrset.name, rrset.rdtype))
            want = dns.rdataset.Rdataset(rrset.rdclass, rrset.rdtype)
            want.update(rrset)
            if have is None or set(have) != set(want):
                return dns.rcode.NXRRSET
        soa_key = (self.origin, dns.rdatatype.SOA)
        old = self.serial
        new_serial = None
        replaced: set[tuple[Any, int]] = set()
        for rrset in msg.update:
            key = (rrset.name, rrset.rdtype)
            if rrset.deleting is not None:  # delete the set (never the SOA)
                if key != soa_key:
                    self.rrsets.pop(key, None)
                continue
            if key == soa_key:
                new_serial = int(rrset[0].serial)
                continue
            if key not in replaced:
                self.rrsets[key] = dns.rdataset.Rdataset(rrset.rdclass, rrset.rdtype)
                replaced.add(key)
            self.rrsets[key].update(rrset)
            self.rrsets[key].update_ttl(rrset.ttl)
        serial = new_serial if new_serial is not None and new_serial > old else old + 1
        soa = self.rrsets[soa_key]
        self.rrsets[soa_key] = dns.rdataset.from_rdata(soa.ttl, soa[0].replace(serial=serial))
        self.updates.append(serial)
        return dns.rcode.NOERROR

    def close(self) -> None:
        for server in (self.udp, self.tcp):
            server.shutdown()
            server.server_close()


def free_silent_port() -> int:
    """A loopback port nobody answers on (UDP: no reply; TCP: refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
