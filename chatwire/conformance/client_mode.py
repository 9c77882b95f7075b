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
6. A message. 7. The long text: one message of `LONG_TEXT` (written to a file for the
   operator, more than ``TEXT_MAX`` bytes), which the client must split (spec 3.1.6).
8. ``/sendFile``. 9. ``/quit``. Steps 7 and 8 are optional: the message ``skip`` skips the one
   prompted.
10. Connect and log in a third time: after ``ACC`` the kit sends a malformed frame, and the
    client must close the connection (spec 6.2, 6.4). Skipped when no third connection comes.

The client may do steps 3 to 9 in any order; the kit answers each request as the spec says and
prompts for the next step not done yet. The session ends after step 10, when the client closes,
or when a step waits longer than ``--wait`` seconds.

How it works: each connection is read by a server-role `chatwire.Connection` fed the raw bytes,
so any frame the spec forbids (grammar, table, state, sizes, UTF-8, names) is caught with its
bytes; every decoded frame is also compared with its one correct form (spec 2.2). Between the
``login`` and the kit's answer the connection is paused (`chatwire.PAUSED`): bytes that arrive
then are frames sent before ``ACC``. The decoder holds at most `chatwire.MAX_BUFFERED` of
them: a client that sends more before the answer has broken spec 3.1.1 beyond what the kit can
follow, and the session ends there. Observations go into `Observations`; the cases of `CLIENT`
then turn them into verdicts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import chatwire as cw
from chatwire.transport import Endpoint, listen

from .probe import Trace
from .registry import Case, Failed, Level, Registry, Requirement, Skipped
from .report import Result, Run, Verdict
from .wire import EXACT_FORM, broken_requirement, canonical_head, describe, explain_header, render

__all__ = ["CLIENT", "LONG_TEXT", "MALFORMED", "ClientKit", "ClientOptions", "Observations"]

CLIENT = Registry("client")
MUST, SHOULD, MAY = Level.MUST, Level.SHOULD, Level.MAY

FAKE_USERS = ("ana", "bob", "Joãozinh")  # the room's other members, as far as the client knows
WAITS_FOR_ACC = Requirement(
    "3.1.1", "After `login` the client MUST NOT send any frame until it has received `ACC`."
)


def _long_text() -> str:
    # Words with spaces up to about 9000 bytes, then a run of 3-byte characters without a space
    # across byte 9999 (a cut at the limit would fall inside a character), then more words: a
    # client that cuts after the last space (the SHOULD of spec 3.1.6) sends two pieces, one
    # that cuts at the limit sends two others; both must join back into the text.
    text = "the chatwire conformance kit's long text (spec 3.1.6):"
    while len(text.encode()) < 9000:
        text += " ação"
    text += " " + "€" * 400
    while len(text.encode()) < 15000:
        text += " palavra"
    return text


#: The text of step 7: one line of 15 000 bytes, no line feed, more than a msg frame may hold.
LONG_TEXT = _long_text()
#: The malformed frame of step 10: spec/vectors/malformed.json ``header-nul-padding-relay``.
MALFORMED = b"msg 3 5\x00\x00\x00anahello"


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
    #: Where to write `LONG_TEXT` for the operator (step 7), or ``None`` not to write it.
    long_text_file: str | None = None
    #: Where the client under test saves received files, to check them (``client-saves-files``).
    downloads: str | None = None
    #: Wait for a third connection and send it a malformed frame (step 10).
    malformed: bool = True


