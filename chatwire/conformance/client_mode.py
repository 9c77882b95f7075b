"""The client-side kit: a strict, scripted server that a third-party client connects to.

``python -m chatwire.conformance client --port P`` listens; the client under test connects and
is driven, by its user or by a test script, through the exchanges every client must handle.
The kit checks every byte the client sends and then reports, case by case, like the server kit.

The script (also printed on the kit's terminal and sent to the client as notices, spec 3.1.8,
so a person at the client can follow it):

1. Log in with any nick. The kit answers ``NE`` to the first login whatever the nick, and
   closes: the client must send nothing more on that connection and must log in again on a new
   one (spec 3.1.1, 8.1).
2. Log in again: ``ACC``. The kit then sends a burst of relays and notices (a message, a file,
   an empty file, the longest message, a notice).
3. ``/list``: the kit sends relays, a file and a notice *before* the reply (spec 5.5), then
   lists the fake users and the client.
4. ``/nick ana``: refused (``NE``; ``ana`` is a fake user). 5. ``/nick`` to a free nick: ``NC``.
6. A message. 7. ``/sendFile`` (optional: send the message ``skip`` to skip it). 8. ``/quit``.

The client may do these in any order; the kit answers each request as the spec says and prompts
for the next step not done yet. The session ends after ``quit``, when the client closes, or when
a step waits longer than ``--wait`` seconds.

How it works: each connection is read by a server-role `chatwire.Connection` fed the raw bytes,
so any frame the spec forbids (grammar, table, state, sizes, UTF-8, names) is caught with its
bytes; every decoded frame is also compared with its one correct form (spec 2.2). Between the
``login`` and the kit's answer the connection is paused (`chatwire.PAUSED`): bytes that arrive
then are frames sent before ``ACC``. Observations go into `Observations`; the cases of
`CLIENT` then turn them into verdicts.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import chatwire as cw
from chatwire.transport import Endpoint, listen

from .probe import Trace
from .registry import Case, Failed, Level, Registry, Skipped
from .report import Result, Run, Verdict
from .wire import canonical_head, describe, explain_header, render

__all__ = ["CLIENT", "ClientKit", "ClientOptions", "Observations"]

CLIENT = Registry("client")
MUST, SHOULD, MAY = Level.MUST, Level.SHOULD, Level.MAY

FAKE_USERS = ("ana", "bob", "Joãozinh")  # the room's other members, as far as the client knows


@dataclass
class ClientOptions:
    """Settings of a client-side run."""

    #: Seconds to wait for the client to connect, and for each step of the script.
    wait: float = 60.0
    #: Seconds during which a client must stay silent (before our answer to its login, after
    #: NE, after quit).
    hold: float = 0.5
    #: Print the script's prompts on the kit's terminal.
    prompts: bool = True


@dataclass
class Observations:
    """What the client did, for the cases to judge."""

    violations: list[tuple[Failed, list[str]]] = field(default_factory=list)
    first_frames: list[str] = field(default_factory=list)  # first frame of each connection
    early_bytes: list[int] = field(default_factory=list)  # bytes sent before our answer, per login
    after_ne: int | None = None  # bytes sent on the refused connection after NE
    reconnected: bool = False
    logins: list[str] = field(default_factory=list)
    burst_survived: bool = False  # the client sent a frame after the greeting relays
    done: dict[str, bool] = field(default_factory=dict)  # step -> answered
    followed: dict[str, bool] = field(default_factory=dict)  # step -> client went on after it
    messages: list[str] = field(default_factory=list)
    files: list[tuple[str, int]] = field(default_factory=list)
    skipped_file: bool = False
    quit: bool = False
    after_quit: int = 0  # bytes sent after quit
    closed_first: bool = False  # the client closed before the kit did, after quit
    ended: str = ""  # why the session ended
    tls_alpn: str | None = None
    frames: list[str] = field(default_factory=list)  # the last frames, when the session ended


# --- One connection from the client, read strictly ---------------------------------------------


class _ClosedError(Exception):
    """The client closed the connection."""


class _QuietError(Exception):
    """Nothing arrived in time."""


class _Peer:
    def __init__(self, sock: socket.socket, label: str, trace: Trace) -> None:
        self.sock = sock
        self.label = label
        self.trace = trace
        self.conn = cw.Connection(cw.Role.SERVER)
        self.raw = bytearray()
        self.base = 0
        self.consumed = 0
        self.eof = False

    def _read(self, timeout: float) -> bool:
        if self.eof:
            return False
        try:
            self.sock.settimeout(max(timeout, 0.001))
            data = self.sock.recv(1 << 18)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        if not data:
            self.eof = True
            self.trace.add(self.label, "->", "(end of stream)")
        self.raw += data
        self.conn.receive_data(data)
        return True

    def event(self, timeout: float) -> tuple[cw.Event, bytes]:
        """The next event and its raw bytes (file data as ``FileData`` events).

        Raises:
            _QuietError: nothing within ``timeout``. _ClosedError: the client closed.
            Failed: the client broke the protocol.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.conn.next_event()
            except cw.RemoteProtocolError as exc:
                raise self._violation(exc) from None
            if event is cw.NEED_DATA:
                left = deadline - time.monotonic()
                if left <= 0 or not self._read(left):
                    if self.eof:
                        continue
                    raise _QuietError
                continue
            if event is cw.PAUSED:
                raise AssertionError("paused: answer the login first")
            start, end = self.consumed, self.conn.bytes_received
            raw = bytes(self.raw[start - self.base : end - self.base])
            self.consumed = end
            del self.raw[: end - self.base]
            self.base = end
            if isinstance(event, cw.ConnectionClosed):
                raise _ClosedError
            if isinstance(event, cw.FileData | cw.FileEnd):
                return event, raw
            expected = canonical_head(event)
            if expected is not None and raw != expected:
                self.trace.add(self.label, "->", f"{render(raw)}  <-- not the form of spec 2.2")
                raise Failed(
                    f"the one form of spec 2.2 for {describe(event)}: {render(expected)}",
                    f"the client sent {render(raw)}",
                )
            self.trace.add(self.label, "->", f"{describe(event)} [{render(raw, 40)}]")
            return event, raw

    def _violation(self, exc: cw.RemoteProtocolError) -> Failed:
        offset = exc.offset if exc.offset is not None else self.consumed
        at = max(offset - self.base, 0)
        shown = bytes(self.raw[max(self.consumed - self.base, 0) : at + 10])
        why = explain_header(self.raw[at : at + 10]) if exc.section in ("2.3", "2.6") else ""
        self.trace.add(self.label, "->", f"{render(shown)}  <-- refused: {exc}")
        actual = f"{exc.message} (spec {exc.section}, byte {offset}); the bytes: {render(shown)}"
        return Failed(
            "only well-formed frames, legal in the connection's state (spec 2, 4.3, 6.1)",
            actual + (f"; {why}" if why else ""),
        )

    def read_file(self, file: cw.File, timeout: float) -> str:
        """The data of ``file``, read to its end; returns its SHA-256."""
        digest = hashlib.sha256()
        while True:
            event, raw = self.event(timeout)
            if isinstance(event, cw.FileData):
                digest.update(raw)
            elif isinstance(event, cw.FileEnd):
                self.trace.add(self.label, "->", f"... {file.size} bytes of file data")
                return digest.hexdigest()

    def silent_for(self, seconds: float) -> int:
        """Read for ``seconds`` without decoding; returns the bytes received and not part of
        a decoded frame (those that came with the last frame included)."""
        deadline = time.monotonic() + seconds
        while not self.eof and (left := deadline - time.monotonic()) > 0:
            self._read(left)
        return len(self.raw)

    def send(self, event: cw.Event, data: bytes = b"") -> None:
        """Send ``event`` (checked by our own state machine), then ``data`` for a file."""
        frame = self.conn.send(event)
        self.trace.add(self.label, "<-", f"{describe(event)} [{render(frame, 40)}]")
        self.sock.settimeout(10.0)
        self.sock.sendall(frame)
        if isinstance(event, cw.FileRelay):
            if data:
                self.sock.sendall(self.conn.send(cw.FileData(data=data)))
            self.conn.send(cw.FileEnd())

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# --- The scripted server -----------------------------------------------------------------------

