"""A catalogue of named attacks on the server (issue 6), each a test.

One server process runs most of the module with short timeouts and small limits, listening on
TCP and TLS. Two sentinel clients stay logged in all along. After every attack, each test checks
what the server did (the log line that names the attacker's connection and the reason, the
connection closed, a limit applied) and `intact` checks that the attack left nothing behind: the
sentinels still talk to each other, and the server's open file descriptors (sockets and spool
files alike) are back to the count they had before the attack. Attacks that need other settings
(no flood control, to show the SendQ alone bounds memory) or that stop the server (SIGINT) get a
server of their own.

Every malformed frame of spec/vectors/malformed.json that a client could send is also replayed
here against the live server: the frames themselves, the truncated streams (the client's end of
the stream inside a frame), and the frames sent after ``quit`` (which the server never reads).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import chatwire as cw
from tests.support import (
    Peer,
    ServerProcess,
    log_port,
    memory_kib,
    server_process,
    small_window_socket,
    spool_files,
    wait_until,
)
from tests.vectors import load

LIMITS = {"max_file_size": 1 << 20, "sendq": 256 << 10}
TIMEOUTS = {"login": 1.0, "stall": 1.0, "handshake": 1.0}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A server certificate for 127.0.0.1 (its key in the same file)."""
    path = tmp_path_factory.mktemp("pki") / "server.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: str) -> Iterator[ServerProcess]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spool = tmp_path_factory.mktemp("spool")
    with server_process(
        "--spool-dir",
        str(spool),
        "--login-timeout",
        str(TIMEOUTS["login"]),
        "--stall-timeout",
        str(TIMEOUTS["stall"]),
        "--handshake-timeout",
        str(TIMEOUTS["handshake"]),
        # Long, so that only the SendQ can close the client that never reads.
        "--write-timeout",
        "30",
        "--max-file-size",
        str(LIMITS["max_file_size"]),
        "--sendq",
        str(LIMITS["sendq"]),
        "--log-level",
        "info",
        listen=["tcp://127.0.0.1:0", f"tls://127.0.0.1:0?cert={pki}"],
    ) as proc:
        yield proc


def skip_to(peer: Peer, sender: str, text: str, timeout: float = 10.0) -> None:
    """Read until the relay of ``text`` from ``sender`` (anything before it is skipped)."""
    while True:
        event = peer.next(timeout)
        if isinstance(event, cw.MessageRelay) and (event.sender, event.text) == (sender, text):
            return


class Sentinels:
    """Two clients logged in for the whole module, and the server's baseline."""

    def __init__(self, proc: ServerProcess) -> None:
        self.proc = proc
        url = proc.urls[0]
        self.ana = Peer.login(url, "sentana")
        self.bob = Peer.login(url, "sentbob")
        self.count = 0
        self.baseline = self.fds()

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.process.pid}/fd"))

    def spools(self) -> list[str]:
        """Spool files the server holds open (anonymous files in its spool directory)."""
        args = list(self.proc.process.args)  # type: ignore[arg-type]
        return spool_files(self.proc.process.pid, args[args.index("--spool-dir") + 1])

    def check(self) -> None:
        assert self.proc.process.poll() is None, "the server died"
        self.count += 1
        # Ping-pong: each sentinel skips ahead to the other's marker, draining whatever the
        # attacks legitimately relayed to it before.
        for speaker, listener, nick in (
            (self.ana, self.bob, "sentana"),
            (self.bob, self.ana, "sentbob"),
        ):
            speaker.send(cw.Message(text=f"still here {self.count}"))
            skip_to(listener, nick, f"still here {self.count}")
        self.bob.send(cw.ListRequest())
        assert sorted(self.bob.expect(cw.ListReply, timeout=10).nicks)[:2] == ["sentana", "sentbob"]
        wait_until(
            lambda: self.fds() == self.baseline, timeout=15, what="descriptors back to baseline"
        )
        assert self.spools() == []


