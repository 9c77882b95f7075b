"""Deliberately faulty servers, to prove that the conformance kit catches what it must.

Each fault is the reference server with one defect injected, without touching chatserver/:
`FaultyServer` swaps, for its own objects only, the class of the room, of each session or of
each transport for a subclass defined here (plain ``__class__`` assignment on objects whose
classes have no slots), and a few faults patch one module-level name of ``chatserver.room`` for
the life of the server. The classes are the usual chatserver ones everywhere else.

`FAULTS` maps a fault's name to its description, how to inject it, and the MUST cases of the
kit that must fail against it, each with why: the section of the requirement the failure is
reported under and a fragment of its "Actual" line (``tests/test_conformance_faults.py``
asserts exactly that, so a case credited with a fault fails because of that fault, not because
of some other frame), with the sections or ids to run so that each test stays short.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import chatwire as cw
from chatserver import Server, ServerConfig
from chatserver.room import Room
from chatserver.session import Session
from chatserver.transports import SocketTransport

# --- Rewriting the server's bytes ------------------------------------------------------------


def _fields(header: bytes) -> list[bytes]:
    return header.split()


def _frames(blob: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(header, payload) of each whole server frame in ``blob`` (no file relays: those go
    through `write_file`)."""
    at = 0
    while at < len(blob):
        header = blob[at : at + 10]
        fields = _fields(header)
        if fields[0] in (b"ACC", b"NE", b"NC"):
            size = 0
        elif fields[0] == b"msg":
            size = int(fields[1]) + int(fields[2])
        else:  # a list reply: a bare size
            size = int(fields[0])
        yield header, blob[at + 10 : at + 10 + size]
        at += 10 + size


class RewritingTransport(SocketTransport):
    """Passes every header the server writes through `rewrite`."""

    @staticmethod
    def rewrite(header: bytes) -> bytes:
        return header

    def write(self, data: bytes | bytearray | memoryview) -> None:
        blob = bytes(data)
        super().write(b"".join(self.rewrite(h) + p for h, p in _frames(blob)))

    def write_file(self, head: bytes, spool: Any) -> None:
        # head = "file a b" header, nick, name, then the bare size header
        first = head[:10]
        body = head[10:-10]
        super().write_file(self.rewrite(first) + body + self.rewrite(head[-10:]), spool)


class NulPaddingTransport(RewritingTransport):
    @staticmethod
    def rewrite(header: bytes) -> bytes:
        return b" ".join(_fields(header)).ljust(10, b"\x00")


class NulPaddingAfterAccTransport(RewritingTransport):
    """NUL padding in every header but ACC: logins work, every later frame is wrong."""

    @staticmethod
    def rewrite(header: bytes) -> bytes:
        if header == b"ACC       ":
            return header
        return b" ".join(_fields(header)).ljust(10, b"\x00")


class RightAlignedTransport(RewritingTransport):
    @staticmethod
    def rewrite(header: bytes) -> bytes:
        return b" ".join(_fields(header)).rjust(10)


class LeadingZeroTransport(RewritingTransport):
    @staticmethod
    def rewrite(header: bytes) -> bytes:
        fields = _fields(header)
        for index, value in enumerate(fields):
            if value.isdigit() and len(b" ".join(fields)) < 10:
                fields[index] = b"0" + value
                break
        return b" ".join(fields).ljust(10)


class _ShortSpool:
    """A spool that claims one byte less than it holds."""

    def __init__(self, spool: Any) -> None:
        self._spool = spool
        self.fd = spool.fd
        self.size = spool.size - 1

    def acquire(self) -> None:
        self._spool.acquire()

    def release(self) -> None:
        self._spool.release()


class TruncatingTransport(SocketTransport):
    """Relays every non-empty file without its last byte (its size header says so too)."""

    def write_file(self, head: bytes, spool: Any) -> None:
        if spool.size == 0:
            super().write_file(head, spool)
            return
        short = _ShortSpool(spool)
        super().write_file(head[:-10] + str(short.size).encode().ljust(10), short)  # type: ignore[arg-type]


class BlockingTransport(SocketTransport):
    """Writes with blocking sends: one client that does not read stalls the whole server."""

    def _blocking(self, data: bytes | memoryview) -> bool:
        try:
            self._sock.setblocking(True)
            self._sock.sendall(data)
            return True
        except OSError as exc:
            self._finish(f"write error: {exc}")
            return False
        finally:
            with contextlib.suppress(OSError):
                self._sock.setblocking(False)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost or not data:
            return
        self._blocking(bytes(data))

    def write_file(self, head: bytes, spool: Any) -> None:
        if self._closing or self._lost or not self._blocking(head):
            return
        offset = 0
        while offset < spool.size:
            chunk = os.pread(spool.fd, min(1 << 20, spool.size - offset), offset)
            if not self._blocking(chunk):
                return
            offset += len(chunk)