STEPS: list[tuple[str, str]] = [
    ("list", "type /list"),
    ("nick-refused", "type /nick ana (the kit refuses it: ana is taken)"),
    ("nick-accepted", "type /nick with a new nick of your choice"),
    ("msg", "send a message, any text"),
    ("file", "send a file with /sendFile FILE (or send the message 'skip' to skip this step)"),
    ("quit", "type /quit"),
]


class ClientKit:
    """The scripted server of the client-side kit.

    Args:
        endpoint: where to listen (port 0 picks a free port: read `url`).
        options: `ClientOptions`.
        out: where prompts go (the kit's terminal).
    """

    def __init__(self, endpoint: Endpoint, options: ClientOptions, out: TextIO | None) -> None:
        self.options = options
        self.out = out
        self.trace = Trace()
        self.seen = Observations()
        self._context = endpoint.server_context() if endpoint.scheme == "tls" else None
        self.listener = listen(endpoint)
        self.listener.setblocking(True)
        if endpoint.scheme != "unix":
            endpoint = endpoint.with_port(self.listener.getsockname()[1])
        self.endpoint = endpoint
        self.nick = ""
        self._peers: list[_Peer] = []

    @property
    def url(self) -> str:
        return self.endpoint.url

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()

    def _say(self, text: str) -> None:
        if self.out is not None and self.options.prompts:
            print(f"[kit] {text}", file=self.out, flush=True)

    def _accept(self, label: str) -> _Peer:
        self.listener.settimeout(self.options.wait)
        sock, _ = self.listener.accept()
        sock.settimeout(self.options.wait)
        if self._context is not None:
            sock = self._context.wrap_socket(sock, server_side=True)
            if isinstance(sock, ssl.SSLSocket):
                self.seen.tls_alpn = sock.selected_alpn_protocol()
        self.trace.add(label, "--", "connected")
        peer = _Peer(sock, label, self.trace)
        self._peers.append(peer)
        return peer

    def run(self) -> Observations:
        """Play the whole script; never raises."""
        seen = self.seen
        try:
            self._session()
        except Failed as exc:
            seen.violations.append((exc, self.trace.last(12)))
            seen.ended = seen.ended or "the client broke the protocol"
        except _ClosedError:
            seen.ended = seen.ended or "the client closed the connection"
        except (_QuietError, TimeoutError):
            seen.ended = seen.ended or f"nothing from the client for {self.options.wait:g} s"
        except OSError as exc:
            seen.ended = seen.ended or f"connection error: {exc}"
        finally:
            self.close()
            for peer in self._peers:
                peer.close()  # a session cut short by a violation: the client sees the end
        seen.frames = self.trace.last(12)
        return seen

    def _login(self, peer: _Peer) -> cw.Login:
        event, _ = peer.event(self.options.wait)
        self.seen.first_frames.append(type(event).__name__)
        if not isinstance(event, cw.Login):
            raise Failed("login as the first frame", describe(event))
        # Paused until we answer: anything arriving now was sent before ACC/NE (spec 3.1.1).
        self.seen.early_bytes.append(peer.silent_for(self.options.hold))
        return event

    def _session(self) -> None:
        seen, wait = self.seen, self.options.wait
        self._say(f"listening on {self.url}: connect the client under test and log in")
        first = self._accept("conn1")
        login = self._login(first)
        self._say(f"refusing the first login ({login.nick!r}) with NE: log in again")
        first.send(cw.Refused())
        first.shutdown_write()
        seen.after_ne = first.silent_for(self.options.hold)
        first.close()
        second = self._accept("conn2")
        seen.reconnected = True
        login = self._login(second)
        self.nick = login.nick
        seen.logins.append(login.nick)
        second.send(cw.Accepted())
        self._greet(second)
        self._prompt(second)
        following: str | None = "burst"
        while True:
            event, _ = second.event(wait)
            if following == "burst":
                seen.burst_survived = True
            elif following is not None:
                seen.followed[following] = True
            following = self._handle(second, event)
            if seen.quit:
                break
            self._prompt(second)
        seen.after_quit = second.silent_for(self.options.hold)
        seen.closed_first = second.eof
        seen.ended = "the client quit"
        second.close()

    def _greet(self, peer: _Peer) -> None:
        # Relays a client must take in its stride right after ACC (spec 3.1.7, 3.1.8).
        ana, bob, longest = FAKE_USERS
        peer.send(cw.Notice(text="welcome to the chatwire conformance kit"))
        peer.send(cw.MessageRelay(sender=ana, text="hello"))
        peer.send(cw.FileRelay(sender=bob, name="hello.txt", size=13), b"hello, world\n")
        peer.send(cw.MessageRelay(sender=longest, text="ç" * 4999 + "!"))
        peer.send(cw.FileRelay(sender=ana, name=".empty", size=0))
        peer.send(cw.MessageRelay(sender=bob, text="\x1b[31mred\x1b[0m and a line\nfeed"))

    def _prompt(self, peer: _Peer) -> None:
        for step, text in STEPS:
            if not self.seen.done.get(step) and not (step == "file" and self.seen.skipped_file):
                self._say(f"next: {text}")
                peer.send(cw.Notice(text=f"conformance kit: {text}"))
                return

    def _handle(self, peer: _Peer, event: cw.Event) -> str | None:
        """Answer one frame; returns the step whose continuation is awaited, if any."""
        seen = self.seen
        ana, bob, longest = FAKE_USERS
        if isinstance(event, cw.ListRequest):
            # Replies and relays interleave (spec 5.5): relays come first, then the reply.
            peer.send(cw.MessageRelay(sender=ana, text="a relay before your list"))
            peer.send(cw.FileRelay(sender=bob, name="list.txt", size=4), b"list")
            peer.send(cw.Notice(text="a notice before your list"))
            peer.send(cw.ListReply(nicks=(ana, bob, longest, self.nick)))
            seen.done["list"] = True
            return "list"
        if isinstance(event, cw.NickRequest):
            peer.send(cw.MessageRelay(sender=bob, text="a relay before your nick answer"))
            taken = {cw.nick_key(n) for n in FAKE_USERS}
            if cw.nick_key(event.nick) in taken or not cw.is_valid_nick(event.nick):
                peer.send(cw.Refused())
                seen.done["nick-refused"] = True
                return "nick-refused"
            peer.send(cw.NickChanged())
            self.nick = event.nick
            seen.done["nick-accepted"] = True
            return "nick-accepted"
        if isinstance(event, cw.Message):
            seen.messages.append(event.text)
            if event.text.strip() == "skip" and seen.done.get("msg"):
                seen.skipped_file = True
            seen.done["msg"] = True
            peer.send(cw.MessageRelay(sender=ana, text=f"got your {len(event.text)} characters"))
            return None
        if isinstance(event, cw.File):
            digest = peer.read_file(event, self.options.wait)
            seen.files.append((event.name, event.size))
            seen.done["file"] = True
            self._say(f"received file {event.name!r}, {event.size} bytes, sha256 {digest[:16]}")
            return None
        if isinstance(event, cw.Quit):
            seen.quit = True
            seen.done["quit"] = True
            return None
        raise Failed("a client frame", describe(event))  # the decoder lets nothing else through


