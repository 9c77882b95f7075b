"""Transports: a byte stream with a write queue, under the reactor and above a socket.

The session and room code know only the `Transport` interface below; a transport knows nothing
of the protocol. Adding a transport (WebSocket, say) means writing one more class here and one
more case in `Listener`; sessions and the room do not change.

Writing follows CPython's ``asyncio/selector_events.py`` (``_SelectorSocketTransport.write``):
try to send at once; queue what the socket did not take; watch for writability only while
something is queued. Queued bytes go out with one ``sendmsg`` (scatter-gather) per readiness, so
what a recipient is owed leaves in as few system calls as possible. A relayed file is queued by
reference to its spool (`chatserver.files`) and sent with ``os.sendfile`` on plain sockets
(zero copy; TCP sockets are corked for the length of the file frame, so only full segments
leave), or through a bounded 256 KiB buffer under TLS.

The write queue is bounded (spec 7.3, "SendQ exceeded"): whoever writes (a reply, a relay, a
notice), a write that leaves more than ``max_queued_bytes`` unsent bytes or more than
``max_queued_files`` files queued closes the transport at once, dropping the queue. The check is
one integer compare, made only when something is queued (the socket refused part of a write).

Callbacks into the protocol (the session), in order, like ``asyncio/protocols.py``:
``data_received(data)*`` then at most one ``eof_received()`` (the peer closed its side), and
exactly once ``connection_lost(reason)`` when the transport is closed for any reason (by us, by
the peer, or by an error). After ``connection_lost`` nothing more is called.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import itertools
import logging
import os
import socket
import ssl
import sys
from collections import deque
from collections.abc import Callable
from typing import Protocol as TypingProtocol

from chatwire.transport import Endpoint, cork, listen

from .files import Spool
from .reactor import Reactor, Timer

__all__ = [
    "Listener",
    "SocketTransport",
    "TLSTransport",
    "Transport",
    "TransportProtocol",
    "prepare",
]

log = logging.getLogger("chatserver")

READ_SIZE = 256 * 1024  # read in large chunks: many frames per system call
# Diverted reads that cannot be spliced (TLS) land in this one buffer, reused for every read:
# one thread, and each piece is written out before the next read. Not allocating per read is
# what makes uploads fast (measured on loopback: recv_into 3.3 GB/s, splice 4.1, recv 1.4-2.8).
_DIVERT_BUFFER = memoryview(bytearray(1 << 20))
_GATHER = 64  # buffers per sendmsg
_COALESCE = 64 * 1024  # queued writes smaller than this are copied together
_TLS_CHUNK = 256 * 1024  # the bounded buffer for files under TLS


# Work per readiness is bounded, so one transfer never holds up the rest of the reactor: chat
# to everyone else waits at most one pass, whatever files are moving (spec 5.4: "a server SHOULD
# NOT make one recipient's frames wait for a file going to another"). Measured on loopback with
# ten receivers of a 1 GiB file and four chatters (bench/bench_server.py filechat): sending
# without a bound, one sendfile loop ran for up to 600 ms; at 1 MiB per receiver per pass chat
# beyond a receiver's own file stays under ~10 ms p99 and the aggregate rate is unchanged; at
# 256 KiB the rate drops. Uploads: 2 MiB per pass gave chat p99 ~12 ms against ~45 ms at 8 MiB.
_DIVERT_BUDGET = 2 << 20  # upload bytes moved into the spool per readiness, at most
_FILE_BUDGET = 1 << 20  # file data sent to one receiver per readiness, at most
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


@functools.cache
def _splice_pipe() -> tuple[int, int, int] | None:
    """The one pipe every spliced upload goes through: (read end, write end, capacity), or
    ``None`` where splice is missing. One pipe is enough: each splice into it is emptied into
    the spool before the reactor does anything else."""
    if not hasattr(os, "splice"):
        return None
    read_end, write_end = os.pipe()
    size = 1 << 16
    with contextlib.suppress(OSError):  # F_SETPIPE_SZ (1031): bigger pieces, fewer calls
        size = fcntl.fcntl(write_end, 1031, 1 << 20)
    return read_end, write_end, size


def prepare() -> None:
    """Set up what all transports share (the splice pipe) now, at start: afterwards a
    connection costs its socket and nothing else, so descriptor counts stay comparable."""
    _splice_pipe()


def _empty_pipe(read_end: int, count: int) -> None:
    while count > 0:
        count -= len(os.read(read_end, min(count, 1 << 16)))


def _ignore(count: int) -> None:
    pass


class _WriteError(Exception):
    """The file we were moving received bytes into refused them."""


class TransportProtocol(TypingProtocol):
    """What a transport calls (see the module docstring for the order)."""

    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self, reason: str) -> None: ...


_Buffer = bytes | bytearray | memoryview


class _FileItem:
    """A file relay waiting in a queue: its head bytes, then its data from the spool."""

    __slots__ = ("corked", "head", "offset", "spool")

    def __init__(self, head: bytes, spool: Spool) -> None:
        self.head: bytes | memoryview = head
        self.spool = spool
        self.offset = 0
        self.corked = False


class Transport:
    """A non-blocking socket with a write queue (plain TCP or Unix; see `TLSTransport`).

    Attributes:
        peer: who is at the other end, for log lines.
        scheme: ``"tcp"``, ``"unix"`` or ``"tls"``.
        queued_bytes: bytes waiting to be sent, file data excluded (files are queued by
            reference); what the server's SendQ limit counts.
        queued_files: relayed files waiting or being sent.
        max_queued_bytes, max_queued_files: the SendQ limits (`set_sendq`); unbounded until set.
        overflowed: true once the transport was closed for exceeding them.
    """

    scheme = "tcp"
    max_queued_bytes = sys.maxsize
    max_queued_files = sys.maxsize

    def __init__(self, reactor: Reactor, sock: socket.socket, peer: str) -> None:
        self._reactor = reactor
        self._sock = sock
        self._fd = sock.fileno()
        self.peer = peer
        self.protocol: TransportProtocol | None = None
        self._queue: deque[_Buffer | _FileItem] = deque()
        self.queued_bytes = 0
        self.queued_files = 0
        self._writing = False  # EVENT_WRITE registered
        self._reading = False
        self._closing = False  # close once the queue is empty
        self._lingering = False  # write side shut; discarding input until EOF or the timer
        self._linger_seconds = 0.0
        self._timer: Timer | None = None
        self._lost = False
        self.overflowed = False
        #: reactor time of the last byte sent, or of the write that found the queue empty
        self.last_progress = reactor.time()
        self._sent_file = False
        self._divert_left = 0
        self._divert_fd = -1
        self._divert_progress: Callable[[int], None] = _ignore

    # --- Life --------------------------------------------------------------------------------

    def start(self, protocol: TransportProtocol) -> None:
        """Attach the protocol and start reading."""
        self.protocol = protocol
        self.resume_reading()

    def set_sendq(self, max_bytes: int, max_files: int) -> None:
        """Bound the write queue (spec 7.3): more than ``max_bytes`` unsent bytes (file data
        excluded: files are queued by reference) or ``max_files`` queued files closes the
        transport, with a reason that starts "SendQ exceeded"."""
        self.max_queued_bytes = max_bytes
        self.max_queued_files = max_files

    @property
    def unsent_bytes(self) -> int:
        """Every byte still owed to the peer, file data included (for shutdown's log line)."""
        return self.queued_bytes + sum(
            item.spool.size - item.offset for item in self._queue if type(item) is _FileItem
        )

    @property
    def closed(self) -> bool:
        return self._lost

    def stalled_for(self, now: float) -> float:
        """Seconds the queue has waited without a byte going out (0 when nothing is queued)."""
        return now - self.last_progress if self._queue else 0.0

    @property
    def closing(self) -> bool:
        return self._closing or self._lost

    def pause_reading(self) -> None:
        if self._reading and not self._lost:
            self._reading = False
            self._reactor.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._lost:
            self._reading = True
            self._reactor.add_reader(self._fd, self._on_readable)

    def close(self, *, timeout: float | None = None, linger: float = 0.0) -> None:
        """Send what is queued, then close. After ``timeout`` seconds, abort instead.

        With ``linger``, once the queue is empty the write side is shut and input is read and
        discarded until the peer closes or ``linger`` seconds pass: the peer sees a clean end of
        stream, never a reset caused by bytes of its own that we did not read."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._divert_left = 0  # nothing more goes to the session's upload: it is gone
        self._linger_seconds = linger
        if not self._queue:
            if linger:
                self._start_linger()
            else:
                self._finish("closed")
        elif timeout is not None:
            self._timer = self._reactor.call_later(
                timeout, lambda: self._finish("closed (flush timed out)")
            )

    def close_lingering(self, seconds: float = 1.0) -> None:
        """Send what is queued (for ``seconds`` at most), shut the write side, then read and
        discard input until the peer closes or ``seconds`` pass: the lingering close of spec
        3.1.1, so the last frame (``NE``) is not destroyed by a TCP reset."""
        self.close(timeout=seconds, linger=seconds)

    def abort(self, reason: str = "aborted") -> None:
        """Close now, dropping whatever is queued."""
        self._finish(reason)

    def _start_linger(self) -> None:
        self._lingering = True
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._finish("closed")
            return
        self.resume_reading()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._reactor.call_later(self._linger_seconds, lambda: self._finish("closed"))

    def _finish(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        self._reactor.forget(self._fd)
        for item in self._queue:
            if type(item) is _FileItem:
                item.spool.release()
        self._queue.clear()
        self.queued_bytes = 0
        self.queued_files = 0
        self._close_socket()
        if self.protocol is not None:
            self.protocol.connection_lost(reason)

    def _close_socket(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    # --- Reading -----------------------------------------------------------------------------

    def divert(self, count: int, fd: int, progress: Callable[[int], None]) -> None:
        """Move the next ``count`` received bytes straight into the file ``fd``, instead of
        handing them to ``data_received``, calling ``progress(n)`` after each piece written.

        Plain sockets splice them (socket -> pipe -> file: no copy through Python); TLS reads
        them into one reused buffer and writes that. After ``count`` bytes, reading goes back to
        ``data_received``. An end of stream meanwhile is reported as ``eof_received``; a failed
        write to ``fd`` (a full disk) closes the connection.
        """
        self._divert_left = count
        self._divert_fd = fd
        self._divert_progress = progress

    def _recv(self) -> bytes:
        return self._sock.recv(READ_SIZE)

    def _recv_into(self, buffer: memoryview) -> int:
        return self._sock.recv_into(buffer)

    def _move(self, fd: int, limit: int) -> int:
        """Move up to ``limit`` received bytes into ``fd``; 0 at end of stream. Raises
        BlockingIOError when nothing is there, and `_WriteError` when ``fd`` refuses them."""
        pipe = _splice_pipe()
        if pipe is None:  # no splice on this system: the reused buffer
            return self._copy(fd, limit)
        read_end, write_end, size = pipe
        count = os.splice(self._fd, write_end, min(limit, size), flags=_SPLICE_FLAGS)
        moved = 0
        try:
            while moved < count:
                moved += os.splice(read_end, fd, count - moved)
        except OSError as exc:
            _empty_pipe(read_end, count - moved)  # the pipe is shared: leave it empty
            raise _WriteError(exc) from exc
        return count

    def _copy(self, fd: int, limit: int) -> int:
        count = self._recv_into(_DIVERT_BUFFER[: min(limit, len(_DIVERT_BUFFER))])
        view = _DIVERT_BUFFER[:count]
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise _WriteError(exc) from exc
        return count

    def _read_diverted(self) -> None:
        # Keep moving while bytes are there, up to a budget: one trip round the event loop per
        # piece costs more than the piece (measured: ~2.3 GB/s one piece per wake-up), while
        # the budget (~2 ms of work) keeps one upload from holding up everyone else.
        moved = 0
        count = -1  # -1: no end of stream seen
        while self._divert_left and moved < _DIVERT_BUDGET:
            try:
                count = self._move(self._divert_fd, self._divert_left)
            except (BlockingIOError, InterruptedError):
                break
            except _WriteError as exc:
                self._finish(f"cannot write the upload to the spool: {exc.__cause__}")
                return
            except OSError as exc:
                self._finish(_read_error(exc))
                return
            if count == 0:
                break
            self._divert_left -= count
            moved += count
        if moved:
            self._divert_progress(moved)
        if count == 0 and not self._lost:
            self._divert_left = 0
            self.pause_reading()
            assert self.protocol is not None
            self.protocol.eof_received()

    def _on_readable(self) -> None:
        if self._divert_left:
            self._read_diverted()
            return
        try:
            data = self._recv()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(_read_error(exc))
            return
        if self._lingering:
            if not data:
                self._finish("closed")
            return  # discarded
        if data:
            assert self.protocol is not None
            self.protocol.data_received(data)
        else:
            self.pause_reading()
            assert self.protocol is not None
            self.protocol.eof_received()

    # --- Writing -----------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` after everything queued before it."""
        if self._closing or self._lost or not data:
            return
        if isinstance(data, bytearray):
            data = bytes(data)  # the caller may reuse its buffer
        if not self._queue:
            try:
                sent = self._send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._finish(_why(exc))
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self.last_progress = self._reactor.time()  # the queue starts now
            self._queue.append(data)
        else:
            # Behind a backlog, small writes (replies, one member's relays of a pass) share one
            # buffer: queued as objects of their own, 10-byte replies would cost several times
            # their size in memory, and the SendQ counts bytes. The head is never extended
            # (TLS retries it as it was).
            queue = self._queue
            tail = queue[-1]
            if type(tail) is bytearray and len(tail) < _COALESCE and len(queue) > 1:
                tail += data
            elif len(data) < _COALESCE:
                queue.append(bytearray(data))
            else:
                queue.append(data)
        self.queued_bytes += len(data)
        if self.queued_bytes > self.max_queued_bytes:
            self._overflow()
            return
        self._watch_writable()

    def write_file(self, head: bytes, spool: Spool) -> None:
        """Send a file relay: ``head`` (its headers, nick and name), then the spool's data."""
        if self._closing or self._lost:
            return
        spool.acquire()
        if not self._queue:
            self.last_progress = self._reactor.time()
        self._queue.append(_FileItem(head, spool))
        self.queued_bytes += len(head)
        self.queued_files += 1
        if self.queued_files > self.max_queued_files or self.queued_bytes > self.max_queued_bytes:
            self._overflow()
            return
        if len(self._queue) == 1:
            self._on_writable()
        else:
            self._watch_writable()

    def _overflow(self) -> None:
        # spec 7.3: the peer does not read what it is owed; whoever wrote last, it goes now.
        self.overflowed = True
        self._finish(
            f"SendQ exceeded ({self.queued_bytes} bytes and {self.queued_files} files queued; "
            f"limits {self.max_queued_bytes} bytes, {self.max_queued_files} files)"
        )

    def _watch_writable(self) -> None:
        if not self._writing:
            self._writing = True
            self._reactor.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        before = (self.queued_bytes, self.queued_files, len(self._queue))
        try:
            self._drain()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._finish(_why(exc))
            return
        if (self.queued_bytes, self.queued_files, len(self._queue)) != before or self._sent_file:
            self.last_progress = self._reactor.time()
            self._sent_file = False
        if self._queue:
            self._watch_writable()
            return
        if self._writing:
            self._writing = False
            self._reactor.remove_writer(self._fd)
        if self._closing and not self._lingering:
            if self._linger_seconds:
                self._start_linger()
            else:
                self._finish("closed")

    def _drain(self) -> None:
        # Raises BlockingIOError when the socket is full.
        queue = self._queue
        while queue:
            item = queue[0]
            if type(item) is _FileItem:
                if not item.corked:
                    item.corked = self._cork(True)
                while item.head:
                    sent = self._send(item.head)
                    self.queued_bytes -= sent
                    item.head = memoryview(item.head)[sent:]
                size = item.spool.size
                budget = _FILE_BUDGET
                while item.offset < size:
                    if budget <= 0:
                        return  # the rest next pass (still watching writability)
                    sent = self._send_file(
                        item.spool.fd, item.offset, min(size - item.offset, budget)
                    )
                    item.offset += sent
                    budget -= sent
                    self._sent_file = True
                if item.corked:
                    self._cork(False)
                queue.popleft()
                self.queued_files -= 1
                item.spool.release()
                continue
            buffers = self._gather(queue)
            total = sum(len(b) for b in buffers)
            sent = self._send_many(buffers)
            self.queued_bytes -= sent
            left = sent
            while left:
                first = queue[0]
                size = len(first)  # type: ignore[arg-type]
                if size <= left:
                    queue.popleft()
                    left -= size
                else:
                    queue[0] = memoryview(first)[left:]  # type: ignore[arg-type]
                    left = 0
            if sent < total:
                return  # the socket took less: wait for writability

    def _gather(self, queue: deque[_Buffer | _FileItem]) -> list[_Buffer]:
        """The leading byte buffers of the queue to send in one call."""
        buffers: list[_Buffer] = []
        for entry in queue:
            if type(entry) is _FileItem or len(buffers) == _GATHER:
                break
            buffers.append(entry)  # type: ignore[arg-type]
        return buffers

    def _send(self, data: bytes | bytearray | memoryview) -> int:
        return self._sock.send(data)

    def _cork(self, on: bool) -> bool:
        """Hold back partial segments while a file frame goes out (`SocketTransport`); true if
        the socket is now corked, and must be uncorked when the frame is done."""
        return False

    def _send_many(self, buffers: list[_Buffer]) -> int:
        if len(buffers) == 1:
            return self._sock.send(buffers[0])
        return self._sock.sendmsg(buffers)

    def _send_file(self, fd: int, offset: int, count: int) -> int:
        sent = os.sendfile(self._fd, fd, offset, count)
        if sent == 0:
            raise OSError(errno.EIO, "spool file shorter than announced")
        return sent


def _why(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer (while writing)"
    if isinstance(exc, ConnectionError | ssl.SSLEOFError):
        return "connection lost (while writing)"
    return f"write error: {exc}"


def _read_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer"
    return f"read error: {exc}"


class SocketTransport(Transport):
    """Plain TCP or Unix domain sockets: ``sendmsg`` for queued bytes, ``os.sendfile`` for
    files."""

    def _cork(self, on: bool) -> bool:
        # Only full segments while a file frame goes out (chatwire.transport.cork says why);
        # uncorked at the frame's end, so what follows the file is not held back.
        return cork(self._sock, on)


class TLSTransport(Transport):
    """TLS over a non-blocking ``ssl.SSLSocket``. The handshake runs on the reactor before the
    protocol is attached; files go through a bounded buffer (no ``sendfile`` through TLS)."""

    scheme = "tls"

    def __init__(self, reactor: Reactor, sock: ssl.SSLSocket, peer: str) -> None:
        super().__init__(reactor, sock, peer)
        self._tls: ssl.SSLSocket = sock
        self._on_ready: Callable[[TLSTransport], None] | None = None
        self._on_failed: Callable[[], None] | None = None
        self._file_buffer: bytes = b""
        self._file_buffer_at = -1
        # OpenSSL wants a write that failed with "want write" retried with the same bytes: the
        # head of the queue is frozen until it goes out.
        self._frozen = False

    def handshake(
        self,
        on_ready: Callable[[TLSTransport], None],
        timeout: float,
        on_failed: Callable[[], None] | None = None,
    ) -> None:
        """Run the TLS handshake; call ``on_ready(self)`` when done, or close on failure (with
        a log line) and call ``on_failed()``."""
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._timer = self._reactor.call_later(timeout, lambda: self._timed_out(timeout))
        self._step_handshake()

    def _timed_out(self, timeout: float) -> None:
        log.info("%s: TLS handshake timed out after %g s; closing", self.peer, timeout)
        self._handshake_failed("TLS handshake timed out")

    def _handshake_failed(self, reason: str) -> None:
        self._finish(reason)
        if self._on_failed is not None:
            self._on_failed()

    def _step_handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._reactor.remove_writer(self._fd)
            self._reactor.add_reader(self._fd, self._step_handshake)
            return
        except ssl.SSLWantWriteError:
            self._reactor.remove_reader(self._fd)
            self._reactor.add_writer(self._fd, self._step_handshake)
            return
        except (ssl.SSLError, OSError) as exc:
            why = getattr(exc, "reason", None) or exc
            log.info("%s: TLS handshake failed: %s; closing", self.peer, why)
            self._handshake_failed("TLS handshake failed")
            return
        self._reactor.remove_reader(self._fd)
        self._reactor.remove_writer(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self._on_ready is not None
        self._on_ready(self)

    def _recv(self) -> bytes:
        try:
            data = self._tls.recv(READ_SIZE)
        except ssl.SSLWantReadError:
            raise BlockingIOError from None
        except ssl.SSLWantWriteError:
            raise BlockingIOError from None
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLEOFError:
            return b""
        # Decrypted bytes may wait inside the TLS object where epoll cannot see them.
        pending = self._tls.pending()
        if pending and data:
            return data + self._tls.recv(pending)
        return data

    def _move(self, fd: int, limit: int) -> int:
        return self._copy(fd, limit)  # decrypted bytes exist only in Python: no splice

    def _recv_into(self, buffer: memoryview) -> int:
        try:
            count = self._tls.recv_into(buffer)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0
        # Decrypted bytes may wait inside the TLS object where epoll cannot see them.
        while count < len(buffer) and self._tls.pending():
            more = self._tls.recv_into(buffer[count:])
            if not more:
                break
            count += more
        return count

    def _send(self, data: bytes | bytearray | memoryview) -> int:
        try:
            sent = self._tls.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            self._frozen = True
            raise BlockingIOError from None
        self._frozen = False
        return sent

    def _gather(self, queue: deque[_Buffer | _FileItem]) -> list[_Buffer]:
        # Merge the leading small buffers into one record-sized buffer *in the queue*, so a
        # retry offers exactly the same bytes; never re-merge a frozen head.
        if not self._frozen and len(queue) > 1 and type(queue[1]) is not _FileItem:
            parts: list[_Buffer] = []
            size = 0
            while queue and type(queue[0]) is not _FileItem and size < _TLS_CHUNK:
                part = queue.popleft()
                parts.append(part)  # type: ignore[arg-type]
                size += len(part)  # type: ignore[arg-type]
            queue.appendleft(b"".join(parts))
        return [queue[0]]  # type: ignore[list-item]

    def _send_many(self, buffers: list[_Buffer]) -> int:
        return self._send(buffers[0])

    def _send_file(self, fd: int, offset: int, count: int) -> int:
        # Read one bounded chunk at a time; after a short write, the rest of the same chunk is
        # offered again (TLS wants the same bytes retried), read again from the spool.
        if self._file_buffer_at != offset:
            self._file_buffer = os.pread(fd, min(count, _TLS_CHUNK), offset)
            self._file_buffer_at = offset
            if not self._file_buffer:
                raise OSError(errno.EIO, "spool file shorter than announced")
        sent = self._send(self._file_buffer)
        self._file_buffer = self._file_buffer[sent:]
        self._file_buffer_at = offset + sent if self._file_buffer else -1
        return sent

    def _close_socket(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            self._tls.close()


class Listener:
    """Accepts connections on one endpoint and hands each new transport to ``on_transport``
    (for TLS, once its handshake is done).

    A TLS handshake holds a descriptor and OpenSSL's buffers before any session exists, so
    ``admit(peer)``, if given, is asked before one starts (the server's connection limit counts
    handshakes in progress, `handshaking`); a connection it refuses is closed at once.
    """

    def __init__(
        self,
        reactor: Reactor,
        endpoint: Endpoint,
        on_transport: Callable[[Transport], None],
        *,
        handshake_timeout: float = 10.0,
        backlog: int = 4096,
        admit: Callable[[str], bool] | None = None,
    ) -> None:
        self._reactor = reactor
        self._on_transport = on_transport
        self._admit = admit
        self.handshaking = 0  # TLS handshakes in progress
        self._serial = itertools.count(1)  # tells Unix-socket clients apart in log lines
        self._handshake_timeout = handshake_timeout
        self._context = endpoint.server_context() if endpoint.scheme == "tls" else None
        self.sock = listen(endpoint, backlog=backlog)
        self.endpoint = endpoint
        if endpoint.scheme != "unix":
            self.endpoint = endpoint.with_port(self.sock.getsockname()[1])
        self._fd = self.sock.fileno()
        self._paused = False  # closed for good
        reactor.add_reader(self._fd, self._accept)

    @property
    def url(self) -> str:
        return self.endpoint.url

    def _accept(self) -> None:
        for _ in range(128):  # a burst of connections is taken in one pass
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a moment rather than spin.
                    log.warning(
                        "%s: cannot accept (%s); pausing accepts for 0.5 s", self.url, exc.strerror
                    )
                    self._reactor.remove_reader(self._fd)
                    self._reactor.call_later(0.5, self._resume)
                    return
                log.warning("%s: accept failed: %s", self.url, exc)
                return
            sock.setblocking(False)
            peer = _describe_peer(self.endpoint, address, next(self._serial))
            if self.endpoint.scheme == "unix":
                transport = SocketTransport(self._reactor, sock, peer)
                transport.scheme = "unix"
                self._on_transport(transport)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is None:
                self._on_transport(SocketTransport(self._reactor, sock, peer))
                continue
            if self._admit is not None and not self._admit(peer):
                sock.close()
                continue
            tls = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            self.handshaking += 1
            TLSTransport(self._reactor, tls, peer).handshake(
                self._handshaken, self._handshake_timeout, self._handshake_over
            )

    def _handshaken(self, transport: TLSTransport) -> None:
        self.handshaking -= 1
        self._on_transport(transport)

    def _handshake_over(self) -> None:
        self.handshaking -= 1

    def _resume(self) -> None:
        if not self._paused:
            self._reactor.add_reader(self._fd, self._accept)

    def close(self) -> None:
        if self._paused:
            return
        self._paused = True
        self._reactor.forget(self._fd)
        self.sock.close()
        if self.endpoint.scheme == "unix":
            with contextlib.suppress(OSError):
                os.unlink(self.endpoint.path)


def _describe_peer(endpoint: Endpoint, address: object, serial: int) -> str:
    if endpoint.scheme == "unix":
        # Unix-socket clients have no address of their own: number them per listener.
        return f"unix:{endpoint.path}#{serial}"
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if isinstance(host, str) and host.startswith("::ffff:"):
            host = host[7:]
        return f"{host}:{port}" if ":" not in str(host) else f"[{host}]:{port}"
    return str(address)