@pytest.fixture(scope="module")
def sentinels(server: ServerProcess) -> Sentinels:
    return Sentinels(server)


@pytest.fixture
def intact(sentinels: Sentinels) -> Iterator[Sentinels]:
    """Check, after the test, that the attack left the others and the server untouched."""
    yield sentinels
    sentinels.check()


def logged(proc: ServerProcess, start: int, pattern: str, timeout: float = 10.0) -> str:
    """A log line matching ``pattern`` written after line ``start``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.log[start:]:
            if re.search(pattern, line):
                return line
        time.sleep(0.02)
    raise AssertionError(f"no log line matching {pattern!r}; last lines: {proc.log[-5:]}")


def departure(proc: ServerProcess, start: int, peer: Peer | socket.socket, pattern: str) -> str:
    """The one log line saying why the connection of ``peer`` was closed (it must match
    ``pattern``), written after line ``start``."""
    sock = peer.sock if isinstance(peer, Peer) else peer
    who = re.escape(log_port(sock))
    line = logged(proc, start, rf"{who}\b[^:]*: disconnected: ")
    assert re.search(pattern, line.split(": disconnected: ", 1)[1]), line
    lines = [x for x in proc.log[start:] if re.search(rf"{who}\b[^:]*: disconnected: ", x)]
    assert len(lines) == 1, f"one departure, one line: {lines}"
    return line


def attacker(proc: ServerProcess, nick: str | None = None) -> Peer:
    peer = Peer(proc.urls[0], timeout=10)
    if nick is not None:
        peer.send(cw.Login(nick=nick))
        peer.expect(cw.Accepted)
    else:
        peer.conn.send(cw.Login(nick=""))  # raw bytes follow; our side awaits ACC/NE
    return peer


def closed_within(peer: Peer, seconds: float) -> float:
    """Wait for the server to close ``peer``; returns how long it took, which must be under
    ``seconds`` (a refusal, not one of the server's time-outs)."""
    started = time.monotonic()
    peer.expect_closed(timeout=seconds + 5)
    took = time.monotonic() - started
    assert took < seconds, f"closed after {took:.2f} s: by a time-out, not refused"
    return took


# --- Every malformed frame a client can send ----------------------------------------------------

VECTORS = [v for v in load("malformed.json")["vectors"] if v["direction"] == "C→S"]
CLIENT_VECTORS = [v for v in VECTORS if v["state"] in ("LOGIN", "ACTIVE") and not v.get("eof")]
TRUNCATED_VECTORS = [v for v in VECTORS if v["state"] in ("LOGIN", "ACTIVE") and v.get("eof")]
AFTER_QUIT_VECTORS = [v for v in VECTORS if v["state"] == "QUIT"]


def test_every_client_vector_is_replayed() -> None:
    assert len(VECTORS) == len(CLIENT_VECTORS) + len(TRUNCATED_VECTORS) + len(AFTER_QUIT_VECTORS)


@pytest.mark.parametrize("vector", CLIENT_VECTORS, ids=[v["id"] for v in CLIENT_VECTORS])
def test_malformed_frames_close_only_the_sender(
    vector, server: ServerProcess, intact: Sentinels
) -> None:
    start = len(server.log)
    peer = attacker(server, "mallory" if vector["state"] == "ACTIVE" else None)
    peer.send_raw(bytes.fromhex(vector["hex"]))
    if vector.get("reply") == "NE":
        assert peer.expect(cw.Refused) == cw.Refused()  # spec 6.3
    closed_within(peer, TIMEOUTS["stall"])
    line = departure(server, start, peer, r"^protocol error: ")
    assert f"(spec {vector['error']['section']})" in line
    assert line.count("(spec ") == 1, f"the section is named once: {line}"
    peer.close()  # nothing of it was relayed: intact's check wants the sentinels' own next


@pytest.mark.parametrize("vector", TRUNCATED_VECTORS, ids=[v["id"] for v in TRUNCATED_VECTORS])
def test_streams_that_end_inside_a_frame_close_only_the_sender(
    vector, server: ServerProcess, intact: Sentinels
) -> None:
    # The client's end of the stream comes inside a frame (spec 6.5): truncated, malformed.
    start = len(server.log)
    peer = attacker(server, "truncer" if vector["state"] == "ACTIVE" else None)
    peer.send_raw(bytes.fromhex(vector["hex"]))
    peer.sock.shutdown(socket.SHUT_WR)
    if vector.get("reply") == "NE":
        assert peer.expect(cw.Refused) == cw.Refused()  # spec 6.3, as for any bad first frame
    closed_within(peer, TIMEOUTS["stall"])
    line = departure(server, start, peer, r"^(connection closed by the client inside a frame: )?pr")
    assert f"(spec {vector['error']['section']})" in line
    intact.bob.nothing_for(0.1)
    peer.close()


@pytest.mark.parametrize("vector", AFTER_QUIT_VECTORS, ids=[v["id"] for v in AFTER_QUIT_VECTORS])
def test_frames_after_quit_are_never_read(vector, server: ServerProcess, intact: Sentinels) -> None:
    # spec 3.1.5: after quit the server reads nothing more; what follows is neither relayed
    # nor even looked at (no protocol error: the departure is the quit).
    start = len(server.log)
    peer = attacker(server, "quitter")
    peer.send_raw(cw.encode(cw.Quit()) + bytes.fromhex(vector["hex"]))
    peer.expect_closed()
    departure(server, start, peer, r"^quit$")
    intact.bob.nothing_for(0.2)
    peer.close()


# --- Sizes at and over every limit: refused when the header arrives ----------------------------


def test_nick_sizes_at_and_over_the_limit(server: ServerProcess, intact: Sentinels) -> None:
    start = len(server.log)
    peer = attacker(server, "ninebytes")  # 9 bytes: accepted
    peer.send_raw(b"nick 10   ")  # spec 2.7: over; only the header: no payload is awaited
    closed_within(peer, TIMEOUTS["stall"])
    departure(server, start, peer, r"nick_size 10 is out of range 0\.\.9 \(spec 2\.7\)")


def test_text_at_and_over_the_limit(server: ServerProcess, intact: Sentinels) -> None:
    peer = attacker(server, "texter")
    peer.send(cw.Message(text="x" * cw.TEXT_MAX))
    skip_to(intact.bob, "texter", "x" * cw.TEXT_MAX)
    start = len(server.log)
    peer.send_raw(b"msg 10000 ")  # the header alone: refused before a payload byte is awaited
    closed_within(peer, TIMEOUTS["stall"])
    departure(server, start, peer, r"text_size 10000 is out of range")
    intact.bob.nothing_for(0.2)  # spec 3.1.6: never truncated and relayed


def test_file_names_at_and_over_the_limit(server: ServerProcess, intact: Sentinels) -> None:
    peer = attacker(server, "namer")
    peer.send_file("n" * cw.NAME_MAX, b"ok")
    for sentinel in (intact.ana, intact.bob):
        assert sentinel.expect_file()[0].name == "n" * cw.NAME_MAX
    start = len(server.log)
    peer.send_raw(b"file 256  ")  # the header alone
    closed_within(peer, TIMEOUTS["stall"])
    departure(server, start, peer, r"name_size 256 is out of range")


def test_file_sizes_at_and_over_the_server_limit(server: ServerProcess, intact: Sentinels) -> None:
    peer = attacker(server, "sizer")
    limit = LIMITS["max_file_size"]
    peer.send_file("max.bin", b"m" * limit)
    for sentinel in (intact.ana, intact.bob):
        assert sentinel.expect_file()[0].size == limit
    start = len(server.log)
    peer.send_raw(cw.encode(cw.File(name="over.bin", size=limit + 1)))
    closed_within(peer, TIMEOUTS["stall"])
    departure(server, start, peer, r"exceeds this end's limit")


def test_a_ten_digit_file_size_with_no_body(server: ServerProcess, intact: Sentinels) -> None:
    start = len(server.log)
    peer = attacker(server, "tendigit")
    peer.send_raw(b"file 1    a9999999999")  # spec 2.7: FILE_MAX; the server's limit is far lower
    closed_within(peer, TIMEOUTS["stall"])
    departure(server, start, peer, r"9999999999 bytes exceeds")
    intact.bob.nothing_for(0.2)


# --- Illegal frames and text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "data", "section"),
    [
        ("LOGIN", b"msg 2     hi", "4.3"),
        ("LOGIN", b"quit      ", "4.3"),
        ("ACTIVE", b"3         ana", "4.3"),  # a second login
        ("ACTIVE", b"ACC       ", "2.6"),  # a server's frame
        ("ACTIVE", b"msg 1 1   ab", "2.6"),  # a relay's header
        ("ACTIVE", b"msg 2     \xff\xfe", "2.8.2"),  # invalid UTF-8
        ("ACTIVE", b"nick 2    \xc3(", "2.8.2"),
    ],
)
def test_illegal_frames_per_state(
    state, data, section, server: ServerProcess, intact: Sentinels
) -> None:
    start = len(server.log)
    peer = attacker(server, "illegal" if state == "ACTIVE" else None)
    peer.send_raw(data)
    if state == "LOGIN":
        assert peer.expect(cw.Refused) == cw.Refused()
    closed_within(peer, TIMEOUTS["stall"])
    assert f"(spec {section})" in departure(server, start, peer, r"^protocol error: ")


