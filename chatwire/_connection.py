"""The sans-I/O connection: bytes in, events out; events in, bytes out.

`Connection` is the public face of chatwire, shaped like h11's: it owns no socket and no thread.

- ``receive_data(data)`` hands it bytes as they arrive, in chunks of any size (``b""`` means the
  peer closed its side); ``next_event()`` returns the next `Event`, or `NEED_DATA` when it needs
  more bytes, or `PAUSED` (server only) while a login waits for the server's answer.
- ``send(event)`` checks that the event is legal now and returns the bytes to write.

How a frame is read (spec 2): peek at 10 bytes and parse the header (spec 2.3), name the message
from the direction, code and number of sizes (spec 2.6), check it against the state machine
(spec 4.3), check its sizes (spec 2.7), then wait until the whole frame is buffered, cut it and
parse it. Nothing is buffered beyond one frame's head: a size is checked before the payload it
announces is awaited, so memory is bounded by the limits of spec 2.7 (a ``list-reply`` is the
largest, 1 MB). File data is not buffered at all: it leaves as ``FileData`` events holding
memoryviews of the received chunks, so a 9 GB file passes through a few hundred KiB.

Any input either yields events or raises `RemoteProtocolError` (with the spec section and the
byte offset); after that error the connection is dead (spec 6.2) and raises it again. Misuse of
the API raises `LocalProtocolError` and changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Final, Literal

from ._buffer import ReceiveBuffer
from ._codec import (
    EVENT_MESSAGES,
    ConstructParser,
    FastParser,
    Parser,
    encode,
    head_length,
    identify,
)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    ConnectionClosed,
    Event,
    File,
    FileData,
    FileEnd,
    FileRelay,
    Refused,
)
from ._limits import FILE_MAX, HEADER_SIZE
from ._state import ConnectionState, State
from ._wire import MESSAGES, Direction, FrameError

__all__ = ["NEED_DATA", "PAUSED", "Connection", "Role"]


class Role(enum.Enum):
    """Which end of the connection we are."""

    CLIENT = "client"
    SERVER = "server"


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


#: `Connection.next_event` needs more bytes before it can return an event.
NEED_DATA: Final = _Sentinel.NEED_DATA
#: `Connection.next_event` (server role) waits for the answer to a login (``ACC`` or ``NE``)
#: before it reads further (spec 3.1.1: a client sends nothing before ``ACC``).
PAUSED: Final = _Sentinel.PAUSED

_PARSERS: dict[str, Parser] = {"fast": FastParser(), "construct": ConstructParser()}
_STREAMED = ("file", "file-relay")


def _nbytes(data: bytes | bytearray | memoryview) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


class Connection:
    """One end of one chatwire connection.

    Args:
        role: ``Role.CLIENT`` or ``Role.SERVER``.
        max_file_size: the largest file this end accepts (spec 3.1.4 lets a server set a limit
            below ``FILE_MAX``); a larger ``<file_size>`` header is a `RemoteProtocolError`
            raised as soon as that header arrives.
        parser: ``"fast"`` (default) or ``"construct"``, the slow reference parser; both give
            identical results.
    """

    def __init__(
        self,
        role: Role,
        *,
        max_file_size: int = FILE_MAX,
        parser: Literal["fast", "construct"] = "fast",
    ) -> None:
        if not isinstance(role, Role):
            raise LocalProtocolError(f"role must be a Role, not {role!r}")
        if (
            isinstance(max_file_size, bool)
            or not isinstance(max_file_size, int)
            or max_file_size < 0
        ):
            raise LocalProtocolError(
                f"max_file_size must be a non-negative int, not {max_file_size!r}"
            )
        self.role: Final = role
        self.max_file_size: Final = min(max_file_size, FILE_MAX)
        self._parser = _PARSERS[parser]
        self._incoming = Direction.S2C if role is Role.CLIENT else Direction.C2S
        self._outgoing = Direction.C2S if role is Role.CLIENT else Direction.S2C
        self._state = ConnectionState()
        self._buffer = ReceiveBuffer()
        self._offset = 0  # stream offset of the first unconsumed received byte
        self._eof = False
        self._recv_left = -1  # data bytes still to come in the received file, or -1
        self._send_left = -1  # data bytes still to send in our file, or -1
        self._error: RemoteProtocolError | None = None
        self._reply_sent = False

    # --- State ------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The state of spec 4.3."""
        return self._state.state

    @property
    def pending(self) -> tuple[str, ...]:
        """Requests awaiting a reply, oldest first (``"list"`` or ``"nick"``; spec 5.2)."""
        return tuple(self._state.pending)

    @property
    def error(self) -> RemoteProtocolError | None:
        """The error that ended the connection, if the peer sent something malformed."""
        return self._error

    @property
    def bytes_received(self) -> int:
        """Bytes of the received stream consumed into events so far."""
        return self._offset

    @property
    def receiving_file(self) -> bool:
        """True between a received ``File``/``FileRelay`` and its ``FileEnd``."""
        return self._recv_left >= 0

    @property
    def sending_file(self) -> bool:
        """True between a sent ``File``/``FileRelay`` and its ``FileEnd``."""
        return self._send_left >= 0

    # --- Receiving --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; ``b""`` says the peer closed the stream (end of file).

        ``bytes`` are kept by reference (file data is handed back as views of them); other
        buffers are copied, so the caller may reuse them.

        Raises:
            LocalProtocolError: data after the end of the stream.
        """
        if self._eof:
            raise LocalProtocolError("receive_data after the end of the stream")
        if not data:
            self._eof = True
            return
        self._buffer.feed(data if isinstance(data, bytes) else bytes(data))

    def next_event(self) -> Event | Literal[_Sentinel.NEED_DATA, _Sentinel.PAUSED]:
        """The next event from the received bytes, `NEED_DATA` or `PAUSED`.

        Raises:
            RemoteProtocolError: the peer broke the spec; the connection is dead.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except FrameError as exc:
            raise self._fail(exc.message, exc.section, self._offset + exc.offset) from None

    def events(self) -> Iterator[Event]:
        """Yield events until `NEED_DATA`, `PAUSED` or ``ConnectionClosed`` (included)."""
        while True:
            event = self.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            yield event
            if type(event) is ConnectionClosed:
                return

    def _fail(self, message: str, section: str, offset: int) -> RemoteProtocolError:
        # spec 6.3: a server meeting a malformed first frame answers NE before closing.
        reply = Refused() if self.role is Role.SERVER and self._state.state is State.LOGIN else None
        self._error = RemoteProtocolError(message, section=section, offset=offset, reply=reply)
        self._reply_sent = False
        self._state.close()
        return self._error

    def _next_event(self) -> Event | Literal[_Sentinel.NEED_DATA, _Sentinel.PAUSED]:
        buffer = self._buffer
        if self._recv_left >= 0:
            return self._next_data()
        state = self._state.state
        if state is State.CLOSED:
            return ConnectionClosed()
        if state is State.AWAIT_ACC and self.role is Role.SERVER:
            return PAUSED
        peeked = buffer.peek(HEADER_SIZE)
        if peeked is None:
            return self._short()
        block, start = peeked
        parser = self._parser
        code, sizes = parser.header(block, start)
        name = identify(self._incoming, code, sizes)
        problem = self._state.problem(name, self._incoming)
        if problem is not None:
            raise FrameError(problem, section="4.3")
        parser.check(name, block, start, sizes)
        length = head_length(name, sizes)
        peeked = buffer.peek(length)
        if peeked is None:
            return self._short()
        block, start = peeked
        event = parser.frame(name, block, start, sizes)
        if name in _STREAMED:
            assert isinstance(event, File | FileRelay)
            if event.size > self.max_file_size:
                raise FrameError(
                    f"file of {event.size} bytes exceeds this end's limit of {self.max_file_size}",
                    section="3.1.4",
                    offset=length - HEADER_SIZE,
                )
            self._recv_left = event.size
        buffer.commit(length)
        self._offset += length
        self._state.apply(name, self._incoming)
        return event

    def _next_data(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        left = self._recv_left
        if left == 0:
            self._recv_left = -1
            return FileEnd()
        view = self._buffer.take(left)
        if not view:
            return self._short()
        self._recv_left = left - len(view)
        self._offset += len(view)
        return FileData(data=view)

    def _short(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        # Not enough bytes buffered for the next step: wait, or the stream has ended (spec 6.5).
        if not self._eof:
            return NEED_DATA
        inside = bool(self._buffer) or self._recv_left >= 0
        if inside and not (self._state.state is State.QUIT and self.role is Role.CLIENT):
            raise FrameError(
                f"the stream ended inside a frame ({len(self._buffer)} bytes of it buffered)",
                section="6.5",
                offset=len(self._buffer),
            )
        self._recv_left = -1
        self._state.close()
        return ConnectionClosed()

    # --- Sending ----------------------------------------------------------------------------

    def send(self, event: Event) -> bytes | bytearray | memoryview:
        """The bytes to write for ``event``, after checking it is legal now.

        For ``FileData`` the data itself is returned (no copy); for ``FileEnd`` ``b""``.

        Raises:
            LocalProtocolError: the event is illegal in this state or for this role; nothing
                changes.
        """
        if self._error is not None:
            # The one frame still allowed after a remote error is the reply the spec prescribes.
            if event == self._error.reply and not self._reply_sent:
                self._reply_sent = True
                return encode(event)
            raise LocalProtocolError(f"the connection has failed: {self._error}")
        kind = type(event)
        if self._send_left >= 0:
            if kind is FileData:
                assert isinstance(event, FileData)
                self._account(_nbytes(event.data))
                return event.data
            if kind is FileEnd:
                if self._send_left:
                    raise LocalProtocolError(
                        f"FileEnd with {self._send_left} bytes of the file still to send",
                        section="3.1.4",
                    )
                self._send_left = -1
                return b""
            raise LocalProtocolError(
                f"cannot send {kind.__name__} in the middle of a file: frames never interleave",
                section="5.1",
            )
        if kind is FileData or kind is FileEnd:
            raise LocalProtocolError(f"{kind.__name__} without a File or FileRelay before it")
        name = EVENT_MESSAGES.get(kind)
        if name is None:
            raise LocalProtocolError(f"{kind.__name__} is not a frame one can send")
        if MESSAGES[name].direction is not self._outgoing:
            raise LocalProtocolError(f"a {self.role.value} cannot send {name!r}", section="2.6")
        problem = self._state.problem(name, self._outgoing)
        if problem is not None:
            raise LocalProtocolError(problem, section="4.3")
        data = encode(event)
        self._state.apply(name, self._outgoing)
        if isinstance(event, File | FileRelay):
            self._send_left = event.size
        return data

    def account_file_data(self, size: int) -> None:
        """Record that ``size`` bytes of the current file's data were written without `send`
        (for example with ``os.sendfile``), exactly as ``send(FileData(...))`` would.

        Raises:
            LocalProtocolError: no file is being sent, or ``size`` exceeds what is left.
        """
        if self._send_left < 0:
            raise LocalProtocolError("no file is being sent")
        self._account(size)

    def _account(self, size: int) -> None:
        if size > self._send_left:
            raise LocalProtocolError(
                f"{size} bytes of data but only {self._send_left} left in the file", section="3.1.4"
            )
        self._send_left -= size
