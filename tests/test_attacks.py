"""A catalogue of named attacks on the server (issue 6), each a test.

One server process runs the whole module with short timeouts and small limits. Two sentinel
clients stay logged in all along. After every attack, each test checks what the server did (a
log line, the connection closed, a limit applied) and `intact` checks that the attack left
nothing behind: the sentinels still talk to each other, and the server's open file descriptors
(sockets and spool files alike) are back to the count they had before the attack.

Every malformed frame of spec/vectors/malformed.json that a client could send is also replayed
here against the live server.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import chatwire as cw
from tests.support import (
    Peer,
    ServerProcess,
    server_process,
    small_window_socket,
    spool_files,
    wait_until,
)
from tests.vectors import load

LIMITS = {"max_file_size": 1 << 20, "sendq": 256 << 10}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spool = tmp_path_factory.mktemp("spool")
    with server_process(
        "--spool-dir",
        str(spool),
        "--login-timeout",
        "1",
        "--stall-timeout",
        "1",
        "--write-timeout",
        "2",
        "--max-file-size",
        str(LIMITS["max_file_size"]),
        "--sendq",
        str(LIMITS["sendq"]),
        "--log-level",
        "info",
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


def logged(proc: ServerProcess, start: int, pattern: str) -> str:
    """A log line matching ``pattern`` written after line ``start``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in proc.log[start:]:
            if re.search(pattern, line):
                return line
        time.sleep(0.02)
    raise AssertionError(f"no log line matching {pattern!r}; last lines: {proc.log[-5:]}")


def attacker(proc: ServerProcess, nick: str | None = None) -> Peer:
    peer = Peer(proc.urls[0], timeout=10)
    if nick is not None:
        peer.send(cw.Login(nick=nick))
        peer.expect(cw.Accepted)
    else:
        peer.conn.send(cw.Login(nick=""))  # raw bytes follow; our side awaits ACC/NE
    return peer


# --- Every malformed frame a client can send ----------------------------------------------------

CLIENT_VECTORS = [
    v
    for v in load("malformed.json")["vectors"]
    if v["direction"] == "C→S" and v["state"] in ("LOGIN", "ACTIVE") and not v.get("eof")
]


@pytest.mark.parametrize("vector", CLIENT_VECTORS, ids=[v["id"] for v in CLIENT_VECTORS])
def test_malformed_frames_close_only_the_sender(
    vector, server: ServerProcess, intact: Sentinels
) -> None:
    start = len(server.log)
    peer = attacker(server, "mallory" if vector["state"] == "ACTIVE" else None)
    peer.send_raw(bytes.fromhex(vector["hex"]))
    if vector.get("reply") == "NE":
        assert peer.expect(cw.Refused) == cw.Refused()  # spec 6.3
    peer.expect_closed()
    line = logged(server, start, r"protocol error: .*\(spec ")
    assert f"(spec {vector['error']['section']})" in line
    peer.close()  # nothing of it was relayed: intact's check wants the sentinels' own next


# --- Sizes at and over every limit ---------------------------------------------------------------


def test_nick_sizes_at_and_over_the_limit(server: ServerProcess, intact: Sentinels) -> None:
    peer = attacker(server, "ninebytes")  # 9 bytes: accepted
    peer.send_raw(b"nick 10   tenbytes10")  # spec 2.7: over, malformed
    peer.expect_closed()


def test_text_at_and_over_the_limit(server: ServerProcess, intact: Sentinels) -> None:
    peer = attacker(server, "texter")
    peer.send(cw.Message(text="x" * cw.TEXT_MAX))
    skip_to(intact.bob, "texter", "x" * cw.TEXT_MAX)
    start = len(server.log)
    peer.send_raw(b"msg 10000 " + b"x" * 10000)
    peer.expect_closed()
    logged(server, start, r"text_size 10000 is out of range")
    intact.bob.nothing_for(0.2)  # spec 3.1.6: never truncated and relayed


def test_file_names_at_and_over_the_limit(server: ServerProcess, intact: Sentinels) -> None:
    peer = attacker(server, "namer")
    peer.send_file("n" * cw.NAME_MAX, b"ok")
    for sentinel in (intact.ana, intact.bob):
        assert sentinel.expect_file()[0].name == "n" * cw.NAME_MAX
    peer.send_raw(b"file 256  " + b"n" * 256 + b"2         ok")
    peer.expect_closed()