# --- Slow and stalled clients -----------------------------------------------------------------


def test_logins_that_never_complete(server: ServerProcess, intact: Sentinels) -> None:
    # Slowloris: many connections that send a byte of a login and then nothing.
    start = len(server.log)
    peers = []
    for _ in range(200):
        peer = Peer(server.urls[0], timeout=10)
        peer.send_raw(b"3")
        peers.append(peer)
    intact.ana.send(cw.Message(text="during"))  # served while they wait
    assert intact.bob.expect(cw.MessageRelay).text == "during"
    for peer in peers:
        peer.sock.settimeout(10)
        assert peer.sock.recv(10) == b""  # closed by the login timeout (spec 7.2)
    for peer in peers:
        departure(server, start, peer, r"^no login within 1 s$")
        peer.close()


def test_tls_handshakes_that_never_complete(server: ServerProcess, intact: Sentinels) -> None:
    # Slowloris on the TLS listener: connections that never start the handshake, or stop
    # half way through a ClientHello. No session exists yet; the handshake time-out ends them.
    start = len(server.log)
    host, port = server.urls[1].removeprefix("tls://").rsplit(":", 1)
    socks = []
    for i in range(100):
        sock = socket.create_connection((host, int(port)), timeout=10)
        if i % 2:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # a record header and a byte of hello
        socks.append(sock)
    intact.ana.send(cw.Message(text="during the handshakes"))
    assert intact.bob.expect(cw.MessageRelay).text == "during the handshakes"
    started = time.monotonic()
    for sock in socks:
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
    assert time.monotonic() - started < TIMEOUTS["handshake"] + 5
    for sock in socks:
        logged(server, start, rf"{re.escape(log_port(sock))}: TLS handshake timed out after 1 s")
        sock.close()
    # and a real TLS client still gets in meanwhile
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"3         tls")
        assert tls.recv(10) == b"ACC       "