# --- The cases: verdicts from the observations ------------------------------------------------


def _violations(seen: Observations) -> None:
    if seen.violations:
        failure, _ = seen.violations[0]
        raise failure


def _must_have(condition: bool, expected: str, seen: Observations) -> None:
    if not condition:
        raise Failed(expected, f"not observed; the session ended: {seen.ended or 'early'}")


@CLIENT.case(
    "client-first-frame-login",
    "3.1.1",
    MUST,
    "The first frame a client sends MUST be `login`.",
    title="the first frame on each connection is login",
)
def client_first_frame_login(seen: Observations) -> None:
    _must_have(bool(seen.first_frames), "a login frame", seen)
    wrong = [name for name in seen.first_frames if name != "Login"]
    if wrong:
        raise Failed("login first", f"{wrong[0]} first")


@CLIENT.case(
    "client-well-formed",
    "2.2",
    MUST,
    "A sender MUST produce exactly this form.",
    title="every frame the client sent had the one correct form and was legal in its state",
    also=("2.3", "2.7", "2.8", "4.3"),
)
def client_well_formed(seen: Observations) -> None:
    _violations(seen)


@CLIENT.case(
    "client-waits-for-acc",
    "3.1.1",
    MUST,
    "After `login` the client MUST NOT send any frame until it has received `ACC`.",
    title="nothing is sent between login and the answer",
)
def client_waits_for_acc(seen: Observations) -> None:
    _must_have(bool(seen.early_bytes), "a login", seen)
    for index, count in enumerate(seen.early_bytes):
        if count:
            raise Failed(
                "nothing between login and ACC or NE",
                f"{count} bytes sent before the answer on connection {index + 1}",
            )


