"""The chatwire client library: a logged-in connection to a chat server, as a thread-safe object.

Use::

    from chatclient import connect, MessageReceived

    with connect("tcp://localhost:1234", "ana", downloads="~/chatwire-downloads") as client:
        client.send_text("hello")
        print(client.list_users().result(timeout=5))        # ('ana', 'bob')
        for event in client.events():                        # in order, until Disconnected
            if isinstance(event, MessageReceived):
                print(event.sender, event.text)

`connect` opens the transport (``tcp://``, ``unix://``, ``tls://`` via `chatwire.transport`),
sends ``login`` and waits for the answer, in the caller's thread. ``NE`` raises `LoginRefusedError`:
that connection is over (spec 3.1.1, 8.1) and trying another nick means calling `connect` again,
which opens a new one. ``ACC`` returns a `Client`.

Concurrency model. One I/O thread per client owns the socket and the chatwire `Connection`;
nothing else touches them, so the state machine needs no lock. It waits in ``selectors`` on the
socket and on a wake-up socket pair, never polling:

- Reading: received bytes go to ``Connection.receive_data``; each event becomes a client event
  (below) put on a `queue.Queue`, in the order received. File data is written to disk as it
  arrives (`chatclient.files.Download`), never held whole.
- Writing: the public methods (`send_text`, `send_file`, `list_users`, `change_nick`, `quit`)
  check their arguments in the caller's thread (building the chatwire event validates it),
  append a command to a FIFO and wake the I/O thread. The I/O thread runs the commands one after
  the other, so frames never interleave (spec 5.1) and a message queued behind a file waits for
  the file's last byte. A file is streamed from disk: ``os.sendfile`` on TCP and Unix sockets
  (with ``Connection.account_file_data``), 64 KiB reads under TLS; the socket is non-blocking
  and the thread alternates reading and writing, so a long upload never stops the reading of
  relays (a server drops a client that does not read, spec 7.3).
- Replies: a ``list`` or ``nick`` request is appended to a pending FIFO at the moment its frame
  is handed to the connection; each reply (``list-reply``, ``NC``, ``NE``) resolves the oldest
  entry (spec 5.2, 8.2), whatever relays arrive in between (spec 5.5). Each request returns a
  `concurrent.futures.Future` and also produces an event in the stream.

Thread-safety: every public method may be called from any thread. Events are meant for one
consumer (`next_event`/`events`). Progress callbacks run on the I/O thread: they must be quick
and must not wait for the client. When the connection ends for any reason, the last event is
`Disconnected` (later calls of `next_event` return it again), every unresolved future fails
with `ConnectionLostError`, and a partly received file is removed (spec 8.4).
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import selectors
import shutil
import socket
import ssl
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from chatwire import (
    NEED_DATA,
    Accepted,
    Connection,
    ConnectionClosed,
    Event,
    File,
    FileData,
    FileEnd,
    FileRelay,
    ListReply,
    ListRequest,
    LocalProtocolError,
    Login,
    Message,
    MessageRelay,
    NickChanged,
    NickRequest,
    Notice,
    Quit,
    Refused,
    RemoteProtocolError,
    Role,
    split_text,
)
from chatwire.transport import Endpoint, cork, parse_endpoint
from chatwire.transport import connect as open_transport

from .files import Download, ensure_folder

__all__ = [
    "ChatError",
    "Client",
    "ClientEvent",
    "ConnectError",
    "ConnectionLostError",
    "Disconnected",
    "FileDiscarded",
    "FileFuture",
    "FileIncoming",
    "FileProgress",
    "FileSaved",
    "FileSent",
    "LoginRefusedError",
    "MessageReceived",
    "NickAccepted",
    "NickRefused",
    "NoticeReceived",
    "ProgressCallback",
    "UserList",
    "connect",
]

T = TypeVar("T")

#: ``progress(done, size)``: bytes of a file sent so far, and its size.
ProgressCallback = Callable[[int, int], None]

_RECV_SIZE = 256 * 1024
_READS_PER_TURN = 8  # then let writes run: neither direction starves the other
_WRITE_BUDGET = 1 << 20  # bytes written per turn of the loop, for the same reason
_SENDFILE_CHUNK = 1 << 20
_TLS_CHUNK = 64 * 1024
_PROGRESS_INTERVAL = 0.1  # seconds between FileProgress events of one transfer
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


# --- Errors ---------------------------------------------------------------------------------


class ChatError(Exception):
    """Base class of the client's errors."""


class ConnectError(ChatError):
    """The connection could not be opened, or the login got no answer (no ``ACC`` or ``NE``)."""