def test_a_frame_that_stalls_half_way(server: ServerProcess, intact: Sentinels) -> None:
    start = len(server.log)
    peer = attacker(server, "staller")
    peer.send_raw(b"file 5    a.bin100       " + b"x" * 50)  # half a file, then silence
    peer.expect_closed(timeout=10)
    departure(server, start, peer, r"^frame stalled for 1 s; file 'a\.bin' discarded \(50 of 100")
    intact.bob.nothing_for(0.1)


def test_a_client_that_never_reads_while_messages_and_files_pile_up(
    server: ServerProcess, intact: Sentinels
) -> None:
    # Files are queued by reference; what the SendQ counts is the messages that wait behind
    # them (frames never interleave, spec 5.1). The write time-out is 30 s here, so only the
    # SendQ can end this.
    start = len(server.log)
    sleeper = Peer(server.urls[0], sock=small_window_socket(server.urls[0]))
    sleeper.send(cw.Login(nick="sleeper"))
    sleeper.expect(cw.Accepted)
    talker = attacker(server, "piler")
    for _ in range(12):  # ~11 MB by reference: more than any kernel buffer holds
        talker.send_file("pile.bin", b"p" * 900_000)
        for sentinel in (intact.ana, intact.bob):
            sentinel.expect_file()
    for _ in range(100):  # 500 KB behind the files: over the 256 KiB SendQ
        talker.send(cw.Message(text="y" * 5000))
    for _ in range(100):
        intact.ana.expect(cw.MessageRelay)
        intact.bob.expect(cw.MessageRelay)
    line = departure(server, start, sleeper, r"^SendQ exceeded \(\d+ bytes and \d+ files queued")
    assert "WARNING" in line and f"limits {LIMITS['sendq']} bytes" in line
    sleeper.close()