@CLIENT.case(
    "client-silent-after-ne",
    "3.1.1",
    MUST,
    "The client MUST NOT send anything more on it",
    title="nothing is sent on a connection after NE to its login",
)
def client_silent_after_ne(seen: Observations) -> None:
    _must_have(seen.after_ne is not None, "an NE to the first login", seen)
    if seen.after_ne:
        raise Failed("nothing after NE", f"{seen.after_ne} bytes sent after NE")


@CLIENT.case(
    "client-logs-in-again",
    "8.1",
    MUST,
    "After `NE` to a login the connection is over (3.1.1): a client asks its user for another "
    "nick and opens a new connection.",
    title="after NE the client logs in again on a new connection",
)
def client_logs_in_again(seen: Observations) -> None:
    _must_have(seen.reconnected and bool(seen.logins), "a new connection and a login", seen)


@CLIENT.case(
    "client-takes-relays",
    "3.1.8",
    MUST,
    "A client MUST accept a notice wherever a `msg-relay` is allowed",
    title="relays, files and notices right after ACC do not break the client",
    also=("3.1.7", "5.5"),
)
def client_takes_relays(seen: Observations) -> None:
    _violations(seen)
    _must_have(seen.burst_survived, "another frame from the client after the relays", seen)


def _step_case(step: str, what: str) -> Callable[[Observations], None]:
    def run(seen: Observations) -> None:
        _violations(seen)
        _must_have(seen.done.get(step, False), what, seen)
        _must_have(
            seen.followed.get(step, False),
            f"the client to go on after the answer to its {what}",
            seen,
        )

    return run