def test_file_sizes_at_and_over_the_server_limit(server: ServerProcess, intact: Sentinels) -> None:
    peer = attacker(server, "sizer")
    limit = LIMITS["max_file_size"]
    peer.send_file("max.bin", b"m" * limit)
    for sentinel in (intact.ana, intact.bob):
        assert sentinel.expect_file()[0].size == limit
    start = len(server.log)
    peer.send_raw(cw.encode(cw.File(name="over.bin", size=limit + 1)))
    peer.expect_closed()
    logged(server, start, r"exceeds this end's limit")


def test_a_ten_digit_file_size_with_no_body(server: ServerProcess, intact: Sentinels) -> None:
    start = len(server.log)
    peer = attacker(server, "tendigit")
    peer.send_raw(b"file 1    a9999999999")  # spec 2.7: FILE_MAX; the server's limit is far lower
    peer.expect_closed()
    logged(server, start, r"9999999999 bytes exceeds")
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
    peer.expect_closed()
    assert f"(spec {section})" in logged(server, start, r"protocol error")


# --- Slow and stalled clients -----------------------------------------------------------------


def test_logins_that_never_complete(server: ServerProcess, intact: Sentinels) -> None:
    # Slowloris: many connections that send a byte of a login and then nothing.
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
        peer.close()


def test_a_frame_that_stalls_half_way(server: ServerProcess, intact: Sentinels) -> None:
    start = len(server.log)
    peer = attacker(server, "staller")
    peer.send_raw(b"file 5    a.bin100       " + b"x" * 50)  # half a file, then silence
    peer.expect_closed(timeout=10)
    logged(server, start, r"frame stalled")
    intact.bob.nothing_for(0.1)


def test_a_client_that_never_reads_while_messages_and_files_pile_up(
    server: ServerProcess, intact: Sentinels
) -> None:
    start = len(server.log)
    sleeper = Peer(server.urls[0], sock=small_window_socket(server.urls[0]))
    sleeper.send(cw.Login(nick="sleeper"))
    sleeper.expect(cw.Accepted)
    talker = attacker(server, "piler")
    for _ in range(12):  # ~11 MB by reference: more than any kernel buffer holds
        talker.send_file("pile.bin", b"p" * 900_000)
        for sentinel in (intact.ana, intact.bob):
            sentinel.expect_file()
    for _ in range(100):
        talker.send(cw.Message(text="y" * 5000))
    for _ in range(100):
        intact.ana.expect(cw.MessageRelay)
        intact.bob.expect(cw.MessageRelay)
    line = logged(server, start, r"sleeper.*closing: (SendQ exceeded|not reading)")
    assert "sleeper" in line
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
    logged(server, start, r"flooder.*flood control: not reading")
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0])
    assert rss < 200 * 1024, f"server RSS {rss} KiB after a flood"
    flooder.close()
    marker.close()


def test_a_flood_of_connections(server: ServerProcess, intact: Sentinels) -> None:
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
        sock.close()


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
    peer = attacker(server, "namebad")
    peer.send_raw(b"file %-5d" % len(name) + name + b"1         x")
    peer.expect_closed()
    intact.bob.nothing_for(0.2)  # nobody ever sees such a name


@pytest.mark.parametrize("nick", ["\x1b[31mred", "a\x07", "\u202eevil", "a/b", "../x"])
def test_escape_sequences_and_paths_in_nicks(
    nick: str, server: ServerProcess, intact: Sentinels
) -> None:
    peer = Peer(server.urls[0], timeout=10)
    peer.send(cw.Login(nick=nick))
    assert peer.expect(cw.Refused) == cw.Refused()  # spec 2.8.3
    peer.expect_closed()
    changer = attacker(server, "changer")
    changer.send(cw.NickRequest(nick=nick))
    assert changer.expect(cw.Refused) == cw.Refused()
    changer.close()


def test_stats_on_sigusr1(server: ServerProcess) -> None:
    start = len(server.log)
    server.process.send_signal(signal.SIGUSR1)
    line = logged(server, start, r"stats: ")
    assert "internal_errors=0" in line