# --- Floods --------------------------------------------------------------------------------------


def test_a_flood_of_messages_from_one_client(server: ServerProcess, intact: Sentinels) -> None:
    # Flood control: past its burst the flooder is read no faster than the flood rate, so the
    # others keep up, keep talking, and lose nothing.
    start = len(server.log)
    flooder = attacker(server, "flooder")
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                n = sent[0]
                flooder.send_raw(
                    b"".join(cw.encode(cw.Message(text=f"{i:08d}" * 100)) for i in range(n, n + 50))
                )
                sent[0] = n + 50

    received: dict[str, list[int]] = {"ana": [], "bob": []}
    heard: dict[str, float] = {}

    def read(name: str, peer: Peer) -> None:
        while True:
            event = peer.next(15)
            if isinstance(event, cw.MessageRelay) and event.sender == "flooder":
                received[name].append(int(event.text[:8]))
            elif isinstance(event, cw.MessageRelay) and event.text == "through the flood":
                heard[name] = time.monotonic()
            elif isinstance(event, cw.MessageRelay) and event.text == "flood over":
                return

    marker = attacker(server, "marker")
    threads = [threading.Thread(target=flood)] + [
        threading.Thread(target=read, args=(name, getattr(intact, name))) for name in ("ana", "bob")
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    said = time.monotonic()
    marker.send(cw.Message(text="through the flood"))
    time.sleep(1.0)
    stop.set()
    flooder.sock.shutdown(socket.SHUT_RDWR)
    threads[0].join(15)
    marker.send(cw.Message(text="flood over"))
    for thread in threads[1:]:
        thread.join(60)
    for name in ("ana", "bob"):
        assert heard[name] - said < 2.0, f"{name}: a message was held up by the flood"
        got = received[name]
        assert got == list(range(len(got))), (
            "the flooder's messages arrived out of order or with gaps"
        )
    assert received["ana"] == received["bob"]
    assert 0 < len(received["ana"]) < sent[0]  # throttled: far fewer than it tried to send
    logged(server, start, rf"{re.escape(log_port(flooder.sock))} \(flooder\): flood control: not")
    assert memory_kib(server.process.pid) < 200 * 1024, "server RSS after a flood"
    flooder.close()
    marker.close()


def test_pipelined_requests_are_answered_in_order(server: ServerProcess, intact: Sentinels) -> None:
    # Many requests in one write, relays arriving between them: one reply each, in order
    # (spec 5.2), within the flood burst and so at once.
    peer = attacker(server, "piper")
    requests: list[cw.Event] = []
    for i in range(60):
        requests += [
            cw.ListRequest(),
            cw.NickRequest(nick=f"piper{i % 3}"),
            cw.NickRequest(nick=""),
        ]
    peer.send_raw(b"".join(peer.conn.send(r) for r in requests))
    intact.ana.send(cw.Message(text="between the replies"))
    replies: list[cw.Event] = []
    relays = 0
    peer.send(cw.ListRequest())
    while len(replies) < len(requests) + 1:
        event = peer.next(10)
        if isinstance(event, cw.MessageRelay):
            relays += 1
        else:
            replies.append(event)
    for i in range(60):
        listed, renamed, refused = replies[3 * i : 3 * i + 3]
        assert isinstance(listed, cw.ListReply) and {"sentana", "sentbob"} <= set(listed.nicks)
        assert renamed == cw.NickChanged() and refused == cw.Refused()
    assert isinstance(replies[-1], cw.ListReply) and "piper2" in replies[-1].nicks
    if not relays:
        assert peer.expect(cw.MessageRelay).text == "between the replies"
    peer.close()


def test_a_flood_of_pipelined_requests_is_read_slowly(
    server: ServerProcess, intact: Sentinels
) -> None:
    # list and nick cost the server work as a message does: they spend flood tokens too. Past
    # the burst (200) they are read at the flood rate (50/s): 400 requests take seconds, and
    # every one is still answered, in order; the others are not held up meanwhile.
    start = len(server.log)
    peer = attacker(server, "lister")
    sent = time.monotonic()
    peer.send_raw(b"".join(peer.conn.send(cw.ListRequest()) for _ in range(400)))
    replies = 0

    def replied(timeout: float = 10.0) -> None:
        nonlocal replies
        while not isinstance(peer.next(timeout), cw.ListReply):
            pass  # the message relayed meanwhile
        replies += 1

    while replies < 200:
        replied()
    intact.ana.send(cw.Message(text="through the requests"))
    assert intact.bob.expect(cw.MessageRelay, timeout=2).text == "through the requests"
    while replies < 400:
        replied(15)
    assert time.monotonic() - sent > 2.0, "400 requests read at once: no flood control"
    logged(server, start, rf"{re.escape(log_port(peer.sock))} \(lister\): flood control: not")
    peer.close()


def test_a_flood_of_connections(server: ServerProcess, intact: Sentinels) -> None:
    start = len(server.log)
    peers = []
    for _ in range(2000):
        try:
            peers.append(
                socket.create_connection(
                    ("127.0.0.1", int(server.urls[0].rsplit(":", 1)[1])), timeout=10
                )
            )
        except OSError:
            break
    assert len(peers) == 2000
    intact.ana.send(cw.Message(text="amid 2000 idle connections"))
    assert intact.bob.expect(cw.MessageRelay).text == "amid 2000 idle connections"
    for sock in peers:
        sock.settimeout(10)
        assert sock.recv(10) == b""  # all closed by the login timeout
    wait_until(
        lambda: sum("disconnected: no login within 1 s" in x for x in server.log[start:]) >= 2000,
        what="one log line per connection",
    )
    for sock in peers:
        sock.close()


# --- Clients that never read what they ask for ------------------------------------------------


@pytest.fixture
def unthrottled() -> Iterator[ServerProcess]:
    """A server without flood control: only the SendQ stands between a client and memory."""
    with server_process("--flood-rate", "0", "--sendq", "256K", "--write-timeout", "60") as proc:
        yield proc


@pytest.mark.parametrize("request_", [cw.ListRequest(), cw.NickRequest(nick="asker")])
def test_requests_from_a_client_that_never_reads_the_replies(
    request_: cw.Event, unthrottled: ServerProcess
) -> None:
    # Replies are queued like relays and bounded by the same SendQ: a client that sends
    # requests and never reads the replies is closed once 256 KiB wait for it, and the server's
    # memory does not grow with what it asks for.
    url = unthrottled.urls[0]
    others = [Peer.login(url, f"member{i}") for i in range(3)]  # longer list replies
    asker = Peer(url, sock=small_window_socket(url))
    asker.send(cw.Login(nick="asker"))
    asker.expect(cw.Accepted)
    start = len(unthrottled.log)
    before = memory_kib(unthrottled.process.pid)
    frame = asker.conn.send(request_)
    burst = frame * 5000
    stop = time.monotonic() + 20
    with contextlib.suppress(OSError):  # the server closes it: our writes fail
        while time.monotonic() < stop:
            asker.sock.sendall(burst)
    departure(unthrottled, start, asker, r"^SendQ exceeded \(\d+ bytes and 0 files queued")
    growth = memory_kib(unthrottled.process.pid) - before
    assert growth < 32 * 1024, f"server RSS grew {growth} KiB"
    others[0].send(cw.Message(text="unaffected"))
    assert others[1].expect(cw.MessageRelay).text == "unaffected"
    asker.close()


# --- Hostile names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        b"../../.bashrc",
        b"/etc/passwd",
        b"a\\b",
        b"..",
        b"evil\x1b[2Jname",
        b"x\x07y",
        b"gpj\xe2\x80\xaeexe",
    ],
)
def test_path_traversal_and_escapes_in_file_names(
    name: bytes, server: ServerProcess, intact: Sentinels
) -> None:
    start = len(server.log)
    peer = attacker(server, "namebad")
    peer.send_raw(b"file %-5d" % len(name) + name + b"1         x")
    closed_within(peer, TIMEOUTS["stall"])
    departure(server, start, peer, r"^protocol error: .*\(spec 2\.8\.5\)")
    intact.bob.nothing_for(0.2)  # nobody ever sees such a name


