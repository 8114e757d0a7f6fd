"""The lease agent (roles/haproxy/files/hadeploy-lease.py): wire format, rule, and a real run.

The end-to-end tests run the agent as a subprocess on loopback against a dnspython UDP
server whose answer the test changes (or silences) and a fake haproxy admin socket.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from tests.conftest import REPO

SCRIPT = REPO / "roles" / "haproxy" / "files" / "hadeploy-lease.py"
_spec = importlib.util.spec_from_file_location("hadeploy_lease", SCRIPT)
assert _spec and _spec.loader
lease = importlib.util.module_from_spec(_spec)
sys.modules["hadeploy_lease"] = lease  # dataclasses look their module up there
_spec.loader.exec_module(lease)

RECORD = "_writer.app.hadeploy.test."


def respond(query: bytes, *values: str | None, rcode: int = dns.rcode.NOERROR,
            aa: bool = True, qid: int | None = None) -> bytes:
    """A dnspython-built answer to ``query``: one TXT rdata per value (a str is one string,
    a tuple several character-strings)."""
    msg = dns.message.from_wire(query)
    resp = dns.message.make_response(msg)
    resp.set_rcode(rcode)
    if aa:
        resp.flags |= dns.flags.AA
    if qid is not None:
        resp.id = qid
    texts = []
    for value in values:
        parts = value if isinstance(value, tuple) else (value,)
        texts.append(" ".join(f'"{p}"' for p in parts))
    if texts:
        resp.answer.append(dns.rrset.from_text_list(msg.question[0].name, 60, "IN", "TXT",
                                                    texts))
    return resp.to_wire()


# -- wire format ---------------------------------------------------------------------------

def test_query_is_a_txt_question_without_recursion():
    msg = dns.message.from_wire(lease.build_query("_Writer.App.hadeploy.test", 4242))
    assert msg.id == 4242
    assert not msg.flags & dns.flags.RD and not msg.flags & dns.flags.QR
    assert len(msg.question) == 1
    question = msg.question[0]
    assert question.name.to_text().lower() == RECORD
    assert (question.rdtype, question.rdclass) == (16, 1)


@pytest.mark.parametrize(("values", "expected"), [
    (("east",), "east"),
    ((("ea", "st"),), "east"),  # several character-strings: joined
    (("-",), "-"),
    ((), "-"),  # NOERROR, no answer: no writer
    (("",), "-"),
    (("east", "west"), "ambiguous(east,west)"),  # two writers: never this region alone
])
def test_parse_answers(values, expected):
    query = lease.build_query(RECORD, 7)
    assert lease.parse_response(respond(query, *values), 7, RECORD) == expected


def test_parse_follows_name_compression_and_ignores_other_records():
    query = lease.build_query(RECORD, 9)
    msg = dns.message.from_wire(query)
    resp = dns.message.make_response(msg)
    resp.flags |= dns.flags.AA
    resp.answer.append(dns.rrset.from_text(RECORD, 60, "IN", "TXT", '"west"'))
    resp.answer.append(dns.rrset.from_text("other.hadeploy.test.", 60, "IN", "TXT", '"east"'))
    resp.additional.append(dns.rrset.from_text("ns.hadeploy.test.", 60, "IN", "A", "10.0.0.1"))
    wire = resp.to_wire()  # dnspython compresses the answer's owner name into a pointer
    assert b"\xc0\x0c" in wire
    assert lease.parse_response(wire, 9, RECORD) == "west"


def test_nxdomain_is_no_writer():
    query = lease.build_query(RECORD, 11)
    wire = respond(query, rcode=dns.rcode.NXDOMAIN)
    assert lease.parse_response(wire, 11, RECORD) == "-"


@pytest.mark.parametrize("mutate", [
    lambda q: respond(q, "east", qid=13),  # wrong ID
    lambda q: respond(lease.build_query("_writer.other.test.", 12), "east"),  # wrong question
    lambda q: q,  # our own query (QR bit off)
    lambda q: b"\x00\x0c",  # too short
])
def test_datagrams_that_do_not_answer_our_query_are_ignored(mutate):
    query = lease.build_query(RECORD, 12)
    with pytest.raises(lease.NotOurs):
        lease.parse_response(mutate(query), 12, RECORD)


@pytest.mark.parametrize("wire", [
    lambda q: respond(q, rcode=dns.rcode.SERVFAIL),
    lambda q: respond(q, rcode=dns.rcode.REFUSED),
    lambda q: respond(q, "east", aa=False),  # not from the authority
    lambda q: respond(q, "east")[:-3],  # cut short
])
def test_unusable_answers(wire):
    query = lease.build_query(RECORD, 14)
    with pytest.raises(lease.Unusable):
        lease.parse_response(wire(query), 14, RECORD)


def test_truncated_answer_is_unusable():
    query = lease.build_query(RECORD, 15)
    resp = dns.message.make_response(dns.message.from_wire(query))
    resp.flags |= dns.flags.AA | dns.flags.TC
    with pytest.raises(lease.Unusable):
        lease.parse_response(resp.to_wire(), 15, RECORD)


@pytest.mark.parametrize(("text", "address"), [
    ("10.0.0.53:53", ("10.0.0.53", 53)),
    ("10.0.0.53", ("10.0.0.53", 53)),
    ("[::1]:5353", ("::1", 5353)),
])
def test_parse_server(text, address):
    assert lease.parse_server(text).address == address


@pytest.mark.parametrize("text", ["ns.example:53", "10.0.0.1:0", "10.0.0.1:x", "[::1", "1.2.3:53"])
def test_parse_server_rejects(text):
    with pytest.raises(ValueError):
        lease.parse_server(text)


# -- the rule ------------------------------------------------------------------------------

def decide(answers, *, fenced=False, last_ok=10.0, now=10.5, lease_s=1.0):
    return lease.decide(answers, "east", fenced=fenced, last_ok=last_ok, now=now, lease=lease_s)


def test_one_server_names_this_region_renews():
    d = decide({"a": "east"}, fenced=True)
    assert (d.fenced, d.renewed, d.writer) == (False, True, "east")
    assert d.reason == "lease renewed: a names east"


@pytest.mark.parametrize("value", ["west", "-", "ambiguous(east,west)"])
def test_one_server_names_something_else_fences_at_once(value):
    d = decide({"a": value}, last_ok=10.4)  # lease still fresh: fenced all the same
    assert (d.fenced, d.renewed, d.writer) == (True, False, value)
    assert d.reason.endswith(": fenced")
    assert ("writer is west" in d.reason) == (value == "west")
    assert ("no writer" in d.reason) == (value == "-")


def test_silence_keeps_the_state_until_the_lease_expires():
    for fenced in (False, True):
        d = decide({"a": None}, fenced=fenced, last_ok=10.0, now=10.9)
        assert (d.fenced, d.renewed) == (fenced, False)
        assert d.reason.startswith("lease held")
    d = decide({"a": None}, fenced=False, last_ok=10.0, now=11.3)
    assert (d.fenced, d.renewed) == (True, False)
    assert d.reason == "lease lost: no answer from a majority of 1 server(s) for 1.3 s: fenced"


def test_never_confirmed_is_fenced():
    d = decide({"a": None}, fenced=False, last_ok=None)
    assert d.fenced and not d.renewed and d.reason.startswith("no lease yet")


@pytest.mark.parametrize(("answers", "outcome"), [
    ({"a": "east", "b": "east", "c": "east"}, "renewed"),
    ({"a": "east", "b": "east", "c": None}, "renewed"),  # 2 of 3 is a majority
    ({"a": "east", "b": "east", "c": "west"}, "renewed"),
    ({"a": "east", "b": "west", "c": "-"}, "fenced"),  # a majority names something else
    ({"a": "west", "b": "west", "c": None}, "fenced"),
    ({"a": "-", "b": None, "c": "west"}, "fenced"),
    ({"a": "east", "b": None, "c": None}, "lease"),  # no majority answered
    ({"a": None, "b": None, "c": None}, "lease"),
    ({"a": "east", "b": "west", "c": None}, "lease"),  # answered, but split
])
def test_majority_of_three(answers, outcome):
    for fresh in (True, False):
        d = decide(answers, fenced=False, last_ok=10.0, now=10.5 if fresh else 11.5)
        if outcome == "renewed":
            assert (d.fenced, d.renewed, d.writer) == (False, True, "east")
        elif outcome == "fenced":
            assert (d.fenced, d.renewed) == (True, False)
            assert d.writer in (None, "west", "-")
        else:
            assert (d.fenced, d.renewed) == (not fresh, False)


def test_writer_is_the_majority_value_only():
    assert decide({"a": "west", "b": "west", "c": "-"}).writer == "west"
    assert decide({"a": "west", "b": "-", "c": "east"}).writer is None
    assert "writer is west" in decide({"a": "west", "b": "west", "c": "-"}).reason


def test_renewal_names_every_confirming_server():
    d = decide({"a": "east", "b": "east", "c": None})
    assert d.reason == "lease renewed: a, b name east"


# -- a real run ----------------------------------------------------------------------------

class FakeDNS:
    """A UDP authoritative server for RECORD on loopback (dnspython); ``value`` None:
    NXDOMAIN; ``silent``: no answer at all."""

    def __init__(self) -> None:
        self.value: str | None = "-"
        self.silent = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if self.silent:
                continue
            value = self.value
            if value is None:
                wire = respond(data, rcode=dns.rcode.NXDOMAIN)
            else:
                wire = respond(data, value)
            self.sock.sendto(wire, peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


class FakeAdmin:
    """haproxy's admin socket: records each command line, answers nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commands: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.commands.append(data.decode().strip())

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_query_all_asks_in_parallel_and_stops_at_a_majority():
    servers = [FakeDNS() for _ in range(3)]
    try:
        servers[0].value, servers[1].value, servers[2].silent = "east", "east", True
        parsed = [lease.parse_server(s.address) for s in servers]
        start = time.monotonic()
        answers = lease.query_all(parsed, RECORD, 0.5)
        assert time.monotonic() - start < 0.4  # the silent one is not waited for
        assert answers == {servers[0].address: "east", servers[1].address: "east",
                           servers[2].address: None}
        servers[1].value = None  # NXDOMAIN: split answers, the round waits for the third
        start = time.monotonic()
        answers = lease.query_all(parsed, RECORD, 0.3)
        assert time.monotonic() - start >= 0.29
        assert list(answers.values()) == ["east", "-", None]
    finally:
        for server in servers:
            server.close()