@dataclass
class Observations:
    """What the client did, for the cases to judge."""

    violations: list[tuple[Failed, list[str]]] = field(default_factory=list)
    violation_step: str = ""  # the step prompted when the first violation came
    first_frames: list[str] = field(default_factory=list)  # first frame of each connection
    early_bytes: list[int] = field(default_factory=list)  # bytes sent before our answer, per login
    after_ne: int | None = None  # bytes sent on the refused connection after NE
    reconnected: bool = False
    logins: list[str] = field(default_factory=list)
    burst_survived: bool = False  # the client sent a frame after the greeting relays
    done: dict[str, bool] = field(default_factory=dict)  # step -> answered
    followed: dict[str, bool] = field(default_factory=dict)  # step -> client went on after it
    skipped: set[str] = field(default_factory=set)  # optional steps the client skipped
    messages: list[str] = field(default_factory=list)
    long_pieces: list[str] = field(default_factory=list)  # the msgs that made up LONG_TEXT
    long_text_error: str = ""  # why the msgs that began LONG_TEXT did not make it up
    files: list[tuple[str, int]] = field(default_factory=list)
    quit: bool = False
    after_quit: int = 0  # bytes sent after quit
    closed_first: bool = False  # the client closed before the kit did, after quit
    malformed_sent: bool = False  # step 10 reached: the malformed frame was sent
    malformed_closed: bool = False  # the client closed after it, within the wait
    malformed_after: int = 0  # bytes the client sent after the malformed frame
    malformed_note: str = ""  # why step 10 did not happen
    downloads: str | None = None
    downloads_before: frozenset[str] = frozenset()  # what the downloads folder held at start
    wait: float = 0.0
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
        self.received = 0  # stream bytes received, decoded or not
        self.eof = False

    def _read(self, timeout: float, keep: bool = True) -> bool:
        # keep=False: the bytes are only counted, for a connection that is not decoded any more.
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
        self.received += len(data)
        if keep:
            self.raw += data
            self.conn.receive_data(data)
        return True

    @property
    def overflowing(self) -> bool:
        """More received bytes wait for the decoder than it takes (`chatwire.MAX_BUFFERED`):
        only while it is paused or not read can this happen."""
        return self.conn.buffered > cw.MAX_BUFFERED

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
                    requirement=EXACT_FORM,
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
            requirement=broken_requirement(exc.section),
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

    def silent_for(self, seconds: float, *, keep: bool = True) -> int:
        """Read for ``seconds`` without decoding; returns the bytes received and not part of
        a decoded frame (those that came with the last frame included).

        With ``keep`` the bytes are kept for the decoder, which takes at most
        `chatwire.MAX_BUFFERED` of them: once it is `overflowing` the read stops early (the
        rest stays with the transport). Without it they are only counted, and the connection
        is not decoded any more.
        """
        deadline = time.monotonic() + seconds
        while not self.eof and (left := deadline - time.monotonic()) > 0:
            if keep and self.overflowing:
                break
            self._read(left, keep)
        return self.received - self.consumed

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

    def send_raw(self, data: bytes, note: str) -> None:
        """Send ``data`` as is, past our own state machine (a deliberately malformed frame)."""
        self.trace.add(self.label, "<-", note)
        self.sock.settimeout(10.0)
        self.sock.sendall(data)

    def wait_closed(self, seconds: float) -> tuple[bool, int]:
        """Read, without decoding, until the client closes or ``seconds`` pass; returns whether
        it closed and how many bytes it sent meanwhile."""
        before = self.received
        self.silent_for(seconds, keep=False)
        return self.eof, self.received - before

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
    (
        "long-text",
        "send the long text (the kit's, {long_text}) as one message: {size} bytes, which your "
        "client must split into messages of at most 9999 bytes (or send the message 'skip')",
    ),
    ("file", "send a file with /sendFile FILE (or send the message 'skip' to skip this step)"),
    (
        "quit",
        "type /quit; then, for the last step, connect and log in once more: the kit will send "
        "a malformed frame, and your client must close the connection",
    ),
]
OPTIONAL = ("long-text", "file")


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
        self.seen = Observations(wait=options.wait, downloads=options.downloads)
        if options.downloads is not None:
            folder = Path(options.downloads)
            names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
            self.seen.downloads_before = frozenset(names)
        if options.long_text_file is not None:
            Path(options.long_text_file).write_text(LONG_TEXT + "\n", encoding="utf-8")
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
            seen.violation_step = seen.violation_step or (self._current_step() or "")
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
        early = peer.silent_for(self.options.hold)
        self.seen.early_bytes.append(early)
        if peer.overflowing:
            # More than a paused decoder holds: following the client further would mean holding
            # without bound or losing bytes, so the session ends (client-waits-for-acc fails).
            raise Failed(
                "nothing between login and ACC or NE",
                f"{early} bytes sent before the answer on connection {len(self._peers)}, more "
                f"than the {cw.MAX_BUFFERED} the kit holds for a login it has not answered",
                requirement=WAITS_FOR_ACC,
            )
        return event

    def _session(self) -> None:
        seen, wait = self.seen, self.options.wait
        self._say(f"listening on {self.url}: connect the client under test and log in")
        if self.options.long_text_file is not None:
            self._say(f"the long text of step 7 is in {self.options.long_text_file}")
        first = self._accept("conn1")
        login = self._login(first)
        self._say(f"refusing the first login ({login.nick!r}) with NE: log in again")
        # Bytes the hold kept undecoded were sent before the answer (counted in early_bytes,
        # client-waits-for-acc): only what arrives from here on was sent after NE.
        before_ne = first.received - first.consumed
        first.send(cw.Refused())
        first.shutdown_write()
        seen.after_ne = first.silent_for(self.options.hold, keep=False) - before_ne
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
        seen.after_quit = second.silent_for(self.options.hold, keep=False)
        seen.closed_first = second.eof
        seen.ended = "the client quit"
        second.close()
        if self.options.malformed:
            self._malformed()

    def _malformed(self) -> None:
        # Step 10: a receiver that meets a malformed frame must close (spec 6.2, 6.4).
        seen = self.seen
        self._say(
            "last step: connect and log in once more; after ACC the kit sends a malformed frame "
            "(a msg-relay header padded with NUL bytes), and your client must close the "
            "connection"
        )
        try:
            third = self._accept("conn3")
        except TimeoutError:
            seen.malformed_note = f"no third connection within {self.options.wait:g} s"
            return
        login = self._login(third)
        seen.logins.append(login.nick)
        third.send(cw.Accepted())
        third.send_raw(MALFORMED, f"{render(MALFORMED)}  <-- malformed on purpose (NUL padding)")
        seen.malformed_sent = True
        seen.malformed_closed, seen.malformed_after = third.wait_closed(self.options.wait)
        third.trace.add(
            third.label,
            "--",
            "the client closed the connection" if seen.malformed_closed else "still open",
        )
        third.close()
        seen.ended = "the client quit, then closed on the malformed frame"
        if not seen.malformed_closed:
            seen.ended = "the client quit, then stayed connected after the malformed frame"

    def _greet(self, peer: _Peer) -> None:
        # Relays a client must take in its stride right after ACC (spec 3.1.7, 3.1.8).
        ana, bob, longest = FAKE_USERS
        peer.send(cw.Notice(text="welcome to the chatwire conformance kit"))
        peer.send(cw.MessageRelay(sender=ana, text="hello"))
        peer.send(cw.FileRelay(sender=bob, name="hello.txt", size=13), b"hello, world\n")
        peer.send(cw.MessageRelay(sender=longest, text="ç" * 4999 + "!"))
        peer.send(cw.FileRelay(sender=ana, name=".empty", size=0))
        peer.send(cw.MessageRelay(sender=bob, text="\x1b[31mred\x1b[0m and a line\nfeed"))

    def _current_step(self) -> str | None:
        for step, _ in STEPS:
            if not self.seen.done.get(step) and step not in self.seen.skipped:
                return step
        return None

    def _prompt(self, peer: _Peer) -> None:
        step = self._current_step()
        if step is None:
            return
        text = dict(STEPS)[step].format(
            long_text=self.options.long_text_file or "LONG_TEXT of chatwire.conformance",
            size=len(LONG_TEXT.encode()),
        )
        self._say(f"next: {text}")
        peer.send(cw.Notice(text=f"conformance kit: {text}"))

    def _long_text(self, text: str) -> bool:
        """Follow the msgs that make up `LONG_TEXT`; True if ``text`` is one of them."""
        seen = self.seen
        if seen.done.get("long-text"):
            return False
        joined = "".join(seen.long_pieces) + text
        if text and LONG_TEXT.startswith(joined):
            seen.long_pieces.append(text)
            if joined == LONG_TEXT:
                seen.done["long-text"] = True
            return True
        if seen.long_pieces:
            sizes = [len(p.encode()) for p in seen.long_pieces]
            seen.long_text_error = (
                f"the messages {sizes} (bytes) began the long text, but the next one does not "
                f"go on with it: {describe(cw.Message(text=text))}"
            )
            seen.long_pieces = []
        return False

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
            if self._long_text(event.text):
                return None
            seen.messages.append(event.text)
            step = self._current_step()
            if event.text.strip() == "skip" and step in OPTIONAL and seen.done.get("msg"):
                seen.skipped.add(step)
                return None
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
    WAITS_FOR_ACC.text,
    title="nothing is sent between login and the answer",
)
def client_waits_for_acc(seen: Observations) -> None:
    _must_have(bool(seen.early_bytes), "a login", seen)
    for index, count in enumerate(seen.early_bytes):
        if count:
            flood = count > cw.MAX_BUFFERED
            raise Failed(
                "nothing between login and ACC or NE",
                f"{count} bytes sent before the answer on connection {index + 1}"
                + ("; the kit stopped reading and ended the session" if flood else ""),
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
    "A client that tries again after `NE` MUST do so on a new connection, with `login` as its "
    "first frame (3.1.1)",
    title="after NE the client logs in again on a new connection",
)
def client_logs_in_again(seen: Observations) -> None:
    _must_have(seen.reconnected and bool(seen.logins), "a new connection and a login", seen)