@pytest.mark.parametrize("nick", ["\x1b[31mred", "a\x07", "\u202eevil", "a/b", "../x"])
def test_escape_sequences_and_paths_in_nicks(
    nick: str, server: ServerProcess, intact: Sentinels
) -> None:
    start = len(server.log)
    peer = Peer(server.urls[0], timeout=10)
    peer.send(cw.Login(nick=nick))
    assert peer.expect(cw.Refused) == cw.Refused()  # spec 2.8.3
    peer.expect_closed()
    line = departure(server, start, peer, r"^login as .* refused: a nick may hold only")
    assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line  # escaped: repr
    changer = attacker(server, "changer")
    changer.send(cw.NickRequest(nick=nick))
    assert changer.expect(cw.Refused) == cw.Refused()
    line = logged(server, start, rf"{re.escape(log_port(changer.sock))} \(changer\): nick change")
    assert "refused: a nick may hold only" in line and "\x1b" not in line and "\x07" not in line
    changer.close()


# --- The server stopped -------------------------------------------------------------------------


def test_sigint_drains_and_closes_cleanly(tmp_path: Path) -> None:
    # SIGINT (Ctrl-C at the operator's terminal) shuts down as SIGTERM does (spec 7.5).
    with server_process("--spool-dir", str(tmp_path), "--drain-timeout", "10") as proc:
        url = proc.urls[0]
        reader = Peer(url, sock=small_window_socket(url), timeout=20)
        reader.send(cw.Login(nick="reader"))
        reader.expect(cw.Accepted)
        ana = Peer.login(url, "ana")
        data = os.urandom(6 << 20)  # more than the socket buffers hold for a small window
        ana.send_file("big.bin", data)
        ana.send(cw.Message(text="after the file"))
        proc.wait_log(r"relayed file 'big\.bin'")
        proc.process.send_signal(signal.SIGINT)
        proc.wait_log(r"shutting down \(SIGINT\)")
        start, got = reader.expect_file(timeout=20)
        assert start.size == len(data) and got == data
        assert reader.expect(cw.MessageRelay).text == "after the file"
        reader.sock.settimeout(10)
        assert reader.sock.recv(10) == b""  # a clean end of stream, not a reset
        assert proc.process.wait(15) == 0
        assert list(tmp_path.iterdir()) == []


def test_stats_on_sigusr1(server: ServerProcess) -> None:
    start = len(server.log)
    server.process.send_signal(signal.SIGUSR1)
    line = logged(server, start, r"stats: ")
    assert "internal_errors=0" in line