def wait_for(predicate, timeout: float, what: str) -> float:
    """Poll until ``predicate()``; the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.fixture
def dns_server():
    server = FakeDNS()
    yield server
    server.close()


@pytest.fixture
def admin(tmp_path: Path):
    fake = FakeAdmin(tmp_path / "admin.sock")
    yield fake
    fake.close()


def start_agent(tmp_path: Path, server: str, sock: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--server", server, "--record", RECORD,
         "--region", "east", "--lease", "1", "--interval", "0.1",
         "--acl", str(tmp_path / "selffenced.acl"), "--socket", str(sock),
         "--state", str(tmp_path / "run" / "lease.json"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_agent(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out + err


# interval + timeout (0.1 + 0.5), with room for a loaded machine
HEARD_BOUND = 0.6 + 0.9
# lease + interval + timeout (1 + 0.1 + 0.5), same room
SILENT_BOUND = 1.6 + 0.9


def test_agent_follows_the_record(tmp_path: Path, dns_server: FakeDNS, admin: FakeAdmin):
    acl, state_file = tmp_path / "selffenced.acl", tmp_path / "run" / "lease.json"
    acl.write_text("")
    dns_server.value = "-"
    proc = start_agent(tmp_path, dns_server.address, admin.path)
    try:
        def state() -> dict:
            return read_state(state_file) or {}

        # starts fenced: no writer
        wait_for(lambda: state().get("fenced") is True, 3, "fenced at start")
        assert acl.read_text() == "0.0.0.0/0\n"
        wait_for(lambda: admin.commands, 2, "an admin command")
        assert admin.commands[0] == f"clear acl {acl}; add acl {acl} 0.0.0.0/0"
        first = state()
        assert first["region"] == "east" and first["writer"] == "-"
        assert first["last_ok"] is None and first["lease"] == 1.0
        assert first["servers"] == [dns_server.address]

        # the record names this region: the fence lifts
        dns_server.value = "east"
        wait_for(lambda: state().get("fenced") is False, HEARD_BOUND, "lifted")
        assert acl.read_text() == ""
        wait_for(lambda: admin.commands[-1] == f"clear acl {acl}", 1, "clear acl")
        lifted = state()
        assert lifted["writer"] == "east" and lifted["last_ok"] is not None
        assert lifted["reason"] == f"lease renewed: {dns_server.address} names east"

        # another region takes writes: fenced within interval + timeout
        dns_server.value = "west"
        took = wait_for(lambda: acl.read_text() == "0.0.0.0/0\n", HEARD_BOUND, "writer west")
        assert took < HEARD_BOUND
        wait_for(lambda: state().get("fenced") is True, 1, "state says fenced")
        assert state()["reason"] == "writer is west: fenced"
        assert admin.commands[-1] == f"clear acl {acl}; add acl {acl} 0.0.0.0/0"

        # back; then the server stops answering: fenced only once the lease is over
        dns_server.value = "east"
        wait_for(lambda: state().get("fenced") is False, HEARD_BOUND, "lifted again")
        wait_for(lambda: state().get("reason", "").startswith("lease renewed"), 1, "renewed")
        dns_server.silent = True
        silent_at = time.monotonic()
        time.sleep(0.5)
        assert state()["fenced"] is False and acl.read_text() == ""
        wait_for(lambda: acl.read_text() == "0.0.0.0/0\n", SILENT_BOUND, "lease lost")
        took = time.monotonic() - silent_at
        assert 0.9 <= took < SILENT_BOUND
        wait_for(lambda: state().get("fenced") is True, 1, "state says fenced")
        assert state()["reason"].startswith(
            "lease lost: no answer from a majority of 1 server(s) for ")

        # answers return: lifted again
        dns_server.silent = False
        wait_for(lambda: acl.read_text() == "", HEARD_BOUND, "lifted after silence")
        assert proc.poll() is None
    finally:
        rc, output = stop_agent(proc)
    assert rc == 0, output
    assert acl.read_text() == ""  # SIGTERM leaves the ACL as it is
    assert "writer is west: fenced" in output
    assert "lease lost: no answer from a majority of 1 server(s)" in output


def test_agent_survives_a_missing_admin_socket(tmp_path: Path, dns_server: FakeDNS):
    acl, state_file = tmp_path / "selffenced.acl", tmp_path / "run" / "lease.json"
    dns_server.value = "east"
    proc = start_agent(tmp_path, dns_server.address, tmp_path / "no-such.sock")
    try:
        wait_for(lambda: (read_state(state_file) or {}).get("fenced") is False, 3, "lifted")
        wait_for(lambda: acl.exists() and acl.read_text() == "", 1, "ACL written anyway")
        dns_server.value = "west"
        wait_for(lambda: acl.read_text() == "0.0.0.0/0\n", HEARD_BOUND, "fenced")
        assert proc.poll() is None
    finally:
        rc, output = stop_agent(proc)
    assert rc == 0, output
    assert "applying not fenced failed" in output  # logged, and the loop went on


@pytest.mark.parametrize("bad", [
    ["--server", "ns.example:53"],
    ["--server", "127.0.0.1:99999"],
    ["--timeout", "2"],
    ["--lease", "0"],
    ["--region", "-"],
])
def test_bad_arguments_exit_2(tmp_path: Path, bad: list[str]):
    args = {"--server": "127.0.0.1:53", "--record": RECORD, "--region": "east",
            "--lease": "1", "--acl": str(tmp_path / "a"), "--socket": str(tmp_path / "s")}
    args[bad[0]] = bad[1]
    argv = [item for pair in args.items() for item in pair]
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True,
                          timeout=10, check=False)
    assert proc.returncode == 2
    assert bad[0] in proc.stderr
    assert not (tmp_path / "a").exists()


def notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(6)
    return sock


def test_the_agent_is_ready_after_its_first_decision_and_waits_out_silence_at_start(
        tmp_path: Path, dns_server: FakeDNS, admin: FakeAdmin, monkeypatch):
    """Type=notify: READY=1 once the first decision is applied (haproxy starts after it).
    A server silent at start is asked again for up to 3 s before the agent decides: the
    ACL stays as it was (a rebooted load balancer does not refuse writes because its first
    query found no network), then it fences."""
    acl = tmp_path / "selffenced.acl"
    acl.write_text("")
    ready = notify_socket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    dns_server.value = "east"
    proc = start_agent(tmp_path, dns_server.address, admin.path)
    try:
        assert ready.recv(64) == b"READY=1"
        assert acl.read_text() == "" and (read_state(tmp_path / "run" / "lease.json")
                                          or {}).get("fenced") is False
    finally:
        rc, output = stop_agent(proc)
    assert rc == 0, output
    # silent at start
    dns_server.silent = True
    started = time.monotonic()
    proc = start_agent(tmp_path, dns_server.address, admin.path)
    try:
        time.sleep(1.5)
        assert acl.read_text() == "", "no decision during the start grace"
        assert ready.recv(64) == b"READY=1"
        assert 2.8 <= time.monotonic() - started < 6
        wait_for(lambda: acl.read_text() == "0.0.0.0/0\n", 1, "fenced after the grace")
    finally:
        rc, output = stop_agent(proc)
        ready.close()
    assert rc == 0, output
