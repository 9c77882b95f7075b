"""Test support shared by the server, client and conformance tests: a server in this process
(on a thread) or in a subprocess, and a small blocking protocol client over real sockets.

Everything binds 127.0.0.1 on ephemeral ports (or Unix sockets in a temp dir) and is bounded in
time: every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import chatwire as cw
from chatserver import Server, ServerConfig
from chatwire.transport import connect, parse_endpoint

ROOT = Path(__file__).resolve().parent.parent
E = TypeVar("E", bound=cw.Event)


@contextlib.contextmanager
def running_server(**settings: Any) -> Iterator[Server]:
    """A `Server` on a background thread, listening on 127.0.0.1:0 unless told otherwise."""
    settings.setdefault("listen", ["tcp://127.0.0.1:0"])
    server = Server(ServerConfig(**settings))
    thread = threading.Thread(target=server.serve_forever, name="chatserver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the server did not stop within 15 s"


def url_of(server: Server, index: int = 0) -> str:
    return server.urls[index]


@dataclass
class ServerProcess:
    """A ``python -m chatserver`` subprocess; its stderr is collected in ``log``."""

    process: subprocess.Popen[str]
    urls: list[str]
    log: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        """The first log line matching ``pattern`` (a regular expression), waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if re.search(pattern, line):
                    return line
            time.sleep(0.02)
        raise AssertionError(
            f"no log line matching {pattern!r} in {timeout} s:\n" + "\n".join(self.log[-30:])
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def server_process(
    *args: str, listen: list[str] | None = None, timeout: float = 20.0
) -> Iterator[ServerProcess]:
    """Start ``python -m chatserver`` with ``args``; yields once it listens."""
    listen = listen or ["tcp://127.0.0.1:0"]
    command = [
        sys.executable,
        "-m",
        "chatserver",
        *[a for url in listen for a in ("--listen", url)],
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    urls: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while len(urls) < len(listen):
        line = process.stdout.readline()
        if not line:
            err = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"chatserver exited before listening: {err}")
        match = re.search(r"listening on (\S+)", line)
        if match:
            urls.append(match.group(1))
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("chatserver did not start in time")
    handle = ServerProcess(process, urls)

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            handle.log.append(line.rstrip("\n"))

    handle._reader = threading.Thread(target=pump, daemon=True)
    handle._reader.start()
    try:
        yield handle
    finally:
        handle.stop()
        if process.stdout:
            process.stdout.close()


def short(event: object, limit: int = 200) -> str:
    """``repr(event)``, cut to ``limit`` characters for readable failures."""
    text = repr(event)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class Peer:
    """A blocking protocol client for tests: a socket and a client-role chatwire Connection.

    Every receive waits at most ``timeout`` seconds and fails the test with what it saw.
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, sock: socket.socket | None = None
    ) -> None:
        self.sock = sock or connect(parse_endpoint(url), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.conn = cw.Connection(cw.Role.CLIENT)
        self.seen: list[cw.Event] = []  # every event received, in order
        self._ready: list[cw.Event] = []

    @classmethod
    def login(cls, url: str, nick: str, **kwargs: Any) -> Peer:
        """A peer logged in as ``nick`` (fails the test on NE)."""
        peer = cls(url, **kwargs)
        peer.send(cw.Login(nick=nick))
        peer.expect(cw.Accepted)
        return peer

    def send(self, event: cw.Event) -> None:
        self.sock.sendall(self.conn.send(event))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_file(self, name: str, data: bytes) -> None:
        self.send(cw.File(name=name, size=len(data)))
        if data:
            self.send(cw.FileData(data=data))
        self.send(cw.FileEnd())

    def _fill(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is cw.NEED_DATA:
                break
            self._ready.append(event)  # type: ignore[arg-type]
            if isinstance(event, cw.ConnectionClosed):
                return
        if self._ready:
            return
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        self.conn.receive_data(data)

    def next(self, timeout: float | None = None) -> cw.Event:
        """The next event (file data merged into one FileData per file)."""
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        while not self._ready:
            try:
                self._fill()
            except TimeoutError as exc:
                raise AssertionError(
                    f"nothing received in time; seen so far: {self.seen[-10:]}"
                ) from exc
        event = self._ready.pop(0)
        if isinstance(event, cw.FileData):
            parts = [bytes(event.data)]
            while True:
                while not self._ready:
                    self._fill()
                if isinstance(self._ready[0], cw.FileData):
                    parts.append(bytes(self._ready.pop(0).data))  # type: ignore[union-attr]
                else:
                    break
            event = cw.FileData(data=b"".join(parts))
        self.seen.append(event)
        return event

    def expect(
        self, kind: type[E], timeout: float | None = None, *, skip_notices: bool = True
    ) -> E:
        """The next event, which must be a ``kind`` (notices skipped unless asked)."""
        while True:
            event = self.next(timeout)
            if skip_notices and isinstance(event, cw.Notice) and kind is not cw.Notice:
                continue
            assert isinstance(event, kind), f"expected {kind.__name__}, got {short(event)}"
            return event

    def expect_file(self, timeout: float | None = None) -> tuple[cw.FileRelay, bytes]:
        start = self.expect(cw.FileRelay, timeout)
        data = b""
        event = self.next(timeout)
        if isinstance(event, cw.FileData):
            data = bytes(event.data)
            event = self.next(timeout)
        assert isinstance(event, cw.FileEnd), event
        assert len(data) == start.size
        return start, data

    def expect_closed(self, timeout: float | None = None) -> None:
        """The server closes the connection (notices before it allowed)."""
        while True:
            try:
                event = self.next(timeout)
            except cw.RemoteProtocolError:
                return  # truncated by the close
            if isinstance(event, cw.ConnectionClosed):
                return
            assert isinstance(event, cw.Notice), (
                f"expected the connection to close, got {short(event)}"
            )

    def nothing_for(self, seconds: float) -> None:
        """Nothing arrives within ``seconds`` (notices allowed)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.next(left)
            except AssertionError:
                return
            assert isinstance(event, cw.Notice), f"expected nothing, got {short(event)}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def small_window_socket(url: str, size: int = 4096) -> socket.socket:
    """A TCP socket to ``url`` with a small receive buffer, set *before* connecting (after the
    handshake the window is already negotiated): a client that will stop reading."""
    endpoint = parse_endpoint(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.settimeout(10)
    sock.connect((endpoint.host, endpoint.port))
    return sock


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def spool_files(pid: int, spool_dir: str | os.PathLike[str]) -> list[str]:
    """The spool files a server process holds open: anonymous files (created unlinked, so
    /proc shows them as ``DIR/#inode (deleted)``) in its spool directory."""
    base = f"/proc/{pid}/fd"
    prefix = os.path.realpath(spool_dir) + "/"
    held = []
    for fd in os.listdir(base):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"{base}/{fd}")
            if target.startswith(prefix) and target.endswith("(deleted)"):
                held.append(target)
    return held


def open_fds(pid: int | None = None) -> int:
    """Open file descriptors of a process (this one by default), from /proc."""
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from /proc/PID/status, in KiB: ``VmRSS`` (now) or
    ``VmHWM`` (the peak so far)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0])


