"""A server double for the client tests: a plain socket server speaking raw bytes.

The real chatserver never sends anything malformed or hostile, and decides on its own when
replies and relays interleave. `FakeServer` runs a test's script for each connection, so a test
can send exactly the bytes it wants (escape sequences in nicks and texts, dangerous file names,
a file cut short, replies between relays) at exactly the moment it wants. Client frames are read
with a server-role chatwire `Connection`, which also checks that what our client sends is legal.

Everything listens on 127.0.0.1 on an ephemeral port; every read has a timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import chatwire as cw

E = TypeVar("E", bound=cw.Event)

ACC = b"ACC       "
NE = b"NE        "
NC = b"NC        "


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def header(*fields: object) -> bytes:
    """A 10-byte header of ``fields`` joined by spaces (spec 2.2)."""
    text = " ".join(str(field) for field in fields).encode("ascii")
    assert len(text) <= 10, text
    return text.ljust(10)


def msg_relay(sender: str | bytes, text: str | bytes) -> bytes:
    nick, body = _bytes(sender), _bytes(text)
    return header("msg", len(nick), len(body)) + nick + body


def notice(text: str | bytes) -> bytes:
    return msg_relay(b"", text)


def list_reply(*nicks: str) -> bytes:
    body = "\n".join(nicks).encode("utf-8")
    return header(len(body)) + body


def file_relay(
    sender: str | bytes, name: str | bytes, data: bytes, size: int | None = None
) -> bytes:
    """A whole ``file-relay`` frame, or with ``size`` larger than ``data`` a cut one."""
    nick, raw_name = _bytes(sender), _bytes(name)
    announced = len(data) if size is None else size
    return header("file", len(nick), len(raw_name)) + nick + raw_name + header(announced) + data


class FakePeer:
    """The server's end of one connection to the client under test."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.conn = cw.Connection(cw.Role.SERVER)
        self.nick = ""

    def next(self) -> cw.Event:
        """The next frame the client sent (file data merged), or ConnectionClosed."""
        while True:
            event = self.conn.next_event()
            if event is cw.NEED_DATA:
                try:
                    data = self.sock.recv(1 << 16)
                except ConnectionResetError:
                    data = b""
                self.conn.receive_data(data)
                continue
            assert event is not cw.PAUSED
            return event  # type: ignore[return-value]

    def expect(self, kind: type[E]) -> E:
        event = self.next()
        while isinstance(event, cw.FileData | cw.FileEnd) and kind not in (cw.FileData, cw.FileEnd):
            event = self.next()
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event

    def login(self, accept: bool = True) -> str:
        """Read the login; answer ACC (or NE and close)."""
        event = self.next()
        assert isinstance(event, cw.Login), event
        self.nick = event.nick
        self.sock.sendall(self.conn.send(cw.Accepted() if accept else cw.Refused()))
        return event.nick

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_closed(self) -> None:
        """Read (and discard) until the client closes."""
        with contextlib.suppress(OSError):
            while self.sock.recv(1 << 16):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class FakeServer:
    """Runs ``script(peer)`` on a thread for each accepted connection, then closes it.

    Exceptions in scripts are collected and re-raised by ``__exit__`` (a failed assertion in a
    script fails the test).
    """

    def __init__(self, script: Callable[[FakePeer], None], *, timeout: float = 10.0) -> None:
        self.script = script
        self.timeout = timeout
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.errors: list[BaseException] = []
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FakeServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the blocked accept() (Linux), which then fails and returns.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(self.timeout)
        self.listener.close()
        if self.errors and exc[0] is None:
            raise self.errors[0]

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        peer = FakePeer(sock, self.timeout)
        try:
            self.script(peer)
        except BaseException as exc:  # reported by __exit__
            self.errors.append(exc)
        finally:
            peer.close()