class LoginRefusedError(ChatError):
    """The server answered the login with ``NE`` (spec 3.1.1): the nick is taken or not valid.

    The connection is closed; log in again with `connect`, which opens a new one (spec 8.1).
    """

    def __init__(self, nick: str) -> None:
        super().__init__(f"the server refused the nick {nick!r}: it is taken or not valid")
        self.nick = nick


class ConnectionLostError(ChatError):
    """The connection ended before a request was sent or answered; ``str()`` says why."""


# --- Events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """``sender`` said ``text`` (a ``msg-relay``, spec 3.1.7.2). Both are untrusted: show them
    with `chatclient.display`."""

    sender: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeReceived:
    """The server's own words (spec 3.1.8): for people only, never to act on."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserList:
    """The answer to `Client.list_users` (spec 3.1.2)."""

    nicks: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NickAccepted:
    """``NC``: our nick changed from ``old`` to ``new`` (spec 3.1.3)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NickRefused:
    """``NE`` to a nick request: ``nick`` was refused and the old nick stays (spec 3.1.3)."""

    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FileIncoming:
    """``sender`` started sending us a file (spec 3.1.7.1); its data follows."""

    sender: str
    name: str
    size: int
    transfer: int = 0  # the transfer's number: see FileProgress


@dataclass(frozen=True, slots=True, kw_only=True)
class FileProgress:
    """Progress of a file: ``"in"`` (being received) or ``"out"`` (being sent). Emitted at most
    every 0.1 s per transfer, and when the last byte has passed.

    ``transfer`` tells transfers apart when names repeat (two files called ``notes.txt``): a
    number unique within the client, counted from 1 over both directions, carried by every
    event of one transfer (`FileIncoming` to `FileSaved` or `FileDiscarded`; for a file we
    send, `FileFuture.transfer` to `FileSent`)."""

    direction: Literal["in", "out"]
    name: str
    done: int
    size: int
    elapsed: float  # seconds since the transfer started
    transfer: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSaved:
    """A received file is complete and saved at ``path`` (spec 8.4), under a safe name that may
    differ from ``name``, the name the sender gave."""

    sender: str
    name: str
    size: int
    path: str
    transfer: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FileDiscarded:
    """A received file was not saved (no download folder, disk error, transfer cut short);
    nothing of it is left on disk."""

    sender: str
    name: str
    reason: str
    transfer: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSent:
    """The last byte of a file we sent has been written to the connection."""

    name: str
    size: int
    transfer: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected:
    """The connection is over; always the last event. ``expected`` is true after `Client.quit`
    or `Client.close`, false when the server closed, the network failed or the server broke the
    protocol (spec 6.4)."""

    reason: str
    expected: bool


ClientEvent = (
    MessageReceived
    | NoticeReceived
    | UserList
    | NickAccepted
    | NickRefused
    | FileIncoming
    | FileProgress
    | FileSaved
    | FileDiscarded
    | FileSent
    | Disconnected
)


# --- Commands (caller thread -> I/O thread) -------------------------------------------------


@dataclass(slots=True, eq=False)
class _Request:
    """An unanswered ``list`` or ``nick`` request (spec 8.2)."""

    kind: Literal["list", "nick"]
    future: Future[Any]
    nick: str = ""


@dataclass(slots=True, eq=False)
class _Frames:
    """Frames to send back to back: the pieces of a text, or one request, or ``quit``."""

    events: list[Event]
    future: Future[Any]
    request: _Request | None = None


class FileFuture(Future[int]):
    """What `Client.send_file` returns: resolved with the size once the last byte is written.

    Attributes:
        transfer: the number the file's `FileProgress` and `FileSent` events carry.
    """

    def __init__(self, transfer: int) -> None:
        super().__init__()
        self.transfer = transfer


@dataclass(slots=True, eq=False)
class _Upload:
    """A file to send, open, with its announced size."""

    file: Any  # a binary file object; only its descriptor is used
    event: File
    future: FileFuture
    progress: ProgressCallback | None
    sent: int = 0
    started: float = 0.0
    last_report: float = 0.0
    corked: bool = False  # TCP_CORK set while the frame goes out


@dataclass(slots=True, eq=False)
class _Receiving:
    """The file being received, and where it goes."""

    event: FileRelay
    download: Download | None
    transfer: int
    problem: str = ""
    started: float = field(default_factory=time.monotonic)
    last_report: float = 0.0
    done: int = 0


class _End(Exception):  # noqa: N818 - a control-flow signal inside the I/O thread, not an error
    def __init__(self, reason: str, expected: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expected = expected


def _settle(future: Future[T], result: T) -> None:
    # A caller may have cancelled the future; that only means nobody waits for it.
    with contextlib.suppress(InvalidStateError):
        future.set_result(result)


def _fail(future: Future[Any], error: BaseException) -> None:
    with contextlib.suppress(InvalidStateError):
        future.set_exception(error)


#: Received files larger than this are discarded by default (the reference server's own limit).
DEFAULT_MAX_FILE_SIZE = 4 << 30
#: Free space a received file must leave on the download folder's disk, by default.
DEFAULT_KEEP_FREE = 1 << 30


def _undecodable(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
        return f"the byte 0x{code - 0xDC00:02x}, which is not UTF-8"
    return f"the lone surrogate U+{code:04X}"


_FILE_KINDS = (
    (stat.S_ISDIR, errno.EISDIR, "a folder"),
    (stat.S_ISFIFO, errno.EINVAL, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, errno.EINVAL, "a socket"),
    (stat.S_ISCHR, errno.EINVAL, "a character device"),
    (stat.S_ISBLK, errno.EINVAL, "a block device"),
)


def _not_regular(mode: int, path: str | os.PathLike[str]) -> OSError:
    code, kind = next(
        ((code, kind) for test, code, kind in _FILE_KINDS if test(mode)),
        (errno.EINVAL, "an unknown kind of file"),
    )
    return OSError(code, f"{kind}, not a regular file", os.fspath(path))


def _open_regular(path: str | os.PathLike[str]) -> Any:
    """Open ``path`` for reading if it is a regular file, without ever blocking.

    Opening a FIFO blocks until a writer comes (forever, for the UI's thread), and a device may
    block or never end; only regular files have a size to announce (spec 3.1.4). So: stat
    first, then open with O_NONBLOCK (a FIFO put there in between opens at once instead of
    blocking), check the opened file again, and clear O_NONBLOCK for the reads.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _not_regular(mode, path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced between the stat and the open
            raise _not_regular(mode, path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --- Connecting -----------------------------------------------------------------------------


def connect(
    url: str | Endpoint,
    nick: str,
    *,
    downloads: str | os.PathLike[str] | None = None,
    timeout: float = 10.0,
    quit_timeout: float = 5.0,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    keep_free: int = DEFAULT_KEEP_FREE,
) -> Client:
    """Connect to ``url`` and log in as ``nick`` (spec 3.1.1).

    Args:
        url: ``tcp://HOST:PORT``, ``unix:///PATH``, ``tls://HOST:PORT?ca=&cert=&key=`` (see
            `chatwire.transport`), or an `Endpoint`.
        nick: the nick to ask for; the server decides whether it is valid (spec 2.8.3).
        downloads: folder for received files (created if missing); ``None`` discards them.
        timeout: seconds to connect, and again to get the answer to the login.
        quit_timeout: seconds `Client.quit` waits for the server to close before closing.
        max_file_size: received files larger than this are read and discarded, not saved.
        keep_free: a received file is discarded if saving it would leave less free space
            than this on the download folder's disk.

    Returns:
        A logged-in `Client`.

    Raises:
        LoginRefusedError: the server answered ``NE``; the connection is closed.
        ConnectError: the connection failed, or the server closed it, broke the protocol or
            stayed silent instead of answering.
        chatwire.transport.EndpointError: ``url`` is not a valid endpoint.
        chatwire.LocalProtocolError: ``nick`` cannot be put in a login frame (over 9 bytes).
        OSError: the download folder cannot be created.
    """
    endpoint = parse_endpoint(url) if isinstance(url, str) else url
    login = Login(nick=nick)
    folder = ensure_folder(downloads) if downloads is not None else None
    try:
        sock = open_transport(endpoint, timeout=timeout)
    except OSError as exc:
        raise ConnectError(f"cannot connect to {endpoint.url}: {exc}") from exc
    connection = Connection(Role.CLIENT)
    try:
        _log_in(sock, connection, login, timeout)
    except BaseException:
        sock.close()
        raise
    return Client(
        sock,
        connection,
        nick=nick,
        url=endpoint.url,
        downloads=folder,
        quit_timeout=quit_timeout,
        max_file_size=max_file_size,
        keep_free=keep_free,
    )


def _log_in(sock: socket.socket, connection: Connection, login: Login, timeout: float) -> None:
    # Blocking, in the caller's thread: the I/O thread starts only once we are logged in.
    deadline = time.monotonic() + timeout
    try:
        sock.settimeout(timeout)
        sock.sendall(connection.send(login))
        while True:
            event = connection.next_event()
            if event is NEED_DATA:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                connection.receive_data(sock.recv(_RECV_SIZE))
            elif isinstance(event, Accepted):
                return
            elif isinstance(event, Refused):
                # spec 3.1.1: after NE the connection is over; the caller retries on a new one.
                raise LoginRefusedError(login.nick)
            else:  # ConnectionClosed: the state machine allows nothing else here (spec 4.3)
                raise ConnectError("the server closed the connection without answering the login")
    except TimeoutError as exc:
        raise ConnectError(f"no answer to the login within {timeout:g} s") from exc
    except RemoteProtocolError as exc:
        raise ConnectError(f"the server broke the protocol during login: {exc}") from exc
    except ssl.SSLError as exc:
        # The usual reason: the server requires a client certificate we did not present (or
        # one from another CA); it says so only by ending the TLS session.
        raise ConnectError(
            f"the server ended the TLS session during login ({exc.reason or exc}); "
            "if it requires client certificates, give --cert and --key"
        ) from exc
    except OSError as exc:
        raise ConnectError(f"the connection failed during login: {exc}") from exc


# --- The client -----------------------------------------------------------------------------


class Client:
    """A logged-in connection (see the module docstring). Build it with `connect`.

    Args:
        sock: a connected socket on which ``connection`` has received ``ACC``.
        connection: the client-role chatwire connection; the client owns both from now on.
        nick: the nick in force.
        url: the server, for messages.
        downloads: folder for received files (must exist), or ``None`` to discard them.
        quit_timeout: seconds to wait for the server to close after ``quit``.
        max_file_size: received files larger than this are discarded (see `connect`).
        keep_free: free space to leave on the download folder's disk (see `connect`).
    """

    def __init__(
        self,
        sock: socket.socket,
        connection: Connection,
        *,
        nick: str,
        url: str = "",
        downloads: Path | None = None,
        quit_timeout: float = 5.0,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        keep_free: int = DEFAULT_KEEP_FREE,
    ) -> None:
        self.url = url
        self.downloads = downloads
        self.max_file_size = max_file_size
        self.keep_free = keep_free
        self._nick = nick
        self._sock = sock
        self._conn = connection
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._quit_timeout = quit_timeout
        self._events: queue.Queue[ClientEvent] = queue.Queue()
        self._final: Disconnected | None = None  # the Disconnected already handed out
        # Caller threads -> I/O thread. _lock makes "still accepting" and "put" one step, so no
        # command can slip in after the I/O thread's last sweep (it would never be answered).
        self._commands: queue.SimpleQueue[_Frames | _Upload] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._accepting = True
        self._quitting = False
        self._close_requested = False
        self._quit_asked: float | None = None  # when quit() was called (monotonic)
        self._transfer_lock = threading.Lock()
        self._transfer_count = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # I/O thread state.
        self._queue: deque[_Frames | _Upload] = deque()
        self._pending: deque[_Request] = deque()
        self._out: memoryview | None = None  # bytes of the current frame still to write
        self._written: Future[Any] | None = None  # resolved when _out is all written
        self._upload: _Upload | None = None
        self._receiving: _Receiving | None = None
        self._quit_deadline: float | None = None
        self._last_written = time.monotonic()  # when a byte was last handed to the socket
        self._read_again = False  # TLS holds decrypted bytes that select() cannot see
        self._write_needs_read = False
        sock.setblocking(False)
        # Set when the I/O thread has finished. Waiting on it, not on Thread.join: a signal
        # handler that raises (SIGTERM, Ctrl-C) while the main thread is in join() leaves the
        # Thread marked as stopped though it still runs (CPython's bpo-45274 fix releases the
        # lock the running thread holds), and later joins and is_alive() would then lie.
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"chatclient {nick}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Client {self._nick!r} {self.url} {state}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.quit()

    # --- State ------------------------------------------------------------------------------

    @property
    def nick(self) -> str:
        """Our nick: the one logged in with, or the last one accepted with ``NC`` (spec 8.2)."""
        return self._nick

    @property
    def closed(self) -> bool:
        """True once the connection has ended (the I/O thread has finished)."""
        return self._done.is_set()

    # --- Sending ----------------------------------------------------------------------------

    def send_text(self, text: str) -> Future[None]:
        """Send ``text`` to everyone else; longer than ``TEXT_MAX`` bytes, it goes as several
        messages cut as spec 3.1.6 says (`chatwire.split_text`), back to back.

        Returns:
            A future resolved when the last piece has been written to the connection.

        Raises:
            chatwire.LocalProtocolError: ``text`` is not encodable in UTF-8.
            ConnectionLostError: the client has quit or the connection is over.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        try:
            # Text read with errors="surrogateescape" (prompt_toolkit's keyboard input, a
            # script's stdin or argv) holds lone surrogates for bytes that were not UTF-8;
            # split_text would raise UnicodeEncodeError for them, which is not our contract.
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise LocalProtocolError(
                f"the text is not valid UTF-8 (character {exc.start + 1} is "
                f"{_undecodable(text[exc.start])})",
                section="2.8.2",
            ) from None
        events: list[Event] = [Message(text=piece) for piece in split_text(text)]
        future: Future[None] = Future()
        self._submit(_Frames(events, future))
        return future

    def list_users(self) -> Future[tuple[str, ...]]:
        """Ask for the logged-in users (spec 3.1.2).

        Returns:
            A future resolved with the nicks when the reply comes; a `UserList` event comes too.

        Raises:
            ConnectionLostError: the client has quit or the connection is over.
        """
        future: Future[tuple[str, ...]] = Future()
        self._submit(_Frames([ListRequest()], future, _Request("list", future)))
        return future

    def change_nick(self, nick: str) -> Future[bool]:
        """Ask to be known as ``nick`` (spec 3.1.3).

        Returns:
            A future resolved with True (``NC``; `nick` is then the new one) or False (``NE``;
            the old nick stays); a `NickAccepted` or `NickRefused` event comes too.

        Raises:
            chatwire.LocalProtocolError: ``nick`` does not fit a frame (over 9 bytes).
            ConnectionLostError: the client has quit or the connection is over.
        """
        event = NickRequest(nick=nick)
        future: Future[bool] = Future()
        self._submit(_Frames([event], future, _Request("nick", future, nick)))
        return future

    def send_file(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> FileFuture:
        """Send the file at ``path`` to everyone else (spec 3.1.4), streamed from disk.

        The size is the file's size now; if the file shrinks while being sent, the frame
        cannot be completed nor cancelled (spec 3.1.4), so the connection is closed.

        Args:
            path: a regular file.
            name: the name to announce; default: the file's base name. It must be a valid
                name (spec 2.8.5).
            progress: called on the I/O thread as ``progress(done, size)``, at most every
                0.1 s and once at the end; `FileProgress` events come too.

        Returns:
            A future resolved with the size once the last byte has been written; its
            ``transfer`` is the number the file's events carry.

        Raises:
            OSError: the file cannot be opened, or is not a regular file (a folder, a FIFO, a
                device: such a path is refused without being opened, so this never blocks).
            chatwire.LocalProtocolError: the name breaks spec 2.8.5.
            ConnectionLostError: the client has quit or the connection is over.
        """
        handle = _open_regular(path)
        try:
            info = os.fstat(handle.fileno())
            if name is None:
                name = os.path.basename(os.path.normpath(os.fspath(path)))
            event = File(name=name, size=info.st_size)
            future = FileFuture(self._next_transfer())
            self._submit(_Upload(handle, event, future, progress))
        except BaseException:
            handle.close()
            raise
        return future

    def quit(self, *, timeout: float | None = None) -> None:
        """Leave: send ``quit`` after everything already queued (files included), then wait
        until the server closes (spec 3.1.5; after ``quit_timeout`` seconds the client closes
        itself). Does nothing more if already closed.

        Time limits. A file queued before the ``quit`` is sent to its end for as long as it
        makes progress, however slowly. But when nothing at all could be written for
        ``quit_timeout`` seconds (a server that stopped reading), the client stops waiting and
        closes: that file is cut short (the server discards it, spec 3.1.4) and the
        `Disconnected` reason says so. With ``timeout``, it closes at once when that many
        seconds have passed in all, whatever is still queued.

        Called from the I/O thread (a progress callback), it only queues the ``quit``.
        """
        with self._lock:
            send = self._accepting and not self._quitting
            self._quitting = True
            if send:
                self._quit_asked = time.monotonic()
                self._commands.put(_Frames([Quit()], Future()))
        if send:
            self._wake()
        if threading.current_thread() is self._thread:
            return
        if not self._done.wait(timeout):
            self.close()

    def close(self) -> None:
        """Close the connection now, without ``quit`` (a file being sent is cut short: the
        server discards it, spec 3.1.4). Waits for the I/O thread unless called from it."""
        self._close_requested = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._done.wait()

    def _next_transfer(self) -> int:
        with self._transfer_lock:
            self._transfer_count += 1
            return self._transfer_count

    def _submit(self, command: _Frames | _Upload) -> None:
        with self._lock:
            if not self._accepting or self._quitting:
                raise ConnectionLostError(
                    "the client has quit" if self._quitting else "the connection is closed"
                )
            self._commands.put(command)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed (finished)
            self._wake_w.send(b"\0")

    # --- Receiving --------------------------------------------------------------------------

    def next_event(self, timeout: float | None = None) -> ClientEvent | None:
        """The next event, waiting at most ``timeout`` seconds (None: until one comes);
        None on timeout. After `Disconnected` has been returned, returns it again at once."""
        if self._final is not None:
            return self._final
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(event, Disconnected):
            self._final = event
            if threading.current_thread() is not self._thread:
                self._done.wait()  # a moment: so that `closed` is true once the end is seen
        return event

    def events(self, timeout: float | None = None) -> Iterator[ClientEvent]:
        """Yield events in order until `Disconnected` (yielded last). With ``timeout``, stop
        early when no event comes for that long."""
        while True:
            event = self.next_event(timeout)
            if event is None:
                return
            yield event
            if isinstance(event, Disconnected):
                return

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection has ended; True if it has."""
        return self._done.wait(timeout)

    # --- The I/O thread ---------------------------------------------------------------------

    def _emit(self, event: ClientEvent) -> None:
        self._events.put(event)

    def _run(self) -> None:
        reason, expected = "the connection ended", False
        try:
            self._loop()
        except _End as end:
            reason, expected = end.reason, end.expected
        except Exception as exc:  # a bug of ours: still end cleanly and say so
            reason = f"internal error in the client: {exc!r}"
        finally:
            try:
                self._finish(reason, expected)
            finally:
                self._done.set()

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        sock = self._sock
        try:
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(sock, selectors.EVENT_READ)
            watching = selectors.EVENT_READ
            self._process()  # frames that arrived with ACC during the login
            while True:
                self._take_commands()
                wants_write = self._write()
                mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants_write else 0)
                if mask != watching:
                    selector.modify(sock, mask)
                    watching = mask
                timeout: float | None = 0.0 if self._read_again else None
                deadline = self._quit_deadline or self._stall_deadline()
                if deadline is not None:
                    left = max(0.0, deadline - time.monotonic())
                    timeout = left if timeout is None else min(timeout, left)
                ready = selector.select(timeout)
                readable = self._read_again
                for key, events in ready:
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                    elif events & selectors.EVENT_READ:
                        readable = True
                # Only after draining: close() sets the flag, then wakes us. Checked before the
                # drain, a close() landing in between had its wake-up drained unseen, and this
                # thread slept on while close() waited for it.
                if self._close_requested:
                    raise _End("closed by the client", True)
                if readable:
                    self._read()
                    self._write_needs_read = False
                if self._quit_deadline is not None and time.monotonic() >= self._quit_deadline:
                    raise _End("quit (the server did not close the connection in time)", True)
                stall = self._stall_deadline()
                if stall is not None and time.monotonic() >= stall:
                    raise self._stalled_end()
        finally:
            selector.close()

    def _stall_deadline(self) -> float | None:
        """While a ``quit`` waits behind queued frames or files, when to give up on them: once
        nothing at all has been written for ``quit_timeout`` seconds (see `quit`)."""
        asked = self._quit_asked
        if asked is None or self._quit_deadline is not None:  # not quitting, or quit sent
            return None
        return max(asked, self._last_written) + self._quit_timeout

    def _stalled_end(self) -> _End:
        reason = (
            f"quit without waiting any longer: nothing could be sent for {self._quit_timeout:g} s"
            " (the server stopped reading)"
        )
        if self._upload is not None:
            reason += f"; {self._upload.event.name!r} was cut short"
        return _End(reason, True)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def _take_commands(self) -> None:
        while True:
            try:
                self._queue.append(self._commands.get_nowait())
            except queue.Empty:
                return

    def _lost(self, exc: OSError) -> _End:
        if self._quit_deadline is not None:  # after quit, any end is the normal end (6.5)
            return _End("quit", True)
        return _End(f"the connection failed: {exc}", False)

    # Reading -----------------------------------------------------------------------------

    def _read(self) -> None:
        self._read_again = False
        for _ in range(_READS_PER_TURN):
            try:
                data = self._sock.recv(_RECV_SIZE)
            except _WOULD_BLOCK:
                break
            except OSError as exc:
                raise self._lost(exc) from None
            self._conn.receive_data(data)
            self._process()  # raises _End at the end of the stream
            if not data:  # pragma: no cover - _process always ends the loop at the end
                raise _End("the server closed the connection", self._quit_deadline is not None)
        else:
            self._read_again = True  # more may be waiting; serve writes first
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._read_again = True

    def _process(self) -> None:
        connection = self._conn
        while True:
            try:
                event = connection.next_event()
            except RemoteProtocolError as exc:
                # spec 6.2, 6.4: stop reading, close, tell the user.
                raise _End(f"the server broke the protocol: {exc}", False) from None
            if event is NEED_DATA:
                return
            self._handle(event)  # type: ignore[arg-type]

    def _handle(self, event: Event) -> None:
        kind = type(event)
        if kind is FileData:
            self._file_data(event)  # type: ignore[arg-type]
        elif kind is MessageRelay:
            assert isinstance(event, MessageRelay)
            self._emit(MessageReceived(sender=event.sender, text=event.text))
        elif kind is Notice:
            assert isinstance(event, Notice)
            self._emit(NoticeReceived(text=event.text))
        elif kind is ListReply:
            assert isinstance(event, ListReply)
            request = self._pending.popleft()  # spec 8.2: the oldest unanswered request
            assert request.kind == "list", "the connection checks the reply order (spec 4.3)"
            _settle(request.future, event.nicks)
            self._emit(UserList(nicks=event.nicks))
        elif kind is NickChanged:
            request = self._pending.popleft()
            assert request.kind == "nick"
            old, self._nick = self._nick, request.nick
            _settle(request.future, True)
            self._emit(NickAccepted(old=old, new=request.nick))
        elif kind is Refused:
            request = self._pending.popleft()
            assert request.kind == "nick"
            _settle(request.future, False)
            self._emit(NickRefused(nick=request.nick))
        elif kind is FileRelay:
            assert isinstance(event, FileRelay)
            self._file_start(event)
        elif kind is FileEnd:
            self._file_end()
        elif kind is ConnectionClosed:
            if self._quit_deadline is not None:
                raise _End("quit", True)
            raise _End("the server closed the connection", False)
        else:  # pragma: no cover - the client-role state machine allows nothing else
            raise AssertionError(f"unexpected event {event!r}")

    def _file_start(self, event: FileRelay) -> None:
        download = None
        problem = "" if self.downloads is not None else "this client does not save files"
        # The protocol has no way to refuse a relay, so a file we will not keep is still read,
        # and dropped: a peer (or the server) must not be able to fill the user's disk.
        if not problem and event.size > self.max_file_size:
            problem = f"larger than this client's limit of {self.max_file_size} bytes"
        if not problem and self.downloads is not None:
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(self.downloads).free
                if free - event.size < self.keep_free:
                    problem = f"saving it would leave less than {self.keep_free} bytes free on disk"
        if not problem and self.downloads is not None:
            try:
                download = Download(self.downloads, event.name, event.size)
            except OSError as exc:
                problem = f"cannot create a file in {self.downloads}: {exc.strerror or exc}"
        transfer = self._next_transfer()
        self._receiving = _Receiving(event, download, transfer, problem)
        self._emit(
            FileIncoming(sender=event.sender, name=event.name, size=event.size, transfer=transfer)
        )

    def _file_data(self, event: FileData) -> None:
        receiving = self._receiving
        assert receiving is not None
        data = event.data
        receiving.done += data.nbytes if isinstance(data, memoryview) else len(data)
        if receiving.download is not None:
            try:
                receiving.download.write(data)
            except OSError as exc:
                # Keep reading the frame (there is no other way past it), but save nothing.
                receiving.download.discard()
                receiving.download = None
                receiving.problem = f"cannot write to {self.downloads}: {exc.strerror or exc}"
        if receiving.done < receiving.event.size:  # the last report comes with FileEnd
            self._report_in(receiving, final=False)

    def _report_in(self, receiving: _Receiving, *, final: bool) -> None:
        now = time.monotonic()
        if not final and now - receiving.last_report < _PROGRESS_INTERVAL:
            return
        receiving.last_report = now
        self._emit(
            FileProgress(
                direction="in",
                name=receiving.event.name,
                done=receiving.done,
                size=receiving.event.size,
                elapsed=now - receiving.started,
                transfer=receiving.transfer,
            )
        )

    def _file_end(self) -> None:
        receiving = self._receiving
        assert receiving is not None
        self._receiving = None
        event, transfer = receiving.event, receiving.transfer
        self._report_in(receiving, final=True)
        if receiving.download is None:
            self._emit(
                FileDiscarded(
                    sender=event.sender,
                    name=event.name,
                    reason=receiving.problem,
                    transfer=transfer,
                )
            )
            return
        try:
            path = receiving.download.finish()
        except (OSError, ValueError) as exc:
            self._emit(
                FileDiscarded(
                    sender=event.sender,
                    name=event.name,
                    reason=f"cannot save: {exc}",
                    transfer=transfer,
                )
            )
            return
        self._emit(
            FileSaved(
                sender=event.sender,
                name=event.name,
                size=event.size,
                path=str(path),
                transfer=transfer,
            )
        )

    # Writing -----------------------------------------------------------------------------

    def _write(self) -> bool:
        """Write as much as the socket takes, up to a budget; True if more is waiting."""
        if self._write_needs_read:
            return False  # TLS wants to read first; the next read retries
        budget = _WRITE_BUDGET
        while budget > 0:
            if self._out is not None:
                try:
                    sent = self._sock.send(self._out)
                except ssl.SSLWantReadError:
                    self._write_needs_read = True
                    return False
                except _WOULD_BLOCK:
                    return True
                except OSError as exc:
                    raise self._lost(exc) from None
                budget -= sent
                self._last_written = time.monotonic()
                if sent < len(self._out):
                    self._out = self._out[sent:]
                    continue
                self._out = None
                if self._written is not None:
                    _settle(self._written, None)
                    self._written = None
            elif self._upload is not None:
                sent = self._upload_step(self._upload)
                if sent < 0:
                    return True
                if sent:
                    self._last_written = time.monotonic()
                budget -= sent
            elif self._queue:
                self._start(self._queue.popleft())
            else:
                return False
        return True

    def _start(self, command: _Frames | _Upload) -> None:
        connection = self._conn
        if isinstance(command, _Upload):
            try:
                head = connection.send(command.event)
            except LocalProtocolError as exc:
                command.file.close()
                _fail(command.future, exc)
                return
            command.started = time.monotonic()
            self._upload = command
            # Full segments only until the frame ends (chatwire.transport.cork says why).
            try:
                command.corked = cork(self._sock, True)
            except OSError as exc:
                raise self._lost(exc) from None
            self._out = memoryview(head)
            return
        try:
            data = b"".join(connection.send(event) for event in command.events)
        except LocalProtocolError as exc:  # illegal now (spec 4.3): nothing was sent
            _fail(command.future, exc)
            return
        if command.request is not None:
            # spec 8.2: remembered in the order the frames go out, matched in that order.
            self._pending.append(command.request)
        if any(isinstance(event, Quit) for event in command.events):
            # spec 3.1.5: keep reading until the server closes, but not forever.
            self._quit_deadline = time.monotonic() + self._quit_timeout
        self._out = memoryview(data)
        if command.request is None:
            self._written = command.future

    def _upload_step(self, upload: _Upload) -> int:
        """Send the next piece of the file; bytes handed to the socket, or -1 if it is full."""
        size = upload.event.size
        left = size - upload.sent
        if left == 0:
            self._conn.send(FileEnd())
            if upload.corked:  # the frame's last bytes go now, and nothing after waits
                try:
                    cork(self._sock, False)
                except OSError as exc:
                    raise self._lost(exc) from None
            upload.file.close()
            self._upload = None
            self._report_out(upload, final=True)
            _settle(upload.future, size)
            self._emit(FileSent(name=upload.event.name, size=size, transfer=upload.future.transfer))
            return 0
        fd = upload.file.fileno()
        try:
            if self._tls:
                chunk = os.pread(fd, min(left, _TLS_CHUNK), upload.sent)
                sent = len(chunk)
                if sent:
                    self._out = memoryview(self._conn.send(FileData(data=chunk)))
            else:
                sent = os.sendfile(self._sock.fileno(), fd, upload.sent, min(left, _SENDFILE_CHUNK))
                self._conn.account_file_data(sent)
        except _WOULD_BLOCK:
            return -1
        except OSError as exc:
            if self._tls:
                raise _End(f"cannot read {upload.event.name!r}: {exc}", False) from None
            raise self._lost(exc) from None
        if sent == 0:
            raise _End(
                f"{upload.event.name!r} got shorter while being sent; a file cannot be cancelled"
                " (spec 3.1.4), so the connection had to be closed",
                False,
            )
        upload.sent += sent
        if upload.sent < upload.event.size:  # the last report comes with FileEnd
            self._report_out(upload, final=False)
        return sent

    def _report_out(self, upload: _Upload, *, final: bool) -> None:
        now = time.monotonic()
        if not final and now - upload.last_report < _PROGRESS_INTERVAL:
            return
        upload.last_report = now
        size = upload.event.size
        if upload.progress is not None:
            try:
                upload.progress(upload.sent, size)
            except Exception as exc:
                raise _End(f"the progress callback of a file failed: {exc!r}", False) from exc
        self._emit(
            FileProgress(
                direction="out",
                name=upload.event.name,
                done=upload.sent,
                size=size,
                elapsed=now - upload.started,
                transfer=upload.future.transfer,
            )
        )

    # Ending ------------------------------------------------------------------------------

    def _finish(self, reason: str, expected: bool) -> None:
        with self._lock:
            self._accepting = False
        with contextlib.suppress(OSError):
            self._sock.close()
        self._wake_r.close()
        self._wake_w.close()
        lost = ConnectionLostError(f"the connection ended: {reason}")
        receiving = self._receiving
        if receiving is not None:
            # spec 8.4: a transfer cut short leaves nothing behind.
            if receiving.download is not None:
                receiving.download.discard()
            event = receiving.event
            self._emit(
                FileDiscarded(
                    sender=event.sender,
                    name=event.name,
                    reason=f"the transfer was cut short ({receiving.done} of {event.size} bytes)",
                    transfer=receiving.transfer,
                )
            )
        if self._upload is not None:
            self._upload.file.close()
            _fail(self._upload.future, lost)
        if self._written is not None:
            _fail(self._written, lost)
        self._take_commands()
        for command in self._queue:
            if isinstance(command, _Upload):
                command.file.close()
            _fail(command.future, lost)
        for request in self._pending:
            _fail(request.future, lost)
        self._emit(Disconnected(reason=reason, expected=expected))