def pattern_block(index: int, size: int = 1 << 20) -> bytes:
    """Block ``index`` of a test file: ``size`` pseudo-random bytes that differ from every
    other block's, so a relay that sends the right amount of the wrong bytes (a block twice,
    an offset taken modulo the block size) fails a sha256 check. Deterministic: the sender
    and the checker build the same blocks."""
    return random.Random(index).randbytes(size)


def log_port(sock: socket.socket) -> str:
    """How the server's log lines name the client at the local end of ``sock``: its address,
    so that a test finds the lines of one connection among many."""
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def process_stats(proc: ServerProcess) -> dict[str, int]:
    """A server process's counters: asked for with SIGUSR1, read from the line it logs."""
    start = len(proc.log)
    proc.process.send_signal(signal.SIGUSR1)
    wait_until(lambda: any("stats: " in x for x in proc.log[start:]), what="a stats line")
    line = next(x for x in proc.log[start:] if "stats: " in x)
    return {k: int(v) for k, v in (p.split("=") for p in line.split("stats: ")[1].split())}


def read_to_end(sock: socket.socket, timeout: float = 20.0) -> tuple[bytes, str]:
    """Everything ``sock`` receives until the stream ends, and how it ended: ``"eof"`` (a
    clean close) or ``"reset"`` (which can destroy bytes not yet read)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not data:
            return b"".join(chunks), "eof"
        chunks.append(data)


def decode_relays(stream: bytes) -> list[cw.Event]:
    """The events of what a server sent a logged-in client (``stream`` follows its ACC)."""
    conn = cw.Connection(cw.Role.CLIENT)
    conn.send(cw.Login(nick="x"))
    conn.receive_data(b"ACC       " + stream)
    conn.receive_data(b"")
    return list(conn.events())[1:]