CLIENT.case(
    "client-list",
    "5.5",
    MUST,
    "Relays and notices may arrive between a request and its reply, and between any two replies.",
    title="a list reply after a relay, a file and a notice is taken",
)(_step_case("list", "list request"))
CLIENT.case(
    "client-nick-refused",
    "3.1.3",
    MUST,
    "`NE` here leaves the connection open and the old nick in force.",
    title="NE to a nick request does not end the session",
)(_step_case("nick-refused", "nick request for a taken nick"))
CLIENT.case(
    "client-nick-accepted",
    "3.1.3",
    MUST,
    "After `NC` the new nick is in force",
    title="NC to a nick request is taken",
)(_step_case("nick-accepted", "nick request for a free nick"))


@CLIENT.case(
    "client-msg",
    "3.1.6",
    MUST,
    "`text_size` MUST be at most `TEXT_MAX` (9999): the largest text that fits the relay "
    "header (2.7).",
    title="the client sends a message frame",
)
def client_msg(seen: Observations) -> str:
    _violations(seen)
    _must_have(bool(seen.messages), "a msg frame", seen)
    return f"{len(seen.messages)} messages"


@CLIENT.case(
    "client-file",
    "5.1",
    MUST,
    "A peer MUST finish sending a frame, file data included, before it starts the next one.",
    title="the client sends a whole file frame (optional step)",
    also=("3.1.4",),
)
def client_file(seen: Observations) -> str:
    _violations(seen)
    if not seen.files:
        raise Skipped("the client sent no file" + (" (skipped)" if seen.skipped_file else ""))
    name, size = seen.files[0]
    return f"{name!r}, {size} bytes"


@CLIENT.case(
    "client-quit",
    "3.1.5",
    MUST,
    "After `quit` the client MUST NOT send anything.",
    title="the client sends quit, then nothing",
)
def client_quit(seen: Observations) -> None:
    _violations(seen)
    _must_have(seen.quit, "a quit frame", seen)
    if seen.after_quit:
        raise Failed("nothing after quit", f"{seen.after_quit} bytes after quit")


@CLIENT.case(
    "client-reads-after-quit",
    "3.1.5",
    SHOULD,
    "It SHOULD keep reading until the server closes the connection",
    title="after quit the client waits for the server to close",
)
def client_reads_after_quit(seen: Observations) -> None:
    _must_have(seen.quit, "a quit frame", seen)
    if seen.closed_first:
        raise Failed("the client to wait for the server's close", "it closed first")


@CLIENT.case(
    "client-tls-alpn",
    "A",
    MAY,
    "A server using TLS SHOULD offer the ALPN identifier `chatwire/1` and MUST NOT require the "
    "client to offer it.",
    title="over TLS, does the client offer the ALPN protocol chatwire/1?",
)
def client_tls_alpn(seen: Observations) -> str:
    if seen.tls_alpn is None:
        raise Skipped("not TLS, or no ALPN offered")
    return seen.tls_alpn


def judge(cases: list[Case], seen: Observations) -> list[Result]:
    """Turn the observations into one result per case (levels as in the server kit)."""
    results = []
    for case in cases:
        try:
            note = case.run(seen)
        except Failed as exc:
            frames = seen.violations[0][1] if seen.violations else seen.frames
            verdict = {MUST: Verdict.FAIL, SHOULD: Verdict.NON_STRICT}.get(case.level, Verdict.INFO)
            results.append(
                Result(case, verdict, expected=exc.expected, actual=exc.actual, frames=frames)
            )
        except Skipped as exc:
            results.append(Result(case, Verdict.SKIP, note=str(exc)))
        else:
            verdict = Verdict.INFO if case.level is MAY else Verdict.PASS
            results.append(Result(case, verdict, note=note or ""))
    return results


def run_client_kit(kit: ClientKit, cases: list[Case]) -> Run:
    """Play the script with the client that connects to ``kit`` and judge ``cases``."""
    run = Run(mode="client", target=kit.url)
    started = time.monotonic()
    seen = kit.run()
    run.results = judge(cases, seen)
    run.duration = time.monotonic() - started
    return run
