"""Live-server fuzz campaign (issue 6): hypothesis byte streams over real sockets.

Each example opens one to four hostile connections at once and sends each a generated stream:
arbitrary bytes, a valid client conversation, or a valid one mutated (bytes flipped, inserted,
deleted) or followed by junk, cut into arbitrary chunks and interleaved between the connections.

What the server must do with each stream is predicted by a server-role chatwire `Connection`
fed the same bytes (the model), and each connection's output is read and checked against it,
before the test closes anything:

- a login is answered ``ACC`` or ``NE`` as spec 3.1.1 decides (valid and free nick), every
  ``list`` with a list naming the sentinels and the requester, every ``nick`` with ``NC`` or
  ``NE`` as spec 3.1.3 decides; where two connections of the example want equal nicks, either
  answer is right, and the model follows the one given;
- a stream the model finds malformed is closed by the server (``NE`` first before login); one
  that ends inside a frame is closed once the test ends its side; a quit is closed;
- a stream that is complete and valid is *not* closed: it still answers a probe ``list``;
- the two sentinel clients logged in all along receive exactly the messages and files that
  the model says the server accepted (each connection's in its order), and still talk;
- after every example: only the sentinels are connected, the server caught no internal error,
  and the process's open descriptors and the spool files are back to the baseline.

CI runs a bounded number of examples. The long campaign is the same test with more:

    CHATWIRE_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz_live.py -q \\
        -p no:timeout

(figures in docs/reliability.md).
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatwire as cw
from chatserver import Server
from tests.strategies import chunked, client_streams, valid_nicks
from tests.support import Peer, open_fds, running_server, spool_files, wait_until
from tests.test_connection import mutated

EXAMPLES = int(os.environ.get("CHATWIRE_FUZZ_EXAMPLES", "150"))
MAX_FILE = 1 << 20  # the live server's file limit, so the model's too
SENTINELS = ("sentana", "sentbob")
# Sentinel nicks are taken; any reply or relay that the test waits for comes within this.
TIMEOUT = 10.0
#: How the hostile connections of the campaign ended, and what was checked on the way
#: (printed at the end of the module: run with -s to see it).
OUTCOMES: collections.Counter[str] = collections.Counter()


@dataclass
class Live:
    server: Server
    ana: Peer
    bob: Peer
    spool: Path
    baseline: int
    count: int = 0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    spool = tmp_path_factory.mktemp("spool")
    # Time-outs far longer than a case: every close the test sees is the server's answer to
    # what was sent, never a time-out's.
    with running_server(
        login_timeout=60,
        stall_timeout=60,
        max_file_size=MAX_FILE,
        spool_limit=64 << 20,
        spool_dir=str(spool),
    ) as server:
        url = server.urls[0]
        ana, bob = Peer.login(url, SENTINELS[0]), Peer.login(url, SENTINELS[1])
        yield Live(server, ana, bob, spool, open_fds())
    print("\nlive fuzz campaign:", ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())))


@st.composite
def conversation(draw: st.DrawFn) -> bytes:
    """A valid client stream (tests.strategies.client_streams) whose nicks are mostly valid,
    so that most logins are accepted and what follows them is exercised."""
    mostly = st.integers(0, 4).map(bool)
    # Now and then a sentinel's nick in another case: taken (spec 2.8.4), so NE.
    taken = st.sampled_from(["sentana", "SentBob", "SENTANA"])
    nicks = st.one_of(valid_nicks, valid_nicks, valid_nicks, valid_nicks, taken)
    conn = cw.Connection(cw.Role.CLIENT)
    data = bytearray()
    for drawn in draw(client_streams()).events:
        event = drawn
        if isinstance(drawn, cw.Login) and draw(mostly):
            event = cw.Login(nick=draw(nicks))
        elif isinstance(drawn, cw.NickRequest) and draw(mostly):
            event = cw.NickRequest(nick=draw(nicks))
        data += conn.send(event)
        if isinstance(event, cw.Login):
            conn.receive_data(b"ACC       ")
            assert conn.next_event() == cw.Accepted()
    return bytes(data)


@st.composite
def hostile_stream(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "valid", "mutated", "valid-then-junk"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=2000))
    stream = draw(conversation())
    if kind == "mutated":
        return draw(mutated(stream[:20_000]))
    if kind == "valid-then-junk":
        return stream + draw(st.binary(min_size=1, max_size=50))
    return stream


# --- The model --------------------------------------------------------------------------------


def wanted_nicks(stream: bytes) -> set[str]:
    """The keys of every nick ``stream`` asks for (login and nick requests), as far as it is
    well formed, supposing every login accepted."""
    model = cw.Connection(cw.Role.SERVER, max_file_size=MAX_FILE)
    model.receive_data(stream)
    keys: set[str] = set()
    with contextlib.suppress(cw.RemoteProtocolError):
        while True:
            event = model.next_event()
            if event is cw.PAUSED:
                model.send(cw.Accepted())
            elif event is cw.NEED_DATA or isinstance(event, cw.Quit):
                break
            elif isinstance(event, cw.Login | cw.NickRequest):
                keys.add(cw.nick_key(event.nick))
    return keys


Relay = tuple[str, ...] | tuple[str, str, str, bytes]


@dataclass
class Hostile:
    """One hostile connection: its socket, its stream, and what the server owes it."""

    sock: socket.socket
    stream: bytes
    contested: set[str]  # nick keys another connection of the example asks for too
    out: cw.Connection = field(default_factory=lambda: cw.Connection(cw.Role.CLIENT))
    nick: str | None = None
    relays: list[Relay] = field(default_factory=list)  # what the sentinels must receive

    def event(self) -> cw.Event:
        """The next event the server sent it (``ConnectionClosed`` at the end, a reset
        included: the server may discard unread input when it closes)."""
        while True:
            try:
                event = self.out.next_event()
            except cw.RemoteProtocolError as exc:  # a close cut a relay short
                assert exc.section == "6.5", f"the server sent a malformed frame: {exc}"
                return cw.ConnectionClosed()
            if event is not cw.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                data = b""
            except TimeoutError:
                raise AssertionError(f"the server said nothing for {TIMEOUT} s") from None
            self.out.receive_data(data)

    def reply(self, allow_close: bool = False) -> cw.Event | None:
        """The next reply (relays and notices skipped), or None if the server closed."""
        while True:
            event = self.event()
            if isinstance(event, cw.Accepted | cw.Refused | cw.NickChanged | cw.ListReply):
                return event
            if isinstance(event, cw.ConnectionClosed):
                assert allow_close, "the server closed a connection that broke no rule"
                return None

    def closed(self) -> None:
        """The server closes it (whatever it sent before)."""
        while not isinstance(self.event(), cw.ConnectionClosed):
            pass

    def expected_answer(self, nick: str, *, login: bool) -> set[type[cw.Event]]:
        # spec 3.1.1 and 3.1.3: a valid nick no other holds is accepted, any other refused.
        yes = cw.Accepted if login else cw.NickChanged
        key = cw.nick_key(nick)
        if cw.nick_error(nick) is not None or key in {cw.nick_key(s) for s in SENTINELS}:
            return {cw.Refused}
        if not login and self.nick is not None and key == cw.nick_key(self.nick):
            return {yes}
        if key in self.contested:
            return {yes, cw.Refused}
        return {yes}

    def check(self) -> None:
        """Walk the stream with the model, checking each answer as it comes."""
        model = cw.Connection(cw.Role.SERVER, max_file_size=MAX_FILE)
        model.receive_data(self.stream)
        quit_later = b"quit      " in self.stream  # the server may drop replies after quit
        file: list[object] = []
        try:
            while True:
                event = model.next_event()
                if event is cw.NEED_DATA:
                    if model.buffered or model.receiving_file:  # ends inside a frame (6.5)
                        OUTCOMES["ends inside a frame"] += 1
                        self.sock.shutdown(socket.SHUT_WR)
                        model.receive_data(b"")
                        continue
                    self.probe()
                    OUTCOMES["valid, open: probe answered"] += 1
                    return
                assert event is not cw.PAUSED
                self.out.send(event)  # so that our decoder expects the replies
                if isinstance(event, cw.Login):
                    answer = self.reply(allow_close=quit_later)
                    assert type(answer) in self.expected_answer(event.nick, login=True), (
                        f"{answer} to a login as {event.nick!r}"
                    )
                    model.send(answer)  # type: ignore[arg-type]
                    OUTCOMES[f"login answered {answer}"] += 1
                    if isinstance(answer, cw.Refused):
                        self.closed()  # spec 3.1.1: NE, then the end
                        return
                    self.nick = event.nick
                elif isinstance(event, cw.NickRequest):
                    answer = self.reply(allow_close=quit_later)
                    if answer is None:
                        return
                    assert type(answer) in self.expected_answer(event.nick, login=False), (
                        f"{answer} to a nick request for {event.nick!r} by {self.nick!r}"
                    )
                    OUTCOMES[f"nick answered {answer}"] += 1
                    if isinstance(answer, cw.NickChanged):
                        self.nick = event.nick
                elif isinstance(event, cw.ListRequest):
                    answer = self.reply(allow_close=quit_later)
                    if answer is None:
                        return
                    assert isinstance(answer, cw.ListReply), answer
                    listed = {cw.nick_key(n) for n in answer.nicks}
                    assert len(listed) == len(answer.nicks), f"a nick listed twice: {answer}"
                    assert {cw.nick_key(n) for n in (*SENTINELS, self.nick or "")} <= listed
                    OUTCOMES["list answered"] += 1
                elif isinstance(event, cw.Message):
                    self.relays.append(("msg", self.nick or "", event.text))
                elif isinstance(event, cw.File):
                    file = [event.name, b""]
                elif isinstance(event, cw.FileData):
                    file[1] += bytes(event.data)  # type: ignore[operator]
                elif isinstance(event, cw.FileEnd):
                    self.relays.append(("file", self.nick or "", file[0], file[1]))  # type: ignore[arg-type]
                elif isinstance(event, cw.Quit):
                    self.closed()  # spec 3.1.5: no reply, the end
                    OUTCOMES["quit: closed"] += 1
                    return
        except cw.RemoteProtocolError as exc:
            # Malformed (spec 6.1): the server closes this connection, with NE before login.
            OUTCOMES[f"malformed (spec {exc.section}): closed"] += 1
            if exc.reply is not None:
                if self.out.state is cw.State.LOGIN:  # no whole login: our decoder awaits NE
                    self.out.send(cw.Login(nick=""))
                assert self.reply(allow_close=False) == cw.Refused(), f"no NE before {exc}"
            self.closed()

    def probe(self) -> None:
        """A complete, valid stream: the connection must still be open and answering."""
        assert self.nick is not None
        self.sock.sendall(self.out.send(cw.ListRequest()))
        answer = self.reply()
        assert isinstance(answer, cw.ListReply) and self.nick in answer.nicks, answer
        self.sock.shutdown(socket.SHUT_WR)  # a clean end at a frame boundary
        self.closed()


def relays_until(peer: Peer, marker: tuple[str, str]) -> list[Relay]:
    """The relays ``peer`` receives before the message ``marker`` (sender, text)."""
    got: list[Relay] = []
    while True:
        event = peer.next(TIMEOUT)
        if isinstance(event, cw.MessageRelay):
            if (event.sender, event.text) == marker:
                return got
            got.append(("msg", event.sender, event.text))
        elif isinstance(event, cw.FileRelay):
            data = b""
            part = peer.next(TIMEOUT)
            if isinstance(part, cw.FileData):
                data = bytes(part.data)
                part = peer.next(TIMEOUT)
            assert isinstance(part, cw.FileEnd)
            got.append(("file", event.sender, event.name, data))


def is_subsequence(items: list[Relay], of: list[Relay]) -> bool:
    it = iter(of)
    return all(any(item == other for other in it) for item in items)


# --- The campaign ----------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    streams=st.lists(hostile_stream(), min_size=1, max_size=4),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
)
def test_hostile_streams_affect_only_their_own_connections(
    live: Live, streams: list[bytes], sizes: list[int]
) -> None:
    server = live.server
    port = int(server.urls[0].rsplit(":", 1)[1])
    wanted = [wanted_nicks(stream) for stream in streams]
    hostiles = []
    for i, stream in enumerate(streams):
        others = set().union(*(w for j, w in enumerate(wanted) if j != i))
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        hostiles.append(Hostile(sock, stream, wanted[i] & others))
    pieces = [chunked(stream, sizes) for stream in streams]
    # Interleave the connections' chunks, as a busy network would.
    for step in range(max(len(p) for p in pieces)):
        for hostile, chunks in zip(hostiles, pieces, strict=True):
            if step < len(chunks):
                with contextlib.suppress(OSError):  # the server may already have closed it
                    hostile.sock.sendall(chunks[step])
    try:
        for hostile in hostiles:
            hostile.check()
    finally:
        for hostile in hostiles:
            hostile.sock.close()
    # The sentinels received exactly what the server accepted, and still talk.
    live.count += 1
    for speaker, nick, listener in (
        (live.ana, "sentana", live.bob),
        (live.bob, "sentbob", live.ana),
    ):
        marker = f"check {live.count}"
        speaker.send(cw.Message(text=marker))
        got = relays_until(listener, (nick, marker))
        expected = [relay for hostile in hostiles for relay in hostile.relays]
        assert collections.Counter(got) == collections.Counter(expected)
        OUTCOMES["relays checked at a sentinel"] += len(got)
        for hostile in hostiles:
            assert is_subsequence(hostile.relays, got), "a sender's frames out of order"
    wait_until(
        lambda: server.stats()["connections"] == 2, timeout=10, what="hostile connections gone"
    )
    stats = server.stats()
    assert stats["members"] == 2 and stats["open_spools"] == 0 and stats["spool_used"] == 0
    assert stats["internal_errors"] == 0
    wait_until(lambda: open_fds() == live.baseline, timeout=10, what="descriptors at baseline")
    assert spool_files(os.getpid(), live.spool) == []