class BlockingMessagesTransport(BlockingTransport):
    """Blocking sends for every write but file relays (replies, message relays, notices), which
    are queued as usual: a flood of files past a client that does not read goes through, a
    flood of messages stalls the whole server."""

    def write_file(self, head: bytes, spool: Any) -> None:
        SocketTransport.write_file(self, head, spool)


# --- Faulty rooms and sessions -----------------------------------------------------------------


class EchoRoom(Room):
    """Relays every message and file to its sender too."""

    def relay_text(self, sender: Any, text: str) -> None:
        super().relay_text(sender, text)
        self._batch[-1] = (None, self._batch[-1][1])

    def relay_file(self, sender: Any, name: str, spool: Any) -> None:
        super().relay_file(sender, name, spool)
        self._batch[-1] = (None, self._batch[-1][1])


class SortedListRoom(Room):
    """Lists nicks in alphabetical order (legal: spec 3.1.2 leaves the order open)."""

    def nicks(self) -> tuple[str, ...]:
        return tuple(sorted(super().nicks(), key=str.casefold))


class StaleNickRoom(Room):
    """After a rename, message relays still carry the old nick."""

    def rename(self, member: Any, nick: str) -> None:
        old = member.nick_bytes
        super().rename(member, nick)
        member.nick_bytes = old


class GhostOnQuitSession(Session):
    """A client that sends quit stays in the room: listed, its nick taken."""

    def _handle(self, event: object) -> None:
        if isinstance(event, cw.Quit):
            self.logged_in = False  # so that logging out skips the room
        super()._handle(event)


class GhostOnDropSession(Session):
    """A client whose connection drops (no quit) stays in the room."""

    def eof_received(self) -> None:
        self.logged_in = False
        super().eof_received()

    def connection_lost(self, reason: str) -> None:
        if not self.closed:
            self.logged_in = False
        super().connection_lost(reason)


class _NoHolder:
    """Makes the room believe no one holds any nick, during one call."""

    def __init__(self, session: Session) -> None:
        self.room = session.server.room

    def __enter__(self) -> None:
        self.room.holder = lambda nick: None  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        del self.room.holder


class DuplicateLoginSession(Session):
    """Accepts a login as a nick already in use (ACC instead of NE)."""

    def _login(self, nick: str) -> None:
        with _NoHolder(self):
            super()._login(nick)


class TakenNickSession(Session):
    """Answers NC to a change to a nick in use."""

    def _change_nick(self, nick: str) -> None:
        with _NoHolder(self):
            super()._change_nick(nick)


class LateListSession(Session):
    """Answers list requests 50 ms late, after later replies: replies out of order."""

    def _reply(self, event: Any) -> None:
        if self.connection.state is cw.State.AWAIT_ACC:
            super()._reply(event)  # the login's answer goes through the state machine
            return
        data = cw.encode(event)
        if isinstance(event, cw.ListReply):
            self.server.reactor.call_later(0.05, lambda: self.transport.write(data))
        else:
            self.transport.write(data)