_ANSWERED = ("list", "nick-refused", "nick-accepted")


@CLIENT.case(
    "client-takes-relays",
    "3.1.8",
    MUST,
    "A client MUST accept a notice wherever a `msg-relay` is allowed",
    title="relays, files and notices right after ACC do not break the client",
    also=("3.1.7", "5.5"),
)
def client_takes_relays(seen: Observations) -> str:
    # Over the wire the kit sees what the client does next: it stays connected, sends only
    # well-formed frames, and a request it makes after the burst is answered and followed by
    # another frame, so its state (pending replies, spec 5.2) survived the relays.
    _violations(seen)
    _must_have(seen.burst_survived, "another frame from the client after the relays", seen)
    answered = [step for step in _ANSWERED if seen.followed.get(step)]
    _must_have(
        bool(answered),
        "a request after the relays answered, then another frame (the client kept its state)",
        seen,
    )
    return f"went on after the answers to {', '.join(answered)}"


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
    "A client MUST accept a relay or a notice wherever it arrives between a request and its reply, "
    "and MUST still match each reply with its oldest unanswered request (5.2, 8.2).",
    title="a list reply after a relay, a file and a notice is taken",
    also=("3.1.2", "8.2"),
)(_step_case("list", "list request"))
CLIENT.case(
    "client-nick-refused",
    "3.1.3",
    MUST,
    "A client MUST take either answer and go on with the connection: after `NE` its nick is still "
    "the old one",
    title="NE to a nick request does not end the session",
)(_step_case("nick-refused", "nick request for a taken nick"))
CLIENT.case(
    "client-nick-accepted",
    "3.1.3",
    MUST,
    "A client MUST take either answer and go on with the connection: ... after `NC` it is the new "
    "one.",
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


def _long_text_pieces(seen: Observations) -> list[str]:
    """The pieces of `LONG_TEXT` the client sent; raises why there are none."""
    failure = seen.violations[0][0] if seen.violations else None
    if failure is not None and (
        seen.violation_step == "long-text" or "text_size" in failure.actual
    ):
        raise Failed(
            "the long text as several msg frames of at most 9999 bytes, cut between characters",
            failure.actual,
            requirement=failure.requirement,
        )
    if seen.long_text_error:
        raise Failed("the long text, whole, as consecutive msg frames", seen.long_text_error)
    if not seen.done.get("long-text"):
        if "long-text" in seen.skipped:
            raise Skipped("the client skipped the long text (step 7)")
        _violations(seen)
        raise Skipped(f"the client did not send the long text (step 7); {seen.ended}")
    return seen.long_pieces


@CLIENT.case(
    "client-long-text",
    "3.1.6",
    MUST,
    "A client that has a longer text MUST send it as several `msg` frames in order, each of at "
    "most `TEXT_MAX` bytes, cutting only between characters (never inside a UTF-8 sequence).",
    title="a text over 9999 bytes is split into msg frames that join back into it (step 7)",
    also=("2.7", "8.3"),
)
def client_long_text(seen: Observations) -> str:
    # Every piece passed the decoder (at most TEXT_MAX bytes, valid UTF-8), and they join into
    # the text: so they were cut between characters, in order.
    pieces = _long_text_pieces(seen)
    sizes = ", ".join(str(len(p.encode())) for p in pieces)
    return f"{len(LONG_TEXT.encode())} bytes sent as {len(pieces)} messages of {sizes} bytes"


@CLIENT.case(
    "client-long-text-cut",
    "3.1.6",
    SHOULD,
    "It SHOULD cut after the last line feed or space of a piece when the piece has one.",
    title="the long text is cut after the last space of each piece (step 7)",
    also=("8.3",),
)
def client_long_text_cut(seen: Observations) -> str:
    pieces = _long_text_pieces(seen)
    data, start = LONG_TEXT.encode(), 0
    for index, piece in enumerate(pieces[:-1]):
        size = len(piece.encode())
        end = min(start + cw.TEXT_MAX, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # end between characters
            end -= 1
        window = data[start:end]
        last = max(window.rfind(b" "), window.rfind(b"\n"))
        if last >= 0 and size != last + 1:
            raise Failed(
                f"piece {index + 1} cut after the last space of its {len(window)} bytes, at "
                f"byte {last + 1}",
                f"it has {size} bytes, ending {render(piece.encode()[-12:])}",
            )
        start += size
    return f"{len(pieces)} pieces, each cut after its last space"


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
        raise Skipped("the client sent no file" + (" (skipped)" if "file" in seen.skipped else ""))
    name, size = seen.files[0]
    return f"{name!r}, {size} bytes"


def _new_file(seen: Observations, folder: Path, match: Callable[[str], bool]) -> Path | None:
    for path in sorted(folder.iterdir()):
        if path.name not in seen.downloads_before and match(path.name):
            return path
    return None


@CLIENT.case(
    "client-saves-files",
    "8.4",
    MUST,
    "MUST reduce the received name to a safe base name before touching the file system: no "
    "path separator of any system, no `.` or `..`, no leading `.`, ... MUST write the data to "
    "a temporary file in the same folder and give it its final name only when all `file_size` "
    "bytes have arrived",
    title="files relayed to the client are saved whole, '.empty' without its leading dot "
    "(give --downloads DIR)",
    also=("3.1.7.1",),
)
def client_saves_files(seen: Observations) -> str:
    if seen.downloads is None:
        raise Skipped("give --downloads DIR, the folder your client saves files in")
    _must_have(seen.burst_survived, "the relays after ACC read by the client", seen)
    folder = Path(seen.downloads)
    deadline = time.monotonic() + min(seen.wait, 5.0)  # a client may save after the session
    while True:
        hello = _new_file(seen, folder, lambda n: n.startswith("hello") and n.endswith(".txt"))
        empty = _new_file(seen, folder, lambda n: "empty" in n)
        if (hello and empty) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    new = sorted(set(os.listdir(folder)) - seen.downloads_before)
    if hello is None or hello.read_bytes() != b"hello, world\n":
        raise Failed(
            f"'hello.txt' (13 bytes, 'hello, world\\n') saved in {folder}",
            f"new files: {new}" if hello is None else f"{hello.name} holds {hello.read_bytes()!r}",
        )
    if empty is None or empty.stat().st_size != 0 or empty.name.startswith("."):
        raise Failed(
            f"the empty file '.empty' saved in {folder} as an empty file without the leading dot",
            f"new files: {new}",
        )
    return f"saved as {hello.name!r} and {empty.name!r}"


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
    "client-closes-on-malformed",
    "6.2",
    MUST,
    "A receiver that meets a malformed frame MUST stop interpreting the stream and close the "
    "connection.",
    title="a NUL-padded msg-relay header from the server makes the client close (step 10)",
    also=("2.3", "6.4"),
)
def client_closes_on_malformed(seen: Observations) -> str:
    if not seen.malformed_sent:
        _violations(seen)
        raise Skipped(
            "step 10 not reached: " + (seen.malformed_note or seen.ended or "the session ended")
        )
    if not seen.malformed_closed:
        raise Failed(
            f"the client to close the connection after {render(MALFORMED)}",
            f"still open {seen.wait:g} s later; it sent {seen.malformed_after} bytes meanwhile",
        )
    return "closed the connection"


@CLIENT.case(
    "client-tls-alpn",
    "A",
    MAY,
    "A client MAY offer `chatwire/1`, and MUST NOT require the server to select it.",
    title="over TLS, does the client offer the ALPN protocol chatwire/1?",
)
def client_tls_alpn(seen: Observations) -> str:
    if seen.tls_alpn is None:
        raise Skipped("not TLS, or no ALPN offered")
    return seen.tls_alpn


def judge(cases: list[Case], seen: Observations) -> list[Result]:
    """Turn the observations into one result per case (verdicts as in the server kit)."""
    results = []
    for case in cases:
        try:
            note = case.run(seen)
        except Failed as exc:
            frames = seen.violations[0][1] if seen.violations else seen.frames
            verdict = Verdict.FAIL
            if case.level is SHOULD and not exc.foreign:
                verdict = Verdict.NON_STRICT
            results.append(
                Result(
                    case,
                    verdict,
                    expected=exc.expected,
                    actual=exc.actual,
                    frames=frames,
                    failed=exc.requirement,
                )
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
