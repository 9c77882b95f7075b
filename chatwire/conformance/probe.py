"""The kit's connections to a server under test, and the context every server case runs in.

A `Probe` is one client connection made by the kit. It is strict where a real client would be
lenient, and it remembers everything for the report:

- **Raw bytes first.** Every received byte is kept until the frame it belongs to is complete.
  The bytes are decoded by a client-role `chatwire.Connection` (which checks the grammar, the
  table, the state machine, sizes and payloads of spec 2 to 4), and every decoded frame is also
  compared byte for byte with the one correct form of spec 2.2 (`chatwire.encode`). When either
  check fails the failure shows the offending bytes themselves (``ACC\\x00\\x00...``) and says
  what is wrong with them (`wire.explain_header`), not just "malformed".
- **Replies and relays apart.** Spec 5.5 lets relays and notices arrive between a request and
  its reply. A probe sorts received frames into replies (``ACC``, ``NE``, ``NC``, list replies)
  and relays (messages and files), so a case can wait for "the next reply" without tripping on
  a relay, and the other way round. Notices (spec 3.1.8) are allowed anywhere a relay is: they
  are traced and otherwise ignored.
- **Our own frames are followed too.** Whatever the kit sends, well formed or deliberately
  broken, is also decoded by a server-role `Connection` (the "mirror"); each frame it completes
  is replayed into the client-role connection, so that connection knows which requests are
  pending and accepts their replies. Bytes the mirror refuses end the replay: the server is then
  expected to close.
- **Bounded in time.** Every wait is bounded by the operation timeout and by the case's
  deadline; running out raises `Failed` saying what was awaited.

`CaseContext` is what a server case receives: the endpoint, the options, a fresh nick source,
the trace of every frame exchanged in the case, and the probes it opened (closed at the end of
the case, or from the runner when the case overruns its timeout).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import random
import socket
import string
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import chatwire as cw
from chatwire.transport import Endpoint, connect, is_disconnect

from .registry import Failed, Requirement, Skipped
from .vectors import load as load_vectors
from .wire import (
    EXACT_FORM,
    broken_requirement,
    canonical_head,
    describe,
    explain_header,
    message_name,
    render,
)

__all__ = [
    "CaseContext",
    "Frame",
    "KitOptions",
    "NickSource",
    "Probe",
    "Trace",
]

E = TypeVar("E", bound=cw.Event)

_REPLIES = (cw.Accepted, cw.Refused, cw.NickChanged, cw.ListReply)
# What a refused frame should have been, by the section the decoder cites (for the report).
_EXPECTED_FORM = {
    "2.3": "headers in the one form of spec 2.2: fields from the first byte, one space apart, "
    "padded with spaces, sizes in decimal without leading zeros",
    "2.6": "only headers the table of spec 2.6 allows from a server",
    "4.3": "only frames legal in the connection's state (spec 4.3): no reply unasked or out of "
    "order, nothing before ACC, nothing after NE",
    "2.7": "sizes within the ranges of spec 2.7",
    "6.5": "whole frames: the stream ended inside one (spec 6.5)",
}
_KEEP_DATA = 1 << 20  # file data up to this size is kept for byte comparison; beyond, hashed
#: What every case's setup relies on: a fresh, valid nick is accepted (spec 3.1.1).
LOGIN_ACCEPTED = Requirement(
    "3.1.1",
    "It MUST answer `ACC` if and only if the nick is valid (2.8.3) and no logged-in client has "
    "an equal nick (2.8.4).",
)


@dataclass
class KitOptions:
    """Settings of one run of the server kit (command-line options of the same names)."""

    #: Longest wait for one expected frame or for the server to close, in seconds.
    wait: float = 5.0
    #: How long "nothing arrives" is watched (no echo, nothing relayed), in seconds.
    quiet: float = 0.3
    #: Clients of the many-clients case.
    clients: int = 50
    #: Bytes of the large-file case.
    large_file: int = 32 << 20
    #: Bytes of files sent while one client does not read (the slow-reader cases), after half
    #: as many bytes of messages.
    flood: int = 16 << 20
    #: The server's login timeout, if the operator wants it checked (spec 7.2).
    login_timeout: float | None = None
    #: The server's mid-frame stall timeout, if the operator wants it checked (spec 7.2).
    stall_timeout: float | None = None
    #: Multiplies every case timeout (slow machines, slow links).
    timeout_scale: float = 1.0
    #: Directory of the spec's test vectors (``spec/vectors``), or ``None`` to look for it.
    vectors: str | None = None
    #: Run every case even when the server does not answer (no login probe, no early stop).
    keep_going: bool = False
    #: Stop the run after this many cases in a row failed hearing nothing from the server.
    stop_after: int = 3


@dataclass(frozen=True, slots=True)
class TraceEntry:
    at: float  # wall-clock time
    who: str  # label of the kit's connection
    arrow: str  # "->" kit to server, "<-" server to kit, "--" connection event
    text: str

    def line(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        stamp += f".{int(self.at * 1000) % 1000:03d}"
        if self.arrow == "->":
            return f"{stamp}  {self.who} -> S  {self.text}"
        if self.arrow == "<-":
            return f"{stamp}  S -> {self.who}  {self.text}"
        return f"{stamp}  {self.who}: {self.text}"


class Trace:
    """Every frame exchanged in one case, in order, from all its connections (thread-safe)."""

    def __init__(self, limit: int = 2000) -> None:
        self._entries: deque[TraceEntry] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def add(self, who: str, arrow: str, text: str) -> None:
        with self._lock:
            self._entries.append(TraceEntry(time.time(), who, arrow, text))

    def last(self, count: int = 10) -> list[str]:
        """The last ``count`` entries as report lines; a run of entries alike (a flood of
        relays) is shown once with its count."""
        with self._lock:
            entries = list(self._entries)
        lines: list[str] = []
        repeats = 0
        for index in range(len(entries) - 1, -1, -1):
            entry = entries[index]
            previous = entries[index - 1] if index else None
            if previous is not None and (previous.who, previous.arrow, previous.text) == (
                entry.who,
                entry.arrow,
                entry.text,
            ):
                repeats += 1
                continue
            line = entry.line()
            if repeats:
                line += f"  (x{repeats + 1})"
                repeats = 0
            lines.append(line)
            if len(lines) == count:
                break
        return lines[::-1]


class NickSource:
    """Fresh, valid nicks unlikely to collide with anyone else's: a random tag per run, then a
    counter, lower-case ASCII (so no two are equal under spec 2.8.4)."""

    def __init__(self, tag: str | None = None) -> None:
        letters = string.ascii_lowercase
        self.tag = tag or "k" + "".join(random.choice(letters) for _ in range(2))
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, size: int | None = None, tail: str = "", head: str = "") -> str:
        """A fresh nick; ``size`` pads it with digits to that many bytes, ``tail`` ends it,
        ``head`` starts it (nicks that sort by their heads, not by the order they were made)."""
        with self._lock:
            number = next(self._counter)
        base = head + self.tag + _base36(number)
        nick = base + tail
        length = len(nick.encode("utf-8"))
        if size is not None and length < size:
            nick = base + "0" * (size - length) + tail
        if len(nick.encode("utf-8")) > cw.NICK_MAX or not cw.is_valid_nick(nick):
            raise ValueError(f"cannot make a valid nick of {size} bytes ending {tail!r}")
        return nick


def _base36(number: int) -> str:
    digits = string.digits + string.ascii_lowercase
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


@dataclass
class Frame:
    """One frame received from the server. For a file relay, ``raw`` is its head (up to and
    including the second header) and the data is in ``data`` (kept when small) or only counted
    and hashed (``size``, ``sha256``)."""

    event: cw.Event
    raw: bytes
    data: bytes | None = None
    size: int = 0
    sha256: str = ""
    received_at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return message_name(self.event)

    def __str__(self) -> str:
        return f"{describe(self.event)} [{render(self.raw, 40)}]"


class _IncomingFile:
    def __init__(self, event: cw.FileRelay, raw: bytes) -> None:
        self.event = event
        self.raw = raw
        self.hash = hashlib.sha256()
        self.parts: list[bytes] | None = [] if event.size <= _KEEP_DATA else None
        self.size = 0


class Probe:
    """One kit connection to the server (see the module docstring).

    Args:
        context: the case's context (endpoint, options, trace, deadline).
        label: the name shown in the trace (the nick, once logged in).
    """

    def __init__(self, context: CaseContext, label: str) -> None:
        self.context = context
        self.label = label
        self.nick: str | None = None
        self.trace = context.trace
        try:
            self.sock = connect(context.endpoint, timeout=context.timeout())
        except OSError as exc:
            raise Failed(
                f"a connection to {context.endpoint.url}", f"cannot connect: {exc}", setup=True
            ) from None
        self.conn = cw.Connection(cw.Role.CLIENT)
        self._mirror: cw.Connection | None = cw.Connection(cw.Role.SERVER)
        self._raw = bytearray()  # received bytes from stream offset _base on
        self._base = 0
        self._consumed = 0
        self._file: _IncomingFile | None = None
        self.replies: deque[Frame] = deque()
        self.relays: deque[Frame] = deque()
        self.notices: list[Frame] = []
        self.received: list[Frame] = []  # every frame, notices included, in order
        self.bytes_in = 0
        self.bytes_out = 0
        self.eof = False  # the server closed (or reset) the connection
        self.reset = False
        self.error: Failed | None = None
        self.closed = False
        self.trace.add(label, "--", f"connected to {context.endpoint.url}")

    # --- Sending ----------------------------------------------------------------------------

    def send(self, event: cw.Event) -> None:
        """Send one event's bytes (a frame, a head of a file, or file data)."""
        if isinstance(event, cw.FileData):
            self.send_raw(bytes(event.data), note=describe(event))
            return
        if isinstance(event, cw.FileEnd):
            return
        data = cw.encode(event)
        self.send_raw(data, note=f"{describe(event)} [{render(data, 40)}]")

    def send_raw(
        self, data: bytes, *, note: str | None = None, piece: int = 0, pause: float = 0.0
    ) -> None:
        """Send ``data`` as is; with ``piece``, in writes of that many bytes, ``pause`` seconds
        apart (the byte-by-byte cases).

        Raises:
            Failed: the server did not take the bytes in time, or reset the connection.
        """
        self._follow(data)
        self.trace.add(self.label, "->", note if note is not None else render(data))
        try:
            if piece <= 0:
                self.sock.settimeout(self.context.timeout())
                self.sock.sendall(data)
            else:
                for start in range(0, len(data), piece):
                    self.sock.settimeout(self.context.timeout())
                    self.sock.sendall(data[start : start + piece])
                    if pause:
                        time.sleep(pause)
        except TimeoutError:
            raise Failed(
                "the server to keep reading what this client sends",
                f"it stopped reading from {self.label}: a write did not complete in "
                f"{self.context.timeout():.1f} s",
                timed_out=True,
            ) from None
        except OSError as exc:
            if is_disconnect(exc):
                raise Failed(
                    f"the connection of {self.label} to stay open",
                    f"the server closed or reset it while {self.label} was sending ({exc})",
                ) from None
            raise
        self.bytes_out += len(data)

    def send_file(self, name: str, data: bytes, *, chunk: int = 1 << 20) -> None:
        """Send a whole ``file`` frame: head, then the data in writes of ``chunk`` bytes."""
        self.send(cw.File(name=name, size=len(data)))
        view = memoryview(data)
        for start in range(0, len(data), chunk):
            part = bytes(view[start : start + chunk])
            self._follow(part)
            try:
                self.sock.settimeout(self.context.timeout())
                self.sock.sendall(part)
            except TimeoutError:
                raise Failed(
                    "the server to read the file being sent",
                    f"a write of file data did not complete in {self.context.timeout():.1f} s",
                    timed_out=True,
                ) from None
            self.bytes_out += len(part)
        if data:
            self.trace.add(self.label, "->", f"{len(data)} bytes of file data")

    def _follow(self, data: bytes) -> None:
        # Keep the client-role connection in step with what we send (see the module docstring).
        mirror = self._mirror
        if mirror is None or not data:
            return
        mirror.receive_data(data)
        while True:
            try:
                event = mirror.next_event()
            except cw.RemoteProtocolError:
                self._mirror = None  # deliberately malformed: the server should close
                return
            if event is cw.NEED_DATA:
                return
            if event is cw.PAUSED:
                mirror.send(cw.Accepted())  # assume the login succeeds; NE ends it anyway
                continue
            try:
                if isinstance(event, cw.FileData):
                    data_size = (
                        event.data.nbytes if isinstance(event.data, memoryview) else len(event.data)
                    )
                    self.conn.account_file_data(data_size)
                elif not isinstance(event, cw.ConnectionClosed):
                    self.conn.send(event)
            except cw.LocalProtocolError:
                self._mirror = None  # we broke the order on purpose; stop following
                return

    def shutdown_write(self) -> None:
        """End our side of the stream (the server sees the end of the stream)."""
        self.trace.add(self.label, "->", "(end of stream)")
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self, *, reset: bool = False) -> None:
        """Close the connection: a normal close (the server sees the end of the stream), or a
        TCP reset. A normal close also wakes a thread blocked on the socket."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                if reset:
                    self.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                else:
                    self.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.sock.close()

    def drop(self, *, reset: bool = False) -> None:
        """Vanish without ``quit``: close at once, with a TCP reset if ``reset``."""
        self.trace.add(self.label, "--", "drops the connection" + (" (reset)" if reset else ""))
        self.close(reset=reset)

    # --- Receiving --------------------------------------------------------------------------

    def _pump(self, timeout: float) -> bool:
        """Read once, waiting up to ``timeout`` seconds, and decode. False if nothing came."""
        if self.eof:
            return False
        try:
            self.sock.settimeout(max(timeout, 0.001))
            data = self.sock.recv(1 << 18)
        except TimeoutError:
            return False
        except OSError as exc:
            if self.closed:  # closed by the kit: the case overran its timeout
                raise Failed("the case to finish in time", "the case was stopped") from None
            if not is_disconnect(exc):
                raise
            data = b""
            self.reset = True
        self.bytes_in += len(data)
        if not data:
            self.eof = True
            self.trace.add(self.label, "<-", "(end of stream)")
        else:
            self._raw += data
        self.conn.receive_data(data)
        self._decode()
        return True

    def _decode(self) -> None:
        while self.error is None:
            try:
                event = self.conn.next_event()
            except cw.RemoteProtocolError as exc:
                self.error = self._violation(exc)
                break
            if event is cw.NEED_DATA or event is cw.PAUSED:
                break
            start, end = self._consumed, self.conn.bytes_received
            raw = bytes(self._raw[start - self._base : end - self._base])
            self._consumed = end
            if isinstance(event, cw.FileData):
                assert self._file is not None
                self._file.hash.update(event.data)
                self._file.size += len(raw)
                if self._file.parts is not None:
                    self._file.parts.append(raw)
                continue
            if isinstance(event, cw.FileEnd):
                assert self._file is not None
                incoming, self._file = self._file, None
                data = b"".join(incoming.parts) if incoming.parts is not None else None
                self._deliver(
                    Frame(
                        incoming.event,
                        incoming.raw,
                        data,
                        incoming.size,
                        incoming.hash.hexdigest(),
                    ),
                    extra=f"{incoming.size} bytes of file data",
                )
                continue
            if isinstance(event, cw.ConnectionClosed):
                break
            expected = canonical_head(event)
            if expected is not None and raw != expected:
                self.error = Failed(
                    "every server frame in the one form of spec 2.2 (no other bytes encode "
                    f"{describe(event)})",
                    f"received {render(raw)!s}; the correct bytes are {render(expected)!s}",
                    requirement=EXACT_FORM,
                )
                self.trace.add(self.label, "<-", f"{render(raw)}  <-- not the form of spec 2.2")
                break
            if isinstance(event, cw.FileRelay):
                self._file = _IncomingFile(event, raw)
                self.trace.add(self.label, "<-", f"{describe(event)} [{render(raw, 40)}]")
                continue
            self._deliver(Frame(event, raw))
        drop = self._consumed - self._base
        if drop > 0:
            del self._raw[:drop]
            self._base = self._consumed

    def _deliver(self, frame: Frame, extra: str | None = None) -> None:
        self.received.append(frame)
        if extra is not None:
            self.trace.add(self.label, "<-", f"... {extra} (end of the file)")
        else:
            self.trace.add(self.label, "<-", str(frame))
        if isinstance(frame.event, cw.Notice):
            self.notices.append(frame)
        elif isinstance(frame.event, _REPLIES):
            self.replies.append(frame)
        else:
            self.relays.append(frame)

    def _violation(self, exc: cw.RemoteProtocolError) -> Failed:
        offset = exc.offset if exc.offset is not None else self._consumed
        at = max(offset - self._base, 0)
        frame_start = max(self._consumed - self._base, 0)
        shown = bytes(self._raw[frame_start : max(at + 10, frame_start + 10)])
        header = bytes(self._raw[at : at + cw.HEADER_SIZE])
        why = explain_header(header) if exc.section in ("2.3", "2.6") else ""
        actual = f"{exc.message} (spec {exc.section}, byte {offset} of the stream)"
        if shown:
            actual += f"; the bytes: {render(shown)}"
        if why:
            actual += f"; {why}"
        self.trace.add(self.label, "<-", f"{render(shown)}  <-- refused: {exc}")
        return Failed(
            _EXPECTED_FORM.get(exc.section or "", f"well-formed frames (spec {exc.section})"),
            actual,
            requirement=broken_requirement(exc.section),
        )

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _wait(self, ready: deque[Frame], what: str, timeout: float | None) -> Frame:
        limit = self.context.timeout(timeout)
        deadline = time.monotonic() + limit
        while True:
            self._check()
            if ready:
                return ready.popleft()
            if self.eof:
                raise Failed(
                    what,
                    f"the server closed the connection of {self.label}"
                    + (" with a reset" if self.reset else ""),
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(what, f"nothing within {limit:.1f} s ({self._seen()})", timed_out=True)
            self._pump(left)

    def _seen(self) -> str:
        if self._file is not None:
            return (
                f"inside a file relay: {self._file.size} of {self._file.event.size} data bytes "
                "arrived"
            )
        if self.received:
            return f"last frame received: {self.received[-1]}"
        return "nothing received on this connection"

    def reply(self, what: str = "a reply", timeout: float | None = None) -> Frame:
        """The next reply frame (``ACC``, ``NE``, ``NC`` or a list reply); relays arriving
        meanwhile are kept for `relay`."""
        return self._wait(self.replies, what, timeout)

    def expect_reply(self, kind: type[E], what: str, timeout: float | None = None) -> E:
        """The next reply, which must be a ``kind``; ``what`` describes it for the report."""
        frame = self.reply(what, timeout)
        if not isinstance(frame.event, kind):
            raise Failed(what, f"{frame}")
        return frame.event

    def relay(self, what: str = "a relay", timeout: float | None = None) -> Frame:
        """The next relay (``msg-relay`` or ``file-relay``, notices skipped); replies arriving
        meanwhile are kept for `reply`."""
        return self._wait(self.relays, what, timeout)

    def expect_message(self, sender: str, text: str, what: str | None = None) -> None:
        """The next relay must be ``text`` from ``sender``."""
        what = what or f"msg-relay from {sender!r}: {text[:40]!r}"
        frame = self.relay(what)
        event = frame.event
        if not isinstance(event, cw.MessageRelay) or event.sender != sender or event.text != text:
            raise Failed(what, str(frame))

    def expect_file(self, sender: str, name: str, data: bytes, what: str | None = None) -> Frame:
        """The next relay must be the file ``name`` from ``sender`` with exactly ``data``."""
        what = what or f"file-relay from {sender!r}: {name!r} ({len(data)} bytes)"
        frame = self.relay(what, timeout=self.context.timeout() + len(data) / 20e6)
        event = frame.event
        if not isinstance(event, cw.FileRelay) or event.sender != sender or event.name != name:
            raise Failed(what, str(frame))
        if event.size != len(data):
            raise Failed(what, f"a file of {event.size} bytes instead of {len(data)}")
        if frame.sha256 != hashlib.sha256(data).hexdigest():
            actual = "the data differs from what was sent"
            if frame.data is not None:
                for index, (a, b) in enumerate(zip(frame.data, data, strict=False)):
                    if a != b:
                        actual += f" (first at data byte {index}: {a:#04x} instead of {b:#04x})"
                        break
            raise Failed(what + ", byte-identical", actual)
        return frame

    def quiet(self, seconds: float | None = None, what: str = "nothing") -> None:
        """Nothing but notices arrives for ``seconds`` (default: the quiet option).

        Raises:
            Failed: a reply or relay arrived; the connection closed.
        """
        seconds = self.context.options.quiet if seconds is None else seconds
        deadline = time.monotonic() + min(seconds, self.context.remaining())
        while True:
            self._check()
            if self.replies or self.relays:
                frame = (self.replies or self.relays)[0]
                raise Failed(what, f"{self.label} received {frame}")
            left = deadline - time.monotonic()
            # A file frame that has begun is followed to its end within the wait, so that the
            # report names the whole frame whatever the segments it arrived in; one still
            # unfinished then is reported as it stands (one the stream ends inside is the
            # decoder's error, raised by `_check`).
            if self._file is not None and left <= 0:
                raise Failed(what, f"{self.label} is receiving {describe(self._file.event)}")
            if self.eof:
                raise Failed(what, f"the server closed the connection of {self.label}")
            if left <= 0:
                return
            self._pump(left)

    def expect_close(self, what: str | None = None, timeout: float | None = None) -> list[Frame]:
        """Read until the server ends the stream; returns the frames received meanwhile. Any
        frame legal in the state is tolerated (the decoder refuses the others)."""
        what = what or f"the server to close the connection of {self.label}"
        limit = self.context.timeout(timeout)
        deadline = time.monotonic() + limit
        start = len(self.received)
        while not self.eof:
            self._check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(
                    what, f"still open after {limit:.1f} s ({self._seen()})", timed_out=True
                )
            self._pump(left)
        self._check()
        return self.received[start:]

    def drain(self, seconds: float) -> None:
        """Read whatever comes for ``seconds`` (or until the end of the stream)."""
        deadline = time.monotonic() + seconds
        while not self.eof and (left := deadline - time.monotonic()) > 0:
            self._pump(left)
            self._check()

    # --- Requests ---------------------------------------------------------------------------

    def login(self, nick: str) -> Frame:
        """Send ``login`` and return the answer (``ACC`` or ``NE``, checked by the decoder)."""
        self.send(cw.Login(nick=nick))
        frame = self.reply(f"ACC or NE to the login of {nick!r}")
        if isinstance(frame.event, cw.Accepted):
            self.nick = nick
            self.label = nick
        return frame

    def list_nicks(self, what: str = "a list-reply") -> list[str]:
        """Send ``list`` and return the nicks of the reply."""
        self.send(cw.ListRequest())
        return list(self.expect_reply(cw.ListReply, what).nicks)

    def change_nick(self, nick: str) -> cw.Event:
        """Send ``nick`` and return the reply (``NickChanged`` or ``Refused``)."""
        self.send(cw.NickRequest(nick=nick))
        event = self.reply(f"NC or NE to the nick request for {nick!r}").event
        if isinstance(event, cw.NickChanged):
            self.nick = nick
        return event

    def expect_refused_and_closed(self, what: str) -> None:
        """The answer to a first frame must be ``NE``, then the end of the stream (3.1.1)."""
        if self.conn.state is cw.State.LOGIN:
            # The first frame was not a login (a malformed vector): the server still answers
            # NE (spec 3.1.1, 6.3), so let the decoder expect an answer.
            self.conn.send(cw.Login(nick=""))
        frame = self.reply(what)
        if not isinstance(frame.event, cw.Refused):
            raise Failed(what, str(frame))
        self.expect_close(f"the server to close the connection of {self.label} after NE")


class CaseContext:
    """Everything one server case works with (see the module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint,
        options: KitOptions,
        *,
        timeout: float,
        nicks: NickSource | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.options = options
        self.trace = Trace()
        self.nick = nicks or NickSource()
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.probes: list[Probe] = []
        self._lock = threading.Lock()
        self._aborted = False

    def remaining(self) -> float:
        """Seconds left before the case's deadline."""
        return max(self.deadline - time.monotonic(), 0.0)

    def timeout(self, seconds: float | None = None) -> float:
        """A wait of ``seconds`` (default: the wait option), cut to the case's deadline.

        Raises:
            Failed: the case's time is up.
        """
        wanted = self.options.wait if seconds is None else seconds
        left = self.remaining()
        if left <= 0.01:
            raise Failed(
                "the case to finish within its timeout",
                f"out of time after {time.monotonic() - self.started:.1f} s",
                timed_out=True,
            )
        return min(wanted, left)

    def connect(self, label: str | None = None) -> Probe:
        """A new connection, not logged in."""
        if self._aborted:
            raise Failed("the case to finish within its timeout", "the case was stopped")
        probe = Probe(self, label or f"c{len(self.probes) + 1}")
        with self._lock:
            self.probes.append(probe)
        return probe

    def login(self, nick: str | None = None, label: str | None = None) -> Probe:
        """A new connection logged in as ``nick`` (a fresh one by default): the setup of most
        cases, so a failure here is the case's setup failing (`Failed.setup`), which a SHOULD
        or MAY case reports as FAIL, not as a miss or an observation.

        Raises:
            Failed: the server did not answer ``ACC``.
        """
        nick = nick or self.nick()
        what = f"ACC to the login of the free, valid nick {nick!r}"
        probe = self.connect(label or nick)  # raises a setup failure of its own
        try:
            frame = probe.login(nick)
        except Failed as exc:
            raise Failed(
                exc.expected,
                exc.actual,
                requirement=exc.requirement or LOGIN_ACCEPTED,
                setup=True,
                timed_out=exc.timed_out,
            ) from None
        if not isinstance(frame.event, cw.Accepted):
            raise Failed(what, str(frame), requirement=LOGIN_ACCEPTED, setup=True)
        return probe

    def heard(self) -> bool:
        """True once any connection of the case received a byte or the end of the stream."""
        with self._lock:
            probes = list(self.probes)
        return any(probe.bytes_in or probe.eof for probe in probes)

    def crowd(self, count: int) -> list[Probe]:
        """``count`` logged-in clients."""
        return [self.login() for _ in range(count)]

    def vectors(self, name: str) -> Any:
        """The vectors of ``spec/vectors/<name>.json``.

        Raises:
            Skipped: the vectors cannot be found (see ``--vectors``).
        """
        return load_vectors(name, self.options.vectors)

    def close_all(self) -> None:
        """Close every connection of the case (also called from the runner on a timeout)."""
        self._aborted = True
        with self._lock:
            probes = list(self.probes)
        for probe in probes:
            probe.close()

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.remaining()))

    def frames(self, count: int = 12) -> list[str]:
        """The last frames exchanged, for the report."""
        return self.trace.last(count)


def skip_unless(condition: bool, reason: str) -> None:
    """Raise `Skipped` with ``reason`` unless ``condition``."""
    if not condition:
        raise Skipped(reason)


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` cut in pieces of ``size`` bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