class _Tee:
    """A spool that also hands every byte written to it to other clients at once."""

    def __init__(self, spool: Any, targets: list[Any]) -> None:
        self.spool = spool
        self.targets = targets

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.spool.write(data)
        for transport in self.targets:
            transport.write(bytes(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spool, name)


class CutThroughSession(Session):
    """Relays a file as it arrives, before its last byte (no store-and-forward)."""

    def _start_upload(self, event: Any) -> None:
        super()._start_upload(event)
        if self._upload is None:
            return
        room = self.server.room
        room.flush()
        targets = [member.transport for member in room if member is not self]
        head = cw.encode(cw.FileRelay(sender=self.nick, name=event.name, size=event.size))
        for transport in targets:
            transport.write(head)
        self._upload = _Tee(self._upload, targets)  # type: ignore[assignment]

    def _finish_upload(self) -> None:
        upload = self._upload
        self._upload = None
        assert upload is not None
        upload.release()


class SilentRefusalSession(Session):
    """Closes on a malformed first frame without answering NE."""

    def _protocol_error(self, exc: cw.RemoteProtocolError) -> None:
        if exc.reply is not None:
            self._end(f"protocol error: {exc}")
            self.transport.abort("malformed login")
            return
        super()._protocol_error(exc)


# --- The server ----------------------------------------------------------------------------------


class FaultyServer(Server):
    """The reference server with the classes of its room, sessions or transports swapped."""

    room_class: type[Room] | None = None
    session_class: type[Session] | None = None
    transport_class: type[SocketTransport] | None = None

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        if self.room_class is not None:
            self.room.__class__ = self.room_class

    def _on_transport(self, transport: Any) -> None:
        if self.transport_class is not None and type(transport) is SocketTransport:
            transport.__class__ = self.transport_class
        super()._on_transport(transport)
        if self.session_class is not None:
            for session in self.sessions:
                if session.transport is transport and type(session) is Session:
                    session.__class__ = self.session_class


@dataclass(frozen=True)
class Fault:
    """One injected defect and what must catch it."""

    description: str
    #: MUST case id -> (section of the requirement it fails under, fragment of its Actual line)
    catches: dict[str, tuple[str, str]]
    only: tuple[str, ...]  # the cases to run (ids or sections)
    room: type[Room] | None = None
    session: type[Session] | None = None
    transport: type[SocketTransport] | None = None
    patches: dict[str, Callable[..., Any]] = field(default_factory=dict)


def _exact_key(nick: str) -> str:
    return nick


_NUL = "padded or separated with NUL bytes"
FAULTS: dict[str, Fault] = {
    "nul-padding": Fault(
        "headers padded with NUL bytes instead of spaces",
        {"acc-bytes": ("2.2", "ACC\\x00\\x00\\x00\\x00\\x00\\x00\\x00; " + _NUL)},
        ("acc-bytes",),
        transport=NulPaddingTransport,
    ),
    "nul-padding-after-acc": Fault(
        "every header but ACC padded with NUL bytes: replies, list replies and relays",
        {
            "ne-bytes": ("2.2", "NE\\x00\\x00"),
            "nc-bytes": ("2.2", "NC\\x00\\x00"),
            "list-reply-bytes": ("2.2", _NUL),
            "msg-relay-bytes": ("2.2", "header b'msg 4 5\\x00"),
            "file-relay-bytes": ("2.2", "header b'file 4 5\\x00"),
            "sizes-count-bytes": ("2.2", _NUL),
        },
        ("2.2",),
        transport=NulPaddingAfterAccTransport,
    ),
    "right-aligned": Fault(
        "headers right-aligned (padding before the fields)",
        {"acc-bytes": ("2.2", "right-aligned or starting with a space")},
        ("acc-bytes",),
        transport=RightAlignedTransport,
    ),
    "leading-zeros": Fault(
        "sizes written with a leading zero ('msg 04 5')",
        {
            "msg-relay-bytes": ("2.2", "size '04' has a leading zero"),
            "list-reply-bytes": ("2.2", "has a leading zero"),
            "file-relay-bytes": ("2.2", "size '04' has a leading zero"),
        },
        ("2.2",),
        transport=LeadingZeroTransport,
    ),
    "echo": Fault(
        "messages and files relayed back to their sender",
        {
            "no-echo": ("3.1.7", "received msg-relay from"),
            "msg-to-all-others": ("3.1.7", "received msg-relay from"),
            "file-to-all-others": ("3.1.7", "received file-relay from"),
        },
        ("3.1.7",),
        room=EchoRoom,
    ),
    "ghost-after-quit": Fault(
        "a user who quit is still listed and keeps the nick",
        {
            "list-quit": ("7.1", "still names"),
            "quit-frees-nick": ("7.1", "NE to every login as"),
        },
        ("7.1", "3.1.5"),
        session=GhostOnQuitSession,
    ),
    "ghost-after-drop": Fault(
        "a user whose connection dropped is still listed and keeps the nick",
        {
            "list-drop": ("7.1", "still names"),
            "drop-frees-nick": ("7.1", "NE to every login as"),
            "reset-frees-nick": ("7.1", "still names"),
            "drop-mid-frame": ("7.1", "still names"),
        },
        ("7.1", "3.1.5"),
        session=GhostOnDropSession,
    ),
    "truncated-file": Fault(
        "file relays lose the file's last byte",
        {
            "file-relay-bytes": ("2.2", "a file of 2 bytes instead of 3"),
            "file-to-all-others": ("3.1.7", "a file of 99999 bytes instead of 100000"),
            "file-names": ("3.1.7.1", "bytes instead of"),
            "file-large": ("2.8.8", "bytes instead of"),
        },
        ("2.2", "3.1.7.1", "2.8.8"),
        transport=TruncatingTransport,
    ),
    "case-sensitive-nicks": Fault(
        "nick uniqueness compares nicks byte for byte ('Ana' and 'ana' coexist)",
        {
            "login-equal-nicks": ("3.1.1", "is logged in: ACC"),
            "nick-taken-other-case": ("3.1.3", "was accepted while"),
        },
        ("2.8.4",),
        patches={"chatserver.room.nick_key": _exact_key},
    ),
    "duplicate-login": Fault(
        "a login as a nick in use is accepted (ACC, no NE)",
        {"login-taken": ("3.1.1", "ACC [ACC       ]"), "ne-bytes": ("2.2", "ACC [ACC       ]")},
        ("login-taken", "ne-bytes"),
        session=DuplicateLoginSession,
    ),
    "nc-for-taken-nick": Fault(
        "a change to a nick in use is answered NC",
        {
            "nick-taken": ("3.1.3", "NC: the change to the nick of"),
            "nick-refused-keeps-old": ("3.1.3", "NC: the change to the nick of"),
            "nick-taken-other-case": ("3.1.3", "NC: the change to"),
        },
        ("3.1.3", "2.8.4"),
        session=TakenNickSession,
    ),
    "replies-out-of-order": Fault(
        "list replies overtaken by later nick replies",
        {"replies-in-order": ("4.3", "but the oldest pending request is list")},
        ("5.2",),
        session=LateListSession,
    ),
    "cut-through-files": Fault(
        "files relayed while they arrive, before they are complete",
        {
            "file-store-and-forward": ("3.1.4", "is receiving file-relay"),
            "file-sender-drops": ("7.1", "inside a file relay: "),
        },
        ("3.1.4",),
        session=CutThroughSession,
    ),
    "stall-on-slow-reader": Fault(
        "blocking writes: a client that does not read stalls everyone",
        {"slow-reader": ("7.3", "the server stalls on the silent client")},
        ("slow-reader",),
        transport=BlockingTransport,
    ),
    "stall-on-slow-reader-messages": Fault(
        "blocking writes of messages only: a client that does not read stalls message relays",
        {"slow-reader": ("7.3", "messages sent, then nothing")},
        ("slow-reader",),
        transport=BlockingMessagesTransport,
    ),
    "no-ne-on-malformed-login": Fault(
        "a malformed first frame is not answered NE before the close",
        {
            "login-malformed": ("6.3", "the server closed the connection of header-"),
            "login-invalid-nicks": ("3.1.1", "the server closed the connection of"),
        },
        ("login-malformed", "login-invalid-nicks"),
        session=SilentRefusalSession,
    ),
    "stale-nick-after-rename": Fault(
        "message relays carry the old nick after NC",
        {"nick-change-relays": ("3.1.3", ": 'after'")},
        ("nick-change-relays",),
        room=StaleNickRoom,
    ),
}


#: Behaviours the spec leaves open, injected the same way: no MUST case may fail against them;
#: ``catches`` maps the MAY cases that observe them to a fragment of their observation.
VARIANTS: dict[str, Fault] = {
    "sorted-list": Fault(
        "the user list in alphabetical order, not in join order",
        {"list-order": ("3.1.2", "sorted")},
        ("list-order", "3.1.2"),
        room=SortedListRoom,
    ),
}


@contextlib.contextmanager
def faulty_server(name: str, **settings: Any) -> Iterator[Server]:
    """The reference server with the fault (or variant) ``name`` injected, on a thread, on
    127.0.0.1:0."""
    fault = FAULTS[name] if name in FAULTS else VARIANTS[name]
    settings.setdefault("listen", ["tcp://127.0.0.1:0"])
    server_class = type(
        f"Faulty_{name.replace('-', '_')}",
        (FaultyServer,),
        {
            "room_class": fault.room,
            "session_class": fault.session,
            "transport_class": fault.transport,
        },
    )
    with contextlib.ExitStack() as stack:
        for target, replacement in fault.patches.items():
            stack.enter_context(mock.patch(target, replacement))
        server = server_class(ServerConfig(**settings))
        thread = threading.Thread(target=server.serve_forever, name=f"faulty {name}", daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.stop()
            thread.join(timeout=15)
            assert not thread.is_alive(), f"the faulty server {name!r} did not stop"


def silent_server(answer_logins: int = 0) -> tuple[socket.socket, threading.Event]:
    """A listener that accepts connections and never answers (a hung server); with
    ``answer_logins``, the first that many connections get ``ACC`` once their first 10 bytes
    arrive (a server that goes mute during the run). Returns the listening socket and an event
    that stops its thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(5.0)
            got = b""
            while len(got) < 10 and (data := conn.recv(10 - len(got))):
                got += data
            conn.sendall(b"ACC       ")

    def serve() -> None:
        accepted = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = listener.accept()
                held.append(conn)  # read nothing, answer nothing
                accepted += 1
                if accepted <= answer_logins:
                    threading.Thread(target=answer, args=(conn,), daemon=True).start()
        for conn in held:
            conn.close()
        listener.close()

    threading.Thread(target=serve, name="silent server", daemon=True).start()
    return listener, stop
